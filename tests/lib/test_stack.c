/* The stack allocator: LIFO order, detected misuse, markers, scopes. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <nebula/budget.h>
#include <nebula/memory.h>
#include <nebula/stack.h>
#include <nebula/typed.h>

static nebula_stack_t *mk(size_t capacity) {
  nebula_stack_options_t o = { .name = "frames", .capacity = capacity };
  nebula_stack_t *s = nebula_stack_create(&o);
  cr_assert_not_null(s);
  return s;
}

static nebula_allocator_state_t state_of(nebula_stack_t *s) {
  nebula_allocator_state_t st;
  nebula_stack_state(s, &st);
  return st;
}

Test(stack, push_pop_lifo_and_alignment) {
  nebula_stack_t *s = mk(1 << 16);
  uint8_t *p[13];
  for (int i = 0; i < 13; i++) {
    size_t align = (size_t)1 << i;
    p[i] = nebula_stack_push(s, 10 + (size_t)i, align);
    cr_assert_not_null(p[i]);
    cr_assert_eq((uintptr_t)p[i] % align, 0u, "alignment %zu", align);
    memset(p[i], i, 10 + (size_t)i);
  }
  cr_assert_eq(state_of(s).allocations, 13u);
  for (int i = 12; i >= 0; i--) {
    for (int j = 0; j < 10 + i; j++) cr_assert_eq(p[i][j], (uint8_t)i);
    cr_assert(nebula_stack_pop(s, p[i]), "block %d", i);
  }
  nebula_allocator_state_t st = state_of(s);
  cr_assert_eq(st.used, 0u);
  cr_assert_eq(st.allocations, 0u);
  cr_assert_gt(st.peak, 0u);
  cr_assert_eq(nebula_stack_alloc(s, 10, 1), p[0], "memory is reused");
  cr_assert(nebula_stack_free(s, p[0]));
  cr_assert(nebula_stack_pop(s, NULL));
  nebula_stack_destroy(s);
}

Test(stack, out_of_order_free_is_detected_and_changes_nothing) {
  nebula_stack_t *s = mk(1 << 16);
  void *a = nebula_stack_push(s, 100, 0);
  void *b = nebula_stack_push(s, 200, 0);
  nebula_allocator_state_t before = state_of(s);
  cr_assert_not(nebula_stack_pop(s, a));
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_ORDER);
  cr_assert_eq(e->pointer, a);
  cr_assert_str_eq(e->allocator, "frames");
  char top[32];
  snprintf(top, sizeof top, "%p", b);
  cr_assert(strstr(e->detail, top) != NULL, "the detail names the top block: %s", e->detail);
  cr_assert(strstr(e->detail, "200 bytes") != NULL, "%s", e->detail);
  nebula_allocator_state_t after = state_of(s);
  cr_assert_eq(after.used, before.used);
  cr_assert_eq(after.allocations, 2u);
  cr_assert(nebula_stack_pop(s, b), "the stack still works");
  cr_assert(nebula_stack_pop(s, a));
  nebula_stack_destroy(s);
}

Test(stack, double_free_and_foreign_pointers) {
  nebula_stack_t *s = mk(1 << 16);
  nebula_allocator_t *al = nebula_stack_allocator(s);
  void *a = nebula_stack_push(s, 64, 0);
  void *b = nebula_stack_push(s, 64, 0);
  cr_assert(nebula_stack_pop(s, b));
  cr_assert_not(nebula_stack_pop(s, b));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_DOUBLE_FREE);
  cr_assert_eq(nebula_usable_size(al, b), 0u);
  int local;
  cr_assert_not(nebula_stack_pop(s, &local));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert_not(nebula_deallocate(al, (char *)a + 8), "an interior pointer");
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert_not(nebula_deallocate(al, (char *)a + 3));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_INVALID_POINTER);
  cr_assert_eq(state_of(s).allocations, 1u);
  void *c = nebula_stack_push(s, 64, 0);
  cr_assert_eq(c, b, "still works: b's place is reused");
  cr_assert(nebula_deallocate(al, c));
  cr_assert(nebula_deallocate(al, a));
  cr_assert_not(nebula_deallocate(al, a));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_DOUBLE_FREE);
  nebula_stack_destroy(s);
}

Test(stack, capacity_is_enforced) {
  nebula_stack_t *s = mk(4096);
  int n = 0;
  while (nebula_stack_push(s, 100, 0) != NULL) n++;
  cr_assert_gt(n, 20);
  const nebula_error_t *e = nebula_last_error();
  cr_assert_eq(e->code, NEBULA_ERR_CAPACITY);
  cr_assert_eq(e->state.capacity, 4096u);
  cr_assert_eq(e->state.allocations, (size_t)n);
  cr_assert_leq(e->state.used, 4096u);
  nebula_stack_destroy(s);
}

Test(stack, markers_release_and_stale_markers) {
  nebula_stack_t *s = mk(1 << 16);
  void *base = nebula_stack_push(s, 10, 0);
  nebula_stack_marker_t m1 = nebula_stack_mark(s);
  void *x = nebula_stack_push(s, 100, 0);
  nebula_stack_marker_t m2 = nebula_stack_mark(s);
  cr_assert_not_null(nebula_stack_push(s, 100, 0));
  cr_assert_not_null(nebula_stack_push(s, 100, 0));
  cr_assert(nebula_stack_release(s, m2));
  cr_assert_eq(state_of(s).allocations, 2u);
  cr_assert(nebula_stack_release(s, m2), "releasing at the top is a no-op");
  cr_assert(nebula_stack_release(s, m1));
  cr_assert_eq(state_of(s).allocations, 1u);
  /* m2 was released past: above the top now. */
  nebula_allocator_state_t before = state_of(s);
  cr_assert_not(nebula_stack_release(s, m2));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_ORDER);
  cr_assert(strstr(nebula_last_error()->detail, "stale") != NULL);
  cr_assert_eq(state_of(s).used, before.used);
  /* ... and still stale once the stack has grown past its position again. */
  void *y = nebula_stack_push(s, 100, 0);
  cr_assert_eq(y, x);
  cr_assert_not_null(nebula_stack_push(s, 500, 0));
  before = state_of(s);
  cr_assert_not(nebula_stack_release(s, m2));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_ORDER);
  cr_assert_eq(state_of(s).used, before.used);
  cr_assert_eq(state_of(s).allocations, 3u);
  /* Another stack's marker. */
  nebula_stack_t *other = mk(4096);
  cr_assert_not(nebula_stack_release(s, nebula_stack_mark(other)));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_ORDER);
  nebula_stack_destroy(other);
  cr_assert(nebula_stack_release(s, m1), "m1 is still valid");
  cr_assert(nebula_stack_pop(s, base));
  nebula_stack_reset(s);
  cr_assert_eq(state_of(s).used, 0u);
  nebula_stack_destroy(s);
}

