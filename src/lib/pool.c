/* The pool allocator: fixed-size blocks in mmap'd chunks, a lock-free free list.
 *
 * Blocks are named by a global index, chunk * block_count + slot, so the free list is a
 * stack of 32-bit indices: the head is one 64-bit word {generation tag, index + 1} (0: the
 * list is empty) and the link of each free block is kept outside the block, in its chunk's
 * `next` array. Every successful compare-and-swap on the head bumps the tag, which makes
 * the stack ABA-safe: a pop that read head (A, t) and next[A] = B cannot install B after
 * A was popped and pushed back meanwhile, since the head is then (A, t' != t) (the 32-bit
 * tag would have to wrap during one pop, 2^32 list operations, to be fooled).
 *
 * Each chunk also has an allocation byte per block: alloc sets it with a plain (atomic)
 * store, free clears it with an exchange and reports a double free if it was clear, so a
 * block can never enter the list twice. A pair costs three locked instructions (the two
 * CASes on the head and the exchange): the live count is not kept, it is counted from the
 * bytes when asked, and the peak is the highest block ever handed out (the list is LIFO and
 * fresh blocks are chained in index order, so a fresh block is popped only when every block
 * used before is live: the blocks ever used are exactly the peak).
 *
 * A growing pool also keeps a magazine per thread (up to NM_POOL_MAG block indices, in a
 * slot of the pool claimed by the thread's id): alloc pops from it and free pushes to it
 * without touching the shared head; a refill takes half a magazine from the list with one
 * CAS and an overflow gives half back as one chain. The slot lives in the pool, so a
 * destroyed pool takes its magazines with it; a thread remembers only the last pool's id
 * (ids are never reused) and slot. A fixed-size pool has no magazines: its capacity stays
 * exact for every thread. A thread that exits leaves its magazine to the next thread that
 * gets the same id; until then those blocks are free but unused (at most NM_POOL_MAG per
 * exited thread, and the pool grows instead). Chunks are found through a fixed array that only grows (under a mutex), so
 * readers need no lock. Links outside the blocks also keep the blocks whole for poisoning:
 * a free block is never touched by the pool. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <nebula/config.h>
#include <nebula/pool.h>

#include "lib/lib_internal.h"
#include "lib/poison.h"
#include "os/os.h"

#define NM_POOL_MIN_ALIGN 8u                  /* ASan shadow granule: blocks never share one */
#define NM_POOL_MAX_ALIGN ((size_t)1 << 20)
#define NM_POOL_MAX_BLOCKS (UINT32_MAX - 1u)  /* index + 1 fits 32 bits, 0 is "none" */
#define NM_POOL_FILL 0xDF
#define NM_POOL_MAG 64u                       /* blocks a thread keeps for itself */
#define NM_POOL_SLOTS 64u                     /* threads with a magazine in one pool */

typedef struct nm_pool_mag {
  _Alignas(64) _Atomic pid_t owner;           /* thread id; 0: free */
  /* The owner's serial (never reused, unlike a thread id): a new thread that got a dead
   * thread's id must not take its slot for its own while a sweep is giving it back. */
  _Atomic uint64_t serial;
  _Atomic uint32_t n;                         /* written by the owner with release: a sweeper
                                                 that reads it after the owner exited sees idx */
  uint32_t idx[NM_POOL_MAG];
} nm_pool_mag_t;

static _Atomic uint64_t nm_pool_ids;
static __thread struct {
  uint64_t id;                                /* the pool this thread used last (0: none) */
  nm_pool_mag_t *mag;                         /* its magazine there (NULL: none) */
} nm_pool_last;
static __thread pid_t nm_pool_tid;
static __thread uint64_t nm_pool_serial;
static _Atomic uint64_t nm_pool_serials;

typedef struct nm_pool_chunk {
  uint8_t *base;
  size_t mapped;                  /* bytes mapped (and reserved in the budget) */
  _Atomic uint32_t *next;         /* per block: index + 1 of the next free block, 0: end */
  _Atomic uint8_t *state;         /* per block: 1 = allocated */
} nm_pool_chunk_t;

