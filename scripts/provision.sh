#!/usr/bin/env bash
# Provisions what the real-broker tests need on a Debian bookworm machine, without pulling any image:
#   1. docker.io, debootstrap and docker-compose (apt; `apt-get update` only when something is missing);
#   2. a running Docker daemon (started in the background when `docker info` fails);
#   3. local/debian:bookworm, bootstrapped from the mirror apt already uses;
#   4. local/{rabbitmq,redis,nats,mosquitto,kafka-mock}:bookworm from docker/<name>/Dockerfile, built in parallel and
#      rebuilt when their build context (or the base image) changes.
# Idempotent: a second run only checks, in about a second. Run as root (CI is root); a warm machine needs root only
# for what is missing. Progress goes to stderr; stdout carries only `export NAME=value` lines for Testcontainers,
# which are also written to artifacts/testcontainers.env. Usage from a script with `set -e`:
#   provision_env=$(scripts/provision.sh) && eval "$provision_env"
# Environment: BUS_PROVISION_SKIP_IMAGES=1 skips steps 3-4; DOCKERD_LOG (default /var/log/bus-dockerd.log).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work_dir=${TMPDIR:-/tmp}/bus-provision
env_file=$repo_root/artifacts/testcontainers.env
dockerd_log=${DOCKERD_LOG:-/var/log/bus-dockerd.log}
base_image=local/debian:bookworm
broker_images=(rabbitmq redis nats mosquitto kafka-mock)
# Bump when the way the base image is made changes: every broker image is rebuilt on top of it.
base_recipe=3
started=$SECONDS

log() { printf '[provision %3ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
fail() { printf '[provision] FAILED: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || fail "$1 needs root: run scripts/provision.sh as root (CI does)"; }
mkdir -p "$work_dir" "$repo_root/artifacts"

# The docker CLI negotiates the API version itself; Testcontainers needs it spelled out (below).
# The classic builder: no buildx plugin is needed, and Debian's docker.io uses it anyway.
export DOCKER_BUILDKIT=0

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]})); then
  need_root "installing ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$work_dir/apt.log" 2>&1 || { tail -20 "$work_dir/apt.log" >&2; fail "apt-get update"; }
  apt-get install -y -qq "${missing[@]}" >>"$work_dir/apt.log" 2>&1 \
    || { tail -20 "$work_dir/apt.log" >&2; fail "apt-get install ${missing[*]}"; }
fi

# --- 2. docker daemon ----------------------------------------------------------------------------
docker_ready() { timeout 10 docker info >/dev/null 2>&1; }
# A process that exists and is not a zombie (PID 1 of a sandbox does not always reap what it inherits).
alive() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]; }
dockerd_running() { local pid; for pid in $(pgrep -x dockerd); do alive "$pid" && return 0; done; return 1; }

clear_stale_daemon_state() {
  # /var/run is not a tmpfs on these machines: a machine whose processes were killed (a session that ended, a CI
  # machine made from its disk) keeps dockerd's and containerd's pid files. dockerd refuses to start over a
  # docker.pid naming a live process, and waits 60 s for a "still running" containerd whose pid now belongs to
  # something else, then exits with "timeout waiting for containerd to start". With no dockerd running, neither
  # file can be right; a containerd left behind by a dead dockerd is stopped so dockerd starts its own.
  local containerd_pid_file=/var/run/docker/containerd/containerd.pid pid
  if [[ -f $containerd_pid_file ]]; then
    pid=$(cat "$containerd_pid_file" 2>/dev/null || true)
    # Only dockerd's own containerd (its config lives under /var/run/docker), never a system containerd.
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == containerd ]] \
      && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q /var/run/docker/containerd; then
      log "stopping containerd $pid left behind by a dockerd that is gone"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do alive "$pid" || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f /var/run/docker.pid "$containerd_pid_file" /var/run/docker.sock /var/run/docker/containerd/containerd.sock
}

dockerd_pid=
start_dockerd() {
  need_root "starting dockerd"
  clear_stale_daemon_state
  log "starting dockerd (log: $dockerd_log)"
  # Detached, with every standard stream redirected and every other descriptor closed: a caller capturing our output
  # (through $(...), a pipe or a process substitution, which arrives as an extra descriptor) must not wait on dockerd.
  # Without job control the subshell is no process-group leader, so setsid execs in place and $! is dockerd's pid.
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid dockerd </dev/null >>"$dockerd_log" 2>&1
  ) &
  dockerd_pid=$!
}

stop_dockerd() {
  # dockerd can take many seconds to shut down; a new one must not start while it still holds its files.
  pkill -x dockerd 2>/dev/null || return 0
  for _ in $(seq 60); do dockerd_running || return 0; sleep 0.5; done
  pkill -9 -x dockerd 2>/dev/null || true
  sleep 1
}

