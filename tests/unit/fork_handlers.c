/* The fork handlers are registered when the process first has a second thread, not
 * before: a single-threaded program keeps glibc's atfork code out of memory, and a
 * threaded one gets them before any thread can hold a heap lock at a fork. Not a Criterion
 * test: it needs a fresh, single-threaded process (Criterion's workers are forked from a
 * threaded runner). Exit 0 when every check holds. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/alloc.h"
#include "heap/heap.h"
#include "heap/introspect.h"
#include "heap/runtime.h"

static int failures;
#define CHECK(cond, ...)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "fork_handlers: " __VA_ARGS__);                                     \
      fputc('\n', stderr);                                                                \
      failures++;                                                                         \
    }                                                                                     \
  } while (0)

/* Enough blocks of enough sizes that pages are made and retired (the heap's locks). */
static void churn(unsigned rounds) {
  enum { N = 512 };
  static __thread void *held[N];
  for (unsigned r = 0; r < rounds; r++) {
    for (unsigned i = 0; i < N; i++) held[i] = nm_malloc(16 + (i * 97 + r * 31) % 20000);
    for (unsigned i = 0; i < N; i++) nm_free(held[i]);
  }
}

/* Makes pages, then gives them back to the kernel: the purge's system calls run under the
 * heap's segment lock, so a fork often finds it held. */
static volatile int stop;
static void *worker(void *arg) {
  (void)arg;
  while (!stop) {
    churn(1);
    nm_heap_trim(nm_tls_heap);
  }
  return NULL;
}

int main(void) {
  if (nm_runtime_init(NULL) != 0) return 2;
  churn(20);
  CHECK(!nm_heap_fork_registered(), "registered in a single-threaded process");

  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 2;
  usleep(20000);
  CHECK(nm_heap_fork_registered(), "not registered once a second thread allocates");

  /* Forks while the other thread makes, retires and purges pages: every child allocates,
   * trims (the forked copy of the other thread's heap included) and exits; none may hang
   * on a lock the other thread held when fork copied the heap. */
  unsigned hung = 0;
  for (unsigned i = 0; i < 200; i++) {
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      alarm(10);   /* a hang ends as SIGALRM */
      churn(2);
      nm_trim(0);
      _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 2;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) hung++;
  }
  stop = 1;
  pthread_join(t, NULL);
  CHECK(hung == 0, "%u of 200 children hung or failed", hung);
  if (failures == 0) printf("fork_handlers: ok (registered with the second thread; 200 forks)\n");
  return failures == 0 ? 0 : 1;
}
