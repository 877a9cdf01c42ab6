/* The compute cache: hits and misses, LRU eviction by entries and by bytes, handles that
 * outlive their entries, get_or_compute deduplicating concurrent computations, errors
 * reaching every waiter, stats. Also built without Criterion for ThreadSanitizer. */
#ifndef NM_UNIT_STANDALONE
#include <criterion/criterion.h>
#else
#include "standalone.h"
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <nebula/cache.h>
#include <nebula/memory.h>

#define S(str) (str), strlen(str)

static void sleep_ms(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The value under key as a string ("" on a miss), and the handle released. */
static bool has(nebula_cache_t *c, const char *key, const char *want) {
  const nebula_cache_value_t *v = nebula_cache_get(c, S(key));
  if (v == NULL) return want == NULL;
  bool ok = want != NULL && v->len == strlen(want) && memcmp(v->data, want, v->len) == 0;
  nebula_cache_value_release(v);
  return ok;
}

static nebula_cache_stats_t stats(nebula_cache_t *c) {
  nebula_cache_stats_t s;
  nebula_cache_stats(c, &s);
  return s;
}

Test(cache, hit_and_miss) {
  nebula_cache_t *c = nebula_cache_create(NULL);
  cr_assert_not_null(c);
  nebula_error_clear();
  cr_assert_null(nebula_cache_get(c, S("absent")));
  cr_assert_eq(nebula_last_error()->code, NEBULA_OK, "a miss is not an error");
  cr_assert(nebula_cache_put(c, S("k"), "value", 5));
  const nebula_cache_value_t *v = nebula_cache_get(c, S("k"));
  cr_assert_not_null(v);
  cr_assert_eq(v->len, 5u);
  cr_assert_eq(memcmp(v->data, "value", 5), 0);
  cr_assert_eq((uintptr_t)v->data % 16, 0u);
  nebula_cache_value_release(v);
  /* Keys are bytes: a prefix, or the same bytes with a NUL, are other keys. */
  cr_assert_null(nebula_cache_get(c, "k", 0));
  cr_assert_null(nebula_cache_get(c, "k\0", 2));
  cr_assert(nebula_cache_put(c, NULL, 0, "empty key", 9));
  cr_assert(nebula_cache_put(c, S("empty value"), NULL, 0));
  v = nebula_cache_get(c, NULL, 0);
  cr_assert_not_null(v);
  cr_assert_eq(v->len, 9u);
  nebula_cache_value_release(v);
  v = nebula_cache_get(c, S("empty value"));
  cr_assert_not_null(v);
  cr_assert_eq(v->len, 0u);
  cr_assert_not_null(v->data);
  nebula_cache_value_release(v);
  nebula_cache_stats_t s = stats(c);
  cr_assert_eq(s.hits, 3u);
  cr_assert_eq(s.misses, 3u);
  cr_assert_eq(s.entries, 3u);
  cr_assert_eq(s.bytes, (1 + 5) + (0 + 9) + (11 + 0));
  nebula_cache_value_release(NULL);
  nebula_cache_destroy(c);
  nebula_cache_destroy(NULL);
}

Test(cache, bad_arguments_are_errors) {
  nebula_cache_t *c = nebula_cache_create(NULL);
  cr_assert_null(nebula_cache_get(NULL, S("k")));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_null(nebula_cache_get(c, NULL, 3));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_not(nebula_cache_put(c, S("k"), NULL, 3));
  cr_assert_not(nebula_cache_remove(NULL, S("k")));
  const nebula_cache_value_t *v = (const nebula_cache_value_t *)1;
  cr_assert_eq(nebula_cache_get_or_compute(c, S("k"), NULL, NULL, &v), NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_null(v);
  nebula_cache_stats_t s = stats(NULL);
  cr_assert_eq(s.entries, 0u);
  nebula_cache_clear(NULL);
  nebula_cache_destroy(c);
}

Test(cache, evicts_the_least_recently_used_by_entries) {
  nebula_cache_t *c = nebula_cache_create(&(nebula_cache_options_t){ .max_entries = 3 });
  cr_assert(nebula_cache_put(c, S("a"), S("1")));
  cr_assert(nebula_cache_put(c, S("b"), S("2")));
  cr_assert(nebula_cache_put(c, S("c"), S("3")));
  cr_assert(has(c, "a", "1"), "a is now the most recent: b is the oldest");
  cr_assert(nebula_cache_put(c, S("d"), S("4")));
  cr_assert(has(c, "b", NULL));
  cr_assert(has(c, "c", "3"));
  cr_assert(nebula_cache_put(c, S("e"), S("5")));   /* order now a, d, c, e: a goes */
  cr_assert(has(c, "a", NULL));
  cr_assert(has(c, "d", "4"));
  cr_assert(has(c, "c", "3"));
  cr_assert(has(c, "e", "5"));
  nebula_cache_stats_t s = stats(c);
  cr_assert_eq(s.entries, 3u);
  cr_assert_eq(s.evictions, 2u);
  /* An overwrite refreshes the entry and evicts nothing. */
  cr_assert(nebula_cache_put(c, S("d"), S("44")));   /* order: c, e, d */
  cr_assert_eq(stats(c).evictions, 2u);
  cr_assert(nebula_cache_put(c, S("f"), S("6")));
  cr_assert(has(c, "c", NULL));
  cr_assert(has(c, "d", "44"));
  nebula_cache_destroy(c);
}

Test(cache, evicts_the_least_recently_used_by_bytes) {
  nebula_cache_t *c = nebula_cache_create(&(nebula_cache_options_t){ .max_bytes = 30 });
  cr_assert(nebula_cache_put(c, S("a"), S("123456789")));   /* 10 bytes each */
  cr_assert(nebula_cache_put(c, S("b"), S("123456789")));
  cr_assert(nebula_cache_put(c, S("c"), S("123456789")));
  cr_assert_eq(stats(c).bytes, 30u);
  cr_assert_eq(stats(c).evictions, 0u);
  cr_assert(has(c, "a", "123456789"));
  cr_assert(nebula_cache_put(c, S("d"), S("1234")));        /* 35 > 30: b goes */
  cr_assert(has(c, "b", NULL));
  cr_assert_eq(stats(c).bytes, 25u);
  cr_assert(nebula_cache_put(c, S("e"), S("12345678901234567890123")));   /* 24: c and a go */
  cr_assert(has(c, "c", NULL));
  cr_assert(has(c, "a", NULL));
  cr_assert(has(c, "d", "1234"));
  nebula_cache_stats_t s = stats(c);
  cr_assert_eq(s.bytes, 29u);
  cr_assert_eq(s.entries, 2u);
  cr_assert_eq(s.evictions, 3u);
  /* Larger than the whole cache: refused, nothing evicted. */
  nebula_error_clear();
  cr_assert_not(nebula_cache_put(c, S("big"), S("1234567890123456789012345678")));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CAPACITY);
  s = stats(c);
  cr_assert_eq(s.entries, 2u);
  cr_assert_eq(s.evictions, 3u);
  /* Growing a value in place evicts others, never itself. */
  cr_assert(nebula_cache_put(c, S("d"), S("12345678901234567890123456789")));   /* 30 bytes */
  cr_assert(has(c, "e", NULL));
  cr_assert(has(c, "d", "12345678901234567890123456789"));
  cr_assert_eq(stats(c).bytes, 30u);
  nebula_cache_destroy(c);
}

Test(cache, handles_outlive_eviction_overwrite_remove_and_destroy) {
  nebula_cache_t *c = nebula_cache_create(&(nebula_cache_options_t){ .max_entries = 2 });
  char big[4096];
  memset(big, 'x', sizeof big);
  cr_assert(nebula_cache_put(c, S("a"), big, sizeof big));
  const nebula_cache_value_t *va = nebula_cache_get(c, S("a"));
  cr_assert(nebula_cache_put(c, S("b"), S("b1")));
  const nebula_cache_value_t *vb = nebula_cache_get(c, S("b"));
  cr_assert(nebula_cache_put(c, S("b"), S("b2")));   /* overwritten */
  cr_assert(nebula_cache_put(c, S("c"), S("c1")));   /* a evicted */
  cr_assert(nebula_cache_put(c, S("d"), S("d1")));   /* b evicted */
  cr_assert(has(c, "a", NULL));
  const nebula_cache_value_t *vd = nebula_cache_get(c, S("d"));
  cr_assert(nebula_cache_remove(c, S("d")));
  cr_assert_not(nebula_cache_remove(c, S("d")));
  const nebula_cache_value_t *vc = nebula_cache_get(c, S("c"));
  nebula_cache_destroy(c);
  /* Every read below is of memory the cache no longer holds: ASan checks it is still ours. */
  cr_assert_eq(va->len, sizeof big);
  for (size_t i = 0; i < sizeof big; i++) cr_assert_eq(((const char *)va->data)[i], 'x');
  cr_assert_eq(memcmp(vb->data, "b1", 2), 0);
  cr_assert_eq(memcmp(vc->data, "c1", 2), 0);
  cr_assert_eq(memcmp(vd->data, "d1", 2), 0);
  nebula_cache_value_release(va);
  nebula_cache_value_release(vb);
  nebula_cache_value_release(vc);
  nebula_cache_value_release(vd);
}

Test(cache, put_overwrites_and_clear_empties) {
  nebula_cache_t *c = nebula_cache_create(NULL);
  cr_assert(nebula_cache_put(c, S("k"), S("first")));
  const nebula_cache_value_t *old = nebula_cache_get(c, S("k"));
  cr_assert(nebula_cache_put(c, S("k"), S("second value")));
  cr_assert(has(c, "k", "second value"));
  cr_assert_eq(old->len, 5u, "the old handle keeps the old value");
  cr_assert_eq(memcmp(old->data, "first", 5), 0);
  nebula_cache_value_release(old);
  nebula_cache_stats_t s = stats(c);
  cr_assert_eq(s.entries, 1u);
  cr_assert_eq(s.bytes, 1u + 12u);
  /* Enough keys to grow the table several times. */
  char key[16];
  for (int i = 0; i < 1000; i++) {
    int n = snprintf(key, sizeof key, "key%d", i);
    cr_assert(nebula_cache_put(c, key, (size_t)n, &i, sizeof i));
  }
  for (int i = 0; i < 1000; i += 37) {
    int n = snprintf(key, sizeof key, "key%d", i);
    const nebula_cache_value_t *v = nebula_cache_get(c, key, (size_t)n);
    cr_assert_not_null(v);
    cr_assert_eq(*(const int *)v->data, i);
    nebula_cache_value_release(v);
  }
  cr_assert_eq(stats(c).entries, 1001u);
  nebula_cache_clear(c);
  s = stats(c);
  cr_assert_eq(s.entries, 0u);
  cr_assert_eq(s.bytes, 0u);
  cr_assert_eq(s.evictions, 0u, "a clear is not an eviction");
  cr_assert(has(c, "k", NULL));
  cr_assert(nebula_cache_put(c, S("k"), S("again")));
  cr_assert(has(c, "k", "again"));
  nebula_cache_destroy(c);
}

/* ---- get_or_compute ------------------------------------------------------------------------- */

typedef struct {
  nebula_cache_t *cache;
  atomic_int calls;
  long sleep_ms;
  int fail_code;            /* nonzero: fail with it */
  size_t wait_for;          /* hold the computation until this many threads wait */
} compute_ctx_t;

/* Sleeps, then answers "value of <key>" (or fails), counting its calls. */
static int slow_compute(void *arg, const void *key, size_t klen, nebula_cache_result_t *out) {
  compute_ctx_t *x = arg;
  atomic_fetch_add(&x->calls, 1);
  sleep_ms(x->sleep_ms);
  /* Make "all the others wait" certain, not just likely, on a loaded machine. */
  for (int i = 0; i < 5000 && stats(x->cache).waits < x->wait_for; i++) sleep_ms(1);
  if (x->fail_code) {
    nebula_cache_result_error(out, "backend down for %.*s: %d", (int)klen, (const char *)key, 503);
    return x->fail_code;
  }
  char buf[64];
  int n = snprintf(buf, sizeof buf, "value of %.*s", (int)klen, (const char *)key);
  cr_assert(nebula_cache_result_set(out, buf, (size_t)n));
  return 0;
}

#define ASKERS 8

typedef struct {
  compute_ctx_t *x;
  const char *key;
  pthread_barrier_t *start;
  int rc;
  nebula_error_code_t code;
  char detail[160];
  const nebula_cache_value_t *v;
} asker_t;

static void *ask(void *arg) {
  asker_t *a = arg;
  if (a->start) pthread_barrier_wait(a->start);
  a->rc = nebula_cache_get_or_compute(a->x->cache, S(a->key), slow_compute, a->x, &a->v);
  a->code = nebula_last_error()->code;
  memcpy(a->detail, nebula_last_error()->detail, sizeof a->detail);
  return NULL;
}

static void ask_all(compute_ctx_t *x, const char *key, asker_t *a, int n) {
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)n);
  pthread_t t[ASKERS];
  for (int i = 0; i < n; i++) {
    a[i] = (asker_t){ .x = x, .key = key, .start = &start };
    pthread_create(&t[i], NULL, ask, &a[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start);
}

Test(compute, eight_threads_asking_one_key_compute_once) {
  compute_ctx_t x = { .cache = nebula_cache_create(NULL), .sleep_ms = 50, .wait_for = ASKERS - 1 };
  asker_t a[ASKERS];
  ask_all(&x, "answer", a, ASKERS);
  cr_assert_eq(atomic_load(&x.calls), 1);
  for (int i = 0; i < ASKERS; i++) {
    cr_assert_eq(a[i].rc, 0, "thread %d: %d", i, a[i].rc);
    cr_assert_not_null(a[i].v);
    cr_assert_eq(a[i].v->len, strlen("value of answer"));
    cr_assert_eq(memcmp(a[i].v->data, "value of answer", a[i].v->len), 0);
    cr_assert_eq(a[i].v, a[0].v, "one shared value");
  }
  nebula_cache_stats_t s = stats(x.cache);
  cr_assert_eq(s.computations, 1u);
  cr_assert_eq(s.waits, 7u);
  cr_assert_eq(s.misses, 8u);
  cr_assert_eq(s.hits, 0u);
  cr_assert_eq(s.failures, 0u);
  cr_assert_eq(s.entries, 1u);
  /* Cached now: the next ask is a hit and computes nothing. */
  const nebula_cache_value_t *v;
  cr_assert_eq(nebula_cache_get_or_compute(x.cache, S("answer"), slow_compute, &x, &v), 0);
  cr_assert_eq(v, a[0].v);
  cr_assert_eq(atomic_load(&x.calls), 1);
  cr_assert_eq(stats(x.cache).hits, 1u);
  nebula_cache_value_release(v);
  for (int i = 0; i < ASKERS; i++) nebula_cache_value_release(a[i].v);
  nebula_cache_destroy(x.cache);
}

Test(compute, a_failure_reaches_every_waiter_and_is_not_cached) {
  compute_ctx_t x = { .cache = nebula_cache_create(NULL), .sleep_ms = 50, .fail_code = 42,
                      .wait_for = ASKERS - 1 };
  asker_t a[ASKERS];
  ask_all(&x, "flaky", a, ASKERS);
  cr_assert_eq(atomic_load(&x.calls), 1);
  for (int i = 0; i < ASKERS; i++) {
    cr_assert_eq(a[i].rc, 42, "thread %d: %d", i, a[i].rc);
    cr_assert_null(a[i].v);
    cr_assert_eq(a[i].code, NEBULA_ERR_COMPUTE);
    cr_assert_str_eq(a[i].detail, "backend down for flaky: 503");
  }
  nebula_cache_stats_t s = stats(x.cache);
  cr_assert_eq(s.computations, 1u);
  cr_assert_eq(s.failures, 1u);
  cr_assert_eq(s.waits, 7u);
  cr_assert_eq(s.entries, 0u, "nothing cached");
  /* The next ask computes again, and this time succeeds. */
  x.fail_code = 0;
  x.sleep_ms = 0;
  x.wait_for = 0;
  const nebula_cache_value_t *v;
  cr_assert_eq(nebula_cache_get_or_compute(x.cache, S("flaky"), slow_compute, &x, &v), 0);
  cr_assert_eq(atomic_load(&x.calls), 2);
  cr_assert_eq(memcmp(v->data, "value of flaky", v->len), 0);
  nebula_cache_value_release(v);
  cr_assert(has(x.cache, "flaky", "value of flaky"));
  nebula_cache_destroy(x.cache);
}

Test(compute, different_keys_compute_in_parallel) {
  compute_ctx_t x = { .cache = nebula_cache_create(NULL), .sleep_ms = 100 };
  asker_t a[2] = { { .x = &x, .key = "left" }, { .x = &x, .key = "right" } };
  pthread_t t[2];
  double t0 = now_ms();
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, ask, &a[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  double took = now_ms() - t0;
  cr_assert_lt(took, 180.0, "two 100 ms computations took %.0f ms: serialized?", took);
  cr_assert_eq(atomic_load(&x.calls), 2);
  cr_assert_eq(memcmp(a[0].v->data, "value of left", a[0].v->len), 0);
  cr_assert_eq(memcmp(a[1].v->data, "value of right", a[1].v->len), 0);
  nebula_cache_stats_t s = stats(x.cache);
  cr_assert_eq(s.computations, 2u);
  cr_assert_eq(s.waits, 0u);
  nebula_cache_value_release(a[0].v);
  nebula_cache_value_release(a[1].v);
  nebula_cache_destroy(x.cache);
}

static int fill_buffer(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out) {
  (void)ctx;
  char *b = nebula_cache_result_buffer(out, 2 * klen);
  if (b == NULL) return 1;
  memcpy(b, key, klen);
  memcpy(b + klen, key, klen);
  return 0;
}

static int no_value(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out) {
  (void)ctx, (void)key, (void)klen, (void)out;
  return 0;
}

static int bare_failure(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out) {
  (void)ctx, (void)key, (void)klen;
  cr_assert(nebula_cache_result_set(out, "discarded", 9));
  return -7;
}

static int recursive(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out) {
  const nebula_cache_value_t *v;
  int rc = nebula_cache_get_or_compute(ctx, key, klen, recursive, ctx, &v);
  nebula_cache_result_error(out, "inner call: %d, %s", rc, nebula_error_name(nebula_last_error()->code));
  return 3;
}

Test(compute, result_forms_and_misuse) {
  nebula_cache_t *c = nebula_cache_create(NULL);
  const nebula_cache_value_t *v;
  cr_assert_eq(nebula_cache_get_or_compute(c, S("ab"), fill_buffer, NULL, &v), 0);
  cr_assert_eq(v->len, 4u);
  cr_assert_eq(memcmp(v->data, "abab", 4), 0);
  nebula_cache_value_release(v);
  cr_assert(has(c, "ab", "abab"));

  cr_assert_eq(nebula_cache_get_or_compute(c, S("none"), no_value, NULL, &v), NEBULA_ERR_COMPUTE);
  cr_assert_null(v);
  cr_assert_str_eq(nebula_last_error()->detail, "the computation returned 0 but set no value");

  cr_assert_eq(nebula_cache_get_or_compute(c, S("bare"), bare_failure, NULL, &v), -7);
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_COMPUTE);
  cr_assert_str_eq(nebula_last_error()->detail, "the computation returned -7");
  cr_assert(has(c, "bare", NULL), "a failed computation's value is discarded");

  cr_assert_eq(nebula_cache_get_or_compute(c, S("self"), recursive, c, &v), 3);
  cr_assert_str_eq(nebula_last_error()->detail, "inner call: 5, invalid argument",
                   "asking for one's own key fails instead of waiting forever");
  nebula_cache_stats_t s = stats(c);
  cr_assert_eq(s.computations, 4u);
  cr_assert_eq(s.failures, 3u);
  cr_assert_eq(s.entries, 1u);
  nebula_cache_destroy(c);
}

Test(compute, a_value_too_large_to_cache_is_still_returned) {
  nebula_cache_t *c = nebula_cache_create(&(nebula_cache_options_t){ .max_bytes = 8 });
  const nebula_cache_value_t *v;
  nebula_error_clear();
  cr_assert_eq(nebula_cache_get_or_compute(c, S("abcdef"), fill_buffer, NULL, &v), 0);
  cr_assert_eq(nebula_last_error()->code, NEBULA_OK, "not an error: just not cached");
  cr_assert_eq(memcmp(v->data, "abcdefabcdef", 12), 0);
  nebula_cache_value_release(v);
  cr_assert_eq(stats(c).entries, 0u);
  cr_assert_eq(nebula_cache_get_or_compute(c, S("abc"), fill_buffer, NULL, &v), 0);
  nebula_cache_value_release(v);
  cr_assert_eq(stats(c).entries, 0u, "3 + 6 > 8 too");
  cr_assert_eq(nebula_cache_get_or_compute(c, S("ab"), fill_buffer, NULL, &v), 0);
  nebula_cache_value_release(v);
  cr_assert_eq(stats(c).entries, 1u);
  nebula_cache_destroy(c);
}

Test(stats, counters_are_exact) {
  nebula_cache_t *c = nebula_cache_create(&(nebula_cache_options_t){ .max_entries = 2 });
  compute_ctx_t x = { .cache = c };
  const nebula_cache_value_t *v;
  cr_assert(has(c, "a", NULL));                                   /* miss */
  cr_assert(nebula_cache_put(c, S("a"), S("1")));
  cr_assert(has(c, "a", "1"));                                    /* hit */
  cr_assert_eq(nebula_cache_get_or_compute(c, S("a"), slow_compute, &x, &v), 0);   /* hit */
  nebula_cache_value_release(v);
  cr_assert_eq(nebula_cache_get_or_compute(c, S("b"), slow_compute, &x, &v), 0);   /* miss, computed */
  nebula_cache_value_release(v);
  cr_assert_eq(nebula_cache_get_or_compute(c, S("c"), slow_compute, &x, &v), 0);   /* miss, evicts a */
  nebula_cache_value_release(v);
  x.fail_code = 9;
  cr_assert_eq(nebula_cache_get_or_compute(c, S("d"), slow_compute, &x, &v), 9);   /* miss, failed */
  cr_assert(nebula_cache_remove(c, S("b")));
  nebula_cache_stats_t s = stats(c);
  cr_assert_eq(s.hits, 2u);
  cr_assert_eq(s.misses, 4u);
  cr_assert_eq(s.computations, 3u);
  cr_assert_eq(s.failures, 1u);
  cr_assert_eq(s.waits, 0u);
  cr_assert_eq(s.evictions, 1u);
  cr_assert_eq(s.entries, 1u);
  cr_assert_eq(s.bytes, 1u + strlen("value of c"));
  nebula_cache_destroy(c);
}

/* ---- everything at once, for ThreadSanitizer ------------------------------------------------ */

static int echo_compute(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out) {
  (void)ctx;
  return nebula_cache_result_set(out, key, klen) ? 0 : 1;
}

static void *mixed(void *arg) {
  nebula_cache_t *c = arg;
  char key[16];
  for (int i = 0; i < 3000; i++) {
    int n = snprintf(key, sizeof key, "k%d", (i * 7) % 50);
    const nebula_cache_value_t *v = NULL;
    switch (i % 4) {
    case 0: cr_assert(nebula_cache_put(c, key, (size_t)n, key, (size_t)n)); break;
    case 1: v = nebula_cache_get(c, key, (size_t)n); break;
    case 2: cr_assert_eq(nebula_cache_get_or_compute(c, key, (size_t)n, echo_compute, NULL, &v), 0); break;
    default: nebula_cache_remove(c, key, (size_t)n); break;
    }
    if (v != NULL) {   /* every value is its key */
      cr_assert_eq(v->len, (size_t)n);
      cr_assert_eq(memcmp(v->data, key, (size_t)n), 0);
      nebula_cache_value_release(v);
    }
  }
  return NULL;
}

Test(cache_threads, put_get_remove_and_compute_from_four_threads) {
  nebula_cache_t *c = nebula_cache_create(&(nebula_cache_options_t){ .max_entries = 16, .max_bytes = 64 });
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, mixed, c);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  nebula_cache_stats_t s = stats(c);
  cr_assert_leq(s.entries, 16u);
  cr_assert_leq(s.bytes, 64u);
  cr_assert_eq(s.hits + s.misses, 4u * 1500u, "one of the two per get and per get_or_compute");
  cr_assert_leq(s.waits + s.computations, s.misses, "each wait or computation follows a miss");
  nebula_cache_destroy(c);
}
