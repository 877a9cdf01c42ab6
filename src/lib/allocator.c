/* The common interface: dispatch, and the process's malloc behind it. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib_internal.h"

NEBULA_API void *nebula_allocate(nebula_allocator_t *a, size_t size, size_t align) {
  if (a == NULL) return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_allocate", NULL, size, align, NULL,
                                    "pass an allocator", "the allocator is NULL");
  return a->ops->allocate(a, size, align);
}

NEBULA_API void *nebula_allocate_array(nebula_allocator_t *a, size_t count, size_t size, size_t align) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total))
    return nm_lib_fail(NEBULA_ERR_OVERFLOW, "nebula_allocate_array", a, size, align, NULL,
                       "check the element count: it came from a computation that overflowed",
                       "%zu elements of %zu bytes do not fit in a size_t", count, size);
  return nebula_allocate(a, total, align);
}

NEBULA_API bool nebula_deallocate(nebula_allocator_t *a, void *p) {
  if (p == NULL) return true;
  if (a == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_deallocate", NULL, 0, 0, p, "pass the allocator p came from",
                "the allocator is NULL");
    return false;
  }
  return a->ops->deallocate(a, p);
}

NEBULA_API void *nebula_reallocate(nebula_allocator_t *a, void *p, size_t size, size_t align) {
  if (a == NULL) return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_reallocate", NULL, size, align, p,
                                    "pass the allocator p came from", "the allocator is NULL");
  if (p == NULL) return a->ops->allocate(a, size, align);
  if (a->ops->reallocate != NULL) return a->ops->reallocate(a, p, size, align);
  size_t old = a->ops->usable_size(a, p);
  if (old == 0)
    return nm_lib_fail(NEBULA_ERR_INVALID_POINTER, "nebula_reallocate", a, size, align, p,
                       "pass a pointer this allocator handed out", "%p is not a block of %s", p,
                       nebula_allocator_name(a));
  void *q = a->ops->allocate(a, size, align);
  if (q == NULL) return NULL;   /* p unchanged; the error is the allocation's */
  memcpy(q, p, old < size ? old : size);
  a->ops->deallocate(a, p);
  return q;
}

NEBULA_API size_t nebula_usable_size(nebula_allocator_t *a, const void *p) {
  return (a == NULL || p == NULL) ? 0 : a->ops->usable_size(a, p);
}

NEBULA_API const char *nebula_allocator_name(const nebula_allocator_t *a) {
  return (a == NULL || a->name == NULL) ? "(unnamed)" : a->name;
}

NEBULA_API void nebula_allocator_state(nebula_allocator_t *a, nebula_allocator_state_t *out) {
  memset(out, 0, sizeof *out);
  if (a != NULL && a->ops->state != NULL) a->ops->state(a, out);
}

NEBULA_API void nebula_allocator_destroy(nebula_allocator_t *a) {
  if (a != NULL && a->ops->destroy != NULL) a->ops->destroy(a);
}

/* ---- the system allocator ---------------------------------------------------------------- */

static void *nm_sys_allocate(nebula_allocator_t *a, size_t size, size_t align) {
  if (!nm_lib_align_ok(&align))
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_allocate", a, size, align, NULL,
                       "use a power of two", "alignment %zu is not a power of two", align);
  void *p = NULL;
  int err = align <= NM_LIB_DEFAULT_ALIGN ? ((p = malloc(size ? size : 1)) ? 0 : ENOMEM)
                                          : posix_memalign(&p, align, size ? size : 1);
  if (err != 0 || p == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_allocate", a, size, align, NULL,
                       "lower the request, or raise the process's memory limits",
                       "malloc returned NULL (%s)", strerror(err ? err : ENOMEM));
  return p;
}

static bool nm_sys_deallocate(nebula_allocator_t *a, void *p) {
  (void)a;
  free(p);
  return true;
}

static void *nm_sys_reallocate(nebula_allocator_t *a, void *p, size_t size, size_t align) {
  if (!nm_lib_align_ok(&align))
    return nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_reallocate", a, size, align, p,
                       "use a power of two", "alignment %zu is not a power of two", align);
  if (align <= NM_LIB_DEFAULT_ALIGN) {
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
      return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_reallocate", a, size, align, p,
                         "lower the request, or raise the process's memory limits", "realloc returned NULL");
    return q;
  }
  void *q = nm_sys_allocate(a, size, align);
  if (q == NULL) return NULL;
  size_t old = malloc_usable_size(p);
  memcpy(q, p, old < size ? old : size);
  free(p);
  return q;
}

static size_t nm_sys_usable(nebula_allocator_t *a, const void *p) {
  (void)a;
  return malloc_usable_size((void *)p);
}

static void nm_sys_state(nebula_allocator_t *a, nebula_allocator_state_t *out) {
  (void)a;
  struct mallinfo2 m = mallinfo2();
  memset(out, 0, sizeof *out);
  out->used = m.uordblks + m.hblkhd;
  out->capacity = m.arena + m.hblkhd;
  out->available = m.fordblks;
  out->peak = out->used;
  out->utilization = out->capacity ? (double)out->used / (double)out->capacity : 0.0;
}

static const nebula_allocator_ops_t nm_sys_ops = {
  .allocate = nm_sys_allocate,
  .deallocate = nm_sys_deallocate,
  .reallocate = nm_sys_reallocate,
  .usable_size = nm_sys_usable,
  .state = nm_sys_state,
  .destroy = NULL,
};

static nebula_allocator_t nm_sys_allocator = { &nm_sys_ops, "system" };

NEBULA_API nebula_allocator_t *nebula_system_allocator(void) { return &nm_sys_allocator; }
