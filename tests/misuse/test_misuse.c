/* Heap misuse in production: every bad free or realloc, under every strategy and the
 * development preset, run the way a user runs a program (nm_misuse_child under LD_PRELOAD;
 * the Criterion runner is never preloaded).
 *
 * For each configuration x scenario x size, twice:
 *   misuse=abort (the default): the child dies of SIGABRT, and stderr's first line names
 *     the misuse and the address ("nebula: heap misuse: double free in free(0x...)");
 *   misuse=report: the child goes on, one report, and afterwards 2000 new blocks neither
 *     overlap a live block nor each other ("sound overlap=0 corrupt=0").
 * Blocks the system backend serves (strategy=system) are glibc's: where glibc itself
 * catches the misuse it aborts with its own line, in both modes; where plain glibc lets a
 * misuse pass (a double free by two threads' tcaches), the preloaded run must do at least
 * what a plain run does. That floor is checked by running the same scenario without the
 * preload. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spawn.h"

#define CHECK(run, cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      char st_[64];                                                                        \
      cr_log_error(__VA_ARGS__);                                                           \
      cr_assert_fail("%s\n  status: %s\n  stdout:\n%s\n  stderr:\n%s", (run)->how,        \
                     nm_result_status(&(run)->r, st_, sizeof st_), (run)->r.out,          \
                     nm_tail((run)->r.err, (run)->r.err_len, 3000));                       \
    }                                                                                      \
  } while (0)

typedef struct run_s {
  nm_result_t r;
  char how[512];
} run_t;

static void run(run_t *out, const char *config, bool preload, const char *scenario, size_t size) {
  memset(out, 0, sizeof *out);
  char sz[32];
  snprintf(sz, sizeof sz, "%zu", size);
  const char *argv[] = { nm_env_required("NM_MISUSE_CHILD"), scenario, sz, NULL };
  nm_cmd_t cmd = { .argv = argv, .preload = preload, .config = config, .timeout_s = 60 };
  snprintf(out->how, sizeof out->how, "%sNEBULA_MEM_CONFIG='%s' %s %s %s",
           preload ? "LD_PRELOAD=libnebula_preload.so " : "(plain) ", config, argv[0], scenario, sz);
  cr_assert(nm_run(&cmd, &out->r), "could not start %s", out->how);
  cr_assert(!out->r.timed_out, "timed out: %s", out->how);
}

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle)) n++;
  return n;
}

static const char *const GLIBC_LINES[] = { "free(): double free detected", "double free or corruption",
                                           "free(): invalid pointer", "munmap_chunk(): invalid pointer",
                                           "realloc(): invalid pointer", "free(): invalid size", NULL };

static bool glibc_caught(const run_t *r) {
  for (const char *const *l = GLIBC_LINES; *l; l++)
    if (strstr(r->r.err, *l) != NULL) return true;
  return false;
}

/* The headline kinds a scenario may be reported as. Pool-sized double frees are always
 * named as such; a bigger block's page (or glibc's mapping) is gone after the first free,
 * so the second one finds no block there: "invalid pointer". */
static bool system_served(const char *config, size_t size) {
  return strstr(config, "strategy=system") != NULL || size > ((size_t)2 << 20);
}

/* Inside a glibc block nothing tells an interior pointer from any other bad one (glibc says
 * "free(): invalid pointer" too), unless the guard (canary=on) keeps its own trailer. */
static bool headline_ok(const char *config, const char *scenario, size_t size, const char *line) {
  bool realloc_ = strncmp(scenario, "realloc", 7) == 0;
  if (strstr(line, realloc_ ? " in realloc(0x" : " in free(0x") == NULL) return false;
  if (strcmp(scenario, "interior") == 0 || strcmp(scenario, "realloc-interior") == 0)
    return strstr(line, "interior pointer") || (system_served(config, size) && strstr(line, "invalid pointer"));
  if (strcmp(scenario, "stack") == 0 || strcmp(scenario, "glibc-interior") == 0)
    return strstr(line, "invalid pointer") != NULL;
  if (size <= 3000) return strstr(line, "double free") != NULL;
  return strstr(line, "double free") || strstr(line, "invalid pointer");
}

