/* The pool allocator: exact capacity, alignment, reuse, growth, pointer checks, double
 * frees, poisoning, budgets, the common interface, and the lock-free free list under
 * threads (also built standalone for ThreadSanitizer). */
#ifndef NM_UNIT_STANDALONE
#include <criterion/criterion.h>
#else
#include "standalone.h"
#endif
#include "thread_checks.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nebula/memory.h>
#include <nebula/budget.h>
#include <nebula/pool.h>


static nebula_pool_t *make_pool(const char *name, size_t size, size_t align, size_t count, bool grow) {
  nebula_pool_options_t o = { .name = name, .block_size = size, .alignment = align, .block_count = count,
                              .grow = grow };
  nebula_pool_t *p = nebula_pool_create(&o);
  cr_assert_not_null(p, "create %s: %s", name, nebula_last_error()->detail);
  return p;
}

static nebula_allocator_state_t state_of(nebula_pool_t *p) {
  nebula_allocator_state_t s;
  nebula_pool_state(p, &s);
  return s;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* The blocks are distinct and at least stride apart. */
static void check_distinct(void **v, size_t n, size_t stride) {
  void **s = malloc(n * sizeof *s);
  cr_assert_not_null(s);
  memcpy(s, v, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_ptr);
  for (size_t i = 1; i < n; i++)
    cr_assert_geq((uintptr_t)s[i] - (uintptr_t)s[i - 1], stride, "blocks %p and %p overlap", s[i - 1], s[i]);
  free(s);
}

/* ---- basics ------------------------------------------------------------------------------- */

Test(pool, capacity_is_exact) {
  nebula_pool_t *p = make_pool("exact", 24, 0, 100, false);
  cr_assert_eq(nebula_pool_block_size(p), 32u, "24 bytes rounded up to 16");
  void *v[100];
  for (int i = 0; i < 100; i++) {
    v[i] = nebula_pool_alloc(p);
    cr_assert_not_null(v[i], "block %d", i);
    memset(v[i], i, 32);
  }
  check_distinct(v, 100, 32);
  uintptr_t lo = (uintptr_t)v[0], hi = lo;
  for (int i = 0; i < 100; i++) {
    lo = (uintptr_t)v[i] < lo ? (uintptr_t)v[i] : lo;
    hi = (uintptr_t)v[i] > hi ? (uintptr_t)v[i] : hi;
  }
  cr_assert_eq(hi - lo, 99u * 32, "one chunk, blocks packed");
  nebula_error_clear();
  cr_assert_null(nebula_pool_alloc(p), "block 101 of 100");
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_CAPACITY);
  cr_assert_str_eq(e->function, "nebula_pool_alloc");
  cr_assert_str_eq(e->allocator, "exact");
  cr_assert_eq(e->state.allocations, 100u);
  cr_assert_eq(e->state.used, 3200u);
  cr_assert_eq(e->state.capacity, 3200u);
  cr_assert_eq(e->state.available, 0u);
  cr_assert(strstr(e->detail, "100 blocks") != NULL, "detail: %s", e->detail);
  for (int i = 0; i < 100; i++) {
    for (int j = 0; j < 32; j++)
      cr_assert_eq(((unsigned char *)v[i])[j], (unsigned char)i, "block %d intact", i);
    cr_assert(nebula_pool_free(p, v[i]));
  }
  nebula_allocator_state_t s = state_of(p);
  cr_assert_eq(s.used, 0u);
  cr_assert_eq(s.allocations, 0u);
  cr_assert_eq(s.peak, 3200u);
  cr_assert_eq(s.capacity, 3200u);
  nebula_pool_destroy(p);
}

Test(pool, alignment_8_to_4096) {
  for (size_t align = 8; align <= 4096; align *= 2) {
    nebula_pool_t *p = make_pool("aligned", 40, align, 33, false);
    size_t stride = (40 + align - 1) / align * align;
    cr_assert_eq(nebula_pool_block_size(p), stride, "alignment %zu", align);
    void *v[33];
    for (int i = 0; i < 33; i++) {
      v[i] = nebula_pool_alloc(p);
      cr_assert_not_null(v[i]);
      cr_assert_eq((uintptr_t)v[i] % align, 0u, "alignment %zu: %p", align, v[i]);
      cr_assert_eq(nebula_usable_size(nebula_pool_allocator(p), v[i]), stride);
      memset(v[i], 0xAB, stride);
    }
    check_distinct(v, 33, stride);
    cr_assert_null(nebula_pool_alloc(p));
    for (int i = 0; i < 33; i++) cr_assert(nebula_pool_free(p, v[i]));
    nebula_pool_destroy(p);
  }
}

