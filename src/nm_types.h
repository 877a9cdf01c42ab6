/* nebula-memory internal types: segments, pages, heaps.
 *
 * Memory comes from the OS in segments of NM_SEG_SIZE bytes, aligned to their size, so the
 * segment of any pointer is one mask away. A segment is cut into NM_SEG_SLICES slices; a
 * page is a run of slices holding equal blocks of one size class. Slice 0 holds the segment
 * header. A heap is one thread's set of segments; it is adopted by a new thread when its
 * owner exits. */
#ifndef NM_TYPES_H
#define NM_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/lock.h"

#define NM_LIKELY(x)   __builtin_expect(!!(x), 1)
#define NM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NM_NOINLINE    __attribute__((noinline))
#define NM_COLD        __attribute__((cold, noinline))
/* Readers of other threads' counters and pages (statistics): those are written with plain
 * stores by their owner and read whole, racily by design, so ThreadSanitizer is told not
 * to watch these functions (the writers stay checked against each other). */
#define NM_RACY_READER __attribute__((no_sanitize("thread")))

/* The per-operation statistics counter (allocations per page: frees are derived from it
 * and the live count, see nm_heap_stats_t). On by default; `meson -Dcounters=false`
 * compiles it out, so the benchmark can measure its cost. */
#ifndef NM_COUNTERS
#define NM_COUNTERS 1
#endif
#if NM_COUNTERS
#define NM_COUNT(expr) (expr)
#else
#define NM_COUNT(expr) ((void)0)
#endif

#define NM_ALIGN        16u                      /* every block: max_align_t */
#define NM_SEG_SHIFT    22u                      /* 4 MiB segments */
#define NM_SEG_SIZE     ((size_t)1 << NM_SEG_SHIFT)
#define NM_SEG_MASK     (NM_SEG_SIZE - 1)
#define NM_SLICE_SHIFT  16u                      /* 64 KiB slices */
#define NM_SLICE_SIZE   ((size_t)1 << NM_SLICE_SHIFT)
#define NM_SEG_SLICES   (NM_SEG_SIZE / NM_SLICE_SIZE)   /* 64: one bit each in a uint64_t */

/* Requests up to this find their page in one load (nm_heap_t.direct), without the class
 * table: one slot per 16-byte step. */
#define NM_DIRECT_MAX   1024u
#define NM_DIRECT_SLOTS (NM_DIRECT_MAX / NM_ALIGN + 1)
/* Largest block the pool can serve; the router's pool_max may be lower. */
#define NM_POOL_LIMIT   ((size_t)128 << 10)
/* Size-class lookup table: one byte per 16-byte step up to NM_POOL_LIMIT. */
#define NM_CLASS_LOOKUP (NM_POOL_LIMIT / NM_ALIGN + 1)
/* Room for 8 classes per doubling (the tightest layout the router may ask for). */
#define NM_CLASS_MAX    96u
/* Class index meaning "not served by the pool": its current page is always empty. */
#define NM_CLASS_NONE   (NM_CLASS_MAX - 1)
/* Pages holding one large block (above pool_max, up to the router's large_max). */
#define NM_CLASS_LARGE  (NM_CLASS_MAX - 2)
/* Bump regions (pages whose blocks are carved by a moving cursor). */
#define NM_CLASS_BUMP   (NM_CLASS_MAX - 3)
/* The largest block a segment can hold: every slice but the header's. */
#define NM_LARGE_LIMIT  ((NM_SEG_SLICES - 1) * NM_SLICE_SIZE)

typedef struct nm_block_s   nm_block_t;
typedef struct nm_page_s    nm_page_t;
typedef struct nm_segment_s nm_segment_t;
typedef struct nm_heap_s    nm_heap_t;

enum {
  NM_PAGE_FULL    = 1u << 0,  /* no free block when it was last current: on no list */
  NM_PAGE_ALIGNED = 1u << 1,  /* handed out interior (over-aligned) pointers */
  NM_PAGE_BUMP    = 1u << 2,  /* a bump region: a local free only counts and untags */
  NM_PAGE_DEBUG   = 1u << 3,  /* junk/fill/guard on: frees take the slow path */
  NM_PAGE_FLAGS   = 15u,      /* the bits of nm_page_t.owner that are flags */
};

/* A free pool block: its first word links the free list, its second holds the page's
 * descriptor address (the free tag). malloc clears the tag, so a free that finds it is
 * (almost surely) a double free, and the slow path makes sure. */
struct nm_block_s {
  nm_block_t *next;
  uintptr_t tag;
};

