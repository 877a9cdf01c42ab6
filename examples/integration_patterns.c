/* Integration patterns:
 *   - a per-request arena: each request's objects come from one bump, reset when it ends;
 *   - an AST arena: a parser's tree lives in a bump and dies with it, no per-node free;
 *   - a connection pool: fixed-size connection records from a pool, shared by threads,
 *     plus a compute cache so a lookup many threads ask for runs once.
 *   cc integration_patterns.c $(pkg-config --cflags --libs nebula-memory) -lpthread */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nebula/memory.h>

/* ---- per-request arena ------------------------------------------------------------------- */
static size_t handle_request(nebula_bump_t *arena, int id) {
  size_t bytes = 0;
  NEBULA_MEMORY_SCOPE(arena) {   /* everything below is freed when the scope ends */
    char *path = nebula_bump_alloc(arena, 64, 1);
    snprintf(path, 64, "/items/%d", id);
    int *fields = nebula_bump_alloc(arena, 32 * sizeof(int), _Alignof(int));
    for (int i = 0; i < 32; i++) fields[i] = id * i;
    nebula_allocator_state_t st;
    nebula_bump_state(arena, &st);
    bytes = st.used;
  }
  return bytes;
}

/* ---- AST arena ----------------------------------------------------------------------------- */
typedef struct ast {
  char op;            /* '+', '*' or 0 for a number */
  long value;
  struct ast *l, *r;
} ast_t;

/* expr := term ('+' term)* ; term := num ('*' num)* */
static ast_t *parse_num(nebula_allocator_t *a, const char **s) {
  ast_t *n = NEBULA_NEW_INIT(a, ast_t, {0, 0, NULL, NULL});
  while (**s >= '0' && **s <= '9') n->value = n->value * 10 + (*(*s)++ - '0');
  return n;
}
static ast_t *parse_term(nebula_allocator_t *a, const char **s) {
  ast_t *l = parse_num(a, s);
  while (**s == '*') {
    (*s)++;
    l = NEBULA_NEW_INIT(a, ast_t, {'*', 0, l, parse_num(a, s)});
  }
  return l;
}
static ast_t *parse_expr(nebula_allocator_t *a, const char **s) {
  ast_t *l = parse_term(a, s);
  while (**s == '+') {
    (*s)++;
    l = NEBULA_NEW_INIT(a, ast_t, {'+', 0, l, parse_term(a, s)});
  }
  return l;
}
static long eval(const ast_t *n) {
  return n->op == '+' ? eval(n->l) + eval(n->r) : n->op == '*' ? eval(n->l) * eval(n->r) : n->value;
}

/* ---- connection pool and a shared lookup cache ---------------------------------------- */
typedef struct conn {
  int fd;
  char peer[48];
} conn_t;

static nebula_pool_t *conns;
static nebula_cache_t *dns;

static int resolve(void *ctx, const void *key, size_t klen, nebula_cache_result_t *out) {
  (void)ctx;
  char addr[64];
  int n = snprintf(addr, sizeof addr, "10.0.0.%zu", klen);   /* a stand-in for a slow lookup */
  (void)key;
  return nebula_cache_result_set(out, addr, (size_t)n + 1) ? 0 : 1;
}

static void *client(void *arg) {
  long id = (long)arg;
  for (int i = 0; i < 1000; i++) {
    conn_t *c = nebula_pool_alloc(conns);
    if (c == NULL) return (void *)1;
    const nebula_cache_value_t *v;
    if (nebula_cache_get_or_compute(dns, "db.internal", 11, resolve, NULL, &v) != 0) return (void *)2;
    c->fd = (int)id;
    snprintf(c->peer, sizeof c->peer, "%s", (const char *)v->data);
    nebula_cache_value_release(v);
    if (!nebula_pool_free(conns, c)) return (void *)3;
  }
  return NULL;
}

int main(void) {
  nebula_bump_t *arena = nebula_bump_create_from_config("name=request,capacity=64K,grow=on");
  if (arena == NULL) return 1;
  size_t most = 0;
  for (int id = 0; id < 10000; id++) {
    size_t b = handle_request(arena, id);
    if (b > most) most = b;
  }
  nebula_allocator_state_t st;
  nebula_bump_state(arena, &st);
  printf("requests: 10000 served, at most %zu bytes each, %zu used after all of them\n", most, st.used);

  const char *src = "2+3*4+10*10*2";
  const char *s = src;
  ast_t *tree = parse_expr(nebula_bump_allocator(arena), &s);
  nebula_bump_state(arena, &st);
  printf("ast: %s = %ld (%zu bytes of nodes, freed by one reset)\n", src, eval(tree), st.used);
  nebula_bump_reset(arena);

  conns = nebula_pool_create_from_config("name=connections,block_size=64,block_count=64,grow=on");
  nebula_cache_options_t co = {.max_entries = 128};
  dns = nebula_cache_create(&co);
  if (conns == NULL || dns == NULL) return 1;
  pthread_t th[4];
  for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, client, (void *)i);
  for (int i = 0; i < 4; i++) {
    void *rc;
    pthread_join(th[i], &rc);
    if (rc != NULL) return 1;
  }
  nebula_cache_stats_t cs;
  nebula_cache_stats(dns, &cs);
  nebula_pool_state(conns, &st);
  printf("connections: 4000 opened and closed by 4 threads; %zu live now, peak %zu bytes\n", st.allocations, st.peak);
  printf("cache: %zu computation(s), %zu hits, %zu waits\n", cs.computations, cs.hits, cs.waits);
  nebula_cache_destroy(dns);
  nebula_pool_destroy(conns);
  nebula_bump_destroy(arena);
  return 0;
}
