/* The NEBULA_MEM_CONFIG parser: every key with good and bad values, every problem message,
 * size suffixes and overflow, overrides and presets at their position, route validation,
 * the problem count, and docs/configuration.md naming every key. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc_file.h"
#include "config/config.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define TiB ((size_t)1 << 40)
#define NPROB 16

typedef struct parsed_s {
  nm_config_t cfg;
  nm_config_problem_t p[NPROB];
  size_t n;
} parsed_t;

static parsed_t parse(const char *text) {
  parsed_t r;
  memset(&r, 0, sizeof r);
  nm_config_defaults(&r.cfg);
  r.n = nm_config_parse(text, &r.cfg, r.p, NPROB);
  return r;
}

static const char *first_message(const parsed_t *r) { return r->n ? r->p[0].message : "(none)"; }

/* text parses without a problem. */
static parsed_t ok(const char *text) {
  parsed_t r = parse(text);
  cr_assert_eq(r.n, 0, "'%s': %zu problem(s), first: %s", text, r.n, first_message(&r));
  return r;
}

static bool cfg_eq(const nm_config_t *a, const nm_config_t *b) {
  if (a->strategy != b->strategy || a->preset != b->preset || a->range_count != b->range_count ||
      a->classes_per_doubling != b->classes_per_doubling || a->purge_threshold != b->purge_threshold ||
      a->purge_delay_ms != b->purge_delay_ms || a->bump_region != b->bump_region || a->junk != b->junk ||
      a->fill != b->fill || a->strict != b->strict || a->oom != b->oom || a->misuse != b->misuse ||
      a->canary != b->canary || a->alloc_backtrace != b->alloc_backtrace || a->stats != b->stats ||
      a->stats_signal != b->stats_signal || a->stats_format != b->stats_format ||
      strcmp(a->stats_file, b->stats_file) != 0)
    return false;
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++)
    if (a->budget[i] != b->budget[i]) return false;
  for (unsigned i = 0; i < a->range_count; i++)
    if (a->ranges[i].lo != b->ranges[i].lo || a->ranges[i].hi != b->ranges[i].hi ||
        a->ranges[i].backend != b->ranges[i].backend)
      return false;
  return true;
}

/* text gives exactly one problem, about `key`, with exactly `message`, and changes nothing. */
static void problem(const char *text, const char *key, const char *message) {
  parsed_t r = parse(text);
  cr_assert_eq(r.n, 1, "'%s': %zu problems, expected 1 (first: %s)", text, r.n, first_message(&r));
  cr_expect_str_eq(r.p[0].key, key, "'%s': problem key", text);
  cr_expect_str_eq(r.p[0].message, message, "'%s': message", text);
  nm_config_t d;
  nm_config_defaults(&d);
  cr_expect(cfg_eq(&r.cfg, &d), "'%s': a bad value changed the configuration", text);
}

/* text gives exactly one problem whose message begins with `prefix`, and changes nothing. */
static void problem_prefix(const char *text, const char *key, const char *prefix) {
  parsed_t r = parse(text);
  cr_assert_eq(r.n, 1, "'%s': %zu problems, expected 1 (first: %s)", text, r.n, first_message(&r));
  cr_expect_str_eq(r.p[0].key, key, "'%s': problem key", text);
  cr_expect_eq(strncmp(r.p[0].message, prefix, strlen(prefix)), 0, "'%s': message '%s' does not begin '%s'",
               text, r.p[0].message, prefix);
  nm_config_t d;
  nm_config_defaults(&d);
  cr_expect(cfg_eq(&r.cfg, &d), "'%s': a bad value changed the configuration", text);
}

typedef struct range_s {
  size_t lo, hi;
  nm_backend_t backend;
} range_t;

static void expect_route(const nm_config_t *c, const range_t *want, unsigned n, const char *what) {
  cr_assert_eq(c->range_count, n, "%s: %u ranges, expected %u", what, c->range_count, n);
  for (unsigned i = 0; i < n; i++) {
    cr_expect_eq(c->ranges[i].lo, want[i].lo, "%s: range %u lo %zu, expected %zu", what, i, c->ranges[i].lo,
                 want[i].lo);
    cr_expect_eq(c->ranges[i].hi, want[i].hi, "%s: range %u hi %zu, expected %zu", what, i, c->ranges[i].hi,
                 want[i].hi);
    cr_expect_eq(c->ranges[i].backend, want[i].backend, "%s: range %u backend %d, expected %d", what, i,
                 (int)c->ranges[i].backend, (int)want[i].backend);
  }
}

static const range_t balanced_route[] = { { 0, 2 * MiB, NM_BACKEND_POOL }, { 2 * MiB + 1, SIZE_MAX, NM_BACKEND_SYSTEM } };
static const range_t throughput_route[] = { { 0, 64 * KiB, NM_BACKEND_BUMP },
                                            { 64 * KiB + 1, 2 * MiB, NM_BACKEND_POOL },
                                            { 2 * MiB + 1, SIZE_MAX, NM_BACKEND_SYSTEM } };
static const range_t system_route[] = { { 0, SIZE_MAX, NM_BACKEND_SYSTEM } };

/* ------------------------------------------------------------------------------------------
 * Defaults, empty input, keys
 * ------------------------------------------------------------------------------------------ */

Test(config, defaults) {
  nm_config_t c;
  memset(&c, 0xAB, sizeof c);
  nm_config_defaults(&c);
  cr_expect_eq(c.strategy, NM_STRATEGY_BALANCED);
  cr_expect_eq(c.preset, NM_PRESET_PRODUCTION);
  expect_route(&c, balanced_route, 2, "defaults");
  cr_expect_eq(c.classes_per_doubling, 4u);
  cr_expect_eq(c.purge_threshold, 32 * MiB);
  cr_expect_eq(c.purge_delay_ms, 50u);
  cr_expect_eq(c.bump_region, 1 * MiB);
  cr_expect_not(c.junk);
  cr_expect_not(c.fill);
  cr_expect_not(c.strict);
}

Test(config, null_and_empty_text_change_nothing) {
  const char *texts[] = { "", " ", ",", ",,, ,\t,", " , \n" };
  nm_config_t d;
  nm_config_defaults(&d);
  parsed_t r;
  memset(&r, 0, sizeof r);
  nm_config_defaults(&r.cfg);
  cr_expect_eq(nm_config_parse(NULL, &r.cfg, r.p, NPROB), 0);
  cr_expect(cfg_eq(&r.cfg, &d));
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    r = ok(texts[i]);
    cr_expect(cfg_eq(&r.cfg, &d), "'%s' changed the configuration", texts[i]);
  }
}

