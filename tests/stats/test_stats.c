/* Statistics under the preload, end to end: dumps on a signal while threads allocate hard,
 * their counts against what the program knows, every format, the stats / stats_signal /
 * stats_format / stats_file keys, malloc_stats and mallinfo2, errno across the handler,
 * and scripts/nebula-stats.
 *
 * Each test runs nm_stats_child (see nm_stats_child.c) with LD_PRELOAD in the child's
 * environment only, either to completion (spawn.c's nm_run) or in the background (bg_*
 * below: the test sends it signals while it runs), and hands the dumps to check_stats.py
 * (not preloaded), which parses and cross-checks them.
 *
 * Suites: signal, quiesce, format, exit, stats_signal, api, errno_kept, script run in the meson
 * test `stats`. The suite known_bug holds one test per allocator bug found by these tests;
 * each is registered as its own meson test with should_fail: true (tests/stats/meson.build). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"

extern char **environ;

#define TIMEOUT_S 30.0
#define HAMMER_SIGNALS 300

/* ------------------------------------------------------------------ paths */

static const char *child_path(void) {
  return nm_env_required("NM_STATS_CHILD");
}

static const char *checker_path(void) {
  return nm_env_required("NM_STATS_CHECK");
}

static const char *python_path(void) {
  const char *p = getenv("NM_PYTHON");
  if (p == NULL || p[0] == '\0') p = "/usr/bin/python3";
  cr_assert(access(p, X_OK) == 0, "no python at %s (NM_PYTHON)", p);
  return p;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static char *read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  cr_assert(buf != NULL);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len - 1 == 0) {
      cap *= 2;
      buf = realloc(buf, cap);
      cr_assert(buf != NULL);
    }
  }
  fclose(f);
  buf[len] = '\0';
  if (len_out) *len_out = len;
  return buf;
}

static char *path_in(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *path_in(const char *dir, const char *fmt, ...) {
  char name[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  char *p = NULL;
  cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
  return p;
}

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0, len = strlen(needle);
  for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + len, needle)) n++;
  return n;
}

