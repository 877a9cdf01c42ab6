/* glibc 2.36's malloc contract, on the nm_* API (DESIGN.md, "The contract is glibc's"). */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap/alloc.h"
#include "heap/introspect.h"
#include "heap/router.h"
#include "heap/runtime.h"
#include "nm_types.h"
#include "pool/segmap.h"
#include "system/system.h"

#define HUGE_COUNT 4
static const size_t huge[HUGE_COUNT] = { (size_t)PTRDIFF_MAX + 1, SIZE_MAX / 2 + 1, SIZE_MAX - 4096, SIZE_MAX };

static void fill(void *p, size_t n, unsigned seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(seed * 29 + i * 7 + (i >> 9));
}

static size_t verify(const void *p, size_t n, unsigned seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (uint8_t)(seed * 29 + i * 7 + (i >> 9))) return i;
  return n;
}

static size_t page_size(void) {
  return (size_t)sysconf(_SC_PAGESIZE);
}

/* Expect NULL with errno ENOMEM from the expression. */
#define EXPECT_ENOMEM(expr, n)                                                                       \
  do {                                                                                               \
    errno = 0;                                                                                       \
    void *r_ = (expr);                                                                               \
    int e_ = errno;                                                                                  \
    cr_assert_null(r_, "%s with n = %#zx returned %p", #expr, (size_t)(n), r_);                      \
    cr_assert_eq(e_, ENOMEM, "%s with n = %#zx: errno %d (%s), expected ENOMEM", #expr, (size_t)(n), \
                 e_, strerror(e_));                                                                  \
  } while (0)

#define EXPECT_EINVAL(expr)                                                                         \
  do {                                                                                              \
    errno = 0;                                                                                      \
    void *r_ = (expr);                                                                              \
    int e_ = errno;                                                                                 \
    cr_assert_null(r_, "%s returned %p", #expr, r_);                                                \
    cr_assert_eq(e_, EINVAL, "%s: errno %d (%s), expected EINVAL", #expr, e_, strerror(e_));        \
  } while (0)

Test(contract, huge_requests_fail_with_enomem) {
  void *pool = nm_malloc(100);
  void *large = nm_malloc((size_t)1 << 20);
  void *sys = nm_malloc((size_t)8 << 20);
  cr_assert(pool && large && sys);
  fill(pool, 100, 1);
  fill(large, (size_t)1 << 20, 3);
  fill(sys, (size_t)8 << 20, 2);
  for (unsigned i = 0; i < HUGE_COUNT; i++) {
    size_t n = huge[i];
    EXPECT_ENOMEM(nm_malloc(n), n);
    EXPECT_ENOMEM(nm_calloc(1, n), n);
    EXPECT_ENOMEM(nm_calloc(n, 1), n);
    EXPECT_ENOMEM(nm_realloc(NULL, n), n);
    EXPECT_ENOMEM(nm_realloc(pool, n), n);
    EXPECT_ENOMEM(nm_realloc(large, n), n);
    EXPECT_ENOMEM(nm_realloc(sys, n), n);
    EXPECT_ENOMEM(nm_reallocarray(NULL, 1, n), n);
    EXPECT_ENOMEM(nm_reallocarray(pool, n, 1), n);
    EXPECT_ENOMEM(nm_memalign(8, n), n);
    EXPECT_ENOMEM(nm_memalign(16, n), n);
    EXPECT_ENOMEM(nm_memalign(64, n), n);
    EXPECT_ENOMEM(nm_memalign(4096, n), n);
    EXPECT_ENOMEM(nm_memalign((size_t)1 << 20, n), n);
    EXPECT_ENOMEM(nm_aligned_alloc(16, n), n);
    EXPECT_ENOMEM(nm_aligned_alloc(256, n), n);
    EXPECT_ENOMEM(nm_valloc(n), n);
    EXPECT_ENOMEM(nm_pvalloc(n), n);
    void *out = (void *)(uintptr_t)0x1234;
    cr_assert_eq(nm_posix_memalign(&out, 64, n), ENOMEM, "posix_memalign(64, %#zx)", n);
    cr_assert_eq(out, (void *)(uintptr_t)0x1234, "posix_memalign wrote the out pointer on failure");
    cr_assert_eq(nm_posix_memalign(&out, 8, n), ENOMEM, "posix_memalign(8, %#zx)", n);
    cr_assert_eq(out, (void *)(uintptr_t)0x1234);
  }
  /* Just at PTRDIFF_MAX: no system can give it; still ENOMEM. */
  EXPECT_ENOMEM(nm_malloc(PTRDIFF_MAX), PTRDIFF_MAX);
  EXPECT_ENOMEM(nm_realloc(pool, PTRDIFF_MAX), PTRDIFF_MAX);
  EXPECT_ENOMEM(nm_realloc(large, PTRDIFF_MAX), PTRDIFF_MAX);
  EXPECT_ENOMEM(nm_realloc(sys, PTRDIFF_MAX), PTRDIFF_MAX);
  /* The blocks survived every failed resize. */
  cr_assert_eq(verify(pool, 100, 1), 100u);
  cr_assert_eq(verify(large, (size_t)1 << 20, 3), (size_t)1 << 20);
  cr_assert_eq(verify(sys, (size_t)8 << 20, 2), (size_t)8 << 20);
  nm_free(pool);
  nm_free(large);
  nm_free(sys);
}

Test(contract, calloc_and_reallocarray_overflow) {
  size_t pairs[][2] = { { SIZE_MAX / 2 + 1, 2 }, { 2, SIZE_MAX / 2 + 1 }, { (size_t)1 << 32, (size_t)1 << 32 },
                        { SIZE_MAX, SIZE_MAX }, { SIZE_MAX, 2 }, { 3, SIZE_MAX / 3 + 1 } };
  void *p = nm_malloc(64);
  fill(p, 64, 9);
  for (unsigned i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    size_t a = pairs[i][0], b = pairs[i][1];
    EXPECT_ENOMEM(nm_calloc(a, b), a);
    EXPECT_ENOMEM(nm_reallocarray(NULL, a, b), a);
    EXPECT_ENOMEM(nm_reallocarray(p, a, b), a);
    cr_assert_eq(verify(p, 64, 9), 64u, "reallocarray overflow damaged the block");
  }
  /* No overflow: they work. */
  void *q = nm_reallocarray(p, 10, 100);
  cr_assert_not_null(q);
  cr_assert_eq(verify(q, 64, 9), 64u);
  cr_assert_geq(nm_usable_size(q), 1000u);
  nm_free(q);
  q = nm_calloc(1000, 1000);
  cr_assert_not_null(q);
  nm_free(q);
}

Test(contract, posix_memalign_einval) {
  size_t bad[] = { 0, 1, 2, 3, 4, 12, 24, 48, 100, 4097, SIZE_MAX, SIZE_MAX / 2 + 2 };
  for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *out = (void *)(uintptr_t)0xdead0;
    errno = 4321;
    cr_assert_eq(nm_posix_memalign(&out, bad[i], 64), EINVAL, "posix_memalign(alignment %zu)", bad[i]);
    cr_assert_eq(out, (void *)(uintptr_t)0xdead0, "alignment %zu: out pointer changed on EINVAL", bad[i]);
    cr_assert_eq(errno, 4321, "alignment %zu: posix_memalign changed errno", bad[i]);
  }
}

Test(contract, posix_memalign_huge_and_valid) {
  void *out = (void *)(uintptr_t)0xdead0;
  cr_assert_eq(nm_posix_memalign(&out, 4096, SIZE_MAX - 8192), ENOMEM);
  cr_assert_eq(out, (void *)(uintptr_t)0xdead0);
  cr_assert_eq(nm_posix_memalign(&out, SIZE_MAX / 2 + 1, 1), ENOMEM, "alignment 2^63 cannot be satisfied");
  cr_assert_eq(out, (void *)(uintptr_t)0xdead0);
  for (size_t a = sizeof(void *); a <= ((size_t)1 << 20); a *= 2) {
    void *p = NULL;
    cr_assert_eq(nm_posix_memalign(&p, a, 100), 0, "posix_memalign(%zu, 100)", a);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % a, 0u, "posix_memalign(%zu) = %p", a, p);
    memset(p, 1, 100);
    nm_free(p);
  }
}

Test(contract, memalign_bad_alignment_einval) {
  size_t bad[] = { SIZE_MAX / 2 + 2, SIZE_MAX / 2 + 4096, SIZE_MAX - 1, SIZE_MAX };
  for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    EXPECT_EINVAL(nm_memalign(bad[i], 1));
    EXPECT_EINVAL(nm_memalign(bad[i], 0));
    EXPECT_EINVAL(nm_aligned_alloc(bad[i], 64));
  }
  /* The largest power of two is a valid alignment that no system can satisfy. */
  EXPECT_ENOMEM(nm_memalign(SIZE_MAX / 2 + 1, 1), 1);
}

