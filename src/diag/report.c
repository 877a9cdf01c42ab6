#include "diag/report.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "diag/backtrace.h"
#include "diag/budget.h"
#include "heap/introspect.h"
#include "heap/router.h"
#include "os/os.h"
#include "util/fmt.h"

#define MiB ((size_t)1 << 20)

static const char *const nm_entry_names[NM_ENTRY_COUNT] = {
  "malloc", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
  "aligned_alloc", "valloc", "pvalloc", "free", "malloc_usable_size",
};

const char *nm_entry_name(nm_entry_t e) {
  return e < NM_ENTRY_COUNT ? nm_entry_names[e] : "?";
}

static __thread bool nm_reporting;

bool nm_report_busy(void) {
  return nm_reporting;
}

/* ---- output ----------------------------------------------------------------------------- */

static int nm_colour = -1;   /* -1: not decided yet */

static bool nm_use_colour(void) {
  if (nm_colour < 0) nm_colour = isatty(2) && getenv("NO_COLOR") == NULL;
  return nm_colour == 1;
}

static void nm_style(nm_buf_t *b, const char *sgr) {
  if (!nm_use_colour()) return;
  nm_buf_str(b, "\033[");
  nm_buf_str(b, sgr);
  nm_buf_char(b, 'm');
}

/* "  label     " in bold. */
static void nm_label(nm_buf_t *b, const char *label) {
  nm_buf_str(b, "  ");
  nm_style(b, "1");
  size_t mark = b->len;
  nm_buf_str(b, label);
  while (b->len - mark < 10) nm_buf_char(b, ' ');
  nm_style(b, "0");
}

static void nm_headline(nm_buf_t *b, const char *what) {
  nm_style(b, "1;31");
  nm_buf_str(b, "nebula: ");
  nm_buf_str(b, what);
  nm_style(b, "0");
}

static void nm_flush(nm_buf_t *b) {
  if (b->len == b->cap) {   /* cut: say so on a line of its own */
    static const char cut[] = "\n  (report cut: too long)\n";
    b->len = b->cap - sizeof cut + 1;
    nm_buf_str(b, cut);
  }
  nm_os_write(2, b->data, b->len);
}

static void nm_errno_name(nm_buf_t *b, int e) {
  switch (e) {
  case ENOMEM: nm_buf_str(b, "ENOMEM"); break;
  case EAGAIN: nm_buf_str(b, "EAGAIN"); break;
  case EPERM: nm_buf_str(b, "EPERM"); break;
  case EINVAL: nm_buf_str(b, "EINVAL"); break;
  default: nm_buf_str(b, "errno "); nm_buf_i64(b, e); break;
  }
}

/* Counts reports of one kind; true when this one is shown in full. Past that, a one-line
 * count at every power of two. */
static bool nm_rate_limit(atomic_size_t *count, const char *what) {
  size_t n = atomic_fetch_add_explicit(count, 1, memory_order_relaxed) + 1;
  if (n <= NM_REPORTS_FULL) return true;
  if ((n & (n - 1)) == 0) {
    char storage[256];
    nm_buf_t b = NM_BUF(storage);
    nm_headline(&b, "");
    nm_buf_u64(&b, n);
    nm_buf_char(&b, ' ');
    nm_buf_str(&b, what);
    nm_buf_str(&b, " so far (the first ");
    nm_buf_u64(&b, NM_REPORTS_FULL);
    nm_buf_str(&b, " were reported in full; the next count is at ");
    nm_buf_u64(&b, n * 2);
    nm_buf_str(&b, ")\n");
    nm_flush(&b);
  }
  return false;
}

/* ---- out of memory ---------------------------------------------------------------------- */

static atomic_size_t nm_oom_count;

