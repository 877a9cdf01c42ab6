/* The pool backend, single-threaded: reuse, alignment, sizes, page turnover, trimming. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "heap/alloc.h"
#include "heap/heap.h"
#include "heap/introspect.h"
#include "heap/router.h"
#include "heap/runtime.h"
#include "nm_types.h"
#include "os/os.h"
#include "pool/segment.h"
#include "pool/segmap.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static void fill(void *p, size_t n, uint64_t seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(seed + i * 131 + (i >> 8));
}

/* Index of the first byte that differs from the pattern, or n. */
static size_t verify(const void *p, size_t n, uint64_t seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (uint8_t)(seed + i * 131 + (i >> 8))) return i;
  return n;
}

/* Index of the first byte that is not c, or n. */
static size_t all_bytes(const void *p, size_t n, uint8_t c) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != c) return i;
  return n;
}

static nm_totals_t totals(void) {
  nm_totals_t t;
  nm_totals(&t);
  return t;
}

Test(pool, same_thread_reuse_is_lifo) {
  size_t sizes[] = { 0, 1, 16, 17, 100, 1000, 4096, 30000 };   /* size classes (pool_max 32 KiB) */
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *a = nm_malloc(sizes[i]);
    void *b = nm_malloc(sizes[i]);
    void *c = nm_malloc(sizes[i]);
    cr_assert(a && b && c);
    cr_assert(a != b && b != c && a != c);
    nm_free(b);
    nm_free(c);
    cr_assert_eq(nm_malloc(sizes[i]), c, "size %zu: the last freed block is not handed out first", sizes[i]);
    cr_assert_eq(nm_malloc(sizes[i]), b, "size %zu", sizes[i]);
    nm_free(a);
    nm_free(b);
    nm_free(c);
  }
  /* Requests of the same class share blocks. */
  void *p = nm_malloc(100);
  nm_free(p);
  cr_assert_eq(nm_malloc(nm_usable_size(p)), p);
  nm_free(p);
}

Test(pool, alignment_and_usable_size_0_to_4096) {
  static void *ptrs[4097];
  for (size_t n = 0; n <= 4096; n++) {
    void *p = nm_malloc(n);
    ptrs[n] = p;
    if (p == NULL) cr_assert_fail("malloc(%zu) failed", n);
    if ((uintptr_t)p % 16 != 0) cr_assert_fail("malloc(%zu) = %p is not 16-byte aligned", n, p);
    if (!nm_segmap_contains(p)) cr_assert_fail("malloc(%zu) = %p is not a pool block", n, p);
    size_t u = nm_usable_size(p);
    if (u < n || u == 0) cr_assert_fail("malloc(%zu): usable size %zu", n, u);
    if (n <= 64 && u > n + 15 && !(n == 0 && u == 16))
      cr_assert_fail("malloc(%zu): usable size %zu wastes more than 15 bytes", n, u);
    memset(p, (int)(n & 0xff), u);
  }
  for (size_t n = 0; n <= 4096; n++) {
    size_t u = nm_usable_size(ptrs[n]);
    size_t bad = all_bytes(ptrs[n], u, (uint8_t)(n & 0xff));
    if (bad != u) cr_assert_fail("block of malloc(%zu) overwritten at byte %zu", n, bad);
    nm_free(ptrs[n]);
  }
}

/* Every pool size up to pool_max: usable >= request, aligned, the whole usable area ours. */
Test(pool, usable_size_writable_up_to_pool_max) {
  /* The tables are built on the first request; build them now to read pool_max. */
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t max = nm_route.pool_max;
  cr_assert_gt(max, 0u, "the router's tables are not built");
  uint8_t *prev = NULL;
  size_t prev_u = 0;
  for (size_t n = 4096; n <= max; n += 16 + n / 64) {
    uint8_t *p = nm_malloc(n);
    cr_assert_not_null(p, "malloc(%zu)", n);
    cr_assert_eq((uintptr_t)p % 16, 0u);
    cr_assert(nm_segmap_contains(p), "malloc(%zu) (<= pool_max %zu) not pooled", n, max);
    size_t u = nm_usable_size(p);
    cr_assert_geq(u, n);
    cr_assert_leq(u * 4, n * 5, "malloc(%zu): usable %zu is more than 25%% waste", n, u);
    memset(p, 0xc3, u);
    if (prev) {
      cr_assert_eq(all_bytes(prev, prev_u, 0xc3), prev_u, "writing block %p clobbered block %p", (void *)p,
                   (void *)prev);
      nm_free(prev);
    }
    prev = p;
    prev_u = u;
  }
  nm_free(prev);
  void *p = nm_malloc(max);
  cr_assert(nm_segmap_contains(p), "malloc(pool_max) not pooled");
  nm_free(p);
}