Test(config, problems_counted_without_a_buffer) {
  nm_config_t c;
  nm_config_defaults(&c);
  cr_expect_eq(nm_config_parse("a=1,b=2,junk=maybe", &c, NULL, 0), 3);
  cr_expect_eq(nm_config_parse("a=1,b=2,junk=maybe", &c, NULL, 5), 3);
}

Test(config, keys_lists_every_key) {
  static const char *const expected[] = { "strategy",    "preset",      "route",         "classes",
                                          "purge_threshold", "purge_delay", "bump_region", "junk",
                                          "fill",        "strict",      "budget",        "pool_budget",
                                          "bump_budget", "system_budget", "oom",         "misuse",
                                          "canary",      "alloc_backtrace", "stats",    "stats_signal",
                                          "stats_format", "stats_file" };
  const char *const *keys = nm_config_keys();
  size_t n = 0;
  while (keys[n]) n++;
  cr_expect_eq(n, sizeof expected / sizeof expected[0], "nm_config_keys lists %zu keys", n);
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    bool found = false;
    for (size_t k = 0; k < n; k++) found |= strcmp(keys[k], expected[i]) == 0;
    cr_expect(found, "nm_config_keys does not list '%s'", expected[i]);
  }
  /* Every listed key is accepted by the parser (no "unknown key"). */
  for (size_t k = 0; k < n; k++) {
    char text[64];
    snprintf(text, sizeof text, "%s=", keys[k]);
    parsed_t r = parse(text);
    cr_expect_eq(r.n, 1, "'%s'", text);
    cr_expect_null(strstr(r.p[0].message, "unknown key"), "'%s': %s", text, r.p[0].message);
  }
}

/* The examples in docs/configuration.md are right: every `| `text` | `message` |` table row
 * gives exactly that one message, and every example that should be valid (an "Example:"
 * line, a NEBULA_MEM_CONFIG= or route= line in a code block) parses without a problem. */
static char *read_docs(void) {
  return doc_file_read("NEBULA_DOCS_CONFIG");
}

/* Copies the code span at *p (just after its opening backquote) into out, turning "\|"
 * into "|"; returns the character after the closing backquote, or NULL. */
static const char *code_span(const char *p, char *out, size_t cap) {
  size_t n = 0;
  for (; *p && *p != '`' && *p != '\n'; p++) {
    if (p[0] == '\\' && p[1] == '|') p++;
    if (n + 1 < cap) out[n++] = *p;
  }
  out[n] = '\0';
  return *p == '`' ? p + 1 : NULL;
}

static void check_example(const char *text, const char *where) {
  parsed_t r = parse(text);
  cr_expect_eq(r.n, 0, "docs example '%s' (%s): %zu problem(s), first: %s", text, where, r.n, first_message(&r));
}

Test(config, docs_examples_are_right) {
  char *doc = read_docs();
  unsigned rows = 0, examples = 0;
  bool in_code = false;
  for (char *line = strtok(doc, "\n"); line; line = strtok(NULL, "\n")) {
    char text[512], message[512];
    if (strncmp(line, "```", 3) == 0) {
      in_code = !in_code;
      continue;
    }
    const char *p;
    if (strncmp(line, "| `", 3) == 0 && (p = code_span(line + 3, text, sizeof text)) && strncmp(p, " | `", 4) == 0 &&
        (p = code_span(p + 4, message, sizeof message)) && strcmp(p, " |") == 0) {
      rows++;
      parsed_t r = parse(text);
      cr_expect_eq(r.n, 1, "docs row '%s': %zu problems", text, r.n);
      cr_expect_str_eq(r.p[0].message, message, "docs row '%s'", text);
    } else if ((p = strstr(line, "Example: `NEBULA_MEM_CONFIG="))) {
      code_span(p + strlen("Example: `NEBULA_MEM_CONFIG="), text, sizeof text);
      examples++;
      check_example(text, "Example:");
    } else if (in_code && (strncmp(line, "NEBULA_MEM_CONFIG=", 18) == 0 || strncmp(line, "route", 5) == 0)) {
      const char *v = line[0] == 'N' ? line + 18 : line;
      if (*v == '\'') v++;
      size_t n = 0;
      while (v[n] && v[n] != '#' && v[n] != '\'' && !(line[0] == 'N' && v[n] == ' ')) n++;
      while (n && v[n - 1] == ' ') n--;
      snprintf(text, sizeof text, "%.*s", (int)n, v);
      examples++;
      check_example(text, "code block");
    }
  }
  cr_expect_geq(rows, 20u, "only %u message rows found in the docs", rows);
  cr_expect_geq(examples, 20u, "only %u examples found in the docs", examples);
}

/* docs/configuration.md (path in NEBULA_DOCS_CONFIG, set by tests/unit/meson.build) has a
 * "### `key`" section for every key. */
Test(config, docs_name_every_key) {
  const char *doc = read_docs();
  for (const char *const *k = nm_config_keys(); *k; k++) {
    char heading[80];
    snprintf(heading, sizeof heading, "### `%s`", *k);
    cr_expect_not_null(strstr(doc, heading), "docs/configuration.md has no '%s' section", heading);
  }
}

/* The other way: every key the docs name (a "### `key`" section, a row of the key table,
 * the list under "Keys" in the contents) is one the parser knows, each appears once, and the
 * table and the list give the parser's order. */
static bool known_key(const char *name, size_t len) {
  for (const char *const *k = nm_config_keys(); *k; k++)
    if (strlen(*k) == len && strncmp(*k, name, len) == 0) return true;
  return false;
}