Test(pool, small_alignments_are_raised_to_8_and_bad_options_refused) {
  nebula_pool_t *p = make_pool("small", 3, 1, 4, false);
  cr_assert_eq(nebula_pool_block_size(p), 8u);
  for (int i = 0; i < 4; i++) {
    void *b = nebula_pool_alloc(p);
    cr_assert_eq((uintptr_t)b % 8, 0u);
  }
  nebula_pool_destroy(p);   /* with blocks still allocated: freed with it */

  nebula_pool_options_t o = { .block_size = 16, .block_count = 4, .alignment = 24 };
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  o.alignment = (size_t)1 << 21;
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  o.alignment = 0;
  o.block_size = 0;
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  o.block_size = 16;
  o.block_count = 0;
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  o.block_size = SIZE_MAX / 4;
  o.block_count = 8;
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_OVERFLOW);
  o.block_size = SIZE_MAX - 3;
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_OVERFLOW);
  cr_assert_null(nebula_pool_create(NULL));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
}

Test(pool, null_arguments) {
  cr_assert_null(nebula_pool_alloc(NULL));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_not(nebula_pool_free(NULL, (void *)64));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  nebula_pool_t *p = make_pool(NULL, 8, 0, 1, false);
  cr_assert(nebula_pool_free(p, NULL), "NULL is a no-op");
  cr_assert_str_eq(nebula_allocator_name(nebula_pool_allocator(p)), "pool");
  cr_assert_null(nebula_pool_allocator(NULL));
  nebula_pool_destroy(p);
  nebula_pool_destroy(NULL);
}

Test(pool, free_then_alloc_reuses_the_block) {
  nebula_pool_t *p = make_pool("reuse", 64, 0, 8, false);
  char *a = nebula_pool_alloc(p);
  char *b = nebula_pool_alloc(p);
  strcpy(b, "keep me");
  cr_assert(nebula_pool_free(p, a));
  char *c = nebula_pool_alloc(p);
  cr_assert_eq(c, a, "the block just freed comes back first");
  cr_assert_str_eq(b, "keep me");
  /* Cycling one block many times never exhausts the pool. */
  for (int i = 0; i < 10000; i++) {
    void *x = nebula_pool_alloc(p);
    cr_assert_not_null(x);
    cr_assert(nebula_pool_free(p, x));
  }
  cr_assert_eq(state_of(p).allocations, 2u);
  cr_assert_eq(state_of(p).peak, 3u * 64, "peak: a, b and the cycling block");
  nebula_pool_free(p, b);
  nebula_pool_free(p, c);
  nebula_pool_destroy(p);
}

Test(pool, grow_adds_chunks_of_the_same_count) {
  nebula_pool_t *p = make_pool("grower", 48, 0, 16, true);
  cr_assert_eq(state_of(p).capacity, 16u * 48);
  void *v[100];
  for (int i = 0; i < 100; i++) {
    v[i] = nebula_pool_alloc(p);
    cr_assert_not_null(v[i], "block %d: %s", i, nebula_last_error()->detail);
    memset(v[i], i, 48);
  }
  check_distinct(v, 100, 48);
  nebula_allocator_state_t s = state_of(p);
  cr_assert_eq(s.capacity, 7u * 16 * 48, "7 chunks of 16 for 100 blocks");
  cr_assert_eq(s.used, 100u * 48);
  cr_assert_eq(s.available, 12u * 48);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(((unsigned char *)v[i])[47], (unsigned char)i);
    cr_assert(nebula_pool_free(p, v[i]), "block %d of chunk %d", i, i / 16);
  }
  s = state_of(p);
  cr_assert_eq(s.used, 0u);
  cr_assert_eq(s.peak, 100u * 48);
  cr_assert_eq(s.capacity, 7u * 16 * 48, "chunks are kept until destroy");
  /* All 112 blocks are usable again, and no more chunk is needed for them. */
  void *w[112];
  for (int i = 0; i < 112; i++) cr_assert_not_null(w[i] = nebula_pool_alloc(p));
  cr_assert_eq(state_of(p).capacity, 7u * 16 * 48);
  check_distinct(w, 112, 48);
  for (int i = 0; i < 112; i++) cr_assert(nebula_pool_free(p, w[i]));
  nebula_pool_destroy(p);
}

