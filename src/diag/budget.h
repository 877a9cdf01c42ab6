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

extern nm_budget_t nm_budgets[NM_BUDGET_COUNT];

/* Limits from the route (0 = none). */
void nm_budget_init(const size_t limits[NM_BUDGET_COUNT]);
/* Charge bytes to the total and to `backend` (NM_BUDGET_POOL/BUMP/SYSTEM). Returns
 * NM_BUDGET_COUNT when both fit (or `force`), else the budget that would be exceeded
 * (nothing charged). */
unsigned nm_budget_charge(unsigned backend, size_t bytes, bool force);
void nm_budget_release(unsigned backend, size_t bytes);
/* "budget", "pool_budget", ...: the config key of a budget. */
const char *nm_budget_key(unsigned which);

#endif
