/* Segments: 4 MiB aligned mappings cut into 64 KiB slices; pages are runs of slices. */
#ifndef NM_SEGMENT_H
#define NM_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nm_types.h"
#include "pool/segmap.h"

/* Page of any interior pointer of a segment of ours: one load. */
static inline nm_page_t *nm_segment_page_of(const void *p) {
  const nm_segment_t *seg = (const nm_segment_t *)((uintptr_t)p & ~(uintptr_t)NM_SEG_MASK);
  return seg->page_of[((uintptr_t)p >> NM_SLICE_SHIFT) & (NM_SEG_SLICES - 1)];
}

static inline nm_segment_t *nm_segment_of(const void *p) {
  return (nm_segment_t *)((uintptr_t)p & ~(uintptr_t)NM_SEG_MASK);
}

/* p is in a slice of one of our segments that is mapped as ours (the ownership map says
 * "segment"; a sparse segment's unmapped slices may hold another allocator's mapping). For
 * slow paths: free's fast path needs no such check, a slice not ours has no owner. */
static inline bool nm_segment_holds(const void *p) {
  if (!nm_segmap_contains(p)) return false;
  uint64_t mapped = __atomic_load_n(&nm_segment_of(p)->mapped_mask, __ATOMIC_RELAXED);
  return (mapped >> (((uintptr_t)p & NM_SEG_MASK) >> NM_SLICE_SHIFT)) & 1;
}

/* Index of the first run of n (1..64) set bits in mask, or -1: where n free slices are. */
int nm_segment_find_run(uint64_t mask, unsigned n);

/* Address space is short (a segment was refused a moment ago). */
bool nm_segment_pressure(void);

/* A page of `slices` contiguous slices from one of h's segments (a new segment if none has
 * room); its descriptor is zeroed but for the slice fields. NULL when the OS refuses. */
nm_page_t *nm_segment_page_alloc(nm_heap_t *h, unsigned slices);
/* Grow pg in place to n slices if the slices after it are free; false otherwise. */
bool nm_segment_page_grow(nm_heap_t *h, nm_page_t *pg, unsigned n);
/* Give the slices of pg beyond its first n back to its segment (dirty, as freed ones). */
void nm_segment_page_shrink(nm_heap_t *h, nm_page_t *pg, unsigned n);
/* Move the memory of large page `from` onto the start of `to` (as many slices or more)
 * without a copy. `from`'s slices get fresh zero pages, or stay unmapped when the address
 * space is short or another mapping took them meanwhile; either way they are not dirty
 * once `from` is freed. false: nothing moved (copy instead). */
bool nm_segment_page_move(nm_heap_t *h, nm_page_t *from, nm_page_t *to);
/* Moves out of segments still mapped (each left a split in the kernel's mapping list),
 * and the most there may be: beyond it nm_segment_page_move refuses. */
size_t nm_segment_moves_live(void);
#define NM_MOVES_MAX 4096u
/* Return an empty page's slices to its segment; they stay resident until nm_segment_purge.
 * warm: pg is a one-slice pool page whose blocks are all on its free list; it stays laid
 * out so nm_segment_page_warm can give it back to its class without carving. */
void nm_segment_page_free(nm_heap_t *h, nm_page_t *pg, bool warm);
/* The newest warm page of class cls, taken back (slice_count 1, owner and counts as it was
 * retired), or NULL. *hot: the heap went through at most NM_WARM_HOT_BYTES of pages since
 * it was retired, so its blocks may still be cached and its free list is worth following
 * (nm_page_reuse); otherwise carving it again (nm_page_init) writes where the free list
 * would read cold lines one by one (64 MiB requests: 1.6M last-level read misses per 1.2M
 * operations with the list, 1.1M carving). */
nm_page_t *nm_segment_page_warm(nm_heap_t *h, unsigned cls, bool *hot);
#define NM_WARM_HOT_BYTES ((uint64_t)8 << 20)
/* Give h's freed slices back to the OS and unmap wholly free segments, keeping `keep`.
 * aged_only: only slices that were dirty at the previous call already (so memory is purged
 * after one to two purge periods without reuse); the rest become aged. */
void nm_segment_purge(nm_heap_t *h, unsigned keep, bool aged_only);
/* Calls fn on each page of h's segments; any thread may call it, at any time (a signal
 * handler included): no segment is unmapped while a walk runs, but pages change under
 * it, so fn must read each field once, tolerate any value, and write nothing. */
void nm_segment_foreach_page(nm_heap_t *h, void (*fn)(nm_heap_t *, nm_page_t *, void *), void *arg);
/* In the child of fork: no walk is running any more. */
void nm_segment_after_fork_child(void);

#endif
