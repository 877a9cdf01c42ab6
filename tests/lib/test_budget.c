/* Budgets: limits on each level, the chain in the error, lock-free reserve/release under
 * threads, peaks, clamped releases, destroy rules, and nebula_budgeted over the system
 * allocator. Also built without Criterion for ThreadSanitizer (NM_UNIT_STANDALONE). */
#ifndef NM_UNIT_STANDALONE
#include <criterion/criterion.h>
#else
#include "standalone.h"
#endif
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <nebula/budget.h>
#include <nebula/memory.h>

#define KiB ((size_t)1024)

Test(budget, limits_apply_at_every_level) {
  nebula_budget_t *total = nebula_budget_create("total", 100 * KiB, NULL);
  nebula_budget_t *req = nebula_budget_create("requests", 64 * KiB, total);
  nebula_budget_t *other = nebula_budget_create("other", 0, total);
  cr_assert_not_null(total);
  cr_assert_not_null(req);
  cr_assert_not_null(other);
  cr_assert_str_eq(nebula_budget_name(req), "requests");
  cr_assert_eq(nebula_budget_parent(req), total);
  cr_assert_null(nebula_budget_parent(total));
  cr_assert_eq(nebula_budget_limit(req), 64 * KiB);
  cr_assert_eq(nebula_budget_limit(other), 0u);

  cr_assert(nebula_budget_reserve(req, 64 * KiB));
  cr_assert_not(nebula_budget_reserve(req, 1), "the child's own limit");
  cr_assert_eq(nebula_budget_used(req), 64 * KiB);
  cr_assert_eq(nebula_budget_used(total), 64 * KiB, "charged to the parent too");
  cr_assert(nebula_budget_reserve(other, 36 * KiB));
  cr_assert_not(nebula_budget_reserve(other, 1), "other has no limit, but total does");
  cr_assert_eq(nebula_budget_used(other), 36 * KiB, "the failed reserve left nothing behind");
  cr_assert_eq(nebula_budget_used(total), 100 * KiB);
  cr_assert(nebula_budget_reserve(other, 0), "0 always succeeds");

  cr_assert(nebula_budget_release(req, 64 * KiB));
  cr_assert(nebula_budget_release(other, 36 * KiB));
  cr_assert_eq(nebula_budget_used(total), 0u);
  cr_assert(nebula_budget_destroy(req));
  cr_assert(nebula_budget_destroy(other));
  cr_assert(nebula_budget_destroy(total));
}

Test(budget, a_child_limit_above_the_parent_still_obeys_the_parent) {
  nebula_budget_t *total = nebula_budget_create("total", 10 * KiB, NULL);
  nebula_budget_t *big = nebula_budget_create("big", 1024 * KiB, total);
  cr_assert_eq(nebula_budget_available(big), 10 * KiB, "the least room on the chain");
  cr_assert_not(nebula_budget_reserve(big, 11 * KiB));
  cr_assert_eq(nebula_budget_failures(total), 1u, "counted where the chain was exceeded");
  cr_assert_eq(nebula_budget_failures(big), 0u);
  cr_assert(nebula_budget_reserve(big, 4 * KiB));
  cr_assert_eq(nebula_budget_available(big), 6 * KiB);
  cr_assert_eq(nebula_budget_available(total), 6 * KiB);
  cr_assert(nebula_budget_release(big, 4 * KiB));
  cr_assert(nebula_budget_destroy(big));
  cr_assert(nebula_budget_destroy(total));
}

Test(budget, available_without_limits_is_unbounded) {
  nebula_budget_t *root = nebula_budget_create("root", 0, NULL);
  cr_assert_eq(nebula_budget_available(root), SIZE_MAX);
  cr_assert(nebula_budget_reserve(root, SIZE_MAX / 2));
  cr_assert_eq(nebula_budget_available(root), SIZE_MAX, "no limit: only counts");
  cr_assert_not(nebula_budget_reserve(root, SIZE_MAX / 2 + 2), "size_t overflow is refused");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  cr_assert(nebula_budget_release(root, SIZE_MAX / 2));
  cr_assert(nebula_budget_destroy(root));
}