static void nm_call(nm_buf_t *b, const nm_oom_report_t *r) {
  nm_buf_str(b, nm_entry_name(r->entry));
  nm_buf_char(b, '(');
  switch (r->entry) {
  case NM_ENTRY_CALLOC:
  case NM_ENTRY_REALLOCARRAY:
    if (r->entry == NM_ENTRY_REALLOCARRAY) nm_buf_str(b, "p, ");
    nm_buf_u64(b, r->count);
    nm_buf_str(b, ", ");
    nm_buf_u64(b, r->size);
    break;
  case NM_ENTRY_REALLOC:
    nm_buf_str(b, "p, ");
    nm_buf_u64(b, r->size);
    break;
  case NM_ENTRY_MEMALIGN:
  case NM_ENTRY_ALIGNED_ALLOC:
    nm_buf_u64(b, r->alignment);
    nm_buf_str(b, ", ");
    nm_buf_u64(b, r->size);
    break;
  case NM_ENTRY_POSIX_MEMALIGN:
    nm_buf_str(b, "&p, ");
    nm_buf_u64(b, r->alignment);
    nm_buf_str(b, ", ");
    nm_buf_u64(b, r->size);
    break;
  default:
    nm_buf_u64(b, r->size);
    break;
  }
  nm_buf_char(b, ')');
}

/* The total bytes asked, or SIZE_MAX when count * size overflows. */
static size_t nm_request_bytes(const nm_oom_report_t *r) {
  if (r->count == 0) return r->size;
  size_t n;
  return __builtin_mul_overflow(r->count, r->size, &n) ? SIZE_MAX : n;
}

static void nm_backend_state(nm_buf_t *b, size_t n) {
  nm_label(b, "backend");
  if (n > PTRDIFF_MAX) {
    nm_buf_str(b, "none: no backend can serve it\n");
    return;
  }
  switch (nm_router_backend(n)) {
  case NM_BACKEND_POOL: {
    unsigned cls = nm_router_class(n);
    nm_class_state_t st;
    nm_heap_class_state(cls, &st);
    nm_buf_str(b, "pool, size class ");
    nm_buf_u64(b, cls);
    nm_buf_str(b, " (blocks of ");
    nm_buf_bytes(b, nm_classes.size[cls]);
    nm_buf_str(b, "): this thread has ");
    nm_buf_u64(b, st.pages);
    nm_buf_str(b, st.pages == 1 ? " page, " : " pages, ");
    nm_buf_u64(b, st.used);
    nm_buf_str(b, " of ");
    nm_buf_u64(b, st.blocks);
    nm_buf_str(b, " blocks in use");
    if (st.blocks) {
      nm_buf_str(b, " (");
      nm_buf_u64(b, st.used * 100 / st.blocks);
      nm_buf_str(b, "% utilization), ");
      nm_buf_u64(b, st.blocks - st.used);
      nm_buf_str(b, " free");
    }
    nm_buf_char(b, '\n');
    return;
  }
  case NM_BACKEND_LARGE:
    nm_buf_str(b, "pool, a page of its own (");
    nm_buf_u64(b, (n + NM_SLICE_SIZE - 1) >> NM_SLICE_SHIFT);
    nm_buf_str(b, " slices of 64 KiB; requests from ");
    nm_buf_bytes(b, nm_route.pool_max + 1);
    nm_buf_str(b, " to ");
    nm_buf_bytes(b, nm_route.large_max);
    nm_buf_str(b, ")\n");
    return;
  case NM_BACKEND_BUMP: {
    nm_bump_state_t st;
    nm_heap_bump_state(&st);
    nm_buf_str(b, "bump: this thread has ");
    nm_buf_u64(b, st.regions);
    nm_buf_str(b, " regions (");
    nm_buf_bytes(b, st.bytes);
    nm_buf_str(b, ") holding ");
    nm_buf_u64(b, st.live);
    nm_buf_str(b, " live blocks; ");
    nm_buf_u64(b, st.pinned);
    nm_buf_str(b, " pinned by at most ");
    nm_buf_u64(b, NM_PINNED_FEW);
    nm_buf_str(b, " live blocks each (");
    nm_buf_bytes(b, st.pinned_bytes);
    nm_buf_str(b, ")\n");
    for (size_t i = 0; i < st.pinned && i < 3; i++) {
      nm_label(b, "");
      nm_buf_str(b, "pinned region ");
      nm_buf_hex(b, (uintptr_t)st.shown[i].start);
      nm_buf_str(b, ": ");
      nm_buf_bytes(b, st.shown[i].bytes);
      nm_buf_str(b, " kept by ");
      nm_buf_u64(b, st.shown[i].live);
      nm_buf_str(b, st.shown[i].live == 1 ? " live block\n" : " live blocks\n");
    }
    return;
  }
  default:
    nm_buf_str(b, "system (the next allocator, glibc unless another is preloaded): ");
    nm_buf_str(b, "sizes the route sends there\n");
    return;
  }
}

