#include "diag/stats_dump.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "diag/budget.h"
#include "heap/router.h"
#include "heap/stats.h"
#include "os/os.h"

#define NM_DUMP_BUFFER ((size_t)256 << 10)

static char nm_dump_storage[NM_DUMP_BUFFER];
static atomic_flag nm_dump_busy = ATOMIC_FLAG_INIT;
static nm_stats_t nm_dump_stats;   /* too big for a signal handler's stack */

static const char *const nm_backend_names[] = { "pool", "large", "bump", "system" };

static const nm_stats_line_t *nm_backend_line(const nm_stats_t *st, unsigned i) {
  switch (i) {
  case 0: return &st->pool;
  case 1: return &st->large;
  case 2: return &st->bump;
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
  for (unsigned i = 0; i < NM_BUDGET_COUNT; i++) {
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
  for (unsigned i = 0; i < 4; i++) nm_text_line(b, nm_backend_names[i], nm_backend_line(st, i));
  nm_text_line(b, "total", &st->total);
  nm_buf_str(b, "  bump regions: ");
  nm_buf_u64(b, st->bump_regions_live);
  nm_buf_str(b, " live (");
  nm_buf_bytes(b, st->bump_region_bytes);
  nm_buf_str(b, "), ");
  nm_buf_u64(b, st->bump_pinned);
  nm_buf_str(b, " pinned (left behind by their thread, kept by live blocks: ");
  nm_buf_bytes(b, st->bump_pinned * nm_route.bump_region);
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
  nm_json_key(b, "bump_region", nm_route.bump_region, false);
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
  for (unsigned i = 0; i < NM_BUDGET_COUNT; i++) {
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
  for (unsigned i = 0; i < 4; i++) {
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
      nm_json_key(b, "region_bytes", nm_route.bump_region, false);
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
  if (nm_route.stats_file[0]) {
    nm_buf_str(b, ",\"stats_file\":");
    nm_json_string(b, nm_route.stats_file);
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
  for (unsigned i = 0; i < 4; i++)
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
  for (unsigned i = 0; i < NM_BUDGET_COUNT; i++) any |= nm_budgets[i].limit != 0;
  if (any) {
    nm_prom_head(b, "nebula_budget_bytes", "gauge", "Budget limits (label: the config key).");
    for (unsigned i = 0; i < NM_BUDGET_COUNT; i++)
      if (nm_budgets[i].limit) nm_prom_sample(b, "nebula_budget_bytes", "key", nm_budget_key(i), nm_budgets[i].limit);
    nm_prom_head(b, "nebula_budget_used_bytes", "gauge", "Bytes charged to each budget.");
    for (unsigned i = 0; i < NM_BUDGET_COUNT; i++)
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

/* stats_file with %p replaced by the pid; false if it does not fit. */
static bool nm_stats_path(char *out, size_t size, const char *suffix) {
  nm_buf_t b = { out, size - 1, 0 };
  for (const char *s = nm_route.stats_file; *s; s++) {
    if (s[0] == '%' && s[1] == 'p') {
      nm_buf_u64(&b, (uint64_t)getpid());
      s++;
    } else {
      nm_buf_char(&b, *s);
    }
  }
  nm_buf_str(&b, suffix);
  if (b.len >= size - 1) return false;
  out[b.len] = '\0';
  return true;
}

/* Written to a temporary name, then renamed: a reader never sees half a dump. */
static void nm_stats_write_file(const char *data, size_t len) {
  char path[NM_CONFIG_PATH_MAX + 32], tmp[NM_CONFIG_PATH_MAX + 32];
  if (!nm_stats_path(path, sizeof path, "") || !nm_stats_path(tmp, sizeof tmp, ".tmp")) return;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    static const char msg[] = "nebula: stats_file cannot be written\n";
    nm_os_write(2, msg, sizeof msg - 1);
    return;
  }
  nm_os_write(fd, data, len);
  close(fd);
  rename(tmp, path);
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
  nm_stats_emit((nm_stats_format_t)nm_route.stats_format, nm_route.stats_file[0] != '\0');
}

void nm_stats_dump_text_stderr(void) {
  nm_stats_emit(NM_STATS_TEXT, false);
}

static void nm_stats_on_signal(int sig) {
  (void)sig;
  nm_stats_dump();   /* keeps errno */
}

void nm_stats_install(void) {
  int sig;
  switch (nm_route.stats_signal) {
  case NM_STATS_SIGUSR1: sig = SIGUSR1; break;
  case NM_STATS_SIGUSR2: sig = SIGUSR2; break;
  default: return;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = nm_stats_on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}
