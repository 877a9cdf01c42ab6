/* Pool pages: equal blocks of one size class, a local free list and a remote one. */
#ifndef NM_PAGE_H
#define NM_PAGE_H

#include "nm_types.h"

extern nm_page_t nm_page_empty;   /* never has a free block: every miss lands in a slow path */

/* Make pg (fresh from nm_segment_page_alloc, or a warm page gone cold) a page of blocks of
 * block_size for heap h, with the owner-word flags given (NM_PAGE_DEBUG when the heap
 * checks its blocks). */
void nm_page_init(nm_page_t *pg, nm_heap_t *h, unsigned class_idx, uint32_t block_size, uint8_t flags);
/* pg, retired warm (nm_segment_page_warm: every block free, its free list whole), made a
 * page of heap h again as it was: no carving. */
void nm_page_reuse(nm_page_t *pg, nm_heap_t *h, uint8_t flags);
/* Carve more of the page into the free list; false when it is carved out already. */
bool nm_page_extend(nm_page_t *pg);
/* Move the page's remote frees into its free list; returns how many. */
uint32_t nm_page_collect_remote(nm_page_t *pg);
/* For a thread other than the owner, on a page its owner no longer touches unlocked (a
 * full page, a large page, a bump region not current): moves the remote frees to the free
 * list only if they are all the blocks it counts (then the page can be retired; used is
 * left to the caller: a bump region's owner may still read it). Returns how many, or 0. */
uint32_t nm_page_collect_all(nm_page_t *pg);
/* Push b onto pg's remote list (any thread); queues the page on its heap's remote_pages on
 * the first one. The page must not be used after the call (its owner may retire it). */
void nm_page_free_remote(nm_page_t *pg, nm_block_t *b);

/* Page queues (a heap's avail and warm lists of a class), linked through next/prev. */
void nm_page_queue_push(nm_page_queue_t *q, nm_page_t *pg);
void nm_page_queue_remove(nm_page_queue_t *q, nm_page_t *pg);

/* The owner word: heap | flags. Written by the owner only; read by any thread that frees
 * into the page. */
static inline uint8_t nm_page_flags(const nm_page_t *pg) {
  return (uint8_t)(atomic_load_explicit(&pg->owner, memory_order_relaxed) & NM_PAGE_FLAGS);
}
static inline void nm_page_set_owner(nm_page_t *pg, nm_heap_t *h, uint8_t flags) {
  pg->heap = h;
  atomic_store_explicit(&pg->owner, (uintptr_t)h | flags, memory_order_relaxed);
}
/* Release: a thread that sees NM_PAGE_FULL (acquire) sees the owner's last writes to the
 * page before it (nm_heap_retire_freed). */
static inline void nm_page_flags_set(nm_page_t *pg, uint8_t bits) {
  uintptr_t o = atomic_load_explicit(&pg->owner, memory_order_relaxed);
  atomic_store_explicit(&pg->owner, o | bits, memory_order_release);
}
static inline void nm_page_flags_clear(nm_page_t *pg, uint8_t bits) {
  uintptr_t o = atomic_load_explicit(&pg->owner, memory_order_relaxed);
  atomic_store_explicit(&pg->owner, o & ~(uintptr_t)bits, memory_order_relaxed);
}

/* True if p - pg->start is the start of a block carved so far (see nm_page_t.div_magic).
 * Any thread. */
static inline bool nm_page_is_block(const nm_page_t *pg, const void *p) {
  uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pg->start);
  return off * pg->div_magic < __atomic_load_n(&pg->div_limit, __ATOMIC_RELAXED);
}

/* The same, for the page's owner thread only: it is the one writer of div_limit, so a
 * plain load (which the compiler folds into the compare) is no race. */
static inline bool nm_page_is_block_owner(const nm_page_t *pg, const void *p) {
  uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pg->start);
  return off * pg->div_magic < pg->div_limit;
}

/* Pops a block of pg's free list (which must not be empty) for the program: its free
 * tag is cleared, so freeing it once is not taken for a double free. */
static inline nm_block_t *nm_page_pop(nm_page_t *pg, nm_block_t *b) {
  pg->free = b->next;
  b->tag = 0;
  pg->used++;
  NM_COUNT(pg->allocs++);
  return b;
}

/* The block that holds p (p may point inside it, after an aligned allocation). */
static inline nm_block_t *nm_page_block_of(const nm_page_t *pg, const void *p) {
  size_t off = (size_t)((const uint8_t *)p - pg->start);
  return (nm_block_t *)(pg->start + off - off % pg->block_size);
}

static inline size_t nm_page_usable(const nm_page_t *pg, const void *p) {
  if (pg->class_idx == NM_CLASS_BUMP)   /* bump blocks carry their size in a header */
    return *(const size_t *)((const uint8_t *)p - 16);
  return pg->block_size - (size_t)((const uint8_t *)p - (const uint8_t *)nm_page_block_of(pg, p));
}

#endif
