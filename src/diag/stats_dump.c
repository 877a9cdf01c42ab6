#include "diag/stats_dump.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diag/budget.h"
#include "heap/heap.h"
#include "heap/router.h"
#include "heap/stats.h"
#include "os/os.h"

#define NM_DUMP_BUFFER ((size_t)256 << 10)

static char nm_dump_storage[NM_DUMP_BUFFER];
static atomic_flag nm_dump_busy = ATOMIC_FLAG_INIT;
static nm_stats_t nm_dump_stats;   /* too big for a signal handler's stack */

static const nm_stats_line_t *nm_backend_line(const nm_stats_t *st, unsigned i) {
  switch ((nm_backend_t)i) {
  case NM_BACKEND_POOL: return &st->pool;
  case NM_BACKEND_LARGE: return &st->large;
  case NM_BACKEND_BUMP: return &st->bump;
  default: return &st->system;
  }
}

/* ---- the figures (heap/stats.h's lists) as tables --------------------------------------- */

typedef struct nm_line_col_s {
  size_t off;   /* in nm_stats_line_t */
  unsigned in, width, unit, prom_value;
  const char *json, *text, *prom_type, *prom, *prom_help, *prom_class, *prom_class_help;
} nm_line_col_t;

static const nm_line_col_t nm_line_cols[] = {
#define NM_X(f, in_, json_, text_, width_, unit_, type_, value_, prom_, help_, class_, class_help_) \
  { .off = offsetof(nm_stats_line_t, f), .in = NM_STATS_IN_##in_, .width = width_,                   \
    .unit = NM_STATS_UNIT_##unit_, .prom_value = NM_STATS_PROM_##value_, .json = json_,               \
    .text = text_, .prom_type = type_, .prom = prom_, .prom_help = help_, .prom_class = class_,       \
    .prom_class_help = class_help_ },
  NM_STATS_LINE_COUNTERS(NM_X)
#undef NM_X
};

typedef struct nm_figure_s {
  size_t off;   /* in nm_stats_t */
  unsigned in;
  const char *json, *prom_type, *prom, *prom_help;
} nm_figure_t;

static const nm_figure_t nm_figures[] = {
#define NM_X(f, in_, json_, type_, prom_, help_) \
  { .off = offsetof(nm_stats_t, f), .in = NM_STATS_IN_##in_, .json = json_, .prom_type = type_, \
    .prom = prom_, .prom_help = help_ },
  NM_STATS_PROCESS_FIGURES(NM_X)
#undef NM_X
};

#define NM_LINE_COLS (sizeof nm_line_cols / sizeof nm_line_cols[0])
#define NM_FIGURES (sizeof nm_figures / sizeof nm_figures[0])

static uint64_t nm_line_get(const nm_stats_line_t *l, const nm_line_col_t *c) {
  return *(const uint64_t *)((const char *)l + c->off);
}

static uint64_t nm_figure_get(const nm_stats_t *st, const nm_figure_t *f) {
  return *(const uint64_t *)((const char *)st + f->off);
}

/* A pool class's line shows every counter, the others those of every line. */
static bool nm_line_shows(const nm_line_col_t *c, bool cls) {
  return cls || c->in == NM_STATS_IN_LINE;
}

/* ---- text ------------------------------------------------------------------------------- */

static void nm_cell_u64(nm_buf_t *b, uint64_t v, size_t width) {
  size_t mark = b->len;
  nm_buf_u64(b, v);
  nm_buf_pad_left(b, mark, width);
}

static void nm_cell_bytes(nm_buf_t *b, uint64_t v, size_t width) {
  size_t mark = b->len;
  nm_buf_bytes(b, v);
  nm_buf_pad_left(b, mark, width);
}

static void nm_cell_str(nm_buf_t *b, const char *s, size_t width) {
  size_t mark = b->len;
  nm_buf_str(b, s);
  while (b->len - mark < width) nm_buf_char(b, ' ');
}

