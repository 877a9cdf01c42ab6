#include "system/system.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

nm_system_t nm_system = {
  .malloc = __libc_malloc,
  .free = __libc_free,
  .calloc = __libc_calloc,
  .realloc = __libc_realloc,
  .memalign = __libc_memalign,
  /* In the preload these name our own entry points until nm_system_resolve runs. */
  .usable_size = malloc_usable_size,
  .trim = malloc_trim,
  .mallopt = mallopt,
  .mallinfo2 = mallinfo2,
  .malloc_stats = malloc_stats,
};

static bool nm_system_resolved;

static void *nm_default_symbol(const char *name) {
  return dlsym(RTLD_DEFAULT, name);
}

void nm_system_resolve_default(void) {
  if (!nm_system_resolved) nm_system_resolve(nm_default_symbol);
}

void nm_system_resolve(void *(*lookup)(const char *name)) {
  nm_system_resolved = true;
  void *f;
#define NM_RESOLVE(field, name) \
  if ((f = lookup(name)) != NULL) *(void **)&nm_system.field = f;
  NM_RESOLVE(malloc, "malloc")
  NM_RESOLVE(free, "free")
  NM_RESOLVE(calloc, "calloc")
  NM_RESOLVE(realloc, "realloc")
  NM_RESOLVE(memalign, "memalign")
  NM_RESOLVE(usable_size, "malloc_usable_size")
  NM_RESOLVE(trim, "malloc_trim")
  NM_RESOLVE(mallopt, "mallopt")
  NM_RESOLVE(mallinfo2, "mallinfo2")
  NM_RESOLVE(malloc_stats, "malloc_stats")
#undef NM_RESOLVE
}

void *nm_system_malloc(size_t n) {
  return nm_system.malloc(n);
}

void *nm_system_calloc(size_t count, size_t size) {
  return nm_system.calloc(count, size);
}

void *nm_system_memalign(size_t alignment, size_t n) {
  return nm_system.memalign(alignment, n);
}

void nm_system_free(void *p) {
  if (p == NULL || nm_bootstrap_contains(p)) return;
  nm_system.free(p);
}

size_t nm_system_usable_size(void *p) {
  if (p == NULL) return 0;
  if (nm_bootstrap_contains(p)) return nm_bootstrap_usable_size(p);
  return nm_system.usable_size(p);
}

void *nm_system_realloc(void *p, size_t n) {
  if (p != NULL && nm_bootstrap_contains(p)) {
    void *q = nm_system.malloc(n);
    if (q == NULL) return NULL;
    size_t old = nm_bootstrap_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    return q;
  }
  return nm_system.realloc(p, n);
}