/* Many live blocks of mixed sizes, replaced at random: none is ever corrupted. */
Test(pool, content_intact_across_many_allocations) {
  enum { SLOTS = 4096, ROUNDS = 60000 };
  static uint8_t *slot[SLOTS];
  static size_t len[SLOTS];
  static uint64_t seed[SLOTS];
  for (unsigned r = 0; r < ROUNDS; r++) {
    unsigned i = (unsigned)(rng() % SLOTS);
    if (slot[i]) {
      size_t bad = verify(slot[i], len[i], seed[i]);
      if (bad != len[i])
        cr_assert_fail("round %u: block %p of %zu bytes corrupted at byte %zu", r, (void *)slot[i], len[i], bad);
      nm_free(slot[i]);
      slot[i] = NULL;
    }
    uint64_t x = rng();
    size_t n;
    switch (x % 16) {
      case 0: n = (size_t)(x >> 8) % 65536; break;
      case 1: case 2: n = (size_t)(x >> 8) % 4096; break;
      default: n = (size_t)(x >> 8) % 512; break;
    }
    slot[i] = nm_malloc(n);
    if (slot[i] == NULL) cr_assert_fail("malloc(%zu) failed", n);
    if ((uintptr_t)slot[i] % 16) cr_assert_fail("malloc(%zu) = %p misaligned", n, (void *)slot[i]);
    len[i] = n;
    seed[i] = x;
    fill(slot[i], n, x);
  }
  for (unsigned i = 0; i < SLOTS; i++) {
    if (!slot[i]) continue;
    cr_assert_eq(verify(slot[i], len[i], seed[i]), len[i], "block %u corrupted", i);
    nm_free(slot[i]);
  }
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* A page of 64-byte blocks fills up; allocation goes on in a new page. Blocks never overlap
 * and lie inside their page. */
static void fill_pages(size_t size, size_t count) {
  uint8_t **p = calloc(count, sizeof *p);
  cr_assert_not_null(p);
  nm_totals_t t0 = totals();
  nm_page_t *first_page = NULL;
  size_t pages = 0;
  nm_page_t *last = NULL;
  for (size_t i = 0; i < count; i++) {
    p[i] = nm_malloc(size);
    cr_assert_not_null(p[i]);
    cr_assert(nm_segmap_contains(p[i]));
    nm_page_t *pg = nm_segment_page_of(p[i]);
    if (first_page == NULL) first_page = pg;
    if (pg != last) {
      pages++;
      /* The previous page is exhausted before a new one is used. */
      if (last != NULL) cr_assert_eq(last->used, last->reserved, "size %zu: moved on from page %p with %u of %u blocks used",
                                     size, (void *)last, last->used, last->reserved);
      last = pg;
    }
    size_t bs = pg->block_size;
    cr_assert_geq(bs, size);
    cr_assert(p[i] >= pg->start && p[i] + bs <= pg->start + ((size_t)pg->slice_count << NM_SLICE_SHIFT),
              "block %p outside its page [%p, +%u slices)", (void *)p[i], (void *)pg->start, pg->slice_count);
    cr_assert_eq((size_t)(p[i] - pg->start) % bs, 0u);
    fill(p[i], size, i);
  }
  cr_assert_geq(pages, 3u, "size %zu: %zu blocks fit in %zu page(s)", size, count, pages);
  cr_assert_gt(first_page->reserved, 0u);
  nm_totals_t t1 = totals();
  cr_assert_gt(t1.page_bytes, t0.page_bytes);
  for (size_t i = 0; i < count; i++) cr_assert_eq(verify(p[i], size, i), size, "block %zu corrupted", i);
  qsort(p, count, sizeof *p, cmp_ptr);
  for (size_t i = 1; i < count; i++)
    cr_assert_geq((size_t)(p[i] - p[i - 1]), size, "blocks %p and %p overlap", (void *)p[i - 1], (void *)p[i]);
  for (size_t i = 0; i < count; i++) nm_free(p[i]);
  free(p);
}

Test(pool, page_fills_then_new_page) {
  fill_pages(64, 3500);      /* 1024 blocks per 64 KiB page */
  fill_pages(1000, 300);
  fill_pages(40000, 30);     /* 8 blocks per page */
}

/* Freed pages go back to their segments; nm_trim gives the memory back to the OS. */
Test(pool, free_everything_then_trim_returns_memory) {
  enum { N = 6 * 1024 };   /* 6 MiB of 1 KiB blocks: below the default purge threshold */
  static void *p[N];
  nm_totals_t t0 = totals();
  for (size_t i = 0; i < N; i++) {
    p[i] = nm_malloc(1024);
    cr_assert_not_null(p[i]);
    memset(p[i], 0x77, 1024);
  }
  nm_totals_t peak = totals();
  cr_assert_geq(peak.page_bytes, t0.page_bytes + (size_t)N * 1024);
  cr_assert_geq(peak.mapped, 2 * NM_SEG_SIZE);
  for (size_t i = 0; i < N; i++) nm_free(p[i]);
  nm_totals_t freed = totals();
  cr_assert_leq(freed.page_bytes, (size_t)1 << 20, "every block freed but %zu bytes still in pages",
                freed.page_bytes);
  cr_assert_gt(freed.dirty, 0u);
  nm_trim(0);
  nm_totals_t trimmed = totals();
  cr_assert_eq(trimmed.dirty, 0u, "trim left %zu dirty bytes", trimmed.dirty);
  cr_assert_lt(trimmed.mapped, peak.mapped, "trim unmapped nothing (%zu bytes mapped)", trimmed.mapped);
  cr_assert_leq(trimmed.mapped, NM_SEG_SIZE, "trim kept %zu bytes mapped for one live page", trimmed.mapped);
  cr_assert_leq(trimmed.page_bytes, freed.page_bytes);
  /* The memory is still usable afterwards. */
  for (size_t i = 0; i < N; i++) {
    p[i] = nm_malloc(1024);
    cr_assert_not_null(p[i]);
    memset(p[i], 0x11, 1024);
  }
  for (size_t i = 0; i < N; i++) {
    cr_assert_eq(all_bytes(p[i], 1024, 0x11), 1024u);
    nm_free(p[i]);
  }
}

/* Beyond the purge threshold, free gives memory back by itself. */
Test(pool, free_purges_past_threshold) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t total = nm_route.opt.purge_threshold + ((size_t)24 << 20);   /* 1 KiB blocks */
  size_t n = total / 1024;
  void **p = calloc(n, sizeof *p);
  cr_assert_not_null(p);
  for (size_t i = 0; i < n; i++) {
    p[i] = nm_malloc(1024);
    cr_assert_not_null(p[i]);
    memset(p[i], 0x5a, 1024);
  }
  nm_totals_t peak = totals();
  cr_assert_geq(peak.mapped, total);
  for (size_t i = 0; i < n; i++) nm_free(p[i]);
  nm_totals_t after = totals();
  cr_assert_leq(after.dirty, nm_route.opt.purge_threshold, "%zu dirty bytes kept, threshold %zu", after.dirty,
                nm_route.opt.purge_threshold);
  /* Empty segments beyond the one kept are unmapped at the purge: at least two go. */
  cr_assert_leq(after.mapped + 2 * NM_SEG_SIZE, peak.mapped,
                "freeing %zu MiB without a trim unmapped too little: %zu of %zu bytes still mapped", total >> 20,
                after.mapped, peak.mapped);
  free(p);
}

