/* The stack allocator: blocks are freed in the reverse order of their allocation (LIFO),
 * one at a time or all those after a marker at once. Misuse is detected, never silently
 * corrupting: freeing a block that is not on top, a pointer freed already or one the stack
 * never handed out returns false with the error recorded and changes nothing.
 *
 * Each block carries a 32-byte header (size, the block below it, a serial and a magic).
 * Memory is one mmap'd region of the capacity asked; a stack does not grow.
 * Thread-safety: none. A stack is used by one thread at a time (the caller locks). */
#ifndef NEBULA_STACK_H
#define NEBULA_STACK_H

#include <stdint.h>

#include <nebula/allocator.h>
#include <nebula/api.h>
#include <nebula/budget.h>

NEBULA_BEGIN_DECLS

typedef struct nebula_stack nebula_stack_t;

typedef struct nebula_stack_options {
  const char *name;           /* in errors; copied (up to 31 characters); NULL: "stack" */
  size_t capacity;            /* bytes, headers included; 0: 1 MiB */
  size_t alignment;           /* default alignment; 0: 16 */
  bool poison;                /* fill freed memory with 0xDF and mark it for ASan/valgrind
                               * (marking is always on when the library is built with ASan) */
  nebula_budget_t *budget;    /* NULL: none. The mapped size is reserved at creation, released
                               * at destroy; a refusal fails the creation with its error */
} nebula_stack_options_t;

/* The top of a stack at some moment, from nebula_stack_mark(). A value; its fields are the
 * library's. */
typedef struct nebula_stack_marker {
  const void *owner;
  size_t top;
  size_t block;
  uint64_t serial;
} nebula_stack_marker_t;

/* A stack as options says (NULL: defaults). NULL on failure: NEBULA_ERR_INVALID_ARGUMENT
 * (bad alignment), NEBULA_ERR_OUT_OF_MEMORY, or the budget's NEBULA_ERR_BUDGET. */
NEBULA_API NEBULA_NODISCARD nebula_stack_t *nebula_stack_create(const nebula_stack_options_t *options);
/* Frees the memory (live blocks included) and s. NULL: nothing. */
NEBULA_API void nebula_stack_destroy(nebula_stack_t *s);

/* Pushes a block of size bytes aligned to align (power of two; 0: the default). NULL on
 * failure: NEBULA_ERR_INVALID_ARGUMENT, NEBULA_ERR_CAPACITY (state filled), or
 * NEBULA_ERR_OVERFLOW. Uninitialised memory. nebula_stack_alloc is the same call. */
NEBULA_API NEBULA_NODISCARD NEBULA_MALLOC_LIKE void *nebula_stack_push(nebula_stack_t *s, size_t size,
                                                                       size_t align);
NEBULA_API NEBULA_NODISCARD NEBULA_MALLOC_LIKE void *nebula_stack_alloc(nebula_stack_t *s, size_t size,
                                                                        size_t align);

/* Pops p, which must be the most recent live block (NULL: no-op, true). Returns false and
 * changes nothing with NEBULA_ERR_ORDER (p is live but not on top: the detail names the
 * top block), NEBULA_ERR_DOUBLE_FREE (p was freed already) or NEBULA_ERR_INVALID_POINTER
 * (not a block of s). nebula_stack_free is the same call. */
NEBULA_API bool nebula_stack_pop(nebula_stack_t *s, void *p);
NEBULA_API bool nebula_stack_free(nebula_stack_t *s, void *p);

/* The current top, to release back to. */
NEBULA_API nebula_stack_marker_t nebula_stack_mark(nebula_stack_t *s);
/* Frees every block allocated after marker was taken. Returns false and changes nothing
 * with NEBULA_ERR_ORDER when marker is of another stack or stale: the blocks it was taken
 * above have been freed since (released past, popped, reset). */
NEBULA_API bool nebula_stack_release(nebula_stack_t *s, nebula_stack_marker_t marker);
/* Frees every block. */
NEBULA_API void nebula_stack_reset(nebula_stack_t *s);

/* The stack behind the common interface, valid as long as s. deallocate is
 * nebula_stack_pop; reallocate resizes the top block in place (another block: NULL with
 * NEBULA_ERR_ORDER); usable_size is the size asked (0 for anything but a live block);
 * destroy is nebula_stack_destroy. */
NEBULA_API nebula_allocator_t *nebula_stack_allocator(nebula_stack_t *s);
/* used (the top offset), available, capacity, peak, allocations (live blocks). */
NEBULA_API void nebula_stack_state(nebula_stack_t *s, nebula_allocator_state_t *out);

NEBULA_END_DECLS

#endif
