/* For tests that run threads: assertion failures seen on other threads (the assertions
 * belong to the test's own thread: fail() records, check_no_failures() asserts), and SCALE,
 * by which the loads shrink under a sanitizer (same checks, less work). Include after
 * Criterion or standalone.h. */
#ifndef NM_THREAD_CHECKS_H
#define NM_THREAD_CHECKS_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define NM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define NM_SANITIZED 1
#endif
#endif
#ifdef NM_SANITIZED
#define SCALE 4
#else
#define SCALE 1
#endif

static atomic_int failures;
static char first_failure[256];

__attribute__((format(printf, 1, 2), unused)) static void fail(const char *fmt, ...) {
  if (atomic_fetch_add(&failures, 1) == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_failure, sizeof first_failure, fmt, ap);
    va_end(ap);
  }
}

__attribute__((unused)) static void check_no_failures(void) {
  cr_assert_eq(atomic_load(&failures), 0, "%d failure(s) in threads, first: %s", atomic_load(&failures),
               first_failure);
}

#endif
