/* A compute cache: byte keys to byte values, bounded, least recently used first out.
 *
 * Two layers. The plain cache (get, put, remove, clear) is a hash table and an LRU list
 * behind one mutex, bounded by entries and/or bytes (keys + values). The deduplication
 * layer is what nebula_cache_get_or_compute() adds: a table of computations in flight, so
 * that many threads asking for the same missing key run the computation once and the rest
 * wait for its result. That table has its own lock and is allocated on the first
 * get_or_compute: a cache used only with get/put never allocates, locks or looks at it.
 *
 * Values are handed out as refcounted handles: a handle stays readable until released,
 * even if its entry is evicted, overwritten or removed, or the cache destroyed meanwhile.
 * Thread-safety: every function is thread-safe, except nebula_cache_destroy(), which must
 * not run concurrently with other calls on the same cache. */
#ifndef NEBULA_CACHE_H
#define NEBULA_CACHE_H

#include <nebula/api.h>
#include <nebula/error.h>

NEBULA_BEGIN_DECLS

typedef struct nebula_cache nebula_cache_t;

#if defined(__GNUC__)
#define NEBULA_CACHE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NEBULA_CACHE_PRINTF(f, a)
#endif

typedef struct nebula_cache_options {
  size_t max_entries;   /* entries kept at most (0: no limit on the count) */
  size_t max_bytes;     /* key + value bytes kept at most (0: no limit on bytes) */
} nebula_cache_options_t;

/* A value: len bytes at data (aligned to 16; data is never NULL, even when len is 0).
 * Read-only; valid until nebula_cache_value_release(). */
typedef struct nebula_cache_value {
  const void *data;
  size_t len;
} nebula_cache_value_t;

/* Counters since creation (entries and bytes: now). Each get and each get_or_compute is
 * one hit or one miss; a get_or_compute miss then either waits for a computation in flight
 * or runs one, so over get_or_compute calls alone misses = waits + computations. */
typedef struct nebula_cache_stats {
  size_t hits;
  size_t misses;
  size_t evictions;     /* entries pushed out by the bounds (not removes, clears or overwrites) */
  size_t waits;         /* get_or_compute calls that waited for another thread's computation */
  size_t computations;  /* computations run */
  size_t failures;      /* computations that failed (once each, however many waited) */
  size_t entries;
  size_t bytes;         /* keys + values held */
} nebula_cache_stats_t;

/* A cache with the given bounds (NULL: unbounded). NULL on failure (no memory). */
NEBULA_API NEBULA_NODISCARD nebula_cache_t *nebula_cache_create(const nebula_cache_options_t *options);
/* Frees the cache and its entries. Handles still held stay valid until released. Must not
 * run while other threads use the cache (a computation in flight included). NULL: no-op. */
NEBULA_API void nebula_cache_destroy(nebula_cache_t *c);

/* The value under key (klen bytes; key may be NULL when klen is 0), marked most recently
 * used, as a handle the caller must release. NULL on a miss (no error recorded) or for a
 * NULL cache / NULL key with klen > 0 (NEBULA_ERR_INVALID_ARGUMENT). */
NEBULA_API NEBULA_NODISCARD const nebula_cache_value_t *nebula_cache_get(nebula_cache_t *c, const void *key,
                                                                         size_t klen);
/* Gives back a handle from get or get_or_compute; the last release frees the value. NULL:
 * no-op. */
NEBULA_API void nebula_cache_value_release(const nebula_cache_value_t *v);

/* Stores a copy of value (vlen bytes) under a copy of key, replacing any value there (its
 * handles stay valid), then evicts least recently used entries until the bounds hold.
 * false with NEBULA_ERR_CAPACITY if the entry alone is larger than max_bytes (the cache is
 * unchanged), NEBULA_ERR_OUT_OF_MEMORY, or NEBULA_ERR_INVALID_ARGUMENT. */
NEBULA_API bool nebula_cache_put(nebula_cache_t *c, const void *key, size_t klen, const void *value,
                                 size_t vlen);
/* Drops key's entry; true if there was one. */
NEBULA_API bool nebula_cache_remove(nebula_cache_t *c, const void *key, size_t klen);
/* Drops every entry (counters are kept). */
NEBULA_API void nebula_cache_clear(nebula_cache_t *c);
/* A snapshot of the counters (all zero for a NULL cache). */
NEBULA_API void nebula_cache_stats(nebula_cache_t *c, nebula_cache_stats_t *out);

/* ---- get-or-compute (the deduplication layer) ------------------------------------------- */

/* Where a computation puts its value or its error (valid only during the call). */
typedef struct nebula_cache_result nebula_cache_result_t;

/* Computes the value of key into out: set it with nebula_cache_result_set() or fill
 * nebula_cache_result_buffer(), and return 0; or return a nonzero code of the caller's
 * choice, with a message from nebula_cache_result_error(). Runs without any cache lock
 * held: it may use the cache, except to get_or_compute the same key (which fails with
 * NEBULA_ERR_INVALID_ARGUMENT rather than wait for itself). */
typedef int (*nebula_cache_compute_fn)(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out);

/* The value is a copy of len bytes at data (replacing any set before). false on no memory. */
NEBULA_API bool nebula_cache_result_set(nebula_cache_result_t *out, const void *data, size_t len);
/* The value is len bytes the computation fills in (aligned to 16; replacing any set
 * before). NULL on no memory. */
NEBULA_API void *nebula_cache_result_buffer(nebula_cache_result_t *out, size_t len);
/* The failure's message, printf-style (cut at 159 characters). */
NEBULA_API void nebula_cache_result_error(nebula_cache_result_t *out, const char *fmt, ...)
  NEBULA_CACHE_PRINTF(2, 3);

/* The value under key: from the cache if there (a hit), else from a computation. If no
 * thread is computing key, this one calls compute(ctx, key, klen, out) without locks and
 * caches a success (unless the value alone exceeds max_bytes: it is then only returned);
 * threads asking for key meanwhile wait for that computation and share its outcome.
 *
 * Returns 0 and a handle in *value_out (release it), or nonzero with *value_out NULL and
 * nebula_last_error() saying why: NEBULA_ERR_COMPUTE if the computation failed, for the
 * thread that ran it and every thread that waited, with the computation's nonzero code as
 * the return value and its message as the error's detail; nothing is cached, so the next
 * ask computes again. Other failures return their nebula_error_code_t:
 * NEBULA_ERR_INVALID_ARGUMENT, NEBULA_ERR_OUT_OF_MEMORY. */
NEBULA_API NEBULA_NODISCARD int nebula_cache_get_or_compute(nebula_cache_t *c, const void *key, size_t klen,
                                                            nebula_cache_compute_fn compute, void *ctx,
                                                            const nebula_cache_value_t **value_out);

NEBULA_END_DECLS

#endif