Test(pool, calloc_zeroes_reused_blocks) {
  size_t sizes[] = { 1, 15, 16, 100, 1000, 4096, 30000, 65536 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    uint8_t *p = nm_malloc(n);
    cr_assert_not_null(p);
    memset(p, 0xff, nm_usable_size(p));
    nm_free(p);
    uint8_t *q = nm_calloc(1, n);
    cr_assert_eq(q, p, "size %zu: calloc did not reuse the freed block (test premise)", n);
    cr_assert_eq(all_bytes(q, n, 0), n, "calloc(1, %zu) on a reused block: byte %zu not zero", n,
                 all_bytes(q, n, 0));
    memset(q, 0xee, nm_usable_size(q));
    nm_free(q);
    /* count * size form */
    q = nm_calloc(n, 1);
    cr_assert_eq(all_bytes(q, n, 0), n, "calloc(%zu, 1) not zeroed", n);
    nm_free(q);
  }
  /* A batch: dirty a whole page's worth, free, calloc it all back. */
  enum { B = 2000 };
  static uint8_t *blk[B];
  for (size_t i = 0; i < B; i++) {
    blk[i] = nm_malloc(48);
    memset(blk[i], 0xab, 48);
  }
  for (size_t i = 0; i < B; i++) nm_free(blk[i]);
  for (size_t i = 0; i < B; i++) {
    blk[i] = nm_calloc(3, 16);
    cr_assert_not_null(blk[i]);
    if (all_bytes(blk[i], 48, 0) != 48) cr_assert_fail("calloc block %zu (%p) not zeroed", i, (void *)blk[i]);
  }
  for (size_t i = 0; i < B; i++) nm_free(blk[i]);
  /* calloc(0, x) and calloc(x, 0) still return a block. */
  void *z = nm_calloc(0, 100);
  cr_assert_not_null(z);
  nm_free(z);
  z = nm_calloc(100, 0);
  cr_assert_not_null(z);
  nm_free(z);
}

/* Above pool_max: the large backend (one block per page of slices, ours) up to large_max,
 * the system beyond. Every such block is usable, writable, zeroed by calloc, and frees. */
Test(pool, big_sizes_by_backend) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t max = nm_route.pool_max, large = nm_route.large_max;
  void *at_max = nm_malloc(max);
  cr_assert(nm_segmap_contains(at_max));
  size_t sizes[] = { max + 1, max + 4096, 100000, (size_t)1 << 20, large, large + 1, (size_t)16 << 20 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    if (n <= max) continue;
    bool ours = n <= large;
    cr_assert_eq(nm_router_backend(n), ours ? NM_BACKEND_LARGE : NM_BACKEND_SYSTEM, "size %zu", n);
    uint8_t *p = nm_malloc(n);
    cr_assert_not_null(p, "malloc(%zu)", n);
    cr_assert_eq(nm_segmap_contains(p), ours, "malloc(%zu) (pool_max %zu, large_max %zu): ours %d", n, max, large,
                 nm_segmap_contains(p));
    cr_assert_eq((uintptr_t)p % 16, 0u);
    size_t u = nm_usable_size(p);
    cr_assert_geq(u, n, "malloc(%zu): usable size %zu", n, u);
    memset(p, 0x3c, u);
    cr_assert_eq(all_bytes(p, u, 0x3c), u);
    nm_free(p);
    /* calloc: the dirty block just freed may come back; it must read zero */
    p = nm_calloc(1, n);
    cr_assert_not_null(p);
    cr_assert_eq(nm_segmap_contains(p), ours);
    cr_assert_eq(all_bytes(p, n, 0), n, "calloc(1, %zu) not zeroed at byte %zu", n, all_bytes(p, n, 0));
    nm_free(p);
  }
  nm_free(at_max);
}

/* Large blocks: page-sized, start on a slice, freed pages return to the segment. */
Test(pool, large_blocks) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t max = nm_route.pool_max, large = nm_route.large_max;
  if (large <= max) return;   /* no large backend in this route */
  enum { N = 40 };
  uint8_t *p[N];
  size_t len[N];
  nm_totals_t t0 = totals();
  for (unsigned i = 0; i < N; i++) {
    len[i] = max + 1 + (size_t)i * ((large - max - 1) / N);
    p[i] = nm_malloc(len[i]);
    cr_assert_not_null(p[i], "malloc(%zu)", len[i]);
    cr_assert(nm_segmap_contains(p[i]));
    cr_assert_eq((uintptr_t)p[i] % NM_SLICE_SIZE, 0u, "large block %p does not start on a slice", (void *)p[i]);
    cr_assert_geq(nm_usable_size(p[i]), len[i]);
    fill(p[i], len[i], i);
  }
  for (unsigned i = 0; i < N; i++) cr_assert_eq(verify(p[i], len[i], i), len[i], "large block %u overwritten", i);
  nm_totals_t t1 = totals();
  for (unsigned i = 0; i < N; i++) nm_free(p[i]);
  nm_totals_t t2 = totals();
  cr_assert_leq(t2.page_bytes, t0.page_bytes + NM_SLICE_SIZE, "freed large blocks keep %zu bytes in pages (%zu before)",
                t2.page_bytes, t0.page_bytes);
  cr_assert_gt(t1.page_bytes, t2.page_bytes);
  /* calloc of large blocks reusing the dirty slices just freed */
  for (unsigned i = 0; i < 8; i++) {
    uint8_t *q = nm_calloc(len[N - 1 - i], 1);
    cr_assert_not_null(q);
    cr_assert_eq(all_bytes(q, len[N - 1 - i], 0), len[N - 1 - i], "large calloc %u not zeroed", i);
    memset(q, 0xee, len[N - 1 - i]);
    nm_free(q);
  }
}

/* The run finder against the obvious scan, on masks from empty to full with runs of every
 * length, for every run length. */
static int naive_run(uint64_t mask, unsigned n) {
  for (unsigned i = 0; i + n <= 64; i++) {
    unsigned k = 0;
    while (k < n && ((mask >> (i + k)) & 1)) k++;
    if (k == n) return (int)i;
  }
  return -1;
}

