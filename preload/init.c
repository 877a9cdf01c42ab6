#include "init.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <malloc.h>

#include "env_config.h"
#include "diag/guard.h"
#include "diag/stats_dump.h"
#include "heap/router.h"
#include "heap/runtime.h"
#include "system/system.h"

int nm_preload_ready;
static atomic_int nm_preload_state;   /* 0 not started, 1 running, 2 ready */
static __thread int nm_preload_initialising __attribute__((tls_model("initial-exec")));

static void *nm_next_symbol(const char *name) {
  return dlsym(RTLD_NEXT, name);
}

/* When the system backend only sees big requests, tune glibc for them: map each one and
 * unmap it on free (left to itself, glibc raises its mmap threshold after the first such
 * free and keeps freed big blocks in its arenas), and one arena (every extra arena reserves
 * 64 MiB of address space, which our heaps then lack under RLIMIT_AS; big requests cost a
 * syscall each, so they gain nothing from more arenas). The user's own MALLOC_ARENA_MAX or
 * GLIBC_TUNABLES win. strategy=system leaves glibc exactly as it is. */
static void nm_preload_tune_system(void) {
  size_t min = nm_router_system_min();
  if (min == SIZE_MAX) return;
  const size_t floor = (size_t)128 << 10, ceiling = (size_t)32 << 20;   /* glibc's bounds */
  nm_system.mallopt(M_MMAP_THRESHOLD, (int)(min < floor ? floor : min > ceiling ? ceiling : min));
  if (min < floor) return;   /* glibc serves small blocks too: its arenas earn their keep */
  const char *tunables = nm_preload_env("GLIBC_TUNABLES");
  if (!nm_preload_env("MALLOC_ARENA_MAX") && !(tunables && strstr(tunables, "malloc.arena_max")))
    nm_system.mallopt(M_ARENA_MAX, 1);
}

bool nm_preload_ensure(void) {
  if (nm_preload_ready_now()) return true;
  if (nm_preload_initialising) return false;   /* re-entered from dlsym: bootstrap */
  int expected = 0;
  if (atomic_compare_exchange_strong(&nm_preload_state, &expected, 1)) {
    nm_preload_initialising = 1;
    nm_system_resolve(nm_next_symbol);
    nm_config_t cfg;
    nm_preload_read_config(&cfg);
    nm_route_t route;
    nm_route_from_config(&cfg, &route);
    nm_runtime_init(&route);
    nm_guard_init();
    /* No statistics signal in a secure process: whoever may signal it (its real user) would
     * otherwise make a privileged program write its heap statistics to stderr. */
    if (!nm_preload_secure()) nm_stats_install();
    /* Tuned when the system allocator is first needed (most small programs never need it,
     * and never run or map glibc's allocator code then). */
    if (cfg.strategy != NM_STRATEGY_SYSTEM) nm_system_before_first_use = nm_preload_tune_system;
    nm_preload_initialising = 0;
    atomic_store(&nm_preload_state, 2);
    __atomic_store_n(&nm_preload_ready, 1, __ATOMIC_RELEASE);
    return true;
  }
  while (atomic_load(&nm_preload_state) != 2) sched_yield();
  return true;
}

/* stats=exit: the last thing the preload does (it is finalised after the program and the
 * libraries it loaded). */
__attribute__((destructor)) static void nm_preload_destructor(void) {
  if (!nm_preload_ready_now()) return;
  if (nm_route.opt.stats == NM_STATS_EXIT ||
      (nm_route.opt.stats == NM_STATS_TERMINAL && (nm_route.opt.stats_file[0] != '\0' || isatty(2))))
    nm_stats_dump();
}

/* Also initialise at load time, before the program starts threads. */
__attribute__((constructor(101))) static void nm_preload_constructor(void) {
  nm_preload_ensure();
}
