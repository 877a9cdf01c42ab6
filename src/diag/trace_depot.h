/* Allocation backtraces stored once each (alloc_backtrace): a block's trailer keeps a
 * pointer to its trace here instead of the frames themselves, so a guarded block costs 8
 * bytes for where it came from, and a program that allocates from a few thousand places
 * keeps a few thousand traces. Entries are never freed; memory comes straight from the OS,
 * so storing one never re-enters malloc. Lock-free: safe in any thread, across fork. */
#ifndef NM_TRACE_DEPOT_H
#define NM_TRACE_DEPOT_H

#include <stdint.h>

#define NM_TRACE_FRAMES 8

typedef struct nm_trace_s {
  struct nm_trace_s *next;   /* in its hash bucket */
  uint32_t hash;
  uint32_t frames;           /* how many of ips[] are set */
  void *ips[NM_TRACE_FRAMES];
} nm_trace_t;

/* The stored trace equal to ips[0..n) (n <= NM_TRACE_FRAMES), added if new; NULL when the OS
 * has no memory for it. */
const nm_trace_t *nm_trace_depot_put(void *const *ips, int n);

#endif
