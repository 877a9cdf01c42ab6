/* nm_bench: allocator micro-benchmarks, one workload per run.
 *
 *   nm_bench <workload> [--quick | OPS]
 *   nm_bench --list
 *
 * The program links against nothing but libc; the allocator under test is chosen by the
 * caller with LD_PRELOAD (bench/run.py does that). It prints exactly one line on stdout:
 *
 *   workload=pairs-64 ops=40000000 seconds=0.412345 maxrss_kb=1536 cpu_seconds=0.41 ...
 *
 * seconds is the CLOCK_MONOTONIC time of the measured part only (set-up and tear-down of a
 * working set are outside it). maxrss_kb is the peak resident set of the whole process:
 * VmHWM from /proc/self/status, not getrusage's ru_maxrss, because Linux carries ru_maxrss
 * over execve() from the process image before it (a python3 parent's ~16 MiB would show up
 * as every allocator's peak). ru_maxrss is printed too, as ru_maxrss_kb; without
 * /proc, maxrss_kb falls back to it. cpu_seconds is the CPU time of all threads over the
 * measured part, preempt the involuntary context switches in it: when the machine is busy
 * with other work, cpu_seconds is the steadier number and preempt says how busy.
 *
 * Built with -fno-builtin-malloc and friends so the compiler cannot pair up and delete a
 * malloc/free (GCC and Clang both do that for builtins); every block is also written to and
 * escapes through an empty asm, so the calls stay even if the flags were dropped.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_common.h"

/* The compiler must assume p's memory is read by someone. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

static volatile uint64_t g_sink;

static void die(const char *what) {
    fprintf(stderr, "nm_bench: %s\n", what);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) die("malloc returned NULL");
    return p;
}

/* Peak RSS of this process image in KiB (VmHWM), or -1. Called after the measurement, so
 * stdio's own malloc does not matter. */
static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
    fclose(f);
    return kb;
}

/* Write one byte per 4 KiB page and the last byte, so the block is really resident (and
 * counts in maxrss) without the memset cost dominating. */
static inline void touch(void *p, size_t n, uint64_t v) {
    volatile unsigned char *c = p;
    for (size_t off = 0; off < n; off += 4096) c[off] = (unsigned char)v;
    c[n - 1] = (unsigned char)v;
}

/* ---------------------------------------------------------------- pairs-<size> */

__attribute__((noinline)) static uint64_t run_pairs(size_t size, uint64_t ops) {
    for (uint64_t i = 0; i < ops; i++) {
        char *p = malloc(size);
        if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
        ((volatile char *)p)[0] = (char)i;
        ESCAPE(p);
        free(p);
    }
    return ops;
}

/* ---------------------------------------------------------------- batch-<size> */

#define BATCH 1000

__attribute__((noinline)) static uint64_t run_batch(size_t size, uint64_t ops) {
    static void *slots[BATCH];
    uint64_t rounds = ops / BATCH;
    for (uint64_t r = 0; r < rounds; r++) {
        for (int j = 0; j < BATCH; j++) {
            char *p = malloc(size);
            if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
            ((volatile char *)p)[0] = (char)j;
            slots[j] = p;
        }
        ESCAPE(slots);
        for (int j = 0; j < BATCH; j++) free(slots[j]); /* allocation order */
    }
    return rounds * BATCH;
}

/* ---------------------------------------------------------------- random */

#define RANDOM_SLOTS 10000

/* Skewed small: 60% 16-128 B, 25% 129 B-1 KiB, 12% 1-4 KiB, 3% 4-32 KiB. */
static inline size_t random_size(rng_t *r) {
    uint64_t k = rng_next(r) % 100;
    if (k < 60) return rng_range(r, 16, 128);
    if (k < 85) return rng_range(r, 129, 1024);
    if (k < 97) return rng_range(r, 1025, 4096);
    return rng_range(r, 4097, 32768);
}

