/* The compute cache: a plain LRU (hash table + list, one mutex) and, only for
 * get_or_compute, a table of computations in flight with its own mutex, allocated on first
 * use. Lock order: in-flight table, then cache; plain get/put take only the cache's. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nebula/cache.h>

#include "lib/lib_internal.h"

/* ---- values: refcounted, freed by the last holder (cache entry, pending record, caller) ---- */

typedef struct nm_cache_val {
  nebula_cache_value_t pub;   /* first: a handle is a pointer to it */
  _Atomic size_t refs;
  _Alignas(16) unsigned char data[];
} nm_cache_val_t;

static nm_cache_val_t *nm_val_new(size_t len, const char *function) {
  nm_cache_val_t *v = NULL;
  if (len <= SIZE_MAX - sizeof *v) v = malloc(sizeof *v + len);
  if (v == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, function, NULL, len, 0, NULL,
                       "lower the value's size, or raise the process's memory limits",
                       "malloc returned NULL");
  v->pub.data = v->data;
  v->pub.len = len;
  atomic_init(&v->refs, 1);
  return v;
}

static nm_cache_val_t *nm_val_ref(nm_cache_val_t *v) {
  atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
  return v;
}

static void nm_val_unref(nm_cache_val_t *v) {
  if (v != NULL && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1) free(v);
}

NEBULA_API void nebula_cache_value_release(const nebula_cache_value_t *v) {
  nm_val_unref((nm_cache_val_t *)v);
}

/* ---- the plain cache ------------------------------------------------------------------------ */

typedef struct nm_cache_entry {
  struct nm_cache_entry *chain;               /* next in the bucket */
  struct nm_cache_entry *newer, *older;       /* the LRU list */
  uint64_t hash;
  nm_cache_val_t *val;
  size_t klen;
  unsigned char key[];
} nm_cache_entry_t;

typedef struct nm_inflight nm_inflight_t;

struct nebula_cache {
  pthread_mutex_t lock;
  nm_cache_entry_t **buckets;
  size_t nbuckets;                            /* a power of two */
  nm_cache_entry_t *newest, *oldest;
  size_t entries, bytes;
  size_t max_entries, max_bytes;
  size_t hits, misses, evictions;
  _Atomic(nm_inflight_t *) inflight;          /* NULL until the first get_or_compute */
};

#define NM_CACHE_BUCKETS0 16u

/* FNV-1a, finished with a multiply-xorshift so low bits (the bucket) depend on every byte. */
static uint64_t nm_hash(const void *key, size_t klen) {
  const unsigned char *k = key;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < klen; i++) h = (h ^ k[i]) * 0x100000001b3ull;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  return h ^ (h >> 32);
}

static bool nm_key_eq(const unsigned char *a, size_t alen, const void *b, size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool nm_key_ok(const nebula_cache_t *c, const void *key, size_t klen, const char *function) {
  if (c != NULL && (key != NULL || klen == 0)) return true;
  nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, function, NULL, klen, 0, NULL, "pass a cache and a key",
              "the %s is NULL", c == NULL ? "cache" : "key");
  return false;
}

NEBULA_API nebula_cache_t *nebula_cache_create(const nebula_cache_options_t *options) {
  nebula_cache_t *c = calloc(1, sizeof *c);
  nm_cache_entry_t **b = calloc(NM_CACHE_BUCKETS0, sizeof *b);
  if (c == NULL || b == NULL) {
    free(c);
    free(b);
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_cache_create", NULL, sizeof *c, 0, NULL,
                       "raise the process's memory limits", "calloc returned NULL");
  }
  pthread_mutex_init(&c->lock, NULL);
  c->buckets = b;
  c->nbuckets = NM_CACHE_BUCKETS0;
  if (options != NULL) {
    c->max_entries = options->max_entries;
    c->max_bytes = options->max_bytes;
  }
  atomic_init(&c->inflight, NULL);
  return c;
}

/* Cache lock held for everything below. */

