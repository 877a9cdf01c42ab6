/* junk= and fill= (preset=development): new blocks hold the fill byte, freed blocks the
 * junk byte, calloc stays zero; with both off nothing is written. */
#include <criterion/criterion.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/runtime.h"

static void start(bool junk, bool fill) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.junk = junk;
  r.opt.fill = fill;
  cr_assert_eq(nm_runtime_init(&r), 0);
}

static const size_t sizes[] = { 1, 16, 100, 1000, 4096, 50000, (size_t)300 << 10 };

/* Blocks above NM_DEBUG_FILL_MAX are filled and junked only at their start. */
Test(debug_fill, huge_blocks_filled_only_at_their_start) {
  nm_route_t r;
  nm_route_defaults(&r);
  r.opt.junk = true;
  r.opt.fill = true;
  cr_assert_eq(nm_runtime_init(&r), 0);
  size_t n = (size_t)1 << 20;   /* a large page: fresh, zero beyond the filled part */
  unsigned char *p = nm_malloc(n);
  cr_assert_not_null(p);
  cr_assert_eq(p[NM_DEBUG_FILL_MAX - 1], NM_FILL_BYTE);
  cr_assert_eq(p[NM_DEBUG_FILL_MAX], 0, "filled past NM_DEBUG_FILL_MAX");
  nm_free(p);
}

Test(debug_fill, fill_marks_new_blocks) {
  start(false, true);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = nm_malloc(sizes[i]);
    cr_assert_not_null(p);
    /* the first NM_DEBUG_FILL_MAX bytes: a huge buffer is not made resident whole */
    size_t filled = nm_debug_fill_len(sizes[i]);
    for (size_t k = 0; k < filled; k++)
      if (p[k] != NM_FILL_BYTE) cr_assert_fail("size %zu: byte %zu is %#x", sizes[i], k, p[k]);
    memset(p, 0, sizes[i]);
    nm_free(p);
    unsigned char *q = nm_memalign(64, sizes[i]);
    cr_assert_eq((uintptr_t)q % 64, 0);
    cr_assert_eq(q[nm_debug_fill_len(sizes[i]) - 1], NM_FILL_BYTE, "memalign size %zu", sizes[i]);
    nm_free(q);
    unsigned char *z = nm_calloc(1, sizes[i]);
    for (size_t k = 0; k < sizes[i]; k++)
      if (z[k] != 0) cr_assert_fail("calloc size %zu: byte %zu is %#x", sizes[i], k, z[k]);
    nm_free(z);
  }
}

Test(debug_fill, junk_marks_freed_blocks) {
  start(true, false);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i] < 64) continue;   /* the first word holds the free-list link */
    unsigned char *keep = nm_malloc(sizes[i]);   /* keeps the page alive after the free */
    unsigned char *p = nm_malloc(sizes[i]);
    memset(p, 1, sizes[i]);
    nm_free(p);
    size_t at = nm_debug_fill_len(sizes[i]) / 2;
    cr_assert_eq(p[at], NM_JUNK_BYTE, "size %zu", sizes[i]);   /* read after free, on purpose */
    nm_free(keep);
  }
}

Test(debug_fill, off_writes_nothing) {
  start(false, false);
  unsigned char *keep = nm_malloc(1000);
  unsigned char *p = nm_malloc(1000);
  memset(p, 7, 1000);
  nm_free(p);
  unsigned char *q = nm_malloc(1000);   /* the same block, LIFO */
  cr_assert_eq(q, p);
  cr_assert_eq(q[500], 7);
  nm_free(q);
  nm_free(keep);
}