Test(budget, the_error_names_the_chain_and_marks_the_exceeded_budget) {
  nebula_budget_t *total = nebula_budget_create("total", 100 * KiB, NULL);
  nebula_budget_t *req = nebula_budget_create("requests", 64 * KiB, total);
  cr_assert(nebula_budget_reserve(req, 60 * KiB));
  nebula_error_clear();
  cr_assert_not(nebula_budget_reserve(req, 8 * KiB));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_BUDGET);
  cr_assert_str_eq(e->function, "nebula_budget_reserve");
  cr_assert_eq(e->size, 8 * KiB);
  cr_assert_str_eq(e->budget_chain, "requests (60.0 KiB + 8.0 KiB > 64.0 KiB) > total (100.0 KiB)");
  cr_assert_str_eq(e->detail, "budget requests: 60.0 KiB used + 8.0 KiB asked > limit 64.0 KiB");
  cr_assert_not_null(e->suggestion);
  cr_assert_eq(nebula_budget_failures(req), 1u);
  cr_assert_eq(nebula_budget_failures(total), 0u);

  /* The parent exceeded, three levels, a budget without a limit in the middle. */
  nebula_budget_t *cache = nebula_budget_create("cache", 0, req);
  nebula_budget_t *side = nebula_budget_create("side", 0, total);
  cr_assert(nebula_budget_release(req, 60 * KiB));
  cr_assert(nebula_budget_reserve(side, 90 * KiB));
  cr_assert_not(nebula_budget_reserve(cache, 20 * KiB));
  cr_assert_str_eq(nebula_last_error()->budget_chain,
                   "cache > requests (64.0 KiB) > total (90.0 KiB + 20.0 KiB > 100.0 KiB)");
  cr_assert_eq(nebula_budget_failures(total), 1u);
  cr_assert_eq(nebula_budget_used(cache), 0u);
  cr_assert_eq(nebula_budget_used(req), 0u, "the levels already reserved were undone");

  /* The report carries the chain on its `budget` line. */
  char buf[1024];
  nebula_error_format(nebula_last_error(), buf, sizeof buf);
  const char *line = "  budget    cache > requests (64.0 KiB) > total (90.0 KiB + 20.0 KiB > 100.0 KiB)\n";
  cr_assert_not_null(strstr(buf, line), "%s", buf);

  cr_assert(nebula_budget_release(side, 90 * KiB));
  cr_assert(nebula_budget_destroy(cache));
  cr_assert(nebula_budget_destroy(side));
  cr_assert(nebula_budget_destroy(req));
  cr_assert(nebula_budget_destroy(total));
}

Test(budget, small_numbers_are_in_bytes) {
  nebula_budget_t *b = nebula_budget_create("tiny", 100, NULL);
  cr_assert(nebula_budget_reserve(b, 90));
  cr_assert_not(nebula_budget_reserve(b, 20));
  cr_assert_str_eq(nebula_last_error()->budget_chain, "tiny (90 B + 20 B > 100 B)");
  cr_assert(nebula_budget_release(b, 90));
  cr_assert(nebula_budget_destroy(b));
}

Test(budget, peak_is_the_most_used_and_ignores_failed_requests) {
  nebula_budget_t *total = nebula_budget_create("total", 100, NULL);
  nebula_budget_t *child = nebula_budget_create("child", 0, total);
  cr_assert(nebula_budget_reserve(child, 60));
  cr_assert(nebula_budget_release(child, 50));
  cr_assert(nebula_budget_reserve(child, 20));
  cr_assert_eq(nebula_budget_peak(child), 60u);
  cr_assert_eq(nebula_budget_peak(total), 60u);
  cr_assert_not(nebula_budget_reserve(child, 95), "30 + 95 > 100");
  cr_assert_eq(nebula_budget_peak(child), 60u, "a failed request is no peak");
  cr_assert(nebula_budget_reserve(child, 70));
  cr_assert_eq(nebula_budget_peak(child), 100u);
  cr_assert_eq(nebula_budget_peak(total), 100u);
  cr_assert(nebula_budget_release(child, 100));
  cr_assert_eq(nebula_budget_peak(total), 100u);
  cr_assert(nebula_budget_destroy(child));
  cr_assert(nebula_budget_destroy(total));
}