struct nebula_pool {
  nebula_allocator_t base;
  char name[32];
  size_t stride, align;
  uint32_t count;                 /* blocks per chunk */
  uint32_t max_chunks;
  size_t chunk_bytes;             /* count * stride */
  _Atomic uint64_t head;          /* {tag << 32 | index + 1} */
  _Atomic uint32_t nchunks;       /* chunks[0 .. nchunks) are published */
  _Atomic uint32_t fresh;         /* blocks ever handed out: index + 1 of the highest (the peak) */
  nebula_budget_t *budget;
  nebula_budget_t *own_budget;    /* created from a config string: destroyed with the pool */
  bool grow, mark, fill;
  pthread_mutex_t grow_lock;      /* growth only: alloc/free never take it */
  uint64_t id;                    /* unique for the process's lifetime */
  uint64_t count_m, stride_m;     /* nm_pool_div magics for count and stride (0: divide) */
  nm_pool_mag_t *mags;            /* NM_POOL_SLOTS magazines; NULL for a fixed-size pool */
  _Atomic(nm_pool_chunk_t *) chunks[NEBULA_POOL_MAX_CHUNKS];
};

static const nebula_allocator_ops_t nm_pool_ops;

/* ---- the free list -------------------------------------------------------------------------
 * Ordering: a push writes the link (relaxed) and then publishes it with a release CAS on the
 * head; a pop loads the head with acquire, so it sees that link and everything the freeing
 * thread did to the block (the fill, the poisoning) before the block changes hands. The pop's
 * CAS is acq_rel so later pops keep the chain (release sequence). The link is read before
 * the pop's CAS is known to succeed: it may be stale (the block popped and reused since),
 * which is harmless because it is atomic and the tag then makes the CAS fail. */

/* n / d without a divide instruction (20-40 cycles, twice per alloc and free otherwise):
 * with m = 2^64 / d + 1, the high half of m * n is exact for every 32-bit n and d
 * (Lemire, Kaser, Kurz, "Faster remainder by direct computation", 2019). */
static inline uint64_t nm_pool_magic(uint64_t d) { return d < ((uint64_t)1 << 32) ? UINT64_MAX / d + 1 : 0; }
static inline uint32_t nm_pool_div(uint64_t n, uint64_t d, uint64_t m) {
  __extension__ typedef unsigned __int128 u128;
  return m ? (uint32_t)(((u128)m * n) >> 64) : (uint32_t)(n / d);
}

static inline uint32_t nm_pool_chunk_no(nebula_pool_t *p, uint32_t index) {
  return nm_pool_div(index, p->count, p->count_m);
}

static inline uint32_t nm_pool_slot(nebula_pool_t *p, uint32_t index) {
  return index - nm_pool_chunk_no(p, index) * p->count;
}

static inline nm_pool_chunk_t *nm_pool_chunk_of(nebula_pool_t *p, uint32_t index) {
  return atomic_load_explicit(&p->chunks[nm_pool_chunk_no(p, index)], memory_order_acquire);
}

static inline _Atomic uint32_t *nm_pool_link(nebula_pool_t *p, uint32_t index) {
  return &nm_pool_chunk_of(p, index)->next[nm_pool_slot(p, index)];
}

/* Pushes the chain first .. last (indices, already linked through `next`). */
static void nm_pool_push(nebula_pool_t *p, uint32_t first, uint32_t last) {
  _Atomic uint32_t *link = nm_pool_link(p, last);
  uint64_t old = atomic_load_explicit(&p->head, memory_order_relaxed);
  uint64_t new;
  do {
    atomic_store_explicit(link, (uint32_t)old, memory_order_relaxed);
    new = ((old >> 32) + 1) << 32 | ((uint64_t)first + 1);
  } while (!atomic_compare_exchange_weak_explicit(&p->head, &old, new, memory_order_release,
                                                  memory_order_relaxed));
}

/* A free block's index, or UINT32_MAX when the list is empty. */
static uint32_t nm_pool_pop(nebula_pool_t *p) {
  uint64_t old = atomic_load_explicit(&p->head, memory_order_acquire);
  for (;;) {
    uint32_t top = (uint32_t)old;
    if (top == 0) return UINT32_MAX;
    uint32_t next = atomic_load_explicit(nm_pool_link(p, top - 1), memory_order_relaxed);
    uint64_t new = ((old >> 32) + 1) << 32 | next;
    if (atomic_compare_exchange_weak_explicit(&p->head, &old, new, memory_order_acq_rel,
                                              memory_order_acquire))
      return top - 1;
  }
}

