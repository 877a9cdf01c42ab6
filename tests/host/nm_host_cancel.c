/* Thread cancellation under the preload (issue 16): a thread cancelled inside fputs(stderr)
 * must release stderr's lock as it unwinds (glibc runs the cleanup with libgcc_s's unwinder),
 * so main can write to stderr afterwards. With libunwind linked at start-up, libgcc_s's
 * _Unwind_* calls bound to libunwind and the next write hung. With the argument "report",
 * a request of 256 MiB comes first (run it with budget=64M): the report's backtrace loads
 * the unwinder, and cancellation must still work after that. Prints "done" on success. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t started;
static int cleanups;

static void count_cleanup(void *arg) {
  (void)arg;
  cleanups++;
}

static void *writer(void *arg) {
  (void)arg;
  pthread_cleanup_push(count_cleanup, NULL);
  pthread_barrier_wait(&started);
  for (;;) fputs("writer: a line to stderr\n", stderr);
  pthread_cleanup_pop(0);
  return NULL;
}

/* Which object a global lookup of name finds ("none" if nothing defines it). */
static const char *provider(const char *name) {
  Dl_info info;
  void *at = dlsym(RTLD_DEFAULT, name);
  if (at == NULL) return "none";
  return dladdr(at, &info) && info.dli_fname ? info.dli_fname : "?";
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "report") == 0) {
    void *big = malloc((size_t)256 << 20);
    printf("big=%s\n", big == NULL ? "NULL" : "granted");
    free(big);
  }
  for (int round = 0; round < 20; round++) {
    pthread_t t;
    pthread_barrier_init(&started, NULL, 2);
    if (pthread_create(&t, NULL, writer, NULL) != 0) return 2;
    pthread_barrier_wait(&started);
    pthread_cancel(t);
    void *result;
    pthread_join(t, &result);
    if (result != PTHREAD_CANCELED) {
      printf("round %d: the thread was not cancelled\n", round);
      return 1;
    }
    fprintf(stderr, "main: round %d cancelled, stderr still works\n", round);
    void *p = malloc(100);   /* the heap too */
    free(p);
    pthread_barrier_destroy(&started);
  }
  /* Nobody in the global scope may offer libunwind's _Unwind_* (libgcc_s's, if loaded). */
  const char *by = provider("_Unwind_ForcedUnwind");
  printf("_Unwind_ForcedUnwind from %s\n", strstr(by, "libunwind") ? "libunwind" : "elsewhere");
  printf("cleanups=%d\ndone\n", cleanups);
  return cleanups == 20 ? 0 : 1;
}
