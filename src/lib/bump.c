/* The bump allocator: a chain of mmap'd chunks and a cursor per chunk.
 *
 * Each block has a 16-byte header right before it (size, distance back to the cursor
 * before the block, a check word), so usable_size is exact, the most recent block can be
 * rewound, and a stray pointer is told apart. Blocks are 8-aligned at least, so with
 * AddressSanitizer every header and block covers whole shadow granules of its own: the
 * header stays poisoned (read by no_sanitize_address helpers) and threads unpoisoning
 * neighbouring blocks never share a granule. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nebula/bump.h>
#include <nebula/config.h>

#include "lib/lib_internal.h"
#include "lib/poison.h"
#include "os/os.h"

#define NM_BUMP_DEFAULT_CAPACITY ((size_t)1 << 20)
#define NM_BUMP_MIN_ALIGN 8u
#define NM_BUMP_MAX_ALIGN ((size_t)1 << 30)
#define NM_BUMP_CHECK 0x6e6d6275u   /* "nmbu" */
#define NM_BUMP_FILL 0xDF

typedef struct nm_bump_hdr {
  size_t size;        /* bytes asked */
  uint32_t back;      /* block start - cursor before the block (header + padding) */
  uint32_t check;     /* NM_BUMP_CHECK mixed with the block's address and the fields */
} nm_bump_hdr_t;

#define NM_BUMP_HDR sizeof(nm_bump_hdr_t)
_Static_assert(NM_BUMP_HDR % NM_BUMP_MIN_ALIGN == 0, "headers keep blocks 8-aligned");

typedef struct nm_bump_chunk {
  struct nm_bump_chunk *next;
  uint8_t *base;
  size_t cap;                 /* usable bytes */
  size_t mapped;              /* bytes mapped (and reserved in the budget) */
  _Atomic size_t cursor;      /* offset of the first free byte */
} nm_bump_chunk_t;

struct nebula_bump {
  nebula_allocator_t base;
  char name[32];
  nm_bump_chunk_t *first;
  _Atomic(nm_bump_chunk_t *) current;   /* always the last chunk of the chain */
  size_t align;
  _Atomic size_t peak;        /* raised before every rewind and in state() */
  nebula_budget_t *budget;
  nebula_budget_t *own_budget;   /* created from a config string: destroyed with the bump */
  bool grow, thread_safe, mark, fill;
  pthread_mutex_t lock;       /* chain changes of the thread-safe variant */
};

static const nebula_allocator_ops_t nm_bump_ops;

/* ---- headers ------------------------------------------------------------------------------ */

static inline uint32_t nm_bump_check(const void *p, size_t size, uint32_t back) {
  uint64_t h = (uint64_t)(uintptr_t)p ^ ((uint64_t)size * 0x9e3779b97f4a7c15ull) ^ back;
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32)) ^ NM_BUMP_CHECK;
}

/* Headers stay poisoned under ASan: these touch them without its checks. */
__attribute__((no_sanitize_address)) static void nm_bump_hdr_write(void *p, size_t size, uint32_t back) {
  nm_bump_hdr_t *h = (nm_bump_hdr_t *)((uint8_t *)p - NM_BUMP_HDR);
  h->size = size;
  h->back = back;
  h->check = nm_bump_check(p, size, back);
}

__attribute__((no_sanitize_address)) static bool nm_bump_hdr_read(const void *p, nm_bump_hdr_t *out) {
  const nm_bump_hdr_t *h = (const nm_bump_hdr_t *)((const uint8_t *)p - NM_BUMP_HDR);
  out->size = h->size;
  out->back = h->back;
  out->check = h->check;
  return out->check == nm_bump_check(p, out->size, out->back);
}

/* ---- chunks ------------------------------------------------------------------------------- */

/* A chunk of cap usable bytes, or NULL with *why set: NEBULA_ERR_BUDGET (the budget has
 * recorded its error), NEBULA_ERR_OVERFLOW or NEBULA_ERR_OUT_OF_MEMORY (for the caller to
 * record, once it no longer holds the lock: recording reads the state, which locks). */
