/* Budgets: bytes in use through nebula, for the process and per backend. "In use" is the
 * usable size of every live block (what malloc_usable_size says, plus the guard bytes
 * when canary=on): what the program holds, rounded the way the allocator rounds it.
 * Counted with atomics, only while the guard is on (a budget or canary is set). */
#ifndef NM_BUDGET_H
#define NM_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

typedef struct nm_budget_s {
  _Atomic size_t used;
  _Atomic size_t peak;
  size_t limit;        /* 0: none */
} nm_budget_t;

/* Indexed by nm_backend_t, and NM_BUDGET_TOTAL (config/config.h). */
extern nm_budget_t nm_budgets[NM_BUDGET_SLOTS];

/* Every slot in the order reports and statistics list them: the total, then the backends
 * (i##_n counts the slots done; after the total, slot i is i##_n - 1). */
#define NM_BUDGET_FOREACH(i) \
  for (unsigned i##_n = 0, i = NM_BUDGET_TOTAL; i##_n < NM_BUDGET_SLOTS; i = i##_n++)

/* Limits from the route (0 = none). */
void nm_budget_init(const size_t limits[NM_BUDGET_SLOTS]);
/* Charge bytes to the total and to `backend` (pool, bump or system: a large block is the
 * pool's). Returns NM_BUDGET_SLOTS when both fit (or `force`), else the slot whose budget
 * would be exceeded (nothing charged). */
unsigned nm_budget_charge(nm_backend_t backend, size_t bytes, bool force);
void nm_budget_release(nm_backend_t backend, size_t bytes);
/* "budget", "pool_budget", ...: the config key of a slot's budget. */
const char *nm_budget_key(unsigned slot);

#endif
