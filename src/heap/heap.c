#include "heap/heap.h"

#include <pthread.h>
#include <sys/single_threaded.h>
#include <string.h>

#include "bump/bump.h"
#include "heap/heap_bump.h"
#include "heap/router.h"
#include "os/os.h"
#include "pool/page.h"
#include "pool/segment.h"
#include "util/lock.h"

#define NM_EMPTY_PAGES { [0 ... NM_CLASS_MAX - 1] = &nm_page_empty }
#define NM_EMPTY_DIRECT { [0 ... NM_DIRECT_SLOTS - 1] = &nm_page_empty }

__thread nm_heap_t *nm_tls_heap __attribute__((tls_model("initial-exec"))) = &nm_heap_empty;
__thread bool nm_tls_heap_gone __attribute__((tls_model("initial-exec")));
nm_page_t nm_page_to_bump;
nm_heap_t nm_heap_empty = { .direct = NM_EMPTY_DIRECT, .current = NM_EMPTY_PAGES, .state = NM_HEAP_EMPTY };

/* Global section: the registry of heaps, the orphan list and the metadata arena. Each
 * update is a single publishing store, so a child of fork can reset the lock and go on. */
static nm_lock_t nm_heaps_lock = NM_LOCK_INIT;
static nm_heap_t *nm_heaps_all;
static nm_heap_t *nm_heaps_orphan;
static size_t nm_orphan_count;   /* on the list; written under nm_heaps_lock */
#define NM_ORPHANS_WARM 4u       /* orphans that keep their warm pages for the next threads */
static uint8_t *nm_meta_next, *nm_meta_end;

static pthread_key_t nm_heap_key;

/* Other threads read a heap's state (a remote free checks for orphans): atomic stores. */
static inline void nm_heap_set_state(nm_heap_t *h, int state) {
  __atomic_store_n(&h->state, state, __ATOMIC_RELEASE);
}
static atomic_int nm_heap_inited;

#define NM_META_CHUNK ((size_t)256 << 10)

static void nm_heap_purge_due_locked(nm_heap_t *h);
static void nm_heap_drop_empty_current(nm_heap_t *h);
static void nm_heap_fork_prepare(void);
static void nm_heap_fork_parent(void);

static void nm_heap_thread_exit(void *arg) {
  nm_heap_t *h = arg;
  if (h != NULL && h == nm_tls_heap) nm_heap_release(h);
}

int nm_heap_process_init(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&nm_heap_inited, &expected, 1)) return 0;
  if (pthread_key_create(&nm_heap_key, nm_heap_thread_exit) != 0) return -1;
  return 0;
}

/* The fork handlers matter only once a second thread may hold our locks or walk our heaps
 * when another forks: they are registered then, by the first lock or walk after glibc's
 * __libc_single_threaded goes false (it does before the new thread runs, and a lock is
 * never held across that moment). A single-threaded program never registers them, and
 * its process keeps glibc's atfork code out of memory (up to 128 KiB of libc text the
 * kernel maps around it). A fork racing the registration waits on glibc's atfork lock,
 * which the registration holds. 0: none, 1: registering (a malloc inside it must not
 * start again), 2: registered. */
static atomic_int nm_fork_state;

void nm_heap_fork_handlers(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&nm_fork_state, &expected, 1)) return;
  /* The prepare handler waits for a sweep of other heaps to end, so the child never holds
   * a heap that a sweeper had locked (docs/design.md, "Fork"); nothing else needs it. */
  pthread_atfork(nm_heap_fork_prepare, nm_heap_fork_parent, nm_heap_after_fork_child);
  atomic_store(&nm_fork_state, 2);
}

bool nm_heap_fork_registered(void) {
  return atomic_load(&nm_fork_state) == 2;
}

void nm_heap_fork_ready(void) {
  if (atomic_load_explicit(&nm_fork_state, memory_order_relaxed) == 0 && !__libc_single_threaded)
    nm_heap_fork_handlers();
}

