#include "heap/alloc.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "bump/bump.h"
#include "heap/runtime.h"
#include "os/os.h"
#include "system/system.h"

static NM_COLD void *nm_fail(int err) {
  errno = err;
  return NULL;
}

/* The current page of cls has no free block: extend it, collect remote frees, take another
 * page of the class, or carve a new one. NULL when the OS refuses memory. */
static NM_NOINLINE nm_page_t *nm_page_refill(nm_heap_t *h, unsigned cls) {
  nm_page_t *old = h->current[cls];
  if (old != &nm_page_empty && nm_page_extend(old)) return old;
  if (atomic_load_explicit(&h->remote_pages, memory_order_relaxed) != NULL) {
    nm_heap_collect_remote(h);
    if (old->free != NULL) return old;
  }
  nm_page_t *pg;
  while ((pg = h->avail[cls].first) != NULL) {
    nm_page_queue_remove(&h->avail[cls], pg);
    if (pg->free != NULL || nm_page_extend(pg)) goto found;
    nm_page_flags_set(pg, NM_PAGE_FULL);
  }
  bool warm;
  pg = nm_heap_page_alloc_class(h, cls, nm_classes.slices[cls], &warm);
  if (pg == NULL) return NULL;
  if (warm) nm_page_reuse(pg, h, nm_page_new_flags);
  else nm_page_init(pg, h, cls, nm_classes.size[cls], nm_page_new_flags);
  nm_class_count_t *cc = &h->stats.cls[cls];
  if (++cc->pages_made - cc->pages_retired > cc->pages_peak) cc->pages_peak = cc->pages_made - cc->pages_retired;
found:
  nm_page_flags_clear(pg, NM_PAGE_FULL);
  pg->used++;                      /* the current page's bias: never retired while current */
  nm_heap_set_current(h, cls, pg);
  /* The old page is exhausted and on no list: its next local free puts it back in play. */
  if (old != &nm_page_empty) {
    if (--old->used == 0) nm_heap_page_retire(h, old);
    else nm_page_flags_set(old, NM_PAGE_FULL);
  }
  return pg;
}

/* The calling thread's heap, made ready (with the process) on its first request. NULL
 * once the thread has exited, or if no heap can be had: requests then go to the system.
 * Every slow path calls this before it looks at the router's tables. */
static inline nm_heap_t *nm_heap_ready(void) {
  nm_heap_t *h = nm_tls_heap;
  if (NM_LIKELY(h->state == NM_HEAP_ACTIVE)) return h;
  if (nm_tls_heap_gone) return NULL;
  nm_runtime_init(NULL);
  return nm_heap_acquire();
}

NM_NOINLINE void *nm_page_extend_pop(size_t n, nm_page_t *pg) {
  (void)n;
  nm_page_extend(pg);
  return nm_page_pop(pg, pg->free);
}

static void *nm_pool_alloc(nm_heap_t *h, unsigned cls) {
  nm_page_t *pg = h->current[cls];
  nm_block_t *b = pg->free;
  if (NM_UNLIKELY(b == NULL)) {
    pg = nm_page_refill(h, cls);
    if (pg == NULL) return NULL;
    b = pg->free;
  }
  return nm_page_pop(pg, b);
}

static inline unsigned nm_large_slices(size_t n) {
  return (unsigned)((n + NM_SLICE_SIZE - 1) >> NM_SLICE_SHIFT);
}

/* A page of its own for one block of at least n bytes (n <= NM_LARGE_LIMIT), aligned to a
 * slice. Freeing it retires the page at once. */
static void *nm_large_alloc(nm_heap_t *h, size_t n) {
  unsigned slices = nm_large_slices(n ? n : 1);
  nm_page_t *pg = nm_heap_page_alloc(h, slices);
  if (pg == NULL) return NULL;
  nm_page_init(pg, h, NM_CLASS_LARGE, (uint32_t)slices << NM_SLICE_SHIFT, nm_page_new_flags);
  nm_block_t *b = nm_page_pop(pg, pg->free);
  h->stats.large_bytes_in += (size_t)slices << NM_SLICE_SHIFT;
  return b;
}