static void nm_cell_head(nm_buf_t *b, const char *s, size_t width) {
  size_t mark = b->len;
  nm_buf_str(b, s);
  nm_buf_pad_left(b, mark, width);
}

/* The line counters' columns: their headers, or a line's cells. The tables' first columns
 * and the classes' utilization are written out below. */
static void nm_text_heads(nm_buf_t *b, bool cls) {
  for (size_t i = 0; i < NM_LINE_COLS; i++) {
    const nm_line_col_t *c = &nm_line_cols[i];
    if (c->text != NULL && nm_line_shows(c, cls)) nm_cell_head(b, c->text, c->width);
  }
}

static void nm_text_cells(nm_buf_t *b, const nm_stats_line_t *l, bool cls) {
  for (size_t i = 0; i < NM_LINE_COLS; i++) {
    const nm_line_col_t *c = &nm_line_cols[i];
    if (c->text == NULL || !nm_line_shows(c, cls)) continue;
    if (c->unit == NM_STATS_UNIT_BYTES) nm_cell_bytes(b, nm_line_get(l, c), c->width);
    else nm_cell_u64(b, nm_line_get(l, c), c->width);
  }
}

static void nm_text_line(nm_buf_t *b, const char *name, const nm_stats_line_t *l) {
  nm_buf_str(b, "  ");
  nm_cell_str(b, name, 8);
  nm_text_cells(b, l, false);
  nm_buf_char(b, '\n');
}

static void nm_format_text(nm_buf_t *b, const nm_stats_t *st) {
  nm_buf_str(b, "nebula: statistics of pid ");
  nm_buf_u64(b, (uint64_t)getpid());
  nm_buf_str(b, "\n  process: ");
  nm_buf_bytes(b, st->total.bytes);
  nm_buf_str(b, " in use in ");
  nm_buf_u64(b, st->total.live);
  nm_buf_str(b, " blocks; pages ");
  nm_buf_bytes(b, st->page_bytes);
  nm_buf_str(b, " (peak ");
  nm_buf_bytes(b, st->page_bytes_peak);
  nm_buf_str(b, "), mapped ");
  nm_buf_bytes(b, st->mapped);
  nm_buf_str(b, ", purged ");
  nm_buf_bytes(b, st->purged);
  nm_buf_str(b, ", RSS ");
  nm_buf_bytes(b, st->rss);
  nm_buf_str(b, "; ");
  nm_buf_u64(b, st->threads);
  nm_buf_str(b, " threads, ");
  nm_buf_u64(b, st->heaps);
  nm_buf_str(b, " heaps\n");
  NM_BUDGET_FOREACH(i) {
    if (nm_budgets[i].limit == 0) continue;
    nm_buf_str(b, "  budget: ");
    nm_buf_str(b, nm_budget_key(i));
    nm_buf_char(b, '=');
    nm_buf_size(b, nm_budgets[i].limit);
    nm_buf_str(b, ", ");
    nm_buf_bytes(b, atomic_load_explicit(&nm_budgets[i].used, memory_order_relaxed));
    nm_buf_str(b, " in use, peak ");
    nm_buf_bytes(b, atomic_load_explicit(&nm_budgets[i].peak, memory_order_relaxed));
    nm_buf_char(b, '\n');
  }
  /* "  backend         allocs         frees  remote frees        live      in use" */
  nm_buf_str(b, "  ");
  nm_cell_str(b, "backend", 8);
  nm_text_heads(b, false);
  nm_buf_char(b, '\n');
  for (unsigned i = 0; i < NM_BACKEND_COUNT; i++) nm_text_line(b, nm_backend_names[i], nm_backend_line(st, i));
  nm_text_line(b, "total", &st->total);
  nm_buf_str(b, "  bump regions: ");
  nm_buf_u64(b, st->bump_regions_live);
  nm_buf_str(b, " live (");
  nm_buf_bytes(b, st->bump_region_bytes);
  nm_buf_str(b, "), ");
  nm_buf_u64(b, st->bump_pinned);
  nm_buf_str(b, " pinned (left behind by their thread, kept by live blocks: ");
  nm_buf_bytes(b, st->bump_pinned * nm_route.opt.bump_region);
  nm_buf_str(b, "), ");
  nm_buf_u64(b, st->bump_regions_made);
  nm_buf_str(b, " made, ");
  nm_buf_u64(b, st->bump_rewinds);
  nm_buf_str(b, " recycled whole\n");
  /* "  class     size        allocs ...      in use  pages   peak pages  utilization" */
  nm_buf_str(b, "  ");
  nm_cell_head(b, "class", 5);
  nm_cell_head(b, "size", 9);
  nm_text_heads(b, true);
  nm_cell_head(b, "utilization", 13);
  nm_buf_char(b, '\n');
  for (unsigned c = 0; c < st->classes; c++) {
    const nm_stats_line_t *l = &st->cls[c];
    if (l->allocs == 0 && l->pages == 0) continue;
    nm_buf_str(b, "  ");
    nm_cell_u64(b, c, 5);
    nm_cell_bytes(b, st->class_size[c], 9);
    nm_text_cells(b, l, true);
    size_t mark = b->len;
    if (l->capacity) {
      nm_buf_u64(b, l->live * 100 / l->capacity);
      nm_buf_char(b, '%');
    } else {
      nm_buf_char(b, '-');
    }
    nm_buf_pad_left(b, mark, 13);
    nm_buf_char(b, '\n');
  }
}