Test(pool, segment_find_run_matches_a_scan) {
  for (unsigned trial = 0; trial < 20000; trial++) {
    uint64_t mask;
    switch (trial % 4) {
    case 0: mask = rng(); break;
    case 1: mask = rng() | rng(); break;                 /* dense: long runs */
    case 2: mask = rng() & rng() & rng(); break;         /* sparse */
    default: {                                           /* one run at a random place */
      unsigned len = (unsigned)(rng() % 65), at = len == 64 ? 0 : (unsigned)(rng() % (65 - len));
      mask = len == 0 ? 0 : len == 64 ? UINT64_MAX : (((uint64_t)1 << len) - 1) << at;
    }
    }
    if (trial == 0) mask = 0;
    if (trial == 1) mask = UINT64_MAX;
    for (unsigned n = 1; n <= 64; n++)
      cr_assert_eq(nm_segment_find_run(mask, n), naive_run(mask, n), "mask %#llx, n %u",
                   (unsigned long long)mask, n);
  }
}

/* A new page takes freed slices that are still resident before clean ones, even when a
 * clean run comes first in the segment: programs that free and allocate in cycles reuse
 * memory instead of faulting in fresh slices beside it. */
Test(pool, new_page_reuses_resident_slices_first) {
  size_t n = 3 * NM_SLICE_SIZE - 4096;   /* a large block of 3 slices */
  cr_assert_gt(n, NM_POOL_LIMIT);
  uint8_t *x = nm_malloc(n), *y = nm_malloc(n), *z = nm_malloc(n);
  cr_assert(x != NULL && y != NULL && z != NULL);
  cr_assert(nm_segment_of(x) == nm_segment_of(z) && x < z, "the three blocks share a segment, in order");
  memset(x, 1, n);
  memset(z, 3, n);
  nm_free(x);
  nm_trim(0);                             /* x's slices: purged, clean */
  nm_totals_t t = totals();
  cr_assert_eq(t.dirty, 0u);
  nm_free(z);                             /* z's slices: dirty */
  cr_assert_eq(totals().dirty, 3 * NM_SLICE_SIZE);
  uint8_t *w = nm_malloc(n);
  cr_assert_eq(w, z, "the new page took clean slices (%p) instead of the resident ones (%p)", (void *)w,
               (void *)z);
  cr_assert_eq(totals().dirty, 0u);
  /* Only dirty memory keeps old contents; the caller must not rely on either. */
  uint8_t *v = nm_malloc(n);
  cr_assert_eq(v, x, "with no dirty run left, first fit");
  nm_free(v);
  nm_free(w);
  nm_free(y);
}

/* realloc of a large block to a smaller size that is still large keeps the block where it
 * is and gives the tail slices back; to a pool size it moves. The contents stay either way,
 * and the tail can be taken by the next page. */
Test(pool, large_realloc_shrinks_in_place) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t big = 16 * NM_SLICE_SIZE - 100, small = 3 * NM_SLICE_SIZE - 100;
  cr_assert_gt(small, nm_route.pool_max);
  uint8_t *p = nm_malloc(big);
  cr_assert_not_null(p);
  fill(p, big, 7);
  nm_totals_t t0 = totals();
  uint8_t *q = nm_realloc(p, small);
  cr_assert_eq(q, p, "a large block shrinking to a large size moved");
  cr_assert_eq(verify(q, small, 7), small, "contents lost in the shrink");
  cr_assert_eq(nm_usable_size(q), 3 * NM_SLICE_SIZE);
  nm_totals_t t1 = totals();
  cr_assert_eq(t0.page_bytes - t1.page_bytes, 13 * NM_SLICE_SIZE, "the tail did not go back (%zu -> %zu)",
               t0.page_bytes, t1.page_bytes);
  cr_assert_eq(t1.dirty - t0.dirty, 13 * NM_SLICE_SIZE);
  /* The tail is free for the next page, right after the block. */
  uint8_t *r = nm_malloc(small);
  cr_assert_eq(r, q + 3 * NM_SLICE_SIZE, "the next large page did not take the freed tail");
  /* And the rest of the tail, ten slices, after that one. */
  uint8_t *u = nm_malloc(10 * NM_SLICE_SIZE - 100);
  cr_assert_eq(u, q + 6 * NM_SLICE_SIZE, "the rest of the freed tail was not one free run");
  nm_free(u);
  /* Growing again, then to a pool size: moves, contents kept. */
  uint8_t *s = nm_realloc(q, big);
  cr_assert_not_null(s);
  cr_assert_eq(verify(s, small, 7), small, "contents lost growing back");
  uint8_t *t = nm_realloc(s, 1000);
  cr_assert_not_null(t);
  cr_assert_neq(t, s, "a pool-sized shrink stays in a large page");
  cr_assert_eq(verify(t, 1000, 7), 1000u);
  nm_free(t);
  nm_free(r);
}

/* malloc finds pages up to NM_DIRECT_MAX through the heap's direct slots: slot i must be
 * current[] of the class serving (i * 16) at every moment (a stale slot hands out blocks
 * of the wrong size), and the empty page where the fast path must not serve. */
static void check_direct_slots(const char *when) {
  nm_heap_t *h = nm_tls_heap;
  for (unsigned i = 0; i < NM_DIRECT_SLOTS; i++) {
    unsigned c = nm_class_of[i];
    nm_page_t *want = nm_fast_max == 0     ? &nm_page_empty
                      : c < NM_CLASS_BUMP  ? h->current[c]
                      : c == NM_CLASS_BUMP ? &nm_page_to_bump
                                           : &nm_page_empty;
    cr_assert_eq(h->direct[i], want, "%s: direct slot %u (class %u) is %p, current page %p", when, i, c,
                 (void *)h->direct[i], (void *)want);
  }
}

/* Fills three pages of each size's class, checking the slots as pages change; then frees
 * everything and trims (current pages dropped), and checks again. Every block has the
 * size asked for. */
