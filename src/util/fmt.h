/* A malloc-free text builder for reports written with write(2): usable inside signal
 * handlers and while the allocator is in an inconsistent state. Output past the buffer's
 * end is dropped, never overflowed. */
#ifndef NM_FMT_H
#define NM_FMT_H

#include <stddef.h>
#include <stdint.h>

typedef struct nm_buf_s {
  char *data;
  size_t cap;
  size_t len;
} nm_buf_t;

#define NM_BUF(storage) { (storage), sizeof(storage), 0 }

void nm_buf_str(nm_buf_t *b, const char *s);
void nm_buf_char(nm_buf_t *b, char c);
void nm_buf_u64(nm_buf_t *b, uint64_t v);
void nm_buf_i64(nm_buf_t *b, int64_t v);
/* 0x1f; the _width form zero-pads to `width` digits. */
void nm_buf_hex(nm_buf_t *b, uint64_t v);
void nm_buf_hex_width(nm_buf_t *b, uint64_t v, int width);
/* Bytes with a binary unit: 0 B, 512 B, 1.5 KiB, 12.0 MiB. */
void nm_buf_bytes(nm_buf_t *b, uint64_t v);
/* A size in its shortest exact config form: 0, 257, 64K, 2M, 2097153. */
void nm_buf_size(nm_buf_t *b, uint64_t v);
/* Right-align the text written since `mark` in a field of `width` characters. */
void nm_buf_pad_left(nm_buf_t *b, size_t mark, size_t width);

#endif
