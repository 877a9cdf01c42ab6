/* Hostile hosts (issues 14 and 16), end to end:
 *
 *   secure/...      a setuid-root, setgid-root or file-capability copy of nm_host_secure
 *                   (linked against the preload), run as user nobody: NEBULA_MEM_CONFIG is
 *                   ignored (no stats file is created, even where only root may write),
 *                   and no statistics signal handler is installed. Each has a positive
 *                   control: the same copy without the bit, run as root, honours the same
 *                   configuration. Needs root (skipped otherwise).
 *   deepbind/...    nm_host_deep opens a plugin with RTLD_DEEPBIND under the preload, under
 *                   every strategy and the development preset: the plugin calls its own
 *                   helper() (glibc's meaning of the flag) while its malloc family (and its
 *                   dependencies', libstdc++'s for the C++ plugin) reaches the preload, and
 *                   blocks cross both ways. Also: how the plugin is found (the calling
 *                   object's DT_RUNPATH, $ORIGIN in the path, LD_LIBRARY_PATH, a relative
 *                   path) is glibc's, and the same program runs plain as a control.
 *   cancel/...      a thread cancelled inside fputs(stderr) (C and C++ hosts, every strategy,
 *                   after an out-of-memory report too): main can write to stderr after.
 *   config_bytes/.. raw bytes in NEBULA_MEM_CONFIG (invalid UTF-8, ESC, BEL, C1 controls)
 *                   are written as \xNN in the "nebula: config:" lines, never raw.
 *
 * The Criterion runner is never preloaded: spawn.c puts LD_PRELOAD in each child's
 * environment only; the secure suite runs its children with fork + execve itself. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"

/* ------------------------------------------------------------------ files */

static char *read_whole(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
  struct stat st;
  cr_assert(fstat(fd, &st) == 0);
  char *data = malloc((size_t)st.st_size + 1);
  cr_assert(data != NULL);
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
    cr_assert(r > 0 || (r < 0 && errno == EINTR), "read %s: %s", path, strerror(errno));
    if (r > 0) got += (size_t)r;
  }
  close(fd);
  data[got] = '\0';
  *len = got;
  return data;
}

static void copy_file(const char *from, const char *to, mode_t mode) {
  size_t len;
  char *data = read_whole(from, &len);
  nm_write_file(to, data, len);
  cr_assert(chmod(to, mode) == 0, "chmod %s: %s", to, strerror(errno));
  free(data);
}

/* Directories made by the running test, removed by its suite's fini (which runs after a
 * failed assertion too). */
static char *made_dirs[16];
static size_t made_count;

static void remove_made_dirs(void) {
  while (made_count) nm_tmpdir_remove(made_dirs[--made_count]);
}

TestSuite(secure, .fini = remove_made_dirs);
TestSuite(deepbind, .fini = remove_made_dirs);

/* A fresh directory /tmp/nebula-it-host-<tag>-XXXXXX (the prefix nm_tmpdir_remove accepts) with the given mode (umask aside). */
static char *make_dir(const char *tag, mode_t mode) {
  char *path = malloc(128);
  cr_assert(path != NULL);
  snprintf(path, 128, "/tmp/nebula-it-host-%s-XXXXXX", tag);
  cr_assert(mkdtemp(path) != NULL, "mkdtemp %s: %s", path, strerror(errno));
  cr_assert(made_count < sizeof made_dirs / sizeof made_dirs[0]);
  made_dirs[made_count++] = path;
  cr_assert(chmod(path, mode) == 0, "chmod %s: %s", path, strerror(errno));
  return path;
}