Test(contract, memalign_rounds_alignment_up) {
  struct { size_t a, n, expect; } cases[] = {
    { 48, 100, 64 }, { 100, 10, 128 }, { 24, 1, 32 }, { 17, 17, 32 }, { 33, 4000, 64 },
    { 3000, 5000, 4096 }, { 5000, 100, 8192 }, { 65537, 10, 131072 }, { 600000, 100, (size_t)1 << 20 },
  };
  for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    void *ptrs[8];
    for (unsigned k = 0; k < 8; k++) {   /* several: one might be aligned by chance */
      void *p = nm_memalign(cases[i].a, cases[i].n);
      cr_assert_not_null(p, "memalign(%zu, %zu)", cases[i].a, cases[i].n);
      cr_assert_eq((uintptr_t)p % cases[i].expect, 0u, "memalign(%zu, %zu) = %p: not aligned to %zu",
                   cases[i].a, cases[i].n, p, cases[i].expect);
      cr_assert_geq(nm_usable_size(p), cases[i].n);
      memset(p, 0x42, cases[i].n);
      ptrs[k] = p;
    }
    for (unsigned k = 0; k < 8; k++) nm_free(ptrs[k]);
  }
}

/* Alignments 32 .. 1 MiB, sizes across the pool and the system, all three entry points. */
Test(contract, aligned_allocations) {
  size_t sizes[] = { 0, 1, 100, 4096, 100000 };
  enum { MAXB = 16 * 5 * 3 };   /* 16 alignments, 5 sizes, 3 entry points */
  void *blk[MAXB];
  size_t len[MAXB];
  unsigned nb = 0;
  for (size_t a = 32; a <= ((size_t)1 << 20); a *= 2) {
    for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      size_t n = sizes[s];
      for (unsigned how = 0; how < 3; how++) {
        void *p = NULL;
        if (how == 0) p = nm_memalign(a, n);
        else if (how == 1) p = nm_aligned_alloc(a, n);
        else cr_assert_eq(nm_posix_memalign(&p, a, n), 0, "posix_memalign(%zu, %zu)", a, n);
        cr_assert_not_null(p, "alignment %zu size %zu entry %u", a, n, how);
        cr_assert_eq((uintptr_t)p % a, 0u, "alignment %zu size %zu entry %u: %p", a, n, how, p);
        size_t u = nm_usable_size(p);
        cr_assert_geq(u, n, "alignment %zu size %zu: usable %zu", a, n, u);
        if (n > 0) cr_assert_gt(u, 0u);
        fill(p, u, nb);
        blk[nb] = p;
        len[nb] = u;
        nb++;
      }
    }
  }
  cr_assert_eq(nb, (unsigned)MAXB);
  for (unsigned i = 0; i < nb; i++) {
    cr_assert_eq(verify(blk[i], len[i], i), len[i], "aligned block %u (%p) overwritten", i, blk[i]);
    cr_assert_eq(nm_usable_size(blk[i]), len[i]);
  }
  for (unsigned i = 0; i < nb; i++) nm_free(blk[i]);
  /* Freed aligned blocks are reused like any other. */
  for (unsigned i = 0; i < 1000; i++) {
    void *p = nm_memalign(64, 200);
    cr_assert_eq((uintptr_t)p % 64, 0u);
    void *q = nm_malloc(200);
    nm_free(p);
    nm_free(q);
  }
}

