/* The malloc entry points a program reaches through LD_PRELOAD. Each one is the inline
 * fast path of the heap, then a call out of line; nothing else. A pointer from any of them
 * may be passed to any other, and pointers of the next allocator (made before we loaded,
 * or by it directly) are passed back to it. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diag/guard.h"
#include "diag/stats_dump.h"
#include "heap/alloc.h"
#include "heap/introspect.h"
#include "init.h"
#include "os/os.h"
#include "system/system.h"

#define NM_EXPORT __attribute__((visibility("default")))

/* Requests on the thread that is initialising, while dlsym runs. */
static NM_COLD void *nm_bootstrap_request(size_t n) {
  void *p = nm_bootstrap_alloc(n);
  if (p == NULL) errno = ENOMEM;
  return p;
}

/* caller: the program's call site, which the guard records (alloc_backtrace). */
static NM_NOINLINE void *nm_preload_malloc_slow(size_t n, void *caller) {
  if (NM_UNLIKELY(!nm_preload_ensure())) return nm_bootstrap_request(n);
  if (nm_guard_on) return nm_guard_alloc(NM_ENTRY_MALLOC, n, 0, false, caller);
  void *p = nm_malloc_slow(n);
  return NM_LIKELY(p != NULL) ? p : nm_oom(NM_ENTRY_MALLOC, n, 0, 0);
}

NM_EXPORT void *malloc(size_t n) {
  void *p = nm_alloc_fast(n);
  if (NM_LIKELY(p != NULL)) return p;
  return nm_preload_malloc_slow(n, __builtin_return_address(0));
}

/* The guard's blocks live on flagged pages (or are foreign), so only this slow path
 * needs to look at it. */
static NM_NOINLINE void nm_preload_free_slow(void *p) {
  /* free(NULL) is common (C code frees fields it may never have set): it ends here, not
   * after the foreign-pointer checks, and costs the fast path nothing. */
  if (p == NULL) return;
  if (nm_guard_on) nm_guard_free(NM_ENTRY_FREE, p);
  else nm_free_checked(p);   /* other threads' blocks, foreign pointers, misuse */
}

NM_EXPORT void free(void *p) {
  if (NM_LIKELY(nm_free_fast(p))) return;
  nm_preload_free_slow(p);
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
  size_t n;
  if (NM_UNLIKELY(__builtin_mul_overflow(count, size, &n)))
    return nm_oom(NM_ENTRY_CALLOC, size, count, 0);
  if (nm_guard_on) return nm_guard_alloc(NM_ENTRY_CALLOC, n, 0, true, __builtin_return_address(0));
  void *p = nm_calloc(count, size);
  return NM_LIKELY(p != NULL) ? p : nm_oom(NM_ENTRY_CALLOC, size, count, 0);
}

/* realloc's failure: the report, and with oom=fallback a block from the system backend
 * that takes over p's content. */
static NM_COLD void *nm_realloc_failed(nm_entry_t entry, void *p, size_t n, size_t count,
                                       size_t size) {
  void *q = nm_oom(entry, size, count, 0);
  if (q != NULL && p != NULL) {
    size_t old = nm_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    free(p);
  }
  return q;
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
  if (nm_guard_on) return nm_guard_realloc(NM_ENTRY_REALLOC, p, n, __builtin_return_address(0));
  void *q = nm_realloc(p, n);
  if (NM_UNLIKELY(q == NULL) && n != 0) return nm_realloc_failed(NM_ENTRY_REALLOC, p, n, 0, n);
  return q;
}

NM_EXPORT void *reallocarray(void *p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    nm_preload_ensure();
    return nm_oom(NM_ENTRY_REALLOCARRAY, size, count, 0);
  }
  if (NM_UNLIKELY(!nm_preload_ready_now()) || n == 0) return realloc(p, n);
  if (nm_guard_on) return nm_guard_realloc(NM_ENTRY_REALLOCARRAY, p, n, __builtin_return_address(0));
  void *q = nm_realloc(p, n);
  if (NM_UNLIKELY(q == NULL)) return nm_realloc_failed(NM_ENTRY_REALLOCARRAY, p, n, count, size);
  return q;
}

static inline void nm_preload_wait(void) {
  if (NM_UNLIKELY(!nm_preload_ready_now())) nm_preload_ensure();
}

/* memalign-style requests: glibc's checks first (no report for a bad alignment), then the
 * guard or the heap, then the out-of-memory handling. */
static void *nm_aligned_request(nm_entry_t entry, size_t alignment, size_t n, void *caller) {
  nm_preload_wait();
  if (nm_guard_on) {
    if (alignment > SIZE_MAX / 2 + 1) {
      errno = EINVAL;
      return NULL;
    }
    return nm_guard_alloc(entry, n, alignment, false, caller);
  }
  void *p = nm_memalign(alignment, n);
  if (NM_UNLIKELY(p == NULL) && errno == ENOMEM) p = nm_oom(entry, n, 0, alignment);
  return p;
}

NM_EXPORT int posix_memalign(void **out, size_t alignment, size_t n) {
  if (!nm_posix_alignment_ok(alignment)) return EINVAL;
  int saved = errno;
  void *p = nm_aligned_request(NM_ENTRY_POSIX_MEMALIGN, alignment, n, __builtin_return_address(0));
  return nm_posix_memalign_end(out, p, saved);
}

NM_EXPORT void *aligned_alloc(size_t alignment, size_t n) {
  return nm_aligned_request(NM_ENTRY_ALIGNED_ALLOC, alignment, n, __builtin_return_address(0));   /* glibc: memalign */
}

NM_EXPORT void *memalign(size_t alignment, size_t n) {
  return nm_aligned_request(NM_ENTRY_MEMALIGN, alignment, n, __builtin_return_address(0));
}

NM_EXPORT void *valloc(size_t n) {
  return nm_aligned_request(NM_ENTRY_VALLOC, nm_os_page_size(), n, __builtin_return_address(0));
}

NM_EXPORT void *pvalloc(size_t n) {
  size_t page = nm_os_page_size(), rounded;
  if (!nm_pvalloc_size(n, page, &rounded)) {
    nm_preload_wait();
    return nm_oom(NM_ENTRY_PVALLOC, n, 0, page);
  }
  return nm_aligned_request(NM_ENTRY_PVALLOC, page, rounded, __builtin_return_address(0));
}

NM_EXPORT size_t malloc_usable_size(void *p) {
  if (NM_UNLIKELY(nm_guard_on)) return nm_guard_usable_size(p);
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
  nm_system_first_use();   /* our tuning first, so the program's options win */
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
  nm_stats_dump_text_stderr();   /* ours, then the system backend's own */
  static const char next[] = "nebula: the system backend's malloc_stats follows\n";
  nm_os_write(2, next, sizeof next - 1);
  nm_system.malloc_stats();
}
