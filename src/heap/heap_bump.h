/* The heap's bump regions: which region is current, where a new one comes from, when an
 * emptied one is rewound or retired. The region's own layout (cursor, headers, tags) is
 * the bump backend's (bump/bump.h). */
#ifndef NM_HEAP_BUMP_H
#define NM_HEAP_BUMP_H

#include <stddef.h>

#include "nm_types.h"

/* A block of n bytes (n <= region / 4) from h's current region; NULL if the OS refuses,
 * or if h gave bump regions up (h->bump_off: its older regions were pinned by a few
 * blocks each), and then its caller serves n from the pool. */
void *nm_heap_bump_alloc(nm_heap_t *h, size_t n);
/* A block of pg (owned by h) was freed by h's thread. */
void nm_heap_bump_free_local(nm_heap_t *h, nm_page_t *pg);
/* pg's live count just fell to used (1 or 0) after a local free: rewind or retire it. */
void nm_heap_bump_emptied(nm_heap_t *h, nm_page_t *pg, uint32_t used);
/* The owner leaves: drop the current region's bias (retiring it if nothing lives there). */
void nm_heap_bump_release(nm_heap_t *h);

#endif
