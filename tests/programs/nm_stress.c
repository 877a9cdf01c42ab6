/* nm_stress: a threaded malloc stress program, run plain and under LD_PRELOAD by the
 * integration tests, which compare the two outputs.
 *
 *   nm_stress [THREADS [ITERATIONS [CHURN_THREADS [FORKS]]]]
 *
 * Every worker runs ITERATIONS operations drawn from its own seeded PRNG, so the operation
 * counts, and therefore the summary line on stdout, are the same in every run and under any
 * allocator. Addresses and timings are never printed. Each failed check is printed to
 * stderr (and counted); the exit status is 1 if any check failed.
 *
 * What is checked:
 *  - every block holds a pattern derived from its address and size, written over all of
 *    malloc_usable_size() and verified before it is freed or reallocated (overlapping
 *    blocks, use-after-free by the allocator, or a short usable size show up here);
 *  - blocks are freed by other threads (a per-thread inbox of handed-off blocks);
 *  - realloc grows and shrinks keep the old prefix;
 *  - posix_memalign / aligned_alloc / memalign honour alignments from 8 B to 64 KiB;
 *  - calloc returns zeroes, also on memory that was just freed dirty;
 *  - every block is 16-byte aligned; malloc_usable_size(p) >= request;
 *  - glibc's edge cases: malloc(0), free(NULL), realloc(NULL, n), realloc(p, 0),
 *    realloc(NULL, 0), malloc_usable_size(NULL), overflowing calloc, huge malloc,
 *    posix_memalign with a bad alignment;
 *  - fork() while the workers allocate: the child allocates, frees blocks of the parent's
 *    threads, starts a thread, prints a line and exits 0;
 *  - CHURN_THREADS short-lived threads (created and joined in batches) each allocate a few
 *    blocks, some freed by the main thread; RSS must not grow by 64 MiB or more. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nm_rss.h"

#define MAX_THREADS 64
#define SLOTS 2048
#define MIB (1024u * 1024u)

/* ---------------------------------------------------------------- failures */

static atomic_ulong g_failures;

static void fail(const char *fmt, ...) {
  unsigned long n = atomic_fetch_add(&g_failures, 1) + 1;
  if (n > 50) return;   /* the first ones tell the story */
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "nm_stress: FAILED: %s\n", buf);
}

/* ---------------------------------------------------------------- PRNG */

static inline uint64_t rng_next(uint64_t *s) {   /* splitmix64 */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline unsigned rng_below(uint64_t *s, unsigned n) {
  return (unsigned)(rng_next(s) % n);
}

/* 1 B .. 1 MiB, skewed to small: 80% <= 256 B, 17% <= 16 KiB, 2.5% <= 256 KiB,
 * 0.5% <= 1 MiB. */
static size_t rng_size(uint64_t *s) {
  unsigned r = rng_below(s, 1000);
  if (r < 800) return 1 + rng_below(s, 256);
  if (r < 970) return 257 + rng_below(s, 16 * 1024 - 256);
  if (r < 995) return 16 * 1024 + 1 + rng_below(s, 240 * 1024);
  return 256 * 1024 + 1 + rng_below(s, MIB - 256 * 1024);
}

/* ---------------------------------------------------------------- patterns */

static inline uint64_t pattern_seed(const void *p, size_t n) {
  uint64_t z = (uint64_t)(uintptr_t)p ^ ((uint64_t)n * 0xD6E8FEB86659FD93ull);
  z = (z ^ (z >> 32)) * 0x9E3779B97F4A7C15ull;
  return z ^ (z >> 29);
}

/* Byte i of the pattern is byte i%8 of word i/8, whatever the length checked. */
static inline uint64_t pattern_word(uint64_t seed, size_t k) {
  return seed ^ (k * 0x9E3779B97F4A7C15ull);
}

static inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  return (uint8_t)(pattern_word(seed, i / 8) >> ((i & 7) * 8));
}

