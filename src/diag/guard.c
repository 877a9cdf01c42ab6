#include "diag/guard.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "diag/backtrace.h"
#include "diag/budget.h"
#include "diag/trace_depot.h"
#include "heap/alloc.h"
#include "heap/router.h"
#include "os/os.h"
#include "pool/segmap.h"
#include "pool/segment.h"
#include "system/system.h"

bool nm_guard_on;

#define NM_CANARY_MIN   8u       /* guard bytes after the request, at least */
#define NM_CANARY_BYTE  0xCBu
#define NM_QUARANTINE   64u      /* freed blocks each thread holds back */
#define NM_QUARANTINE_BLOCK ((size_t)16 << 10)   /* bigger blocks are not held back */
#define NM_JUNK_CHECKED 64u      /* bytes of a quarantined block checked for late writes */
/* Tags: the block's user pointer xor one of these, so a stale copy elsewhere never matches. */
#define NM_TAG_LIVE  0x4e6562756c614cull
#define NM_TAG_FREED 0x4e6562756c6146ull

typedef struct nm_trailer_s {
  uint64_t tag;
  uint64_t size;                 /* bytes asked */
  /* With alloc_backtrace only: where it was allocated, the call site (the return address
   * of the entry point) or a stored trace (nm_trace_t *, with NM_WHERE_TRACE set: user
   * addresses never have the top bit). */
  uintptr_t where;
} nm_trailer_t;

/* alloc_backtrace=sample: a whole backtrace (about 1.5 us: libgcc's unwinder) for one block
 * in NM_TRACE_EVERY on average, at random intervals so that no allocation pattern is always
 * missed; the others record their call site only. */
#define NM_TRACE_EVERY 256u
#define NM_WHERE_TRACE ((uintptr_t)1 << 63)
static __thread uint32_t nm_trace_left, nm_trace_rng;

static bool nm_canary;
static size_t nm_trailer_size;   /* 16, or sizeof(nm_trailer_t) with alloc_backtrace */
static pthread_key_t nm_quarantine_key;

static void nm_quarantine_flush(void *unused);

static const char *nm_foreign_detail(const void *p);

/* The heap's own checks (every free, in production too), reported like the guard's. */
static void nm_heap_misuse_seen(nm_bad_free_t kind, void *p, bool in_realloc) {
  nm_misuse_report_t m = { .entry = in_realloc ? NM_ENTRY_REALLOC : NM_ENTRY_FREE, .ptr = p,
                           .block_size = SIZE_MAX };
  switch (kind) {
  case NM_BAD_DOUBLE_FREE:
    m.kind = NM_MISUSE_DOUBLE_FREE;
    m.block = p;
    m.detail = "the block is on its page's free list already";
    break;
  case NM_BAD_INTERIOR:
    m.kind = NM_MISUSE_INTERIOR;
    m.detail = "it points inside a block of nebula's, not at its start";
    break;
  case NM_BAD_NO_BLOCK:
    m.kind = NM_MISUSE_INVALID_FREE;
    m.detail = "it points into nebula's memory where no block is allocated (freed already, "
               "or never handed out)";
    break;
  default:
    m.kind = NM_MISUSE_INVALID_FREE;
    m.detail = nm_foreign_detail(p);
    if (m.detail == NULL)
      m.detail = "no allocator's block starts there (the system allocator's header is not valid)";
    break;
  }
  nm_report_misuse(&m);
}

void nm_guard_init(void) {
  nm_heap_misuse_hook = nm_heap_misuse_seen;
  nm_budget_init(nm_route.opt.budget);
  bool budgets = false;
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++) budgets |= nm_route.opt.budget[i] != 0;
  nm_canary = nm_route.opt.canary;
  nm_trailer_size = !nm_canary ? 0 : nm_route.opt.alloc_backtrace ? sizeof(nm_trailer_t) : 16;
  if (nm_canary && pthread_key_create(&nm_quarantine_key, nm_quarantine_flush) != 0)
    nm_canary = false, nm_trailer_size = 0;
  nm_guard_on = budgets || nm_canary;
  /* The first backtrace loads libgcc's unwinder (dlopen): do it now, during start-up,
   * rather than inside some later malloc of the program's. */
  if (nm_trailer_size == sizeof(nm_trailer_t)) {
    void *warm[2];
    nm_backtrace_capture(warm, 2, 0);
  }
}

