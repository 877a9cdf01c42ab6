/* Size classes: the layout nm_sizeclass_build produces, its waste bound, and page sizing. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "nm_types.h"
#include "pool/sizeclass.h"

/* Structure every layout must have: ascending multiples of 16, the last one >= max and the
 * one before it < max (no class the layout cannot need), page slices as documented. */
static void check_layout(const nm_sizeclass_layout_t *l, unsigned k, size_t max) {
  cr_assert_gt(l->count, 0u, "k=%u max=%zu: empty layout", k, max);
  /* Class indices stay clear of the reserved ones (NM_CLASS_LARGE, NM_CLASS_NONE). */
  cr_assert_leq(l->count, NM_CLASS_LARGE, "k=%u max=%zu: %u classes collide with the reserved indices", k,
                max, l->count);
  cr_assert_eq(l->size[0], NM_ALIGN, "k=%u: first class %u, expected 16", k, l->size[0]);
  for (unsigned i = 0; i < l->count; i++) {
    cr_assert_eq(l->size[i] % NM_ALIGN, 0u, "k=%u class %u size %u not a multiple of 16", k, i, l->size[i]);
    if (i > 0)
      cr_assert_gt(l->size[i], l->size[i - 1], "k=%u class %u size %u not above %u", k, i, l->size[i],
                   l->size[i - 1]);
    cr_assert_eq(l->slices[i], nm_sizeclass_page_slices(l->size[i]),
                 "k=%u class %u (size %u): layout slices %u, nm_sizeclass_page_slices %u", k, i,
                 l->size[i], l->slices[i], nm_sizeclass_page_slices(l->size[i]));
  }
  cr_assert_geq(l->size[l->count - 1], max, "k=%u: last class %u below max %zu", k,
                l->size[l->count - 1], max);
  if (l->count > 1)
    cr_assert_lt(l->size[l->count - 2], max, "k=%u: class %u already covers max %zu, the last is superfluous",
                 k, l->size[l->count - 2], max);
}

/* Every request 1..max gets the smallest class >= it, within the documented waste bound. */
static void check_waste(const nm_sizeclass_layout_t *l, unsigned k, size_t max) {
  unsigned cls = 0;
  for (size_t r = 1; r <= max; r++) {
    while (cls < l->count && l->size[cls] < r) cls++;
    if (cls >= l->count) cr_assert_fail("k=%u: no class for request %zu", k, r);
    size_t block = l->size[cls];
    if (r <= (size_t)NM_ALIGN * k) {
      if (block > r + 15) cr_assert_fail("k=%u: request %zu gets block %zu (> r + 15)", k, r, block);
    } else {
      /* block <= r * (1 + 1/k), in integers */
      if (block * k > r * (k + 1))
        cr_assert_fail("k=%u: request %zu gets block %zu (> r * (1 + 1/%u))", k, r, block, k);
    }
  }
}

static void check_k(unsigned k) {
  size_t maxes[] = { NM_ALIGN, 1024, 1000, (size_t)64 << 10, NM_POOL_LIMIT - 16, NM_POOL_LIMIT };
  for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
    nm_sizeclass_layout_t l;
    memset(&l, 0xa5, sizeof l);
    cr_assert_eq(nm_sizeclass_build(&l, k, maxes[i]), 0, "k=%u max=%zu rejected", k, maxes[i]);
    check_layout(&l, k, maxes[i]);
    check_waste(&l, k, maxes[i]);
  }
}

Test(sizeclass, k4_layout_and_waste) { check_k(4); }
Test(sizeclass, k8_layout_and_waste) { check_k(8); }
Test(sizeclass, k1_k2_layout_and_waste) {
  check_k(1);
  check_k(2);
}

/* The documented spacing: multiples of 16 up to 16*k, then exactly k classes per doubling. */
Test(sizeclass, k_classes_per_doubling) {
  unsigned ks[] = { 1, 2, 4, 8 };
  for (unsigned t = 0; t < 4; t++) {
    unsigned k = ks[t];
    nm_sizeclass_layout_t l;
    cr_assert_eq(nm_sizeclass_build(&l, k, NM_POOL_LIMIT), 0);
    cr_assert_eq(l.size[l.count - 1], NM_POOL_LIMIT, "k=%u: last class %u", k, l.size[l.count - 1]);
    for (size_t lo = (size_t)NM_ALIGN * k; lo < NM_POOL_LIMIT; lo *= 2) {
      unsigned in = 0;
      for (unsigned i = 0; i < l.count; i++)
        if (l.size[i] > lo && l.size[i] <= 2 * lo) in++;
      cr_assert_eq(in, k, "k=%u: %u classes in (%zu, %zu]", k, in, lo, 2 * lo);
    }
    for (unsigned i = 0; i < l.count && l.size[i] <= NM_ALIGN * k; i++)
      cr_assert_eq(l.size[i], NM_ALIGN * (i + 1), "k=%u: class %u is %u", k, i, l.size[i]);
  }
}

Test(sizeclass, page_slices) {
  for (size_t b = NM_ALIGN; b <= NM_POOL_LIMIT; b += NM_ALIGN) {
    unsigned s = nm_sizeclass_page_slices(b);
    if (s < 1 || s > 16) cr_assert_fail("block %zu: %u slices", b, s);
    size_t blocks = ((size_t)s << NM_SLICE_SHIFT) / b;
    if (blocks < 4 && s != 16) cr_assert_fail("block %zu: %u slices hold only %zu blocks", b, s, blocks);
    if (blocks < 1) cr_assert_fail("block %zu: a page of %u slices holds no block", b, s);
  }
  cr_assert_eq(nm_sizeclass_page_slices(16), 1u);
  cr_assert_eq(nm_sizeclass_page_slices(NM_POOL_LIMIT), 8u);   /* 4 blocks of 128 KiB */
  cr_assert_eq(nm_sizeclass_page_slices(16 << 10), 1u);   /* 4 blocks of 16 KiB */
}

Test(sizeclass, invalid_arguments) {
  nm_sizeclass_layout_t l;
  memset(&l, 0x5a, sizeof l);
  unsigned bad_k[] = { 0, 3, 5, 6, 7, 9, 16, 32, UINT32_MAX };
  for (unsigned i = 0; i < sizeof bad_k / sizeof bad_k[0]; i++)
    cr_assert_eq(nm_sizeclass_build(&l, bad_k[i], (size_t)64 << 10), -1, "k=%u accepted", bad_k[i]);
  size_t bad_max[] = { 0, 1, 15, NM_POOL_LIMIT + 1, NM_POOL_LIMIT * 2, SIZE_MAX };
  for (unsigned i = 0; i < sizeof bad_max / sizeof bad_max[0]; i++) {
    cr_assert_eq(nm_sizeclass_build(&l, 4, bad_max[i]), -1, "max=%zu accepted (k=4)", bad_max[i]);
    cr_assert_eq(nm_sizeclass_build(&l, 8, bad_max[i]), -1, "max=%zu accepted (k=8)", bad_max[i]);
  }
  /* The boundaries themselves are valid. */
  cr_assert_eq(nm_sizeclass_build(&l, 8, NM_POOL_LIMIT), 0);
  cr_assert_eq(nm_sizeclass_build(&l, 4, NM_ALIGN), 0);
  cr_assert_eq(l.count, 1u);
  cr_assert_eq(l.size[0], NM_ALIGN);
}
