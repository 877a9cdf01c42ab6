/* The bump backend: per-thread regions where an allocation is a cursor increment. Each
 * region counts its live blocks (frees from any thread); a region whose count reaches zero
 * is recycled whole: the current one rewinds its cursor, the others go back to their
 * segment (and are purged like any free slices). The last block of the current region
 * grows and shrinks in place. Every block has a 16-byte header: its usable size, then its
 * region's descriptor address while it is live (0 once freed), which free checks: a double
 * free or a pointer that is not a block's start finds no tag. */
#ifndef NM_BUMP_H
#define NM_BUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nm_types.h"

#define NM_BUMP_HEADER 16u

/* A block of n bytes (n <= region / 4) from h's current region; NULL if the OS refuses. */
void *nm_bump_alloc(nm_heap_t *h, size_t n);
/* Usable size of a bump block. */
static inline size_t nm_bump_usable(const void *p) {
  return *(const size_t *)((const uint8_t *)p - NM_BUMP_HEADER);
}
/* Inline part of nm_bump_alloc: NULL when the current region has no room (or none yet). */
static inline void *nm_bump_alloc_fast(nm_heap_t *h, size_t n) {
  nm_page_t *pg = h->bump;
  size_t need = NM_BUMP_HEADER + ((n + NM_ALIGN - 1 + (n == 0)) & ~(size_t)(NM_ALIGN - 1));
  if (NM_UNLIKELY(pg == NULL || pg->capacity + need > pg->reserved)) return NULL;
  uint8_t *header = pg->start + pg->capacity;
  pg->capacity += (uint32_t)need;
  pg->used++;
  NM_COUNT(pg->allocs++);
  ((size_t *)header)[0] = need - NM_BUMP_HEADER;
  ((uintptr_t *)header)[1] = (uintptr_t)pg;
  return header + NM_BUMP_HEADER;
}

/* The live tag of bump block p (see above). */
static inline uintptr_t *nm_bump_tag(void *p) {
  return (uintptr_t *)p - 1;
}

/* A block of pg (owned by h) was freed by h's thread. */
void nm_bump_free_local(nm_heap_t *h, nm_page_t *pg);
/* pg's live count just fell to 1 or 0 after a local free: rewind or retire it. */
void nm_bump_emptied(nm_heap_t *h, nm_page_t *pg);
/* Resize p in place (it must be the last block of h's current region); false otherwise. */
bool nm_bump_resize(nm_heap_t *h, nm_page_t *pg, void *p, size_t n);
/* The owner leaves: drop the current region's bias (retiring it if nothing lives there). */
void nm_bump_release(nm_heap_t *h);

#endif
