/* The child program of the statistics tests (test_stats.c): one scenario per subcommand,
 * run under the preload with a NEBULA_MEM_CONFIG the test picks.
 *
 *   hammer THREADS SIGNALS MAXSEC   THREADS threads allocate and free hard (sizes 8 B to
 *                                   300 KiB, now and then 3 MiB; malloc, calloc, realloc,
 *                                   posix_memalign; a third of the blocks are freed by another
 *                                   thread through a shared ring). SIGNALS > 0: the main
 *                                   thread sends the process SIGUSR1 that many times, 5 ms
 *                                   apart, then stops the workers. SIGNALS == 0: the workers
 *                                   run until SIGTERM (the test sends the signals) or MAXSEC.
 *                                   Prints "ready" once the workers run, then
 *                                   "hammer ok threads=T ops=N signals=S".
 *   quiesce ROUTE THREADS DIR       a known set of blocks (see the groups below), a known
 *                                   subset freed. ROUTE (default | throughput) is the
 *                                   strategy the test runs it under, which says which backend
 *                                   serves each group. THREADS == 0: the main thread does
 *                                   everything. THREADS > 0: each worker allocates the whole
 *                                   set and frees the subset of the next worker's blocks
 *                                   (every free is cross-thread), then calls malloc_trim(0),
 *                                   which makes each owner collect the frees of its blocks.
 *                                   THREADS == freer: the main thread allocates, a thread
 *                                   that never allocated frees the subset, the main thread
 *                                   calls malloc_trim(0).
 *                                   stats_file must be DIR/s.%p.json, stats_format=json: a
 *                                   dump by raise(SIGUSR1) before (renamed to DIR/base.json)
 *                                   and after (DIR/s.PID.json); nothing allocates in between
 *                                   but the scenario. Prints what it knows (see below).
 *   realloc DIR                     like quiesce, for blocks realloc moves between backends;
 *                                   only live blocks and bytes per kind are known.
 *   errno MARKER COUNT              fd 2 goes to a pipe a helper thread reads. COUNT times the
 *                                   helper sends SIGUSR1 to the main thread and waits until
 *                                   MARKER (a string the dump writes to fd 2) shows up, while
 *                                   the main thread keeps setting errno to a new value and
 *                                   checking it never changes under it.
 *   sigself USR1|USR2               hold known blocks, raise the signal, then print
 *                                   "survived USR1|USR2".
 *   exit                            allocate a little, keep some, print "bye", return.
 *   mstats                          hold known blocks, call malloc_stats() and mallinfo2().
 *   wait MAXSEC                     hold known blocks, print "ready PID", sleep until SIGTERM
 *                                   or MAXSEC, print "bye".
 *   wait-dfl MAXSEC                 the same, after putting SIGUSR1 back to its default
 *                                   action (a program that resets the signal it was given).
 *   exit-at NS CLASSES DUMPS        hold a block in each of CLASSES pool classes, sleep until
 *                                   CLOCK_MONOTONIC reaches NS nanoseconds (the test gives
 *                                   many processes the same instant), raise SIGUSR1 DUMPS
 *                                   times, then exit as `exit` does.
 *   fsize BYTES SCENARIO ARGS...    RLIMIT_FSIZE (soft) set to BYTES and SIGXFSZ ignored (a
 *                                   write past it fails with EFBIG), then SCENARIO.
 *
 * Built with -O1 -g and -fno-builtin-*: every allocation happens as written. Output goes
 * through write(2), never stdio: printf would malloc a buffer, which the quiesce counts
 * would see. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  const char *p = line;
  while (n > 0) {
    ssize_t w = write(1, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (int)w;
  }
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0) {
    ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)w;
  }
  _exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps ms milliseconds, through signal interruptions. */
static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static volatile sig_atomic_t g_term;
static void on_term(int sig) {
  (void)sig;
  g_term = 1;
}

static void install_term(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
}

/* ================================================================== hammer */

#define RING 1024
#define SLOTS 256
#define MAGIC 0x6e6562756c61ULL