static bool starts_with(const char *s, const char *prefix) {
  return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ running the child */

typedef struct run_s {
  nm_result_t r;
  char how[2048]; /* how to reproduce, for messages */
} run_t;

static void how_of(char *how, size_t size, const char *config, const char *const *argv) {
  size_t n = (size_t)snprintf(how, size, "NEBULA_MEM_CONFIG='%s' LD_PRELOAD=%s", config ? config : "",
                              nm_preload_path());
  for (size_t i = 0; argv[i] != NULL && n < size; i++)
    n += (size_t)snprintf(how + n, size - n, " '%s'", argv[i]);
}

/* Runs argv under the preload with NEBULA_MEM_CONFIG=config to completion; asserts it
 * finished in time. */
static void run_argv(run_t *run, const char *config, const char *const *argv) {
  memset(run, 0, sizeof *run);
  nm_cmd_t cmd = {.argv = argv,
                 .preload = true,
                 .config = config ? config : "",
                 .timeout_s = TIMEOUT_S,
                 .backtrace_on_hang = true};
  how_of(run->how, sizeof run->how, config, argv);
  cr_assert(nm_run(&cmd, &run->r), "could not start: %s", run->how);
  cr_assert(!run->r.timed_out,
            "HANG: timed out after %.0f s: %s\nstdout:\n%s\nstderr:\n%s\nbacktraces:\n%s",
            run->r.seconds, run->how, run->r.out, nm_tail(run->r.err, run->r.err_len, 4000),
            run->r.report ? nm_tail(run->r.report, strlen(run->r.report), 12000) : "(none)");
}

static void run_free(run_t *run) {
  nm_result_free(&run->r);
}

static char *ctx_msg(const run_t *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *ctx_msg(const run_t *run, const char *fmt, ...) {
  char what[4096], status[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  nm_result_status(&run->r, status, sizeof status);
  char *msg = NULL;
  if (asprintf(&msg, "%s\nreproduce: %s\n--- status: %s\n--- stdout:\n%s--- stderr:\n%s", what,
               run->how, status, run->r.out ? nm_tail(run->r.out, run->r.out_len, 3000) : "",
               nm_tail(run->r.err, run->r.err_len, 4000)) < 0)
    msg = NULL;
  return msg;
}

#define CHECK(run, cond, ...)                                        \
  do {                                                               \
    if (!(cond)) {                                                   \
      char *m_ = ctx_msg((run), __VA_ARGS__);                        \
      cr_assert_fail("%s", m_ ? m_ : "(no memory for the message)"); \
    }                                                                \
  } while (0)

static void expect_exit0(run_t *run) {
  CHECK(run, run->r.exited && run->r.exit_code == 0, "expected exit 0");
}

/* ------------------------------------------------------------------ the checker */

/* Runs check_stats.py (not preloaded) with args; asserts exit 0. `about` says which run the
 * dumps came from. Returns its stdout (malloc'ed). */
static char *check_py(const run_t *about, const char *const *args) {
  const char *argv[24] = {python_path(), checker_path()};
  size_t n = 2;
  for (size_t i = 0; args[i] != NULL && n < 23; i++) argv[n++] = args[i];
  argv[n] = NULL;
  nm_cmd_t cmd = {.argv = argv, .preload = false, .timeout_s = 60};
  nm_result_t r;
  cr_assert(nm_run(&cmd, &r), "could not run %s", checker_path());
  char cmdline[4096];
  size_t k = 0;
  for (size_t i = 0; argv[i] != NULL && k < sizeof cmdline; i++)
    k += (size_t)snprintf(cmdline + k, sizeof cmdline - k, "%s%s", i ? " " : "", argv[i]);
  if (!(r.exited && r.exit_code == 0)) {
    char status[128];
    nm_result_status(&r, status, sizeof status);
    if (about != NULL) {
      CHECK(about, false, "the dumps do not check out (%s):\n%s\n%s\nchecker: %s", status,
            nm_tail(r.err, r.err_len, 6000), r.out, cmdline);
    }
    cr_assert_fail("the dumps do not check out (%s):\n%s\n%s\nchecker: %s", status,
                   nm_tail(r.err, r.err_len, 6000), r.out, cmdline);
  }
  cr_log_info("%s", r.out);
  char *out = strdup(r.out);
  nm_result_free(&r);
  return out;
}

/* "dumps=N" from a checker's result line. */
static long dumps_of(const char *line) {
  const char *p = strstr(line, "dumps=");
  return p ? strtol(p + 6, NULL, 10) : -1;
}

/* ------------------------------------------------------------------ background children */

/* A child that runs while the test talks to it: stdout and stderr go to files in dir (a
 * file never fills up as a pipe would while nobody reads it), LD_PRELOAD a copy of the
 * preload made for the test (the build may relink the original meanwhile). */
typedef struct bg_s {
  pid_t pid;
  char *out_path, *err_path;
  char how[2048];
  bool reaped;
  int status;
} bg_t;

static char *preload_copy(const char *dir) {
  char *dst = path_in(dir, "libnebula_preload.so");
  if (access(dst, R_OK) == 0) return dst;
  size_t len;
  char *data = read_file(nm_preload_path(), &len);
  cr_assert(data != NULL, "cannot read %s", nm_preload_path());
  nm_write_file(dst, data, len);
  free(data);
  return dst;
}

/* As bg_start, but preload false: no LD_PRELOAD at all (a plain program, with
 * NEBULA_MEM_CONFIG still in its environment). */
static void bg_start_ex(bg_t *bg, const char *dir, const char *tag, const char *config,
                        const char *const *argv, bool preload_it) {
  memset(bg, 0, sizeof *bg);
  bg->out_path = path_in(dir, "%s.out", tag);
  bg->err_path = path_in(dir, "%s.err", tag);
  how_of(bg->how, sizeof bg->how, config, argv);
  char *preload = preload_copy(dir);
  size_t n = 0;
  while (environ[n] != NULL) n++;
  char **env = calloc(n + 3, sizeof *env);
  cr_assert(env != NULL);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 && strncmp(environ[i], "NEBULA_MEM_CONFIG=", 18) != 0)
      env[k++] = environ[i];
  char *lp = NULL, *cf = NULL;
  if (preload_it) {
    cr_assert(asprintf(&lp, "LD_PRELOAD=%s", preload) > 0);
    env[k++] = lp;
  }
  if (config != NULL) {
    cr_assert(asprintf(&cf, "NEBULA_MEM_CONFIG=%s", config) > 0);
    env[k++] = cf;
  }
  env[k] = NULL;
  int out = open(bg->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(bg->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  cr_assert(out >= 0 && err >= 0, "open %s: %s", bg->out_path, strerror(errno));
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
      if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0 && dup2(in, 0) >= 0 && dup2(out, 1) >= 0 && dup2(err, 2) >= 0)
      execve(argv[0], (char *const *)argv, env);
    _exit(127);
  }
  setpgid(pid, pid);
  close(out);
  close(err);
  free(lp);
  free(cf);
  free(env);
  free(preload);
  bg->pid = pid;
}

static void bg_start(bg_t *bg, const char *dir, const char *tag, const char *config,
                     const char *const *argv) {
  bg_start_ex(bg, dir, tag, config, argv, true);
}

/* Reaps the child if it has exited; true if it is still running. */
static bool bg_running(bg_t *bg) {
  if (bg->reaped) return false;
  pid_t r = waitpid(bg->pid, &bg->status, WNOHANG);
  if (r == bg->pid) bg->reaped = true;
  return !bg->reaped;
}

static const char *bg_status(const bg_t *bg, char *buf, size_t size) {
  if (!bg->reaped) snprintf(buf, size, "still running");
  else if (WIFEXITED(bg->status)) snprintf(buf, size, "exit %d", WEXITSTATUS(bg->status));
  else if (WIFSIGNALED(bg->status))
    snprintf(buf, size, "signal %d (%s)", WTERMSIG(bg->status), strsignal(WTERMSIG(bg->status)));
  else snprintf(buf, size, "status 0x%x", bg->status);
  return buf;
}

static char *bg_msg(bg_t *bg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *bg_msg(bg_t *bg, const char *fmt, ...) {
  char what[4096], status[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  size_t ol = 0, el = 0;
  char *out = read_file(bg->out_path, &ol), *err = read_file(bg->err_path, &el);
  char *msg = NULL;
  if (asprintf(&msg, "%s\nreproduce: %s\n--- status: %s\n--- stdout:\n%s--- stderr (%s):\n%s", what,
               bg->how, bg_status(bg, status, sizeof status), out ? nm_tail(out, ol, 3000) : "",
               bg->err_path, err ? nm_tail(err, el, 4000) : "") < 0)
    msg = NULL;
  free(out);
  free(err);
  return msg;
}

#define BG_CHECK(bg, cond, ...)                                      \
  do {                                                               \
    if (!(cond)) {                                                   \
      char *m_ = bg_msg((bg), __VA_ARGS__);                          \
      if ((bg)->pid > 0 && !(bg)->reaped) kill(-(bg)->pid, SIGKILL); \
      cr_assert_fail("%s", m_ ? m_ : "(no memory for the message)"); \
    }                                                                \
  } while (0)

/* Waits until the child's stdout has `needle`; asserts it does within timeout_s. */
static void bg_wait_output(bg_t *bg, const char *needle, double timeout_s) {
  double end = now_s() + timeout_s;
  for (;;) {
    char *out = read_file(bg->out_path, NULL);
    bool found = out != NULL && strstr(out, needle) != NULL;
    free(out);
    if (found) return;
    BG_CHECK(bg, bg_running(bg), "the child ended before printing '%s'", needle);
    BG_CHECK(bg, now_s() < end, "no '%s' from the child within %.0f s", needle, timeout_s);
    sleep_ms(5);
  }
}

/* gdb backtraces of the child's threads, for a hang report (NULL without gdb). */
static char *bg_backtraces(bg_t *bg) {
  if (access("/usr/bin/gdb", X_OK) != 0) return NULL;
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg->pid);
  const char *argv[] = {"/usr/bin/gdb", "-nx", "-batch", "-p", pid, "-ex", "info threads",
                        "-ex", "thread apply all bt 30", NULL};
  nm_cmd_t g = {.argv = argv, .timeout_s = 60};
  nm_result_t r;
  nm_run(&g, &r);
  char *out = strdup(r.out ? r.out : "");
  nm_result_free(&r);
  return out;
}

/* Waits for the child to end; a HANG (with backtraces) if it has not within timeout_s. */
static void bg_finish(bg_t *bg, double timeout_s) {
  double end = now_s() + timeout_s;
  while (bg_running(bg) && now_s() < end) sleep_ms(10);
  if (!bg->reaped) {
    char *bt = bg_backtraces(bg);
    kill(-bg->pid, SIGKILL);
    waitpid(bg->pid, &bg->status, 0);
    bg->reaped = true;
    BG_CHECK(bg, false, "HANG: the child did not end within %.0f s (killed)\nbacktraces:\n%s",
             timeout_s, bt ? nm_tail(bt, strlen(bt), 12000) : "(no gdb)");
  }
}

static void bg_expect_exit0(bg_t *bg) {
  BG_CHECK(bg, bg->reaped && WIFEXITED(bg->status) && WEXITSTATUS(bg->status) == 0,
           "expected exit 0");
}

static void bg_free(bg_t *bg) {
  if (bg->pid > 0 && !bg->reaped) {
    kill(-bg->pid, SIGKILL);
    waitpid(bg->pid, &bg->status, 0);
  }
  free(bg->out_path);
  free(bg->err_path);
  memset(bg, 0, sizeof *bg);
}

/* Sends `count` SIGUSR1, 5 ms apart, asserting the child is alive before each; every
 * `every` signals (0: never) the current stats file (path) is copied to DIR/snap.N.json,
 * which is how a reader (scripts/nebula-stats) sees it while the program runs. Returns the
 * number of snapshots. */
static int bg_signals(bg_t *bg, int sig, int count, const char *path, int every, const char *dir) {
  int snaps = 0;
  for (int i = 0; i < count; i++) {
    BG_CHECK(bg, bg_running(bg), "the child ended after %d of %d signals", i, count);
    BG_CHECK(bg, kill(bg->pid, sig) == 0, "kill: %s", strerror(errno));
    sleep_ms(5);
    if (path != NULL && every > 0 && (i + 1) % every == 0) {
      size_t len;
      char *data = read_file(path, &len);
      BG_CHECK(bg, data != NULL, "no stats file %s after %d signals", path, i + 1);
      char *snap = path_in(dir, "snap.%d.json", snaps++);
      nm_write_file(snap, data, len);
      free(snap);
      free(data);
    }
  }
  return snaps;
}

/* Every line of the child's stderr is one of `allowed` (prefixes). */
static void bg_stderr_only(bg_t *bg, const char *const *allowed) {
  char *err = read_file(bg->err_path, NULL);
  BG_CHECK(bg, err != NULL, "no stderr file");
  for (char *l = err; *l;) {
    char *nl = strchr(l, '\n');
    size_t ll = nl ? (size_t)(nl - l) : strlen(l);
    bool ok = false;
    for (size_t i = 0; allowed[i] != NULL && !ok; i++)
      ok = strncmp(l, allowed[i], strlen(allowed[i])) == 0;
    BG_CHECK(bg, ok, "unexpected line on stderr: '%.*s'", (int)(ll > 300 ? 300 : ll), l);
    l = nl ? nl + 1 : l + ll;
  }
  free(err);
}

static const char *const SKIPPED = "nebula: statistics dump skipped: another one is in progress";

/* ================================================================== signal */

/* 4 threads allocating and freeing hard (cross-thread frees included), 300 SIGUSR1 from the
 * test 5 ms apart, dumps to a stats file: the child neither crashes nor hangs and stops
 * cleanly on SIGTERM; the file, read while it runs and at the end, is always a whole dump
 * that checks out (check_stats.py json) and no temporary file (PATH.tmp.PID.N) is left
 * behind. */
static void hammer_json_file(const char *strategy) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "%s%sstats_format=json,stats_file=%s/s.%%p.json",
           strategy ? strategy : "", strategy ? "," : "", dir);
  const char *argv[] = {child_path(), "hammer", "4", "0", "60", NULL};
  bg_t bg;
  bg_start(&bg, dir, "hammer", config, argv);
  bg_wait_output(&bg, "ready\n", TIMEOUT_S);
  char *file = path_in(dir, "s.%d.json", (int)bg.pid);
  int snaps = bg_signals(&bg, SIGUSR1, HAMMER_SIGNALS, file, 50, dir);
  BG_CHECK(&bg, kill(bg.pid, SIGTERM) == 0, "kill: %s", strerror(errno));
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  char *out = read_file(bg.out_path, NULL);
  BG_CHECK(&bg, out != NULL && strstr(out, "hammer ok threads=4 ") != NULL, "no 'hammer ok' line");
  free(out);
  bg_stderr_only(&bg, (const char *const[]){SKIPPED, NULL});
  char *tmp = NULL;
  DIR *dd = opendir(dir);
  cr_assert(dd != NULL);
  for (struct dirent *de; (de = readdir(dd)) != NULL;)
    if (strstr(de->d_name, ".tmp") != NULL && tmp == NULL) tmp = path_in(dir, "%s", de->d_name);
  closedir(dd);
  BG_CHECK(&bg, tmp == NULL, "%s left behind", tmp);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  const char *args[16] = {"json", file};
  for (int i = 0; i < snaps && i < 10; i++) args[2 + i] = path_in(dir, "snap.%d.json", i);
  size_t k = 2 + (size_t)(snaps < 10 ? snaps : 10);
  args[k++] = "--pid";
  args[k++] = pid;
  args[k] = NULL;
  free(check_py(NULL, args));
  cr_log_info("hammer%s%s: %d signals, %d snapshots of %s checked", strategy ? ", " : "",
              strategy ? strategy : "", HAMMER_SIGNALS, snaps, file);
  bg_free(&bg);
  free(file);
  free(tmp);
  nm_tmpdir_remove(dir);
  free(dir);
}

Test(signal, hammer_json_file, .timeout = 90) {
  hammer_json_file(NULL);
}

/* The same under strategy=throughput: blocks up to 64 KiB in bump regions (freed by other
 * threads too), the rest in large pages and the system backend. */
Test(signal, hammer_json_file_throughput, .timeout = 90) {
  hammer_json_file("strategy=throughput");
}

/* The same with text dumps to stderr (the default format and file; stats_format=text
 * given, since without any stats key no handler is installed): every dump is whole, laid
 * out as documented, and ends with its class table; nothing else is on stderr but
 * "skipped" notices; at least a third of the signals made a dump (the kernel merges a
 * signal sent while the previous one is still pending, so not every signal has to). */
Test(signal, hammer_text_stderr, .timeout = 90) {
  char *dir = nm_tmpdir_make("stats");
  const char *argv[] = {child_path(), "hammer", "4", "0", "60", NULL};
  bg_t bg;
  bg_start(&bg, dir, "hammer", "stats_format=text", argv);
  bg_wait_output(&bg, "ready\n", TIMEOUT_S);
  bg_signals(&bg, SIGUSR1, HAMMER_SIGNALS, NULL, 0, dir);
  BG_CHECK(&bg, kill(bg.pid, SIGTERM) == 0, "kill: %s", strerror(errno));
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  char *res = check_py(NULL, (const char *const[]){"text", bg.err_path, "--pid", pid, "--min",
                                                   "100", NULL});
  char *err = read_file(bg.err_path, NULL);
  long dumps = dumps_of(res);
  size_t skipped = count_of(err, SKIPPED);
  cr_log_info("hammer, text to stderr: %d signals, %ld dumps, %zu skipped", HAMMER_SIGNALS, dumps,
              skipped);
  BG_CHECK(&bg, dumps + (long)skipped <= HAMMER_SIGNALS, "%ld dumps and %zu skipped for %d signals",
           dumps, skipped, HAMMER_SIGNALS);
  free(err);
  free(res);
  bg_free(&bg);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* JSON dumps to stderr: every line holding a dump starts with {"schema" and is a whole
 * JSON document that checks out; all of them are validated in one python run. */
static void hammer_json_stderr(const char *config) {
  char *dir = nm_tmpdir_make("stats");
  const char *argv[] = {child_path(), "hammer", "4", "0", "60", NULL};
  bg_t bg;
  bg_start(&bg, dir, "hammer", config, argv);
  bg_wait_output(&bg, "ready\n", TIMEOUT_S);
  bg_signals(&bg, SIGUSR1, HAMMER_SIGNALS, NULL, 0, dir);
  BG_CHECK(&bg, kill(bg.pid, SIGTERM) == 0, "kill: %s", strerror(errno));
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  char *res = check_py(NULL, (const char *const[]){"json-lines", bg.err_path, "--pid", pid,
                                                   "--min", "100", NULL});
  cr_log_info("hammer, %s: %d signals, %ld dumps", config, HAMMER_SIGNALS, dumps_of(res));
  free(res);
  bg_free(&bg);
  nm_tmpdir_remove(dir);
  free(dir);
}

Test(signal, hammer_json_stderr, .timeout = 90) {
  hammer_json_stderr("stats_format=json");
}

/* The same under strategy=throughput (bump regions made, recycled and pinned while the
 * dumps read their counters). */
Test(signal, hammer_json_stderr_throughput, .timeout = 90) {
  hammer_json_stderr("strategy=throughput,stats_format=json");
}

/* The program signals itself (kill(getpid()) from its main thread, so the handler runs on
 * whichever thread the kernel picks, often one in the middle of malloc or free), 300
 * times: exit 0, and the last dump in the file checks out. */
Test(signal, hammer_self_signals, .timeout = 90) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/s.%%p.json", dir);
  char nsig[16];
  snprintf(nsig, sizeof nsig, "%d", HAMMER_SIGNALS);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "hammer", "4", nsig, "60", NULL});
  expect_exit0(&run);
  char want[64];
  snprintf(want, sizeof want, " signals=%d\n", HAMMER_SIGNALS);
  CHECK(&run, strstr(run.r.out, "hammer ok threads=4 ") && strstr(run.r.out, want),
        "expected 'hammer ok threads=4 ...%s'", want);
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  struct dirent *de;
  char *file = NULL;
  while ((de = readdir(d)) != NULL)
    if (starts_with(de->d_name, "s.") && strstr(de->d_name, ".json") &&
        !strstr(de->d_name, ".tmp"))
      file = path_in(dir, "%s", de->d_name);
  closedir(d);
  CHECK(&run, file != NULL, "no stats file in %s", dir);
  free(check_py(&run, (const char *const[]){"json", file, NULL}));
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* ================================================================== quiesce */

/* A known set of blocks (1000 x 24 B, 500 x 200 B, 200 x 3000 B by calloc, 20 x 300 KiB,
 * 3 x 5 MiB), a third of each freed; JSON dumps by raise(SIGUSR1) before and after. Between
 * the two, per backend (pool with large, large, bump, system) and per pool class, allocs,
 * frees, remote frees and live blocks grow by exactly what the program did, and bytes in
 * use by exactly the malloc_usable_size sum of its live blocks (pool classes: class size;
 * large: page bytes; system: glibc's usable size); bump bytes are its live regions, at
 * least the usable bytes of the live bump blocks. Both dumps pass the quiescent checks
 * (live = allocs - frees - remote frees everywhere, live blocks fit their pages). */
static void quiesce_case(const char *route, const char *threads) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "%sstats_format=json,stats_file=%s/s.%%p.json",
           strcmp(route, "throughput") == 0 ? "strategy=throughput," : "", dir);
  run_t run;
  if (strcmp(threads, "realloc") == 0)
    run_argv(&run, config, (const char *const[]){child_path(), "realloc", dir, NULL});
  else
    run_argv(&run, config, (const char *const[]){child_path(), "quiesce", route, threads, dir, NULL});
  expect_exit0(&run);
  char head[128];
  snprintf(head, sizeof head, "quiesce route=%s threads=%s ", route, threads);
  CHECK(&run, starts_with(run.r.out, head), "stdout should start with '%s'", head);
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr");
  char *out = path_in(dir, "child.out");
  nm_write_file(out, run.r.out, run.r.out_len);
  char *base = path_in(dir, "base.json");
  char *final = NULL;
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (starts_with(de->d_name, "s.") && !strstr(de->d_name, ".tmp")) final = path_in(dir, "%s", de->d_name);
  closedir(d);
  CHECK(&run, final != NULL, "no second dump in %s", dir);
  free(check_py(&run, (const char *const[]){"quiesce", base, final, out, NULL}));
  free(out);
  free(base);
  free(final);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