/* Every lock the heaps take goes through these: the fork handlers first (see above). */
static inline void nm_heap_lock(nm_lock_t *l) {
  if (NM_UNLIKELY(atomic_load_explicit(&nm_fork_state, memory_order_relaxed) != 2)) nm_heap_fork_ready();
  nm_lock(l);
}
static inline bool nm_heap_trylock(nm_lock_t *l) {
  if (NM_UNLIKELY(atomic_load_explicit(&nm_fork_state, memory_order_relaxed) != 2)) nm_heap_fork_ready();
  return nm_trylock(l);
}

static nm_heap_t *nm_heap_new_locked(void) {
  size_t size = (sizeof(nm_heap_t) + 63) & ~(size_t)63;
  if (nm_meta_next == NULL || (size_t)(nm_meta_end - nm_meta_next) < size) {
    uint8_t *chunk = nm_os_map(NM_META_CHUNK);
    if (chunk == NULL) return NULL;
    nm_meta_next = chunk;
    nm_meta_end = chunk + NM_META_CHUNK;
  }
  nm_heap_t *h = (nm_heap_t *)nm_meta_next;
  nm_meta_next += size;
  bool fast = __atomic_load_n(&nm_fast_max, __ATOMIC_RELAXED) != 0;
  for (unsigned i = 0; i < NM_CLASS_MAX; i++) h->current[i] = &nm_page_empty;
  h->current[NM_CLASS_BUMP] = &nm_page_to_bump;
  for (unsigned i = 0; i < NM_DIRECT_SLOTS; i++)
    h->direct[i] = fast && nm_router_lookup(i * NM_ALIGN) == NM_CLASS_BUMP ? &nm_page_to_bump : &nm_page_empty;
  h->next_all = nm_heaps_all;
  __atomic_store_n(&nm_heaps_all, h, __ATOMIC_RELEASE);   /* publish last: walked without the lock */
  return h;
}

nm_heap_t *nm_heap_acquire(void) {
  nm_heap_lock(&nm_heaps_lock);
  nm_heap_t *h = nm_heaps_orphan;
  if (h != NULL) {
    nm_heaps_orphan = h->next_orphan;
    __atomic_store_n(&nm_orphan_count, nm_orphan_count - 1, __ATOMIC_RELAXED);
  }
  else h = nm_heap_new_locked();
  nm_unlock(&nm_heaps_lock);
  if (h == NULL) return NULL;
  h->next_orphan = NULL;
  nm_heap_set_state(h, NM_HEAP_ACTIVE);
  nm_tls_heap = h;
  /* May allocate (keys >= 32 in glibc): the heap is already in place for that. */
  if (atomic_load_explicit(&nm_heap_inited, memory_order_relaxed))
    pthread_setspecific(nm_heap_key, h);
  nm_heap_collect_remote(h);
  return h;
}

void nm_heap_collect_remote(nm_heap_t *h) {
  if (atomic_load_explicit(&h->remote_pages, memory_order_relaxed) == NULL) return;
  /* A page queued again while we work on it may be taken by a sweeper (full pages). */
  nm_heap_lock(&h->full_lock);
  nm_page_t *pg = atomic_exchange_explicit(&h->remote_pages, NULL, memory_order_acquire);
  while (pg != NULL) {
    nm_page_t *next = pg->remote_next;   /* read before the page can be queued again */
    unsigned cls = pg->class_idx;
    h->stats.cls[cls].remote_frees += nm_page_collect_remote(pg);
    bool current = (h->current[cls] == pg);
    if (pg->used == 0) {             /* never the current page: it carries a bias */
      nm_heap_page_retire(h, pg);
    } else if (cls < NM_CLASS_BUMP && (nm_page_flags(pg) & NM_PAGE_FULL) && pg->free != NULL) {
      nm_page_flags_clear(pg, NM_PAGE_FULL);
      if (!current) nm_page_queue_push(&h->avail[cls], pg);
    }
    pg = next;
  }
  nm_unlock(&h->full_lock);
}

