/* The child program of the diagnostics tests (test_diagnostics.c): one scenario per
 * subcommand, run under the preload with a NEBULA_MEM_CONFIG the test picks. Each scenario
 * provokes one out-of-memory failure or heap misuse and prints a result line on stdout.
 *
 * Built with -O0 -g and -fno-builtin-*: the compiler must neither drop nor fold the
 * allocations, the overflowing writes or the writes after free. Every scenario function
 * is noinline and has a distinctive name (nm_child_*), exported (-rdynamic), so a test can
 * check that the report's backtraces name a function of this program.
 *
 * Output goes through write(2), never stdio: printf would malloc its buffer, which may
 * fail under a budget (and add a report of its own), and an abort would lose a buffered
 * line. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define NM_CHILD __attribute__((noinline, used, visibility("default")))
#define MiB ((size_t)1 << 20)

/* A global the "free a static" scenario passes to free; exported so that dladdr names it. */
__attribute__((visibility("default"))) char nm_child_global_buffer[256];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  ssize_t w = write(1, line, (size_t)n);
  (void)w;
}

static const char *errno_name(int e) {
  switch (e) {
  case 0: return "0";
  case ENOMEM: return "ENOMEM";
  case EINVAL: return "EINVAL";
  case EDOM: return "EDOM";
  default: return "other";
  }
}

/* ---- out of memory ---------------------------------------------------------------------- */

/* Blocks are chained through their first word: no memory of our own is needed. */
typedef struct chain_s {
  struct chain_s *next;
} chain_t;

NM_CHILD void *nm_child_alloc(size_t size) {
  return malloc(size);
}

NM_CHILD void nm_child_free_chain(chain_t *head) {
  while (head != NULL) {
    chain_t *next = head->next;
    free(head);
    head = next;
  }
}

/* malloc(size) until NULL; returns the chain, count and errno of the failure. */
NM_CHILD chain_t *nm_child_fill_budget(size_t size, size_t max, size_t *count, int *err) {
  chain_t *head = NULL;
  size_t n = 0;
  *err = 0;
  while (n < max) {
    errno = 0;
    chain_t *c = malloc(size);
    if (c == NULL) {
      *err = errno;
      break;
    }
    memset(c, 0x5a, size < 4096 ? size : 4096);
    c->next = head;
    head = c;
    n++;
  }
  *count = n;
  return head;
}

/* fill SIZE: until malloc fails (prints the count and a block's usable size: a budget
 * counts usable bytes), then free everything and check that a block of the same size is
 * served again. */
NM_CHILD int nm_child_fill(size_t size) {
  size_t n;
  int err;
  chain_t *head = nm_child_fill_budget(size, (size_t)1 << 24, &n, &err);
  if (err == 0 && n == (size_t)1 << 24) {
    say("malloc never failed (%zu blocks)\n", n);
    return 1;
  }
  say("malloc=NULL errno=%s blocks=%zu usable=%zu\n", errno_name(err), n,
      head != NULL ? malloc_usable_size(head) : (size_t)0);
  nm_child_free_chain(head);
  void *again = nm_child_alloc(size);
  say("after-free=%s\n", again != NULL ? "ok" : "NULL");
  free(again);
  return 0;
}

/* oom=fallback: COUNT blocks of SIZE are all served although a pool budget is far
 * smaller; their contents survive; all are freed. */
NM_CHILD int nm_child_fallback(size_t size, size_t count) {
  chain_t *head = NULL;
  size_t n = 0;
  for (; n < count; n++) {
    errno = 0;
    chain_t *c = malloc(size);
    if (c == NULL) break;
    memset(c, (int)(n & 0x7f), size);
    c->next = head;
    head = c;
  }
  if (n < count) {
    say("malloc=NULL errno=%s at=%zu\n", errno_name(errno), n);
    nm_child_free_chain(head);
    return 0;
  }
  size_t bad = 0, k = n;
  for (chain_t *c = head; c != NULL; c = c->next) {
    k--;
    const unsigned char *b = (const unsigned char *)c;
    for (size_t i = sizeof(chain_t); i < size; i++)
      if (b[i] != (unsigned char)(k & 0x7f)) {
        bad++;
        break;
      }
    if (malloc_usable_size(c) < size) bad++;
  }
  say("served=%zu corrupt=%zu\n", n, bad);
  nm_child_free_chain(head);
  say("freed\n");
  return 0;
}