/* ---- raw blocks ------------------------------------------------------------------------- */

/* The backend a block is charged to: a large block (a pool slice) is the pool's. */
static nm_backend_t nm_backend_of(const void *p) {
  if (!nm_segment_holds(p)) return NM_BACKEND_SYSTEM;
  return nm_segment_page_of(p)->class_idx == NM_CLASS_BUMP ? NM_BACKEND_BUMP : NM_BACKEND_POOL;
}

static void *nm_raw_alloc(size_t m, size_t alignment, bool zero) {
  if (alignment > NM_ALIGN) return nm_memalign(alignment, m);
  return zero ? nm_calloc(1, m) : nm_malloc(m);
}

static void *nm_raw_system(size_t m, size_t alignment, bool zero) {
  return nm_system_alloc_counted(m, alignment, zero);
}

/* Release a block's budget and give it back to its backend. */
static void nm_raw_free(void *p, size_t usable) {
  nm_budget_release(nm_backend_of(p), usable);
  nm_free(p);
}

/* ---- failure ---------------------------------------------------------------------------- */

static void nm_fill_why(nm_oom_report_t *r, size_t bytes) {
  int os = nm_os_map_error();
  if (os != 0) {
    r->why = NM_WHY_OS;
    r->os_errno = os;
  } else if (nm_router_backend(bytes) == NM_BACKEND_SYSTEM) {
    r->why = NM_WHY_SYSTEM;
  } else {
    r->why = NM_WHY_OS;
    r->os_errno = ENOMEM;
  }
}

static void *nm_guard_fail(nm_oom_report_t *r) {
  nm_report_oom(r);
  errno = ENOMEM;
  return NULL;
}

void *nm_oom(nm_entry_t entry, size_t n, size_t count, size_t alignment) {
  nm_oom_report_t r = { .entry = entry, .size = n, .count = count, .alignment = alignment };
  size_t total = n;
  if ((count != 0 && __builtin_mul_overflow(count, n, &total)) || total > PTRDIFF_MAX) {
    r.why = NM_WHY_TOO_LARGE;
    return nm_guard_fail(&r);
  }
  nm_fill_why(&r, total);
  if (nm_route.opt.oom == NM_OOM_FALLBACK && nm_router_backend(total) != NM_BACKEND_SYSTEM) {
    void *p = nm_raw_system(total, alignment, count != 0);
    if (p != NULL) {
      r.fallback = true;
      nm_report_oom(&r);
      return p;
    }
  }
  return nm_guard_fail(&r);
}

/* ---- canaries and trailers -------------------------------------------------------------- */

/* Where the block of trailer t was allocated, for a report. */
static void nm_trace_into(const nm_trailer_t *t, nm_misuse_report_t *m) {
  if (nm_trailer_size != sizeof *t || t->where == 0) return;
  if (t->where & NM_WHERE_TRACE) {
    const nm_trace_t *trace = (const nm_trace_t *)(t->where & ~NM_WHERE_TRACE);
    m->alloc_trace = trace->ips;
    m->alloc_frames = (int)trace->frames;
  } else {
    m->alloc_trace = (void *const *)&t->where;
    m->alloc_frames = 1;
    m->alloc_site_only = true;
  }
}

/* The trailer's trace: whole (alloc_backtrace=full, or this block is sampled) or the call
 * site only. */
