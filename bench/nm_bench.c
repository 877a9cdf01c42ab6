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

__attribute__((noreturn)) static void die(const char *what) {
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

/* ---------------------------------------------------------------- threads */

/* Per-thread state of the multi-threaded workloads, one cache line or more each so the
 * harness itself shares no line between threads. */
typedef struct {
    _Alignas(64) int id;
    int nthreads;
    uint64_t ops;   /* this thread's share */
    uint64_t done;  /* ops it did */
    uint64_t sum;   /* checksum of what it read back */
    void *obj;      /* cache-scratch: the object handed over by the main thread */
    size_t size;    /* cache-scratch, cache-thrash: object size */
} worker_t;

/* Starts fn on n threads (w[0..n-1]), joins them, and returns the ops they did; their
 * checksums go to g_sink. */
static uint64_t run_threads(void *(*fn)(void *), worker_t *w, int n) {
    pthread_t th[64];
    if (n > 64) die("too many threads");
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, &w[i]) != 0) die("pthread_create failed");
    uint64_t done = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        done += w[i].done;
        sum += w[i].sum;
    }
    g_sink += sum;
    return done;
}

/* ---------------------------------------------------------------- larson */

/* Server-shaped, after Larson and Krishnan's benchmark: LARSON_THREADS threads each own a
 * LARSON_SLOTS-slot array of blocks of 16..1024 B (uniform). Each step a thread reads the
 * block in a random slot, frees it and allocates a new one of a random size into the slot.
 * The run is LARSON_PHASES phases; between two, every thread hands its slot array to the
 * next thread (thread i takes over thread i-1's), so most blocks are freed by a thread
 * other than the one that allocated them, as in a server whose connections move between
 * worker threads. The arrays are filled by the main thread before the measured part and
 * emptied by it after. One op = one free + malloc step. */
#define LARSON_THREADS 4
#define LARSON_SLOTS 1000
#define LARSON_PHASES 8

typedef struct {
    void *p;
    size_t size;
} lslot_t;

static lslot_t *larson_arrays[LARSON_THREADS];
static pthread_barrier_t larson_barrier;

static void *larson_worker(void *arg) {
    worker_t *w = arg;
    rng_t r = {0x1A2B3C4D5E6F7081ULL ^ (((uint64_t)w->id + 1) * 0x9E3779B97F4A7C15ULL)};
    uint64_t per_phase = w->ops / LARSON_PHASES, sum = 0, done = 0;
    if (per_phase == 0) per_phase = 1;
    for (int phase = 0; phase < LARSON_PHASES; phase++) {
        /* The barrier orders the previous owner's writes to the array before ours. */
        pthread_barrier_wait(&larson_barrier);
        lslot_t *slots = larson_arrays[(w->id + LARSON_THREADS - phase % LARSON_THREADS) % LARSON_THREADS];
        for (uint64_t i = 0; i < per_phase; i++) {
            lslot_t *s = &slots[rng_next(&r) % LARSON_SLOTS];
            sum += ((unsigned char *)s->p)[s->size - 1]; /* read it before it goes */
            free(s->p);
            size_t n = rng_range(&r, 16, 1024);
            void *p = malloc(n);
            if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
            touch(p, n, i);
            s->p = p;
            s->size = n;
        }
        done += per_phase;
    }
    w->done = done;
    w->sum = sum;
    return NULL;
}

__attribute__((noinline)) static uint64_t run_larson(uint64_t ops) {
    worker_t w[LARSON_THREADS];
    memset(w, 0, sizeof w);
    for (int t = 0; t < LARSON_THREADS; t++) {
        w[t].id = t;
        w[t].nthreads = LARSON_THREADS;
        w[t].ops = ops / LARSON_THREADS;
    }
    if (pthread_barrier_init(&larson_barrier, NULL, LARSON_THREADS) != 0) die("pthread_barrier_init failed");
    return run_threads(larson_worker, w, LARSON_THREADS);
}

static void larson_setup(void) {
    rng_t r = {0x5EED1A25011ULL};
    for (int t = 0; t < LARSON_THREADS; t++) {
        larson_arrays[t] = xmalloc(sizeof(lslot_t) * LARSON_SLOTS);
        for (int i = 0; i < LARSON_SLOTS; i++) {
            size_t n = rng_range(&r, 16, 1024);
            larson_arrays[t][i].p = xmalloc(n);
            larson_arrays[t][i].size = n;
            touch(larson_arrays[t][i].p, n, (uint64_t)i);
        }
    }
}

