/* A document of docs/ read whole for the tests that hold it to the code: meson passes its
 * path in an environment variable (tests/unit/meson.build). */
#ifndef NM_TEST_DOC_FILE_H
#define NM_TEST_DOC_FILE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

/* The document named by the variable `var`, NUL-terminated, in a buffer of its own. */
static inline char *doc_file_read(const char *var) {
  const char *path = getenv(var);
  cr_assert_not_null(path, "%s is not set (meson test sets it to the document's path)", var);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "cannot open %s", path);
  static char doc[1 << 20];
  size_t len = fread(doc, 1, sizeof doc - 1, f);
  fclose(f);
  doc[len] = '\0';
  return doc;
}

#endif