struct nm_page_s {
  /* First line: everything malloc and a same-thread free touch. */
  nm_block_t *free;             /* owner-only free list, allocation pops here */
  uint32_t used;                /* blocks not returned locally (remote frees count until collected),
                                   +1 while the page is its class's current page */
  uint8_t class_idx;
  uint8_t slice_count;          /* slices spanned; 0 on a free slice */
  uint16_t moved_out;           /* its memory moved to another page (realloc): its slices are not dirty */
  uint64_t allocs;              /* blocks handed out since the page was made (statistics) */
  /* The owner heap's address | NM_PAGE_* flags: free's one compare with the calling
   * thread's heap says both "ours" and "no flag". Heaps are 64-aligned. */
  _Atomic uintptr_t owner;
  uint8_t *start;
  /* Block-start check in one multiply (Lemire's divisibility test): an offset from start
   * is the start of a carved block iff offset * div_magic < div_limit. */
  uint64_t div_magic;
  uint64_t div_limit;           /* grows as the owner carves (atomic stores); others load it atomically */
  uint32_t capacity;            /* blocks carved into the free list so far (bump: bytes) */
  uint32_t reserved;            /* blocks the page can hold (bump: bytes) */
  /* Second line: slow paths and other threads. */
  nm_heap_t *heap;              /* owner; stable while the page holds a live block */
  _Atomic(nm_block_t *) thread_free;   /* frees from other threads */
  nm_page_t *remote_next;       /* link in heap->remote_pages */
  nm_page_t *next, *prev;       /* link in heap->avail[class] */
  uint32_t block_size;
  uint16_t in_queue;            /* on its heap's avail queue */
  uint16_t zeroed;              /* its memory was fresh or purged when the page was made */
  uint64_t retired_at;          /* warm page: its heap's page_clock when it was retired */
} __attribute__((aligned(64)));
/* 128 bytes, a line apart: finding a pointer's page is a shift, not a multiply, and the
 * fields malloc and free touch share one line that remote frees do not write. */
_Static_assert(sizeof(struct nm_page_s) == 128, "a page descriptor is two cache lines");

struct nm_segment_s {
  nm_heap_t *heap;
  nm_segment_t *next, *prev;    /* heap's segment list */
  nm_segment_t *unmap_next;     /* emptied while statistics were read: unmapped later */
  uint64_t free_mask;           /* slices not in a page */
  uint64_t dirty_mask;          /* free slices whose memory may still be resident */
  uint64_t aged_mask;           /* dirty slices already dirty at the heap's last purge tick */
  /* Dirty free slices that hold a warm page: a one-slice pool page retired with every block
   * free, its descriptor, block layout and free list kept (on its heap's warm[class] list)
   * until a page of its class takes it back, or anything else takes or purges the slice. */
  uint64_t warm_mask;
  /* Slices mapped (bit 0, the header, always). All of them, but under address-space
   * pressure: then a segment is mapped a few slices at a time, and its free slices are
   * unmapped; a slice neither free nor mapped was taken by another mapping ("lost"). */
  uint64_t mapped_mask;
  uint64_t moves;               /* pages realloc moved out of it (each may split its mapping) */
  /* Each slice's page (its first slice's descriptor); a free slice's own descriptor until
   * a page takes it. Freeing a page leaves its slices leading to its descriptor, whose
   * owner word is then 0, so a late free into them is no thread's. */
  nm_page_t *page_of[NM_SEG_SLICES];
  nm_page_t slices[NM_SEG_SLICES];
};

/* Per-thread counters. Each heap carries its own, written only by the thread that owns the
 * heap, with plain adds (no atomic read-modify-write on any path); any thread may read them
 * (a dump from a signal handler, mallinfo2) without stopping the owner: every counter is
 * read whole (aligned 64-bit loads), but not all of them at one instant. A heap outlives
 * its thread (the next thread adopts it), so an exited thread's counts stay in the sums.
 *
 * The hot paths count one thing: each page's allocations (nm_page_t.allocs, on the cache
 * line malloc writes anyway). A page folds them into its heap's `allocs` when it retires.
 * Frees are derived when read: allocations - live blocks (each page's `used`) - remote
 * frees, so free() counts nothing. Remote frees are counted by the owner when it collects
 * them. The system class counts both on its own (slow) paths; frees of system blocks count
 * in the freeing thread's heap (a heap's own difference may be negative: only the sum over
 * heaps means something). */