static void nm_process_state(nm_buf_t *b, const nm_oom_report_t *r) {
  nm_totals_t t;
  nm_totals(&t);
  nm_label(b, "process");
  size_t used = atomic_load_explicit(&nm_budgets[NM_BUDGET_TOTAL].used, memory_order_relaxed);
  size_t peak = atomic_load_explicit(&nm_budgets[NM_BUDGET_TOTAL].peak, memory_order_relaxed);
  if (peak != 0) {
    nm_buf_str(b, "in use ");
    nm_buf_bytes(b, used);
    nm_buf_str(b, " (peak ");
    nm_buf_bytes(b, peak);
    nm_buf_str(b, "); ");
  }
  nm_buf_str(b, "pages ");
  nm_buf_bytes(b, t.page_bytes);
  nm_buf_str(b, ", mapped ");
  nm_buf_bytes(b, t.mapped);
  nm_buf_str(b, " in ");
  nm_buf_u64(b, t.mapped / NM_SEG_SIZE);
  nm_buf_str(b, " segments, ");
  nm_buf_u64(b, t.heaps_active);
  nm_buf_str(b, " threads\n");
  NM_BUDGET_FOREACH(i) {
    const nm_budget_t *bg = &nm_budgets[i];
    if (bg->limit == 0) continue;
    size_t u = atomic_load_explicit(&bg->used, memory_order_relaxed);
    nm_label(b, "budget");
    nm_buf_str(b, nm_budget_key(i));
    nm_buf_char(b, '=');
    nm_buf_size(b, bg->limit);
    nm_buf_str(b, ": ");
    nm_buf_bytes(b, u);
    nm_buf_str(b, " in use (");
    nm_buf_u64(b, bg->limit ? (uint64_t)((unsigned __int128)u * 100 / bg->limit) : 0);
    nm_buf_str(b, "%)");
    if (r->why == NM_WHY_BUDGET && r->budget == i) {
      nm_buf_str(b, "; this request would add ");
      nm_buf_bytes(b, r->charge);
      nm_buf_str(b, ", ");
      nm_buf_bytes(b, u + r->charge - bg->limit);
      nm_buf_str(b, " over");
    }
    nm_buf_char(b, '\n');
  }
}

/* A rounder limit above what is needed now, for the suggestion. */
static size_t nm_suggest_limit(size_t need) {
  size_t want = need + need / 4;
  return (want + MiB - 1) / MiB * MiB;
}

static void nm_why_and_suggestion(nm_buf_t *b, const nm_oom_report_t *r, size_t n) {
  nm_label(b, "why");
  switch (r->why) {
  case NM_WHY_TOO_LARGE:
    if (n == SIZE_MAX && r->count)
      nm_buf_str(b, "count * size overflows: the request is larger than any address space\n");
    else
      nm_buf_str(b, "the request is larger than any address space (above PTRDIFF_MAX)\n");
    nm_label(b, "suggest");
    nm_buf_str(b, "look for a negative, uninitialised or overflowing size at the call site "
                  "(the first frames below)\n");
    return;
  case NM_WHY_BUDGET: {
    const nm_budget_t *bg = &nm_budgets[r->budget];
    size_t u = atomic_load_explicit(&bg->used, memory_order_relaxed);
    nm_buf_str(b, nm_budget_key(r->budget));
    nm_buf_char(b, '=');
    nm_buf_size(b, bg->limit);
    nm_buf_str(b, " would be exceeded\n");
    nm_label(b, "suggest");
    if (r->budget == NM_BACKEND_BUMP) {
      nm_bump_state_t st;
      nm_heap_bump_state(&st);
      if (st.pinned) {
        nm_buf_u64(b, st.pinned);
        nm_buf_str(b, " bump regions are pinned by a few long-lived blocks: route these "
                      "sizes to the pool (route=0-64K:pool,64K-2M:pool,2M-:system or "
                      "strategy=balanced), or raise bump_budget=");
      } else {
        nm_buf_str(b, "raise bump_budget=");
      }
    } else {
      nm_buf_str(b, "raise ");
      nm_buf_str(b, nm_budget_key(r->budget));
      nm_buf_char(b, '=');
    }
    nm_buf_size(b, nm_suggest_limit(u + r->charge));
    if (r->budget == NM_BACKEND_POOL || r->budget == NM_BACKEND_SYSTEM)
      nm_buf_str(b, ", or route this size to another backend with route=");
    if (r->budget == NM_BACKEND_POOL && nm_route.opt.oom != NM_OOM_FALLBACK)
      nm_buf_str(b, " (or oom=fallback to let the system backend take what the pool cannot)");
    nm_buf_str(b, "; or free memory before this point\n");
    return;
  }
  case NM_WHY_OS:
    nm_buf_str(b, "the kernel refused memory (mmap: ");
    nm_errno_name(b, r->os_errno);
    nm_buf_str(b, ")\n");
    break;
  case NM_WHY_SYSTEM:
  default:
    nm_buf_str(b, "the system backend (the next allocator) returned NULL\n");
    break;
  }
  nm_label(b, "suggest");
  nm_buf_str(b, "check the limits on this process (ulimit -v for RLIMIT_AS, the cgroup's "
                "memory.max, vm.overcommit_memory); strategy=compact gives freed memory back "
                "sooner; set budget= below the limit to get this report before the kernel "
                "says no\n");
}