static nm_cache_entry_t *nm_find(nebula_cache_t *c, uint64_t h, const void *key, size_t klen) {
  for (nm_cache_entry_t *e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->chain)
    if (e->hash == h && nm_key_eq(e->key, e->klen, key, klen)) return e;
  return NULL;
}

static void nm_lru_unlink(nebula_cache_t *c, nm_cache_entry_t *e) {
  if (e->newer) e->newer->older = e->older;
  else c->newest = e->older;
  if (e->older) e->older->newer = e->newer;
  else c->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void nm_lru_push(nebula_cache_t *c, nm_cache_entry_t *e) {
  e->newer = NULL;
  e->older = c->newest;
  if (c->newest) c->newest->newer = e;
  c->newest = e;
  if (c->oldest == NULL) c->oldest = e;
}

/* Unlinks e from the table and the list and frees it (its value lives on in any handle). */
static void nm_drop(nebula_cache_t *c, nm_cache_entry_t *e) {
  nm_cache_entry_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->chain;
  *pp = e->chain;
  nm_lru_unlink(c, e);
  c->entries--;
  c->bytes -= e->klen + e->val->pub.len;
  nm_val_unref(e->val);
  free(e);
}

/* Doubles the table past one entry per bucket; on no memory it just stays as it is. */
static void nm_grow(nebula_cache_t *c) {
  if (c->entries <= c->nbuckets || c->nbuckets > SIZE_MAX / 2 / sizeof(void *)) return;
  size_t n = c->nbuckets * 2;
  nm_cache_entry_t **b = calloc(n, sizeof *b);
  if (b == NULL) return;
  for (size_t i = 0; i < c->nbuckets; i++)
    for (nm_cache_entry_t *e = c->buckets[i], *next; e != NULL; e = next) {
      next = e->chain;
      e->chain = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  free(c->buckets);
  c->buckets = b;
  c->nbuckets = n;
}

static void nm_evict(nebula_cache_t *c) {
  while (c->oldest != NULL && ((c->max_entries && c->entries > c->max_entries) ||
                               (c->max_bytes && c->bytes > c->max_bytes))) {
    nm_drop(c, c->oldest);
    c->evictions++;
  }
}

typedef enum { NM_COUNT_HIT, NM_COUNT_BOTH } nm_count_t;

/* A new reference to key's value, marked most recently used; NULL on a miss. */
static nm_cache_val_t *nm_lookup(nebula_cache_t *c, uint64_t h, const void *key, size_t klen,
                                 nm_count_t count) {
  pthread_mutex_lock(&c->lock);
  nm_cache_entry_t *e = nm_find(c, h, key, klen);
  nm_cache_val_t *v = NULL;
  if (e != NULL) {
    nm_lru_unlink(c, e);
    nm_lru_push(c, e);
    v = nm_val_ref(e->val);
    c->hits++;
  } else if (count == NM_COUNT_BOTH) {
    c->misses++;
  }
  pthread_mutex_unlock(&c->lock);
  return v;
}

/* Stores v (taking over one reference) under key: the caller's reference on success, none
 * left behind on failure. */
static bool nm_store(nebula_cache_t *c, uint64_t h, const void *key, size_t klen, nm_cache_val_t *v,
                     const char *function) {
  size_t len = v->pub.len;
  if (klen > SIZE_MAX - len || (c->max_bytes && klen + len > c->max_bytes)) {
    nm_val_unref(v);
    nm_lib_fail(NEBULA_ERR_CAPACITY, function, NULL, klen + len, 0, NULL,
                "raise max_bytes, or store smaller values",
                "an entry of %zu key + %zu value bytes > max_bytes %zu",
                klen, len, c->max_bytes);
    return false;
  }
  /* Allocated before locking; unused if the key is already there. */
  nm_cache_entry_t *fresh = klen <= SIZE_MAX - sizeof *fresh ? malloc(sizeof *fresh + klen) : NULL;
  pthread_mutex_lock(&c->lock);
  nm_cache_entry_t *e = nm_find(c, h, key, klen);
  nm_cache_val_t *old = NULL;
  if (e != NULL) {
    old = e->val;
    c->bytes = c->bytes - old->pub.len + len;
    e->val = v;
    nm_lru_unlink(c, e);
    nm_lru_push(c, e);
  } else if (fresh != NULL) {
    e = fresh;
    fresh = NULL;
    e->hash = h;
    e->klen = klen;
    if (klen) memcpy(e->key, key, klen);
    e->val = v;
    size_t i = h & (c->nbuckets - 1);
    e->chain = c->buckets[i];
    c->buckets[i] = e;
    nm_lru_push(c, e);
    c->entries++;
    c->bytes += klen + len;
    nm_grow(c);
  } else {
    pthread_mutex_unlock(&c->lock);
    nm_val_unref(v);
    nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, function, NULL, klen, 0, NULL, "raise the process's memory limits",
                "malloc returned NULL for the entry");
    return false;
  }
  nm_evict(c);
  pthread_mutex_unlock(&c->lock);
  free(fresh);
  nm_val_unref(old);
  return true;
}

NEBULA_API const nebula_cache_value_t *nebula_cache_get(nebula_cache_t *c, const void *key, size_t klen) {
  if (!nm_key_ok(c, key, klen, "nebula_cache_get")) return NULL;
  nm_cache_val_t *v = nm_lookup(c, nm_hash(key, klen), key, klen, NM_COUNT_BOTH);
  return v ? &v->pub : NULL;
}

NEBULA_API bool nebula_cache_put(nebula_cache_t *c, const void *key, size_t klen, const void *value,
                                 size_t vlen) {
  if (!nm_key_ok(c, key, klen, "nebula_cache_put")) return false;
  if (value == NULL && vlen > 0) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_cache_put", NULL, vlen, 0, NULL,
                "pass the value's bytes", "the value is NULL");
    return false;
  }
  nm_cache_val_t *v = nm_val_new(vlen, "nebula_cache_put");
  if (v == NULL) return false;
  if (vlen) memcpy(v->data, value, vlen);
  return nm_store(c, nm_hash(key, klen), key, klen, v, "nebula_cache_put");
}