typedef struct nm_class_count_s {
  uint64_t allocs;        /* blocks handed out by retired pages (system: every block) */
  uint64_t frees;         /* system class only: freed (pages derive theirs) */
  uint64_t remote_frees;  /* freed by other threads, collected by the owner */
  uint64_t pages_made;    /* pool classes: pages carved for the class ... */
  uint64_t pages_retired; /* ... and given back to their segment */
  uint64_t pages_peak;    /* the most pages of the class this heap held at once */
} nm_class_count_t;

typedef struct nm_heap_stats_s {
  /* Pool classes, then NM_CLASS_BUMP, NM_CLASS_LARGE and NM_CLASS_NONE (the system). */
  nm_class_count_t cls[NM_CLASS_MAX];
  uint64_t large_bytes_in;      /* page bytes of large blocks made */
  uint64_t large_bytes_out;     /* ... and given back */
  uint64_t system_bytes_in;     /* usable bytes of system blocks allocated through us */
  uint64_t system_bytes_out;    /* ... and freed */
  uint64_t bump_regions_made;
  uint64_t bump_regions_retired;
  uint64_t bump_rewinds;        /* regions recycled whole by rewinding the cursor */
  uint64_t page_bytes_peak;     /* the most bytes this heap's pages held */
  uint64_t purged_bytes;        /* given back to the kernel (madvise) */
  uint64_t segments_mapped;
  uint64_t segments_unmapped;
} nm_heap_stats_t;

typedef struct nm_page_queue_s {
  nm_page_t *first, *last;
} nm_page_queue_t;

enum { NM_HEAP_EMPTY = 0, NM_HEAP_ACTIVE, NM_HEAP_ORPHAN, NM_HEAP_DEAD, NM_HEAP_RECLAIMING };

/* 64-aligned: a page's owner word keeps its flags in the heap address's low bits. */
struct __attribute__((aligned(64))) nm_heap_s {
  /* Request (n + 15) / 16 -> current[its class], for n <= NM_DIRECT_MAX: malloc's page in
   * one load. Kept equal to current[] by nm_heap_set_current; &nm_page_empty for sizes the
   * pool does not serve on the fast path. */
  nm_page_t *direct[NM_DIRECT_SLOTS];
  nm_page_t *current[NM_CLASS_MAX];     /* the page each class allocates from */
  nm_page_t *bump;                      /* the bump region allocations are carved from */
  bool bump_off;                        /* gave bump regions up: pinned (heap/heap_bump.c) */
  uint32_t bump_census_clock;           /* regions made, for the pinned-region census */
  _Atomic(nm_page_t *) remote_pages;   /* pages that received remote frees */
  /* Taken by the owner to collect remote frees and to take a full page back, and by another
   * thread that retires this heap's full pages freed wholly by others while the owner was
   * idle (nm_heap_retire_freed): a full page is on no list, so only those touch it. */
  nm_lock_t full_lock;
  nm_page_queue_t avail[NM_CLASS_MAX]; /* other pages of the class with free blocks */
  nm_page_queue_t warm[NM_CLASS_MAX];  /* its retired warm pages (nm_segment_t.warm_mask), newest last */
  /* Segments and their free slices: taken by the owner for each page it makes or retires,
   * and by another thread that purges this heap (a sweep of idle heaps, malloc_trim, an
   * address-space shortage). Pages themselves are the owner's alone. */
  nm_lock_t seg_lock;
  nm_segment_t *segments;
  nm_segment_t *seg_hint;               /* where the last page was found */
  nm_segment_t *unmap_later;            /* emptied segments a statistics reader may be in */
  size_t dirty_bytes;                   /* freed slices not yet purged */
  uint64_t purge_at_ms;                 /* when the oldest of them is due (0: none pending) */
  size_t purge_limit;                   /* this heap's threshold: adapts to its cycle size */
  uint64_t last_hard_purge_ms;
  size_t taken_bytes;                   /* slices given to pages since the last such purge */
  /* Bytes of slices given to pages or freed, ever: how much memory the heap went through
   * since a warm page was retired, i.e. whether its lines may still be cached. */
  uint64_t page_clock;
  size_t segment_count;
  size_t mapped_bytes;                  /* of its segments' slices that are mapped */
  size_t page_bytes;                    /* bytes of slices given to pages */
  int state;                            /* NM_HEAP_* */
  nm_heap_t *next_all;                  /* registry of every heap, for stats and fork */
  nm_heap_t *next_orphan;
  _Atomic unsigned orphan_frees;        /* remote frees queued while orphaned */
  uint64_t orphaned_ms;                 /* when its thread left it */
  nm_heap_stats_t stats;
};

#endif
