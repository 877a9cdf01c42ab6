/* Statistics dumps: text (a table with human units), JSON (schema "nebula-memory/stats",
 * version 1, docs/statistics.md) or the Prometheus text exposition format, to stderr or to
 * stats_file. Async-signal-safe: one static buffer, no malloc, no stdio, no lock (a dump
 * that finds another in progress writes a one-line note instead). */
#ifndef NM_STATS_DUMP_H
#define NM_STATS_DUMP_H

#include "config/config.h"
#include "util/fmt.h"

/* Format the current statistics into b. */
void nm_stats_format(nm_buf_t *b, nm_stats_format_t format);
/* Collect, format with stats_format, and write to stats_file (or stderr). errno kept. A
 * stats_file is replaced whole through a unique temporary file, a character device written in
 * place, anything else refused; each failure is one line on stderr (docs/statistics.md,
 * "The stats file"). */
void nm_stats_dump(void);
/* Write the text form to stderr (malloc_stats). */
void nm_stats_dump_text_stderr(void);
/* Install the stats_signal handler: only when NEBULA_MEM_CONFIG gives a stats key (read
 * again from environ), and only over the default action (an inherited SIG_IGN or an earlier
 * handler is kept, with one line on stderr). Call once at start-up. */
void nm_stats_install(void);

#endif
