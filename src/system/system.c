#include "system/system.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "os/os.h"

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

void (*nm_system_before_first_use)(void);
_Atomic int nm_system_used;

void nm_system_first_use_slow(void) {
  static __thread bool in_hook;
  if (in_hook) return;   /* the hook itself allocating from the system: go on */
  int expected = 0;
  if (atomic_compare_exchange_strong(&nm_system_used, &expected, 1)) {
    in_hook = true;
    if (nm_system_before_first_use != NULL) nm_system_before_first_use();
    in_hook = false;
    atomic_store_explicit(&nm_system_used, 2, memory_order_release);
    return;
  }
  /* Another thread is tuning: its options must be in place before this one allocates. */
  while (atomic_load_explicit(&nm_system_used, memory_order_acquire) != 2) sched_yield();
}

void *nm_system_malloc(size_t n) {
  nm_system_first_use();
  return nm_system.malloc(n);
}

void *nm_system_calloc(size_t count, size_t size) {
  nm_system_first_use();
  return nm_system.calloc(count, size);
}

void *nm_system_memalign(size_t alignment, size_t n) {
  nm_system_first_use();
  return nm_system.memalign(alignment, n);
}

void nm_system_free(void *p) {
  if (p == NULL || nm_bootstrap_contains(p)) return;
  nm_system.free(p);
}

/* glibc's chunk header (malloc/malloc.c): the size word before the block, its low bits
 * flags; an mmapped chunk also has the bytes before it in the mapping (prev_size). */
#define NM_GLIBC_MMAPPED 2u
#define NM_GLIBC_FLAGS 7u
#define NM_GLIBC_MINSIZE 32u
#define NM_GLIBC_ARENA_CHUNK_MAX ((size_t)32 << 20)   /* DEFAULT_MMAP_THRESHOLD_MAX */

/* The checks glibc's free makes before it touches anything but the header ("free():
 * invalid pointer", "free(): invalid size", "munmap_chunk(): invalid pointer"), so a bad
 * pointer is caught before malloc_usable_size would follow a garbage size. */
static size_t nm_glibc_block_size(const void *p) {
  uintptr_t a = (uintptr_t)p;
  if (a & 15u) return 0;
  /* Where glibc puts the blocks it maps on their own: one freed already is unmapped, and
   * its header would fault (glibc's own free does). One syscall, for big blocks only. */
  if ((a & (nm_os_page_size() - 1)) == 16 && !nm_os_mapped((const uint8_t *)p - 16)) return 0;
  size_t head = ((const size_t *)p)[-1];
  size_t size = head & ~(size_t)NM_GLIBC_FLAGS;
  uintptr_t chunk = a - 16;
  if (size < NM_GLIBC_MINSIZE || (size & 15u) || chunk > (uintptr_t)0 - size) return 0;
  /* glibc maps blocks above its mmap threshold (at most 32 MiB) on their own: an arena
   * chunk that claims more is suspect, and free would read the header after it. */
  if (head & NM_GLIBC_MMAPPED) {
    size_t prev = ((const size_t *)p)[-2];
    size_t page = nm_os_page_size();
    size_t in_page = a & (page - 1);
    if (((chunk - prev) | (prev + size)) & (page - 1) || (in_page & (in_page - 1))) return 0;
    return size - 16;
  }
  if (size > NM_GLIBC_ARENA_CHUNK_MAX && !nm_os_mapped((const uint8_t *)chunk + size)) return 0;
  return size - 8;
}

size_t nm_system_block_size(void *p) {
  if (nm_bootstrap_contains(p)) return nm_bootstrap_usable_size(p);
  if (nm_system.free == __libc_free) return nm_glibc_block_size(p);
  return nm_system.usable_size(p);   /* another allocator: its own contract */
}

size_t nm_system_usable_size(void *p) {
  if (p == NULL) return 0;
  if (nm_bootstrap_contains(p)) return nm_bootstrap_usable_size(p);
  return nm_system.usable_size(p);
}

void *nm_system_realloc(void *p, size_t n) {
  nm_system_first_use();
  if (p != NULL && nm_bootstrap_contains(p)) {
    void *q = nm_system.malloc(n);
    if (q == NULL) return NULL;
    size_t old = nm_bootstrap_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    return q;
  }
  return nm_system.realloc(p, n);
}