/* ---- JSON ------------------------------------------------------------------------------- */

static void nm_json_key(nm_buf_t *b, const char *key, uint64_t v, bool comma) {
  nm_buf_char(b, '"');
  nm_buf_str(b, key);
  nm_buf_str(b, "\":");
  nm_buf_u64(b, v);
  if (comma) nm_buf_char(b, ',');
}

/* A line's counters (a pool class's: all of them), comma-separated. */
static void nm_json_line(nm_buf_t *b, const nm_stats_line_t *l, bool cls) {
  bool first = true;
  for (size_t i = 0; i < NM_LINE_COLS; i++) {
    const nm_line_col_t *c = &nm_line_cols[i];
    if (c->json == NULL || !nm_line_shows(c, cls)) continue;
    if (!first) nm_buf_char(b, ',');
    first = false;
    nm_json_key(b, c->json, nm_line_get(l, c), false);
  }
}

/* The process figures that go in one place (NM_STATS_IN_PROCESS or _BUMP), comma-separated. */
static void nm_json_figures(nm_buf_t *b, const nm_stats_t *st, unsigned in) {
  bool first = true;
  for (size_t i = 0; i < NM_FIGURES; i++) {
    const nm_figure_t *f = &nm_figures[i];
    if (f->in != in) continue;
    if (!first) nm_buf_char(b, ',');
    first = false;
    nm_json_key(b, f->json, nm_figure_get(st, f), false);
  }
}

/* A JSON string from a config path: quotes, backslashes and control characters escaped. */
static void nm_json_string(nm_buf_t *b, const char *s) {
  nm_buf_char(b, '"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      nm_buf_char(b, '\\');
      nm_buf_char(b, (char)c);
    } else if (c < 0x20) {
      nm_buf_str(b, "\\u00");
      nm_buf_char(b, "0123456789abcdef"[c >> 4]);
      nm_buf_char(b, "0123456789abcdef"[c & 15]);
    } else {
      nm_buf_char(b, (char)c);
    }
  }
  nm_buf_char(b, '"');
}

