/* nm_rss_after_free: does freed memory go back to the OS?
 *
 *   nm_rss_after_free [TOTAL_MIB [THREADS [cross|orphan]]]   (default: 1024 1 cross)
 *
 * Allocates TOTAL_MIB in small blocks (64..512 bytes), touching every byte, and frees them
 * all in a shuffled order (so that no allocator gets away with freeing a stack). Then it
 * waits up to a second idle, and up to another second while allocating and freeing
 * short-lived blocks (as a program that goes on running would), and prints RSS at the
 * start, at the peak, after the idle wait and at the end.
 *
 * With THREADS > 1 each thread allocates its share and frees the first half of it itself;
 * the second halves are freed by someone else, in one of two fixed orders:
 *   cross   thread i frees the second half of thread i+1's share while every owner is
 *           still alive (the threads wait for each other before they exit);
 *   orphan  the threads exit first, then the main thread frees the second halves (frees
 *           into the heaps of threads that no longer exist).
 * All threads have exited before the end.
 *
 * Exit status 0 only if RSS at the end - RSS at the start < 64 MiB (and the peak was real:
 * at least half of TOTAL_MIB above the start). The bookkeeping arrays are mmap'ed directly,
 * so they do not count against the allocator, and are unmapped before the measurements. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "nm_rss.h"

#define LIMIT_KIB (64L * 1024)


static uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct {
  unsigned index;
  size_t bytes;        /* this thread's share */
  void **blocks;
  size_t count;
  size_t capacity;
  int failed;
} share_t;

static pthread_barrier_t g_allocated, g_measured, g_freed;
static bool g_orphan;
static share_t *g_shares;
static unsigned g_threads;

static void allocate_share(share_t *sh) {
  uint64_t s = 0xabcdef + sh->index;
  size_t total = 0;
  while (total < sh->bytes) {
    if (sh->count == sh->capacity) {
      fprintf(stderr, "nm_rss_after_free: block table full\n");
      sh->failed = 1;
      return;
    }
    size_t n = 64 + (size_t)(rng(&s) % 449);   /* 64 .. 512 */
    unsigned char *p = malloc(n);
    if (p == NULL) {
      fprintf(stderr, "nm_rss_after_free: malloc(%zu) failed after %zu MiB\n", n,
              total >> 20);
      sh->failed = 1;
      return;
    }
    memset(p, (int)(n & 0xff), n);
    sh->blocks[sh->count++] = p;
    total += n;
  }
  /* shuffle, so the frees come in no particular order */
  for (size_t i = sh->count; i > 1; i--) {
    size_t j = (size_t)(rng(&s) % i);
    void *t = sh->blocks[i - 1];
    sh->blocks[i - 1] = sh->blocks[j];
    sh->blocks[j] = t;
  }
}

static void free_range(share_t *sh, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    unsigned char *p = sh->blocks[i];
    if (p[0] != p[63]) {   /* the fill survived */
      fprintf(stderr, "nm_rss_after_free: block content changed before free\n");
      sh->failed = 1;
    }
    free(p);
  }
}

static void *thread_main(void *arg) {
  share_t *sh = arg;
  allocate_share(sh);
  pthread_barrier_wait(&g_allocated);
  pthread_barrier_wait(&g_measured);
  free_range(sh, 0, sh->count / 2);   /* the first half: mine */
  if (!g_orphan) {
    /* the second half of the next thread's, whose owner waits below until all are done */
    share_t *other = &g_shares[(sh->index + 1) % g_threads];
    free_range(other, other->count / 2, other->count);
    pthread_barrier_wait(&g_freed);
  }
  return NULL;
}

