#include "heap/stats.h"

#include <string.h>

#include "heap/alloc.h"
#include "heap/heap.h"
#include "heap/router.h"
#include "heap/runtime.h"
#include "os/os.h"
#include "pool/segment.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* A page's blocks handed out and still live. */
NM_RACY_READER static void nm_stats_add_page(nm_heap_t *h, nm_page_t *pg, void *arg) {
  nm_stats_t *st = arg;
  unsigned c = LOAD(pg->class_idx);
  if (c >= NM_CLASS_MAX || c == NM_CLASS_NONE) return;
  st->cls[c].allocs += LOAD(pg->allocs);
  st->cls[c].live += nm_heap_page_live(h, pg, c);
}

NM_RACY_READER static void nm_stats_add_heap(nm_heap_t *h, void *arg) {
  nm_stats_t *st = arg;
  const nm_heap_stats_t *hs = &h->stats;
  st->heaps++;
  if (LOAD(h->state) == NM_HEAP_ACTIVE) st->threads++;
  for (unsigned c = 0; c < NM_CLASS_MAX; c++) {
    nm_stats_line_t *l = &st->cls[c];
    l->allocs += LOAD(hs->cls[c].allocs);
    l->frees += LOAD(hs->cls[c].frees);
    l->remote_frees += LOAD(hs->cls[c].remote_frees);
    l->pages += LOAD(hs->cls[c].pages_made) - LOAD(hs->cls[c].pages_retired);
    l->pages_peak += LOAD(hs->cls[c].pages_peak);
  }
  nm_segment_foreach_page(h, nm_stats_add_page, st);
  st->large.bytes += LOAD(hs->large_bytes_in) - LOAD(hs->large_bytes_out);
  st->system.bytes += LOAD(hs->system_bytes_in) - LOAD(hs->system_bytes_out);
  /* Read while the owner runs: regions made and retired between the loads could take
   * either difference below zero, and the sum would wrap to near 2^64. */
  uint64_t made = LOAD(hs->bump_regions_made), retired = LOAD(hs->bump_regions_retired);
  uint64_t live = made > retired ? made - retired : 0, current = LOAD(h->bump) != NULL;
  st->bump_regions_made += made;
  st->bump_regions_live += live;
  st->bump_pinned += live > current ? live - current : 0;
  st->bump_rewinds += LOAD(hs->bump_rewinds);
  st->mapped += (uint64_t)LOAD(h->mapped_bytes);
  st->page_bytes += LOAD(h->page_bytes);
  st->page_bytes_peak += LOAD(hs->page_bytes_peak);
  st->dirty += LOAD(h->dirty_bytes);
  st->purged += LOAD(hs->purged_bytes);
  st->segments_mapped += LOAD(hs->segments_mapped);
  st->segments_unmapped += LOAD(hs->segments_unmapped);
}

/* Page classes counted allocations and live blocks: what is gone and not collected from
 * another thread was freed locally. Counts are read one by one while threads run (and are
 * compiled out with -Dcounters=false), so the sums are clamped to stay consistent. */
static void nm_line_derive(nm_stats_line_t *l) {
  if (l->allocs < l->live + l->remote_frees) l->allocs = l->live + l->remote_frees;
  l->frees = l->allocs - l->live - l->remote_frees;
}

/* The system class counts allocations and frees; live = allocs - frees, clamped: a block
 * allocated before counting began (or by another allocator) may be freed through us. */
static void nm_line_finish(nm_stats_line_t *l) {
  uint64_t gone = l->frees + l->remote_frees;
  l->live = l->allocs > gone ? l->allocs - gone : 0;
}

/* A backend's line and the total are sums of lines, every counter of them. */
static void nm_line_add(nm_stats_line_t *to, const nm_stats_line_t *from) {
#define NM_X(field, ...) to->field += from->field;
  NM_STATS_LINE_COUNTERS(NM_X)
#undef NM_X
}

void nm_stats_collect(nm_stats_t *st) {
  memset(st, 0, sizeof *st);
  nm_heap_foreach(nm_stats_add_heap, st);
  st->cls[NM_CLASS_NONE].frees += atomic_load_explicit(&nm_stats_stray_frees, memory_order_relaxed);
  st->system.bytes -= atomic_load_explicit(&nm_stats_stray_bytes, memory_order_relaxed);
  /* Before start-up nothing was counted; during it the class table is being written. */
  bool ready = nm_runtime_ready();
  st->classes = ready ? nm_classes.count : 0;
  for (unsigned c = 0; c < st->classes; c++) {
    st->class_size[c] = nm_classes.size[c];
    nm_line_derive(&st->cls[c]);
    size_t page_size = (size_t)nm_classes.slices[c] << NM_SLICE_SHIFT;
    st->cls[c].bytes = st->cls[c].live * nm_classes.size[c];
    st->cls[c].capacity = st->cls[c].pages * (page_size / nm_classes.size[c]);
    st->cls[c].peak_bytes = st->cls[c].pages_peak * page_size;
    nm_line_add(&st->pool, &st->cls[c]);
  }
  /* large pages, bump regions and system blocks have their own slots in the class array */
  uint64_t large_bytes = st->large.bytes, system_bytes = st->system.bytes;
  st->large = st->cls[NM_CLASS_LARGE];
  nm_line_derive(&st->large);
  st->large.bytes = (int64_t)large_bytes > 0 ? large_bytes : 0;
  st->bump = st->cls[NM_CLASS_BUMP];
  nm_line_derive(&st->bump);
  st->bump_region_bytes = ready ? st->bump_regions_live * nm_route.opt.bump_region : 0;
  st->bump.bytes = st->bump_region_bytes;
  st->system = st->cls[NM_CLASS_NONE];
  nm_line_finish(&st->system);
  st->system.bytes = (int64_t)system_bytes > 0 ? system_bytes : 0;
  memset(&st->cls[NM_CLASS_LARGE], 0, sizeof st->cls[0]);
  memset(&st->cls[NM_CLASS_BUMP], 0, sizeof st->cls[0]);
  memset(&st->cls[NM_CLASS_NONE], 0, sizeof st->cls[0]);
  nm_line_add(&st->pool, &st->large);   /* the pool backend serves large pages too */
  nm_line_add(&st->total, &st->pool);
  nm_line_add(&st->total, &st->bump);
  nm_line_add(&st->total, &st->system);
  st->rss = nm_os_rss();
}
