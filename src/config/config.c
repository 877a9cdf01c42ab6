/* NEBULA_MEM_CONFIG: the strategy and preset tables, the defaults and the key table (both
 * made from config/options.h), and the item loop.
 *
 * The text is `key=value` items separated by commas. An item that has no '=' and starts with
 * a digit continues the previous item's value, which is how route= takes its comma-separated
 * ranges (`route=0-256:pool,257-:system,junk=on`). Items are applied in order, so later keys
 * override earlier ones and a strategy or preset sets its keys where it appears.
 *
 * Runs inside malloc's start-up: no allocation, no stdio, no locale; the work is linear in
 * the text, plus a bounded "did you mean" comparison per unknown word. */
#include <stddef.h>

#include "config/config_internal.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ------------------------------------------------------------------------------------------
 * Strategies and presets
 * ------------------------------------------------------------------------------------------ */

static const nm_route_range_t route_balanced[] = {
  { 0, 2 * MiB, NM_BACKEND_POOL },
  { 2 * MiB + 1, SIZE_MAX, NM_BACKEND_SYSTEM },
};
/* Every size up to 64K on bump: one allocation path, so random sizes do not make the fast
 * path alternate between pool and bump (measured: mixing them was slower than either). */
static const nm_route_range_t route_throughput[] = {
  { 0, 64 * KiB, NM_BACKEND_BUMP },
  { 64 * KiB + 1, 2 * MiB, NM_BACKEND_POOL },
  { 2 * MiB + 1, SIZE_MAX, NM_BACKEND_SYSTEM },
};
static const nm_route_range_t route_system[] = {
  { 0, SIZE_MAX, NM_BACKEND_SYSTEM },
};

/* What strategy=X sets: the route, classes, purge_threshold and purge_delay. */
typedef struct strategy_desc_s {
  const nm_route_range_t *ranges;
  unsigned range_count;
  unsigned classes_per_doubling;
  size_t purge_threshold;
  unsigned purge_delay_ms;
} strategy_desc_t;

#define ROUTE(r) r, (unsigned)(sizeof r / sizeof r[0])

static const strategy_desc_t strategies[] = {
  [NM_STRATEGY_BALANCED] = { ROUTE(route_balanced), 4, 32 * MiB, 50 },
  /* Request-shaped programs reuse what they freed at once: keep far more of it resident. */
  [NM_STRATEGY_THROUGHPUT] = { ROUTE(route_throughput), 4, 256 * MiB, 1000 },
  [NM_STRATEGY_COMPACT] = { ROUTE(route_balanced), 8, 4 * MiB, 10 },
  [NM_STRATEGY_SYSTEM] = { ROUTE(route_system), 4, 32 * MiB, 50 },
};

static const char *const strategy_names[] = { "balanced", "throughput", "compact", "system", NULL };
static const char *const preset_names[] = { "production", "development", NULL };
static const char *const classes_names[] = { "4", "8", NULL };
static const char *const oom_names[] = { "null", "abort", "fallback", NULL };
static const char *const misuse_names[] = { "abort", "report", NULL };
/* The boolean words stay valid: on (and its synonyms) is every block, as it always was. */
static const char *const alloc_backtrace_names[] = { "off", "sample", "full", "on", "0", "1", "false",
                                                     "true", "no", "yes", NULL };

static const char *const stats_names[] = { "off", "exit", "terminal", NULL };
static const char *const stats_signal_names[] = { "USR1", "USR2", "none", NULL };
static const char *const stats_format_names[] = { "text", "json", "prometheus", NULL };

