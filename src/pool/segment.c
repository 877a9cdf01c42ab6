#include "pool/segment.h"

#include <errno.h>
#include <string.h>

#include "os/os.h"
#include "pool/page.h"
#include "pool/segmap.h"

#define NM_ALL_SLICES (~(uint64_t)0)
#define NM_USABLE_SLICES (NM_ALL_SLICES & ~(uint64_t)1)   /* slice 0 is the header */

_Static_assert(sizeof(nm_segment_t) <= NM_SLICE_SIZE, "segment header must fit in slice 0");

/* Address-space pressure: a 4 MiB segment could not be mapped a moment ago (RLIMIT_AS).
 * Until it passes, new segments are mapped a few slices at a time and purges unmap free
 * slices instead of only dropping their pages, so idle heaps keep no address space they
 * do not use. */
#define NM_PRESSURE_MS 2000u
static _Atomic uint64_t nm_pressure_until_ms;

bool nm_segment_pressure(void) {
  uint64_t until = atomic_load_explicit(&nm_pressure_until_ms, memory_order_relaxed);
  return until != 0 && nm_os_now_ms() < until;
}

/* Each move splits the kernel's mappings (a moved range never merges back with its
 * neighbours), and a process may have only so many (vm.max_map_count, 65530 by default):
 * moves stop at NM_MOVES_MAX in live segments, and realloc copies instead. */
static _Atomic size_t nm_segment_moves;

size_t nm_segment_moves_live(void) {
  return atomic_load_explicit(&nm_segment_moves, memory_order_relaxed);
}

static void nm_segment_link(nm_heap_t *h, nm_segment_t *s, uint64_t mapped) {
  /* Fresh anonymous memory is zero: only the fields that are not zero are written. */
  s->heap = h;
  s->free_mask = NM_USABLE_SLICES;
  s->mapped_mask = mapped;
  for (unsigned i = 0; i < NM_SEG_SLICES; i++) s->page_of[i] = &s->slices[i];
  s->next = h->segments;
  if (h->segments) h->segments->prev = s;
  __atomic_store_n(&h->segments, s, __ATOMIC_RELEASE);   /* readers walk the list unlocked */
  h->segment_count++;
  h->mapped_bytes += (size_t)__builtin_popcountll(mapped) << NM_SLICE_SHIFT;
  h->stats.segments_mapped++;
  nm_segmap_set(s);
}

static inline uint64_t nm_run_mask(unsigned at, unsigned n) {
  return ((n >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << n) - 1)) << at;
}

/* A segment with only its header and `slices` slices after it mapped, at a 4 MiB-aligned
 * address found by trying aligned places near a free gap the kernel picks. */
static nm_segment_t *nm_segment_map_sparse(unsigned slices) {
  size_t len = (size_t)(1 + slices) << NM_SLICE_SHIFT;
  void *gap = nm_os_map(len);
  if (gap == NULL) return NULL;
  nm_os_unmap(gap, len);
  uintptr_t base = (uintptr_t)gap & ~(uintptr_t)NM_SEG_MASK;
  for (unsigned i = 0; i < 64; i++) {
    uintptr_t tries[2] = { base - (uintptr_t)i * NM_SEG_SIZE, base + (uintptr_t)(i + 1) * NM_SEG_SIZE };
    for (unsigned k = 0; k < 2; k++) {
      uintptr_t at = tries[k];
      if (nm_segmap_index((void *)at) >= NM_SEGMAP_BITS) continue;   /* 0 or beyond the map */
      if (nm_os_map_at((void *)at, len) != NULL) return (nm_segment_t *)at;
      if (nm_os_map_error() == ENOMEM) return NULL;   /* the limit, not the place */
    }
  }
  return NULL;
}

/* A segment with room for a page of `slices` slices: a whole one, or under pressure (or
 * when a whole one is refused) a sparse one. */
