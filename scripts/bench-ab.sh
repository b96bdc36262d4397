#!/usr/bin/env bash
# Compares two builds with the paired benchmark runner: the working tree ("head") and a git ref ("ref"), in
# alternating processes (ref, head, ref, head, ...), because on a 2-core machine shared with the broker one run of
# each, minutes apart, differs by more than most changes do. Both builds use this tree's benchmark harness
# (tests/Bus.Benchmarks), so that the two sides are measured the same way; the ref's core and adapters must compile
# with it.
#
#   scripts/bench-ab.sh <ref> <Class> <rounds> <Method,Method,...> [runs per build, default 2]
#   e.g. BUS_BENCH_BASELINE=RawEndToEndAdapterLayout scripts/bench-ab.sh HEAD~1 RedisBenchmarks 16 RawEndToEndAdapterLayout,BusEndToEnd
#
# The broker must already run, and the benchmark's variables (BUS_BENCH_*_URL, BUS_BENCH_BROKER_PID,
# BUS_BENCH_BASELINE, ...) are passed through. Prints each run's rows (method, msg/s, client CPU µs/msg, JIT'd,
# per-round ratio to the baseline); the whole reports stay in the directory named at the end.
set -euo pipefail

if [[ $# -lt 4 ]]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

ref=$1 class=$2 rounds=$3 methods=$4 runs=${5:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/bench-ab.XXXXXX)
git -C "$root" rev-parse --verify --quiet "$ref^{commit}" > /dev/null || { echo "bench-ab: '$ref' is not a commit" >&2; exit 2; }

git -C "$root" worktree add --quiet --detach "$work/ref-src" "$ref"
trap 'git -C "$root" worktree remove --force "$work/ref-src" 2> /dev/null || true' EXIT

# This tree's harness in the ref's tree (without its build output).
rm -rf "$work/ref-src/tests/Bus.Benchmarks"
mkdir -p "$work/ref-src/tests/Bus.Benchmarks"
(cd "$root/tests/Bus.Benchmarks" && tar --exclude=./bin --exclude=./obj --exclude=./BenchmarkDotNet.Artifacts -cf - .) \
    | tar -xf - -C "$work/ref-src/tests/Bus.Benchmarks"

echo "bench-ab: building $ref and the working tree into $work" >&2
dotnet build "$work/ref-src/tests/Bus.Benchmarks" -c Release -o "$work/ref" -nologo -v quiet > "$work/build-ref.log" 2>&1 \
    || { tail -20 "$work/build-ref.log" >&2; exit 1; }
dotnet build "$root/tests/Bus.Benchmarks" -c Release -o "$work/head" -nologo -v quiet > "$work/build-head.log" 2>&1 \
    || { tail -20 "$work/build-head.log" >&2; exit 1; }

for ((i = 1; i <= runs; i++)); do
    for side in ref head; do
        log="$work/$side-$i.log"
        (cd "$work" && dotnet "$work/$side/Bus.Benchmarks.dll" --paired "$class" "$rounds" "$methods") > "$log" 2>&1 \
            || { echo "bench-ab: the $side run $i failed:" >&2; tail -5 "$log" >&2; exit 1; }
        echo "$side run $i:"
        # category | method | msg/s | B/msg | client CPU | ... | JIT'd | ratio | rounds >= 0.95
        grep '^| ' "$log" | grep -v '^| category' | awk -F'|' '{ printf "  %-70.70s %10s msg/s %8s µs/msg  JIT %-10s %s\n", $3, $4, $6, $13, $14 }'
    done
done
echo "bench-ab: reports in $work"