/* System blocks are counted in the calling thread's heap (when it has one). */
static void *nm_system_counted(void *p) {
  nm_heap_t *h = nm_tls_heap;
  if (p != NULL && h->state == NM_HEAP_ACTIVE) {
    NM_COUNT(h->stats.cls[NM_CLASS_NONE].allocs++);
    h->stats.system_bytes_in += nm_system_usable_size(p);
  }
  return p;
}

_Atomic uint64_t nm_stats_stray_frees, nm_stats_stray_bytes;

void (*nm_heap_misuse_hook)(nm_bad_free_t kind, void *p, bool in_realloc);

static NM_COLD void nm_heap_misuse(nm_bad_free_t kind, void *p, bool in_realloc) {
  if (nm_heap_misuse_hook != NULL) nm_heap_misuse_hook(kind, p, in_realloc);
}

/* A pointer that is not ours: the system's, a bootstrap block, or a misuse. Returns its
 * usable size, or 0 after reporting it if the system allocator cannot have made it. */
static size_t nm_foreign_checked(void *p, bool in_realloc) {
  size_t bytes = nm_system_block_size(p);
  if (NM_UNLIKELY(bytes == 0)) nm_heap_misuse(NM_BAD_FOREIGN, p, in_realloc);
  return bytes;
}

static void nm_free_foreign(void *p) {
  if (p == NULL || nm_bootstrap_contains(p)) return;
  size_t bytes = nm_foreign_checked(p, false);
  if (bytes == 0) return;
  nm_heap_t *h = nm_tls_heap;
  if (h->state == NM_HEAP_ACTIVE) {
    NM_COUNT(h->stats.cls[NM_CLASS_NONE].frees++);
    h->stats.system_bytes_out += bytes;
  } else {
    /* A thread without a heap (it never allocated, or it is exiting): system blocks have
     * no owner to count them later, so they count here, process-wide (rare: big blocks). */
    atomic_fetch_add_explicit(&nm_stats_stray_frees, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&nm_stats_stray_bytes, bytes, memory_order_relaxed);
  }
  nm_system_free(p);
}

void *nm_system_alloc_counted(size_t n, size_t alignment, bool zero) {
  if (alignment > NM_ALIGN) return nm_system_counted(nm_system_memalign(alignment, n));
  return nm_system_counted(zero ? nm_system_calloc(1, n) : nm_system_malloc(n));
}

static unsigned nm_class_fit(size_t n);

/* A bump-routed request: from h's bump region, or from the pool once h gave regions up. */
static void *nm_bump_or_pool(nm_heap_t *h, size_t n) {
  void *p = nm_heap_bump_alloc(h, n);
  if (NM_LIKELY(p != NULL) || !h->bump_off) return p;
  unsigned cls = nm_class_fit(n);
  return cls == NM_CLASS_NONE ? NULL : nm_pool_alloc(h, cls);
}

/* n bytes from the backend the router picks. When the OS refuses our backends a segment
 * (RLIMIT_AS nearly used up, after every heap gave back what it could), the request goes
 * to the next allocator, which may still fit it in what it has or in a smaller mapping:
 * such blocks are freed back to it like any of its own. */
static void *nm_alloc_routed(size_t n) {
  nm_heap_t *h = nm_heap_ready();
  if (NM_UNLIKELY(h == NULL)) return nm_system_malloc(n);
  void *p;
  switch (nm_router_backend(n)) {
  case NM_BACKEND_BUMP: p = nm_bump_or_pool(h, n); break;
  case NM_BACKEND_POOL: p = nm_pool_alloc(h, nm_router_lookup(n)); break;
  case NM_BACKEND_LARGE: p = nm_large_alloc(h, n); break;
  default: p = NULL; break;
  }
  if (NM_UNLIKELY(p == NULL)) p = nm_system_counted(nm_system_malloc(n));
  if (NM_UNLIKELY(p == NULL) && nm_segment_pressure()) {
    nm_heap_trim_others(h);   /* other heaps' free slices, unmapped, may make room */
    p = nm_system_counted(nm_system_malloc(n));
  }
  return p;
}

/* fill=on: new blocks (not calloc's) hold NM_FILL_BYTE, so reads of uninitialised memory
 * show up. Only the slow path runs when fill is on (nm_fast_max, the direct slots). */