Test(stack, reallocate_the_top_only) {
  nebula_stack_t *s = mk(1 << 16);
  nebula_allocator_t *a = nebula_stack_allocator(s);
  char *p = nebula_allocate(a, 10, 0);
  memcpy(p, "0123456789", 10);
  char *q = nebula_reallocate(a, p, 5000, 0);
  cr_assert_eq(q, p);
  cr_assert_eq(memcmp(q, "0123456789", 10), 0);
  cr_assert_eq(nebula_usable_size(a, q), 5000u);
  q = nebula_reallocate(a, q, 100, 1024);   /* a stricter alignment: moved within the top */
  cr_assert_eq((uintptr_t)q % 1024, 0u);
  cr_assert_eq(memcmp(q, "0123456789", 10), 0);
  char *r = nebula_allocate(a, 10, 0);
  cr_assert_null(nebula_reallocate(a, q, 200, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_ORDER);
  cr_assert_null(nebula_reallocate(a, r, 1 << 20, 0));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_CAPACITY);
  cr_assert_eq(nebula_usable_size(a, r), 10u, "unchanged");
  cr_assert(nebula_deallocate(a, r));
  cr_assert(nebula_deallocate(a, q));
  cr_assert_eq(state_of(s).used, 0u);
  nebula_stack_destroy(s);
}

Test(stack, poison_fills_freed_memory) {
  nebula_stack_options_t o = { .capacity = 1 << 16, .poison = true };
  nebula_stack_t *s = nebula_stack_create(&o);
  cr_assert_not_null(s);
  uint8_t *p = nebula_stack_push(s, 128, 0);
  memset(p, 0x11, 128);
  cr_assert(nebula_stack_pop(s, p));
  uint8_t *q = nebula_stack_push(s, 128, 0);
  cr_assert_eq(q, p);
  for (int i = 0; i < 128; i++) cr_assert_eq(q[i], 0xDF, "byte %d", i);
  nebula_stack_destroy(s);
}

Test(stack, budget_is_charged_at_creation) {
  nebula_budget_t *budget = nebula_budget_create("stacks", 64 << 10, NULL);
  cr_assert_not_null(budget);
  nebula_stack_options_t o = { .capacity = 32 << 10, .budget = budget };
  nebula_stack_t *s = nebula_stack_create(&o);
  cr_assert_not_null(s);
  cr_assert_eq(nebula_budget_used(budget), 32u << 10);
  o.capacity = 48 << 10;
  cr_assert_null(nebula_stack_create(&o));
  cr_assert_eq(nebula_last_error()->code, NEBULA_ERR_BUDGET);
  nebula_stack_destroy(s);
  cr_assert_eq(nebula_budget_used(budget), 0u);
  cr_assert(nebula_budget_destroy(budget));
}

Test(stack, scopes_and_scoped_pointers) {
  nebula_stack_t *s = mk(1 << 16);
  nebula_allocator_t *a = nebula_stack_allocator(s);
  NEBULA_STACK_SCOPE(s) {
    for (int i = 0; i < 10; i++) cr_assert_not_null(nebula_stack_push(s, 100, 0));
  }
  cr_assert_eq(state_of(s).used, 0u);
  {
    NEBULA_SCOPED(a, int, first, NEBULA_NEW(a, int));
    NEBULA_SCOPED(a, double, second, NEBULA_NEW_ARRAY(a, double, 8));
    cr_assert_not_null(first);
    cr_assert_not_null(second);
    cr_assert_eq(state_of(s).allocations, 2u);
  }   /* freed in reverse order of declaration: LIFO, no error */
  cr_assert_eq(state_of(s).allocations, 0u);
  int *p = NEBULA_NEW_INIT(a, int, 7);
  cr_assert_eq(*p, 7);
  cr_assert(NEBULA_DELETE(a, p));
  cr_assert_null(p);
  nebula_stack_destroy(s);
}
