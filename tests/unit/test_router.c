/* The router: size -> class -> backend tables built from a route. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "heap/router.h"
#include "nm_types.h"

/* Every request 0..max(NM_POOL_LIMIT, large_max): pooled (smallest class >= request) iff it
 * is <= pool_max; above, the large backend up to large_max and the system beyond. Sizes the
 * table cannot tell apart (lookup granularity 16) are only allowed in the 16-byte bucket
 * that holds pool_max. */
static void check_tables(const nm_route_t *r) {
  cr_assert_eq(nm_route.pool_max, r->pool_max);
  cr_assert_eq(nm_route.large_max, r->large_max);
  cr_assert_eq(nm_route.opt.classes_per_doubling, r->opt.classes_per_doubling);
  cr_assert_eq(nm_route.opt.purge_threshold, r->opt.purge_threshold);
  cr_assert_gt(nm_classes.count, 0u);
  cr_assert_leq(nm_classes.count, NM_CLASS_LARGE);
  size_t bucket_end = (r->pool_max + NM_ALIGN - 1) / NM_ALIGN * NM_ALIGN;
  size_t top = NM_POOL_LIMIT > r->large_max ? NM_POOL_LIMIT : r->large_max;
  for (size_t n = 0; n <= top + 64; n++) {
    unsigned cls = nm_router_class(n);
    nm_backend_t be = nm_router_backend(n);
    if (n <= r->pool_max) {
      if (cls == NM_CLASS_NONE || be != NM_BACKEND_POOL)
        cr_assert_fail("pool_max %zu k %u: request %zu not pooled (class %u, backend %d)", r->pool_max,
                       r->opt.classes_per_doubling, n, cls, (int)be);
      if (cls >= nm_classes.count)
        cr_assert_fail("request %zu: class %u beyond the %u classes", n, cls, nm_classes.count);
      size_t need = n == 0 ? 1 : n;
      if (nm_classes.size[cls] < need)
        cr_assert_fail("request %zu: class %u of size %u is too small", n, cls, nm_classes.size[cls]);
      if (cls > 0 && nm_classes.size[cls - 1] >= need)
        cr_assert_fail("request %zu: class %u (size %u) but class %u (size %u) is smaller and fits", n,
                       cls, nm_classes.size[cls], cls - 1, nm_classes.size[cls - 1]);
    } else if (n > bucket_end) {
      nm_backend_t want = n <= r->large_max ? NM_BACKEND_LARGE : NM_BACKEND_SYSTEM;
      if (cls != NM_CLASS_NONE || be != want)
        cr_assert_fail("pool_max %zu large_max %zu k %u: request %zu maps to class %u backend %d, expected "
                       "class NONE backend %d",
                       r->pool_max, r->large_max, r->opt.classes_per_doubling, n, cls, (int)be, (int)want);
    }
  }
  size_t above[] = { NM_LARGE_LIMIT + 1, (size_t)64 << 20, PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1, SIZE_MAX - 15,
                     SIZE_MAX };
  for (size_t i = 0; i < sizeof above / sizeof above[0]; i++) {
    cr_assert_eq(nm_router_class(above[i]), NM_CLASS_NONE, "size %zu", above[i]);
    cr_assert_eq(nm_router_backend(above[i]), NM_BACKEND_SYSTEM, "size %zu", above[i]);
  }
  cr_assert_eq(nm_router_class(NM_POOL_LIMIT + 1), NM_CLASS_NONE);
}

static void check_route_large(size_t pool_max, unsigned k, size_t large_max) {
  nm_route_t r = { .pool_max = pool_max, .large_max = large_max, .opt.classes_per_doubling = k,
                   .opt.purge_threshold = (size_t)3 << 20, .opt.bump_region = (size_t)1 << 20 };
  cr_assert_eq(nm_router_init(&r), 0, "route pool_max %zu k %u large_max %zu rejected", pool_max, k, large_max);
  check_tables(&r);
  /* pool_max is a power of two here, hence a class: the last class is pool_max itself. */
  cr_assert_eq(nm_classes.size[nm_classes.count - 1], pool_max);
  cr_assert_eq(nm_classes.size[nm_router_class(pool_max)], pool_max);
}

