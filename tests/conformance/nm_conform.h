/* Shared between nm_conform.c and nm_conform_cxx.cpp. */
#ifndef NM_CONFORM_H
#define NM_CONFORM_H

#ifdef __cplusplus
extern "C" {
#endif

/* Prints "FAIL <check>: <reason>" on stderr (one line, no malloc) and _exits with 1. */
__attribute__((noreturn, format(printf, 1, 2))) void nm_fail(const char *fmt, ...);

/* Records what the check is doing, for the watchdog's and the crash handler's line. */
__attribute__((format(printf, 1, 2))) void nm_phase(const char *fmt, ...);

int nm_check_cxx_new_bad_alloc(void);
int nm_check_cxx_aligned_new_bad_alloc(void);
int nm_check_cxx_nothrow_new(void);

#ifdef __cplusplus
}
#endif

#endif