/* The stats keys also record that statistics were asked for (nm_config_t.stats_asked). */
static void apply_stats(nm_config_t *cfg, unsigned which) {
  cfg->stats = (nm_stats_when_t)which;
  cfg->stats_asked = true;
}
static void apply_stats_signal(nm_config_t *cfg, unsigned which) {
  cfg->stats_signal = (nm_stats_signal_t)which;
  cfg->stats_asked = true;
}
static void apply_stats_format(nm_config_t *cfg, unsigned which) {
  cfg->stats_format = (nm_stats_format_t)which;
  cfg->stats_asked = true;
}
static void apply_alloc_backtrace(nm_config_t *cfg, unsigned which) {
  static const uint8_t mode[] = { NM_ALLOC_BACKTRACE_OFF,  NM_ALLOC_BACKTRACE_SAMPLE, NM_ALLOC_BACKTRACE_FULL,
                                  NM_ALLOC_BACKTRACE_FULL, NM_ALLOC_BACKTRACE_OFF,    NM_ALLOC_BACKTRACE_FULL,
                                  NM_ALLOC_BACKTRACE_OFF,  NM_ALLOC_BACKTRACE_FULL,   NM_ALLOC_BACKTRACE_OFF,
                                  NM_ALLOC_BACKTRACE_FULL };
  cfg->alloc_backtrace = (nm_alloc_backtrace_t)mode[which];
}

static void apply_strategy(nm_config_t *cfg, unsigned which) {
  const strategy_desc_t *s = &strategies[which];
  cfg->strategy = (nm_strategy_t)which;
  cfg->range_count = s->range_count;
  for (unsigned i = 0; i < NM_CONFIG_MAX_RANGES; i++)
    cfg->ranges[i] = i < s->range_count ? s->ranges[i] : (nm_route_range_t){ 0, 0, NM_BACKEND_POOL };
  cfg->classes_per_doubling = s->classes_per_doubling;
  cfg->purge_threshold = s->purge_threshold;
  cfg->purge_delay_ms = s->purge_delay_ms;
}

/* What preset=X sets: the debugging aids. */
static void apply_preset(nm_config_t *cfg, unsigned which) {
  bool dev = which == NM_PRESET_DEVELOPMENT;
  cfg->preset = (nm_preset_t)which;
  cfg->junk = dev;
  cfg->fill = dev;
  cfg->canary = dev;
  cfg->alloc_backtrace = dev ? NM_ALLOC_BACKTRACE_SAMPLE : NM_ALLOC_BACKTRACE_OFF;
  cfg->stats = dev ? NM_STATS_TERMINAL : NM_STATS_OFF;
}

static void apply_classes(nm_config_t *cfg, unsigned which) {
  cfg->classes_per_doubling = which == 0 ? 4 : 8;
}

/* Each OPT row's default (config/options.h), then what the default strategy and preset set. */
#define OPT_DEFAULT(key, KIND, type, field, dflt, ...) .field = dflt,
#define KEY_NO_DEFAULT(...)
static const nm_config_t config_defaults = { NM_CONFIG_OPTIONS(OPT_DEFAULT, KEY_NO_DEFAULT) };

void nm_config_defaults(nm_config_t *cfg) {
  *cfg = config_defaults;
  apply_strategy(cfg, cfg->strategy);
  apply_preset(cfg, cfg->preset);
}

/* ------------------------------------------------------------------------------------------
 * The key table
 * ------------------------------------------------------------------------------------------ */

typedef enum key_kind_e {
  KIND_ENUM,      /* one of `choices`; `apply` stores it, or its index is stored at `offset` */
  KIND_ROUTE,     /* route= ranges */
  KIND_SIZE,      /* size_t at `offset`, min..max */
  KIND_POW2,      /* size_t at `offset`, a power of two in min..max */
  KIND_MS,        /* unsigned at `offset`, milliseconds min..max */
  KIND_BOOL,      /* bool at `offset` */
  KIND_PATH,      /* char[NM_CONFIG_PATH_MAX] at `offset`; "stderr" stores "" */
} key_kind_t;

typedef struct key_desc_s {
  const char *name;
  key_kind_t kind;
  size_t offset;
  const char *const *choices;
  void (*apply)(nm_config_t *cfg, unsigned which);
  uint64_t min, max;
} key_desc_t;

#define FIELD(f) offsetof(nm_config_t, f)