Test(contract, realloc_zero_frees_and_returns_null) {
  void *p = nm_malloc(100);
  cr_assert_not_null(p);
  errno = 0;
  cr_assert_null(nm_realloc(p, 0));
  void *q = nm_malloc(100);
  cr_assert_eq(q, p, "realloc(p, 0) did not free p (its block was not reused)");
  nm_free(q);

  /* A large block: its page goes back to the segment. */
  nm_totals_t t0, t1, t2;
  nm_totals(&t0);
  void *lg = nm_malloc((size_t)1 << 20);
  cr_assert_not_null(lg);
  nm_totals(&t1);
  cr_assert_null(nm_realloc(lg, 0));
  nm_totals(&t2);
  if (nm_segmap_contains(lg)) {
    cr_assert_geq(t1.page_bytes, t0.page_bytes + ((size_t)1 << 20));
    cr_assert_eq(t2.page_bytes, t0.page_bytes, "realloc(large, 0) did not free the block");
  }

  /* A system block: glibc's mmapped bytes go back down. (Observable only when the system
   * backend is glibc: under a sanitizer its runtime may own the block instead.) */
  struct mallinfo2 m0 = mallinfo2();
  void *big = nm_malloc((size_t)8 << 20);
  cr_assert_not_null(big);
  cr_assert_not(nm_segmap_contains(big));
  struct mallinfo2 m1 = mallinfo2();
  bool glibc_owns = m1.hblkhd >= m0.hblkhd + ((size_t)8 << 20);
  cr_assert_null(nm_realloc(big, 0));
  struct mallinfo2 m2 = mallinfo2();
  if (glibc_owns) cr_assert_eq(m2.hblkhd, m0.hblkhd, "realloc(big, 0) did not free the block");

  void *z = nm_realloc(NULL, 0);
  cr_assert_not_null(z, "realloc(NULL, 0) must return a block");
  cr_assert_eq((uintptr_t)z % 16, 0u);
  nm_free(z);
  z = nm_reallocarray(NULL, 0, 0);
  cr_assert_not_null(z, "reallocarray(NULL, 0, 0) must return a block");
  nm_free(z);
}

