/* Threads: frees from other threads, heaps of dead threads reused, concurrent use. */
#ifndef NM_UNIT_STANDALONE
#include <criterion/criterion.h>
#else
#include "standalone.h"
#endif
#include "thread_checks.h"
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/introspect.h"
#include "heap/router.h"
#include "heap/runtime.h"
#include "heap/stats.h"
#include "nm_types.h"
#include "pool/segmap.h"



static nm_totals_t totals(void) {
  nm_totals_t t;
  nm_totals(&t);
  return t;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Blocks that describe themselves: size and seed up front, then a pattern. */
typedef struct {
  uint64_t size;
  uint64_t seed;
} tag_t;

static void tag_fill(void *p, size_t n, uint64_t seed) {
  tag_t *t = p;
  t->size = n;
  t->seed = seed;
  uint8_t *b = p;
  for (size_t i = sizeof *t; i < n; i++) b[i] = (uint8_t)(seed ^ (i * 37));
}

static bool tag_ok(const void *p, size_t *n_out) {
  const tag_t *t = p;
  size_t n = t->size;
  if (n < sizeof *t || n > ((size_t)1 << 20)) return false;
  if (n_out) *n_out = n;
  const uint8_t *b = p;
  for (size_t i = sizeof *t; i < n; i++)
    if (b[i] != (uint8_t)(t->seed ^ (i * 37))) return false;
  return true;
}

/* ---- producer / consumer ---------------------------------------------------------------- */

enum { PC_ROUNDS = 50, PC_BLOCKS = 20000 };

static void **pc_blocks;
static sem_t pc_full, pc_empty;
static size_t pc_page_bytes[PC_ROUNDS];
static size_t pc_mapped[PC_ROUNDS];

static size_t pc_size(size_t i) {
  return 16 + (i % 64) * 16;   /* 16 .. 1024: many classes */
}

static void *producer(void *arg) {
  (void)arg;
  for (unsigned r = 0; r < PC_ROUNDS; r++) {
    for (size_t i = 0; i < PC_BLOCKS; i++) {
      void *p = nm_malloc(pc_size(i));
      if (p == NULL) {
        fail("round %u: malloc(%zu) failed", r, pc_size(i));
        return NULL;
      }
      tag_fill(p, pc_size(i), r * 1000003u + i);
      pc_blocks[i] = p;
    }
    nm_totals_t t = totals();
    pc_page_bytes[r] = t.page_bytes;
    pc_mapped[r] = t.mapped;
    sem_post(&pc_full);
    sem_wait(&pc_empty);   /* the consumer freed them all */
  }
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  for (unsigned r = 0; r < PC_ROUNDS; r++) {
    sem_wait(&pc_full);
    void *mine = nm_malloc(200);   /* the consumer has a heap of its own too */
    for (size_t i = 0; i < PC_BLOCKS; i++) {
      size_t n;
      if (!tag_ok(pc_blocks[i], &n) || n != pc_size(i))
        fail("round %u: block %zu (%p) corrupted before its remote free", r, i, pc_blocks[i]);
      nm_free(pc_blocks[i]);
    }
    nm_free(mine);
    sem_post(&pc_empty);
  }
  return NULL;
}

Test(threads, cross_thread_frees_come_back) {
  pc_blocks = calloc(PC_BLOCKS, sizeof *pc_blocks);
  cr_assert_not_null(pc_blocks);
  sem_init(&pc_full, 0, 0);
  sem_init(&pc_empty, 0, 0);
  pthread_t a, b;
  cr_assert_eq(pthread_create(&a, NULL, producer, NULL), 0);
  cr_assert_eq(pthread_create(&b, NULL, consumer, NULL), 0);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  check_no_failures();
  /* Round 0 sets the working set; later rounds reuse the remotely freed blocks. */
  size_t base = pc_page_bytes[0];
  cr_assert_gt(base, 0u);
  for (unsigned r = 1; r < PC_ROUNDS; r++) {
    cr_assert_leq(pc_page_bytes[r], base + base / 4,
                  "round %u: %zu bytes in pages, round 0 needed %zu: remote frees are not reused", r,
                  pc_page_bytes[r], base);
    cr_assert_leq(pc_mapped[r], pc_mapped[0] + 2 * NM_SEG_SIZE, "round %u: %zu bytes mapped, round 0 %zu", r,
                  pc_mapped[r], pc_mapped[0]);
  }
  free(pc_blocks);
}

/* ---- short-lived threads ---------------------------------------------------------------- */

enum { SL_THREADS = 1000, SL_BATCH = 4, SL_BLOCKS = 200 };

typedef struct {
  void *blocks[SL_BLOCKS];
  uint64_t seed;
} sl_arg_t;

static void *short_lived(void *arg) {
  sl_arg_t *a = arg;
  uint64_t s = a->seed;
  for (size_t i = 0; i < SL_BLOCKS; i++) {
    size_t n = 16 + splitmix(&s) % 2048;
    void *p = nm_malloc(n);
    if (p == NULL) {
      fail("malloc(%zu) failed in a short-lived thread", n);
      a->blocks[i] = NULL;
      continue;
    }
    tag_fill(p, n, splitmix(&s));
    a->blocks[i] = p;
  }
  /* some churn of its own before it dies */
  for (size_t i = 0; i < SL_BLOCKS; i += 3) {
    void *q = nm_malloc(64);
    nm_free(q);
  }
  return NULL;
}

static void sl_free_batch(sl_arg_t *args) {
  for (unsigned t = 0; t < SL_BATCH; t++)
    for (size_t i = 0; i < SL_BLOCKS; i++) {
      void *p = args[t].blocks[i];
      if (p == NULL) continue;
      if (!tag_ok(p, NULL)) fail("block %p of a dead thread corrupted", p);
      nm_free(p);   /* main has no heap: every one of these is a remote free */
    }
}

/* Pages must not keep growing while a fixed set of heaps is handed from thread to thread.
 * How many heaps there are depends on how many threads of a batch happened to live at once
 * (2 to SL_BATCH + 2), and each heap holds about a page per size class it serves, so the
 * baseline is taken per heap count: 10 batches after the count last changed, and every
 * later batch with the same count must stay within twice that plus 1 MiB. (A single
 * baseline at batch 10 failed about 1 run in 15 when a fourth heap appeared later.) */
Test(threads, short_lived_threads_reuse_heaps) {
  static sl_arg_t args[2][SL_BATCH];
  enum { SETTLE = 10 };
  size_t base[SL_BATCH + 3] = {0}, worst[SL_BATCH + 3] = {0};
  size_t last_heaps = 0;
  unsigned since = 0;
  unsigned batches = SL_THREADS / SL_BATCH;
  for (unsigned b = 0; b < batches; b++) {
    sl_arg_t *cur = args[b % 2];
    pthread_t th[SL_BATCH];
    for (unsigned t = 0; t < SL_BATCH; t++) {
      cur[t].seed = (uint64_t)b * SL_BATCH + t + 1;
      cr_assert_eq(pthread_create(&th[t], NULL, short_lived, &cur[t]), 0);
    }
    for (unsigned t = 0; t < SL_BATCH; t++) pthread_join(th[t], NULL);
    /* Blocks of the batch before are freed now, by main, after their threads died. */
    if (b > 0) sl_free_batch(args[(b + 1) % 2]);
    nm_totals_t tt = totals();
    cr_assert_leq(tt.heaps, SL_BATCH + 2, "after %u threads: %zu heaps (at most %d threads lived at once)",
                  (b + 1) * SL_BATCH, tt.heaps, SL_BATCH);
    cr_assert_eq(tt.heaps_active, 0u, "all threads exited but %zu heaps are active", tt.heaps_active);
    if (tt.heaps != last_heaps) {
      last_heaps = tt.heaps;
      since = 0;
    } else {
      since++;
    }
    if (since == SETTLE) base[tt.heaps] = tt.page_bytes;
    else if (since > SETTLE && tt.page_bytes > worst[tt.heaps]) worst[tt.heaps] = tt.page_bytes;
  }
  sl_free_batch(args[(batches - 1) % 2]);
  check_no_failures();
  unsigned checked = 0;
  for (size_t n = 0; n < SL_BATCH + 3; n++) {
    if (base[n] == 0 || worst[n] == 0) continue;
    checked++;
    cr_assert_leq(worst[n], 2 * base[n] + ((size_t)1 << 20),
                  "pages keep growing with short-lived threads and %zu heaps: %zu bytes late vs %zu "
                  "early", n, worst[n], base[n]);
  }
  cr_assert_gt(checked, 0u, "no heap count lasted %d batches", SETTLE + 1);
}

/* ---- concurrent mixed use ---------------------------------------------------------------- */

enum { MT_THREADS = 8, MT_SLOTS = 512, MT_SHARED = 64 };
static _Atomic(void *) mt_shared[MT_SHARED];
static atomic_int mt_go;

static void *mixed(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg * 7919u + 17;
  void **slot = calloc(MT_SLOTS, sizeof *slot);
  if (slot == NULL) {
    fail("calloc of bookkeeping failed");
    return NULL;
  }
  while (!atomic_load(&mt_go)) sched_yield();
  unsigned iters = 120000 / SCALE;
  for (unsigned it = 0; it < iters; it++) {
    uint64_t x = splitmix(&s);
    unsigned i = (unsigned)(x % MT_SLOTS);
    void *old = slot[i];
    if (old != NULL && !tag_ok(old, NULL)) fail("thread %p: own block %p corrupted", arg, old);
    size_t n;
    switch ((x >> 16) % 32) {
      case 0: n = 16 + (x >> 24) % 100000; break;   /* sometimes the system */
      case 1: case 2: case 3: n = 16 + (x >> 24) % 8192; break;
      default: n = 16 + (x >> 24) % 512; break;
    }
    void *p;
    switch ((x >> 40) % 8) {
      case 0:   /* realloc the old block: its prefix must survive */
        if (old != NULL) {
          size_t on = ((tag_t *)old)->size;
          uint64_t oseed = ((tag_t *)old)->seed;
          p = nm_realloc(old, n);
          if (p == NULL) {
            fail("realloc(%zu) failed", n);
            slot[i] = NULL;
            continue;
          }
          const uint8_t *b = p;
          size_t keep = on < n ? on : n;
          for (size_t k = sizeof(tag_t); k < keep; k++)
            if (b[k] != (uint8_t)(oseed ^ (k * 37))) {
              fail("realloc %zu -> %zu lost byte %zu", on, n, k);
              break;
            }
          old = NULL;
          break;
        }
        /* fall through */
      case 1:
        p = nm_calloc(1, n);
        if (p != NULL)
          for (size_t k = 0; k < n; k++)
            if (((uint8_t *)p)[k] != 0) {
              fail("calloc(1, %zu) byte %zu not zero", n, k);
              break;
            }
        break;
      default:
        p = nm_malloc(n);
        break;
    }
    if (p == NULL) {
      fail("allocation of %zu bytes failed", n);
      continue;
    }
    if ((uintptr_t)p % 16) fail("%p not 16-byte aligned", p);
    if (nm_usable_size(p) < n) fail("usable size %zu < %zu", nm_usable_size(p), n);
    tag_fill(p, n, x);
    if (old != NULL) nm_free(old);
    slot[i] = p;
    /* Hand a block to whichever thread comes next; free what was there. */
    if ((x >> 50) % 4 == 0 && slot[i] != NULL) {
      void *theirs = atomic_exchange(&mt_shared[(x >> 56) % MT_SHARED], slot[i]);
      slot[i] = NULL;
      if (theirs != NULL) {
        if (!tag_ok(theirs, NULL)) fail("shared block %p corrupted", theirs);
        nm_free(theirs);
      }
    }
  }
  for (unsigned i = 0; i < MT_SLOTS; i++) {
    if (slot[i] == NULL) continue;
    if (!tag_ok(slot[i], NULL)) fail("block %p corrupted at the end", slot[i]);
    nm_free(slot[i]);
  }
  free(slot);
  return NULL;
}

Test(threads, concurrent_malloc_free_8_threads) {
  pthread_t th[MT_THREADS];
  for (uintptr_t t = 0; t < MT_THREADS; t++)
    cr_assert_eq(pthread_create(&th[t], NULL, mixed, (void *)(t + 1)), 0);
  atomic_store(&mt_go, 1);
  for (unsigned t = 0; t < MT_THREADS; t++) pthread_join(th[t], NULL);
  for (unsigned i = 0; i < MT_SHARED; i++) {
    void *p = atomic_exchange(&mt_shared[i], NULL);
    if (p == NULL) continue;
    if (!tag_ok(p, NULL)) fail("shared block %p corrupted after the threads exited", p);
    nm_free(p);
  }
  check_no_failures();
  /* Orphans keep their warm pages or give them back depending on how many wait already and
   * on whether another thread's sweep settled them (docs/design.md, "Heaps and threads"):
   * both generations are measured once every orphan is settled, so the figures are the
   * pages that still hold something. */
  nm_heap_trim_others(NULL);
  nm_totals_t t = totals();
  cr_assert_leq(t.heaps, MT_THREADS, "%zu heaps for %d threads", t.heaps, MT_THREADS);
  cr_assert_eq(t.heaps_active, 0u);
  /* A second generation of threads adopts the heaps, collects the remote frees, and the pool
   * does not grow. */
  size_t before = t.page_bytes;
  for (uintptr_t k = 0; k < MT_THREADS; k++)
    cr_assert_eq(pthread_create(&th[k], NULL, mixed, (void *)(k + 100)), 0);
  for (unsigned k = 0; k < MT_THREADS; k++) pthread_join(th[k], NULL);
  for (unsigned i = 0; i < MT_SHARED; i++) {
    void *p = atomic_exchange(&mt_shared[i], NULL);
    if (p != NULL) nm_free(p);
  }
  check_no_failures();
  nm_heap_trim_others(NULL);
  t = totals();
  cr_assert_leq(t.heaps, MT_THREADS, "second generation: %zu heaps for %d threads", t.heaps, MT_THREADS);
  cr_assert_leq(t.page_bytes, 2 * before + ((size_t)4 << 20), "second generation grew the pool from %zu to %zu",
                before, t.page_bytes);
}

/* Statistics read while the owners map and unmap segments: a reader walks every heap's
 * pages without a lock, so segments must not be unmapped under it (nm_segment_foreach_page).
 * Workers cycle 8 MiB of 24 KiB blocks, a size class (two segments and more), and trim after each cycle,
 * which unmaps the emptied segments; a reader collects statistics all the while. Once the
 * reader stops, the counts are exact. */
#define SW_WORKERS 2
#define SW_BLOCKS 340
#define SW_SIZE (24u << 10)
#define SW_CYCLES (40 / SCALE)
static atomic_int sw_running;

static void *sw_worker(void *arg) {
  (void)arg;
  void *blocks[SW_BLOCKS];
  for (int cycle = 0; cycle < SW_CYCLES; cycle++) {
    for (unsigned i = 0; i < SW_BLOCKS; i++) {
      blocks[i] = nm_malloc(SW_SIZE);
      if (blocks[i] == NULL) fail("worker: malloc failed in cycle %d", cycle);
      else memset(blocks[i], 0x5a, 64);
    }
    for (unsigned i = 0; i < SW_BLOCKS; i++) nm_free(blocks[i]);
    nm_trim(0);
  }
  atomic_fetch_sub(&sw_running, 1);
  return NULL;
}

static void *sw_reader(void *arg) {
  uint64_t *reads = arg;
  nm_stats_t st;
  while (atomic_load(&sw_running) > 0) {
    nm_stats_collect(&st);
    if (st.total.live > (uint64_t)SW_WORKERS * SW_BLOCKS + 64)
      fail("read %llu live blocks, the workers never hold more than %u",
           (unsigned long long)st.total.live, SW_WORKERS * SW_BLOCKS);
    (*reads)++;
  }
  return NULL;
}

Test(threads, stats_read_while_segments_come_and_go) {
  pthread_t w[SW_WORKERS], r;
  uint64_t reads = 0;
  nm_stats_t before;
  nm_stats_collect(&before);
  atomic_store(&sw_running, SW_WORKERS);
  cr_assert_eq(pthread_create(&r, NULL, sw_reader, &reads), 0);
  for (unsigned i = 0; i < SW_WORKERS; i++) cr_assert_eq(pthread_create(&w[i], NULL, sw_worker, NULL), 0);
  for (unsigned i = 0; i < SW_WORKERS; i++) pthread_join(w[i], NULL);
  pthread_join(r, NULL);
  check_no_failures();
  cr_assert_gt(reads, 0u, "the reader never ran");
  nm_stats_t st;
  nm_stats_collect(&st);
  cr_assert_gt(st.segments_unmapped, before.segments_unmapped, "the workers unmapped no segment");
  unsigned cls = nm_router_lookup(SW_SIZE);
  nm_stats_line_t *l = &st.cls[cls];
  cr_assert_eq(l->live, before.cls[cls].live, "class of %u B: %llu live blocks after everything was freed",
               SW_SIZE, (unsigned long long)l->live);
#if NM_COUNTERS
  uint64_t want = before.cls[cls].allocs + (uint64_t)SW_WORKERS * SW_BLOCKS * SW_CYCLES;
  cr_assert_eq(l->allocs, want, "class of %u B: %llu allocations counted, %llu made", SW_SIZE,
               (unsigned long long)l->allocs, (unsigned long long)want);
  cr_assert_eq(l->frees + l->remote_frees, want - before.cls[cls].live);
#endif
}

/* ---- request cycles: warm pages under trims and heap hand-overs ------------------------
 * Each worker runs requests (allocate a few thousand mixed blocks, check them, free them
 * all), so its pages retire warm at the end of each request and come back at the next;
 * another thread trims every heap all the while (purging warm pages under their owner),
 * and workers exit and new ones adopt their heaps (with their warm lists). Every block is
 * checked whole before it is freed: a warm page taken back with a stale free list would
 * hand out a block twice or one another page owns. */
#define RQ_WORKERS 3
#define RQ_GENERATIONS 4
#define RQ_ROUNDS (24 / SCALE)
#define RQ_BLOCKS 2500
static atomic_int rq_running;

static void *rq_worker(void *arg) {
  uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  static _Thread_local void *blocks[RQ_BLOCKS];
  for (int round = 0; round < RQ_ROUNDS; round++) {
    for (unsigned i = 0; i < RQ_BLOCKS; i++) {
      uint64_t r = splitmix(&seed);
      size_t n = (r & 63) == 0 ? 2048 + (r >> 8) % 14336 : 16 + (r >> 8) % 753;
      if (n < sizeof(tag_t)) n = sizeof(tag_t);
      blocks[i] = nm_malloc(n);
      if (blocks[i] == NULL) {
        fail("request round %d: malloc(%zu) failed", round, n);
        return NULL;
      }
      tag_fill(blocks[i], n, r);
    }
    for (unsigned i = 0; i < RQ_BLOCKS; i++) {
      if (!tag_ok(blocks[i], NULL)) fail("request round %d: block %u (%p) corrupted", round, i, blocks[i]);
      nm_free(blocks[i]);
    }
  }
  return NULL;
}

/* A thread that trims every heap, again and again, while *running > 0. */
typedef struct {
  atomic_int *running;
  uint64_t trims;
} trimmer_t;

static void *trimmer(void *arg) {
  trimmer_t *t = arg;
  while (atomic_load(t->running) > 0) {
    nm_trim(0);
    t->trims++;
    sched_yield();
  }
  return NULL;
}

Test(threads, request_cycles_with_trims_and_new_owners) {
  pthread_t t, w[RQ_WORKERS];
  trimmer_t trims = { &rq_running, 0 };
  atomic_store(&rq_running, 1);
  cr_assert_eq(pthread_create(&t, NULL, trimmer, &trims), 0);
  for (int g = 0; g < RQ_GENERATIONS; g++) {
    for (uintptr_t i = 0; i < RQ_WORKERS; i++)
      cr_assert_eq(pthread_create(&w[i], NULL, rq_worker, (void *)(g * RQ_WORKERS + i + 1)), 0);
    for (unsigned i = 0; i < RQ_WORKERS; i++) pthread_join(w[i], NULL);
  }
  atomic_store(&rq_running, 0);
  pthread_join(t, NULL);
  check_no_failures();
  cr_assert_gt(trims.trims, 0u, "the trimmer never ran");
  nm_stats_t st;
  nm_stats_collect(&st);
  cr_assert_eq(st.total.live, 0u, "%llu blocks live after every request freed its own",
               (unsigned long long)st.total.live);
}

/* ---- an idle owner ------------------------------------------------------------------------
 * A thread allocates blocks (small ones filling many pages, and large ones), hands them to
 * another thread that frees them all, and then waits, alive and idle: it never collects
 * those frees itself. Another thread's trim, or its slow paths once a purge delay has
 * passed, must retire those pages and give their memory back; and when the owner wakes,
 * its heap must still work (every block it then gets is handed out once). */
enum { IO_SMALL = 40000, IO_LARGE = 16 };
static void *io_blocks[IO_SMALL + IO_LARGE];
static sem_t io_made, io_wake;

static size_t io_size(size_t i) {
  return i < IO_SMALL ? 16 + (i % 32) * 16 : (size_t)256 << 10;
}

static void *io_owner(void *arg) {
  (void)arg;
  for (unsigned round = 0; round < 2; round++) {
    for (size_t i = 0; i < IO_SMALL + IO_LARGE; i++) {
      io_blocks[i] = nm_malloc(io_size(i));
      if (io_blocks[i] == NULL) {
        fail("round %u: malloc(%zu) failed", round, io_size(i));
        break;
      }
      tag_fill(io_blocks[i], io_size(i), round * 1000003u + i);
    }
    sem_post(&io_made);
    sem_wait(&io_wake);   /* idle while the others free everything */
  }
  return NULL;
}

static void io_free_all(unsigned round) {
  for (size_t i = 0; i < IO_SMALL + IO_LARGE; i++) {
    size_t n;
    if (!tag_ok(io_blocks[i], &n) || n != io_size(i))
      fail("round %u: block %zu (%p) corrupted before its remote free", round, i, io_blocks[i]);
    nm_free(io_blocks[i]);
  }
}

Test(threads, idle_owner_pages_freed_by_others_come_back) {
  sem_init(&io_made, 0, 0);
  sem_init(&io_wake, 0, 0);
  pthread_t owner;
  cr_assert_eq(pthread_create(&owner, NULL, io_owner, NULL), 0);

  /* Round 0: a trim from this thread takes the idle owner's pages back. */
  sem_wait(&io_made);
  check_no_failures();
  size_t held = totals().page_bytes;
  io_free_all(0);
  nm_trim(0);
  nm_totals_t t = totals();
  cr_assert_leq(t.page_bytes, held / 4,
                "%zu bytes in pages after another thread freed the idle owner's %zu and trimmed", t.page_bytes,
                held);
  cr_assert_leq(t.dirty, (size_t)1 << 20, "%zu freed bytes still resident after the trim", t.dirty);

  /* Round 1: the owner wakes and allocates it all again (from its current pages, whose
   * remote frees it collects, and from the retired ones), then waits again; this thread's
   * slow paths alone, once the purge delay has passed, take the pages back. */
  sem_post(&io_wake);
  sem_wait(&io_made);
  check_no_failures();
  held = totals().page_bytes;
  io_free_all(1);
  bool back = false;
  for (int tries = 0; tries < 400 && !back; tries++) {   /* up to ~2 s: purge_delay is 50 ms */
    void *churn[64];
    for (int i = 0; i < 64; i++) churn[i] = nm_malloc(64u << 10);   /* a page each: slow paths */
    for (int i = 0; i < 64; i++) nm_free(churn[i]);
    back = totals().page_bytes <= held / 4;
    if (!back) {
      struct timespec ts = { 0, 5 * 1000 * 1000 };
      nanosleep(&ts, NULL);
    }
  }
  cr_assert(back, "the idle owner's pages (%zu bytes) were not taken back by another thread's slow paths: %zu",
            held, totals().page_bytes);
  sem_post(&io_wake);
  pthread_join(owner, NULL);
  check_no_failures();
  nm_stats_t st;
  nm_stats_collect(&st);
  cr_assert_eq(st.total.live, 0u, "%llu blocks live after all were freed", (unsigned long long)st.total.live);
  cr_assert_geq(st.total.remote_frees, 2u * (IO_SMALL + IO_LARGE), "remote frees counted: %llu",
                (unsigned long long)st.total.remote_frees);
}

/* Owners that alternate between work and idleness while a consumer frees half their blocks
 * and they free the other half themselves (into full pages, which they take back from under
 * any sweeper), and a trimmer sweeps all the while. Every block is checked whole before it
 * is freed: a page retired while its owner still used it would hand a block out twice. */
#define IS_OWNERS 2
#define IS_ROUNDS (40 / SCALE)
#define IS_BLOCKS 3000
static atomic_int is_running;
static _Atomic(void **) is_handoff[IS_OWNERS];

static size_t is_size(uint64_t r) {
  return (r & 63) == 0 ? (size_t)(160u << 10) + (r >> 8) % 4096 : 16 + (r >> 8) % 1009;
}

static void *is_owner(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  uint64_t seed = id * 0x9e3779b97f4a7c15ull + 7;
  for (int round = 0; round < IS_ROUNDS; round++) {
    void **theirs = malloc(IS_BLOCKS / 2 * sizeof *theirs);
    void *mine[IS_BLOCKS / 2];
    for (unsigned i = 0; i < IS_BLOCKS; i++) {
      uint64_t r = splitmix(&seed);
      size_t n = is_size(r);
      void *p = nm_malloc(n);
      if (p == NULL) {
        fail("owner %u round %d: malloc(%zu) failed", (unsigned)id, round, n);
        return NULL;
      }
      tag_fill(p, n, r);
      if (i & 1) theirs[i / 2] = p;
      else mine[i / 2] = p;
    }
    while (atomic_load(&is_handoff[id]) != NULL) sched_yield();
    atomic_store(&is_handoff[id], theirs);
    if (round % 3 == 0) {   /* idle for a while */
      struct timespec ts = { 0, 2 * 1000 * 1000 };
      nanosleep(&ts, NULL);
    }
    for (unsigned i = 0; i < IS_BLOCKS / 2; i++) {
      if (!tag_ok(mine[i], NULL)) fail("owner %u round %d: own block %u (%p) corrupted", (unsigned)id, round, i, mine[i]);
      nm_free(mine[i]);
    }
  }
  while (atomic_load(&is_handoff[id]) != NULL) sched_yield();
  return NULL;
}

static void *is_consumer(void *arg) {
  (void)arg;
  while (atomic_load(&is_running) > 0) {
    bool any = false;
    for (int o = 0; o < IS_OWNERS; o++) {
      void **blocks = atomic_load(&is_handoff[o]);
      if (blocks == NULL) continue;
      any = true;
      for (unsigned i = 0; i < IS_BLOCKS / 2; i++) {
        if (!tag_ok(blocks[i], NULL)) fail("owner %d: handed block %u (%p) corrupted", o, i, blocks[i]);
        nm_free(blocks[i]);
      }
      free(blocks);
      atomic_store(&is_handoff[o], NULL);
    }
    if (!any) sched_yield();
  }
  return NULL;
}

static void is_run(void) {
  pthread_t owners[IS_OWNERS], consumer, trim;
  trimmer_t trims = { &is_running, 0 };
  atomic_store(&is_running, 1);
  cr_assert_eq(pthread_create(&consumer, NULL, is_consumer, NULL), 0);
  cr_assert_eq(pthread_create(&trim, NULL, trimmer, &trims), 0);
  for (uintptr_t i = 0; i < IS_OWNERS; i++) cr_assert_eq(pthread_create(&owners[i], NULL, is_owner, (void *)i), 0);
  for (unsigned i = 0; i < IS_OWNERS; i++) pthread_join(owners[i], NULL);
  atomic_store(&is_running, 0);
  pthread_join(consumer, NULL);
  pthread_join(trim, NULL);
  check_no_failures();
  cr_assert_gt(trims.trims, 0u, "the trimmer never ran");
  nm_stats_t st;
  nm_stats_collect(&st);
  cr_assert_eq(st.total.live, 0u, "%llu blocks live after every block was freed", (unsigned long long)st.total.live);
}

Test(threads, idle_and_busy_owners_with_sweeps) {
  is_run();
}

/* The same with the throughput route: blocks up to 64 KiB come from bump regions, which a
 * sweeper counts down (atomically, as their owner's local frees do) once not current. */
Test(threads, idle_and_busy_owners_with_sweeps_bump_regions) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.range_count = 3;
  r.opt.ranges[0] = (nm_route_range_t){ 0, 64u << 10, NM_BACKEND_BUMP };
  r.opt.ranges[1] = (nm_route_range_t){ (64u << 10) + 1, 2u << 20, NM_BACKEND_POOL };
  r.opt.ranges[2] = (nm_route_range_t){ (2u << 20) + 1, SIZE_MAX, NM_BACKEND_SYSTEM };
  cr_assert_eq(nm_runtime_init(&r), 0);
  cr_assert_eq(nm_router_backend(100), NM_BACKEND_BUMP);
  is_run();
}
