/* A stand-in for the part of Criterion the thread tests use, for builds where Criterion's
 * runner cannot run (ThreadSanitizer: Snaipe/Criterion#274, its inheritable arena finds no
 * room in TSan's address-space layout). The same tests and assertions, run by a plain main,
 * each in a child process of its own as Criterion would. */
#ifndef NM_UNIT_STANDALONE_H
#define NM_UNIT_STANDALONE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  const char *name;
  void (*fn)(void);
} sa_test_t;
static sa_test_t sa_tests[64];
static int sa_count;

static void sa_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  fprintf(stderr, "%s:%d: assertion failed: %s\n  ", file, line, expr);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

#define Test(suite, name)                                                                   \
  static void suite##_##name(void);                                                        \
  __attribute__((constructor)) static void suite##_##name##_register(void) {               \
    sa_tests[sa_count++] = (sa_test_t){ #suite "::" #name, suite##_##name };               \
  }                                                                                        \
  static void suite##_##name(void)
#define cr_assert(cond, ...) \
  do { if (!(cond)) sa_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__); } while (0)
#define cr_assert_fail(...) sa_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr_assert((a) != NULL, __VA_ARGS__)
#define cr_assert_null(a, ...) cr_assert((a) == NULL, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_log_info(...) ((void)0)

int main(void) {
  int failed = 0;
  for (int i = 0; i < sa_count; i++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      sa_tests[i].fn();
      exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    fprintf(stderr, "[%s] %s\n", ok ? "PASS" : "FAIL", sa_tests[i].name);
    failed += !ok;
  }
  fprintf(stderr, "standalone: %d tests, %d failed\n", sa_count, failed);
  return failed ? 1 : 0;
}

#endif