void nm_heap_page_unfull(nm_heap_t *h, nm_page_t *pg) {
  nm_heap_lock(&h->full_lock);   /* a sweeper looking at it finishes first */
  nm_page_flags_clear(pg, NM_PAGE_FULL);
  nm_unlock(&h->full_lock);
  if (h->current[pg->class_idx] != pg) nm_page_queue_push(&h->avail[pg->class_idx], pg);
}

/* pg holds no live block and is on no list: its counts folded, its slices back to their
 * segment. The counters are atomic: a sweeper retires the owner's full pages too. */
static void nm_heap_page_give_back(nm_heap_t *h, nm_page_t *pg) {
  unsigned cls = pg->class_idx;
  __atomic_fetch_add(&h->stats.cls[cls].allocs, pg->allocs, __ATOMIC_RELAXED);   /* fold its count */
  if (cls == NM_CLASS_LARGE)
    __atomic_fetch_add(&h->stats.large_bytes_out, (size_t)pg->slice_count << NM_SLICE_SHIFT, __ATOMIC_RELAXED);
  else if (cls == NM_CLASS_BUMP) __atomic_fetch_add(&h->stats.bump_regions_retired, 1, __ATOMIC_RELAXED);
  else __atomic_fetch_add(&h->stats.cls[cls].pages_retired, 1, __ATOMIC_RELAXED);
  nm_heap_lock(&h->seg_lock);
  /* Every block of a retired pool page is on its free list: a one-slice page stays warm. */
  nm_segment_page_free(h, pg, cls < NM_CLASS_BUMP && pg->used == 0);
  nm_heap_purge_due_locked(h);
  nm_unlock(&h->seg_lock);
}

void nm_heap_page_retire(nm_heap_t *h, nm_page_t *pg) {
  unsigned cls = pg->class_idx;
  if (h->current[cls] == pg) return;   /* keep the page we allocate from */
  if (pg->in_queue) nm_page_queue_remove(&h->avail[cls], pg);
  nm_heap_page_give_back(h, pg);
  nm_heap_sweep_maybe(h);
}

/* Pages of h that other threads freed wholly while the owner did not collect them (an
 * idle owner: a thread that made a structure and handed it to others, then waits). Only
 * pages whose every block is on their remote list, and that the owner touches then only
 * under full_lock, are retired: a full pool page (off every list; the owner takes it back
 * with nm_heap_page_unfull), a large page, a bump region that is no longer current. The
 * others go back on the list for the owner. */
static void nm_heap_retire_freed(nm_heap_t *h, bool wait) {
  if (atomic_load_explicit(&h->remote_pages, memory_order_relaxed) == NULL) return;
  if (wait) nm_heap_lock(&h->full_lock);
  else if (!nm_heap_trylock(&h->full_lock)) return;
  nm_page_t *pg = atomic_exchange_explicit(&h->remote_pages, NULL, memory_order_acquire);
  nm_page_t *keep = NULL, *keep_last = NULL;
  while (pg != NULL) {
    nm_page_t *next = pg->remote_next;
    uintptr_t owner = atomic_load_explicit(&pg->owner, memory_order_acquire);
    unsigned cls = pg->class_idx;
    /* A bump region or a large page is on no list and its owner allocates from neither
     * unless current (a bump region's bias keeps the current one from ever looking
     * empty); a pool page must be full (off the avail list). */
    bool untouched = cls == NM_CLASS_LARGE || cls == NM_CLASS_BUMP || (owner & NM_PAGE_FULL);
    uint32_t n = untouched ? nm_page_collect_all(pg) : 0;
    if (n != 0) {
      h->stats.cls[cls].remote_frees += n;   /* written under full_lock, as by the owner */
      if (cls < NM_CLASS_BUMP) pg->used = 0;   /* its free list whole: it may stay warm */
      nm_heap_page_give_back(h, pg);
    } else {
      pg->remote_next = keep;
      keep = pg;
      if (keep_last == NULL) keep_last = pg;
    }
    pg = next;
  }
  if (keep != NULL) {
    nm_page_t *head = atomic_load_explicit(&h->remote_pages, memory_order_relaxed);
    do {
      keep_last->remote_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&h->remote_pages, &head, keep, memory_order_release,
                                                    memory_order_relaxed));
  }
  nm_unlock(&h->full_lock);
}