static void larson_teardown(void) {
    pthread_barrier_destroy(&larson_barrier);
    for (int t = 0; t < LARSON_THREADS; t++) {
        for (int i = 0; i < LARSON_SLOTS; i++) free(larson_arrays[t][i].p);
        free(larson_arrays[t]);
    }
}

/* ---------------------------------------------------------------- espresso */

/* Shaped like the allocation trace of espresso (the logic minimiser of the SPEC and
 * Zorn/Grunwald allocator studies): one thread, many sizes, mostly small, lifetimes mixed.
 *  - ESPRESSO_LIVE long-lived blocks in a slot array (the covers and set families): a step
 *    on one replaces it (free + malloc), or grows it with realloc (x1.25..2, up to 64 KiB;
 *    past that it is freed and starts small again);
 *  - a FIFO of ESPRESSO_TEMPS short-lived temporaries (the scratch sets of one operation):
 *    a step allocates one and frees the oldest;
 *  - every ESPRESSO_BULK steps a bulk free of a quarter of the slots (a cover thrown away);
 *    empty slots are refilled as steps land on them, so the live set breathes.
 * Sizes: 45% 8-64 B, 30% 65-256 B, 15% 257 B-1 KiB, 8% 1-4 KiB, 2% 16-64 KiB. Every block
 * is touched (one byte per page and the last byte); a block's first byte is a tag that
 * realloc must keep. One op = one step (one or two allocator calls). */
#define ESPRESSO_LIVE 4000
#define ESPRESSO_TEMPS 64
#define ESPRESSO_BULK 50000
#define ESPRESSO_MAXGROW 65536

static inline size_t espresso_size(rng_t *r) {
    uint64_t k = rng_next(r) % 100;
    if (k < 45) return rng_range(r, 8, 64);
    if (k < 75) return rng_range(r, 65, 256);
    if (k < 90) return rng_range(r, 257, 1024);
    if (k < 98) return rng_range(r, 1025, 4096);
    return rng_range(r, 16384, 65536);
}

static inline void *espresso_new(size_t n, uint64_t tag) {
    unsigned char *p = malloc(n);
    if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
    touch(p, n, tag);
    p[0] = (unsigned char)tag;
    return p;
}

__attribute__((noinline)) static uint64_t run_espresso(uint64_t ops) {
    rng_t r = {0xE5B8E550DEC0DEULL};
    unsigned char **live = xmalloc(sizeof *live * ESPRESSO_LIVE);
    size_t *lsize = xmalloc(sizeof *lsize * ESPRESSO_LIVE);
    unsigned char *temp[ESPRESSO_TEMPS];
    size_t tsize[ESPRESSO_TEMPS];
    unsigned head = 0;
    uint64_t sum = 0;
    for (int i = 0; i < ESPRESSO_LIVE; i++) {
        lsize[i] = espresso_size(&r);
        live[i] = espresso_new(lsize[i], (uint64_t)i);
    }
    for (int i = 0; i < ESPRESSO_TEMPS; i++) {
        tsize[i] = espresso_size(&r);
        temp[i] = espresso_new(tsize[i], (uint64_t)i);
    }
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t k = rng_next(&r) % 100;
        if (k < 50) { /* a temporary: allocate one, free the oldest */
            unsigned char *old = temp[head];
            sum += old[tsize[head] - 1];
            free(old);
            tsize[head] = espresso_size(&r);
            temp[head] = espresso_new(tsize[head], i);
            head = (head + 1) % ESPRESSO_TEMPS;
        } else {
            size_t s = (size_t)(rng_next(&r) % ESPRESSO_LIVE);
            unsigned char *p = live[s];
            if (p == NULL) { /* emptied by a bulk free: refill */
                lsize[s] = espresso_size(&r);
                live[s] = espresso_new(lsize[s], s);
            } else if (k < 88 || lsize[s] >= ESPRESSO_MAXGROW) { /* replace */
                if (__builtin_expect(p[0] != (unsigned char)s, 0)) die("espresso: a block's tag changed");
                sum += p[lsize[s] - 1];
                free(p);
                lsize[s] = espresso_size(&r);
                live[s] = espresso_new(lsize[s], s);
            } else { /* grow with realloc */
                size_t old = lsize[s];
                size_t n = old + old / 4 + (size_t)(rng_next(&r) % (old * 3 / 4 + 1));
                if (n > ESPRESSO_MAXGROW) n = ESPRESSO_MAXGROW;
                unsigned char tag = p[0];
                p = realloc(p, n);
                if (__builtin_expect(p == NULL, 0)) die("realloc returned NULL");
                if (__builtin_expect(p[0] != tag, 0)) die("realloc lost the contents");
                if (n > old) touch(p + old, n - old, i);
                live[s] = p;
                lsize[s] = n;
            }
        }
        if (__builtin_expect(i % ESPRESSO_BULK == ESPRESSO_BULK - 1, 0)) { /* bulk free */
            size_t from = (size_t)(rng_next(&r) % ESPRESSO_LIVE);
            for (size_t j = 0; j < ESPRESSO_LIVE / 4; j++) {
                size_t s = (from + j) % ESPRESSO_LIVE;
                if (live[s]) { sum += live[s][0]; free(live[s]); live[s] = NULL; }
            }
        }
    }
    for (int i = 0; i < ESPRESSO_LIVE; i++) free(live[i]);
    for (int i = 0; i < ESPRESSO_TEMPS; i++) free(temp[i]);
    free(live);
    free(lsize);
    g_sink += sum;
    return ops;
}