/* Each step keeps the common prefix; sizes move between the pool and the system. */
/* Where a block lives: 0 pool class, 1 large page, 2 system. */
static int home_of(const void *p) {
  if (!nm_segmap_contains(p)) return 2;
  return nm_segment_page_of(p)->class_idx == NM_CLASS_LARGE ? 1 : 0;
}

/* Each step keeps the common prefix; blocks move between every pair of backends. */
Test(contract, realloc_keeps_content) {
  /* The tables are built on the first request; build them now to read pool_max. */
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t max = nm_route.pool_max;
  cr_assert_gt(max, 0u);
  size_t steps[] = { 100, 1000, 50, 16, 65536, 1000, (size_t)1 << 20, (size_t)1100 << 10, (size_t)1500 << 10,
                     (size_t)4 << 20, (size_t)3 << 20, 200000, 100, max, max + 1, max, 8, (size_t)6 << 20, 24,
                     max + 1, (size_t)2 << 20, ((size_t)2 << 20) + 1, 1 };
  static const char *const names[] = { "pool", "large", "system" };
  bool seen[3][3] = { { false } };
  void *p = NULL;
  size_t have = 0;
  int from = -1;
  for (unsigned i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    size_t n = steps[i];
    void *q = nm_realloc(p, n);
    cr_assert_not_null(q, "realloc(%p, %zu)", p, n);
    cr_assert_eq((uintptr_t)q % 16, 0u);
    int to = home_of(q);
    /* System-routed sizes always live in the system; the others never do. */
    cr_assert_eq(to == 2, nm_router_backend(n) == NM_BACKEND_SYSTEM, "realloc to %zu landed in the %s backend", n,
                 names[to]);
    size_t keep = have < n ? have : n;
    cr_assert_eq(verify(q, keep, i), keep, "realloc %zu (%s) -> %zu (%s) lost the content at byte %zu", have,
                 from < 0 ? "-" : names[from], n, names[to], verify(q, keep, i));
    cr_assert_geq(nm_usable_size(q), n);
    fill(q, n, i + 1);
    if (from >= 0) seen[from][to] = true;
    from = to;
    p = q;
    have = n;
  }
  nm_free(p);
  int want[][2] = { { 0, 0 }, { 0, 1 }, { 0, 2 }, { 1, 0 }, { 1, 1 }, { 1, 2 }, { 2, 0 }, { 2, 1 }, { 2, 2 } };
  for (unsigned k = 0; k < sizeof want / sizeof want[0]; k++)
    if (nm_route.large_max > max || (want[k][0] != 1 && want[k][1] != 1))
      cr_assert(seen[want[k][0]][want[k][1]], "no realloc from the %s to the %s backend was exercised",
                names[want[k][0]], names[want[k][1]]);
}

Test(contract, failed_realloc_keeps_the_block) {
  size_t sizes[] = { 100, 5000, (size_t)1 << 20, (size_t)8 << 20 };
  for (unsigned s = 0; s < 4; s++) {
    void *p = nm_malloc(sizes[s]);
    cr_assert_not_null(p);
    size_t u = nm_usable_size(p);
    fill(p, u, s);
    size_t fails[] = { (size_t)PTRDIFF_MAX + 1, SIZE_MAX, SIZE_MAX - 4096, PTRDIFF_MAX, (size_t)PTRDIFF_MAX - 4096 };
    for (unsigned f = 0; f < sizeof fails / sizeof fails[0]; f++) {
      EXPECT_ENOMEM(nm_realloc(p, fails[f]), fails[f]);
      cr_assert_eq(nm_usable_size(p), u);
      cr_assert_eq(verify(p, u, s), u, "failed realloc(%zu bytes -> %#zx) damaged the block", sizes[s], fails[f]);
    }
    nm_free(p);
  }
}

