#ifndef NM_PRELOAD_ENV_CONFIG_H
#define NM_PRELOAD_ENV_CONFIG_H

#include "config/config.h"

/* Defaults, then NEBULA_MEM_CONFIG; problems go to stderr, strict=1 makes them fatal. */
void nm_preload_read_config(nm_config_t *cfg);

/* The value of an environment variable, read from environ without allocating. */
const char *nm_preload_env(const char *name);

#endif
