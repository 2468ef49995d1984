# shellcheck shell=bash
# Shared parts of the benchmarks (tests/bench/*.sh). Source it.
#
# Every benchmark prints one line per figure, `name: value unit`, and one
# `method: ...` line saying how it was measured. Figures are never judged:
# a benchmark fails only when the measurement itself could not be made.
#
#   BENCH_QUICK=1          CI mode: fewer repetitions (each script says which)
#   BENCH_IDLE_SECONDS=N   idle window (default 60, 10 in CI mode)
#
#   bench_fail MSG                 "FAIL: MSG" on stderr, exit 1
#   bench_need PROG...             fail unless every PROG is on PATH
#   bench_figure NAME VALUE UNIT   print a figure line
#   bench_method TEXT              print a method line
#   bench_bus_start                private dbus-daemon for this benchmark
#   bench_applet_start CONF [ARGS] run $VMO_BIN on it (BENCH_APP_PID, BENCH_APP_LOG)
#   bench_applet_stop
#   bench_ctxsw PID                voluntary+involuntary switches of every thread
#   bench_mem PID                  "VmRSS RssAnon Pss" in KiB
#   bench_median N...              median of the numbers
#   bench_max N...
#   bench_now_ms                   wall clock in ms (for the shell's own timing)
#   bench_wait_owner NAME [S]      wait until NAME has an owner on our bus

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_PY=/usr/bin/python3

bench_fail() {
	echo "FAIL: $*" >&2
	if [ -n "${BENCH_APP_LOG:-}" ] && [ -s "$BENCH_APP_LOG" ]; then
		echo "--- applet log (tail)" >&2
		tail -20 "$BENCH_APP_LOG" >&2
	fi
	exit 1
}

bench_need() {
	local p
	for p in "$@"; do
		command -v "$p" >/dev/null 2>&1 || bench_fail "required program '$p' is missing (tools/debian-packages.txt)"
	done
}

bench_figure() { printf '%s: %s %s\n' "$1" "$2" "$3"; }
bench_method() { printf 'method: %s\n' "$*"; }

bench_quick() { [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; }

bench_now_ms() { echo $(($(date +%s%N) / 1000000)); }

bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}

bench_max() { printf '%s\n' "$@" | sort -g | tail -1; }

bench_check_env() {
	[ -n "${VMO_BIN:-}" ] && [ -x "$VMO_BIN" ] || bench_fail "VMO_BIN does not name the vmoverlay binary"
	BENCH_TOOL=${BENCH_TOOL:-$(dirname "$VMO_BIN")/vmo-bench}
	[ -x "$BENCH_TOOL" ] || bench_fail "the measuring client $BENCH_TOOL is not built"
	bench_need dbus-daemon gdbus
}

bench_bus_start() {
	local out
	out=$(dbus-daemon --config-file="${VMO_SRC:?}/tests/private-bus.conf" --fork --print-address=1 --print-pid=1) || bench_fail "cannot start dbus-daemon"
	DBUS_SESSION_BUS_ADDRESS=$(printf '%s\n' "$out" | sed -n 1p)
	BENCH_BUS_PID=$(printf '%s\n' "$out" | sed -n 2p)
	export DBUS_SESSION_BUS_ADDRESS BENCH_BUS_PID
}

bench_bus_stop() {
	[ -n "${BENCH_BUS_PID:-}" ] && kill "$BENCH_BUS_PID" 2>/dev/null
	BENCH_BUS_PID=
}

bench_has_owner() {
	gdbus call --session -d org.freedesktop.DBus -o /org/freedesktop/DBus \
		-m org.freedesktop.DBus.NameHasOwner "$1" 2>/dev/null | grep -q true
}

bench_wait_owner() {
	local end=$(($(bench_now_ms) + ${2:-20} * 1000))
	until bench_has_owner "$1"; do
		[ "$(bench_now_ms)" -lt "$end" ] || return 1
		sleep 0.02
	done
}

# The applet with private XDG dirs under $1's directory. Runs in the
# background; BENCH_APP_PID, BENCH_APP_LOG.
bench_applet_start() {
	local conf=$1; shift
	local d
	d=$(dirname "$conf")
	mkdir -p "$d/state" "$d/home" "$d/cache"
	BENCH_APP_LOG=$d/applet.log
	HOME=$d/home XDG_CONFIG_HOME=$d XDG_STATE_HOME=$d/state XDG_CACHE_HOME=$d/cache \
		LANG=C.UTF-8 LC_ALL=C.UTF-8 \
		"$VMO_BIN" --config "$conf" "$@" >>"$BENCH_APP_LOG" 2>&1 &
	BENCH_APP_PID=$!
}

# SIGTERM is a clean quit (exit 0). Anything else (a sanitizer report in
# an ASan build, a crash) is shown, but the figures taken stand.
bench_applet_stop() {
	if [ -n "${BENCH_APP_PID:-}" ]; then
		kill "$BENCH_APP_PID" 2>/dev/null
		wait "$BENCH_APP_PID" 2>/dev/null
		local rc=$?
		if [ "$rc" != 0 ]; then
			echo "WARNING: the applet exited $rc on SIGTERM; log tail:" >&2
			tail -30 "$BENCH_APP_LOG" >&2
		fi
	fi
	BENCH_APP_PID=
}

