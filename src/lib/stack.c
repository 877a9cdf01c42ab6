/* The stack allocator: one mmap'd region, blocks pushed upward, each with a header that
 * links it to the block below. The links make misuse detectable: a pop that is not the
 * top, a pointer freed twice, a stale marker are found by walking down from the top,
 * before anything is changed. As in the bump, blocks are 8-aligned at least and headers
 * stay poisoned under ASan (read by no_sanitize_address helpers). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nebula/stack.h>

#include "lib/lib_internal.h"
#include "lib/poison.h"
#include "os/os.h"

#define NM_STACK_DEFAULT_CAPACITY ((size_t)1 << 20)
#define NM_STACK_MIN_ALIGN 8u
#define NM_STACK_MAX_ALIGN ((size_t)1 << 30)
#define NM_STACK_LIVE 0x4e4d534bu    /* "NMSK" */
#define NM_STACK_FREED 0x4e4d5346u   /* "NMSF" */
#define NM_STACK_NONE SIZE_MAX
#define NM_STACK_FILL 0xDF

typedef struct nm_stack_hdr {
  uint32_t magic;
  uint32_t unused;
  uint64_t serial;    /* unique per push: tells a block from a later one at the same place */
  size_t size;        /* bytes asked */
  size_t below;       /* header offset of the block below (NM_STACK_NONE: none) */
} nm_stack_hdr_t;

#define NM_STACK_HDR sizeof(nm_stack_hdr_t)
_Static_assert(NM_STACK_HDR % NM_STACK_MIN_ALIGN == 0, "headers keep blocks 8-aligned");

struct nebula_stack {
  nebula_allocator_t base;
  char name[32];
  uint8_t *mem;
  size_t cap, mapped;
  size_t top;           /* end of the top block (0: empty) */
  size_t top_block;     /* its header offset (NM_STACK_NONE: empty) */
  size_t align;
  size_t peak, live;
  uint64_t serial;
  nebula_budget_t *budget;
  bool mark, fill;
};

static const nebula_allocator_ops_t nm_stack_ops;

__attribute__((no_sanitize_address)) static nm_stack_hdr_t nm_stack_hdr_get(const nebula_stack_t *s,
                                                                            size_t h) {
  nm_stack_hdr_t out;
  const nm_stack_hdr_t *p = (const nm_stack_hdr_t *)(s->mem + h);
  out.magic = p->magic;
  out.unused = 0;
  out.serial = p->serial;
  out.size = p->size;
  out.below = p->below;
  return out;
}

__attribute__((no_sanitize_address)) static void nm_stack_hdr_put(nebula_stack_t *s, size_t h,
                                                                  const nm_stack_hdr_t *in) {
  nm_stack_hdr_t *p = (nm_stack_hdr_t *)(s->mem + h);
  p->magic = in->magic;
  p->unused = 0;
  p->serial = in->serial;
  p->size = in->size;
  p->below = in->below;
}

static size_t nm_stack_end_of(const nebula_stack_t *s, size_t block) {
  if (block == NM_STACK_NONE) return 0;
  return block + NM_STACK_HDR + nm_stack_hdr_get(s, block).size;
}

/* ---- creation ----------------------------------------------------------------------------- */

NEBULA_API nebula_stack_t *nebula_stack_create(const nebula_stack_options_t *options) {
  nebula_stack_options_t o = {0};
  if (options != NULL) o = *options;
  size_t align = o.alignment;
  if (!nm_lib_align_ok(&align) || align > NM_STACK_MAX_ALIGN)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_stack_create", NULL, o.capacity, o.alignment,
                       NULL, "use a power of two up to 1 GiB", "alignment %zu is not valid", o.alignment);
  size_t cap = o.capacity ? o.capacity : NM_STACK_DEFAULT_CAPACITY, page = nm_os_page_size();
  if (cap > SIZE_MAX - page)
    return nm_lib_fail(NEBULA_ERR_OVERFLOW, "nebula_stack_create", NULL, cap, align, NULL,
                       "lower the capacity", "%zu bytes cannot be mapped", cap);
  size_t mapped = (size_t)nm_lib_align_up(cap, page);
  if (o.budget != NULL && !nebula_budget_reserve(o.budget, mapped)) return NULL;   /* recorded */
  nebula_stack_t *s = calloc(1, sizeof *s);
  void *mem = s ? nm_os_map(mapped) : NULL;
  if (mem == NULL) {
    free(s);
    if (o.budget != NULL) nebula_budget_release(o.budget, mapped);
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_stack_create", NULL, cap, align, NULL,
                       "lower the capacity, or raise the process's memory limits",
                       "the OS refused %zu bytes", mapped);
  }
  snprintf(s->name, sizeof s->name, "%s", o.name != NULL && o.name[0] ? o.name : "stack");
  s->base.ops = &nm_stack_ops;
  s->base.name = s->name;
  s->mem = mem;
  s->cap = cap;
  s->mapped = mapped;
  s->top_block = NM_STACK_NONE;
  s->align = align;
  s->budget = o.budget;
  s->fill = o.poison;