static void nm_format_json(nm_buf_t *b, const nm_stats_t *st) {
  nm_buf_str(b, "{\"schema\":\"nebula-memory/stats\",\"version\":1,");
  nm_json_key(b, "pid", (uint64_t)getpid(), true);
  nm_json_key(b, "monotonic_ms", nm_os_now_ms(), true);
  nm_buf_str(b, "\"strategy_route\":{");
  nm_json_key(b, "pool_max", nm_route.pool_max, true);
  nm_json_key(b, "large_max", nm_route.large_max, true);
  nm_json_key(b, "bump_region", nm_route.opt.bump_region, false);
  nm_buf_str(b, "},\"process\":{");
  nm_json_key(b, "bytes_in_use", st->total.bytes, true);
  nm_json_key(b, "live_blocks", st->total.live, true);
  nm_json_key(b, "allocs", st->total.allocs, true);
  nm_json_key(b, "frees", st->total.frees + st->total.remote_frees, true);   /* every free */
  nm_json_figures(b, st, NM_STATS_IN_PROCESS);
  nm_buf_str(b, "},\"budgets\":[");
  bool first = true;
  NM_BUDGET_FOREACH(i) {
    if (nm_budgets[i].limit == 0) continue;
    if (!first) nm_buf_char(b, ',');
    first = false;
    nm_buf_str(b, "{\"key\":");
    nm_json_string(b, nm_budget_key(i));
    nm_buf_char(b, ',');
    nm_json_key(b, "limit", nm_budgets[i].limit, true);
    nm_json_key(b, "used", atomic_load_explicit(&nm_budgets[i].used, memory_order_relaxed), true);
    nm_json_key(b, "peak", atomic_load_explicit(&nm_budgets[i].peak, memory_order_relaxed), false);
    nm_buf_char(b, '}');
  }
  nm_buf_str(b, "],\"backends\":{");
  for (unsigned i = 0; i < NM_BACKEND_COUNT; i++) {
    nm_buf_char(b, '"');
    nm_buf_str(b, nm_backend_names[i]);
    nm_buf_str(b, "\":{");
    nm_json_line(b, nm_backend_line(st, i), false);
    if (i == NM_BACKEND_BUMP) {
      nm_buf_char(b, ',');
      nm_json_figures(b, st, NM_STATS_IN_BUMP);
      nm_buf_char(b, ',');
      nm_json_key(b, "region_bytes", nm_route.opt.bump_region, false);
    }
    nm_buf_str(b, i + 1 < NM_BACKEND_COUNT ? "}," : "}");
  }
  nm_buf_str(b, "},\"total\":{");
  nm_json_line(b, &st->total, false);
  nm_buf_str(b, "},\"classes\":[");
  first = true;
  for (unsigned c = 0; c < st->classes; c++) {
    const nm_stats_line_t *l = &st->cls[c];
    if (l->allocs == 0 && l->pages == 0) continue;
    if (!first) nm_buf_char(b, ',');
    first = false;
    nm_buf_char(b, '{');
    nm_json_key(b, "class", c, true);
    nm_json_key(b, "size", st->class_size[c], true);
    nm_json_line(b, l, true);
    nm_buf_char(b, '}');
  }
  nm_buf_str(b, "]");
  if (nm_route.opt.stats_file[0]) {
    nm_buf_str(b, ",\"stats_file\":");
    nm_json_string(b, nm_route.opt.stats_file);
  }
  nm_buf_str(b, "}\n");
}

/* ---- Prometheus ------------------------------------------------------------------------- */

static void nm_prom_head(nm_buf_t *b, const char *name, const char *type, const char *help) {
  nm_buf_str(b, "# HELP ");
  nm_buf_str(b, name);
  nm_buf_char(b, ' ');
  nm_buf_str(b, help);
  nm_buf_str(b, "\n# TYPE ");
  nm_buf_str(b, name);
  nm_buf_char(b, ' ');
  nm_buf_str(b, type);
  nm_buf_char(b, '\n');
}