Test(budget, releasing_too_much_clamps_at_zero) {
  nebula_budget_t *total = nebula_budget_create("total", 0, NULL);
  nebula_budget_t *child = nebula_budget_create("child", 0, total);
  nebula_budget_t *sib = nebula_budget_create("sibling", 0, total);
  cr_assert(nebula_budget_reserve(child, 10));
  cr_assert(nebula_budget_reserve(sib, 100));
  nebula_error_clear();
  cr_assert_not(nebula_budget_release(child, 30));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_str_eq(nebula_last_error()->detail,
                   "budget child: releasing 30 B with 10 B reserved (clamped at 0)");
  cr_assert_eq(nebula_budget_used(child), 0u);
  cr_assert_eq(nebula_budget_used(total), 80u, "the parent had 110: 30 leave it");
  cr_assert(nebula_budget_release(child, 0));
  cr_assert(nebula_budget_release(sib, 80));
  cr_assert_not(nebula_budget_release(sib, 20));
  cr_assert_eq(nebula_budget_used(total), 0u);
  cr_assert(nebula_budget_destroy(child));
  cr_assert(nebula_budget_destroy(sib));
  cr_assert(nebula_budget_destroy(total));
}

Test(budget, destroy_needs_no_children_and_nothing_reserved) {
  cr_assert(nebula_budget_destroy(NULL));
  nebula_budget_t *total = nebula_budget_create("total", 0, NULL);
  nebula_budget_t *child = nebula_budget_create("child", 0, total);
  nebula_error_clear();
  cr_assert_not(nebula_budget_destroy(total), "it has a child");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_str_eq(nebula_budget_name(total), "total", "kept");
  cr_assert(nebula_budget_reserve(child, 5));
  cr_assert_not(nebula_budget_destroy(child), "it holds 5 bytes");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert(nebula_budget_release(child, 5));
  cr_assert(nebula_budget_destroy(child));
  cr_assert(nebula_budget_destroy(total), "no children left");
}

Test(budget, bad_arguments_are_errors) {
  cr_assert_null(nebula_budget_create(NULL, 0, NULL));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_not(nebula_budget_reserve(NULL, 1));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_not(nebula_budget_release(NULL, 1));
  cr_assert_null(nebula_budgeted(NULL, NULL));
  cr_assert_eq(nebula_budget_used(NULL), 0u);
  /* Long names are cut at 31 characters. */
  nebula_budget_t *b = nebula_budget_create("0123456789012345678901234567890123456789", 0, NULL);
  cr_assert_str_eq(nebula_budget_name(b), "0123456789012345678901234567890");
  cr_assert(nebula_budget_destroy(b));
}

/* ---- threads ------------------------------------------------------------------------------ */

#define RACE_THREADS 4
#define RACE_LIMIT 20000u

typedef struct {
  nebula_budget_t *b;
  pthread_barrier_t *start;
  size_t granted;
} racer_t;

static void *race_units(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->start);
  while (nebula_budget_reserve(r->b, 1)) r->granted++;
  return NULL;
}

Test(budget_threads, racing_one_byte_reserves_grant_exactly_the_limit) {
  nebula_budget_t *total = nebula_budget_create("total", RACE_LIMIT, NULL);
  nebula_budget_t *child = nebula_budget_create("child", 0, total);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, RACE_THREADS);
  racer_t r[RACE_THREADS];
  pthread_t t[RACE_THREADS];
  for (int i = 0; i < RACE_THREADS; i++) {
    r[i] = (racer_t){ child, &start, 0 };
    pthread_create(&t[i], NULL, race_units, &r[i]);
  }
  size_t granted = 0;
  for (int i = 0; i < RACE_THREADS; i++) {
    pthread_join(t[i], NULL);
    granted += r[i].granted;
  }
  pthread_barrier_destroy(&start);
  cr_assert_eq(granted, (size_t)RACE_LIMIT, "granted %zu", granted);
  cr_assert_eq(nebula_budget_used(total), (size_t)RACE_LIMIT);
  cr_assert_eq(nebula_budget_used(child), (size_t)RACE_LIMIT, "failures above left nothing in the child");
  cr_assert_eq(nebula_budget_peak(total), (size_t)RACE_LIMIT);
  cr_assert_eq(nebula_budget_failures(total), (size_t)RACE_THREADS, "one failure ends each thread");
  cr_assert(nebula_budget_release(child, RACE_LIMIT));
  cr_assert(nebula_budget_destroy(child));
  cr_assert(nebula_budget_destroy(total));
}