/* Pops up to want blocks in one CAS (a walk of the links from the head: if the head's tag is
 * unchanged at the CAS, nobody popped or pushed meanwhile, so the walk saw a real chain). */
static uint32_t nm_pool_pop_many(nebula_pool_t *p, uint32_t *out, uint32_t want) {
  uint64_t old = atomic_load_explicit(&p->head, memory_order_acquire);
  for (;;) {
    uint32_t k = 0, cur = (uint32_t)old;
    while (k < want && cur != 0) {
      out[k++] = cur - 1;
      cur = atomic_load_explicit(nm_pool_link(p, cur - 1), memory_order_relaxed);
    }
    if (k == 0) return 0;
    uint64_t new = ((old >> 32) + 1) << 32 | cur;
    if (atomic_compare_exchange_weak_explicit(&p->head, &old, new, memory_order_acq_rel,
                                              memory_order_acquire))
      return k;
  }
}

/* Pushes idx[0 .. n) as one chain. */
static void nm_pool_push_many(nebula_pool_t *p, const uint32_t *idx, uint32_t n) {
  for (uint32_t i = 0; i + 1 < n; i++)
    atomic_store_explicit(nm_pool_link(p, idx[i]), idx[i + 1] + 1, memory_order_relaxed);
  nm_pool_push(p, idx[0], idx[n - 1]);
}

/* ---- magazines ---------------------------------------------------------------------------- */

#define NM_POOL_SWEEPING ((pid_t)-1)

static bool nm_pool_thread_gone(pid_t tid) {
  return syscall(SYS_tgkill, getpid(), tid, 0) != 0 && errno == ESRCH;
}

/* Gives the magazines of threads that have exited back to the list and frees their slots.
 * A slot is taken over with a CAS to NM_POOL_SWEEPING first, so a new thread that got the
 * same id cannot start using it meanwhile. Returns how many blocks came back. */
static uint32_t nm_pool_sweep(nebula_pool_t *p) {
  uint32_t back = 0;
  if (p->mags == NULL) return 0;
  int saved = errno;
  for (unsigned i = 0; i < NM_POOL_SLOTS; i++) {
    nm_pool_mag_t *m = &p->mags[i];
    pid_t o = atomic_load_explicit(&m->owner, memory_order_acquire);
    if (o == 0 || o == NM_POOL_SWEEPING || o == nm_pool_tid || !nm_pool_thread_gone(o)) continue;
    if (!atomic_compare_exchange_strong_explicit(&m->owner, &o, NM_POOL_SWEEPING, memory_order_acq_rel,
                                                 memory_order_relaxed))
      continue;
    uint32_t n = atomic_load_explicit(&m->n, memory_order_acquire);
    if (n > 0) nm_pool_push_many(p, m->idx, n);
    back += n;
    atomic_store_explicit(&m->n, 0, memory_order_relaxed);
    atomic_store_explicit(&m->owner, 0, memory_order_release);
  }
  errno = saved;
  return back;
}

static NM_NOINLINE nm_pool_mag_t *nm_pool_mag_claim(nebula_pool_t *p) {
  nm_pool_mag_t *found = NULL;
  if (p->mags != NULL) {
    if (nm_pool_tid == 0) {
      nm_pool_tid = (pid_t)syscall(SYS_gettid);
      nm_pool_serial = atomic_fetch_add_explicit(&nm_pool_serials, 1, memory_order_relaxed) + 1;
    }
    pid_t me = nm_pool_tid;
    for (unsigned i = 0; i < NM_POOL_SLOTS && !found; i++)
      if (atomic_load_explicit(&p->mags[i].owner, memory_order_acquire) == me &&
          atomic_load_explicit(&p->mags[i].serial, memory_order_acquire) == nm_pool_serial)
        found = &p->mags[i];
    for (int pass = 0; pass < 2 && !found; pass++) {
      if (pass == 1) nm_pool_sweep(p);   /* every slot taken: free those of exited threads */
      for (unsigned i = 0; i < NM_POOL_SLOTS && !found; i++) {
        pid_t none = 0;
        if (atomic_compare_exchange_strong_explicit(&p->mags[i].owner, &none, me, memory_order_acq_rel,
                                                    memory_order_relaxed)) {
          atomic_store_explicit(&p->mags[i].serial, nm_pool_serial, memory_order_release);
          found = &p->mags[i];
        }
      }
    }
  }
  nm_pool_last.id = p->id;
  nm_pool_last.mag = found;   /* NULL: every slot taken, this thread uses the list */
  return found;
}