static nm_segment_t *nm_segment_create(nm_heap_t *h, unsigned slices) {
  if (!nm_segment_pressure()) {
    nm_segment_t *s = nm_os_map_aligned(NM_SEG_SIZE, NM_SEG_SIZE);
    if (s != NULL && nm_segmap_index(s) >= NM_SEGMAP_BITS) {  /* beyond the map */
      nm_os_unmap(s, NM_SEG_SIZE);
      return NULL;
    }
    if (s != NULL) {
      nm_segment_link(h, s, NM_ALL_SLICES);
      return s;
    }
    atomic_store_explicit(&nm_pressure_until_ms, nm_os_now_ms() + NM_PRESSURE_MS, memory_order_relaxed);
  }
  /* A little room beyond the page, so the next pages need no mapping of their own. */
  unsigned want = slices + 3 < NM_SEG_SLICES - 1 ? slices + 3 : NM_SEG_SLICES - 1;
  nm_segment_t *s = nm_segment_map_sparse(want);
  if (s == NULL && want != slices) s = nm_segment_map_sparse(want = slices);
  if (s == NULL) return NULL;
  nm_segment_link(h, s, nm_run_mask(0, 1 + want));
  return s;
}

/* Map the slices of run that are not mapped yet: 0, or -1 if another mapping took one of
 * them (it is then marked lost: neither free nor mapped), -2 if the limit refuses. */
static int nm_segment_map_run(nm_heap_t *h, nm_segment_t *s, uint64_t run) {
  uint64_t missing = run & ~s->mapped_mask;
  while (missing) {
    unsigned at = (unsigned)__builtin_ctzll(missing);
    uint64_t rest = missing >> at;
    unsigned len = (~rest == 0) ? 64 - at : (unsigned)__builtin_ctzll(~rest);
    uint64_t sub = nm_run_mask(at, len);
    if (nm_os_map_at((uint8_t *)s + ((size_t)at << NM_SLICE_SHIFT), (size_t)len << NM_SLICE_SHIFT) == NULL) {
      if (nm_os_map_error() != EEXIST) return -2;
      s->free_mask &= ~sub;   /* lost to another mapping */
      return -1;
    }
    s->mapped_mask |= sub;
    h->mapped_bytes += (size_t)len << NM_SLICE_SHIFT;
    missing &= ~sub;
  }
  return 0;
}

/* Unmap the runs of mask (mapped slices). */
static void nm_segment_unmap_runs(nm_segment_t *s, uint64_t mask) {
  while (mask) {
    unsigned at = (unsigned)__builtin_ctzll(mask);
    uint64_t rest = mask >> at;
    unsigned len = (~rest == 0) ? 64 - at : (unsigned)__builtin_ctzll(~rest);
    nm_os_unmap((uint8_t *)s + ((size_t)at << NM_SLICE_SHIFT), (size_t)len << NM_SLICE_SHIFT);
    mask &= ~nm_run_mask(at, len);
  }
}

/* No slice of s is in a page (free or lost ones only). */
static inline bool nm_segment_empty(const nm_segment_t *s) {
  return (NM_USABLE_SLICES & ~s->free_mask & s->mapped_mask) == 0;
}

/* Statistics readers walk every heap's segments without a lock (nm_segment_foreach_page).
 * While one does, no segment is unmapped: an emptied one is purged, unlinked, and left on
 * its heap's unmap_later list until a later destroy finds no reader. The owner's unlink
 * and the reader's arrival are ordered by a seq_cst fence against a seq_cst increment, so
 * either the owner sees the reader or the reader never reaches the segment. */
static _Atomic unsigned nm_segment_readers;

static void nm_segment_unmap_deferred(nm_heap_t *h) {
  while (h->unmap_later != NULL) {
    nm_segment_t *s = h->unmap_later;
    h->unmap_later = s->unmap_next;
    nm_segment_unmap_runs(s, s->mapped_mask);   /* header last: it holds the mask */
  }
}

