/* Diagnostics written to stderr: out-of-memory reports and heap-misuse reports.
 *
 * Written with write(2) from a stack buffer, never allocating through us; rate-limited
 * (the first NM_REPORTS_FULL of each kind in full, then a one-line count at every power of
 * two); coloured only when stderr is a terminal and NO_COLOR is unset. Everything here is
 * out of line: only failing or misbehaving calls get here. */
#ifndef NM_REPORT_H
#define NM_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#define NM_REPORTS_FULL 3u

/* The entry point a request came through. */
typedef enum nm_entry_e {
  NM_ENTRY_MALLOC = 0,
  NM_ENTRY_CALLOC,
  NM_ENTRY_REALLOC,
  NM_ENTRY_REALLOCARRAY,
  NM_ENTRY_MEMALIGN,
  NM_ENTRY_POSIX_MEMALIGN,
  NM_ENTRY_ALIGNED_ALLOC,
  NM_ENTRY_VALLOC,
  NM_ENTRY_PVALLOC,
  NM_ENTRY_FREE,
  NM_ENTRY_USABLE_SIZE,
  NM_ENTRY_COUNT
} nm_entry_t;

const char *nm_entry_name(nm_entry_t e);

/* True while this thread writes a report: what it allocates then (libunwind) is neither
 * refused by a budget nor reported. */
bool nm_report_busy(void);

typedef enum nm_oom_why_e {
  NM_WHY_TOO_LARGE = 0,   /* above PTRDIFF_MAX, or count * size overflows */
  NM_WHY_OS,              /* the kernel refused memory (mmap failed) */
  NM_WHY_SYSTEM,          /* the next allocator returned NULL */
  NM_WHY_BUDGET,          /* a budget= would be exceeded */
} nm_oom_why_t;

typedef struct nm_oom_report_s {
  nm_entry_t entry;
  size_t size;            /* bytes asked (calloc/reallocarray: size of one element) */
  size_t count;           /* calloc/reallocarray: element count; 0 otherwise */
  size_t alignment;       /* 0: the default (16) */
  nm_oom_why_t why;
  int os_errno;           /* NM_WHY_OS: what mmap said */
  unsigned budget;        /* NM_WHY_BUDGET: which (an nm_backend_t, or NM_BUDGET_TOTAL) */
  size_t charge;          /* NM_WHY_BUDGET: the bytes the block would have added */
  bool fallback;          /* oom=fallback served the request from the system backend */
} nm_oom_report_t;

/* Report a failed request (unless rate-limited); then abort() if oom=abort, unless the
 * fallback served it. errno is preserved. */
void nm_report_oom(const nm_oom_report_t *oom);

typedef enum nm_misuse_kind_e {
  NM_MISUSE_DOUBLE_FREE = 0,
  NM_MISUSE_INVALID_FREE,     /* a pointer no allocator handed out */
  NM_MISUSE_INTERIOR,         /* a pointer inside a block, not its start */
  NM_MISUSE_OVERFLOW,         /* bytes past the end of the block were overwritten */
  NM_MISUSE_WRITE_AFTER_FREE, /* a freed block was written while in quarantine */
} nm_misuse_kind_t;

typedef struct nm_misuse_report_s {
  nm_misuse_kind_t kind;
  nm_entry_t entry;
  const void *ptr;            /* the pointer the program passed */
  const void *block;          /* the block involved (its user pointer), or NULL */
  size_t block_size;          /* its requested size, when known */
  size_t offset;              /* overflow/write-after-free: first bad byte, from block */
  unsigned found, expected;   /* that byte, and what it should have been */
  const char *detail;         /* one more sentence, or NULL */
  void *const *alloc_trace;   /* where the block was allocated (alloc_backtrace) */
  int alloc_frames;
  bool alloc_site_only;       /* alloc_trace is the call site alone (alloc_backtrace=sample) */
} nm_misuse_report_t;

/* Report a misuse (unless rate-limited); then abort() unless misuse=report. */
void nm_report_misuse(const nm_misuse_report_t *m);

#endif
