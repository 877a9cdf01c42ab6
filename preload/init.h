/* Start-up of the preload: find the next allocator, then build the runtime. */
#ifndef NM_PRELOAD_INIT_H
#define NM_PRELOAD_INIT_H

#include <stdbool.h>

/* True once the allocator is ready. False only on the thread that is initialising, while
 * dlsym and friends run: its requests must then be served from the bootstrap area. */
bool nm_preload_ensure(void);

extern int nm_preload_ready;

static inline bool nm_preload_ready_now(void) {
  return __builtin_expect(__atomic_load_n(&nm_preload_ready, __ATOMIC_ACQUIRE), 1);
}

#endif
