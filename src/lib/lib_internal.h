/* What the library allocators share: recording errors, checking requests. */
#ifndef NM_LIB_INTERNAL_H
#define NM_LIB_INTERNAL_H

#include <stdint.h>

#include <nebula/allocator.h>
#include <nebula/error.h>

#include "nm_types.h"

#define NM_LIB_DEFAULT_ALIGN 16u

/* Records the calling thread's error and returns NULL, so a failing path reads
 * `return nm_lib_fail(...)`. a (may be NULL) gives the allocator's name and state;
 * detail is printf-style text for the report's `why` line. */
NM_COLD void *nm_lib_fail(nebula_error_code_t code, const char *function, nebula_allocator_t *a,
                          size_t size, size_t align, void *ptr, const char *suggestion,
                          const char *detail, ...) __attribute__((format(printf, 8, 9)));
/* The error record of the calling thread, for callers that add to it (budget chains). */
nebula_error_t *nm_lib_error_slot(void);

typedef struct nebula_config nebula_config_t;
typedef struct nebula_budget nebula_budget_t;
/* For the *_create_from_config functions: parses text over the production preset into cfg
 * and, when it sets budget=, creates a root budget of that size named after the allocator
 * (kind when no name= is given). false with the error recorded. */
bool nm_lib_config_load(const char *text, const char *kind, nebula_config_t *cfg, nebula_budget_t **budget);
/* Destroys a budget made by nm_lib_config_load after the creation it was for failed,
 * keeping that failure as the thread's error. */
void nm_lib_config_unload(nebula_budget_t *budget);

/* align 0 -> default; false if not a power of two. */
static inline bool nm_lib_align_ok(size_t *align) {
  if (*align == 0) *align = NM_LIB_DEFAULT_ALIGN;
  return (*align & (*align - 1)) == 0;
}

static inline uintptr_t nm_lib_align_up(uintptr_t v, size_t align) {
  return (v + align - 1) & ~(uintptr_t)(align - 1);
}

#endif