static void expect_ours(run_t *r, const char *config, const char *scenario, size_t size, bool report) {
  const char *line = strstr(r->r.err, "nebula: heap misuse: ");
  CHECK(r, line != NULL, "no misuse report");
  const char *eol = strchr(line, '\n');
  char head[256];
  snprintf(head, sizeof head, "%.*s", (int)(eol ? eol - line : (long)strlen(line)), line);
  CHECK(r, headline_ok(config, scenario, size, head), "headline '%s' does not name the misuse of %s", head, scenario);
  CHECK(r, count_of(r->r.err, "nebula: heap misuse: ") == 1, "exactly one report");
  if (report) {
    CHECK(r, r->r.exited && r->r.exit_code == 0, "misuse=report: the program goes on");
    CHECK(r, strcmp(r->r.out, "survived\nsound overlap=0 corrupt=0\n") == 0,
          "after the reported misuse the heap must stay sound");
  } else {
    CHECK(r, r->r.signaled && r->r.signo == SIGABRT, "misuse=abort: SIGABRT");
    CHECK(r, strstr(r->r.out, "survived") == NULL, "the bad call must not return");
  }
}

static void check_case(const char *config, const char *scenario, size_t size) {
  bool double_kind = strncmp(scenario, "double", 6) == 0 || strcmp(scenario, "realloc-freed") == 0;
  for (int report = 0; report < 2; report++) {
    char cfg[256];
    snprintf(cfg, sizeof cfg, "%s%smisuse=%s", config, config[0] ? "," : "", report ? "report" : "abort");
    run_t r;
    run(&r, cfg, true, scenario, size);
    if (double_kind && system_served(config, size) && strstr(config, "preset=development") == NULL &&
        strstr(r.r.err, "nebula: heap misuse: ") == NULL) {
      /* glibc's block, not caught by us: glibc's own outcome is the floor. */
      run_t plain;
      run(&plain, "", false, scenario, size);
      if (glibc_caught(&plain)) {
        CHECK(&r, r.r.signaled && r.r.signo == SIGABRT && glibc_caught(&r),
              "plain glibc aborts on this misuse; so must the preloaded run");
      } else {
        CHECK(&r, r.r.exited == plain.r.exited && r.r.exit_code == plain.r.exit_code &&
                      strcmp(r.r.out, plain.r.out) == 0,
              "the preloaded run must do at least what plain glibc does (plain: %s)", plain.r.out);
      }
      nm_result_free(&plain.r);
    } else {
      expect_ours(&r, config, scenario, size, report);
    }
    nm_result_free(&r.r);
  }
}

static const size_t ALL_SIZES[] = { 64, 3000, 100000, 1000000, 4000000, 0 };
static const size_t SMALL_BIG[] = { 64, 100000, 4000000, 0 };
static const size_t ONE[] = { 64, 0 };
static const size_t OURS[] = { 64, 3000, 100000, 1000000, 0 };

static void check_scenario(const char *config, const char *scenario) {
  const size_t *sizes = ALL_SIZES;
  if (strcmp(scenario, "stack") == 0) sizes = ONE;
  else if (strcmp(scenario, "glibc-interior") == 0) sizes = SMALL_BIG;
  else if (strncmp(scenario, "realloc", 7) == 0) sizes = OURS;
  for (const size_t *s = sizes; *s; s++) check_case(config, scenario, *s);
}

#define SCENARIOS(config, name)                                                              \
  Test(misuse_##name, interior) { check_scenario(config, "interior"); }                      \
  Test(misuse_##name, stack) { check_scenario(config, "stack"); }                            \
  Test(misuse_##name, glibc_interior) { check_scenario(config, "glibc-interior"); }          \
  Test(misuse_##name, double_free) { check_scenario(config, "double"); }                     \
  Test(misuse_##name, double_free_older) { check_scenario(config, "double-older"); }         \
  Test(misuse_##name, double_free_after_trim) { check_scenario(config, "double-trimmed"); }  \
  Test(misuse_##name, double_free_remote_then_local) { check_scenario(config, "double-remote"); } \
  Test(misuse_##name, double_free_local_then_remote) { check_scenario(config, "double-by-other"); } \
  Test(misuse_##name, realloc_freed) { check_scenario(config, "realloc-freed"); }            \
  Test(misuse_##name, realloc_interior) { check_scenario(config, "realloc-interior"); }

SCENARIOS("", balanced)
SCENARIOS("strategy=throughput", throughput)
SCENARIOS("strategy=compact", compact)
SCENARIOS("strategy=system", system)
SCENARIOS("preset=development", development)
