/* Backtraces for diagnostics, with libunwind (opened with dlopen, RTLD_LOCAL, by the first
 * report: never linked) or, without it, glibc's backtrace: taken inside malloc, so a thread
 * that re-enters (the unwinder calling malloc, which fails again) gets no nested backtrace
 * instead of a recursion. A failure to unwind leaves a note. */
#ifndef NM_BACKTRACE_H
#define NM_BACKTRACE_H

#include <stddef.h>

#include "util/fmt.h"

#define NM_BACKTRACE_MAX 32

/* Return addresses of the calling thread's stack, innermost first, skipping `skip` frames
 * of our own; returns how many were stored (0 if re-entered or unwinding failed). */
int nm_backtrace_capture(void **ips, int max, int skip);

/* One line per frame: `    #N 0xADDR function+0xOFF (module+0xOFF)`, with `??` for an
 * unknown function; scripts/nebula-symbolize turns the module+offset into file:line. */
void nm_backtrace_format(nm_buf_t *b, void *const *ips, int n);

/* Unwinds the calling thread here and formats it (function names from the symbol tables,
 * static functions included); writes a note instead when it cannot. */
void nm_backtrace_write_here(nm_buf_t *b, int skip);

#endif