/* ---- pointer checks ----------------------------------------------------------------------- */

Test(pool, foreign_interior_and_misaligned_pointers_are_rejected) {
  nebula_pool_t *p = make_pool("checked", 64, 0, 32, false);
  char *v[20];
  for (int i = 0; i < 20; i++) v[i] = nebula_pool_alloc(p);
  char *last = v[19];
  memset(last, 'x', 64);
  nebula_allocator_state_t before = state_of(p);

  int local;
  void *heap = malloc(64);
  void *foreign[] = { &local, heap, (void *)16 };
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
    nebula_error_clear();
    cr_assert_not(nebula_pool_free(p, foreign[i]));
    const nebula_error_t *e = nebula_last_error();
    cr_assert_eq(e->code, NEBULA_ERR_INVALID_POINTER);
    cr_assert_eq(e->pointer, foreign[i]);
    cr_assert_str_eq(e->allocator, "checked");
    cr_assert(strstr(e->detail, "not in any chunk") != NULL, "detail: %s", e->detail);
    cr_assert(strstr(e->detail, "checked") != NULL, "detail names the pool: %s", e->detail);
  }
  free(heap);

  /* Block 17 + 24 bytes: whatever the order of the blocks, find the one at index 17. */
  char *base = v[0];
  for (int i = 0; i < 20; i++) base = v[i] < base ? v[i] : base;
  nebula_error_clear();
  cr_assert_not(nebula_pool_free(p, base + 17 * 64 + 24));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert(strstr(e->detail, "interior pointer, 24 bytes into block 17") != NULL, "detail: %s", e->detail);
  cr_assert_not(nebula_pool_free(p, last + 1));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert(strstr(nebula_last_error()->detail, "1 bytes into") != NULL);
  cr_assert_not(nebula_pool_free(p, base + 32 * 64), "just past the chunk");
  cr_assert(strstr(nebula_last_error()->detail, "not in any chunk") != NULL);
  cr_assert_not(nebula_pool_free(p, base - 64), "just before the chunk");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);

  /* Nothing changed: the memory, the counters, and the pool still works. */
  for (int j = 0; j < 64; j++) cr_assert_eq(last[j], 'x');
  nebula_allocator_state_t after = state_of(p);
  cr_assert_eq(after.used, before.used);
  cr_assert_eq(after.allocations, 20u);
  for (int i = 0; i < 20; i++) cr_assert(nebula_pool_free(p, v[i]));
  void *w[32];
  for (int i = 0; i < 32; i++) cr_assert_not_null(w[i] = nebula_pool_alloc(p));
  check_distinct(w, 32, 64);
  cr_assert_null(nebula_pool_alloc(p));
  nebula_pool_destroy(p);
}

Test(pool, double_free_is_detected) {
  nebula_pool_t *p = make_pool("twice", 32, 0, 4, false);
  void *a = nebula_pool_alloc(p);
  void *b = nebula_pool_alloc(p);
  cr_assert(nebula_pool_free(p, a));
  nebula_error_clear();
  cr_assert_not(nebula_pool_free(p, a));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_DOUBLE_FREE);
  cr_assert_eq(e->pointer, a);
  cr_assert_str_eq(e->allocator, "twice");
  cr_assert(strstr(e->detail, "already free") != NULL, "detail: %s", e->detail);
  cr_assert_eq(state_of(p).allocations, 1u, "the second free changed nothing");
  /* The block is on the free list once: 4 blocks come out, all distinct, then none. */
  void *v[4] = { b };
  for (int i = 1; i < 4; i++) cr_assert_not_null(v[i] = nebula_pool_alloc(p));
  check_distinct(v, 4, 32);
  cr_assert_null(nebula_pool_alloc(p));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CAPACITY);
  /* A block never handed out is free too. */
  for (int i = 0; i < 4; i++) cr_assert(nebula_pool_free(p, v[i]));
  cr_assert_not(nebula_pool_free(p, v[2]));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_DOUBLE_FREE);
  nebula_pool_destroy(p);
}

