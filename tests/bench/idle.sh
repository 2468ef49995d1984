#!/bin/bash
# Idle wake-ups: three watched VMs (shut off), nothing happening, a tray
# watcher and a notification server on the bus. Each side is measured over
# BENCH_IDLE_SECONDS (default 60; 10 with BENCH_QUICK=1) once by counting
# context switches and once under strace: first poller.sh (the 5-second
# `virsh list` loop), then the applet against libvirtd as it ships
# (keepalive_interval = 5: the daemon pings each client every 5 s, and
# libvirt's client library answers inside our loop), then the applet against
# a libvirtd with keepalive_interval = -1. Target: 0 for the applet.
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
bench_need strace
trap bench_cleanup EXIT
unset VE_SERVER_KEEPALIVE # the first daemon runs with libvirt's defaults

secs=${BENCH_IDLE_SECONDS:-}
[ -n "$secs" ] || { bench_quick && secs=10 || secs=60; }

bench_libvirt_setup
bench_bus_start
bench_desktop_start

# strace -c over a window: "POLLS SYSCALLS" of PID and every thread/child.
strace_window() { # PID SECONDS OUT
	timeout -s INT "$2" strace -f -c -o "$3" -p "$1" >/dev/null 2>"$3.log"
	# No syscall at all leaves the summary empty; attached proves it ran.
	grep -q "Process $1 attached" "$3.log" || { cat "$3.log" >&2; return 1; }
	awk '$NF == "poll" || $NF == "ppoll" {p += $4} $NF == "total" {t = $4}
		END {print p + 0, t + 0}' "$3"
}

# ---- the applet ----
applet_window() { # SUFFIX DAEMON-DESCRIPTION
	bench_applet_start "$BENCH_CONF"
	bench_applet_ready
	# Start-up done (connect, reconcile, registration, the watcher's
	# GetAll): give stragglers a second, then count.
	sleep 1
	local lv c0 c1 l0 l1 threads polls calls
	lv=$(bench_libvirtd_pid)
	c0=$(bench_ctxsw "$BENCH_APP_PID")
	l0=$(bench_ctxsw "$lv")
	sleep "$secs"
	c1=$(bench_ctxsw "$BENCH_APP_PID")
	l1=$(bench_ctxsw "$lv")
	kill -0 "$BENCH_APP_PID" 2>/dev/null || bench_fail "applet died during the idle window"
	threads=$(bench_threads "$BENCH_APP_PID")
	read -r polls calls < <(strace_window "$BENCH_APP_PID" "$secs" "$VE_DIR/strace-applet") ||
		bench_fail "strace of the applet failed"
	kill -0 "$BENCH_APP_PID" 2>/dev/null || bench_fail "applet died under strace"
	bench_applet_stop
	bench_method "applet, $2: 3 watched VMs (shut off), test tray watcher + dbusmock notification server; after start-up + 1 s, sum of voluntary+nonvoluntary_ctxt_switches over /proc/PID/task/*/status ($threads threads) across ${secs} s; then strace -f -c -p PID for another ${secs} s (poll+ppoll calls, all syscalls); libvirtd's own switches in the first window"
	bench_figure "idle_ctxsw_applet${1}_${secs}s" $((c1 - c0)) "switches"
	bench_figure "idle_poll_calls_applet${1}_${secs}s" "$polls" "calls"
	bench_figure "idle_syscalls_applet${1}_${secs}s" "$calls" "calls"
	bench_figure "idle_libvirtd_ctxsw_with_applet${1}_${secs}s" $((l1 - l0)) "switches"
}

# ---- the poller (libvirtd as configured by default) ----
lv=$(bench_libvirtd_pid)
l0=$(bench_ctxsw "$lv")
out=$("$BENCH_TOOL" run "$secs" "$BENCH_DIR/poller.sh" -c "$VE_URI" vm1 vm2 vm3) ||
	bench_fail "poller run failed: $out"
l1=$(bench_ctxsw "$lv")
p_ctx=$(sed -n 's/^ctxsw: //p' <<<"$out")
"$BENCH_DIR/poller.sh" -c "$VE_URI" vm1 vm2 vm3 &
BENCH_POLLER_PID=$!
read -r p_polls p_calls < <(strace_window "$BENCH_POLLER_PID" "$secs" "$VE_DIR/strace-poller") ||
	bench_fail "strace of the poller failed"
kill "$BENCH_POLLER_PID" && wait "$BENCH_POLLER_PID"
BENCH_POLLER_PID=

bench_method "poller: poller.sh (virsh list --name every 5 s) over the same VMs; context switches of the shell and every process it ran (wait4 rusage of the tree) across ${secs} s from its start; then strace -f -c -p for another ${secs} s; libvirtd's switches in the first window"
bench_figure "idle_ctxsw_poller_${secs}s" "$p_ctx" "switches"
bench_figure "idle_poll_calls_poller_${secs}s" "$p_polls" "calls"
bench_figure "idle_syscalls_poller_${secs}s" "$p_calls" "calls"
bench_figure "idle_libvirtd_ctxsw_with_poller_${secs}s" $((l1 - l0)) "switches"

# ---- the applet, libvirtd with its defaults: keepalive_interval = 5, so the
# daemon pings every client every 5 s and libvirt's client code answers ----
applet_window "" "libvirtd defaults (keepalive_interval 5)"

# ---- the applet, libvirtd with keepalive_interval = -1 (no server pings) ----
ve_stop_daemon TERM
echo "keepalive_interval = -1" >"$VE_DIR/c/libvirt/libvirtd.conf"
ve_give "$VE_DIR/c/libvirt/libvirtd.conf"
ve_start_daemon || bench_fail "libvirtd did not come back"
applet_window "_no_server_keepalive" "libvirtd with keepalive_interval = -1"
