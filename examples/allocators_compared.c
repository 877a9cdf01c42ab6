/* Allocators compared: one piece of code written once against nebula_allocator_t, run on
 * the system allocator, a bump arena, a pool and a stack, with each one's state after.
 *   cc allocators_compared.c $(pkg-config --cflags --libs nebula-memory) */
#include <stdio.h>
#include <string.h>

#include <nebula/memory.h>

/* Builds a linked list of n nodes, sums it, frees it in reverse (LIFO: fine for a stack). */
typedef struct node {
  struct node *next;
  long value;
} node_t;

static long work(nebula_allocator_t *a, int n) {
  node_t *head = NULL;
  for (int i = 0; i < n; i++) {
    node_t *nd = NEBULA_NEW(a, node_t);
    if (nd == NULL) return -1;
    nd->value = i;
    nd->next = head;
    head = nd;
  }
  long sum = 0;
  for (node_t *nd = head; nd; nd = nd->next) sum += nd->value;
  while (head) {   /* newest first */
    node_t *next = head->next;
    if (!nebula_deallocate(a, head)) return -2;
    head = next;
  }
  return sum;
}

static void show(nebula_allocator_t *a, long sum) {
  nebula_allocator_state_t st;
  nebula_allocator_state(a, &st);
  printf("%-8s sum %ld; now %zu bytes used, peak %zu, capacity %zu\n", nebula_allocator_name(a), sum, st.used,
         st.peak, st.capacity);
}

int main(void) {
  nebula_bump_options_t bo = {.capacity = 1 << 20};
  nebula_pool_options_t po = {.block_size = sizeof(node_t), .block_count = 10000};
  nebula_stack_options_t so = {.capacity = 1 << 20};
  nebula_bump_t *bump = nebula_bump_create(&bo);
  nebula_pool_t *pool = nebula_pool_create(&po);
  nebula_stack_t *stack = nebula_stack_create(&so);
  if (!bump || !pool || !stack) return 1;
  nebula_allocator_t *all[] = {nebula_system_allocator(), nebula_bump_allocator(bump), nebula_pool_allocator(pool),
                               nebula_stack_allocator(stack)};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    long sum = work(all[i], 10000);
    if (sum != 10000L * 9999 / 2) {
      fprintf(stderr, "%s: wrong sum %ld\n", nebula_allocator_name(all[i]), sum);
      return 1;
    }
    show(all[i], sum);
  }
  nebula_stack_destroy(stack);
  nebula_pool_destroy(pool);
  nebula_bump_destroy(bump);
  return 0;
}
