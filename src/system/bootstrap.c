#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "system/system.h"

/* dlsym's dlerror buffer and a few loader allocations fit easily; the area is never
 * reused, so its blocks stay valid for the life of the process. */
#define NM_BOOTSTRAP_SIZE ((size_t)64 << 10)

static alignas(16) uint8_t nm_bootstrap_area[NM_BOOTSTRAP_SIZE];
static atomic_size_t nm_bootstrap_top;

void *nm_bootstrap_alloc(size_t n) {
  if (n > NM_BOOTSTRAP_SIZE) return NULL;
  size_t need = 16 + ((n + 15) & ~(size_t)15);
  size_t at = atomic_fetch_add(&nm_bootstrap_top, need);
  if (at + need > NM_BOOTSTRAP_SIZE) return NULL;
  uint8_t *p = nm_bootstrap_area + at;
  *(size_t *)p = need - 16;      /* header: usable size */
  return p + 16;
}

bool nm_bootstrap_contains(const void *p) {
  return (const uint8_t *)p >= nm_bootstrap_area &&
         (const uint8_t *)p < nm_bootstrap_area + NM_BOOTSTRAP_SIZE;
}

size_t nm_bootstrap_usable_size(const void *p) {
  return *(const size_t *)((const uint8_t *)p - 16);
}