/* ---------------------------------------------------------------- cache-scratch, cache-thrash */

/* After Hoard's cache-scratch and cache-thrash (Berger et al., ASPLOS 2000): CACHE_THREADS
 * threads each allocate a CACHE_OBJ-byte object, write it CACHE_WRITES times (one byte per
 * write, going round the object), free it, and again. An allocator that gives two threads
 * objects in one cache line makes every write a line transfer between cores (false
 * sharing). cache-thrash: the threads start cold (active false sharing: does malloc itself
 * hand out neighbouring objects to different threads?). cache-scratch: first the main
 * thread allocates one object per thread, side by side, and each thread frees the one it
 * was handed before it starts (passive false sharing: does a freed block go back to the
 * thread that frees it, to be handed out next, on its neighbour's line?). One op = one
 * object's malloc + CACHE_WRITES writes + free. */
#define CACHE_THREADS 4
#define CACHE_OBJ 8
#define CACHE_WRITES 1000

static void *cache_worker(void *arg) {
    worker_t *w = arg;
    if (w->obj) free(w->obj); /* cache-scratch: the object the main thread handed over */
    uint64_t sum = 0;
    size_t size = w->size;
    for (uint64_t i = 0; i < w->ops; i++) {
        volatile unsigned char *p = malloc(size);
        if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
        for (unsigned j = 0; j < CACHE_WRITES / size; j++) /* each byte in turn, as Hoard's */
            for (size_t k = 0; k < size; k++) p[k] = (unsigned char)(j + k + i);
        sum += p[0];
        free((void *)p);
    }
    w->done = w->ops;
    w->sum = sum;
    return NULL;
}

__attribute__((noinline)) static uint64_t run_cache(uint64_t ops, int scratch) {
    worker_t w[CACHE_THREADS];
    memset(w, 0, sizeof w);
    for (int t = 0; t < CACHE_THREADS; t++) {
        w[t].id = t;
        w[t].nthreads = CACHE_THREADS;
        w[t].ops = ops / CACHE_THREADS ? ops / CACHE_THREADS : 1;
        w[t].size = CACHE_OBJ;
    }
    if (scratch) /* allocated one after another, so neighbours in most allocators */
        for (int t = 0; t < CACHE_THREADS; t++) {
            unsigned char *p = xmalloc(CACHE_OBJ);
            memset(p, t, CACHE_OBJ);
            w[t].obj = p;
        }
    return run_threads(cache_worker, w, CACHE_THREADS);
}

/* ---------------------------------------------------------------- scale-<threads> */

/* The same total number of malloc(64)+free pairs split evenly over N threads, each in
 * batches of SCALE_BATCH (allocate 16 blocks, write each, free them in order): how an
 * allocator's throughput scales with threads. Only as many run at once as there are cores;
 * past that the threads take turns. One op = one pair. */
#define SCALE_BATCH 16
#define SCALE_SIZE 64