/* Purge at once when freed memory piles up past the threshold. Below it, a tick every
 * purge_delay_ms purges what was already dirty at the previous tick: memory freed and
 * soon reused (the common case) never goes back to the kernel, and memory left unused
 * goes back after one to two delays. */
/* A heap that hits its threshold again soon after a purge, having taken at least half the
 * threshold of new pages in between, is cycling through more memory than the threshold
 * (allocate a lot, free it all, again): its own threshold doubles (up to
 * NM_PURGE_LIMIT_MAX) so it stops faulting the same memory in at every cycle. A program
 * that frees a lot once and stops takes no new pages, so it keeps the threshold. After a
 * quiet while the threshold falls back. */
#define NM_PURGE_THRASH_MS 1000u
#define NM_PURGE_CALM_MS   10000u
#define NM_PURGE_LIMIT_MAX ((size_t)1 << 30)

static size_t nm_heap_purge_limit(nm_heap_t *h, uint64_t now) {
  if (h->purge_limit < nm_route.opt.purge_threshold || now - h->last_hard_purge_ms > NM_PURGE_CALM_MS)
    h->purge_limit = nm_route.opt.purge_threshold;
  return h->purge_limit;
}

/* h->seg_lock held. */
static void nm_heap_purge_due_locked(nm_heap_t *h) {
  if (h->dirty_bytes == 0) return;
  uint64_t now = nm_os_now_ms();
  if (h->dirty_bytes > nm_heap_purge_limit(h, now)) {
    nm_segment_purge(h, 1, false);
    __atomic_store_n(&h->purge_at_ms, 0, __ATOMIC_RELAXED);
    if (now - h->last_hard_purge_ms < NM_PURGE_THRASH_MS && h->taken_bytes >= h->purge_limit / 2 &&
        h->purge_limit < NM_PURGE_LIMIT_MAX)
      h->purge_limit *= 2;
    h->last_hard_purge_ms = now;
    h->taken_bytes = 0;
  } else if (h->purge_at_ms == 0) {
    __atomic_store_n(&h->purge_at_ms, now + nm_route.opt.purge_delay_ms, __ATOMIC_RELAXED);
  } else if (now >= h->purge_at_ms) {
    nm_segment_purge(h, 1, true);
    __atomic_store_n(&h->purge_at_ms, h->dirty_bytes ? now + nm_route.opt.purge_delay_ms : 0, __ATOMIC_RELAXED);
  }
}

/* Retire the current pages that hold nothing but their bias, and the empty bump region. */
static void nm_heap_drop_empty_current(nm_heap_t *h) {
  for (unsigned cls = 0; cls < NM_CLASS_MAX; cls++) {
    nm_page_t *pg = h->current[cls];
    if (pg == &nm_page_empty || pg->used != 1) continue;
    nm_heap_set_current(h, cls, &nm_page_empty);
    pg->used = 0;
    nm_heap_page_retire(h, pg);
  }
  if (h->bump != NULL && h->bump->used == 1) nm_heap_bump_release(h);
}

/* warm != NULL: cls's newest warm page if it has one (*warm set if it may still be
 * cached), new slices otherwise. */
static nm_page_t *nm_heap_take_page(nm_heap_t *h, unsigned slices, unsigned cls, bool *warm) {
  nm_heap_lock(&h->seg_lock);
  nm_page_t *pg = warm != NULL ? nm_segment_page_warm(h, cls, warm) : NULL;
  if (pg == NULL) pg = nm_segment_page_alloc(h, slices);
  nm_unlock(&h->seg_lock);
  return pg;
}

#define NM_ORPHAN_DIRTY ((size_t)4 << 20)
enum { NM_PURGE_ALL, NM_PURGE_AGED, NM_PURGE_ORPHAN };

/* ORPHAN: an orphan keeps at most NM_ORPHAN_DIRTY of freed memory resident for the thread
 * that adopts it (purging every exit cost short-lived threads milliseconds each in madvise
 * under contention); more than that goes back now, since nobody may adopt it soon. */
