#!/bin/bash
# The libvirt watcher against a real session libvirtd with a real TCG VM on
# a qcow2 overlay (libvirt-env.sh): destroy is reported as an unclean stop
# (10 times; the delay from `virsh destroy` returning is printed, not
# judged: tests/bench/ measures speed, this test holds on a loaded machine), a guest
# power-off as a clean stop, managedsave never prompts, and a VM killed
# while the daemon is down is reported after the reconnect (missed stop).
# Usage: virt_watch.sh PATH/TO/virt_probe
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirt-env.sh"

probe=${1:?usage: virt_watch.sh PATH/TO/virt_probe}
[ -x "$probe" ] || { echo "FAIL: $probe is not built" >&2; exit 1; }
fail=0
failed() { echo "FAIL: $*" >&2; fail=1; }

ve_setup || exit 1
vm=vmo-it
ve_make_base "$VE_IMAGES/base.qcow2" 64M 0x11 || exit 1
ve_make_overlay "$VE_IMAGES/ov.qcow2" "$VE_IMAGES/base.qcow2" 0x5a || exit 1
ve_define_vm "$vm" "$VE_IMAGES/ov.qcow2" || exit 1

out=$VE_DIR/probe.out
# The probe is the applet's watcher: it runs as VE_USER, as the applet does.
"${VE_AS[@]}" VMO_PROBE_DEBUG=1 "$probe" "$VE_URI" "$VE_DIR/state" "$vm" >"$out" 2>"$VE_DIR/probe.log" &
probe_pid=$!
# The probe ends cleanly on SIGTERM; a sanitizer report makes it non-zero.
stop_probe() {
	[ -n "$probe_pid" ] || return 0
	kill "$probe_pid" 2>/dev/null
	wait "$probe_pid" 2>/dev/null
	local rc=$?
	probe_pid=
	[ "$rc" = 0 ] || { echo "FAIL: virt_probe exited with $rc (see $VE_DIR/probe.log)" >&2; tail -20 "$VE_DIR/probe.log" >&2; }
	return "$rc"
}
trap 'stop_probe; ve_teardown' EXIT

lines() { grep -c " $1" "$out" 2>/dev/null || true; }
has_lines() { [ "$(lines "$1")" -ge "$2" ]; }
wait_lines() { ve_wait_for "${3:-30}" has_lines "$1" "$2"; }
nth() { grep " $1" "$out" | sed -n "$2p"; }

wait_lines CONNECTED 1 || { failed "the watcher did not connect"; exit 1; }

# 1. destroy x10: unclean stop within 1 s
delays=()
totals=()
for i in $(seq 1 10); do
	ve_start "$vm" || { failed "start $i"; break; }
	wait_lines STARTED "$i" || { failed "no STARTED $i"; break; }
	ts=$(date +%s%N)
	ve_destroy "$vm" || { failed "destroy $i"; break; }
	t0=$(date +%s%N)
	wait_lines STOPPED "$i" 30 || { failed "no STOPPED after destroy $i"; break; }
	line=$(nth STOPPED "$i")
	t1=${line%% *}
	case $line in *"STOPPED $vm unclean state=5 reason=2"*) ;; *) failed "destroy $i: $line" ;; esac
	d=$(( (t1 - t0) / 1000 ))
	delays+=("$d")
	totals+=("$(( (t1 - ts) / 1000 ))")
done
median() {
	local sorted n lo hi
	sorted=$(printf '%s\n' "$@" | sort -n)
	n=$#
	lo=$(echo "$sorted" | sed -n "$(( (n + 1) / 2 ))p")
	hi=$(echo "$sorted" | sed -n "$(( n / 2 + 1 ))p")
	echo $(( (lo + hi) / 2 ))
}
if [ "${#delays[@]}" -gt 0 ]; then
	echo "destroy -> STOPPED callback, us after virsh destroy returned (negative: before): ${delays[*]}"
	echo "  median $(median "${delays[@]}") us over ${#delays[@]} runs"
	echo "destroy -> STOPPED callback, us after virsh destroy was invoked: ${totals[*]}"
	echo "  median $(median "${totals[@]}") us"