static void nm_trace_record(nm_trailer_t *t, void *caller) {
  t->where = (uintptr_t)caller;
  if (nm_route.opt.alloc_backtrace == NM_ALLOC_BACKTRACE_SAMPLE && nm_trace_left > 0) {
    nm_trace_left--;
    return;
  }
  if (nm_route.opt.alloc_backtrace == NM_ALLOC_BACKTRACE_SAMPLE) {
    /* A fixed seed: the same program samples the same blocks in every run. */
    uint32_t x = nm_trace_rng ? nm_trace_rng : 0x9e3779b9u;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;   /* xorshift32 */
    nm_trace_rng = x;
    nm_trace_left = x % (2 * NM_TRACE_EVERY - 1);   /* 0..510: one block in 256 on average */
  }
  void *ips[NM_TRACE_FRAMES];
  int n = nm_backtrace_capture(ips, NM_TRACE_FRAMES, 1);
  const nm_trace_t *stored = n > 0 ? nm_trace_depot_put(ips, n) : NULL;
  if (stored != NULL) t->where = (uintptr_t)stored | NM_WHERE_TRACE;
}

static void nm_trailer_read(const uint8_t *at, nm_trailer_t *t) {
  memset(t, 0, sizeof *t);
  memcpy(t, at, nm_trailer_size);
}

/* Guard bytes and trailer for a block of n bytes asked at p, usable bytes u. */
static void nm_arm(uint8_t *p, size_t n, size_t u, void *caller) {
  size_t at = u - nm_trailer_size;
  memset(p + n, NM_CANARY_BYTE, at - n);
  nm_trailer_t t;
  memset(&t, 0, sizeof t);
  t.tag = (uintptr_t)p ^ NM_TAG_LIVE;
  t.size = n;
  if (nm_trailer_size == sizeof t) nm_trace_record(&t, caller);
  memcpy(p + at, &t, nm_trailer_size);
}

void *nm_guard_alloc(nm_entry_t entry, size_t n, size_t alignment, bool zero, void *caller) {
  nm_oom_report_t r = { .entry = entry, .size = n, .alignment = alignment };
  size_t m = n;
  if (nm_canary && __builtin_add_overflow(n, NM_CANARY_MIN + nm_trailer_size, &m)) m = SIZE_MAX;
  if (m > PTRDIFF_MAX) {
    r.why = NM_WHY_TOO_LARGE;
    return nm_guard_fail(&r);
  }
  void *p = nm_raw_alloc(m, alignment, zero);
  if (p == NULL) {
    nm_fill_why(&r, m);
    if (nm_route.opt.oom == NM_OOM_FALLBACK && nm_router_backend(m) != NM_BACKEND_SYSTEM)
      p = nm_raw_system(m, alignment, zero);
    if (p == NULL) return nm_guard_fail(&r);
    r.fallback = true;
  }
  size_t u = nm_usable_size(p);
  nm_backend_t backend = nm_backend_of(p);
  /* The report's own needs (libunwind) must not fail on the budget it reports. */
  unsigned over = nm_budget_charge(backend, u, nm_report_busy());
  if (over != NM_BUDGET_SLOTS) {
    nm_free(p);
    r.why = NM_WHY_BUDGET;
    r.budget = over;
    r.charge = u;
    r.fallback = false;
    p = NULL;
    /* oom=fallback: what a pool or bump budget refuses, the system backend may take */
    if (nm_route.opt.oom == NM_OOM_FALLBACK && over != NM_BUDGET_TOTAL && backend != NM_BACKEND_SYSTEM) {
      p = nm_raw_system(m, alignment, zero);
      if (p != NULL) {
        u = nm_usable_size(p);
        if (nm_budget_charge(NM_BACKEND_SYSTEM, u, false) == NM_BUDGET_SLOTS) {
          r.fallback = true;
        } else {
          nm_free(p);
          p = NULL;
        }
      }
    }
    if (p == NULL) return nm_guard_fail(&r);
  }
  if (r.fallback) nm_report_oom(&r);
  if (nm_canary) nm_arm(p, n, u, caller);
  return p;
}

/* ---- checking a pointer ----------------------------------------------------------------- */

/* A live block, as free found it. */
typedef struct nm_live_s {
  uint8_t *p;
  size_t usable;        /* raw usable size from p */
  nm_trailer_t t;
} nm_live_t;

static __thread char nm_detail[320];

