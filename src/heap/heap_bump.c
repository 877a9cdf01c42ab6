#include "heap/heap_bump.h"

#include "bump/bump.h"
#include "heap/heap.h"
#include "heap/router.h"
#include "pool/segment.h"

/* Pinned regions: a region is recycled only when its last block goes, so a program that
 * keeps a few objects of every batch for long (sqlite3's page cache among its parser's
 * temporaries: 560 regions of 1 MiB alive for 14 MiB of live blocks) holds a region per
 * batch. Every NM_BUMP_CENSUS_EVERY regions made, the heap looks at its older regions;
 * when at least NM_BUMP_PINNED_MIN of them each hold less than 1 live block in
 * NM_BUMP_DENSITY of those carved in them, it gives bump regions up: its bump-routed
 * requests go to the pool (nm_heap_t.bump_off). A request in flight fills its older regions
 * densely (64 MiB of live blocks: every block carved still lives), so it keeps them; the
 * regions python3 (PYTHONMALLOC=malloc) and git leave behind hold 1/3 to 1/2 of theirs. */
#define NM_BUMP_CENSUS_EVERY 8u
#define NM_BUMP_PINNED_MIN 16u
#define NM_BUMP_DENSITY 2u

typedef struct {
  const nm_page_t *current;
  unsigned sparse;          /* older regions holding < 1 live block in NM_BUMP_DENSITY carved */
} nm_bump_census_t;

static void nm_bump_census_add(nm_heap_t *h, nm_page_t *pg, void *arg) {
  (void)h;
  nm_bump_census_t *c = arg;
  if (pg->class_idx != NM_CLASS_BUMP || pg == c->current) return;
  /* used: remote frees not yet collected count as live, so it errs dense; allocs: blocks
   * carved since the region was made. */
  if ((uint64_t)pg->used * NM_BUMP_DENSITY < pg->allocs) c->sparse++;
}

static bool nm_heap_bump_pinned(nm_heap_t *h) {
  if (++h->bump_census_clock % NM_BUMP_CENSUS_EVERY != 0) return false;
  nm_bump_census_t c = { h->bump, 0 };
  nm_segment_foreach_page(h, nm_bump_census_add, &c);
  return c.sparse >= NM_BUMP_PINNED_MIN;
}

/* The current region has no room for need bytes: rewind it if nothing in it lives,
 * otherwise start a new one (NULL, with bump_off set, if the heap gives regions up). The
 * current region carries a +1 bias in used, so frees never retire it under us. */
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
  if (NM_UNLIKELY(nm_heap_bump_pinned(h))) {
    /* For the heap's life (a thread adopting it too): its small bump sizes' direct slots
     * follow the pool classes that fit them from now on, kept by nm_heap_set_current. */
    h->bump_off = true;
    for (unsigned c = 0; c < NM_CLASS_BUMP; c++)
      for (unsigned i = nm_bump_direct_first[c]; i < nm_bump_direct_end[c]; i++) h->direct[i] = h->current[c];
    nm_heap_bump_release(h);
    return NULL;
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
  if (NM_UNLIKELY(h->bump_off)) return NULL;
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