static void *churn(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->start);
  for (int i = 0; i < 20000; i++) {
    size_t n = 1 + (size_t)(i % 7);
    if (nebula_budget_reserve(r->b, n)) {
      r->granted++;
      cr_assert(nebula_budget_release(r->b, n));
    }
  }
  return NULL;
}

Test(budget_threads, reserve_and_release_from_four_threads_balance) {
  nebula_budget_t *total = nebula_budget_create("total", 16, NULL);
  nebula_budget_t *kids[2] = { nebula_budget_create("a", 10, total), nebula_budget_create("b", 0, total) };
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, RACE_THREADS);
  racer_t r[RACE_THREADS];
  pthread_t t[RACE_THREADS];
  for (int i = 0; i < RACE_THREADS; i++) {
    r[i] = (racer_t){ kids[i % 2], &start, 0 };
    pthread_create(&t[i], NULL, churn, &r[i]);
  }
  size_t granted = 0;
  for (int i = 0; i < RACE_THREADS; i++) {
    pthread_join(t[i], NULL);
    granted += r[i].granted;
  }
  pthread_barrier_destroy(&start);
  cr_assert_gt(granted, 0u);
  cr_assert_eq(nebula_budget_used(total), 0u);
  cr_assert_eq(nebula_budget_used(kids[0]), 0u);
  cr_assert_eq(nebula_budget_used(kids[1]), 0u);
  cr_assert_leq(nebula_budget_peak(total), 16u, "never above the limit");
  cr_assert_leq(nebula_budget_peak(kids[0]), 10u);
  cr_assert(nebula_budget_destroy(kids[0]));
  cr_assert(nebula_budget_destroy(kids[1]));
  cr_assert(nebula_budget_destroy(total));
}

/* ---- nebula_budgeted ------------------------------------------------------------------------ */

Test(budgeted, charges_usable_sizes_and_releases_them) {
  nebula_budget_t *b = nebula_budget_create("heap", 64 * KiB, NULL);
  nebula_allocator_t *a = nebula_budgeted(nebula_system_allocator(), b);
  cr_assert_not_null(a);
  cr_assert_str_eq(nebula_allocator_name(a), "system@heap");
  char *p = nebula_allocate(a, 100, 0);
  cr_assert_not_null(p);
  size_t u = malloc_usable_size(p);
  cr_assert_geq(u, 100u);
  cr_assert_eq(nebula_usable_size(a, p), u);
  cr_assert_eq(nebula_budget_used(b), u, "the usable size, not the request");
  char *q = nebula_allocate(a, 1000, 64);
  cr_assert_not_null(q);
  cr_assert_eq((uintptr_t)q % 64, 0u);
  size_t uq = malloc_usable_size(q);
  cr_assert_eq(nebula_budget_used(b), u + uq);

  nebula_allocator_state_t s;
  nebula_allocator_state(a, &s);
  cr_assert_eq(s.used, u + uq);
  cr_assert_eq(s.allocations, 2u);
  cr_assert_eq(s.available, 64 * KiB - u - uq);
  cr_assert_eq(s.capacity, 64 * KiB);

  cr_assert(nebula_deallocate(a, p));
  cr_assert_eq(nebula_budget_used(b), uq);
  cr_assert(nebula_deallocate(a, q));
  cr_assert_eq(nebula_budget_used(b), 0u);
  cr_assert_geq(nebula_budget_peak(b), u + uq);
  nebula_allocator_destroy(a);
  cr_assert(nebula_budget_destroy(b), "the wrapper does not own the budget");
}

