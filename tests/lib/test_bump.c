/* The bump allocator, its common interface, the typed helpers and memory scopes. Also built
 * without Criterion (NM_UNIT_STANDALONE) for ThreadSanitizer. */
#ifndef NM_UNIT_STANDALONE
#include <criterion/criterion.h>
#else
#include "standalone.h"
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nebula/budget.h>
#include <nebula/bump.h>
#include <nebula/memory.h>
#include <nebula/typed.h>

static nebula_bump_t *mk(size_t capacity, bool grow) {
  nebula_bump_options_t o = { .name = "test", .capacity = capacity, .grow = grow };
  nebula_bump_t *b = nebula_bump_create(&o);
  cr_assert_not_null(b);
  return b;
}

/* An allocation whose pointer the test does not need (warn_unused_result). */
static void take(nebula_bump_t *b, size_t size, size_t align) {
  cr_assert_not_null(nebula_bump_alloc(b, size, align));
}

static size_t used_of(nebula_bump_t *b) {
  nebula_allocator_state_t st;
  nebula_bump_state(b, &st);
  return st.used;
}

Test(bump, every_alignment_from_1_to_4096) {
  nebula_bump_t *b = mk(1 << 20, false);
  nebula_allocator_t *a = nebula_bump_allocator(b);
  for (size_t align = 1; align <= 4096; align *= 2) {
    for (size_t size = 0; size < 100; size += 33) {
      uint8_t *p = nebula_bump_alloc(b, size, align);
      cr_assert_not_null(p, "alignment %zu size %zu", align, size);
      cr_assert_eq((uintptr_t)p % align, 0u, "alignment %zu: %p", align, (void *)p);
      memset(p, (int)align, size);
      cr_assert_eq(nebula_usable_size(a, p), size, "usable size is the size asked");
      uint8_t *q = nebula_allocate(a, size + 1, align);
      cr_assert_eq((uintptr_t)q % align, 0u);
      cr_assert_neq(p, q, "size 0 blocks are unique too");
    }
  }
  cr_assert_null(nebula_bump_alloc(b, 8, 24));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  nebula_bump_destroy(b);
}

Test(bump, default_alignment_from_options) {
  nebula_bump_options_t o = { .capacity = 1 << 16, .alignment = 256 };
  nebula_bump_t *b = nebula_bump_create(&o);
  cr_assert_not_null(b);
  cr_assert_str_eq(nebula_allocator_name(nebula_bump_allocator(b)), "bump");
  for (int i = 0; i < 10; i++) {
    void *p = nebula_bump_alloc(b, 3, 0);
    cr_assert_eq((uintptr_t)p % 256, 0u);
  }
  nebula_bump_destroy(b);
  o.alignment = 48;
  cr_assert_null(nebula_bump_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
}

Test(bump, full_without_grow_fails_with_capacity_and_state) {
  nebula_bump_t *b = mk(4096, false);
  size_t n = 0;
  while (nebula_bump_alloc(b, 100, 8) != NULL) n++;
  cr_assert_gt(n, 20u);
  cr_assert_lt(n, 4096u / 100 + 1);
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_CAPACITY);
  cr_assert_str_eq(e->function, "nebula_bump_alloc");
  cr_assert_str_eq(e->allocator, "test");
  cr_assert_eq(e->size, 100u);
  cr_assert_eq(e->state.capacity, 4096u);
  cr_assert_gt(e->state.used, 4096u - 200);
  cr_assert_lt(e->state.available, 116u);
  cr_assert(strstr(e->detail, "capacity 4096") != NULL, "%s", e->detail);
  /* Smaller requests that fit still succeed. */
  cr_assert_not_null(nebula_bump_alloc(b, 0, 8));
  nebula_bump_destroy(b);
}