static void nm_misuse(nm_misuse_kind_t kind, nm_entry_t entry, const void *p, const void *block,
                      size_t size, const char *detail, const nm_trailer_t *t) {
  nm_misuse_report_t m = { .kind = kind, .entry = entry, .ptr = p, .block = block,
                           .block_size = size, .detail = detail };
  if (t != NULL) nm_trace_into(t, &m);
  nm_report_misuse(&m);
}

/* Judge the trailer found for p inside [block, block + span). */
static bool nm_judge(nm_entry_t entry, uint8_t *p, uint8_t *block, size_t span, nm_live_t *out) {
  if (span < nm_trailer_size + NM_CANARY_MIN) {
    nm_misuse(NM_MISUSE_INVALID_FREE, entry, p, NULL, SIZE_MAX,
              "the pointer is in nebula's memory, but not at a block nebula handed out", NULL);
    return false;
  }
  nm_trailer_t t;
  nm_trailer_read(block + span - nm_trailer_size, &t);
  uintptr_t live = t.tag ^ NM_TAG_LIVE, freed = t.tag ^ NM_TAG_FREED;
  if (live == (uintptr_t)p && t.size <= (size_t)(block + span - p) - nm_trailer_size) {
    out->p = p;
    out->usable = (size_t)(block + span - p);
    out->t = t;
    return true;
  }
  if (freed == (uintptr_t)p) {
    nm_misuse(NM_MISUSE_DOUBLE_FREE, entry, p, p, t.size, NULL, &t);
    return false;
  }
  if (live >= (uintptr_t)block && live < (uintptr_t)(block + span)) {
    nm_misuse(NM_MISUSE_INTERIOR, entry, p, (void *)live, t.size,
              "only the pointer the allocation returned may be passed to free or realloc", &t);
    return false;
  }
  if (freed >= (uintptr_t)block && freed < (uintptr_t)(block + span)) {
    nm_misuse(NM_MISUSE_INTERIOR, entry, p, (void *)freed, t.size,
              "the pointer is inside a block that was already freed", &t);
    return false;
  }
  nm_misuse(NM_MISUSE_INVALID_FREE, entry, p, NULL, SIZE_MAX,
            "not a block nebula handed out, or the block's trailer was overwritten (a write "
            "far past its end)", NULL);
  return false;
}

/* This thread's stack, found once per thread (pthread_getattr_np may allocate: fine here,
 * no lock of ours is held). */
static __thread uintptr_t nm_stack_lo, nm_stack_hi;

static bool nm_on_my_stack(uintptr_t a) {
  if (nm_stack_hi == 0) {
    pthread_attr_t attr;
    void *base = NULL;
    size_t size = 0;
    nm_stack_hi = 1;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      if (pthread_attr_getstack(&attr, &base, &size) == 0) {
        nm_stack_lo = (uintptr_t)base;
        nm_stack_hi = (uintptr_t)base + size;
      }
      pthread_attr_destroy(&attr);
    }
  }
  return a >= nm_stack_lo && a < nm_stack_hi;
}

/* Where a foreign pointer points, for the report; NULL if it could be a system block. */
static const char *nm_foreign_detail(const void *p) {
  uintptr_t a = (uintptr_t)p;
  if (nm_on_my_stack(a)) return "it points into this thread's stack (a local variable)";
  Dl_info info;
  if (dladdr(p, &info) != 0 && info.dli_fname != NULL) {
    nm_buf_t b = NM_BUF(nm_detail);
    nm_buf_str(&b, "it points into the static data of ");
    nm_buf_str(&b, info.dli_fname[0] ? info.dli_fname : "the program");
    if (info.dli_sname != NULL) {
      nm_buf_str(&b, " (near '");
      nm_buf_str(&b, info.dli_sname);
      nm_buf_str(&b, "')");
    }
    nm_buf_char(&b, '\0');
    nm_detail[sizeof nm_detail - 1] = '\0';
    return nm_detail;
  }
  if (a & (NM_ALIGN - 1)) return "no allocator returns a pointer that is not 16-byte aligned";
  return NULL;
}

