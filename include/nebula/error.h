/* Errors of the library API.
 *
 * Every call that fails records a nebula_error_t in the calling thread (like errno, it is
 * only meaningful right after a call reported failure: NULL, false or a nonzero code) and
 * returns NULL / false / the code. nebula_last_error() reads it; nebula_error_format()
 * renders it as the same report the preload writes for an out-of-memory failure.
 * Thread-safety: the record is per thread; every function here is thread-safe. */
#ifndef NEBULA_ERROR_H
#define NEBULA_ERROR_H

#include <nebula/api.h>

NEBULA_BEGIN_DECLS

typedef enum nebula_error_code {
  NEBULA_OK = 0,
  NEBULA_ERR_OUT_OF_MEMORY,     /* the operating system refused memory */
  NEBULA_ERR_CAPACITY,          /* the allocator is full and may not grow */
  NEBULA_ERR_BUDGET,            /* a budget (or one of its parents) would be exceeded */
  NEBULA_ERR_OVERFLOW,          /* count * size, or size + alignment, overflows */
  NEBULA_ERR_INVALID_ARGUMENT,  /* bad alignment (not a power of two), NULL object, ... */
  NEBULA_ERR_INVALID_POINTER,   /* a pointer this allocator never handed out (or interior) */
  NEBULA_ERR_DOUBLE_FREE,       /* a pointer returned twice */
  NEBULA_ERR_ORDER,             /* stack: freed out of LIFO order, or a stale marker */
  NEBULA_ERR_CONFIG,            /* a configuration string or field is invalid */
  NEBULA_ERR_COMPUTE,           /* cache: the computation reported failure */
  NEBULA_ERR_UNSUPPORTED,       /* the allocator cannot do this (e.g. resize in a pool) */
} nebula_error_code_t;

/* What an allocator holds, in bytes. utilization = used / capacity (0 when capacity is 0). */
typedef struct nebula_allocator_state {
  size_t used;          /* bytes handed out and not returned (bump/stack: the cursor) */
  size_t available;     /* bytes it can still hand out without growing */
  size_t capacity;      /* bytes it holds from its parent (chunks, blocks, the OS) */
  size_t peak;          /* the most `used` has been */
  size_t allocations;   /* live allocations (0 where the allocator does not count them) */
  double utilization;
} nebula_allocator_state_t;

#define NEBULA_ERROR_MAX_FRAMES 16

typedef struct nebula_error {
  nebula_error_code_t code;
  const char *function;         /* the API call that failed, e.g. "nebula_pool_alloc" */
  const char *allocator;        /* the allocator's name (NULL if none was involved) */
  size_t size;                  /* the request: bytes ... */
  size_t alignment;             /* ... and alignment (0 when not applicable) */
  void *pointer;                /* the pointer in question (invalid pointer, double free) */
  nebula_allocator_state_t state;   /* the allocator's state at the failure */
  char detail[160];             /* why, in words: "capacity 64.0 KiB, 60.0 KiB used" */
  char budget_chain[160];       /* NEBULA_ERR_BUDGET: "requests > total" (child > parent), the one exceeded marked */
  const char *suggestion;       /* what to change (a static string) */
  unsigned frames;              /* a backtrace, when nebula_error_backtraces(true) */
  void *backtrace[NEBULA_ERROR_MAX_FRAMES];
} nebula_error_t;

/* The calling thread's last error (code NEBULA_OK if none since nebula_error_clear()). */
NEBULA_API const nebula_error_t *nebula_last_error(void);
NEBULA_API void nebula_error_clear(void);
/* A short fixed name: "out of memory", "capacity exhausted", ... */
NEBULA_API const char *nebula_error_name(nebula_error_code_t code);
/* Renders e as the multi-line report of docs/diagnostics.md into buf (always
 * NUL-terminated when size > 0). Returns the length the whole report needs (excluding the
 * NUL), like snprintf: a result >= size means it was cut. Allocates nothing. */
NEBULA_API size_t nebula_error_format(const nebula_error_t *e, char *buf, size_t size);
/* Record a backtrace with every error from now on (process-wide; off by default, on in the
 * development configuration). Returns the previous setting. */
NEBULA_API bool nebula_error_backtraces(bool on);

NEBULA_END_DECLS

#endif
