#include "diag/budget.h"

#include <stdbool.h>

nm_budget_t nm_budgets[NM_BUDGET_SLOTS];

/* Large has no key: its blocks are charged to pool_budget. */
static const char *const nm_budget_keys[NM_BUDGET_SLOTS] = {
  [NM_BACKEND_POOL] = "pool_budget",
  [NM_BACKEND_BUMP] = "bump_budget",
  [NM_BACKEND_SYSTEM] = "system_budget",
  [NM_BUDGET_TOTAL] = "budget",
};

const char *nm_budget_key(unsigned slot) {
  return slot < NM_BUDGET_SLOTS && nm_budget_keys[slot] ? nm_budget_keys[slot] : "budget";
}

void nm_budget_init(const size_t limits[NM_BUDGET_SLOTS]) {
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++) nm_budgets[i].limit = limits[i];
}

static void nm_budget_raise_peak(nm_budget_t *b, size_t now) {
  size_t peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
  while (now > peak &&
         !atomic_compare_exchange_weak_explicit(&b->peak, &peak, now, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/* Add bytes to one budget; false (and nothing added) if it would pass its limit. */
static bool nm_budget_add(nm_budget_t *b, size_t bytes, bool force) {
  size_t now = atomic_fetch_add_explicit(&b->used, bytes, memory_order_relaxed) + bytes;
  if (!force && b->limit != 0 && now > b->limit) {
    atomic_fetch_sub_explicit(&b->used, bytes, memory_order_relaxed);
    return false;
  }
  return true;
}

unsigned nm_budget_charge(nm_backend_t backend, size_t bytes, bool force) {
  if (!nm_budget_add(&nm_budgets[NM_BUDGET_TOTAL], bytes, force)) return NM_BUDGET_TOTAL;
  if (!nm_budget_add(&nm_budgets[backend], bytes, force)) {
    atomic_fetch_sub_explicit(&nm_budgets[NM_BUDGET_TOTAL].used, bytes, memory_order_relaxed);
    return backend;
  }
  /* peaks only for what was granted */
  nm_budget_raise_peak(&nm_budgets[NM_BUDGET_TOTAL],
                       atomic_load_explicit(&nm_budgets[NM_BUDGET_TOTAL].used, memory_order_relaxed));
  nm_budget_raise_peak(&nm_budgets[backend],
                       atomic_load_explicit(&nm_budgets[backend].used, memory_order_relaxed));
  return NM_BUDGET_SLOTS;
}

/* Never below zero: a double free the budget-only guard cannot see must not turn the
 * counter into a huge number that refuses every later request. */
static void nm_budget_sub(nm_budget_t *b, size_t bytes) {
  size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&b->used, &used, used > bytes ? used - bytes : 0,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

void nm_budget_release(nm_backend_t backend, size_t bytes) {
  nm_budget_sub(&nm_budgets[NM_BUDGET_TOTAL], bytes);
  nm_budget_sub(&nm_budgets[backend], bytes);
}
