#!/bin/bash
# GetLayout(0, -1, []) round trip with 100 watched VMs, median of 1000
# (target <= 1 ms), timed by the C client (vmo-bench layout: one libdbus
# connection, blocking calls, 20 warm-up calls first). The VMs live in a
# test:///ABS/node.xml with 100 shut-off domains, each on its own real qcow2
# overlay and base. For comparison: one poll of poller.sh over the same 100
# domains (`virsh list --name`, fork/exec included), median of 20.
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
bench_need qemu-img virsh
W=$(mktemp -d "${TMPDIR:-/tmp}/vmo-bench-layout.XXXXXX") || bench_fail "mktemp"
cleanup() {
	bench_applet_stop
	bench_bus_stop
	rm -rf "$W"
}
trap cleanup EXIT

n=${BENCH_LAYOUT_VMS:-100}
calls=${BENCH_LAYOUT_CALLS:-1000}

mkdir -p "$W/img" "$W/app"
{
	echo "<node>"
	for i in $(seq -w 1 "$n"); do
		qemu-img create -q -f qcow2 "$W/img/vm$i-base.qcow2" 64M || exit 1
		qemu-img create -q -f qcow2 -F qcow2 -b "$W/img/vm$i-base.qcow2" "$W/img/vm$i.qcow2" || exit 1
		cat <<XML
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>vm$i</name><memory unit='MiB'>64</memory>
    <os><type arch='x86_64' machine='pc'>hvm</type></os><test:runstate>5</test:runstate>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$W/img/vm$i.qcow2'/><target dev='vda' bus='virtio'/></disk></devices>
  </domain>
XML
	done
	echo "</node>"
} >"$W/node.xml" || bench_fail "cannot make the $n images"
{
	echo "connect = \"test://$W/node.xml\";"
	echo "vms = ("
	for i in $(seq -w 1 "$n"); do
		sep=,
		[ "$i" -eq "$n" ] && sep=
		echo "  { name = \"vm$i\"; policy = \"ask\"; }$sep"
	done
	echo ");"
} >"$W/app/vmoverlay.conf"

bench_bus_start
bench_applet_start "$W/app/vmoverlay.conf"
bench_wait_owner io.github.vmoverlay 20 || bench_fail "applet did not take its bus name"
# Every VM's facts (state from libvirt, qcow2 headers) in the model first.
end=$(($(bench_now_ms) + 20000))
until "$BENCH_TOOL" layout io.github.vmoverlay 1 >"$W/probe" 2>&1 &&
	[ "$(sed -n 's/^submenus: //p' "$W/probe")" -gt "$n" ] &&
	! gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Status | grep -q "'unknown'"; do
	[ "$(bench_now_ms)" -lt "$end" ] || bench_fail "the menu never showed $n VMs: $(cat "$W/probe")"
	sleep 0.1
done
out=$("$BENCH_TOOL" layout io.github.vmoverlay "$calls") || bench_fail "GetLayout timing failed: $out"
kill -0 "$BENCH_APP_PID" || bench_fail "applet died"
bench_applet_stop
get() { sed -n "s/^$1: //p" <<<"$out"; }

pt=()
for _ in $(seq 20); do
	o=$("$BENCH_TOOL" run 0 virsh -q -c "test://$W/node.xml" list --name) || bench_fail "virsh list: $o"
	pt+=("$(sed -n 's/^wall_ms: //p' <<<"$o")")
done

bench_method "applet: $n VMs in test://…/node.xml (shut off, real qcow2 overlays), config lists all; C client (libdbus, one connection) calls com.canonical.dbusmenu.GetLayout(0, -1, []) on /MenuBar $(get n) times after 20 warm-ups, CLOCK_MONOTONIC around each blocking call; reply: $(get items) items, $(get submenus) with children, $(get reply_bytes) bytes"
bench_figure getlayout_median_applet "$(get median_ms)" ms
bench_figure getlayout_p99_applet "$(get p99_ms)" ms
bench_figure getlayout_max_applet "$(get max_ms)" ms
bench_method "poller: one poll over the same $n domains: 'virsh -c test://…/node.xml list --name' fork/exec to exit (vmo-bench run), median of 20"
bench_figure poll_100_domains_median_poller "$(bench_median "${pt[@]}")" ms
