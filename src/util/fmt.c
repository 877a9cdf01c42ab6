#include "util/fmt.h"

#include <string.h>

void nm_buf_char(nm_buf_t *b, char c) {
  if (b->len < b->cap) b->data[b->len++] = c;
}

void nm_buf_str(nm_buf_t *b, const char *s) {
  while (*s) nm_buf_char(b, *s++);
}

void nm_buf_u64(nm_buf_t *b, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) nm_buf_char(b, tmp[--n]);
}

void nm_buf_i64(nm_buf_t *b, int64_t v) {
  if (v < 0) {
    nm_buf_char(b, '-');
    nm_buf_u64(b, (uint64_t)0 - (uint64_t)v);
  } else {
    nm_buf_u64(b, (uint64_t)v);
  }
}

void nm_buf_hex_width(nm_buf_t *b, uint64_t v, int width) {
  static const char digits[] = "0123456789abcdef";
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = digits[v & 15];
    v >>= 4;
  } while (v);
  nm_buf_str(b, "0x");
  for (int i = n; i < width; i++) nm_buf_char(b, '0');
  while (n) nm_buf_char(b, tmp[--n]);
}

void nm_buf_hex(nm_buf_t *b, uint64_t v) {
  nm_buf_hex_width(b, v, 0);
}

void nm_buf_bytes(nm_buf_t *b, uint64_t v) {
  static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  if (v < 1024) {
    nm_buf_u64(b, v);
    nm_buf_str(b, " B");
    return;
  }
  unsigned u = 0;
  uint64_t whole = v, tenths = 0;
  while (whole >= 1024 && u < 5) {
    tenths = (whole % 1024) * 10 / 1024;
    whole /= 1024;
    u++;
  }
  nm_buf_u64(b, whole);
  nm_buf_char(b, '.');
  nm_buf_u64(b, tenths);
  nm_buf_char(b, ' ');
  nm_buf_str(b, units[u]);
}

void nm_buf_pad_left(nm_buf_t *b, size_t mark, size_t width) {
  if (mark > b->len) return;
  size_t n = b->len - mark;
  if (n >= width) return;
  size_t pad = width - n;
  if (b->len + pad > b->cap) return;
  memmove(b->data + mark + pad, b->data + mark, n);
  memset(b->data + mark, ' ', pad);
  b->len += pad;
}

void nm_buf_size(nm_buf_t *b, uint64_t v) {
  static const char units[] = "KMGT";
  int u = -1;
  while (v && (v & 1023) == 0 && u < 3) {
    v >>= 10;
    u++;
  }
  nm_buf_u64(b, v);
  if (u >= 0) nm_buf_char(b, units[u]);
}
