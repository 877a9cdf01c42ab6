/* nm_gen: deterministic input data for the integration workloads (run without the preload).
 *
 *   nm_gen lines MIB      text lines for sort: words, signed numbers, decimals, many
 *                         repeated lines (so sort -u has work), about MIB MiB on stdout
 *   nm_gen sql ROWS       an SQL script for sqlite3 on stdout: ROWS inserts in one
 *                         transaction, a second table, indexes, joins, GROUP BY, window
 *                         functions, a recursive CTE, ordered output, integrity checks
 *
 * The output depends only on the arguments. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_state = 0x243F6A8885A308D3ull;

static uint64_t rng(void) {
  uint64_t z = (g_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static unsigned below(unsigned n) { return (unsigned)(rng() % n); }

static void word(char *out, unsigned len) {
  static const char letters[] = "etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLU";
  for (unsigned i = 0; i < len; i++) out[i] = letters[below(sizeof letters - 1)];
  out[len] = '\0';
}

static int gen_lines(unsigned long mib) {
  static char buf[1 << 20];
  setvbuf(stdout, buf, _IOFBF, sizeof buf);
  /* a vocabulary, so that lines and keys repeat */
  enum { VOCAB = 50000 };
  static char vocab[VOCAB][17];
  for (unsigned i = 0; i < VOCAB; i++) word(vocab[i], 3 + below(14));
  unsigned long long target = (unsigned long long)mib << 20, written = 0;
  char line[256];
  while (written < target) {
    int n;
    switch (below(8)) {
      case 0:   /* an exact repeat of a small set of lines */
        n = snprintf(line, sizeof line, "dup %s %u\n", vocab[below(500)], below(50));
        break;
      case 1:   /* a leading number: sort -n */
        n = snprintf(line, sizeof line, "%" PRId64 " %s\n", (int64_t)(rng() % 2000000001) - 1000000000,
                     vocab[below(VOCAB)]);
        break;
      case 2:
        n = snprintf(line, sizeof line, "%u.%03u %s %s\n", below(100000), below(1000),
                     vocab[below(VOCAB)], vocab[below(VOCAB)]);
        break;
      default: {
        char w[64];
        word(w, 1 + below(40));
        n = snprintf(line, sizeof line, "%s %s %s %" PRIu64 "\n", vocab[below(VOCAB)], w,
                     vocab[below(VOCAB)], rng() % 1000000);
      }
    }
    if (fwrite(line, 1, (size_t)n, stdout) != (size_t)n) return 1;
    written += (unsigned long long)n;
  }
  return fflush(stdout) != 0;
}

static int gen_sql(unsigned long rows) {
  static char buf[1 << 20];
  setvbuf(stdout, buf, _IOFBF, sizeof buf);
  printf("PRAGMA journal_mode=WAL;\nPRAGMA cache_size=-4000;\n");
  printf("CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, qty INTEGER, "
         "price REAL, note TEXT);\n");
  printf("CREATE TABLE grp(id INTEGER PRIMARY KEY, label TEXT, region TEXT);\n");
  printf("BEGIN;\n");
  for (unsigned g = 0; g < 1000; g++) {
    char w[32];
    word(w, 4 + below(10));
    printf("INSERT INTO grp VALUES(%u,'%s-%u','r%u');\n", g, w, g, below(12));
  }
  for (unsigned long i = 1; i <= rows; i++) {
    char name[48], note[200];
    word(name, 3 + below(20));
    unsigned nl = below(4) == 0 ? below(180) : 0;
    word(note, nl);
    if (nl)
      printf("INSERT INTO item VALUES(%lu,%u,'%s',%u,%u.%02u,'%s');\n", i, below(1000), name,
             below(10000), below(5000), below(100), note);
    else
      printf("INSERT INTO item VALUES(%lu,%u,'%s',%u,%u.%02u,NULL);\n", i, below(1000), name,
             below(10000), below(5000), below(100));
  }
  printf("COMMIT;\n");
  printf("CREATE INDEX item_grp ON item(grp);\n");
  printf("CREATE INDEX item_name ON item(name, qty);\n");
  printf("CREATE INDEX grp_region ON grp(region);\n");
  printf("ANALYZE;\n");
  printf("SELECT 'rows', count(*), sum(qty), round(sum(price),2) FROM item;\n");
  printf("SELECT grp, count(*), sum(qty), round(avg(price),4), min(name), max(name) FROM item "
         "GROUP BY grp ORDER BY grp;\n");
  printf("SELECT g.region, count(*), sum(i.qty), round(sum(i.price*i.qty),2) FROM item i "
         "JOIN grp g ON g.id=i.grp GROUP BY g.region ORDER BY g.region;\n");
  printf("SELECT g.label, i.name, i.qty FROM item i JOIN grp g ON g.id=i.grp WHERE i.qty > "
         "9990 ORDER BY i.name, i.id;\n");
  printf("SELECT substr(name,1,2) AS p, count(*), group_concat(DISTINCT length(name)) FROM item "
         "GROUP BY p ORDER BY p;\n");
  printf("SELECT id, name, qty, rank() OVER (PARTITION BY grp ORDER BY qty DESC, id) AS r FROM "
         "item WHERE grp < 20 ORDER BY grp, r;\n");
  printf("SELECT name, count(*) FROM item GROUP BY name HAVING count(*) > 1 ORDER BY 2 DESC, 1 "
         "LIMIT 200;\n");
  /* a sort that no index serves: a temp b-tree of every row */
  printf("SELECT id, note, price FROM item ORDER BY note, price DESC, id;\n");
  printf("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 50000) "
         "SELECT count(*), sum(x), group_concat(x %% 7, '') IS NOT NULL FROM c;\n");
  printf("UPDATE item SET note = upper(name) || '-' || qty WHERE id %% 3 = 0;\n");
  printf("DELETE FROM item WHERE qty < 2000;\n");
  printf("SELECT count(*), sum(length(note)) FROM item;\n");
  printf("VACUUM;\n");
  printf("PRAGMA integrity_check;\n");
  printf("SELECT * FROM item ORDER BY name, id;\n");
  return fflush(stdout) != 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "lines") == 0) return gen_lines(strtoul(argv[2], NULL, 0));
  if (argc == 3 && strcmp(argv[1], "sql") == 0) return gen_sql(strtoul(argv[2], NULL, 0));
  fprintf(stderr, "usage: nm_gen lines MIB | nm_gen sql ROWS\n");
  return 2;
}
