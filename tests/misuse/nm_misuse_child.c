/* One heap misuse per run, then proof that the heap is still sound (tests/misuse).
 *
 *   nm_misuse_child SCENARIO SIZE
 *
 * Before the misuse it allocates a block ("keep") of SIZE bytes and fills it; after the bad
 * call returns (misuse=report, or an allocator that lets it pass) it prints "survived",
 * then allocates 2000 blocks of mixed sizes (SIZE among them), fills each with its own
 * pattern, and checks that no two of them and keep overlap and that every pattern is
 * intact: "sound overlap=0 corrupt=0". A block handed out twice shows as overlap or
 * corrupt. Compiled without builtins so every call happens as written. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s) {
  fputs(s, stdout);
  fflush(stdout);
}

/* The bad call, in a function of its own so the report's backtrace names it. */
__attribute__((noinline)) void nm_misuse_bad_free(void *p) {
  free(p);
}

__attribute__((noinline)) void *nm_misuse_bad_realloc(void *p, size_t n) {
  return realloc(p, n);
}

/* A thread started before the misuse, so that no allocation of pthread_create's falls
 * between the two frees (a block reused in between is another block: no allocator can
 * tell that second free from a good one). It frees `victim` between two barriers. */
static pthread_barrier_t go, done;
static void *victim;
static void *freer(void *unused) {
  (void)unused;
  pthread_barrier_wait(&go);
  nm_misuse_bad_free(victim);
  pthread_barrier_wait(&done);
  return NULL;
}

static pthread_t start_freer(void *p) {
  pthread_t t;
  victim = p;
  pthread_barrier_init(&go, NULL, 2);
  pthread_barrier_init(&done, NULL, 2);
  pthread_create(&t, NULL, freer, NULL);
  return t;
}

#define N 2000
static char *blocks[N];
static size_t sizes[N];

static int check_sound(char *keep, size_t keep_size) {
  int overlap = 0, corrupt = 0;
  for (int i = 0; i < N; i++) {
    sizes[i] = (i % 4 == 0) ? keep_size : (size_t)(16 + (i * 37) % 3000);
    blocks[i] = malloc(sizes[i]);
    if (blocks[i] == NULL) return say("malloc failed after the misuse\n"), 1;
    memset(blocks[i], (i % 250) + 1, sizes[i]);
  }
  for (int i = 0; i < N; i++) {
    uintptr_t a = (uintptr_t)blocks[i], b = (uintptr_t)keep;
    if (a < b + keep_size && b < a + sizes[i]) overlap++;
    for (size_t k = 0; k < sizes[i]; k++)
      if ((unsigned char)blocks[i][k] != (i % 250) + 1) {
        corrupt++;
        break;
      }
  }
  for (size_t k = 0; k < keep_size; k++)
    if (keep[k] != 'K') {
      corrupt++;
      break;
    }
  /* Blocks overlapping each other show as corrupt patterns above. */
  for (int i = 0; i < N; i++) free(blocks[i]);
  printf("sound overlap=%d corrupt=%d\n", overlap, corrupt);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SCENARIO SIZE\n", argv[0]);
    return 2;
  }
  const char *s = argv[1];
  size_t size = strtoul(argv[2], NULL, 0);
  char *keep = malloc(size);
  if (keep == NULL) return 1;
  memset(keep, 'K', size);
  char *p = malloc(size);
  if (p == NULL) return 1;
  memset(p, 0x55, size);   /* what an interior pointer's neighbourhood holds: not a header */
  if (strcmp(s, "interior") == 0) {
    nm_misuse_bad_free(p + 16);
  } else if (strcmp(s, "stack") == 0) {
    char local[64];
    memset(local, 0, sizeof local);
    nm_misuse_bad_free(local + 16);
  } else if (strcmp(s, "glibc-interior") == 0) {
    /* A block of glibc's own (the next allocator), freed at an interior pointer. */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *(*libc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
    if (libc_malloc == NULL) return say("no libc malloc\n"), 1;
    char *g = libc_malloc(size);
    memset(g, 0x55, size);
    nm_misuse_bad_free(g + 16);
  } else if (strcmp(s, "double") == 0) {
    free(p);
    nm_misuse_bad_free(p);
  } else if (strcmp(s, "double-trimmed") == 0) {
    /* malloc_trim gives the freed memory back (zero pages): the second free must still be
     * refused, with no tag left in the block to go by. */
    free(p);
    malloc_trim(0);
    nm_misuse_bad_free(p);
  } else if (strcmp(s, "double-older") == 0) {
    /* Not the block freed last: others were freed after it. */
    char *q = malloc(size), *r = malloc(size);
    free(p);
    free(q);
    free(r);
    nm_misuse_bad_free(p);
  } else if (strcmp(s, "double-remote") == 0) {
    /* Freed by another thread, then again by this one. */
    pthread_t t = start_freer(p);
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    nm_misuse_bad_free(p);
    pthread_join(t, NULL);
  } else if (strcmp(s, "double-by-other") == 0) {
    /* Freed by this thread, then again by another one. */
    pthread_t t = start_freer(p);
    free(p);
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    pthread_join(t, NULL);
  } else if (strcmp(s, "realloc-freed") == 0) {
    free(p);
    if (nm_misuse_bad_realloc(p, size * 2) != NULL) say("realloc of a freed block returned a block\n");
  } else if (strcmp(s, "realloc-interior") == 0) {
    if (nm_misuse_bad_realloc(p + 16, size * 2) != NULL) say("realloc of an interior pointer returned a block\n");
  } else {
    fprintf(stderr, "unknown scenario %s\n", s);
    return 2;
  }
  say("survived\n");
  return check_sound(keep, size);
}
