/* The allocation-trace depot (src/diag/trace_depot.c): each distinct trace stored once, the
 * same trace always the same entry, traces of different lengths apart, and any number of
 * threads adding at once (also run under ThreadSanitizer: NM_UNIT_STANDALONE). */
#ifndef NM_UNIT_STANDALONE
#include <criterion/criterion.h>
#else
#include "standalone.h"
#endif
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "diag/trace_depot.h"

static void make_trace(void **ips, unsigned seed, int n) {
  for (int i = 0; i < n; i++) ips[i] = (void *)(uintptr_t)(0x400000u + seed * 4096u + (unsigned)i * 16u + 1u);
}

static void expect_holds(const nm_trace_t *t, void *const *ips, int n) {
  cr_assert_not_null(t);
  cr_assert_eq(t->frames, (uint32_t)n, "stored %u frames, %d given", t->frames, n);
  cr_assert(memcmp(t->ips, ips, (size_t)n * sizeof ips[0]) == 0, "the stored frames differ");
}

Test(trace_depot, the_same_trace_is_stored_once) {
  void *a[NM_TRACE_FRAMES], *b[NM_TRACE_FRAMES];
  make_trace(a, 1, NM_TRACE_FRAMES);
  make_trace(b, 2, NM_TRACE_FRAMES);
  const nm_trace_t *ta = nm_trace_depot_put(a, NM_TRACE_FRAMES);
  const nm_trace_t *tb = nm_trace_depot_put(b, NM_TRACE_FRAMES);
  expect_holds(ta, a, NM_TRACE_FRAMES);
  expect_holds(tb, b, NM_TRACE_FRAMES);
  cr_assert_neq(ta, tb, "two traces share an entry");
  cr_assert_eq(nm_trace_depot_put(a, NM_TRACE_FRAMES), ta, "the same trace got a second entry");
  /* A prefix is another trace; more than NM_TRACE_FRAMES frames are cut to that many. */
  const nm_trace_t *short_a = nm_trace_depot_put(a, 3);
  expect_holds(short_a, a, 3);
  cr_assert_neq(short_a, ta);
  void *long_a[NM_TRACE_FRAMES + 4];
  make_trace(long_a, 1, NM_TRACE_FRAMES + 4);
  cr_assert_eq(nm_trace_depot_put(long_a, NM_TRACE_FRAMES + 4), ta);
}

/* More traces than one chunk of the depot holds: every one comes back intact and unique. */
Test(trace_depot, many_traces_across_chunks) {
  enum { N = 30000 };   /* 30000 x 80 bytes: three 1 MiB chunks */
  static const nm_trace_t *got[N];
  void *ips[NM_TRACE_FRAMES];
  for (unsigned i = 0; i < N; i++) {
    make_trace(ips, 100 + i, 1 + (int)(i % NM_TRACE_FRAMES));
    got[i] = nm_trace_depot_put(ips, 1 + (int)(i % NM_TRACE_FRAMES));
    expect_holds(got[i], ips, 1 + (int)(i % NM_TRACE_FRAMES));
  }
  for (unsigned i = 0; i < N; i += 97) {
    make_trace(ips, 100 + i, 1 + (int)(i % NM_TRACE_FRAMES));
    cr_assert_eq(nm_trace_depot_put(ips, 1 + (int)(i % NM_TRACE_FRAMES)), got[i], "trace %u stored twice", i);
  }
}

/* Four threads add overlapping sets of traces at once: each gets entries that hold what it
 * gave (two equal entries may exist after a race, but never a wrong or torn one). */
typedef struct { unsigned first; int bad; } depot_arg_t;

static void *depot_worker(void *arg) {
  depot_arg_t *a = arg;
  void *ips[NM_TRACE_FRAMES];
  for (unsigned round = 0; round < 20; round++)
    for (unsigned i = 0; i < 2000; i++) {
      unsigned seed = 50000 + a->first + i;
      make_trace(ips, seed, NM_TRACE_FRAMES);
      const nm_trace_t *t = nm_trace_depot_put(ips, NM_TRACE_FRAMES);
      if (t == NULL || t->frames != NM_TRACE_FRAMES || memcmp(t->ips, ips, sizeof ips) != 0) a->bad++;
    }
  return NULL;
}

Test(trace_depot, threads_add_at_once) {
  pthread_t t[4];
  depot_arg_t args[4];
  for (unsigned i = 0; i < 4; i++) {
    args[i] = (depot_arg_t){ .first = i * 1000, .bad = 0 };   /* half of each set is shared */
    cr_assert_eq(pthread_create(&t[i], NULL, depot_worker, &args[i]), 0);
  }
  for (unsigned i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    cr_assert_eq(args[i].bad, 0, "thread %u got %d wrong entries", i, args[i].bad);
  }
}