static nm_bump_chunk_t *nm_bump_chunk_new(nebula_bump_t *b, size_t cap, nebula_error_code_t *why) {
  size_t page = nm_os_page_size();
  if (cap > SIZE_MAX - page) {
    *why = NEBULA_ERR_OVERFLOW;
    return NULL;
  }
  size_t mapped = (size_t)nm_lib_align_up(cap, page);
  if (b->budget != NULL && !nebula_budget_reserve(b->budget, mapped)) {
    *why = NEBULA_ERR_BUDGET;
    return NULL;
  }
  nm_bump_chunk_t *c = malloc(sizeof *c);
  void *mem = c ? nm_os_map(mapped) : NULL;
  if (mem == NULL) {
    free(c);
    if (b->budget != NULL) nebula_budget_release(b->budget, mapped);
    *why = NEBULA_ERR_OUT_OF_MEMORY;
    return NULL;
  }
  c->next = NULL;
  c->base = mem;
  c->cap = cap;
  c->mapped = mapped;
  atomic_init(&c->cursor, 0);
  if (b->mark) nm_lib_poison(mem, mapped);
  return c;
}

static void *nm_bump_chunk_fail(nebula_bump_t *b, nebula_error_code_t why, size_t cap, const char *fn,
                                size_t size, size_t align) {
  if (why == NEBULA_ERR_BUDGET) return NULL;   /* as nebula_budget_reserve recorded it */
  if (why == NEBULA_ERR_OVERFLOW)
    return nm_lib_fail(why, fn, &b->base, size, align, NULL, "lower the request",
                       "a chunk of %zu bytes cannot be mapped", cap);
  return nm_lib_fail(why, fn, &b->base, size, align, NULL,
                     "lower the capacity, or raise the process's memory limits",
                     "the OS refused a chunk of %zu bytes", cap);
}

static void nm_bump_chunk_free(nebula_bump_t *b, nm_bump_chunk_t *c) {
  /* Unpoisoned first: a later mapping at this address must not inherit the shadow. */
  if (b->mark) nm_lib_unpoison(c->base, c->mapped);
  nm_os_unmap(c->base, c->mapped);
  if (b->budget != NULL) nebula_budget_release(b->budget, c->mapped);
  free(c);
}

/* Marks [from, to) of c free: filled with 0xDF (poison on) and poisoned. */
static void nm_bump_chunk_wipe(nebula_bump_t *b, nm_bump_chunk_t *c, size_t from, size_t to) {
  if (to <= from || !b->mark) return;
  if (b->fill) {
    nm_lib_unpoison(c->base + from, to - from);
    memset(c->base + from, NM_BUMP_FILL, to - from);
  }
  nm_lib_poison(c->base + from, to - from);
}

static nm_bump_chunk_t *nm_bump_owner(nebula_bump_t *b, const void *p) {
  uintptr_t v = (uintptr_t)p;
  for (nm_bump_chunk_t *c = b->first; c != NULL; c = c->next)
    if (v >= (uintptr_t)c->base && v < (uintptr_t)c->base + c->cap) return c;
  return NULL;
}

static inline void nm_bump_lock(nebula_bump_t *b) {
  if (b->thread_safe) pthread_mutex_lock(&b->lock);
}

static inline void nm_bump_unlock(nebula_bump_t *b) {
  if (b->thread_safe) pthread_mutex_unlock(&b->lock);
}