NEBULA_API bool nebula_cache_remove(nebula_cache_t *c, const void *key, size_t klen) {
  if (!nm_key_ok(c, key, klen, "nebula_cache_remove")) return false;
  uint64_t h = nm_hash(key, klen);
  pthread_mutex_lock(&c->lock);
  nm_cache_entry_t *e = nm_find(c, h, key, klen);
  if (e != NULL) nm_drop(c, e);
  pthread_mutex_unlock(&c->lock);
  return e != NULL;
}

NEBULA_API void nebula_cache_clear(nebula_cache_t *c) {
  if (c == NULL) return;
  pthread_mutex_lock(&c->lock);
  while (c->oldest != NULL) nm_drop(c, c->oldest);
  pthread_mutex_unlock(&c->lock);
}

/* ---- the deduplication layer: computations in flight ------------------------------------ */

#define NM_INFLIGHT_BUCKETS 64u

typedef struct nm_pending {
  struct nm_pending *next;
  pthread_cond_t done_cv;     /* waits on the table's lock */
  bool done;
  size_t refs;                /* the computing thread + waiters (table lock) */
  pthread_t owner;
  int code;                   /* the computation's: 0 = success, val set */
  nm_cache_val_t *val;        /* one reference, for the waiters to share */
  char message[160];
  uint64_t hash;
  size_t klen;
  unsigned char key[];
} nm_pending_t;

struct nm_inflight {
  pthread_mutex_t lock;
  nm_pending_t *buckets[NM_INFLIGHT_BUCKETS];
  size_t waits, computations, failures;
};

struct nebula_cache_result {
  nm_cache_val_t *val;
  char message[160];
};

static nm_inflight_t *nm_inflight(nebula_cache_t *c) {
  nm_inflight_t *f = atomic_load_explicit(&c->inflight, memory_order_acquire);
  if (f != NULL) return f;
  nm_inflight_t *mine = calloc(1, sizeof *mine);
  if (mine == NULL)
    return nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_cache_get_or_compute", NULL, sizeof *mine, 0, NULL,
                       "raise the process's memory limits", "calloc returned NULL for the in-flight table");
  pthread_mutex_init(&mine->lock, NULL);
  if (atomic_compare_exchange_strong_explicit(&c->inflight, &f, mine, memory_order_acq_rel,
                                              memory_order_acquire))
    return mine;
  pthread_mutex_destroy(&mine->lock);   /* another thread's table won */
  free(mine);
  return f;
}

