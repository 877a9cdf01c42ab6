/* Statistics: the per-thread counters (nm_heap_stats_t, in every heap) and each heap's
 * pages, summed, with the process figures around them. Safe in a signal handler: no lock,
 * no allocation, only reads of the heap registry (heaps are never freed) and of segments
 * (none is unmapped while a walk runs: nm_segment_foreach_page). */
#ifndef NM_STATS_H
#define NM_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "nm_types.h"

/* One pool class, a backend or the process, summed. */
typedef struct nm_stats_line_s {
  uint64_t allocs, frees, remote_frees;
  uint64_t live;           /* allocs - frees - remote_frees */
  uint64_t bytes;          /* bytes in use (usable size of live blocks; bump: its regions) */
  uint64_t pages;          /* pool classes: pages of the class */
  uint64_t pages_peak;     /* pool classes: sum of each heap's most pages of the class */
  uint64_t peak_bytes;     /* pool classes: those pages' bytes (the class's peak footprint) */
  uint64_t capacity;       /* pool classes: blocks those pages hold */
} nm_stats_line_t;

typedef struct nm_stats_s {
  unsigned classes;                         /* pool classes in use */
  uint32_t class_size[NM_CLASS_MAX];
  nm_stats_line_t cls[NM_CLASS_MAX];        /* pool classes */
  nm_stats_line_t pool, large, bump, system, total;
  uint64_t bump_regions_live, bump_regions_made, bump_rewinds, bump_pinned;
  uint64_t bump_region_bytes;
  uint64_t heaps, threads;
  uint64_t mapped, page_bytes, page_bytes_peak, dirty, purged;
  uint64_t segments_mapped, segments_unmapped;
  uint64_t rss;
} nm_stats_t;

void nm_stats_collect(nm_stats_t *st);

#endif