static void nm_bump_raise_peak(nebula_bump_t *b, size_t used) {
  size_t peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
  while (used > peak &&
         !atomic_compare_exchange_weak_explicit(&b->peak, &peak, used, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/* The peak is not tracked per allocation (a shared counter would cost the fast path): it
 * is brought up to date before anything lowers `used`, and when it is read. */
static void nm_bump_note_peak(nebula_bump_t *b) {
  size_t used = 0;
  nm_bump_lock(b);
  for (nm_bump_chunk_t *c = b->first; c != NULL; c = c->next)
    used += atomic_load_explicit(&c->cursor, memory_order_relaxed);
  nm_bump_unlock(b);
  nm_bump_raise_peak(b, used);
}

/* ---- creation ----------------------------------------------------------------------------- */

NEBULA_API nebula_bump_t *nebula_bump_create(const nebula_bump_options_t *options) {
  nebula_bump_options_t o = {0};
  if (options != NULL) o = *options;
  size_t align = o.alignment;
  if (!nm_lib_align_ok(&align) || align > NM_BUMP_MAX_ALIGN)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_bump_create", NULL, o.capacity, o.alignment, NULL,
                       "use a power of two up to 1 GiB", "alignment %zu is not valid", o.alignment);
  nebula_bump_t *b = calloc(1, sizeof *b);
  if (b == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_bump_create", NULL, sizeof *b, 0, NULL,
                       "raise the process's memory limits", "malloc refused the bump's descriptor");
  snprintf(b->name, sizeof b->name, "%s", o.name != NULL && o.name[0] ? o.name : "bump");
  b->base.ops = &nm_bump_ops;
  b->base.name = b->name;
  b->align = align;
  b->grow = o.grow;
  b->thread_safe = o.thread_safe;
  b->fill = o.poison;
#ifdef NM_LIB_ASAN
  b->mark = true;
#else
  b->mark = o.poison;
#endif
  b->budget = o.budget;
  pthread_mutex_init(&b->lock, NULL);
  size_t cap = o.capacity ? o.capacity : NM_BUMP_DEFAULT_CAPACITY;
  nebula_error_code_t why;
  nm_bump_chunk_t *c = nm_bump_chunk_new(b, cap, &why);
  if (c == NULL) {
    if (why != NEBULA_ERR_BUDGET)
      nm_lib_fail(why, "nebula_bump_create", NULL, cap, align, NULL,
                  "lower the capacity, or raise the process's memory limits",
                  "the OS refused the first chunk of %zu bytes", cap);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return NULL;
  }
  b->first = c;
  atomic_init(&b->current, c);
  return b;
}

NEBULA_API nebula_bump_t *nebula_bump_create_from_config(const char *text) {
  nebula_config_t cfg;
  nebula_budget_t *budget;
  if (!nm_lib_config_load(text, "bump", &cfg, &budget)) return NULL;
  nebula_bump_options_t o = {
    .name = cfg.name, .capacity = cfg.capacity, .alignment = cfg.alignment, .grow = cfg.grow,
    .thread_safe = cfg.thread_safe, .poison = cfg.poison, .budget = budget,
  };
  nebula_bump_t *b = nebula_bump_create(&o);
  if (b == NULL) {
    nm_lib_config_unload(budget);
    return NULL;
  }
  b->own_budget = budget;
  return b;
}

NEBULA_API void nebula_bump_destroy(nebula_bump_t *b) {
  if (b == NULL) return;
  for (nm_bump_chunk_t *c = b->first, *next; c != NULL; c = next) {
    next = c->next;
    nm_bump_chunk_free(b, c);
  }
  if (b->own_budget != NULL) nebula_budget_destroy(b->own_budget);
  pthread_mutex_destroy(&b->lock);
  free(b);
}

/* ---- allocation --------------------------------------------------------------------------- */

/* Tries to carve the block out of c; the block's address or NULL if c has no room. */
static void *nm_bump_carve(nebula_bump_t *b, nm_bump_chunk_t *c, size_t size, size_t align) {
  uintptr_t base = (uintptr_t)c->base;
  size_t cur = atomic_load_explicit(&c->cursor, memory_order_relaxed);
  for (;;) {
    /* The caller checked size + align + header fits in a size_t; cur <= cap. */
    uintptr_t p = nm_lib_align_up(base + cur + NM_BUMP_HDR, align);
    size_t start = (size_t)(p - base);
    if (start > c->cap || size > c->cap - start) return NULL;
    size_t end = start + size;
    /* acq_rel: bytes given back by a rewind (deallocate, shrink) were last written by the
     * thread that gave them back; its release pairs with this acquire. */
    if (!b->thread_safe) {
      atomic_store_explicit(&c->cursor, end, memory_order_relaxed);
    } else if (!atomic_compare_exchange_weak_explicit(&c->cursor, &cur, end, memory_order_acq_rel,
                                                      memory_order_relaxed)) {
      continue;   /* cur was reloaded */
    }
    void *q = (void *)p;
    if (b->mark) {
      nm_lib_unpoison((uint8_t *)q - NM_BUMP_HDR, NM_BUMP_HDR + size);
      nm_bump_hdr_write(q, size, (uint32_t)(start - cur));
      NM_ASAN_POISON((uint8_t *)q - NM_BUMP_HDR, NM_BUMP_HDR);
    } else {
      nm_bump_hdr_write(q, size, (uint32_t)(start - cur));
    }
    return q;
  }
}

/* The chain is full: chain a chunk (or fail). Returns false with the error recorded. */
static bool nm_bump_grow(nebula_bump_t *b, nm_bump_chunk_t *seen, size_t size, size_t align,
                         const char *fn) {
  nm_bump_lock(b);
  nm_bump_chunk_t *cur = atomic_load_explicit(&b->current, memory_order_acquire);
  if (cur != seen) {   /* another thread grew it meanwhile */
    nm_bump_unlock(b);
    return true;
  }
  if (!b->grow) {
    nm_bump_unlock(b);
    size_t used = atomic_load_explicit(&cur->cursor, memory_order_relaxed);
    nm_lib_fail(NEBULA_ERR_CAPACITY, fn, &b->base, size, align, NULL,
                "raise the capacity, enable grow, or reset the bump more often",
                "capacity %zu bytes, %zu used, %zu asked (alignment %zu)", cur->cap, used, size, align);
    return false;
  }
  size_t need = size + align + NM_BUMP_HDR;   /* checked by the caller */
  size_t cap = cur->cap > SIZE_MAX / 2 ? SIZE_MAX / 2 : cur->cap * 2;
  if (cap < need) cap = need;
  nebula_error_code_t why;
  nm_bump_chunk_t *c = nm_bump_chunk_new(b, cap, &why);
  if (c == NULL) {
    nm_bump_unlock(b);
    nm_bump_chunk_fail(b, why, cap, fn, size, align);
    return false;
  }
  cur->next = c;
  atomic_store_explicit(&b->current, c, memory_order_release);
  nm_bump_unlock(b);
  return true;
}

static void *nm_bump_alloc(nebula_bump_t *b, size_t size, size_t align, const char *fn) {
  size_t asked = align;
  if (align == 0) align = b->align;
  if ((align & (align - 1)) != 0 || align > NM_BUMP_MAX_ALIGN)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, fn, &b->base, size, asked, NULL,
                       "use a power of two up to 1 GiB", "alignment %zu is not valid", asked);
  if (align < NM_BUMP_MIN_ALIGN) align = NM_BUMP_MIN_ALIGN;
  if (size > SIZE_MAX - align - NM_BUMP_HDR - nm_os_page_size())
    return nm_lib_fail(NEBULA_ERR_OVERFLOW, fn, &b->base, size, asked, NULL, "lower the request",
                       "%zu bytes plus alignment %zu overflow a size_t", size, align);
  for (;;) {
    nm_bump_chunk_t *c = atomic_load_explicit(&b->current, memory_order_acquire);
    void *p = nm_bump_carve(b, c, size, align);
    if (p != NULL) return p;
    if (!nm_bump_grow(b, c, size, align, fn)) return NULL;
  }
}

NEBULA_API void *nebula_bump_alloc(nebula_bump_t *b, size_t size, size_t align) {
  if (b == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_bump_alloc", NULL, size, align, NULL,
                       "pass a bump from nebula_bump_create", "the bump is NULL");
  return nm_bump_alloc(b, size, align, "nebula_bump_alloc");
}

/* ---- reset, checkpoints ------------------------------------------------------------------- */

/* Frees the chunks after c; c becomes the current one. */
static void nm_bump_cut(nebula_bump_t *b, nm_bump_chunk_t *c) {
  for (nm_bump_chunk_t *d = c->next, *next; d != NULL; d = next) {
    next = d->next;
    nm_bump_chunk_free(b, d);
  }
  c->next = NULL;
  atomic_store_explicit(&b->current, c, memory_order_release);
}

NEBULA_API void nebula_bump_reset(nebula_bump_t *b) {
  if (b == NULL) return;
  nm_bump_note_peak(b);
  nm_bump_cut(b, b->first);
  nm_bump_chunk_wipe(b, b->first, 0, atomic_load_explicit(&b->first->cursor, memory_order_relaxed));
  atomic_store_explicit(&b->first->cursor, 0, memory_order_relaxed);
}

NEBULA_API nebula_bump_marker_t nebula_bump_checkpoint(nebula_bump_t *b) {
  nebula_bump_marker_t m = {0};
  if (b == NULL) return m;
  nm_bump_chunk_t *c = atomic_load_explicit(&b->current, memory_order_acquire);
  m.owner = b;
  m.chunk = c;
  m.offset = atomic_load_explicit(&c->cursor, memory_order_relaxed);
  return m;
}

NEBULA_API bool nebula_bump_restore(nebula_bump_t *b, nebula_bump_marker_t m) {
  if (b == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_bump_restore", NULL, 0, 0, NULL,
                "pass a bump from nebula_bump_create", "the bump is NULL");
    return false;
  }
  if (m.owner != b) {
    nm_lib_fail(NEBULA_ERR_ORDER, "nebula_bump_restore", &b->base, 0, 0, (void *)m.owner,
                "restore a marker where it was taken", "the marker belongs to %s",
                m.owner == NULL ? "no bump" : "another bump");
    return false;
  }
  nm_bump_chunk_t *c = b->first;
  unsigned index = 0;
  while (c != NULL && c != m.chunk) {
    c = c->next;
    index++;
  }
  size_t cur = c ? atomic_load_explicit(&c->cursor, memory_order_relaxed) : 0;
  if (c == NULL || m.offset > cur) {
    nm_lib_fail(NEBULA_ERR_ORDER, "nebula_bump_restore", &b->base, 0, 0, NULL,
                "restore markers in reverse order of their checkpoints, and not across a reset",
                c == NULL ? "the marker's chunk was freed (rewound past or reset)"
                          : "the marker (offset %zu in chunk %u) is newer than the position (%zu)",
                m.offset, index, cur);
    return false;
  }
  nm_bump_note_peak(b);
  nm_bump_cut(b, c);
  nm_bump_chunk_wipe(b, c, m.offset, cur);
  atomic_store_explicit(&c->cursor, m.offset, memory_order_relaxed);
  return true;
}

