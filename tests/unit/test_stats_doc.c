/* docs/statistics.md against heap/stats.h's lists of figures, both ways, as test_config.c
 * does for the config keys: the JSON schema's groups (LINE, a pool class's own keys,
 * "process", backends.bump) and the list of Prometheus metrics name exactly the keys and
 * families the lists generate, in the dumps' order, and the few that diag/stats_dump.c
 * writes out itself (WRITTEN_* below). The schema's frame (schema, pid, strategy_route,
 * budgets...) is not generated and not checked here; tests/stats checks real dumps. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc_file.h"
#include "heap/stats.h"

/* What the lists say, as tables (a string literal is never compared with NULL in a macro). */
typedef struct line_counter_s {
  const char *json, *text, *prom_type, *prom, *prom_class;
  unsigned in, width;
} line_counter_t;

static const line_counter_t line_counters[] = {
#define X(f, in, json, text, width, unit, type, value, prom, help, pclass, pclass_help) \
  { json, text, type, prom, pclass, NM_STATS_IN_##in, width },
  NM_STATS_LINE_COUNTERS(X)
#undef X
};

typedef struct figure_s {
  const char *json, *prom_type, *prom;
  unsigned in;
} figure_t;

static const figure_t figures[] = {
#define X(f, in, json, type, prom, help) { json, type, prom, NM_STATS_IN_##in },
  NM_STATS_PROCESS_FIGURES(X)
#undef X
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Keys and families diag/stats_dump.c writes beside the generated ones, where it writes them. */
static const char *const WRITTEN_PROCESS_FIRST[] = {"bytes_in_use", "live_blocks", "allocs", "frees"};
static const char *const WRITTEN_BUMP_LAST[] = {"region_bytes"};
static const char *const WRITTEN_CLASS_FIRST[] = {"class", "size"};
static const char *const WRITTEN_PROM_LAST[] = {"nebula_budget_bytes", "nebula_budget_used_bytes"};

#define MAX_NAMES 64

typedef struct names_s {
  char name[MAX_NAMES][64];
  size_t n;
} names_t;

static void add_n(names_t *l, const char *s, size_t len) {
  cr_assert_lt(l->n, MAX_NAMES, "more than %d names", MAX_NAMES);
  cr_assert_lt(len, sizeof l->name[0], "a name of %zu characters: %.*s", len, (int)len, s);
  memcpy(l->name[l->n], s, len);
  l->name[l->n++][len] = '\0';
}

static void add(names_t *l, const char *s) { add_n(l, s, strlen(s)); }

static void add_all(names_t *l, const char *const *s, size_t n) {
  for (size_t i = 0; i < n; i++) add(l, s[i]);
}

static bool has(const names_t *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->name[i], s) == 0) return true;
  return false;
}

static void join(const names_t *l, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < l->n && n < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? " " : "", l->name[i]);
}

/* Both ways, then the order. */
static void expect_same(const names_t *doc, const names_t *want, const char *what) {
  for (size_t i = 0; i < want->n; i++)
    cr_expect(has(doc, want->name[i]), "%s: docs/statistics.md does not name '%s'", what, want->name[i]);
  for (size_t i = 0; i < doc->n; i++)
    cr_expect(has(want, doc->name[i]), "%s: docs/statistics.md names '%s', which the dump does not have",
              what, doc->name[i]);
  char d[4096], w[4096];
  join(doc, d, sizeof d);
  join(want, w, sizeof w);
  cr_expect_str_eq(d, w, "%s: docs/statistics.md says\n  %s\nthe dump's order is\n  %s", what, d, w);
}

static const char *read_docs(void) {
  return doc_file_read("NEBULA_DOCS_STATS");
}

/* The text of the section under `heading`, up to the next heading. */
static const char *section(const char *doc, const char *heading, char *out, size_t cap) {
  const char *p = strstr(doc, heading);
  cr_assert_not_null(p, "docs/statistics.md has no '%s'", heading);
  p += strlen(heading);
  const char *end = strstr(p, "\n#");
  size_t len = end ? (size_t)(end - p) : strlen(p);
  cr_assert_lt(len, cap);
  memcpy(out, p, len);
  out[len] = '\0';
  return out;
}

/* The quoted names of one group of the JSON schema: from `open` to the next '}'. */
static names_t doc_group(const char *json, const char *open) {
  const char *p = strstr(json, open);
  cr_assert_not_null(p, "the JSON schema in docs/statistics.md has no '%s'", open);
  p += strlen(open);
  const char *end = strchr(p, '}');
  cr_assert_not_null(end, "'%s' in docs/statistics.md is not closed", open);
  names_t l = {0};
  while ((p = strchr(p, '"')) != NULL && p < end) {
    const char *q = strchr(p + 1, '"');
    cr_assert(q != NULL && q < end, "an unclosed quote after '%s' in docs/statistics.md", open);
    add_n(&l, p + 1, (size_t)(q - p - 1));
    p = q + 1;
  }
  return l;
}