Test(quiesce, one_thread_default_route) {
  quiesce_case("default", "0");
}

/* Two threads, each freeing the other's blocks (every free is remote for the pool, large
 * and bump backends; system frees count as plain frees of the freeing thread), then each
 * calls malloc_trim(0), which collects the remote frees of its heap. */
Test(quiesce, cross_thread_default_route) {
  quiesce_case("default", "2");
}

/* strategy=throughput: 24, 200 and 3000 B go to bump regions, 300 KiB to large pages. */
Test(quiesce, one_thread_throughput) {
  quiesce_case("throughput", "0");
}

Test(quiesce, cross_thread_throughput) {
  quiesce_case("throughput", "2");
}

/* Blocks realloc moves between backends (large grown in place, large to system, system
 * grown, system to a class and to a large page, a class to a large page and back, calloc,
 * posix_memalign, aligned_alloc, realloc(p, 0)): live blocks and bytes in use per backend
 * and per class equal what the program holds (operation counts are the allocator's
 * business here). */
Test(quiesce, realloc_between_backends) {
  quiesce_case("default", "realloc");
}

/* ================================================================== known_bug */

/* A thread whose first call into the allocator is free() of a system-backend block (a
 * consumer thread: it never allocated, so it has no heap) must have that free counted;
 * it once was not (the system backend showed the block live forever). Pool and large
 * blocks freed the same way are remote frees, collected by their owner. */
Test(quiesce, system_free_by_thread_without_heap) {
  quiesce_case("default", "freer");
}

/* ================================================================== format */

static void prom_expect(run_t *run, const char *text, const char *needle) {
  CHECK(run, strstr(text, needle) != NULL, "the Prometheus dump lacks '%s'", needle);
}

/* promtool on PATH? */
static char *find_in_path(const char *name) {
  const char *path = getenv("PATH");
  if (path == NULL) return NULL;
  char *copy = strdup(path), *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
    char *cand = path_in(d[0] ? d : ".", "%s", name);
    if (access(cand, X_OK) == 0) {
      free(copy);
      return cand;
    }
    free(cand);
  }
  free(copy);
  return NULL;
}

/* Validates a Prometheus exposition: always with check_stats.py's strict parser, and with
 * promtool check metrics and/or prometheus_client's parser when installed. */
static void prom_validate(run_t *run, const char *file) {
  char *res = check_py(run, (const char *const[]){"prometheus", file, NULL});
  cr_log_info("prometheus validator: check_stats.py strict parser: %s", res);
  free(res);
  bool other = false;
  char *promtool = find_in_path("promtool");
  if (promtool != NULL) {
    nm_cmd_t cmd = {.argv = (const char *const[]){promtool, "check", "metrics", NULL},
                    .stdin_path = file,
                    .timeout_s = 60};
    nm_result_t r;
    nm_run(&cmd, &r);
    CHECK(run, r.exited && r.exit_code == 0, "promtool check metrics %s failed (exit %d):\n%s%s", file,
          r.exit_code, r.out, r.err);
    cr_log_info("prometheus validator: %s check metrics: ok", promtool);
    nm_result_free(&r);
    free(promtool);
    other = true;
  }
  nm_cmd_t probe = {.argv = (const char *const[]){python_path(), "-c",
                                                  "import prometheus_client.parser", NULL},
                    .timeout_s = 60};
  nm_result_t r;
  nm_run(&probe, &r);
  bool have_client = r.exited && r.exit_code == 0;
  nm_result_free(&r);
  if (have_client) {
    const char *script =
        "import sys\n"
        "from prometheus_client.parser import text_string_to_metric_families\n"
        "fams = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n"
        "print('families=%d samples=%d' % (len(fams), sum(len(f.samples) for f in fams)))\n";
    nm_cmd_t cmd = {.argv = (const char *const[]){python_path(), "-c", script, file, NULL},
                    .timeout_s = 60};
    nm_run(&cmd, &r);
    CHECK(run, r.exited && r.exit_code == 0, "prometheus_client's parser rejects %s:\n%s%s", file,
          r.out, r.err);
    cr_log_info("prometheus validator: prometheus_client.parser: %s", r.out);
    nm_result_free(&r);
    other = true;
  }
  if (!other)
    cr_log_info("prometheus validator: neither promtool nor python3-prometheus-client is "
                "installed; only the strict parser of check_stats.py ran");
}

/* stats_format=prometheus to a file, with two budgets set: a valid exposition (see
 * prom_validate) with every documented family, one sample per backend, per-class samples
 * labelled by size, and the budget families labelled by key. */