static void nm_heap_purge(nm_heap_t *h, unsigned keep, int how) {
  nm_heap_lock(&h->seg_lock);
  bool aged_only = how == NM_PURGE_AGED || (how == NM_PURGE_ORPHAN && h->dirty_bytes <= NM_ORPHAN_DIRTY);
  nm_segment_purge(h, keep, aged_only);
  __atomic_store_n(&h->purge_at_ms, (aged_only && h->dirty_bytes) ? nm_os_now_ms() + nm_route.opt.purge_delay_ms : 0, __ATOMIC_RELAXED);
  nm_unlock(&h->seg_lock);
}

nm_page_t *nm_heap_page_alloc_class(nm_heap_t *h, unsigned cls, unsigned slices, bool *warm) {
  if (warm != NULL) *warm = false;
  nm_heap_sweep_maybe(h);
  nm_page_t *pg = nm_heap_take_page(h, slices, cls, warm);
  if (NM_LIKELY(pg != NULL)) return pg;
  nm_heap_collect_remote(h);
  nm_heap_drop_empty_current(h);
  nm_heap_purge(h, 1, NM_PURGE_ALL);
  pg = nm_heap_take_page(h, slices, cls, NULL);
  if (pg != NULL) return pg;
  /* The address space is short (RLIMIT_AS): the other heaps give back their wholly free
   * segments, spares included, and the orphans everything they do not hold live. */
  nm_heap_trim_others(h);
  return nm_heap_take_page(h, slices, cls, NULL);
}

nm_page_t *nm_heap_page_alloc(nm_heap_t *h, unsigned slices) {
  return nm_heap_page_alloc_class(h, NM_CLASS_NONE, slices, NULL);
}

bool nm_heap_page_grow(nm_heap_t *h, nm_page_t *pg, unsigned slices) {
  nm_heap_lock(&h->seg_lock);
  bool grown = nm_segment_page_grow(h, pg, slices);
  nm_unlock(&h->seg_lock);
  return grown;
}

bool nm_heap_page_move(nm_heap_t *h, nm_page_t *from, nm_page_t *to) {
  nm_heap_lock(&h->seg_lock);
  bool moved = nm_segment_page_move(h, from, to);
  nm_unlock(&h->seg_lock);
  if (!moved) return false;
  /* Its one block is gone (the free fast path would write into the fresh page). */
  from->used = 0;
  nm_heap_page_retire(h, from);
  return true;
}

void nm_heap_page_shrink(nm_heap_t *h, nm_page_t *pg, unsigned slices) {
  nm_heap_lock(&h->seg_lock);
  nm_segment_page_shrink(h, pg, slices);
  nm_heap_purge_due_locked(h);
  nm_unlock(&h->seg_lock);
}

void nm_heap_trim(nm_heap_t *h) {
  if (h->state != NM_HEAP_ACTIVE) return;
  nm_heap_collect_remote(h);
  nm_heap_drop_empty_current(h);
  nm_heap_purge(h, 0, NM_PURGE_ALL);
}

void nm_heap_release(nm_heap_t *h) {
  nm_heap_collect_remote(h);
  /* The current pages and bump region stay in place: the thread that adopts the heap goes
   * on allocating from them warm (short-lived threads would otherwise fault in fresh pages
   * every time: 2-3 faults each, 33k against glibc's 12k for 10k threads). */
  /* What the orphan keeps goes back once it has waited purge_delay unadopted
   * (nm_heap_sweep). Warm pages only pay off for the next thread or two to start: when
   * several orphans wait already (many threads exiting together, as a pool of workers
   * winding down), this one gives everything back now. */
  if (__atomic_load_n(&nm_orphan_count, __ATOMIC_RELAXED) >= NM_ORPHANS_WARM) {
    nm_heap_drop_empty_current(h);
    nm_heap_purge(h, 0, NM_PURGE_ALL);
  } else {
    nm_heap_purge(h, 1, NM_PURGE_ORPHAN);
  }
  h->orphaned_ms = nm_os_now_ms();
  nm_tls_heap_gone = true;
  nm_tls_heap = &nm_heap_empty;
  nm_heap_lock(&nm_heaps_lock);
  nm_heap_set_state(h, NM_HEAP_ORPHAN);
  h->next_orphan = nm_heaps_orphan;
  nm_heaps_orphan = h;
  __atomic_store_n(&nm_orphan_count, nm_orphan_count + 1, __ATOMIC_RELAXED);
  nm_unlock(&nm_heaps_lock);
}

