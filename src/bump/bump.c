#include "bump/bump.h"

#include "pool/page.h"

void nm_bump_region_init(nm_page_t *pg, nm_heap_t *h, unsigned slices, uint8_t flags) {
  pg->class_idx = NM_CLASS_BUMP;
  pg->block_size = 0;
  pg->capacity = 0;                                   /* the cursor, in bytes */
  pg->reserved = (uint32_t)((size_t)slices << NM_SLICE_SHIFT);
  pg->used = 1;                                       /* the current region's bias */
  nm_page_set_owner(pg, h, NM_PAGE_BUMP | flags);
}

bool nm_bump_resize(nm_heap_t *h, nm_page_t *pg, void *p, size_t n) {
  if (pg != h->bump) return false;
  uint8_t *header = (uint8_t *)p - NM_BUMP_HEADER;
  size_t need = nm_bump_need(n);
  size_t at = (size_t)(header - pg->start);
  if (at + NM_BUMP_HEADER + nm_bump_usable(p) != pg->capacity) return false;   /* not last */
  if (at + need > pg->reserved) return false;
  pg->capacity = (uint32_t)(at + need);
  *(size_t *)header = need - NM_BUMP_HEADER;
  return true;
}