static void *map_array(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv) {
  long total_mib = argc > 1 ? atol(argv[1]) : 1024;
  long threads = argc > 2 ? atol(argv[2]) : 1;
  const char *mode = argc > 3 ? argv[3] : "cross";
  g_orphan = strcmp(mode, "orphan") == 0;
  if (total_mib < 64 || threads < 1 || threads > 64 ||
      (!g_orphan && strcmp(mode, "cross") != 0)) {
    fprintf(stderr, "usage: nm_rss_after_free [TOTAL_MIB(>=64) [THREADS(1..64) [cross|orphan]]]\n");
    return 2;
  }
  g_threads = (unsigned)threads;
  size_t total = (size_t)total_mib << 20;
  share_t *shares = map_array(sizeof(share_t) * (size_t)threads);
  if (shares == NULL) return 2;
  g_shares = shares;
  for (long t = 0; t < threads; t++) {
    shares[t].index = (unsigned)t;
    shares[t].bytes = total / (size_t)threads;
    shares[t].capacity = shares[t].bytes / 64 + 1;
    shares[t].blocks = map_array(shares[t].capacity * sizeof(void *));
    if (shares[t].blocks == NULL) return 2;
  }

  long start = rss_kib();
  long peak;
  int failed = 0;
  if (threads == 1) {
    allocate_share(&shares[0]);
    peak = rss_kib();
    free_range(&shares[0], 0, shares[0].count);
    failed = shares[0].failed;
  } else {
    pthread_barrier_init(&g_allocated, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&g_measured, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&g_freed, NULL, (unsigned)threads);
    pthread_t th[64];
    for (long t = 0; t < threads; t++)
      if (pthread_create(&th[t], NULL, thread_main, &shares[t]) != 0) return 2;
    pthread_barrier_wait(&g_allocated);
    peak = rss_kib();
    pthread_barrier_wait(&g_measured);
    for (long t = 0; t < threads; t++) pthread_join(th[t], NULL);
    if (g_orphan)
      for (long t = 0; t < threads; t++)
        free_range(&shares[t], shares[t].count / 2, shares[t].count);
    for (long t = 0; t < threads; t++) failed |= shares[t].failed;
  }
  for (long t = 0; t < threads; t++)
    munmap(shares[t].blocks, shares[t].capacity * sizeof(void *));

  /* Give a deferred purge time to run; stop as soon as RSS is back. */
  long idle = rss_kib();
  for (int i = 0; i < 10 && idle - start >= LIMIT_KIB; i++) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    idle = rss_kib();
  }
  /* A program goes on allocating: give an allocator that reclaims lazily (abandoned heaps,
   * deferred purges) the chance to, with short-lived blocks of the same sizes. */
  long after = idle;
  for (int round = 0; round < 10 && after - start >= LIMIT_KIB; round++) {
    uint64_t s = 99 + (uint64_t)round;
    for (int i = 0; i < 100000; i++) {
      void *p = malloc(64 + (size_t)(rng(&s) % 449));
      if (p == NULL) break;
      memset(p, 1, 64);
      free(p);
    }
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    after = rss_kib();
  }

  printf("nm_rss_after_free: allocated %ld MiB in 64..512 B blocks with %ld thread(s)%s%s\n",
         total_mib, threads, threads > 1 ? ", second halves freed: " : "",
         threads > 1 ? mode : "");
  printf("rss_start_kib=%ld rss_peak_kib=%ld rss_after_idle_kib=%ld rss_after_kib=%ld "
         "after_minus_start_kib=%ld\n",
         start, peak, idle, after, after - start);
  if (failed) {
    printf("FAILED: allocation or content check failed\n");
    return 1;
  }
  if (start < 0 || peak < 0 || after < 0) {
    printf("FAILED: cannot read /proc/self/statm\n");
    return 1;
  }
  if (peak - start < total_mib * 1024 / 2) {
    printf("FAILED: the peak (%ld KiB above start) is not real; was the memory touched?\n",
           peak - start);
    return 1;
  }
  if (after - start >= LIMIT_KIB) {
    printf("FAILED: RSS after freeing everything is %ld KiB above start (limit %ld KiB)\n",
           after - start, LIMIT_KIB);
    return 1;
  }
  printf("OK\n");
  return 0;
}
