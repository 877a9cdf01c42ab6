/* The bump backend: per-thread regions where an allocation is a cursor increment. Each
 * region counts its live blocks (frees from any thread); a region whose count reaches zero
 * is recycled whole (the heap decides how: heap/heap_bump.h): the current one rewinds its
 * cursor, the others go back to their segment. The last block of the current region
 * grows and shrinks in place. Every block has a 16-byte header: its usable size, then its
 * region's descriptor address while it is live (0 once freed), which free checks: a double
 * free or a pointer that is not a block's start finds no tag. */
#ifndef NM_BUMP_H
#define NM_BUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nm_types.h"

#define NM_BUMP_HEADER 16u

/* Bytes a block of n takes in a region, header included. */
static inline size_t nm_bump_need(size_t n) {
  /* n rounded up to 16 (0 to 16), written so that it shares nothing with the pool fast
   * path's (n + 15) >> 4: GCC kept a copy of n + 15 alive for this in malloc's hit path. */
  return NM_BUMP_HEADER + ((((n | (n == 0)) - 1) | (NM_ALIGN - 1)) + 1);
}
/* Usable size of a bump block. */
static inline size_t nm_bump_usable(const void *p) {
  return *(const size_t *)((const uint8_t *)p - NM_BUMP_HEADER);
}
/* Adds d to a region's count of blocks (plus the current region's bias) and returns it.
 * Only the owner changes it while the region lives, but another thread may read it (a
 * sweep retiring regions other threads freed, nm_page_collect_all): relaxed atomic stores,
 * which are plain moves. */
static inline uint32_t nm_bump_used_add(nm_page_t *pg, int32_t d) {
  uint32_t used = pg->used + (uint32_t)d;
  __atomic_store_n(&pg->used, used, __ATOMIC_RELAXED);
  return used;
}

/* The next need bytes of region pg, which has room: a block with its header written. */
static inline void *nm_bump_carve(nm_page_t *pg, size_t need) {
  uint8_t *header = pg->start + pg->capacity;
  pg->capacity += (uint32_t)need;
  nm_bump_used_add(pg, 1);
  pg->allocs++;   /* counted even without statistics: the pinned-region census reads it */
  ((size_t *)header)[0] = need - NM_BUMP_HEADER;
  ((uintptr_t *)header)[1] = (uintptr_t)pg;
  return header + NM_BUMP_HEADER;
}

/* The allocation fast path: a block from h's current region, NULL when it has no room (or
 * there is none yet: then nm_heap_bump_alloc). */
static inline void *nm_bump_alloc_fast(nm_heap_t *h, size_t n) {
  nm_page_t *pg = h->bump;
  size_t need = nm_bump_need(n);
  if (NM_UNLIKELY(pg == NULL || pg->capacity + need > pg->reserved)) return NULL;
  return nm_bump_carve(pg, need);
}

/* Make pg (fresh slices for heap h) an empty bump region, the current one: its live count
 * holds the +1 bias. flags: the owner word's extra flags (NM_PAGE_DEBUG). */
void nm_bump_region_init(nm_page_t *pg, nm_heap_t *h, unsigned slices, uint8_t flags);

/* The live tag of bump block p (see above). */
static inline uintptr_t *nm_bump_tag(void *p) {
  return (uintptr_t *)p - 1;
}

/* Resize p in place (it must be the last block of h's current region); false otherwise. */
bool nm_bump_resize(nm_heap_t *h, nm_page_t *pg, void *p, size_t n);

#endif
