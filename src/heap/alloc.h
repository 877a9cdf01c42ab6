/* The allocation API with glibc's contract (errno, alignment, realloc edge cases), over
 * the router and the backends. The fast paths are inline so the preload's entry points
 * compile to a handful of instructions on a hit. */
#ifndef NM_ALLOC_H
#define NM_ALLOC_H

#include <stddef.h>

#include "bump/bump.h"
#include "heap/heap.h"
#include "heap/router.h"
#include "pool/page.h"
#include "pool/segment.h"
#include "pool/segmap.h"

/* Same-thread pool hit, or bump region with room: no lock, no atomic. NULL means "take
 * the slow path". The bump check runs only after a pool miss (bump sizes have an empty
 * current page), so pool hits pay nothing for it. */
static inline void *nm_alloc_fast(size_t n) {
  if (NM_LIKELY(n <= NM_POOL_LIMIT)) {
    unsigned c = nm_router_fast_lookup(n);
    nm_heap_t *h = nm_tls_heap;
    nm_page_t *pg = h->current[c];
    nm_block_t *b = pg->free;
    if (NM_LIKELY(b != NULL)) {
      pg->free = b->next;
      pg->used++;
      NM_COUNT(pg->allocs++);
      return b;
    }
    if (c == NM_CLASS_BUMP) return nm_bump_alloc_fast(h, n);
  }
  return NULL;
}

void nm_free_slow(nm_page_t *pg, void *p);

/* The checks free makes at no cost (a double free of the block freed last in its page, a
 * pointer into a free page) call this, set by the diagnostics layer; the bad free then does
 * nothing. kind: 0 double free, 1 pointer into memory that holds no block. */
extern void (*nm_heap_misuse_hook)(int kind, void *p);
/* Frees p if it is a pool block; false if p is not ours (NULL included). */
static inline bool nm_free_owned(void *p) {
  if (NM_UNLIKELY(!nm_segmap_contains(p))) return false;
  nm_page_t *pg = nm_segment_page_of(p);
  if (NM_LIKELY(pg->heap == nm_tls_heap)) {
    uint8_t flags = nm_page_flags(pg);
    if (NM_LIKELY(flags == 0 && p != (void *)pg->free)) {
      nm_block_t *b = p;
      b->next = pg->free;
      pg->free = b;
      if (NM_UNLIKELY(--pg->used == 0)) nm_heap_page_retire(pg->heap, pg);
      return true;
    }
    if (flags == NM_PAGE_BUMP) {   /* a bump block only counts: its memory is not touched */
      if (NM_UNLIKELY(--pg->used <= 1)) nm_bump_emptied(pg->heap, pg);
      return true;
    }
  }
  nm_free_slow(pg, p);
  return true;
}

/* Slow path of malloc for a thread whose heap is ready (or empty, or dead). */
void *nm_malloc_slow(size_t n);

/* The full entry points (pool or system by the router; errno ENOMEM on failure). */
void *nm_malloc(size_t n);
void *nm_calloc(size_t count, size_t size);
void *nm_realloc(void *p, size_t n);
void *nm_reallocarray(void *p, size_t count, size_t size);
/* alignment: a power of two (memalign rounds others up, as glibc does). */
void *nm_memalign(size_t alignment, size_t n);
int nm_posix_memalign(void **out, size_t alignment, size_t n);
void *nm_aligned_alloc(size_t alignment, size_t n);
void *nm_valloc(size_t n);
void *nm_pvalloc(size_t n);
/* p must be ours or the system's; NULL is a no-op. */
void nm_free(void *p);
/* A pointer that is not ours (NULL, bootstrap, the system's): counted, then freed. */
void nm_free_foreign(void *p);
/* System blocks freed by threads without a heap (statistics). */
extern _Atomic uint64_t nm_stats_stray_frees, nm_stats_stray_bytes;
/* n bytes from the system backend, counted in the calling thread's heap. */
void *nm_system_alloc_counted(size_t n, size_t alignment, bool zero);
size_t nm_usable_size(const void *p);

#endif
