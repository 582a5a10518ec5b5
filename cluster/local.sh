#!/usr/bin/env bash
# A two-node Ray cluster on this machine, for trying the cluster path (plot-ray submit, the
# shared-storage check, STRICT_SPREAD training) without a second machine.
#
#   cluster/local.sh up       start a head node and one worker node
#   cluster/local.sh status   what runs, and how to reach it
#   cluster/local.sh down     stop both nodes and every process they started
#   cluster/local.sh pids     the process ids of this cluster (what `down` stops)
#
# The head node has PLOT_RAY_HEAD_CPUS CPUs and a custom resource `plot_ray_head`, the worker
# node PLOT_RAY_WORKER_CPUS CPUs and `plot_ray_worker`, so work can be pinned to, or told apart
# by, node. Everything binds to loopback. Token authentication is on, with this cluster's own
# token file (not ~/.ray/auth_token), so clients need
#     export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$PLOT_RAY_LOCAL_DIR/auth_token
# (`status` prints the exact line).
#
# Settings (environment):
#   PLOT_RAY_LOCAL_DIR              folder for Ray's temp dir, the token, logs (default
#                                   ${TMPDIR:-/tmp}/plot-ray-local); keep it short: Ray's unix
#                                   socket paths under it must stay below 107 characters
#   PLOT_RAY_LOCAL_PORT             GCS port (default 6379); the Ray client server and the two
#                                   nodes' dashboard agents take the next three ports
#   PLOT_RAY_LOCAL_DASHBOARD_PORT   dashboard and job server (default 8265)
#   PLOT_RAY_HEAD_CPUS, PLOT_RAY_WORKER_CPUS          CPUs per node (default 1 each)
#   PLOT_RAY_OBJECT_STORE_MB        object store per node (default 300; Ray's default would
#                                   claim 30% of RAM per node)
#   RAY_BIN                         the ray executable (default: the project's .venv, else ray)
#   PLOT_RAY_WORKER_PRIVATE_DIR     start the worker node in its own mount namespace with an
#                                   empty tmpfs over this folder (needs root or unprivileged
#                                   user namespaces): the folder is then node-local, which
#                                   shows the shared-storage check refusing it
#
# `down` stops only this cluster's processes: those whose command line names its temp dir
# (GCS, raylets, dashboard, monitors) and all their descendants (workers, agents, job drivers).
# It never runs `ray stop`, which stops every Ray instance on the machine, other people's too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${RAY_BIN:-}" ]]; then
    if [[ -x "$here/../.venv/bin/ray" ]]; then RAY_BIN="$here/../.venv/bin/ray"; else RAY_BIN=ray; fi
fi
dir="${PLOT_RAY_LOCAL_DIR:-${TMPDIR:-/tmp}/plot-ray-local}"
port="${PLOT_RAY_LOCAL_PORT:-6379}"
dashboard_port="${PLOT_RAY_LOCAL_DASHBOARD_PORT:-8265}"
head_cpus="${PLOT_RAY_HEAD_CPUS:-1}"
worker_cpus="${PLOT_RAY_WORKER_CPUS:-1}"
object_store=$(( ${PLOT_RAY_OBJECT_STORE_MB:-300} * 1024 * 1024 ))
temp_dir="$dir/ray"
token_file="$dir/auth_token"