#ifdef NM_LIB_ASAN
  s->mark = true;
#else
  s->mark = o.poison;
#endif
  if (s->mark) nm_lib_poison(mem, mapped);
  return s;
}

NEBULA_API void nebula_stack_destroy(nebula_stack_t *s) {
  if (s == NULL) return;
  if (s->mark) nm_lib_unpoison(s->mem, s->mapped);   /* a later mapping must not inherit it */
  nm_os_unmap(s->mem, s->mapped);
  if (s->budget != NULL) nebula_budget_release(s->budget, s->mapped);
  free(s);
}

/* ---- push and pop ------------------------------------------------------------------------- */

static void *nm_stack_push(nebula_stack_t *s, size_t size, size_t align, const char *fn) {
  size_t asked = align;
  if (align == 0) align = s->align;
  if ((align & (align - 1)) != 0 || align > NM_STACK_MAX_ALIGN)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, fn, &s->base, size, asked, NULL,
                       "use a power of two up to 1 GiB", "alignment %zu is not valid", asked);
  if (align < NM_STACK_MIN_ALIGN) align = NM_STACK_MIN_ALIGN;
  if (size > SIZE_MAX / 2)
    return nm_lib_fail(NEBULA_ERR_OVERFLOW, fn, &s->base, size, asked, NULL, "lower the request",
                       "%zu bytes plus alignment %zu overflow", size, align);
  uintptr_t base = (uintptr_t)s->mem;
  size_t start = (size_t)(nm_lib_align_up(base + s->top + NM_STACK_HDR, align) - base);
  if (start > s->cap || size > s->cap - start)
    return nm_lib_fail(NEBULA_ERR_CAPACITY, fn, &s->base, size, asked, NULL,
                       "raise the capacity, or release blocks sooner",
                       "capacity %zu bytes, %zu used, %zu asked (alignment %zu)", s->cap, s->top, size,
                       align);
  size_t h = start - NM_STACK_HDR;
  nm_stack_hdr_t hdr = { NM_STACK_LIVE, 0, ++s->serial, size, s->top_block };
  if (s->mark) nm_lib_unpoison(s->mem + h, NM_STACK_HDR + size);
  nm_stack_hdr_put(s, h, &hdr);
  if (s->mark) NM_ASAN_POISON(s->mem + h, NM_STACK_HDR);
  s->top_block = h;
  s->top = start + size;
  s->live++;
  if (s->top > s->peak) s->peak = s->top;
  return s->mem + start;
}

NEBULA_API void *nebula_stack_push(nebula_stack_t *s, size_t size, size_t align) {
  if (s == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_stack_push", NULL, size, align, NULL,
                       "pass a stack from nebula_stack_create", "the stack is NULL");
  return nm_stack_push(s, size, align, "nebula_stack_push");
}

NEBULA_API void *nebula_stack_alloc(nebula_stack_t *s, size_t size, size_t align) {
  return nebula_stack_push(s, size, align);
}

/* Pops the top block (there is one). */
static void nm_stack_pop_top(nebula_stack_t *s) {
  size_t h = s->top_block;
  nm_stack_hdr_t hdr = nm_stack_hdr_get(s, h);
  uint8_t *p = s->mem + h + NM_STACK_HDR;
  if (s->mark) {
    if (s->fill) memset(p, NM_STACK_FILL, hdr.size);
    nm_lib_poison(p, hdr.size);
  }
  hdr.magic = NM_STACK_FREED;
  nm_stack_hdr_put(s, h, &hdr);
  s->top_block = hdr.below;
  s->top = nm_stack_end_of(s, hdr.below);
  s->live--;
}

/* Is the block with header h live (on the chain from the top down)? */
static bool nm_stack_is_live(const nebula_stack_t *s, size_t h) {
  size_t b = s->top_block;
  while (b != NM_STACK_NONE && b > h) b = nm_stack_hdr_get(s, b).below;
  return b == h;
}