/* Fills n bytes of p: 8-byte words (p is at least 8-aligned here), then the tail. */
static void pattern_fill(void *p, size_t n, uint64_t seed) {
  uint64_t *w = p;
  size_t words = n / 8;
  for (size_t k = 0; k < words; k++) w[k] = pattern_word(seed, k);
  unsigned char *b = p;
  for (size_t i = words * 8; i < n; i++) b[i] = pattern_byte(seed, i);
}

/* Index of the first of n bytes that does not match, or SIZE_MAX. */
static size_t pattern_check(const void *p, size_t n, uint64_t seed) {
  const uint64_t *w = p;
  size_t words = n / 8;
  for (size_t k = 0; k < words; k++)
    if (w[k] != pattern_word(seed, k)) {
      const unsigned char *b = p;
      for (size_t i = k * 8; i < k * 8 + 8; i++)
        if (b[i] != pattern_byte(seed, i)) return i;
      return k * 8;
    }
  const unsigned char *b = p;
  for (size_t i = words * 8; i < n; i++)
    if (b[i] != pattern_byte(seed, i)) return i;
  return SIZE_MAX;
}

/* ---------------------------------------------------------------- blocks */

typedef struct {
  void *p;
  size_t n;        /* requested size */
  size_t usable;   /* malloc_usable_size when it was filled */
  uint64_t seed;
} block_t;

/* A fresh block of n bytes from one of the entry points: check it and fill it. */
static void block_fill(block_t *b, void *p, size_t n, const char *what) {
  size_t usable = malloc_usable_size(p);
  if (usable < n) fail("%s(%zu): malloc_usable_size %zu < request", what, n, usable);
  if (((uintptr_t)p & 15) != 0) fail("%s(%zu): block not 16-byte aligned", what, n);
  if (usable < n) usable = n;
  b->p = p;
  b->n = n;
  b->usable = usable;
  b->seed = pattern_seed(p, n);
  pattern_fill(p, usable, b->seed);   /* all of the usable size must be writable */
}

static bool block_verify(const block_t *b, const char *when) {
  size_t bad = pattern_check(b->p, b->usable, b->seed);
  if (bad != SIZE_MAX) {
    fail("block of %zu bytes (usable %zu) corrupted at offset %zu before %s", b->n, b->usable,
         bad, when);
    return false;
  }
  size_t usable = malloc_usable_size(b->p);
  if (usable != b->usable)
    fail("malloc_usable_size of a live block changed from %zu to %zu", b->usable, usable);
  return true;
}

/* ---------------------------------------------------------------- counters */

enum {
  C_MALLOC, C_CALLOC, C_REALLOC_NULL, C_POSIX_MEMALIGN, C_ALIGNED_ALLOC, C_MEMALIGN,
  C_FREE, C_REALLOC_GROW, C_REALLOC_SHRINK, C_REALLOC_ZERO, C_HANDOFF, C_RECEIVED,
  C_MALLOC0, C_COUNT
};
static const char *const counter_names[C_COUNT] = {
  "malloc", "calloc", "realloc_null", "posix_memalign", "aligned_alloc", "memalign",
  "free", "realloc_grow", "realloc_shrink", "realloc_zero", "handoff", "received",
  "malloc0",
};
static atomic_ulong g_count[C_COUNT];

/* ---------------------------------------------------------------- inboxes */

typedef struct handoff {
  struct handoff *next;   /* the node itself is malloc'ed by the sender, freed by the receiver */
  block_t b;
  unsigned from;
} handoff_t;

typedef struct {
  pthread_mutex_t lock;
  handoff_t *head;
} inbox_t;

static inbox_t g_inbox[MAX_THREADS];
static unsigned g_threads;

static void inbox_push(unsigned to, const block_t *b, unsigned from) {
  handoff_t *h = malloc(sizeof *h);
  if (h == NULL) {
    fail("malloc(%zu) for a handoff node returned NULL", sizeof *h);
    return;
  }
  h->b = *b;
  h->from = from;
  pthread_mutex_lock(&g_inbox[to].lock);
  h->next = g_inbox[to].head;
  g_inbox[to].head = h;
  pthread_mutex_unlock(&g_inbox[to].lock);
}

