#include "heap/introspect.h"

#include <string.h>
#include <unistd.h>

#include "heap/heap.h"
#include "heap/runtime.h"
#include "heap/stats.h"
#include "os/os.h"
#include "pool/segment.h"
#include "system/system.h"
#include "util/fmt.h"

static void nm_totals_add(nm_heap_t *h, void *arg) {
  nm_totals_t *t = arg;
  t->heaps++;
  if (__atomic_load_n(&h->state, __ATOMIC_RELAXED) == NM_HEAP_ACTIVE) t->heaps_active++;
  t->mapped += __atomic_load_n(&h->mapped_bytes, __ATOMIC_RELAXED);
  t->page_bytes += __atomic_load_n(&h->page_bytes, __ATOMIC_RELAXED);
  t->dirty += __atomic_load_n(&h->dirty_bytes, __ATOMIC_RELAXED);
}

void nm_totals(nm_totals_t *t) {
  memset(t, 0, sizeof *t);
  nm_heap_foreach(nm_totals_add, t);
}

/* Calls fn on each page of the calling thread's heap (racy reads of other threads' remote
 * frees are fine: diagnostics only). */
static void nm_heap_pages(void (*fn)(nm_heap_t *, nm_page_t *, void *), void *arg) {
  nm_heap_t *h = nm_tls_heap;
  nm_heap_fork_ready();   /* a walk on one thread while another forks */
  if (h->state == NM_HEAP_ACTIVE) nm_segment_foreach_page(h, fn, arg);
}

typedef struct { unsigned cls; nm_class_state_t *st; } nm_class_walk_t;

static void nm_class_page(nm_heap_t *h, nm_page_t *pg, void *arg) {
  nm_class_walk_t *w = arg;
  if (pg->class_idx != w->cls) return;
  w->st->pages++;
  w->st->blocks += pg->reserved;
  w->st->used += nm_heap_page_live(h, pg, w->cls);
  w->st->bytes += (size_t)pg->slice_count << NM_SLICE_SHIFT;
}

void nm_heap_class_state(unsigned cls, nm_class_state_t *st) {
  memset(st, 0, sizeof *st);
  nm_class_walk_t w = { cls, st };
  nm_heap_pages(nm_class_page, &w);
}

static void nm_bump_page(nm_heap_t *h, nm_page_t *pg, void *arg) {
  nm_bump_state_t *st = arg;
  if (pg->class_idx != NM_CLASS_BUMP) return;
  size_t bytes = (size_t)pg->slice_count << NM_SLICE_SHIFT;
  size_t live = nm_heap_page_live(h, pg, NM_CLASS_BUMP);
  st->regions++;
  st->bytes += bytes;
  st->live += live;
  if (h->bump != pg && live <= NM_PINNED_FEW) {
    if (st->pinned < 3) {
      st->shown[st->pinned].start = pg->start;
      st->shown[st->pinned].bytes = bytes;
      st->shown[st->pinned].live = live;
    }
    st->pinned++;
    st->pinned_bytes += bytes;
  }
}

void nm_heap_bump_state(nm_bump_state_t *st) {
  memset(st, 0, sizeof *st);
  nm_heap_pages(nm_bump_page, st);
}

/* Every heap's freed memory, not only the caller's: this thread's (and its empty current
 * pages), idle threads' and exited threads' (orphans, with their empty current pages).
 * Like mallinfo2 below, it may be a thread's first call: the system backend's table must
 * be resolved (by the runtime's one-time start) before it is read. */
int nm_trim(size_t pad) {
  nm_runtime_init(NULL);
  nm_heap_t *h = nm_tls_heap;
  nm_stats_t before;
  nm_stats_collect(&before);
  nm_heap_trim(h);
  nm_heap_trim_others(h);
  nm_stats_t after;
  nm_stats_collect(&after);
  int released = after.purged != before.purged || after.mapped != before.mapped;
  return nm_system.trim(pad) || released;
}

struct mallinfo2 nm_mallinfo2(void) {
  nm_runtime_init(NULL);
  struct mallinfo2 m = nm_system.mallinfo2();   /* the system backend's own blocks */
  nm_stats_t st;
  nm_stats_collect(&st);
  /* glibc's meanings: our segments are arena space (obtained from the system), our live
   * blocks are in use in it, the rest of it is free; hblks/hblkhd stay glibc's own mmapped
   * chunks. So uordblks + hblkhd counts every live block once. */
  size_t ours = st.pool.bytes + st.bump.bytes;   /* pool classes and large pages, bump regions */
  m.arena += st.mapped;
  m.uordblks += ours;
  m.fordblks += st.mapped > ours ? st.mapped - ours : 0;
  return m;
}

