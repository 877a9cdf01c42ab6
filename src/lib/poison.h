/* Marks memory of the library allocators (bump, pool, stack) as off-limits or usable for
 * the user's own checking tools: AddressSanitizer's manual poisoning when the library is
 * built with -fsanitize=address, valgrind's client requests always (a few instructions
 * that do nothing outside valgrind). So a use after reset, after a pool free or beyond a
 * stack marker is reported by the tool the user already runs. */
#ifndef NM_LIB_POISON_H
#define NM_LIB_POISON_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define NM_LIB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NM_LIB_ASAN 1
#endif
#endif

#ifdef NM_LIB_ASAN
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define NM_ASAN_POISON(p, n) __asan_poison_memory_region((p), (n))
#define NM_ASAN_UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define NM_ASAN_POISON(p, n) ((void)(p), (void)(n))
#define NM_ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define NM_VG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define NM_VG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#else
#define NM_VG_NOACCESS(p, n) ((void)(p), (void)(n))
#define NM_VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#endif

/* n bytes at p may not be touched (freed, reset, never handed out). */
static inline void nm_lib_poison(void *p, size_t n) {
  if (n == 0) return;
  NM_ASAN_POISON(p, n);
  NM_VG_NOACCESS(p, n);
}

/* n bytes at p were just handed out: usable, contents undefined. */
static inline void nm_lib_unpoison(void *p, size_t n) {
  if (n == 0) return;
  NM_ASAN_UNPOISON(p, n);
  NM_VG_UNDEFINED(p, n);
}

#endif
