/* Statistics: the per-thread counters (nm_heap_stats_t, in every heap) and each heap's
 * pages, summed, with the process figures around them. Safe in a signal handler: no lock,
 * no allocation, only reads of the heap registry (heaps are never freed) and of segments
 * (none is unmapped while a walk runs: nm_segment_foreach_page). */
#ifndef NM_STATS_H
#define NM_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "nm_types.h"

/* The figures, each declared once: these two lists generate the fields of nm_stats_line_t
 * and nm_stats_t, the sum of lines (stats.c) and the JSON and Prometheus dumps and the text
 * tables (diag/stats_dump.c). docs/statistics.md names every JSON key and Prometheus metric;
 * tests/unit/test_stats_doc.c checks it against these lists both ways. A figure is set in
 * nm_stats_collect; the order of a list is the order of the dumps. */

/* Where a line counter is shown: in every line (the backends, the total, each pool class) or
 * in pool classes only. How the text shows it: a count or bytes in human units. What a
 * Prometheus sample holds: the counter, or the counter plus the remote frees. */
enum { NM_STATS_IN_LINE, NM_STATS_IN_CLASS };
enum { NM_STATS_UNIT_COUNT, NM_STATS_UNIT_BYTES };
enum { NM_STATS_PROM_FIELD, NM_STATS_PROM_FIELD_PLUS_REMOTE };

/* X(field, in, json, text, width, unit, prom_type, prom_value, prom, prom_help, prom_class,
 *   prom_class_help): one counter of a line.
 *   in            LINE or CLASS (NM_STATS_IN_*)
 *   json          its key in a JSON line; NULL: not in JSON
 *   text, width   the text tables' column header and width; NULL, 0: no column
 *   unit          COUNT or BYTES (NM_STATS_UNIT_*, the text's cell)
 *   prom_type     "counter" or "gauge"
 *   prom_value    FIELD, or FIELD_PLUS_REMOTE (NM_STATS_PROM_*)
 *   prom, _help   the Prometheus family with a sample per backend (label backend); NULL: none
 *   prom_class, _help   the family with a sample per pool class (label size); NULL: none */
#define NM_STATS_LINE_COUNTERS(X)                                                                 \
  X(allocs, LINE, "allocs", "allocs", 14, COUNT, "counter", FIELD,                                \
    "nebula_allocations_total", "Blocks handed out.",                                             \
    "nebula_class_allocations_total", "Blocks handed out, per pool size class (label: block size).") \
  /* not counting remote frees; Prometheus counts every free, as JSON's process.frees */          \
  X(frees, LINE, "frees", "frees", 14, COUNT, "counter", FIELD_PLUS_REMOTE,                       \
    "nebula_frees_total", "Blocks freed (by any thread).", NULL, NULL)                            \
  X(remote_frees, LINE, "remote_frees", "remote frees", 14, COUNT, "counter", FIELD,              \
    "nebula_remote_frees_total", "Blocks freed by a thread other than their owner's.", NULL, NULL) \
  /* allocs - frees - remote_frees */                                                             \
  X(live, LINE, "live_blocks", "live", 12, COUNT, "gauge", FIELD,                                 \
    "nebula_live_blocks", "Blocks allocated and not freed.",                                      \
    "nebula_class_live_blocks", "Live blocks per pool size class.")                               \
  /* usable size of live blocks; bump: its regions */                                             \
  X(bytes, LINE, "bytes_in_use", "in use", 12, BYTES, "gauge", FIELD,                             \
    "nebula_bytes_in_use", "Usable bytes of live blocks (bump: bytes of its live regions).",      \
    NULL, NULL)                                                                                   \
  /* pool classes: pages of the class */                                                          \
  X(pages, CLASS, "pages", "pages", 7, COUNT, NULL, FIELD, NULL, NULL, NULL, NULL)                \
  /* pool classes: sum of each heap's most pages of the class (shown as peak_bytes) */            \
  X(pages_peak, CLASS, NULL, NULL, 0, COUNT, NULL, FIELD, NULL, NULL, NULL, NULL)                 \
  /* pool classes: those pages' bytes (the class's peak footprint) */                             \
  X(peak_bytes, CLASS, "peak_page_bytes", "peak pages", 13, BYTES, "gauge", FIELD, NULL, NULL,    \
    "nebula_class_peak_page_bytes", "Most bytes of pages a size class held (sum of each thread's peak).") \
  /* pool classes: blocks those pages hold (the text shows live / capacity, utilization) */      \
  X(capacity, CLASS, "capacity_blocks", NULL, 0, COUNT, NULL, FIELD, NULL, NULL, NULL, NULL)

