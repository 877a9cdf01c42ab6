/* What the benchmark programs share: the measured part's clocks and a deterministic
 * random sequence. Header-only and libc-only: nm_bench runs under every allocator. */
#ifndef NM_BENCH_COMMON_H
#define NM_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One end of the measured part: wall clock, CPU time of all threads, and how often the
 * kernel took the CPU away (involuntary context switches: other load on the machine). */
typedef struct {
    double wall, cpu;
    long preempt;
} mark_t;

static mark_t mark(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    mark_t m = {clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_PROCESS_CPUTIME_ID), ru.ru_nivcsw};
    return m;
}

/* xorshift64*: small, fast, and the same sequence for every allocator. */
typedef struct { uint64_t s; } rng_t;
static inline uint64_t rng_next(rng_t *r) {
    uint64_t x = r->s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}
/* Uniform in [lo, hi]. */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

#endif
