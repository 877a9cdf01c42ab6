/* The common interface: dispatch, the system allocator behind it, the error record and its
 * report. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <nebula/memory.h>

Test(system, allocates_aligned_and_frees) {
  nebula_allocator_t *a = nebula_system_allocator();
  cr_assert_str_eq(nebula_allocator_name(a), "system");
  for (size_t align = 1; align <= 4096; align *= 2) {
    char *p = nebula_allocate(a, 100, align);
    cr_assert_not_null(p, "alignment %zu", align);
    cr_assert_eq((uintptr_t)p % (align < 16 ? 16 : align), 0u, "alignment %zu: %p", align, (void *)p);
    memset(p, 1, 100);
    cr_assert_geq(nebula_usable_size(a, p), 100u);
    cr_assert(nebula_deallocate(a, p));
  }
  cr_assert(nebula_deallocate(a, NULL), "NULL is a no-op");
}

Test(system, reallocate_keeps_contents) {
  nebula_allocator_t *a = nebula_system_allocator();
  char *p = nebula_reallocate(a, NULL, 10, 0);
  cr_assert_not_null(p);
  memcpy(p, "0123456789", 10);
  p = nebula_reallocate(a, p, 100000, 0);
  cr_assert_not_null(p);
  cr_assert_eq(memcmp(p, "0123456789", 10), 0);
  char *q = nebula_reallocate(a, p, 50, 256);
  cr_assert_not_null(q);
  cr_assert_eq((uintptr_t)q % 256, 0u);
  cr_assert_eq(memcmp(q, "0123456789", 10), 0);
  nebula_deallocate(a, q);
}

Test(system, bad_alignment_is_an_error) {
  nebula_allocator_t *a = nebula_system_allocator();
  nebula_error_clear();
  cr_assert_null(nebula_allocate(a, 10, 24));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_eq(e->alignment, 24u);
  cr_assert_str_eq(e->allocator, "system");
}

Test(system, out_of_memory_is_reported) {
  nebula_allocator_t *a = nebula_system_allocator();
  cr_assert_null(nebula_allocate(a, SIZE_MAX / 2, 0));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_OUT_OF_MEMORY);
  cr_assert_eq(e->size, SIZE_MAX / 2);
}

Test(dispatch, array_overflow_is_caught_before_allocating) {
  nebula_allocator_t *a = nebula_system_allocator();
  cr_assert_null(nebula_allocate_array(a, SIZE_MAX / 8, 16, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_OVERFLOW);
  void *p = nebula_allocate_array(a, 10, 16, 0);
  cr_assert_not_null(p);
  cr_assert_geq(nebula_usable_size(a, p), 160u);
  nebula_deallocate(a, p);
}

Test(dispatch, null_allocator_is_an_error_not_a_crash) {
  cr_assert_null(nebula_allocate(NULL, 8, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_ARGUMENT);
  cr_assert_not(nebula_deallocate(NULL, (void *)16));
  cr_assert_eq(nebula_usable_size(NULL, (void *)16), 0u);
  cr_assert_str_eq(nebula_allocator_name(NULL), "(unnamed)");
}

/* A caller's own allocator behind the interface: a counter over malloc, with no
 * reallocate (the dispatcher falls back to allocate, copy, deallocate). */
typedef struct {
  nebula_allocator_t base;
  size_t live;
} counting_t;

static void *c_alloc(nebula_allocator_t *a, size_t n, size_t align) {
  (void)align;
  ((counting_t *)a)->live++;
  size_t *p = malloc(n + 16);
  *p = n;
  return (char *)p + 16;
}
static bool c_free(nebula_allocator_t *a, void *p) {
  ((counting_t *)a)->live--;
  free((char *)p - 16);
  return true;
}
static size_t c_usable(nebula_allocator_t *a, const void *p) {
  (void)a;
  return *(const size_t *)((const char *)p - 16);
}
static const nebula_allocator_ops_t c_ops = {c_alloc, c_free, NULL, c_usable, NULL, NULL};

Test(dispatch, user_allocator_realloc_falls_back_to_copy) {
  counting_t c = {{&c_ops, "counting"}, 0};
  nebula_allocator_t *a = &c.base;
  char *p = nebula_allocate(a, 4, 0);
  memcpy(p, "abcd", 4);
  p = nebula_reallocate(a, p, 64, 0);
  cr_assert_not_null(p);
  cr_assert_eq(memcmp(p, "abcd", 4), 0);
  cr_assert_eq(c.live, 1u);
  nebula_allocator_state_t st;
  nebula_allocator_state(a, &st);   /* no state op: zeros */
  cr_assert_eq(st.capacity, 0u);
  nebula_deallocate(a, p);
  cr_assert_eq(c.live, 0u);
  nebula_allocator_destroy(a);      /* no destroy op: nothing */
}

Test(error, format_renders_the_report_and_reports_truncation) {
  nebula_allocator_t *a = nebula_system_allocator();
  cr_assert_null(nebula_allocate(a, 10, 3));
  char buf[1024];
  size_t n = nebula_error_format(nebula_last_error(), buf, sizeof buf);
  cr_assert_eq(n, strlen(buf));
  cr_assert(strstr(buf, "nebula: nebula_allocate failed: invalid argument\n") == buf, "%s", buf);
  cr_assert(strstr(buf, "  request   10 bytes (10 B), alignment 3\n"), "%s", buf);
  cr_assert(strstr(buf, "  allocator system: "), "%s", buf);
  cr_assert(strstr(buf, "  why       alignment 3 is not a power of two\n"), "%s", buf);
  cr_assert(strstr(buf, "  suggest   use a power of two\n"), "%s", buf);
  char small[16];
  size_t m = nebula_error_format(nebula_last_error(), small, sizeof small);
  cr_assert_eq(m, n, "the length needed, as snprintf");
  cr_assert_eq(strlen(small), sizeof small - 1);
  cr_assert_eq(strncmp(small, buf, sizeof small - 1), 0);
}

Test(error, backtraces_when_asked) {
  cr_assert_not(nebula_error_backtraces(true));
  cr_assert_null(nebula_allocate(nebula_system_allocator(), 1, 7));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_gt(e->frames, 0u);
  char buf[4096];
  nebula_error_format(e, buf, sizeof buf);
  cr_assert(strstr(buf, "  backtrace\n    #0 "), "%s", buf);
  cr_assert(nebula_error_backtraces(false));
}

Test(error, names_and_clear) {
  cr_assert_str_eq(nebula_error_name(NEBULA_ERR_BUDGET), "budget exceeded");
  cr_assert_str_eq(nebula_error_name((nebula_error_code_t)999), "unknown error");
  nebula_error_clear();
  cr_assert_eq(nebula_last_error()->code, NEBULA_OK);
}
