#!/bin/sh
# Attribution's cost per record, with the placement held fixed: a 2 x 2 A/B.
#
#   bench/ab_cgroup.sh [ROUNDS]          # from the checkout's root, as root
#   BASE=4a9f554 AFTER=main ROUNDS=8 bench/ab_cgroup.sh
#
# Runs `python -m bench --runs 1 --json throughput` for two versions of the
# code (BASE, default 4a9f554, the commit before attribution; AFTER, default
# the checkout as it is) with the bench's writers in the root cgroup and in a
# unit's cgroup (trio-bench.slice/system.slice/bench.service: records then
# carry cgroup, unit and slice), the daemon in the same cgroup of its own in
# every run (trio-bench.slice/daemon.service), so that only the writers'
# placement and the code differ. Each round runs the four cells, in an order
# reversed every other round; the runs of one round are the pairs whose
# ratios are reported. Both versions run this checkout's throughput bench
# (bench/_cgroup.py, _daemon.py, loadgen.py, throughput.py copied into a
# git archive of each). Placement is bench/_cgroup.py's (BENCH_WRITER_CGROUP,
# BENCH_DAEMON_CGROUP).
#
# Prints one JSON line per run to $OUT (default /tmp/ab/cgroup.jsonl, the
# load average included) and, at the end, per cell the medians of msgs/s
# and of CPU s per 1M records (whole; trio's thread, worker threads, store
# helper, the kernel's part; how many runs appended from a worker thread), and
# the medians of the rounds' ratios: AFTER/BASE with writers in the unit and
# in the root cgroup, unit/root for each version. CPU per record is the
# steadier figure on a shared machine. Exits 0 with a message (skipped)
# where cgroups cannot be made (not root, no cgroup v2).
set -eu

ROUNDS=${1:-${ROUNDS:-8}}
BASE=${BASE:-4a9f554}
AFTER=${AFTER:-}
OUT=${OUT:-/tmp/ab/cgroup.jsonl}
UNIT_CG=${UNIT_CG:-trio-bench.slice/system.slice/bench.service}
DAEMON_CG=${DAEMON_CG:-trio-bench.slice/daemon.service}
HERE=$(pwd)
PY="$HERE/.venv/bin/python"

if [ "$(id -u)" != 0 ]; then echo "ab_cgroup: skipped: needs root (creates cgroups)"; exit 0; fi
if ! grep -q ' - cgroup2 ' /proc/self/mountinfo; then
  echo "ab_cgroup: skipped: no cgroup v2 hierarchy mounted"; exit 0
fi

tree() {  # tree REV DIR: the code at REV, with this checkout's throughput bench
  rm -rf "$2" && mkdir -p "$2"
  git archive "$1" | tar -x -C "$2"
  for f in _cgroup.py _daemon.py loadgen.py throughput.py; do cp "$HERE/bench/$f" "$2/bench/$f"; done
}
tree "$BASE" /tmp/ab/cg-base
if [ -n "$AFTER" ]; then tree "$AFTER" /tmp/ab/cg-after; AFTER_DIR=/tmp/ab/cg-after; else AFTER_DIR=$HERE; fi
mkdir -p "$(dirname "$OUT")" && : > "$OUT"

run() {  # run CODE WRITERS ROUND
  dir=/tmp/ab/cg-base; [ "$1" = after ] && dir=$AFTER_DIR
  cg=/; [ "$2" = unit ] && cg=$UNIT_CG
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  line=$(cd "$dir" && BENCH_DAEMON_CGROUP=$DAEMON_CG BENCH_WRITER_CGROUP=$cg PYTHONPATH="$dir" \
    "$PY" -m bench --runs 1 --json throughput | tail -n 1)
  case $line in '{"scenario"'*) ;; *) echo "ab_cgroup: the run failed ($1, writers $2)" >&2; exit 1;; esac
  printf '{"round":%d,"code":"%s","writers":"%s","load":"%s","result":%s}\n' \
    "$3" "$1" "$2" "$load" "$line" >> "$OUT"
  echo "round $3 $1 writers=$2 load=$load: $(printf '%s' "$line" | cut -c1-120)"
}

i=1
while [ "$i" -le "$ROUNDS" ]; do
  if [ $((i % 2)) = 1 ]; then order="base:root after:root base:unit after:unit"
  else order="after:unit base:unit after:root base:root"; fi
  for cell in $order; do run "${cell%%:*}" "${cell##*:}" "$i"; done
  i=$((i + 1))
done

"$PY" - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
cells = {}
for r in rows:
    cells.setdefault((r["code"], r["writers"]), {})[r["round"]] = r["result"]["runs"][0]
med = statistics.median
parts = ("cpu_s_per_million", "cpu_main_s_per_million", "cpu_threads_s_per_million",
         "cpu_helper_s_per_million", "cpu_system_s_per_million")
print("cell          msgs/s   CPU s/1M: whole  trio  threads helper kernel  runs (threaded)")
for (code, w), runs in sorted(cells.items()):
    v = list(runs.values())
    threaded = sum(r["cpu_threads_s_per_million"] >= 0.1 for r in v)
    print(f"{code:5} {w:5} {med([r['msgs_per_s'] for r in v]):9,.0f}           "
          + " ".join(f"{med(xs):6.2f}" if (xs := [r[k] for r in v if k in r]) else "     -"
                     for k in parts)
          + f"  {len(v)} ({threaded})")
def ratios(a, b, key):
    ra, rb = cells.get(a, {}), cells.get(b, {})
    return [ra[k][key] / rb[k][key] for k in ra if k in rb]
def show(xs):
    if len(xs) < 2:
        return "-"
    q = statistics.quantiles(xs, n=4)
    return f"{med(xs):.3f} (IQR {q[0]:.3f}-{q[2]:.3f}, {len(xs)} pairs)"
for name, a, b in [
    ("after/base, writers in the unit", ("after", "unit"), ("base", "unit")),
    ("after/base, writers in root    ", ("after", "root"), ("base", "root")),
    ("unit/root, after               ", ("after", "unit"), ("after", "root")),
    ("unit/root, base                ", ("base", "unit"), ("base", "root")),
]:
    print(f"{name}  CPU/1M {show(ratios(a, b, parts[0]))}  msgs/s {show(ratios(a, b, 'msgs_per_s'))}")
loads = [float(r["load"].split()[0]) for r in rows]
print(f"load average (1 min) over the runs: {min(loads)}-{max(loads)}, median {med(loads)}")
EOF
