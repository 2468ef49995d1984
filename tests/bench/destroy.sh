#!/bin/bash
# `virsh destroy` returns -> Notify arrives at the notification server,
# median and max of 20 (target median <= 20 ms). Real libvirtd, a TCG VM
# (tests/integration/libvirt-env.sh), dbusmock's notification server, which
# logs every call with its arrival time (tests/integration/notify-env.sh).
# Then poller.sh on the same VM: it can only notice on its next 5-second
# poll (20 runs; 5 with BENCH_QUICK=1, each costs ~5 s).
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
bench_need virsh awk
trap bench_cleanup EXIT

runs=${BENCH_RUNS:-20}
poller_runs=${BENCH_POLLER_RUNS:-}
[ -n "$poller_runs" ] || { bench_quick && poller_runs=5 || poller_runs=$runs; }

bench_libvirt_setup
bench_bus_start
export NT_MOCK_LOG=$VE_DIR/notify-server.log
bench_desktop_start

# Root connects to the session daemon's socket directly (libvirt-env.sh):
# no runuser in the timed path.
vsh() { virsh -q -c "$VE_URI" "$@"; }
epoch() { date +%s.%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) * 1000}'; }
# Arrival times of the Notify calls from APP (the mock logs
# "<epoch.ms> Notify "<app_name>" ...").
notify_times() { grep -a "^[0-9.]* Notify \"$1\"" "$NT_MOCK_LOG" | cut -d' ' -f1; }
notify_count() { notify_times "$1" | wc -l; }
wait_notify() { # APP N TIMEOUT_S
	local end=$(($(bench_now_ms) + $3 * 1000))
	until [ "$(notify_count "$1")" -ge "$2" ]; do
		[ "$(bench_now_ms)" -lt "$end" ] || return 1
		sleep 0.005
	done
}
flow_state() {
	gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Status 2>/dev/null |
		grep -o "('vm1', '[a-z]*', '[a-z]*'" | cut -d"'" -f6
}
wait_flow() { # STATE
	local end=$(($(bench_now_ms) + 20000))
	until [ "$(flow_state)" = "$1" ]; do
		[ "$(bench_now_ms)" -lt "$end" ] || bench_fail "vm1 never '$1' (is '$(flow_state)')"
		sleep 0.02
	done
}

# ---- the applet ----
bench_applet_start "$BENCH_CONF"
bench_applet_ready
lat=() latb=()
for i in $(seq "$runs"); do
	ve_start vm1 || bench_fail "cannot start vm1"
	wait_flow running
	n0=$(notify_count vmoverlay)
	tb=$(epoch)
	vsh destroy vm1 >/dev/null || bench_fail "virsh destroy failed"
	t0=$(epoch)
	wait_notify vmoverlay $((n0 + 1)) 5 || bench_fail "no Notify within 5 s of destroy (run $i)"
	t1=$(notify_times vmoverlay | sed -n "$((n0 + 1))p")
	grep -a "^$t1 Notify \"vmoverlay\"" "$NT_MOCK_LOG" | grep -q '"vm1 shut down"' ||
		bench_fail "the first Notify after destroy is not vm1's prompt"
	lat+=("$(ms_between "$t0" "$t1")")
	latb+=("$(ms_between "$tb" "$t1")")
	wait_flow pending
	gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Keep vm1 >/dev/null || bench_fail "Keep refused"
	wait_flow kept
done
bench_applet_stop

bench_method "applet: vm1 (64 MiB TCG) started, applet sees it running; 'virsh destroy vm1' (root, direct socket); latency = arrival time in the dbusmock notification server's call log (ms resolution, epoch) - date after virsh returned; negative = the prompt arrived before virsh's own exit; answered Keep through the control bus between runs; ${runs} runs: ${lat[*]}"
bench_figure destroy_to_notify_median_applet "$(bench_median "${lat[@]}")" ms
bench_figure destroy_to_notify_max_applet "$(bench_max "${lat[@]}")" ms
bench_figure destroy_start_to_notify_median_applet "$(bench_median "${latb[@]}")" ms

# ---- the poller ----
trace=$VE_DIR/poller.trace
: >"$trace"
POLLER_TRACE=$trace "$BENCH_DIR/poller.sh" -c "$VE_URI" vm1 vm2 vm3 &
BENCH_POLLER_PID=$!
polled_running() { tail -1 "$trace" | grep -qw vm1; }
plat=()
for i in $(seq "$poller_runs"); do
	ve_start vm1 || bench_fail "cannot start vm1"
	# It must have seen vm1 running, or it has no transition to notice.
	ve_wait_for 12 polled_running || bench_fail "poller never listed vm1"
	# A user's destroy falls anywhere in the 5 s cycle: spread the runs
	# evenly over it, measured from the poll that saw vm1 running.
	sleep "$(awk -v i="$i" -v n="$poller_runs" 'BEGIN {printf "%.3f", (i - 0.5) * 5 / n}')"
	n0=$(notify_count poller)
	vsh destroy vm1 >/dev/null || bench_fail "virsh destroy failed"
	t0=$(epoch)
	wait_notify poller $((n0 + 1)) 12 || bench_fail "poller sent no Notify within 12 s (run $i)"
	t1=$(notify_times poller | sed -n "$((n0 + 1))p")
	plat+=("$(ms_between "$t0" "$t1")")
done
kill "$BENCH_POLLER_PID" && wait "$BENCH_POLLER_PID"
BENCH_POLLER_PID=
bench_method "poller: poller.sh watching vm1 (same VM, same server); destroy at (i - 0.5) * 5 s / runs after the poll that listed vm1 running (evenly over its cycle); latency measured the same way; ${poller_runs} runs: ${plat[*]}"
bench_figure destroy_to_notify_median_poller "$(bench_median "${plat[@]}")" ms
bench_figure destroy_to_notify_max_poller "$(bench_max "${plat[@]}")" ms