typedef struct {
  uint64_t magic;
  size_t size;
} tag_t;

static pthread_mutex_t g_ring_lock = PTHREAD_MUTEX_INITIALIZER;
static void *g_ring[RING];
static unsigned g_ring_head, g_ring_count;
static atomic_int g_stop;
static atomic_ullong g_ops;

static uint64_t rnd(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static size_t pick_size(uint64_t *s) {
  unsigned r = (unsigned)(rnd(s) % 1000);
  if (r < 600) return 16 + rnd(s) % 241;             /* 16 .. 256 */
  if (r < 850) return 257 + rnd(s) % 3840;           /* .. 4096 */
  if (r < 950) return 4097 + rnd(s) % 61440;         /* .. 65536 */
  if (r < 998) return 65537 + rnd(s) % 234464;       /* .. 300000: large pages */
  return 3 * MiB + rnd(s) % 4096;                    /* the system backend */
}

/* Blocks of more than 16 bytes carry a tag (magic, size) and their size's low byte at their
 * end, checked before free; smaller ones carry nothing, and their pointer is kept with its
 * low bit set. */
static void check_block(void *p) {
  tag_t *t = p;
  if (t->magic != MAGIC) die("hammer: block %p lost its tag (0x%llx)\n", p, (unsigned long long)t->magic);
  size_t u = malloc_usable_size(p);
  if (u < t->size) die("hammer: block %p of %zu bytes has a usable size of %zu\n", p, t->size, u);
  if (((unsigned char *)p)[t->size - 1] != (unsigned char)t->size)
    die("hammer: block %p lost its last byte\n", p);
}

static void *new_block(uint64_t *s) {
  size_t n = rnd(s) % 16 == 0 ? 8 + rnd(s) % 8 : pick_size(s);
  void *p = NULL;
  switch (rnd(s) % 8) {
  case 0: p = calloc(1, n); break;
  case 1:
    if (posix_memalign(&p, (size_t)16 << (rnd(s) % 5), n) != 0) p = NULL;
    break;
  case 2: {
    void *q = malloc(n / 2 + 8);
    if (q == NULL) die("hammer: malloc(%zu) failed\n", n / 2 + 8);
    p = realloc(q, n);
    break;
  }
  default: p = malloc(n); break;
  }
  if (p == NULL) die("hammer: allocation of %zu bytes failed\n", n);
  if ((uintptr_t)p & 15) die("hammer: block %p of %zu bytes is not 16-aligned\n", p, n);
  if (n <= sizeof(tag_t)) return (void *)((uintptr_t)p | 1);
  tag_t *t = p;
  t->magic = MAGIC;
  t->size = n;
  ((unsigned char *)p)[n - 1] = (unsigned char)n;
  return p;
}

static void drop_block(void *p) {
  if ((uintptr_t)p & 1) {
    p = (void *)((uintptr_t)p & ~(uintptr_t)1);
    size_t u = malloc_usable_size(p);
    if (u < 8) die("hammer: small block %p has a usable size of %zu\n", p, u);
    free(p);
    return;
  }
  check_block(p);
  ((tag_t *)p)->magic = 0;
  free(p);
}

static void *hammer_worker(void *arg) {
  uint64_t seed = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
  void *slots[SLOTS] = {0};
  unsigned long long ops = 0;
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
    unsigned i = (unsigned)(rnd(&seed) % SLOTS);
    if (slots[i] != NULL) {
      drop_block(slots[i]);
      slots[i] = NULL;
    }
    void *p = new_block(&seed);
    unsigned r = (unsigned)(rnd(&seed) % 3);
    if (r == 0) {   /* to the ring; another thread frees it */
      void *victim = NULL;
      pthread_mutex_lock(&g_ring_lock);
      if (g_ring_count == RING) {
        victim = g_ring[g_ring_head];
        g_ring_head = (g_ring_head + 1) % RING;
        g_ring_count--;
      }
      g_ring[(g_ring_head + g_ring_count) % RING] = p;
      g_ring_count++;
      pthread_mutex_unlock(&g_ring_lock);
      if (victim != NULL) drop_block(victim);
    } else {
      slots[i] = p;
    }
    if (rnd(&seed) % 4 == 0) {   /* take one from the ring: often another thread's */
      void *q = NULL;
      pthread_mutex_lock(&g_ring_lock);
      if (g_ring_count > 0) {
        q = g_ring[g_ring_head];
        g_ring_head = (g_ring_head + 1) % RING;
        g_ring_count--;
      }
      pthread_mutex_unlock(&g_ring_lock);
      if (q != NULL) drop_block(q);
    }
    ops++;
  }
  for (unsigned i = 0; i < SLOTS; i++)
    if (slots[i] != NULL) drop_block(slots[i]);
  atomic_fetch_add(&g_ops, ops);
  return NULL;
}