void nm_report_oom(const nm_oom_report_t *r) {
  if (nm_reporting) return;   /* a failure inside a report: the outer one speaks */
  int saved = errno;
  nm_reporting = true;
  if (nm_rate_limit(&nm_oom_count, "out-of-memory failures")) {
    char storage[8192];
    nm_buf_t b = NM_BUF(storage);
    size_t n = nm_request_bytes(r);
    nm_headline(&b, "out of memory: ");
    nm_call(&b, r);
    nm_buf_str(&b, r->fallback ? " was served by the system backend (oom=fallback)\n"
                               : " failed\n");
    nm_label(&b, "request");
    nm_buf_str(&b, nm_entry_name(r->entry));
    nm_buf_str(&b, ", ");
    if (n == SIZE_MAX && r->count) {
      nm_buf_str(&b, "count * size overflows size_t");
    } else {
      nm_buf_u64(&b, n);
      nm_buf_str(&b, " bytes (");
      nm_buf_bytes(&b, n);
      nm_buf_char(&b, ')');
    }
    nm_buf_str(&b, ", alignment ");
    nm_buf_u64(&b, r->alignment ? r->alignment : NM_ALIGN);
    nm_buf_char(&b, '\n');
    nm_backend_state(&b, n);
    nm_process_state(&b, r);
    nm_why_and_suggestion(&b, r, n);
    nm_label(&b, "policy");
    if (r->fallback) {
      nm_buf_str(&b, "oom=fallback: the system backend served it; the program goes on\n");
    } else if (nm_route.opt.oom == NM_OOM_ABORT) {
      nm_buf_str(&b, "oom=abort: aborting for a core dump\n");
    } else {
      nm_buf_str(&b, "oom=");
      if (nm_route.opt.oom != NM_OOM_FALLBACK)
        nm_buf_str(&b, "null");
      else if (r->why == NM_WHY_BUDGET && r->budget == NM_BUDGET_TOTAL)
        nm_buf_str(&b, "fallback does not apply (budget= caps every backend)");
      else if (r->why == NM_WHY_TOO_LARGE || r->why == NM_WHY_SYSTEM ||
               (r->why == NM_WHY_BUDGET && r->budget == NM_BACKEND_SYSTEM))
        nm_buf_str(&b, "fallback does not apply (the request was the system backend's)");
      else
        nm_buf_str(&b, "fallback (the system backend failed too)");
      nm_buf_str(&b, ": ");
      nm_buf_str(&b, nm_entry_name(r->entry));
      nm_buf_str(&b, r->entry == NM_ENTRY_POSIX_MEMALIGN ? " returns ENOMEM\n"
                                                         : " returns NULL with errno ENOMEM\n");
    }
    nm_label(&b, "backtrace");
    nm_buf_str(&b, "(scripts/nebula-symbolize adds file:line)\n");
    nm_backtrace_write_here(&b, 1);
    nm_flush(&b);
  }
  nm_reporting = false;
  if (!r->fallback && nm_route.opt.oom == NM_OOM_ABORT) abort();
  errno = saved;
}

