/* A dependency of the test plugins, found through the plugin's own $ORIGIN-relative
 * DT_RUNPATH and loaded with the plugin's RTLD_DEEPBIND scope: its malloc references must
 * reach the preload too. */
#include <stdlib.h>

#define NM_EXPORT __attribute__((visibility("default")))

NM_EXPORT void *dep_malloc_address(void) { return (void *)&malloc; }
NM_EXPORT void *dep_malloc(size_t n) { return malloc(n); }