/* ---- the common interface ----------------------------------------------------------------- */

static void *nm_bump_op_allocate(nebula_allocator_t *a, size_t size, size_t align) {
  return nm_bump_alloc((nebula_bump_t *)a, size, align, "nebula_allocate");
}

/* The block at p if it is one: its chunk and header. */
static nm_bump_chunk_t *nm_bump_block(nebula_bump_t *b, const void *p, nm_bump_hdr_t *h) {
  nm_bump_lock(b);
  nm_bump_chunk_t *c = nm_bump_owner(b, p);
  nm_bump_unlock(b);
  if (c == NULL) return NULL;
  size_t off = (size_t)((uintptr_t)p - (uintptr_t)c->base);
  size_t cur = atomic_load_explicit(&c->cursor, memory_order_relaxed);
  if (off < NM_BUMP_HDR || off > cur || (uintptr_t)p % NM_BUMP_MIN_ALIGN != 0) return NULL;
  if (!nm_bump_hdr_read(p, h) || h->size > cur - off || h->back > off) return NULL;
  return c;
}

static bool nm_bump_op_deallocate(nebula_allocator_t *a, void *p) {
  nebula_bump_t *b = (nebula_bump_t *)a;
  nm_bump_hdr_t h;
  nm_bump_chunk_t *c = nm_bump_block(b, p, &h);
  if (c == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_POINTER, "nebula_deallocate", a, 0, 0, p,
                "pass a pointer this bump handed out since its last reset",
                "%p is not a live block of %s", p, b->name);
    return false;
  }
  size_t off = (size_t)((uint8_t *)p - c->base), end = off + h.size, prev = off - h.back;
  /* Only the most recent block of the current chunk gives its bytes back. */
  if (c != atomic_load_explicit(&b->current, memory_order_acquire) ||
      end != atomic_load_explicit(&c->cursor, memory_order_relaxed))
    return true;
  nm_bump_note_peak(b);
  /* Wiped before the cursor moves: once it has, another thread may take the bytes. */
  nm_bump_chunk_wipe(b, c, off - NM_BUMP_HDR, end);
  size_t expect = end;
  bool rewound = true;
  if (b->thread_safe)
    rewound = atomic_compare_exchange_strong_explicit(&c->cursor, &expect, prev, memory_order_acq_rel,
                                                      memory_order_relaxed);
  else
    atomic_store_explicit(&c->cursor, prev, memory_order_relaxed);
  if (!rewound && b->mark) {   /* another block came after it meanwhile: it stays allocated */
    nm_lib_unpoison(p, h.size);
    nm_bump_hdr_write(p, h.size, h.back);
  }
  return true;
}

