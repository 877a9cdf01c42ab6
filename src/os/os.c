#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ThreadSanitizer forgets a range's history only on the munmap it intercepts; raw syscalls
 * would leave it believing a reused address is still the last owner's memory. */
#if defined(__SANITIZE_THREAD__)
#define NM_OS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NM_OS_TSAN 1
#endif
#endif
#ifdef NM_OS_TSAN
#define NM_SYS_MMAP(hint, size, prot, flags) ((long)mmap(hint, size, prot, flags, -1, 0))
#define NM_SYS_MUNMAP(p, size) munmap(p, size)
#else
#define NM_SYS_MMAP(hint, size, prot, flags) syscall(SYS_mmap, hint, size, prot, flags, -1, 0)
#define NM_SYS_MUNMAP(p, size) syscall(SYS_munmap, p, size)
#endif

/* Why this thread's last mmap failed, for the out-of-memory report. */
static __thread int nm_os_error;

static long nm_sys_mmap(void *hint, size_t size) {
  long r = NM_SYS_MMAP(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
  if (r == -1) nm_os_error = errno;
  return r;
}

int nm_os_map_error(void) {
  int e = nm_os_error;
  nm_os_error = 0;
  return e;
}

size_t nm_os_page_size(void) {
  static size_t page;
  if (page == 0) {
    long p = sysconf(_SC_PAGESIZE);
    page = p > 0 ? (size_t)p : 4096;
  }
  return page;
}

void *nm_os_map(size_t size) {
  long r = nm_sys_mmap(NULL, size);
  return (r == -1) ? NULL : (void *)r;
}

void nm_os_unmap(void *p, size_t size) {
  if (p != NULL && size != 0) NM_SYS_MUNMAP(p, size);
}

/* The next aligned address after the last segment: consecutive segments usually come back
 * aligned from the first mmap, sparing the over-map-and-trim dance. */
static _Atomic uintptr_t nm_map_hint;

void *nm_os_map_aligned(size_t size, size_t align) {
  uintptr_t hint = atomic_load_explicit(&nm_map_hint, memory_order_relaxed);
  long r = nm_sys_mmap((void *)hint, size);
  if (r != -1 && ((uintptr_t)r & (align - 1)) == 0) goto done;
  if (r != -1) {
    /* Try the next aligned address: usually free, and it needs no extra address space
     * (which matters under RLIMIT_AS). */
    uintptr_t next = ((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1);
    nm_os_unmap((void *)r, size);
    r = nm_sys_mmap((void *)next, size);
    if (r != -1 && ((uintptr_t)r & (align - 1)) == 0) goto done;
    if (r != -1) nm_os_unmap((void *)r, size);
  }
  /* Over-map by align and trim both ends. */
  r = nm_sys_mmap(NULL, size + align);
  if (r == -1) return NULL;
  {
    uintptr_t base = (uintptr_t)r;
    uintptr_t aligned = (base + align - 1) & ~(uintptr_t)(align - 1);
    if (aligned > base) nm_os_unmap((void *)base, aligned - base);
    uintptr_t end = base + size + align;
    if (end > aligned + size) nm_os_unmap((void *)(aligned + size), end - (aligned + size));
    r = (long)aligned;
  }
done:
  atomic_store_explicit(&nm_map_hint, (uintptr_t)r + size, memory_order_relaxed);
  return (void *)r;
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

void *nm_os_map_at(void *at, size_t size) {
  long r = NM_SYS_MMAP(at, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE);
  if (r == -1) {
    nm_os_error = errno;
    return NULL;
  }
  if ((void *)r != at) {   /* a kernel before 4.17 took the flag for a hint */
    NM_SYS_MUNMAP((void *)r, size);
    nm_os_error = EEXIST;
    return NULL;
  }
  return at;
}

bool nm_os_move(void *from, size_t size, void *to) {
#ifdef NM_OS_TSAN
  (void)from, (void)size, (void)to;   /* TSan would not know the bytes moved: copy instead */
  return false;
#else
  long r = syscall(SYS_mremap, from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  return r != -1 && (void *)r == to;
#endif
}

void nm_os_purge(void *p, size_t size) {
  syscall(SYS_madvise, p, size, MADV_DONTNEED);
}

void nm_os_write(int fd, const char *buf, size_t len) {
  while (len > 0) {
    long n = syscall(SYS_write, fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    buf += n;
    len -= (size_t)n;
  }
}

uint64_t nm_os_now_ms(void) {
  struct timespec ts;
  int saved = errno;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  errno = saved;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

size_t nm_os_rss(void) {
  int saved = errno;
  char buf[128];
  size_t rss = 0;
  long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n > 0) {
      buf[n] = 0;
      const char *s = buf;
      while (*s && *s != ' ') s++;           /* skip total size */
      while (*s == ' ') s++;
      while (*s >= '0' && *s <= '9') rss = rss * 10 + (size_t)(*s++ - '0');
      rss *= nm_os_page_size();
    }
  }
  errno = saved;
  return rss;
}

bool nm_os_mapped(const void *p) {
  unsigned char vec;
  uintptr_t page = (uintptr_t)p & ~(uintptr_t)(nm_os_page_size() - 1);
  int saved = errno;
  bool mapped = !(mincore((void *)page, 1, &vec) != 0 && errno == ENOMEM);
  errno = saved;
  return mapped;
}