static NM_COLD void nm_fill_new(void *p) {
  memset(p, NM_FILL_BYTE, nm_debug_fill_len(nm_usable_size(p)));
}

void *nm_malloc_slow(size_t n) {
  if (NM_UNLIKELY(n > PTRDIFF_MAX)) return nm_fail(ENOMEM);
  void *p = nm_alloc_routed(n);
  if (NM_UNLIKELY(p == NULL)) return nm_fail(ENOMEM);
  if (NM_UNLIKELY(nm_route.opt.fill) && nm_segment_holds(p)) nm_fill_new(p);
  return p;
}

void *nm_malloc(size_t n) {
  void *p = nm_alloc_fast(n);
  return NM_LIKELY(p != NULL) ? p : nm_malloc_slow(n);
}

/* Is b (tagged free) really on pg's lists? The owner thread walks its free list and the
 * remote list (only the owner takes blocks off either); another thread cannot look, and
 * takes the tag's word for it (a live block holds the tag only if the program wrote that
 * address into its second word). */
static NM_COLD bool nm_page_holds_free(nm_page_t *pg, nm_block_t *b, nm_heap_t *h) {
  if (pg->heap != h) return true;
  for (nm_block_t *f = pg->free; f != NULL; f = f->next)
    if (f == b) return true;
  for (nm_block_t *f = atomic_load_explicit(&pg->thread_free, memory_order_acquire); f != NULL; f = f->next)
    if (f == b) return true;
  return false;
}

/* What is wrong with freeing p, a pointer into pool page pg (not bump); NM_BAD_COUNT... 
 * -1 when nothing is. *block: the block to free. */
static int nm_pool_block_check(nm_page_t *pg, void *p, uint8_t flags, nm_heap_t *h, nm_block_t **block) {
  if (pg->slice_count == 0) return NM_BAD_NO_BLOCK;   /* a free slice, or the segment header */
  nm_block_t *b = (flags & NM_PAGE_ALIGNED) ? nm_page_block_of(pg, p) : (nm_block_t *)p;
  *block = b;
  if (!nm_page_is_block(pg, b)) {
    size_t off = (size_t)((uint8_t *)p - pg->start);
    return off < (size_t)pg->capacity * pg->block_size ? NM_BAD_INTERIOR : NM_BAD_NO_BLOCK;
  }
  if (b->tag == (uintptr_t)pg && nm_page_holds_free(pg, b, h)) return NM_BAD_DOUBLE_FREE;
  return -1;
}

/* junk=on: the heap junks freed blocks, unless canaries are on: the guard junks the
 * blocks it quarantines itself, and keeps their trailers (which say "freed" to a second
 * free) intact. */
static inline bool nm_heap_junk_on_free(void) {
  return nm_route.opt.junk && !nm_route.opt.canary;
}

/* A bump free without its live tag: walk the region's headers to say which misuse it is
 * (rare; the walk is bounded by the region's blocks). */
static NM_COLD int nm_bump_misuse_kind(nm_page_t *pg, const uint8_t *u) {
  const uint8_t *at = pg->start, *end = pg->start + pg->capacity;
  while (at + NM_BUMP_HEADER <= end) {
    const uint8_t *block = at + NM_BUMP_HEADER;
    size_t size = nm_bump_usable(block);
    if (size > (size_t)(end - block)) break;   /* a header the program overwrote */
    if (u == block) return NM_BAD_DOUBLE_FREE;
    if (u > at && u < block + size) return NM_BAD_INTERIOR;
    at = block + size;
  }
  return NM_BAD_NO_BLOCK;
}

static int nm_bump_block_check(nm_page_t *pg, void *p) {
  uint8_t *u = p;
  /* reserved, not the cursor: another thread's free must not read what the owner moves;
   * the tag settles it. */
  if (pg->slice_count == 0 || u < pg->start + NM_BUMP_HEADER || u > pg->start + pg->reserved)
    return NM_BAD_NO_BLOCK;
  if (((uintptr_t)u & (NM_ALIGN - 1)) == 0 && *nm_bump_tag(p) == (uintptr_t)pg) return -1;
  return nm_bump_misuse_kind(pg, u);
}

