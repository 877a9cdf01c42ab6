/* nebula-memory public API: one header per concept, this one includes them all. */
#ifndef NEBULA_MEMORY_H
#define NEBULA_MEMORY_H

#include <nebula/version.h>

#endif
