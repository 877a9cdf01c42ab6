/* The allocation API with glibc's contract (errno, alignment, realloc edge cases), over
 * the router and the backends. The fast paths are inline so the preload's entry points
 * compile to a handful of instructions on a hit. */
#ifndef NM_ALLOC_H
#define NM_ALLOC_H

#include <errno.h>
#include <stddef.h>

#include "bump/bump.h"
#include "heap/heap_bump.h"
#include "heap/heap.h"
#include "heap/router.h"
#include "pool/page.h"
#include "pool/segment.h"
#include "pool/segmap.h"

/* The current page's free list is empty but the page is not carved out: carve the next
 * part and pop its first block. Out of line, so it costs malloc's hit path nothing; n (the
 * request, unused) comes first so the caller's n stays where it is, in the first argument
 * register, and the hit path needs no move to keep it. */
__attribute__((returns_nonnull)) void *nm_page_extend_pop(size_t n, nm_page_t *pg);

/* Same-thread pool hit, or bump region with room: no lock, no atomic. NULL means "take
 * the slow path". Up to NM_DIRECT_MAX the page is one load away (the heap's direct slots);
 * above, the class table says which (up to nm_fast_max: 0 when every request must take the
 * slow path). The bump check runs only after a pool miss (bump sizes find nm_page_to_bump,
 * which has no free block), so pool hits pay nothing for it. */
static inline void *nm_alloc_fast(size_t n) {
  nm_heap_t *h = nm_tls_heap;
  nm_page_t *pg;
  if (NM_LIKELY(n <= NM_DIRECT_MAX)) pg = h->direct[(n + NM_ALIGN - 1) / NM_ALIGN];
  else if (NM_LIKELY(n <= __atomic_load_n(&nm_fast_max, __ATOMIC_RELAXED))) pg = h->current[nm_router_lookup(n)];
  else return NULL;
  nm_block_t *b = pg->free;
  if (NM_LIKELY(b != NULL)) return nm_page_pop(pg, b);
  if (pg == &nm_page_to_bump) return nm_bump_alloc_fast(h, n);
  if (NM_UNLIKELY(pg->capacity < pg->reserved)) return nm_page_extend_pop(n, pg);   /* carve on: no slow path */
  return NULL;
}

/* Misuse the heap detects, passed to nm_heap_misuse_hook (set by the diagnostics layer;
 * with no hook the bad call just does nothing). */
typedef enum nm_bad_free_e {
  NM_BAD_DOUBLE_FREE = 0,   /* the block is free already */
  NM_BAD_NO_BLOCK,          /* into our memory where no block starts or lives */
  NM_BAD_INTERIOR,          /* inside a block, not at its start */
  NM_BAD_FOREIGN,           /* not ours, and not a block of the system allocator either */
} nm_bad_free_t;
extern void (*nm_heap_misuse_hook)(nm_bad_free_t kind, void *p, bool in_realloc);

/* Frees p if it is a block of ours freed by its owner thread and every check passes on
 * the fast path; false otherwise (foreign, NULL, another thread's, flagged page, or a
 * misuse): then nm_free_checked does the rest. One compare says "this thread's heap and
 * no flag"; one multiply says "a block start" (nm_page_is_block); the free tag says "not
 * free already". */
static inline bool nm_free_fast(void *p) {
  if (NM_UNLIKELY(!nm_segmap_contains(p))) return false;
  nm_page_t *pg = nm_segment_page_of(p);
  /* 0: this thread's page, no flag; NM_PAGE_BUMP: this thread's bump region. */
  uintptr_t other = atomic_load_explicit(&pg->owner, memory_order_relaxed) ^ (uintptr_t)nm_tls_heap;
  nm_block_t *b = p;
  if (NM_LIKELY(other == 0)) {
    if (NM_LIKELY(nm_page_is_block_owner(pg, p) && b->tag != (uintptr_t)pg)) {
      b->next = pg->free;
      b->tag = (uintptr_t)pg;
      pg->free = b;
      if (NM_UNLIKELY(--pg->used == 0)) nm_heap_page_retire(pg->heap, pg);
      return true;
    }
  } else if (other == NM_PAGE_BUMP) {
    /* A bump block only counts, and drops its live tag (on the header's line). */
    uintptr_t *tag = nm_bump_tag(p);
    if (NM_LIKELY(*tag == (uintptr_t)pg)) {
      *tag = 0;
      uint32_t used = nm_bump_used_add(pg, -1);
      if (NM_UNLIKELY(used <= 1)) nm_heap_bump_emptied(pg->heap, pg, used);
      return true;
    }
  }
  return false;
}

/* Every free the fast path declines: other threads' blocks, flagged pages, foreign and
 * bootstrap pointers, NULL, and misuse (reported through the hook, then ignored). */
void nm_free_checked(void *p);

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

/* glibc's rules, shared by these and the preload's entry points (which add the guard and the
 * out-of-memory report): posix_memalign wants a power of two multiple of sizeof(void *)
 * (EINVAL otherwise); pvalloc rounds n up to whole pages (false if that overflows). */
static inline bool nm_posix_alignment_ok(size_t a) {
  return a != 0 && a % sizeof(void *) == 0 && (a & (a - 1)) == 0;
}
/* posix_memalign's ending, given the block (or NULL) and errno as the call found it: ENOMEM
 * (and errno ENOMEM, as glibc's failing mmap or sbrk leaves it; tst-malloc-thread-fail
 * checks) or 0 with *out set and errno untouched. */
static inline int nm_posix_memalign_end(void **out, void *p, int saved_errno) {
  if (p == NULL) {
    errno = ENOMEM;
    return ENOMEM;
  }
  errno = saved_errno;
  *out = p;
  return 0;
}
static inline bool nm_pvalloc_size(size_t n, size_t page, size_t *rounded) {
  if (__builtin_add_overflow(n, page - 1, rounded)) return false;
  *rounded &= ~(page - 1);
  return true;
}
/* free() without the guard: any pointer (misuse is reported and ignored); NULL is a no-op. */
void nm_free(void *p);
/* System blocks freed by threads without a heap (statistics). */
extern _Atomic uint64_t nm_stats_stray_frees, nm_stats_stray_bytes;
/* n bytes from the system backend, counted in the calling thread's heap. */
void *nm_system_alloc_counted(size_t n, size_t alignment, bool zero);
size_t nm_usable_size(const void *p);

#endif
