/* route=: size ranges and their backends, `0-256:pool,257-64K:bump,64K-:system`.
 *
 * Rules (docs/configuration.md, "route"): ranges are LO-HI:BACKEND (HI inclusive) or
 * LO-:BACKEND (open-ended, up to SIZE_MAX); the first starts at 0; each next one starts right
 * after the previous one's HI, or at that HI itself, which is read as HI+1 (so the shared
 * boundary in `257-64K:bump,64K-:system` is accepted); a start below is an overlap, above a
 * gap; the last is open-ended; at most NM_CONFIG_MAX_RANGES ranges. Any problem keeps the
 * previous route whole. */
#include "config/config_internal.h"

const char *const nm_backend_names[NM_BACKEND_COUNT + 1] = { "pool", "large", "bump", "system", NULL };

/* What a route= range may name, and the backend each is. */
static const char *const nm_route_backend_names[] = { "pool", "bump", "system", NULL };
static const nm_backend_t nm_route_backends[] = { NM_BACKEND_POOL, NM_BACKEND_BUMP, NM_BACKEND_SYSTEM };

#define NM_EXPECT_RANGE "expected LO-HI:BACKEND or LO-:BACKEND"

typedef struct route_state_s {
  nm_parse_ctx_t *ctx;
  nm_span_t key;
  unsigned items;              /* non-empty range items seen */
  unsigned count;              /* ranges stored in `ranges` */
  bool ok;
  bool have_prev;              /* the previous item parsed: continuity can be checked */
  nm_route_range_t prev;
  nm_span_t prev_text;
  nm_route_range_t ranges[NM_CONFIG_MAX_RANGES];
} route_state_t;

static nm_buf_t route_problem(route_state_t *st) {
  st->ok = false;
  return nm_problem_begin(st->ctx, st->key);
}

static void bad_range(route_state_t *st, nm_span_t item, const char *why) {
  nm_buf_t b = route_problem(st);
  nm_buf_str(&b, "bad route range ");
  nm_buf_quoted(&b, item);
  nm_buf_str(&b, ": ");
  nm_buf_str(&b, why);
  nm_problem_end(&b);
}

static bool range_bound(route_state_t *st, nm_span_t item, nm_span_t text, size_t *out) {
  nm_num_status_t s = nm_parse_size(nm_span_trim(text), out);
  if (s == NM_NUM_OK) return true;
  nm_buf_t b = route_problem(st);
  nm_buf_str(&b, "bad size ");
  nm_buf_quoted(&b, nm_span_trim(text));
  nm_buf_str(&b, " in route range ");
  nm_buf_quoted(&b, item);
  nm_buf_str(&b, s == NM_NUM_OVERFLOW ? ": too large (the largest size is 18446744073709551615)"
                                      : ": " NM_EXPECT_SIZE);
  nm_problem_end(&b);
  return false;
}

/* One item: LO-HI:BACKEND or LO-:BACKEND. Reports and returns false on a syntax problem. */
static bool parse_range(route_state_t *st, nm_span_t item, nm_route_range_t *r) {
  size_t colon = nm_span_find(item, ':');
  if (colon == item.n) {
    bad_range(st, item, "no ':BACKEND' (" NM_EXPECT_RANGE ")");
    return false;
  }
  nm_span_t bounds = nm_span_sub(item, 0, colon);
  size_t dash = nm_span_find(bounds, '-');
  if (dash == bounds.n) {
    bad_range(st, item, "no '-' (" NM_EXPECT_RANGE ")");
    return false;
  }
  nm_span_t hi_text = nm_span_trim(nm_span_sub(bounds, dash + 1, bounds.n));
  if (!range_bound(st, item, nm_span_sub(bounds, 0, dash), &r->lo)) return false;
  r->hi = SIZE_MAX;
  if (hi_text.n && !range_bound(st, item, hi_text, &r->hi)) return false;
  if (r->hi < r->lo) {
    bad_range(st, item, "it ends before it starts");
    return false;
  }
  nm_span_t name = nm_span_trim(nm_span_sub(item, colon + 1, item.n));
  int backend = nm_choice_index(name, nm_route_backend_names);
  if (backend < 0) {
    nm_buf_t b = route_problem(st);
    nm_buf_str(&b, "unknown backend ");
    nm_buf_quoted(&b, name);
    nm_buf_str(&b, " in route range ");
    nm_buf_quoted(&b, item);
    nm_buf_str(&b, ": expected ");
    nm_buf_choices(&b, nm_route_backend_names);
    nm_buf_suggestion(&b, nm_closest(name, nm_route_backend_names, true));
    nm_problem_end(&b);
    return false;
  }
  r->backend = nm_route_backends[backend];
  return true;
}

static void buf_sizes(nm_buf_t *b, size_t lo, size_t hi) {
  nm_buf_str(b, lo == hi ? "size " : "sizes ");
  nm_buf_size(b, lo);
  if (lo != hi) {
    nm_buf_char(b, '-');
    nm_buf_size(b, hi);
  }
}

