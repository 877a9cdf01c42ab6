/* Text helpers of the configuration parser: spans, number/size/bool parsers, the "did you
 * mean" distance and message formatting. Own code for everything (no strtoull, no ctype):
 * this runs inside malloc's start-up, before libc is ready, and must not depend on the
 * locale. Every function is linear in its input. */
#include "config/config_internal.h"

/* ------------------------------------------------------------------------------------------
 * Spans
 * ------------------------------------------------------------------------------------------ */

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

nm_span_t nm_span_trim(nm_span_t s) {
  while (s.n && is_space(s.p[0])) {
    s.p++;
    s.n--;
  }
  while (s.n && is_space(s.p[s.n - 1])) s.n--;
  return s;
}

size_t nm_span_find(nm_span_t s, char c) {
  size_t i = 0;
  while (i < s.n && s.p[i] != c) i++;
  return i;
}

static bool span_eq(nm_span_t s, const char *lit, bool fold) {
  size_t i = 0;
  for (; i < s.n; i++) {
    if (!lit[i]) return false;
    char a = s.p[i], b = lit[i];
    if (fold ? lower(a) != lower(b) : a != b) return false;
  }
  return lit[i] == '\0';
}

bool nm_span_eq(nm_span_t s, const char *lit) { return span_eq(s, lit, false); }
bool nm_span_ieq(nm_span_t s, const char *lit) { return span_eq(s, lit, true); }

int nm_choice_index(nm_span_t s, const char *const *choices) {
  for (int i = 0; choices[i]; i++)
    if (nm_span_ieq(s, choices[i])) return i;
  return -1;
}

/* ------------------------------------------------------------------------------------------
 * "Did you mean": optimal string alignment distance (Levenshtein plus adjacent
 * transpositions, so 'bugdet' is one edit from 'budget').
 * ------------------------------------------------------------------------------------------ */

#define NM_DIST_MAX 48   /* longer strings are never compared */

static size_t min3(size_t a, size_t b, size_t c) {
  size_t m = a < b ? a : b;
  return m < c ? m : c;
}

static size_t osa_distance(nm_span_t a, const char *b, size_t bn, bool fold) {
  size_t rows[3][NM_DIST_MAX + 1];
  size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= bn; j++) prev[j] = j;
  for (size_t i = 1; i <= a.n; i++) {
    cur[0] = i;
    char ca = fold ? lower(a.p[i - 1]) : a.p[i - 1];
    for (size_t j = 1; j <= bn; j++) {
      char cb = fold ? lower(b[j - 1]) : b[j - 1];
      size_t cost = ca == cb ? 0 : 1;
      cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1) {
        char pa = fold ? lower(a.p[i - 2]) : a.p[i - 2];
        char pb = fold ? lower(b[j - 2]) : b[j - 2];
        if (ca == pb && pa == cb && prev2[j - 2] + 1 < cur[j]) cur[j] = prev2[j - 2] + 1;
      }
    }
    size_t *t = prev2;
    prev2 = prev;
    prev = cur;
    cur = t;
  }
  return prev[bn];
}

