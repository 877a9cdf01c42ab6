#include "heap/heap_bump.h"

#include "bump/bump.h"
#include "heap/heap.h"
#include "heap/router.h"

/* The current region has no room for need bytes: rewind it if nothing in it lives,
 * otherwise start a new one. The current region carries a +1 bias in used, so frees never
 * retire it under us. */
static NM_NOINLINE nm_page_t *nm_heap_bump_refill(nm_heap_t *h, size_t need) {
  /* Blocks other threads freed may empty this region or older ones: count them first (a
   * producer thread that only allocates would otherwise never recycle a region). */
  if (atomic_load_explicit(&h->remote_pages, memory_order_relaxed) != NULL)
    nm_heap_collect_remote(h);
  nm_page_t *old = h->bump;
  if (old != NULL && old->used == 1) {
    old->capacity = 0;      /* everything freed: recycle the region whole */
    h->stats.bump_rewinds++;
    if (need <= old->reserved) return old;
  }
  unsigned slices = (unsigned)(nm_route.opt.bump_region >> NM_SLICE_SHIFT);
  nm_page_t *pg = nm_heap_page_alloc(h, slices);
  /* Short of memory, nm_heap_page_alloc releases empty current pages, this region included
   * (a remote free may just have emptied it): it is no longer ours to retire. */
  if (h->bump != old) old = NULL;
  if (pg == NULL) return NULL;
  nm_bump_region_init(pg, h, slices, nm_page_new_flags);
  h->stats.bump_regions_made++;
  h->bump = pg;
  if (old != NULL && nm_bump_used_add(old, -1) == 0) nm_heap_page_retire(h, old);
  return pg;
}

void *nm_heap_bump_alloc(nm_heap_t *h, size_t n) {
  size_t need = nm_bump_need(n);
  nm_page_t *pg = h->bump;
  if (NM_UNLIKELY(pg == NULL || pg->capacity + need > pg->reserved)) {
    pg = nm_heap_bump_refill(h, need);
    if (pg == NULL) return NULL;
  }
  return nm_bump_carve(pg, need);
}

void nm_heap_bump_emptied(nm_heap_t *h, nm_page_t *pg, uint32_t used) {
  /* The current region emptied (only its bias is left): rewind now, so the next blocks
   * reuse memory that is still in the cache. An older one with 1 left holds a block freed
   * by another thread: not read again here, a sweeper may be retiring it. */
  if (used == 1 && pg == h->bump) {
    pg->capacity = 0;
    h->stats.bump_rewinds++;
  } else if (used == 0) {
    nm_heap_page_retire(h, pg);
  }
}

void nm_heap_bump_free_local(nm_heap_t *h, nm_page_t *pg) {
  uint32_t used = nm_bump_used_add(pg, -1);
  if (used <= 1) nm_heap_bump_emptied(h, pg, used);
}

void nm_heap_bump_release(nm_heap_t *h) {
  nm_page_t *pg = h->bump;
  if (pg == NULL) return;
  h->bump = NULL;
  if (nm_bump_used_add(pg, -1) == 0) nm_heap_page_retire(h, pg);
}