static void nm_prom_sample(nm_buf_t *b, const char *name, const char *label, const char *value,
                           uint64_t v) {
  nm_buf_str(b, name);
  if (label != NULL) {
    nm_buf_char(b, '{');
    nm_buf_str(b, label);
    nm_buf_str(b, "=\"");
    nm_buf_str(b, value);
    nm_buf_str(b, "\"}");
  }
  nm_buf_char(b, ' ');
  nm_buf_u64(b, v);
  nm_buf_char(b, '\n');
}

/* A line counter's sample: the counter, or (frees) every free, remote ones included. */
static uint64_t nm_prom_value(const nm_line_col_t *c, const nm_stats_line_t *l) {
  uint64_t v = nm_line_get(l, c);
  return c->prom_value == NM_STATS_PROM_FIELD_PLUS_REMOTE ? v + l->remote_frees : v;
}

static void nm_prom_family(nm_buf_t *b, const nm_stats_t *st, const nm_line_col_t *c) {
  nm_prom_head(b, c->prom, c->prom_type, c->prom_help);
  for (unsigned i = 0; i < NM_BACKEND_COUNT; i++)
    nm_prom_sample(b, c->prom, "backend", nm_backend_names[i], nm_prom_value(c, nm_backend_line(st, i)));
}

static void nm_prom_class_family(nm_buf_t *b, const nm_stats_t *st, const nm_line_col_t *c) {
  nm_prom_head(b, c->prom_class, c->prom_type, c->prom_class_help);
  for (unsigned i = 0; i < st->classes; i++) {
    const nm_stats_line_t *l = &st->cls[i];
    if (l->allocs == 0 && l->pages == 0) continue;
    char size[24];
    nm_buf_t sb = NM_BUF(size);
    nm_buf_u64(&sb, st->class_size[i]);
    nm_buf_char(&sb, '\0');
    size[sizeof size - 1] = '\0';
    nm_prom_sample(b, c->prom_class, "size", size, nm_prom_value(c, l));
  }
}

/* The families of the line counters per backend, then per pool class, then the process
 * figures, then the budgets. */
static void nm_format_prometheus(nm_buf_t *b, const nm_stats_t *st) {
  for (size_t i = 0; i < NM_LINE_COLS; i++)
    if (nm_line_cols[i].prom != NULL) nm_prom_family(b, st, &nm_line_cols[i]);
  for (size_t i = 0; i < NM_LINE_COLS; i++)
    if (nm_line_cols[i].prom_class != NULL) nm_prom_class_family(b, st, &nm_line_cols[i]);
  for (size_t i = 0; i < NM_FIGURES; i++) {
    const nm_figure_t *f = &nm_figures[i];
    if (f->prom == NULL) continue;
    nm_prom_head(b, f->prom, f->prom_type, f->prom_help);
    nm_prom_sample(b, f->prom, NULL, NULL, nm_figure_get(st, f));
  }
  bool any = false;
  for (unsigned i = 0; i < NM_BUDGET_SLOTS; i++) any |= nm_budgets[i].limit != 0;
  if (any) {
    nm_prom_head(b, "nebula_budget_bytes", "gauge", "Budget limits (label: the config key).");
    NM_BUDGET_FOREACH(i)
      if (nm_budgets[i].limit) nm_prom_sample(b, "nebula_budget_bytes", "key", nm_budget_key(i), nm_budgets[i].limit);
    nm_prom_head(b, "nebula_budget_used_bytes", "gauge", "Bytes charged to each budget.");
    NM_BUDGET_FOREACH(i)
      if (nm_budgets[i].limit)
        nm_prom_sample(b, "nebula_budget_used_bytes", "key", nm_budget_key(i),
                       atomic_load_explicit(&nm_budgets[i].used, memory_order_relaxed));
  }
}

/* ---- dumping ---------------------------------------------------------------------------- */

