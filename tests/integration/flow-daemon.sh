#!/bin/bash
# The flow end to end with a real libvirtd and TCG VMs (libvirt-env.sh), the
# vmoverlay binary and its control CLI on a private session bus:
#   1. `vmoverlay commit` refused while the VM runs (exit 1, says why),
#      base byte-identical.
#   2. policy commit: VM destroyed -> base holds the session's pattern and a
#      fresh overlay is in place, with no user action (time measured).
#   3. policy discard: VM shut down -> base byte-identical, overlay fresh,
#      the old one kept as .discarded; removed when the VM starts again.
# The applet and its CLI run as VE_USER (unprivileged, owning the XDG dirs
# and images), as our users run it.
set -u
. "$VMO_SRC/tests/integration/libvirt-env.sh"
. "$VMO_SRC/tests/integration/notify-env.sh"
fail() { echo "FAIL: $*" >&2; [ -n "${applog:-}" ] && tail -30 "$applog" >&2; exit 1; }
[ -x "${VMO_BIN:-}" ] || fail "VMO_BIN not set or not executable"
VE_NO_TRAP=1 NT_NO_TRAP=1
export VE_NO_TRAP NT_NO_TRAP
ve_setup || exit 1
nt_bus_start || exit 1
app_pid=
cleanup() {
	[ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
	nt_cleanup
	ve_teardown
}
trap cleanup EXIT

for v in vmc vmd; do
	ve_make_base "$VE_IMAGES/$v-base.qcow2" 64M 0x11 || fail "base $v"
	ve_make_overlay "$VE_IMAGES/$v.qcow2" "$VE_IMAGES/$v-base.qcow2" || fail "overlay $v"
	ve_define_vm "$v" "$VE_IMAGES/$v.qcow2" || fail "define $v"
done

mkdir -p "$VE_DIR/app/config/vmoverlay" "$VE_DIR/app/state"
cat >"$VE_DIR/app/config/vmoverlay/vmoverlay.conf" <<CONF
connect = "$VE_URI";
reconcile_interval = 0;
keep_discarded = true;
vms = (
  { name = "vmc"; policy = "commit"; },
  { name = "vmd"; policy = "discard"; }
);
CONF
ve_give -R "$VE_DIR/app"
applog=$VE_DIR/app.log
vmo() { "${VE_AS[@]}" XDG_CONFIG_HOME="$VE_DIR/app/config" XDG_STATE_HOME="$VE_DIR/app/state" "$VMO_BIN" "$@"; }
"${VE_AS[@]}" XDG_CONFIG_HOME="$VE_DIR/app/config" XDG_STATE_HOME="$VE_DIR/app/state" \
	"$VMO_BIN" --verbose >"$applog" 2>&1 &
app_pid=$!

now_ms() { echo $(($(date +%s%N) / 1000000)); }
status_of() { # VM: its flow state as the control interface reports it
	nt_call io.github.vmoverlay /io/github/vmoverlay io.github.vmoverlay.Control1.Status 2>/dev/null |
		grep -o "('$1', '[^']*', '[^']*'" | sed "s/.*, '\([^']*\)'$/\1/"
}
wait_status() { # VM STATE [TIMEOUT_S]
	local end=$(($(now_ms) + ${3:-20} * 1000))
	until [ "$(status_of "$1")" = "$2" ]; do
		[ "$(now_ms)" -lt "$end" ] || fail "$1 not '$2' (is '$(status_of "$1")')"
		sleep 0.02
	done
}
write_session() { # VM PATTERN (VM shut off)
	ve_as_user qemu-io -f qcow2 -c "write -q -P $2 2M 1M" "$VE_IMAGES/$1.qcow2" >/dev/null ||
		fail "write session $1"
}
overlay_fresh() { # VM
	! ve_as_user qemu-img map --output=json -U -f qcow2 "$VE_IMAGES/$1.qcow2" |
		grep '"depth": 0' | grep -q '"data": true'
}
sum() { sha256sum <"$1" | cut -d' ' -f1; }

ve_wait_for 20 nt_has_owner io.github.vmoverlay || fail "applet did not start"
[ "$(stat -c %U "/proc/$app_pid")" = "$VE_USER" ] || fail "the applet does not run as $VE_USER"

# ---- 1. commit refused while the VM runs ----
write_session vmc 0x33
ve_start vmc || fail "start vmc"
wait_status vmc running
b0=$(sum "$VE_IMAGES/vmc-base.qcow2")
out=$(vmo commit vmc 2>&1)
rc=$?
[ "$rc" = 1 ] || fail "commit while running: exit $rc ($out)"
case $out in *running* | *"not shut off"*) ;; *) fail "refusal does not say why: $out" ;; esac
[ "$(sum "$VE_IMAGES/vmc-base.qcow2")" = "$b0" ] || fail "base changed while the VM ran"
echo "ok commit refused while running: $out"

# ---- 2. policy commit, VM destroyed ----
t0=$(now_ms)
ve_destroy vmc || fail "destroy vmc"
wait_status vmc clean 30
t1=$(now_ms)
ve_reads "$VE_IMAGES/vmc-base.qcow2" 0x33 2M 1M || fail "vmc base lacks the pattern"
ve_as_user qemu-img check -q "$VE_IMAGES/vmc-base.qcow2" || fail "check vmc base"
ve_as_user qemu-img check -q "$VE_IMAGES/vmc.qcow2" || fail "check vmc overlay"
overlay_fresh vmc || fail "vmc overlay not fresh"
[ "$(stat -c %U "$VE_IMAGES/vmc.qcow2")" = "$VE_USER" ] || fail "vmc overlay owner changed"
ve_as_user qemu-img info "$VE_IMAGES/vmc.qcow2" | grep -q "backing file format: qcow2" ||
	fail "vmc overlay lacks its backing format"
# Journals are keyed by the domain (<uuid>@<hash of the URI>.commit): none at all.
ls "$VE_DIR/app/state/vmoverlay" 2>/dev/null | grep -q '\.commit$' && fail "journal left behind"
echo "ok policy commit: destroy -> committed and fresh overlay in $((t1 - t0)) ms"
# The VM boots from the fresh overlay.
ve_start vmc || fail "vmc does not start on the fresh overlay"
wait_status vmc running
ve_destroy vmc

# ---- 3. policy discard, VM shut down ----
write_session vmd 0x44
bd=$(sum "$VE_IMAGES/vmd-base.qcow2")
ve_start vmd || fail "start vmd"
wait_status vmd running
od=$(sum "$VE_IMAGES/vmd.qcow2")
ve_shutdown vmd || fail "shutdown vmd"
wait_status vmd clean 30
[ "$(sum "$VE_IMAGES/vmd-base.qcow2")" = "$bd" ] || fail "discard changed the base"
overlay_fresh vmd || fail "vmd overlay not fresh"
[ "$(sum "$VE_IMAGES/vmd.qcow2.discarded")" = "$od" ] || fail "discarded overlay differs"
echo "ok policy discard: base untouched, old overlay kept as .discarded"
ve_start vmd || fail "vmd does not start on the fresh overlay"
wait_status vmd running
ve_wait_for 5 test ! -e "$VE_IMAGES/vmd.qcow2.discarded" || fail ".discarded kept after start"
ve_destroy vmd
echo "ok .discarded removed when the VM started"
kill "$app_pid"
wait "$app_pid"
rc=$?
app_pid=
[ "$rc" = 0 ] || fail "applet exit status $rc"
echo "PASS"
