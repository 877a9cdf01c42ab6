#include "heap/router.h"

#include <string.h>

void nm_route_defaults(nm_route_t *route) {
  memset(route, 0, sizeof *route);
  /* Above 32 KiB a page of its own: freed, its slices serve any size, where a class page
   * of 4 such blocks stays resident for one survivor (espresso: peak RSS 13.9 -> 12.2
   * MiB, and fewer instructions: realloc grows a large block in place, no copy). */
  route->pool_max = (size_t)32 << 10;
  route->large_max = (size_t)2 << 20;
  nm_config_defaults(&route->opt);
}

nm_route_t nm_route;
nm_sizeclass_layout_t nm_classes;
uint8_t nm_class_of[NM_CLASS_LOOKUP];
size_t nm_fast_max;
uint8_t nm_direct_first[NM_CLASS_MAX], nm_direct_end[NM_CLASS_MAX];
uint8_t nm_bump_direct_first[NM_CLASS_MAX], nm_bump_direct_end[NM_CLASS_MAX];
_Static_assert(NM_DIRECT_SLOTS <= UINT8_MAX, "direct slot numbers fit a byte");

/* The backend a route's ranges give n (ranges cover every size, in order). */
static nm_backend_t nm_range_backend(const nm_route_t *r, size_t n) {
  for (unsigned i = 0; i < r->opt.range_count; i++)
    if (n >= r->opt.ranges[i].lo && n <= r->opt.ranges[i].hi) return r->opt.ranges[i].backend;
  return NM_BACKEND_SYSTEM;
}

static nm_backend_t nm_route_backend(const nm_route_t *r, size_t n) {
  switch (nm_range_backend(r, n)) {
  case NM_BACKEND_BUMP:
    /* A block must fit a region with room to spare; bigger ones go to pool slices. */
    if (n <= r->opt.bump_region / 4) return NM_BACKEND_BUMP;
    /* fall through */
  case NM_BACKEND_POOL:
    if (n <= r->pool_max) return NM_BACKEND_POOL;
    return n <= r->large_max ? NM_BACKEND_LARGE : NM_BACKEND_SYSTEM;
  default:
    return NM_BACKEND_SYSTEM;
  }
}

nm_backend_t nm_router_backend_above(size_t n) {
  return nm_route_backend(&nm_route, n);
}

uint8_t nm_page_new_flags;

bool nm_route_checked(const nm_route_t *r) {
  bool budget = false;
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++) budget |= r->opt.budget[i] != 0;
  return r->opt.junk || r->opt.fill || r->opt.canary || budget;
}

size_t nm_router_system_min(void) {
  size_t min = SIZE_MAX;
  for (unsigned i = 0; i < nm_route.opt.range_count; i++) {
    const nm_route_range_t *r = &nm_route.opt.ranges[i];
    size_t lo = r->lo;
    /* Pool and bump ranges hand what is above large_max to the system. */
    if (r->backend != NM_BACKEND_SYSTEM) {
      if (r->hi <= nm_route.large_max) continue;
      if (lo <= nm_route.large_max) lo = nm_route.large_max + 1;
    }
    if (lo < min) min = lo;
  }
  return min;
}

int nm_router_init(const nm_route_t *route) {
  nm_sizeclass_layout_t layout;
  memset(&layout, 0, sizeof layout);
  if (nm_sizeclass_build(&layout, route->opt.classes_per_doubling, route->pool_max) != 0) return -1;
  if (route->large_max > NM_LARGE_LIMIT) return -1;
  /* The parser's limits (one place: config/config.h); a route built by hand is held to them. */
  if (route->opt.bump_region < NM_CONFIG_BUMP_REGION_MIN || route->opt.bump_region > NM_CONFIG_BUMP_REGION_MAX)
    return -1;
  nm_route_t r = *route;
  if (r.opt.range_count == 0) {
    r.opt.range_count = 1;
    r.opt.ranges[0] = (nm_route_range_t){ 0, SIZE_MAX, NM_BACKEND_POOL };
  }
  nm_classes = layout;
  nm_route = r;
  unsigned cls = 0;
  /* Entry i serves requests i*16-15 .. i*16, routed by its largest request (a pool_max
   * that is not a multiple of 16 is rounded up). Relaxed atomic stores: another thread's
   * fast path may read the table while the first thread builds it (its heap is still the
   * empty one then, so what it reads does not matter, but the read must be race-free). */
  for (size_t i = 0; i < NM_CLASS_LOOKUP; i++) {
    size_t size = i * NM_ALIGN;
    size_t lowest = i == 0 ? 0 : size - (NM_ALIGN - 1);
    uint8_t c;
    switch (nm_route_backend(&r, lowest)) {
    case NM_BACKEND_POOL:
      while (layout.size[cls] < size) cls++;
      c = (uint8_t)cls;
      break;
    case NM_BACKEND_LARGE: c = NM_CLASS_LARGE; break;
    case NM_BACKEND_BUMP: c = NM_CLASS_BUMP; break;
    default: c = NM_CLASS_NONE; break;
    }
    __atomic_store_n(&nm_class_of[i], c, __ATOMIC_RELAXED);
  }
  memset(nm_direct_first, 0, sizeof nm_direct_first);
  memset(nm_direct_end, 0, sizeof nm_direct_end);
  for (unsigned i = NM_DIRECT_SLOTS; i-- > 0 && !nm_route_checked(&r);) {   /* the first slot wins */
    unsigned c = nm_class_of[i];
    if (c >= NM_CLASS_BUMP) continue;
    if (nm_direct_end[c] == 0) nm_direct_end[c] = (uint8_t)(i + 1);
    nm_direct_first[c] = (uint8_t)i;
  }
  /* The bump-routed slots, by the pool class that fits them: a heap that gave bump regions
   * up serves them from those classes' pages (nm_heap_set_current). */
  memset(nm_bump_direct_first, 0, sizeof nm_bump_direct_first);
  memset(nm_bump_direct_end, 0, sizeof nm_bump_direct_end);
  cls = 0;
  for (unsigned i = 0; i < NM_DIRECT_SLOTS && !nm_route_checked(&r); i++) {
    if (nm_class_of[i] != NM_CLASS_BUMP) continue;
    while (cls + 1 < layout.count && layout.size[cls] < i * NM_ALIGN) cls++;
    if (layout.size[cls] < i * NM_ALIGN) break;
    if (nm_bump_direct_end[cls] == 0) nm_bump_direct_first[cls] = (uint8_t)i;
    nm_bump_direct_end[cls] = (uint8_t)(i + 1);
  }
  __atomic_store_n(&nm_fast_max, nm_route_checked(&r) ? 0 : NM_POOL_LIMIT, __ATOMIC_RELAXED);
  nm_page_new_flags = nm_route_checked(&r) ? NM_PAGE_DEBUG : 0;
  return 0;
}

void nm_route_from_config(const nm_config_t *cfg, nm_route_t *route) {
  nm_route_defaults(route);
  route->opt = *cfg;
}