static size_t str_len(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

/* How many edits still make a useful suggestion for a word of n characters. */
static size_t max_edits(size_t n) { return n <= 4 ? 1 : n <= 8 ? 2 : 3; }

/* s (at least 3 characters) begins word: 'sys' for 'system'. */
static bool is_prefix(nm_span_t s, const char *word, size_t wn, bool fold) {
  if (s.n < 3 || s.n >= wn) return false;
  for (size_t i = 0; i < s.n; i++)
    if (fold ? lower(s.p[i]) != lower(word[i]) : s.p[i] != word[i]) return false;
  return true;
}

const char *nm_closest(nm_span_t s, const char *const *candidates, bool fold_case) {
  const char *best = NULL;
  size_t best_score = (size_t)-1;
  if (s.n == 0 || s.n > NM_DIST_MAX) return NULL;
  for (size_t k = 0; candidates[k]; k++) {
    const char *c = candidates[k];
    size_t cn = str_len(c), limit = max_edits(cn);
    if (cn > NM_DIST_MAX) continue;
    size_t diff = cn > s.n ? cn - s.n : s.n - cn;
    size_t score = (size_t)-1;
    if (diff <= limit) {
      size_t d = osa_distance(s, c, cn, fold_case);
      if (d <= limit && d < cn) score = d;
    }
    if (score == (size_t)-1 && is_prefix(s, c, cn, fold_case)) score = limit + 1;
    if (score < best_score) {
      best = c;
      best_score = score;
    }
  }
  return best;
}

/* ------------------------------------------------------------------------------------------
 * Numbers
 * ------------------------------------------------------------------------------------------ */

/* Leading decimal digits of s into *v; returns how many there were and sets *overflow when
 * the value does not fit in 64 bits. */
static size_t parse_digits(nm_span_t s, uint64_t *v, bool *overflow) {
  size_t i = 0;
  uint64_t x = 0;
  *overflow = false;
  for (; i < s.n && nm_is_digit(s.p[i]); i++) {
    unsigned d = (unsigned)(s.p[i] - '0');
    if (x > (UINT64_MAX - d) / 10)
      *overflow = true;
    else
      x = x * 10 + d;
  }
  *v = x;
  return i;
}

/* "", B, K, KB, KiB, M, ... T, TiB (any case) -> shift, or -1. */
static int size_suffix_shift(nm_span_t u) {
  static const char letters[] = "kmgt";
  if (u.n == 0 || nm_span_ieq(u, "b")) return 0;
  int shift = -1;
  for (int i = 0; letters[i]; i++)
    if (lower(u.p[0]) == letters[i]) shift = 10 * (i + 1);
  if (shift < 0) return -1;
  nm_span_t rest = nm_span_sub(u, 1, u.n);
  if (rest.n == 0 || nm_span_ieq(rest, "b") || nm_span_ieq(rest, "ib")) return shift;
  return -1;
}

nm_num_status_t nm_parse_size(nm_span_t s, size_t *out) {
  uint64_t v;
  bool overflow;
  size_t digits = parse_digits(s, &v, &overflow);
  if (digits == 0) return NM_NUM_SYNTAX;
  int shift = size_suffix_shift(nm_span_sub(s, digits, s.n));
  if (shift < 0) return NM_NUM_SYNTAX;
  if (overflow || (shift && v > (UINT64_MAX >> shift))) return NM_NUM_OVERFLOW;
  v <<= shift;
  if (v > SIZE_MAX) return NM_NUM_OVERFLOW;
  *out = (size_t)v;
  return NM_NUM_OK;
}

nm_num_status_t nm_parse_ms(nm_span_t s, uint64_t *out) {
  uint64_t v;
  bool overflow;
  size_t digits = parse_digits(s, &v, &overflow);
  if (digits == 0) return NM_NUM_SYNTAX;
  nm_span_t u = nm_span_sub(s, digits, s.n);
  uint64_t scale;
  if (u.n == 0 || nm_span_ieq(u, "ms"))
    scale = 1;
  else if (nm_span_ieq(u, "s"))
    scale = 1000;
  else
    return NM_NUM_SYNTAX;
  if (overflow || v > UINT64_MAX / scale) return NM_NUM_OVERFLOW;
  *out = v * scale;
  return NM_NUM_OK;
}

const char *const nm_bool_words[] = { "1", "0", "on", "off", "true", "false", "yes", "no", NULL };

bool nm_parse_bool(nm_span_t s, bool *out) {
  int i = nm_choice_index(s, nm_bool_words);
  if (i < 0) return false;
  *out = (i % 2) == 0;
  return true;
}

/* ------------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------------ */

nm_buf_t nm_problem_begin(nm_parse_ctx_t *ctx, nm_span_t key) {
  nm_config_problem_t *p = ctx->count < ctx->max ? &ctx->problems[ctx->count] : &ctx->scratch;
  ctx->count++;
  size_t n = key.n < sizeof p->key - 1 ? key.n : sizeof p->key - 1;
  for (size_t i = 0; i < n; i++) p->key[i] = key.p[i];
  p->key[n] = '\0';
  nm_buf_t b = { p->message, sizeof p->message - 1, 0 };
  return b;
}

void nm_problem_end(nm_buf_t *b) { b->data[b->len] = '\0'; }

/* One byte of user text as it appears in a message: printable ASCII as itself, a backslash
 * doubled, anything else (control characters, DEL, every byte from 0x80: raw non-UTF-8
 * bytes, C1 controls, the bytes of valid UTF-8 too) as \xNN. Output is all-or-nothing: when
 * the escape does not fit, the buffer is closed (cap = len) so that a cut message never ends
 * in half an escape and nothing is appended after the cut. */
static void quoted_byte(nm_buf_t *b, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char e[4];
  size_t n;
  if (c == '\\') {
    e[0] = e[1] = '\\';
    n = 2;
  } else if (c < 0x20 || c >= 0x7f) {
    e[0] = '\\';
    e[1] = 'x';
    e[2] = hex[c >> 4];
    e[3] = hex[c & 15];
    n = 4;
  } else {
    e[0] = (char)c;
    n = 1;
  }
  if (b->cap - b->len < n) {
    b->cap = b->len;
    return;
  }
  for (size_t i = 0; i < n; i++) b->data[b->len++] = e[i];
}

void nm_buf_quoted(nm_buf_t *b, nm_span_t s) {
  size_t n = s.n <= NM_QUOTE_MAX ? s.n : NM_QUOTE_MAX;
  nm_buf_char(b, '\'');
  for (size_t i = 0; i < n; i++) quoted_byte(b, (unsigned char)s.p[i]);
  if (n < s.n) nm_buf_str(b, "...");
  nm_buf_char(b, '\'');
}

void nm_buf_choices(nm_buf_t *b, const char *const *choices) {
  for (size_t i = 0; choices[i]; i++) {
    if (i) nm_buf_char(b, '|');
    nm_buf_str(b, choices[i]);
  }
}

void nm_buf_suggestion(nm_buf_t *b, const char *x) {
  if (!x) return;
  nm_buf_str(b, " (did you mean '");
  nm_buf_str(b, x);
  nm_buf_str(b, "'?)");
}
