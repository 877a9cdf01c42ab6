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

static void nm_text_line(nm_buf_t *b, const char *name, const nm_stats_line_t *l) {
  nm_buf_str(b, "  ");
  nm_cell_str(b, name, 8);
  nm_cell_u64(b, l->allocs, 14);
  nm_cell_u64(b, l->frees, 14);
  nm_cell_u64(b, l->remote_frees, 14);
  nm_cell_u64(b, l->live, 12);
  nm_cell_bytes(b, l->bytes, 12);
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
  nm_buf_str(b, "  backend         allocs         frees  remote frees        live      in use\n");
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
  nm_buf_str(b, "  class     size        allocs         frees  remote frees        live      in use"
                "  pages   peak pages  utilization\n");
  for (unsigned c = 0; c < st->classes; c++) {
    const nm_stats_line_t *l = &st->cls[c];
    if (l->allocs == 0 && l->pages == 0) continue;
    nm_buf_str(b, "  ");
    nm_cell_u64(b, c, 5);
    nm_cell_bytes(b, st->class_size[c], 9);
    nm_cell_u64(b, l->allocs, 14);
    nm_cell_u64(b, l->frees, 14);
    nm_cell_u64(b, l->remote_frees, 14);
    nm_cell_u64(b, l->live, 12);
    nm_cell_bytes(b, l->bytes, 12);
    nm_cell_u64(b, l->pages, 7);
    nm_cell_bytes(b, l->peak_bytes, 13);
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

static void nm_json_line(nm_buf_t *b, const nm_stats_line_t *l) {
  nm_json_key(b, "allocs", l->allocs, true);
  nm_json_key(b, "frees", l->frees, true);
  nm_json_key(b, "remote_frees", l->remote_frees, true);
  nm_json_key(b, "live_blocks", l->live, true);
  nm_json_key(b, "bytes_in_use", l->bytes, false);
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
  nm_json_key(b, "frees", st->total.frees + st->total.remote_frees, true);
  nm_json_key(b, "page_bytes", st->page_bytes, true);
  nm_json_key(b, "page_bytes_peak", st->page_bytes_peak, true);
  nm_json_key(b, "mapped_bytes", st->mapped, true);
  nm_json_key(b, "dirty_bytes", st->dirty, true);
  nm_json_key(b, "purged_bytes", st->purged, true);
  nm_json_key(b, "segments_mapped", st->segments_mapped, true);
  nm_json_key(b, "segments_unmapped", st->segments_unmapped, true);
  nm_json_key(b, "rss_bytes", st->rss, true);
  nm_json_key(b, "threads", st->threads, true);
  nm_json_key(b, "heaps", st->heaps, false);
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
    nm_json_line(b, nm_backend_line(st, i));
    if (i == 2) {
      nm_buf_char(b, ',');
      nm_json_key(b, "regions_live", st->bump_regions_live, true);
      nm_json_key(b, "regions_pinned", st->bump_pinned, true);
      nm_json_key(b, "regions_made", st->bump_regions_made, true);
      nm_json_key(b, "regions_recycled", st->bump_rewinds, true);
      nm_json_key(b, "region_bytes", nm_route.opt.bump_region, false);
    }
    nm_buf_str(b, i < 3 ? "}," : "}");
  }
  nm_buf_str(b, "},\"total\":{");
  nm_json_line(b, &st->total);
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
    nm_json_line(b, l);
    nm_buf_char(b, ',');
    nm_json_key(b, "pages", l->pages, true);
    nm_json_key(b, "peak_page_bytes", l->peak_bytes, true);
    nm_json_key(b, "capacity_blocks", l->capacity, false);
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

typedef uint64_t (*nm_line_field_fn)(const nm_stats_line_t *l);
static uint64_t f_allocs(const nm_stats_line_t *l) { return l->allocs; }
static uint64_t f_frees(const nm_stats_line_t *l) { return l->frees + l->remote_frees; }
static uint64_t f_remote(const nm_stats_line_t *l) { return l->remote_frees; }
static uint64_t f_live(const nm_stats_line_t *l) { return l->live; }
static uint64_t f_bytes(const nm_stats_line_t *l) { return l->bytes; }
static uint64_t f_peak(const nm_stats_line_t *l) { return l->peak_bytes; }

static void nm_prom_family(nm_buf_t *b, const nm_stats_t *st, const char *name, const char *type,
                           const char *help, nm_line_field_fn field) {
  nm_prom_head(b, name, type, help);
  for (unsigned i = 0; i < NM_BACKEND_COUNT; i++)
    nm_prom_sample(b, name, "backend", nm_backend_names[i], field(nm_backend_line(st, i)));
}

static void nm_prom_class_family(nm_buf_t *b, const nm_stats_t *st, const char *name,
                                 const char *type, const char *help, nm_line_field_fn field) {
  nm_prom_head(b, name, type, help);
  for (unsigned c = 0; c < st->classes; c++) {
    const nm_stats_line_t *l = &st->cls[c];
    if (l->allocs == 0 && l->pages == 0) continue;
    char size[24];
    nm_buf_t sb = NM_BUF(size);
    nm_buf_u64(&sb, st->class_size[c]);
    nm_buf_char(&sb, '\0');
    size[sizeof size - 1] = '\0';
    nm_prom_sample(b, name, "size", size, field(l));
  }
}

static void nm_format_prometheus(nm_buf_t *b, const nm_stats_t *st) {
  nm_prom_family(b, st, "nebula_allocations_total", "counter", "Blocks handed out.", f_allocs);
  nm_prom_family(b, st, "nebula_frees_total", "counter", "Blocks freed (by any thread).", f_frees);
  nm_prom_family(b, st, "nebula_remote_frees_total", "counter",
                 "Blocks freed by a thread other than their owner's.", f_remote);
  nm_prom_family(b, st, "nebula_live_blocks", "gauge", "Blocks allocated and not freed.", f_live);
  nm_prom_family(b, st, "nebula_bytes_in_use", "gauge",
                 "Usable bytes of live blocks (bump: bytes of its live regions).", f_bytes);
  nm_prom_class_family(b, st, "nebula_class_allocations_total", "counter",
                       "Blocks handed out, per pool size class (label: block size).", f_allocs);
  nm_prom_class_family(b, st, "nebula_class_live_blocks", "gauge",
                       "Live blocks per pool size class.", f_live);
  nm_prom_class_family(b, st, "nebula_class_peak_page_bytes", "gauge",
                       "Most bytes of pages a size class held (sum of each thread's peak).", f_peak);
  nm_prom_head(b, "nebula_mapped_bytes", "gauge", "Bytes of segments mapped from the kernel.");
  nm_prom_sample(b, "nebula_mapped_bytes", NULL, NULL, st->mapped);
  nm_prom_head(b, "nebula_page_bytes", "gauge", "Bytes of slices holding pages.");
  nm_prom_sample(b, "nebula_page_bytes", NULL, NULL, st->page_bytes);
  nm_prom_head(b, "nebula_page_bytes_peak", "gauge", "Sum of each heap's page bytes peak.");
  nm_prom_sample(b, "nebula_page_bytes_peak", NULL, NULL, st->page_bytes_peak);
  nm_prom_head(b, "nebula_purged_bytes_total", "counter", "Bytes given back to the kernel.");
  nm_prom_sample(b, "nebula_purged_bytes_total", NULL, NULL, st->purged);
  nm_prom_head(b, "nebula_bump_regions", "gauge", "Live bump regions.");
  nm_prom_sample(b, "nebula_bump_regions", NULL, NULL, st->bump_regions_live);
  nm_prom_head(b, "nebula_bump_regions_pinned", "gauge",
               "Bump regions left behind by their thread and kept by live blocks.");
  nm_prom_sample(b, "nebula_bump_regions_pinned", NULL, NULL, st->bump_pinned);
  nm_prom_head(b, "nebula_rss_bytes", "gauge", "Resident set size of the process.");
  nm_prom_sample(b, "nebula_rss_bytes", NULL, NULL, st->rss);
  nm_prom_head(b, "nebula_threads", "gauge", "Threads with a heap.");
  nm_prom_sample(b, "nebula_threads", NULL, NULL, st->threads);
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
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = nm_stats_on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}