/* The arguments that follow a row's field (and default), by KIND (config/options.h). */
#define KIND_ARGS_ENUM(names, fn) .choices = (names), .apply = (fn)
#define KIND_ARGS_ROUTE()
#define KIND_ARGS_SIZE(lo, hi) .min = (lo), .max = (hi)
#define KIND_ARGS_POW2(lo, hi) .min = (lo), .max = (hi)
#define KIND_ARGS_MS(lo, hi) .min = (lo), .max = (hi)
#define KIND_ARGS_BOOL() .choices = nm_bool_words
#define KIND_ARGS_PATH()

#define KEY_DESC(key, KIND, field, ...) \
  { .name = #key, .kind = KIND_##KIND, .offset = FIELD(field), KIND_ARGS_##KIND(__VA_ARGS__) },
#define OPT_DESC(key, KIND, type, field, dflt, ...) KEY_DESC(key, KIND, field, __VA_ARGS__)
#define KEY_NAME(key, ...) #key,

static const key_desc_t keys[] = { NM_CONFIG_OPTIONS(OPT_DESC, KEY_DESC) };
static const char *const key_names[] = { NM_CONFIG_OPTIONS(KEY_NAME, KEY_NAME) NULL };

/* An ENUM row without apply stores the index through an unsigned: its field must be one. */
#define OPT_CHECK(key, KIND, type, field, ...) \
  _Static_assert(KIND_##KIND != KIND_ENUM || sizeof(type) == sizeof(unsigned), #key ": not an unsigned");
#define KEY_NO_CHECK(...)
NM_CONFIG_OPTIONS(OPT_CHECK, KEY_NO_CHECK)

#define KEY_COUNT (sizeof keys / sizeof keys[0])

const char *const *nm_config_keys(void) { return key_names; }

static const key_desc_t *find_key(nm_span_t name) {
  for (size_t i = 0; i < KEY_COUNT; i++)
    if (nm_span_eq(name, keys[i].name)) return &keys[i];
  return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------------------------ */

/* "<what> 'v' for 'k': " (the caller adds what was expected). */
static nm_buf_t bad_value(nm_parse_ctx_t *ctx, nm_span_t key, nm_span_t value, const char *what) {
  nm_buf_t b = nm_problem_begin(ctx, key);
  nm_buf_str(&b, what);
  nm_buf_char(&b, ' ');
  nm_buf_quoted(&b, value);
  nm_buf_str(&b, " for ");
  nm_buf_quoted(&b, key);
  nm_buf_str(&b, ": ");
  return b;
}

/* "bad value 'x' for 'k': expected a|b|c (did you mean 'b'?)" */
static void bad_choice(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value) {
  nm_buf_t b = bad_value(ctx, key, value, "bad value");
  nm_buf_str(&b, "expected ");
  nm_buf_choices(&b, k->choices);
  nm_buf_suggestion(&b, nm_closest(value, k->choices, true));
  nm_problem_end(&b);
}

static void set_enum(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value,
                     nm_config_t *cfg) {
  int i = nm_choice_index(value, k->choices);
  if (i < 0) bad_choice(ctx, k, key, value);
  else if (k->apply) k->apply(cfg, (unsigned)i);
  else *(unsigned *)((char *)cfg + k->offset) = (unsigned)i;
}

static void set_bool(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value,
                     nm_config_t *cfg) {
  bool v;
  if (nm_parse_bool(value, &v)) *(bool *)((char *)cfg + k->offset) = v;
  else bad_choice(ctx, k, key, value);
}

static bool is_pow2(uint64_t v) { return v && (v & (v - 1)) == 0; }

static void set_size(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value,
                     nm_config_t *cfg) {
  size_t v;
  nm_num_status_t s = nm_parse_size(value, &v);
  if (s != NM_NUM_OK) {
    nm_buf_t b = bad_value(ctx, key, value, "bad size");
    nm_buf_str(&b, s == NM_NUM_OVERFLOW ? "too large (the largest size is 18446744073709551615)"
                                        : NM_EXPECT_SIZE);
    nm_problem_end(&b);
    return;
  }
  bool pow2 = k->kind == KIND_POW2;
  if (v < k->min || v > k->max || (pow2 && !is_pow2(v))) {
    nm_buf_t b = bad_value(ctx, key, value, "bad value");
    nm_buf_str(&b, pow2 ? "expected a power of two from " : "expected a size from ");
    nm_buf_size(&b, k->min);
    nm_buf_str(&b, " to ");
    nm_buf_size(&b, k->max);
    nm_problem_end(&b);
    return;
  }
  *(size_t *)((char *)cfg + k->offset) = v;
}

static void set_ms(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value,
                   nm_config_t *cfg) {
  uint64_t v;
  if (nm_parse_ms(value, &v) == NM_NUM_OK && v >= k->min && v <= k->max) {
    *(unsigned *)((char *)cfg + k->offset) = (unsigned)v;
    return;
  }
  nm_buf_t b = bad_value(ctx, key, value, "bad value");
  nm_buf_str(&b, "expected milliseconds from ");
  nm_buf_u64(&b, k->min);
  nm_buf_str(&b, " to ");
  nm_buf_u64(&b, k->max);
  nm_buf_str(&b, " (optional ms or s suffix)");
  nm_problem_end(&b);
}

static void set_path(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value,
                     nm_config_t *cfg) {
  char *out = (char *)cfg + k->offset;
  if (value.n == 0 || value.n >= NM_CONFIG_PATH_MAX) {
    nm_buf_t b = bad_value(ctx, key, value, "bad value");
    nm_buf_str(&b, value.n ? "expected a path shorter than 256 bytes"
                           : "expected a file path (%p is replaced by the pid) or stderr");
    nm_problem_end(&b);
    return;
  }
  if (k->offset == FIELD(stats_file)) cfg->stats_asked = true;
  if (nm_span_eq(value, "stderr")) {
    out[0] = '\0';
    return;
  }
  for (size_t i = 0; i < value.n; i++) out[i] = value.p[i];
  out[value.n] = '\0';
}

static void set_value(nm_parse_ctx_t *ctx, const key_desc_t *k, nm_span_t key, nm_span_t value,
                      nm_config_t *cfg) {
  switch (k->kind) {
  case KIND_ENUM: set_enum(ctx, k, key, value, cfg); break;
  case KIND_ROUTE: nm_route_parse(ctx, key, value, cfg); break;
  case KIND_SIZE:
  case KIND_POW2: set_size(ctx, k, key, value, cfg); break;
  case KIND_MS: set_ms(ctx, k, key, value, cfg); break;
  case KIND_BOOL: set_bool(ctx, k, key, value, cfg); break;
  case KIND_PATH: set_path(ctx, k, key, value, cfg); break;
  }
}

/* ------------------------------------------------------------------------------------------
 * Items
 * ------------------------------------------------------------------------------------------ */

static void unknown_key(nm_parse_ctx_t *ctx, nm_span_t key, bool has_equals) {
  const char *near = nm_closest(key, key_names, true);
  nm_buf_t b = nm_problem_begin(ctx, key);
  if (has_equals) {
    nm_buf_str(&b, "unknown key ");
    nm_buf_quoted(&b, key);
  } else {
    nm_buf_str(&b, "missing '=' after ");
    nm_buf_quoted(&b, key);
    nm_buf_str(&b, ", which is not a key");
  }
  if (near && nm_span_ieq(key, near)) {
    nm_buf_str(&b, " (keys are lowercase: did you mean '");
    nm_buf_str(&b, near);
    nm_buf_str(&b, "'?)");
  } else {
    nm_buf_suggestion(&b, near);
  }
  nm_problem_end(&b);
}

/* An item without '='. */
static void no_equals(nm_parse_ctx_t *ctx, nm_span_t item) {
  if (nm_is_digit(item.p[0])) {
    nm_buf_t b = nm_problem_begin(ctx, nm_span(item.p, 0));
    nm_buf_str(&b, "missing key in ");
    nm_buf_quoted(&b, item);
    nm_buf_str(&b, ": expected key=value");
    if (nm_span_find(item, ':') < item.n) nm_buf_str(&b, " (route ranges follow route=)");
    nm_problem_end(&b);
  } else if (find_key(item)) {
    nm_buf_t b = nm_problem_begin(ctx, item);
    nm_buf_str(&b, "missing '=' after ");
    nm_buf_quoted(&b, item);
    nm_problem_end(&b);
  } else {
    unknown_key(ctx, item, false);
  }
}

static void apply_item(nm_parse_ctx_t *ctx, nm_span_t item, size_t eq, nm_span_t value,
                       nm_config_t *cfg) {
  nm_span_t key = nm_span_trim(nm_span_sub(item, 0, eq));
  if (key.n == 0) {
    nm_buf_t b = nm_problem_begin(ctx, key);
    nm_buf_str(&b, "empty key in ");
    nm_buf_quoted(&b, item);
    nm_problem_end(&b);
    return;
  }
  const key_desc_t *k = find_key(key);
  if (!k) {
    unknown_key(ctx, key, true);
    return;
  }
  set_value(ctx, k, key, value, cfg);
}

typedef struct cursor_s {
  const char *p, *end;   /* p > end: no items left */
} cursor_t;

static bool next_item(cursor_t *c, nm_span_t *item) {
  if (c->p > c->end) return false;
  const char *q = c->p;
  while (q < c->end && *q != ',') q++;
  *item = nm_span(c->p, (size_t)(q - c->p));
  c->p = q + 1;
  return true;
}

/* After `key=value`: takes the items that continue the value (no '=', starting with a digit;
 * empty items in between are skipped) and returns where the value ends. */
static const char *value_end(cursor_t *c, const char *end) {
  for (;;) {
    cursor_t look = *c;
    nm_span_t item;
    if (!next_item(&look, &item)) return end;
    nm_span_t t = nm_span_trim(item);
    if (t.n && (!nm_is_digit(t.p[0]) || nm_span_find(t, '=') < t.n)) return end;
    if (t.n) end = t.p + t.n;
    *c = look;
  }
}

void nm_config_foreach_item(const char *text, nm_item_fn fn, void *arg) {
  if (!text) return;
  const char *end = text;
  while (*end) end++;
  cursor_t c = { text, end };
  nm_span_t item;
  while (next_item(&c, &item)) {
    item = nm_span_trim(item);
    if (item.n == 0) continue;
    size_t eq = nm_span_find(item, '=');
    if (eq == item.n) {
      fn(arg, item, eq, nm_span(item.p + item.n, 0));
      continue;
    }
    const char *vstart = item.p + eq + 1;
    const char *vend = value_end(&c, item.p + item.n);
    nm_span_t value = nm_span_trim(nm_span(vstart, (size_t)(vend - vstart)));
    fn(arg, nm_span(item.p, (size_t)(vend - item.p)), eq, value);
  }
}

typedef struct parse_arg_s {
  nm_parse_ctx_t ctx;
  nm_config_t *cfg;
} parse_arg_t;

static void parse_one(void *arg, nm_span_t item, size_t eq, nm_span_t value) {
  parse_arg_t *a = arg;
  if (eq == item.n) no_equals(&a->ctx, item);
  else apply_item(&a->ctx, item, eq, value, a->cfg);
}

size_t nm_config_parse(const char *text, nm_config_t *cfg, nm_config_problem_t *problems,
                       size_t max_problems) {
  parse_arg_t a = { .ctx = { .problems = problems, .max = problems ? max_problems : 0 }, .cfg = cfg };
  if (!text || !cfg) return 0;
  nm_config_foreach_item(text, parse_one, &a);
  return a.ctx.count;
}
