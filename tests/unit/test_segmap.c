/* Ownership map: which addresses the allocator claims, in one load, without touching them. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/introspect.h"
#include "nm_types.h"
#include "os/os.h"
#include "pool/segmap.h"

static int static_data = 42;
static const char static_rodata[] = "read-only";
static char static_bss[4096];

#define ADDR(x) ((const void *)(uintptr_t)(x))

Test(segmap, null_and_foreign_addresses) {
  int on_stack = 0;
  cr_assert_not(nm_segmap_contains(NULL));
  cr_assert_not(nm_segmap_contains(ADDR(1)));
  cr_assert_not(nm_segmap_contains(ADDR(4096)));
  cr_assert_not(nm_segmap_contains(&on_stack));
  cr_assert_not(nm_segmap_contains(&static_data));
  cr_assert_not(nm_segmap_contains(static_rodata));
  cr_assert_not(nm_segmap_contains(static_bss));
  cr_assert_not(nm_segmap_contains((const void *)(uintptr_t)&nm_malloc));
  cr_assert_not(nm_segmap_contains(&errno));

  /* glibc's own blocks: from the brk heap and from mmap. Also while the pool is active. */
  void *ours = nm_malloc(64);
  cr_assert_not_null(ours);
  cr_assert(nm_segmap_contains(ours));
  size_t sizes[] = { 1, 16, 100, 4096, 100000, (size_t)1 << 20, (size_t)8 << 20 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *g = malloc(sizes[i]);
    cr_assert_not_null(g);
    cr_assert_not(nm_segmap_contains(g), "glibc block of %zu bytes at %p claimed", sizes[i], (void *)g);
    cr_assert_not(nm_segmap_contains(g + sizes[i] - 1));
    free(g);
  }
  nm_free(ours);
}

Test(segmap, beyond_47_bits) {
  const uintptr_t top = (uintptr_t)1 << 47;
  uintptr_t addrs[] = { top, top + 1, top + NM_SEG_SIZE, (uintptr_t)1 << 48, (uintptr_t)1 << 56,
                        (uintptr_t)0xffff800000000000ull, UINTPTR_MAX - NM_SEG_MASK, UINTPTR_MAX };
  for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
    cr_assert_not(nm_segmap_contains(ADDR(addrs[i])), "%#lx claimed", (unsigned long)addrs[i]);

  /* Setting them is ignored (and must not alias a low segment). */
  for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) nm_segmap_set(ADDR(addrs[i] & ~(uintptr_t)NM_SEG_MASK));
  for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
    cr_assert_not(nm_segmap_contains(ADDR(addrs[i])), "%#lx claimed after set", (unsigned long)addrs[i]);
  for (uint64_t w = 0; w < NM_SEGMAP_WORDS; w++)
    if (atomic_load(&nm_segmap[w]) != 0) cr_assert_fail("word %lu of the map set by out-of-range sets", (unsigned long)w);

  /* The last segment below 2^47 is representable; 2^47 itself still is not. */
  nm_segmap_set(ADDR(top - NM_SEG_SIZE));
  cr_assert(nm_segmap_contains(ADDR(top - 1)));
  cr_assert(nm_segmap_contains(ADDR(top - NM_SEG_SIZE)));
  cr_assert_not(nm_segmap_contains(ADDR(top)));
  cr_assert_not(nm_segmap_contains(ADDR(top - NM_SEG_SIZE - 1)));
  nm_segmap_clear(ADDR(top - NM_SEG_SIZE));
  cr_assert_not(nm_segmap_contains(ADDR(top - 1)));
}

static void check_whole(const uint8_t *base, bool expect) {
  for (size_t off = 0; off < NM_SEG_SIZE; off += 4093) {
    if (nm_segmap_contains(base + off) != expect)
      cr_assert_fail("offset %zu of %p: contains %d, expected %d", off, (const void *)base, !expect, expect);
  }
  size_t edges[] = { 0, 1, 15, 16, NM_SLICE_SIZE - 1, NM_SLICE_SIZE, NM_SEG_SIZE / 2, NM_SEG_SIZE - 16,
                     NM_SEG_SIZE - 1 };
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
    cr_assert_eq(nm_segmap_contains(base + edges[i]), expect, "offset %zu of %p", edges[i], (const void *)base);
}

Test(segmap, set_and_clear) {
  uint8_t *base = nm_os_map_aligned(NM_SEG_SIZE, NM_SEG_SIZE);
  cr_assert_not_null(base);
  cr_assert_eq((uintptr_t)base & NM_SEG_MASK, 0u);
  check_whole(base, false);

  nm_segmap_set(base);
  check_whole(base, true);
  cr_assert_not(nm_segmap_contains(base - 1));
  cr_assert_not(nm_segmap_contains(base - NM_SEG_SIZE));
  cr_assert_not(nm_segmap_contains(base + NM_SEG_SIZE));
  cr_assert_not(nm_segmap_contains(base + 2 * NM_SEG_SIZE - 1));

  /* A second segment next to it: independent bits. */
  nm_segmap_set(base + NM_SEG_SIZE);
  check_whole(base + NM_SEG_SIZE, true);
  nm_segmap_clear(base);
  check_whole(base, false);
  check_whole(base + NM_SEG_SIZE, true);
  nm_segmap_clear(base + NM_SEG_SIZE);
  check_whole(base + NM_SEG_SIZE, false);
  nm_os_unmap(base, NM_SEG_SIZE);
}

