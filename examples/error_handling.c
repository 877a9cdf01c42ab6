/* Error handling: every failing call leaves a nebula_error_t that says what was asked, the
 * allocator's state, why, and what to change. Three patterns:
 *   - graceful degradation: a cache that stops growing when its budget says no;
 *   - recovery: a full arena is reset (or a bigger one made) and the work retried;
 *   - a fallback chain: pool, then bump, then the system allocator.
 *   cc error_handling.c $(pkg-config --cflags --libs nebula-memory) */
#include <stdio.h>
#include <string.h>

#include <nebula/memory.h>

static void print_report(void) {
  char report[2048];
  nebula_error_format(nebula_last_error(), report, sizeof report);
  fputs(report, stdout);
}

/* Tries each allocator in turn; returns which one served the request (-1: none). */
static int allocate_with_fallback(nebula_allocator_t **chain, int n, size_t size, void **out) {
  for (int i = 0; i < n; i++) {
    *out = nebula_allocate(chain[i], size, 0);
    if (*out != NULL) return i;
    printf("  %s said no (%s), trying the next\n", nebula_allocator_name(chain[i]),
           nebula_error_name(nebula_last_error()->code));
  }
  return -1;
}

int main(void) {
  /* Graceful degradation: a budget of 64 KiB under a 1 MiB total; items past it are skipped. */
  nebula_budget_t *total = nebula_budget_create("total", 1 << 20, NULL);
  nebula_budget_t *thumbs = nebula_budget_create("thumbnails", 64 << 10, total);
  nebula_allocator_t *charged = nebula_budgeted(nebula_system_allocator(), thumbs);
  if (!total || !thumbs || !charged) return 1;
  void *kept[64];
  int n = 0, skipped = 0;
  for (int i = 0; i < 64; i++) {
    void *p = nebula_allocate(charged, 4000, 0);
    if (p == NULL) {
      if (skipped++ == 0) {
        printf("degradation: thumbnail %d does not fit; the first refusal says:\n", i);
        print_report();
      }
      continue;
    }
    kept[n++] = p;
  }
  printf("degradation: kept %d thumbnails, skipped %d; budget used %zu of %zu\n", n, skipped,
         nebula_budget_used(thumbs), nebula_budget_limit(thumbs));
  for (int i = 0; i < n; i++) nebula_deallocate(charged, kept[i]);

  /* Recovery: a fixed arena fills; the error's state says how much was used; reset, retry. */
  nebula_bump_options_t bo = {.name = "parser", .capacity = 4096, .grow = false};
  nebula_bump_t *arena = nebula_bump_create(&bo);
  if (!arena) return 1;
  int parsed = 0;
  for (int round = 0; round < 2; round++) {
    for (;;) {
      void *tok = nebula_bump_alloc(arena, 100, 0);
      if (tok == NULL) break;
      parsed++;
    }
    const nebula_error_t *e = nebula_last_error();
    printf("recovery: round %d ended with %s after %zu of %zu bytes; resetting\n", round,
           nebula_error_name(e->code), e->state.used, e->state.capacity);
    nebula_bump_reset(arena);
  }
  printf("recovery: %d tokens over two rounds\n", parsed);

  /* A fallback chain: a small pool of 64-byte blocks, a bump arena, then the system. */
  nebula_pool_options_t po = {.name = "small", .block_size = 64, .block_count = 2};
  nebula_pool_t *pool = nebula_pool_create(&po);
  if (!pool) return 1;
  nebula_allocator_t *chain[] = {nebula_pool_allocator(pool), nebula_bump_allocator(arena), nebula_system_allocator()};
  size_t sizes[] = {48, 48, 48, 200, 8000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p;
    printf("fallback: %zu bytes\n", sizes[i]);
    int who = allocate_with_fallback(chain, 3, sizes[i], &p);
    if (who < 0) return 1;
    printf("  served by %s\n", nebula_allocator_name(chain[who]));
    if (who == 2) nebula_deallocate(chain[2], p);   /* the others go with their allocator */
  }

  nebula_pool_destroy(pool);
  nebula_bump_destroy(arena);
  nebula_allocator_destroy(charged);
  nebula_budget_destroy(thumbs);
  nebula_budget_destroy(total);
  return 0;
}