NM_CHILD int nm_child_calloc_overflow(void) {
  volatile size_t count = SIZE_MAX / 2, size = 4;
  errno = 0;
  void *p = calloc(count, size);
  say("calloc=%s errno=%s\n", p ? "ptr" : "NULL", errno_name(errno));
  free(p);
  return 0;
}

NM_CHILD int nm_child_malloc_huge(void) {
  volatile size_t size = SIZE_MAX;
  errno = 0;
  void *p = malloc(size);
  say("malloc=%s errno=%s\n", p ? "ptr" : "NULL", errno_name(errno));
  free(p);
  return 0;
}

static size_t vm_size_bytes(void) {
  char buf[8192];
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return 0;
  size_t kb = 0;
  while (fgets(buf, sizeof buf, f) != NULL)
    if (sscanf(buf, "VmSize: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

/* A real refusal by the kernel: RLIMIT_AS a little above what is mapped now (64 MiB, plus
 * SLACK bytes). */
NM_CHILD int nm_child_rlimit(size_t slack) {
  size_t vm = vm_size_bytes();
  if (vm == 0) {
    say("no VmSize\n");
    return 1;
  }
  struct rlimit rl = { .rlim_cur = vm + 64 * MiB + slack, .rlim_max = vm + 64 * MiB + slack };
  if (setrlimit(RLIMIT_AS, &rl) != 0) {
    say("setrlimit failed\n");
    return 1;
  }
  size_t n;
  int err;
  chain_t *head = nm_child_fill_budget(MiB, 4096, &n, &err);
  say("malloc=NULL errno=%s blocks=%zu\n", errno_name(err), n);
  nm_child_free_chain(head);
  return 0;
}

/* posix_memalign under a budget: ENOMEM returned, errno left alone. */
NM_CHILD int nm_child_memalign(void) {
  chain_t *head = NULL;
  int rc = 0;
  size_t n = 0;
  for (; n < 100000; n++) {
    void *p = NULL;
    errno = EDOM;
    rc = posix_memalign(&p, 64, 1000);
    if (rc != 0) break;
    chain_t *c = p;
    c->next = head;
    head = c;
  }
  int e = errno;
  say("posix_memalign=%s errno=%s blocks=%zu\n", rc == ENOMEM ? "ENOMEM" : rc ? "other" : "0",
      e == EDOM ? "unchanged" : errno_name(e), n);
  nm_child_free_chain(head);
  return 0;
}

/* realloc under a budget: NULL, ENOMEM, the old block intact and still freeable. */
NM_CHILD int nm_child_realloc_grow(void) {
  unsigned char *p = malloc(MiB);
  if (p == NULL) {
    say("first malloc failed\n");
    return 1;
  }
  for (size_t i = 0; i < MiB; i++) p[i] = (unsigned char)(i * 7 + 3);
  errno = 0;
  void *q = realloc(p, 8 * MiB);
  int e = errno;
  size_t bad = 0;
  for (size_t i = 0; i < MiB; i++) bad += p[i] != (unsigned char)(i * 7 + 3);
  say("realloc=%s errno=%s old=%s\n", q ? "ptr" : "NULL", errno_name(e),
      bad == 0 ? "intact" : "corrupt");
  free(q != NULL ? q : p);
  say("freed\n");
  return 0;
}

/* 40 failing mallocs after the budget is used up: 3 full reports, counts at powers of 2. */
NM_CHILD int nm_child_rate_limit(void) {
  size_t n;
  int err;
  chain_t *head = nm_child_fill_budget(4096, (size_t)1 << 20, &n, &err);
  unsigned failed = 1;
  for (int i = 1; i < 40; i++) {
    void *p = malloc(4096);
    if (p == NULL) failed++;
    else free(p);
  }
  say("failures=%u\n", failed);
  nm_child_free_chain(head);
  return 0;
}

/* ---- misuse ----------------------------------------------------------------------------- */

NM_CHILD void nm_child_bad_free(void *p) {
  free(p);
}

NM_CHILD int nm_child_double_free(size_t size) {
  char *keep = nm_child_alloc(size);   /* a neighbour, so the page stays in use */
  char *p = nm_child_alloc(size);
  if (p == NULL || keep == NULL) {
    say("malloc failed\n");
    return 1;
  }
  p[0] = 1;
  free(p);
  say("freed once\n");
  nm_child_bad_free(p);
  say("survived\n");
  free(keep);
  return 0;
}

/* The block freed last, in a page of its own (nothing else in use there). */
NM_CHILD int nm_child_double_free_alone(size_t size) {
  char *p = nm_child_alloc(size);
  if (p == NULL) {
    say("malloc failed\n");
    return 1;
  }
  free(p);
  say("freed once\n");
  nm_child_bad_free(p);
  say("survived\n");
  return 0;
}

NM_CHILD int nm_child_free_stack(void) {
  char local[64];
  memset(local, 1, sizeof local);
  void *volatile p = local + 16;
  nm_child_bad_free(p);
  say("survived\n");
  return 0;
}

NM_CHILD int nm_child_free_global(void) {
  void *volatile p = nm_child_global_buffer + 32;
  nm_child_bad_free(p);
  say("survived\n");
  return 0;
}

NM_CHILD int nm_child_free_interior(void) {
  char *p = nm_child_alloc(100);
  if (p == NULL) return 1;
  nm_child_bad_free(p + 16);
  say("survived\n");
  free(p);
  say("freed\n");
  return 0;
}

NM_CHILD void *nm_child_bad_realloc(void *p, size_t n) {
  return realloc(p, n);
}

NM_CHILD int nm_child_realloc_interior(void) {
  char *p = nm_child_alloc(100);
  if (p == NULL) return 1;
  errno = 0;
  void *q = nm_child_bad_realloc(p + 32, 200);
  say("realloc=%s errno=%s\n", q ? "ptr" : "NULL", errno_name(errno));
  say("survived\n");
  free(p);
  say("freed\n");
  return 0;
}

NM_CHILD void nm_child_write_past_end(volatile char *p, size_t n) {
  p[n] = 'X';
}

NM_CHILD int nm_child_overflow(void) {
  char *p = nm_child_alloc(100);
  if (p == NULL) return 1;
  memset(p, 1, 100);
  nm_child_write_past_end(p, 100);
  nm_child_bad_free(p);
  say("survived\n");
  return 0;
}

NM_CHILD void nm_child_write_after_free(volatile char *p) {
  p[10] = 'X';
}

NM_CHILD int nm_child_use_after_free(void) {
  char *p = nm_child_alloc(100);
  char *others[100];
  for (int i = 0; i < 100; i++) others[i] = nm_child_alloc(100);
  free(p);
  nm_child_write_after_free(p);
  say("written\n");
  /* 100 frees push the written block out of the 64-block quarantine */
  for (int i = 0; i < 100; i++) nm_child_bad_free(others[i]);
  say("survived\n");
  return 0;
}

/* A double free of the block freed last, then a few allocations of the same size: none
 * may return a block that is still live (`keep`). Prints overlap=0|1. */
NM_CHILD int nm_child_double_free_reuse(size_t size) {
  char *keep = nm_child_alloc(size);
  char *p = nm_child_alloc(size);
  if (keep == NULL || p == NULL) return 1;
  memset(keep, 'K', size);
  free(p);
  nm_child_bad_free(p);
  say("survived\n");
  int overlap = 0;
  char *q[4];
  for (int i = 0; i < 4; i++) {
    q[i] = nm_child_alloc(size);
    if (q[i] == keep) overlap = 1;
    if (q[i] != NULL) memset(q[i], 'N', size);
  }
  say("overlap=%d keep=%s\n", overlap, keep[0] == 'K' ? "intact" : "overwritten");
  return 0;
}

/* misuse=report: the free of an overflowed block is reported; the policy line says the
 * call does nothing. Then 100 other blocks are freed (the quarantine turns over) and 200
 * allocated: prints reused=1 if one of them is the overflowed block, which the reported
 * free should have left alone. */
NM_CHILD int nm_child_overflow_reuse(void) {
  char *p = nm_child_alloc(100);
  char *others[100];
  for (int i = 0; i < 100; i++) others[i] = nm_child_alloc(100);
  nm_child_write_past_end(p, 100);
  nm_child_bad_free(p);
  say("survived\n");
  for (int i = 0; i < 100; i++) free(others[i]);
  int reused = 0;
  char *again[200];
  for (int i = 0; i < 200; i++) {
    again[i] = nm_child_alloc(100);
    if (again[i] == p) reused = 1;
  }
  say("reused=%d\n", reused);
  return 0;
}

/* ---- main ------------------------------------------------------------------------------- */

static size_t arg_size(int argc, char **argv, int i, size_t dflt) {
  if (argc <= i) return dflt;
  char *end;
  unsigned long long v = strtoull(argv[i], &end, 0);
  if (*end == 'K') v <<= 10;
  else if (*end == 'M') v <<= 20;
  return (size_t)v;
}

int main(int argc, char **argv) {
  /* abort() in the abort scenarios: no core files */
  struct rlimit core = { 0, 0 };
  setrlimit(RLIMIT_CORE, &core);
  if (argc < 2) {
    say("usage: nm_diag_child SCENARIO [ARGS]\n");
    return 2;
  }
  const char *s = argv[1];
  if (strcmp(s, "fill") == 0) return nm_child_fill(arg_size(argc, argv, 2, 100));
  if (strcmp(s, "fallback") == 0)
    return nm_child_fallback(arg_size(argc, argv, 2, 100), arg_size(argc, argv, 3, 20000));
  if (strcmp(s, "calloc-overflow") == 0) return nm_child_calloc_overflow();
  if (strcmp(s, "malloc-huge") == 0) return nm_child_malloc_huge();
  if (strcmp(s, "rlimit") == 0) return nm_child_rlimit(arg_size(argc, argv, 2, 0));
  if (strcmp(s, "memalign") == 0) return nm_child_memalign();
  if (strcmp(s, "realloc-grow") == 0) return nm_child_realloc_grow();
  if (strcmp(s, "rate-limit") == 0) return nm_child_rate_limit();
  if (strcmp(s, "double-free") == 0) return nm_child_double_free(arg_size(argc, argv, 2, 64));
  if (strcmp(s, "double-free-alone") == 0)
    return nm_child_double_free_alone(arg_size(argc, argv, 2, 64));
  if (strcmp(s, "double-free-reuse") == 0)
    return nm_child_double_free_reuse(arg_size(argc, argv, 2, 100));
  if (strcmp(s, "overflow-reuse") == 0) return nm_child_overflow_reuse();
  if (strcmp(s, "free-stack") == 0) return nm_child_free_stack();
  if (strcmp(s, "free-global") == 0) return nm_child_free_global();
  if (strcmp(s, "free-interior") == 0) return nm_child_free_interior();
  if (strcmp(s, "realloc-interior") == 0) return nm_child_realloc_interior();
  if (strcmp(s, "overflow") == 0) return nm_child_overflow();
  if (strcmp(s, "use-after-free") == 0) return nm_child_use_after_free();
  say("unknown scenario '%s'\n", s);
  return 2;
}