fi
stops=$(lines STOPPED)

# 2. guest power-off (boot sector answers the ACPI button): clean stop
ve_start "$vm" && wait_lines STARTED 11 || failed "start for shutdown"
ve_shutdown "$vm" 60 || failed "shutdown"
wait_lines STOPPED $((stops + 1)) 30 || failed "no STOPPED after shutdown"
line=$(nth STOPPED $((stops + 1)))
case $line in *"STOPPED $vm clean state=5 reason=1"*) echo "shutdown: $line" ;; *) failed "shutdown: $line" ;; esac
stops=$((stops + 1))

# 3. managedsave: stopped, never a prompt
ve_start "$vm" && wait_lines STARTED 12 || failed "start for managedsave"
ve_virsh managedsave "$vm" >/dev/null || failed "managedsave"
wait_lines STOPPED $((stops + 1)) 30 || failed "no STOPPED after managedsave"
line=$(nth STOPPED $((stops + 1)))
case $line in *"STOPPED $vm no-prompt state=5 reason="*) echo "managedsave: $line" ;; *) failed "managedsave: $line" ;; esac
stops=$((stops + 1))
ve_virsh managedsave-remove "$vm" >/dev/null || failed "managedsave-remove"

# 4. daemon outage: libvirtd stopped while the VM runs, the VM killed
# meanwhile, daemon back: the reconcile after reconnecting reports the stop.
ve_start "$vm" && wait_lines STARTED 13 || failed "start for outage"
qpid=$(ve_qemu_pid "$vm") || failed "no qemu pid"
ve_stop_daemon TERM
t_down=$(date +%s%N)
wait_lines DISCONNECTED 1 30 || failed "no DISCONNECTED after the daemon stopped"
kill -KILL "$qpid" 2>/dev/null || failed "kill qemu $qpid"
sleep 3.5 # the watcher retries meanwhile (1 s, 2 s, ...)
attempts=$(grep -c "next connection attempt" "$VE_DIR/probe.log" || true)
t_up0=$(date +%s%N)
ve_start_daemon || failed "daemon restart"
wait_lines STOPPED $((stops + 1)) 40 || failed "no missed STOPPED after reconnect"
line=$(nth STOPPED $((stops + 1)))
case $line in *"STOPPED $vm unclean state=5"*) ;; *) failed "outage: $line" ;; esac
rc_line=$(grep " CONNECTED" "$out" | sed -n 2p)
echo "outage: disconnect reported $(( ($(nth DISCONNECTED 1 | cut -d' ' -f1) - t_down) / 1000000 )) ms after the daemon stopped;" \
	"$attempts failed reconnect attempts in 3.5 s;" \
	"reconnected $(( (${rc_line%% *} - t_up0) / 1000000 )) ms after the daemon restart began;" \
	"missed stop: $line; libvirt says: $(ve_domstate "$vm")"
# The stop is recorded in the state file: a restarted watcher says nothing.
stop_probe || fail=1
grep -q "running" "$VE_DIR/state/state" && failed "state file still lists $vm as running"
"${VE_AS[@]}" "$probe" "$VE_URI" "$VE_DIR/state" "$vm" >"$out.2" 2>>"$VE_DIR/probe.log" &
probe_pid=$!
ve_wait_for 30 grep -q CONNECTED "$out.2" || failed "second probe did not connect"
sleep 0.3
grep -q STOPPED "$out.2" && failed "second probe reported a stop again"
stop_probe || fail=1

if [ "$fail" != 0 ]; then
	echo "--- probe output"; cat "$out"; echo "--- probe log"; tail -30 "$VE_DIR/probe.log"
	exit 1
fi
echo "PASS"