static void exercise_direct_slots(void) {
  static const size_t sizes[] = { 0, 1, 15, 16, 17, 48, 64, 100, 255, 256, 257, 500, 512, 513, 777, 1000, 1023, 1024 };
  enum { MAX_BLOCKS = 20000 };
  void **held = calloc(MAX_BLOCKS * (sizeof sizes / sizeof sizes[0]), sizeof *held);
  cr_assert_not_null(held);
  size_t count = 0;
  check_direct_slots("fresh heap");
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    nm_page_t *last = NULL;
    unsigned pages = 0;
    for (unsigned j = 0; j < MAX_BLOCKS && pages < 3; j++) {
      uint8_t *p = nm_alloc_fast(n);
      if (p == NULL) p = nm_malloc(n);
      cr_assert_not_null(p);
      cr_assert_geq(nm_usable_size(p), n, "malloc(%zu) gave a block of %zu", n, nm_usable_size(p));
      memset(p, 0x5a, n);
      held[count++] = p;
      if (!nm_segmap_contains(p)) break;   /* a backend without pages */
      nm_page_t *pg = nm_segment_page_of(p);
      if (pg != last) {
        pages++;
        last = pg;
        check_direct_slots("after a page change");
      }
    }
  }
  check_direct_slots("with every page full");
  for (size_t i = 0; i < count; i++) nm_free(held[i]);
  check_direct_slots("after freeing");
  nm_heap_trim(nm_tls_heap);
  check_direct_slots("after a trim");
  for (unsigned i = 0; i < NM_DIRECT_SLOTS; i++)
    cr_assert(nm_tls_heap->direct[i] == &nm_page_empty || nm_tls_heap->direct[i] == &nm_page_to_bump,
              "slot %u kept a page the trim gave back", i);
  free(held);
}

Test(pool, direct_slots_follow_current_pages) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  exercise_direct_slots();
}

/* The same with a route that sends part of the direct range to bump and to the system:
 * the bump sizes' slots lead to the bump region (the fast path serves them from it), the
 * system's stay empty. */
Test(pool, direct_slots_with_bump_and_system_ranges) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.range_count = 3;
  r.opt.ranges[0] = (nm_route_range_t){ 0, 256, NM_BACKEND_POOL };
  r.opt.ranges[1] = (nm_route_range_t){ 257, 700, NM_BACKEND_BUMP };
  r.opt.ranges[2] = (nm_route_range_t){ 701, SIZE_MAX, NM_BACKEND_SYSTEM };
  cr_assert_eq(nm_runtime_init(&r), 0);
  cr_assert_eq(nm_router_backend(300), NM_BACKEND_BUMP);
  cr_assert_eq(nm_router_backend(1000), NM_BACKEND_SYSTEM);
  void *warm = nm_malloc(300);   /* the heap and its bump region */
  cr_assert_not_null(warm);
  void *b = nm_alloc_fast(400);
  cr_assert_not_null(b, "a bump size missed the fast path with a region that has room");
  cr_assert_eq(nm_segment_page_of(b)->class_idx, NM_CLASS_BUMP);
  nm_free(b);
  nm_free(warm);
  exercise_direct_slots();
}

/* A checked route (junk) sends every request to the slow path: no slot may serve. */
Test(pool, direct_slots_empty_when_checked) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.junk = true;
  cr_assert_eq(nm_runtime_init(&r), 0);
  void *p = nm_malloc(64);
  cr_assert_not_null(p);
  for (unsigned i = 0; i < NM_DIRECT_SLOTS; i++)
    cr_assert_eq(nm_tls_heap->direct[i], &nm_page_empty, "slot %u serves a checked route", i);
  cr_assert_null(nm_alloc_fast(64), "the fast path served a checked route");
  nm_free(p);
}

/* Every slice of a multi-slice page leads to its descriptor, and a run given back by a
 * shrink still does (a late free there fails the block check, not a wild read). */
Test(pool, slices_lead_to_their_page) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t n = 12 * NM_SLICE_SIZE - 100;
  uint8_t *p = nm_malloc(n);
  cr_assert_not_null(p);
  nm_page_t *pg = nm_segment_page_of(p);
  cr_assert_eq(pg->slice_count, 12);
  for (unsigned k = 0; k < 12; k++) {
    cr_assert_eq(nm_segment_page_of(p + (size_t)k * NM_SLICE_SIZE), pg, "slice %u", k);
    cr_assert_eq(nm_segment_page_of(p + (size_t)k * NM_SLICE_SIZE + NM_SLICE_SIZE - 1), pg, "end of slice %u", k);
  }
  cr_assert_eq(nm_realloc(p, 4 * NM_SLICE_SIZE - 100), p);
  for (unsigned k = 4; k < 12; k++)
    cr_assert_eq(nm_segment_page_of(p + (size_t)k * NM_SLICE_SIZE), pg, "freed tail slice %u", k);
  nm_free(p);
}

/* ThreadSanitizer builds copy instead of moving pages (it would not know they moved). */
#if defined(__SANITIZE_THREAD__)
#define SKIP_WHERE_REALLOC_COPIES() cr_skip_test("ThreadSanitizer builds copy (it would not know the pages moved)")
#else
#define SKIP_WHERE_REALLOC_COPIES() ((void)0)
#endif

/* Slices of p's range resident now (mincore). */
static size_t resident_pages(const void *p, size_t len) {
  size_t page = 4096, n = (len + page - 1) / page, count = 0;
  unsigned char *vec = malloc(n);
  cr_assert_not_null(vec);
  cr_assert_eq(mincore((void *)p, len, vec), 0, "mincore: %s", strerror(errno));
  for (size_t i = 0; i < n; i++) count += vec[i] & 1;
  free(vec);
  return count;
}

/* A large block that realloc must move (the slices after it are taken) moves its pages
 * instead of copying them: contents intact, and the old range is neither resident nor
 * counted dirty; a new page there reads zero (calloc skips its memset on such slices). */