static void nm_segment_destroy(nm_heap_t *h, nm_segment_t *s) {
  if (s->prev) __atomic_store_n(&s->prev->next, s->next, __ATOMIC_RELAXED);
  else __atomic_store_n(&h->segments, s->next, __ATOMIC_RELAXED);
  if (s->next) s->next->prev = s->prev;
  if (h->seg_hint == s) h->seg_hint = NULL;
  h->segment_count--;
  h->mapped_bytes -= (size_t)__builtin_popcountll(s->mapped_mask) << NM_SLICE_SHIFT;
  h->stats.segments_unmapped++;
  if (s->moves) atomic_fetch_sub_explicit(&nm_segment_moves, s->moves, memory_order_relaxed);
  nm_segmap_clear(s);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&nm_segment_readers, memory_order_relaxed) != 0) {
    /* A reader may be on it: give the memory back now, the address space later. The
     * header slice stays, so a reader still there follows valid links. */
    nm_segment_unmap_runs(s, s->mapped_mask & ~(uint64_t)1);
    s->mapped_mask = 1;
    s->unmap_next = h->unmap_later;
    h->unmap_later = s;
    return;
  }
  nm_segment_unmap_runs(s, s->mapped_mask);
  nm_segment_unmap_deferred(h);
}

void nm_segment_after_fork_child(void) {
  /* A walk another thread was in is gone with that thread. */
  atomic_store_explicit(&nm_segment_readers, 0, memory_order_relaxed);
}

NM_RACY_READER void nm_segment_foreach_page(nm_heap_t *h, void (*fn)(nm_heap_t *, nm_page_t *, void *), void *arg) {
  atomic_fetch_add_explicit(&nm_segment_readers, 1, memory_order_seq_cst);
  /* The owner may be changing the list and its pages meanwhile: every read is a whole
   * word, a page being made or retired reads as whatever it holds, and the walk is bounded
   * so a torn read cannot loop. */
  size_t budget = (size_t)1 << 20;
  for (nm_segment_t *s = __atomic_load_n(&h->segments, __ATOMIC_ACQUIRE); s != NULL && budget > 0;
       s = __atomic_load_n(&s->next, __ATOMIC_ACQUIRE), budget--) {
    for (unsigned i = 1; i < NM_SEG_SLICES;) {
      nm_page_t *pg = &s->slices[i];
      unsigned n = __atomic_load_n(&pg->slice_count, __ATOMIC_RELAXED);
      if (n == 0) {
        i++;
        continue;
      }
      fn(h, pg, arg);
      i += n;
    }
  }
  atomic_fetch_sub_explicit(&nm_segment_readers, 1, memory_order_release);
}

/* Doubling: after each step, bit i of m says mask holds bits i .. i+len-1. */
int nm_segment_find_run(uint64_t mask, unsigned n) {
  uint64_t m = mask;
  for (unsigned len = 1; len < n && m != 0;) {
    unsigned step = len < n - len ? len : n - len;
    m &= m >> step;
    len += step;
  }
  return m ? __builtin_ctzll(m) : -1;
}

/* Slices of `mask` stop being warm pages: off their heap's warm lists (each warm slice's
 * descriptor is its page's). */
static void nm_segment_unwarm(nm_heap_t *h, nm_segment_t *s, uint64_t mask) {
  mask &= s->warm_mask;
  s->warm_mask &= ~mask;
  for (; mask != 0; mask &= mask - 1) {
    nm_page_t *pg = &s->slices[__builtin_ctzll(mask)];
    nm_page_queue_remove(&h->warm[pg->class_idx], pg);
  }
}

/* Slices `run` of s join a page: no longer free, dirty or warm. Returns those that were
 * dirty (resident already: no fault). */
static uint64_t nm_segment_claim(nm_heap_t *h, nm_segment_t *s, uint64_t run) {
  nm_segment_unwarm(h, s, run);
  s->free_mask &= ~run;
  uint64_t reused = s->dirty_mask & run;
  s->dirty_mask &= ~reused;
  s->aged_mask &= ~reused;
  h->dirty_bytes -= (size_t)__builtin_popcountll(reused) << NM_SLICE_SHIFT;
  size_t bytes = (size_t)__builtin_popcountll(run) << NM_SLICE_SHIFT;
  h->page_bytes += bytes;
  h->page_clock += bytes;
  if (h->page_bytes > h->stats.page_bytes_peak) h->stats.page_bytes_peak = h->page_bytes;
  return reused;
}

