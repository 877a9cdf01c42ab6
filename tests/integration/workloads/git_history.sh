#!/bin/bash
# git_history.sh WORKDIR [COMMITS]
# Builds a repository of COMMITS (default 300) deterministic commits in a new directory
# under WORKDIR, then gc, fsck, and prints what must not depend on the allocator: commit
# ids, fsck's findings, and hashes of log --stat, trees, diffs, blame, archive and the
# object list. The integration tests run the whole script plain and under LD_PRELOAD (so
# every git, sh, md5sum process is preloaded) and compare the outputs.
set -euo pipefail
work=$(mktemp -d "$1/run.XXXXXX")
commits=${2:-300}
mkdir "$work/repo" "$work/home"
cd "$work/repo"

export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Nebula Tester" GIT_AUTHOR_EMAIL="tester@nebula.invalid"
export GIT_COMMITTER_NAME="Nebula Committer" GIT_COMMITTER_EMAIL="committer@nebula.invalid"
export LC_ALL=C TZ=UTC

git init -q -b main .
git config gc.autoDetach false
git config core.autocrlf false
git config pack.threads 2

base=1700000000
for ((i = 1; i <= commits; i++)); do
  export GIT_AUTHOR_DATE="@$((base + i * 3600)) +0000"
  export GIT_COMMITTER_DATE="@$((base + i * 3600 + 60)) +0000"
  d=dir$((i % 7))
  [[ -d $d/sub$((i % 3)) ]] || mkdir -p "$d/sub$((i % 3))"
  # grow a few files, rewrite one, add a new one, sometimes delete or rename
  for f in "$d/log.txt" "src$((i % 13)).c"; do
    text=
    for ((k = 0; k < 20; k++)); do
      printf -v line 'line %d of commit %d: value %d %x\n' "$k" "$i" \
        $(((i * 7919 + k * 104729) % 100003)) $((i * k + 12345))
      text+=$line
    done
    printf '%s' "$text" >> "$f"
  done
  text=
  for ((k = i % 50; k <= i % 50 + 200; k++)); do text+="$k"$'\n'; done
  printf '%s' "$text" > "$d/sub$((i % 3))/seq.txt"
  text="file $i"$'\n'
  for ((k = 1; k <= i % 97; k++)); do text+="$k,"; done
  printf '%s\n' "$text" > "$d/new_$i.txt"
  if ((i % 10 == 0)); then git rm -q --cached "$d/new_$((i - 5)).txt" 2>/dev/null && rm -f "$d/new_$((i - 5)).txt" || true; fi
  if ((i % 25 == 0)) && [ -f "src$((i % 13)).c" ]; then git mv "src$((i % 13)).c" "moved_$i.c"; fi
  if ((i % 40 == 0)); then git checkout -q -b "branch$i"; fi
  if ((i % 40 == 20)) && git rev-parse -q --verify "branch$((i - 20))" > /dev/null; then
    git add -A
    git commit -q -m "commit $i before merge"
    git checkout -q main
    git merge -q --no-ff -m "merge branch$((i - 20)) at $i" "branch$((i - 20))"
    continue
  fi
  git add -A
  git commit -q -m "commit $i

Touches $d and src$((i % 13)).c."
  if ((i % 50 == 0)); then git tag -a "v$i" -m "tag $i"; fi
done

git gc -q --prune=now
git fsck --full --strict --no-progress 2>&1
echo "head $(git rev-parse HEAD)"
echo "branches $(git for-each-ref --format='%(refname) %(objectname)' | md5sum)"
echo "count $(git rev-list --all --count)"
echo "log-stat $(git log --all --stat --format=fuller | md5sum)"
echo "log-patch $(git log -p -n 50 --format=raw | md5sum)"
echo "tree $(git ls-tree -r -l HEAD | md5sum)"
echo "objects $(git cat-file --batch-all-objects --batch-check | sort | md5sum)"
echo "diff $(git diff --stat HEAD~100 HEAD | md5sum)"
echo "blame $(git blame -s dir1/log.txt | md5sum)"
echo "archive $(git archive --format=tar HEAD | md5sum)"
echo "shortlog $(git shortlog -s -n --all | md5sum)"
echo "grep $(git grep -c 'commit 1' HEAD | md5sum)"
git repack -a -d -f -q
git fsck --full --strict --no-progress 2>&1
echo "after-repack $(git cat-file --batch-all-objects --batch-check | sort | md5sum)"
