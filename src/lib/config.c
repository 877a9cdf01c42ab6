/* nebula_config_t: the library's keys, parsed here; every other key is handed to the
 * preload's parser (src/config), so both accept the same strings with the same messages. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <nebula/budget.h>
#include <nebula/config.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "lib/lib_internal.h"

static void nm_lib_config_defaults(nebula_config_t *cfg, nebula_preset_t preset) {
  memset(cfg, 0, sizeof *cfg);
  cfg->preset = preset;
  cfg->capacity = (size_t)1 << 20;
  cfg->grow = true;
  cfg->block_size = 64;
  cfg->block_count = 1024;
  cfg->alignment = 16;
  cfg->poison = preset == NEBULA_PRESET_DEVELOPMENT;
  cfg->backtrace = preset == NEBULA_PRESET_DEVELOPMENT;
}

NEBULA_API void nebula_config_production(nebula_config_t *cfg) {
  nm_lib_config_defaults(cfg, NEBULA_PRESET_PRODUCTION);
}

NEBULA_API void nebula_config_development(nebula_config_t *cfg) {
  nm_lib_config_defaults(cfg, NEBULA_PRESET_DEVELOPMENT);
}

/* The keys this file owns; `preset` is both the library's and the preload's. */
enum { K_NAME, K_CAPACITY, K_GROW, K_THREAD_SAFE, K_BLOCK_SIZE, K_BLOCK_COUNT, K_ALIGNMENT, K_BUDGET,
       K_POISON, K_BACKTRACE, K_PRESET, K_COUNT };
static const char *const nm_lib_keys[] = {
  "name", "capacity", "grow", "thread_safe", "block_size", "block_count", "alignment", "budget",
  "poison", "backtrace", "preset", NULL,
};

#define NM_LIB_ALIGN_MAX ((size_t)1 << 20)

typedef struct {
  nebula_config_t *cfg;
  nebula_config_problem_t *problems;
  size_t max, count;
  size_t preload_len;
} nm_lib_parse_t;

static void nm_lib_problem(nm_lib_parse_t *p, nm_span_t field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void nm_lib_problem(nm_lib_parse_t *p, nm_span_t field, const char *fmt, ...) {
  if (p->count++ >= p->max) return;
  nebula_config_problem_t *pr = &p->problems[p->count - 1];
  size_t n = field.n < sizeof pr->field - 1 ? field.n : sizeof pr->field - 1;
  memcpy(pr->field, field.p, n);
  pr->field[n] = '\0';
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pr->message, sizeof pr->message, fmt, ap);
  va_end(ap);
}

static nm_span_t nm_cstr(const char *s) { return nm_span(s, strlen(s)); }

static int nm_lib_key(nm_span_t key) {
  for (int i = 0; nm_lib_keys[i]; i++)
    if (nm_span_eq(key, nm_lib_keys[i])) return i;
  return -1;
}

static bool nm_preload_key(nm_span_t key) {
  for (const char *const *k = nm_config_keys(); *k; k++)
    if (nm_span_eq(key, *k)) return true;
  return false;
}

static void nm_lib_size(nm_lib_parse_t *p, nm_span_t key, nm_span_t v, size_t *out, bool zero_ok) {
  size_t n;
  nm_num_status_t st = nm_parse_size(v, &n);
  if (st != NM_NUM_OK)
    nm_lib_problem(p, key, "bad value '%.*s' for '%.*s': %s", (int)v.n, v.p, (int)key.n, key.p,
                   st == NM_NUM_OVERFLOW ? "too large" : "expected a size such as 4096, 64K or 1M");
  else if (n == 0 && !zero_ok)
    nm_lib_problem(p, key, "'%.*s' must be more than 0", (int)key.n, key.p);
  else
    *out = n;
}

static void nm_lib_bool(nm_lib_parse_t *p, nm_span_t key, nm_span_t v, bool *out) {
  if (!nm_parse_bool(v, out))
    nm_lib_problem(p, key, "bad value '%.*s' for '%.*s': expected on|off|true|false|1|0", (int)v.n, v.p,
                   (int)key.n, key.p);
}

static void nm_lib_preload_append(nm_lib_parse_t *p, nm_span_t item) {
  char *s = p->cfg->preload;
  size_t room = sizeof p->cfg->preload - 1 - p->preload_len;
  if (item.n + 1 > room) {
    nm_lib_problem(p, nm_cstr("preload"), "the preload keys do not fit in %zu characters",
                   sizeof p->cfg->preload - 1);
    return;
  }
  if (p->preload_len) s[p->preload_len++] = ',';
  memcpy(s + p->preload_len, item.p, item.n);
  p->preload_len += item.n;
  s[p->preload_len] = '\0';
}

