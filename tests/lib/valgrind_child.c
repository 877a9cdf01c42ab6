/* Run under valgrind by check_valgrind.sh: with poison on, the library marks memory it does
 * not hand out as inaccessible (valgrind client requests), so a use after a bump reset, a
 * pool free or a stack pop is reported by memcheck. argv[1] picks the misuse; "none" does
 * everything right and must report nothing. */
#include <stdio.h>
#include <string.h>

#include <nebula/memory.h>

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "none";
  nebula_bump_options_t bo = {.capacity = 64 << 10, .poison = true};
  nebula_pool_options_t po = {.block_size = 64, .block_count = 16, .poison = true};
  nebula_stack_options_t so = {.capacity = 64 << 10, .poison = true};
  nebula_bump_t *b = nebula_bump_create(&bo);
  nebula_pool_t *p = nebula_pool_create(&po);
  nebula_stack_t *s = nebula_stack_create(&so);
  if (!b || !p || !s) return 2;

  char *x = nebula_bump_alloc(b, 100, 0);
  memset(x, 1, 100);
  nebula_bump_reset(b);
  if (strcmp(what, "bump-after-reset") == 0) x[10] = 2;

  char *y = nebula_pool_alloc(p);
  memset(y, 1, 64);
  if (!nebula_pool_free(p, y)) return 3;
  if (strcmp(what, "pool-after-free") == 0) y[3] = 2;

  char *z = nebula_stack_push(s, 48, 0);
  memset(z, 1, 48);
  if (!nebula_stack_pop(s, z)) return 4;
  if (strcmp(what, "stack-after-pop") == 0) z[0] = 2;

  nebula_stack_destroy(s);
  nebula_pool_destroy(p);
  nebula_bump_destroy(b);
  puts("done");
  return 0;
}
