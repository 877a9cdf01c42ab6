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
  for (size_t i = 0; i < NM_CLASS_LOOKUP; i++) {
    size_t size = i * NM_ALIGN;
    if (size > route->pool_max) {
      nm_class_of[i] = NM_CLASS_NONE;
      continue;
    }
    while (layout.size[cls] < size) cls++;
    nm_class_of[i] = (uint8_t)cls;
  }
  return 0;
}