static void nm_pending_unref(nm_pending_t *p) {
  if (--p->refs > 0) return;
  nm_val_unref(p->val);
  pthread_cond_destroy(&p->done_cv);
  free(p);
}

static void nm_pending_unlink(nm_inflight_t *f, nm_pending_t *p) {
  nm_pending_t **pp = &f->buckets[p->hash % NM_INFLIGHT_BUCKETS];
  while (*pp != p) pp = &(*pp)->next;
  *pp = p->next;
}

static int nm_compute_failed(int code, const char *message) {
  nm_lib_fail(NEBULA_ERR_COMPUTE, "nebula_cache_get_or_compute", NULL, 0, 0, NULL,
              "see why the computation failed; nothing was cached, so the next ask computes again", "%s",
              message);
  return code;
}

NEBULA_API bool nebula_cache_result_set(nebula_cache_result_t *out, const void *data, size_t len) {
  void *buf = nebula_cache_result_buffer(out, len);
  if (buf == NULL) return false;
  if (len) memcpy(buf, data, len);
  return true;
}

NEBULA_API void *nebula_cache_result_buffer(nebula_cache_result_t *out, size_t len) {
  nm_cache_val_t *v = nm_val_new(len, "nebula_cache_result_buffer");
  if (v == NULL) return NULL;
  nm_val_unref(out->val);
  out->val = v;
  return v->data;
}

NEBULA_API void nebula_cache_result_error(nebula_cache_result_t *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->message, sizeof out->message, fmt, ap);
  va_end(ap);
}

