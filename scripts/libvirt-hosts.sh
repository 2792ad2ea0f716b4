#!/usr/bin/env bash
# Real libvirt/QEMU hosts on one machine, for the libvirt driver's tests, demo and benchmark.
#
#   scripts/libvirt-hosts.sh install     install the packages and the libvirt-qemu user (root)
#   scripts/libvirt-hosts.sh start [N]   install what is missing (root), start N hosts (default 2)
#   scripts/libvirt-hosts.sh stop        stop every host started here and remove their state
#   scripts/libvirt-hosts.sh status      print the hosts and whether each answers
#
# Hosts started with `start` run until `stop`. A test run uses scripts/with-libvirt-hosts.sh
# instead, which starts fresh hosts under a root of its own and always stops them.
#
# Each host is one libvirtd in its own mount namespace (unshare -m) whose /etc/libvirt,
# /run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt are that host's
# own directories under $COLDMIG_LIBVIRT_ROOT (default /tmp/coldmig-libvirt). It listens on
# unix sockets in those directories only (no TCP). Guests are QEMU/TCG (no KVM needed).
# The hosts are reached as
#   qemu+unix:///system?socket=$ROOT/hostN/run/libvirt-sock
# and written to $ROOT/hosts.env (read by the tests, `coldmig demo --driver libvirt` and the
# benchmark):
#   COLDMIG_LIBVIRT_HOSTS="host1 host2"
#   COLDMIG_LIBVIRT_host1_URI=...   COLDMIG_LIBVIRT_host1_IMAGES=...
# The namespaces are slaves of the machine's mounts, so a mount made outside (the tests'
# read-only bind mount of an image directory) is seen by the host's libvirtd too.
set -euo pipefail

ROOT=${COLDMIG_LIBVIRT_ROOT:-/tmp/coldmig-libvirt}
ENV_FILE="$ROOT/hosts.env"
APT_PACKAGES=(libvirt-dev pkg-config gcc qemu-system-x86 qemu-utils libvirt-daemon
    libvirt-daemon-driver-qemu libvirt-clients)

log() { printf 'libvirt-hosts: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]} (run as root to install them)"
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update >/dev/null && apt-get install -y --no-install-recommends \
                "${missing[@]}" >/dev/null; }
    fi
    if ! getent passwd libvirt-qemu >/dev/null; then
        [ "$(id -u)" -eq 0 ] || die "no libvirt-qemu user (run as root to create it)"
        useradd --system --no-create-home --shell /usr/sbin/nologin libvirt-qemu
    fi
}

host_names() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do printf 'host%d ' "$i"; done
}

socket_of() { printf '%s/%s/run/libvirt-sock' "$ROOT" "$1"; }
uri_of() { printf 'qemu+unix:///system?socket=%s' "$(socket_of "$1")"; }

# A wedged daemon must not hang a start or a stop: every virsh call has a time limit.
vsh() { timeout 10 virsh -c "$(uri_of "$1")" "${@:2}"; }
answers() { vsh "$1" uri >/dev/null 2>&1; }

start_host() {
    local name=$1 dir="$ROOT/$1"
    mkdir -p "$dir"/{etc,run,lib,log,cache,images}
    mkdir -p "$dir"/lib/qemu "$dir"/log/qemu "$dir"/cache/qemu
    chmod 0711 "$dir" "$dir/images"
    cat >"$dir/etc/libvirtd.conf" <<EOF
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    # stdio_handler=file and user=root: without them each define waits ~44 s (see the notes).
    cat >"$dir/etc/qemu.conf" <<'EOF'
stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
EOF
    : >"$dir/log/libvirtd.log"
    # One mount namespace per host: the libvirt directories are this host's own. setsid: a
    # session of its own, so that a Ctrl-C on the terminal of a test run does not reach the
    # daemon (the run's cleanup stops it, after the tests' own cleanup). Neither setsid nor
    # unshare forks here, and sh execs libvirtd: $! is the daemon's pid.
    setsid unshare -m --propagation slave sh -c '
        set -e
        d=$1
        mount --bind "$d/etc" /etc/libvirt
        mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
        mount --bind "$d/run" /run/libvirt
        mount --bind "$d/lib" /var/lib/libvirt
        mount --bind "$d/log" /var/log/libvirt
        mount --bind "$d/cache" /var/cache/libvirt
        exec libvirtd --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid
    ' sh "$dir" >"$dir/libvirtd.out" 2>&1 </dev/null &
    echo $! >"$dir/libvirtd.pid"
}

