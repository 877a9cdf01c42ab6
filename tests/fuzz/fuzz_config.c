/* libFuzzer target for the NEBULA_MEM_CONFIG parser (scripts/fuzz.sh builds and runs it).
 *
 * Parses the input (as a NUL-terminated string) on top of the defaults and checks what must
 * hold for any text: the configuration stays valid (the route covers 0..SIZE_MAX in order
 * without gap or overlap, every value within its documented limits), problems are
 * NUL-terminated one-line messages, the count does not depend on how many fit, and parsing
 * is deterministic. Any violation aborts, which libFuzzer reports as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define NPROB 4

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "fuzz_config: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
      abort();                                                                                 \
    }                                                                                          \
  } while (0)

static void check_config(const nm_config_t *c) {
  CHECK(c->strategy <= NM_STRATEGY_SYSTEM);
  CHECK(c->preset <= NM_PRESET_DEVELOPMENT);
  CHECK(c->range_count >= 1 && c->range_count <= NM_CONFIG_MAX_RANGES);
  CHECK(c->ranges[0].lo == 0);
  for (unsigned i = 0; i < c->range_count; i++) {
    CHECK(c->ranges[i].lo <= c->ranges[i].hi);
    CHECK(c->ranges[i].backend <= NM_BACKEND_SYSTEM);
    if (i > 0) CHECK(c->ranges[i].lo == c->ranges[i - 1].hi + 1);
  }
  CHECK(c->ranges[c->range_count - 1].hi == SIZE_MAX);
  CHECK(c->classes_per_doubling == 4 || c->classes_per_doubling == 8);
  CHECK(c->purge_delay_ms <= NM_CONFIG_PURGE_DELAY_MAX_MS);
  CHECK(c->bump_region >= NM_CONFIG_BUMP_REGION_MIN && c->bump_region <= NM_CONFIG_BUMP_REGION_MAX);
  CHECK((c->bump_region & (c->bump_region - 1)) == 0);
  CHECK(c->oom <= NM_OOM_FALLBACK && c->misuse <= NM_MISUSE_REPORT);
  CHECK(c->stats <= NM_STATS_TERMINAL && c->stats_signal <= NM_STATS_NOSIGNAL &&
        c->stats_format <= NM_STATS_PROMETHEUS);
  CHECK(memchr(c->stats_file, '\0', sizeof c->stats_file) != NULL);   /* terminated */
}

static void check_problem(const nm_config_problem_t *p) {
  CHECK(memchr(p->key, '\0', sizeof p->key) != NULL);
  const char *end = memchr(p->message, '\0', sizeof p->message);
  CHECK(end != NULL && end > p->message);
  for (const char *s = p->message; s < end; s++) CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';

  nm_config_t a, b;
  nm_config_problem_t pa[NPROB], pb[NPROB];
  memset(pa, 0xAA, sizeof pa);
  memset(pb, 0xBB, sizeof pb);
  nm_config_defaults(&a);
  nm_config_defaults(&b);

  size_t n = nm_config_parse(text, &a, pa, NPROB);
  check_config(&a);
  for (size_t i = 0; i < n && i < NPROB; i++) check_problem(&pa[i]);
  /* Nothing written past what was found. */
  for (size_t i = n; i < NPROB; i++) CHECK((unsigned char)pa[i].message[0] == 0xAA);

  /* Deterministic, and counting does not depend on the room given. */
  CHECK(nm_config_parse(text, &b, pb, NPROB) == n);
  /* Field by field: a range has padding bytes, which memcmp would compare too. */
  for (unsigned i = 0; i < NM_CONFIG_MAX_RANGES; i++)
    CHECK(a.ranges[i].lo == b.ranges[i].lo && a.ranges[i].hi == b.ranges[i].hi &&
          a.ranges[i].backend == b.ranges[i].backend);
  CHECK(a.range_count == b.range_count && a.purge_threshold == b.purge_threshold &&
        a.purge_delay_ms == b.purge_delay_ms && a.bump_region == b.bump_region &&
        a.classes_per_doubling == b.classes_per_doubling && a.junk == b.junk && a.fill == b.fill &&
        a.strict == b.strict && a.strategy == b.strategy && a.preset == b.preset);
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++) CHECK(a.budget[i] == b.budget[i]);
  CHECK(a.oom == b.oom && a.misuse == b.misuse && a.canary == b.canary &&
        a.alloc_backtrace == b.alloc_backtrace && a.stats == b.stats &&
        a.stats_signal == b.stats_signal && a.stats_format == b.stats_format &&
        strcmp(a.stats_file, b.stats_file) == 0);
  for (size_t i = 0; i < n && i < NPROB; i++)
    CHECK(strcmp(pa[i].message, pb[i].message) == 0 && strcmp(pa[i].key, pb[i].key) == 0);
  nm_config_defaults(&b);
  CHECK(nm_config_parse(text, &b, NULL, 0) == n);
  CHECK(nm_config_parse(text, &b, pb, 1) == n);

  /* Parsing again on top of the result: still valid. */
  nm_config_parse(text, &a, NULL, 0);
  check_config(&a);

  free(text);
  return 0;
}
