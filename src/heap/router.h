/* The router: size -> class -> backend, one table lookup. The table is built once from a
 * route: size ranges and their backends (NEBULA_MEM_CONFIG's route= and strategies). */
#ifndef NM_ROUTER_H
#define NM_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "nm_types.h"
#include "pool/sizeclass.h"

/* What the process runs with: the options as NEBULA_MEM_CONFIG gave them (one struct,
 * config/config.h: a new option is a row of config/options.h, nothing here), and the size
 * limits the backends impose. In opt, the route's ranges say which backend serves which
 * sizes (0 ranges: pool up to large_max, system above); pool ranges above large_max go to
 * the system, bump requests too big for a region to pool. */
typedef struct nm_route_s {
  size_t pool_max;                /* largest request served by pool size classes */
  size_t large_max;               /* pool requests above pool_max up to this get a page each */
  nm_config_t opt;
} nm_route_t;

#define NM_JUNK_BYTE 0xDF
#define NM_FILL_BYTE 0xA5
/* Junk and fill write at most this much of a block: a program that reserves a huge buffer
 * and touches little of it (GNU sort) must not have all of it made resident. */
#define NM_DEBUG_FILL_MAX ((size_t)256 << 10)

static inline size_t nm_debug_fill_len(size_t n) {
  return n < NM_DEBUG_FILL_MAX ? n : NM_DEBUG_FILL_MAX;
}

/* The defaults: nm_config_defaults' options (strategy=balanced, preset=production). */
void nm_route_defaults(nm_route_t *route);
extern nm_route_t nm_route;
extern nm_sizeclass_layout_t nm_classes;
/* (size + 15) / 16 -> class, NM_CLASS_LARGE, NM_CLASS_BUMP or NM_CLASS_NONE (system). */
extern uint8_t nm_class_of[NM_CLASS_LOOKUP];

/* The largest request the fast path looks up in nm_class_of (above NM_DIRECT_MAX, where the
 * direct slots end): NM_POOL_LIMIT, or 0 when nm_route_checked(), so every allocation
 * takes the slow path (the direct slots are all empty then too). */
extern size_t nm_fast_max;

/* The direct slots (nm_heap_t.direct) of each pool class: [first, end), empty for a class
 * that serves no request up to NM_DIRECT_MAX on the fast path. */
extern uint8_t nm_direct_first[NM_CLASS_MAX], nm_direct_end[NM_CLASS_MAX];
/* The same for the slots the route sends to bump, by the pool class that fits them: used
 * only by a heap that gave bump regions up (nm_heap_t.bump_off). */
extern uint8_t nm_bump_direct_first[NM_CLASS_MAX], nm_bump_direct_end[NM_CLASS_MAX];

/* n <= NM_POOL_LIMIT. */
static inline unsigned nm_router_lookup(size_t n) {
  return __atomic_load_n(&nm_class_of[(n + NM_ALIGN - 1) / NM_ALIGN], __ATOMIC_RELAXED);
}

/* Build the tables; returns 0, or -1 (tables untouched) if the route is invalid. */
int nm_router_init(const nm_route_t *route);
/* The route a configuration asks for. */
void nm_route_from_config(const nm_config_t *cfg, nm_route_t *route);

/* Pool size class of n, or NM_CLASS_NONE when another backend serves n. */
static inline unsigned nm_router_class(size_t n) {
  if (NM_UNLIKELY(n > NM_POOL_LIMIT)) return NM_CLASS_NONE;
  unsigned c = nm_router_lookup(n);
  return c < NM_CLASS_BUMP ? c : NM_CLASS_NONE;
}

nm_backend_t nm_router_backend_above(size_t n);

/* Junk, fill, canaries or a budget: every request takes a slow path (the fast tables say
 * "not served"), so production pays nothing for them. */
bool nm_route_checked(const nm_route_t *r);
/* NM_PAGE_DEBUG when the route is checked (new pages send every free to the slow path,
 * where the guard sees it), else 0. */
extern uint8_t nm_page_new_flags;

/* The smallest request the route sends to the system backend, or SIZE_MAX if none. */
size_t nm_router_system_min(void);

static inline nm_backend_t nm_router_backend(size_t n) {
  if (NM_UNLIKELY(n > NM_POOL_LIMIT)) return nm_router_backend_above(n);
  unsigned c = nm_router_lookup(n);
  if (c < NM_CLASS_BUMP) return NM_BACKEND_POOL;
  if (c == NM_CLASS_LARGE) return NM_BACKEND_LARGE;
  if (c == NM_CLASS_BUMP) return NM_BACKEND_BUMP;
  return NM_BACKEND_SYSTEM;
}

#endif
