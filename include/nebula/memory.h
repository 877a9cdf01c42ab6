/* nebula-memory public API: one header per concept, this one includes them all.
 * Link with `pkg-config --cflags --libs nebula-memory`; docs/library.md is the guide. */
#ifndef NEBULA_MEMORY_H
#define NEBULA_MEMORY_H

#include <nebula/version.h>
#include <nebula/api.h>
#include <nebula/error.h>
#include <nebula/allocator.h>
#include <nebula/config.h>
#include <nebula/budget.h>
#include <nebula/bump.h>
#include <nebula/pool.h>
#include <nebula/stack.h>
#include <nebula/typed.h>
#include <nebula/cache.h>

#endif