NEBULA_API int nebula_cache_get_or_compute(nebula_cache_t *c, const void *key, size_t klen,
                                           nebula_cache_compute_fn compute, void *ctx,
                                           const nebula_cache_value_t **value_out) {
  if (value_out != NULL) *value_out = NULL;
  if (!nm_key_ok(c, key, klen, "nebula_cache_get_or_compute")) return NEBULA_ERR_INVALID_ARGUMENT;
  if (compute == NULL || value_out == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_cache_get_or_compute", NULL, klen, 0, NULL,
                "pass a compute function and somewhere to put the value", "the %s is NULL",
                compute == NULL ? "compute function" : "value_out");
    return NEBULA_ERR_INVALID_ARGUMENT;
  }
  uint64_t h = nm_hash(key, klen);
  /* A hit costs what a plain get does. */
  nm_cache_val_t *v = nm_lookup(c, h, key, klen, NM_COUNT_HIT);
  if (v != NULL) {
    *value_out = &v->pub;
    return 0;
  }
  nm_inflight_t *f = nm_inflight(c);
  if (f == NULL) return NEBULA_ERR_OUT_OF_MEMORY;
  pthread_mutex_lock(&f->lock);
  /* Again under the table's lock: a computation finishing stores its value before it
   * leaves the table, so the key is either cached, in flight, or for us to compute. */
  v = nm_lookup(c, h, key, klen, NM_COUNT_BOTH);
  if (v != NULL) {
    pthread_mutex_unlock(&f->lock);
    *value_out = &v->pub;
    return 0;
  }
  nm_pending_t *p = f->buckets[h % NM_INFLIGHT_BUCKETS];
  while (p != NULL && !(p->hash == h && nm_key_eq(p->key, p->klen, key, klen))) p = p->next;
  if (p != NULL) {
    if (pthread_equal(p->owner, pthread_self())) {
      pthread_mutex_unlock(&f->lock);
      nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_cache_get_or_compute", NULL, klen, 0, NULL,
                  "a computation must not ask for its own key", "the key is being computed by this thread");
      return NEBULA_ERR_INVALID_ARGUMENT;
    }
    f->waits++;
    p->refs++;
    while (!p->done) pthread_cond_wait(&p->done_cv, &f->lock);
    int code = p->code;
    char message[sizeof p->message];
    if (code == 0) *value_out = &nm_val_ref(p->val)->pub;
    else memcpy(message, p->message, sizeof message);
    nm_pending_unref(p);
    pthread_mutex_unlock(&f->lock);
    return code == 0 ? 0 : nm_compute_failed(code, message);
  }
  p = klen <= SIZE_MAX - sizeof *p ? calloc(1, sizeof *p + klen) : NULL;
  if (p == NULL) {
    pthread_mutex_unlock(&f->lock);
    nm_lib_fail(NEBULA_ERR_OUT_OF_MEMORY, "nebula_cache_get_or_compute", NULL, klen, 0, NULL,
                "raise the process's memory limits", "calloc returned NULL for the pending computation");
    return NEBULA_ERR_OUT_OF_MEMORY;
  }
  pthread_cond_init(&p->done_cv, NULL);
  p->refs = 1;
  p->owner = pthread_self();
  p->hash = h;
  p->klen = klen;
  if (klen) memcpy(p->key, key, klen);
  p->next = f->buckets[h % NM_INFLIGHT_BUCKETS];
  f->buckets[h % NM_INFLIGHT_BUCKETS] = p;
  f->computations++;
  pthread_mutex_unlock(&f->lock);

  nebula_cache_result_t r = { NULL, "" };
  int code = compute(ctx, key, klen, &r);
  if (code == 0 && r.val == NULL) {
    code = NEBULA_ERR_COMPUTE;
    snprintf(r.message, sizeof r.message, "the computation returned 0 but set no value");
  }
  if (code != 0) {
    nm_val_unref(r.val);
    r.val = NULL;
    if (r.message[0] == '\0') snprintf(r.message, sizeof r.message, "the computation returned %d", code);
  }

  pthread_mutex_lock(&f->lock);
  if (code == 0) {
    /* Cached before the pending record leaves the table (see above). A value too large to
     * cache is still returned to everyone waiting. */
    nebula_error_t saved = *nm_lib_error_slot();
    if (!nm_store(c, h, key, klen, nm_val_ref(r.val), "nebula_cache_get_or_compute"))
      *nm_lib_error_slot() = saved;
    p->val = nm_val_ref(r.val);
  } else {
    f->failures++;
    memcpy(p->message, r.message, sizeof p->message);
  }
  p->code = code;
  p->done = true;
  nm_pending_unlink(f, p);
  pthread_cond_broadcast(&p->done_cv);
  nm_pending_unref(p);
  pthread_mutex_unlock(&f->lock);
  if (code != 0) return nm_compute_failed(code, r.message);
  *value_out = &r.val->pub;
  return 0;
}

/* ---- stats, destroy ---------------------------------------------------------------------- */

NEBULA_API void nebula_cache_stats(nebula_cache_t *c, nebula_cache_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (c == NULL) return;
  nm_inflight_t *f = atomic_load_explicit(&c->inflight, memory_order_acquire);
  if (f != NULL) pthread_mutex_lock(&f->lock);   /* same order as get_or_compute */
  pthread_mutex_lock(&c->lock);
  out->hits = c->hits;
  out->misses = c->misses;
  out->evictions = c->evictions;
  out->entries = c->entries;
  out->bytes = c->bytes;
  pthread_mutex_unlock(&c->lock);
  if (f != NULL) {
    out->waits = f->waits;
    out->computations = f->computations;
    out->failures = f->failures;
    pthread_mutex_unlock(&f->lock);
  }
}

NEBULA_API void nebula_cache_destroy(nebula_cache_t *c) {
  if (c == NULL) return;
  nebula_cache_clear(c);
  nm_inflight_t *f = atomic_load_explicit(&c->inflight, memory_order_acquire);
  if (f != NULL) {
    pthread_mutex_destroy(&f->lock);
    free(f);
  }
  pthread_mutex_destroy(&c->lock);
  free(c->buckets);
  free(c);
}