static nm_page_t *nm_segment_take(nm_heap_t *h, nm_segment_t *s, unsigned at, unsigned n) {
  uint64_t reused = nm_segment_claim(h, s, nm_run_mask(at, n));
  h->taken_bytes += (size_t)n << NM_SLICE_SHIFT;
  /* Purged slices read zero again; dirty ones keep whatever the last page left. */
  nm_page_t *pg = &s->slices[at];
  memset(pg, 0, sizeof *pg);
  pg->zeroed = (reused == 0);
  pg->slice_count = (uint8_t)n;
  s->page_of[at] = pg;
  for (unsigned i = 1; i < n; i++) {
    s->slices[at + i].slice_count = 0;
    s->page_of[at + i] = pg;
  }
  pg->start = (uint8_t *)s + ((size_t)at << NM_SLICE_SHIFT);
  return pg;
}

enum { NM_FIND_DIRTY_COLD, NM_FIND_DIRTY, NM_FIND_ANY };

/* A run of n free slices in one of h's segments: DIRTY only runs whose memory is still
 * resident, DIRTY_COLD those that hold no warm page either. NULL with *failed set when the
 * address-space limit refused it. */
static nm_page_t *nm_segment_find(nm_heap_t *h, unsigned n, int which, bool *failed) {
  nm_segment_t *start = h->seg_hint ? h->seg_hint : h->segments;
  nm_segment_t *s = start;
  while (s != NULL) {
    uint64_t mask = s->free_mask;
    if (which != NM_FIND_ANY) mask &= s->dirty_mask;
    if (which == NM_FIND_DIRTY_COLD) mask &= ~s->warm_mask;
    int at = nm_segment_find_run(mask, n);
    if (at >= 0) {
      /* A sparse segment maps the run first; a run another mapping took part of is lost
       * (nm_segment_map_run took it off free_mask) and the search goes on. */
      int mapped = nm_segment_map_run(h, s, nm_run_mask((unsigned)at, n));
      if (mapped == 0) {
        h->seg_hint = s;
        return nm_segment_take(h, s, (unsigned)at, n);
      }
      if (mapped == -1) continue;   /* lost slices are off free_mask: search again */
      *failed = true;               /* the limit: no new segment would fit either */
      return NULL;
    }
    s = s->next ? s->next : h->segments;
    if (s == start) break;
  }
  return NULL;
}

/* Freed slices still resident come first: a program that frees and allocates again in
 * cycles shorter than the purge delay then reuses the same memory instead of faulting
 * in fresh slices beside it (request-2m's peak RSS grew 3.6 -> 7.4 MiB that way). Among
 * them, those without a warm page first, so warm pages wait for their class. */
nm_page_t *nm_segment_page_alloc(nm_heap_t *h, unsigned n) {
  bool failed = false;
  nm_page_t *pg = NULL;
  if (h->dirty_bytes >= ((size_t)n << NM_SLICE_SHIFT)) {
    pg = nm_segment_find(h, n, NM_FIND_DIRTY_COLD, &failed);
    if (pg == NULL && !failed) pg = nm_segment_find(h, n, NM_FIND_DIRTY, &failed);
  }
  if (pg == NULL && !failed) pg = nm_segment_find(h, n, NM_FIND_ANY, &failed);
  if (pg != NULL || failed) return pg;
  int saved = errno;
  nm_segment_t *s = nm_segment_create(h, n);
  errno = saved;
  if (s == NULL) return NULL;
  h->seg_hint = s;
  return nm_segment_take(h, s, 1, n);
}