/* The map covers every segment of the 47-bit space (the first at 4 MiB, the last at
 * 2^47 - 4 MiB: bits only, nothing mapped); address 0 and everything below 4 MiB are
 * outside it, so NULL never reads a word, and a set of address 0 changes nothing. */
Test(segmap, ends_of_the_map) {
  const uintptr_t first = NM_SEG_SIZE, last = ((uintptr_t)1 << 47) - NM_SEG_SIZE;
  uintptr_t ends[] = { first, last };
  for (size_t i = 0; i < 2; i++) {
    cr_assert_not(nm_segmap_contains(ADDR(ends[i])));
    nm_segmap_set(ADDR(ends[i]));
    cr_assert(nm_segmap_contains(ADDR(ends[i])), "segment at %#lx not in the map", (unsigned long)ends[i]);
    cr_assert(nm_segmap_contains(ADDR(ends[i] + NM_SEG_SIZE - 1)));
    nm_segmap_clear(ADDR(ends[i]));
    cr_assert_not(nm_segmap_contains(ADDR(ends[i])));
  }
  cr_assert_geq(nm_segmap_index(NULL), NM_SEGMAP_BITS, "NULL maps into the map");
  cr_assert_geq(nm_segmap_index(ADDR(first - 1)), NM_SEGMAP_BITS);
  nm_segmap_set(ADDR(0));
  for (uint64_t w = 0; w < NM_SEGMAP_WORDS; w++)
    if (atomic_load(&nm_segmap[w]) != 0) cr_assert_fail("word %lu of the map set by a set of address 0", (unsigned long)w);
  cr_assert_not(nm_segmap_contains(NULL));
}

Test(segmap, pool_pointers_are_contained) {
  void *ptrs[600];
  size_t n = 0;
  for (size_t size = 0; size <= ((size_t)64 << 10) && n < 600; size = size < 256 ? size + 1 : size * 5 / 4) {
    ptrs[n] = nm_malloc(size);
    cr_assert_not_null(ptrs[n], "size %zu", size);
    cr_assert(nm_segmap_contains(ptrs[n]), "pool block of %zu bytes at %p not contained", size, ptrs[n]);
    cr_assert(nm_segmap_contains((char *)ptrs[n] + nm_usable_size(ptrs[n]) - 1));
    n++;
  }
  for (size_t i = 0; i < n; i++) nm_free(ptrs[i]);
}

Test(segmap, neighbours_of_a_segment_are_not_ours) {
  void *p = nm_malloc(16);
  cr_assert_not_null(p);
  nm_totals_t t;
  nm_totals(&t);
  cr_assert_eq(t.mapped, NM_SEG_SIZE, "one small block should map one segment, mapped %zu", t.mapped);
  const uint8_t *seg = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)NM_SEG_MASK);
  check_whole(seg, true);
  cr_assert_not(nm_segmap_contains(seg - 1));
  cr_assert_not(nm_segmap_contains(seg - NM_SEG_SIZE));
  cr_assert_not(nm_segmap_contains(seg + NM_SEG_SIZE));
  cr_assert_not(nm_segmap_contains(seg + NM_SEG_SIZE + NM_SEG_SIZE / 2));
  nm_free(p);
}

/* Segments given back to the OS leave the map; those kept stay in it. */
Test(segmap, unmapped_segments_leave_the_map) {
  enum { N = 16000 };   /* 1 KiB blocks: ~16 MiB, several segments */
  static void *blocks[N];
  const void *segs[16];
  size_t nsegs = 0;
  for (size_t i = 0; i < N; i++) {
    blocks[i] = nm_malloc(1024);
    cr_assert_not_null(blocks[i]);
    const void *s = (const void *)((uintptr_t)blocks[i] & ~(uintptr_t)NM_SEG_MASK);
    bool seen = false;
    for (size_t j = 0; j < nsegs; j++) seen |= segs[j] == s;
    if (!seen) {
      cr_assert_lt(nsegs, 16u);
      segs[nsegs++] = s;
    }
  }
  cr_assert_geq(nsegs, 3u);
  for (size_t i = 0; i < N; i++) nm_free(blocks[i]);
  nm_trim(0);
  size_t kept = 0;
  for (size_t j = 0; j < nsegs; j++) {
    bool in_heap = false;
    for (nm_segment_t *s = nm_tls_heap->segments; s != NULL; s = s->next) in_heap |= (const void *)s == segs[j];
    cr_assert_eq(nm_segmap_contains(segs[j]), in_heap, "segment %p: in map %d, in heap %d", segs[j],
                 !in_heap, in_heap);
    kept += in_heap;
  }
  cr_assert_lt(kept, nsegs, "trim after freeing everything kept all %zu segments", nsegs);
}