void nm_stats_format(nm_buf_t *b, nm_stats_format_t format) {
  nm_stats_collect(&nm_dump_stats);
  switch (format) {
  case NM_STATS_JSON: nm_format_json(b, &nm_dump_stats); break;
  case NM_STATS_PROMETHEUS: nm_format_prometheus(b, &nm_dump_stats); break;
  default: nm_format_text(b, &nm_dump_stats); break;
  }
}

/* ---- the stats file ---------------------------------------------------------------------
 *
 * Written from a signal handler and at exit, so async-signal-safe calls only (lstat, stat,
 * open, fstat, fcntl, write, close, rename, unlink, getpid) and static buffers: a dump runs
 * under nm_dump_busy, one at a time. What each kind of target gets (docs/statistics.md,
 * "The stats file"):
 *
 *   missing, a regular file, or a symbolic link to one (or dangling): the dump goes to a new
 *       temporary file in the same directory, PATH.tmp.PID.N, created with
 *       O_CREAT|O_EXCL|O_NOFOLLOW (a name that exists, a planted symlink included, is never
 *       opened: the next N is tried), then renamed over PATH. A reader sees the old dump or
 *       the new one, never part of one; a symlink at PATH is replaced itself, its target is
 *       never written. A failed write (short write, ENOSPC, EIO, EFBIG...) unlinks the
 *       temporary file and leaves PATH as it was.
 *   a character device (/dev/null, a terminal): written directly, opened with O_NOFOLLOW and
 *       without O_CREAT or O_TRUNC, checked to be a character device once open.
 *   anything else (a directory, a FIFO, a socket, a block device, a symlink to one of these
 *       or to a character device): not written.
 *
 * Every failure is one line on stderr naming the path and why. */

/* The path once %p is replaced: at most NM_STATS_PATH_MAX - 1 bytes. */
#define NM_STATS_PATH_MAX (NM_CONFIG_PATH_MAX + 64)
#define NM_STATS_TMP_TRIES 64

static char nm_file_path[NM_STATS_PATH_MAX];
static char nm_file_tmp[NM_STATS_PATH_MAX + 48];   /* + ".tmp." PID "." N */
static char nm_file_msg[4 * NM_STATS_PATH_MAX + 256];
static uint64_t nm_file_seq;

/* s with control characters, DEL and backslashes escaped (\xNN, \\): a message stays one
 * line whatever the path holds. */
static void nm_buf_escaped(nm_buf_t *b, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f || c == '\\') {
      nm_buf_str(b, c == '\\' ? "\\\\" : "\\x");
      if (c != '\\') {
        nm_buf_char(b, "0123456789abcdef"[c >> 4]);
        nm_buf_char(b, "0123456789abcdef"[c & 15]);
      }
    } else {
      nm_buf_char(b, (char)c);
    }
  }
}

/* "nebula: stats_file cannot be written: PATH: WHAT[: ERRNO TEXT]" on stderr. strerrordesc_np
 * reads a table (no locale, no allocation), unlike strerror. */
static void nm_file_fail(const char *path, const char *what, int err) {
  nm_buf_t b = { nm_file_msg, sizeof nm_file_msg - 1, 0 };
  nm_buf_str(&b, "nebula: stats_file cannot be written: ");
  nm_buf_escaped(&b, path);
  nm_buf_str(&b, ": ");
  nm_buf_str(&b, what);
  if (err != 0) {
    const char *text = strerrordesc_np(err);
    nm_buf_str(&b, ": ");
    if (text != NULL) {
      nm_buf_str(&b, text);
    } else {
      nm_buf_str(&b, "errno ");
      nm_buf_i64(&b, err);
    }
  }
  b.data[b.len++] = '\n';   /* cap leaves room for it */
  nm_os_write(2, b.data, b.len);
}