Test(pool, poison_fills_freed_blocks) {
  nebula_pool_options_t o = { .name = "poisoned", .block_size = 40, .block_count = 4, .poison = true };
  nebula_pool_t *p = nebula_pool_create(&o);
  cr_assert_not_null(p);
  unsigned char *a = nebula_pool_alloc(p);
  memset(a, 0x11, 48);
  cr_assert(nebula_pool_free(p, a));
  unsigned char *b = nebula_pool_alloc(p);
  cr_assert_eq(b, a, "LIFO: the same block");
  for (int i = 0; i < 48; i++) cr_assert_eq(b[i], 0xDF, "byte %d: %#x", i, b[i]);
  cr_assert(nebula_pool_free(p, b));
  nebula_pool_destroy(p);
}

#if defined(__SANITIZE_ADDRESS__)
#define NM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NM_TEST_ASAN 1
#endif
#endif
#ifdef NM_TEST_ASAN
int __asan_address_is_poisoned(void const volatile *addr);

/* Under AddressSanitizer free blocks are poisoned whatever the option: a use after free
 * is reported by the tool. */
Test(pool, asan_sees_free_blocks_as_poisoned) {
  nebula_pool_t *p = make_pool("asan", 32, 0, 4, false);
  char *a = nebula_pool_alloc(p);
  char *b = nebula_pool_alloc(p);
  cr_assert_not(__asan_address_is_poisoned(a));
  cr_assert_not(__asan_address_is_poisoned(a + 31));
  cr_assert(__asan_address_is_poisoned(b + 32), "blocks never handed out are poisoned");
  cr_assert(nebula_pool_free(p, a));
  cr_assert(__asan_address_is_poisoned(a));
  cr_assert(__asan_address_is_poisoned(a + 31));
  cr_assert_not(__asan_address_is_poisoned(b), "the neighbour is untouched");
  cr_assert_eq(nebula_pool_alloc(p), (void *)a);
  cr_assert_not(__asan_address_is_poisoned(a + 31));
  nebula_pool_destroy(p);
}
#endif

/* ---- the common interface ----------------------------------------------------------------- */