/* A pointer into our segments that the fast path declined. */
static void nm_free_ours(nm_page_t *pg, void *p) {
  nm_heap_t *h = nm_tls_heap;
  uint8_t flags = nm_page_flags(pg);
  if (flags & NM_PAGE_BUMP) {
    int bad = nm_bump_block_check(pg, p);
    if (NM_UNLIKELY(bad >= 0)) {
      nm_heap_misuse((nm_bad_free_t)bad, p, false);
      return;
    }
    *nm_bump_tag(p) = 0;
    if (NM_UNLIKELY(flags & NM_PAGE_DEBUG) && nm_heap_junk_on_free())
      memset(p, NM_JUNK_BYTE, nm_debug_fill_len(nm_bump_usable(p)));
    /* A bump region only counts its blocks. */
    if (pg->heap != h) nm_heap_free_remote(pg, p);
    else nm_heap_bump_free_local(h, pg);
    return;
  }
  nm_block_t *b = p;
  int bad = nm_pool_block_check(pg, p, flags, h, &b);
  if (NM_UNLIKELY(bad >= 0)) {
    nm_heap_misuse((nm_bad_free_t)bad, p, false);
    return;
  }
  if (NM_UNLIKELY(flags & NM_PAGE_DEBUG) && nm_heap_junk_on_free())
    memset(p, NM_JUNK_BYTE, nm_debug_fill_len(nm_page_usable(pg, p)));
  if (pg->heap != h) {
    nm_heap_free_remote(pg, b);
    return;
  }
  if (flags & NM_PAGE_FULL) nm_heap_page_unfull(h, pg);   /* before touching it */
  b->next = pg->free;
  b->tag = (uintptr_t)pg;
  pg->free = b;
  if (--pg->used == 0) nm_heap_page_retire(h, pg);
}

void nm_free_checked(void *p) {
  if (nm_segment_holds(p)) nm_free_ours(nm_segment_page_of(p), p);
  else nm_free_foreign(p);
}

void nm_free(void *p) {
  if (!nm_free_fast(p)) nm_free_checked(p);
}

/* Usable size of p for realloc, or 0 after reporting it if p is no live block. */
static size_t nm_realloc_checked_size(void *p) {
  if (!nm_segment_holds(p)) return nm_foreign_checked(p, true);
  nm_page_t *pg = nm_segment_page_of(p);
  uint8_t flags = nm_page_flags(pg);
  nm_block_t *b;
  int bad = (flags & NM_PAGE_BUMP) ? nm_bump_block_check(pg, p) : nm_pool_block_check(pg, p, flags, nm_tls_heap, &b);
  if (NM_UNLIKELY(bad >= 0)) {
    nm_heap_misuse((nm_bad_free_t)bad, p, true);
    return 0;
  }
  return nm_page_usable(pg, p);
}

void *nm_calloc(size_t count, size_t size) {
  size_t n;
  if (NM_UNLIKELY(__builtin_mul_overflow(count, size, &n))) return nm_fail(ENOMEM);
  void *p = nm_alloc_fast(n);
  if (NM_LIKELY(p != NULL)) return memset(p, 0, n);
  if (n > PTRDIFF_MAX) return nm_fail(ENOMEM);
  nm_heap_t *h = nm_heap_ready();
  switch (h == NULL ? NM_BACKEND_SYSTEM : nm_router_backend(n)) {
  case NM_BACKEND_POOL:
    p = nm_pool_alloc(h, nm_router_class(n));
    if (p != NULL) memset(p, 0, n);
    break;
  case NM_BACKEND_LARGE:
    p = nm_large_alloc(h, n);
    if (p != NULL && !nm_segment_page_of(p)->zeroed) memset(p, 0, n);
    break;
  case NM_BACKEND_BUMP:
    p = nm_bump_or_pool(h, n);   /* a rewound region holds old data */
    if (p != NULL) memset(p, 0, n);
    break;
  default:
    break;
  }
  if (p == NULL) p = nm_system_counted(nm_system_calloc(1, n));   /* it knows its fresh zero pages */
  return p != NULL ? p : nm_fail(ENOMEM);
}

