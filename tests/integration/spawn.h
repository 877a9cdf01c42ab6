/* Running real programs plain and under the preload, for the integration tests.
 *
 * The Criterion runner and its workers are never preloaded (research/prior-art.md, section
 * 6): nm_run() starts the child with fork + execve and puts LD_PRELOAD=$NEBULA_PRELOAD in
 * the child's environment only (a copy of it, taken once per test process, so that both
 * runs of a comparison load the same build). The child gets its own process group (a timeout kills the
 * whole group, grandchildren included), default signal dispositions and an empty signal
 * mask, /dev/null (or a file) on stdin, and pipes on stdout and stderr that are captured
 * separately.
 *
 * nm_compare() runs one command plain once, then preloaded once per configuration in
 * $NM_CONFIGS (';'-separated NEBULA_MEM_CONFIG values, "default" for none; unset: one run
 * with the environment as it is), and asserts (Criterion) that no preloaded run crashed or
 * hung, and that each one's exit status and stdout (or the part a filter keeps) equal the
 * plain run's. Outputs of both runs are saved under $NM_ARTIFACTS when it
 * is set, so a failure can be diffed by hand. */
#ifndef NM_IT_SPAWN_H
#define NM_IT_SPAWN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nm_cmd {
  const char *const *argv;      /* argv[0]: a path, or a name looked up in PATH */
  const char *cwd;              /* NULL: the caller's */
  const char *const *env;       /* NULL-terminated "KEY=VALUE" added or replaced; may be NULL */
  bool preload;                 /* add LD_PRELOAD=$NEBULA_PRELOAD to the child's environment */
  double timeout_s;             /* the whole process group is killed after this; 0: 300 s */
  const char *stdin_path;       /* NULL: /dev/null */
  const char *stdout_path;      /* NULL: captured in res->out; else written to this file */
  bool backtrace_on_hang;       /* on timeout, gdb backtraces of the group into `report` */
  const char *config;           /* with preload: NEBULA_MEM_CONFIG for the child; NULL: as is */
} nm_cmd_t;

typedef struct nm_result {
  bool started;                 /* the spawn itself worked */
  bool exited;                  /* exited normally, with exit_code */
  int exit_code;
  bool signaled;                /* killed by signo (a crash, or our timeout kill) */
  int signo;
  bool timed_out;
  double seconds;
  char *out;                    /* stdout, NUL-terminated; out_len excludes the NUL */
  size_t out_len;
  char *err;                    /* stderr, likewise */
  size_t err_len;
  char *report;                 /* gdb backtraces taken on a hang, or NULL */
} nm_result_t;

/* $NEBULA_PRELOAD; asserts (Criterion) that it is set and names an existing file. The
 * children load a copy of it (see above); messages name this original. */
const char *nm_preload_path(void);

/* $name, asserted to be set and non-empty. */
const char *nm_env_required(const char *name);

/* Runs cmd to completion (or its timeout). Returns res->started. Never preloads the
 * caller. */
bool nm_run(const nm_cmd_t *cmd, nm_result_t *res);
void nm_result_free(nm_result_t *res);

/* "exit 0", "signal 11 (Segmentation fault)", "timed out after 300 s (killed)", ... */
const char *nm_result_status(const nm_result_t *res, char *buf, size_t size);

/* The last `max` bytes of s (after a "..." marker when cut), for assertion messages. */
const char *nm_tail(const char *s, size_t len, size_t max);

/* Keeps the part of a program's stdout that is to be compared; returns a malloc'ed string.
 * NULL filter: all of stdout. */
typedef char *(*nm_filter_fn)(const char *out, size_t len);

typedef struct nm_compare_opts {
  const char *name;             /* case name: artifact file names, messages */
  nm_filter_fn filter;
  bool expect_success;          /* also require exit 0 from both runs */
  const char *const *must_contain;   /* NULL-terminated: every run's stdout has each */
} nm_compare_opts_t;

/* Runs cmd plain, then preloaded under each configuration, and asserts as described above.
 * Fills plain and preload (the last preloaded run; the caller frees both) when they are
 * not NULL. */
void nm_compare(const nm_cmd_t *cmd, const nm_compare_opts_t *opts, nm_result_t *plain,
                nm_result_t *preload);

/* Saves a result's stdout/stderr as $NM_ARTIFACTS/<name>.<tag>.{out,err} (if set). */
void nm_save_artifacts(const char *name, const char *tag, const nm_result_t *res);

/* A fresh directory /tmp/nebula-it-<tag>-XXXXXX (or under $NM_TMPDIR); asserts on failure.
 * nm_tmpdir_remove() deletes it recursively. */
char *nm_tmpdir_make(const char *tag);
void nm_tmpdir_remove(const char *path);

/* Writes a file (asserts on failure). */
void nm_write_file(const char *path, const char *data, size_t len);

#endif
