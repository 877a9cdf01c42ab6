/* The pool allocator: blocks of one size and alignment, from chunks of a fixed number of
 * blocks. Allocation and free are a compare-and-swap on a free list; memory is mapped from
 * the OS (not malloc) a chunk at a time. With `grow` an empty pool maps another chunk of
 * the same block count (up to NEBULA_POOL_MAX_CHUNKS chunks); without it an empty pool
 * fails with NEBULA_ERR_CAPACITY.
 *
 * A growing pool also keeps up to 64 free blocks per thread (a magazine): alloc and free
 * then touch nothing shared. Blocks in one thread's magazine are not available to another,
 * which grows the pool instead (by at most 64 blocks per thread); the magazines of threads
 * that have exited are given back when the pool runs dry. A fixed-size pool has none: its
 * capacity is exact for every thread.
 *
 * Every pointer given back is checked, never trusted: a pointer outside the pool's chunks,
 * one inside a block rather than at its start, or a block that is already free returns
 * false with the error recorded (NEBULA_ERR_INVALID_POINTER, NEBULA_ERR_DOUBLE_FREE) and
 * changes nothing. (In a growing pool, two threads freeing the same block at the same
 * instant are not told apart from one free; a fixed-size pool catches even that.)
 *
 * Thread-safety: nebula_pool_alloc, nebula_pool_free, nebula_pool_state and the
 * allocator's allocate, deallocate, reallocate, usable_size and state may be called from
 * any number of threads at once, with no lock (the free list is a lock-free stack; only
 * the rare growth takes a mutex). A block may be freed by a thread other than the one that
 * allocated it. nebula_pool_destroy is never concurrent with any other call on the pool. */
#ifndef NEBULA_POOL_H
#define NEBULA_POOL_H

#include <nebula/allocator.h>
#include <nebula/api.h>
#include <nebula/budget.h>

NEBULA_BEGIN_DECLS

typedef struct nebula_pool nebula_pool_t;

/* Most chunks a growing pool maps (and fewer when block_count is so large that the blocks
 * of all chunks would not fit a 32-bit index). */
#define NEBULA_POOL_MAX_CHUNKS 1024u

typedef struct nebula_pool_options {
  const char *name;           /* in errors; copied (up to 31 characters); NULL: "pool" */
  size_t block_size;          /* bytes per block, > 0 */
  size_t alignment;           /* of every block: a power of two up to 1 MiB; 0: 16; below 8
                               * is raised to 8. Blocks are block_size rounded up to it (the
                               * stride), at least 8 bytes */
  size_t block_count;         /* blocks per chunk, > 0 */
  bool grow;                  /* map another chunk when every block is in use */
  bool poison;                /* fill freed blocks with 0xDF and mark them for ASan/valgrind
                               * (marking is always on when the library is built with ASan) */
  nebula_budget_t *budget;    /* NULL: none. Each chunk's mapped size (block_count * stride
                               * rounded up to pages) is reserved before it is mapped and
                               * released at destroy; a refusal fails the creation or growth */
} nebula_pool_options_t;

/* A pool as options says (NULL options is an error: block_size has no default). Returns
 * NULL on failure, recording NEBULA_ERR_INVALID_ARGUMENT (block_size or block_count 0,
 * alignment not a power of two or above 1 MiB, block_count above 2^32 - 2),
 * NEBULA_ERR_OVERFLOW (block_count * stride overflows), NEBULA_ERR_OUT_OF_MEMORY, or, when
 * the budget refuses the first chunk, the error nebula_budget_reserve recorded
 * (NEBULA_ERR_BUDGET). The budget must outlive the pool. */
NEBULA_API NEBULA_NODISCARD nebula_pool_t *nebula_pool_create(const nebula_pool_options_t *options);

/* A pool from a configuration string (nebula/config.h) over the production preset: keys
 * block_size, block_count, alignment, grow, name, poison and budget (bytes: the pool then
 * owns a root budget of that limit, named after it, destroyed with it). NULL on failure:
 * an invalid string records NEBULA_ERR_CONFIG naming the first bad key; otherwise as
 * nebula_pool_create. text NULL: the preset's values. */
NEBULA_API NEBULA_NODISCARD nebula_pool_t *nebula_pool_create_from_config(const char *text);

/* Unmaps every chunk (releasing them from the budget) and frees p; blocks still allocated
 * are freed with it. NULL: nothing. Not concurrent with any other call on p. */
NEBULA_API void nebula_pool_destroy(nebula_pool_t *p);

/* One block (stride bytes, aligned to the pool's alignment, contents undefined). NULL on
 * failure: NEBULA_ERR_CAPACITY (every block in use and no grow, or the chunk limit reached;
 * the error's state is the pool's), NEBULA_ERR_BUDGET or NEBULA_ERR_OUT_OF_MEMORY (a new
 * chunk was refused). Lock-free unless the pool has to grow. */
NEBULA_API NEBULA_NODISCARD NEBULA_MALLOC_LIKE void *nebula_pool_alloc(nebula_pool_t *p);

/* Returns block to the pool (NULL: true, nothing done). Returns false, touching nothing,
 * with NEBULA_ERR_INVALID_POINTER for a pointer outside the pool's chunks or not at the
 * start of a block (the detail says which), or NEBULA_ERR_DOUBLE_FREE for a block that is
 * already free. Lock-free. */
NEBULA_API bool nebula_pool_free(nebula_pool_t *p, void *block);

/* Bytes per block: block_size rounded up to the alignment (usable in full). */
NEBULA_API size_t nebula_pool_block_size(const nebula_pool_t *p);

/* The pool behind the common interface (nebula/allocator.h), valid as long as p.
 * allocate(size, align): a block when size <= the stride and align (0: 16) <= the pool's
 * alignment; otherwise NULL with NEBULA_ERR_INVALID_ARGUMENT. deallocate: nebula_pool_free.
 * reallocate: p itself while size and align still fit the block, otherwise NULL with
 * NEBULA_ERR_UNSUPPORTED (p is unchanged). usable_size: the stride for an allocated block
 * of the pool, 0 for any other pointer. destroy: nebula_pool_destroy. */
NEBULA_API nebula_allocator_t *nebula_pool_allocator(nebula_pool_t *p);

/* used (live blocks * stride), capacity (chunks * block_count * stride), available,
 * peak (most blocks live at once * stride), allocations (live blocks), utilization.
 * Read with relaxed atomics: exact when the pool is quiet, a close snapshot otherwise. */
NEBULA_API void nebula_pool_state(nebula_pool_t *p, nebula_allocator_state_t *out);

NEBULA_END_DECLS

#endif