static uint64_t run_random_setup(void ***slots_out, size_t **sizes_out, rng_t *r) {
    void **slots = xmalloc(sizeof(void *) * RANDOM_SLOTS);
    size_t *sizes = xmalloc(sizeof(size_t) * RANDOM_SLOTS);
    for (int i = 0; i < RANDOM_SLOTS; i++) {
        sizes[i] = random_size(r);
        slots[i] = xmalloc(sizes[i]);
        touch(slots[i], sizes[i], (uint64_t)i);
    }
    *slots_out = slots;
    *sizes_out = sizes;
    return 0;
}

__attribute__((noinline)) static uint64_t run_random(void **slots, size_t *sizes, rng_t *r, uint64_t ops) {
    uint64_t acc = 0;
    for (uint64_t i = 0; i < ops; i++) {
        size_t k = (size_t)(rng_next(r) % RANDOM_SLOTS);
        acc += ((unsigned char *)slots[k])[sizes[k] - 1]; /* read it before it goes */
        free(slots[k]);
        size_t n = random_size(r);
        void *p = malloc(n);
        if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
        touch(p, n, i);
        slots[k] = p;
        sizes[k] = n;
    }
    g_sink += acc;
    return ops;
}

/* ---------------------------------------------------------------- prodcons */

/* Single-producer single-consumer ring of chunks; a chunk is CHUNK pointers, so the
 * queue's synchronisation (two atomics and, rarely, a sched_yield) is paid once per 256
 * blocks. The chunks live in the ring itself: the queue never allocates. */
#define CHUNK 256
#define RING 64 /* chunks in flight at most: 16384 blocks */

typedef struct {
    void *blocks[CHUNK];
    unsigned n;
} chunk_t;

static struct {
    _Alignas(64) _Atomic uint64_t head; /* consumer's position */
    _Alignas(64) _Atomic uint64_t tail; /* producer's position */
    _Alignas(64) chunk_t ring[RING];
} q;

static void *consumer(void *arg) {
    (void)arg;
    uint64_t head = 0, freed = 0;
    for (;;) {
        uint64_t tail;
        unsigned spins = 0;
        while ((tail = atomic_load_explicit(&q.tail, memory_order_acquire)) == head)
            if (++spins > 64) { sched_yield(); spins = 0; }
        for (; head < tail; head++) {
            chunk_t *c = &q.ring[head % RING];
            if (c->n == 0) { /* end marker */
                atomic_store_explicit(&q.head, head + 1, memory_order_release);
                g_sink += freed;
                return NULL;
            }
            for (unsigned i = 0; i < c->n; i++) free(c->blocks[i]);
            freed += c->n;
            atomic_store_explicit(&q.head, head + 1, memory_order_release);
        }
    }
}

static void producer_publish(uint64_t *tail) {
    atomic_store_explicit(&q.tail, *tail + 1, memory_order_release);
    ++*tail;
}

static chunk_t *producer_next(uint64_t tail) {
    unsigned spins = 0;
    while (tail - atomic_load_explicit(&q.head, memory_order_acquire) >= RING)
        if (++spins > 64) { sched_yield(); spins = 0; }
    return &q.ring[tail % RING];
}

__attribute__((noinline)) static uint64_t run_prodcons(uint64_t ops) {
    pthread_t th;
    if (pthread_create(&th, NULL, consumer, NULL) != 0) die("pthread_create failed");
    rng_t r = {0x9E3779B97F4A7C15ULL};
    uint64_t tail = 0, done = 0;
    while (done < ops) {
        chunk_t *c = producer_next(tail);
        unsigned n = (ops - done) < CHUNK ? (unsigned)(ops - done) : CHUNK;
        for (unsigned i = 0; i < n; i++) {
            size_t sz = rng_range(&r, 16, 512);
            char *p = malloc(sz);
            if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
            p[0] = (char)i;
            p[sz - 1] = (char)i;
            c->blocks[i] = p;
        }
        c->n = n;
        done += n;
        producer_publish(&tail);
    }
    chunk_t *end = producer_next(tail);
    end->n = 0;
    producer_publish(&tail);
    pthread_join(th, NULL);
    return ops;
}

/* ---------------------------------------------------------------- realloc */