static char *join(const char *a, const char *b) {
  char *s = malloc(strlen(a) + strlen(b) + 2);
  cr_assert(s != NULL);
  sprintf(s, "%s/%s", a, b);
  return s;
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* ------------------------------------------------------------------ secure */

static uid_t nobody_uid = 65534;
static gid_t nobody_gid = 65534;

static void need_root(void) {
  if (geteuid() != 0)
    cr_skip_test("the secure tests need root (to make a setuid-root copy and run it as "
                 "nobody); running as uid %d", (int)geteuid());
  struct passwd *pw = getpwnam("nobody");
  if (pw != NULL) {
    nobody_uid = pw->pw_uid;
    nobody_gid = pw->pw_gid;
  }
}

/* nm_host_secure and the preload, copied into a fresh 0755 directory that user nobody can
 * traverse: the copy's placeholder run path is overwritten with the directory, padded with
 * slashes to the placeholder's length. */
typedef struct secure_copy {
  char *dir;
  char *exe;
} secure_copy_t;

static secure_copy_t secure_install(void) {
  secure_copy_t c;
  c.dir = make_dir("secure", 0755);
  char *so = join(c.dir, "libnebula_preload.so");
  copy_file(nm_preload_path(), so, 0644);
  free(so);

  const char *slot = nm_env_required("NM_HOST_RPATH_SLOT");
  size_t slot_len = strlen(slot), dir_len = strlen(c.dir);
  cr_assert(dir_len <= slot_len, "temp dir %s longer than the run path placeholder", c.dir);
  size_t len;
  char *data = read_whole(nm_env_required("NM_HOST_SECURE"), &len);
  char *at = memmem(data, len, slot, slot_len);
  cr_assert(at != NULL, "%s has no run path placeholder %s", getenv("NM_HOST_SECURE"), slot);
  memcpy(at, c.dir, dir_len);
  memset(at + dir_len, '/', slot_len - dir_len);
  c.exe = join(c.dir, "nm_host_secure");
  nm_write_file(c.exe, data, len);
  free(data);
  cr_assert(chown(c.exe, 0, 0) == 0, "chown %s: %s", c.exe, strerror(errno));
  cr_assert(chmod(c.exe, 0755) == 0);
  return c;
}

/* Runs exe with only NEBULA_MEM_CONFIG (unless NULL) and PATH in its environment, as
 * uid:gid (dropping root and every supplementary group first) or as ourselves when
 * drop is false. Returns its stdout and stderr (together); asserts that it exited 0. */
static char *run_helper(const char *exe, const char *config, bool drop, uid_t uid, gid_t gid) {
  int pipefd[2];
  cr_assert(pipe2(pipefd, O_CLOEXEC) == 0);
  char *conf = NULL;
  if (config) {
    conf = malloc(strlen(config) + 32);
    sprintf(conf, "NEBULA_MEM_CONFIG=%s", config);
  }
  char *env[] = { "PATH=/usr/bin:/bin", conf, NULL };
  char *argv[] = { (char *)exe, NULL };
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    if (drop && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
    execve(exe, argv, env);
    _exit(127);
  }
  close(pipefd[1]);
  char *out = malloc(65536);
  size_t len = 0;
  double deadline = (double)time(NULL) + 60;
  for (;;) {
    struct pollfd p = { pipefd[0], POLLIN, 0 };
    if (poll(&p, 1, 1000) > 0) {
      ssize_t r = read(pipefd[0], out + len, 65535 - len);
      if (r == 0) break;
      if (r > 0) len += (size_t)r;
    }
    if ((double)time(NULL) > deadline) {
      kill(pid, SIGKILL);
      break;
    }
    if (len == 65535) break;
  }
  out[len] = '\0';
  close(pipefd[0]);
  int status;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "%s (%s, NEBULA_MEM_CONFIG=%s) did not exit 0 (status 0x%x; 126: could not drop "
            "root, 127: exec failed):\n%s",
            exe, drop ? "as nobody" : "as root", config ? config : "(unset)", status, out);
  free(conf);
  return out;
}

static void expect_word(const char *out, const char *word, const char *what) {
  cr_expect_not_null(strstr(out, word), "%s: expected '%s' in the output:\n%s", what, word, out);
}

/* The preload served malloc in the run (in a secure process too). */
static void expect_preloaded(const char *out, const char *what) {
  expect_word(out, "malloc_from=libnebula_preload.so", what);
}

/* The control: the copy without any set-id bit, run as root, is not secure and does create
 * `file` under the same configuration (so the secure run's missing file means something). */
