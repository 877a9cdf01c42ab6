/* NEBULA_MEM_CONFIG at start-up: read from environ directly (no getenv, no malloc), parsed
 * by the one parser (src/config), problems written to stderr with raw write(2). */
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
