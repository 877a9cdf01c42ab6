/* A program linked against libnebula_preload.so (DT_NEEDED, not LD_PRELOAD: glibc ignores
 * LD_PRELOAD paths with a slash in a secure process), run by test_host's secure suite from
 * a copy that is setuid root, setgid root or has file capabilities, as user nobody. It
 * reports what the preload decided: whether the process is secure (AT_SECURE), who it runs
 * as, whether SIGUSR1 has a handler (the statistics signal, installed by default), and which
 * object serves malloc. NEBULA_MEM_CONFIG is read by the preload before main. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

int main(void) {
  struct sigaction sa;
  sigaction(SIGUSR1, NULL, &sa);
  void *(*volatile m)(size_t) = malloc;
  char *p = m(100);
  if (p == NULL) return 3;
  strcpy(p, "ok");
  Dl_info info;
  const char *from = dladdr((void *)m, &info) && info.dli_fname ? info.dli_fname : "?";
  const char *base = strrchr(from, '/');
  printf("secure=%lu uid=%d euid=%d gid=%d egid=%d usr1=%s malloc_from=%s block=%s\n",
         getauxval(AT_SECURE), (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid(),
         sa.sa_handler == SIG_DFL ? "default" : "handled", base ? base + 1 : from, p);
  free(p);
  return 0;
}