static void control_creates(const secure_copy_t *c, const char *file) {
  char config[512];
  snprintf(config, sizeof config, "stats=exit,stats_file=%s", file);
  cr_assert(chmod(c->exe, 0755) == 0);
  char *out = run_helper(c->exe, config, false, 0, 0);
  expect_word(out, "secure=0", "control run as root, no set-id bit");
  expect_preloaded(out, "control run");
  expect_word(out, "usr1=handled", "control run (stats_signal=USR1 is the default)");
  cr_expect(exists(file), "control: the same program run as root without a set-id bit did not "
                          "create %s with NEBULA_MEM_CONFIG=%s, so the secure runs prove "
                          "nothing:\n%s", file, config, out);
  free(out);
}

/* The secure runs of c->exe (mode already set) as nobody: AT_SECURE, the preload serving
 * malloc, and NEBULA_MEM_CONFIG without effect: no stats file in `dir` nor in /etc, no
 * SIGUSR1 handler, no config line, and strict=1 with a bad key does not stop the program. */
static void secure_run_creates_nothing(const secure_copy_t *c, const char *dir, const char *what) {
  char *file = join(dir, "stats");
  char config[512];
  snprintf(config, sizeof config, "stats=exit,stats_file=%s", file);
  char *out = run_helper(c->exe, config, true, nobody_uid, nobody_gid);
  expect_word(out, "secure=1", what);
  expect_preloaded(out, what);
  expect_word(out, "usr1=default", what);
  cr_expect(!exists(file), "%s: NEBULA_MEM_CONFIG=%s was honoured: %s was created", what,
            config, file);
  unlink(file);
  free(out);

  char etc[128];
  snprintf(etc, sizeof etc, "/etc/nebula-secure-test-%d", (int)getpid());
  snprintf(config, sizeof config, "stats=exit,stats_file=%s", etc);
  out = run_helper(c->exe, config, true, nobody_uid, nobody_gid);
  bool made = exists(etc);
  unlink(etc);
  cr_expect(!made, "%s: NEBULA_MEM_CONFIG=%s was honoured: %s was created", what, config, etc);
  free(out);

  /* Unset, no handler either (stats_signal=USR1 is the default elsewhere). */
  out = run_helper(c->exe, NULL, true, nobody_uid, nobody_gid);
  expect_word(out, "secure=1", what);
  expect_word(out, "usr1=default", what);
  free(out);

  /* Not even parsed: no problem line, and strict=1 does not stop the program (exit 0). */
  out = run_helper(c->exe, "stats_signal=USR2,bogus=1,strict=1", true, nobody_uid, nobody_gid);
  cr_expect_null(strstr(out, "nebula: config:"), "%s: the preload parsed NEBULA_MEM_CONFIG:\n%s",
                 what, out);
  expect_word(out, "usr1=default", what);
  free(out);
  free(file);
}

Test(secure, setuid_root_ignores_config) {
  need_root();
  secure_copy_t c = secure_install();
  char *dir = make_dir("root-only", 0700);   /* only root (the setuid program) may write */
  char *control = join(dir, "control");
  control_creates(&c, control);
  cr_assert(chmod(c.exe, 04755) == 0, "chmod 4755 %s: %s", c.exe, strerror(errno));
  secure_run_creates_nothing(&c, dir, "setuid root, run as nobody");
}

Test(secure, setgid_root_ignores_config) {
  need_root();
  secure_copy_t c = secure_install();
  char *dir = make_dir("group-root", 0770);   /* root's group may write */
  cr_assert(chown(dir, 0, 0) == 0);
  char *control = join(dir, "control");
  control_creates(&c, control);
  cr_assert(chmod(c.exe, 02755) == 0, "chmod 2755 %s: %s", c.exe, strerror(errno));
  secure_run_creates_nothing(&c, dir, "setgid root, run as nobody");
}