/* stats_file with %p replaced by the pid into out; false if it needs size bytes or more. */
static bool nm_stats_path(char *out, size_t size) {
  nm_buf_t b = { out, size, 0 };
  for (const char *s = nm_route.opt.stats_file; *s; s++) {
    if (s[0] == '%' && s[1] == 'p') {
      nm_buf_u64(&b, (uint64_t)getpid());
      s++;
    } else {
      nm_buf_char(&b, *s);
    }
  }
  if (b.len >= size) return false;
  out[b.len] = '\0';
  return true;
}

/* write(2) until done; 0, or the errno of the write that failed (EIO for one that wrote
 * nothing). */
static int nm_write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static const char *nm_file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "it is a directory";
  if (S_ISFIFO(mode)) return "it is a FIFO (not written: a reader could stall or kill the program)";
  if (S_ISSOCK(mode)) return "it is a socket";
  if (S_ISBLK(mode)) return "it is a block device";
  return "it is not a regular file";
}

/* A character device: written in place. O_NONBLOCK only for the open (a FIFO swapped in
 * meanwhile would block it), O_NOFOLLOW (nor a symlink), then fstat says what was opened. */
static void nm_file_write_device(const char *path, const char *data, size_t len) {
  int fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    nm_file_fail(path, "cannot open the character device", errno);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode)) {
    close(fd);
    nm_file_fail(path, "it is no longer a character device", 0);
    return;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  int err = nm_write_all(fd, data, len);
  close(fd);
  if (err != 0) nm_file_fail(path, "write failed", err);
}

/* A new temporary file next to path, renamed over it once whole. */
static void nm_file_replace(const char *path, const char *data, size_t len) {
  uint64_t pid = (uint64_t)getpid();
  int fd = -1, err = 0;
  for (int tries = 0; tries < NM_STATS_TMP_TRIES; tries++) {
    nm_buf_t b = { nm_file_tmp, sizeof nm_file_tmp - 1, 0 };
    nm_buf_str(&b, path);
    nm_buf_str(&b, ".tmp.");
    nm_buf_u64(&b, pid);
    nm_buf_char(&b, '.');
    nm_buf_u64(&b, nm_file_seq++);
    nm_file_tmp[b.len] = '\0';
    fd = open(nm_file_tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0644);
    if (fd >= 0) break;
    err = errno;
    if (err != EEXIST) break;
  }
  if (fd < 0) {
    nm_file_fail(path, err == EEXIST ? "cannot create a temporary file next to it (every name "
                                       "tried exists)"
                                     : "cannot create a temporary file next to it",
                 err == EEXIST ? 0 : err);
    return;
  }
  err = nm_write_all(fd, data, len);
  if (close(fd) != 0 && err == 0 && errno != EINTR) err = errno;   /* NFS reports here */
  if (err != 0) {
    unlink(nm_file_tmp);
    nm_file_fail(path, "writing the dump failed (the previous file is kept)", err);
    return;
  }
  if (rename(nm_file_tmp, path) != 0) {
    err = errno;
    unlink(nm_file_tmp);
    nm_file_fail(path, "cannot rename the temporary file over it (the previous file is kept)", err);
  }
}