Test(bump, grow_chains_chunks_and_keeps_contents) {
  nebula_bump_t *b = mk(4096, true);
  uint8_t *blocks[200];
  for (int i = 0; i < 200; i++) {
    blocks[i] = nebula_bump_alloc(b, 1000, 0);
    cr_assert_not_null(blocks[i]);
    memset(blocks[i], i, 1000);
  }
  for (int i = 0; i < 200; i++)
    for (int j = 0; j < 1000; j++) cr_assert_eq(blocks[i][j], (uint8_t)i, "block %d byte %d", i, j);
  nebula_allocator_state_t st;
  nebula_bump_state(b, &st);
  cr_assert_geq(st.capacity, 200u * 1000);
  cr_assert_geq(st.used, 200u * 1000);
  cr_assert_eq(st.peak, st.used);
  /* A request bigger than double the last chunk gets a chunk of its own size. */
  uint8_t *big = nebula_bump_alloc(b, 64u << 20, 4096);
  cr_assert_not_null(big);
  big[(64u << 20) - 1] = 1;
  nebula_bump_state(b, &st);
  cr_assert_geq(st.capacity, (64u << 20) + 200u * 1000);
  nebula_bump_destroy(b);
}

Test(bump, reset_reuses_memory_and_keeps_only_the_first_chunk) {
  nebula_bump_t *b = mk(4096, true);
  void *first = nebula_bump_alloc(b, 64, 0);
  for (int i = 0; i < 50; i++) cr_assert_not_null(nebula_bump_alloc(b, 1000, 0));
  nebula_allocator_state_t st;
  nebula_bump_state(b, &st);
  size_t peak = st.used;
  cr_assert_gt(st.capacity, 4096u);
  nebula_bump_reset(b);
  nebula_bump_state(b, &st);
  cr_assert_eq(st.capacity, 4096u);
  cr_assert_eq(st.used, 0u);
  cr_assert_eq(st.available, 4096u);
  cr_assert_eq(st.peak, peak, "the peak survives the reset");
  cr_assert_eq(nebula_bump_alloc(b, 64, 0), first, "the same address comes back");
  nebula_bump_destroy(b);
}

Test(bump, checkpoints_nest) {
  nebula_bump_t *b = mk(1 << 16, true);
  take(b, 10, 0);
  nebula_bump_marker_t outer = nebula_bump_checkpoint(b);
  size_t u0 = used_of(b);
  void *p1 = nebula_bump_alloc(b, 100, 0);
  nebula_bump_marker_t inner = nebula_bump_checkpoint(b);
  size_t u1 = used_of(b);
  void *p2 = nebula_bump_alloc(b, 100, 0);
  for (int i = 0; i < 100; i++) take(b, 4096, 0);   /* into more chunks */
  cr_assert(nebula_bump_restore(b, inner));
  cr_assert_eq(used_of(b), u1);
  cr_assert_eq(nebula_bump_alloc(b, 100, 0), p2);
  cr_assert(nebula_bump_restore(b, outer));
  cr_assert_eq(used_of(b), u0);
  cr_assert_eq(nebula_bump_alloc(b, 100, 0), p1);
  nebula_bump_destroy(b);
}

Test(bump, stale_or_foreign_marker_is_an_order_error_and_changes_nothing) {
  nebula_bump_t *b = mk(1 << 16, true), *other = mk(4096, false);
  nebula_bump_marker_t m0 = nebula_bump_checkpoint(b);
  take(b, 100, 0);
  nebula_bump_marker_t m1 = nebula_bump_checkpoint(b);
  take(b, 100, 0);
  cr_assert(nebula_bump_restore(b, m0));
  size_t u = used_of(b);
  cr_assert_not(nebula_bump_restore(b, m1), "m1 is newer than the position");
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_ORDER);
  cr_assert_str_eq(e->function, "nebula_bump_restore");
  cr_assert(strstr(e->detail, "newer") != NULL, "%s", e->detail);
  cr_assert_eq(used_of(b), u, "nothing changed");
  /* A marker in a chunk freed by a reset. */
  for (int i = 0; i < 40; i++) take(b, 4096, 0);
  nebula_bump_marker_t far = nebula_bump_checkpoint(b);
  nebula_bump_reset(b);
  cr_assert_not(nebula_bump_restore(b, far));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_ORDER);
  /* Another bump's marker. */
  cr_assert_not(nebula_bump_restore(b, nebula_bump_checkpoint(other)));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_ORDER);
  cr_assert(strstr(nebula_last_error()->detail, "another bump") != NULL);
  void *p = nebula_bump_alloc(b, 8, 0);
  cr_assert_not_null(p, "still works");
  nebula_bump_destroy(b);
  nebula_bump_destroy(other);
}

