#!/bin/bash
# Memory 10 s after start: VmRSS and RssAnon (/proc/PID/status) and Pss
# (/proc/PID/smaps_rollup) of the applet watching three VMs on a private
# libvirtd with a tray watcher and a notification server on the bus; the
# same for poller.sh's resident shell, plus the peak RSS of one of the
# `virsh list` runs it starts every 5 s. Target: applet RssAnon <= 4 MiB.
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
trap bench_cleanup EXIT

after=${BENCH_MEM_AFTER:-10}

bench_libvirt_setup
bench_bus_start
bench_desktop_start

# Both started together; they do not share anything that would move the
# other's figures (the poller never touches the bus).
bench_applet_start "$BENCH_CONF"
"$BENCH_DIR/poller.sh" -c "$VE_URI" vm1 vm2 vm3 &
BENCH_POLLER_PID=$!
bench_applet_ready
sleep "$after"
read -r a_rss a_anon a_pss < <(bench_mem "$BENCH_APP_PID") || bench_fail "cannot read the applet's memory"
read -r p_rss p_anon p_pss < <(bench_mem "$BENCH_POLLER_PID") || bench_fail "cannot read the poller's memory"
a_threads=$(bench_threads "$BENCH_APP_PID")
kill "$BENCH_POLLER_PID" && wait "$BENCH_POLLER_PID"
BENCH_POLLER_PID=
bench_applet_stop

out=$("$BENCH_TOOL" run 0 virsh -q -c "$VE_URI" list --name) || bench_fail "virsh list failed: $out"
v_rss=$(sed -n 's/^maxrss_kib: //p' <<<"$out")

bench_method "applet: 3 watched VMs on a private libvirtd, tray watcher + notification server on a private bus; read ${after} s after start: VmRSS, RssAnon from /proc/PID/status, Pss from /proc/PID/smaps_rollup ($a_threads threads)"
bench_figure applet_vmrss "$(bench_kib_to_mib "$a_rss")" MiB
bench_figure applet_rssanon "$(bench_kib_to_mib "$a_anon")" MiB
bench_figure applet_pss "$(bench_kib_to_mib "$a_pss")" MiB
bench_method "poller: the resident bash of poller.sh read the same way at the same moment; virsh_list_peak = ru_maxrss of one 'virsh list --name' (wait4), paid every 5 s"
bench_figure poller_shell_vmrss "$(bench_kib_to_mib "$p_rss")" MiB
bench_figure poller_shell_rssanon "$(bench_kib_to_mib "$p_anon")" MiB
bench_figure poller_shell_pss "$(bench_kib_to_mib "$p_pss")" MiB
bench_figure poller_virsh_list_peak_rss "$(bench_kib_to_mib "$v_rss")" MiB

# ---- The applet against its floor (issue 16 item 5) ----
# Side by side on libvirt's in-process test:///default "test" domain, with
# the same tray watcher and notification server on the bus: vmo-mem-floor
# (tests/bench/mem_floor.c: the same libraries and start-up -- libvirt
# connection, one domain XML through libxml2, libdbus session connection,
# libnotify's GDBus connection with its threads -- then poll()) and
# vmoverlay watching that domain on a real qcow2 overlay. Read $after s
# after start, alternating, 3 rounds (1 with BENCH_QUICK); medians.
# Target: vmoverlay's RssAnon <= floor + 128 KiB.
[ -x "${BENCH_FLOOR:-}" ] || bench_fail "BENCH_FLOOR (vmo-mem-floor) not set"
F=$VE_DIR/floor
mkdir -p "$F"
qemu-img create -q -f qcow2 "$F/test-base.qcow2" 64M || bench_fail "floor base"
qemu-img create -q -f qcow2 -F qcow2 -b "$F/test-base.qcow2" "$F/test.qcow2" || bench_fail "floor overlay"
cat >"$F/vmoverlay.conf" <<CONF
connect = "test:///default";
vms = ( { name = "test"; overlay = "$F/test.qcow2"; base = "$F/test-base.qcow2"; } );
CONF
rounds=3
bench_quick && rounds=1
fa=() aa=()
for _ in $(seq "$rounds"); do
	"$BENCH_FLOOR" test:///default test >"$F/floor.out" 2>&1 &
	fpid=$!
	sleep "$after"
	grep -q '^ready$' "$F/floor.out" || bench_fail "vmo-mem-floor did not start: $(cat "$F/floor.out")"
	read -r _ f_anon _ < <(bench_mem "$fpid") || bench_fail "cannot read the floor's memory"
	kill "$fpid" && wait "$fpid" 2>/dev/null
	fa+=("$f_anon")
	bench_applet_start "$F/vmoverlay.conf"
	bench_applet_ready
	sleep "$after"
	read -r _ t_anon _ < <(bench_mem "$BENCH_APP_PID") || bench_fail "cannot read the applet's memory"
	bench_applet_stop
	aa+=("$t_anon")
done
f_med=$(bench_median "${fa[@]}")
a_med=$(bench_median "${aa[@]}")
bench_method "test:///default 'test' domain, tray watcher + notification server on the bus; RssAnon $after s after start, alternating floor/applet, $rounds round(s), medians (floor: ${fa[*]} KiB; applet: ${aa[*]} KiB)"
bench_figure floor_rssanon "$f_med" KiB
bench_figure applet_test_default_rssanon "$a_med" KiB
bench_figure applet_above_floor "$(awk -v a="$a_med" -v f="$f_med" 'BEGIN {printf "%d", a - f}')" KiB
