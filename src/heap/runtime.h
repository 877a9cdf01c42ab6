/* Process-wide start-up of the allocator: router tables and heap machinery. */
#ifndef NM_RUNTIME_H
#define NM_RUNTIME_H

#include <stdbool.h>

#include "heap/router.h"

/* Build the tables from route (NULL: the default route) once; later calls wait for the
 * first to finish and return its result. Returns 0, or -1 if route was invalid (the
 * default route is used then). Never allocates through malloc. */
int nm_runtime_init(const nm_route_t *route);
bool nm_runtime_ready(void);

#endif