/* True if p is a live guarded block (filled in *out); otherwise the misuse is reported. */
static bool nm_check(nm_entry_t entry, void *ptr, nm_live_t *out) {
  uint8_t *p = ptr;
  if (!nm_segment_holds(p)) {
    const char *detail = nm_foreign_detail(p);
    if (detail != NULL) {
      nm_misuse(NM_MISUSE_INVALID_FREE, entry, p, NULL, SIZE_MAX, detail, NULL);
      return false;
    }
    size_t u = nm_system_block_size(p);   /* 0 if glibc's checks refuse the header */
    if (u > ((size_t)1 << 46)) u = 0;
    return nm_judge(entry, p, p, u, out);
  }
  nm_page_t *pg = nm_segment_page_of(p);
  uint8_t *seg = (uint8_t *)nm_segment_of(p);
  if (p < seg + NM_SLICE_SIZE) {
    nm_misuse(NM_MISUSE_INVALID_FREE, entry, p, NULL, SIZE_MAX,
              "it points into a segment header of nebula's, where no block is allocated", NULL);
    return false;
  }
  if (pg->slice_count == 0) {
    /* Blocks above 16 KiB skip the quarantine: their page is free at once. A pointer at a
     * page's start is almost surely such a block, freed again. */
    bool page_start = ((uintptr_t)p & (NM_SLICE_SIZE - 1)) == 0;
    nm_misuse(page_start ? NM_MISUSE_DOUBLE_FREE : NM_MISUSE_INVALID_FREE, entry, p, NULL, SIZE_MAX,
              page_start ? "the block's page is free: a block above 16 KiB freed a second time "
                           "(it does not wait in the quarantine, so its size is gone)"
                         : "it points into nebula's memory where no block is allocated", NULL);
    return false;
  }
  if (pg->class_idx == NM_CLASS_BUMP) {
    uint8_t *end = pg->start + pg->capacity;
    size_t u = 0;
    if (p >= pg->start + 16 && p < end && ((uintptr_t)p & (NM_ALIGN - 1)) == 0) u = nm_bump_usable(p);
    if (u == 0 || u > (size_t)(end - p) || (u & (NM_ALIGN - 1)) != 0) {
      nm_misuse(NM_MISUSE_INTERIOR, entry, p, NULL, SIZE_MAX,
                "it points inside a bump region, but not at the start of a block", NULL);
      return false;
    }
    return nm_judge(entry, p, p, u, out);
  }
  uint8_t *block = (uint8_t *)nm_page_block_of(pg, p);
  return nm_judge(entry, p, block, pg->block_size, out);
}

/* Index of the first byte of p[0..n) that is not `byte`, or n. Eight bytes a compare: the
 * guard checks every canary and quarantined block this way. */
static size_t nm_first_not(const uint8_t *p, size_t n, uint8_t byte) {
  uint64_t all = 0x0101010101010101ull * byte;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    if (w != all) break;
  }
  while (i < n && p[i] == byte) i++;
  return i;
}

/* The guard bytes after the request must be intact. */
static bool nm_check_canary(nm_entry_t entry, const nm_live_t *b) {
  size_t at = b->usable - nm_trailer_size;
  size_t i = b->t.size + nm_first_not(b->p + b->t.size, at - b->t.size, NM_CANARY_BYTE);
  if (i < at) {
    nm_misuse_report_t m = { .kind = NM_MISUSE_OVERFLOW, .entry = entry, .ptr = b->p,
                             .block = b->p, .block_size = b->t.size, .offset = i,
                             .found = b->p[i], .expected = NM_CANARY_BYTE };
    nm_trace_into(&b->t, &m);
    nm_report_misuse(&m);
    return false;
  }
  return true;
}

/* ---- quarantine ------------------------------------------------------------------------- */

typedef struct nm_held_s {
  uint8_t *p;
  size_t size;      /* bytes asked */
  size_t usable;
} nm_held_t;

static __thread nm_held_t nm_held[NM_QUARANTINE];
static __thread unsigned nm_held_next;
static __thread bool nm_held_keyed;