/* Verifies and frees every block handed to thread `me`; returns how many. */
static unsigned long inbox_drain(unsigned me) {
  pthread_mutex_lock(&g_inbox[me].lock);
  handoff_t *h = g_inbox[me].head;
  g_inbox[me].head = NULL;
  pthread_mutex_unlock(&g_inbox[me].lock);
  unsigned long n = 0;
  while (h != NULL) {
    handoff_t *next = h->next;
    block_verify(&h->b, "a cross-thread free");
    free(h->b.p);
    free(h);
    n++;
    h = next;
  }
  return n;
}

/* ---------------------------------------------------------------- fork */

/* Blocks of every worker that the fork children verify and free (read-only in the parent
 * once the workers have started). */
#define KEEP_PER_THREAD 16
static block_t g_keep[MAX_THREADS][KEEP_PER_THREAD];

static pthread_barrier_t g_start;
static atomic_int g_workers_done;

static void *fork_child_thread(void *arg) {
  unsigned long *ok = arg;
  uint64_t s = 77;
  for (int i = 0; i < 2000; i++) {
    size_t n = rng_size(&s) % 8192 + 1;
    void *p = malloc(n);
    if (p == NULL) return NULL;
    memset(p, 0x5a, n);
    free(p);
  }
  *ok = 1;
  return NULL;
}

/* The child of a fork taken while the workers run: allocate, free the parent's blocks,
 * start a thread, print, exit. */
static void fork_child(int index) {
  unsigned long bad_before = atomic_load(&g_failures);
  uint64_t s = 1000 + (uint64_t)index;
  enum { N = 4000 };
  static block_t blocks[N];
  for (int i = 0; i < N; i++) {
    size_t n = rng_size(&s);
    void *p = (i % 5 == 0) ? calloc(1, n) : malloc(n);
    if (p == NULL) {
      fail("fork child: allocation of %zu bytes returned NULL", n);
      _exit(1);
    }
    block_fill(&blocks[i], p, n, "fork-child malloc");
  }
  for (int i = 0; i < N; i += 2) {
    block_verify(&blocks[i], "free in a fork child");
    free(blocks[i].p);
  }
  /* Blocks of the parent's threads, which do not exist in the child. */
  for (unsigned t = 0; t < g_threads; t++)
    for (int k = 0; k < KEEP_PER_THREAD; k++) {
      block_verify(&g_keep[t][k], "free of a parent block in a fork child");
      free(g_keep[t][k].p);
    }
  pthread_t th;
  unsigned long thread_ok = 0;
  if (pthread_create(&th, NULL, fork_child_thread, &thread_ok) != 0 ||
      pthread_join(th, NULL) != 0 || !thread_ok)
    fail("fork child: a thread could not allocate");
  for (int i = 1; i < N; i += 2) {
    block_verify(&blocks[i], "free in a fork child");
    free(blocks[i].p);
  }
  bool ok = atomic_load(&g_failures) == bad_before;
  printf("fork child %d: %s\n", index, ok ? "ok" : "FAILED");
  exit(ok ? 0 : 1);   /* exit(), not _exit(): stdio and atexit run in the child too */
}

static unsigned long g_forks_ok;

static void *forker(void *arg) {
  int forks = *(int *)arg;
  pthread_barrier_wait(&g_start);
  for (int i = 0; i < forks; i++) {
    /* Spread the forks over the workers' run; stop early if they are done. */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
      fail("fork: %s", strerror(errno));
      continue;
    }
    if (pid == 0) fork_child(i);
    int status;
    if (waitpid(pid, &status, 0) != pid) {
      fail("waitpid: %s", strerror(errno));
      continue;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) g_forks_ok++;
    else if (WIFSIGNALED(status))
      fail("fork child %d killed by signal %d", i, WTERMSIG(status));
    else
      fail("fork child %d exited with status %d", i, WEXITSTATUS(status));
  }
  return NULL;
}