Test(stats_doc, json_keys_are_the_lists) {
  char json[8192];
  section(read_docs(), "\n### JSON", json, sizeof json);
  names_t line = {0}, cls = {0}, process = {0}, bump = {0};
  add_all(&cls, WRITTEN_CLASS_FIRST, COUNT(WRITTEN_CLASS_FIRST));
  add_all(&process, WRITTEN_PROCESS_FIRST, COUNT(WRITTEN_PROCESS_FIRST));
  for (size_t i = 0; i < COUNT(line_counters); i++) {
    const line_counter_t *c = &line_counters[i];
    if (c->json != NULL) add(c->in == NM_STATS_IN_LINE ? &line : &cls, c->json);
  }
  for (size_t i = 0; i < COUNT(figures); i++) {
    const figure_t *f = &figures[i];
    if (f->in == NM_STATS_IN_PROCESS) add(&process, f->json);
    else if (f->in == NM_STATS_IN_BUMP) add(&bump, f->json);
    else cr_expect_null(f->json, "'%s' has a JSON key but no place in the dump", f->json);
  }
  add_all(&bump, WRITTEN_BUMP_LAST, COUNT(WRITTEN_BUMP_LAST));
  names_t doc = doc_group(json, "\nLINE = {");
  expect_same(&doc, &line, "LINE");
  doc = doc_group(json, "\"classes\":[LINE + {");
  expect_same(&doc, &cls, "a class's own keys");
  doc = doc_group(json, "\"process\":{");
  expect_same(&doc, &process, "process");
  doc = doc_group(json, "\"bump\":LINE + {");
  expect_same(&doc, &bump, "backends.bump");
}

/* The Prometheus section names each family in backticks, in the dump's order, a group of
 * them followed by its label: "(label `backend`)". */
Test(stats_doc, prometheus_metrics_are_the_lists) {
  char prom[8192];
  section(read_docs(), "\n### Prometheus", prom, sizeof prom);
  names_t doc = {0}, want = {0};
  for (const char *p = prom; (p = strchr(p, '`')) != NULL;) {
    const char *name = p + 1, *end = strchr(name, '`');
    cr_assert_not_null(end, "an unclosed ` in the Prometheus section");
    if (strncmp(name, "nebula_", 7) == 0) {
      add_n(&doc, name, (size_t)(end - name));
    } else if (p - prom >= 7 && strncmp(p - 7, "(label ", 7) == 0) {
      char label[64];
      snprintf(label, sizeof label, "(label:%.*s)", (int)(end - name), name);
      add(&doc, label);
    }
    p = end + 1;
  }
  for (size_t i = 0; i < COUNT(line_counters); i++)
    if (line_counters[i].prom != NULL) add(&want, line_counters[i].prom);
  add(&want, "(label:backend)");
  for (size_t i = 0; i < COUNT(line_counters); i++)
    if (line_counters[i].prom_class != NULL) add(&want, line_counters[i].prom_class);
  add(&want, "(label:size)");
  for (size_t i = 0; i < COUNT(figures); i++)
    if (figures[i].prom != NULL) add(&want, figures[i].prom);
  add_all(&want, WRITTEN_PROM_LAST, COUNT(WRITTEN_PROM_LAST));
  add(&want, "(label:key)");
  expect_same(&doc, &want, "Prometheus metrics");
}

/* What the formats need of an entry: a counter's family ends in _total and a gauge's does
 * not (the exposition format's convention), a text column is wider than its header, no
 * JSON key or family repeats in its place. */
Test(stats_doc, the_lists_are_well_formed) {
  names_t json_line = {0}, json_cls = {0}, json_fig = {0}, prom = {0};
  for (size_t i = 0; i < COUNT(line_counters); i++) {
    const line_counter_t *c = &line_counters[i];
    const char *fams[] = {c->prom, c->prom_class};
    for (size_t k = 0; k < 2; k++) {
      if (fams[k] == NULL) continue;
      size_t n = strlen(fams[k]);
      bool total = n > 6 && strcmp(fams[k] + n - 6, "_total") == 0;
      cr_expect_not_null(c->prom_type, "%s has no type", fams[k]);
      if (c->prom_type != NULL)
        cr_expect(total == (strcmp(c->prom_type, "counter") == 0), "%s is a %s", fams[k], c->prom_type);
      cr_expect(!has(&prom, fams[k]), "family %s twice", fams[k]);
      add(&prom, fams[k]);
    }
    if (c->text != NULL) cr_expect_gt(c->width, strlen(c->text), "column '%s' is %u wide", c->text, c->width);
    if (c->json != NULL) {
      names_t *in = c->in == NM_STATS_IN_LINE ? &json_line : &json_cls;
      cr_expect(!has(&json_line, c->json) && !has(&json_cls, c->json), "JSON key %s twice", c->json);
      add(in, c->json);
    }
  }
  for (size_t i = 0; i < COUNT(figures); i++) {
    const figure_t *f = &figures[i];
    if (f->prom != NULL) {
      size_t n = strlen(f->prom);
      bool total = n > 6 && strcmp(f->prom + n - 6, "_total") == 0;
      cr_expect(f->prom_type != NULL && total == (strcmp(f->prom_type, "counter") == 0), "%s is a %s",
                f->prom, f->prom_type ? f->prom_type : "(no type)");
      cr_expect(!has(&prom, f->prom), "family %s twice", f->prom);
      add(&prom, f->prom);
    }
    if (f->json != NULL) {
      cr_expect(!has(&json_fig, f->json), "JSON key %s twice", f->json);
      add(&json_fig, f->json);
    }
  }
}
