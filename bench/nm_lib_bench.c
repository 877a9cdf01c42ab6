/* The library allocators against malloc, each in the pattern it is made for:
 *
 *   arena-bump / arena-malloc     per-request arena: a request makes 64 objects of 16-512 B,
 *                                 touches them, and drops them all (reset vs free each)
 *   pool-pool / pool-malloc       pool reuse: 64-byte objects, a working set of 4096 slots,
 *                                 each op frees a random slot's object and makes a new one
 *   stack-stack / stack-malloc    stack scopes: nested scopes 1-8 deep, 4 blocks of 32-256 B
 *                                 each, released in LIFO order (marker vs free each)
 *
 * The -malloc variants use whatever malloc the process has, so bench/run.py runs them
 * under glibc and under LD_PRELOAD of jemalloc, mimalloc and tcmalloc. Output, one line:
 *   workload=arena-bump ops=3200000 seconds=0.0123 maxrss_kb=... cpu_seconds=... preempt=...
 * ops counts objects made. --quick: 1/20 of the ops. Never a test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <nebula/bump.h>
#include <nebula/pool.h>
#include <nebula/stack.h>

#include "bench_common.h"

static void die(const char *what) {
  fprintf(stderr, "nm_lib_bench: %s\n", what);
  exit(2);
}

/* A write the compiler cannot drop, and a read back: an object is used, not just made. */
static volatile uint64_t sink;
static inline void use(void *p, size_t n, uint64_t v) {
  unsigned char *c = p;
  c[0] = (unsigned char)v;
  c[n - 1] = (unsigned char)(v >> 8);
  sink += c[0];
}

#define ARENA_OBJECTS 64
static uint64_t arena(uint64_t ops, int with_bump) {
  rng_t r = {42};
  uint64_t requests = ops / ARENA_OBJECTS;
  if (with_bump) {
    nebula_bump_options_t o = {0};
    o.capacity = 64u << 10;
    o.grow = true;
    nebula_bump_t *b = nebula_bump_create(&o);
    if (!b) die("nebula_bump_create failed");
    for (uint64_t q = 0; q < requests; q++) {
      for (int i = 0; i < ARENA_OBJECTS; i++) {
        size_t n = rng_range(&r, 16, 512);
        void *p = nebula_bump_alloc(b, n, 0);
        if (!p) die("bump alloc failed");
        use(p, n, q + (uint64_t)i);
      }
      nebula_bump_reset(b);
    }
    nebula_bump_destroy(b);
  } else {
    void *objs[ARENA_OBJECTS];
    for (uint64_t q = 0; q < requests; q++) {
      for (int i = 0; i < ARENA_OBJECTS; i++) {
        size_t n = rng_range(&r, 16, 512);
        objs[i] = malloc(n);
        if (!objs[i]) die("malloc failed");
        use(objs[i], n, q + (uint64_t)i);
      }
      for (int i = 0; i < ARENA_OBJECTS; i++) free(objs[i]);
    }
  }
  return requests * ARENA_OBJECTS;
}

#define POOL_SLOTS 4096
#define POOL_OBJ 64
static uint64_t pool(uint64_t ops, int with_pool) {
  rng_t r = {7};
  void **slots = calloc(POOL_SLOTS, sizeof *slots);
  if (!slots) die("calloc failed");
  nebula_pool_t *pl = NULL;
  if (with_pool) {
    nebula_pool_options_t o = {0};
    o.block_size = POOL_OBJ;
    o.block_count = POOL_SLOTS;
    o.grow = true;
    pl = nebula_pool_create(&o);
    if (!pl) die("nebula_pool_create failed");
  }
  for (uint64_t i = 0; i < ops; i++) {
    size_t k = (size_t)(rng_next(&r) % POOL_SLOTS);
    if (slots[k]) {
      if (with_pool) (void)nebula_pool_free(pl, slots[k]);
      else free(slots[k]);
    }
    void *p = with_pool ? nebula_pool_alloc(pl) : malloc(POOL_OBJ);
    if (!p) die("alloc failed");
    use(p, POOL_OBJ, i);
    slots[k] = p;
  }
  for (size_t k = 0; k < POOL_SLOTS; k++) {
    if (!slots[k]) continue;
    if (with_pool) (void)nebula_pool_free(pl, slots[k]);
    else free(slots[k]);
  }
  if (with_pool) nebula_pool_destroy(pl);
  free(slots);
  return ops;
}

