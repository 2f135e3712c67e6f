# Shared by e2e/kind/up, down and images (sourced): paths, pinned versions, step timing, and the
# Docker engine e2e/kind/up starts when none answers.
# shellcheck shell=bash
# The variables below are used by the scripts that source this file.
# shellcheck disable=SC2034

kind_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$kind_dir/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../toolchain/versions.env
source "$repo/e2e/toolchain/versions.env"

cache="${OXCD_CACHE:-$HOME/.cache/oxcd}"
kc="$cache/kind"
kind_bin="$kc/bin"
k8s_bin="$kc/k8s-$KUBERNETES_VERSION/bin"
cluster="${OXCD_KIND_CLUSTER:-oxcd}"
kubeconfig="${OXCD_KIND_KUBECONFIG:-$kc/kubeconfig-$cluster}"
# Our engine: own socket, data and state, so it never meets a system Docker's.
engine_run=/run/oxcd-docker
engine_data="${OXCD_DOCKER_DATA:-/var/lib/oxcd-docker}"
engine_sock="unix://$engine_run/docker.sock"
engine_marker="$engine_run/started-by-oxcd"
# The local registry the nodes pull every image from (containerd mirrors in the node image).
registry_name=oxcd-kind-registry
registry_port="${OXCD_REGISTRY_PORT:-5001}"

export PATH="$kind_bin:$k8s_bin:$PATH"

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# step TITLE COMMAND...: runs COMMAND, announcing it before and its duration after.
step() {
    local title="$1" start=$SECONDS
    shift
    printf '==> %s\n' "$title" >&2
    "$@"
    printf '    %s: %d s\n' "$title" "$((SECONDS - start))" >&2
}

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

# engine_start: uses the engine DOCKER_HOST (or Docker's default socket) names when it answers;
# otherwise starts Debian's dockerd with its own data root, exec root and socket, and the runc
# wrapper as its default runtime. Sets DOCKER_HOST for the rest of the script in both cases.
engine_start() {
    if docker_answers; then
        log "using the Docker engine at ${DOCKER_HOST:-the default socket}"
        return
    fi
    export DOCKER_HOST="$engine_sock"
    if docker_answers; then
        log "using our engine at $DOCKER_HOST"
        return
    fi
    command -v dockerd >/dev/null || die "no Docker engine answers and dockerd is not installed"
    as_root mkdir -p "$engine_run" "$engine_data"
    as_root install -m 755 "$kind_dir/oxcd-runc" "$engine_run/oxcd-runc"
    log "starting dockerd (data $engine_data, socket $DOCKER_HOST, log $engine_run/dockerd.log)"
    # setsid: the engine outlives this script (e2e/kind/down stops it).
    as_root setsid dockerd \
        --data-root "$engine_data" --exec-root "$engine_run/exec" \
        --pidfile "$engine_run/dockerd.pid" -H "$DOCKER_HOST" \
        --add-runtime "oxcd-runc=$engine_run/oxcd-runc" --default-runtime oxcd-runc \
        --log-level warn </dev/null >"$engine_run/dockerd.log" 2>&1 &
    as_root touch "$engine_marker"
    for _ in $(seq 60); do
        docker_answers && return
        sleep 1
    done
    tail -n 20 "$engine_run/dockerd.log" >&2
    die "dockerd did not answer within 60 s"
}

# engine_stop: stops the engine e2e/kind/up started (if any), and removes what it leaves behind:
# its bridge, its iptables chains and rules, and any mount under its state directories.
engine_stop() {
    [[ -f $engine_marker ]] || return 0
    local pid=""
    [[ -f $engine_run/dockerd.pid ]] && pid="$(cat "$engine_run/dockerd.pid")"
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (pid $pid)"
        as_root kill -TERM "$pid"
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd still running after 30 s: killing it"
            as_root kill -KILL "$pid" || true
        fi
    fi
    # dockerd's own containerd runs under it; wait for it to exit with it.
    local c
    for c in $(pgrep -f "containerd --config $engine_run/exec/containerd" || true); do
        as_root kill -TERM "$c" 2>/dev/null || true
    done
    # Mounts below our state directories (netns, overlay layers of containers that died hard).
    local m
    while read -r m; do
        as_root umount -l "$m" 2>/dev/null || true
    done < <(awk -v a="$engine_run" -v b="$engine_data" \
        'index($2, a) == 1 || index($2, b) == 1 {print $2}' /proc/mounts | sort -r)
    ip link show docker0 >/dev/null 2>&1 && as_root ip link delete docker0 || true
    iptables_cleanup
    as_root rm -f "$engine_marker" "$engine_run/dockerd.pid"
}

# iptables_cleanup: deletes the rules and chains dockerd created (named DOCKER*, or about
# docker0), in the filter and nat tables.
iptables_cleanup() {
    command -v iptables >/dev/null || return 0
    local table rule chain
    for table in filter nat; do
        while read -r rule; do
            # shellcheck disable=SC2086 # the rule is a list of iptables arguments
            eval "as_root iptables -t $table -D ${rule#-A }" 2>/dev/null || true
        done < <(as_root iptables -t "$table" -S 2>/dev/null | grep '^-A' |
            grep -E -- '-j DOCKER|docker0|^-A DOCKER' | grep -v '^-A DOCKER' || true)
        for chain in $(as_root iptables -t "$table" -S 2>/dev/null |
            sed -n 's/^-N \(DOCKER[A-Z0-9-]*\)$/\1/p'); do
            as_root iptables -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $(as_root iptables -t "$table" -S 2>/dev/null |
            sed -n 's/^-N \(DOCKER[A-Z0-9-]*\)$/\1/p'); do
            as_root iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}