/* ---------------------------------------------------------------- workers */

typedef struct {
  unsigned id;
  unsigned long iterations;
  unsigned long count[C_COUNT];
  block_t slot[SLOTS];
} worker_t;

static unsigned rng_align_shift(uint64_t *s) {   /* 8 B .. 64 KiB */
  return 3 + rng_below(s, 14);
}

static void worker_alloc(worker_t *w, uint64_t *s, block_t *b) {
  unsigned kind = rng_below(s, 100);
  size_t n = rng_size(s);
  void *p;
  if (kind < 60) {
    p = malloc(n);
    if (p == NULL) goto oom;
    block_fill(b, p, n, "malloc");
    w->count[C_MALLOC]++;
  } else if (kind < 75) {
    p = calloc(1, n);
    if (p == NULL) goto oom;
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
      if (c[i] != 0) {
        fail("calloc(1, %zu): byte %zu is 0x%02x, not zero", n, i, c[i]);
        break;
      }
    block_fill(b, p, n, "calloc");
    w->count[C_CALLOC]++;
  } else if (kind < 80) {
    p = realloc(NULL, n);
    if (p == NULL) goto oom;
    block_fill(b, p, n, "realloc(NULL)");
    w->count[C_REALLOC_NULL]++;
  } else {
    size_t align = (size_t)1 << rng_align_shift(s);
    if (n > 64 * 1024) n = 1 + n % (64 * 1024);   /* keep aligned requests moderate */
    const char *what;
    if (kind < 88) {
      what = "posix_memalign";
      int rc = posix_memalign(&p, align, n);
      if (rc != 0) {
        fail("posix_memalign(%zu, %zu) returned %d", align, n, rc);
        b->p = NULL;
        return;
      }
      w->count[C_POSIX_MEMALIGN]++;
    } else if (kind < 94) {
      what = "aligned_alloc";
      n = (n + align - 1) & ~(align - 1);   /* C11: a multiple of the alignment */
      p = aligned_alloc(align, n);
      if (p == NULL) goto oom;
      w->count[C_ALIGNED_ALLOC]++;
    } else {
      what = "memalign";
      p = memalign(align, n);
      if (p == NULL) goto oom;
      w->count[C_MEMALIGN]++;
    }
    if (((uintptr_t)p & (align - 1)) != 0)
      fail("%s(%zu, %zu): block is not aligned to %zu", what, align, n, align);
    block_fill(b, p, n, what);
  }
  return;
oom:
  fail("allocation of %zu bytes (kind %u) returned NULL: %s", n, kind, strerror(errno));
  b->p = NULL;
}

static void worker_realloc(worker_t *w, uint64_t *s, block_t *b) {
  size_t n;
  bool grow = rng_below(s, 2) == 0;
  if (grow) n = b->n + 1 + rng_size(s);
  else n = b->n > 1 ? 1 + rng_below(s, (unsigned)(b->n - 1)) : 1;
  if (n > 2 * MIB) n = 2 * MIB;
  block_t old = *b;
  void *p = realloc(b->p, n);
  if (p == NULL) {
    fail("realloc(%zu -> %zu) returned NULL: %s", old.n, n, strerror(errno));
    /* a failed realloc leaves the old block intact */
    block_verify(&old, "free after a failed realloc");
    free(old.p);
    b->p = NULL;
    return;
  }
  size_t keep = old.n < n ? old.n : n;
  size_t bad = pattern_check(p, keep, old.seed);
  if (bad != SIZE_MAX)
    fail("realloc(%zu -> %zu) lost the content at offset %zu", old.n, n, bad);
  block_fill(b, p, n, "realloc");
  w->count[grow ? C_REALLOC_GROW : C_REALLOC_SHRINK]++;
}

