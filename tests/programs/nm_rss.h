/* Resident set size of this process, for the helper programs' RSS checks. */
#ifndef NM_PROGRAMS_RSS_H
#define NM_PROGRAMS_RSS_H

#include <stdio.h>
#include <unistd.h>

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return -1;
  long size = 0, resident = -1;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

#endif
