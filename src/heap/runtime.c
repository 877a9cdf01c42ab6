#include "heap/runtime.h"

#include <sched.h>
#include <stdatomic.h>

#include "heap/heap.h"
#include "system/system.h"

static atomic_int nm_runtime_state;   /* 0 not started, 1 running, 2 ready */
static int nm_runtime_result;

int nm_runtime_init(const nm_route_t *route) {
  int state = atomic_load_explicit(&nm_runtime_state, memory_order_acquire);
  if (state == 2) return nm_runtime_result;
  int expected = 0;
  if (atomic_compare_exchange_strong(&nm_runtime_state, &expected, 1)) {
    int rc = 0;
    nm_system_resolve_default();
    if (route == NULL || nm_router_init(route) != 0) {
      rc = (route == NULL) ? 0 : -1;
      nm_route_t fallback;
      nm_route_defaults(&fallback);
      nm_router_init(&fallback);
    }
    if (nm_heap_process_init() != 0) rc = -1;
    nm_runtime_result = rc;
    atomic_store_explicit(&nm_runtime_state, 2, memory_order_release);
    return rc;
  }
  while (atomic_load_explicit(&nm_runtime_state, memory_order_acquire) != 2) sched_yield();
  return nm_runtime_result;
}

bool nm_runtime_ready(void) {
  return atomic_load_explicit(&nm_runtime_state, memory_order_acquire) == 2;
}
