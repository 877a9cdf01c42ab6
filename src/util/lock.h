/* A tiny spin lock for the few short sections (heap registry, orphan list, metadata, and
 * each heap's segments, which another thread may purge).
 * It is a plain word, so the child of a fork can reset it without pthread's cooperation:
 * fork never needs a lock of ours held (docs/design.md, "Fork"). */
#ifndef NM_LOCK_H
#define NM_LOCK_H

#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>

typedef struct nm_lock_s {
  atomic_int held;
} nm_lock_t;

#define NM_LOCK_INIT { 0 }

static inline void nm_lock(nm_lock_t *l) {
  for (;;) {
    if (!atomic_exchange_explicit(&l->held, 1, memory_order_acquire)) return;
    for (int i = 0; atomic_load_explicit(&l->held, memory_order_relaxed); i++) {
      if (i < 64) __builtin_ia32_pause();
      else sched_yield();
    }
  }
}

static inline bool nm_trylock(nm_lock_t *l) {
  return !atomic_load_explicit(&l->held, memory_order_relaxed) &&
         !atomic_exchange_explicit(&l->held, 1, memory_order_acquire);
}

static inline void nm_unlock(nm_lock_t *l) {
  atomic_store_explicit(&l->held, 0, memory_order_release);
}

static inline void nm_lock_reset(nm_lock_t *l) {
  atomic_store_explicit(&l->held, 0, memory_order_relaxed);
}

#endif