Test(config, docs_name_only_known_keys) {
  const char *doc = read_docs();
  size_t sections = 0, rows = 0;
  const char *const *order = nm_config_keys();
  for (const char *p = doc; (p = strstr(p, "\n### `")) != NULL; p++) {
    const char *name = p + 6, *end = strchr(name, '`');
    cr_assert_not_null(end);
    cr_expect(known_key(name, (size_t)(end - name)), "docs/configuration.md has a section for '%.*s', "
              "which is no key", (int)(end - name), name);
    sections++;
  }
  for (const char *p = doc; (p = strstr(p, "\n| [`")) != NULL; p++) {
    const char *name = p + 5, *end = strchr(name, '`');
    cr_assert_not_null(end);
    cr_expect(known_key(name, (size_t)(end - name)), "the key table names '%.*s', which is no key",
              (int)(end - name), name);
    cr_expect(order[rows] != NULL && strncmp(order[rows], name, (size_t)(end - name)) == 0 &&
                  strlen(order[rows]) == (size_t)(end - name),
              "key table row %zu is '%.*s', the parser's key %zu is '%s'", rows + 1, (int)(end - name), name,
              rows + 1, order[rows] ? order[rows] : "(none)");
    rows++;
  }
  size_t keys = 0;
  while (order[keys]) keys++;
  cr_expect_eq(sections, keys, "%zu key sections for %zu keys", sections, keys);
  cr_expect_eq(rows, keys, "%zu key table rows for %zu keys", rows, keys);
  /* The contents: "- [Keys](#keys): `a`, `b`, ..." up to the next "- [". */
  const char *list = strstr(doc, "- [Keys](#keys):");
  cr_assert_not_null(list, "no '- [Keys](#keys):' line in the contents");
  const char *stop = strstr(list + 1, "\n- [");
  size_t listed = 0;
  for (const char *p = list; (p = strchr(p, '`')) != NULL && (stop == NULL || p < stop); listed++) {
    const char *name = p + 1, *end = strchr(name, '`');
    cr_assert_not_null(end);
    cr_expect(order[listed] != NULL && strlen(order[listed]) == (size_t)(end - name) &&
                  strncmp(order[listed], name, (size_t)(end - name)) == 0,
              "the contents list '%.*s' as key %zu, the parser's is '%s'", (int)(end - name), name, listed + 1,
              order[listed] ? order[listed] : "(none)");
    p = end + 1;
  }
  cr_expect_eq(listed, keys, "the contents list %zu keys, the parser has %zu", listed, keys);
}

/* ------------------------------------------------------------------------------------------
 * Grammar
 * ------------------------------------------------------------------------------------------ */

Test(config, whitespace_and_empty_items) {
  parsed_t r = ok("  junk = on ,\tfill=yes ,, strict =1,");
  cr_expect(r.cfg.junk);
  cr_expect(r.cfg.fill);
  cr_expect(r.cfg.strict);
  r = ok(",,purge_delay=7,,");
  cr_expect_eq(r.cfg.purge_delay_ms, 7u);
}

Test(config, unknown_keys) {
  problem("stratgy=compact", "stratgy", "unknown key 'stratgy' (did you mean 'strategy'?)");
  problem("purge_treshold=1", "purge_treshold", "unknown key 'purge_treshold' (did you mean 'purge_threshold'?)");
  problem("jnuk=1", "jnuk", "unknown key 'jnuk' (did you mean 'junk'?)");
  problem("bump-region=1M", "bump-region", "unknown key 'bump-region' (did you mean 'bump_region'?)");
  /* The issue's example. */
  problem("bugdet=1G", "bugdet", "unknown key 'bugdet' (did you mean 'budget'?)");
  problem("poolbudget=1G", "poolbudget", "unknown key 'poolbudget' (did you mean 'pool_budget'?)");
  problem("zzzzzzzz=1", "zzzzzzzz", "unknown key 'zzzzzzzz'");
  problem("x=1", "x", "unknown key 'x'");
}

Test(config, keys_are_case_sensitive) {
  problem("Junk=on", "Junk", "unknown key 'Junk' (keys are lowercase: did you mean 'junk'?)");
  problem("STRATEGY=compact", "STRATEGY", "unknown key 'STRATEGY' (keys are lowercase: did you mean 'strategy'?)");
}

Test(config, missing_equals_and_empty_key) {
  problem("junk", "junk", "missing '=' after 'junk'");
  problem(" strict ", "strict", "missing '=' after 'strict'");
  problem("jnuk", "jnuk", "missing '=' after 'jnuk', which is not a key (did you mean 'junk'?)");
  problem("hello", "hello", "missing '=' after 'hello', which is not a key");
  problem("=5", "", "empty key in '=5'");
  problem(" = on", "", "empty key in '= on'");
  problem("5", "", "missing key in '5': expected key=value");
  problem("0-:system", "", "missing key in '0-:system': expected key=value (route ranges follow route=)");
}

Test(config, every_problem_is_reported) {
  parsed_t r = parse("stratgy=compact,junk=maybe,fill=on,purge_delay=x,bump_region=3");
  cr_assert_eq(r.n, 4, "%zu problems", r.n);
  cr_expect_str_eq(r.p[0].key, "stratgy");
  cr_expect_str_eq(r.p[1].key, "junk");
  cr_expect_str_eq(r.p[2].key, "purge_delay");
  cr_expect_str_eq(r.p[3].key, "bump_region");
  cr_expect(r.cfg.fill, "the good key between bad ones is applied");
}

Test(config, more_problems_than_room) {
  nm_config_t c;
  nm_config_defaults(&c);
  nm_config_problem_t p[3];
  memset(p, 0x5A, sizeof p);
  size_t n = nm_config_parse("a=1,b=2,c=3,d=4,e=5,junk=on", &c, p, 2);
  cr_expect_eq(n, 5, "count %zu", n);
  cr_expect_str_eq(p[0].message, "unknown key 'a'");
  cr_expect_str_eq(p[1].message, "unknown key 'b'");
  cr_expect_eq((unsigned char)p[2].key[0], 0x5A, "wrote past max_problems");
  cr_expect_eq((unsigned char)p[2].message[0], 0x5A, "wrote past max_problems");
  cr_expect(c.junk, "parsing goes on after max_problems");
}

