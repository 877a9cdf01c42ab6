/* Heaps: one per thread, adopted whole by a new thread when its owner exits, so threads
 * that come and go reuse the same memory. */
#ifndef NM_HEAP_H
#define NM_HEAP_H

#include "heap/router.h"
#include "nm_types.h"

/* The calling thread's heap: &nm_heap_empty before its first allocation and after its
 * thread left it (nm_tls_heap_gone says which: such a thread's requests go to the system
 * backend). The empty heap's pages never have a free block, so its fast paths all miss. */
extern __thread nm_heap_t *nm_tls_heap __attribute__((tls_model("initial-exec")));
extern __thread bool nm_tls_heap_gone __attribute__((tls_model("initial-exec")));
extern nm_heap_t nm_heap_empty;
/* The page of the sizes the bump backend serves (current[NM_CLASS_BUMP] and their direct
 * slots): never has a free block; malloc's miss there carves from the bump region. */
extern nm_page_t nm_page_to_bump;

/* Process start: the thread-exit key (the fork handlers come later: nm_heap_fork_ready).
 * Idempotent; returns 0 or -1. */
int nm_heap_process_init(void);
/* Register the fork handlers now (they are otherwise registered when the process first has
 * a second thread): for callers that may walk the heaps from a signal handler later. */
void nm_heap_fork_handlers(void);
/* Register them if the process has a second thread and they are not yet: before any lock
 * or walk of the heaps (not from a signal handler). */
void nm_heap_fork_ready(void);
/* Are they registered (tests)? */
bool nm_heap_fork_registered(void);
/* Give the calling thread a heap (an orphan if one waits); NULL when out of memory. */
nm_heap_t *nm_heap_acquire(void);
/* The owner leaves: keep what is live, purge what is free, and orphan the heap. */
void nm_heap_release(nm_heap_t *h);
/* Pages that received remote frees: fold those frees back into the pages. */
void nm_heap_collect_remote(nm_heap_t *h);
/* A page of h became empty (used == 0): return it to its segment unless it is current. */
void nm_heap_page_retire(nm_heap_t *h, nm_page_t *pg);
/* The owner takes a full page back (a local free into it): off limits to sweepers again,
 * and on its class's avail list unless current. */
void nm_heap_page_unfull(nm_heap_t *h, nm_page_t *pg);
/* Every purge_delay, the calling thread (on a slow path) purges other heaps' old freed
 * memory: idle heaps' aged slices, and orphans (wholly, once they waited unadopted). */
void nm_heap_sweep_maybe(nm_heap_t *self);
/* Every other heap gives back what it can now: wholly free segments unmapped (spares
 * too), freed slices purged, orphans reclaimed with their empty current pages. */
void nm_heap_trim_others(nm_heap_t *self);
/* Grow a large page in place over the free slices after it (realloc). */
bool nm_heap_page_grow(nm_heap_t *h, nm_page_t *pg, unsigned slices);
/* Move large page from's memory onto large page to (realloc), then retire from: no copy,
 * and from's slices are not left dirty. false: nothing happened (copy instead). */
bool nm_heap_page_move(nm_heap_t *h, nm_page_t *from, nm_page_t *to);
/* Shrink pg to its first `slices` slices; the rest go back to the segment. */
void nm_heap_page_shrink(nm_heap_t *h, nm_page_t *pg, unsigned slices);
/* A page of `slices` slices for h. When the OS refuses a new segment (RLIMIT_AS), the
 * heap first gives up its empty current pages and wholly free segments, and tries again
 * in what it has: a thread that freed everything can always allocate again. */
nm_page_t *nm_heap_page_alloc(nm_heap_t *h, unsigned slices);
/* The same for a page of pool class cls, which may be the class's last retired page taken
 * back (*warm set if it is laid out as it was and likely cached: for nm_page_reuse; else
 * for nm_page_init, as new slices are). */
nm_page_t *nm_heap_page_alloc_class(nm_heap_t *h, unsigned cls, unsigned slices, bool *warm);
/* Give freed memory of the calling thread's heap back to the OS now (its empty current
 * pages and spare segments too). */
void nm_heap_trim(nm_heap_t *h);
/* b, a live block of pg, freed by a thread other than pg's owner: onto pg's remote list.
 * The heap's orphan policy rides along: every 32nd remote free into an orphaned heap
 * collects its remote frees, so its empty pages go back to their segments. */
void nm_heap_free_remote(nm_page_t *pg, nm_block_t *b);
/* Call fn on every heap ever created (registry); for statistics. */
void nm_heap_foreach(void (*fn)(nm_heap_t *h, void *arg), void *arg);
/* In the child after fork: reset locks; heaps of threads that did not survive are dropped. */
void nm_heap_after_fork_child(void);

/* Make pg the page class cls allocates from, in current[] and in the class's direct slots. */
static inline void nm_heap_set_current(nm_heap_t *h, unsigned cls, nm_page_t *pg) {
  h->current[cls] = pg;
  for (unsigned i = nm_direct_first[cls]; i < nm_direct_end[cls]; i++) h->direct[i] = pg;
  if (NM_UNLIKELY(h->bump_off))
    for (unsigned i = nm_bump_direct_first[cls]; i < nm_bump_direct_end[cls]; i++) h->direct[i] = pg;
}

/* Blocks of pg (a page or region of class c in h) handed out and not freed by h's thread:
 * its `used` less the +1 bias that h's current page of the class (or current bump region)
 * carries. Blocks other threads freed count until h collects them. Each field is read once,
 * so a reader on another thread (statistics) may call it. */
NM_RACY_READER static inline uint64_t nm_heap_page_live(nm_heap_t *h, nm_page_t *pg, unsigned c) {
  uint64_t used = __atomic_load_n(&pg->used, __ATOMIC_RELAXED);
  nm_page_t *biased = c == NM_CLASS_BUMP ? __atomic_load_n(&h->bump, __ATOMIC_RELAXED)
                                         : __atomic_load_n(&h->current[c], __ATOMIC_RELAXED);
  return biased == pg && used > 0 ? used - 1 : used;
}

#endif
