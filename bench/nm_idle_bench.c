/* nm_idle_bench: threads that allocate, free and go idle; does the memory go back?
 *
 *   nm_idle_bench <scenario> [--quick]
 *   nm_idle_bench --list
 *
 * A plain libc program, like nm_bench: the allocator under test is chosen with LD_PRELOAD
 * (bench/idle.py does that, and samples this process's RSS from the outside while it runs).
 * On stdout it prints one line per phase mark, flushed at once:
 *
 *   mark=freed t_ms=812.4 mono_s=5123.456789 rss_kib=40960 vmsize_kib=1234567 hwm_kib=401234
 *
 * t_ms is the time since main() started, mono_s the CLOCK_MONOTONIC time (the clock of
 * python's time.monotonic(), so the driver can place the mark on its own samples), rss_kib /
 * vmsize_kib / hwm_kib this process's VmRSS / VmSize / VmHWM at that moment (read with
 * open/read, not stdio, so reading them allocates nothing). Some marks carry more fields
 * (round=, threads=). The last line is `mark=end`; exit status 0 unless something failed.
 *
 * Scenarios (each a few seconds; --quick: 1/8 of the memory and shorter waits, a smoke run):
 *
 *   idle-alive      16 threads each allocate 24 MiB in mixed small blocks (16..4096 B, every
 *                   byte written) and free all of it themselves, in a shuffled order; then the
 *                   main thread calls malloc_trim(0) and everything stays idle for 1.5 s with
 *                   the threads alive (blocked on a barrier); then the threads exit.
 *                   Marks: start, allocated, freed, trimmed, idle_end, exited, end.
 *   idle-no-trim    the same without malloc_trim: freed memory must go back by time alone.
 *                   Marks: start, allocated, freed, idle_end, exited, end.
 *   ring-exit       64 threads in a ring, 8 rounds: in a round thread i allocates 2 MiB of
 *                   blocks that thread (i+1)%64 frees (cross-thread frees; a thread exits as
 *                   soon as it has freed its share, so some owners are gone before their
 *                   blocks are freed); every thread of a round has exited before the next
 *                   round starts. Marks: start, round (round=1..8, after the round's joins;
 *                   then 100 ms pause), end (0.5 s after the last round).
 *   exited-threads  1000 threads created one after another, at most 4 alive at once; each
 *                   allocates 4 MiB in mixed blocks, frees it all and exits. Marks: start,
 *                   threads (threads=100, 200, .. 1000 joined), end (0.5 s after the last join).
 *   handoff-idle    the main thread allocates 64 MiB in mixed blocks and hands them to 4
 *                   worker threads, which free them all and then go on working for 6 s
 *                   (each allocating and freeing 1 MiB of its own, again and again); the main
 *                   thread makes no allocator call meanwhile (idle, alive: a thread that built
 *                   a structure for others and waits). Marks: start, allocated, freed,
 *                   idle_end (the workers are done), end.
 *
 * The block tables are mmap'ed directly (not from the allocator under test) and unmapped
 * once their blocks are freed, so they are not in the figures after freeing. malloc_trim is
 * whatever the process resolves it to: the preloaded allocator's own when it exports one
 * (nebula does; jemalloc, mimalloc and tcmalloc do not, so glibc's runs, trimming glibc's
 * unused heap: a no-op for them).
 *
 * Built with -fno-builtin-malloc and friends, so that every call is made.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

static double g_t0;
static int g_quick;
static atomic_int g_failed;

static void die(const char *what) {
    fprintf(stderr, "nm_idle_bench: %s\n", what);
    exit(2);
}

/* ---------------------------------------------------------------- measurements */

typedef struct { long rss, vmsize, hwm; } status_t;

/* VmRSS, VmSize and VmHWM of this process in KiB (-1 when missing), read without malloc. */
static status_t read_status(void) {
    status_t st = {-1, -1, -1};
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return st;
    buf[n] = '\0';
    static const struct { const char *key; size_t off; } keys[] = {
        {"\nVmRSS:", offsetof(status_t, rss)},
        {"\nVmSize:", offsetof(status_t, vmsize)},
        {"\nVmHWM:", offsetof(status_t, hwm)},
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *p = strstr(buf, keys[k].key);
        if (p) *(long *)((char *)&st + keys[k].off) = strtol(p + strlen(keys[k].key), NULL, 10);
    }
    return st;
}