cmd_start() {
    local n=${1:-2} name
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$n'"
    install_packages
    [ "$(id -u)" -eq 0 ] || die "starting libvirtd hosts needs root (mount namespaces)"
    mkdir -p "$ROOT"
    # $ROOT becomes a shared mount point, so that the hosts' (slave) namespaces see mounts
    # made under it later, such as a test's read-only bind mount of an image directory.
    if ! mountpoint -q "$ROOT"; then mount --bind "$ROOT" "$ROOT"; fi
    mount --make-shared "$ROOT"
    local names
    names=$(host_names "$n")
    for name in $names; do
        if answers "$name"; then
            log "$name already running"
        else
            rm -f "$(socket_of "$name")"
            start_host "$name"
        fi
    done
    local deadline=$((SECONDS + 60))
    for name in $names; do
        until answers "$name"; do
            if [ $SECONDS -ge $deadline ]; then
                tail -n 20 "$ROOT/$name/libvirtd.out" "$ROOT/$name/log/libvirtd.log" >&2 || true
                die "$name did not answer within 60 s"
            fi
            sleep 0.2
        done
    done
    {
        echo "# written by scripts/libvirt-hosts.sh start $n"
        echo "COLDMIG_LIBVIRT_HOSTS=\"${names% }\""
        for name in $names; do
            echo "COLDMIG_LIBVIRT_${name}_URI=\"$(uri_of "$name")\""
            echo "COLDMIG_LIBVIRT_${name}_IMAGES=\"$ROOT/$name/images\""
        done
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    for name in $names; do echo "$name $(uri_of "$name")"; done
    log "hosts up; environment in $ENV_FILE"
}

# is_pid_of PID NAME: PID is a live process whose command name is NAME (a pid file can
# outlive its process, and the pid be reused by another one).
is_pid_of() {
    local pid=$1 name=$2 comm
    [[ "$pid" =~ ^[1-9][0-9]*$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ "$comm" == "$name"* ]]
}

# alive PID: the process exists and is not a zombie (an exited daemon is reparented to
# pid 1, which may be slow to reap it, or never reap it in a container).
alive() {
    local state
    state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# kill_pids SECONDS PID...: SIGTERM to all, wait up to SECONDS for them, then SIGKILL the rest.
kill_pids() {
    local wait=$1 pid left
    shift
    [ $# -gt 0 ] || return 0
    kill "$@" 2>/dev/null || true
    local deadline=$((SECONDS + wait))
    while :; do
        left=()
        for pid in "$@"; do if alive "$pid"; then left+=("$pid"); fi; done
        [ ${#left[@]} -gt 0 ] || return 0
        [ $SECONDS -lt $deadline ] || break
        sleep 0.1
    done
    log "killing ${left[*]} (still running after ${wait} s)"
    kill -9 "${left[@]}" 2>/dev/null || true
}

# await_reaped PID...: give pid 1 up to 5 s to reap those of the stopped daemons that are not
# this shell's children (started by an earlier `start`), so that no zombie of them is left
# when `stop` returns. This shell's own children are reaped by it (with-libvirt-hosts.sh).
await_reaped() {
    local pid parent deadline=$((SECONDS + 5))
    for pid in "$@"; do
        while [ -e "/proc/$pid" ] && [ $SECONDS -lt $deadline ]; do
            parent=$(sed -n 's/^.*) . \([0-9]*\).*$/\1/p' "/proc/$pid/stat" 2>/dev/null) || break
            [ "$parent" != "$$" ] || break
            sleep 0.1
        done
    done
}

cmd_stop() {
    [ -d "$ROOT" ] || { log "nothing to stop"; return 0; }
    rm -f "$ENV_FILE"
    local dir name pid file daemons=() guests=()
    for dir in "$ROOT"/host*/; do
        [ -d "$dir" ] || continue
        name=$(basename "$dir")
        if answers "$name"; then
            # Guests first, so that no qemu process outlives its host.
            for dom in $(vsh "$name" list --all --uuid 2>/dev/null); do
                vsh "$name" destroy "$dom" >/dev/null 2>&1 || true
                vsh "$name" undefine "$dom" >/dev/null 2>&1 || true
            done
        fi
        # (unshare.pid: the name of that file before the hosts were stopped by pid.)
        for file in "$dir/libvirtd.pid" "$dir/unshare.pid"; do
            pid=$(cat "$file" 2>/dev/null || true)
            if is_pid_of "$pid" libvirtd; then daemons+=("$pid"); fi
        done
    done
    # Every daemon at once, so that their shutdowns (a second or two each) overlap.
    kill_pids 10 "${daemons[@]}"
    await_reaped "${daemons[@]}"
    for dir in "$ROOT"/host*/; do
        [ -d "$dir" ] || continue
        # A guest whose daemon died before it could be destroyed (libvirt's pid files).
        for file in "$dir"/run/qemu/*.pid; do
            [ -f "$file" ] || continue
            pid=$(cat "$file" 2>/dev/null || true)
            if is_pid_of "$pid" qemu-system; then guests+=("$pid"); fi
        done
    done
    kill_pids 5 "${guests[@]}"
    for dir in "$ROOT"/host*/; do
        [ -d "$dir" ] || continue
        # A read-only mount left by an interrupted test would block the removal.
        for _ in 1 2 3; do
            mountpoint -q "$dir/images" || break
            umount "$dir/images" || umount -l "$dir/images" || true
        done
        rm -rf "$dir"
        log "$(basename "$dir") stopped"
    done
    if mountpoint -q "$ROOT"; then umount "$ROOT" || umount -l "$ROOT"; fi
    rmdir "$ROOT" 2>/dev/null || log "$ROOT holds other files; left in place"
}

cmd_status() {
    [ -f "$ENV_FILE" ] || { echo "no hosts (no $ENV_FILE)"; return 1; }
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    local name rc=0
    for name in $COLDMIG_LIBVIRT_HOSTS; do
        if answers "$name"; then echo "$name up   $(uri_of "$name")"; else
            echo "$name DOWN $(uri_of "$name")"
            rc=1
        fi
    done
    return $rc
}

main() {
    case ${1:-} in
    install) install_packages ;;
    start) cmd_start "${2:-2}" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 install | start [N] | stop | status" ;;
    esac
}

# Sourced (by scripts/with-libvirt-hosts.sh), it only defines the functions: the daemons
# that shell starts are its children, so it reaps them once they are stopped.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