static void gap(route_state_t *st, nm_span_t item, size_t lo, size_t hi) {
  nm_buf_t b = route_problem(st);
  nm_buf_str(&b, "gap in route: ");
  buf_sizes(&b, lo, hi);
  nm_buf_str(&b, lo == hi ? " has no backend (" : " have no backend (");
  if (st->items == 1) {
    nm_buf_str(&b, "the first range ");
    nm_buf_quoted(&b, item);
    nm_buf_str(&b, " must start at 0)");
  } else {
    nm_buf_str(&b, "between ");
    nm_buf_quoted(&b, st->prev_text);
    nm_buf_str(&b, " and ");
    nm_buf_quoted(&b, item);
    nm_buf_char(&b, ')');
  }
  nm_problem_end(&b);
}

static void overlap(route_state_t *st, nm_span_t item, size_t lo, size_t hi) {
  nm_buf_t b = route_problem(st);
  nm_buf_str(&b, "overlap in route: ");
  nm_buf_quoted(&b, item);
  if (st->prev.hi == SIZE_MAX) {
    nm_buf_str(&b, " comes after the open-ended range ");
    nm_buf_quoted(&b, st->prev_text);
  } else {
    nm_buf_str(&b, " and ");
    nm_buf_quoted(&b, st->prev_text);
    nm_buf_str(&b, " both hold ");
    buf_sizes(&b, lo, hi);
  }
  nm_problem_end(&b);
}

/* Checks r against the previous range and moves a shared boundary: lo == prev.hi means
 * prev.hi + 1. */
static void check_continuity(route_state_t *st, nm_span_t item, nm_route_range_t *r) {
  if (st->items == 1) {
    if (r->lo != 0) gap(st, item, 0, r->lo - 1);
    return;
  }
  if (!st->have_prev) return;
  size_t prev_hi = st->prev.hi;
  if (prev_hi == SIZE_MAX) {
    overlap(st, item, 0, 0);
    return;
  }
  size_t lo = r->lo == prev_hi ? prev_hi + 1 : r->lo;
  if (r->lo < prev_hi || lo > r->hi)
    overlap(st, item, r->lo, r->hi < prev_hi ? r->hi : prev_hi);
  else if (lo > prev_hi + 1)
    gap(st, item, prev_hi + 1, lo - 1);
  else
    r->lo = lo;
}

static void route_item(route_state_t *st, nm_span_t item) {
  nm_route_range_t r;
  st->items++;
  if (!parse_range(st, item, &r)) {
    st->have_prev = false;
    return;
  }
  if (st->items > NM_CONFIG_MAX_RANGES) {   /* reported once the count is known */
    st->ok = false;
    st->have_prev = false;
    return;
  }
  check_continuity(st, item, &r);
  st->ranges[st->count++] = r;
  st->prev = r;
  st->prev_text = item;
  st->have_prev = true;
}

static void route_end(route_state_t *st, nm_span_t value) {
  if (st->items == 0) {
    nm_buf_t b = route_problem(st);
    nm_buf_str(&b, "bad value ");
    nm_buf_quoted(&b, value);
    nm_buf_str(&b, " for 'route': expected ranges like 0-256:pool,257-:system");
    nm_problem_end(&b);
  } else if (st->items > NM_CONFIG_MAX_RANGES) {
    nm_buf_t b = route_problem(st);
    nm_buf_str(&b, "route has ");
    nm_buf_u64(&b, st->items);
    nm_buf_str(&b, " ranges; at most ");
    nm_buf_u64(&b, NM_CONFIG_MAX_RANGES);
    nm_buf_str(&b, " are allowed");
    nm_problem_end(&b);
  } else if (st->have_prev && st->prev.hi != SIZE_MAX) {
    nm_buf_t b = route_problem(st);
    nm_buf_str(&b, "route leaves sizes above ");
    nm_buf_size(&b, st->prev.hi);
    nm_buf_str(&b, " without a backend: the last range must be open-ended, like '");
    nm_buf_size(&b, st->prev.hi + 1);
    nm_buf_str(&b, "-:system'");
    nm_problem_end(&b);
  }
}

bool nm_route_parse(nm_parse_ctx_t *ctx, nm_span_t key, nm_span_t value, nm_config_t *cfg) {
  route_state_t st = { .ctx = ctx, .key = key, .ok = true };
  nm_span_t rest = value;
  for (;;) {
    size_t comma = nm_span_find(rest, ',');
    nm_span_t item = nm_span_trim(nm_span_sub(rest, 0, comma));
    if (item.n) route_item(&st, item);
    if (comma == rest.n) break;
    rest = nm_span_sub(rest, comma + 1, rest.n);
  }
  route_end(&st, value);
  if (!st.ok) return false;
  cfg->range_count = st.count;
  for (unsigned i = 0; i < st.count; i++) cfg->ranges[i] = st.ranges[i];
  for (unsigned i = st.count; i < NM_CONFIG_MAX_RANGES; i++)
    cfg->ranges[i] = (nm_route_range_t){ 0, 0, NM_BACKEND_POOL };
  return true;
}