/* The calling thread's magazine in p, or NULL. */
static inline nm_pool_mag_t *nm_pool_mag(nebula_pool_t *p) {
  if (NM_LIKELY(nm_pool_last.id == p->id)) return nm_pool_last.mag;
  return nm_pool_mag_claim(p);
}

/* ---- chunks ------------------------------------------------------------------------------- */

/* Maps chunk number n, or returns false with *why: NEBULA_ERR_BUDGET (recorded by the
 * budget) or NEBULA_ERR_OUT_OF_MEMORY (for the caller to record). Its blocks are linked
 * slot 0 -> 1 -> ... but not pushed; it is published in chunks[n]. */
static bool nm_pool_chunk_new(nebula_pool_t *p, uint32_t n, nebula_error_code_t *why) {
  size_t page = nm_os_page_size();
  size_t mapped = (size_t)nm_lib_align_up(p->chunk_bytes, page);
  if (p->budget != NULL && !nebula_budget_reserve(p->budget, mapped)) {
    *why = NEBULA_ERR_BUDGET;
    return false;
  }
  nm_pool_chunk_t *c = malloc(sizeof *c + (size_t)p->count * (sizeof(uint32_t) + 1));
  void *mem = NULL;
  if (c != NULL) mem = p->align > page ? nm_os_map_aligned(mapped, p->align) : nm_os_map(mapped);
  if (mem == NULL) {
    free(c);
    if (p->budget != NULL) nebula_budget_release(p->budget, mapped);
    *why = NEBULA_ERR_OUT_OF_MEMORY;
    return false;
  }
  c->base = mem;
  c->mapped = mapped;
  c->next = (_Atomic uint32_t *)(c + 1);
  c->state = (_Atomic uint8_t *)(c->next + p->count);
  for (uint32_t i = 0; i < p->count; i++) atomic_init(&c->state[i], 0);
  uint32_t first = n * p->count;
  for (uint32_t i = 0; i < p->count; i++)
    atomic_init(&c->next[i], i + 1 < p->count ? first + i + 2 : 0);
  if (p->mark) nm_lib_poison(mem, mapped);
  atomic_store_explicit(&p->chunks[n], c, memory_order_release);
  atomic_store_explicit(&p->nchunks, n + 1, memory_order_release);
  return true;
}

static void *nm_pool_chunk_fail(nebula_pool_t *p, nebula_error_code_t why, const char *fn) {
  if (why == NEBULA_ERR_BUDGET) return NULL;   /* as nebula_budget_reserve recorded it */
  return nm_lib_fail(why, fn, &p->base, p->stride, p->align, NULL,
                     "lower block_count, or raise the process's memory limits",
                     "the OS refused a chunk of %zu bytes for pool '%s'", p->chunk_bytes, p->name);
}

/* The chunk holding ptr and the block's global index; false with the error recorded for a
 * pointer outside the chunks or inside a block. A linear scan: pools have few chunks. */
static bool nm_pool_find(nebula_pool_t *p, const void *ptr, const char *fn, bool record,
                         nm_pool_chunk_t **out, uint32_t *index) {
  uintptr_t v = (uintptr_t)ptr;
  uint32_t n = atomic_load_explicit(&p->nchunks, memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    nm_pool_chunk_t *c = atomic_load_explicit(&p->chunks[i], memory_order_acquire);
    uintptr_t b = (uintptr_t)c->base;
    if (v < b || v - b >= p->chunk_bytes) continue;
    size_t off = v - b;
    size_t slot = p->stride_m ? nm_pool_div(off, p->stride, p->stride_m) : off / p->stride;
    size_t into = off - slot * p->stride;
    if (into != 0) {
      if (record)
        nm_lib_fail(NEBULA_ERR_INVALID_POINTER, fn, &p->base, 0, 0, (void *)ptr,
                    "pass the pointer nebula_pool_alloc returned, not one inside the block",
                    "interior pointer, %zu bytes into block %zu of pool '%s'", into,
                    (size_t)i * p->count + slot, p->name);
      return false;
    }
    *out = c;
    *index = i * p->count + (uint32_t)slot;
    return true;
  }
  if (record)
    nm_lib_fail(NEBULA_ERR_INVALID_POINTER, fn, &p->base, 0, 0, (void *)ptr,
                "pass a pointer this pool handed out (was it from another allocator?)",
                "%p is not in any chunk of pool '%s'", ptr, p->name);
  return false;
}