/* REALLOC_BUFS buffers grow side by side (so no buffer is always the last block and can
 * simply extend into free space). A buffer's life: from 16 B, +16..64 B per step up to
 * 4 KiB (a string builder appending), then x1.5 per step up to its cap (a vector
 * doubling-ish), then a shrink to a quarter, then free. Caps are 8 KiB << (0..7), i.e. up
 * to 1 MiB, the small ones more often. One op = one realloc call. */
#define REALLOC_BUFS 16

typedef struct {
    char *p;
    size_t size, cap;
} rbuf_t;

static size_t realloc_cap(rng_t *r) {
    /* 8 KiB << k with P(k) halving: 8K 50%, 16K 25%, ... 1 MiB ~0.8%. */
    uint64_t x = rng_next(r) | (1ULL << 7);
    int k = __builtin_ctzll(x);
    return (size_t)8192 << k;
}

static void rbuf_new(rbuf_t *b, rng_t *r) {
    b->size = 16;
    b->cap = realloc_cap(r);
    b->p = xmalloc(b->size);
    b->p[0] = 'N';
    b->p[b->size - 1] = 1;
}

__attribute__((noinline)) static uint64_t run_realloc(uint64_t ops) {
    rng_t r = {0xC0FFEE1234567ULL};
    rbuf_t bufs[REALLOC_BUFS];
    for (int i = 0; i < REALLOC_BUFS; i++) rbuf_new(&bufs[i], &r);
    uint64_t done = 0;
    while (done < ops) {
        for (int i = 0; i < REALLOC_BUFS && done < ops; i++) {
            rbuf_t *b = &bufs[i];
            size_t n;
            if (b->size >= b->cap) {
                /* Shrink step, then retire the buffer and start a new one. */
                n = b->size / 4;
                char *p = realloc(b->p, n);
                if (!p) die("realloc returned NULL");
                if (p[0] != 'N') die("realloc lost the contents");
                p[n - 1] = 2;
                ESCAPE(p);
                free(p);
                rbuf_new(b, &r);
                done++;
                continue;
            }
            if (b->size < 4096) n = b->size + rng_range(&r, 16, 64);
            else n = b->size + b->size / 2;
            if (n > b->cap) n = b->cap;
            char *p = realloc(b->p, n);
            if (__builtin_expect(p == NULL, 0)) die("realloc returned NULL");
            if (__builtin_expect(p[0] != 'N', 0)) die("realloc lost the contents");
            p[n - 1] = 1; /* the new tail: a write into the grown part */
            b->p = p;
            b->size = n;
            done++;
        }
    }
    for (int i = 0; i < REALLOC_BUFS; i++) free(bufs[i].p);
    return done;
}

/* ---------------------------------------------------------------- request */

/* Request-shaped: each request allocates many objects of mixed sizes (a parse tree, a
 * response being built: 16 B - 2 KiB mostly, one in 64 up to 16 KiB), touches them, and
 * frees them all when it ends, in allocation order. request-2m makes ~2 MiB per request,
 * request-64m ~64 MiB (a batch job's phase). One op = one object allocated and freed. */
__attribute__((noinline)) static uint64_t run_request(uint64_t ops, size_t objects) {
    rng_t r = {0xFEEDFACE12345ULL};
    char **objs = xmalloc(objects * sizeof *objs);
    uint64_t done = 0;
    while (done < ops) {
        for (size_t i = 0; i < objects; i++) {
            size_t sz = (rng_next(&r) & 63) == 0 ? rng_range(&r, 2048, 16384) : rng_range(&r, 16, 768);
            char *p = malloc(sz);
            if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
            p[0] = (char)i;
            p[sz - 1] = (char)i;
            objs[i] = p;
        }
        for (size_t i = 0; i < objects; i++) {
            ESCAPE(objs[i]);
            free(objs[i]);
        }
        done += objects;
    }
    free(objs);
    return done;
}

/* ---------------------------------------------------------------- driver */

typedef struct {
    const char *name;
    uint64_t ops; /* default; --quick divides by QUICK_DIV */
} workload_t;