Test(secure, file_capabilities_ignore_config) {
  need_root();
  secure_copy_t c = secure_install();
  char *dir = make_dir("root-only", 0700);   /* CAP_DAC_OVERRIDE may write */
  char *control = join(dir, "control");
  control_creates(&c, control);
  /* security.capability: CAP_DAC_OVERRIDE permitted and effective (setcap cap_dac_override=ep). */
  struct vfs_cap_data cap;
  memset(&cap, 0, sizeof cap);
  cap.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
  cap.data[0].permitted = 1u << CAP_DAC_OVERRIDE;
  if (setxattr(c.exe, "security.capability", &cap, XATTR_CAPS_SZ_2, 0) != 0) {
    int e = errno;
    cr_skip_test("cannot give %s file capabilities here: %s", c.exe, strerror(e));
  }
  secure_run_creates_nothing(&c, dir, "file capability cap_dac_override, run as nobody");
}

/* ------------------------------------------------------------------ deepbind */

static bool has_line(const char *out, const char *line) {
  size_t n = strlen(line);
  for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0')) return true;
  return false;
}

/* The value of "key=" on its own line in out (static buffer), or "". */
static const char *line_value(const char *out, const char *key) {
  static char v[4096];
  size_t n = strlen(key);
  v[0] = '\0';
  for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, key, n) == 0 && p[n] == '=') {
      const char *e = strchr(p + n + 1, '\n');
      size_t len = e ? (size_t)(e - p - n - 1) : strlen(p + n + 1);
      snprintf(v, sizeof v, "%.*s", (int)len, p + n + 1);
      break;
    }
  return v;
}

typedef struct deep_run {
  const char *const *argv;
  bool preload;
  const char *config;          /* NEBULA_MEM_CONFIG; NULL: unset */
  const char *cwd;
  const char *const *env;
  const char *what;
} deep_run_t;

/* Runs nm_host_deep; asserts exit 0 and (preloaded) an empty stderr; returns its stdout. */
static char *deep(const deep_run_t *r) {
  /* meson test sets LD_LIBRARY_PATH to the build directories, where glibc would find the
   * plugin before any run path: empty, it is ignored. */
  static const char *const no_config_env[] = { "NEBULA_MEM_CONFIG=", "LD_LIBRARY_PATH=", NULL };
  static const char *const config_env[] = { "LD_LIBRARY_PATH=", NULL };
  nm_cmd_t cmd = { .argv = r->argv, .preload = r->preload, .config = r->config, .cwd = r->cwd,
                   .env = r->env ? r->env : r->config ? config_env : no_config_env, .timeout_s = 60 };
  nm_result_t res;
  cr_assert(nm_run(&cmd, &res), "%s: could not start %s", r->what, r->argv[0]);
  char status[128];
  char args[1024] = "";
  for (const char *const *a = r->argv; *a; a++) {
    strncat(args, *a, sizeof args - strlen(args) - 2);
    strncat(args, " ", sizeof args - strlen(args) - 1);
  }
  cr_assert(res.exited && res.exit_code == 0,
            "%s: %s%sNEBULA_MEM_CONFIG=%s %s-> %s\nstdout:\n%s\nstderr:\n%s", r->what,
            r->preload ? "LD_PRELOAD=<preload> " : "", r->cwd ? "(in the copied layout) " : "",
            r->config ? r->config : "", args, nm_result_status(&res, status, sizeof status),
            res.out, nm_tail(res.err, res.err_len, 3000));
  if (r->preload)
    cr_expect_eq(res.err_len, 0, "%s (NEBULA_MEM_CONFIG=%s %s): the preload wrote to stderr:\n%s",
                 r->what, r->config ? r->config : "", args, nm_tail(res.err, res.err_len, 3000));
  char *out = strdup(res.out);
  nm_result_free(&res);
  return out;
}

static void expect_deep_facts(const char *out, const char *what, int helper, bool cxx) {
  char want[32];
  snprintf(want, sizeof want, "helper=%d", helper);
  cr_expect(has_line(out, want), "%s: expected %s:\n%s", what, want, out);
  static const char *const facts[] = { "malloc_address=global", "free_address=global",
                                       "data_malloc_address=global", "data_free_address=global",
                                       "dep_malloc_address=global", "crossing=ok" };
  for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
    cr_expect(has_line(out, facts[i]), "%s: expected %s:\n%s", what, facts[i], out);
  if (cxx) cr_expect(has_line(out, "containers=69500"), "%s: the C++ containers:\n%s", what, out);
}