# Sum of voluntary and involuntary context switches over every thread of
# PID: each is one time the thread went to sleep or was taken off the CPU,
# i.e. one wake-up (or preemption) to count.
bench_ctxsw() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {s += $2} END {print s + 0}'
}

bench_threads() { ls /proc/"$1"/task 2>/dev/null | wc -l; }

# VmRSS and RssAnon from status, Pss from smaps_rollup, all KiB.
bench_mem() {
	local rss anon pss
	rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$1"/status)
	anon=$(awk '/^RssAnon:/ {print $2}' /proc/"$1"/status)
	pss=$(awk '/^Pss:/ {print $2}' /proc/"$1"/smaps_rollup)
	[ -n "$rss" ] && [ -n "$anon" ] && [ -n "$pss" ] || return 1
	echo "$rss $anon $pss"
}

bench_kib_to_mib() { awk -v k="$1" 'BEGIN {printf "%.2f", k / 1024}'; }

# The machine, for the record.
bench_machine() {
	local cpu
	cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
	echo "$(nproc) vCPU ($cpu), $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
}

# ---- the common scenario: a real libvirtd with three watched VMs ----
# (tests/integration/libvirt-env.sh; every VM a 64 MiB TCG domain on a real
# qcow2 overlay, shut off unless a benchmark starts one). Writes the applet's
# config to $BENCH_CONF (reconcile_interval as shipped: 300 s).
bench_libvirt_setup() {
	# shellcheck source=../integration/libvirt-env.sh
	. "$BENCH_DIR/../integration/libvirt-env.sh"
	VE_NO_TRAP=1 ve_setup || bench_fail "cannot start the private libvirtd"
	local i
	for i in 1 2 3; do
		ve_make_base "$VE_IMAGES/vm$i-base.qcow2" 64M 0x1$i || bench_fail "base vm$i"
		ve_make_overlay "$VE_IMAGES/vm$i.qcow2" "$VE_IMAGES/vm$i-base.qcow2" || bench_fail "overlay vm$i"
		ve_define_vm "vm$i" "$VE_IMAGES/vm$i.qcow2" || bench_fail "define vm$i"
	done
	mkdir -p "$VE_DIR/app"
	BENCH_CONF=$VE_DIR/app/vmoverlay.conf
	cat >"$BENCH_CONF" <<CONF
connect = "$VE_URI";
vms = (
  { name = "vm1"; policy = "ask"; },
  { name = "vm2"; policy = "ask"; },
  { name = "vm3"; policy = "ask"; }
);
CONF
}

bench_libvirtd_pid() { cat "$VE_DIR/libvirtd.pid" 2>/dev/null; }

# A desktop stand-in on our bus: the tray watcher of the tray tests and
# dbusmock's notification server (tests/integration/notify-env.sh).
bench_desktop_start() {
	# shellcheck source=../integration/notify-env.sh
	. "$BENCH_DIR/../integration/notify-env.sh"
	"$BENCH_PY" -c 'import dbusmock, gi' 2>/dev/null || bench_fail "python3-dbusmock / python3-gi missing"
	BENCH_WATCHER_OUT=$(mktemp)
	"$BENCH_PY" "$BENCH_DIR/../integration/tray_watcher.py" >"$BENCH_WATCHER_OUT" 2>&1 &
	BENCH_WATCHER_PID=$!
	bench_wait_owner org.kde.StatusNotifierWatcher 20 || bench_fail "test tray watcher did not start"
	nt_mock_start || bench_fail "notification server did not start"
}

bench_desktop_stop() {
	nt_mock_stop 2>/dev/null
	if [ -n "${BENCH_WATCHER_PID:-}" ]; then
		kill "$BENCH_WATCHER_PID" 2>/dev/null
		wait "$BENCH_WATCHER_PID" 2>/dev/null
	fi
	rm -f "${BENCH_WATCHER_OUT:-}"
	BENCH_WATCHER_PID=
}

# Waits until the applet owns its control name and the watcher has its item.
bench_applet_ready() {
	bench_wait_owner io.github.vmoverlay 20 || bench_fail "applet did not take its bus name"
	local end=$(($(bench_now_ms) + 10000))
	until grep -q "REGISTERED org.kde.StatusNotifierItem-$BENCH_APP_PID-" "$BENCH_WATCHER_OUT"; do
		[ "$(bench_now_ms)" -lt "$end" ] || bench_fail "applet did not register with the tray watcher"
		sleep 0.02
	done
}

bench_cleanup() {
	bench_applet_stop
	[ -n "${BENCH_POLLER_PID:-}" ] && kill "$BENCH_POLLER_PID" 2>/dev/null && wait "$BENCH_POLLER_PID" 2>/dev/null
	bench_desktop_stop
	bench_bus_stop
	[ -n "${VE_DIR:-}" ] && ve_teardown
}
