/* Internals of the NEBULA_MEM_CONFIG parser, shared by config.c (the key table and the item
 * loop), config_route.c (route=) and config_text.c (value parsers, "did you mean", message
 * helpers). Nothing here allocates, uses stdio or depends on the locale. */
#ifndef NM_CONFIG_INTERNAL_H
#define NM_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "util/fmt.h"

/* ------------------------------------------------------------------------------------------
 * Spans: a piece of the input, not NUL-terminated.
 * ------------------------------------------------------------------------------------------ */

typedef struct nm_span_s {
  const char *p;
  size_t n;
} nm_span_t;

static inline nm_span_t nm_span(const char *p, size_t n) {
  nm_span_t s = { p, n };
  return s;
}

/* s[from, to) (to <= s.n). */
static inline nm_span_t nm_span_sub(nm_span_t s, size_t from, size_t to) {
  return nm_span(s.p + from, to - from);
}

static inline bool nm_is_digit(char c) { return c >= '0' && c <= '9'; }

nm_span_t nm_span_trim(nm_span_t s);
/* Index of the first c in s, or s.n. */
size_t nm_span_find(nm_span_t s, char c);
bool nm_span_eq(nm_span_t s, const char *lit);      /* exact */
bool nm_span_ieq(nm_span_t s, const char *lit);     /* ASCII case-insensitive */
/* Index of s in the NULL-terminated list (case-insensitive), or -1. */
int nm_choice_index(nm_span_t s, const char *const *choices);
/* The candidate closest to s (optimal string alignment distance, or s being a prefix of at
 * least 3 characters), or NULL when none is close enough to be worth suggesting. Bounded
 * work: candidates much longer or shorter than s are skipped without computing anything. */
const char *nm_closest(nm_span_t s, const char *const *candidates, bool fold_case);

/* ------------------------------------------------------------------------------------------
 * Value parsers
 * ------------------------------------------------------------------------------------------ */

typedef enum nm_num_status_e {
  NM_NUM_OK = 0,
  NM_NUM_SYNTAX,      /* not a number with an accepted suffix */
  NM_NUM_OVERFLOW,    /* a number, but too large */
} nm_num_status_t;

/* Decimal digits and an optional case-insensitive suffix: B, K/KB/KiB, M/MB/MiB, G/GB/GiB,
 * T/TB/TiB (all powers of 1024). Overflow of size_t is NM_NUM_OVERFLOW. */
nm_num_status_t nm_parse_size(nm_span_t s, size_t *out);
/* Decimal milliseconds with an optional suffix ms or s (seconds). */
nm_num_status_t nm_parse_ms(nm_span_t s, uint64_t *out);
/* 1/0/on/off/true/false/yes/no, case-insensitive. */
bool nm_parse_bool(nm_span_t s, bool *out);
extern const char *const nm_bool_words[];   /* NULL-terminated, true words at even indexes */

/* ------------------------------------------------------------------------------------------
 * Problems
 * ------------------------------------------------------------------------------------------ */

typedef struct nm_parse_ctx_s {
  nm_config_problem_t *problems;
  size_t max;
  size_t count;
  nm_config_problem_t scratch;     /* where problems past max are formatted, then dropped */
} nm_parse_ctx_t;

/* Calls fn for each item of a config string: `key=value` with the value's continuations
 * joined (item is the whole text, eq the index of '=' in it, value trimmed), or an item
 * without '=' (eq == item.n, value empty). Empty items are skipped. */
typedef void (*nm_item_fn)(void *arg, nm_span_t item, size_t eq, nm_span_t value);
void nm_config_foreach_item(const char *text, nm_item_fn fn, void *arg);

/* Starts a problem about `key` (as written; may be empty) and returns the buffer its message
 * goes to; finish it with nm_problem_end. */
nm_buf_t nm_problem_begin(nm_parse_ctx_t *ctx, nm_span_t key);
void nm_problem_end(nm_buf_t *b);

/* 'text': user text quoted, at most NM_QUOTE_MAX bytes (then "..."). Only printable ASCII
 * is copied: a backslash is written \\, every other byte (control characters, DEL, 0x80 to
 * 0xff) \xNN, so a message stays one line of plain ASCII whatever bytes the user gave
 * (terminal escapes, invalid UTF-8). A message cut at its end never ends in half an
 * escape. */
#define NM_QUOTE_MAX 40
void nm_buf_quoted(nm_buf_t *b, nm_span_t s);
/* a|b|c */
void nm_buf_choices(nm_buf_t *b, const char *const *choices);
/* " (did you mean 'x'?)" when x is not NULL. */
void nm_buf_suggestion(nm_buf_t *b, const char *x);

/* The expected-size text shared by every "bad size" message. */
#define NM_EXPECT_SIZE "expected a number with optional K, M, G, T suffix"

/* ------------------------------------------------------------------------------------------
 * route=
 * ------------------------------------------------------------------------------------------ */


/* Parses a route value (comma-separated ranges) and replaces cfg's ranges with it; on any
 * problem reports it (every range's syntax problem, every gap or overlap) and keeps the
 * previous route. Returns whether the route was taken. */
bool nm_route_parse(nm_parse_ctx_t *ctx, nm_span_t key, nm_span_t value, nm_config_t *cfg);

#endif