Test(config, long_and_odd_text_is_bounded) {
  static char text[200000];
  memset(text, 'k', sizeof text - 3);
  memcpy(text + sizeof text - 3, "=1", 3);
  parsed_t r = parse(text);
  cr_assert_eq(r.n, 1);
  cr_expect_eq(strlen(r.p[0].key), sizeof r.p[0].key - 1, "key truncated to its field");
  cr_expect_lt(strlen(r.p[0].message), sizeof r.p[0].message);
  cr_expect_not_null(strstr(r.p[0].message, "...'"), "long key quoted with an ellipsis: %s", r.p[0].message);

  /* Control characters are escaped: the message stays one line. */
  problem("junk=o\nn", "junk",
          "bad value 'o\\x0an' for 'junk': expected 1|0|on|off|true|false|yes|no (did you mean 'on'?)");
  problem("junk=\x01", "junk", "bad value '\\x01' for 'junk': expected 1|0|on|off|true|false|yes|no");

  /* So are bytes outside printable ASCII, and a backslash is doubled: raw non-UTF-8 bytes
   * and terminal escapes (ESC, C1 controls such as \x9b) never reach a terminal, and the
   * message reads the same in every locale. */
  problem("junk=\xff", "junk", "bad value '\\xff' for 'junk': expected 1|0|on|off|true|false|yes|no");
  problem("junk=\x1b[31mred", "junk",
          "bad value '\\x1b[31mred' for 'junk': expected 1|0|on|off|true|false|yes|no");
  problem("junk=\xc2\x9b" "2J", "junk",
          "bad value '\\xc2\\x9b2J' for 'junk': expected 1|0|on|off|true|false|yes|no");
  problem("junk=caf\xc3\xa9", "junk",
          "bad value 'caf\\xc3\\xa9' for 'junk': expected 1|0|on|off|true|false|yes|no");
  problem("junk=a\\x41", "junk",
          "bad value 'a\\\\x41' for 'junk': expected 1|0|on|off|true|false|yes|no");
  problem("\xfe\x1b]0;t\x07=1", "\xfe\x1b]0;t\x07", "unknown key '\\xfe\\x1b]0;t\\x07'");
  problem("route=0-\xff:pool", "route",
          "bad size '\\xff' in route range '0-\\xff:pool': " "expected a number with optional K, M, G, T suffix");
  /* Messages cut at their end (both quotes full of escapes, the cut falling at each offset
   * of an escape) hold only printable ASCII and whole escapes. */
  for (int pad = 0; pad < 4; pad++) {
    char t[128];
    int len = snprintf(t, sizeof t, "route=0-%.*s", pad, "1111");
    memset(t + len, 0xff, 40);
    memcpy(t + len + 40, ":pool", 6);
    parsed_t q = parse(t);
    cr_assert_geq(q.n, 1);
    const char *m = q.p[0].message, *bad = NULL;
    for (size_t i = 0; m[i] && !bad; i++) {
      unsigned char c = (unsigned char)m[i];
      if (c < 0x20 || c >= 0x7f) bad = m + i;
      else if (c == '\\' && m[i + 1] == '\\') i++;
      else if (c == '\\' && (m[i + 1] != 'x' || !m[i + 2] || !m[i + 3])) bad = m + i;
      else if (c == '\\') i += 3;
    }
    cr_expect_null(bad, "pad %d: raw byte or broken escape at offset %td of '%s'", pad,
                   bad ? bad - m : 0, m);
  }

  /* A long value in a message is cut. */
  static char v[4096];
  memset(v, 'x', sizeof v - 1);
  memcpy(v, "purge_threshold=", 16);
  r = parse(v);
  cr_assert_eq(r.n, 1);
  cr_expect_not_null(strstr(r.p[0].message, "...' for 'purge_threshold'"), "%s", r.p[0].message);

  /* Many items, many commas: linear, and each counted. */
  static char many[600000];
  size_t len = 0;
  len += (size_t)snprintf(many + len, sizeof many - len, "route=0-0:pool");
  for (int i = 1; i < 20000; i++) len += (size_t)snprintf(many + len, sizeof many - len, ",%d-%d:pool", i, i);
  snprintf(many + len, sizeof many - len, ",20000-:system,junk=on");
  r = parse(many);
  cr_assert_eq(r.n, 1, "%zu problems, first: %s", r.n, first_message(&r));
  cr_expect_str_eq(r.p[0].message, "route has 20001 ranges; at most 8 are allowed");
  cr_expect(r.cfg.junk);
}

/* ------------------------------------------------------------------------------------------
 * strategy, preset, classes
 * ------------------------------------------------------------------------------------------ */

Test(config, strategy_values) {
  parsed_t r = ok("strategy=throughput");
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_THROUGHPUT);
  expect_route(&r.cfg, throughput_route, 3, "throughput");
  cr_expect_eq(r.cfg.classes_per_doubling, 4u);
  cr_expect_eq(r.cfg.purge_threshold, 256 * MiB);
  cr_expect_eq(r.cfg.purge_delay_ms, 1000u);

  r = ok("strategy=compact");
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_COMPACT);
  expect_route(&r.cfg, balanced_route, 2, "compact");
  cr_expect_eq(r.cfg.classes_per_doubling, 8u);
  cr_expect_eq(r.cfg.purge_threshold, 4 * MiB);
  cr_expect_eq(r.cfg.purge_delay_ms, 10u);

  r = ok("strategy=system");
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_SYSTEM);
  expect_route(&r.cfg, system_route, 1, "system");

  /* balanced puts back everything another strategy set. */
  r = ok("strategy=compact,strategy=balanced");
  nm_config_t d;
  nm_config_defaults(&d);
  cr_expect(cfg_eq(&r.cfg, &d));

  /* Values are case-insensitive. */
  r = ok("strategy=Compact");
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_COMPACT);
}

Test(config, strategy_bad_values) {
  problem("strategy=fast", "strategy", "bad value 'fast' for 'strategy': expected balanced|throughput|compact|system");
  problem("strategy=compcat", "strategy",
          "bad value 'compcat' for 'strategy': expected balanced|throughput|compact|system (did you mean 'compact'?)");
  problem("strategy=sys", "strategy",
          "bad value 'sys' for 'strategy': expected balanced|throughput|compact|system (did you mean 'system'?)");
  problem("strategy=", "strategy", "bad value '' for 'strategy': expected balanced|throughput|compact|system");
}

Test(config, preset_values) {
  parsed_t r = ok("preset=development");
  cr_expect_eq(r.cfg.preset, NM_PRESET_DEVELOPMENT);
  cr_expect(r.cfg.junk);
  cr_expect(r.cfg.fill);
  r = ok("preset=development,preset=production");
  cr_expect_eq(r.cfg.preset, NM_PRESET_PRODUCTION);
  cr_expect_not(r.cfg.junk);
  cr_expect_not(r.cfg.fill);
  problem("preset=debug", "preset", "bad value 'debug' for 'preset': expected production|development");
  problem("preset=develop", "preset",
          "bad value 'develop' for 'preset': expected production|development (did you mean 'development'?)");
}

Test(config, classes_values) {
  cr_expect_eq(ok("classes=8").cfg.classes_per_doubling, 8u);
  cr_expect_eq(ok("classes=8,classes=4").cfg.classes_per_doubling, 4u);
  problem("classes=6", "classes", "bad value '6' for 'classes': expected 4|8");
  problem("classes=16", "classes", "bad value '16' for 'classes': expected 4|8");
  problem("classes=4,8", "classes", "bad value '4,8' for 'classes': expected 4|8");
}

