/* See spawn.h. This file runs in the Criterion worker, which is never preloaded: it may
 * use glibc's malloc freely. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spawn.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ small helpers */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *nm_env_required(const char *name) {
  const char *v = getenv(name);
  cr_assert(v != NULL && v[0] != '\0',
            "environment variable %s is not set (run the tests through meson test)", name);
  return v;
}

const char *nm_preload_path(void) {
  const char *p = nm_env_required("NEBULA_PRELOAD");
  cr_assert(access(p, R_OK) == 0, "NEBULA_PRELOAD=%s: %s", p, strerror(errno));
  return p;
}

/* The worker's private copy of the preload, made on first use: the plain and the preloaded
 * run, and every run of one test, then see the same build even if the library is relinked
 * meanwhile (a relink leaves a window in which ld.so cannot load it). Removed at exit. */
static char g_snapshot_dir[4096];
static char g_snapshot[4200];

static void snapshot_remove(void) {
  if (g_snapshot[0]) unlink(g_snapshot);
  if (g_snapshot_dir[0]) rmdir(g_snapshot_dir);
}

static const char *preload_snapshot(void) {
  if (g_snapshot[0]) return g_snapshot;
  const char *src = nm_preload_path();
  const char *base = getenv("NM_TMPDIR");
  if (base == NULL || base[0] == '\0') base = "/tmp";
  snprintf(g_snapshot_dir, sizeof g_snapshot_dir, "%s/nebula-it-preload-XXXXXX", base);
  cr_assert(mkdtemp(g_snapshot_dir) != NULL, "mkdtemp %s: %s", g_snapshot_dir, strerror(errno));
  const char *name = strrchr(src, '/');
  snprintf(g_snapshot, sizeof g_snapshot, "%s/%s", g_snapshot_dir, name ? name + 1 : src);
  int in = open(src, O_RDONLY | O_CLOEXEC);
  int out = open(g_snapshot, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
  cr_assert(in >= 0 && out >= 0, "copying %s to %s: %s", src, g_snapshot, strerror(errno));
  char buf[65536];
  ssize_t r;
  while ((r = read(in, buf, sizeof buf)) > 0)
    cr_assert(write(out, buf, (size_t)r) == r, "write %s: %s", g_snapshot, strerror(errno));
  cr_assert(r == 0, "read %s: %s", src, strerror(errno));
  close(in);
  cr_assert(close(out) == 0);
  atexit(snapshot_remove);
  return g_snapshot;
}

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    cr_assert(d != NULL, "out of memory capturing output (%zu bytes)", cap);
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_addf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_addf(buf_t *b, const char *fmt, ...) {
  char tmp[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static char *buf_take(buf_t *b) {
  if (b->data == NULL) buf_add(b, "", 0);
  return b->data;
}

/* The child's environment: ours, without LD_PRELOAD and without the keys cmd->env sets,
 * then cmd->env, then LD_PRELOAD if asked. */
static char **child_env(const nm_cmd_t *cmd, char **owned) {
  size_t n = 0, extra = 0;
  while (environ[n] != NULL) n++;
  if (cmd->env != NULL)
    while (cmd->env[extra] != NULL) extra++;
  char **env = calloc(n + extra + 3, sizeof *env);
  cr_assert(env != NULL);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *e = environ[i];
    if (strncmp(e, "LD_PRELOAD=", 11) == 0) continue;
    if (cmd->preload && cmd->config != NULL && strncmp(e, "NEBULA_MEM_CONFIG=", 18) == 0) continue;
    bool replaced = false;
    for (size_t j = 0; j < extra && !replaced; j++) {
      const char *eq = strchr(cmd->env[j], '=');
      size_t kl = eq ? (size_t)(eq - cmd->env[j]) : strlen(cmd->env[j]);
      replaced = strncmp(e, cmd->env[j], kl) == 0 && e[kl] == '=';
    }
    if (!replaced) env[k++] = (char *)e;
  }
  for (size_t j = 0; j < extra; j++) env[k++] = (char *)cmd->env[j];
  if (cmd->preload) {
    const char *p = preload_snapshot();
    char *lp = malloc(strlen(p) + 12);
    cr_assert(lp != NULL);
    sprintf(lp, "LD_PRELOAD=%s", p);
    env[k++] = lp;
    owned[0] = lp;
    if (cmd->config != NULL) {
      char *cf = malloc(strlen(cmd->config) + 20);
      cr_assert(cf != NULL);
      sprintf(cf, "NEBULA_MEM_CONFIG=%s", cmd->config);
      env[k++] = cf;
      owned[1] = cf;
    }
  }
  env[k] = NULL;
  return env;
}

static char *argv_string(const char *const *argv) {
  buf_t b = {0};
  for (size_t i = 0; argv[i] != NULL; i++) {
    if (i) buf_add(&b, " ", 1);
    bool quote = argv[i][0] == '\0' || strpbrk(argv[i], " \t'\"$;|&<>()*?") != NULL;
    if (quote) buf_add(&b, "'", 1);
    buf_add(&b, argv[i], strlen(argv[i]));
    if (quote) buf_add(&b, "'", 1);
  }
  return buf_take(&b);
}

/* ------------------------------------------------------------------ hang reports */

/* Pids of the processes in process group pgid, from /proc. */
static size_t group_members(pid_t pgid, pid_t *out, size_t max) {
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL && n < max) {
    char *end;
    long pid = strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    char path[64], stat[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (r <= 0) continue;
    stat[r] = '\0';
    char *rp = strrchr(stat, ')');   /* comm may contain spaces */
    int ppid, pgrp;
    char state;
    if (rp == NULL || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid) out[n++] = (pid_t)pid;
  }
  closedir(d);
  return n;
}

static char *hang_report(pid_t pgid) {
  if (access("/usr/bin/gdb", X_OK) != 0) return NULL;
  pid_t pids[64];
  size_t n = group_members(pgid, pids, 64);
  buf_t b = {0};
  for (size_t i = 0; i < n; i++) {
    char pid[32], cmdline_path[64], cmdline[512] = "";
    snprintf(pid, sizeof pid, "%d", (int)pids[i]);
    snprintf(cmdline_path, sizeof cmdline_path, "/proc/%d/cmdline", (int)pids[i]);
    int fd = open(cmdline_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t r = read(fd, cmdline, sizeof cmdline - 1);
      close(fd);
      for (ssize_t k = 0; k < r - 1; k++)
        if (cmdline[k] == '\0') cmdline[k] = ' ';
      if (r > 0) cmdline[r] = '\0';
    }
    const char *argv[] = {"/usr/bin/gdb", "-nx", "-batch", "-p", pid, "-ex", "info threads",
                          "-ex", "thread apply all bt 40", NULL};
    nm_cmd_t g = {.argv = argv, .timeout_s = 60};
    nm_result_t r;
    nm_run(&g, &r);
    buf_addf(&b, "==== process %s: %s\n", pid, cmdline);
    if (r.out) buf_add(&b, r.out, r.out_len);
    nm_result_free(&r);
  }
  return n ? buf_take(&b) : NULL;
}

/* ------------------------------------------------------------------ nm_run */

/* argv0 as execvp would find it in $PATH (resolved before fork, so the child needs no
 * allocation). */
static char *resolve_path(const char *argv0) {
  if (strchr(argv0, '/') != NULL) return strdup(argv0);
  const char *path = getenv("PATH");
  if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    char *cand = malloc(n + strlen(argv0) + 2);
    cr_assert(cand != NULL);
    snprintf(cand, n + strlen(argv0) + 2, "%.*s/%s", (int)n, n ? path : ".", argv0);
    if (access(cand, X_OK) == 0) return cand;
    free(cand);
    if (!end) break;
    path = end + 1;
  }
  return strdup(argv0);   /* execve will say ENOENT */
}

bool nm_run(const nm_cmd_t *cmd, nm_result_t *res) {
  memset(res, 0, sizeof *res);
  double timeout = cmd->timeout_s > 0 ? cmd->timeout_s : 300;
  int out_pipe[2], err_pipe[2];
  cr_assert(pipe2(out_pipe, O_CLOEXEC) == 0 && pipe2(err_pipe, O_CLOEXEC) == 0, "pipe2: %s",
            strerror(errno));

  char *owned[2] = {NULL, NULL};
  char **env = child_env(cmd, owned);
  char *path = resolve_path(cmd->argv[0]);
  const char *in_path = cmd->stdin_path ? cmd->stdin_path : "/dev/null";
  int out_fd = out_pipe[1];
  if (cmd->stdout_path != NULL) {
    out_fd = open(cmd->stdout_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(out_fd >= 0, "open %s: %s", cmd->stdout_path, strerror(errno));
  }
  int status_pipe[2];   /* carries execve's errno back; closed by a successful exec */
  cr_assert(pipe2(status_pipe, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
  double t0 = now_s();
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    /* The child: async-signal-safe calls only, up to execve. */
    int step_err;
    setpgid(0, 0);   /* its own group: a timeout kills grandchildren too */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
      if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int in = open(in_path, O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_pipe[1], 2) < 0 ||
        (cmd->cwd != NULL && chdir(cmd->cwd) != 0)) {
      step_err = errno;
    } else {
      execve(path, (char *const *)cmd->argv, env);
      step_err = errno;
    }
    ssize_t w = write(status_pipe[1], &step_err, sizeof step_err);
    (void)w;
    _exit(127);
  }
  setpgid(pid, pid);   /* also from here: no window where a kill of the group misses it */
  close(status_pipe[1]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (out_fd != out_pipe[1]) close(out_fd);
  int child_err = 0;
  ssize_t got;
  do got = read(status_pipe[0], &child_err, sizeof child_err);
  while (got < 0 && errno == EINTR);
  close(status_pipe[0]);
  free(path);
  if (got == (ssize_t)sizeof child_err) {
    char *a = argv_string(cmd->argv);
    cr_log_error("cannot run %s: %s", a, strerror(child_err));
    free(a);
    waitpid(pid, NULL, 0);
    close(out_pipe[0]);
    close(err_pipe[0]);
    free(env);
    free(owned[0]);
    free(owned[1]);
    res->out = strdup("");
    res->err = strdup("");
    return false;
  }
  res->started = true;

  /* The child is only reaped after the last kill of its group: a zombie leader keeps the
   * group id reserved, so the kill cannot reach an unrelated group that reused the id. */
  buf_t out = {0}, err = {0};
  struct pollfd pfd[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  bool open_[2] = {true, true};
  bool exited = false;
  double exited_at = 0;
  for (;;) {
    if (!exited) {
      siginfo_t si;
      memset(&si, 0, sizeof si);
      if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
        exited = true;
        exited_at = now_s();
      }
    }
    if (!open_[0] && !open_[1] && exited) break;
    double t = now_s();
    if (!exited && t - t0 > timeout) {
      res->timed_out = true;
      if (cmd->backtrace_on_hang) res->report = hang_report(pid);
      kill(-pid, SIGKILL);
      exited = true;
      exited_at = now_s();
    }
    /* Grandchildren that keep our pipes open after the child is gone get 5 s. */
    if (exited && t - exited_at > 5) break;
    pfd[0].fd = open_[0] ? out_pipe[0] : -1;
    pfd[1].fd = open_[1] ? err_pipe[0] : -1;
    int pr = poll(pfd, 2, 100);
    if (pr < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (!open_[i] || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char chunk[65536];
      ssize_t r = read(pfd[i].fd, chunk, sizeof chunk);
      if (r > 0) buf_add(i == 0 ? &out : &err, chunk, (size_t)r);
      else if (r == 0 || (errno != EINTR && errno != EAGAIN)) open_[i] = false;
    }
  }
  kill(-pid, SIGKILL);   /* whatever the child left behind in its group */
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  free(env);
  free(owned[0]);
  free(owned[1]);
  res->seconds = now_s() - t0;
  if (WIFEXITED(status)) {
    res->exited = true;
    res->exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res->signaled = true;
    res->signo = WTERMSIG(status);
  }
  res->out = buf_take(&out);
  res->out_len = out.len;
  res->err = buf_take(&err);
  res->err_len = err.len;
  return true;
}

void nm_result_free(nm_result_t *res) {
  free(res->out);
  free(res->err);
  free(res->report);
  memset(res, 0, sizeof *res);
}

const char *nm_result_status(const nm_result_t *r, char *buf, size_t size) {
  if (!r->started) snprintf(buf, size, "not started");
  else if (r->timed_out) snprintf(buf, size, "timed out after %.0f s (killed)", r->seconds);
  else if (r->exited) snprintf(buf, size, "exit %d", r->exit_code);
  else if (r->signaled) snprintf(buf, size, "signal %d (%s)", r->signo, strsignal(r->signo));
  else snprintf(buf, size, "unknown status");
  return buf;
}

const char *nm_tail(const char *s, size_t len, size_t max) {
  if (s == NULL) return "";
  if (len <= max) return s;
  const char *t = s + len - max;
  const char *nl = memchr(t, '\n', max);   /* start on a line */
  return nl && nl + 1 < s + len ? nl + 1 : t;
}

/* ------------------------------------------------------------------ artifacts, temp dirs */

static void write_all(const char *path, const char *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    cr_log_warn("cannot write %s: %s", path, strerror(errno));
    return;
  }
  while (len > 0) {
    ssize_t w = write(fd, data, len);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      break;
    }
    data += w;
    len -= (size_t)w;
  }
  close(fd);
}

void nm_write_file(const char *path, const char *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
  while (len > 0) {
    ssize_t w = write(fd, data, len);
    cr_assert(w > 0 || errno == EINTR, "write %s: %s", path, strerror(errno));
    if (w > 0) {
      data += w;
      len -= (size_t)w;
    }
  }
  close(fd);
}

void nm_save_artifacts(const char *name, const char *tag, const nm_result_t *res) {
  const char *dir = getenv("NM_ARTIFACTS");
  if (dir == NULL || dir[0] == '\0' || res == NULL) return;
  mkdir(dir, 0755);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.%s.out", dir, name, tag);
  write_all(path, res->out ? res->out : "", res->out_len);
  snprintf(path, sizeof path, "%s/%s.%s.err", dir, name, tag);
  write_all(path, res->err ? res->err : "", res->err_len);
  if (res->report != NULL) {
    snprintf(path, sizeof path, "%s/%s.%s.hang", dir, name, tag);
    write_all(path, res->report, strlen(res->report));
  }
}

char *nm_tmpdir_make(const char *tag) {
  const char *base = getenv("NM_TMPDIR");
  if (base == NULL || base[0] == '\0') base = "/tmp";
  mkdir(base, 0755);
  char *path = malloc(strlen(base) + strlen(tag) + 32);
  cr_assert(path != NULL);
  sprintf(path, "%s/nebula-it-%s-XXXXXX", base, tag);
  cr_assert(mkdtemp(path) != NULL, "mkdtemp %s: %s", path, strerror(errno));
  return path;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (flag == FTW_DP) rmdir(path);
  else unlink(path);
  return 0;
}

void nm_tmpdir_remove(const char *path) {
  if (path == NULL || strncmp(path, "/", 1) != 0 || strstr(path, "/nebula-it-") == NULL)
    return;   /* only what nm_tmpdir_make made */
  nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ nm_compare */

/* The first line where a and b differ, for the message. */
static void first_difference(const char *a, size_t alen, const char *b, size_t blen,
                             char *msg, size_t size) {
  size_t i = 0, line = 1, ls = 0;
  while (i < alen && i < blen && a[i] == b[i]) {
    if (a[i] == '\n') {
      line++;
      ls = i + 1;
    }
    i++;
  }
  const char *ae = memchr(a + ls, '\n', alen - ls), *be = memchr(b + ls, '\n', blen - ls);
  int al = (int)((ae ? (size_t)(ae - a) : alen) - ls), bl = (int)((be ? (size_t)(be - b) : blen) - ls);
  if (al > 300) al = 300;
  if (bl > 300) bl = 300;
  snprintf(msg, size, "first difference at line %zu (byte %zu):\n  plain:   %.*s\n  preload: %.*s",
           line, i, al, ls <= alen ? a + ls : "", bl, ls <= blen ? b + ls : "");
}

/* $NM_CONFIGS split at ';' into out (NULL: the environment as it is, "": no config). */
static size_t compare_configs(char *buf, size_t size, const char **out, size_t max) {
  const char *list = getenv("NM_CONFIGS");
  if (list == NULL || list[0] == '\0') {
    out[0] = NULL;
    return 1;
  }
  snprintf(buf, size, "%s", list);
  size_t n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ";", &save); tok != NULL && n < max;
       tok = strtok_r(NULL, ";", &save))
    out[n++] = strcmp(tok, "default") == 0 ? "" : tok;
  cr_assert(n > 0, "NM_CONFIGS names no configuration: '%s'", list);
  return n;
}

/* How many files in dir start with prefix. */
static size_t files_named(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
  closedir(d);
  return n;
}

/* Asserts one preloaded run against the plain one (filtered outputs a). */
static void compare_one(const nm_cmd_t *cmd, const nm_compare_opts_t *opts, const char *name,
                        const char *cmdline, const nm_result_t *plain, const char *a,
                        const nm_result_t *pre) {
  char ps[128], qs[128], how[512];
  nm_result_status(plain, ps, sizeof ps);
  nm_result_status(pre, qs, sizeof qs);
  snprintf(how, sizeof how, "%s%s%s", cmd->config && cmd->config[0] ? "NEBULA_MEM_CONFIG=" : "",
           cmd->config && cmd->config[0] ? cmd->config : "", cmd->config && cmd->config[0] ? " " : "");
  cr_log_info("%s: plain %s in %.1f s, preload %s%s in %.1f s", name, ps, plain->seconds, how,
              qs, pre->seconds);
  cr_assert(pre->started, "%s: could not start %s", name, cmdline);
  cr_assert(!pre->timed_out,
            "%s: HANG under the preload (killed after %.0f s; plain run took %.1f s)\n"
            "reproduce: %sLD_PRELOAD=%s %s%s%s\nstderr tail:\n%s\n%s",
            name, pre->seconds, plain->seconds, how, nm_preload_path(), cmdline,
            cmd->cwd ? "   (in " : "", cmd->cwd ? cmd->cwd : "",
            nm_tail(pre->err, pre->err_len, 3000),
            pre->report ? nm_tail(pre->report, strlen(pre->report), 12000) : "(no backtrace)");
  cr_assert(!(pre->signaled && !plain->signaled),
            "%s: CRASH under the preload: %s (plain: %s)\nreproduce: %sLD_PRELOAD=%s %s\n"
            "stderr tail:\n%s",
            name, qs, ps, how, nm_preload_path(), cmdline, nm_tail(pre->err, pre->err_len, 3000));
  cr_assert(plain->exited == pre->exited && plain->exit_code == pre->exit_code &&
                plain->signo == pre->signo,
            "%s: exit status differs: plain %s, preload %s\nreproduce: %sLD_PRELOAD=%s %s\n"
            "preload stderr tail:\n%s\nplain stderr tail:\n%s",
            name, ps, qs, how, nm_preload_path(), cmdline, nm_tail(pre->err, pre->err_len, 3000),
            nm_tail(plain->err, plain->err_len, 1500));
  char *b = opts && opts->filter ? opts->filter(pre->out, pre->out_len) : strdup(pre->out);
  cr_assert(b != NULL);
  if (strcmp(a, b) != 0) {
    char diff[1024];
    first_difference(a, strlen(a), b, strlen(b), diff, sizeof diff);
    cr_assert_fail("%s: stdout differs between the plain and the preloaded run\n%s\n"
                   "reproduce: %sLD_PRELOAD=%s %s\npreload stderr tail:\n%s",
                   name, diff, how, nm_preload_path(), cmdline,
                   nm_tail(pre->err, pre->err_len, 2000));
  }
  free(b);
  for (size_t i = 0; opts && opts->must_contain && opts->must_contain[i]; i++)
    cr_assert(strstr(pre->out, opts->must_contain[i]) != NULL,
              "%s: the preloaded run's stdout lacks '%s'\nreproduce: %sLD_PRELOAD=%s %s\n"
              "stdout tail:\n%s\nstderr tail:\n%s",
              name, opts->must_contain[i], how, nm_preload_path(), cmdline,
              nm_tail(pre->out, pre->out_len, 2000), nm_tail(pre->err, pre->err_len, 2000));
}

void nm_compare(const nm_cmd_t *cmd, const nm_compare_opts_t *opts, nm_result_t *plain_out,
                nm_result_t *preload_out) {
  const char *name = opts && opts->name ? opts->name : "case";
  char *cmdline = argv_string(cmd->argv);
  nm_cmd_t c = *cmd;
  c.preload = false;
  c.backtrace_on_hang = false;
  c.config = NULL;
  nm_result_t plain, pre;
  memset(&pre, 0, sizeof pre);
  nm_run(&c, &plain);
  nm_save_artifacts(name, "plain", &plain);
  char ps[128];
  nm_result_status(&plain, ps, sizeof ps);
  cr_assert(plain.started, "%s: could not start %s", name, cmdline);
  cr_assert(!plain.timed_out,
            "%s: the plain run timed out (%.0f s): the test is broken or the machine too "
            "slow, not the allocator.\ncommand: %s\nstderr tail:\n%s",
            name, plain.seconds, cmdline, nm_tail(plain.err, plain.err_len, 2000));
  if (opts && opts->expect_success)
    cr_assert(plain.exited && plain.exit_code == 0,
              "%s: the plain run failed (%s), so the comparison means nothing\ncommand: %s\n"
              "stdout tail:\n%s\nstderr tail:\n%s",
              name, ps, cmdline, nm_tail(plain.out, plain.out_len, 2000),
              nm_tail(plain.err, plain.err_len, 2000));
  char *a = opts && opts->filter ? opts->filter(plain.out, plain.out_len) : strdup(plain.out);
  cr_assert(a != NULL);
  cr_assert(a[0] != '\0', "%s: no output to compare (plain stdout: %zu bytes)", name,
            plain.out_len);

  char list[1024];
  const char *configs[16];
  size_t n = compare_configs(list, sizeof list, configs, 16);
  for (size_t i = 0; i < n; i++) {
    if (i > 0) nm_result_free(&pre);
    c.preload = true;
    c.backtrace_on_hang = true;
    /* Proof that the preload ran: each process writes its statistics at exit into a file
     * of its own (no signal handler, nothing on stderr). A preload that fails to load (ld.so
     * only warns, and the program runs on glibc) writes none, and the case fails. */
    char *proof = nm_tmpdir_make("active");
    char config[1024];
    snprintf(config, sizeof config, "%s%sstats=exit,stats_signal=none,stats_format=json,"
             "stats_file=%s/nebula-active.%%p.json", configs[i] ? configs[i] : "",
             configs[i] && configs[i][0] ? "," : "", proof);
    c.config = config;
    nm_run(&c, &pre);
    c.config = configs[i];   /* messages name the configuration under test */
    if (pre.exited)
      cr_assert(files_named(proof, "nebula-active.") > 0,
                "%s: the preloaded run wrote no statistics file into %s: the preload did not "
                "run (LD_PRELOAD=%s, NEBULA_MEM_CONFIG=%s)\nstderr tail:\n%s", name, proof,
                nm_preload_path(), config, nm_tail(pre.err, pre.err_len, 2000));
    nm_tmpdir_remove(proof);
    free(proof);
    char tag[160];
    snprintf(tag, sizeof tag, "preload%s%s", configs[i] && configs[i][0] ? "@" : "",
             configs[i] ? configs[i] : "");
    nm_save_artifacts(name, tag, &pre);
    compare_one(&c, opts, name, cmdline, &plain, a, &pre);
  }
  free(a);
  free(cmdline);
  if (plain_out) *plain_out = plain;
  else nm_result_free(&plain);
  if (preload_out) *preload_out = pre;
  else nm_result_free(&pre);
}
