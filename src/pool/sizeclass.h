/* Size classes: multiples of 16 up to 16*k, then k classes per doubling (k = 4 by default,
 * 8 for the compact layout). A block is at most (1 + 1/k) times the request above 16*k,
 * and at most 15 bytes larger below it. */
#ifndef NM_SIZECLASS_H
#define NM_SIZECLASS_H

#include <stddef.h>
#include <stdint.h>

typedef struct nm_sizeclass_layout_s {
  unsigned count;                 /* classes in use */
  uint32_t size[96];              /* block size of each class, ascending */
  uint8_t slices[96];             /* slices of a page of that class */
} nm_sizeclass_layout_t;

/* Fill layout with k classes per doubling (k a power of two, 1..8) up to max_size.
 * Returns 0, or -1 if the arguments are out of range. */
int nm_sizeclass_build(nm_sizeclass_layout_t *layout, unsigned per_doubling, size_t max_size);
/* Slices a page of blocks of that size spans: at least 8 blocks, at most 16 slices. */
unsigned nm_sizeclass_page_slices(size_t block_size);

#endif