static void worker_edge_cases(worker_t *w, uint64_t *s) {
  void *p = malloc(0);
  if (p == NULL) fail("malloc(0) returned NULL");
  free(p);
  free(NULL);
  w->count[C_MALLOC0]++;
  size_t n = 1 + rng_below(s, 512);
  p = malloc(n);
  if (p == NULL) {
    fail("malloc(%zu) returned NULL", n);
    return;
  }
  memset(p, 0xab, n);
  errno = 0;
  void *q = realloc(p, 0);   /* glibc: frees p, returns NULL */
  if (q != NULL) {
    fail("realloc(p, 0) returned a block; glibc frees p and returns NULL");
    free(q);
  }
  w->count[C_REALLOC_ZERO]++;
}

static void *worker(void *arg) {
  worker_t *w = arg;
  uint64_t s = 0x5eed0000ull + w->id * 7919ull;
  for (int k = 0; k < KEEP_PER_THREAD; k++) {
    size_t n = 1 + rng_below(&s, 4096);
    void *p = malloc(n);
    if (p == NULL) {
      fail("malloc(%zu) returned NULL", n);
      exit(1);
    }
    block_fill(&g_keep[w->id][k], p, n, "malloc");
  }
  pthread_barrier_wait(&g_start);
  for (unsigned long it = 0; it < w->iterations; it++) {
    block_t *b = &w->slot[rng_below(&s, SLOTS)];
    if (b->p == NULL) {
      worker_alloc(w, &s, b);
    } else {
      unsigned op = rng_below(&s, 100);
      if (op < 70) {
        block_verify(b, "free");
        free(b->p);
        b->p = NULL;
        w->count[C_FREE]++;
      } else if (op < 88) {
        block_verify(b, "realloc");
        worker_realloc(w, &s, b);
      } else if (g_threads > 1) {
        block_verify(b, "a handoff");
        unsigned to = (w->id + 1 + rng_below(&s, g_threads - 1)) % g_threads;
        inbox_push(to, b, w->id);
        b->p = NULL;
        w->count[C_HANDOFF]++;
      }
    }
    if ((it & 63) == 0) w->count[C_RECEIVED] += inbox_drain(w->id);
    if ((it & 1023) == 0) worker_edge_cases(w, &s);
  }
  for (unsigned i = 0; i < SLOTS; i++)
    if (w->slot[i].p != NULL) {
      block_verify(&w->slot[i], "the final free");
      free(w->slot[i].p);
      w->slot[i].p = NULL;
    }
  atomic_fetch_add(&g_workers_done, 1);
  /* Keep taking handoffs until every sender has stopped sending. */
  while (atomic_load(&g_workers_done) < (int)g_threads) {
    w->count[C_RECEIVED] += inbox_drain(w->id);
    sched_yield();
  }
  w->count[C_RECEIVED] += inbox_drain(w->id);
  return NULL;
}

/* ---------------------------------------------------------------- process-wide checks */

/* Called through volatile pointers so that the compiler neither warns about nor folds the
 * deliberately impossible requests. */
static void *(*volatile v_malloc)(size_t) = malloc;
static void *(*volatile v_calloc)(size_t, size_t) = calloc;
static void *(*volatile v_realloc)(void *, size_t) = realloc;

static void edge_cases_once(void) {
  errno = 0;
  if (malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) != 0");
  void *p = realloc(NULL, 0);
  if (p == NULL) fail("realloc(NULL, 0) returned NULL; glibc returns a block");
  free(p);
  errno = 0;
  p = v_calloc(SIZE_MAX / 2, 3);
  if (p != NULL || errno != ENOMEM) fail("calloc overflow: got %p errno %d", p, errno);
  free(p);
  errno = 0;
  p = v_malloc(SIZE_MAX - 4096);
  if (p != NULL || errno != ENOMEM) fail("malloc(SIZE_MAX-4096): got %p errno %d", p, errno);
  free(p);
  errno = 0;
  p = v_malloc(PTRDIFF_MAX);
  if (p != NULL || errno != ENOMEM) fail("malloc(PTRDIFF_MAX): got %p errno %d", p, errno);
  free(p);
  p = NULL;
  int rc = posix_memalign(&p, 24, 100);
  if (rc != EINVAL) fail("posix_memalign(24, 100) returned %d, not EINVAL", rc);
  rc = posix_memalign(&p, 4, 100);   /* not a multiple of sizeof(void *) */
  if (rc != EINVAL) fail("posix_memalign(4, 100) returned %d, not EINVAL", rc);
  /* A failed realloc leaves the block intact. */
  block_t b;
  p = malloc(100);
  if (p == NULL) {
    fail("malloc(100) returned NULL");
    return;
  }
  block_fill(&b, p, 100, "malloc");
  errno = 0;
  void *q = v_realloc(p, SIZE_MAX - 4096);
  if (q != NULL || errno != ENOMEM) fail("realloc to SIZE_MAX-4096: got %p errno %d", q, errno);
  block_verify(&b, "free after a failed realloc");
  free(p);
  /* free keeps errno */
  p = malloc(64);
  errno = 12345;
  free(p);
  if (errno != 12345) fail("free changed errno to %d", errno);
}