static void *scale_worker(void *arg) {
    worker_t *w = arg;
    void *blocks[SCALE_BATCH];
    uint64_t rounds = w->ops / SCALE_BATCH, sum = 0;
    if (rounds == 0) rounds = 1;
    for (uint64_t r = 0; r < rounds; r++) {
        for (int j = 0; j < SCALE_BATCH; j++) {
            unsigned char *p = malloc(SCALE_SIZE);
            if (__builtin_expect(p == NULL, 0)) die("malloc returned NULL");
            p[0] = (unsigned char)j;
            p[SCALE_SIZE - 1] = (unsigned char)r;
            blocks[j] = p;
        }
        ESCAPE(blocks);
        for (int j = 0; j < SCALE_BATCH; j++) {
            sum += ((unsigned char *)blocks[j])[SCALE_SIZE - 1];
            free(blocks[j]);
        }
    }
    w->done = rounds * SCALE_BATCH;
    w->sum = sum;
    return NULL;
}

__attribute__((noinline)) static uint64_t run_scale(uint64_t ops, int nthreads) {
    worker_t w[64];
    if (nthreads < 1 || nthreads > 64) die("scale-N: N must be 1..64");
    memset(w, 0, sizeof w);
    for (int t = 0; t < nthreads; t++) {
        w[t].id = t;
        w[t].nthreads = nthreads;
        w[t].ops = ops / (uint64_t)nthreads;
    }
    return run_threads(scale_worker, w, nthreads);
}

/* ---------------------------------------------------------------- driver */

typedef struct {
    const char *name;
    uint64_t ops; /* default; --quick divides by QUICK_DIV */
} workload_t;

/* Default op counts: ~0.2-1.2 s each on glibc 2.36 (2-core AMD EPYC VM). batch-256 and up
 * are few ops because glibc is slow there: each round frees > 128 KiB next to the top of
 * the heap, so free() trims it (brk down) and the next round faults it back in. larson,
 * cache-* and scale-N are multi-threaded (4, 4, N threads): on a machine with fewer cores
 * than threads they take turns, and their times include that. */
static const workload_t workloads[] = {
    {"pairs-16", 40000000},   {"pairs-64", 40000000},   {"pairs-256", 40000000},
    {"pairs-1024", 40000000}, {"pairs-4096", 20000000},
    {"batch-16", 20000000},   {"batch-64", 30000000},   {"batch-256", 2500000},
    {"batch-1024", 300000},   {"batch-4096", 80000},
    {"random", 10000000},     {"prodcons", 6000000},    {"realloc", 3000000},
    {"request-2m", 20000000}, {"request-64m", 6000000},
    {"larson", 20000000},     {"espresso", 12000000},
    {"cache-scratch", 4000000}, {"cache-thrash", 4000000},
    {"scale-1", 40000000},    {"scale-2", 40000000},    {"scale-4", 40000000},
    {"scale-8", 40000000},
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

__attribute__((noreturn)) static void usage(void) {
    fprintf(stderr, "usage: nm_bench <workload> [--quick | OPS]\n       nm_bench --list\nworkloads:");
    for (size_t i = 0; i < NWORKLOADS; i++) fprintf(stderr, " %s", workloads[i].name);
    fprintf(stderr, "\n(pairs-N and batch-N accept any size N, scale-N any thread count 1..64)\n");
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
    int is_scale = !is_pairs && !is_batch && parse_size_suffix(name, "scale-", &size) && size <= 64;
    if (!ops) {
        if (is_pairs) ops = 20000000;
        else if (is_batch) ops = 10000000;
        else if (is_scale) ops = 40000000;
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
    } else if (strcmp(name, "larson") == 0) {
        larson_setup();
        t0 = mark(); done = run_larson(ops); t1 = mark();
        larson_teardown();
    } else if (strcmp(name, "espresso") == 0) {
        t0 = mark(); done = run_espresso(ops); t1 = mark();
    } else if (strcmp(name, "cache-scratch") == 0) {
        t0 = mark(); done = run_cache(ops, 1); t1 = mark();
    } else if (strcmp(name, "cache-thrash") == 0) {
        t0 = mark(); done = run_cache(ops, 0); t1 = mark();
    } else if (is_scale) {
        t0 = mark(); done = run_scale(ops, (int)size); t1 = mark();
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
