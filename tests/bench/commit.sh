#!/bin/bash
# Commit of a 1 GiB overlay through the running applet ÷ bare `qemu-img
# commit` on identical copies (target <= 1.02). Real files on disk; before
# every run the copy is restored from a template, synced, and the page cache
# dropped (root). Runs interleave (bare, applet, applet, bare, ...), 5 each
# (2 with BENCH_QUICK=1). Disk noise from other processes moves single runs
# by tens of percent, so the ratio of the fastest runs (noise only adds) is
# printed beside the ratio of the medians, and the applet runs qemu-img
# through qemu-img-timed.sh so that each applet run also yields its own
# qemu-img time: applet time minus (and over) that is the applet's overhead
# without the noise. BENCH_COMMIT_DIR=/dev/shm takes the disk out. Through the applet = Control1.Commit on its bus,
# as `vmoverlay commit VM` does, timed by vmo-bench commit from the request
# to the Status that shows the commit over, and to the one showing "clean"
# (journal, commit, fresh overlay built and renamed in: the result). The
# domain lives in a test:///ABS/node.xml (shut off), so libvirt is asked as
# for any VM. The poller design has no commit of its own (it would run the
# same qemu-img), so the bare command is the comparison.
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
bench_need qemu-img qemu-io df
W=$(mktemp -d "${BENCH_COMMIT_DIR:-/var/tmp}/vmo-bench-commit.XXXXXX") || bench_fail "mktemp"
cleanup() {
	bench_applet_stop
	bench_bus_stop
	rm -rf "$W"
}
trap cleanup EXIT

mib=${BENCH_COMMIT_MIB:-1024}
runs=${BENCH_COMMIT_RUNS:-}
[ -n "$runs" ] || { bench_quick && runs=2 || runs=5; }

# Template overlay (mib of data) + run copy (overlay + base filled by the
# commit) + slack.
need_kib=$(((3 * mib + 512) * 1024))
free_kib=$(df -Pk "$W" | awk 'NR == 2 {print $4}')
[ "$free_kib" -ge "$need_kib" ] ||
	bench_fail "need $((need_kib / 1024)) MiB free in $W, have $((free_kib / 1024)) MiB (set BENCH_COMMIT_DIR)"

run=$W/run
tpl=$W/tpl
mkdir -p "$run" "$tpl" "$W/app"
qemu-img create -q -f qcow2 "$run/base.qcow2" "${mib}M" &&
	qemu-img create -q -f qcow2 -F qcow2 -b "$run/base.qcow2" "$run/ov.qcow2" &&
	qemu-io -f qcow2 -c "write -q -P 0x5a 0 ${mib}M" "$run/ov.qcow2" >/dev/null &&
	cp --sparse=always "$run/base.qcow2" "$run/ov.qcow2" "$tpl/" || bench_fail "cannot make the images"

cat >"$W/node.xml" <<XML
<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>big</name><memory unit='MiB'>64</memory>
    <os><type arch='x86_64' machine='pc'>hvm</type></os><test:runstate>5</test:runstate>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$run/ov.qcow2'/><target dev='vda' bus='virtio'/></disk></devices>
  </domain>
</node>
XML
# qemu-img through a timing wrapper (one bash exec more on the applet's
# side, counted against it): qemu-img's own time in the same run.
BENCH_REAL_QEMU_IMG=$(command -v qemu-img)
export BENCH_QI_LOG=$W/qemu-img.log BENCH_REAL_QEMU_IMG
cat >"$W/app/vmoverlay.conf" <<CONF
connect = "test://$W/node.xml";
qemu_img = "$BENCH_DIR/qemu-img-timed.sh";
vms = ( { name = "big"; policy = "ask"; } );
CONF