/* ---- misuse ----------------------------------------------------------------------------- */

static atomic_size_t nm_misuse_count;

static const char *const nm_misuse_titles[] = {
  [NM_MISUSE_DOUBLE_FREE] = "double free",
  [NM_MISUSE_INVALID_FREE] = "invalid pointer",
  [NM_MISUSE_INTERIOR] = "interior pointer",
  [NM_MISUSE_OVERFLOW] = "write past the end of a block",
  [NM_MISUSE_WRITE_AFTER_FREE] = "write after free",
};

void nm_report_misuse(const nm_misuse_report_t *m) {
  if (nm_reporting) return;
  int saved = errno;
  nm_reporting = true;
  if (nm_rate_limit(&nm_misuse_count, "heap misuses")) {
    char storage[8192];
    nm_buf_t b = NM_BUF(storage);
    nm_headline(&b, "heap misuse: ");
    nm_buf_str(&b, nm_misuse_titles[m->kind]);
    nm_buf_str(&b, " in ");
    nm_buf_str(&b, nm_entry_name(m->entry));
    nm_buf_char(&b, '(');
    nm_buf_hex(&b, (uintptr_t)m->ptr);
    nm_buf_str(&b, ")\n");
    if (m->block != NULL) {
      nm_label(&b, "block");
            nm_buf_hex(&b, (uintptr_t)m->block);
      if (m->block_size != SIZE_MAX) {
        nm_buf_str(&b, ", ");
        nm_buf_u64(&b, m->block_size);
        nm_buf_str(&b, " bytes asked");
      }
      switch (m->kind) {
      case NM_MISUSE_DOUBLE_FREE: nm_buf_str(&b, ", already freed"); break;
      case NM_MISUSE_INTERIOR:
        nm_buf_str(&b, "; the pointer is ");
        nm_buf_u64(&b, (uintptr_t)m->ptr - (uintptr_t)m->block);
        nm_buf_str(&b, " bytes into it");
        break;
      case NM_MISUSE_OVERFLOW:
      case NM_MISUSE_WRITE_AFTER_FREE:
        nm_buf_str(&b, "; byte ");
        nm_buf_u64(&b, m->offset);
        if (m->kind == NM_MISUSE_OVERFLOW) {
          nm_buf_str(&b, " (");
          nm_buf_u64(&b, m->offset - m->block_size);
          nm_buf_str(&b, " past the end)");
        }
        nm_buf_str(&b, " is ");
        nm_buf_hex(&b, m->found);
        nm_buf_str(&b, ", expected ");
        nm_buf_hex(&b, m->expected);
        break;
      default: break;
      }
      nm_buf_char(&b, '\n');
    }
    if (m->detail != NULL) {
      nm_label(&b, "detail");
      nm_buf_str(&b, m->detail);
      nm_buf_char(&b, '\n');
    }
    nm_label(&b, "policy");
    nm_buf_str(&b, nm_route.opt.misuse == NM_MISUSE_REPORT
                       ? "misuse=report: the call does nothing and the program goes on\n"
                       : "misuse=abort: aborting for a core dump (misuse=report goes on)\n");
    nm_label(&b, "backtrace");
    nm_buf_str(&b, "of this call (scripts/nebula-symbolize adds file:line)\n");
    nm_backtrace_write_here(&b, 1);
    if (m->alloc_frames > 0) {
      nm_label(&b, "allocated");
      nm_buf_str(&b, m->alloc_site_only ? "at (the call site only: alloc_backtrace=sample keeps a whole "
                                           "backtrace for 1 block in 256, alloc_backtrace=full for every one)\n"
                                         : "at\n");
      nm_backtrace_format(&b, m->alloc_trace, m->alloc_frames);
    }
    nm_flush(&b);
  }
  nm_reporting = false;
  if (nm_route.opt.misuse != NM_MISUSE_REPORT) abort();
  errno = saved;
}