# Processes of this cluster: the roots name its temp dir on their command line; Ray's workers
# rename themselves (ray::IDLE, ray::train_fn) and lose it, but they are the roots' descendants.
cluster_pids() {
    local roots pid queue=() seen=()
    # The Ray client server's command line names the GCS address instead (one cluster per port).
    roots=$(pgrep -f -- "$temp_dir/|ray\.util\.client\.server --address=[^ ]*:$port " || true)
    for pid in $roots; do alive "$pid" && queue+=("$pid"); done
    while ((${#queue[@]})); do
        pid="${queue[0]}"
        queue=("${queue[@]:1}")
        [[ " ${seen[*]-} " == *" $pid "* ]] && continue
        seen+=("$pid")
        for child in $(pgrep -P "$pid" || true); do alive "$child" && queue+=("$child"); done
    done
    echo "${seen[@]-}"
}

# Running, not merely an unreaped zombie (a container's init may never reap what it inherits).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

cmd_up() {
    if [[ -n "$(cluster_pids)" ]]; then
        echo "local cluster already running in $dir (cluster/local.sh status)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    if [[ ! -s "$token_file" ]]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$token_file")
    fi
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file" RAY_USAGE_STATS_ENABLED=0
    # Jobs run `plot-ray ...` through a shell on the head node: put the environment that holds
    # ray (and plot-ray, as a cluster image would) first on the nodes' PATH.
    if [[ "$RAY_BIN" == */* ]]; then PATH="$(cd "$(dirname "$RAY_BIN")" && pwd):$PATH"; fi
    # A worker node that sees a private, empty tmpfs at this folder instead of the host's: a
    # node-local folder at the same path, for testing the shared-storage check on one machine.
    local isolate=()
    if [[ -n "${PLOT_RAY_WORKER_PRIVATE_DIR:-}" ]]; then
        mkdir -p "$PLOT_RAY_WORKER_PRIVATE_DIR"
        isolate=(unshare --mount --propagation private)
        [[ "$(id -u)" == 0 ]] || isolate+=(--user --map-root-user)
        isolate+=(bash -c 'mount -t tmpfs plot-ray-private "$0" && exec "$@"' "$PLOT_RAY_WORKER_PRIVATE_DIR")
    fi
    "$RAY_BIN" start --head \
        --node-ip-address=127.0.0.1 --port="$port" \
        --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port" --include-dashboard=true \
        --ray-client-server-port=$((port + 1)) --dashboard-agent-listen-port=$((port + 2)) \
        --num-cpus="$head_cpus" --num-gpus=0 --resources='{"plot_ray_head": 1}' \
        --object-store-memory="$object_store" --temp-dir="$temp_dir" \
        --disable-usage-stats >"$dir/head.log" 2>&1 || {
        cat "$dir/head.log" >&2
        exit 1
    }
    "${isolate[@]}" "$RAY_BIN" start --address="127.0.0.1:$port" \
        --node-ip-address=127.0.0.1 --dashboard-agent-listen-port=$((port + 3)) \
        --num-cpus="$worker_cpus" --num-gpus=0 --resources='{"plot_ray_worker": 1}' \
        --object-store-memory="$object_store" --temp-dir="$temp_dir" \
        --disable-usage-stats >"$dir/worker.log" 2>&1 || {
        cat "$dir/worker.log" >&2
        cmd_down
        exit 1
    }
    echo "local Ray cluster up: head ($head_cpus CPU, plot_ray_head) + worker ($worker_cpus CPU, plot_ray_worker)"
    cmd_status
}

cmd_status() {
    local pids
    pids=$(cluster_pids)
    if [[ -z "$pids" ]]; then
        echo "no local cluster running in $dir"
        return 1
    fi
    echo "processes: $(wc -w <<<"$pids") (temp dir $temp_dir)"
    echo "GCS:        127.0.0.1:$port"
    echo "job server: http://127.0.0.1:$dashboard_port"
    echo "clients:    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_file RAY_ADDRESS=http://127.0.0.1:$dashboard_port"
}

cmd_down() {
    local pids left
    pids=$(cluster_pids)
    if [[ -z "$pids" ]]; then
        echo "no local cluster running in $dir"
        return 0
    fi
    # SIGTERM first so raylets and GCS shut down cleanly, then SIGKILL what is left (and any
    # worker forked in between).
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 25); do
        left=$(for p in $pids; do alive "$p" && echo "$p"; done || true)
        [[ -z "$left" ]] && break
        sleep 0.2
    done
    pids="$(cluster_pids) ${left:-}"
    if [[ -n "${pids// /}" ]]; then kill -KILL $pids 2>/dev/null || true; fi
    sleep 0.5
    left=$(for p in $(cluster_pids); do alive "$p" && echo "$p"; done || true)
    if [[ -n "$left" ]]; then
        echo "local cluster: processes still alive: $left" >&2
        return 1
    fi
    echo "local cluster in $dir stopped"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    pids) cluster_pids ;;
    *)
        echo "usage: $0 up|down|status|pids   (settings: see the comment at the top of $0)" >&2
        exit 2
        ;;
esac
