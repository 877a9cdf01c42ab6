/* Budgets: limits on bytes in use, arranged in a tree (a `total` with named children).
 * Reserving n bytes in a budget reserves them in it and every ancestor, or in none: a
 * request that would pass any limit on the chain fails with NEBULA_ERR_BUDGET, and the
 * error's budget_chain names every budget from the one asked up to the root: the one that
 * would be exceeded with `used + asked > limit`, the others with their limit (if any), e.g.
 * "requests (60.0 KiB + 8.0 KiB > 64.0 KiB) > total (100.0 KiB)".
 *
 * Any allocator can charge a budget: the library allocators take one in their options
 * (they reserve the bytes they take from their parent); nebula_budgeted() wraps any
 * nebula_allocator_t so each allocation's usable size is charged.
 * Thread-safety: every function is thread-safe (atomics; no lock on reserve/release), except
 * that destroying a budget must not race with creating a child of it or using it. */
#ifndef NEBULA_BUDGET_H
#define NEBULA_BUDGET_H

#include <nebula/allocator.h>
#include <nebula/api.h>

NEBULA_BEGIN_DECLS

typedef struct nebula_budget nebula_budget_t;

/* A budget of `limit` bytes (0: no limit of its own, it only counts) under parent (NULL
 * for a root). name is copied (up to 31 characters). NULL on failure (NULL name, no memory).
 * A child's limit may exceed its parent's: the parent's still applies. */
NEBULA_API NEBULA_NODISCARD nebula_budget_t *nebula_budget_create(const char *name, size_t limit,
                                                                  nebula_budget_t *parent);
/* Frees b. It must have no children left and nothing reserved (false, with
 * NEBULA_ERR_INVALID_ARGUMENT, otherwise: the budget is kept). NULL: true. */
NEBULA_API bool nebula_budget_destroy(nebula_budget_t *b);
/* Reserves n bytes in b and its ancestors; false (nothing reserved) with NEBULA_ERR_BUDGET
 * if any limit on the chain would be passed (or a used count would overflow), counted in
 * the failures of the budget exceeded. n 0 always succeeds. Lock-free: a level is never
 * seen above its limit, even transiently. NULL b: NEBULA_ERR_INVALID_ARGUMENT. */
NEBULA_API NEBULA_NODISCARD bool nebula_budget_reserve(nebula_budget_t *b, size_t n);
/* Returns n bytes reserved earlier, in b and its ancestors. Releasing more than a level
 * holds clamps it at 0 and records NEBULA_ERR_INVALID_ARGUMENT (returns false). */
NEBULA_API bool nebula_budget_release(nebula_budget_t *b, size_t n);
/* Bytes reserved in b now (its children's included); the most that has been (a request
 * that failed does not count); its limit (0: none). 0 for NULL. */
NEBULA_API size_t nebula_budget_used(const nebula_budget_t *b);
NEBULA_API size_t nebula_budget_peak(const nebula_budget_t *b);
NEBULA_API size_t nebula_budget_limit(const nebula_budget_t *b);
/* Bytes that can still be reserved in b: the least room on its chain (SIZE_MAX: no limit;
 * 0 for NULL). A snapshot: other threads may take the room meanwhile. */
NEBULA_API size_t nebula_budget_available(const nebula_budget_t *b);
/* The name given at creation ("(none)" for NULL); the parent (NULL for a root). */
NEBULA_API const char *nebula_budget_name(const nebula_budget_t *b);
NEBULA_API nebula_budget_t *nebula_budget_parent(const nebula_budget_t *b);
/* Failed reservations in b (counted where the chain was exceeded). */
NEBULA_API size_t nebula_budget_failures(const nebula_budget_t *b);

/* An allocator that forwards to inner and charges each block's usable size to budget
 * (released on deallocate), named "<inner>@<budget>". A block whose charge is refused is
 * freed and the allocation fails with NEBULA_ERR_BUDGET. reallocate: a shrink goes through
 * inner and releases the difference; a growth allocates the new block (charged in full)
 * before the old one is returned, so the budget must hold both for a moment, and a refusal
 * leaves p and its charge as they were. Its state: used, peak and allocations are what it
 * charged; available is the budget's room. Thread-safe if inner is. NULL on failure (NULL
 * inner or budget, no memory). Destroying it does not destroy inner or the budget. */
NEBULA_API NEBULA_NODISCARD nebula_allocator_t *nebula_budgeted(nebula_allocator_t *inner, nebula_budget_t *budget);

NEBULA_END_DECLS

#endif
