#include "heap/router.h"

#include <string.h>

const nm_route_t nm_route_default = {
  .pool_max = (size_t)64 << 10,
  .large_max = (size_t)2 << 20,
  .classes_per_doubling = 4,
  .purge_threshold = (size_t)32 << 20,
  .purge_delay_ms = 50,
};

nm_route_t nm_route;
nm_sizeclass_layout_t nm_classes;
uint8_t nm_class_of[NM_CLASS_LOOKUP];

int nm_router_init(const nm_route_t *route) {
  nm_sizeclass_layout_t layout;
  memset(&layout, 0, sizeof layout);
  if (nm_sizeclass_build(&layout, route->classes_per_doubling, route->pool_max) != 0) return -1;
  if (route->large_max > NM_LARGE_LIMIT) return -1;
  nm_classes = layout;
  nm_route = *route;
  unsigned cls = 0;
  /* Entry i serves requests i*16-15 .. i*16: pooled if its smallest request is, so a
   * pool_max that is not a multiple of 16 is rounded up. Relaxed atomic stores: another
   * thread's fast path may read the table while the first thread builds it (its heap is
   * still the empty one then, so what it reads does not matter, but it must be a race-free
   * read). */
  for (size_t i = 0; i < NM_CLASS_LOOKUP; i++) {
    size_t size = i * NM_ALIGN;
    uint8_t c = NM_CLASS_NONE;
    if (i == 0 || size - (NM_ALIGN - 1) <= route->pool_max) {
      while (layout.size[cls] < size) cls++;
      c = (uint8_t)cls;
    }
    __atomic_store_n(&nm_class_of[i], c, __ATOMIC_RELAXED);
  }
  return 0;
}