/* Collect an orphan's remote frees and purge it; `settled` (it waited purge_delay with
 * nobody adopting it, or malloc_trim asked): its empty current pages go too, and all its
 * freed memory, wholly free segments unmapped. */
static void nm_heap_reclaim(nm_heap_t *h, bool settled) {
  nm_heap_lock(&nm_heaps_lock);
  if (__atomic_load_n(&h->state, __ATOMIC_ACQUIRE) != NM_HEAP_ORPHAN) {
    nm_unlock(&nm_heaps_lock);
    return;
  }
  nm_heap_t **link = &nm_heaps_orphan;
  while (*link != NULL && *link != h) link = &(*link)->next_orphan;
  if (*link == NULL) {
    nm_unlock(&nm_heaps_lock);
    return;
  }
  *link = h->next_orphan;           /* out of the list: nobody adopts it meanwhile */
  nm_heap_set_state(h, NM_HEAP_RECLAIMING);
  nm_unlock(&nm_heaps_lock);

  nm_heap_collect_remote(h);
  if (settled) {
    nm_heap_drop_empty_current(h);
    nm_heap_purge(h, 0, NM_PURGE_ALL);
  } else {
    nm_heap_purge(h, 1, NM_PURGE_ORPHAN);
  }

  nm_heap_lock(&nm_heaps_lock);
  nm_heap_set_state(h, NM_HEAP_ORPHAN);
  h->next_orphan = nm_heaps_orphan;
  nm_heaps_orphan = h;
  nm_unlock(&nm_heaps_lock);
}

void nm_heap_free_remote(nm_page_t *pg, nm_block_t *b) {
  nm_heap_t *h = pg->heap;   /* read before the push: after it, pg may be retired */
  nm_page_free_remote(pg, b);
  /* Nobody collects an orphan's frees until a thread adopts it: every 32nd remote free into
   * it does (counting every free, not only those that queue a page: a bump region takes
   * hundreds of frees and is queued once). */
  if (NM_UNLIKELY(__atomic_load_n(&h->state, __ATOMIC_RELAXED) == NM_HEAP_ORPHAN) &&
      atomic_fetch_add_explicit(&h->orphan_frees, 1, memory_order_relaxed) % 32 == 0)
    nm_heap_reclaim(h, false);
}

/* ---- other heaps: time-based purge and trims ----------------------------------------------
 * A heap's freed memory is purged by its owner's own slow paths; an owner that stops
 * allocating (idle, or gone) would keep it forever. So every purge_delay one thread that
 * passes a slow path sweeps the other heaps: an active heap whose purge tick is due has
 * its aged free slices purged (if its lock is free: never waits for an owner), and an
 * orphan is reclaimed (everything, once it has waited purge_delay). malloc_trim and an
 * address-space shortage sweep everything at once. One sweep at a time (nm_sweep_lock,
 * also held across fork so a child never inherits a heap locked by a sweeper). */
static _Atomic uint64_t nm_sweep_at_ms;
static nm_lock_t nm_sweep_lock = NM_LOCK_INIT;
/* This thread holds nm_sweep_lock: a fork from a signal handler that interrupted its sweep
 * must not wait for it (the prepare handler would spin forever; glibc supports fork from a
 * handler in a single-threaded process, tst-mallocfork2). */
static __thread bool nm_sweeping;
static __thread bool nm_fork_locked;   /* this thread's fork: its prepare handler took nm_sweep_lock */

/* The flag goes up before the lock is tried, so no instant exists where this thread holds
 * the lock without it. */