/* calloc over memory that was just filled and freed, at many sizes. */
static void calloc_reuse_check(void) {
  for (size_t n = 1; n <= 256 * 1024; n = n * 3 / 2 + 1) {
    for (int round = 0; round < 4; round++) {
      void *ps[8];
      for (int i = 0; i < 8; i++) {
        ps[i] = malloc(n);
        if (ps[i] == NULL) {
          fail("malloc(%zu) returned NULL", n);
          return;
        }
        memset(ps[i], 0xee, malloc_usable_size(ps[i]));
      }
      for (int i = 0; i < 8; i++) free(ps[i]);
      for (int i = 0; i < 8; i++) {
        unsigned char *c = ps[i] = calloc(n, 1);
        if (c == NULL) {
          fail("calloc(%zu, 1) returned NULL", n);
          return;
        }
        for (size_t k = 0; k < n; k++)
          if (c[k] != 0) {
            fail("calloc(%zu, 1) on reused memory: byte %zu is 0x%02x", n, k, c[k]);
            break;
          }
      }
      for (int i = 0; i < 8; i++) free(ps[i]);
    }
  }
}


/* ---------------------------------------------------------------- thread churn */

typedef struct {
  unsigned index;
  void *leftover[2];   /* freed by the main thread after the join */
  uint64_t seed[2];
  size_t size[2];
  int ok;
} churn_t;

static void *churn_thread(void *arg) {
  churn_t *c = arg;
  uint64_t s = 0xc0ffee00ull + c->index;
  block_t b[4];
  for (int i = 0; i < 4; i++) {
    size_t n = (i == 3 && c->index % 16 == 0) ? 64 * 1024 + rng_below(&s, 64 * 1024)
                                              : 1 + rng_below(&s, 2048);
    void *p = malloc(n);
    if (p == NULL) return NULL;
    block_fill(&b[i], p, n, "malloc in a short-lived thread");
  }
  for (int i = 0; i < 2; i++) {
    block_verify(&b[i], "free in a short-lived thread");
    free(b[i].p);
  }
  for (int i = 0; i < 2; i++) {
    c->leftover[i] = b[2 + i].p;
    c->seed[i] = b[2 + i].seed;
    c->size[i] = b[2 + i].usable;
  }
  c->ok = 1;
  return NULL;
}

