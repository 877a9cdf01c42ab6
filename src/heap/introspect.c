#include "heap/introspect.h"

#include <string.h>
#include <unistd.h>

#include "heap/heap.h"
#include "os/os.h"
#include "pool/segment.h"
#include "system/system.h"
#include "util/fmt.h"

static void nm_totals_add(nm_heap_t *h, void *arg) {
  nm_totals_t *t = arg;
  t->heaps++;
  if (__atomic_load_n(&h->state, __ATOMIC_RELAXED) == NM_HEAP_ACTIVE) t->heaps_active++;
  t->mapped += __atomic_load_n(&h->segment_count, __ATOMIC_RELAXED) * NM_SEG_SIZE;
  t->page_bytes += __atomic_load_n(&h->page_bytes, __ATOMIC_RELAXED);
  t->dirty += __atomic_load_n(&h->dirty_bytes, __ATOMIC_RELAXED);
}

void nm_totals(nm_totals_t *t) {
  memset(t, 0, sizeof *t);
  nm_heap_foreach(nm_totals_add, t);
}

int nm_trim(size_t pad) {
  nm_heap_t *h = nm_tls_heap;
  size_t before = h->dirty_bytes + h->segment_count;
  nm_heap_trim(h);
  int released = before != h->dirty_bytes + h->segment_count;
  return nm_system.trim(pad) || released;
}

struct mallinfo2 nm_mallinfo2(void) {
  struct mallinfo2 m = nm_system.mallinfo2();
  nm_totals_t t;
  nm_totals(&t);
  m.hblks += t.mapped / NM_SEG_SIZE;
  m.hblkhd += t.mapped;
  m.uordblks += t.page_bytes;
  m.fordblks += t.mapped - t.page_bytes;
  return m;
}

void nm_malloc_stats(void) {
  nm_totals_t t;
  nm_totals(&t);
  char storage[512];
  nm_buf_t b = NM_BUF(storage);
  nm_buf_str(&b, "nebula: pool heaps ");
  nm_buf_u64(&b, t.heaps);
  nm_buf_str(&b, " (");
  nm_buf_u64(&b, t.heaps_active);
  nm_buf_str(&b, " active), mapped ");
  nm_buf_bytes(&b, t.mapped);
  nm_buf_str(&b, ", in pages ");
  nm_buf_bytes(&b, t.page_bytes);
  nm_buf_str(&b, ", freed not yet purged ");
  nm_buf_bytes(&b, t.dirty);
  nm_buf_str(&b, ", rss ");
  nm_buf_bytes(&b, nm_os_rss());
  nm_buf_str(&b, "\nnebula: system backend follows\n");
  nm_os_write(STDERR_FILENO, b.data, b.len);
  nm_system.malloc_stats();
}
