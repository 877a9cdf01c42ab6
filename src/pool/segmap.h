/* Ownership map: one bit per possible segment of the 47-bit user address space, so free()
 * learns whether a pointer is ours with one load, without touching the pointer's memory. */
#ifndef NM_SEGMAP_H
#define NM_SEGMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nm_types.h"

#define NM_SEGMAP_BITS  ((uint64_t)1 << (47 - NM_SEG_SHIFT))
#define NM_SEGMAP_WORDS (NM_SEGMAP_BITS / 64)

extern _Atomic uint64_t nm_segmap[NM_SEGMAP_WORDS];

static inline bool nm_segmap_contains(const void *p) {
  uint64_t idx = (uintptr_t)p >> NM_SEG_SHIFT;
  if (NM_UNLIKELY(idx >= NM_SEGMAP_BITS)) return false;
  uint64_t w = atomic_load_explicit(&nm_segmap[idx / 64], memory_order_relaxed);
  return (w >> (idx % 64)) & 1;
}

void nm_segmap_set(const void *segment);
void nm_segmap_clear(const void *segment);

#endif