static void check_route(size_t pool_max, unsigned k) {
  check_route_large(pool_max, k, (size_t)2 << 20);
}

Test(router, default_route) {
  nm_route_t def;
  nm_route_defaults(&def);
  cr_assert_eq(nm_router_init(&def), 0);
  check_tables(&def);
  cr_assert_eq(nm_router_backend(def.pool_max), NM_BACKEND_POOL);
  cr_assert_neq(nm_router_backend(def.pool_max + 1), NM_BACKEND_POOL);
  /* docs/design.md: size classes up to 32 KiB, a page per block above, up to 2 MiB. */
  cr_assert_eq(def.pool_max, (size_t)32 << 10);
  cr_assert_eq(nm_router_backend(((size_t)32 << 10) + 1), NM_BACKEND_LARGE);
  cr_assert_eq(nm_router_backend((size_t)2 << 20), NM_BACKEND_LARGE);
  cr_assert_eq(nm_router_backend(((size_t)2 << 20) + 1), NM_BACKEND_SYSTEM);
}

Test(router, pool_max_1k_k4) { check_route(1024, 4); }
Test(router, pool_max_1k_k8) { check_route(1024, 8); }
Test(router, pool_max_64k_k4) { check_route((size_t)64 << 10, 4); }
Test(router, pool_max_64k_k8) { check_route((size_t)64 << 10, 8); }
Test(router, pool_max_128k_k4) { check_route((size_t)128 << 10, 4); }
Test(router, pool_max_128k_k8) { check_route((size_t)128 << 10, 8); }

/* The large backend's range: none at all, below pool_max, and up to its limit. */
Test(router, large_max_variants) {
  check_route_large((size_t)64 << 10, 4, 0);
  check_route_large((size_t)64 << 10, 4, (size_t)32 << 10);
  check_route_large((size_t)64 << 10, 8, (size_t)1 << 20);
  check_route_large(1024, 4, NM_LARGE_LIMIT);
  check_route_large((size_t)128 << 10, 8, NM_LARGE_LIMIT);
}

/* Rebuilding with another route replaces the tables completely. */
Test(router, rebuild_switches_tables) {
  check_route((size_t)128 << 10, 8);
  check_route(1024, 4);
  check_route((size_t)64 << 10, 8);
}

/* Every request up to a pool_max that is not a multiple of 16 is pooled too (router.h:
 * pool_max is the "largest request served by pool size classes"), or the route is refused. */
Test(router, pool_max_not_multiple_of_16) {
  nm_route_t r = { .pool_max = 1000, .large_max = (size_t)2 << 20, .opt.classes_per_doubling = 4,
                   .opt.purge_threshold = (size_t)8 << 20, .opt.bump_region = (size_t)1 << 20 };
  if (nm_router_init(&r) != 0) return;   /* refusing such a route is fine too */
  check_tables(&r);
}