#define SCOPE_BLOCKS 4
#define SCOPE_DEPTH 8
typedef struct {
  nebula_stack_t *s;
  rng_t r;
  uint64_t made;
} scope_t;

static void scope_stack(scope_t *c, int depth) {
  nebula_stack_marker_t m = nebula_stack_mark(c->s);
  for (int i = 0; i < SCOPE_BLOCKS; i++) {
    size_t n = rng_range(&c->r, 32, 256);
    void *p = nebula_stack_push(c->s, n, 0);
    if (!p) die("stack push failed");
    use(p, n, c->made++);
  }
  if (depth > 1) scope_stack(c, depth - 1);
  if (!nebula_stack_release(c->s, m)) die("stack release failed");
}

static void scope_malloc(scope_t *c, int depth) {
  void *objs[SCOPE_BLOCKS];
  for (int i = 0; i < SCOPE_BLOCKS; i++) {
    size_t n = rng_range(&c->r, 32, 256);
    objs[i] = malloc(n);
    if (!objs[i]) die("malloc failed");
    use(objs[i], n, c->made++);
  }
  if (depth > 1) scope_malloc(c, depth - 1);
  for (int i = SCOPE_BLOCKS - 1; i >= 0; i--) free(objs[i]);
}

static uint64_t stack(uint64_t ops, int with_stack) {
  scope_t c = {NULL, {99}, 0};
  if (with_stack) {
    nebula_stack_options_t o = {0};
    o.capacity = 64u << 10;
    c.s = nebula_stack_create(&o);
    if (!c.s) die("nebula_stack_create failed");
  }
  while (c.made < ops) {
    int depth = (int)rng_range(&c.r, 1, SCOPE_DEPTH);
    if (with_stack) scope_stack(&c, depth);
    else scope_malloc(&c, depth);
  }
  if (with_stack) nebula_stack_destroy(c.s);
  return c.made;
}

static const struct {
  const char *name;
  uint64_t ops;
  uint64_t (*run)(uint64_t, int);
  int ours;
} workloads[] = {
  {"arena-bump", 20000000, arena, 1},   {"arena-malloc", 20000000, arena, 0},
  {"pool-pool", 40000000, pool, 1},     {"pool-malloc", 40000000, pool, 0},
  {"stack-stack", 20000000, stack, 1},  {"stack-malloc", 20000000, stack, 0},
};
#define NWORK (sizeof workloads / sizeof workloads[0])

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < NWORK; i++) printf("%s %llu\n", workloads[i].name, (unsigned long long)workloads[i].ops);
    return 0;
  }
  if (argc < 2) die("usage: nm_lib_bench WORKLOAD [--quick] | --list");
  int quick = argc >= 3 && strcmp(argv[2], "--quick") == 0;
  for (size_t i = 0; i < NWORK; i++) {
    if (strcmp(argv[1], workloads[i].name) != 0) continue;
    uint64_t ops = quick ? workloads[i].ops / 20 : workloads[i].ops;
    mark_t t0 = mark();
    uint64_t done = workloads[i].run(ops, workloads[i].ours);
    mark_t t1 = mark();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("workload=%s ops=%llu seconds=%.6f maxrss_kb=%ld cpu_seconds=%.6f preempt=%ld\n", argv[1],
           (unsigned long long)done, t1.wall - t0.wall, ru.ru_maxrss, t1.cpu - t0.cpu, t1.preempt - t0.preempt);
    return 0;
  }
  die("unknown workload (--list shows them)");
}