static int scenario_hammer(int threads, int signals, int maxsec) {
  if (threads < 1 || threads > 64) die("hammer: 1..64 threads\n");
  install_term();
  pthread_t tids[64];
  for (int i = 0; i < threads; i++)
    if (pthread_create(&tids[i], NULL, hammer_worker, (void *)(uintptr_t)i) != 0)
      die("hammer: pthread_create failed\n");
  say("ready\n");
  double end = now_s() + maxsec;
  int sent = 0;
  if (signals > 0) {
    for (; sent < signals && now_s() < end; sent++) {
      if (kill(getpid(), SIGUSR1) != 0) die("hammer: kill: %s\n", strerror(errno));
      sleep_ms(5);
    }
  } else {
    while (!g_term && now_s() < end) sleep_ms(5);
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
  while (g_ring_count > 0) {
    drop_block(g_ring[g_ring_head]);
    g_ring_head = (g_ring_head + 1) % RING;
    g_ring_count--;
  }
  say("hammer ok threads=%d ops=%llu signals=%d\n", threads, (unsigned long long)atomic_load(&g_ops),
      sent);
  return 0;
}

/* ================================================================== quiesce */

typedef enum { K_CLASS, K_LARGE, K_BUMP, K_SYSTEM, K_COUNT } kind_t;
static const char *const kind_names[K_COUNT] = {"class", "large", "bump", "system"};

typedef struct {
  size_t size;
  unsigned count;
  bool zero;               /* calloc */
  kind_t kind[2];          /* under the default route, under throughput */
} group_t;

/* Freed: index i of a group is freed when i % 3 == 0 (ceil(count / 3) blocks). */
static const group_t groups[] = {
  {24, 1000, false, {K_CLASS, K_BUMP}},
  {200, 500, false, {K_CLASS, K_BUMP}},
  {3000, 200, true, {K_CLASS, K_BUMP}},
  {300 * KiB, 20, false, {K_LARGE, K_LARGE}},
  {5 * MiB, 3, false, {K_SYSTEM, K_SYSTEM}},
};
#define NGROUPS (sizeof groups / sizeof groups[0])
#define MAXBLOCKS 1000
#define MAXTHREADS 4

static void *g_blocks[MAXTHREADS + 1][NGROUPS][MAXBLOCKS];
static int g_route;        /* 0 default, 1 throughput */
static int g_qthreads;
static pthread_barrier_t g_barrier;

static bool freed_index(unsigned i) {
  return i % 3 == 0;
}

static void q_alloc(int owner) {
  for (unsigned g = 0; g < NGROUPS; g++)
    for (unsigned i = 0; i < groups[g].count; i++) {
      void *p = groups[g].zero ? calloc(1, groups[g].size) : malloc(groups[g].size);
      if (p == NULL) die("quiesce: allocation of %zu bytes failed\n", groups[g].size);
      g_blocks[owner][g][i] = p;
    }
}

static void q_free(int owner) {
  for (unsigned g = 0; g < NGROUPS; g++)
    for (unsigned i = 0; i < groups[g].count; i++)
      if (freed_index(i)) {
        free(g_blocks[owner][g][i]);
        g_blocks[owner][g][i] = NULL;
      }
}

static void *q_worker(void *arg) {
  int me = (int)(uintptr_t)arg;
  free(malloc(24));                     /* the heap exists before the first dump */
  pthread_barrier_wait(&g_barrier);     /* 0: every heap exists */
  pthread_barrier_wait(&g_barrier);     /* 1: the first dump is done */
  q_alloc(me);
  pthread_barrier_wait(&g_barrier);     /* 2: every set is allocated */
  q_free((me + 1) % g_qthreads);        /* the next worker's blocks: remote frees */
  pthread_barrier_wait(&g_barrier);     /* 3: every free is done */
  malloc_trim(0);                       /* collects the remote frees of this heap */
  pthread_barrier_wait(&g_barrier);     /* 4: collected */
  pthread_barrier_wait(&g_barrier);     /* 5: the second dump is done */
  return NULL;
}

static void dump_now(void) {
  if (raise(SIGUSR1) != 0) die("raise: %s\n", strerror(errno));
}

/* The freer: a thread that never allocated frees the main thread's blocks (its first call
 * into the allocator is that free). */
static void *q_freer(void *arg) {
  (void)arg;
  pthread_barrier_wait(&g_barrier);     /* 1: the main thread's blocks are allocated */
  q_free(0);
  pthread_barrier_wait(&g_barrier);     /* 2: freed */
  pthread_barrier_wait(&g_barrier);     /* 3: the second dump is done */
  return NULL;
}

static int scenario_quiesce_freer(const char *route, const char *dir, const char *path,
                                  const char *base) {
  pthread_t tid;
  pthread_barrier_init(&g_barrier, NULL, 2);
  if (pthread_create(&tid, NULL, q_freer, NULL) != 0) die("quiesce: pthread_create failed\n");
  dump_now();
  if (rename(path, base) != 0) die("quiesce: rename %s: %s\n", path, strerror(errno));
  q_alloc(0);
  pthread_barrier_wait(&g_barrier);     /* 1 */
  pthread_barrier_wait(&g_barrier);     /* 2 */
  malloc_trim(0);                       /* collects the remote frees of the main heap */
  dump_now();
  pthread_barrier_wait(&g_barrier);     /* 3 */
  pthread_join(tid, NULL);
  (void)dir;
  (void)route;
  return 0;
}

static void quiesce_report(const char *route, const char *mode, int owners, bool cross, int dump_threads);

static int scenario_quiesce(const char *route, const char *mode, const char *dir) {
  if (strcmp(route, "default") == 0) g_route = 0;
  else if (strcmp(route, "throughput") == 0) g_route = 1;
  else die("quiesce: route default or throughput\n");
  bool freer = strcmp(mode, "freer") == 0;
  int threads = freer ? 0 : atoi(mode);
  if (threads < 0 || threads > MAXTHREADS || threads == 1) die("quiesce: 0, 2..4 threads or freer\n");
  g_qthreads = threads;
  char path[4096], base[4096];
  snprintf(path, sizeof path, "%s/s.%d.json", dir, (int)getpid());
  snprintf(base, sizeof base, "%s/base.json", dir);
  if (freer) {
    scenario_quiesce_freer(route, dir, path, base);
    /* the freer's heap, if freeing made it one, may or may not count as a thread */
    quiesce_report(route, mode, 1, true, -1);
    return 0;
  }
  pthread_t tids[MAXTHREADS];
  if (threads > 0) {
    pthread_barrier_init(&g_barrier, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++)
      if (pthread_create(&tids[i], NULL, q_worker, (void *)(uintptr_t)i) != 0)
        die("quiesce: pthread_create failed\n");
  }
  /* Anything the program allocates before this point is in both dumps. */
  if (threads > 0) pthread_barrier_wait(&g_barrier);   /* 0 */
  dump_now();
  if (rename(path, base) != 0) die("quiesce: rename %s: %s\n", path, strerror(errno));
  if (threads > 0) {
    for (int b = 0; b < 4; b++) pthread_barrier_wait(&g_barrier);   /* 1..4 */
  } else {
    q_alloc(0);
    q_free(0);
  }
  dump_now();
  if (threads > 0) {
    pthread_barrier_wait(&g_barrier);   /* 5 */
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
  }
  quiesce_report(route, mode, threads > 0 ? threads : 1, threads > 0, threads + 1);
  return 0;
}

/* What the program knows, per group and per kind (pool class, large page, bump, system):
 * blocks allocated, freed, freed by a thread other than the allocating one (cross: every
 * free was; system frees are plain frees of the freeing thread), live, and the sum of
 * malloc_usable_size of the live blocks. dump_threads: threads with a heap at the second
 * dump (-1: not checked). */
static void quiesce_report(const char *route, const char *mode, int owners, bool cross, int dump_threads) {
  unsigned long long k_allocs[K_COUNT] = {0}, k_frees[K_COUNT] = {0}, k_remote[K_COUNT] = {0};
  unsigned long long k_live[K_COUNT] = {0}, k_bytes[K_COUNT] = {0};
  say("quiesce route=%s threads=%s dump_threads=%d\n", route, mode, dump_threads);
  for (unsigned g = 0; g < NGROUPS; g++) {
    kind_t k = groups[g].kind[g_route];
    unsigned long long allocs = 0, frees = 0, live = 0, bytes = 0;
    size_t usable_min = SIZE_MAX, usable_max = 0;
    for (int o = 0; o < owners; o++)
      for (unsigned i = 0; i < groups[g].count; i++) {
        allocs++;
        void *p = g_blocks[o][g][i];
        if (p == NULL) {
          frees++;
          continue;
        }
        live++;
        size_t u = malloc_usable_size(p);
        bytes += u;
        if (u < usable_min) usable_min = u;
        if (u > usable_max) usable_max = u;
      }
    unsigned long long remote = (cross && k != K_SYSTEM) ? frees : 0;
    say("group size=%zu kind=%s allocs=%llu frees=%llu remote=%llu live=%llu bytes=%llu "
        "usable_min=%zu usable_max=%zu\n",
        groups[g].size, kind_names[k], allocs, frees - remote, remote, live, bytes, usable_min,
        usable_max);
    k_allocs[k] += allocs;
    k_frees[k] += frees - remote;
    k_remote[k] += remote;
    k_live[k] += live;
    k_bytes[k] += bytes;
  }
  for (int k = 0; k < K_COUNT; k++)
    say("kind %s allocs=%llu frees=%llu remote=%llu live=%llu bytes=%llu\n", kind_names[k],
        k_allocs[k], k_frees[k], k_remote[k], k_live[k], k_bytes[k]);
}

/* ================================================================== realloc */

/* Blocks moved between backends by realloc (and a few aligned requests), under the
 * default route: the kind of a block is its route's unless realloc kept it in place. The
 * counts of operations are not asserted (whether realloc moves a block is the allocator's
 * choice): only live blocks and their usable bytes per kind, reported as for quiesce with
 * -1 for the unchecked figures. */
static kind_t route_default(size_t n) {
  return n <= 64 * KiB ? K_CLASS : n <= 2 * MiB ? K_LARGE : K_SYSTEM;
}

typedef struct {
  void *p;
  kind_t kind;
} rblock_t;

static void r_realloc(rblock_t *b, size_t n) {
  void *q = realloc(b->p, n);
  if (q == NULL) die("realloc(%zu) failed\n", n);
  if (q != b->p) b->kind = route_default(n);
  b->p = q;
}

static int scenario_realloc(const char *dir) {
  char path[4096], base[4096];
  snprintf(path, sizeof path, "%s/s.%d.json", dir, (int)getpid());
  snprintf(base, sizeof base, "%s/base.json", dir);
  rblock_t b[16];
  int n = 0;
  dump_now();
  if (rename(path, base) != 0) die("realloc: rename %s: %s\n", path, strerror(errno));
  /* a large block grown (in place while the slices after it are free) */
  b[n] = (rblock_t){malloc(300 * KiB), K_LARGE};
  r_realloc(&b[n], 600 * KiB);
  r_realloc(&b[n], 1000 * KiB);
  r_realloc(&b[n], 1500 * KiB);
  n++;
  /* large to system, then system grown */
  b[n] = (rblock_t){malloc(300 * KiB), K_LARGE};
  r_realloc(&b[n], 3 * MiB);
  r_realloc(&b[n], 4 * MiB);
  n++;
  /* system to a pool class, and to a large page */
  b[n] = (rblock_t){malloc(3 * MiB), K_SYSTEM};
  r_realloc(&b[n], 100);
  n++;
  b[n] = (rblock_t){malloc(3 * MiB), K_SYSTEM};
  r_realloc(&b[n], 500 * KiB);
  n++;
  /* pool to large, large shrunk a little (stays) and a lot (moves to the pool) */
  b[n] = (rblock_t){malloc(1000), K_CLASS};
  r_realloc(&b[n], 1500 * KiB);
  r_realloc(&b[n], 1200 * KiB);
  n++;
  b[n] = (rblock_t){malloc(1500 * KiB), K_LARGE};
  r_realloc(&b[n], 10000);
  n++;
  /* pool to a bigger class, calloc, aligned requests */
  b[n] = (rblock_t){malloc(24), K_CLASS};
  r_realloc(&b[n], 5000);
  n++;
  b[n] = (rblock_t){calloc(100, 30), K_CLASS};
  n++;
  void *p = NULL;
  if (posix_memalign(&p, 64, 1000) != 0) die("posix_memalign failed\n");
  b[n++] = (rblock_t){p, K_CLASS};
  if (posix_memalign(&p, 4096, 100000) != 0) die("posix_memalign failed\n");
  b[n++] = (rblock_t){p, K_LARGE};
  b[n++] = (rblock_t){aligned_alloc(MiB, 3 * MiB), K_SYSTEM};
  /* freed through realloc(p, 0) */
  void *z = malloc(3 * MiB);
  if (realloc(z, 0) != NULL) die("realloc(p, 0) should free and return NULL\n");
  for (int i = 0; i < n; i++)
    if (b[i].p == NULL) die("allocation %d failed\n", i);
  dump_now();
  unsigned long long live[K_COUNT] = {0}, bytes[K_COUNT] = {0};
  say("quiesce route=default threads=realloc dump_threads=1\n");
  for (int i = 0; i < n; i++) {
    size_t u = malloc_usable_size(b[i].p);
    live[b[i].kind]++;
    bytes[b[i].kind] += u;
    if (b[i].kind == K_CLASS)
      say("group size=%zu kind=class allocs=-1 frees=-1 remote=-1 live=1 bytes=%zu usable_min=%zu "
          "usable_max=%zu\n", u, u, u, u);
  }
  for (int k = 0; k < K_COUNT; k++)
    say("kind %s allocs=-1 frees=-1 remote=-1 live=%llu bytes=%llu\n", kind_names[k], live[k],
        bytes[k]);
  return 0;
}

/* ================================================================== errno */

static pthread_t g_main;
static int g_pipe_rd, g_orig_err;
static const char *g_marker;
static int g_count;
static atomic_int g_done;
static int g_dumps;
static char g_missing[256];

/* Reads fd 2's pipe (forwarding it to the real stderr) until `want` markers were seen in
 * total or timeout_ms passed. carry keeps the tail of the last read (a marker split between
 * two reads). */
static int read_markers(int seen, int want, int timeout_ms, char *carry, size_t *carry_len) {
  size_t mlen = strlen(g_marker);
  double end = now_s() + timeout_ms / 1000.0;
  while (seen < want) {
    int left = (int)((end - now_s()) * 1000);
    if (left <= 0) break;
    struct pollfd pfd = {g_pipe_rd, POLLIN, 0};
    int r = poll(&pfd, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[8192 + 256];
    memcpy(buf, carry, *carry_len);
    ssize_t n = read(g_pipe_rd, buf + *carry_len, 8192);
    if (n <= 0) break;
    ssize_t w = write(g_orig_err, buf + *carry_len, (size_t)n);
    (void)w;
    size_t len = *carry_len + (size_t)n;
    for (const char *p = memmem(buf, len, g_marker, mlen); p != NULL;
         p = memmem(p + mlen, len - (size_t)(p + mlen - buf), g_marker, mlen))
      seen++;
    size_t keep = len < mlen - 1 ? len : mlen - 1;   /* a marker cut by this read */
    memmove(carry, buf + len - keep, keep);
    *carry_len = keep;
  }
  return seen;
}

static void *errno_helper(void *arg) {
  (void)arg;
  char carry[256];
  size_t carry_len = 0;
  int seen = 0;
  for (int i = 0; i < g_count; i++) {
    pthread_kill(g_main, SIGUSR1);
    int now = read_markers(seen, seen + 1, 5000, carry, &carry_len);
    if (now <= seen) {
      snprintf(g_missing, sizeof g_missing, "no '%s' on fd 2 within 5 s of signal %d", g_marker, i + 1);
      break;
    }
    seen = now;
  }
  g_dumps = seen;
  atomic_store(&g_done, 1);
  return NULL;
}

static int scenario_errno(const char *marker, int count) {
  if (strlen(marker) == 0 || strlen(marker) > 200) die("errno: a marker of 1..200 bytes\n");
  g_marker = marker;
  g_count = count;
  g_main = pthread_self();
  int p[2];
  if (pipe(p) != 0) die("pipe: %s\n", strerror(errno));
  g_orig_err = dup(2);
  if (g_orig_err < 0 || dup2(p[1], 2) < 0) die("dup: %s\n", strerror(errno));
  close(p[1]);
  g_pipe_rd = p[0];
  pthread_t helper;
  if (pthread_create(&helper, NULL, errno_helper, NULL) != 0) die("pthread_create failed\n");
  volatile int *e = &errno;
  unsigned long long checks = 0, bad = 0;
  int first_bad_want = 0, first_bad_seen = 0;
  int value = 1000;
  while (!atomic_load_explicit(&g_done, memory_order_relaxed)) {
    value = value >= 1000000 ? 1000 : value + 1;
    *e = value;
    for (int k = 0; k < 256; k++) {
      checks++;
      if (*e != value) {
        if (bad++ == 0) {
          first_bad_want = value;
          first_bad_seen = *e;
        }
        *e = value;
      }
    }
  }
  pthread_join(helper, NULL);
  dup2(g_orig_err, 2);
  say("errno signals=%d dumps=%d checks=%llu bad=%llu first_bad_want=%d first_bad_seen=%d%s%s\n",
      count, g_dumps, checks, bad, first_bad_want, first_bad_seen, g_missing[0] ? " missing: " : "",
      g_missing);
  return bad == 0 && g_dumps == count ? 0 : 1;
}

/* ================================================================== small ones */

static size_t hold_known(void);

static int scenario_sigself(const char *which) {
  int sig = strcmp(which, "USR2") == 0 ? SIGUSR2 : SIGUSR1;
  hold_known();   /* something in the class table */
  raise(sig);
  say("survived %s\n", which);
  return 0;
}

static void *g_keep[64];

static int scenario_exit(void) {
  for (int i = 0; i < 10; i++) {
    void *p = malloc(100);
    if (p == NULL) die("malloc failed\n");
    if (i % 2) free(p);
    else g_keep[i / 2] = p;
  }
  say("bye\n");
  return 0;
}

static size_t hold_known(void) {
  size_t held = 0;
  for (int i = 0; i < 40; i++) {
    g_keep[i] = malloc(1000);
    if (g_keep[i] == NULL) die("malloc failed\n");
    memset(g_keep[i], 1, 1000);
    held += malloc_usable_size(g_keep[i]);
  }
  for (int i = 40; i < 42; i++) {
    g_keep[i] = malloc(300 * KiB);
    if (g_keep[i] == NULL) die("malloc failed\n");
    held += malloc_usable_size(g_keep[i]);
  }
  return held;
}

static int scenario_mstats(void) {
  size_t ours = hold_known();   /* pool classes and large pages */
  void *big = malloc(5 * MiB);  /* the system backend's */
  if (big == NULL) die("malloc failed\n");
  size_t sys = malloc_usable_size(big);
  malloc_stats();
  struct mallinfo2 m = mallinfo2();
  say("mstats pid=%d ours=%zu system=%zu uordblks=%zu hblkhd=%zu\n", (int)getpid(), ours, sys,
      m.uordblks, m.hblkhd);
  free(big);
  return 0;
}

static int scenario_wait(int maxsec) {
  install_term();
  hold_known();
  say("ready %d\n", (int)getpid());
  double end = now_s() + maxsec;
  while (!g_term && now_s() < end) sleep_ms(10);
  say("bye\n");
  return 0;
}

static int scenario_wait_dfl(int maxsec) {
  signal(SIGUSR1, SIG_DFL);
  return scenario_wait(maxsec);
}

/* Holds blocks in `classes` pool classes (so that processes given different counts make
 * dumps of different lengths), waits for the instant ns, raises SIGUSR1 `dumps` times, then
 * exits like scenario_exit. */
static int scenario_exit_at(long long ns, int classes, int dumps) {
  static void *held[64];
  for (int i = 0; i < classes && i < 64; i++) {
    held[i] = malloc((size_t)(i + 1) * 48);
    if (held[i] == NULL) die("malloc failed\n");
  }
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (now >= ns) break;
    long long left = ns - now;
    struct timespec d = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
    nanosleep(&d, NULL);
  }
  for (int i = 0; i < dumps; i++) raise(SIGUSR1);
  return scenario_exit();
}

static int run(int argc, char **argv);

static int scenario_fsize(const char *bytes, int argc, char **argv) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_FSIZE, &rl) != 0) die("getrlimit: %s\n", strerror(errno));
  rl.rlim_cur = (rlim_t)strtoull(bytes, NULL, 10);
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0) die("setrlimit: %s\n", strerror(errno));
  signal(SIGXFSZ, SIG_IGN);
  return run(argc, argv);
}