Test(router, invalid_route_keeps_tables) {
  nm_route_t good = { .pool_max = (size_t)128 << 10, .large_max = (size_t)1 << 20, .opt.classes_per_doubling = 8,
                      .opt.purge_threshold = 12345, .opt.bump_region = (size_t)1 << 20 };
  cr_assert_eq(nm_router_init(&good), 0);

  static uint8_t class_of_before[NM_CLASS_LOOKUP];
  nm_sizeclass_layout_t classes_before = nm_classes;
  memcpy(class_of_before, nm_class_of, sizeof class_of_before);

  const size_t two_mib = (size_t)2 << 20;
  nm_route_t bad[] = {
    { .pool_max = 1024, .large_max = two_mib, .opt.classes_per_doubling = 0, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = 1024, .large_max = two_mib, .opt.classes_per_doubling = 3, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = 1024, .large_max = two_mib, .opt.classes_per_doubling = 16, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = NM_POOL_LIMIT + 1, .large_max = two_mib, .opt.classes_per_doubling = 4, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = SIZE_MAX, .large_max = two_mib, .opt.classes_per_doubling = 4, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = 0, .large_max = two_mib, .opt.classes_per_doubling = 4, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = 8, .large_max = two_mib, .opt.classes_per_doubling = 8, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = 1024, .large_max = NM_LARGE_LIMIT + 1, .opt.classes_per_doubling = 4, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
    { .pool_max = 1024, .large_max = SIZE_MAX, .opt.classes_per_doubling = 4, .opt.purge_threshold = 1, .opt.bump_region = (size_t)1 << 20 },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(nm_router_init(&bad[i]), -1, "bad route %zu (pool_max %zu, large_max %zu, k %u) accepted", i,
                 bad[i].pool_max, bad[i].large_max, bad[i].opt.classes_per_doubling);
    cr_assert_eq(memcmp(class_of_before, nm_class_of, sizeof class_of_before), 0,
                 "bad route %zu changed nm_class_of", i);
    cr_assert_eq(memcmp(&classes_before, &nm_classes, sizeof classes_before), 0,
                 "bad route %zu changed nm_classes", i);
    cr_assert(good.pool_max == nm_route.pool_max && good.large_max == nm_route.large_max &&
                  good.opt.classes_per_doubling == nm_route.opt.classes_per_doubling &&
                  good.opt.purge_threshold == nm_route.opt.purge_threshold,
              "bad route %zu changed nm_route", i);
  }
  check_tables(&good);
}

/* route= ranges: each size goes to its range's backend; bump requests too big for a
 * quarter region fall back to pool slices; pool ranges past large_max go to the system. */
Test(router, ranges_pick_backends) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.range_count = 4;
  r.opt.ranges[0] = (nm_route_range_t){ 0, 256, NM_BACKEND_POOL };
  r.opt.ranges[1] = (nm_route_range_t){ 257, (size_t)64 << 10, NM_BACKEND_BUMP };
  r.opt.ranges[2] = (nm_route_range_t){ ((size_t)64 << 10) + 1, (size_t)1 << 20, NM_BACKEND_SYSTEM };
  r.opt.ranges[3] = (nm_route_range_t){ ((size_t)1 << 20) + 1, SIZE_MAX, NM_BACKEND_POOL };
  cr_assert_eq(nm_router_init(&r), 0);
  for (size_t n = 0; n <= 256; n++) cr_assert_eq(nm_router_backend(n), NM_BACKEND_POOL, "size %zu", n);
  for (size_t n = 257; n <= ((size_t)64 << 10); n++) {   /* a quarter region is 256 KiB */
    if (nm_router_backend(n) != NM_BACKEND_BUMP) cr_assert_fail("size %zu not bump", n);
    if (nm_router_class(n) != NM_CLASS_NONE) cr_assert_fail("size %zu has a pool class", n);
  }
  cr_assert_eq(nm_router_backend(((size_t)64 << 10) + 1), NM_BACKEND_SYSTEM);
  cr_assert_eq(nm_router_backend((size_t)1 << 20), NM_BACKEND_SYSTEM);
  cr_assert_eq(nm_router_backend(((size_t)1 << 20) + 1), NM_BACKEND_LARGE);
  cr_assert_eq(nm_router_backend(r.large_max + 1), NM_BACKEND_SYSTEM);

  r.opt.bump_region = (size_t)64 << 10;   /* quarter region 16 KiB: bigger bump sizes use pool */
  cr_assert_eq(nm_router_init(&r), 0);
  cr_assert_eq(nm_router_backend((size_t)16 << 10), NM_BACKEND_BUMP);
  cr_assert_eq(nm_router_backend(((size_t)16 << 10) + 16), NM_BACKEND_POOL);
  cr_assert_eq(nm_router_backend(r.pool_max + 1), NM_BACKEND_LARGE);   /* the pool's large pages */
}

/* Everything to the system backend (strategy=system). */
Test(router, system_only) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.range_count = 1;
  r.opt.ranges[0] = (nm_route_range_t){ 0, SIZE_MAX, NM_BACKEND_SYSTEM };
  cr_assert_eq(nm_router_init(&r), 0);
  size_t sizes[] = { 0, 1, 16, 100, 4096, (size_t)64 << 10, (size_t)1 << 20, SIZE_MAX };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    cr_assert_eq(nm_router_backend(sizes[i]), NM_BACKEND_SYSTEM, "size %zu", sizes[i]);
}
