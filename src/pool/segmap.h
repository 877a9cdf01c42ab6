/* Ownership map: one bit per possible segment of the 47-bit user address space, so free()
 * learns whether a pointer is ours with one load, without touching the pointer's memory. */
#ifndef NM_SEGMAP_H
#define NM_SEGMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nm_types.h"

/* Segments from 4 MiB (bit 0) to the last below 2^47 (nm_segmap_index). */
#define NM_SEGMAP_BITS  (((uint64_t)1 << (47 - NM_SEG_SHIFT)) - 1)
#define NM_SEGMAP_WORDS ((NM_SEGMAP_BITS + 63) / 64)

extern _Atomic uint64_t nm_segmap[NM_SEGMAP_WORDS];

/* Bit i is the segment at (i + 1) * NM_SEG_SIZE: none can start at 0, and counting from
 * the next one makes NULL (and every address below 4 MiB) wrap past the map, so free(NULL)
 * leaves after the bound check, before any load, at no cost to other pointers. */
static inline uint64_t nm_segmap_index(const void *p) {
  return ((uintptr_t)p - NM_SEG_SIZE) >> NM_SEG_SHIFT;
}

static inline bool nm_segmap_contains(const void *p) {
  uint64_t idx = nm_segmap_index(p);
  if (NM_UNLIKELY(idx >= NM_SEGMAP_BITS)) return false;
  uint64_t w = atomic_load_explicit(&nm_segmap[idx / 64], memory_order_relaxed);
  return (w >> (idx % 64)) & 1;
}

void nm_segmap_set(const void *segment);
void nm_segmap_clear(const void *segment);

#endif
