#!/bin/bash
# Idle wake-ups: three watched VMs (shut off), nothing happening, a tray
# watcher and a notification server on the bus. The applet is measured over
# BENCH_IDLE_SECONDS (default 60; 10 with BENCH_QUICK=1) once by counting
# context switches of all its threads and once under strace; then the same
# for poller.sh (the 5-second `virsh list` loop). Target: 0 for the applet.
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
bench_need strace
trap bench_cleanup EXIT

secs=${BENCH_IDLE_SECONDS:-}
[ -n "$secs" ] || { bench_quick && secs=10 || secs=60; }

bench_libvirt_setup
bench_bus_start
bench_desktop_start

# strace -c over a window: "POLLS SYSCALLS" of PID and every thread/child.
strace_window() { # PID SECONDS OUT
	timeout -s INT "$2" strace -f -c -o "$3" -p "$1" >/dev/null 2>&1
	[ -s "$3" ] || return 1
	awk '$NF == "poll" || $NF == "ppoll" {p += $4} $NF == "total" {t = $4}
		END {print p + 0, t + 0}' "$3"
}

# ---- the applet ----
bench_applet_start "$BENCH_CONF"
bench_applet_ready
# Start-up done (connect, reconcile, registration, the watcher's GetAll):
# give stragglers a second, then count.
sleep 1
lv=$(bench_libvirtd_pid)
c0=$(bench_ctxsw "$BENCH_APP_PID")
l0=$(bench_ctxsw "$lv")
sleep "$secs"
c1=$(bench_ctxsw "$BENCH_APP_PID")
l1=$(bench_ctxsw "$lv")
kill -0 "$BENCH_APP_PID" 2>/dev/null || bench_fail "applet died during the idle window"
threads=$(bench_threads "$BENCH_APP_PID")
read -r a_polls a_calls < <(strace_window "$BENCH_APP_PID" "$secs" "$VE_DIR/strace-applet") ||
	bench_fail "strace of the applet failed"
kill -0 "$BENCH_APP_PID" 2>/dev/null || bench_fail "applet died under strace"
bench_applet_stop

bench_method "applet: 3 watched VMs (shut off) on a private libvirtd, test tray watcher + dbusmock notification server; after start-up + 1 s, sum of voluntary+nonvoluntary_ctxt_switches over /proc/PID/task/*/status ($threads threads) across ${secs} s; then strace -f -c -p PID for another ${secs} s (poll+ppoll calls, all syscalls); libvirtd's own switches in the first window"
bench_figure "idle_ctxsw_applet_${secs}s" $((c1 - c0)) "switches"
bench_figure "idle_poll_calls_applet_${secs}s" "$a_polls" "calls"
bench_figure "idle_syscalls_applet_${secs}s" "$a_calls" "calls"
bench_figure "idle_libvirtd_ctxsw_with_applet_${secs}s" $((l1 - l0)) "switches"

# ---- the poller ----
sleep 1
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