size_t nm_usable_size(const void *p) {
  if (nm_segment_holds(p)) return nm_page_usable(nm_segment_page_of(p), p);
  return nm_system_usable_size((void *)p);
}

/* A large block of h moving to the large page q: its pages are moved, not copied (no
 * second copy resident while the old one waits to be purged). */
static bool nm_realloc_move(nm_heap_t *h, void *p, void *q) {
  if (!nm_segment_holds(p) || !nm_segment_holds(q)) return false;
  nm_page_t *from = nm_segment_page_of(p), *to = nm_segment_page_of(q);
  if (from->class_idx != NM_CLASS_LARGE || to->class_idx != NM_CLASS_LARGE || from->heap != h || to->heap != h ||
      p != from->start || q != to->start || ((nm_page_flags(from) | nm_page_flags(to)) & NM_PAGE_FLAGS))
    return false;
  return nm_heap_page_move(h, from, to);
}

void *nm_realloc(void *p, size_t n) {
  if (p == NULL) return nm_malloc(n);
  if (n == 0) {                 /* glibc: free and return NULL */
    nm_free(p);
    return NULL;
  }
  if (NM_UNLIKELY(n > PTRDIFF_MAX)) return nm_fail(ENOMEM);
  /* A pointer that is no live block: reported, and (misuse=report) nothing changes. */
  size_t old = nm_bootstrap_contains(p) ? nm_bootstrap_usable_size(p) : nm_realloc_checked_size(p);
  if (NM_UNLIKELY(old == 0)) return nm_fail(EINVAL);
  nm_heap_t *h = nm_heap_ready();
  nm_backend_t to = h == NULL ? NM_BACKEND_SYSTEM : nm_router_backend(n);
  if (nm_segment_holds(p)) {
    nm_page_t *pg = nm_segment_page_of(p);
    /* The last bump block grows and shrinks in place. */
    if (pg->class_idx == NM_CLASS_BUMP && h != NULL && pg->heap == h && to == NM_BACKEND_BUMP &&
        nm_bump_resize(h, pg, p, n))
      return p;
    /* Fits, and would not waste more than half the block: stay. */
    if (n <= old && n >= old / 2) return p;
    /* A large block shrinking to a size that is still large keeps its first slices and
     * gives the rest back: no copy, and no new page taken while the old one goes dirty
     * (a growing buffer trimmed at the end moved every time). */
    if (n < old && to == NM_BACKEND_LARGE && pg->class_idx == NM_CLASS_LARGE && pg->heap == h &&
        !(nm_page_flags(pg) & NM_PAGE_ALIGNED)) {
      nm_heap_page_shrink(h, pg, nm_large_slices(n));
      __atomic_fetch_add(&h->stats.large_bytes_out, pg->block_size - ((size_t)pg->slice_count << NM_SLICE_SHIFT),
                         __ATOMIC_RELAXED);   /* a sweeper adds to it too */
      pg->block_size = (uint32_t)pg->slice_count << NM_SLICE_SHIFT;
      return p;
    }
    /* A large block grows in place over the free slices after it. */
    if (to == NM_BACKEND_LARGE && pg->class_idx == NM_CLASS_LARGE && pg->heap == h &&
        !(nm_page_flags(pg) & NM_PAGE_ALIGNED) && n > old &&
        nm_heap_page_grow(h, pg, nm_large_slices(n))) {
      h->stats.large_bytes_in += ((size_t)pg->slice_count << NM_SLICE_SHIFT) - pg->block_size;
      pg->block_size = (uint32_t)pg->slice_count << NM_SLICE_SHIFT;
      return p;
    }
  } else {
    if (to == NM_BACKEND_SYSTEM) {
      void *q = nm_system_realloc(p, n);   /* large stays large: mremap and friends */
      if (q == NULL) return nm_fail(ENOMEM);
      if (h != NULL) {
        h->stats.system_bytes_out += old;
        h->stats.system_bytes_in += nm_system_usable_size(q);
      }
      return q;
    }
  }
  void *q;
  if (to == NM_BACKEND_LARGE && n > old) {
    /* Growing: leave room for the next few steps, so they stay in place. */
    size_t room = n + n / 2;
    q = nm_large_alloc(h, room <= nm_route.large_max ? room : n);
    if (q == NULL) q = nm_malloc(n);
  } else {
    q = nm_malloc(n);
  }
  if (q == NULL) return nm_fail(ENOMEM);   /* p untouched */
  if (to == NM_BACKEND_LARGE && n > old && nm_realloc_move(h, p, q)) return q;
  memcpy(q, p, old < n ? old : n);
  nm_free(p);
  return q;
}