Test(bump, deallocate_rewinds_only_the_most_recent) {
  nebula_bump_t *b = mk(1 << 16, false);
  nebula_allocator_t *a = nebula_bump_allocator(b);
  void *p = nebula_allocate(a, 40, 0);
  void *q = nebula_allocate(a, 40, 0);
  size_t u = used_of(b);
  cr_assert(nebula_deallocate(a, p), "an older block: accepted, nothing done");
  cr_assert_eq(used_of(b), u);
  cr_assert(nebula_deallocate(a, q));
  cr_assert_lt(used_of(b), u);
  cr_assert_eq(nebula_allocate(a, 40, 0), q, "the cursor was rewound");
  int local;
  cr_assert_not(nebula_deallocate(a, &local));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert_eq(e->pointer, (void *)&local);
  cr_assert_eq(nebula_usable_size(a, &local), 0u);
  nebula_bump_destroy(b);
}

Test(bump, reallocate_in_place_then_moving) {
  nebula_bump_t *b = mk(1 << 16, true);
  nebula_allocator_t *a = nebula_bump_allocator(b);
  char *p = nebula_allocate(a, 10, 0);
  memcpy(p, "0123456789", 10);
  char *q = nebula_reallocate(a, p, 1000, 0);
  cr_assert_eq(q, p, "the last block grows in place");
  cr_assert_eq(nebula_usable_size(a, q), 1000u);
  cr_assert_eq(memcmp(q, "0123456789", 10), 0);
  q = nebula_reallocate(a, q, 20, 0);
  cr_assert_eq(q, p, "and shrinks in place");
  cr_assert_eq(nebula_usable_size(a, q), 20u);
  char *r = nebula_allocate(a, 5, 0);
  char *s = nebula_reallocate(a, q, 200000, 0);   /* not the last any more, and into a new chunk */
  cr_assert_not_null(s);
  cr_assert_neq(s, q);
  cr_assert_eq(memcmp(s, "0123456789", 10), 0);
  cr_assert_not_null(r);
  int local;
  cr_assert_null(nebula_reallocate(a, &local, 10, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  nebula_bump_destroy(b);
}

Test(bump, budget_is_charged_per_chunk_and_released) {
  nebula_budget_t *budget = nebula_budget_create("bumps", 1 << 20, NULL);
  cr_assert_not_null(budget);
  nebula_bump_options_t o = { .capacity = 64 << 10, .grow = true, .budget = budget };
  nebula_bump_t *b = nebula_bump_create(&o);
  cr_assert_not_null(b);
  cr_assert_eq(nebula_budget_used(budget), 64u << 10);
  cr_assert_not_null(nebula_bump_alloc(b, 64 << 10, 0));
  size_t two = nebula_budget_used(budget);
  cr_assert_eq(two, 192u << 10, "64 KiB + a chunk of double that");
  /* A chunk over the limit: NULL with the budget's error. */
  cr_assert_null(nebula_bump_alloc(b, 2 << 20, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  cr_assert_eq(nebula_budget_used(budget), two);
  nebula_bump_reset(b);
  cr_assert_eq(nebula_budget_used(budget), 64u << 10, "reset returned the grown chunks");
  nebula_bump_destroy(b);
  cr_assert_eq(nebula_budget_used(budget), 0u);
  /* The first chunk refused: creation fails with the budget's error. */
  o.capacity = 2 << 20;
  cr_assert_null(nebula_bump_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  cr_assert_eq(nebula_budget_used(budget), 0u);
  cr_assert(nebula_budget_destroy(budget));
}

/* ---- threads ------------------------------------------------------------------------------ */

#define T_THREADS 4
#define T_BLOCKS 4000

typedef struct {
  nebula_bump_t *b;
  int id;
  uint8_t *p[T_BLOCKS];
  size_t n[T_BLOCKS];
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  nebula_allocator_t *a = nebula_bump_allocator(w->b);
  for (int i = 0; i < T_BLOCKS; i++) {
    size_t n = 1 + (size_t)((i * 7 + w->id * 13) % 200);
    size_t align = (size_t)1 << (i % 7);
    uint8_t *p = i % 2 ? nebula_bump_alloc(w->b, n, align) : nebula_allocate(a, n, align);
    if (p == NULL || (uintptr_t)p % align != 0) return NULL;
    memset(p, w->id * 31 + i, n);
    w->p[i] = p;
    w->n[i] = n;
    if (i % 50 == 0) {   /* some frees of the most recent block, racing the others */
      if (!nebula_deallocate(a, p)) return NULL;
      w->p[i] = nebula_bump_alloc(w->b, n, align);
      if (w->p[i] == NULL) return NULL;
      memset(w->p[i], w->id * 31 + i, n);
    }
  }
  return w;
}

typedef struct {
  uintptr_t lo, hi;
} span_t;

static int span_cmp(const void *x, const void *y) {
  const span_t *a = x, *b = y;
  return a->lo < b->lo ? -1 : a->lo > b->lo;
}

Test(bump, thread_safe_blocks_never_overlap) {
  nebula_bump_options_t o = { .capacity = 64 << 10, .grow = true, .thread_safe = true };
  nebula_bump_t *b = nebula_bump_create(&o);
  cr_assert_not_null(b);
  static worker_t w[T_THREADS];
  pthread_t t[T_THREADS];
  for (int i = 0; i < T_THREADS; i++) {
    w[i].b = b;
    w[i].id = i;
    cr_assert_eq(pthread_create(&t[i], NULL, worker, &w[i]), 0);
  }
  for (int i = 0; i < T_THREADS; i++) {
    void *r;
    pthread_join(t[i], &r);
    cr_assert_not_null(r, "thread %d failed", i);
  }
  static span_t spans[T_THREADS * T_BLOCKS];
  size_t k = 0;
  for (int i = 0; i < T_THREADS; i++)
    for (int j = 0; j < T_BLOCKS; j++) {
      for (size_t x = 0; x < w[i].n[j]; x++)
        cr_assert_eq(w[i].p[j][x], (uint8_t)(i * 31 + j), "thread %d block %d byte %zu", i, j, x);
      spans[k++] = (span_t){ (uintptr_t)w[i].p[j], (uintptr_t)w[i].p[j] + w[i].n[j] };
    }
  qsort(spans, k, sizeof spans[0], span_cmp);
  for (size_t i = 1; i < k; i++)
    cr_assert_leq(spans[i - 1].hi, spans[i].lo, "blocks %zu and %zu overlap", i - 1, i);
  nebula_allocator_state_t st;
  nebula_bump_state(b, &st);
  cr_assert_gt(st.capacity, 64u << 10);
  nebula_bump_destroy(b);
}

/* ---- poisoning ---------------------------------------------------------------------------- */

Test(bump, poison_fills_reset_and_freed_memory) {
  nebula_bump_options_t o = { .capacity = 1 << 16, .poison = true };
  nebula_bump_t *b = nebula_bump_create(&o);
  cr_assert_not_null(b);
  uint8_t *p = nebula_bump_alloc(b, 256, 0);
  memset(p, 0x11, 256);
  nebula_bump_reset(b);
  uint8_t *q = nebula_bump_alloc(b, 256, 0);
  cr_assert_eq(q, p);
  for (int i = 0; i < 256; i++) cr_assert_eq(q[i], 0xDF, "byte %d after reset", i);
  memset(q, 0x22, 256);
  cr_assert(nebula_deallocate(nebula_bump_allocator(b), q));
  uint8_t *r = nebula_bump_alloc(b, 256, 0);
  cr_assert_eq(r, q);
  for (int i = 0; i < 256; i++) cr_assert_eq(r[i], 0xDF, "byte %d after free", i);
  nebula_bump_marker_t m = nebula_bump_checkpoint(b);
  uint8_t *s = nebula_bump_alloc(b, 64, 0);
  memset(s, 0x33, 64);
  cr_assert(nebula_bump_restore(b, m));
  s = nebula_bump_alloc(b, 64, 0);
  for (int i = 0; i < 64; i++) cr_assert_eq(s[i], 0xDF, "byte %d after restore", i);
  nebula_bump_destroy(b);
}

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

#ifdef T_ASAN
/* A child writes through a pointer from before a reset: AddressSanitizer must stop it. */
Test(bump, asan_reports_use_after_reset) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    nebula_bump_t *b = mk(1 << 16, false);
    volatile char *p = nebula_bump_alloc(b, 64, 0);
    p[0] = 1;
    nebula_bump_reset(b);
    p[1] = 2;   /* use after reset */
    _exit(0);
  }
  close(fds[1]);
  static char out[1 << 16];
  size_t len = 0;
  ssize_t r;
  while (len < sizeof out - 1 && (r = read(fds[0], out + len, sizeof out - 1 - len)) > 0) len += (size_t)r;
  out[len] = '\0';
  close(fds[0]);
  int st;
  waitpid(pid, &st, 0);
  cr_assert(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "the child was not stopped");
  cr_assert(strstr(out, "use-after-poison") != NULL, "ASan's report: %s", out);
}
#endif

/* ---- configuration ------------------------------------------------------------------------ */

Test(bump, create_from_config) {
  nebula_bump_t *b = nebula_bump_create_from_config("capacity=8192,grow=false,name=scratch,alignment=64");
  cr_assert_not_null(b);
  nebula_allocator_t *a = nebula_bump_allocator(b);
  cr_assert_str_eq(nebula_allocator_name(a), "scratch");
  nebula_allocator_state_t st;
  nebula_bump_state(b, &st);
  cr_assert_eq(st.capacity, 8192u);
  void *p = nebula_bump_alloc(b, 1, 0);
  cr_assert_eq((uintptr_t)p % 64, 0u);
  cr_assert_null(nebula_bump_alloc(b, 9000, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CAPACITY);
  cr_assert_str_eq(nebula_last_error()->allocator, "scratch");
  nebula_bump_destroy(b);

  nebula_error_clear();
  cr_assert_null(nebula_bump_create_from_config("capacity=lots"));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CONFIG);
}

Test(bump, create_from_config_with_a_budget) {
  nebula_bump_t *b = nebula_bump_create_from_config("capacity=64k,grow=true,budget=256k");
  cr_assert_not_null(b);
  cr_assert_not_null(nebula_bump_alloc(b, 100 << 10, 0), "a second chunk fits the budget");
  cr_assert_null(nebula_bump_alloc(b, 200 << 10, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  nebula_bump_destroy(b);   /* and its budget */
  cr_assert_null(nebula_bump_create_from_config("capacity=1m,budget=64k"));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
}

/* ---- typed helpers and scopes ------------------------------------------------------------- */

typedef struct {
  double x, y;
  long id;
} point_t;

typedef struct {
  char c;
  _Alignas(64) int wide;
} wide_t;

Test(typed, new_init_array_delete) {
  nebula_bump_t *b = mk(1 << 16, false);
  nebula_allocator_t *a = nebula_bump_allocator(b);
  point_t *p = NEBULA_NEW(a, point_t);
  cr_assert_not_null(p);
  cr_assert_eq((uintptr_t)p % _Alignof(point_t), 0u);
  cr_assert_eq(nebula_usable_size(a, p), sizeof(point_t));
  wide_t *w = NEBULA_NEW(a, wide_t);
  cr_assert_eq((uintptr_t)w % 64, 0u);
  point_t *q = NEBULA_NEW_INIT(a, point_t, (point_t){ 1.5, 2.5, 7 });
  cr_assert(q->x == 1.5 && q->y == 2.5 && q->id == 7);
  point_t *s = NEBULA_NEW_INIT(a, point_t, *q);
  cr_assert(s->x == 1.5 && s->id == 7);
  int *i = NEBULA_NEW_INIT(a, int, 42);
  cr_assert_eq(*i, 42);
  long *arr = NEBULA_NEW_ARRAY(a, long, 100);
  cr_assert_not_null(arr);
  cr_assert_eq(nebula_usable_size(a, arr), 100 * sizeof(long));
  cr_assert_null(NEBULA_NEW_ARRAY(a, long, SIZE_MAX / 4));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_OVERFLOW);
  cr_assert(NEBULA_DELETE(a, arr));
  cr_assert_null(arr);
  int local = 0, *bad = &local;
  cr_assert_not(NEBULA_DELETE(a, bad));
  cr_assert_eq(bad, &local, "a refused free leaves the pointer");
  nebula_bump_destroy(b);
}

static size_t scoped_helper(nebula_allocator_t *a, size_t *rewound) {
  NEBULA_SCOPED(a, char, buf, NEBULA_NEW_ARRAY(a, char, 128));
  if (buf == NULL) return 0;
  *rewound = nebula_usable_size(a, buf);
  return 1;   /* buf is the most recent block: freeing it at return rewinds the bump */
}

Test(typed, scoped_pointer_is_freed_at_scope_exit) {
  nebula_bump_t *b = mk(1 << 16, false);
  nebula_allocator_t *a = nebula_bump_allocator(b);
  size_t before = used_of(b), n = 0;
  cr_assert_eq(scoped_helper(a, &n), 1u);
  cr_assert_eq(n, 128u);
  cr_assert_eq(used_of(b), before, "freed (rewound) on return");
  char *kept;
  {
    NEBULA_SCOPED(a, char, buf, NEBULA_NEW_ARRAY(a, char, 64));
    buf = nebula_reallocate(a, buf, 256, 0);   /* the cleanup frees the current value */
    kept = buf;
    buf = NULL;   /* ownership handed on: nothing freed */
  }
  cr_assert_eq(nebula_usable_size(a, kept), 256u);
  nebula_bump_destroy(b);
}

static void *scope_and_return(nebula_bump_t *b, size_t *used_inside) {
  NEBULA_MEMORY_SCOPE(b) {
    void *p = nebula_bump_alloc(b, 1000, 0);
    *used_inside = used_of(b);
    return p;   /* the scope is restored on the way out */
  }
  return NULL;
}

Test(typed, memory_scope_restores_on_end_break_and_return) {
  nebula_bump_t *b = mk(1 << 20, true);
  take(b, 16, 0);
  size_t u0 = used_of(b);
  NEBULA_MEMORY_SCOPE(b) {
    take(b, 100, 0);
    size_t u1 = used_of(b);
    NEBULA_MEMORY_SCOPE(b) {
      for (int i = 0; i < 400; i++) take(b, 4096, 0);   /* grows */
      cr_assert_gt(used_of(b), u1 + 400 * 4096);
    }
    cr_assert_eq(used_of(b), u1, "the inner scope was restored");
  }
  cr_assert_eq(used_of(b), u0, "end of the block");
  int passes = 0;
  NEBULA_MEMORY_SCOPE(b) {
    passes++;
    take(b, 500, 0);
    if (passes) break;
    cr_assert_fail("not reached");
  }
  cr_assert_eq(passes, 1);
  cr_assert_eq(used_of(b), u0, "break");
  size_t inside = 0;
  void *p = scope_and_return(b, &inside);
  cr_assert_gt(inside, u0);
  cr_assert_eq(used_of(b), u0, "return");
  cr_assert_eq(nebula_bump_alloc(b, 1000, 0), p, "the same memory comes back");
  nebula_bump_destroy(b);
}