restore() {
	rm -f "$run"/*
	cp --sparse=always "$tpl/base.qcow2" "$tpl/ov.qcow2" "$run/" && sync || bench_fail "cannot restore the copy"
	# Cold cache for both sides alike (not permitted: both stay warm alike).
	echo 3 2>/dev/null >/proc/sys/vm/drop_caches || true
}

verify() { # WHO
	local off
	for off in 0 $((mib - 1))M; do
		qemu-io -r -f qcow2 -c "read -q -P 0x5a $off 1M" "$run/base.qcow2" >/dev/null 2>&1 ||
			bench_fail "$1: the base does not hold the overlay's data at $off"
	done
}

field() { sed -n "s/^$1: //p" <<<"$2"; }

bare=() bare_create=() app_commit=() app_result=() app_qi=() app_over=() app_self=()
run_bare() {
	restore
	local out
	out=$("$BENCH_TOOL" run 0 qemu-img commit -p "$run/ov.qcow2") || bench_fail "qemu-img commit: $out"
	verify bare
	bare+=("$(field wall_ms "$out")")
	# What the applet does next, by hand: a fresh overlay (it also fsyncs it
	# and renames it in; not counted here).
	out=$("$BENCH_TOOL" run 0 qemu-img create -q -f qcow2 -F qcow2 -b "$run/base.qcow2" "$run/ov.new") ||
		bench_fail "qemu-img create: $out"
	bare_create+=("$(field wall_ms "$out")")
}

flow_state() {
	gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Status 2>/dev/null |
		grep -o "('big', '[a-z]*', '[a-z]*'" | cut -d"'" -f6
}

run_applet() {
	restore
	bench_applet_start "$W/app/vmoverlay.conf"
	bench_wait_owner io.github.vmoverlay 20 || bench_fail "applet did not take its bus name"
	local end=$(($(bench_now_ms) + 20000)) out
	until [ "$(flow_state)" = clean ]; do
		[ "$(bench_now_ms)" -lt "$end" ] || bench_fail "big is '$(flow_state)', not clean"
		sleep 0.02
	done
	: >"$BENCH_QI_LOG"
	out=$("$BENCH_TOOL" commit io.github.vmoverlay big 900) || bench_fail "commit through the applet: $out"
	bench_applet_stop
	verify applet
	local qi c
	qi=$(awk '$1 == "commit" {print $2}' "$BENCH_QI_LOG")
	[ -n "$qi" ] || bench_fail "the timing wrapper logged no commit"
	c=$(field commit_ms "$out")
	app_qi+=("$qi")
	app_over+=("$(awk -v a="$c" -v q="$qi" 'BEGIN {printf "%.1f", a - q}')")
	app_self+=("$(awk -v a="$c" -v q="$qi" 'BEGIN {printf "%.4f", a / q}')")
	app_commit+=("$c")
	app_result+=("$(field result_ms "$out")")
	app_signals=$(field signals "$out") app_polls=$(field quiet_polls "$out")
}

bench_bus_start
order=
for k in $(seq "$runs"); do
	if [ $((k % 2)) = 1 ]; then
		run_bare
		run_applet
		order+="ba"
	else
		run_applet
		run_bare
		order+="ab"
	fi
done

mb=$(bench_median "${bare[@]}")
mc=$(bench_median "${bare_create[@]}")
ma=$(bench_median "${app_commit[@]}")
mr=$(bench_median "${app_result[@]}")
bench_method "${mib} MiB of data in the overlay (qemu-io write -P 0x5a), base ${mib} MiB, files in $(df -P "$W" | awk 'NR == 2 {print $1}'); each run restores the copy, syncs and drops caches; order $order; bare = 'qemu-img commit -p OV' fork/exec to exit (the applet's argv), then 'qemu-img create' of a fresh overlay; applet = Control1.Commit(big) (qemu_img = qemu-img-timed.sh, which logs qemu-img's own run time) -> Status no longer 'committing' (commit) / 'clean' (result), Status read on each of its signals (last run: $app_signals signals, $app_polls quiet-second polls); base checked with qemu-io read -P after every run"
bench_figure commit_bare_median "$mb" ms
bench_figure commit_applet_median "$ma" ms
bench_figure commit_ratio_applet_over_bare "$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", a / b}')" x
bench_figure commit_ratio_fastest_applet_over_fastest_bare "$(awk -v a="$(printf '%s\n' "${app_commit[@]}" | sort -g | head -1)" \
	-v b="$(printf '%s\n' "${bare[@]}" | sort -g | head -1)" 'BEGIN {printf "%.3f", a / b}')" x
bench_figure commit_applet_overhead_median "$(bench_median "${app_over[@]}")" ms
bench_figure commit_ratio_applet_over_its_qemu_img_median "$(bench_median "${app_self[@]}")" x
bench_figure commit_bare_plus_create_median "$(awk -v a="$mb" -v b="$mc" 'BEGIN {printf "%.1f", a + b}')" ms
bench_figure commit_applet_to_result_median "$mr" ms
bench_figure commit_ratio_result_over_bare_plus_create "$(awk -v a="$mr" -v b="$mb" -v c="$mc" 'BEGIN {printf "%.3f", a / (b + c)}')" x
echo "runs (ms): bare ${bare[*]}; bare create ${bare_create[*]}; applet commit ${app_commit[*]}; applet result ${app_result[*]}; qemu-img inside the applet ${app_qi[*]}"