/* The header offset of p if it can be one of s's blocks, else NM_STACK_NONE. */
static size_t nm_stack_header_of(const nebula_stack_t *s, const void *p) {
  uintptr_t v = (uintptr_t)p, base = (uintptr_t)s->mem;
  if (v < base + NM_STACK_HDR || v > base + s->cap || v % NM_STACK_MIN_ALIGN != 0) return NM_STACK_NONE;
  return (size_t)(v - base) - NM_STACK_HDR;
}

static bool nm_stack_pop(nebula_stack_t *s, void *p, const char *fn) {
  if (p == NULL) return true;
  size_t h = nm_stack_header_of(s, p);
  if (h != NM_STACK_NONE && h == s->top_block) {
    nm_stack_pop_top(s);
    return true;
  }
  /* Not the top: say what it is, change nothing. */
  if (h != NM_STACK_NONE && nm_stack_is_live(s, h)) {
    size_t t = s->top_block;
    nm_lib_fail(NEBULA_ERR_ORDER, fn, &s->base, 0, 0, p, "free blocks in the reverse order of allocation",
                "%p is not on top: the top block is %p (%zu bytes, allocated after it)", p,
                (void *)(s->mem + t + NM_STACK_HDR), nm_stack_hdr_get(s, t).size);
    return false;
  }
  if (h != NM_STACK_NONE && nm_stack_hdr_get(s, h).magic == NM_STACK_FREED) {
    nm_lib_fail(NEBULA_ERR_DOUBLE_FREE, fn, &s->base, 0, 0, p, "free each block once",
                "%p was freed already (%s)", p,
                h + NM_STACK_HDR > s->top ? "it is above the top" : "its memory was reused");
    return false;
  }
  nm_lib_fail(NEBULA_ERR_INVALID_POINTER, fn, &s->base, 0, 0, p, "pass a pointer this stack handed out",
              "%p is not a live block of %s", p, s->name);
  return false;
}

NEBULA_API bool nebula_stack_pop(nebula_stack_t *s, void *p) {
  if (s == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_stack_pop", NULL, 0, 0, p,
                "pass a stack from nebula_stack_create", "the stack is NULL");
    return false;
  }
  return nm_stack_pop(s, p, "nebula_stack_pop");
}

NEBULA_API bool nebula_stack_free(nebula_stack_t *s, void *p) { return nebula_stack_pop(s, p); }

/* ---- markers ------------------------------------------------------------------------------ */

NEBULA_API nebula_stack_marker_t nebula_stack_mark(nebula_stack_t *s) {
  nebula_stack_marker_t m = {0};
  if (s == NULL) return m;
  m.owner = s;
  m.top = s->top;
  m.block = s->top_block;
  m.serial = s->top_block == NM_STACK_NONE ? 0 : nm_stack_hdr_get(s, s->top_block).serial;
  return m;
}

NEBULA_API bool nebula_stack_release(nebula_stack_t *s, nebula_stack_marker_t m) {
  if (s == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_stack_release", NULL, 0, 0, NULL,
                "pass a stack from nebula_stack_create", "the stack is NULL");
    return false;
  }
  if (m.owner != s) {
    nm_lib_fail(NEBULA_ERR_ORDER, "nebula_stack_release", &s->base, 0, 0, (void *)m.owner,
                "release a marker on the stack it was taken on", "the marker belongs to %s",
                m.owner == NULL ? "no stack" : "another stack");
    return false;
  }
  /* The block that was on top at the mark must still be live, the same one (serial). */
  if (m.block != NM_STACK_NONE &&
      (m.top > s->top || !nm_stack_is_live(s, m.block) || nm_stack_hdr_get(s, m.block).serial != m.serial)) {
    nm_lib_fail(NEBULA_ERR_ORDER, "nebula_stack_release", &s->base, 0, 0, NULL,
                "release markers in reverse order of marking",
                "stale marker (top %zu): the block it was taken above was freed since; the top is %zu", m.top,
                s->top);
    return false;
  }
  while (s->top_block != m.block) nm_stack_pop_top(s);
  return true;
}

NEBULA_API void nebula_stack_reset(nebula_stack_t *s) {
  if (s == NULL) return;
  while (s->top_block != NM_STACK_NONE) nm_stack_pop_top(s);
}

/* ---- the common interface ----------------------------------------------------------------- */

static void *nm_stack_op_allocate(nebula_allocator_t *a, size_t size, size_t align) {
  return nm_stack_push((nebula_stack_t *)a, size, align, "nebula_allocate");
}

static bool nm_stack_op_deallocate(nebula_allocator_t *a, void *p) {
  return nm_stack_pop((nebula_stack_t *)a, p, "nebula_deallocate");
}