static void nm_stats_write_file(const char *data, size_t len) {
  if (!nm_stats_path(nm_file_path, sizeof nm_file_path)) {
    nm_buf_t b = { nm_file_msg, sizeof nm_file_msg - 1, 0 };
    nm_buf_str(&b, "nebula: stats_file cannot be written: ");
    nm_buf_escaped(&b, nm_route.opt.stats_file);
    nm_buf_str(&b, ": longer than ");
    nm_buf_u64(&b, NM_STATS_PATH_MAX - 1);
    nm_buf_str(&b, " bytes once %p is replaced by the pid ");
    nm_buf_u64(&b, (uint64_t)getpid());
    b.data[b.len++] = '\n';
    nm_os_write(2, b.data, b.len);
    return;
  }
  const char *path = nm_file_path;
  size_t n = strlen(path);
  if (n > 0 && path[n - 1] == '/') {
    nm_file_fail(path, "it names a directory (ends with /)", 0);
    return;
  }
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) nm_file_replace(path, data, len);
    else nm_file_fail(path, "cannot look it up", errno);
    return;
  }
  if (S_ISREG(st.st_mode)) {
    nm_file_replace(path, data, len);
  } else if (S_ISCHR(st.st_mode)) {
    nm_file_write_device(path, data, len);
  } else if (S_ISLNK(st.st_mode)) {
    /* Never written through: replaced itself when it leads to a regular file or nowhere;
     * left alone when it leads to anything else (/dev/stderr must stay a link). */
    struct stat to;
    if (stat(path, &to) != 0 || S_ISREG(to.st_mode)) nm_file_replace(path, data, len);
    else if (S_ISDIR(to.st_mode)) nm_file_fail(path, "it is a symbolic link to a directory", 0);
    else nm_file_fail(path, "it is a symbolic link to a device, FIFO or socket (not followed; "
                            "name the device itself, or use stats_file=stderr)", 0);
  } else {
    nm_file_fail(path, nm_file_kind(st.st_mode), 0);
  }
}

static void nm_stats_emit(nm_stats_format_t format, bool to_file) {
  int saved = errno;
  if (atomic_flag_test_and_set_explicit(&nm_dump_busy, memory_order_acquire)) {
    static const char busy[] = "nebula: statistics dump skipped: another one is in progress\n";
    nm_os_write(2, busy, sizeof busy - 1);
    errno = saved;
    return;
  }
  nm_buf_t b = { nm_dump_storage, sizeof nm_dump_storage, 0 };
  nm_stats_format(&b, format);
  if (to_file) nm_stats_write_file(b.data, b.len);
  else nm_os_write(2, b.data, b.len);
  atomic_flag_clear_explicit(&nm_dump_busy, memory_order_release);
  errno = saved;
}

void nm_stats_dump(void) {
  nm_stats_emit((nm_stats_format_t)nm_route.opt.stats_format, nm_route.opt.stats_file[0] != '\0');
}

void nm_stats_dump_text_stderr(void) {
  nm_stats_emit(NM_STATS_TEXT, false);
}

static void nm_stats_on_signal(int sig) {
  (void)sig;
  nm_stats_dump();   /* keeps errno */
}

/* The handler goes in only when statistics were asked for, and only over the default action:
 * an inherited SIG_IGN stays, and so does a handler installed before ours (a library's
 * constructor that ran first), each said once on stderr. */
void nm_stats_install(void) {
  int sig;
  const char *name;
  switch (nm_route.opt.stats_signal) {
  case NM_STATS_SIGUSR1: sig = SIGUSR1; name = "USR1"; break;
  case NM_STATS_SIGUSR2: sig = SIGUSR2; name = "USR2"; break;
  default: return;
  }
  if (!nm_route.opt.stats_asked) return;   /* NEBULA_MEM_CONFIG named no stats key */
  struct sigaction old;
  if (sigaction(sig, NULL, &old) != 0) return;
  if (old.sa_handler != SIG_DFL) {   /* sa_sigaction shares the field; SIG_DFL is 0 */
    char storage[320];
    nm_buf_t b = { storage, sizeof storage - 1, 0 };
    nm_buf_str(&b, "nebula: stats_signal ");
    nm_buf_str(&b, name);
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) {
      nm_buf_str(&b, " is ignored (SIG_IGN, inherited): left ignored, it makes no dump");
    } else {
      nm_buf_str(&b, " already has a handler (installed before the preload's): kept, ");
      nm_buf_str(&b, name);
      nm_buf_str(&b, " makes no dump (stats_signal= picks another signal)");
    }
    storage[b.len++] = '\n';
    nm_os_write(2, b.data, b.len);
    return;
  }
  /* The handler walks the heaps, and a signal handler cannot register the fork handlers
   * the first walk after a second thread appears otherwise would. */
  nm_heap_fork_handlers();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = nm_stats_on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}