static inline bool nm_pool_is_allocated(nebula_pool_t *p, nm_pool_chunk_t *c, uint32_t index) {
  return atomic_load_explicit(&c->state[nm_pool_slot(p, index)], memory_order_relaxed) != 0;
}

static void nm_pool_chunk_free(nebula_pool_t *p, nm_pool_chunk_t *c) {
  /* Unpoisoned first: a later mapping at this address must not inherit the shadow. */
  if (p->mark) nm_lib_unpoison(c->base, c->mapped);
  nm_os_unmap(c->base, c->mapped);
  if (p->budget != NULL) nebula_budget_release(p->budget, c->mapped);
  free(c);
}

/* ---- creation ----------------------------------------------------------------------------- */

NEBULA_API nebula_pool_t *nebula_pool_create(const nebula_pool_options_t *options) {
  static const char fn[] = "nebula_pool_create";
  if (options == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, fn, NULL, 0, 0, NULL, "pass options with a block_size",
                       "the options are NULL");
  nebula_pool_options_t o = *options;
  size_t align = o.alignment;
  if (!nm_lib_align_ok(&align) || align > NM_POOL_MAX_ALIGN)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, fn, NULL, o.block_size, o.alignment, NULL,
                       "use a power of two up to 1 MiB", "alignment %zu is not valid", o.alignment);
  if (align < NM_POOL_MIN_ALIGN) align = NM_POOL_MIN_ALIGN;
  if (o.block_size == 0 || o.block_count == 0 || o.block_count > NM_POOL_MAX_BLOCKS)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, fn, NULL, o.block_size, o.alignment, NULL,
                       "give a block_size > 0 and a block_count from 1 to 2^32 - 2",
                       "block_size %zu, block_count %zu", o.block_size, o.block_count);
  size_t stride = o.block_size > SIZE_MAX - align ? 0 : (size_t)nm_lib_align_up(o.block_size, align);
  size_t bytes;
  if (stride == 0 || __builtin_mul_overflow(stride, o.block_count, &bytes) ||
      bytes > SIZE_MAX - nm_os_page_size())
    return nm_lib_fail(NEBULA_ERR_OVERFLOW, fn, NULL, o.block_size, o.alignment, NULL,
                       "lower block_size or block_count", "%zu blocks of %zu bytes do not fit in a size_t",
                       o.block_count, o.block_size);
  nebula_pool_t *p = calloc(1, sizeof *p);
  if (p == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, fn, NULL, sizeof *p, 0, NULL,
                       "raise the process's memory limits", "malloc refused the pool's descriptor");
  snprintf(p->name, sizeof p->name, "%s", o.name != NULL && o.name[0] ? o.name : "pool");
  p->base.ops = &nm_pool_ops;
  p->base.name = p->name;
  p->stride = stride;
  p->align = align;
  p->count = (uint32_t)o.block_count;
  p->chunk_bytes = bytes;
  p->count_m = nm_pool_magic(p->count);
  /* The stride's magic needs offsets below 2^32: chunks of up to 4 GiB. */
  p->stride_m = bytes < ((size_t)1 << 32) ? nm_pool_magic(stride) : 0;
  uint32_t limit = NM_POOL_MAX_BLOCKS / p->count;
  p->max_chunks = limit < NEBULA_POOL_MAX_CHUNKS ? limit : NEBULA_POOL_MAX_CHUNKS;
  p->grow = o.grow;
  p->fill = o.poison;
#ifdef NM_LIB_ASAN
  p->mark = true;
#else
  p->mark = o.poison;
#endif
  p->budget = o.budget;
  pthread_mutex_init(&p->grow_lock, NULL);
  p->id = atomic_fetch_add_explicit(&nm_pool_ids, 1, memory_order_relaxed) + 1;
  if (p->grow) p->mags = aligned_alloc(64, NM_POOL_SLOTS * sizeof(nm_pool_mag_t));
  if (p->mags != NULL) memset(p->mags, 0, NM_POOL_SLOTS * sizeof(nm_pool_mag_t));
  nebula_error_code_t why;
  if (!nm_pool_chunk_new(p, 0, &why)) {
    if (why != NEBULA_ERR_BUDGET)
      nm_lib_fail(why, fn, NULL, bytes, align, NULL,
                  "lower block_count, or raise the process's memory limits",
                  "the OS refused the first chunk of %zu bytes", bytes);
    pthread_mutex_destroy(&p->grow_lock);
    free(p->mags);
    free(p);
    return NULL;
  }
  atomic_init(&p->head, 1);   /* tag 0, block 0: the chunk's chain */
  return p;
}

