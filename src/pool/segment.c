#include "pool/segment.h"

#include <errno.h>
#include <string.h>

#include "os/os.h"
#include "pool/segmap.h"

#define NM_ALL_SLICES (~(uint64_t)0)
#define NM_USABLE_SLICES (NM_ALL_SLICES & ~(uint64_t)1)   /* slice 0 is the header */

_Static_assert(sizeof(nm_segment_t) <= NM_SLICE_SIZE, "segment header must fit in slice 0");

static nm_segment_t *nm_segment_create(nm_heap_t *h) {
  nm_segment_t *s = nm_os_map_aligned(NM_SEG_SIZE, NM_SEG_SIZE);
  if (s == NULL) return NULL;
  if (((uintptr_t)s >> NM_SEG_SHIFT) >= NM_SEGMAP_BITS) {  /* beyond the map: unusable */
    nm_os_unmap(s, NM_SEG_SIZE);
    return NULL;
  }
  /* Fresh anonymous memory is zero: only the fields that are not zero are written. */
  s->heap = h;
  s->free_mask = NM_USABLE_SLICES;
  s->next = h->segments;
  if (h->segments) h->segments->prev = s;
  __atomic_store_n(&h->segments, s, __ATOMIC_RELEASE);   /* readers walk the list unlocked */
  h->segment_count++;
  h->stats.segments_mapped++;
  nm_segmap_set(s);
  return s;
}

/* Statistics readers walk every heap's segments without a lock (nm_segment_foreach_page).
 * While one does, no segment is unmapped: an emptied one is purged, unlinked, and left on
 * its heap's unmap_later list until a later destroy finds no reader. The owner's unlink
 * and the reader's arrival are ordered by a seq_cst fence against a seq_cst increment, so
 * either the owner sees the reader or the reader never reaches the segment. */
static _Atomic unsigned nm_segment_readers;

static void nm_segment_unmap_deferred(nm_heap_t *h) {
  while (h->unmap_later != NULL) {
    nm_segment_t *s = h->unmap_later;
    h->unmap_later = s->unmap_next;
    nm_os_unmap(s, NM_SEG_SIZE);
  }
}

static void nm_segment_destroy(nm_heap_t *h, nm_segment_t *s) {
  if (s->prev) __atomic_store_n(&s->prev->next, s->next, __ATOMIC_RELAXED);
  else __atomic_store_n(&h->segments, s->next, __ATOMIC_RELAXED);
  if (s->next) s->next->prev = s->prev;
  if (h->seg_hint == s) h->seg_hint = NULL;
  h->segment_count--;
  h->stats.segments_unmapped++;
  nm_segmap_clear(s);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&nm_segment_readers, memory_order_relaxed) != 0) {
    /* A reader may be on it: give the memory back now, the address space later. The
     * header slice stays, so a reader still there follows valid links. */
    nm_os_purge((uint8_t *)s + NM_SLICE_SIZE, NM_SEG_SIZE - NM_SLICE_SIZE);
    s->unmap_next = h->unmap_later;
    h->unmap_later = s;
    return;
  }
  nm_os_unmap(s, NM_SEG_SIZE);
  nm_segment_unmap_deferred(h);
}

void nm_segment_after_fork_child(void) {
  /* A walk another thread was in is gone with that thread. */
  atomic_store_explicit(&nm_segment_readers, 0, memory_order_relaxed);
}

NM_RACY_READER void nm_segment_foreach_page(nm_heap_t *h, void (*fn)(nm_heap_t *, nm_page_t *, void *), void *arg) {
  atomic_fetch_add_explicit(&nm_segment_readers, 1, memory_order_seq_cst);
  /* The owner may be changing the list and its pages meanwhile: every read is a whole
   * word, a page being made or retired reads as whatever it holds, and the walk is bounded
   * so a torn read cannot loop. */
  size_t budget = (size_t)1 << 20;
  for (nm_segment_t *s = __atomic_load_n(&h->segments, __ATOMIC_ACQUIRE); s != NULL && budget > 0;
       s = __atomic_load_n(&s->next, __ATOMIC_ACQUIRE), budget--) {
    for (unsigned i = 1; i < NM_SEG_SLICES;) {
      nm_page_t *pg = &s->slices[i];
      unsigned n = __atomic_load_n(&pg->slice_count, __ATOMIC_RELAXED);
      if (n == 0) {
        i++;
        continue;
      }
      fn(h, pg, arg);
      i += n;
    }
  }
  atomic_fetch_sub_explicit(&nm_segment_readers, 1, memory_order_release);
}

/* First run of n free slices in mask, or -1. */
static int nm_find_run(uint64_t mask, unsigned n) {
  if (n == 1) return mask ? __builtin_ctzll(mask) : -1;
  uint64_t run = (n >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << n) - 1);
  for (unsigned i = 0; i + n <= NM_SEG_SLICES; i++) {
    if (((mask >> i) & run) == run) return (int)i;
  }
  return -1;
}

