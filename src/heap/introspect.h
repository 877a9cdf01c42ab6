/* glibc's introspection calls answered for our heap plus the system backend. */
#ifndef NM_INTROSPECT_H
#define NM_INTROSPECT_H

#include <malloc.h>
#include <stddef.h>

typedef struct nm_totals_s {
  size_t heaps;          /* heaps ever created (threads reuse them) */
  size_t heaps_active;
  size_t mapped;         /* bytes of segments mapped */
  size_t page_bytes;     /* bytes of slices holding pages (blocks in use and cached free) */
  size_t dirty;          /* freed bytes not yet purged */
} nm_totals_t;

/* Sum of every heap's counters; other threads' counters are read without stopping them. */
void nm_totals(nm_totals_t *t);
/* malloc_trim: purge the calling thread's free pages and trim the system backend. */
int nm_trim(size_t pad);
struct mallinfo2 nm_mallinfo2(void);
/* malloc_stats: our summary, then the system backend's, on stderr. */
void nm_malloc_stats(void);

#endif