static bool nm_sweep_trylock(void) {
  nm_sweeping = true;
  if (nm_heap_trylock(&nm_sweep_lock)) return true;
  nm_sweeping = false;
  return false;
}
static void nm_sweep_lock_wait(void) {
  nm_sweeping = true;
  nm_heap_lock(&nm_sweep_lock);
}
static void nm_sweep_unlock(void) {
  nm_sweeping = false;
  nm_unlock(&nm_sweep_lock);
}

static void nm_heap_sweep(nm_heap_t *self, uint64_t now, bool all) {
  for (nm_heap_t *h = __atomic_load_n(&nm_heaps_all, __ATOMIC_ACQUIRE); h != NULL; h = h->next_all) {
    if (h == self) continue;
    int state = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
    if (state == NM_HEAP_ORPHAN) {
      nm_heap_reclaim(h, all || now - h->orphaned_ms >= nm_route.opt.purge_delay_ms);
    } else if (state == NM_HEAP_ACTIVE) {
      nm_heap_retire_freed(h, all);
      if (all) {
        nm_heap_lock(&h->seg_lock);
        nm_segment_purge(h, 0, false);
        __atomic_store_n(&h->purge_at_ms, 0, __ATOMIC_RELAXED);
        nm_unlock(&h->seg_lock);
      } else if (__atomic_load_n(&h->purge_at_ms, __ATOMIC_RELAXED) != 0 && nm_heap_trylock(&h->seg_lock)) {
        if (h->purge_at_ms != 0 && now >= h->purge_at_ms) {
          nm_segment_purge(h, 1, true);
          __atomic_store_n(&h->purge_at_ms, h->dirty_bytes ? now + nm_route.opt.purge_delay_ms : 0, __ATOMIC_RELAXED);
        }
        nm_unlock(&h->seg_lock);
      }
    }
  }
}

void nm_heap_sweep_maybe(nm_heap_t *self) {
  uint64_t due = atomic_load_explicit(&nm_sweep_at_ms, memory_order_relaxed);
  uint64_t now = nm_os_now_ms();
  if (now < due) return;
  if (!atomic_compare_exchange_strong_explicit(&nm_sweep_at_ms, &due, now + nm_route.opt.purge_delay_ms,
                                               memory_order_relaxed, memory_order_relaxed))
    return;
  if (!nm_sweep_trylock()) return;
  nm_heap_sweep(self, now, false);
  nm_sweep_unlock();
}

void nm_heap_trim_others(nm_heap_t *self) {
  nm_sweep_lock_wait();
  nm_heap_sweep(self, nm_os_now_ms(), true);
  nm_sweep_unlock();
}

static void nm_heap_fork_prepare(void) {
  nm_fork_locked = !nm_sweeping;   /* our own sweep, interrupted: the child resets the lock */
  if (nm_fork_locked) nm_sweep_lock_wait();
}

static void nm_heap_fork_parent(void) {
  if (nm_fork_locked) nm_sweep_unlock();
}

void nm_heap_foreach(void (*fn)(nm_heap_t *h, void *arg), void *arg) {
  nm_heap_fork_ready();   /* a walk on one thread while another forks */
  for (nm_heap_t *h = __atomic_load_n(&nm_heaps_all, __ATOMIC_ACQUIRE); h != NULL; h = h->next_all)
    fn(h, arg);
}

void nm_heap_after_fork_child(void) {
  nm_lock_reset(&nm_heaps_lock);
  nm_lock_reset(&nm_sweep_lock);
  if (nm_fork_locked) nm_sweeping = false;   /* else: a sweep of ours goes on after the handler */
  nm_segment_after_fork_child();
  /* Threads other than this one are gone; their heaps may have been mid-update when fork
   * copied them, so they are never adopted (their memory stays with the child, unused). */
  for (nm_heap_t *h = nm_heaps_all; h != NULL; h = h->next_all) {
    if (h->state == NM_HEAP_ACTIVE && h != nm_tls_heap) nm_heap_set_state(h, NM_HEAP_DEAD);
    nm_lock_reset(&h->seg_lock);   /* held by its owner mid-update: that heap is dead now */
    nm_lock_reset(&h->full_lock);
  }
}
