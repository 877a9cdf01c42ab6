/* dlopen with RTLD_DEEPBIND binds the library to libc's own malloc while the rest of the
 * program uses ours, and pointers then cross allocators (jemalloc#2419, gperftools#1148).
 * We drop the flag and say so once on stderr, as heaptrack does. */
#include <dlfcn.h>

#include "nm_types.h"
#include "os/os.h"

#define NM_EXPORT __attribute__((visibility("default")))

static void *(*nm_next_dlopen)(const char *, int);
static int nm_deepbind_warned;

static NM_COLD int nm_dlopen_strip_deepbind(const char *file, int mode) {
  if (!__atomic_exchange_n(&nm_deepbind_warned, 1, __ATOMIC_RELAXED)) {
    static const char msg[] = "nebula: dlopen(RTLD_DEEPBIND) would bind the library to another "
                              "malloc; the flag is ignored so every allocation goes through nebula (";
    nm_os_write(2, msg, sizeof msg - 1);
    const char *f = file ? file : "main program";
    const char *e = f;
    while (*e) e++;
    nm_os_write(2, f, (size_t)(e - f));
    nm_os_write(2, ")\n", 2);
  }
  return mode & ~RTLD_DEEPBIND;
}

static NM_COLD void nm_dlopen_resolve(void) {
  nm_next_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
}

/* Ends in a sibling call, so glibc sees the program's return address as the caller and
 * resolves RUNPATH and $ORIGIN against the real caller, not against us. */
NM_EXPORT void *dlopen(const char *file, int mode) {
  if (NM_UNLIKELY(nm_next_dlopen == NULL)) nm_dlopen_resolve();
  if (NM_UNLIKELY(mode & RTLD_DEEPBIND)) mode = nm_dlopen_strip_deepbind(file, mode);
  return nm_next_dlopen(file, mode);
}