Test(pool, large_realloc_moves_pages) {
  SKIP_WHERE_REALLOC_COPIES();
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t n = 6 * NM_SLICE_SIZE - 100;
  uint8_t *p = nm_malloc(n);
  cr_assert_not_null(p);
  uint8_t *wall = nm_malloc(n);   /* right after p: p cannot grow in place */
  cr_assert_eq(wall, p + 6 * NM_SLICE_SIZE);
  fill(p, n, 11);
  nm_totals_t t0 = totals();
  uint8_t *q = nm_realloc(p, 2 * n);
  cr_assert_not_null(q);
  cr_assert_neq(q, p);
  cr_assert_eq(verify(q, n, 11), n, "contents lost in the move");
  nm_totals_t t1 = totals();
  cr_assert_eq(t1.dirty, t0.dirty, "the moved-out slices count as dirty (%zu -> %zu)", t0.dirty, t1.dirty);
  cr_assert_eq(resident_pages(p, 6 * NM_SLICE_SIZE), 0u, "the old range is still resident");
  uint8_t *z = nm_calloc(1, n);
  cr_assert_eq(z, p, "the freed range was not reused first-fit");
  cr_assert_eq(all_bytes(z, n, 0), n, "a page on moved-out slices is not zero");
  fill(z, n, 12);
  cr_assert_eq(verify(q, n, 11), n, "writing the old range changed the moved block");
  nm_free(z);
  nm_free(q);
  nm_free(wall);
}

/* When the current page's free list runs dry but the page is not carved out, the fast path
 * carves on itself (no slow path): the next block comes from the same page. */
Test(pool, fast_path_carves_the_current_page) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t n = 208;
  void *first = nm_malloc(n);
  cr_assert_not_null(first);
  nm_page_t *pg = nm_segment_page_of(first);
  cr_assert_lt(pg->capacity, pg->reserved, "a fresh page of %zu-byte blocks is carved out at once", n);
  unsigned carves = 0;
  void *held[4096];
  size_t count = 0;
  while (pg->capacity < pg->reserved && count < 4096) {
    while (pg->free != NULL) held[count++] = nm_alloc_fast(n);
    uint32_t before = pg->capacity;
    void *b = nm_alloc_fast(n);
    cr_assert_not_null(b, "the fast path declined a page with %u of %u blocks carved", before, pg->reserved);
    cr_assert_eq(nm_segment_page_of(b), pg, "the carved block is not from the current page");
    cr_assert_gt(pg->capacity, before);
    held[count++] = b;
    carves++;
  }
  cr_assert_geq(carves, 2u);
  cr_assert_eq(pg->capacity, pg->reserved);
  for (size_t i = 0; i < count; i++) nm_free(held[i]);
  nm_free(first);
}

/* Moves stop at NM_MOVES_MAX in live segments (each splits a kernel mapping, and a process
 * may have only so many): past it realloc copies, and a move is allowed again once the
 * segments that took them are unmapped. */
Test(pool, realloc_moves_stop_at_the_cap, .timeout = 60) {
  SKIP_WHERE_REALLOC_COPIES();
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t n = 2 * NM_SLICE_SIZE - 100;
  void *anchor = nm_malloc(n);   /* keeps the segment (and its moves) alive between rounds */
  cr_assert_not_null(anchor);
  unsigned after_cap = 0;
  for (unsigned i = 0; i < 3 * NM_MOVES_MAX && after_cap < 64; i++) {
    uint8_t *p = nm_malloc(n);
    uint8_t *wall = nm_malloc(n);   /* p cannot grow in place */
    cr_assert(p != NULL && wall != NULL);
    memset(p, (int)(i & 0xff), n);
    bool full = nm_segment_moves_live() == NM_MOVES_MAX;
    uint8_t *q = nm_realloc(p, 2 * n);
    cr_assert_not_null(q);
    cr_assert_eq(all_bytes(q, n, (uint8_t)(i & 0xff)), n, "round %u: contents lost", i);
    cr_assert_leq(nm_segment_moves_live(), NM_MOVES_MAX, "round %u: past the cap", i);
    if (full) {
      after_cap++;
      cr_assert_eq(nm_segment_moves_live(), NM_MOVES_MAX);
      if (q != p) cr_assert_neq(resident_pages(p, 2 * NM_SLICE_SIZE), 0u, "round %u: moved past the cap", i);
    }
    nm_free(q);
    nm_free(wall);
  }
  cr_assert_eq(after_cap, 64u, "the cap was never reached (%zu moves live)", nm_segment_moves_live());
  /* Every block is gone: the trim unmaps the segments, and their moves no longer count. */
  nm_free(anchor);
  nm_heap_trim(nm_tls_heap);
  cr_assert_lt(nm_segment_moves_live(), NM_MOVES_MAX, "unmapped segments still count (%zu)", nm_segment_moves_live());
}

/* Address space this process has mapped now (VmSize), in bytes. */
static size_t vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  cr_assert_not_null(f);
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
  fclose(f);
  cr_assert_gt(kb, 0u);
  return kb << 10;
}

/* When the old slices cannot get fresh pages back (the address space is at its limit), the
 * move still completes: the contents are moved, the old slices stay unmapped (not mapped,
 * not dirty, not ours to a free), and a later page maps them again once there is room. */
Test(pool, realloc_move_leaves_slices_unmapped_at_the_limit) {
  SKIP_WHERE_REALLOC_COPIES();
#if defined(__SANITIZE_ADDRESS__)
  cr_skip_test("AddressSanitizer reserves terabytes of shadow: no address-space limit fits");
#endif
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t n = 6 * NM_SLICE_SIZE - 100;
  uint8_t *p = nm_malloc(n);
  uint8_t *wall = nm_malloc(n);
  uint8_t *room = nm_malloc(3 * n);   /* a run the move can take without a new mapping */
  cr_assert(p != NULL && wall != NULL && room != NULL);
  nm_free(room);
  fill(p, n, 21);
  nm_totals_t t0 = totals();
  struct rlimit old;
  cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
  /* The move itself maps nothing (it drops the new page's own pages for the old ones); giving
   * the old slices fresh pages back needs their size again, which a limit a page below
   * what is mapped now refuses. */
  struct rlimit tight = { vm_size() - 4096, old.rlim_max };
  cr_assert_eq(setrlimit(RLIMIT_AS, &tight), 0);
  uint8_t *q = nm_realloc(p, 2 * n);
  cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
  cr_assert_not_null(q);
  cr_assert_neq(q, p);
  cr_assert_eq(verify(q, n, 21), n, "contents lost in the move");
  nm_totals_t t1 = totals();
  cr_assert(!nm_os_mapped(p), "the old range is mapped: the limit did not refuse its fresh pages");
  cr_assert_eq(t0.mapped - t1.mapped, 6 * NM_SLICE_SIZE, "mapped bytes did not drop by the unmapped slices");
  /* The new page took the freed run (dirty); the unmapped slices added nothing to dirty. */
  size_t taken = (size_t)nm_segment_page_of(q)->slice_count << NM_SLICE_SHIFT;
  cr_assert_eq(t0.dirty - t1.dirty, taken, "dirty went %zu -> %zu with %zu taken: unmapped slices count as dirty",
               t0.dirty, t1.dirty, taken);
  cr_assert(!nm_segment_holds(p), "a pointer into the unmapped slices is taken for ours");
  /* With room again, the slices are mapped for the next page that needs them. */
  uint8_t *r = nm_malloc(n);
  cr_assert_eq(r, p, "the unmapped run was not mapped again for the next page");
  fill(r, n, 22);
  cr_assert_eq(verify(r, n, 22), n);
  cr_assert_eq(verify(q, n, 21), n);
  nm_free(r);
  nm_free(q);
  nm_free(wall);
}