Test(pool, common_interface) {
  nebula_pool_t *p = make_pool("iface", 100, 32, 8, false);
  nebula_allocator_t *a = nebula_pool_allocator(p);
  cr_assert_str_eq(nebula_allocator_name(a), "iface");
  cr_assert_eq(nebula_pool_block_size(p), 128u);
  char *x = nebula_allocate(a, 128, 32);
  cr_assert_not_null(x);
  cr_assert_eq((uintptr_t)x % 32, 0u);
  char *z = nebula_allocate(a, 0, 0);
  cr_assert_not_null(z, "size 0: a block");
  cr_assert_neq(z, x);
  cr_assert_eq(nebula_usable_size(a, x), 128u);
  int local;
  cr_assert_eq(nebula_usable_size(a, &local), 0u, "foreign");
  cr_assert_eq(nebula_usable_size(a, x + 8), 0u, "interior");

  nebula_error_clear();
  cr_assert_null(nebula_allocate(a, 129, 0));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_eq(e->size, 129u);
  cr_assert(strstr(e->detail, "128 bytes") != NULL, "detail: %s", e->detail);
  cr_assert_null(nebula_allocate(a, 8, 64));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_null(nebula_allocate(a, 8, 24));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);

  strcpy(x, "contents");
  cr_assert_eq(nebula_reallocate(a, x, 10, 0), x, "fits: same block");
  cr_assert_eq(nebula_reallocate(a, x, 128, 32), x);
  nebula_error_clear();
  cr_assert_null(nebula_reallocate(a, x, 129, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_UNSUPPORTED);
  cr_assert_str_eq(x, "contents", "unchanged after a refused resize");
  cr_assert_null(nebula_reallocate(a, x + 4, 8, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  char *y = nebula_reallocate(a, NULL, 16, 0);
  cr_assert_not_null(y, "NULL: allocate");

  nebula_allocator_state_t s;
  nebula_allocator_state(a, &s);
  cr_assert_eq(s.allocations, 3u);
  cr_assert_eq(s.used, 3u * 128);
  cr_assert_eq(s.capacity, 8u * 128);
  cr_assert_eq(s.available, 5u * 128);
  cr_assert(s.utilization > 0.37 && s.utilization < 0.38);

  cr_assert(nebula_deallocate(a, x));
  cr_assert_not(nebula_deallocate(a, x));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_DOUBLE_FREE);
  cr_assert_str_eq(nebula_last_error()->function, "nebula_deallocate");
  cr_assert_eq(nebula_usable_size(a, x), 0u, "a free block is not usable");
  cr_assert_null(nebula_reallocate(a, x, 8, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert(nebula_deallocate(a, NULL));
  cr_assert(nebula_deallocate(a, y));
  nebula_allocator_destroy(a);   /* destroys the pool, with z still allocated */
}

Test(pool, error_report_names_the_pool) {
  nebula_pool_t *p = make_pool("reported", 16, 0, 2, false);
  void *a = nebula_pool_alloc(p), *b = nebula_pool_alloc(p);
  cr_assert_null(nebula_pool_alloc(p));
  char buf[1024];
  size_t n = nebula_error_format(nebula_last_error(), buf, sizeof buf);
  cr_assert(n > 0 && n < sizeof buf);
  cr_assert(strstr(buf, "nebula_pool_alloc failed: capacity exhausted") != NULL, "%s", buf);
  cr_assert(strstr(buf, "reported") != NULL, "%s", buf);
  nebula_pool_free(p, a);
  nebula_pool_free(p, b);
  nebula_pool_destroy(p);
}

/* ---- budgets and configuration ------------------------------------------------------------ */

Test(pool, budget_is_charged_per_chunk_and_released) {
  /* 64 blocks of 64 bytes: one 4 KiB page per chunk. */
  nebula_budget_t *bud = nebula_budget_create("pools", 3 * 4096, NULL);
  cr_assert_not_null(bud);
  nebula_pool_options_t o = { .name = "budgeted", .block_size = 64, .block_count = 64, .grow = true,
                              .budget = bud };
  nebula_pool_t *p = nebula_pool_create(&o);
  cr_assert_not_null(p);
  cr_assert_eq(nebula_budget_used(bud), 4096u, "the first chunk");
  void *v[192];
  for (int i = 0; i < 192; i++) cr_assert_not_null(v[i] = nebula_pool_alloc(p), "block %d", i);
  cr_assert_eq(nebula_budget_used(bud), 3u * 4096);
  nebula_error_clear();
  cr_assert_null(nebula_pool_alloc(p), "a fourth chunk passes the budget");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  cr_assert_eq(nebula_budget_used(bud), 3u * 4096, "nothing kept from the refused chunk");
  cr_assert_eq(state_of(p).capacity, 3u * 4096);
  cr_assert(nebula_pool_free(p, v[5]));
  cr_assert_eq(nebula_pool_alloc(p), v[5], "still works after the refusal");
  nebula_pool_destroy(p);
  cr_assert_eq(nebula_budget_used(bud), 0u, "released at destroy");

  /* A budget too small for the first chunk fails the creation with the budget's error. */
  nebula_budget_t *tiny = nebula_budget_create("tiny", 1000, NULL);
  o.budget = tiny;
  nebula_error_clear();
  cr_assert_null(nebula_pool_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  cr_assert_eq(nebula_budget_used(tiny), 0u);
  cr_assert(nebula_budget_destroy(tiny));
  cr_assert(nebula_budget_destroy(bud));
}

Test(pool, created_from_config) {
  nebula_pool_t *p =
    nebula_pool_create_from_config("name=cfgpool,block_size=48,block_count=10,alignment=64,budget=1M,"
                                   "poison=true,grow=false");
  cr_assert_not_null(p, "%s", nebula_last_error()->detail);
  nebula_allocator_t *a = nebula_pool_allocator(p);
  cr_assert_str_eq(nebula_allocator_name(a), "cfgpool");
  cr_assert_eq(nebula_pool_block_size(p), 64u);
  cr_assert_eq(state_of(p).capacity, 640u);
  void *v[10];
  for (int i = 0; i < 10; i++) {
    cr_assert_not_null(v[i] = nebula_pool_alloc(p));
    cr_assert_eq((uintptr_t)v[i] % 64, 0u);
  }
  cr_assert_null(nebula_pool_alloc(p), "grow=false");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CAPACITY);
  unsigned char *b = v[3];
  nebula_pool_free(p, b);
  cr_assert_eq(nebula_pool_alloc(p), (void *)b);
  cr_assert_eq(b[0], 0xDF, "poison=true fills freed blocks");
  nebula_pool_destroy(p);   /* and its own budget */

  p = nebula_pool_create_from_config("block_size=16,block_count=4,grow=true");
  cr_assert_not_null(p);
  for (int i = 0; i < 9; i++) cr_assert_not_null(nebula_pool_alloc(p));
  cr_assert_eq(state_of(p).capacity, 3u * 4 * 16);
  nebula_pool_destroy(p);

  p = nebula_pool_create_from_config(NULL);
  cr_assert_not_null(p, "the preset's values");
  nebula_pool_destroy(p);

  cr_assert_null(nebula_pool_create_from_config("block_size=lots"));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CONFIG);
  cr_assert_null(nebula_pool_create_from_config("alignment=24"));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CONFIG);

  /* A budget smaller than the first chunk: the budget's error, and no leak of the budget. */
  cr_assert_null(nebula_pool_create_from_config("block_size=4096,block_count=4,budget=4K"));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
}

/* ---- threads ------------------------------------------------------------------------------ */


/* What a thread writes in a block it owns, checked by whoever frees it. */
typedef struct {
  uint64_t tid, seq, check;
} stamp_t;

#define STAMP_KEY 0x9e3779b97f4a7c15ull
#define MAILBOXES 64

typedef struct {
  nebula_pool_t *pool;
  uintptr_t base;             /* the pool's single chunk (learnt by allocating every block) */
  size_t stride, count;
  atomic_uchar *owned;        /* per block: handed out and not yet freed */
  _Atomic(stamp_t *) mail[MAILBOXES];
  int cycles;
  atomic_int start;
} shared_t;

typedef struct {
  shared_t *sh;
  int tid;
} worker_t;

static size_t block_no(shared_t *sh, const void *b) {
  uintptr_t v = (uintptr_t)b;
  if (v < sh->base || (v - sh->base) % sh->stride || (v - sh->base) / sh->stride >= sh->count) {
    fail("block %p outside the chunk", b);
    return 0;
  }
  return (v - sh->base) / sh->stride;
}

static void *take(shared_t *sh) {
  void *b = nebula_pool_alloc(sh->pool);
  if (b == NULL) return NULL;
  if (atomic_exchange_explicit(&sh->owned[block_no(sh, b)], 1, memory_order_relaxed))
    fail("block %p handed out twice", b);
  return b;
}

static void give_back(shared_t *sh, void *b) {
  if (!atomic_exchange_explicit(&sh->owned[block_no(sh, b)], 0, memory_order_relaxed))
    fail("block %p freed while not owned", b);
  if (!nebula_pool_free(sh->pool, b)) fail("free %p: %s", b, nebula_last_error()->detail);
}

static shared_t *shared_new(size_t size, size_t count, int cycles) {
  shared_t *sh = calloc(1, sizeof *sh);
  sh->pool = make_pool("threads", size, 0, count, false);
  sh->stride = nebula_pool_block_size(sh->pool);
  sh->count = count;
  sh->cycles = cycles;
  sh->owned = calloc(count, sizeof *sh->owned);
  void **all = malloc(count * sizeof *all);
  sh->base = UINTPTR_MAX;
  for (size_t i = 0; i < count; i++) {
    all[i] = nebula_pool_alloc(sh->pool);
    cr_assert_not_null(all[i]);
    if ((uintptr_t)all[i] < sh->base) sh->base = (uintptr_t)all[i];
  }
  for (size_t i = 0; i < count; i++) cr_assert(nebula_pool_free(sh->pool, all[i]));
  free(all);
  atomic_store(&failures, 0);
  return sh;
}

static void shared_end(shared_t *sh) {
  check_no_failures();
  for (size_t i = 0; i < sh->count; i++)
    cr_assert_eq(atomic_load(&sh->owned[i]), 0, "block %zu still owned", i);
  nebula_allocator_state_t s = state_of(sh->pool);
  cr_assert_eq(s.allocations, 0u, "live blocks at the end");
  cr_assert_eq(s.used, 0u);
  /* Every block is on the free list exactly once. */
  void **all = malloc(sh->count * sizeof *all);
  for (size_t i = 0; i < sh->count; i++) cr_assert_not_null(all[i] = nebula_pool_alloc(sh->pool));
  cr_assert_null(nebula_pool_alloc(sh->pool));
  check_distinct(all, sh->count, sh->stride);
  free(all);
  nebula_pool_destroy(sh->pool);
  free(sh->owned);
  free(sh);
}

static void wait_start(shared_t *sh) {
  atomic_fetch_sub(&sh->start, 1);
  while (atomic_load(&sh->start) > 0) {
  }
}

/* Allocate, stamp, swap into a random mailbox; check and free whatever came out, which
 * another thread stamped: blocks travel between threads. */
static void *stress_worker(void *arg) {
  worker_t *w = arg;
  shared_t *sh = w->sh;
  uint64_t rng = 0x2545f4914f6cdd1dull * (uint64_t)(w->tid + 1);
  wait_start(sh);
  for (int i = 0; i < sh->cycles; i++) {
    stamp_t *b = take(sh);
    if (b == NULL) {   /* every block is in a mailbox or in flight: free one of ours later */
      if (nebula_last_error()->code != NEBULA_ERR_CAPACITY) fail("alloc: %s", nebula_last_error()->detail);
      continue;
    }
    b->tid = (uint64_t)w->tid;
    b->seq = (uint64_t)i;
    b->check = (b->tid << 32 ^ b->seq) * STAMP_KEY;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    stamp_t *old = atomic_exchange(&sh->mail[rng % MAILBOXES], b);
    if (old != NULL) {
      if (old->check != (old->tid << 32 ^ old->seq) * STAMP_KEY || old->tid > 3)
        fail("block %p stamp broken: tid %llu seq %llu", (void *)old, (unsigned long long)old->tid,
             (unsigned long long)old->seq);
      give_back(sh, old);
    }
  }
  return NULL;
}

static void run(shared_t *sh, int threads, void *(*fn)(void *)) {
  pthread_t t[8];
  worker_t w[8];
  atomic_store(&sh->start, threads);
  for (int i = 0; i < threads; i++) {
    w[i] = (worker_t){ sh, i };
    cr_assert_eq(pthread_create(&t[i], NULL, fn, &w[i]), 0);
  }
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

Test(pool_threads, blocks_passed_between_threads) {
  /* More blocks than mailboxes, so allocation rarely runs dry. */
  shared_t *sh = shared_new(sizeof(stamp_t), 256, 200000 / SCALE);
  run(sh, 4, stress_worker);
  for (int i = 0; i < MAILBOXES; i++) {
    stamp_t *b = atomic_exchange(&sh->mail[i], NULL);
    if (b != NULL) give_back(sh, b);
  }
  shared_end(sh);
}

/* Few blocks, many threads: the head keeps coming back to the same indices, which is when
 * an untagged stack would hand out a block twice (ABA). */
static void *aba_worker(void *arg) {
  worker_t *w = arg;
  shared_t *sh = w->sh;
  wait_start(sh);
  void *held[2];
  for (int i = 0; i < sh->cycles; i++) {
    int n = 0;
    for (int k = 0; k < 1 + (i + w->tid) % 2; k++)
      if ((held[n] = take(sh)) != NULL) {
        *(volatile int *)held[n] = w->tid;
        n++;
      }
    /* Free in either order, so the list's order keeps changing. */
    if (n == 2 && (i & 1)) {
      void *t = held[0];
      held[0] = held[1];
      held[1] = t;
    }
    for (int k = 0; k < n; k++) {
      if (*(volatile int *)held[k] != w->tid) fail("block %p written by another thread", held[k]);
      give_back(sh, held[k]);
    }
  }
  return NULL;
}

Test(pool_threads, aba_few_blocks_many_threads) {
  shared_t *sh = shared_new(8, 4, 150000 / SCALE);
  run(sh, 8, aba_worker);
  shared_end(sh);
}

typedef struct {
  nebula_pool_t *pool;
  void **out;
  int n;
  atomic_int *start;
} grow_arg_t;

static void *grow_worker(void *arg) {
  grow_arg_t *g = arg;
  atomic_fetch_sub(g->start, 1);
  while (atomic_load(g->start) > 0) {
  }
  for (int i = 0; i < g->n; i++) {
    g->out[i] = nebula_pool_alloc(g->pool);
    if (g->out[i] == NULL) {
      fail("alloc %d: %s", i, nebula_last_error()->detail);
      return NULL;
    }
    memset(g->out[i], 0x5A, 24);
  }
  return NULL;
}

Test(pool_threads, concurrent_growth) {
  enum { THREADS = 4, PER = 2000 };
  atomic_store(&failures, 0);
  nebula_pool_t *p = make_pool("growing", 24, 8, 8, true);
  void **all = calloc(THREADS * PER, sizeof *all);
  atomic_int start = THREADS;
  pthread_t t[THREADS];
  grow_arg_t g[THREADS];
  for (int i = 0; i < THREADS; i++) {
    g[i] = (grow_arg_t){ p, all + i * PER, PER, &start };
    cr_assert_eq(pthread_create(&t[i], NULL, grow_worker, &g[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  check_no_failures();
  check_distinct(all, THREADS * PER, 24);
  nebula_allocator_state_t s = state_of(p);
  cr_assert_eq(s.allocations, (size_t)THREADS * PER);
  /* A growing pool keeps up to 64 blocks per thread in that thread's magazine, so other
   * threads may grow it meanwhile: at most that many blocks per thread more than needed
   * (a fixed-size pool has no magazines and stays exact: tests above). */
  cr_assert_geq(s.capacity, (size_t)THREADS * PER * 24);
  cr_assert_leq(s.capacity, ((size_t)THREADS * PER + THREADS * 64 + 8) * 24, "capacity %zu bytes", s.capacity);
  for (int i = 0; i < THREADS * PER; i++) cr_assert(nebula_pool_free(p, all[i]));
  cr_assert_eq(state_of(p).allocations, 0u);
  free(all);
  nebula_pool_destroy(p);
}

/* Threads that come and go: each takes a magazine in the pool and leaves it behind when it
 * exits; a later thread that finds the list empty (or no free slot) gives the magazines of
 * exited threads back, so the pool does not grow with the number of threads. */
static void *churn_worker(void *arg) {
  nebula_pool_t *p = arg;
  void *v[10];
  for (int i = 0; i < 10; i++) {
    v[i] = nebula_pool_alloc(p);
    if (v[i] == NULL) {
      fail("alloc: %s", nebula_last_error()->detail);
      return NULL;
    }
    memset(v[i], 0x33, 32);
  }
  for (int i = 0; i < 10; i++)
    if (!nebula_pool_free(p, v[i])) fail("free: %s", nebula_last_error()->detail);
  return NULL;
}

Test(pool_threads, exited_threads_give_their_magazines_back) {
  atomic_store(&failures, 0);
  nebula_pool_t *p = make_pool("churn", 32, 0, 64, true);
  for (int i = 0; i < 300 / SCALE; i++) {
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, churn_worker, p), 0);
    pthread_join(t, NULL);
  }
  check_no_failures();
  nebula_allocator_state_t s = state_of(p);
  cr_assert_eq(s.allocations, 0u);
  cr_assert_leq(s.capacity, 4u * 64 * 32, "%zu bytes: the pool grew with the threads", s.capacity);
  nebula_pool_destroy(p);
}
