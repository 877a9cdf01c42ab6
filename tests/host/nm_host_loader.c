/* A library that calls dlopen itself: glibc searches its DT_RUNPATH ($ORIGIN/../loaded),
 * not the program's, because the call comes from here. The preload's dlopen must keep that
 * for RTLD_DEEPBIND too. */
#include <dlfcn.h>

#define NM_EXPORT __attribute__((visibility("default")))

static void *volatile last;

/* Not a tail call: the return address dlopen sees must be in this library. */
NM_EXPORT void *loader_open(const char *name, int flags) {
  void *h = dlopen(name, flags);
  last = h;
  return last;
}
