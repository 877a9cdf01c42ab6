#include "pool/segmap.h"

_Atomic uint64_t nm_segmap[NM_SEGMAP_WORDS];

void nm_segmap_set(const void *segment) {
  uint64_t idx = nm_segmap_index(segment);
  if (idx < NM_SEGMAP_BITS)
    atomic_fetch_or_explicit(&nm_segmap[idx / 64], (uint64_t)1 << (idx % 64), memory_order_release);
}

void nm_segmap_clear(const void *segment) {
  uint64_t idx = nm_segmap_index(segment);
  if (idx < NM_SEGMAP_BITS)
    atomic_fetch_and_explicit(&nm_segmap[idx / 64], ~((uint64_t)1 << (idx % 64)), memory_order_release);
}
