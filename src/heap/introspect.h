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

/* One pool size class in the calling thread's heap, for diagnostics. */
typedef struct nm_class_state_s {
  size_t pages;
  size_t blocks;          /* blocks the pages can hold */
  size_t used;            /* blocks handed out (remote frees not yet collected count) */
  size_t bytes;           /* bytes of the pages */
} nm_class_state_t;

/* The calling thread's bump regions; "pinned": not current, yet kept by a few live blocks. */
#define NM_PINNED_FEW 4u
typedef struct nm_bump_state_s {
  size_t regions, bytes, live;
  size_t pinned, pinned_bytes;
  struct { const void *start; size_t bytes; size_t live; } shown[3];   /* the first pinned */
} nm_bump_state_t;

void nm_heap_class_state(unsigned cls, nm_class_state_t *st);
void nm_heap_bump_state(nm_bump_state_t *st);

/* Sum of every heap's counters; other threads' counters are read without stopping them. */
void nm_totals(nm_totals_t *t);
/* malloc_trim: purge the calling thread's free pages and trim the system backend. */
int nm_trim(size_t pad);
/* glibc's figures for its own blocks plus ours, from the same counters as the dumps. */
struct mallinfo2 nm_mallinfo2(void);

#endif