static nm_page_t *nm_segment_take(nm_heap_t *h, nm_segment_t *s, unsigned at, unsigned n) {
  uint64_t run = ((n >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << n) - 1)) << at;
  s->free_mask &= ~run;
  uint64_t reused = s->dirty_mask & run;   /* resident already: no fault, no longer dirty */
  s->dirty_mask &= ~reused;
  s->aged_mask &= ~reused;
  h->dirty_bytes -= (size_t)__builtin_popcountll(reused) << NM_SLICE_SHIFT;
  h->page_bytes += (size_t)n << NM_SLICE_SHIFT;
  if (h->page_bytes > h->stats.page_bytes_peak) h->stats.page_bytes_peak = h->page_bytes;
  h->taken_bytes += (size_t)n << NM_SLICE_SHIFT;
  /* Purged slices read zero again; dirty ones keep whatever the last page left. */
  nm_page_t *pg = &s->slices[at];
  memset(pg, 0, sizeof *pg);
  pg->zeroed = (reused == 0);
  pg->slice_count = (uint8_t)n;
  for (unsigned i = 1; i < n; i++) {
    s->slices[at + i].slice_count = 0;
    s->slices[at + i].slice_back = (uint16_t)(i * sizeof(nm_page_t));
  }
  pg->start = (uint8_t *)s + ((size_t)at << NM_SLICE_SHIFT);
  return pg;
}

nm_page_t *nm_segment_page_alloc(nm_heap_t *h, unsigned n) {
  nm_segment_t *start = h->seg_hint ? h->seg_hint : h->segments;
  nm_segment_t *s = start;
  while (s != NULL) {
    int at = nm_find_run(s->free_mask, n);
    if (at >= 0) {
      h->seg_hint = s;
      return nm_segment_take(h, s, (unsigned)at, n);
    }
    s = s->next ? s->next : h->segments;
    if (s == start) break;
  }
  int saved = errno;
  s = nm_segment_create(h);
  errno = saved;
  if (s == NULL) return NULL;
  h->seg_hint = s;
  return nm_segment_take(h, s, 1, n);
}

bool nm_segment_page_grow(nm_heap_t *h, nm_page_t *pg, unsigned n) {
  nm_segment_t *s = nm_segment_of(pg);
  unsigned at = (unsigned)(pg - s->slices);
  unsigned have = pg->slice_count;
  if (n <= have) return true;
  if (at + n > NM_SEG_SLICES) return false;
  uint64_t run = ((((uint64_t)1 << (n - have)) - 1)) << (at + have);
  if ((s->free_mask & run) != run) return false;
  s->free_mask &= ~run;
  uint64_t reused = s->dirty_mask & run;
  s->dirty_mask &= ~reused;
  s->aged_mask &= ~reused;
  h->dirty_bytes -= (size_t)__builtin_popcountll(reused) << NM_SLICE_SHIFT;
  h->page_bytes += (size_t)(n - have) << NM_SLICE_SHIFT;
  if (h->page_bytes > h->stats.page_bytes_peak) h->stats.page_bytes_peak = h->page_bytes;
  for (unsigned i = have; i < n; i++) {
    s->slices[at + i].slice_count = 0;
    s->slices[at + i].slice_back = (uint16_t)(i * sizeof(nm_page_t));
  }
  pg->slice_count = (uint8_t)n;
  return true;
}

void nm_segment_page_free(nm_heap_t *h, nm_page_t *pg) {
  nm_segment_t *s = nm_segment_of(pg);
  unsigned at = (unsigned)(pg - s->slices);
  unsigned n = pg->slice_count;
  uint64_t run = (n >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << n) - 1);
  pg->slice_count = 0;
  pg->heap = NULL;
  /* No thread's fast path may take it for its own any more: a free into it is a misuse. */
  atomic_store_explicit(&pg->owner, 0, memory_order_relaxed);
  s->free_mask |= run << at;
  s->dirty_mask |= run << at;
  h->dirty_bytes += (size_t)n << NM_SLICE_SHIFT;
  h->page_bytes -= (size_t)n << NM_SLICE_SHIFT;
  h->seg_hint = s;
}

static void nm_purge_runs(nm_heap_t *h, nm_segment_t *s, uint64_t mask) {
  while (mask) {
    unsigned at = (unsigned)__builtin_ctzll(mask);
    uint64_t rest = mask >> at;
    unsigned len = (~rest == 0) ? 64 - at : (unsigned)__builtin_ctzll(~rest);
    nm_os_purge((uint8_t *)s + ((size_t)at << NM_SLICE_SHIFT), (size_t)len << NM_SLICE_SHIFT);
    h->stats.purged_bytes += (size_t)len << NM_SLICE_SHIFT;
    uint64_t run = (len >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << len) - 1);
    mask &= ~(run << at);
  }
}

void nm_segment_purge(nm_heap_t *h, unsigned keep, bool aged_only) {
  int saved = errno;
  if (h->unmap_later != NULL && atomic_load_explicit(&nm_segment_readers, memory_order_seq_cst) == 0)
    nm_segment_unmap_deferred(h);
  unsigned empty_kept = 0;
  nm_segment_t *s = h->segments;
  while (s != NULL) {
    nm_segment_t *next = s->next;
    uint64_t purge = aged_only ? (s->dirty_mask & s->aged_mask) : s->dirty_mask;
    if (s->free_mask == NM_USABLE_SLICES && s->dirty_mask == purge) {
      if (empty_kept >= keep) {      /* wholly free, nothing recent in it: unmap */
        h->dirty_bytes -= (size_t)__builtin_popcountll(s->dirty_mask) << NM_SLICE_SHIFT;
        nm_segment_destroy(h, s);
        s = next;
        continue;
      }
      empty_kept++;
    }
    nm_purge_runs(h, s, purge);
    s->dirty_mask &= ~purge;
    s->aged_mask = s->dirty_mask;    /* what is still dirty is due at the next tick */
    h->dirty_bytes -= (size_t)__builtin_popcountll(purge) << NM_SLICE_SHIFT;
    s = next;
  }
  errno = saved;
}

size_t nm_segment_mapped_bytes(const nm_heap_t *h) {
  return h->segment_count * NM_SEG_SIZE;
}