/* Blocks a warm-page test holds (each test runs in a process of its own), freed by
 * free_held; NULL where one was freed already. */
enum { HELD_CAP = 8192 };
static void *held[HELD_CAP];
static size_t held_count;

static bool slice_warm(const nm_page_t *pg) {
  const nm_segment_t *s = nm_segment_of(pg);
  return (s->warm_mask >> (pg - s->slices)) & 1;
}

/* Allocates blocks of size n (into held[]) until one comes from another page than the
 * first one did; returns that block. */
static void *alloc_until_new_page(size_t n) {
  nm_page_t *start = NULL;
  for (;;) {
    cr_assert_lt(held_count, HELD_CAP, "no new page after %d blocks", HELD_CAP);
    void *b = nm_malloc(n);
    cr_assert_not_null(b);
    held[held_count++] = b;
    nm_page_t *pg = nm_segment_page_of(b);
    if (start == NULL) start = pg;
    else if (pg != start) return b;
  }
}

/* A one-slice page that empties while another page is current goes back to its segment
 * "warm": its slice is free (and dirty) but the page stays laid out, its free list whole,
 * and the next page its class needs is that one again, with no carving. */
Test(pool, retired_page_comes_back_warm) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t n = 64;
  void *a0 = nm_malloc(n);
  held[held_count++] = a0;
  nm_page_t *a = nm_segment_page_of(a0);
  cr_assert_eq(a->slice_count, 1u);
  unsigned cls = a->class_idx;
  void *b0 = alloc_until_new_page(n);   /* a is full, b current */
  nm_page_t *b = nm_segment_page_of(b0);
  cr_assert_eq(a->capacity, a->reserved, "a filled up before b was made");
  for (size_t i = 0; i < held_count; i++)
    if (nm_segment_page_of(held[i]) == a) {
      memset(held[i], 0xc3, n);
      nm_free(held[i]);
      held[i] = NULL;
    }
  nm_segment_t *s = nm_segment_of(a);
  unsigned at = (unsigned)(a - s->slices);
  cr_assert_eq(a->slice_count, 0u, "a was retired");
  cr_assert((s->warm_mask >> at) & 1, "a's slice is not marked warm");
  cr_assert((s->free_mask >> at) & 1);
  cr_assert((s->dirty_mask >> at) & 1);
  cr_assert_eq(nm_tls_heap->warm[cls].last, a);
  /* Fill b; the next page of the class is a again, already carved out. */
  void *c0 = alloc_until_new_page(n);
  cr_assert_eq(nm_segment_page_of(c0), a, "the class took new slices, not its warm page");
  cr_assert_eq(a->slice_count, 1u);
  cr_assert_eq(a->capacity, a->reserved, "the warm page was carved again (%u of %u)", a->capacity, a->reserved);
  cr_assert_eq(atomic_load(&a->owner), (uintptr_t)nm_tls_heap);
  cr_assert_eq(a->used, 2u, "one block and the current-page bias");
  cr_assert(!((s->warm_mask >> at) & 1) && !((s->free_mask >> at) & 1) && !((s->dirty_mask >> at) & 1));
  cr_assert_null(nm_tls_heap->warm[cls].first);
  cr_assert_neq(b, a);
  /* Every block of a comes back once, inside a; calloc zeroes a dirty one. */
  size_t from_a = 1;
  for (uint32_t i = 1; i < a->reserved; i++) {
    uint8_t *p = (i % 7 == 0) ? nm_calloc(1, n) : nm_malloc(n);
    cr_assert_eq(nm_segment_page_of(p), a);
    if (i % 7 == 0) cr_assert_eq(all_bytes(p, n, 0), n, "calloc on a warm page: byte %zu not zero", all_bytes(p, n, 0));
    held[held_count++] = p;
    from_a++;
  }
  cr_assert_eq(from_a, a->reserved);
  cr_assert_null(a->free);
  qsort(held, held_count, sizeof *held, cmp_ptr);
  size_t live = 0;
  for (size_t i = 0; i < held_count; i++) {
    if (held[i] == NULL) continue;
    if (live > 0) cr_assert_neq(held[i], held[i - 1], "block %p handed out twice", held[i]);
    live++;
  }
  for (size_t i = 0; i < held_count; i++)
    if (held[i] != NULL) nm_free(held[i]);
}

/* Fills a page of n-byte blocks and the start of the next, then frees the first page's
 * blocks: that page retires warm. Returns it. */
static nm_page_t *make_warm_page(size_t n) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  void *a0 = nm_malloc(n);
  cr_assert_not_null(a0);
  held[held_count++] = a0;
  nm_page_t *a = nm_segment_page_of(a0);
  alloc_until_new_page(n);
  for (size_t i = 0; i < held_count; i++)
    if (held[i] != NULL && nm_segment_page_of(held[i]) == a) {
      memset(held[i], 0x5d, n);
      nm_free(held[i]);
      held[i] = NULL;
    }
  cr_assert(slice_warm(a), "the emptied page did not retire warm");
  return a;
}