static void *free_remote(void *arg) {
  void **blocks = arg;
  int bad = 0;
  for (unsigned i = 0; blocks[i] != NULL; i++) {
    errno = 1234;
    nm_free(blocks[i]);
    if (errno != 1234) bad++;
  }
  return (void *)(uintptr_t)bad;
}

Test(contract, free_preserves_errno) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  errno = 1234;
  nm_free(NULL);
  cr_assert_eq(errno, 1234, "free(NULL) changed errno");
  void *p = nm_malloc(100);
  errno = 1234;
  nm_free(p);
  cr_assert_eq(errno, 1234, "free of a pool block changed errno");
  p = nm_malloc((size_t)8 << 20);
  errno = 1234;
  nm_free(p);
  cr_assert_eq(errno, 1234, "free of a system block changed errno");
  p = nm_memalign(4096, 100);
  errno = 1234;
  nm_free(p);
  cr_assert_eq(errno, 1234, "free of an aligned block changed errno");
  p = nm_malloc((size_t)1 << 20);
  errno = 1234;
  nm_free(p);
  cr_assert_eq(errno, 1234, "free of a large block changed errno");

  /* Frees that retire pages, purge them (madvise) and unmap segments. */
  size_t n = (nm_route.opt.purge_threshold + ((size_t)16 << 20)) / 1024;
  void **blk = calloc(n, sizeof *blk);
  cr_assert_not_null(blk);
  for (size_t i = 0; i < n; i++) blk[i] = nm_malloc(1024);
  nm_totals_t before, after;
  nm_totals(&before);
  for (size_t i = 0; i < n; i++) {
    errno = 1234;
    nm_free(blk[i]);
    if (errno != 1234) cr_assert_fail("free %zu of %zu (page retire/purge) changed errno to %d", i, n, errno);
  }
  nm_totals(&after);
  cr_assert_lt(after.mapped, before.mapped, "premise: the frees purged and unmapped segments");
  errno = 1234;
  nm_trim(0);
  cr_assert_eq(errno, 1234, "malloc_trim changed errno");

  /* Frees from another thread (the remote path). */
  for (unsigned i = 0; i < 3000; i++) blk[i] = nm_malloc(64 + i % 500);
  blk[3000] = NULL;   /* n > 3000 */
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, free_remote, blk), 0);
  void *bad;
  pthread_join(t, &bad);
  cr_assert_eq((uintptr_t)bad, 0u, "%lu remote frees changed errno", (unsigned long)(uintptr_t)bad);
  free(blk);
}

Test(contract, usable_size_null_is_zero) {
  cr_assert_eq(nm_usable_size(NULL), 0u);
}

Test(contract, pvalloc_rounds_to_pages) {
  size_t page = page_size();
  size_t sizes[] = { 1, 100, page - 1, page, page + 1, 3 * page + 7, 100000, (size_t)1 << 20 };
  for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    size_t rounded = (n + page - 1) / page * page;
    uint8_t *p = nm_pvalloc(n);
    cr_assert_not_null(p, "pvalloc(%zu)", n);
    cr_assert_eq((uintptr_t)p % page, 0u, "pvalloc(%zu) = %p not page-aligned", n, (void *)p);
    cr_assert_geq(nm_usable_size(p), rounded, "pvalloc(%zu): usable %zu < %zu", n, nm_usable_size(p), rounded);
    memset(p, 0x6d, rounded);
    nm_free(p);
  }
  void *z = nm_pvalloc(0);
  cr_assert_not_null(z);
  cr_assert_eq((uintptr_t)z % page, 0u);
  nm_free(z);
  /* n + page - 1 overflows: must fail, not wrap to a tiny block. */
  size_t wraps[] = { SIZE_MAX - 100, SIZE_MAX - page + 2, SIZE_MAX, SIZE_MAX - page + 1, SIZE_MAX - 2 * page };
  for (unsigned i = 0; i < sizeof wraps / sizeof wraps[0]; i++) EXPECT_ENOMEM(nm_pvalloc(wraps[i]), wraps[i]);
}