static void nm_lib_item(void *arg, nm_span_t item, size_t eq, nm_span_t v) {
  nm_lib_parse_t *p = arg;
  nebula_config_t *cfg = p->cfg;
  if (eq == item.n) {
    nm_lib_problem(p, nm_span(item.p, 0), "'%.*s' is not key=value", (int)item.n, item.p);
    return;
  }
  nm_span_t key = nm_span_trim(nm_span_sub(item, 0, eq));
  int k = nm_lib_key(key);
  if (k < 0) {
    if (nm_preload_key(key)) {
      nm_lib_preload_append(p, item);
      return;
    }
    const char *near = nm_closest(key, nm_lib_keys, false);
    if (near == NULL) near = nm_closest(key, nm_config_keys(), false);
    if (near)
      nm_lib_problem(p, key, "unknown key '%.*s' (did you mean '%s'?)", (int)key.n, key.p, near);
    else
      nm_lib_problem(p, key, "unknown key '%.*s'", (int)key.n, key.p);
    return;
  }
  switch (k) {
  case K_NAME:
    if (v.n == 0 || v.n >= sizeof cfg->name)
      nm_lib_problem(p, key, "'name' must be 1 to %zu characters", sizeof cfg->name - 1);
    else {
      memcpy(cfg->name, v.p, v.n);
      cfg->name[v.n] = '\0';
    }
    break;
  case K_CAPACITY: nm_lib_size(p, key, v, &cfg->capacity, false); break;
  case K_GROW: nm_lib_bool(p, key, v, &cfg->grow); break;
  case K_THREAD_SAFE: nm_lib_bool(p, key, v, &cfg->thread_safe); break;
  case K_BLOCK_SIZE: nm_lib_size(p, key, v, &cfg->block_size, false); break;
  case K_BLOCK_COUNT: nm_lib_size(p, key, v, &cfg->block_count, false); break;
  case K_ALIGNMENT: {
    size_t a = cfg->alignment;
    nm_lib_size(p, key, v, &a, false);
    if (a & (a - 1) || a > NM_LIB_ALIGN_MAX)
      nm_lib_problem(p, key, "bad value '%.*s' for 'alignment': a power of two up to 1M", (int)v.n, v.p);
    else
      cfg->alignment = a;
    break;
  }
  case K_BUDGET: nm_lib_size(p, key, v, &cfg->budget, true); break;
  case K_POISON: nm_lib_bool(p, key, v, &cfg->poison); break;
  case K_BACKTRACE: nm_lib_bool(p, key, v, &cfg->backtrace); break;
  case K_PRESET: {
    char saved[sizeof cfg->preload];
    memcpy(saved, cfg->preload, sizeof saved);
    if (nm_span_ieq(v, "production")) nebula_config_production(cfg);
    else if (nm_span_ieq(v, "development")) nebula_config_development(cfg);
    else {
      nm_lib_problem(p, key, "bad value '%.*s' for 'preset': expected production|development", (int)v.n, v.p);
      break;
    }
    memcpy(cfg->preload, saved, sizeof saved);
    nm_lib_preload_append(p, item);   /* the preload has presets too */
    break;
  }
  }
}

static size_t nm_lib_finish(nm_lib_parse_t *p, const char *function) {
  if (p->count > 0 && p->max > 0) {
    nm_lib_fail(NEBULA_ERR_CONFIG, function, NULL, 0, 0, NULL, "see docs/library.md, \"Configuration\"",
                "%s%s: %s (%zu problem%s)", p->problems[0].field[0] ? p->problems[0].field : "",
                p->problems[0].field[0] ? "" : "syntax", p->problems[0].message, p->count,
                p->count == 1 ? "" : "s");
  } else if (p->count > 0) {
    nm_lib_fail(NEBULA_ERR_CONFIG, function, NULL, 0, 0, NULL, "see docs/library.md, \"Configuration\"",
                "%zu problem%s", p->count, p->count == 1 ? "" : "s");
  }
  return p->count;
}