bool nm_segment_page_grow(nm_heap_t *h, nm_page_t *pg, unsigned n) {
  nm_segment_t *s = nm_segment_of(pg);
  unsigned at = (unsigned)(pg - s->slices);
  unsigned have = pg->slice_count;
  if (n <= have) return true;
  if (at + n > NM_SEG_SLICES) return false;
  uint64_t run = ((((uint64_t)1 << (n - have)) - 1)) << (at + have);
  if ((s->free_mask & run) != run) return false;
  if (nm_segment_map_run(h, s, run) != 0) return false;
  nm_segment_claim(h, s, run);
  for (unsigned i = have; i < n; i++) {
    s->slices[at + i].slice_count = 0;
    s->page_of[at + i] = pg;
  }
  pg->slice_count = (uint8_t)n;
  return true;
}

void nm_segment_page_shrink(nm_heap_t *h, nm_page_t *pg, unsigned n) {
  nm_segment_t *s = nm_segment_of(pg);
  unsigned at = (unsigned)(pg - s->slices);
  unsigned have = pg->slice_count;
  if (n == 0 || n >= have) return;
  /* The tail's descriptors still lead back to pg, whose block no longer reaches them: a
   * free into the tail fails the block-start check, as one into any freed run does. */
  uint64_t tail = nm_run_mask(at + n, have - n);
  s->free_mask |= tail;
  s->dirty_mask |= tail;
  h->dirty_bytes += (size_t)(have - n) << NM_SLICE_SHIFT;
  h->page_bytes -= (size_t)(have - n) << NM_SLICE_SHIFT;
  pg->slice_count = (uint8_t)n;
  h->seg_hint = s;
}

bool nm_segment_page_move(nm_heap_t *h, nm_page_t *from, nm_page_t *to) {
  nm_segment_t *s = nm_segment_of(from);
  unsigned n = from->slice_count;
  uint64_t run = nm_run_mask((unsigned)(from - s->slices), n);
  size_t len = (size_t)n << NM_SLICE_SHIFT;
  if (n > to->slice_count || (s->mapped_mask & run) != run) return false;
  if (atomic_load_explicit(&nm_segment_moves, memory_order_relaxed) >= NM_MOVES_MAX) return false;
  /* Off the map before the hole opens: a mapping of another allocator that lands in it is
   * not ours (nm_segment_holds), as when a purge unmaps slices. */
  __atomic_store_n(&s->mapped_mask, s->mapped_mask & ~run, __ATOMIC_RELEASE);
  if (!nm_os_move(from->start, len, to->start)) {
    __atomic_store_n(&s->mapped_mask, s->mapped_mask | run, __ATOMIC_RELEASE);
    return false;
  }
  if (nm_os_map_at(from->start, len) != NULL) __atomic_store_n(&s->mapped_mask, s->mapped_mask | run, __ATOMIC_RELEASE);
  else h->mapped_bytes -= len;   /* free and unmapped: mapped again when a page needs them */
  from->moved_out = 1;
  s->moves++;
  atomic_fetch_add_explicit(&nm_segment_moves, 1, memory_order_relaxed);
  return true;
}

void nm_segment_page_free(nm_heap_t *h, nm_page_t *pg, bool warm) {
  nm_segment_t *s = nm_segment_of(pg);
  unsigned at = (unsigned)(pg - s->slices);
  unsigned n = pg->slice_count;
  uint64_t run = (n >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << n) - 1);
  pg->slice_count = 0;
  pg->heap = NULL;
  /* No thread's fast path may take it for its own any more: a free into it is a misuse. */
  atomic_store_explicit(&pg->owner, 0, memory_order_relaxed);
  s->free_mask |= run << at;
  if (!pg->moved_out) {   /* moved-out slices are fresh or unmapped: nothing to purge */
    s->dirty_mask |= run << at;
    h->dirty_bytes += (size_t)n << NM_SLICE_SHIFT;
    if (warm && n == 1) {
      s->warm_mask |= run << at;
      nm_page_queue_push(&h->warm[pg->class_idx], pg);
    }
  }
  h->page_bytes -= (size_t)n << NM_SLICE_SHIFT;
  h->page_clock += (size_t)n << NM_SLICE_SHIFT;
  pg->retired_at = h->page_clock;
  h->seg_hint = s;
}

