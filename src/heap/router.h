/* The router: size -> class -> backend, one table lookup. The table is built once from a
 * route description (the configuration issue makes it user-selectable). */
#ifndef NM_ROUTER_H
#define NM_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "nm_types.h"
#include "pool/sizeclass.h"

typedef enum nm_backend_e {
  NM_BACKEND_POOL = 0,     /* size classes */
  NM_BACKEND_LARGE = 1,    /* pool slices, one block per page */
  NM_BACKEND_SYSTEM = 2,   /* the next allocator */
} nm_backend_t;

typedef struct nm_route_s {
  size_t pool_max;                /* largest request served by pool size classes */
  size_t large_max;               /* up to this, one block per page of pool slices; above: system */
  unsigned classes_per_doubling;  /* 4: waste <= 25%; 8: waste <= 12.5% */
  size_t purge_threshold;         /* freed bytes a heap may keep resident: beyond, purge now */
  unsigned purge_delay_ms;        /* below it, freed memory is purged once it is this old */
} nm_route_t;

extern const nm_route_t nm_route_default;
extern nm_route_t nm_route;
extern nm_sizeclass_layout_t nm_classes;
/* (size + 15) / 16 -> class, or NM_CLASS_NONE for sizes another backend serves. */
extern uint8_t nm_class_of[NM_CLASS_LOOKUP];

/* n <= NM_POOL_LIMIT. */
static inline unsigned nm_router_lookup(size_t n) {
  return __atomic_load_n(&nm_class_of[(n + NM_ALIGN - 1) / NM_ALIGN], __ATOMIC_RELAXED);
}

/* Build the tables; returns 0, or -1 (tables untouched) if the route is invalid. */
int nm_router_init(const nm_route_t *route);

static inline unsigned nm_router_class(size_t n) {
  return NM_LIKELY(n <= NM_POOL_LIMIT) ? nm_router_lookup(n) : NM_CLASS_NONE;
}

static inline nm_backend_t nm_router_backend(size_t n) {
  if (nm_router_class(n) != NM_CLASS_NONE) return NM_BACKEND_POOL;
  return n <= nm_route.large_max ? NM_BACKEND_LARGE : NM_BACKEND_SYSTEM;
}

#endif