/* Leave the quarantine: a write since the free shows in the junk; then really free. */
static void nm_release(const nm_held_t *h) {
  if (nm_route.opt.junk) {
    size_t check = h->size < NM_JUNK_CHECKED ? h->size : NM_JUNK_CHECKED;
    size_t i = nm_first_not(h->p, check, NM_JUNK_BYTE);
    if (i < check) {
      nm_misuse_report_t m = { .kind = NM_MISUSE_WRITE_AFTER_FREE, .entry = NM_ENTRY_FREE,
                               .ptr = h->p, .block = h->p, .block_size = h->size, .offset = i,
                               .found = h->p[i], .expected = NM_JUNK_BYTE,
                               .detail = "found when the block left the quarantine; the "
                                         "backtrace is of the free that pushed it out" };
      nm_report_misuse(&m);
    }
  }
  nm_raw_free(h->p, h->usable);
}

static void nm_quarantine_flush(void *unused) {
  (void)unused;
  for (unsigned i = 0; i < NM_QUARANTINE; i++) {
    if (nm_held[i].p == NULL) continue;
    nm_held_t h = nm_held[i];
    nm_held[i].p = NULL;
    nm_release(&h);
  }
  nm_held_keyed = false;
}

static void nm_quarantine(const nm_live_t *b) {
  if (b->usable > NM_QUARANTINE_BLOCK) {   /* holding big blocks back costs too much memory */
    nm_raw_free(b->p, b->usable);
    return;
  }
  if (!nm_held_keyed) {
    nm_held_keyed = true;   /* before the call: pthread_setspecific may allocate */
    pthread_setspecific(nm_quarantine_key, (void *)1);
  }
  nm_held_t out = nm_held[nm_held_next];
  nm_held[nm_held_next] = (nm_held_t){ b->p, b->t.size, b->usable };
  nm_held_next = (nm_held_next + 1) % NM_QUARANTINE;
  if (out.p != NULL) nm_release(&out);
}

/* ---- free, realloc, usable size --------------------------------------------------------- */

void nm_guard_free(nm_entry_t entry, void *p) {
  if (p == NULL || nm_bootstrap_contains(p)) return;
  if (!nm_canary) {
    nm_raw_free(p, nm_usable_size(p));
    return;
  }
  nm_live_t b;
  if (!nm_check(entry, p, &b)) return;   /* misuse=report: the call does nothing */
  if (!nm_check_canary(entry, &b)) return;
  uint64_t tag = (uintptr_t)b.p ^ NM_TAG_FREED;
  memcpy(b.p + b.usable - nm_trailer_size, &tag, sizeof tag);
  if (nm_route.opt.junk) memset(b.p, NM_JUNK_BYTE, nm_debug_fill_len(b.t.size));
  nm_quarantine(&b);
}

void *nm_guard_realloc(nm_entry_t entry, void *p, size_t n, void *caller) {
  if (p == NULL) return nm_guard_alloc(entry, n, 0, false, caller);
  if (n == 0) {   /* glibc: free, and return NULL */
    nm_guard_free(entry, p);
    return NULL;
  }
  size_t old;
  if (nm_bootstrap_contains(p)) {
    old = nm_bootstrap_usable_size(p);
  } else if (nm_canary) {
    nm_live_t b;
    if (!nm_check(entry, p, &b)) {
      errno = EINVAL;
      return NULL;
    }
    old = b.t.size;
  } else {
    old = nm_usable_size(p);
  }
  void *q = nm_guard_alloc(entry, n, 0, false, caller);
  if (q == NULL) return NULL;   /* p untouched */
  memcpy(q, p, old < n ? old : n);
  nm_guard_free(entry, p);
  return q;
}

size_t nm_guard_usable_size(void *p) {
  if (p == NULL) return 0;
  if (nm_bootstrap_contains(p)) return nm_bootstrap_usable_size(p);
  if (!nm_canary) return nm_usable_size(p);
  nm_live_t b;
  return nm_check(NM_ENTRY_USABLE_SIZE, p, &b) ? b.t.size : 0;
}
