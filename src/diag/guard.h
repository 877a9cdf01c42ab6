/* The guard: the checked path every request takes when a budget or canary=on is set.
 *
 * It sits between the preload's entry points and the heap: budgets are charged with the
 * usable size of each block (and released at free); with canary=on each block also gets
 * guard bytes after the requested size and a trailer at its end (the requested size, a
 * live/freed tag, and with alloc_backtrace=on where it was allocated), so free can tell a
 * double free, an interior or foreign pointer and an overflow; freed blocks wait in a small
 * per-thread quarantine, junk-filled, so a second free or a late write is caught. */
#ifndef NM_GUARD_H
#define NM_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "diag/report.h"

/* Set once at start-up (nm_guard_init), read on every call. */
extern bool nm_guard_on;

/* From nm_route: budgets, canary, alloc_backtrace. Call after the runtime is initialised. */
void nm_guard_init(void);

/* alignment 0: the default. zero: calloc. caller: the program's call site (the entry point's
 * return address), recorded with alloc_backtrace. NULL + errno ENOMEM (after the report) on
 * failure; memalign-style entries check their alignment before calling. */
void *nm_guard_alloc(nm_entry_t entry, size_t n, size_t alignment, bool zero, void *caller);
void nm_guard_free(nm_entry_t entry, void *p);
void *nm_guard_realloc(nm_entry_t entry, void *p, size_t n, void *caller);
size_t nm_guard_usable_size(void *p);

/* Out-of-memory handling of the unguarded path: the report, then oom=fallback's system
 * attempt (returned when it worked) or oom=abort. Returns NULL with errno ENOMEM
 * otherwise. count: calloc's element count (0 otherwise). */
void *nm_oom(nm_entry_t entry, size_t n, size_t count, size_t alignment);

#endif