NEBULA_API nebula_pool_t *nebula_pool_create_from_config(const char *text) {
  nebula_config_t cfg;
  nebula_budget_t *budget;
  if (!nm_lib_config_load(text, "pool", &cfg, &budget)) return NULL;
  nebula_pool_options_t o = {
    .name = cfg.name, .block_size = cfg.block_size, .alignment = cfg.alignment,
    .block_count = cfg.block_count, .grow = cfg.grow, .poison = cfg.poison, .budget = budget,
  };
  nebula_pool_t *p = nebula_pool_create(&o);
  if (p == NULL) {
    nm_lib_config_unload(budget);
    return NULL;
  }
  p->own_budget = budget;
  return p;
}

NEBULA_API void nebula_pool_destroy(nebula_pool_t *p) {
  if (p == NULL) return;
  uint32_t n = atomic_load_explicit(&p->nchunks, memory_order_acquire);
  for (uint32_t i = 0; i < n; i++)
    nm_pool_chunk_free(p, atomic_load_explicit(&p->chunks[i], memory_order_relaxed));
  if (p->own_budget != NULL) nebula_budget_destroy(p->own_budget);
  pthread_mutex_destroy(&p->grow_lock);
  free(p->mags);
  free(p);
}

/* ---- alloc / free ------------------------------------------------------------------------- */

/* Maps one more chunk: keeps its first block for the caller, pushes the rest. The list is
 * tried again under the lock first, as another thread may just have grown the pool. */
static uint32_t nm_pool_grow(nebula_pool_t *p, const char *fn) {
  pthread_mutex_lock(&p->grow_lock);
  uint32_t index = nm_pool_pop(p);
  if (index == UINT32_MAX && nm_pool_sweep(p) > 0) index = nm_pool_pop(p);   /* exited threads' */
  if (index != UINT32_MAX) {
    pthread_mutex_unlock(&p->grow_lock);
    return index;
  }
  uint32_t n = atomic_load_explicit(&p->nchunks, memory_order_relaxed);
  nebula_error_code_t why = NEBULA_ERR_CAPACITY;
  if (n < p->max_chunks && nm_pool_chunk_new(p, n, &why)) {
    index = n * p->count;
    if (p->count > 1) nm_pool_push(p, index + 1, index + p->count - 1);
  }
  pthread_mutex_unlock(&p->grow_lock);
  if (index != UINT32_MAX) return index;
  if (why == NEBULA_ERR_CAPACITY)
    nm_lib_fail(why, fn, &p->base, p->stride, p->align, NULL, "raise block_count, or lower the pool's use",
                "pool '%s' reached its limit of %u chunks of %u blocks", p->name, p->max_chunks, p->count);
  else
    nm_pool_chunk_fail(p, why, fn);
  return UINT32_MAX;
}

/* A block for the calling thread's magazine m: from m, else half a magazine from the list
 * (one CAS); UINT32_MAX when the list is empty too. */
static inline uint32_t nm_pool_mag_take(nebula_pool_t *p, nm_pool_mag_t *m) {
  /* idx is read before n is published: a sweeper that acquires n after this thread exits
   * then orders after every access this thread made to the magazine. */
  uint32_t have = atomic_load_explicit(&m->n, memory_order_relaxed);
  if (NM_LIKELY(have > 0)) {
    uint32_t index = m->idx[have - 1];
    atomic_store_explicit(&m->n, have - 1, memory_order_release);
    return index;
  }
  uint32_t got[NM_POOL_MAG / 2];
  uint32_t n = nm_pool_pop_many(p, got, NM_POOL_MAG / 2);
  /* Reversed, so blocks leave the magazine in list order (fresh ones lowest first: the
   * high-water peak stays exact for a thread on its own). */
  for (uint32_t i = 0; i < n; i++) m->idx[i] = got[n - 1 - i];
  if (n == 0) return UINT32_MAX;
  uint32_t index = m->idx[n - 1];
  atomic_store_explicit(&m->n, n - 1, memory_order_release);
  return index;
}