/* ------------------------------------------------------------------------------------------
 * Sizes: purge_threshold, bump_region
 * ------------------------------------------------------------------------------------------ */

Test(config, size_suffixes) {
  static const struct {
    const char *text;
    size_t value;
  } cases[] = {
    { "0", 0 },
    { "123", 123 },
    { "512B", 512 },
    { "512b", 512 },
    { "64K", 64 * KiB },
    { "64k", 64 * KiB },
    { "64KB", 64 * KiB },
    { "64kb", 64 * KiB },
    { "64KiB", 64 * KiB },
    { "64kib", 64 * KiB },
    { "64KIB", 64 * KiB },
    { "2M", 2 * MiB },
    { "2MiB", 2 * MiB },
    { "2mb", 2 * MiB },
    { "1G", GiB },
    { "3GiB", 3 * GiB },
    { "1T", TiB },
    { "1TB", TiB },
    { "007K", 7 * KiB },
    { "16777215T", 16777215 * TiB },
    { "18446744073709551615", SIZE_MAX },
    { " 8M ", 8 * MiB },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[96];
    snprintf(text, sizeof text, "purge_threshold=%s", cases[i].text);
    parsed_t r = ok(text);
    cr_expect_eq(r.cfg.purge_threshold, cases[i].value, "'%s': %zu, expected %zu", text, r.cfg.purge_threshold,
                 cases[i].value);
  }
}

Test(config, size_bad_values) {
  static const char *const syntax[] = { "12Q", "", "K", "-1", "+5", "1.5M", "64 K", "64KK", "64KiBB",
                                        "0x10", "1P", "64Ki", "1e6", "10MBi", "M64" };
  for (size_t i = 0; i < sizeof syntax / sizeof syntax[0]; i++) {
    char text[96], msg[192];
    snprintf(text, sizeof text, "purge_threshold=%s", syntax[i]);
    snprintf(msg, sizeof msg,
             "bad size '%s' for 'purge_threshold': expected a number with optional K, M, G, T suffix", syntax[i]);
    problem(text, "purge_threshold", msg);
  }
  static const char *const overflow[] = { "99999999999999999999", "18446744073709551616", "16777216T",
                                          "17179869184G", "18446744073709551615K" };
  for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
    char text[96], msg[192];
    snprintf(text, sizeof text, "purge_threshold=%s", overflow[i]);
    snprintf(msg, sizeof msg,
             "bad size '%s' for 'purge_threshold': too large (the largest size is 18446744073709551615)",
             overflow[i]);
    problem(text, "purge_threshold", msg);
  }
}

Test(config, bad_value_keeps_previous_value) {
  parsed_t r = parse("purge_threshold=8M,purge_threshold=lots");
  cr_expect_eq(r.n, 1);
  cr_expect_eq(r.cfg.purge_threshold, 8 * MiB);
  r = parse("junk=on,junk=perhaps,purge_delay=7,purge_delay=-1");
  cr_expect_eq(r.n, 2);
  cr_expect(r.cfg.junk);
  cr_expect_eq(r.cfg.purge_delay_ms, 7u);
  r = parse("strategy=compact,strategy=fastest");
  cr_expect_eq(r.n, 1);
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_COMPACT);
  cr_expect_eq(r.cfg.classes_per_doubling, 8u);
}

Test(config, bump_region_values) {
  cr_expect_eq(ok("bump_region=64K").cfg.bump_region, 64 * KiB);
  cr_expect_eq(ok("bump_region=128KiB").cfg.bump_region, 128 * KiB);
  cr_expect_eq(ok("bump_region=2m").cfg.bump_region, 2 * MiB);
  cr_expect_eq(ok("bump_region=2097152").cfg.bump_region, 2 * MiB);
  static const char *const bad[] = { "32K", "65535", "96K", "100K", "4M", "64M", "128M", "0", "1T" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[64], msg[192];
    snprintf(text, sizeof text, "bump_region=%s", bad[i]);
    snprintf(msg, sizeof msg, "bad value '%s' for 'bump_region': expected a power of two from 64K to 2M", bad[i]);
    problem(text, "bump_region", msg);
  }
  problem("bump_region=1Q", "bump_region",
          "bad size '1Q' for 'bump_region': expected a number with optional K, M, G, T suffix");
}

/* ------------------------------------------------------------------------------------------
 * purge_delay (milliseconds), booleans
 * ------------------------------------------------------------------------------------------ */

Test(config, purge_delay_values) {
  cr_expect_eq(ok("purge_delay=0").cfg.purge_delay_ms, 0u);
  cr_expect_eq(ok("purge_delay=250").cfg.purge_delay_ms, 250u);
  cr_expect_eq(ok("purge_delay=250ms").cfg.purge_delay_ms, 250u);
  cr_expect_eq(ok("purge_delay=250MS").cfg.purge_delay_ms, 250u);
  cr_expect_eq(ok("purge_delay=2s").cfg.purge_delay_ms, 2000u);
  cr_expect_eq(ok("purge_delay=3600000").cfg.purge_delay_ms, 3600000u);
  cr_expect_eq(ok("purge_delay=3600s").cfg.purge_delay_ms, 3600000u);
  static const char *const bad[] = { "3600001", "3601s", "-1", "1.5", "5m", "", "ms", "99999999999999999999",
                                     "18446744073709551615s", "1h" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[64], msg[192];
    snprintf(text, sizeof text, "purge_delay=%s", bad[i]);
    snprintf(msg, sizeof msg,
             "bad value '%s' for 'purge_delay': expected milliseconds from 0 to 3600000 (optional ms or s suffix)",
             bad[i]);
    problem(text, "purge_delay", msg);
  }
}

