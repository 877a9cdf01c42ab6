/* Basic use: a bump arena for short-lived data, a pool for fixed-size objects, a stack for
 * scoped scratch space, and the typed helpers over the common interface.
 *   cc basic.c $(pkg-config --cflags --libs nebula-memory) */
#include <stdio.h>
#include <string.h>

#include <nebula/memory.h>

typedef struct point {
  double x, y;
} point_t;

int main(void) {
  /* A bump arena: allocation is a cursor increment, and everything goes at once. */
  nebula_bump_options_t bo = {.name = "frame", .capacity = 64 * 1024, .grow = true};
  nebula_bump_t *frame = nebula_bump_create(&bo);
  if (frame == NULL) {
    char report[1024];
    nebula_error_format(nebula_last_error(), report, sizeof report);
    fputs(report, stderr);
    return 1;
  }
  nebula_allocator_t *fa = nebula_bump_allocator(frame);
  point_t *pts = NEBULA_NEW_ARRAY(fa, point_t, 1000);
  for (int i = 0; i < 1000; i++) pts[i] = (point_t){i, 2.0 * i};
  char *label = nebula_bump_alloc(frame, 32, 1);
  snprintf(label, 32, "%d points", 1000);
  nebula_allocator_state_t st;
  nebula_bump_state(frame, &st);
  printf("bump:  %s, last (%.0f, %.0f); %zu bytes used of %zu\n", label, pts[999].x, pts[999].y, st.used,
         st.capacity);
  nebula_bump_reset(frame);   /* every point and the label, in one call */

  /* A pool of fixed-size blocks, thread-safe, every pointer returned to it checked. */
  nebula_pool_options_t po = {.name = "points", .block_size = sizeof(point_t), .block_count = 256};
  nebula_pool_t *pool = nebula_pool_create(&po);
  if (pool == NULL) return 1;
  nebula_allocator_t *pa = nebula_pool_allocator(pool);
  point_t *p = NEBULA_NEW_INIT(pa, point_t, {.x = 1, .y = 2});
  printf("pool:  point (%.0f, %.0f) in a %zu-byte block\n", p->x, p->y, nebula_pool_block_size(pool));
  NEBULA_DELETE(pa, p);   /* p is NULL now */
  int on_stack = 0;
  if (!nebula_pool_free(pool, &on_stack))   /* not the pool's: refused, nothing touched */
    printf("pool:  refused a foreign pointer: %s\n", nebula_error_name(nebula_last_error()->code));

  /* A stack: LIFO, with scopes that give everything back when they end. */
  nebula_stack_options_t so = {.name = "scratch", .capacity = 16 * 1024};
  nebula_stack_t *scratch = nebula_stack_create(&so);
  if (scratch == NULL) return 1;
  NEBULA_STACK_SCOPE(scratch) {
    char *a = nebula_stack_push(scratch, 100, 0);
    char *b = nebula_stack_push(scratch, 200, 0);
    strcpy(a, "scoped");
    (void)b;
    if (!nebula_stack_pop(scratch, a))   /* a is not on top: detected, nothing changed */
      printf("stack: out-of-order pop refused (%s)\n", nebula_error_name(nebula_last_error()->code));
  }
  nebula_stack_state(scratch, &st);
  printf("stack: %zu bytes used after the scope\n", st.used);

  nebula_stack_destroy(scratch);
  nebula_pool_destroy(pool);
  nebula_bump_destroy(frame);
  return 0;
}