static size_t nm_bump_op_usable(nebula_allocator_t *a, const void *p) {
  nm_bump_hdr_t h;
  return nm_bump_block((nebula_bump_t *)a, p, &h) != NULL ? h.size : 0;
}

static void *nm_bump_op_reallocate(nebula_allocator_t *a, void *p, size_t size, size_t align) {
  nebula_bump_t *b = (nebula_bump_t *)a;
  nm_bump_hdr_t h;
  nm_bump_chunk_t *c = nm_bump_block(b, p, &h);
  if (c == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_POINTER, "nebula_reallocate", a, size, align, p,
                       "pass a pointer this bump handed out since its last reset",
                       "%p is not a live block of %s", p, b->name);
  size_t eff = align ? align : b->align;
  size_t off = (size_t)((uint8_t *)p - c->base), end = off + h.size;
  /* In place: the most recent block, already aligned enough, room in the chunk. */
  if ((eff & (eff - 1)) == 0 && (uintptr_t)p % eff == 0 && size <= c->cap - off &&
      c == atomic_load_explicit(&b->current, memory_order_acquire)) {
    size_t expect = end, new_end = off + size;
    bool shrink = size < h.size, moved;
    if (shrink) {   /* the tail is wiped while still ours, as in deallocate */
      nm_bump_note_peak(b);
      nm_bump_chunk_wipe(b, c, off + size, end);
    }
    if (b->thread_safe) {
      moved = atomic_compare_exchange_strong_explicit(&c->cursor, &expect, new_end, memory_order_acq_rel,
                                                      memory_order_relaxed);
    } else {
      moved = atomic_load_explicit(&c->cursor, memory_order_relaxed) == end;
      if (moved) atomic_store_explicit(&c->cursor, new_end, memory_order_relaxed);
    }
    if (moved) {
      if (!shrink && b->mark) nm_lib_unpoison((uint8_t *)p + h.size, size - h.size);
      nm_bump_hdr_write(p, size, h.back);
      return p;
    }
    if (shrink && b->mark) nm_lib_unpoison((uint8_t *)p + size, h.size - size);
  }
  void *q = nm_bump_alloc(b, size, align, "nebula_reallocate");
  if (q == NULL) return NULL;
  memcpy(q, p, h.size < size ? h.size : size);
  return q;
}

