/* Budgets: a tree of byte counters with limits. Reserve and release are lock-free: each
 * level's `used` moves by compare-and-swap, and a request that fails higher up undoes the
 * levels it already took, so no level ever holds more than its limit. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nebula/budget.h>

#include "lib/lib_internal.h"
#include "util/fmt.h"

#define NM_BUDGET_NAME_MAX 32
/* Levels whose reserved value is remembered for the peak update; deeper levels (rare) use
 * the value they hold after the reservation. */
#define NM_BUDGET_PEAK_DEPTH 32

struct nebula_budget {
  char name[NM_BUDGET_NAME_MAX];
  size_t limit;                 /* 0: no limit of its own */
  nebula_budget_t *parent;
  _Atomic size_t used;
  _Atomic size_t peak;
  _Atomic size_t failures;
  _Atomic size_t children;      /* live children: destroy refuses while any remain */
};

static const char nm_budget_suggest[] =
  "raise the budget's limit (or its parent's), or release what is charged to it first";

NEBULA_API nebula_budget_t *nebula_budget_create(const char *name, size_t limit, nebula_budget_t *parent) {
  if (name == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budget_create", NULL, limit, 0, NULL,
                       "give the budget a name: errors name every budget on the chain", "the name is NULL");
  nebula_budget_t *b = calloc(1, sizeof *b);
  if (b == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_budget_create", NULL, sizeof *b, 0, NULL,
                       "raise the process's memory limits", "calloc returned NULL");
  size_t n = strnlen(name, NM_BUDGET_NAME_MAX - 1);
  memcpy(b->name, name, n);
  b->limit = limit;
  b->parent = parent;
  if (parent != NULL) atomic_fetch_add_explicit(&parent->children, 1, memory_order_relaxed);
  return b;
}

NEBULA_API bool nebula_budget_destroy(nebula_budget_t *b) {
  if (b == NULL) return true;
  size_t kids = atomic_load_explicit(&b->children, memory_order_acquire);
  size_t used = atomic_load_explicit(&b->used, memory_order_acquire);
  if (kids != 0) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budget_destroy", NULL, 0, 0, b,
                "destroy the children first", "budget %s still has %zu children", b->name, kids);
    return false;
  }
  if (used != 0) {
    char txt[32];
    nm_buf_t t = NM_BUF(txt);
    nm_buf_bytes(&t, used);
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budget_destroy", NULL, used, 0, b,
                "release what is reserved (free the memory charged to it) first",
                "budget %s still has %.*s reserved", b->name, (int)t.len, txt);
    return false;
  }
  if (b->parent != NULL) atomic_fetch_sub_explicit(&b->parent->children, 1, memory_order_release);
  free(b);
  return true;
}

static void nm_budget_peak(nebula_budget_t *b, size_t v) {
  size_t p = atomic_load_explicit(&b->peak, memory_order_relaxed);
  while (p < v && !atomic_compare_exchange_weak_explicit(&b->peak, &p, v, memory_order_relaxed,
                                                          memory_order_relaxed)) {
  }
}

/* "requests (60.0 KiB + 8.0 KiB > 64.0 KiB) > total (100.0 KiB)": every budget from b to
 * the root, the exceeded one with its numbers, the others with their limit (if any). */
static void nm_budget_chain(const nebula_budget_t *b, const nebula_budget_t *over, size_t used, size_t n) {
  nebula_error_t *e = nm_lib_error_slot();
  nm_buf_t t = NM_BUF(e->budget_chain);
  t.cap--;   /* room for the NUL */
  for (const nebula_budget_t *c = b; c != NULL; c = c->parent) {
    if (c != b) nm_buf_str(&t, " > ");
    nm_buf_str(&t, c->name);
    if (c == over) {
      nm_buf_str(&t, " (");
      nm_buf_bytes(&t, used);
      nm_buf_str(&t, " + ");
      nm_buf_bytes(&t, n);
      nm_buf_str(&t, " > ");
      nm_buf_bytes(&t, c->limit);
      nm_buf_char(&t, ')');
    } else if (c->limit != 0) {
      nm_buf_str(&t, " (");
      nm_buf_bytes(&t, c->limit);
      nm_buf_char(&t, ')');
    }
  }
  e->budget_chain[t.len < t.cap ? t.len : t.cap] = '\0';
}