/* Default op counts: ~0.2-1.2 s each on glibc 2.36 (2-core AMD EPYC VM). batch-256 and up
 * are few ops because glibc is slow there: each round frees > 128 KiB next to the top of
 * the heap, so free() trims it (brk down) and the next round faults it back in. */
static const workload_t workloads[] = {
    {"pairs-16", 40000000},   {"pairs-64", 40000000},   {"pairs-256", 40000000},
    {"pairs-1024", 40000000}, {"pairs-4096", 20000000},
    {"batch-16", 20000000},   {"batch-64", 30000000},   {"batch-256", 2500000},
    {"batch-1024", 300000},   {"batch-4096", 80000},
    {"random", 10000000},     {"prodcons", 6000000},    {"realloc", 3000000},
    {"request-2m", 20000000}, {"request-64m", 6000000},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])
#define QUICK_DIV 20

static int parse_size_suffix(const char *name, const char *prefix, size_t *out) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(name + pl, &end, 10);
    if (errno || *end || end == name + pl || v == 0) return 0;
    *out = v;
    return 1;
}

static void usage(void) {
    fprintf(stderr, "usage: nm_bench <workload> [--quick | OPS]\n       nm_bench --list\nworkloads:");
    for (size_t i = 0; i < NWORKLOADS; i++) fprintf(stderr, " %s", workloads[i].name);
    fprintf(stderr, "\n(pairs-N and batch-N accept any size N)\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NWORKLOADS; i++) printf("%s %llu\n", workloads[i].name,
                                                      (unsigned long long)workloads[i].ops);
        return 0;
    }
    const char *name = argv[1];
    size_t size = 0;
    uint64_t ops = 0;
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (strcmp(workloads[i].name, name) == 0) ops = workloads[i].ops;
    int is_pairs = parse_size_suffix(name, "pairs-", &size);
    int is_batch = !is_pairs && parse_size_suffix(name, "batch-", &size);
    if (!ops) {
        if (is_pairs) ops = 20000000;
        else if (is_batch) ops = 10000000;
        else usage();
    }
    if (argc >= 3) {
        if (strcmp(argv[2], "--quick") == 0) ops = ops / QUICK_DIV;
        else {
            char *end;
            ops = strtoull(argv[2], &end, 10);
            if (*end || ops == 0) usage();
        }
    }

    /* The allocator's lazy initialisation is not part of any measurement. */
    void *warm = malloc(64);
    ESCAPE(warm);
    free(warm);

    uint64_t done;
    mark_t t0, t1;
    if (is_pairs) {
        t0 = mark(); done = run_pairs(size, ops); t1 = mark();
    } else if (is_batch) {
        t0 = mark(); done = run_batch(size, ops); t1 = mark();
    } else if (strcmp(name, "random") == 0) {
        void **slots; size_t *sizes;
        rng_t r = {0x1234567890ABCDEFULL};
        run_random_setup(&slots, &sizes, &r);
        t0 = mark(); done = run_random(slots, sizes, &r, ops); t1 = mark();
        for (int i = 0; i < RANDOM_SLOTS; i++) free(slots[i]);
        free(slots);
        free(sizes);
    } else if (strcmp(name, "prodcons") == 0) {
        t0 = mark(); done = run_prodcons(ops); t1 = mark();
    } else if (strcmp(name, "realloc") == 0) {
        t0 = mark(); done = run_realloc(ops); t1 = mark();
    } else if (strcmp(name, "request-2m") == 0) {
        t0 = mark(); done = run_request(ops, 3500); t1 = mark();
    } else if (strcmp(name, "request-64m") == 0) {
        t0 = mark(); done = run_request(ops, 112000); t1 = mark();
    } else {
        usage();
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long hwm = vm_hwm_kb();
    printf("workload=%s ops=%llu seconds=%.6f maxrss_kb=%ld cpu_seconds=%.6f preempt=%ld "
           "ru_maxrss_kb=%ld\n", name, (unsigned long long)done, t1.wall - t0.wall,
           hwm > 0 ? hwm : ru.ru_maxrss, t1.cpu - t0.cpu, t1.preempt - t0.preempt, ru.ru_maxrss);
    return 0;
}
