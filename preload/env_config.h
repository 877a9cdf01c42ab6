#ifndef NM_PRELOAD_ENV_CONFIG_H
#define NM_PRELOAD_ENV_CONFIG_H

#include <stdbool.h>

#include "config/config.h"

/* Defaults, then NEBULA_MEM_CONFIG; problems go to stderr, strict=1 makes them fatal. In a
 * secure process (nm_preload_secure) only the defaults: the variable is not read. */
void nm_preload_read_config(nm_config_t *cfg);

/* True in a secure process: getauxval(AT_SECURE), set by the kernel for setuid, setgid and
 * file-capability programs. Allocation-free. */
bool nm_preload_secure(void);

/* The value of an environment variable, read from environ without allocating. */
const char *nm_preload_env(const char *name);

#endif