Test(format, prometheus_file) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config,
           "stats_format=prometheus,stats_file=%s/m.%%p.prom,budget=1G,pool_budget=512M", dir);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr (the dump goes to the file)");
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  struct dirent *de;
  char *file = NULL;
  while ((de = readdir(d)) != NULL)
    if (starts_with(de->d_name, "m.")) file = path_in(dir, "%s", de->d_name);
  closedir(d);
  CHECK(&run, file != NULL && strstr(file, ".tmp") == NULL, "no stats file (or only a .tmp) in %s",
        dir);
  char *text = read_file(file, NULL);
  prom_validate(&run, file);
  const char *families[] = {"nebula_allocations_total", "nebula_frees_total",
                            "nebula_remote_frees_total", "nebula_live_blocks",
                            "nebula_bytes_in_use", NULL};
  const char *backends[] = {"pool", "large", "bump", "system", NULL};
  for (size_t f = 0; families[f]; f++) {
    char want[256];
    snprintf(want, sizeof want, "# TYPE %s %s\n", families[f],
             strstr(families[f], "_total") ? "counter" : "gauge");
    prom_expect(&run, text, want);
    for (size_t b = 0; backends[b]; b++) {
      snprintf(want, sizeof want, "\n%s{backend=\"%s\"} ", families[f], backends[b]);
      prom_expect(&run, text, want);
    }
  }
  /* the child holds 40 blocks of malloc(1000): class 1024 (4 classes per doubling) */
  prom_expect(&run, text, "\nnebula_class_allocations_total{size=\"1024\"} ");
  prom_expect(&run, text, "\nnebula_class_peak_page_bytes{size=\"1024\"} ");
  const char *lb = strstr(text, "\nnebula_class_live_blocks{size=\"1024\"} ");
  CHECK(&run, lb != NULL && strtoull(lb + 39, NULL, 10) >= 40,
        "nebula_class_live_blocks{size=\"1024\"} should count the 40 blocks of 1000 B the "
        "program holds:\n%s", text);
  prom_expect(&run, text, "\nnebula_budget_bytes{key=\"budget\"} 1073741824\n");
  prom_expect(&run, text, "\nnebula_budget_bytes{key=\"pool_budget\"} 536870912\n");
  prom_expect(&run, text, "\nnebula_budget_used_bytes{key=\"pool_budget\"} ");
  for (const char *g = "nebula_mapped_bytes\0nebula_page_bytes\0nebula_page_bytes_peak\0"
                       "nebula_purged_bytes_total\0nebula_bump_regions\0"
                       "nebula_bump_regions_pinned\0nebula_rss_bytes\0nebula_threads\0";
       *g; g += strlen(g) + 1) {
    char want[256];
    snprintf(want, sizeof want, "\n%s ", g);
    prom_expect(&run, text, want);
  }
  free(text);
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats_format=prometheus to stderr: the same exposition, alone on stderr. */
Test(format, prometheus_stderr) {
  char *dir = nm_tmpdir_make("stats");
  run_t run;
  run_argv(&run, "stats_format=prometheus",
           (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, starts_with(run.r.err, "# HELP nebula_allocations_total "),
        "stderr should start with the first HELP line");
  char *file = path_in(dir, "stderr.prom");
  nm_write_file(file, run.r.err, run.r.err_len);
  prom_validate(&run, file);
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* Runs check_stats.py on data written to DIR/name; returns its exit code (not asserted). */
static int check_py_on(const char *dir, const char *name, const char *data, const char *mode,
                       char **err_out) {
  char *file = path_in(dir, "%s", name);
  nm_write_file(file, data, strlen(data));
  nm_cmd_t cmd = {.argv = (const char *const[]){python_path(), checker_path(), mode, file, NULL},
                  .timeout_s = 60};
  nm_result_t r;
  cr_assert(nm_run(&cmd, &r));
  int code = r.exited ? r.exit_code : -1;
  if (err_out) *err_out = strdup(r.err);
  nm_result_free(&r);
  free(file);
  return code;
}

/* The checkers are not vacuous: the strict Prometheus parser rejects each kind of broken
 * exposition, and the text and JSON checkers reject a dump cut short or with a count that
 * does not add up (built from a real dump). */
Test(format, checkers_reject_broken_input) {
  char *dir = nm_tmpdir_make("stats");
  static const char *const bad_prom[] = {
      "# TYPE a counter\na 1\na 1\n",                                  /* duplicate series */
      "a 1\n# TYPE a counter\n",                                        /* TYPE after sample */
      "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",     /* not contiguous */
      "# TYPE a gauge\na{x=\"\\q\"} 1\n",                            /* bad escape */
      "# TYPE 1a gauge\n1a 1\n",                                        /* bad metric name */
      "# TYPE a gauge\na one\n",                                        /* bad value */
      "a 1\n",                                                         /* no TYPE */
      "# TYPE a gauge\n# TYPE a gauge\na 1\n",                          /* second TYPE */
      "# TYPE a counter\na -1\n",                                       /* negative counter */
      "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",                        /* label twice */
      "# TYPE a gauge\na 1",                                           /* no final newline */
      NULL};
  for (size_t i = 0; bad_prom[i] != NULL; i++) {
    char *err = NULL;
    int code = check_py_on(dir, "bad.prom", bad_prom[i], "prometheus", &err);
    cr_assert(code == 1, "the strict Prometheus parser accepts (exit %d):\n%s\nstderr: %s", code,
              bad_prom[i], err);
    free(err);
  }
  cr_assert(check_py_on(dir, "good.prom", "# HELP a x\n# TYPE a counter\na{b=\"c\\\"\"} 1\n",
                        "prometheus", NULL) == 0,
            "the strict Prometheus parser rejects a valid exposition");

  run_t run;
  run_argv(&run, "stats_format=text", (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  char *text = strdup(run.r.err);
  char *last = strrchr(text, '\n');
  cr_assert(last != NULL && last > text);
  *last = '\0';
  char *cut = strrchr(text, '\n');   /* the start of the last class row */
  cr_assert(cut != NULL && strlen(cut) > 21);
  cut[1 + 20] = '\0';               /* cut after 20 of its characters */
  CHECK(&run, check_py_on(dir, "cut.txt", text, "text", NULL) == 1,
        "check_stats.py text accepts a dump cut short:\n%s", text);
  free(text);
  text = strdup(run.r.err);
  char *total = strstr(text, "\n  total ");
  CHECK(&run, total != NULL, "no total line");
  total[9] = 'X';
  CHECK(&run, check_py_on(dir, "total.txt", text, "text", NULL) == 1,
        "check_stats.py text accepts a dump with a broken total line:\n%s", text);
  free(text);
  run_free(&run);

  run_argv(&run, "stats_format=json", (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, check_py_on(dir, "ok.json", run.r.err, "json", NULL) == 0, "check_stats.py json rejects a real dump");
  text = strdup(run.r.err);
  char *allocs = strstr(text, "\"total\":{\"allocs\":");
  CHECK(&run, allocs != NULL, "no total allocs");
  allocs[18] = allocs[18] == '9' ? '8' : '9';   /* a count that no longer adds up */
  CHECK(&run, check_py_on(dir, "bad.json", text, "json", NULL) == 1,
        "check_stats.py json accepts a dump whose total is not pool + bump + system:\n%s", text);
  text[strlen(text) / 2] = '\0';
  CHECK(&run, check_py_on(dir, "half.json", text, "json", NULL) == 1,
        "check_stats.py json accepts half a dump");
  free(text);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats_file=stderr means stderr. */
Test(format, stats_file_stderr) {
  run_t run;
  run_argv(&run, "stats_format=json,stats_file=stderr",
           (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, starts_with(run.r.err, "{\"schema\":\"nebula-memory/stats\",") &&
                  count_of(run.r.err, "\n") == 1,
        "one JSON dump expected on stderr");
  run_free(&run);
}

/* One text dump to stderr on SIGUSR1 (the default signal; the default format, given
 * explicitly: without any stats key no handler is installed). */
Test(format, text_stderr) {
  char *dir = nm_tmpdir_make("stats");
  run_t run;
  run_argv(&run, "stats_format=text", (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  char *file = path_in(dir, "stderr.txt");
  nm_write_file(file, run.r.err, run.r.err_len);
  free(check_py(&run, (const char *const[]){"text", file, "--exact", "1", NULL}));
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* A stats_file path with a quote and a backslash comes back in the JSON dump's
 * "stats_file" key, escaped: the dump still parses and names the path as configured. */
Test(format, json_escapes_stats_file) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/q\"b\\s.%%p.json", dir);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr");
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  struct dirent *de;
  char *file = NULL;
  while ((de = readdir(d)) != NULL)
    if (starts_with(de->d_name, "q\"b\\s.")) file = path_in(dir, "%s", de->d_name);
  closedir(d);
  CHECK(&run, file != NULL, "no file q\"b\\s.PID.json in %s", dir);
  free(check_py(&run, (const char *const[]){"json", file, NULL}));
  char expect[4200];
  snprintf(expect, sizeof expect, "%s/q\"b\\s.%%p.json", dir);
  char script[] = "import json,sys\n"
                  "d = json.load(open(sys.argv[1]))\n"
                  "assert d.get('stats_file') == sys.argv[2], (d.get('stats_file'), sys.argv[2])\n";
  nm_cmd_t cmd = {.argv = (const char *const[]){python_path(), "-c", script, file, expect, NULL},
                  .timeout_s = 60};
  nm_result_t r;
  nm_run(&cmd, &r);
  CHECK(&run, r.exited && r.exit_code == 0, "the dump's stats_file is not the configured path:\n%s",
        r.err);
  nm_result_free(&r);
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* ================================================================== exit */

/* stats=exit: one text dump on stderr when the program exits, none before. */
Test(exit, text_to_stderr) {
  char *dir = nm_tmpdir_make("stats");
  run_t run;
  run_argv(&run, "stats=exit", (const char *const[]){child_path(), "exit", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "bye\n") == 0, "expected 'bye'");
  char *file = path_in(dir, "stderr.txt");
  nm_write_file(file, run.r.err, run.r.err_len);
  free(check_py(&run, (const char *const[]){"text", file, "--exact", "1", NULL}));
  CHECK(&run, starts_with(run.r.err, "nebula: statistics of pid "),
        "stderr should be the dump alone");
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats=exit with stats_format=json and a stats_file: the file holds the exit dump, which
 * checks out as quiescent and counts the 5 blocks of 100 B (class 112) the program keeps. */
Test(exit, json_to_file) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats=exit,stats_format=json,stats_file=%s/x.%%p.json", dir);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "exit", NULL});
  expect_exit0(&run);
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr");
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  struct dirent *de;
  char *file = NULL;
  int files = 0;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') {
      files++;
      file = path_in(dir, "%s", de->d_name);
    }
  closedir(d);
  CHECK(&run, files == 1 && file != NULL && strstr(file, "/x.") && !strstr(file, ".tmp"),
        "expected exactly the file x.PID.json in %s (%d files)", dir, files);
  free(check_py(&run, (const char *const[]){"json", file, "--quiescent", NULL}));
  char *text = read_file(file, NULL);
  const char *c = strstr(text, "\"size\":112,");
  unsigned long long allocs = 0, frees = 0, remote = 0, live = 0;
  CHECK(&run, c != NULL &&
                  sscanf(c, "\"size\":112,\"allocs\":%llu,\"frees\":%llu,\"remote_frees\":%llu,"
                            "\"live_blocks\":%llu",
                         &allocs, &frees, &remote, &live) == 4,
        "no class of 112 B in the exit dump:\n%s", text);
  CHECK(&run, allocs >= 10 && frees >= 5 && live >= 5,
        "class 112: %llu allocs, %llu frees, %llu live; the program made 10 and freed 5", allocs,
        frees, live);
  free(text);
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats=off (the default): nothing on stderr at exit. */
Test(exit, off_by_default) {
  run_t run;
  run_argv(&run, NULL, (const char *const[]){child_path(), "exit", NULL});
  expect_exit0(&run);
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr without stats=exit");
  run_free(&run);
}

/* Runs argv under the preload on a pseudo-terminal (stdin, stdout and stderr), output
 * merged; *status from waitpid. */
static char *run_on_pty(const char *dir, const char *config, const char *const *argv, int *status) {
  char *preload = preload_copy(dir);
  size_t n = 0;
  while (environ[n] != NULL) n++;
  char **env = calloc(n + 3, sizeof *env);
  cr_assert(env != NULL);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 && strncmp(environ[i], "NEBULA_MEM_CONFIG=", 18) != 0)
      env[k++] = environ[i];
  char *lp = NULL, *cf = NULL;
  cr_assert(asprintf(&lp, "LD_PRELOAD=%s", preload) > 0 && asprintf(&cf, "NEBULA_MEM_CONFIG=%s", config) > 0);
  env[k++] = lp;
  env[k++] = cf;
  env[k] = NULL;
  int master;
  pid_t pid = forkpty(&master, NULL, NULL, NULL);
  cr_assert(pid >= 0, "forkpty: %s", strerror(errno));
  if (pid == 0) {
    execve(argv[0], (char *const *)argv, env);
    _exit(127);
  }
  size_t cap = 1 << 16, len = 0;
  char *out = malloc(cap);
  cr_assert(out != NULL);
  double end = now_s() + TIMEOUT_S;
  for (;;) {
    struct pollfd pfd = {master, POLLIN, 0};
    int pr = poll(&pfd, 1, 200);
    if (pr > 0) {
      if (len + 4096 + 1 > cap) {
        cap *= 2;
        out = realloc(out, cap);
        cr_assert(out != NULL);
      }
      ssize_t r = read(master, out + len, 4096);
      if (r > 0) len += (size_t)r;
      else if (r == 0 || errno != EINTR) break;   /* EIO: the child closed the terminal */
    }
    if (now_s() > end) {
      kill(pid, SIGKILL);
      break;
    }
  }
  out[len] = '\0';
  close(master);
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
  free(lp);
  free(cf);
  free(env);
  free(preload);
  return out;
}

/* stats=terminal (the development preset's): at exit, but to stderr only when it is a
 * terminal. On a pipe (as here): nothing; on a pseudo-terminal: one dump after "bye". */
Test(exit, terminal_only_on_a_terminal) {
  const char *const configs[] = {"stats=terminal", "preset=development", NULL};
  char *dir = nm_tmpdir_make("stats");
  for (size_t i = 0; configs[i] != NULL; i++) {
    run_t run;
    run_argv(&run, configs[i], (const char *const[]){child_path(), "exit", NULL});
    expect_exit0(&run);
    CHECK(&run, run.r.err_len == 0, "%s: nothing expected on stderr when it is not a terminal",
          configs[i]);
    run_free(&run);
    int status = 0;
    char *out = run_on_pty(dir, configs[i], (const char *const[]){child_path(), "exit", NULL}, &status);
    const char *bye = strstr(out, "bye\r\n");
    const char *dump = strstr(out, "nebula: statistics of pid ");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0 && bye != NULL && dump != NULL &&
                  dump > bye && count_of(out, "nebula: statistics of pid ") == 1,
              "NEBULA_MEM_CONFIG=%s on a terminal: expected exit 0, 'bye', then one dump; got "
              "status 0x%x and:\n%s",
              configs[i], status, out);
    free(out);
  }
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats=terminal with a stats_file writes the file at exit, whatever stderr is. */
Test(exit, terminal_with_stats_file) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "preset=development,stats_format=json,stats_file=%s/d.%%p.json", dir);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "exit", NULL});
  expect_exit0(&run);
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr");
  DIR *d = opendir(dir);
  cr_assert(d != NULL);
  struct dirent *de;
  char *file = NULL;
  while ((de = readdir(d)) != NULL)
    if (starts_with(de->d_name, "d.") && !strstr(de->d_name, ".tmp")) file = path_in(dir, "%s", de->d_name);
  closedir(d);
  CHECK(&run, file != NULL, "no exit dump d.PID.json in %s", dir);
  free(check_py(&run, (const char *const[]){"json", file, "--quiescent", NULL}));
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* preset=production (stats=off): nothing at exit. */
Test(exit, production_preset) {
  run_t run;
  run_argv(&run, "preset=production", (const char *const[]){child_path(), "exit", NULL});
  expect_exit0(&run);
  CHECK(&run, run.r.err_len == 0, "nothing expected on stderr under preset=production");
  run_free(&run);
}

/* ================================================================== stats_signal */

/* stats_signal=none installs no handler: SIGUSR1 keeps its default action and kills. */
Test(stats_signal, none_installs_no_handler) {
  run_t run;
  run_argv(&run, "stats_signal=none", (const char *const[]){child_path(), "sigself", "USR1", NULL});
  CHECK(&run, run.r.signaled && run.r.signo == SIGUSR1, "expected death by SIGUSR1");
  CHECK(&run, run.r.out_len == 0, "the program should not have survived the signal");
  CHECK(&run, strstr(run.r.err, "statistics") == NULL, "no dump expected");
  run_free(&run);
}

/* stats_signal=USR2 dumps on SIGUSR2, and leaves SIGUSR1 alone (its default action kills). */
Test(stats_signal, usr2) {
  run_t run;
  run_argv(&run, "stats_signal=USR2", (const char *const[]){child_path(), "sigself", "USR2", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR2\n") == 0, "expected 'survived USR2'");
  CHECK(&run, count_of(run.r.err, "nebula: statistics of pid ") == 1, "one dump expected");
  run_free(&run);
  run_argv(&run, "stats_signal=USR2", (const char *const[]){child_path(), "sigself", "USR1", NULL});
  CHECK(&run, run.r.signaled && run.r.signo == SIGUSR1,
        "with stats_signal=USR2, SIGUSR1 should keep its default action (death)");
  run_free(&run);
}

/* Values are case-insensitive (docs/configuration.md): stats_signal=usr2 is USR2. */
Test(stats_signal, value_case_insensitive) {
  run_t run;
  run_argv(&run, "stats_signal=usr2", (const char *const[]){child_path(), "sigself", "USR2", NULL});
  expect_exit0(&run);
  CHECK(&run, count_of(run.r.err, "nebula: statistics of pid ") == 1, "one dump expected");
  run_free(&run);
}

/* ================================================================== api */

/* malloc_stats(): our text dump (whole, for this pid), then the system backend's notice,
 * then glibc's own report ("Arena 0:" ... "Total (incl. mmap):"). mallinfo2(): uordblks
 * counts at least the usable bytes of the program's live pool and large blocks; the 5 MiB
 * system block, mmapped by glibc, is in hblkhd as glibc itself reports it, so uordblks +
 * hblkhd covers everything the program holds. */
Test(api, malloc_stats_and_mallinfo2) {
  char *dir = nm_tmpdir_make("stats");
  run_t run;
  run_argv(&run, NULL, (const char *const[]){child_path(), "mstats", NULL});
  expect_exit0(&run);
  int pid = 0;
  unsigned long long ours = 0, sys = 0, uord = 0, hblkhd = 0;
  CHECK(&run,
        sscanf(run.r.out, "mstats pid=%d ours=%llu system=%llu uordblks=%llu hblkhd=%llu", &pid,
               &ours, &sys, &uord, &hblkhd) == 5,
        "unexpected result line");
  char head[64];
  snprintf(head, sizeof head, "nebula: statistics of pid %d\n", pid);
  const char *a = strstr(run.r.err, head);
  const char *b = strstr(run.r.err, "nebula: the system backend's malloc_stats follows\n");
  const char *c = strstr(run.r.err, "Arena 0:");
  CHECK(&run, a == run.r.err, "stderr should start with '%s'", head);
  CHECK(&run, b != NULL && b > a, "no 'the system backend's malloc_stats follows' after the dump");
  CHECK(&run, c != NULL && c > b, "no glibc 'Arena 0:' after that");
  CHECK(&run, strstr(c, "Total (incl. mmap):") != NULL, "glibc's report is not complete");
  char *file = path_in(dir, "dump.txt");
  nm_write_file(file, run.r.err, (size_t)(b - run.r.err));
  char pids[32];
  snprintf(pids, sizeof pids, "%d", pid);
  free(check_py(&run, (const char *const[]){"text", file, "--exact", "1", "--pid", pids, NULL}));
  CHECK(&run, uord >= ours, "mallinfo2().uordblks = %llu < %llu usable bytes of live pool/large blocks",
        uord, ours);
  CHECK(&run, uord + hblkhd >= ours + sys,
        "mallinfo2() uordblks + hblkhd = %llu < %llu bytes the program holds", uord + hblkhd,
        ours + sys);
  free(file);
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* ================================================================== errno */

/* 200 SIGUSR1 to the main thread while it keeps setting errno and checking it: errno never
 * changes under it. Here the handler's open(2) of the stats file fails (its directory does
 * not exist), which sets errno inside the handler: the handler must put it back. */
Test(errno_kept, kept_when_the_handler_fails, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/missing/s.%%p.json", dir);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "errno", "stats_file cannot be written",
                                               "200", NULL});
  CHECK(&run, run.r.exited && run.r.exit_code == 0 &&
                  starts_with(run.r.out, "errno signals=200 dumps=200 ") &&
                  strstr(run.r.out, " bad=0 ") != NULL,
        "errno changed under the program while the statistics handler ran (or a dump was missing)");
  CHECK(&run, count_of(run.r.err, "nebula: stats_file cannot be written: ") == 200 &&
                  count_of(run.r.err, "/missing/s.") == 200 &&
                  count_of(run.r.err, ": cannot create a temporary file next to it: No such file "
                                      "or directory\n") == 200,
        "one 'stats_file cannot be written: PATH: cannot create a temporary file next to it: No "
        "such file or directory' per signal expected");
  run_free(&run);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* The same with text dumps to stderr (every syscall of the handler succeeds). */
Test(errno_kept, kept_with_text_dumps, .timeout = 60) {
  run_t run;
  run_argv(&run, "stats_format=text", (const char *const[]){child_path(), "errno", "nebula: statistics of pid",
                                             "200", NULL});
  CHECK(&run, run.r.exited && run.r.exit_code == 0 &&
                  starts_with(run.r.out, "errno signals=200 dumps=200 ") &&
                  strstr(run.r.out, " bad=0 ") != NULL,
        "errno changed under the program while the statistics handler ran (or a dump was missing)");
  run_free(&run);
}

/* ================================================================== script */

static const char *nebula_stats(void) {
  return nm_env_required("NM_NEBULA_STATS");
}

static void script_run(nm_result_t *r, const char *const *args) {
  const char *argv[16] = {python_path(), nebula_stats()};
  size_t n = 2;
  for (size_t i = 0; args[i] != NULL && n < 15; i++) argv[n++] = args[i];
  argv[n] = NULL;
  nm_cmd_t cmd = {.argv = argv, .preload = false, .timeout_s = 30};
  cr_assert(nm_run(&cmd, r), "could not run %s", nebula_stats());
  cr_assert(!r->timed_out, "scripts/nebula-stats hung");
}

/* scripts/nebula-stats PID --json on a program started with a JSON stats_file: exit 0, a
 * pretty-printed dump of that program (its pid) that checks out; the program goes on. */
Test(script, json_of_a_running_program, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/w.%%p.json", dir);
  bg_t bg;
  bg_start(&bg, dir, "wait", config, (const char *const[]){child_path(), "wait", "20", NULL});
  bg_wait_output(&bg, "ready ", TIMEOUT_S);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  nm_result_t r;
  script_run(&r, (const char *const[]){pid, "--json", NULL});
  BG_CHECK(&bg, r.exited && r.exit_code == 0, "nebula-stats %s --json failed (exit %d):\n%s", pid,
           r.exit_code, r.err);
  BG_CHECK(&bg, starts_with(r.out, "{\n  \"schema\": \"nebula-memory/stats\","),
           "nebula-stats --json should pretty-print the dump, got:\n%s", nm_tail(r.out, r.out_len, 2000));
  char *file = path_in(dir, "script.json");
  /* one line, as check_stats.py json wants a dump */
  const char *to_line = "import json,sys\n"
                        "d = json.load(open(sys.argv[1]))\n"
                        "open(sys.argv[2], 'w').write(json.dumps(d, separators=(',', ':')) + '\\n')\n";
  char *pretty = path_in(dir, "script.pretty.json");
  nm_write_file(pretty, r.out, r.out_len);
  nm_result_free(&r);
  nm_cmd_t cmd = {.argv = (const char *const[]){python_path(), "-c", to_line, pretty, file, NULL},
                  .timeout_s = 60};
  nm_run(&cmd, &r);
  BG_CHECK(&bg, r.exited && r.exit_code == 0, "nebula-stats printed something that is not JSON:\n%s",
           r.err);
  nm_result_free(&r);
  free(check_py(NULL, (const char *const[]){"json", file, "--pid", pid, NULL}));
  BG_CHECK(&bg, bg_running(&bg), "the program should go on after the dump");
  kill(bg.pid, SIGTERM);
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  free(file);
  free(pretty);
  bg_free(&bg);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* A program with stats_format=json but no stats_file (its dumps go to its own stderr):
 * nebula-stats fails, with or without --json, with a message that says why and how to
 * start the program instead, and sends it no signal (nothing on its stderr). With neither
 * key set, --json fails too (naming stats_format=json). */
Test(script, refuses_without_stats_file, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  for (int with_format = 1; with_format >= 0; with_format--) {
    bg_t bg;
    bg_start(&bg, dir, "wait", with_format ? "stats_format=json" : NULL,
             (const char *const[]){child_path(), "wait", "20", NULL});
    bg_wait_output(&bg, "ready ", TIMEOUT_S);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)bg.pid);
    char want[128];
    snprintf(want, sizeof want, "nebula-stats: process %s writes its statistics to its own stderr",
             pid);
    nm_result_t r;
    if (with_format) {
      script_run(&r, (const char *const[]){pid, "--json", NULL});
      BG_CHECK(&bg, r.exited && r.exit_code == 1 && r.out_len == 0 && strstr(r.err, want) != NULL &&
                        strstr(r.err, "NEBULA_MEM_CONFIG=stats_file=") != NULL,
               "nebula-stats %s --json should fail with exit 1 and '%s ... "
               "NEBULA_MEM_CONFIG=stats_file=...'; got exit %d, stdout '%s', stderr '%s'",
               pid, want, r.exit_code, r.out, r.err);
      nm_result_free(&r);
    } else {
      /* Neither stats_file nor stats_format=json: one message names both, so the user
       * does not have to try twice. */
      script_run(&r, (const char *const[]){pid, "--json", NULL});
      BG_CHECK(&bg, r.exited && r.exit_code == 1 && r.out_len == 0 && strstr(r.err, want) != NULL &&
                        strstr(r.err, "stats_file=") != NULL &&
                        strstr(r.err, "stats_format=json") != NULL,
               "nebula-stats %s --json on a text-format program without stats_file should fail "
               "with exit 1 naming stats_file= and stats_format=json; got exit %d, stdout '%s', "
               "stderr '%s'",
               pid, r.exit_code, r.out, r.err);
      nm_result_free(&r);
    }
    script_run(&r, (const char *const[]){pid, NULL});
    BG_CHECK(&bg, r.exited && r.exit_code == 1 && r.out_len == 0 && strstr(r.err, want) != NULL,
             "nebula-stats %s should fail with exit 1 and '%s'; got exit %d, stderr '%s'", pid,
             want, r.exit_code, r.err);
    nm_result_free(&r);
    BG_CHECK(&bg, bg_running(&bg), "the program should still run");
    kill(bg.pid, SIGTERM);
    bg_finish(&bg, TIMEOUT_S);
    bg_expect_exit0(&bg);
    char *err = read_file(bg.err_path, NULL);
    BG_CHECK(&bg, err != NULL && err[0] == '\0', "nebula-stats should not have signalled the program");
    free(err);
    bg_free(&bg);
  }
  nm_tmpdir_remove(dir);
  free(dir);
}

/* A text stats_file: --json is refused (with the fix named), plain mode prints the text
 * dump of that pid. */
Test(script, text_stats_file, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_file=%s/t.%%p.txt", dir);
  bg_t bg;
  bg_start(&bg, dir, "wait", config, (const char *const[]){child_path(), "wait", "20", NULL});
  bg_wait_output(&bg, "ready ", TIMEOUT_S);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  nm_result_t r;
  script_run(&r, (const char *const[]){pid, "--json", NULL});
  BG_CHECK(&bg, r.exited && r.exit_code == 1 && strstr(r.err, "stats_format=json") != NULL,
           "--json on a text stats_file should fail naming stats_format=json; got exit %d, stderr '%s'",
           r.exit_code, r.err);
  nm_result_free(&r);
  script_run(&r, (const char *const[]){pid, NULL});
  char head[64];
  snprintf(head, sizeof head, "nebula: statistics of pid %s\n", pid);
  BG_CHECK(&bg, r.exited && r.exit_code == 0 && starts_with(r.out, head),
           "nebula-stats %s should print the text dump; got exit %d, stdout '%s', stderr '%s'", pid,
           r.exit_code, nm_tail(r.out, r.out_len, 1000), r.err);
  nm_result_free(&r);
  kill(bg.pid, SIGTERM);
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  bg_free(&bg);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* No such process: a clear message, exit 1. */
Test(script, no_such_process) {
  nm_result_t r;
  script_run(&r, (const char *const[]){"99999999", "--json", NULL});
  cr_assert(r.exited && r.exit_code == 1 && strstr(r.err, "nebula-stats: no process 99999999") != NULL,
            "expected exit 1 and 'nebula-stats: no process 99999999'; got exit %d, stderr '%s'",
            r.exit_code, r.err);
  nm_result_free(&r);
}

/* ================================================================== file */

/* The entries of dir but . and .., sorted, each followed by one space ("" when empty). */
static char *dir_listing(const char *dir) {
  struct dirent **names = NULL;
  int n = scandir(dir, &names, NULL, alphasort);
  cr_assert(n >= 0, "scandir %s: %s", dir, strerror(errno));
  size_t cap = 64, len = 0;
  char *out = malloc(cap);
  cr_assert(out != NULL);
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    const char *nm = names[i]->d_name;
    if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
      size_t l = strlen(nm);
      while (len + l + 2 > cap) {
        cap *= 2;
        out = realloc(out, cap);
        cr_assert(out != NULL);
      }
      memcpy(out + len, nm, l);
      len += l;
      out[len++] = ' ';
      out[len] = '\0';
    }
    free(names[i]);
  }
  free(names);
  return out;
}

/* mkdir DIR/name; returns the path. */
static char *subdir(const char *dir, const char *name) {
  char *p = path_in(dir, "%s", name);
  cr_assert(mkdir(p, 0755) == 0, "mkdir %s: %s", p, strerror(errno));
  return p;
}

/* The whole stderr of a run is `want`. */
static void expect_err(run_t *run, const char *want) {
  CHECK(run, strcmp(run->r.err, want) == 0, "stderr should be exactly:\n%s", want);
}

/* A character device to point stats_file at: when we may (root, as in CI), a node made with
 * mknod in dir with the numbers of `real` (/dev/null 1,3, /dev/full 1,7), so that a broken
 * preload replaces a copy, never the system's node; else `real` itself. *is_copy says which. */
static char *device_node(const char *dir, const char *name, const char *real, bool *is_copy) {
  struct stat st;
  cr_assert(stat(real, &st) == 0 && S_ISCHR(st.st_mode), "%s is not a character device", real);
  char *p = path_in(dir, "%s", name);
  if (mknod(p, S_IFCHR | 0666, st.st_rdev) == 0) {
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      *is_copy = true;
      return p;
    }
    unlink(p);   /* a nodev file system */
  }
  cr_log_info("mknod %s: %s; using %s itself", p, strerror(errno), real);
  free(p);
  *is_copy = false;
  return strdup(real);
}

static bool is_char_device(const char *path, dev_t rdev) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == rdev;
}

/* stats_file naming a character device (a copy of /dev/null when root): written in place,
 * never replaced; the node is still the same character device afterwards, nothing else
 * appears next to it, nothing is said on stderr. Also a symlink to that device: not
 * followed, not replaced (one line on stderr); the link stays. */
Test(file, character_device_written_in_place) {
  char *dir = nm_tmpdir_make("stats");
  char *dev = subdir(dir, "dev");
  bool copy;
  char *null = device_node(dev, "null", "/dev/null", &copy);
  struct stat st;
  cr_assert(stat("/dev/null", &st) == 0);
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", null);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  expect_err(&run, "");
  CHECK(&run, is_char_device(null, st.st_rdev), "%s is no longer the character device %u,%u", null,
        major(st.st_rdev), minor(st.st_rdev));
  CHECK(&run, is_char_device("/dev/null", st.st_rdev), "/dev/null is no longer a character device");
  char *ls = dir_listing(dev);
  CHECK(&run, strcmp(ls, copy ? "null " : "") == 0, "files next to the device: '%s'", ls);
  free(ls);
  run_free(&run);

  char *link = path_in(dev, "s.json");
  cr_assert(symlink(null, link) == 0);
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", link);
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  char want[4400];
  snprintf(want, sizeof want,
           "nebula: stats_file cannot be written: %s: it is a symbolic link to a device, FIFO or "
           "socket (not followed; name the device itself, or use stats_file=stderr)\n", link);
  expect_err(&run, want);
  char target[4200];
  ssize_t tl = readlink(link, target, sizeof target - 1);
  CHECK(&run, tl > 0 && (target[tl] = '\0', strcmp(target, null) == 0),
        "the symlink %s -> %s was replaced or changed", link, null);
  CHECK(&run, is_char_device(null, st.st_rdev), "%s is no longer a character device", null);
  ls = dir_listing(dev);
  CHECK(&run, strcmp(ls, copy ? "null s.json " : "s.json ") == 0, "files: '%s'", ls);
  free(ls);
  run_free(&run);
  free(link);
  free(null);
  free(dev);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats_file naming /dev/full (a copy when root): the write fails with ENOSPC, which is one
 * line on stderr naming the path and the error; the device stays what it was. */
Test(file, device_write_error_reported) {
  char *dir = nm_tmpdir_make("stats");
  char *dev = subdir(dir, "dev");
  bool copy;
  char *full = device_node(dev, "full", "/dev/full", &copy);
  struct stat st;
  cr_assert(stat("/dev/full", &st) == 0);
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", full);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  char want[4400];
  snprintf(want, sizeof want,
           "nebula: stats_file cannot be written: %s: write failed: No space left on device\n", full);
  expect_err(&run, want);
  CHECK(&run, is_char_device(full, st.st_rdev), "%s is no longer the character device", full);
  char *ls = dir_listing(dev);
  CHECK(&run, strcmp(ls, copy ? "full " : "") == 0, "files next to the device: '%s'", ls);
  free(ls);
  run_free(&run);
  free(full);
  free(dev);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* A write that fails half-way (RLIMIT_FSIZE of 200 bytes, SIGXFSZ ignored: the dump's write
 * stops short, then EFBIG): one line on stderr naming the path and "File too large"; the
 * previous file keeps its content, and the partial temporary file is gone. */
Test(file, write_error_keeps_the_previous_file) {
  char *dir = nm_tmpdir_make("stats");
  char *d = subdir(dir, "d");
  char *file = path_in(d, "s.json");
  nm_write_file(file, "previous dump\n", 14);
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", file);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "fsize", "200", "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  char want[4400];
  snprintf(want, sizeof want,
           "nebula: stats_file cannot be written: %s: writing the dump failed (the previous file "
           "is kept): File too large\n", file);
  expect_err(&run, want);
  char *text = read_file(file, NULL);
  CHECK(&run, text != NULL && strcmp(text, "previous dump\n") == 0,
        "%s changed: '%.300s'", file, text ? text : "(gone)");
  free(text);
  char *ls = dir_listing(d);
  CHECK(&run, strcmp(ls, "s.json ") == 0, "files: '%s' (a temporary file left behind?)", ls);
  free(ls);
  run_free(&run);
  free(file);
  free(d);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats_file naming a directory, or ending with '/': one line on stderr naming the path and
 * saying so; no file appears anywhere (next to it or in it). */
Test(file, directory_refused) {
  char *dir = nm_tmpdir_make("stats");
  char *d = subdir(dir, "d");
  char *sub = subdir(d, "sub");
  char config[4200], want[4400];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", sub);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  snprintf(want, sizeof want, "nebula: stats_file cannot be written: %s: it is a directory\n", sub);
  expect_err(&run, want);
  char *ls = dir_listing(d), *ls_sub = dir_listing(sub);
  CHECK(&run, strcmp(ls, "sub ") == 0 && strcmp(ls_sub, "") == 0, "files: '%s', in sub: '%s'", ls,
        ls_sub);
  free(ls);
  free(ls_sub);
  run_free(&run);

  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/new/", d);
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  snprintf(want, sizeof want,
           "nebula: stats_file cannot be written: %s/new/: it names a directory (ends with /)\n", d);
  expect_err(&run, want);
  ls = dir_listing(d);
  CHECK(&run, strcmp(ls, "sub ") == 0, "files: '%s'", ls);
  free(ls);
  run_free(&run);
  free(sub);
  free(d);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* stats_file naming a FIFO nobody reads: the dump neither hangs nor replaces it; one line on
 * stderr; the FIFO is still there and nothing else. */
Test(file, fifo_refused) {
  char *dir = nm_tmpdir_make("stats");
  char *d = subdir(dir, "d");
  char *fifo = path_in(d, "s.json");
  cr_assert(mkfifo(fifo, 0644) == 0);
  char config[4200], want[4400];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", fifo);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  snprintf(want, sizeof want,
           "nebula: stats_file cannot be written: %s: it is a FIFO (not written: a reader could "
           "stall or kill the program)\n", fifo);
  expect_err(&run, want);
  struct stat st;
  CHECK(&run, lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "%s is no longer a FIFO", fifo);
  char *ls = dir_listing(d);
  CHECK(&run, strcmp(ls, "s.json ") == 0, "files: '%s'", ls);
  free(ls);
  run_free(&run);
  free(fifo);
  free(d);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* A stats_file whose %p expansion does not fit (as many %p as the 255 bytes of the key
 * allow): one line on stderr naming the path as configured and the limit; no file made. */
Test(file, path_overflow_refused) {
  char *dir = nm_tmpdir_make("stats");
  char *d = subdir(dir, "d");
  char path[256];
  int n = snprintf(path, sizeof path, "%s/", d);
  cr_assert(n > 0 && n < 200, "temporary directory name too long: %s", d);
  while (n + 2 <= 255) {
    path[n++] = '%';
    path[n++] = 'p';
  }
  path[n] = '\0';
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", path);
  run_t run;
  run_argv(&run, config, (const char *const[]){child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  char want[4400];
  snprintf(want, sizeof want,
           "nebula: stats_file cannot be written: %s: longer than 319 bytes once %%p is replaced "
           "by the pid ", path);
  CHECK(&run, starts_with(run.r.err, want) && count_of(run.r.err, "\n") == 1,
        "stderr should be one line starting with:\n%s", want);
  long pid = strtol(run.r.err + strlen(want), NULL, 10);
  size_t digits = (size_t)snprintf(NULL, 0, "%ld", pid);
  size_t expanded = strlen(d) + 1 + (size_t)(n - strlen(d) - 1) / 2 * digits;
  CHECK(&run, expanded > 319, "the expansion (%zu bytes with pid %ld) should not fit", expanded, pid);
  char *ls = dir_listing(d), *ls_top = dir_listing(dir);
  CHECK(&run, strcmp(ls, "") == 0 && strcmp(ls_top, "d ") == 0, "files: '%s', above: '%s'", ls,
        ls_top);
  free(ls);
  free(ls_top);
  run_free(&run);
  free(d);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* Planted symlinks (a program started with stats_file=/tmp/..., a world-writable directory,
 * and someone else creates names in it): PATH -> a victim, PATH.tmp -> another (the old
 * temporary name), PATH.tmp.PID.0..7 -> a third and PATH.tmp.PID.8 -> a file that does not
 * exist (the new temporary names, made while the program runs, once its pid is known). A
 * dump by SIGUSR1: no victim changes, none is created, PATH becomes a regular file holding a
 * whole dump (the link itself is replaced), the planted temporary links are left as they
 * were and no other file appears. */
Test(file, symlinks_never_redirect_the_dump, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char *d = subdir(dir, "d");
  char *vdir = nm_tmpdir_make("victims");
  char *v1 = path_in(vdir, "victim1"), *v2 = path_in(vdir, "victim2"), *v3 = path_in(vdir, "victim3");
  char *vnew = path_in(vdir, "created-through-a-link");
  nm_write_file(v1, "victim 1\n", 9);
  nm_write_file(v2, "victim 2\n", 9);
  nm_write_file(v3, "victim 3\n", 9);
  char *file = path_in(d, "s.json");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s", file);
  bg_t bg;
  bg_start(&bg, dir, "wait", config, (const char *const[]){child_path(), "wait", "20", NULL});
  bg_wait_output(&bg, "ready ", TIMEOUT_S);
  cr_assert(symlink(v1, file) == 0);
  char *old_tmp = path_in(d, "s.json.tmp");
  cr_assert(symlink(v2, old_tmp) == 0);
  char *planted[9];
  for (int i = 0; i < 9; i++) {
    planted[i] = path_in(d, "s.json.tmp.%d.%d", (int)bg.pid, i);
    cr_assert(symlink(i < 8 ? v3 : vnew, planted[i]) == 0);
  }
  BG_CHECK(&bg, kill(bg.pid, SIGUSR1) == 0, "kill: %s", strerror(errno));
  struct stat st;
  double end = now_s() + TIMEOUT_S;
  while (!(lstat(file, &st) == 0 && S_ISREG(st.st_mode)) && now_s() < end && bg_running(&bg))
    sleep_ms(10);
  BG_CHECK(&bg, kill(bg.pid, SIGTERM) == 0, "kill: %s", strerror(errno));
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  bg_stderr_only(&bg, (const char *const[]){NULL});
  const char *victims[] = {v1, v2, v3};
  for (int i = 0; i < 3; i++) {
    char *t = read_file(victims[i], NULL);
    char want[16];
    snprintf(want, sizeof want, "victim %d\n", i + 1);
    BG_CHECK(&bg, t != NULL && strcmp(t, want) == 0, "%s changed: '%.300s'", victims[i],
             t ? t : "(gone)");
    free(t);
  }
  BG_CHECK(&bg, access(vnew, F_OK) != 0, "%s was created through a dangling link", vnew);
  BG_CHECK(&bg, lstat(file, &st) == 0 && S_ISREG(st.st_mode), "%s is not a regular file", file);
  BG_CHECK(&bg, lstat(old_tmp, &st) == 0 && S_ISLNK(st.st_mode), "%s was replaced", old_tmp);
  for (int i = 0; i < 9; i++)
    BG_CHECK(&bg, lstat(planted[i], &st) == 0 && S_ISLNK(st.st_mode), "%s was replaced", planted[i]);
  char *ls = dir_listing(d);
  char want[4096];
  int k = snprintf(want, sizeof want, "s.json s.json.tmp ");
  for (int i = 0; i < 9; i++)   /* alphasort: .0 .. .8 */
    k += snprintf(want + k, sizeof want - (size_t)k, "s.json.tmp.%d.%d ", (int)bg.pid, i);
  BG_CHECK(&bg, strcmp(ls, want) == 0, "files: '%s', expected '%s'", ls, want);
  free(ls);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  free(check_py(NULL, (const char *const[]){"json", file, "--pid", pid, NULL}));
  for (int i = 0; i < 9; i++) free(planted[i]);
  bg_free(&bg);
  free(old_tmp);
  free(file);
  free(v1);
  free(v2);
  free(v3);
  free(vnew);
  free(d);
  nm_tmpdir_remove(vdir);
  free(vdir);
  nm_tmpdir_remove(dir);
  free(dir);
}

#define CONCURRENT_PROCS 16
#define CONCURRENT_ROUNDS 6
#define CONCURRENT_DUMPS "20"

/* 16 processes with stats=exit and one stats_file (no %p), all dumping at the same instant:
 * each holds blocks in a different number of classes (dumps of different lengths), raises
 * SIGUSR1 CONCURRENT_DUMPS times, then exits (its exit dump). Six rounds: whenever the test
 * reads the file meanwhile it holds one whole dump (one line, from {"schema" to }); after
 * each round it is one whole dump of one of them (it parses and checks out as quiescent)
 * and the only file in its directory (no temporary left). */
Test(file, concurrent_exit_dumps_stay_whole, .timeout = 120) {
  char *dir = nm_tmpdir_make("stats");
  char *d = subdir(dir, "d");
  char *file = path_in(d, "s.json");
  char config[4200];
  snprintf(config, sizeof config, "stats=exit,stats_format=json,stats_file=%s", file);
  for (int round = 0; round < CONCURRENT_ROUNDS; round++) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char at[32];
    snprintf(at, sizeof at, "%lld",
             (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec + 400 * 1000000LL);
    bg_t bg[CONCURRENT_PROCS];
    for (int i = 0; i < CONCURRENT_PROCS; i++) {
      char tag[32];
      snprintf(tag, sizeof tag, "c%d.%d", round, i);
      char classes[16];
      snprintf(classes, sizeof classes, "%d", i * 3);
      bg_start(&bg[i], dir, tag, config,
               (const char *const[]){child_path(), "exit-at", at, classes, CONCURRENT_DUMPS, NULL});
    }
    /* A reader meanwhile (from just before the instant, every 100 us): every time the file
     * is there it holds one whole dump. */
    sleep_ms(350);
    long reads = 0;
    for (bool running = true; running; nanosleep(&(struct timespec){0, 100000}, NULL)) {
      running = false;
      for (int i = 0; i < CONCURRENT_PROCS; i++) running |= bg_running(&bg[i]);
      size_t len = 0;
      char *snap = read_file(file, &len);
      if (snap == NULL) continue;
      reads++;
      bool whole = len > 2 && starts_with(snap, "{\"schema\":\"nebula-memory/stats\",") &&
                   strcmp(snap + len - 2, "}\n") == 0 && count_of(snap, "\n") == 1 &&
                   strlen(snap) == len;
      if (!whole) {
        char *bad = path_in(dir, "torn.%d.json", round);
        nm_write_file(bad, snap, len);
        BG_CHECK(&bg[0], whole, "round %d, read %ld: %s is not one whole dump (%zu bytes, saved "
                 "as %s):\n%.400s", round, reads, file, len, bad, snap);
      }
      free(snap);
    }
    cr_log_info("round %d: %ld reads of %s while the processes dumped", round, reads, file);
    for (int i = 0; i < CONCURRENT_PROCS; i++) {
      bg_finish(&bg[i], TIMEOUT_S);
      bg_expect_exit0(&bg[i]);
      bg_stderr_only(&bg[i], (const char *const[]){NULL});
    }
    char *ls = dir_listing(d);
    BG_CHECK(&bg[0], strcmp(ls, "s.json ") == 0, "round %d: files in %s: '%s'", round, d, ls);
    free(ls);
    free(check_py(NULL, (const char *const[]){"json", file, "--quiescent", NULL}));
    for (int i = 0; i < CONCURRENT_PROCS; i++) bg_free(&bg[i]);
  }
  free(file);
  free(d);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* ================================================================== stats_signal: who owns it */

/* No stats key in NEBULA_MEM_CONFIG (none at all, other keys, a preset, a stats key with a
 * bad value): no handler, SIGUSR1 keeps its default action. `timeout -s USR1 1 sleep 4`
 * under the preload ends after about 1 s (status 124), with nothing on stderr; the child
 * raising SIGUSR1 dies of it. */
Test(stats_signal, no_stats_key_keeps_the_default_action, .timeout = 90) {
  run_t run;
  run_argv(&run, NULL, (const char *const[]){"timeout", "-s", "USR1", "1", "sleep", "4", NULL});
  CHECK(&run, run.r.exited && run.r.exit_code == 124, "expected exit 124 (timed out)");
  CHECK(&run, run.r.seconds < 3.0, "took %.1f s: SIGUSR1 did not kill sleep", run.r.seconds);
  expect_err(&run, "");
  run_free(&run);
  const char *configs[] = {NULL, "", "junk=on", "preset=development", "strategy=throughput,canary=on",
                           "stats_signal=USR3", NULL};
  for (size_t i = 0; i < sizeof configs / sizeof configs[0] - 1; i++) {
    run_argv(&run, configs[i], (const char *const[]){child_path(), "sigself", "USR1", NULL});
    CHECK(&run, run.r.signaled && run.r.signo == SIGUSR1 && run.r.out_len == 0,
          "NEBULA_MEM_CONFIG='%s': expected death by SIGUSR1", configs[i] ? configs[i] : "(unset)");
    CHECK(&run, strstr(run.r.err, "statistics") == NULL, "no dump expected");
    run_free(&run);
  }
}

/* Any one stats key given (with a valid value) installs the handler: SIGUSR1 makes one
 * dump and the program goes on. */
Test(stats_signal, any_stats_key_installs_the_handler) {
  const char *configs[] = {"stats=off", "stats_format=text", "stats_file=stderr", "stats_signal=USR1",
                           "stats_signal=usr1", "junk=on,stats=OFF", NULL};
  for (size_t i = 0; configs[i] != NULL; i++) {
    run_t run;
    run_argv(&run, configs[i], (const char *const[]){child_path(), "sigself", "USR1", NULL});
    expect_exit0(&run);
    CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0 &&
                    count_of(run.r.err, "nebula: statistics of pid ") == 1,
          "%s: expected 'survived USR1' and one dump", configs[i]);
    run_free(&run);
  }
}

/* SIGUSR1 ignored when the program starts (SIG_IGN inherited: env --ignore-signal), with
 * statistics asked for: it stays ignored (the program survives it, no dump) and stderr says
 * so in one line. */
Test(stats_signal, inherited_ignore_kept) {
  run_t run;
  run_argv(&run, "stats_format=json",
           (const char *const[]){"env", "--ignore-signal=USR1", child_path(), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  expect_err(&run, "nebula: stats_signal USR1 is ignored (SIG_IGN, inherited): left ignored, it "
                   "makes no dump\n");
  run_free(&run);
}

/* A library whose constructor ran before the preload's installed its own SIGUSR1 handler
 * (nm_stats_child_siglib needs nm_stats_siglib): the preload keeps it, and says so once on
 * stderr; SIGUSR1 runs the library's handler, no dump. */
Test(stats_signal, earlier_handler_kept) {
  run_t run;
  run_argv(&run, "stats_format=json",
           (const char *const[]){nm_env_required("NM_STATS_CHILD_SIGLIB"), "sigself", "USR1", NULL});
  expect_exit0(&run);
  CHECK(&run, strcmp(run.r.out, "survived USR1\n") == 0, "expected 'survived USR1'");
  expect_err(&run, "nebula: stats_signal USR1 already has a handler (installed before the "
                   "preload's): kept, USR1 makes no dump (stats_signal= picks another signal)\n"
                   "siglib: caught SIGUSR1\n");
  run_free(&run);
  /* stats_signal=USR2: USR2 is free, so the preload takes it; the library keeps USR1. */
  run_argv(&run, "stats_signal=USR2",
           (const char *const[]){nm_env_required("NM_STATS_CHILD_SIGLIB"), "sigself", "USR2", NULL});
  expect_exit0(&run);
  CHECK(&run, count_of(run.r.err, "nebula: statistics of pid ") == 1 &&
                  strstr(run.r.err, "already has a handler") == NULL,
        "stats_signal=USR2: one dump expected, no note");
  run_free(&run);
}

/* ================================================================== script: refusals */

/* A program not under the preload (NEBULA_MEM_CONFIG set, no LD_PRELOAD): nebula-stats
 * refuses (its maps have no libnebula_preload) and sends nothing: the program, whose
 * SIGUSR1 has the default action, keeps running. */
Test(script, refuses_a_program_without_the_preload, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/w.%%p.json", dir);
  bg_t bg;
  bg_start_ex(&bg, dir, "plain", config, (const char *const[]){child_path(), "wait", "20", NULL},
              false);
  bg_wait_output(&bg, "ready ", TIMEOUT_S);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  nm_result_t r;
  script_run(&r, (const char *const[]){pid, "--json", NULL});
  char want[128];
  snprintf(want, sizeof want, "nebula-stats: process %s does not run under the nebula preload", pid);
  BG_CHECK(&bg, r.exited && r.exit_code == 1 && r.out_len == 0 && strstr(r.err, want) != NULL,
           "expected exit 1 and '%s...'; got exit %d, stderr '%s'", want, r.exit_code, r.err);
  nm_result_free(&r);
  sleep_ms(100);
  BG_CHECK(&bg, bg_running(&bg), "the program was signalled (and died)");
  kill(bg.pid, SIGTERM);
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  bg_free(&bg);
  nm_tmpdir_remove(dir);
  free(dir);
}

/* Under the preload with a stats_file, but SIGUSR1 not caught: put back to its default
 * action by the program (wait-dfl), or ignored from the start (env --ignore-signal).
 * nebula-stats refuses, naming SigCgt / SigIgn, and the program keeps running. */
Test(script, refuses_a_signal_not_caught, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config, "stats_format=json,stats_file=%s/w.%%p.json", dir);
  for (int ignored = 0; ignored <= 1; ignored++) {
    bg_t bg;
    if (ignored)
      bg_start(&bg, dir, "ign", config,
               (const char *const[]){"/usr/bin/env", "--ignore-signal=USR1", child_path(), "wait",
                                     "20", NULL});
    else
      bg_start(&bg, dir, "dfl", config, (const char *const[]){child_path(), "wait-dfl", "20", NULL});
    bg_wait_output(&bg, "ready ", TIMEOUT_S);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)bg.pid);
    nm_result_t r;
    script_run(&r, (const char *const[]){pid, "--json", "--timeout", "1", NULL});
    char want[160];
    snprintf(want, sizeof want,
             ignored ? "nebula-stats: process %s ignores SIGUSR1 (SigIgn"
                     : "nebula-stats: process %s does not catch SIGUSR1 (no SigCgt bit",
             pid);
    BG_CHECK(&bg, r.exited && r.exit_code == 1 && r.out_len == 0 && strstr(r.err, want) != NULL,
             "expected exit 1 and '%s...'; got exit %d, stderr '%s'", want, r.exit_code, r.err);
    nm_result_free(&r);
    sleep_ms(100);
    BG_CHECK(&bg, bg_running(&bg), "the program was signalled (and died)");
    kill(bg.pid, SIGTERM);
    bg_finish(&bg, TIMEOUT_S);
    bg_expect_exit0(&bg);
    bg_free(&bg);
  }
  nm_tmpdir_remove(dir);
  free(dir);
}

/* NEBULA_MEM_CONFIG read as the preload reads it: values in any case (stats_format=JSON,
 * stats_signal=usr2), blanks around keys and values, a bad value that keeps the previous
 * one (stats_signal=USR3), a key in the wrong case that the preload ignores
 * (STATS_FILE=...). nebula-stats --json sends USR2 and prints the dump. */
Test(script, config_read_as_the_preload_reads_it, .timeout = 60) {
  char *dir = nm_tmpdir_make("stats");
  char config[4200];
  snprintf(config, sizeof config,
           " stats_format = JSON , stats_signal=usr2, stats_file = %s/w.%%p.json ,"
           "stats_signal=USR3,STATS_FILE=%s/elsewhere.json", dir, dir);
  bg_t bg;
  bg_start(&bg, dir, "wait", config, (const char *const[]){child_path(), "wait", "20", NULL});
  bg_wait_output(&bg, "ready ", TIMEOUT_S);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)bg.pid);
  nm_result_t r;
  script_run(&r, (const char *const[]){pid, "--json", NULL});
  BG_CHECK(&bg, r.exited && r.exit_code == 0 && starts_with(r.out, "{\n  \"schema\": \"nebula-memory/stats\","),
           "nebula-stats %s --json should print the dump; got exit %d, stdout '%.500s', stderr '%s'",
           pid, r.exit_code, r.out, r.err);
  nm_result_free(&r);
  BG_CHECK(&bg, bg_running(&bg), "the program should go on after the dump");
  char *other = path_in(dir, "elsewhere.json");
  BG_CHECK(&bg, access(other, F_OK) != 0, "%s written: STATS_FILE is not a key", other);
  free(other);
  kill(bg.pid, SIGTERM);
  bg_finish(&bg, TIMEOUT_S);
  bg_expect_exit0(&bg);
  bg_free(&bg);
  nm_tmpdir_remove(dir);
  free(dir);
}
