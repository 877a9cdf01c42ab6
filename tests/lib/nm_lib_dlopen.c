/* libnebula-memory.so opened with dlopen, as plugins and Python's ctypes open it (issue 16):
 * it used to fail with "cannot allocate memory in static TLS block" (the library was built
 * with initial-exec TLS). Opens the library given as argv[1], calls its API from the main
 * thread, from a thread that existed before the dlopen and from one started after it (its
 * thread-locals are allocated on demand), closes it, opens it again. Prints "ok". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "nebula/error.h"
#include "nebula/pool.h"

typedef struct api {
  nebula_pool_t *(*create)(const nebula_pool_options_t *);
  void *(*alloc)(nebula_pool_t *);
  bool (*free)(nebula_pool_t *, void *);
  void (*destroy)(nebula_pool_t *);
  const nebula_error_t *(*last_error)(void);
  const char *(*error_name)(nebula_error_code_t);
} api_t;

static api_t api;
static pthread_barrier_t opened;

static int fail(const char *what) {
  printf("FAIL: %s\n", what);
  return 1;
}

/* A growing pool of 64-byte blocks: 10,000 blocks taken and given back; then a misuse (a
 * double free) must be refused with NEBULA_ERR_DOUBLE_FREE in this thread's error slot. */
static int use_the_api(void) {
  nebula_pool_options_t o = { .name = "dlopen", .block_size = 64, .block_count = 256, .grow = true };
  nebula_pool_t *p = api.create(&o);
  if (p == NULL) return fail("nebula_pool_create returned NULL");
  static __thread void *blocks[10000];
  for (int i = 0; i < 10000; i++) {
    blocks[i] = api.alloc(p);
    if (blocks[i] == NULL) return fail("nebula_pool_alloc returned NULL");
    memset(blocks[i], i, 64);
  }
  for (int i = 0; i < 10000; i++)
    if (!api.free(p, blocks[i])) return fail("nebula_pool_free refused a live block");
  if (api.free(p, blocks[0])) return fail("a double free was accepted");
  const nebula_error_t *e = api.last_error();
  if (e == NULL || e->code != NEBULA_ERR_DOUBLE_FREE || strcmp(api.error_name(e->code), "double free") != 0)
    return fail("the double free did not record NEBULA_ERR_DOUBLE_FREE in this thread");
  api.destroy(p);
  return 0;
}

static void *early_thread(void *arg) {
  (void)arg;
  pthread_barrier_wait(&opened);   /* started before dlopen; uses the library after it */
  return (void *)(long)use_the_api();
}

static void *late_thread(void *arg) {
  (void)arg;
  return (void *)(long)use_the_api();
}

static int open_and_use(const char *path, int round) {
  pthread_t early;
  pthread_barrier_init(&opened, NULL, 2);
  if (pthread_create(&early, NULL, early_thread, NULL) != 0) return fail("pthread_create");
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    printf("FAIL: round %d: dlopen(%s): %s\n", round, path, dlerror());
    return 1;
  }
  *(void **)&api.create = dlsym(lib, "nebula_pool_create");
  *(void **)&api.alloc = dlsym(lib, "nebula_pool_alloc");
  *(void **)&api.free = dlsym(lib, "nebula_pool_free");
  *(void **)&api.destroy = dlsym(lib, "nebula_pool_destroy");
  *(void **)&api.last_error = dlsym(lib, "nebula_last_error");
  *(void **)&api.error_name = dlsym(lib, "nebula_error_name");
  if (!api.create || !api.alloc || !api.free || !api.destroy || !api.last_error || !api.error_name)
    return fail("a symbol of the API is missing");
  int bad = use_the_api();
  pthread_barrier_wait(&opened);
  void *r;
  pthread_join(early, &r);
  bad |= (int)(long)r;
  pthread_t late;
  if (pthread_create(&late, NULL, late_thread, NULL) != 0) return fail("pthread_create");
  pthread_join(late, &r);
  bad |= (int)(long)r;
  if (dlclose(lib) != 0) return fail("dlclose");
  pthread_barrier_destroy(&opened);
  return bad;
}

int main(int argc, char **argv) {
  if (argc != 2) return fail("usage: nm_lib_dlopen PATH-TO-libnebula-memory.so");
  for (int round = 0; round < 2; round++)
    if (open_and_use(argv[1], round) != 0) return 1;
  puts("ok");
  return 0;
}