static void free_held(void) {
  for (size_t i = 0; i < held_count; i++)
    if (held[i] != NULL) nm_free(held[i]);
}

/* A warm page the heap went through more than NM_WARM_HOT_BYTES of pages since is not
 * followed (its free list would be read line by line from memory) but carved again, on the
 * same resident slice. The clock moves by a page's bytes at each take and retire. */
Test(pool, warm_page_gone_cold_is_carved_again) {
  size_t n = 64;
  nm_page_t *a = make_warm_page(n);
  nm_heap_t *h = nm_tls_heap;
  cr_assert_eq(a->retired_at, h->page_clock, "a's retirement is the clock's last tick");
  uint64_t clock = h->page_clock;
  void *big = nm_malloc(NM_SLICE_SIZE + 1);   /* a large page: two slices taken */
  cr_assert_not_null(big);
  cr_assert_eq(h->page_clock - clock, 2 * NM_SLICE_SIZE);
  nm_free(big);
  cr_assert_eq(h->page_clock - clock, 4 * NM_SLICE_SIZE);
  cr_assert(slice_warm(a), "the large page took a's slice");
  h->page_clock = a->retired_at + NM_WARM_HOT_BYTES + 1;   /* as if 8 MiB of pages came and went */
  void *c0 = alloc_until_new_page(n);
  cr_assert_eq(nm_segment_page_of(c0), a, "the class did not take its warm page's slice");
  cr_assert_lt(a->capacity, a->reserved, "a cold warm page was followed, not carved again");
  cr_assert_eq(a->used, 2u);
  cr_assert_eq(a->allocs, 1u, "the count of the page's first life was kept");
  free_held();
}

/* A trim purges warm pages: off the warm list, and the class's next page is carved afresh
 * on memory that reads zero. */
Test(pool, trim_purges_warm_pages) {
  size_t n = 64;
  nm_page_t *a = make_warm_page(n);
  unsigned cls = a->class_idx;
  nm_trim(0);
  cr_assert(!slice_warm(a), "a purged slice is still warm");
  cr_assert_null(nm_tls_heap->warm[cls].first);
  void *c0 = alloc_until_new_page(n);
  nm_page_t *c = nm_segment_page_of(c0);
  cr_assert_lt(c->capacity, c->reserved, "the page made after the purge was not carved afresh");
  /* Past the free-list link malloc leaves in its first word, the block reads zero. */
  cr_assert(c->zeroed, "a page on purged slices is not known to be zeroed");
  cr_assert_eq(all_bytes((uint8_t *)c0 + sizeof(void *), n - sizeof(void *), 0), n - sizeof(void *),
               "a purged slice kept old contents");
  free_held();
}

/* Another class short of slices takes a warm page's slice when no other resident one is
 * free (before it faults in a clean one): the warm page is gone from its list, the slice
 * is carved for the new class, and the old class makes a page of its own later. */
Test(pool, other_class_takes_a_warm_slice) {
  size_t n = 64, m = 2000;
  nm_trim(0);   /* no other resident free slice */
  nm_page_t *a = make_warm_page(n);
  unsigned cls = a->class_idx;
  uint8_t *x[8];
  for (int i = 0; i < 8; i++) {
    x[i] = nm_malloc(m);
    cr_assert_not_null(x[i]);
    memset(x[i], 0x40 + i, m);
  }
  cr_assert_eq(nm_segment_page_of(x[0]), a, "the other class took a clean slice, not the resident warm one");
  cr_assert_neq(a->class_idx, cls);
  cr_assert(!slice_warm(a));
  cr_assert_null(nm_tls_heap->warm[cls].first);
  void *c0 = alloc_until_new_page(n);
  cr_assert_neq(nm_segment_page_of(c0), a);
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(all_bytes(x[i], m, (uint8_t)(0x40 + i)), m, "block %d of the new class corrupted", i);
    nm_free(x[i]);
  }
  free_held();
}

/* New pages take resident free slices without a warm page before warm ones (even when a
 * warm one comes first in the segment), so warm pages wait for their own class. */
Test(pool, new_pages_leave_warm_slices_to_their_class) {
  size_t n = 64, m = 2000, big = 2 * NM_SLICE_SIZE - 8192;
  nm_trim(0);
  nm_page_t *a = make_warm_page(n);
  uint8_t *l = nm_malloc(big);   /* two slices: not a's one, so clean ones after it */
  cr_assert_not_null(l);
  memset(l, 0x21, big);
  nm_page_t *lp = nm_segment_page_of(l);
  cr_assert_eq(lp->slice_count, 2u);
  cr_assert(nm_segment_of(lp) == nm_segment_of(a) && lp > a, "the large block lies after the warm page (test premise)");
  nm_free(l);   /* lp's slices: resident, not warm */
  void *x = nm_malloc(m);
  cr_assert_not_null(x);
  cr_assert_eq(nm_segment_page_of(x), lp, "the new page took %p, not the resident slice without a warm page (%p)",
               (void *)nm_segment_page_of(x), (void *)lp);
  cr_assert(slice_warm(a), "the warm page lost its slice");
  nm_free(x);
  free_held();
}

/* Carving writes a link into each block it carves: a fresh page of blocks above 4 KiB
 * carves one at a time, so one malloc faults in that block's first page only (a program's
 * one 4 KiB stdio buffer used to fault four). */
Test(pool, fresh_page_of_big_blocks_touches_one_block) {
  cr_assert_eq(nm_runtime_init(NULL), 0);
  size_t sizes[] = { 4096, 6000, 12000 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    nm_trim(0);   /* the next page is made on clean slices */
    uint8_t *p = nm_malloc(sizes[i]);
    cr_assert_not_null(p);
    nm_page_t *pg = nm_segment_page_of(p);
    cr_assert(pg->zeroed, "size %zu: the page is not on clean slices (test premise)", sizes[i]);
    size_t span = (size_t)pg->slice_count << NM_SLICE_SHIFT;
    size_t res = resident_pages(pg->start, span);
    cr_assert_leq(res, 1u, "size %zu: %zu pages of a fresh page resident after one malloc", sizes[i], res);
    nm_free(p);
  }
}
