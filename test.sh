#!/usr/bin/env bash
# Runs every test of the repository with one command, on a fresh machine or a warm one:
#   1. provisions what the real-broker tests need (Docker, local broker images, the SQS emulator);
#   2. builds the solution once (warnings are errors);
#   3. runs every test project under tests/ in parallel, each in its own process;
#   4. prints one line per project, the conformance matrix, and the closing line
#        tests: N passed, N failed[, N skipped]
#      summed over every project. Exits non-zero on any failure, including a broker that should have started.
# Environment: BUS_TEST_FILTER (a dotnet test --filter for every project), BUS_TEST_PARALLEL (default 4),
# BUS_TEST_SKIP_PROVISION=1 (use what is already running), and the BUS_TEST_<BACKEND>_URL variables
# described in README.md to run against your own brokers.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
root=$PWD
artifacts=$root/artifacts
results=$artifacts/test-results
mkdir -p "$results"
rm -f "$results"/*.trx "$results"/*.log "$results"/*.status

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export BUS_CONFORMANCE_ARTIFACTS=$artifacts/conformance
started=$SECONDS
say() { printf '[test.sh %4ss] %s\n' "$((SECONDS - started))" "$*"; }
provisioning_tail() {
  # Repeated next to the closing line, because a CI log is often read from its end.
  if [ "${provision_failures:-0}" -gt 0 ]; then
    echo
    say "provisioning failed; its last lines ($results/provision.log, $results/install-fauxqs.log):"
    tail -n 15 "$results/provision.log" "$results/install-fauxqs.log" 2>/dev/null | sed 's/^/      /'
  fi
}
finish() { # passed failed skipped
  local line="tests: $1 passed, $2 failed"
  [ "$3" -gt 0 ] && line="$line, $3 skipped"
  echo "$line"
  [ "$2" -eq 0 ] && exit 0 || exit 1
}

# --- 1. provisioning ------------------------------------------------------------------------------
provision_failures=0
if [ "${BUS_TEST_SKIP_PROVISION:-0}" != 1 ]; then
  if [ -x scripts/provision.sh ]; then
    say "provisioning brokers (scripts/provision.sh)"
    if provision_env=$(scripts/provision.sh 2> >(tee "$results/provision.log" >&2)); then
      eval "$provision_env"
    else
      # The broker tests will fail with the reason; keep going so every other project still reports.
      say "PROVISIONING FAILED: brokers that are expected here cannot start"
      provision_failures=1
    fi
  fi
  if [ -x scripts/install-fauxqs.sh ]; then
    say "installing the SQS emulator (scripts/install-fauxqs.sh)"
    scripts/install-fauxqs.sh >"$results/install-fauxqs.log" 2>&1 || { say "fauxqs install FAILED (see $results/install-fauxqs.log)"; provision_failures=$((provision_failures + 1)); }
  fi
fi
export DOCKER_API_VERSION=${DOCKER_API_VERSION:-1.41}
export TESTCONTAINERS_HOST_OVERRIDE=${TESTCONTAINERS_HOST_OVERRIDE:-127.0.0.1}
export TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true}

# --- 2. build -------------------------------------------------------------------------------------
say "building Bus.sln"
if ! dotnet build Bus.sln -c Release -nologo -v quiet -clp:ErrorsOnly >"$results/build.log" 2>&1; then
  grep -E 'error|Error' "$results/build.log" | sort -u | head -40
  say "BUILD FAILED (full log: $results/build.log)"
  provisioning_tail
  finish 0 $((1 + provision_failures)) 0
fi

# --- 3. tests -------------------------------------------------------------------------------------
mapfile -t projects < <(find tests -mindepth 2 -maxdepth 2 -name '*.Tests.csproj' | sort)
say "running ${#projects[@]} test projects, ${BUS_TEST_PARALLEL:-4} at a time"
run_project() {
  local project=$1 name
  name=$(basename "$project" .csproj)
  # A test that hangs ends its project's run after 10 minutes and is named in the log (the blame collector), instead
  # of holding the run until the 25-minute limit below with nothing to say which test it was.
  local args=(test "$project" -c Release --no-build --nologo --logger "trx;LogFileName=$name.trx" --results-directory "$results"
    --blame-hang-timeout 600s --blame-hang-dump-type none)
  [ -n "${BUS_TEST_FILTER:-}" ] && args+=(--filter "$BUS_TEST_FILTER")
  local begin=$SECONDS
  timeout 1500 dotnet "${args[@]}" >"$results/$name.log" 2>&1
  echo "$? $((SECONDS - begin))" >"$results/$name.status"
}
export -f run_project
export results
printf '%s\n' "${projects[@]}" | xargs -P "${BUS_TEST_PARALLEL:-4}" -I{} bash -c 'run_project "$@"' _ {}

# --- 4. report ------------------------------------------------------------------------------------
passed=0 failed=$provision_failures skipped=0
for project in "${projects[@]}"; do
  name=$(basename "$project" .csproj)
  read -r code seconds <"$results/$name.status" || { code=1 seconds=0; }
  trx=$results/$name.trx
  if [ -f "$trx" ] && counters=$(grep -o '<Counters [^>]*>' "$trx"); then
    p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
    f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
    t=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")
    e=$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$counters")
    s=$((t - e))
    # A runner that died (timeout, crash) after writing partial results still counts as a failure.
    if [ "$code" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  else
    p=0 f=1 s=0
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  printf '  %-28s %4d passed %3d failed %3d skipped  %4ss%s\n' "$name" "$p" "$f" "$s" "$seconds" "$([ "$f" -gt 0 ] && echo "   (log: $results/$name.log)")"
  if [ "$f" -gt 0 ]; then
    grep -E '^\s+(Failed|\[FAIL\])|Error Message:|test running when the crash occurred' -A3 "$results/$name.log" | head -40 | sed 's/^/      /'
  fi
done

if [ -f "$artifacts/conformance/matrix.md" ]; then
  echo
  echo "Conformance matrix ($artifacts/conformance/matrix.md):"
  sed -n '1,/^$/p' "$artifacts/conformance/matrix.md"
  # Keep the README's copy of the matrix the one the suite printed last.
  if grep -q '<!-- matrix:start -->' README.md 2>/dev/null; then
    python3 - "$artifacts/conformance/matrix.md" <<'PY' || true
import sys, re
matrix = open(sys.argv[1], encoding="utf-8").read().strip()
readme = open("README.md", encoding="utf-8").read()
updated = re.sub(r"(<!-- matrix:start -->\n).*?(\n<!-- matrix:end -->)", lambda m: m.group(1) + matrix + m.group(2), readme, flags=re.S)
if updated != readme:
    open("README.md", "w", encoding="utf-8").write(updated)
PY
  fi
fi
provisioning_tail
echo
say "done"
finish "$passed" "$failed" "$skipped"
