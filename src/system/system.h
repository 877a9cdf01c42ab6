/* The system backend: the next allocator in the link chain (glibc, or another preloaded
 * allocator). Large requests and pointers that are not ours go here. Before the next
 * allocator is known (while dlsym runs), requests are served from a static bootstrap area
 * whose blocks stay valid forever and may be passed to free/realloc/usable_size later. */
#ifndef NM_SYSTEM_H
#define NM_SYSTEM_H

#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct nm_system_s {
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  void *(*memalign)(size_t, size_t);
  size_t (*usable_size)(void *);
  int (*trim)(size_t);
  int (*mallopt)(int, int);
  struct mallinfo2 (*mallinfo2)(void);
  void (*malloc_stats)(void);
} nm_system_t;

/* Functions of the next allocator. They start as glibc's __libc_* entry points (safe in
 * the preload before it has looked anything up); nm_system_resolve replaces them all with
 * one family, so a block never goes to another allocator's free. */
extern nm_system_t nm_system;

/* Fill nm_system from lookup(name): dlsym(RTLD_NEXT) in the preload. Names lookup cannot
 * find keep their previous function. */
void nm_system_resolve(void *(*lookup)(const char *name));
/* Library builds (no preload): the program's own malloc family, found with
 * dlsym(RTLD_DEFAULT) — glibc's, or a sanitizer's — unless nm_system_resolve ran. */
void nm_system_resolve_default(void);

/* Called once, before the system allocator serves its first allocation or takes its first
 * option (nm_system_first_use): the preload tunes glibc there, so a program that never
 * needs glibc's allocator never runs (or maps) that code. */
extern void (*nm_system_before_first_use)(void);
void nm_system_first_use_slow(void);
extern _Atomic int nm_system_used;   /* 0 never, 1 running the hook, 2 done */
static inline void nm_system_first_use(void) {
  if (__builtin_expect(__atomic_load_n(&nm_system_used, __ATOMIC_ACQUIRE) != 2, 0)) nm_system_first_use_slow();
}

void *nm_system_malloc(size_t n);
void *nm_system_calloc(size_t count, size_t size);
void *nm_system_realloc(void *p, size_t n);
void *nm_system_memalign(size_t alignment, size_t n);
void nm_system_free(void *p);
size_t nm_system_usable_size(void *p);
/* Usable size of p if it can be a live block of the system allocator, 0 if it cannot (a
 * misaligned pointer or a header glibc's free would refuse). Reads only the block's
 * header; for an allocator other than glibc it asks that allocator. p != NULL. */
size_t nm_system_block_size(void *p);

/* Bootstrap area: for allocations made while the next allocator is being looked up. */
void *nm_bootstrap_alloc(size_t n);
bool nm_bootstrap_contains(const void *p);
size_t nm_bootstrap_usable_size(const void *p);

#endif