NEBULA_API size_t nebula_config_parse(const char *text, nebula_config_t *cfg, nebula_config_problem_t *problems,
                                      size_t max) {
  nebula_config_problem_t scratch[1];
  nm_lib_parse_t p = { cfg, problems ? problems : scratch, problems ? max : 1, 0, 0 };
  if (cfg == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_config_parse", NULL, 0, 0, NULL, "pass a config",
                "the config is NULL");
    return 1;
  }
  p.preload_len = strnlen(cfg->preload, sizeof cfg->preload - 1);
  size_t before = p.preload_len;
  nm_config_foreach_item(text, nm_lib_item, &p);
  if (p.preload_len > before) {
    /* The preload's keys are checked by its own parser, on a scratch copy of its config. */
    nm_config_t pre;
    nm_config_defaults(&pre);
    nm_config_problem_t found[8];
    size_t n = nm_config_parse(cfg->preload + before + (before > 0), &pre, found, 8);
    for (size_t i = 0; i < n && i < 8; i++)
      nm_lib_problem(&p, nm_cstr(found[i].key), "%s", found[i].message);
    if (n > 8) p.count += n - 8;
  }
  return nm_lib_finish(&p, "nebula_config_parse");
}

NEBULA_API size_t nebula_config_validate(const nebula_config_t *cfg, nebula_config_problem_t *problems,
                                         size_t max) {
  nebula_config_problem_t scratch[1];
  nm_lib_parse_t p = { (nebula_config_t *)cfg, problems ? problems : scratch, problems ? max : 1, 0, 0 };
  if (cfg == NULL) {
    nm_lib_fail(NEBULA_ERR_INVALID_ARGUMENT, "nebula_config_validate", NULL, 0, 0, NULL, "pass a config",
                "the config is NULL");
    return 1;
  }
  if (cfg->preset != NEBULA_PRESET_PRODUCTION && cfg->preset != NEBULA_PRESET_DEVELOPMENT)
    nm_lib_problem(&p, nm_cstr("preset"), "preset %d is not production (0) or development (1)", (int)cfg->preset);
  if (memchr(cfg->name, '\0', sizeof cfg->name) == NULL)
    nm_lib_problem(&p, nm_cstr("name"), "name is not NUL-terminated within %zu bytes", sizeof cfg->name);
  if (cfg->capacity == 0) nm_lib_problem(&p, nm_cstr("capacity"), "capacity must be more than 0");
  if (cfg->block_size == 0) nm_lib_problem(&p, nm_cstr("block_size"), "block_size must be more than 0");
  if (cfg->block_count == 0) nm_lib_problem(&p, nm_cstr("block_count"), "block_count must be more than 0");
  size_t stride;
  if (cfg->block_size && cfg->block_count && __builtin_mul_overflow(cfg->block_size, cfg->block_count, &stride))
    nm_lib_problem(&p, nm_cstr("block_count"), "block_size * block_count (%zu * %zu) overflows", cfg->block_size,
                   cfg->block_count);
  if (cfg->alignment == 0 || (cfg->alignment & (cfg->alignment - 1)) || cfg->alignment > NM_LIB_ALIGN_MAX)
    nm_lib_problem(&p, nm_cstr("alignment"), "alignment %zu is not a power of two up to 1M", cfg->alignment);
  if (cfg->budget && cfg->capacity > cfg->budget)
    nm_lib_problem(&p, nm_cstr("capacity"), "capacity %zu is more than the budget %zu", cfg->capacity, cfg->budget);
  if (memchr(cfg->preload, '\0', sizeof cfg->preload) == NULL) {
    nm_lib_problem(&p, nm_cstr("preload"), "preload is not NUL-terminated");
  } else if (cfg->preload[0]) {
    nm_config_t pre;
    nm_config_defaults(&pre);
    nm_config_problem_t found[8];
    size_t n = nm_config_parse(cfg->preload, &pre, found, 8);
    for (size_t i = 0; i < n && i < 8; i++) nm_lib_problem(&p, nm_cstr(found[i].key), "%s", found[i].message);
  }
  return nm_lib_finish(&p, "nebula_config_validate");
}

bool nm_lib_config_load(const char *text, const char *kind, nebula_config_t *cfg, nebula_budget_t **budget) {
  nebula_config_production(cfg);
  *budget = NULL;
  nebula_config_problem_t problem;
  if (text != NULL && nebula_config_parse(text, cfg, &problem, 1) != 0) return false;   /* recorded */
  if (cfg->budget != 0) {
    *budget = nebula_budget_create(cfg->name[0] ? cfg->name : kind, cfg->budget, NULL);
    if (*budget == NULL) return false;
  }
  return true;
}

void nm_lib_config_unload(nebula_budget_t *budget) {
  nebula_error_t saved = *nebula_last_error();
  nebula_budget_destroy(budget);
  *nm_lib_error_slot() = saved;
}
