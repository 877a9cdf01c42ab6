/* The plugin of the deepbind suite, opened by nm_host_deep with RTLD_DEEPBIND. It bundles
 * its own helper() (the program exports one too): with the deep binding it calls its own.
 * It refers to malloc in each way a relocation can: calls (R_X86_64_JUMP_SLOT, bound now or
 * lazily), its address (R_X86_64_GLOB_DAT) and a pointer in initialised data
 * (R_X86_64_64); each must reach the preload's malloc, not libc's. Built with
 * -fsemantic-interposition and -fplt (see meson.build). */
#include <malloc.h>
#include <stdlib.h>

#define NM_EXPORT __attribute__((visibility("default")))

NM_EXPORT int helper(void) { return 2; }
NM_EXPORT int plugin_helper(void) { return helper(); }

void *dep_malloc_address(void);
void *dep_malloc(size_t n);
NM_EXPORT void *plugin_dep_malloc_address(void) { return dep_malloc_address(); }
NM_EXPORT void *plugin_dep_malloc(size_t n) { return dep_malloc(n); }

static void *(*volatile data_malloc)(size_t) = malloc;
static void (*volatile data_free)(void *) = free;

NM_EXPORT void *plugin_malloc_address(void) { return (void *)&malloc; }
NM_EXPORT void *plugin_free_address(void) { return (void *)&free; }
NM_EXPORT void *plugin_data_malloc_address(void) { return (void *)data_malloc; }
NM_EXPORT void *plugin_data_free_address(void) { return (void *)data_free; }

NM_EXPORT void *plugin_malloc(size_t n) { return malloc(n); }
NM_EXPORT void *plugin_calloc(size_t k, size_t n) { return calloc(k, n); }
NM_EXPORT void *plugin_realloc(void *p, size_t n) { return realloc(p, n); }
NM_EXPORT void plugin_free(void *p) { free(p); }
NM_EXPORT size_t plugin_usable_size(void *p) { return malloc_usable_size(p); }
NM_EXPORT void *plugin_memalign(size_t a, size_t n) {
  void *p = NULL;
  return posix_memalign(&p, a, n) == 0 ? p : NULL;
}
/* The C++ plugin's are operator new and delete. */
NM_EXPORT void *plugin_new(size_t n) { return malloc(n); }
NM_EXPORT void plugin_delete(void *p) { free(p); }
