#!/usr/bin/env bash
# Compare benchmarks before and after a change, in the same session: a tree at BASE and the
# working tree alternate ROUNDS times, each running its own copy of each script against its
# own in-run baseline. TMPDIR=/dev/shm keeps the SQLite files in memory, so fsync noise from
# other work on the machine does not drown a 5% difference (the ratios are lower than on disk).
#
#   bash bench/compare.sh BASE [ROUNDS] [BENCH...]
#   bash bench/compare.sh 91d72f0 3 bench_reserve_commit bench_record
set -euo pipefail
base_rev=${1:?usage: bench/compare.sh BASE [ROUNDS] [BENCH...]}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(bench_reserve_commit bench_record bench_leases bench_record_postgres)
here=$(cd "$(dirname "$0")/.." && pwd)
python=$here/.venv/bin/python
scratch=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$scratch/base" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
git -C "$here" worktree add -q --detach "$scratch/base" "$base_rev"
tmp=${BENCH_TMPDIR:-/dev/shm}
for round in $(seq 1 "$rounds"); do
  for side in base head; do
    tree=$here; [ "$side" = base ] && tree=$scratch/base
    for bench in "${benches[@]}"; do
      echo "=== round $round $side $bench"
      (cd "$tree" && TMPDIR=$tmp PYTHONPATH=$tree/src "$python" "bench/$bench.py") || true
    done
  done
done
