/* NEBULA_MEM_CONFIG at start-up: read from environ directly (no getenv, no malloc), parsed
 * by the one parser (src/config), problems written to stderr with raw write(2). Ignored
 * entirely in a secure process (AT_SECURE), as glibc ignores its malloc tunables there. */
#include <sys/auxv.h>
#include <unistd.h>

#include "config/config.h"
#include "env_config.h"
#include "os/os.h"
#include "util/fmt.h"

extern char **environ;

#define NM_CONFIG_PROBLEMS_SHOWN 16

const char *nm_preload_env(const char *name) {
  if (environ == NULL) return NULL;
  for (char **e = environ; *e != NULL; e++) {
    const char *a = *e, *b = name;
    while (*b && *a == *b) a++, b++;
    if (*b == 0 && *a == '=') return a + 1;
  }
  return NULL;
}

/* The kernel sets AT_SECURE when the program gained privileges at exec: setuid or setgid
 * (effective ids differ from the real ones), file capabilities, or an LSM's say. glibc
 * reads the same flag (__libc_enable_secure). getauxval reads the auxiliary vector ld.so
 * saved: no allocation, usable before malloc works. */
bool nm_preload_secure(void) { return getauxval(AT_SECURE) != 0; }

static void nm_config_say(const char *what) {
  char storage[256];
  nm_buf_t b = NM_BUF(storage);
  nm_buf_str(&b, "nebula: config: ");
  nm_buf_str(&b, what);
  nm_buf_char(&b, '\n');
  nm_os_write(STDERR_FILENO, b.data, b.len);
}

void nm_preload_read_config(nm_config_t *cfg) {
  nm_config_defaults(cfg);
  /* In a secure process the environment belongs to a less privileged user: stats_file would
   * let them create or append to any file as the program's owner, strict=1 would let them
   * stop it, budget= starve it. Silently, as glibc does with GLIBC_TUNABLES' malloc keys
   * (and nothing of the variable is echoed to stderr). */
  if (nm_preload_secure()) return;
  const char *text = nm_preload_env("NEBULA_MEM_CONFIG");
  if (text == NULL || *text == 0) return;
  nm_config_problem_t problems[NM_CONFIG_PROBLEMS_SHOWN];
  size_t n = nm_config_parse(text, cfg, problems, NM_CONFIG_PROBLEMS_SHOWN);
  for (size_t i = 0; i < n && i < NM_CONFIG_PROBLEMS_SHOWN; i++) nm_config_say(problems[i].message);
  if (n > NM_CONFIG_PROBLEMS_SHOWN) {
    char storage[96];
    nm_buf_t b = NM_BUF(storage);
    nm_buf_u64(&b, n - NM_CONFIG_PROBLEMS_SHOWN);
    nm_buf_str(&b, " more problems not shown");
    nm_buf_char(&b, 0);
    nm_config_say(storage);
  }
  if (n == 0) return;
  if (cfg->strict) {
    nm_config_say("strict=1: stopping because of the problems above (exit status 2)");
    _exit(2);
  }
  nm_config_say("the keys above keep their defaults; the program goes on");
}