Test(budgeted, a_refused_charge_frees_the_block_and_reports_the_budget) {
  nebula_budget_t *total = nebula_budget_create("total", 4 * KiB, NULL);
  nebula_budget_t *b = nebula_budget_create("requests", 0, total);
  nebula_allocator_t *a = nebula_budgeted(nebula_system_allocator(), b);
  char *p = nebula_allocate(a, 3000, 0);
  cr_assert_not_null(p);
  size_t used = nebula_budget_used(b);
  nebula_error_clear();
  cr_assert_null(nebula_allocate(a, 2000, 0));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_BUDGET);
  cr_assert_str_eq(e->allocator, "system@requests");
  cr_assert_not_null(strstr(e->budget_chain, "requests > total ("), "%s", e->budget_chain);
  cr_assert_eq(nebula_budget_used(b), used, "nothing charged for the refused block");
  cr_assert_eq(nebula_budget_failures(total), 1u);
  cr_assert(nebula_deallocate(a, p));
  cr_assert_eq(nebula_budget_used(total), 0u);
  nebula_allocator_destroy(a);
  cr_assert(nebula_budget_destroy(b));
  cr_assert(nebula_budget_destroy(total));
}

Test(budgeted, reallocate_charges_the_difference) {
  nebula_budget_t *b = nebula_budget_create("heap", 16 * KiB, NULL);
  nebula_allocator_t *a = nebula_budgeted(nebula_system_allocator(), b);
  char *p = nebula_reallocate(a, NULL, 10, 0);
  cr_assert_not_null(p);
  memcpy(p, "0123456789", 10);
  cr_assert_eq(nebula_budget_used(b), malloc_usable_size(p));
  p = nebula_reallocate(a, p, 4000, 0);
  cr_assert_not_null(p);
  cr_assert_eq(memcmp(p, "0123456789", 10), 0);
  cr_assert_eq(nebula_budget_used(b), malloc_usable_size(p));
  p = nebula_reallocate(a, p, 100, 0);
  cr_assert_not_null(p);
  cr_assert_eq(memcmp(p, "0123456789", 10), 0);
  cr_assert_eq(nebula_budget_used(b), malloc_usable_size(p), "a shrink releases the difference");

  /* A growth past the budget fails and leaves p and its charge alone. */
  size_t before = nebula_budget_used(b);
  cr_assert_null(nebula_reallocate(a, p, 32 * KiB, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  cr_assert_eq(nebula_budget_used(b), before);
  cr_assert_eq(memcmp(p, "0123456789", 10), 0);
  cr_assert(nebula_deallocate(a, p));
  cr_assert_eq(nebula_budget_used(b), 0u);
  nebula_allocator_destroy(a);
  cr_assert(nebula_budget_destroy(b));
}

typedef struct {
  nebula_allocator_t *a;
  pthread_barrier_t *start;
} alloc_racer_t;

static void *alloc_churn(void *arg) {
  alloc_racer_t *r = arg;
  pthread_barrier_wait(r->start);
  void *held[8] = { 0 };
  for (int i = 0; i < 4000; i++) {
    int k = i % 8;
    if (held[k] != NULL) cr_assert(nebula_deallocate(r->a, held[k]));
    held[k] = nebula_allocate(r->a, 16 + (size_t)(i % 200), 0);   /* NULL when the budget is full */
  }
  for (int k = 0; k < 8; k++) cr_assert(nebula_deallocate(r->a, held[k]));
  return NULL;
}

Test(budgeted, threads_share_one_budget) {
  nebula_budget_t *b = nebula_budget_create("shared", 8 * KiB, NULL);
  nebula_allocator_t *a = nebula_budgeted(nebula_system_allocator(), b);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, RACE_THREADS);
  alloc_racer_t r = { a, &start };
  pthread_t t[RACE_THREADS];
  for (int i = 0; i < RACE_THREADS; i++) pthread_create(&t[i], NULL, alloc_churn, &r);
  for (int i = 0; i < RACE_THREADS; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start);
  cr_assert_eq(nebula_budget_used(b), 0u);
  cr_assert_leq(nebula_budget_peak(b), 8 * KiB);
  nebula_allocator_state_t s;
  nebula_allocator_state(a, &s);
  cr_assert_eq(s.used, 0u);
  cr_assert_eq(s.allocations, 0u);
  nebula_allocator_destroy(a);
  cr_assert(nebula_budget_destroy(b));
}
