#include "diag/trace_depot.h"

#include <stdatomic.h>
#include <string.h>

#include "os/os.h"

#define NM_DEPOT_BUCKETS (1u << 14)
#define NM_DEPOT_CHUNK ((size_t)1 << 20)

static _Atomic(nm_trace_t *) nm_depot[NM_DEPOT_BUCKETS];

/* Entries come from 1 MiB chunks, bumped with one atomic add; a thread that finds its chunk
 * full maps the next and installs it with a CAS (the loser unmaps its own). */
typedef struct nm_depot_chunk_s {
  _Atomic size_t used;   /* bytes handed out, header included */
} nm_depot_chunk_t;

static _Atomic(nm_depot_chunk_t *) nm_depot_chunk;

static nm_trace_t *nm_depot_new(void) {
  const size_t size = sizeof(nm_trace_t);
  for (;;) {
    nm_depot_chunk_t *c = atomic_load_explicit(&nm_depot_chunk, memory_order_acquire);
    if (c != NULL) {
      size_t at = atomic_fetch_add_explicit(&c->used, size, memory_order_relaxed);
      if (at + size <= NM_DEPOT_CHUNK) return (nm_trace_t *)((uint8_t *)c + at);
    }
    nm_depot_chunk_t *fresh = nm_os_map(NM_DEPOT_CHUNK);
    if (fresh == NULL) return NULL;
    atomic_store_explicit(&fresh->used, 64 + size, memory_order_relaxed);   /* header: one line */
    if (atomic_compare_exchange_strong_explicit(&nm_depot_chunk, &c, fresh, memory_order_acq_rel,
                                                memory_order_acquire))
      return (nm_trace_t *)((uint8_t *)fresh + 64);
    nm_os_unmap(fresh, NM_DEPOT_CHUNK);
  }
}

static uint32_t nm_depot_hash(void *const *ips, int n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
  for (int i = 0; i < n; i++) {
    h ^= (uint64_t)(uintptr_t)ips[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return (uint32_t)h;
}

const nm_trace_t *nm_trace_depot_put(void *const *ips, int n) {
  if (n > NM_TRACE_FRAMES) n = NM_TRACE_FRAMES;
  uint32_t hash = nm_depot_hash(ips, n);
  _Atomic(nm_trace_t *) *bucket = &nm_depot[hash & (NM_DEPOT_BUCKETS - 1)];
  nm_trace_t *head = atomic_load_explicit(bucket, memory_order_acquire);
  for (nm_trace_t *t = head; t != NULL; t = t->next)
    if (t->hash == hash && t->frames == (uint32_t)n && memcmp(t->ips, ips, (size_t)n * sizeof ips[0]) == 0)
      return t;
  nm_trace_t *t = nm_depot_new();
  if (t == NULL) return NULL;
  t->hash = hash;
  t->frames = (uint32_t)n;
  memcpy(t->ips, ips, (size_t)n * sizeof ips[0]);
  /* Two threads may add the same trace at once: two equal entries, both valid. */
  do t->next = head;
  while (!atomic_compare_exchange_weak_explicit(bucket, &head, t, memory_order_release, memory_order_acquire));
  return t;
}