/* Both plugins, bound now and lazily, under one NEBULA_MEM_CONFIG. */
static void deep_under(const char *config) {
  const char *plugins[2] = { nm_env_required("NM_HOST_PLUGIN"), nm_env_required("NM_HOST_PLUGIN_CXX") };
  static const char *const hows[] = { "now", "lazy" };
  for (int p = 0; p < 2; p++)
    for (int h = 0; h < 2; h++) {
      const char *argv[] = { nm_env_required("NM_HOST_DEEP"), "check", plugins[p], hows[h], NULL };
      char what[256];
      snprintf(what, sizeof what, "%s plugin, RTLD_%s | RTLD_DEEPBIND, NEBULA_MEM_CONFIG=%s",
               p ? "C++" : "C", h ? "LAZY" : "NOW", config ? config : "(unset)");
      deep_run_t r = { .argv = argv, .preload = true, .config = config, .what = what };
      char *out = deep(&r);
      expect_deep_facts(out, what, 2, p == 1);
      free(out);
    }
}

Test(deepbind, control_without_preload) {
  const char *plugins[2] = { nm_env_required("NM_HOST_PLUGIN"), nm_env_required("NM_HOST_PLUGIN_CXX") };
  for (int p = 0; p < 2; p++) {
    const char *argv[] = { nm_env_required("NM_HOST_DEEP"), "check", plugins[p], "now", NULL };
    deep_run_t r = { .argv = argv, .what = p ? "C++ plugin, no preload" : "C plugin, no preload" };
    char *out = deep(&r);
    expect_deep_facts(out, r.what, 2, p == 1);
    free(out);
  }
}

Test(deepbind, default_config) { deep_under(NULL); }
Test(deepbind, strategy_balanced) { deep_under("strategy=balanced"); }
Test(deepbind, strategy_throughput) { deep_under("strategy=throughput"); }
Test(deepbind, strategy_compact) { deep_under("strategy=compact"); }
Test(deepbind, strategy_system) { deep_under("strategy=system"); }
Test(deepbind, preset_development) { deep_under("preset=development"); }

/* With process_vm_writev refused (seccomp), the rewrite still reaches slots in RELRO pages
 * (the GLOB_DAT of &malloc) and in writable ones (lazy JUMP_SLOTs, the data pointer). */
Test(deepbind, without_process_vm_writev) {
  static const char *const hows[] = { "now", "lazy" };
  for (int h = 0; h < 2; h++) {
    const char *argv[] = { nm_env_required("NM_HOST_NOSCALL"), nm_env_required("NM_HOST_DEEP"), "check",
                           nm_env_required("NM_HOST_PLUGIN_CXX"), hows[h], NULL };
    char what[128];
    snprintf(what, sizeof what, "C++ plugin, RTLD_%s | RTLD_DEEPBIND, process_vm_writev refused",
             h ? "LAZY" : "NOW");
    deep_run_t r = { .argv = argv, .preload = true, .what = what };
    char *out = deep(&r);
    expect_deep_facts(out, what, 2, true);
    free(out);
  }
}

Test(deepbind, without_the_flag_unchanged) {
  const char *argv[] = { nm_env_required("NM_HOST_DEEP"), "check", nm_env_required("NM_HOST_PLUGIN"),
                         "plain", NULL };
  deep_run_t r = { .argv = argv, .preload = true, .what = "RTLD_NOW without RTLD_DEEPBIND" };
  char *out = deep(&r);
  expect_deep_facts(out, r.what, 1, false);
  free(out);
}

/* The build's programs copied into an installed-like layout:
 *   bin/nm_host_deep                    DT_RUNPATH $ORIGIN/../plugins
 *   plugins/libnm_host_plugin.so        DT_RUNPATH $ORIGIN/dep
 *   plugins/dep/libnm_host_dep.so
 *   lib/libnm_host_loader.so            DT_RUNPATH $ORIGIN/../loaded
 *   loaded/libnm_host_plugin.so, loaded/dep/libnm_host_dep.so */