Test(config, booleans) {
  static const struct {
    const char *word;
    bool value;
  } words[] = { { "1", true },      { "0", false },      { "on", true },  { "off", false }, { "true", true },
                { "false", false }, { "yes", true },     { "no", false }, { "ON", true },   { "False", false },
                { "YES", true },    { " off ", false } };
  static const char *const keys[] = { "junk", "fill", "strict" };
  for (size_t k = 0; k < 3; k++)
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
      char text[64];
      /* Start from the opposite value so that the assignment is visible. */
      snprintf(text, sizeof text, "%s=%s,%s=%s", keys[k], words[i].value ? "0" : "1", keys[k], words[i].word);
      parsed_t r = ok(text);
      bool got = k == 0 ? r.cfg.junk : k == 1 ? r.cfg.fill : r.cfg.strict;
      cr_expect_eq(got, words[i].value, "'%s'", text);
    }
  problem("junk=2", "junk", "bad value '2' for 'junk': expected 1|0|on|off|true|false|yes|no");
  problem("fill=ture", "fill", "bad value 'ture' for 'fill': expected 1|0|on|off|true|false|yes|no (did you mean 'true'?)");
  problem("strict=", "strict", "bad value '' for 'strict': expected 1|0|on|off|true|false|yes|no");
  problem("strict=yesno", "strict", "bad value 'yesno' for 'strict': expected 1|0|on|off|true|false|yes|no");
}

/* ------------------------------------------------------------------------------------------
 * Overrides and presets at their position
 * ------------------------------------------------------------------------------------------ */

Test(config, later_keys_win) {
  parsed_t r = ok("purge_delay=5,purge_delay=9,junk=on,junk=off,classes=8,classes=4");
  cr_expect_eq(r.cfg.purge_delay_ms, 9u);
  cr_expect_not(r.cfg.junk);
  cr_expect_eq(r.cfg.classes_per_doubling, 4u);
}

Test(config, strategy_sets_keys_where_it_appears) {
  parsed_t r = ok("purge_delay=5,strategy=compact");
  cr_expect_eq(r.cfg.purge_delay_ms, 10u, "compact after purge_delay overrides it");
  r = ok("strategy=compact,purge_delay=5");
  cr_expect_eq(r.cfg.purge_delay_ms, 5u, "purge_delay after compact overrides it");
  cr_expect_eq(r.cfg.classes_per_doubling, 8u);
  cr_expect_eq(r.cfg.purge_threshold, 4 * MiB);

  r = ok("route=0-:pool,strategy=throughput");
  expect_route(&r.cfg, throughput_route, 3, "route then strategy");
  r = ok("strategy=throughput,route=0-:pool");
  static const range_t all_pool[] = { { 0, SIZE_MAX, NM_BACKEND_POOL } };
  expect_route(&r.cfg, all_pool, 1, "strategy then route");
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_THROUGHPUT);

  /* Strategies leave the other keys alone. */
  r = ok("junk=on,bump_region=2M,strict=1,strategy=system");
  cr_expect(r.cfg.junk);
  cr_expect(r.cfg.strict);
  cr_expect_eq(r.cfg.bump_region, 2 * MiB);
}

Test(config, preset_sets_keys_where_it_appears) {
  parsed_t r = ok("junk=off,preset=development");
  cr_expect(r.cfg.junk);
  r = ok("preset=development,junk=off");
  cr_expect_not(r.cfg.junk);
  cr_expect(r.cfg.fill);
  /* Presets and strategies are independent. */
  r = ok("preset=development,strategy=compact");
  cr_expect(r.cfg.junk);
  cr_expect_eq(r.cfg.strategy, NM_STRATEGY_COMPACT);
  cr_expect_eq(r.cfg.preset, NM_PRESET_DEVELOPMENT);
}

/* ------------------------------------------------------------------------------------------
 * route=
 * ------------------------------------------------------------------------------------------ */

Test(config, route_examples) {
  static const range_t issue[] = { { 0, 256, NM_BACKEND_POOL },
                                   { 257, 64 * KiB, NM_BACKEND_BUMP },
                                   { 64 * KiB + 1, SIZE_MAX, NM_BACKEND_SYSTEM } };
  /* The issue's example: 64K- after 257-64K starts at 64K+1. */
  parsed_t r = ok("route=0-256:pool,257-64K:bump,64K-:system");
  expect_route(&r.cfg, issue, 3, "issue example");
  /* The same written without a shared boundary. */
  r = ok("route=0-256:pool,257-65536:bump,65537-:system");
  expect_route(&r.cfg, issue, 3, "explicit");
  /* Whitespace, case, empty items inside the route. */
  r = ok(" route = 0 - 256 : Pool ,, 257-64KiB:BUMP , 64k- : system ");
  expect_route(&r.cfg, issue, 3, "spaced");
  /* The throughput route written out. */
  r = ok("route=0-64K:bump,64K-2M:pool,2M-:system");
  expect_route(&r.cfg, throughput_route, 3, "throughput route");
  r = ok("route=0-:system");
  expect_route(&r.cfg, system_route, 1, "one range");
  /* An explicit SIZE_MAX is as good as open-ended. */
  r = ok("route=0-18446744073709551615:pool");
  cr_expect_eq(r.cfg.range_count, 1u);
  cr_expect_eq(r.cfg.ranges[0].hi, SIZE_MAX);
  /* Single-size ranges. */
  static const range_t tiny[] = { { 0, 0, NM_BACKEND_SYSTEM }, { 1, 1, NM_BACKEND_BUMP }, { 2, SIZE_MAX, NM_BACKEND_POOL } };
  r = ok("route=0-0:system,1-1:bump,2-:pool");
  expect_route(&r.cfg, tiny, 3, "single sizes");
  /* Exactly NM_CONFIG_MAX_RANGES ranges. */
  r = ok("route=0-1:pool,2-3:bump,4-5:pool,6-7:bump,8-9:pool,10-11:bump,12-13:pool,14-:system");
  cr_expect_eq(r.cfg.range_count, NM_CONFIG_MAX_RANGES);
}

Test(config, route_consumes_its_commas_only) {
  parsed_t r = ok("route=0-256:pool,257-64K:bump,64K-:system,junk=on,classes=8");
  cr_expect_eq(r.cfg.range_count, 3u);
  cr_expect(r.cfg.junk);
  cr_expect_eq(r.cfg.classes_per_doubling, 8u);
  r = ok("junk=on,route=0-1K:pool,1K-:system,fill=1");
  cr_expect_eq(r.cfg.range_count, 2u);
  cr_expect_eq(r.cfg.ranges[1].lo, 1025u);
  cr_expect(r.cfg.junk);
  cr_expect(r.cfg.fill);
  /* Two routes: the later wins. */
  r = ok("route=0-:pool,route=0-1K:pool,1K-:system");
  cr_expect_eq(r.cfg.range_count, 2u);
  /* A key without '=' ends the route and is reported on its own. */
  r = parse("route=0-1K:pool,1K-:system,junk,fill=on");
  cr_expect_eq(r.n, 1);
  cr_expect_str_eq(r.p[0].message, "missing '=' after 'junk'");
  cr_expect_eq(r.cfg.range_count, 2u);
  cr_expect(r.cfg.fill);
}