static void *nm_pool_alloc(nebula_pool_t *p, const char *fn) {
  nm_pool_mag_t *m = nm_pool_mag(p);
  uint32_t index = m != NULL ? nm_pool_mag_take(p, m) : nm_pool_pop(p);
  if (NM_UNLIKELY(index == UINT32_MAX)) {
    if (!p->grow)
      return nm_lib_fail(NEBULA_ERR_CAPACITY, fn, &p->base, p->stride, p->align, NULL,
                         "raise block_count, or create the pool with grow",
                         "all %u blocks of pool '%s' are in use and it may not grow", p->count, p->name);
    index = nm_pool_grow(p, fn);
    if (index == UINT32_MAX) return NULL;
  }
  uint32_t fresh = atomic_load_explicit(&p->fresh, memory_order_relaxed);
  while (NM_UNLIKELY(index >= fresh) &&
         !atomic_compare_exchange_weak_explicit(&p->fresh, &fresh, index + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
  uint32_t chunk = nm_pool_chunk_no(p, index), slot = index - chunk * p->count;
  nm_pool_chunk_t *c = atomic_load_explicit(&p->chunks[chunk], memory_order_acquire);
  atomic_store_explicit(&c->state[slot], 1, memory_order_release);
  uint8_t *block = c->base + (size_t)slot * p->stride;
  if (p->mark) nm_lib_unpoison(block, p->stride);
  return block;
}

static bool nm_pool_free(nebula_pool_t *p, void *block, const char *fn) {
  nm_pool_chunk_t *c;
  uint32_t index;
  if (!nm_pool_find(p, block, fn, true, &c, &index)) return false;
  uint32_t slot = nm_pool_slot(p, index);
  nm_pool_mag_t *m = nm_pool_mag(p);
  /* With a magazine, a load and a store (no locked instruction): a double free is caught
   * unless two threads free the block at the same instant (glibc's tcache check is no
   * stronger). Without one (a fixed-size pool), the exchange catches even that. */
  bool was_free = m != NULL ? atomic_load_explicit(&c->state[slot], memory_order_relaxed) == 0
                            : atomic_exchange_explicit(&c->state[slot], 0, memory_order_acq_rel) == 0;
  if (was_free) {
    nm_lib_fail(NEBULA_ERR_DOUBLE_FREE, fn, &p->base, 0, 0, block, "free each block once",
                "block %u of pool '%s' is already free", index, p->name);
    return false;
  }
  if (p->fill) memset(block, NM_POOL_FILL, p->stride);
  if (m != NULL) atomic_store_explicit(&c->state[slot], 0, memory_order_release);
  if (p->mark) nm_lib_poison(block, p->stride);
  if (m == NULL) {
    nm_pool_push(p, index, index);
    return true;
  }
  uint32_t have = atomic_load_explicit(&m->n, memory_order_relaxed);
  if (NM_UNLIKELY(have == NM_POOL_MAG)) {   /* full: the older half goes back to the list */
    nm_pool_push_many(p, m->idx, NM_POOL_MAG / 2);
    memmove(m->idx, m->idx + NM_POOL_MAG / 2, (NM_POOL_MAG / 2) * sizeof m->idx[0]);
    have = NM_POOL_MAG / 2;
  }
  m->idx[have] = index;
  atomic_store_explicit(&m->n, have + 1, memory_order_release);
  return true;
}

NEBULA_API void *nebula_pool_alloc(nebula_pool_t *p) {
  if (p == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_pool_alloc", NULL, 0, 0, NULL, "pass a pool",
                       "the pool is NULL");
  return nm_pool_alloc(p, "nebula_pool_alloc");
}

NEBULA_API bool nebula_pool_free(nebula_pool_t *p, void *block) {
  if (block == NULL) return true;
  if (p == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_pool_free", NULL, 0, 0, block,
                "pass the pool block came from", "the pool is NULL");
    return false;
  }
  return nm_pool_free(p, block, "nebula_pool_free");
}

NEBULA_API size_t nebula_pool_block_size(const nebula_pool_t *p) { return p == NULL ? 0 : p->stride; }

NEBULA_API void nebula_pool_state(nebula_pool_t *p, nebula_allocator_state_t *out) {
  memset(out, 0, sizeof *out);
  if (p == NULL) return;
  size_t chunks = atomic_load_explicit(&p->nchunks, memory_order_acquire);
  size_t live = 0;
  for (size_t i = 0; i < chunks; i++) {
    nm_pool_chunk_t *c = atomic_load_explicit(&p->chunks[i], memory_order_acquire);
    for (uint32_t k = 0; k < p->count; k++) live += atomic_load_explicit(&c->state[k], memory_order_relaxed);
  }
  size_t peak = atomic_load_explicit(&p->fresh, memory_order_relaxed);
  out->capacity = chunks * p->chunk_bytes;
  out->used = live * p->stride;
  if (out->used > out->capacity) out->used = out->capacity;   /* a racy snapshot */
  out->available = out->capacity - out->used;
  out->peak = (peak > live ? peak : live) * p->stride;
  out->allocations = live;
  out->utilization = out->capacity ? (double)out->used / (double)out->capacity : 0.0;
}

/* ---- the common interface ----------------------------------------------------------------- */

static void *nm_pool_op_allocate(nebula_allocator_t *a, size_t size, size_t align) {
  nebula_pool_t *p = (nebula_pool_t *)a;
  if (!nm_lib_align_ok(&align))
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_allocate", a, size, align, NULL,
                       "use a power of two", "alignment %zu is not a power of two", align);
  if (size > p->stride || align > p->align)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_allocate", a, size, align, NULL,
                       "use a pool with bigger blocks, or another allocator for this request",
                       "pool '%s' serves up to %zu bytes aligned to %zu", p->name, p->stride, p->align);
  return nm_pool_alloc(p, "nebula_allocate");
}