static int run(int argc, char **argv) {
  if (argc < 2) die("usage: %s SCENARIO ARGS...\n", argv[0]);
  const char *s = argv[1];
  if (strcmp(s, "fsize") == 0 && argc >= 4) return scenario_fsize(argv[2], argc - 2, argv + 2);
  if (strcmp(s, "wait-dfl") == 0 && argc == 3) return scenario_wait_dfl(atoi(argv[2]));
  if (strcmp(s, "exit-at") == 0 && argc == 5)
    return scenario_exit_at(atoll(argv[2]), atoi(argv[3]), atoi(argv[4]));
  if (strcmp(s, "hammer") == 0 && argc == 5)
    return scenario_hammer(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  if (strcmp(s, "quiesce") == 0 && argc == 5) return scenario_quiesce(argv[2], argv[3], argv[4]);
  if (strcmp(s, "realloc") == 0 && argc == 3) return scenario_realloc(argv[2]);
  if (strcmp(s, "errno") == 0 && argc == 4) return scenario_errno(argv[2], atoi(argv[3]));
  if (strcmp(s, "sigself") == 0 && argc == 3) return scenario_sigself(argv[2]);
  if (strcmp(s, "exit") == 0) return scenario_exit();
  if (strcmp(s, "mstats") == 0) return scenario_mstats();
  if (strcmp(s, "wait") == 0 && argc == 3) return scenario_wait(atoi(argv[2]));
  die("unknown scenario or wrong arguments: %s\n", s);
}

int main(int argc, char **argv) {
  return run(argc, argv);
}