Test(config, route_problems) {
  problem("route=0-256:pool,300-:system", "route",
          "gap in route: sizes 257-299 have no backend (between '0-256:pool' and '300-:system')");
  problem("route=0-256:pool,258-:system", "route",
          "gap in route: size 257 has no backend (between '0-256:pool' and '258-:system')");
  problem("route=0-64K:pool,2M-:system", "route",
          "gap in route: sizes 65537-2097151 have no backend (between '0-64K:pool' and '2M-:system')");
  problem("route=16-:pool", "route", "gap in route: sizes 0-15 have no backend (the first range '16-:pool' must start at 0)");
  problem("route=0-256:pool,200-:system", "route", "overlap in route: '200-:system' and '0-256:pool' both hold sizes 200-256");
  problem("route=0-1K:pool,100-2K:bump,2K-:system", "route",
          "overlap in route: '100-2K:bump' and '0-1K:pool' both hold sizes 100-1K");
  problem("route=0-256:pool,256-256:bump,257-:system", "route",
          "overlap in route: '256-256:bump' and '0-256:pool' both hold size 256");
  problem("route=0-:pool,5-:system", "route", "overlap in route: '5-:system' comes after the open-ended range '0-:pool'");
  problem("route=0-256:pool,257-:bmup", "route",
          "unknown backend 'bmup' in route range '257-:bmup': expected pool|bump|system (did you mean 'bump'?)");
  problem("route=0-:malloc", "route", "unknown backend 'malloc' in route range '0-:malloc': expected pool|bump|system");
  problem("route=0-:", "route", "unknown backend '' in route range '0-:': expected pool|bump|system");
  problem("route=0-12Q:pool,1M-:system", "route", "bad size '12Q' in route range '0-12Q:pool': expected a number with optional K, M, G, T suffix");
  problem("route=0-16777216T:pool", "route",
          "bad size '16777216T' in route range '0-16777216T:pool': too large (the largest size is 18446744073709551615)");
  problem("route=0-256", "route", "bad route range '0-256': no ':BACKEND' (expected LO-HI:BACKEND or LO-:BACKEND)");
  problem("route=0:pool", "route", "bad route range '0:pool': no '-' (expected LO-HI:BACKEND or LO-:BACKEND)");
  problem("route=300-200:pool", "route", "bad route range '300-200:pool': it ends before it starts");
  problem("route=0-1M:pool", "route",
          "route leaves sizes above 1M without a backend: the last range must be open-ended, like '1048577-:system'");
  problem("route=", "route", "bad value '' for 'route': expected ranges like 0-256:pool,257-:system");
  problem("route=,,", "route", "bad value '' for 'route': expected ranges like 0-256:pool,257-:system");
  problem("route=0-1:pool,2-3:pool,4-5:pool,6-7:pool,8-9:pool,10-11:pool,12-13:pool,14-15:pool,16-:system", "route",
          "route has 9 ranges; at most 8 are allowed");
  problem("route=-5:pool", "route",
          "bad size '' in route range '-5:pool': expected a number with optional K, M, G, T suffix");
  problem_prefix("route=pool", "route", "bad route range 'pool': no ':BACKEND'");
}

Test(config, route_reports_each_problem) {
  /* After a range that does not parse, the next one is not checked against anything. */
  parsed_t r = parse("route=0-256:pool,300-1K:bmup,2K-4K:bump,3K-5K:system");
  cr_assert_eq(r.n, 3, "%zu problems", r.n);
  cr_expect_str_eq(r.p[0].message,
                   "unknown backend 'bmup' in route range '300-1K:bmup': expected pool|bump|system (did you mean 'bump'?)");
  cr_expect_str_eq(r.p[1].message, "overlap in route: '3K-5K:system' and '2K-4K:bump' both hold sizes 3K-4K");
  cr_expect_str_eq(r.p[2].message, "route leaves sizes above 5K without a backend: the last range must be open-ended, like '5121-:system'");
}

Test(config, route_problem_keeps_previous_route) {
  parsed_t r = parse("strategy=throughput,route=0-256:pool,300-:system");
  cr_expect_eq(r.n, 1);
  expect_route(&r.cfg, throughput_route, 3, "after a bad route");
  r = parse("route=0-1K:bump,1K-:system,route=0-:bmup");
  cr_expect_eq(r.n, 1);
  static const range_t first[] = { { 0, 1024, NM_BACKEND_BUMP }, { 1025, SIZE_MAX, NM_BACKEND_SYSTEM } };
  expect_route(&r.cfg, first, 2, "after a bad second route");
}

/* Every good route covers 0..SIZE_MAX without gap or overlap. */
Test(config, good_routes_cover_all_sizes) {
  static const char *const texts[] = {
    "route=0-:pool",
    "route=0-0:pool,0-:bump",
    "route=0-256:pool,257-64K:bump,64K-:system",
    "route=0-1:pool,2-3:bump,4-5:pool,6-7:bump,8-9:pool,10-11:bump,12-13:pool,14-:system",
    "strategy=throughput",
    "strategy=system",
    "",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    parsed_t r = ok(texts[i]);
    const nm_config_t *c = &r.cfg;
    cr_assert_geq(c->range_count, 1u, "'%s'", texts[i]);
    cr_assert_leq(c->range_count, NM_CONFIG_MAX_RANGES, "'%s'", texts[i]);
    cr_expect_eq(c->ranges[0].lo, 0u, "'%s'", texts[i]);
    for (unsigned k = 1; k < c->range_count; k++)
      cr_expect_eq(c->ranges[k].lo, c->ranges[k - 1].hi + 1, "'%s': range %u", texts[i], k);
    for (unsigned k = 0; k < c->range_count; k++)
      cr_expect_leq(c->ranges[k].lo, c->ranges[k].hi, "'%s': range %u", texts[i], k);
    cr_expect_eq(c->ranges[c->range_count - 1].hi, SIZE_MAX, "'%s'", texts[i]);
  }
}

/* ---- diagnostics and statistics keys (issues 4 and 5) ---------------------------------- */

