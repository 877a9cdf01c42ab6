/* The malloc entry points a program reaches through LD_PRELOAD. Each one is the inline
 * fast path of the heap, then a call out of line; nothing else. A pointer from any of them
 * may be passed to any other, and pointers of the next allocator (made before we loaded,
 * or by it directly) are passed back to it. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/introspect.h"
#include "init.h"
#include "system/system.h"

#define NM_EXPORT __attribute__((visibility("default")))

/* Requests on the thread that is initialising, while dlsym runs. */
static NM_COLD void *nm_bootstrap_request(size_t n) {
  void *p = nm_bootstrap_alloc(n);
  if (p == NULL) errno = ENOMEM;
  return p;
}

static NM_NOINLINE void *nm_preload_malloc_slow(size_t n) {
  if (NM_UNLIKELY(!nm_preload_ensure())) return nm_bootstrap_request(n);
  return nm_malloc_slow(n);
}

NM_EXPORT void *malloc(size_t n) {
  void *p = nm_alloc_fast(n);
  if (NM_LIKELY(p != NULL)) return p;
  return nm_preload_malloc_slow(n);
}

NM_EXPORT void free(void *p) {
  if (NM_LIKELY(nm_free_owned(p))) return;
  nm_system_free(p);   /* NULL, bootstrap and foreign pointers */
}

NM_EXPORT void *calloc(size_t count, size_t size) {
  if (NM_UNLIKELY(!nm_preload_ready_now()) && !nm_preload_ensure()) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
      errno = ENOMEM;
      return NULL;
    }
    return nm_bootstrap_request(n);   /* static, never reused: already zero */
  }
  return nm_calloc(count, size);
}

NM_EXPORT void *realloc(void *p, size_t n) {
  if (NM_UNLIKELY(!nm_preload_ready_now()) && !nm_preload_ensure()) {
    void *q = nm_bootstrap_request(n);
    if (q != NULL && p != NULL) {
      size_t old = nm_system_usable_size(p);
      memcpy(q, p, old < n ? old : n);
    }
    return q;
  }
  return nm_realloc(p, n);
}

NM_EXPORT void *reallocarray(void *p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n);
}

static inline void nm_preload_wait(void) {
  if (NM_UNLIKELY(!nm_preload_ready_now())) nm_preload_ensure();
}

NM_EXPORT int posix_memalign(void **out, size_t alignment, size_t n) {
  nm_preload_wait();
  return nm_posix_memalign(out, alignment, n);
}

NM_EXPORT void *aligned_alloc(size_t alignment, size_t n) {
  nm_preload_wait();
  return nm_aligned_alloc(alignment, n);
}

NM_EXPORT void *memalign(size_t alignment, size_t n) {
  nm_preload_wait();
  return nm_memalign(alignment, n);
}

NM_EXPORT void *valloc(size_t n) {
  nm_preload_wait();
  return nm_valloc(n);
}

NM_EXPORT void *pvalloc(size_t n) {
  nm_preload_wait();
  return nm_pvalloc(n);
}

NM_EXPORT size_t malloc_usable_size(void *p) {
  return nm_usable_size(p);
}

/* C23 sized frees (glibc 2.43 has them): the size is a hint we do not need. */
NM_EXPORT void free_sized(void *p, size_t size) {
  (void)size;
  free(p);
}

NM_EXPORT void free_aligned_sized(void *p, size_t alignment, size_t size) {
  (void)alignment;
  (void)size;
  free(p);
}

NM_EXPORT void cfree(void *p) {
  free(p);
}

NM_EXPORT int malloc_trim(size_t pad) {
  nm_preload_wait();
  return nm_trim(pad);
}

/* Options tune glibc's own arenas: they still apply to the system backend. */
NM_EXPORT int mallopt(int param, int value) {
  nm_preload_wait();
  return nm_system.mallopt(param, value);
}

NM_EXPORT struct mallinfo2 mallinfo2(void) {
  nm_preload_wait();
  return nm_mallinfo2();
}

/* The deprecated int version: fields saturate instead of wrapping. */
NM_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo m;
#define NM_SAT(x) ((x) > INT32_MAX ? INT32_MAX : (int)(x))
  m.arena = NM_SAT(m2.arena);
  m.ordblks = NM_SAT(m2.ordblks);
  m.smblks = NM_SAT(m2.smblks);
  m.hblks = NM_SAT(m2.hblks);
  m.hblkhd = NM_SAT(m2.hblkhd);
  m.usmblks = NM_SAT(m2.usmblks);
  m.fsmblks = NM_SAT(m2.fsmblks);
  m.uordblks = NM_SAT(m2.uordblks);
  m.fordblks = NM_SAT(m2.fordblks);
  m.keepcost = NM_SAT(m2.keepcost);
#undef NM_SAT
  return m;
}

NM_EXPORT void malloc_stats(void) {
  nm_preload_wait();
  nm_malloc_stats();
}