static bool nm_pool_op_deallocate(nebula_allocator_t *a, void *ptr) {
  if (ptr == NULL) return true;
  return nm_pool_free((nebula_pool_t *)a, ptr, "nebula_deallocate");
}

static void *nm_pool_op_reallocate(nebula_allocator_t *a, void *ptr, size_t size, size_t align) {
  nebula_pool_t *p = (nebula_pool_t *)a;
  if (ptr == NULL) return nm_pool_op_allocate(a, size, align);
  if (!nm_lib_align_ok(&align))
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_reallocate", a, size, align, ptr,
                       "use a power of two", "alignment %zu is not a power of two", align);
  nm_pool_chunk_t *c;
  uint32_t index;
  if (!nm_pool_find(p, ptr, "nebula_reallocate", true, &c, &index)) return NULL;
  if (!nm_pool_is_allocated(p, c, index))
    return nm_lib_fail(NEBULA_ERR_INVALID_POINTER, "nebula_reallocate", a, size, align, ptr,
                       "resize only blocks that are allocated", "block %u of pool '%s' is free", index,
                       p->name);
  if (size > p->stride || align > p->align)
    return nm_lib_fail(NEBULA_ERR_UNSUPPORTED, "nebula_reallocate", a, size, align, ptr,
                       "copy the data to another allocator's block",
                       "pool '%s' blocks hold %zu bytes aligned to %zu: they cannot grow", p->name, p->stride,
                       p->align);
  return ptr;
}

static size_t nm_pool_op_usable(nebula_allocator_t *a, const void *ptr) {
  nebula_pool_t *p = (nebula_pool_t *)a;
  nm_pool_chunk_t *c;
  uint32_t index;
  if (!nm_pool_find(p, ptr, "nebula_usable_size", false, &c, &index)) return 0;
  return nm_pool_is_allocated(p, c, index) ? p->stride : 0;
}

static void nm_pool_op_state(nebula_allocator_t *a, nebula_allocator_state_t *out) {
  nebula_pool_state((nebula_pool_t *)a, out);
}

static void nm_pool_op_destroy(nebula_allocator_t *a) { nebula_pool_destroy((nebula_pool_t *)a); }

static const nebula_allocator_ops_t nm_pool_ops = {
  .allocate = nm_pool_op_allocate,
  .deallocate = nm_pool_op_deallocate,
  .reallocate = nm_pool_op_reallocate,
  .usable_size = nm_pool_op_usable,
  .state = nm_pool_op_state,
  .destroy = nm_pool_op_destroy,
};

NEBULA_API nebula_allocator_t *nebula_pool_allocator(nebula_pool_t *p) { return p == NULL ? NULL : &p->base; }