static char *layout(void) {
  char *t = make_dir("layout", 0755);
  static const char *const dirs[] = { "bin", "plugins", "plugins/dep", "lib", "loaded", "loaded/dep" };
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    char *d = join(t, dirs[i]);
    cr_assert(mkdir(d, 0755) == 0, "mkdir %s: %s", d, strerror(errno));
    free(d);
  }
  static const char *const files[][2] = {
    { "NM_HOST_DEEP", "bin/nm_host_deep" },
    { "NM_HOST_PLUGIN", "plugins/libnm_host_plugin.so" },
    { "NM_HOST_DEP", "plugins/dep/libnm_host_dep.so" },
    { "NM_HOST_LOADER", "lib/libnm_host_loader.so" },
    { "NM_HOST_PLUGIN", "loaded/libnm_host_plugin.so" },
    { "NM_HOST_DEP", "loaded/dep/libnm_host_dep.so" },
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char *to = join(t, files[i][1]);
    copy_file(nm_env_required(files[i][0]), to, 0755);
    free(to);
  }
  return t;
}

/* Runs the copied program plain (the control: glibc finds the plugin) and preloaded; both
 * must load the plugin from `want_dir` (relative to the layout) and see the same facts. */
static void layout_case(const char *t, const char *const *args, const char *want_dir, int helper,
                        const char *const *env, const char *cwd, const char *what) {
  char *exe = join(t, "bin/nm_host_deep");
  const char *argv[8] = { exe };
  size_t n = 1;
  for (; args[n - 1]; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  char *want = join(t, want_dir);
  for (int pre = 0; pre < 2; pre++) {
    char w[256];
    snprintf(w, sizeof w, "%s, %s", what, pre ? "preloaded" : "plain (control)");
    deep_run_t r = { .argv = argv, .preload = pre == 1, .env = env, .cwd = cwd, .what = w };
    char *out = deep(&r);
    expect_deep_facts(out, w, helper, false);
    const char *file = line_value(out, "plugin_file");
    char *abs = file[0] == '/' || !cwd ? strdup(file) : join(cwd, file);
    char real_file[4096], real_want[4096];
    cr_assert(realpath(abs, real_file) != NULL, "%s: plugin_file '%s':\n%s", w, file, out);
    free(abs);
    cr_assert(realpath(want, real_want) != NULL);
    cr_expect(strncmp(real_file, real_want, strlen(real_want)) == 0 &&
                  real_file[strlen(real_want)] == '/' && !strchr(real_file + strlen(real_want) + 1, '/'),
              "%s: the plugin was loaded from %s, expected from %s/", w, real_file, real_want);
    free(out);
  }
  free(want);
  free(exe);
}

Test(deepbind, bare_name_through_the_programs_runpath) {
  char *t = layout();
  const char *args[] = { "check", "libnm_host_plugin.so", "now", NULL };
  layout_case(t, args, "plugins", 2, NULL, NULL, "dlopen(\"libnm_host_plugin.so\", RTLD_DEEPBIND) from bin/");
  const char *lazy[] = { "check", "libnm_host_plugin.so", "lazy", NULL };
  layout_case(t, lazy, "plugins", 2, NULL, NULL, "the same, RTLD_LAZY");
  const char *plain[] = { "check", "libnm_host_plugin.so", "plain", NULL };
  layout_case(t, plain, "plugins", 1, NULL, NULL, "the same without RTLD_DEEPBIND");
}

Test(deepbind, origin_in_the_path) {
  char *t = layout();
  const char *args[] = { "check", "$ORIGIN/../plugins/libnm_host_plugin.so", "now", NULL };
  layout_case(t, args, "plugins", 2, NULL, NULL, "dlopen(\"$ORIGIN/../plugins/...\", RTLD_DEEPBIND)");
  const char *braces[] = { "check", "${ORIGIN}/../loaded/libnm_host_plugin.so", "now", NULL };
  layout_case(t, braces, "loaded", 2, NULL, NULL, "dlopen(\"${ORIGIN}/../loaded/...\", RTLD_DEEPBIND)");
}

Test(deepbind, bare_name_through_a_librarys_runpath) {
  char *t = layout();
  char *loader = join(t, "lib/libnm_host_loader.so");
  const char *args[] = { "loader", loader, "libnm_host_plugin.so", "now", NULL };
  layout_case(t, args, "loaded", 2, NULL, NULL,
              "dlopen(\"libnm_host_plugin.so\", RTLD_DEEPBIND) from lib/libnm_host_loader.so");
  free(loader);
}

Test(deepbind, bare_name_through_ld_library_path) {
  char *t = layout();
  char *plugins = join(t, "loaded");
  char *lp = malloc(strlen(plugins) + 32);
  sprintf(lp, "LD_LIBRARY_PATH=%s", plugins);
  const char *env[] = { lp, "NEBULA_MEM_CONFIG=", NULL };
  const char *args[] = { "check", "libnm_host_plugin.so", "now", NULL };
  layout_case(t, args, "loaded", 2, env, NULL, "LD_LIBRARY_PATH=loaded/ (searched before DT_RUNPATH)");
  free(lp);
  free(plugins);
}

Test(deepbind, relative_path) {
  char *t = layout();
  const char *args[] = { "check", "./loaded/libnm_host_plugin.so", "now", NULL };
  layout_case(t, args, "loaded", 2, NULL, t, "dlopen(\"./loaded/...\", RTLD_DEEPBIND) in the layout's directory");
}

/* ------------------------------------------------------------------ config_bytes */

/* stderr holds only printable ASCII and newlines, each line a "nebula: config: " line. */
static void expect_plain_lines(const char *err, size_t len, const char *what) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)err[i];
    if (c == '\n') continue;
    if (c < 0x20 || c >= 0x7f) {
      cr_expect(false, "%s: raw byte 0x%02x at offset %zu of stderr", what, c, i);
      return;
    }
  }
  for (const char *p = err; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (*p != '\n' && *p != '\0')
      cr_expect(strncmp(p, "nebula: config: ", 16) == 0, "%s: a stderr line is not a config line",
                what);
}