NEBULA_API bool nebula_budget_reserve(nebula_budget_t *b, size_t n) {
  if (b == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budget_reserve", NULL, n, 0, NULL, "pass a budget",
                "the budget is NULL");
    return false;
  }
  if (n == 0) return true;
  size_t took[NM_BUDGET_PEAK_DEPTH];
  unsigned depth = 0;
  nebula_budget_t *c = b;
  size_t old = 0;
  for (; c != NULL; c = c->parent, depth++) {
    old = atomic_load_explicit(&c->used, memory_order_relaxed);
    size_t want;
    bool fits;
    do {
      fits = !__builtin_add_overflow(old, n, &want) && (c->limit == 0 || want <= c->limit);
      if (!fits) break;
    } while (!atomic_compare_exchange_weak_explicit(&c->used, &old, want, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (!fits) break;
    if (depth < NM_BUDGET_PEAK_DEPTH) took[depth] = want;
  }
  if (c == NULL) {
    /* Peaks only after every level took its share: a request that fails is no peak. */
    unsigned i = 0;
    for (nebula_budget_t *p = b; p != NULL; p = p->parent, i++)
      nm_budget_peak(p, i < NM_BUDGET_PEAK_DEPTH ? took[i]
                                                 : atomic_load_explicit(&p->used, memory_order_relaxed));
    return true;
  }
  for (nebula_budget_t *p = b; p != c; p = p->parent)
    atomic_fetch_sub_explicit(&p->used, n, memory_order_release);
  atomic_fetch_add_explicit(&c->failures, 1, memory_order_relaxed);
  char u[24], r[24], l[24];
  nm_buf_t bu = NM_BUF(u), br = NM_BUF(r), bl = NM_BUF(l);
  nm_buf_bytes(&bu, old);
  nm_buf_bytes(&br, n);
  nm_buf_bytes(&bl, c->limit);
  if (c->limit == 0)   /* no limit: only size_t itself overflowed */
    nm_lib_fail(NEBULA_ERR_BUDGET, "nebula_budget_reserve", NULL, n, 0, NULL, nm_budget_suggest,
                "budget %s: %.*s used + %.*s asked overflows a size_t", c->name, (int)bu.len, u,
                (int)br.len, r);
  else
    nm_lib_fail(NEBULA_ERR_BUDGET, "nebula_budget_reserve", NULL, n, 0, NULL, nm_budget_suggest,
                "budget %s: %.*s used + %.*s asked > limit %.*s", c->name, (int)bu.len, u, (int)br.len, r,
                (int)bl.len, l);
  nm_budget_chain(b, c, old, n);
  return false;
}

NEBULA_API bool nebula_budget_release(nebula_budget_t *b, size_t n) {
  if (b == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budget_release", NULL, n, 0, NULL, "pass a budget",
                "the budget is NULL");
    return false;
  }
  if (n == 0) return true;
  bool ok = true;
  const nebula_budget_t *short_one = NULL;
  size_t short_used = 0;
  for (nebula_budget_t *c = b; c != NULL; c = c->parent) {
    size_t old = atomic_load_explicit(&c->used, memory_order_relaxed);
    size_t want;
    do {
      want = old >= n ? old - n : 0;
    } while (!atomic_compare_exchange_weak_explicit(&c->used, &old, want, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (old < n && ok) {
      ok = false;
      short_one = c;
      short_used = old;
    }
  }
  if (!ok) {
    char u[24], r[24];
    nm_buf_t bu = NM_BUF(u), br = NM_BUF(r);
    nm_buf_bytes(&bu, short_used);
    nm_buf_bytes(&br, n);
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budget_release", NULL, n, 0, NULL,
                "release only what was reserved (each release matches a reserve)",
                "budget %s: releasing %.*s with %.*s reserved (clamped at 0)", short_one->name,
                (int)br.len, r, (int)bu.len, u);
  }
  return ok;
}

NEBULA_API size_t nebula_budget_used(const nebula_budget_t *b) {
  return b == NULL ? 0 : atomic_load_explicit(&((nebula_budget_t *)b)->used, memory_order_relaxed);
}

NEBULA_API size_t nebula_budget_peak(const nebula_budget_t *b) {
  return b == NULL ? 0 : atomic_load_explicit(&((nebula_budget_t *)b)->peak, memory_order_relaxed);
}

NEBULA_API size_t nebula_budget_limit(const nebula_budget_t *b) { return b == NULL ? 0 : b->limit; }

NEBULA_API size_t nebula_budget_available(const nebula_budget_t *b) {
  size_t room = SIZE_MAX;
  for (const nebula_budget_t *c = b; c != NULL; c = c->parent) {
    if (c->limit == 0) continue;
    size_t used = atomic_load_explicit(&((nebula_budget_t *)c)->used, memory_order_relaxed);
    size_t left = used < c->limit ? c->limit - used : 0;
    if (left < room) room = left;
  }
  return b == NULL ? 0 : room;
}

NEBULA_API const char *nebula_budget_name(const nebula_budget_t *b) { return b == NULL ? "(none)" : b->name; }

NEBULA_API nebula_budget_t *nebula_budget_parent(const nebula_budget_t *b) {
  return b == NULL ? NULL : b->parent;
}

NEBULA_API size_t nebula_budget_failures(const nebula_budget_t *b) {
  return b == NULL ? 0 : atomic_load_explicit(&((nebula_budget_t *)b)->failures, memory_order_relaxed);
}

/* ---- nebula_budgeted: any allocator, charged to a budget --------------------------------- */

typedef struct {
  nebula_allocator_t base;
  nebula_allocator_t *inner;
  nebula_budget_t *budget;
  _Atomic size_t used;          /* bytes this wrapper has charged */
  _Atomic size_t peak;
  _Atomic size_t live;
  char name[80];
} nm_budgeted_t;

static void nm_budgeted_count(nm_budgeted_t *w, size_t add, size_t sub, int blocks) {
  size_t now = atomic_fetch_add_explicit(&w->used, add, memory_order_relaxed) + add;
  if (sub) now = atomic_fetch_sub_explicit(&w->used, sub, memory_order_relaxed) - sub;
  if (blocks > 0) atomic_fetch_add_explicit(&w->live, 1, memory_order_relaxed);
  if (blocks < 0) atomic_fetch_sub_explicit(&w->live, 1, memory_order_relaxed);
  size_t p = atomic_load_explicit(&w->peak, memory_order_relaxed);
  while (p < now && !atomic_compare_exchange_weak_explicit(&w->peak, &p, now, memory_order_relaxed,
                                                            memory_order_relaxed)) {
  }
}

static void *nm_budgeted_allocate(nebula_allocator_t *a, size_t size, size_t align) {
  nm_budgeted_t *w = (nm_budgeted_t *)a;
  void *p = w->inner->ops->allocate(w->inner, size, align);
  if (p == NULL) return NULL;   /* the inner allocator's error */
  size_t u = w->inner->ops->usable_size(w->inner, p);
  if (!nebula_budget_reserve(w->budget, u)) {
    /* Keep the budget's error over anything freeing might record. */
    nebula_error_t saved = *nm_lib_error_slot();
    w->inner->ops->deallocate(w->inner, p);
    saved.allocator = w->name;
    saved.alignment = align;
    *nm_lib_error_slot() = saved;
    nebula_allocator_state(a, &nm_lib_error_slot()->state);
    return NULL;
  }
  nm_budgeted_count(w, u, 0, 1);
  return p;
}

static bool nm_budgeted_deallocate(nebula_allocator_t *a, void *p) {
  nm_budgeted_t *w = (nm_budgeted_t *)a;
  size_t u = w->inner->ops->usable_size(w->inner, p);
  if (!w->inner->ops->deallocate(w->inner, p)) return false;
  nebula_budget_release(w->budget, u);
  nm_budgeted_count(w, 0, u, -1);
  return true;
}

/* Shrinking goes through inner (in place where it can) and releases the difference.
 * Growing allocates the new block, charged in full, before the old one is returned: the
 * usable size of a grown block is unknown until it exists, and a failure must leave p and
 * its charge as they were. */
static void *nm_budgeted_reallocate(nebula_allocator_t *a, void *p, size_t size, size_t align) {
  nm_budgeted_t *w = (nm_budgeted_t *)a;
  size_t old = w->inner->ops->usable_size(w->inner, p);
  if (old == 0)
    return nm_lib_fail(NEBULA_ERR_INVALID_POINTER, "nebula_reallocate", a, size, align, p,
                       "pass a pointer this allocator handed out", "%p is not a block of %s", p, w->name);
  if (size > old || w->inner->ops->reallocate == NULL) {
    void *q = nm_budgeted_allocate(a, size, align);
    if (q == NULL) return NULL;
    memcpy(q, p, old < size ? old : size);
    nm_budgeted_deallocate(a, p);
    return q;
  }
  void *q = w->inner->ops->reallocate(w->inner, p, size, align);
  if (q == NULL) return NULL;
  size_t now = w->inner->ops->usable_size(w->inner, q);
  if (now <= old) {
    nebula_budget_release(w->budget, old - now);
    nm_budgeted_count(w, 0, old - now, 0);
  } else if (nebula_budget_reserve(w->budget, now - old)) {
    /* A shrink that moved to a larger block (a stricter alignment): charge the rest. */
    nm_budgeted_count(w, now - old, 0, 0);
  } else {
    /* p is gone; hand the block back and report the budget (the caller keeps nothing). */
    nebula_error_t saved = *nm_lib_error_slot();
    w->inner->ops->deallocate(w->inner, q);
    nebula_budget_release(w->budget, old);
    nm_budgeted_count(w, 0, old, -1);
    *nm_lib_error_slot() = saved;
    return NULL;
  }
  return q;
}

static size_t nm_budgeted_usable(nebula_allocator_t *a, const void *p) {
  nm_budgeted_t *w = (nm_budgeted_t *)a;
  return w->inner->ops->usable_size(w->inner, p);
}

/* used/peak/allocations: what this wrapper charged; available: the budget's room. */
static void nm_budgeted_state(nebula_allocator_t *a, nebula_allocator_state_t *out) {
  nm_budgeted_t *w = (nm_budgeted_t *)a;
  memset(out, 0, sizeof *out);
  out->used = atomic_load_explicit(&w->used, memory_order_relaxed);
  out->peak = atomic_load_explicit(&w->peak, memory_order_relaxed);
  out->allocations = atomic_load_explicit(&w->live, memory_order_relaxed);
  out->available = nebula_budget_available(w->budget);
  out->capacity = out->available > SIZE_MAX - out->used ? SIZE_MAX : out->used + out->available;
  out->utilization = out->capacity ? (double)out->used / (double)out->capacity : 0.0;
}

static void nm_budgeted_destroy(nebula_allocator_t *a) { free(a); }

static const nebula_allocator_ops_t nm_budgeted_ops = {
  .allocate = nm_budgeted_allocate,
  .deallocate = nm_budgeted_deallocate,
  .reallocate = nm_budgeted_reallocate,
  .usable_size = nm_budgeted_usable,
  .state = nm_budgeted_state,
  .destroy = nm_budgeted_destroy,
};

NEBULA_API nebula_allocator_t *nebula_budgeted(nebula_allocator_t *inner, nebula_budget_t *budget) {
  if (inner == NULL || budget == NULL)
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_budgeted", inner, 0, 0, NULL,
                       "pass an allocator and a budget", "the %s is NULL",
                       inner == NULL ? "allocator" : "budget");
  nm_budgeted_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_budgeted", NULL, sizeof *w, 0, NULL,
                       "raise the process's memory limits", "calloc returned NULL");
  w->base.ops = &nm_budgeted_ops;
  w->inner = inner;
  w->budget = budget;
  nm_buf_t t = NM_BUF(w->name);
  t.cap--;
  nm_buf_str(&t, nebula_allocator_name(inner));
  nm_buf_char(&t, '@');
  nm_buf_str(&t, budget->name);
  w->name[t.len < t.cap ? t.len : t.cap] = '\0';
  w->base.name = w->name;
  return &w->base;
}