static void nm_bump_op_state(nebula_allocator_t *a, nebula_allocator_state_t *out) {
  nebula_bump_state((nebula_bump_t *)a, out);
}

static void nm_bump_op_destroy(nebula_allocator_t *a) { nebula_bump_destroy((nebula_bump_t *)a); }

static const nebula_allocator_ops_t nm_bump_ops = {
  .allocate = nm_bump_op_allocate,
  .deallocate = nm_bump_op_deallocate,
  .reallocate = nm_bump_op_reallocate,
  .usable_size = nm_bump_op_usable,
  .state = nm_bump_op_state,
  .destroy = nm_bump_op_destroy,
};

NEBULA_API nebula_allocator_t *nebula_bump_allocator(nebula_bump_t *b) { return b ? &b->base : NULL; }

NEBULA_API void nebula_bump_state(nebula_bump_t *b, nebula_allocator_state_t *out) {
  memset(out, 0, sizeof *out);
  if (b == NULL) return;
  nm_bump_lock(b);
  nm_bump_chunk_t *cur = atomic_load_explicit(&b->current, memory_order_acquire);
  for (nm_bump_chunk_t *c = b->first; c != NULL; c = c->next) {
    out->used += atomic_load_explicit(&c->cursor, memory_order_relaxed);
    out->capacity += c->cap;
  }
  size_t cc = atomic_load_explicit(&cur->cursor, memory_order_relaxed);
  out->available = cc < cur->cap ? cur->cap - cc : 0;
  nm_bump_raise_peak(b, out->used);
  out->peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
  nm_bump_unlock(b);
  out->utilization = out->capacity ? (double)out->used / (double)out->capacity : 0.0;
}