static const char hostile[] =
    "strategy=\xff\x1b[31mred,"             /* invalid UTF-8, then a colour escape */
    "\xfe\x1b]0;pwned\x07=1,"               /* a key that sets the terminal title */
    "junk=caf\xc3\xa9,"                     /* valid UTF-8 (escaped too) */
    "route=0-\xc2\x9b" "2J:pool,"           /* a C1 CSI, UTF-8 encoded */
    "oom=\x9b" "1;1H\\x41";                 /* a raw C1 CSI, and a literal backslash */

static const char *const hostile_escaped[] = {
  "nebula: config: bad value '\\xff\\x1b[31mred' for 'strategy': expected balanced|throughput|compact|system",
  "nebula: config: unknown key '\\xfe\\x1b]0;pwned\\x07'",
  "nebula: config: bad value 'caf\\xc3\\xa9' for 'junk': expected 1|0|on|off|true|false|yes|no",
  "nebula: config: bad size '\\xc2\\x9b2J' in route range '0-\\xc2\\x9b2J:pool': ",
  "nebula: config: bad value '\\x9b1;1H\\\\x41' for 'oom': expected null|abort|fallback",
};

static void hostile_run(const char *config, int want_exit, const char *what) {
  const char *argv[] = { "true", NULL };
  nm_cmd_t cmd = { .argv = argv, .preload = true, .config = config, .timeout_s = 60 };
  nm_result_t res;
  cr_assert(nm_run(&cmd, &res));
  char status[128];
  cr_assert(res.exited && res.exit_code == want_exit, "%s: true under the preload: %s, expected exit %d",
            what, nm_result_status(&res, status, sizeof status), want_exit);
  expect_plain_lines(res.err, res.err_len, what);
  for (size_t i = 0; i < sizeof hostile_escaped / sizeof hostile_escaped[0]; i++)
    cr_expect_not_null(strstr(res.err, hostile_escaped[i]), "%s: expected the line\n%s\nin stderr",
                       what, hostile_escaped[i]);
  nm_result_free(&res);
}

