/* A library that takes SIGUSR1 for itself in its constructor, as some do (a profiler, a
 * runtime's "dump your state" signal). nm_stats_child_siglib needs it (DT_NEEDED), so its
 * constructor runs before the preload's: the preload must keep this handler (test_stats.c,
 * stats_signal/earlier_handler_kept). The handler writes one line to fd 2. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void nm_siglib_on_usr1(int sig) {
  static const char msg[] = "siglib: caught SIGUSR1\n";
  (void)sig;
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
}

__attribute__((constructor)) static void nm_siglib_init(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = nm_siglib_on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
}

/* Referenced by nm_stats_siglib_ref.c, so that the child keeps DT_NEEDED on this library. */
__attribute__((visibility("default"))) int nm_siglib_present(void) {
  return 1;
}