Test(contract, valloc_is_page_aligned) {
  size_t page = page_size();
  size_t sizes[] = { 0, 1, 100, page, page + 1, 20000, 100000, (size_t)1 << 20 };
  void *ptrs[8];
  for (unsigned i = 0; i < 8; i++) {
    uint8_t *p = nm_valloc(sizes[i]);
    cr_assert_not_null(p, "valloc(%zu)", sizes[i]);
    cr_assert_eq((uintptr_t)p % page, 0u, "valloc(%zu) = %p", sizes[i], (void *)p);
    cr_assert_geq(nm_usable_size(p), sizes[i]);
    fill(p, sizes[i], i);
    ptrs[i] = p;
  }
  for (unsigned i = 0; i < 8; i++) {
    cr_assert_eq(verify(ptrs[i], sizes[i], i), sizes[i]);
    nm_free(ptrs[i]);
  }
}

/* A pointer from any entry point may go to any other. */
Test(contract, entry_points_interoperate) {
  void *p = nm_memalign(64, 100);
  fill(p, 100, 1);
  p = nm_realloc(p, 3000);
  cr_assert_eq(verify(p, 100, 1), 100u);
  fill(p, 3000, 2);
  p = nm_realloc(p, 300000);
  cr_assert_eq(verify(p, 3000, 2), 3000u);
  nm_free(p);

  cr_assert_eq(nm_posix_memalign(&p, (size_t)1 << 20, 1000), 0);
  fill(p, 1000, 3);
  p = nm_realloc(p, 50);
  cr_assert_not_null(p);
  cr_assert_eq(verify(p, 50, 3), 50u);
  nm_free(p);

  p = nm_valloc(10000);
  fill(p, 10000, 4);
  p = nm_reallocarray(p, 100, 200);
  cr_assert_eq(verify(p, 10000, 4), 10000u);
  nm_free(p);

  p = nm_calloc(10, 10);
  p = nm_realloc(p, 1 << 20);
  cr_assert_eq(((uint8_t *)p)[99], 0);
  nm_free(p);

  p = nm_pvalloc(1);
  cr_assert_geq(nm_usable_size(p), page_size());
  nm_free(p);
}

/* The system allocator's first-use hook (the preload tunes glibc there) runs exactly once,
 * before the first block it serves, however many threads race to it; nothing before. */
static _Atomic unsigned hook_runs;
static _Atomic int hook_blocks_seen;   /* blocks the system served before the hook ended */
static _Atomic unsigned system_blocks;
static void count_hook(void) {
  hook_blocks_seen = (int)system_blocks;
  usleep(20000);   /* the other threads arrive meanwhile */
  hook_runs++;
}
static void *system_user(void *arg) {
  (void)arg;
  void *p = nm_system_malloc(1000);
  cr_assert_not_null(p);
  cr_assert_eq(hook_runs, 1u, "a thread allocated from the system before the hook finished");
  system_blocks++;
  nm_system_free(p);
  return NULL;
}
Test(contract, system_first_use_hook_runs_once_first) {
  /* The process's own malloc family behind the system backend (ASan's in a sanitizer build:
   * glibc's arenas used behind its back failed an assertion at thread exit). */
  cr_assert_eq(nm_runtime_init(NULL), 0);
  nm_system_before_first_use = count_hook;
  nm_system_used = 0;   /* as a fresh process */
  pthread_t t[4];
  for (int i = 0; i < 4; i++) cr_assert_eq(pthread_create(&t[i], NULL, system_user, NULL), 0);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  cr_assert_eq(hook_runs, 1u, "the hook ran %u times", hook_runs);
  cr_assert_eq(hook_blocks_seen, 0, "the system served a block before the hook");
  void *p = nm_system_calloc(2, 100);
  nm_system_free(p);
  cr_assert_eq(hook_runs, 1u);
}

/* A hook that itself allocates from the system (as a tuning call could, through glibc)
 * goes on instead of waiting for itself. */
static void allocating_hook(void) {
  void *p = nm_system_malloc(64);
  cr_assert_not_null(p);
  nm_system_free(p);
}
Test(contract, system_first_use_hook_may_allocate, .timeout = 10) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  nm_system_before_first_use = allocating_hook;
  nm_system_used = 0;
  void *p = nm_system_malloc(100);
  cr_assert_not_null(p);
  nm_system_free(p);
  cr_assert_eq(nm_system_used, 2);
}