static unsigned long churn(unsigned long total, long *rss_growth_kib) {
  enum { BATCH = 64 };
  static churn_t c[BATCH];
  pthread_t th[BATCH];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  long before = rss_kib();
  unsigned long done = 0;
  long peak_growth = 0;
  while (done < total) {
    unsigned n = total - done < BATCH ? (unsigned)(total - done) : BATCH;
    for (unsigned i = 0; i < n; i++) {
      memset(&c[i], 0, sizeof c[i]);
      c[i].index = (unsigned)(done + i);
      int rc = pthread_create(&th[i], &attr, churn_thread, &c[i]);
      if (rc != 0) {
        fail("pthread_create in the churn phase: %s", strerror(rc));
        n = i;
        break;
      }
    }
    for (unsigned i = 0; i < n; i++) {
      pthread_join(th[i], NULL);
      if (!c[i].ok) {
        fail("short-lived thread %u could not allocate", c[i].index);
        continue;
      }
      for (int k = 0; k < 2; k++) {
        size_t bad = pattern_check(c[i].leftover[k], c[i].size[k], c[i].seed[k]);
        if (bad != SIZE_MAX)
          fail("block of an exited thread corrupted at offset %zu", bad);
        free(c[i].leftover[k]);
      }
    }
    if (n == 0) break;
    done += n;
    if (done % 8192 < BATCH) {
      long g = rss_kib() - before;
      if (g > peak_growth) peak_growth = g;
    }
  }
  pthread_attr_destroy(&attr);
  long g = rss_kib() - before;
  if (g > peak_growth) peak_growth = g;
  *rss_growth_kib = peak_growth;
  if (peak_growth >= 64 * 1024)
    fail("RSS grew by %ld KiB over %lu short-lived threads (limit 65536 KiB)", peak_growth,
         done);
  return done;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 4;
  unsigned long iterations = argc > 2 ? strtoul(argv[2], NULL, 0) : 200000;
  unsigned long churn_threads = argc > 3 ? strtoul(argv[3], NULL, 0) : 100000;
  int forks = argc > 4 ? atoi(argv[4]) : 8;
  if (threads < 1 || threads > MAX_THREADS || forks < 0) {
    fprintf(stderr, "usage: nm_stress [THREADS(1..%d) [ITERATIONS [CHURN_THREADS [FORKS]]]]\n",
            MAX_THREADS);
    return 2;
  }
  g_threads = threads;

  edge_cases_once();
  calloc_reuse_check();

  for (unsigned i = 0; i < threads; i++) pthread_mutex_init(&g_inbox[i].lock, NULL);
  pthread_barrier_init(&g_start, NULL, threads + 1);
  worker_t *w = calloc(threads, sizeof *w);
  pthread_t *th = calloc(threads, sizeof *th);
  if (w == NULL || th == NULL) {
    fail("calloc for the workers returned NULL");
    return 1;
  }
  for (unsigned i = 0; i < threads; i++) {
    w[i].id = i;
    w[i].iterations = iterations;
    int rc = pthread_create(&th[i], NULL, worker, &w[i]);
    if (rc != 0) {
      fprintf(stderr, "nm_stress: pthread_create: %s\n", strerror(rc));
      return 1;
    }
  }
  forker(&forks);   /* waits on the barrier, then forks while the workers run */
  for (unsigned i = 0; i < threads; i++) pthread_join(th[i], NULL);
  for (unsigned i = 0; i < threads; i++) {
    for (int c = 0; c < C_COUNT; c++) atomic_fetch_add(&g_count[c], w[i].count[c]);
    for (int k = 0; k < KEEP_PER_THREAD; k++) {
      block_verify(&g_keep[i][k], "the final free");
      free(g_keep[i][k].p);
    }
  }
  free(w);
  free(th);
  if (g_count[C_HANDOFF] != g_count[C_RECEIVED])
    fail("%lu blocks handed off but %lu received", (unsigned long)g_count[C_HANDOFF],
         (unsigned long)g_count[C_RECEIVED]);
  if (g_forks_ok != (unsigned long)forks)
    fail("%lu of %d fork children succeeded", g_forks_ok, forks);

  long rss_growth = 0;
  unsigned long churned = churn(churn_threads, &rss_growth);
  fprintf(stderr, "nm_stress: churn RSS growth %ld KiB\n", rss_growth);

  unsigned long failures = atomic_load(&g_failures);
  printf("nm_stress: threads=%u iterations=%lu", threads, iterations);
  for (int c = 0; c < C_COUNT; c++) printf(" %s=%lu", counter_names[c], (unsigned long)g_count[c]);
  printf(" forks=%lu churn_threads=%lu failures=%lu %s\n", g_forks_ok, churned, failures,
         failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}
