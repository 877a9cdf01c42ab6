/* The bump (arena) allocator: hands out memory by moving a cursor through a chunk, frees
 * everything at once (reset) or back to a checkpoint (restore). Allocation is a few
 * instructions; individual frees do nothing except for the most recent block.
 *
 * Chunks come from the OS (mmap), not from malloc. With `grow` a full bump chains a new
 * chunk, at least double the previous one (or big enough for the request); without it a
 * full bump fails with NEBULA_ERR_CAPACITY.
 *
 * Thread-safety: a bump created with thread_safe = false must be used by one thread at a
 * time. With thread_safe = true, nebula_bump_alloc and the allocator's allocate,
 * deallocate, reallocate, usable_size and state may be called from any number of threads
 * at once (allocation is a CAS on the chunk's cursor; growth takes a mutex).
 * nebula_bump_reset, nebula_bump_restore and nebula_bump_destroy are never concurrent with
 * any other call on the same bump, whatever the variant. */
#ifndef NEBULA_BUMP_H
#define NEBULA_BUMP_H

#include <nebula/allocator.h>
#include <nebula/api.h>
#include <nebula/budget.h>

NEBULA_BEGIN_DECLS

typedef struct nebula_bump nebula_bump_t;

typedef struct nebula_bump_options {
  const char *name;           /* in errors; copied (up to 31 characters); NULL: "bump" */
  size_t capacity;            /* bytes of the first chunk; 0: 1 MiB */
  size_t alignment;           /* default alignment (requests with align 0); 0: 16 */
  bool grow;                  /* chain more chunks when full */
  bool thread_safe;           /* see the header comment */
  bool poison;                /* fill freed/reset memory with 0xDF and mark it for ASan/valgrind
                               * (marking is always on when the library is built with ASan) */
  nebula_budget_t *budget;    /* NULL: none. Each chunk's mapped size (capacity rounded up to
                               * pages) is reserved in it, released when the chunk is freed */
} nebula_bump_options_t;

/* A position in a bump, from nebula_bump_checkpoint(). A value: copy it freely. Its fields
 * are the library's; do not interpret them. */
typedef struct nebula_bump_marker {
  const void *owner;
  const void *chunk;
  size_t offset;
} nebula_bump_marker_t;

/* A bump as options says (NULL: all defaults). Returns NULL on failure, recording
 * NEBULA_ERR_INVALID_ARGUMENT (alignment not a power of two), NEBULA_ERR_OUT_OF_MEMORY or,
 * when the budget refuses the first chunk, the error nebula_budget_reserve recorded
 * (NEBULA_ERR_BUDGET). The budget must outlive the bump. */
NEBULA_API NEBULA_NODISCARD nebula_bump_t *nebula_bump_create(const nebula_bump_options_t *options);

/* A bump from a configuration string (nebula/config.h) over the production preset: keys
 * capacity, grow, thread_safe, alignment, name, poison and budget (bytes: the bump then owns
 * a root budget of that limit, named after it, destroyed with it). NULL on failure: an
 * invalid string records NEBULA_ERR_CONFIG naming the first bad key; otherwise as
 * nebula_bump_create. text NULL: the preset's values. */
NEBULA_API NEBULA_NODISCARD nebula_bump_t *nebula_bump_create_from_config(const char *text);

/* Frees every chunk (releasing them from the budget) and b. NULL: nothing. */
NEBULA_API void nebula_bump_destroy(nebula_bump_t *b);

/* size bytes aligned to align (a power of two; 0: the bump's default alignment). NULL on
 * failure: NEBULA_ERR_INVALID_ARGUMENT (bad alignment), NEBULA_ERR_CAPACITY (full, no
 * grow; the error's state is the bump's), NEBULA_ERR_OVERFLOW (size + alignment overflow),
 * NEBULA_ERR_BUDGET or NEBULA_ERR_OUT_OF_MEMORY (a new chunk was refused). The memory is
 * uninitialised. size 0 yields a unique pointer. */
NEBULA_API NEBULA_NODISCARD NEBULA_MALLOC_LIKE void *nebula_bump_alloc(nebula_bump_t *b, size_t size,
                                                                       size_t align);

/* Frees everything: the cursor goes back to the start of the first chunk; with grow, the
 * other chunks are returned to the OS (and the budget). Every pointer handed out before is
 * invalid afterwards (poisoned when poisoning is on). Not concurrent with anything. */
NEBULA_API void nebula_bump_reset(nebula_bump_t *b);

/* The current position, to go back to with nebula_bump_restore. */
NEBULA_API nebula_bump_marker_t nebula_bump_checkpoint(nebula_bump_t *b);

/* Rewinds to marker: frees everything allocated after the checkpoint (chunks chained after
 * it are returned to the OS). Returns false, changing nothing, with NEBULA_ERR_ORDER for a
 * marker of another bump or one that is newer than the current position (already rewound
 * past, or taken before a reset that freed its chunk). Not concurrent with anything. */
NEBULA_API bool nebula_bump_restore(nebula_bump_t *b, nebula_bump_marker_t marker);

/* The bump behind the common interface (nebula/allocator.h), valid as long as b.
 * deallocate: the most recent block rewinds the cursor; any other block of the bump is
 * accepted and does nothing (its memory comes back at reset/restore); a pointer outside
 * the bump's used memory returns false with NEBULA_ERR_INVALID_POINTER.
 * reallocate: in place when p is the most recent block and the chunk has room; otherwise a
 * new block (the old one is not freed). usable_size: the size asked for p.
 * destroy: nebula_bump_destroy. */
NEBULA_API nebula_allocator_t *nebula_bump_allocator(nebula_bump_t *b);

/* used (bytes consumed in the chunks, headers and padding included), available (left in
 * the current chunk), capacity (all chunks), peak, utilization. allocations is 0 (a bump
 * does not count blocks). */
NEBULA_API void nebula_bump_state(nebula_bump_t *b, nebula_allocator_state_t *out);

NEBULA_END_DECLS

#endif
