/* Helper library for nm_conform's dlopen_deepbind check. nm_conform opens it with
 * RTLD_NOW | RTLD_DEEPBIND, so these calls bind to the malloc of the library's own
 * dependencies (libc) before the global scope (where an LD_PRELOAD allocator sits). */
#include <stdlib.h>

#define NM_DL_EXPORT __attribute__((visibility("default")))

static void *(*volatile dl_malloc)(size_t) = malloc;
static void *(*volatile dl_calloc)(size_t, size_t) = calloc;
static void *(*volatile dl_realloc)(void *, size_t) = realloc;
static void (*volatile dl_free)(void *) = free;

NM_DL_EXPORT void *nm_dl_malloc(size_t n) { return dl_malloc(n); }
NM_DL_EXPORT void *nm_dl_calloc(size_t count, size_t n) { return dl_calloc(count, n); }
NM_DL_EXPORT void *nm_dl_realloc(void *p, size_t n) { return dl_realloc(p, n); }
NM_DL_EXPORT void nm_dl_free(void *p) { dl_free(p); }
