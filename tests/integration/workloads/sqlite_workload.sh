#!/bin/bash
# sqlite_workload.sh SQL WORKDIR
# Runs the SQL script (made by nm_gen sql) on a new database in WORKDIR and prints counts,
# the first result rows and a hash of the whole output. The integration tests run it plain
# and under LD_PRELOAD and compare the outputs.
set -euo pipefail
sql=$1
cd "$2"
rm -f test.db test.db-wal test.db-shm
sqlite3 -bail test.db < "$sql" > out.txt
echo "lines $(wc -l < out.txt)"
head -n 40 out.txt
echo "output $(md5sum < out.txt)"
sqlite3 test.db 'PRAGMA integrity_check; SELECT count(*), sum(qty), min(name), max(name) FROM item; SELECT count(*) FROM grp;'
rm -f out.txt test.db test.db-wal test.db-shm