/* (The messages below never quote the hostile text or the child's stderr: the test log is
 * read on terminals too.) */
Test(config_bytes, raw_bytes_are_escaped) { hostile_run(hostile, 0, "hostile NEBULA_MEM_CONFIG"); }

Test(config_bytes, raw_bytes_are_escaped_with_strict) {
  char config[512];
  snprintf(config, sizeof config, "%s,strict=1", hostile);
  hostile_run(config, 2, "hostile NEBULA_MEM_CONFIG with strict=1");
}

/* ------------------------------------------------------------------ cancel */

/* nm_host_cancel (C) and nm_host_cancel_cxx (C++): a thread cancelled inside fputs(stderr),
 * twenty times; main then writes to stderr and allocates. Plain, and preloaded under every
 * strategy and the development preset; the C program also after an out-of-memory report
 * (whose backtrace loads the unwinder). A hang is the bug this catches: the watchdog is
 * 30 s, the program takes milliseconds. */
static void cancel_run(const char *env_name, const char *config, bool preload, bool report) {
  const char *argv[] = { nm_env_required(env_name), report ? "report" : NULL, NULL };
  static const char *const no_config_env[] = { "NEBULA_MEM_CONFIG=", NULL };
  nm_cmd_t cmd = { .argv = argv, .preload = preload, .config = config,
                   .env = config ? NULL : no_config_env, .timeout_s = 30 };
  nm_result_t res;
  cr_assert(nm_run(&cmd, &res), "could not start %s", argv[0]);
  char status[128];
  const char *what = preload ? "preloaded" : "plain";
  cr_expect(res.exited && res.exit_code == 0 && strstr(res.out, "\ndone\n") != NULL,
            "%s %s, NEBULA_MEM_CONFIG='%s'%s -> %s (a hang: the cancelled thread kept stderr's "
            "lock)\nstdout:\n%s\nstderr (tail):\n%s", what, argv[0], config ? config : "",
            report ? " report" : "", nm_result_status(&res, status, sizeof status), res.out,
            nm_tail(res.err, res.err_len, 1500));
  cr_expect(strstr(res.err, "round 19 cancelled") != NULL,
            "%s %s (NEBULA_MEM_CONFIG='%s'): main's last line is missing from stderr", what,
            argv[0], config ? config : "");
  if (strcmp(env_name, "NM_HOST_CANCEL") == 0)
    cr_expect(strstr(res.out, "_Unwind_ForcedUnwind from elsewhere") != NULL,
              "%s (NEBULA_MEM_CONFIG='%s'): a global lookup of _Unwind_ForcedUnwind finds "
              "libunwind, so libgcc_s's calls can bind to it:\n%s", what, config ? config : "",
              res.out);
  if (report) {
    cr_expect(strstr(res.out, "big=NULL") != NULL && strstr(res.err, "nebula: out of memory") != NULL,
              "the report run (budget=64M, malloc 256 MiB) made no out-of-memory report:\n%s",
              nm_tail(res.err, res.err_len, 1500));
    cr_expect(strstr(res.err, "main+0x") != NULL,
              "the out-of-memory report's backtrace names no function (unwinder not loaded?):\n%s",
              nm_tail(res.err, res.err_len, 1500));
  }
  nm_result_free(&res);
}

static const char *const cancel_configs[] = { "", "strategy=throughput", "strategy=compact",
                                              "strategy=system", "preset=development", NULL };

Test(cancel, c_host) {
  cancel_run("NM_HOST_CANCEL", NULL, false, false);
  for (const char *const *c = cancel_configs; *c; c++) cancel_run("NM_HOST_CANCEL", *c, true, false);
}

Test(cancel, c_host_after_a_report) {
  cancel_run("NM_HOST_CANCEL", "budget=64M", true, true);
  cancel_run("NM_HOST_CANCEL", "budget=64M,preset=development", true, true);
}

Test(cancel, cxx_host) {
  cancel_run("NM_HOST_CANCEL_CXX", NULL, false, false);
  for (const char *const *c = cancel_configs; *c; c++) cancel_run("NM_HOST_CANCEL_CXX", *c, true, false);
}
