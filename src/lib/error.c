/* The per-thread error record and its report. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "diag/backtrace.h"
#include "lib/lib_internal.h"
#include "util/fmt.h"

static __thread nebula_error_t nm_lib_error;
static atomic_bool nm_lib_backtraces;

nebula_error_t *nm_lib_error_slot(void) { return &nm_lib_error; }

NEBULA_API const nebula_error_t *nebula_last_error(void) { return &nm_lib_error; }

NEBULA_API void nebula_error_clear(void) { memset(&nm_lib_error, 0, sizeof nm_lib_error); }

NEBULA_API bool nebula_error_backtraces(bool on) {
  return atomic_exchange_explicit(&nm_lib_backtraces, on, memory_order_relaxed);
}

void *nm_lib_fail(nebula_error_code_t code, const char *function, nebula_allocator_t *a, size_t size,
                  size_t align, void *ptr, const char *suggestion, const char *detail, ...) {
  nebula_error_t *e = &nm_lib_error;
  memset(e, 0, sizeof *e);
  e->code = code;
  e->function = function;
  e->size = size;
  e->alignment = align;
  e->pointer = ptr;
  e->suggestion = suggestion;
  if (a != NULL) {
    e->allocator = nebula_allocator_name(a);
    if (a->ops != NULL && a->ops->state != NULL) a->ops->state(a, &e->state);
  }
  if (detail != NULL) {
    va_list ap;
    va_start(ap, detail);
    vsnprintf(e->detail, sizeof e->detail, detail, ap);
    va_end(ap);
  }
  if (atomic_load_explicit(&nm_lib_backtraces, memory_order_relaxed)) {
    void *ips[NEBULA_ERROR_MAX_FRAMES];
    int n = nm_backtrace_capture(ips, NEBULA_ERROR_MAX_FRAMES, 1);
    for (int i = 0; i < n; i++) e->backtrace[i] = ips[i];
    e->frames = n > 0 ? (unsigned)n : 0;
  }
  return NULL;
}

static const char *const nm_lib_error_names[] = {
  [NEBULA_OK] = "no error",
  [NEBULA_ERR_OUT_OF_MEMORY] = "out of memory",
  [NEBULA_ERR_CAPACITY] = "capacity exhausted",
  [NEBULA_ERR_BUDGET] = "budget exceeded",
  [NEBULA_ERR_OVERFLOW] = "size overflow",
  [NEBULA_ERR_INVALID_ARGUMENT] = "invalid argument",
  [NEBULA_ERR_INVALID_POINTER] = "invalid pointer",
  [NEBULA_ERR_DOUBLE_FREE] = "double free",
  [NEBULA_ERR_ORDER] = "out-of-order free",
  [NEBULA_ERR_CONFIG] = "invalid configuration",
  [NEBULA_ERR_COMPUTE] = "computation failed",
  [NEBULA_ERR_UNSUPPORTED] = "unsupported operation",
};

NEBULA_API const char *nebula_error_name(nebula_error_code_t code) {
  if ((unsigned)code >= sizeof nm_lib_error_names / sizeof nm_lib_error_names[0]) return "unknown error";
  return nm_lib_error_names[code];
}

static void nm_line(nm_buf_t *b, const char *label) {
  nm_buf_str(b, "  ");
  nm_buf_str(b, label);
  for (size_t n = strlen(label); n < 10; n++) nm_buf_char(b, ' ');
}

/* The layout of the preload's reports (docs/diagnostics.md): headline, then labelled
 * lines. Built with nm_buf into the caller's buffer, counting what did not fit. */
NEBULA_API size_t nebula_error_format(const nebula_error_t *e, char *out, size_t size) {
  char scratch[4096];
  nm_buf_t b = NM_BUF(scratch);
  nm_buf_str(&b, "nebula: ");
  nm_buf_str(&b, e->function ? e->function : "call");
  if (e->code == NEBULA_OK) {
    nm_buf_str(&b, ": no error\n");
  } else {
    nm_buf_str(&b, " failed: ");
    nm_buf_str(&b, nebula_error_name(e->code));
    nm_buf_char(&b, '\n');
    if (e->size || e->alignment) {
      nm_line(&b, "request");
      nm_buf_u64(&b, e->size);
      nm_buf_str(&b, " bytes (");
      nm_buf_bytes(&b, e->size);
      nm_buf_str(&b, ")");
      if (e->alignment) {
        nm_buf_str(&b, ", alignment ");
        nm_buf_u64(&b, e->alignment);
      }
      nm_buf_char(&b, '\n');
    }
    if (e->pointer) {
      nm_line(&b, "pointer");
      nm_buf_str(&b, "0x");
      nm_buf_hex(&b, (uint64_t)(uintptr_t)e->pointer);
      nm_buf_char(&b, '\n');
    }
    if (e->allocator) {
      const nebula_allocator_state_t *s = &e->state;
      nm_line(&b, "allocator");
      nm_buf_str(&b, e->allocator);
      nm_buf_str(&b, ": ");
      nm_buf_bytes(&b, s->used);
      nm_buf_str(&b, " used of ");
      nm_buf_bytes(&b, s->capacity);
      nm_buf_str(&b, " (");
      nm_buf_u64(&b, (uint64_t)(s->utilization * 100.0 + 0.5));
      nm_buf_str(&b, "%), ");
      nm_buf_bytes(&b, s->available);
      nm_buf_str(&b, " available, peak ");
      nm_buf_bytes(&b, s->peak);
      if (s->allocations) {
        nm_buf_str(&b, ", ");
        nm_buf_u64(&b, s->allocations);
        nm_buf_str(&b, " live allocations");
      }
      nm_buf_char(&b, '\n');
    }
    if (e->budget_chain[0]) {
      nm_line(&b, "budget");
      nm_buf_str(&b, e->budget_chain);
      nm_buf_char(&b, '\n');
    }
    if (e->detail[0]) {
      nm_line(&b, "why");
      nm_buf_str(&b, e->detail);
      nm_buf_char(&b, '\n');
    }
    if (e->suggestion) {
      nm_line(&b, "suggest");
      nm_buf_str(&b, e->suggestion);
      nm_buf_char(&b, '\n');
    }
    if (e->frames) {
      nm_buf_str(&b, "  backtrace\n");
      nm_backtrace_format(&b, e->backtrace, (int)e->frames);
    }
  }
  size_t len = b.len < b.cap ? b.len : b.cap;
  if (size > 0) {
    size_t n = len < size - 1 ? len : size - 1;
    memcpy(out, scratch, n);
    out[n] = '\0';
  }
  return len;
}