/* One mark line on stdout. extra: more " key=value" fields, or "". */
static void mark_line(const char *name, const char *extra) {
    double now = clock_s(CLOCK_MONOTONIC);
    status_t st = read_status();
    printf("mark=%s t_ms=%.1f mono_s=%.6f rss_kib=%ld vmsize_kib=%ld hwm_kib=%ld%s\n", name,
           (now - g_t0) * 1e3, now, st.rss, st.vmsize, st.hwm, extra);
    fflush(stdout);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---------------------------------------------------------------- blocks */

static void *map_array(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap of a block table failed");
    return p;
}

/* Mixed small: 50% 16-128 B, 30% 129 B-1 KiB, 20% 1-4 KiB (mean about 720 B). */
static inline size_t mixed_size(rng_t *r) {
    uint64_t k = rng_next(r) % 100;
    if (k < 50) return rng_range(r, 16, 128);
    if (k < 80) return rng_range(r, 129, 1024);
    return rng_range(r, 1025, 4096);
}

/* A set of blocks allocated by one thread; the table is mmap'ed. */
typedef struct {
    void **blocks;
    size_t count, capacity;
} blockset_t;

static void blockset_alloc(blockset_t *bs, size_t bytes, uint64_t seed) {
    rng_t r = {seed * 0x9E3779B97F4A7C15ULL + 1};
    bs->capacity = bytes / 16 + 1;
    bs->blocks = map_array(bs->capacity * sizeof(void *));
    bs->count = 0;
    size_t total = 0;
    while (total < bytes) {
        if (bs->count == bs->capacity) die("block table full");
        size_t n = mixed_size(&r);
        unsigned char *p = malloc(n);
        if (p == NULL) die("malloc returned NULL");
        memset(p, (int)(n & 0xff) | 1, n);   /* every byte: the memory is really resident */
        bs->blocks[bs->count++] = p;
        total += n;
    }
    /* shuffled, so that the frees come in no particular order */
    for (size_t i = bs->count; i > 1; i--) {
        size_t j = (size_t)(rng_next(&r) % i);
        void *t = bs->blocks[i - 1];
        bs->blocks[i - 1] = bs->blocks[j];
        bs->blocks[j] = t;
    }
}

/* Frees every block (checking the fill survived) and unmaps the table. */
static void blockset_free(blockset_t *bs) {
    for (size_t i = 0; i < bs->count; i++) {
        unsigned char *p = bs->blocks[i];
        if (p[0] == 0) atomic_store(&g_failed, 1);
        free(p);
    }
    munmap(bs->blocks, bs->capacity * sizeof(void *));
    bs->blocks = NULL;
    bs->count = 0;
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
    if (pthread_create(t, NULL, fn, arg) != 0) die("pthread_create failed");
}

/* ---------------------------------------------------------------- idle-alive, idle-no-trim */

#define IDLE_THREADS 16
#define IDLE_MIB 24

static pthread_barrier_t g_allocated, g_freed, g_release;
static size_t g_idle_bytes;

static void *idle_thread(void *arg) {
    blockset_t bs;
    blockset_alloc(&bs, g_idle_bytes, (uint64_t)(uintptr_t)arg);
    pthread_barrier_wait(&g_allocated);
    pthread_barrier_wait(&g_allocated);   /* the main thread has read RSS */
    blockset_free(&bs);
    pthread_barrier_wait(&g_freed);
    pthread_barrier_wait(&g_release);     /* idle, alive, until the main thread says so */
    return NULL;
}

static void run_idle(int trim) {
    g_idle_bytes = (size_t)IDLE_MIB << 20;
    if (g_quick) g_idle_bytes /= 8;
    long idle_ms = g_quick ? 300 : 1500;
    pthread_barrier_init(&g_allocated, NULL, IDLE_THREADS + 1);
    pthread_barrier_init(&g_freed, NULL, IDLE_THREADS + 1);
    pthread_barrier_init(&g_release, NULL, IDLE_THREADS + 1);
    pthread_t th[IDLE_THREADS];
    mark_line("start", "");
    for (uintptr_t i = 0; i < IDLE_THREADS; i++) start_thread(&th[i], idle_thread, (void *)i);
    pthread_barrier_wait(&g_allocated);
    mark_line("allocated", "");
    pthread_barrier_wait(&g_allocated);
    pthread_barrier_wait(&g_freed);
    mark_line("freed", "");
    if (trim) {
        malloc_trim(0);
        mark_line("trimmed", "");
    }
    sleep_ms(idle_ms);
    mark_line("idle_end", "");
    pthread_barrier_wait(&g_release);
    for (int i = 0; i < IDLE_THREADS; i++) pthread_join(th[i], NULL);
    mark_line("exited", "");
    sleep_ms(g_quick ? 100 : 300);
}

/* ---------------------------------------------------------------- ring-exit */

#define RING_THREADS 64
#define RING_ROUNDS 8
#define RING_MIB 2

static blockset_t g_ring[RING_THREADS];
static pthread_barrier_t g_ring_allocated;
static size_t g_ring_bytes;
static unsigned g_ring_round;

static void *ring_thread(void *arg) {
    unsigned i = (unsigned)(uintptr_t)arg;
    blockset_alloc(&g_ring[i], g_ring_bytes, (uint64_t)g_ring_round * RING_THREADS + i);
    pthread_barrier_wait(&g_ring_allocated);
    /* thread i frees what thread i-1 allocated, then exits at once */
    blockset_free(&g_ring[(i + RING_THREADS - 1) % RING_THREADS]);
    return NULL;
}

static void run_ring(void) {
    g_ring_bytes = (size_t)RING_MIB << 20;
    if (g_quick) g_ring_bytes /= 8;
    pthread_barrier_init(&g_ring_allocated, NULL, RING_THREADS);
    mark_line("start", "");
    for (unsigned round = 1; round <= RING_ROUNDS; round++) {
        g_ring_round = round;
        pthread_t th[RING_THREADS];
        for (uintptr_t i = 0; i < RING_THREADS; i++) start_thread(&th[i], ring_thread, (void *)i);
        for (int i = 0; i < RING_THREADS; i++) pthread_join(th[i], NULL);
        char extra[32];
        snprintf(extra, sizeof extra, " round=%u", round);
        mark_line("round", extra);
        sleep_ms(g_quick ? 20 : 100);
    }
    sleep_ms(g_quick ? 100 : 500);
}

/* ---------------------------------------------------------------- exited-threads */

#define EXIT_THREADS 1000
#define EXIT_ALIVE 4
#define EXIT_MIB 4

static size_t g_exit_bytes;

static void *exit_thread(void *arg) {
    blockset_t bs;
    blockset_alloc(&bs, g_exit_bytes, (uint64_t)(uintptr_t)arg);
    blockset_free(&bs);
    return NULL;
}

static void run_exited(void) {
    g_exit_bytes = (size_t)EXIT_MIB << 20;
    if (g_quick) g_exit_bytes /= 8;
    pthread_t th[EXIT_ALIVE];
    mark_line("start", "");
    for (uintptr_t n = 0; n < EXIT_THREADS; n++) {
        if (n >= EXIT_ALIVE) pthread_join(th[n % EXIT_ALIVE], NULL);
        start_thread(&th[n % EXIT_ALIVE], exit_thread, (void *)n);
        /* threads n-3..n are alive, n-4 and before are joined */
        if (n >= EXIT_ALIVE && (n + 1 - EXIT_ALIVE) % 100 == 0) {
            char extra[32];
            snprintf(extra, sizeof extra, " threads=%lu", (unsigned long)(n + 1 - EXIT_ALIVE));
            mark_line("threads", extra);
        }
    }
    for (uintptr_t n = EXIT_THREADS - EXIT_ALIVE; n < EXIT_THREADS; n++)
        pthread_join(th[n % EXIT_ALIVE], NULL);
    char extra[32];
    snprintf(extra, sizeof extra, " threads=%d", EXIT_THREADS);
    mark_line("threads", extra);
    sleep_ms(g_quick ? 100 : 500);
}

/* ---------------------------------------------------------------- handoff-idle */

#define HANDOFF_WORKERS 4
#define HANDOFF_MIB 64
#define HANDOFF_WORK_MIB 1

static blockset_t g_handoff;
static pthread_barrier_t g_handed, g_handoff_freed;
static atomic_int g_handoff_working;
static long g_handoff_work_ms;

static void *handoff_worker(void *arg) {
    unsigned w = (unsigned)(uintptr_t)arg;
    pthread_barrier_wait(&g_handed);
    /* worker w frees every HANDOFF_WORKERS-th block of the main thread's (shuffled) set */
    for (size_t i = w; i < g_handoff.count; i += HANDOFF_WORKERS) {
        unsigned char *p = g_handoff.blocks[i];
        if (p[0] == 0) atomic_store(&g_failed, 1);
        free(p);
    }
    pthread_barrier_wait(&g_handoff_freed);
    /* then goes on working with memory of its own: allocate, free, again */
    double end = clock_s(CLOCK_MONOTONIC) + (double)g_handoff_work_ms / 1e3;
    uint64_t seed = 1000 + w;
    while (clock_s(CLOCK_MONOTONIC) < end) {
        blockset_t mine;
        blockset_alloc(&mine, (size_t)HANDOFF_WORK_MIB << 20, seed++);
        blockset_free(&mine);
    }
    atomic_fetch_sub(&g_handoff_working, 1);
    return NULL;
}

static void run_handoff(void) {
    size_t bytes = (size_t)HANDOFF_MIB << 20;
    if (g_quick) bytes /= 8;
    /* strategy=throughput sweeps and purges once a second, and a slice goes back at the
     * second tick after it was freed: about 3 s, here with room to spare. */
    g_handoff_work_ms = g_quick ? 1000 : 6000;
    pthread_barrier_init(&g_handed, NULL, HANDOFF_WORKERS + 1);
    pthread_barrier_init(&g_handoff_freed, NULL, HANDOFF_WORKERS + 1);
    atomic_store(&g_handoff_working, HANDOFF_WORKERS);
    pthread_t th[HANDOFF_WORKERS];
    mark_line("start", "");
    for (uintptr_t i = 0; i < HANDOFF_WORKERS; i++) start_thread(&th[i], handoff_worker, (void *)i);
    blockset_alloc(&g_handoff, bytes, 77);
    mark_line("allocated", "");
    pthread_barrier_wait(&g_handed);
    pthread_barrier_wait(&g_handoff_freed);
    mark_line("freed", "");
    /* The main thread makes no allocator call until the workers are done: idle, alive. */
    while (atomic_load(&g_handoff_working) > 0) sleep_ms(10);
    mark_line("idle_end", "");
    munmap(g_handoff.blocks, g_handoff.capacity * sizeof(void *));
    for (int i = 0; i < HANDOFF_WORKERS; i++) pthread_join(th[i], NULL);
}

/* ---------------------------------------------------------------- main */

static const char *const SCENARIOS[] = {"idle-alive", "idle-no-trim", "ring-exit", "exited-threads", "handoff-idle"};

int main(int argc, char **argv) {
    g_t0 = clock_s(CLOCK_MONOTONIC);
    const size_t nsc = sizeof SCENARIOS / sizeof SCENARIOS[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < nsc; i++) printf("%s\n", SCENARIOS[i]);
        return 0;
    }
    g_quick = argc == 3 && strcmp(argv[2], "--quick") == 0;
    if (argc < 2 || argc > 3 || (argc == 3 && !g_quick)) {
        fprintf(stderr, "usage: nm_idle_bench <scenario> [--quick] | --list\n");
        return 2;
    }
    const char *s = argv[1];
    if (strcmp(s, "idle-alive") == 0) run_idle(1);
    else if (strcmp(s, "idle-no-trim") == 0) run_idle(0);
    else if (strcmp(s, "ring-exit") == 0) run_ring();
    else if (strcmp(s, "exited-threads") == 0) run_exited();
    else if (strcmp(s, "handoff-idle") == 0) run_handoff();
    else {
        fprintf(stderr, "nm_idle_bench: unknown scenario %s (see --list)\n", s);
        return 2;
    }
    mark_line("end", "");
    if (atomic_load(&g_failed)) {
        fprintf(stderr, "nm_idle_bench: a block's content changed before it was freed\n");
        return 1;
    }
    return 0;
}