void *nm_reallocarray(void *p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) return nm_fail(ENOMEM);
  return nm_realloc(p, n);
}

/* Smallest pool class holding n bytes, whatever the route says about n; NM_CLASS_NONE if
 * none does. */
static unsigned nm_class_fit(size_t n) {
  if (n > nm_classes.size[nm_classes.count - 1]) return NM_CLASS_NONE;
  unsigned lo = 0, hi = nm_classes.count - 1;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if (nm_classes.size[mid] >= n) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/* n bytes aligned to a (a power of two, 16 < a <= one slice) from h: a pool class whose
 * blocks are all aligned, an over-allocated block with an interior pointer, or a large page
 * (pages start on a slice). *ours says whether we could serve it at all. */
static void *nm_aligned_ours(nm_heap_t *h, size_t a, size_t n, bool *ours) {
  *ours = true;
  size_t rounded = (n + a - 1) & ~(a - 1);
  if (rounded == 0) rounded = a;
  unsigned cls = nm_class_fit(rounded);
  if (cls != NM_CLASS_NONE && nm_classes.size[cls] % a == 0) return nm_pool_alloc(h, cls);
  cls = nm_class_fit(n + a - NM_ALIGN);
  if (cls != NM_CLASS_NONE) {
    uint8_t *b = nm_pool_alloc(h, cls);
    if (b == NULL) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)b + a - 1) & ~(uintptr_t)(a - 1));
    if (p != b) nm_page_flags_set(nm_segment_page_of(b), NM_PAGE_ALIGNED);
    return p;
  }
  if (n <= NM_LARGE_LIMIT) return nm_large_alloc(h, n);
  *ours = false;
  return NULL;
}

void *nm_memalign(size_t a, size_t n) {
  if (a <= NM_ALIGN) return nm_malloc(n);
  if (a > SIZE_MAX / 2 + 1) return nm_fail(EINVAL);
  if (a & (a - 1)) a = (size_t)1 << (64 - __builtin_clzll(a));   /* glibc rounds up */
  if (a > PTRDIFF_MAX || n > PTRDIFF_MAX - a) return nm_fail(ENOMEM);
  nm_heap_t *h = nm_heap_ready();
  bool ours = false;
  void *p = NULL;
  /* Sizes routed to the system, and alignments above a slice, go to the system; the rest
   * is ours (bump-routed sizes use pool classes: bump blocks are only 16-aligned). */
  if (h != NULL && a <= NM_SLICE_SIZE && nm_router_backend(n) != NM_BACKEND_SYSTEM)
    p = nm_aligned_ours(h, a, n, &ours);
  if (p == NULL) ours = false;   /* no segment to be had: the next allocator may fit it */
  if (!ours) p = nm_system_counted(nm_system_memalign(a, n));
  if (p == NULL) return nm_fail(ENOMEM);
  if (NM_UNLIKELY(nm_route.opt.fill) && ours) nm_fill_new(p);
  return p;
}

int nm_posix_memalign(void **out, size_t a, size_t n) {
  if (!nm_posix_alignment_ok(a)) return EINVAL;
  int saved = errno;
  return nm_posix_memalign_end(out, nm_memalign(a, n), saved);
}

void *nm_aligned_alloc(size_t a, size_t n) {
  return nm_memalign(a, n);   /* glibc 2.36: an alias of memalign */
}

void *nm_valloc(size_t n) {
  return nm_memalign(nm_os_page_size(), n);
}

void *nm_pvalloc(size_t n) {
  size_t page = nm_os_page_size(), rounded;
  if (!nm_pvalloc_size(n, page, &rounded)) return nm_fail(ENOMEM);
  return nm_memalign(page, rounded);
}