# Waits until the daemon answers; gives up early when the dockerd we started has exited.
await_docker() { # seconds
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    docker_ready && return 0
    [[ -n $dockerd_pid ]] && ! alive "$dockerd_pid" && return 1
    sleep 1
  done
  return 1
}

if ! docker_ready; then
  dockerd_running || start_dockerd
  if ! await_docker 90; then
    # One more start from a clean slate: the first can lose a race with state it found (see above).
    log "the Docker daemon did not come up; last lines of $dockerd_log:"
    tail -8 "$dockerd_log" >&2 || true
    stop_dockerd
    start_dockerd
    await_docker 90 || { tail -20 "$dockerd_log" >&2 || true; fail "the Docker daemon did not answer (twice; log: $dockerd_log)"; }
  fi
fi
api_version=$(docker version --format '{{.Server.APIVersion}}' 2>/dev/null) || fail "docker version"
# Broker containers of runs that were killed before their fixtures could remove them (Ryuk cannot run here).
# Only exited ones: a created or running bus-* container may belong to a test run going on beside this one.
docker ps -aq --filter 'name=^bus-' --filter status=exited | xargs -r docker rm -f >/dev/null 2>&1 || true
export DOCKER_API_VERSION=$api_version

# --- 3. base image -------------------------------------------------------------------------------
image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

apt_mirror() {
  # The URI apt uses for bookworm itself (not -security/-updates): deb822 files first, then one-line lists.
  local uri
  uri=$(awk '
    function stanza_done() { if (u != "" && s ~ /(^|[[:space:]])bookworm([[:space:]]|$)/) { print u; u = ""; exit } u = ""; s = "" }
    FNR == 1 || /^[[:space:]]*$/ { stanza_done() }
    tolower($1) == "uris:" { u = $2 }
    tolower($1) == "suites:" { $1 = ""; s = $0 }
    END { stanza_done() }
  ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  if [[ -z $uri ]]; then
    uri=$(awk '$1 == "deb" && $0 ~ /[[:space:]]bookworm[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

mirror=$(apt_mirror)
base_hash=$(printf 'recipe=%s mirror=%s' "$base_recipe" "$mirror" | sha256sum | cut -c1-16)
if [[ $(image_label "$base_image" bus.context-hash) != "$base_hash" ]]; then
  need_root "debootstrap"
  log "bootstrapping $base_image from $mirror (about a minute)"
  rootfs=$work_dir/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work_dir/debootstrap.log" 2>&1 \
    || { tail -20 "$work_dir/debootstrap.log" >&2; fail "debootstrap bookworm from $mirror"; }
  # Container-friendly defaults: no service starts from maintainer scripts, no recommends, no docs.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d" && chmod +x "$rootfs/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90bus"
  printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-exclude /usr/share/info/*\n' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/90bus-nodoc"
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL bus.context-hash=$base_hash" --change 'CMD ["/bin/bash"]' - "$base_image" >/dev/null \
    || fail "docker import $base_image"
  rm -rf "$rootfs"
fi
base_id=$(docker image inspect --format '{{.Id}}' "$base_image") || fail "$base_image is missing"

# --- 4. broker images ----------------------------------------------------------------------------
context_hash() {
  # Content, names and modes of every file in the build context, plus the base image it builds on.
  local dir=$repo_root/docker/$1
  {
    echo "base=$base_id"
    (cd "$dir" && find . -type f -printf '%p %m\n' | LC_ALL=C sort)
    (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

if [[ ${BUS_PROVISION_SKIP_IMAGES:-0} != 1 ]]; then
  pids=() names=()
  for name in "${broker_images[@]}"; do
    [[ -f $repo_root/docker/$name/Dockerfile ]] || fail "docker/$name/Dockerfile is missing"
    image=local/$name:bookworm
    hash=$(context_hash "$name")
    [[ $(image_label "$image" bus.context-hash) == "$hash" ]] && continue
    log "building $image (log: $work_dir/build-$name.log)"
    docker build --label "bus.context-hash=$hash" -t "$image" "$repo_root/docker/$name" \
      >"$work_dir/build-$name.log" 2>&1 &
    pids+=($!) names+=("$name")
  done
  failed=()
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      failed+=("${names[$i]}")
      printf '\n--- last lines of %s ---\n' "$work_dir/build-${names[$i]}.log" >&2
      tail -25 "$work_dir/build-${names[$i]}.log" >&2
    fi
  done
  ((${#failed[@]} == 0)) || fail "docker build of ${failed[*]}"
  ((${#names[@]} == 0)) || log "built ${names[*]}"
  # Layers left behind by rebuilt images.
  docker image prune -f --filter label=bus.context-hash >/dev/null 2>&1 || true
fi

# --- environment for Testcontainers ----------------------------------------------------------------
cat >"$env_file" <<EOF
export DOCKER_API_VERSION=$api_version
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
export TESTCONTAINERS_RYUK_DISABLED=true
EOF
log "ready (environment in ${env_file#"$repo_root/"})"
cat "$env_file"