Test(config, budget_values) {
  parsed_t r = ok("budget=512M,pool_budget=1G,bump_budget=64KiB,system_budget=2g");
  cr_expect_eq(r.cfg.budget[NM_BUDGET_TOTAL], (size_t)512 << 20);
  cr_expect_eq(r.cfg.budget[NM_BACKEND_POOL], (size_t)1 << 30);
  cr_expect_eq(r.cfg.budget[NM_BACKEND_BUMP], (size_t)64 << 10);
  cr_expect_eq(r.cfg.budget[NM_BACKEND_SYSTEM], (size_t)2 << 30);
  r = ok("budget=1G,budget=0");   /* 0: no budget; later keys win */
  cr_expect_eq(r.cfg.budget[NM_BUDGET_TOTAL], 0u);
  nm_config_t d;
  nm_config_defaults(&d);
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++) cr_expect_eq(d.budget[i], 0u, "budget %u set by default", i);
  problem("budget=lots", "budget", "bad size 'lots' for 'budget': expected a number with optional K, M, G, T suffix");
  problem("pool_budget=99999999999999999999", "pool_budget",
          "bad size '99999999999999999999' for 'pool_budget': too large (the largest size is 18446744073709551615)");
}

Test(config, oom_and_misuse_values) {
  nm_config_t d;
  nm_config_defaults(&d);
  cr_expect_eq(d.oom, NM_OOM_NULL);
  cr_expect_eq(d.misuse, NM_MISUSE_ABORT);
  cr_expect_eq(ok("oom=abort").cfg.oom, NM_OOM_ABORT);
  cr_expect_eq(ok("oom=fallback").cfg.oom, NM_OOM_FALLBACK);
  cr_expect_eq(ok("oom=abort,oom=null").cfg.oom, NM_OOM_NULL);
  cr_expect_eq(ok("misuse=report").cfg.misuse, NM_MISUSE_REPORT);
  problem("oom=crash", "oom", "bad value 'crash' for 'oom': expected null|abort|fallback");
  problem("oom=fallbak", "oom", "bad value 'fallbak' for 'oom': expected null|abort|fallback (did you mean 'fallback'?)");
  problem("misuse=ignore", "misuse", "bad value 'ignore' for 'misuse': expected abort|report");
}

Test(config, canary_and_backtrace_values) {
  parsed_t r = ok("canary=on,alloc_backtrace=1");
  cr_expect(r.cfg.canary && r.cfg.alloc_backtrace);
  r = ok("preset=development");
  cr_expect(r.cfg.canary && r.cfg.alloc_backtrace && r.cfg.junk && r.cfg.fill);
  cr_expect_eq(r.cfg.stats, NM_STATS_TERMINAL);
  r = ok("preset=development,canary=off,preset=production");
  cr_expect(!r.cfg.canary && !r.cfg.alloc_backtrace && r.cfg.stats == NM_STATS_OFF);
  r = ok("preset=development,alloc_backtrace=off");   /* after the preset: it wins */
  cr_expect(r.cfg.canary && !r.cfg.alloc_backtrace);
  problem_prefix("canary=maybe", "canary", "bad value 'maybe' for 'canary': expected ");
  /* development samples; the boolean words keep their old meaning (on: every block). */
  cr_expect_eq(ok("preset=development").cfg.alloc_backtrace, NM_ALLOC_BACKTRACE_SAMPLE);
  cr_expect_eq(ok("alloc_backtrace=sample").cfg.alloc_backtrace, NM_ALLOC_BACKTRACE_SAMPLE);
  cr_expect_eq(ok("alloc_backtrace=full").cfg.alloc_backtrace, NM_ALLOC_BACKTRACE_FULL);
  static const char *const full_words[] = { "on", "1", "true", "yes", NULL };
  static const char *const off_words[] = { "off", "0", "false", "no", NULL };
  char text[64];
  for (const char *const *w = full_words; *w; w++) {
    snprintf(text, sizeof text, "preset=development,alloc_backtrace=%s", *w);
    cr_expect_eq(ok(text).cfg.alloc_backtrace, NM_ALLOC_BACKTRACE_FULL, "%s", text);
  }
  for (const char *const *w = off_words; *w; w++) {
    snprintf(text, sizeof text, "preset=development,alloc_backtrace=%s", *w);
    cr_expect_eq(ok(text).cfg.alloc_backtrace, NM_ALLOC_BACKTRACE_OFF, "%s", text);
  }
  problem_prefix("alloc_backtrace=some", "alloc_backtrace",
                 "bad value 'some' for 'alloc_backtrace': expected off|sample|full|on|0|1|false|true|no|yes");
}

Test(config, stats_values) {
  nm_config_t d;
  nm_config_defaults(&d);
  cr_expect_eq(d.stats, NM_STATS_OFF);
  cr_expect_eq(d.stats_signal, NM_STATS_SIGUSR1);
  cr_expect_eq(d.stats_format, NM_STATS_TEXT);
  cr_expect_str_eq(d.stats_file, "");
  parsed_t r = ok("stats=exit,stats_signal=USR2,stats_format=prometheus,stats_file=/tmp/n.%p.prom");
  cr_expect_eq(r.cfg.stats, NM_STATS_EXIT);
  cr_expect_eq(r.cfg.stats_signal, NM_STATS_SIGUSR2);
  cr_expect_eq(r.cfg.stats_format, NM_STATS_PROMETHEUS);
  cr_expect_str_eq(r.cfg.stats_file, "/tmp/n.%p.prom");
  cr_expect_eq(ok("stats=terminal").cfg.stats, NM_STATS_TERMINAL);
  cr_expect_eq(ok("stats_signal=none").cfg.stats_signal, NM_STATS_NOSIGNAL);
  cr_expect_eq(ok("stats_format=json").cfg.stats_format, NM_STATS_JSON);
  cr_expect_str_eq(ok("stats_file=/a,stats_file=stderr").cfg.stats_file, "");
  problem("stats=always", "stats", "bad value 'always' for 'stats': expected off|exit|terminal");
  problem("stats_format=yaml", "stats_format", "bad value 'yaml' for 'stats_format': expected text|json|prometheus");
  problem("stats_file=", "stats_file",
          "bad value '' for 'stats_file': expected a file path (%p is replaced by the pid) or stderr");
  char longpath[300];
  memset(longpath, 'a', sizeof longpath);
  memcpy(longpath, "stats_file=/", 12);
  longpath[sizeof longpath - 1] = '\0';
  parsed_t bad = parse(longpath);
  cr_expect_eq(bad.n, 1u);
  cr_expect_str_eq(bad.cfg.stats_file, "", "a path too long must keep the previous value");
}

