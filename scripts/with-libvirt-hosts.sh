#!/usr/bin/env bash
# Run a command beside fresh real libvirt/QEMU hosts, and stop those hosts when it ends.
#
#   scripts/with-libvirt-hosts.sh [-n N] COMMAND [ARG...]
#
# Starts N hosts (default 2), as scripts/libvirt-hosts.sh does, under a root of their own (a
# new directory from mktemp, so that no earlier or concurrent run is touched), runs COMMAND
# with
#   COLDMIG_LIBVIRT_ROOT=<that root>   COLDMIG_LIBVIRT_ENV=<that root>/hosts.env
# then stops every host it started (by pid: guests, then the daemons, SIGKILL after 10 s),
# reaps the daemons (they are this shell's children) and removes the root, whether COMMAND
# passed, failed or was interrupted (INT, TERM, HUP; the trap runs when COMMAND has
# returned). The exit status is COMMAND's, or 128 + the signal's number when interrupted,
# or 1 when the hosts could not be started or stopped.
#
#   KEEP_HOSTS=1   leave the hosts running afterwards (for debugging); it says how to stop them.
#
# Not root: no hosts can be started (mount namespaces); COMMAND runs without them and the
# real-host tests skip, except with CI=true, where that is an error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf 'with-libvirt-hosts: %s\n' "$*" >&2; }

count=2
if [ "${1:-}" = "-n" ]; then
    count=${2:-}
    shift 2 || true
fi
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { say "error: -n needs a positive integer"; exit 2; }
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { say "usage: $0 [-n N] COMMAND [ARG...]"; exit 2; }

if [ "$(id -u)" -ne 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        say "error: CI must run as root (the real-host tests need the libvirt hosts)"
        exit 1
    fi
    say "not root: no real hosts started (their tests skip)"
    exec "$@"
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/coldmig-libvirt.XXXXXX")
export COLDMIG_LIBVIRT_ROOT="$root" COLDMIG_LIBVIRT_ENV="$root/hosts.env"
# The host functions (cmd_start, cmd_stop), run in this shell: the daemons are its children.
# shellcheck source=scripts/libvirt-hosts.sh
. "$HERE/libvirt-hosts.sh"

stop_hosts() {
    local status=$?
    # The stop must finish even when a second Ctrl-C comes: it is bounded (see above).
    trap '' INT TERM HUP
    trap - EXIT
    if [ "${KEEP_HOSTS:-}" = "1" ]; then
        say "KEEP_HOSTS=1: hosts left running; environment in $COLDMIG_LIBVIRT_ENV"
        say "stop them with: COLDMIG_LIBVIRT_ROOT=$root $HERE/libvirt-hosts.sh stop"
        exit "$status"
    fi
    local started=$SECONDS file pid daemons=()
    for file in "$root"/host*/libvirtd.pid; do
        [ -f "$file" ] && daemons+=("$(cat "$file")")
    done
    # A subshell, so that an exit inside does not end this trap (and, in a condition, a
    # step that fails does not end the stop either). The root is this run's own: what
    # COMMAND left in it goes too, never across a mount left behind.
    if (cmd_stop) && rm -rf --one-file-system "$root"; then
        say "hosts stopped in $((SECONDS - started)) s"
    else
        say "error: the hosts under $root could not all be stopped"
        [ "$status" -ne 0 ] || status=1
    fi
    # The daemons are this shell's children: reap them, so that no zombie waits for pid 1.
    for pid in "${daemons[@]}"; do
        alive "$pid" || wait "$pid" 2>/dev/null || true
    done
    exit "$status"
}
trap stop_hosts EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

started=$SECONDS
cmd_start "$count" >/dev/null
say "$count host(s) up in $((SECONDS - started)) s under $root"

# Not exec: this shell stays to stop the hosts. COMMAND runs in the foreground, so that it
# keeps the terminal (stdin, Ctrl-C) as it would without this wrapper.
status=0
"$@" || status=$?
exit "$status"
