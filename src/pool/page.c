#include "pool/page.h"

#include "nm_types.h"

nm_page_t nm_page_empty;

/* Carve about an OS page at a time (one block at a time above 4 KiB, since carving writes
 * into each block): a fresh page costs one fault, not sixteen, which short-lived threads
 * and small programs feel (git --version: 534 faults with 64 KiB steps, glibc 209; a
 * program's one 4 KiB stdio buffer touched four pages with at least 4 blocks a carve). */
#define NM_EXTEND_BYTES ((size_t)4 << 10)

void nm_page_reuse(nm_page_t *pg, nm_heap_t *h, uint8_t flags) {
  nm_page_set_owner(pg, h, flags);
  pg->used = 0;
  pg->allocs = 0;   /* a warm page (even one carved again) still has its first life's count */
}

void nm_page_init(nm_page_t *pg, nm_heap_t *h, unsigned class_idx, uint32_t block_size, uint8_t flags) {
  nm_page_reuse(pg, h, flags);
  pg->class_idx = (uint8_t)class_idx;
  pg->block_size = block_size;
  pg->reserved = (uint32_t)(((size_t)pg->slice_count << NM_SLICE_SHIFT) / block_size);
  pg->capacity = 0;
  /* floor(2^64 / d) + 1: offset k*d maps to k*e with e = d * magic mod 2^64 (1 <= e <= d),
   * any other offset below 2^32 to at least magic (Lemire, Kaser, Kurz 2019), so "below
   * capacity * e" says "a block start, and carved". */
  pg->div_magic = UINT64_MAX / block_size + 1 + ((block_size & (block_size - 1)) == 0);
  __atomic_store_n(&pg->div_limit, 0, __ATOMIC_RELAXED);
  pg->free = NULL;
  atomic_store_explicit(&pg->thread_free, NULL, memory_order_relaxed);
  nm_page_extend(pg);
}

bool nm_page_extend(nm_page_t *pg) {
  uint32_t left = pg->reserved - pg->capacity;
  if (left == 0) return false;
  uint32_t n = (uint32_t)(NM_EXTEND_BYTES / pg->block_size);
  if (n == 0) n = 1;
  if (n > left) n = left;
  uint8_t *first = pg->start + (size_t)pg->capacity * pg->block_size;
  uint8_t *p = first;
  for (uint32_t i = 0; i + 1 < n; i++) {
    ((nm_block_t *)p)->next = (nm_block_t *)(p + pg->block_size);
    ((nm_block_t *)p)->tag = (uintptr_t)pg;
    p += pg->block_size;
  }
  ((nm_block_t *)p)->next = pg->free;
  ((nm_block_t *)p)->tag = (uintptr_t)pg;
  pg->free = (nm_block_t *)first;
  pg->capacity += n;
  __atomic_store_n(&pg->div_limit, (uint64_t)pg->capacity * (pg->div_magic * pg->block_size),
                   __ATOMIC_RELAXED);
  return true;
}

uint32_t nm_page_collect_remote(nm_page_t *pg) {
  /* acq_rel: the caller's read of pg->remote_next must stay before this exchange, which
   * lets the next remote freer queue the page again (and write remote_next). */
  nm_block_t *list = atomic_exchange_explicit(&pg->thread_free, NULL, memory_order_acq_rel);
  if (list == NULL) return 0;
  uint32_t n = 1;
  nm_block_t *tail = list;
  while (tail->next != NULL) {
    tail = tail->next;
    n++;
  }
  tail->next = pg->free;
  pg->free = list;
  pg->used -= n;
  return n;
}

uint32_t nm_page_collect_all(nm_page_t *pg) {
  /* Nobody else takes this list (the caller holds the page off its heap's remote_pages);
   * remote frees may still push onto it, which only a live block allows. used only falls
   * on a page that is not current (a bump region's owner may still be lowering it, hence
   * the atomic load): a stale value is higher, never equal to a count it exceeds. */
  uint32_t used = __atomic_load_n(&pg->used, __ATOMIC_RELAXED);
  nm_block_t *head = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
  nm_block_t *tail = NULL;
  uint32_t n = 0;
  for (nm_block_t *b = head; b != NULL && n <= used; b = b->next) {   /* bounded: a cycle */
    tail = b;
    n++;
  }
  if (n == 0 || n != used) return 0;
  /* acq_rel, as in nm_page_collect_remote: the caller's read of remote_next stays before it. */
  if (!atomic_compare_exchange_strong_explicit(&pg->thread_free, &head, NULL, memory_order_acq_rel,
                                               memory_order_relaxed))
    return 0;
  tail->next = pg->free;
  pg->free = head;
  return n;
}

void nm_page_free_remote(nm_page_t *pg, nm_block_t *b) {
  nm_heap_t *h = pg->heap;   /* stable: b is live, so pg cannot be retired */
  nm_block_t *old = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
  if (!(nm_page_flags(pg) & NM_PAGE_BUMP)) b->tag = (uintptr_t)pg;
  do {
    b->next = old;
  } while (!atomic_compare_exchange_weak_explicit(&pg->thread_free, &old, b,
                                                  memory_order_acq_rel, memory_order_relaxed));
  if (old == NULL) {
    /* First remote free since the owner last collected: queue the page. Until the owner
     * pops it, the page holds an uncollected block, so it cannot be retired under us. */
    nm_page_t *head = atomic_load_explicit(&h->remote_pages, memory_order_relaxed);
    do {
      pg->remote_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&h->remote_pages, &head, pg,
                                                    memory_order_release, memory_order_relaxed));
  }
}

void nm_page_queue_push(nm_page_queue_t *q, nm_page_t *pg) {
  pg->next = NULL;
  pg->prev = q->last;
  if (q->last) q->last->next = pg;
  else q->first = pg;
  q->last = pg;
  pg->in_queue = 1;
}

void nm_page_queue_remove(nm_page_queue_t *q, nm_page_t *pg) {
  if (pg->prev) pg->prev->next = pg->next;
  else q->first = pg->next;
  if (pg->next) pg->next->prev = pg->prev;
  else q->last = pg->prev;
  pg->next = pg->prev = NULL;
  pg->in_queue = 0;
}