static size_t nm_stack_op_usable(nebula_allocator_t *a, const void *p) {
  nebula_stack_t *s = (nebula_stack_t *)a;
  size_t h = nm_stack_header_of(s, p);
  if (h == NM_STACK_NONE || !nm_stack_is_live(s, h)) return 0;
  return nm_stack_hdr_get(s, h).size;
}

/* The top block moves to where a fresh push of size/align would go (usually its place). */
static void *nm_stack_op_reallocate(nebula_allocator_t *a, void *p, size_t size, size_t align) {
  nebula_stack_t *s = (nebula_stack_t *)a;
  size_t h = nm_stack_header_of(s, p);
  if (h == NM_STACK_NONE || h != s->top_block) {
    if (h != NM_STACK_NONE && nm_stack_is_live(s, h))
      return nm_lib_fail(NEBULA_ERR_ORDER, "nebula_reallocate", a, size, align, p,
                         "only the top block of a stack can be resized",
                         "%p is not on top: the top block is %p", p,
                         (void *)(s->mem + s->top_block + NM_STACK_HDR));
    return nm_lib_fail(NEBULA_ERR_INVALID_POINTER, "nebula_reallocate", a, size, align, p,
                       "pass a pointer this stack handed out", "%p is not a live block of %s", p, s->name);
  }
  size_t asked = align;
  if (align == 0) align = s->align;
  if ((align & (align - 1)) != 0 || align > NM_STACK_MAX_ALIGN)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_reallocate", a, size, asked, p,
                       "use a power of two up to 1 GiB", "alignment %zu is not valid", asked);
  if (align < NM_STACK_MIN_ALIGN) align = NM_STACK_MIN_ALIGN;
  nm_stack_hdr_t hdr = nm_stack_hdr_get(s, h);
  size_t below_end = nm_stack_end_of(s, hdr.below);
  uintptr_t base = (uintptr_t)s->mem;
  size_t start = (size_t)(nm_lib_align_up(base + below_end + NM_STACK_HDR, align) - base);
  if (size > SIZE_MAX / 2 || start > s->cap || size > s->cap - start)
    return nm_lib_fail(NEBULA_ERR_CAPACITY, "nebula_reallocate", a, size, asked, p,
                       "raise the capacity, or release blocks sooner",
                       "capacity %zu bytes, %zu used, %zu asked", s->cap, s->top, size);
  size_t old_start = h + NM_STACK_HDR, keep = hdr.size < size ? hdr.size : size;
  size_t lo = (start < old_start ? start : old_start) - NM_STACK_HDR;
  size_t hi = start + size > old_start + hdr.size ? start + size : old_start + hdr.size;
  if (s->mark) nm_lib_unpoison(s->mem + lo, hi - lo);
  if (start != old_start) memmove(s->mem + start, p, keep);
  if (s->mark) {
    if (s->fill && hi > start + size) memset(s->mem + start + size, NM_STACK_FILL, hi - (start + size));
    nm_lib_poison(s->mem + lo, hi - lo);
    nm_lib_unpoison(s->mem + start, size);
  }
  hdr.size = size;
  nm_stack_hdr_put(s, start - NM_STACK_HDR, &hdr);
  s->top_block = start - NM_STACK_HDR;
  s->top = start + size;
  if (s->top > s->peak) s->peak = s->top;
  return s->mem + start;
}

static void nm_stack_op_state(nebula_allocator_t *a, nebula_allocator_state_t *out) {
  nebula_stack_state((nebula_stack_t *)a, out);
}

static void nm_stack_op_destroy(nebula_allocator_t *a) { nebula_stack_destroy((nebula_stack_t *)a); }

static const nebula_allocator_ops_t nm_stack_ops = {
  .allocate = nm_stack_op_allocate,
  .deallocate = nm_stack_op_deallocate,
  .reallocate = nm_stack_op_reallocate,
  .usable_size = nm_stack_op_usable,
  .state = nm_stack_op_state,
  .destroy = nm_stack_op_destroy,
};

NEBULA_API nebula_allocator_t *nebula_stack_allocator(nebula_stack_t *s) { return s ? &s->base : NULL; }

NEBULA_API void nebula_stack_state(nebula_stack_t *s, nebula_allocator_state_t *out) {
  memset(out, 0, sizeof *out);
  if (s == NULL) return;
  out->used = s->top;
  out->capacity = s->cap;
  out->available = s->cap - s->top;
  out->peak = s->peak;
  out->allocations = s->live;
  out->utilization = s->cap ? (double)s->top / (double)s->cap : 0.0;
}
