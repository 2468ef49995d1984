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