nm_page_t *nm_segment_page_warm(nm_heap_t *h, unsigned cls, bool *hot) {
  nm_page_t *pg = h->warm[cls].last;
  if (pg == NULL) return NULL;
  *hot = h->page_clock - pg->retired_at <= NM_WARM_HOT_BYTES;
  nm_segment_t *s = nm_segment_of(pg);
  unsigned at = (unsigned)(pg - s->slices);
  nm_segment_claim(h, s, nm_run_mask(at, 1));
  h->taken_bytes += NM_SLICE_SIZE;
  pg->slice_count = 1;
  pg->zeroed = 0;
  h->seg_hint = s;
  return pg;
}

static void nm_purge_runs(nm_heap_t *h, nm_segment_t *s, uint64_t mask) {
  while (mask) {
    unsigned at = (unsigned)__builtin_ctzll(mask);
    uint64_t rest = mask >> at;
    unsigned len = (~rest == 0) ? 64 - at : (unsigned)__builtin_ctzll(~rest);
    nm_os_purge((uint8_t *)s + ((size_t)at << NM_SLICE_SHIFT), (size_t)len << NM_SLICE_SHIFT);
    h->stats.purged_bytes += (size_t)len << NM_SLICE_SHIFT;
    uint64_t run = (len >= 64) ? NM_ALL_SLICES : (((uint64_t)1 << len) - 1);
    mask &= ~(run << at);
  }
}

void nm_segment_purge(nm_heap_t *h, unsigned keep, bool aged_only) {
  int saved = errno;
  if (h->unmap_later != NULL && atomic_load_explicit(&nm_segment_readers, memory_order_seq_cst) == 0)
    nm_segment_unmap_deferred(h);
  bool pressure = nm_segment_pressure();
  unsigned empty_kept = 0;
  nm_segment_t *s = h->segments;
  while (s != NULL) {
    nm_segment_t *next = s->next;
    uint64_t purge = aged_only ? (s->dirty_mask & s->aged_mask) : s->dirty_mask;
    nm_segment_unwarm(h, s, purge);   /* their memory reads zero (or goes) from here */
    if (nm_segment_empty(s) && s->dirty_mask == purge) {
      if (empty_kept >= keep || pressure) {   /* wholly free, nothing recent in it: unmap */
        h->dirty_bytes -= (size_t)__builtin_popcountll(s->dirty_mask) << NM_SLICE_SHIFT;
        nm_segment_destroy(h, s);
        s = next;
        continue;
      }
      empty_kept++;
    }
    if (pressure) {
      /* Address space is short: free slices go away whole, not just their pages. */
      uint64_t unmap = s->free_mask & s->mapped_mask & ~s->dirty_mask;
      unmap |= purge;
      /* Unmarked before unmapped: once the kernel may hand the hole to another allocator
       * (glibc's fallback blocks land there under RLIMIT_AS), nm_segment_holds must say
       * "not ours" for it, or a free of such a block reads as a misuse of ours. */
      __atomic_store_n(&s->mapped_mask, s->mapped_mask & ~unmap, __ATOMIC_RELEASE);
      nm_segment_unmap_runs(s, unmap);
      h->mapped_bytes -= (size_t)__builtin_popcountll(unmap) << NM_SLICE_SHIFT;
      h->stats.purged_bytes += (size_t)__builtin_popcountll(purge) << NM_SLICE_SHIFT;
    } else {
      nm_purge_runs(h, s, purge);
    }
    s->dirty_mask &= ~purge;
    s->aged_mask = s->dirty_mask;    /* what is still dirty is due at the next tick */
    h->dirty_bytes -= (size_t)__builtin_popcountll(purge) << NM_SLICE_SHIFT;
    s = next;
  }
  errno = saved;
}