/* Where a process figure is in JSON: in "process", in backends.bump, or not at all. The
 * text shows the process figures in sentences, written out in stats_dump.c. */
enum { NM_STATS_IN_PROCESS, NM_STATS_IN_BUMP, NM_STATS_IN_NONE };

/* X(field, in, json, prom_type, prom, prom_help): one process figure.
 *   in     PROCESS, BUMP or NONE (NM_STATS_IN_*); json: its key there (NULL with NONE)
 *   prom   the Prometheus family (one sample, no label) and its type and help; NULL: none */
#define NM_STATS_PROCESS_FIGURES(X)                                                               \
  X(page_bytes, PROCESS, "page_bytes", "gauge", "nebula_page_bytes",                              \
    "Bytes of slices holding pages.")                                                             \
  X(page_bytes_peak, PROCESS, "page_bytes_peak", "gauge", "nebula_page_bytes_peak",               \
    "Sum of each heap's page bytes peak.")                                                        \
  X(mapped, PROCESS, "mapped_bytes", "gauge", "nebula_mapped_bytes",                              \
    "Bytes of segments mapped from the kernel.")                                                  \
  /* freed, not yet purged */                                                                     \
  X(dirty, PROCESS, "dirty_bytes", NULL, NULL, NULL)                                              \
  X(purged, PROCESS, "purged_bytes", "counter", "nebula_purged_bytes_total",                      \
    "Bytes given back to the kernel.")                                                            \
  X(segments_mapped, PROCESS, "segments_mapped", NULL, NULL, NULL)                                \
  X(segments_unmapped, PROCESS, "segments_unmapped", NULL, NULL, NULL)                            \
  X(bump_regions_live, BUMP, "regions_live", "gauge", "nebula_bump_regions", "Live bump regions.") \
  /* live regions that are not their heap's current one: kept by live blocks */                   \
  X(bump_pinned, BUMP, "regions_pinned", "gauge", "nebula_bump_regions_pinned",                   \
    "Bump regions left behind by their thread and kept by live blocks.")                          \
  X(bump_regions_made, BUMP, "regions_made", NULL, NULL, NULL)                                    \
  /* regions recycled whole (rewound) */                                                          \
  X(bump_rewinds, BUMP, "regions_recycled", NULL, NULL, NULL)                                     \
  /* bytes of the live regions: the bump line's bytes (JSON has them there) */                    \
  X(bump_region_bytes, NONE, NULL, NULL, NULL, NULL)                                              \
  X(rss, PROCESS, "rss_bytes", "gauge", "nebula_rss_bytes", "Resident set size of the process.")  \
  /* heaps of running threads */                                                                  \
  X(threads, PROCESS, "threads", "gauge", "nebula_threads", "Threads with a heap.")               \
  X(heaps, PROCESS, "heaps", NULL, NULL, NULL)

#define NM_STATS_FIELD(field, ...) uint64_t field;

/* One pool class, a backend or the process, summed. */
typedef struct nm_stats_line_s {
  NM_STATS_LINE_COUNTERS(NM_STATS_FIELD)
} nm_stats_line_t;

typedef struct nm_stats_s {
  unsigned classes;                         /* pool classes in use */
  uint32_t class_size[NM_CLASS_MAX];
  nm_stats_line_t cls[NM_CLASS_MAX];        /* pool classes */
  nm_stats_line_t pool, large, bump, system, total;
  NM_STATS_PROCESS_FIGURES(NM_STATS_FIELD)
} nm_stats_t;

#undef NM_STATS_FIELD

void nm_stats_collect(nm_stats_t *st);

#endif
