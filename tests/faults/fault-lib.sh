# shellcheck shell=bash
# Shared set-up of the fault suite (tests/faults/faults.sh): the real
# applet ($VMO_BIN) on a private session bus with the dbusmock notification
# server (notify-env.sh), a private libvirtd with TCG VMs (libvirt-env.sh),
# and helpers that read what the user is shown: `vmoverlay status`, the
# control interface's Status, the tray item's Status and the menu labels.
#
# The applet and its CLI run as VE_USER, the unprivileged user our users
# are, with XDG dirs that user owns: after fl_setup "$VMO_BIN" is a wrapper
# that runs the real binary ($FL_VMO) that way and execs all the way down,
# so `"$VMO_BIN" ... & pid=$!` is the applet's own pid. Only the test script
# is root (mounts, chattr, inspecting the bus: tests/private-bus.conf).
. "$VMO_SRC/tests/integration/libvirt-env.sh"
. "$VMO_SRC/tests/integration/notify-env.sh"

fail() {
	echo "FAIL: $*" >&2
	if [ -n "${FL_LOG:-}" ] && [ -f "$FL_LOG" ]; then
		echo "--- applet log (tail)" >&2
		tail -40 "$FL_LOG" >&2
	fi
	exit 1
}
ok() { echo "ok $*"; }

[ -x "${VMO_BIN:-}" ] || fail "VMO_BIN not set or not executable"
FL_APP_PID=
FL_HUNG_PID=

fl_cleanup() {
	fl_app_kill
	[ -n "$FL_HUNG_PID" ] && kill "$FL_HUNG_PID" 2>/dev/null
	nt_cleanup
	ve_teardown
}

# fl_setup: libvirtd, private bus, work dirs, the qemu-img wrapper.
fl_setup() {
	VE_NO_TRAP=1 NT_NO_TRAP=1
	export VE_NO_TRAP NT_NO_TRAP
	ve_setup || exit 1
	nt_bus_start || exit 1
	trap fl_cleanup EXIT
	FL_CONF_DIR=$VE_DIR/app/config/vmoverlay
	FL_STATE=$VE_DIR/app/state/vmoverlay
	mkdir -p "$FL_CONF_DIR" "$FL_STATE" "$VE_DIR/bin"
	FL_CONF=$FL_CONF_DIR/vmoverlay.conf
	FL_LOG=$VE_DIR/app.log
	ve_give -R "$VE_DIR/app"
	FL_APP_ENV=(XDG_CONFIG_HOME="$VE_DIR/app/config" XDG_STATE_HOME="$VE_DIR/app/state")
	FL_VMO=$VMO_BIN
	VMO_BIN=$VE_DIR/bin/vmoverlay
	{
		echo '#!/bin/bash'
		echo "# $FL_VMO as $VE_USER, as our users run it (tests/faults/fault-lib.sh)"
		printf 'exec'
		printf ' %q' "${VE_AS[@]}" "${FL_APP_ENV[@]}" "$FL_VMO"
		printf ' "$@"\n'
	} >"$VMO_BIN"
	chmod 755 "$VMO_BIN"
	FL_QEMU_IMG=$(command -v qemu-img) || fail "qemu-img missing"
	FL_QEMU_IMG_LOG=$VE_DIR/app/qemu-img.log
	fl_qemu_img_wrapper "" ""
}

# fl_qemu_img_wrapper RATE CREATE_DELAY: the qemu-img the applet runs.
# It is the real one; RATE adds qemu-img's own commit rate limit (-r, bytes
# per second) so a commit lasts long enough to be interrupted, CREATE_DELAY
# delays `create` (the rebuild) by that many seconds.
fl_qemu_img_wrapper() {
	cat >"$VE_DIR/bin/qemu-img" <<WRAP
#!/bin/bash
# Every command line the applet runs, for rows that check it (FL_QEMU_IMG_LOG).
printf '%s\\n' "\$*" >>"$VE_DIR/app/qemu-img.log" 2>/dev/null
case \$1 in
commit) if [ -n "$1" ]; then shift; exec "$FL_QEMU_IMG" commit -r "$1" "\$@"; fi ;;
create) if [ -n "$2" ]; then sleep "$2"; fi ;;
esac
exec "$FL_QEMU_IMG" "\$@"
WRAP
	chmod 755 "$VE_DIR/bin/qemu-img"
}

# fl_vm NAME: a 64 MiB base holding 0x11 at 1M..2M, an overlay over it, a
# domain booting from the overlay.
fl_vm() {
	local v=$1
	ve_make_base "$VE_IMAGES/$v-base.qcow2" 64M 0x11 || fail "base $v"
	ve_make_overlay "$VE_IMAGES/$v.qcow2" "$VE_IMAGES/$v-base.qcow2" || fail "overlay $v"
	ve_define_vm "$v" "$VE_IMAGES/$v.qcow2" || fail "define $v"
}

# fl_config "NAME POLICY [KEY=VALUE...]"...: KEY=VALUE go into the VM's
# entry as they are (commit_into="deepest", base="/path").
fl_config() {
	fl__config "$@"
	ve_give "$FL_CONF"
}
fl__config() {
	{
		echo "connect = \"$VE_URI\";"
		echo "reconcile_interval = ${FL_RECONCILE:-0};"
		echo "qemu_img = \"$VE_DIR/bin/qemu-img\";"
		echo "keep_discarded = true;"
		echo "vms = ("
		local first=1 spec
		for spec in "$@"; do
			[ $first = 1 ] || echo ","
			first=0
			set -- $spec
			printf '  { name = "%s"; policy = "%s";' "$1" "$2"
			shift 2
			local kv
			for kv in "$@"; do printf ' %s;' "$kv"; done
			printf ' }'
		done
		echo
		echo ");"
	} >"$FL_CONF"
}

fl_app_start() {
	"$VMO_BIN" --verbose "$@" >>"$FL_LOG" 2>&1 &
	FL_APP_PID=$!
	ve_wait_for 20 nt_has_owner io.github.vmoverlay || fail "applet did not start"
	fl_app_is_user
}

# The applet runs as VE_USER, not as the root test script.
fl_app_is_user() {
	local uid
	uid=$(awk '/^Uid:/ {print $2}' "/proc/$FL_APP_PID/status" 2>/dev/null)
	[ "$uid" = "$(id -u "$VE_USER")" ] || fail "the applet runs as uid '$uid', not as $VE_USER"
}

# fl_app_start_env VAR=VALUE...: the applet with a changed environment.
fl_app_start_env() {
	"${VE_AS[@]}" "${FL_APP_ENV[@]}" "$@" "$FL_VMO" --verbose >>"$FL_LOG" 2>&1 &
	FL_APP_PID=$!
	ve_wait_for 20 nt_has_owner io.github.vmoverlay || fail "applet did not start"
	fl_app_is_user
}

fl_app_kill() {
	[ -n "$FL_APP_PID" ] || return 0
	kill "$FL_APP_PID" 2>/dev/null
	wait "$FL_APP_PID" 2>/dev/null
	FL_APP_PID=
}

fl_alive() { [ -n "$FL_APP_PID" ] && kill -0 "$FL_APP_PID" 2>/dev/null; }

# The flow state of VM as the control interface reports it.
fl_status_of() {
	nt_call io.github.vmoverlay /io/github/vmoverlay io.github.vmoverlay.Control1.Status 2>/dev/null |
		grep -o "('$1', '[^']*', '[^']*'" | sed "s/.*, '\([^']*\)'$/\1/"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

fl_wait_status() { # VM STATE [TIMEOUT_S]
	local end=$(($(now_ms) + ${3:-20} * 1000))
	until [ "$(fl_status_of "$1")" = "$2" ]; do
		[ "$(now_ms)" -lt "$end" ] || fail "$1 not '$2' after ${3:-20} s (is '$(fl_status_of "$1")')"
		fl_alive || fail "the applet died while waiting for $1 to be $2"
		sleep 0.05
	done
}

# SNI Status of the item ("Active", "Passive", "NeedsAttention").
fl_sni_status() {
	nt_call "org.kde.StatusNotifierItem-$FL_APP_PID-1" /StatusNotifierItem \
		org.freedesktop.DBus.Properties.Get org.kde.StatusNotifierItem Status 2>/dev/null |
		grep -o "'[A-Za-z]*'" | tr -d "'"
}

fl_wait_sni() { # STATUS [TIMEOUT_S]
	local end=$(($(now_ms) + ${2:-10} * 1000))
	until [ "$(fl_sni_status)" = "$1" ]; do
		[ "$(now_ms)" -lt "$end" ] || fail "SNI Status not $1 (is '$(fl_sni_status)')"
		sleep 0.05
	done
}

# Every visible menu label, one per line, as a tray host shows them
# (GetLayout); disabled ones start with "(disabled) ".
fl_menu_labels() {
	"$NT_PY" - "org.kde.StatusNotifierItem-$FL_APP_PID-1" <<'PY'
import signal, sys, dbus
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # grep -q may stop reading early
menu = dbus.SessionBus().get_object(sys.argv[1], '/MenuBar')
rev, layout = menu.GetLayout(0, -1, dbus.Array([], signature='s'),
                             dbus_interface='com.canonical.dbusmenu', timeout=20)
def walk(node):
    mid, props, children = node
    if not props.get('visible', True):
        return
    if 'label' in props:
        # Mnemonics: "Re_try" reads "Retry", "__" is a literal underscore.
        label = str(props['label']).replace('__', '\0').replace('_', '').replace('\0', '_')
        print(('' if props.get('enabled', True) else '(disabled) ') + label)
    for c in children:
        walk(c)
walk(layout)
PY
}

fl_ctl() { # METHOD VM: a control-interface verb the CLI has no word for
	nt_call io.github.vmoverlay /io/github/vmoverlay "io.github.vmoverlay.Control1.$1" "$2"
}

fl_write() { # VM PATTERN OFFSET SIZE (VM shut off): the session's writes
	ve_as_user qemu-io -f qcow2 -c "write -q -P $2 $3 $4" "$VE_IMAGES/$1.qcow2" >/dev/null ||
		fail "write $2 into $1"
}

fl_reads() { # FILE PATTERN OFFSET SIZE: the disk seen through FILE holds it
	# qemu-io prints "read N/N bytes" even after "Pattern verification
	# failed" (and exits 1): the status and the absence of that line count.
	local o
	o=$(ve_as_user qemu-io -r -U -f qcow2 -c "read -P $2 $3 $4" "$1" 2>&1) || return 1
	! grep -q "verification failed" <<<"$o" && grep -q "^read " <<<"$o"
}

fl_overlay_fresh() { # VM: the overlay holds no data of its own
	! ve_as_user qemu-img map --output=json -U -f qcow2 "$VE_IMAGES/$1.qcow2" |
		grep '"depth": 0' | grep -q '"data": true'
}

fl_check() { # FILE: qemu-img check passes
	ve_as_user qemu-img check -q -U "$1" || fail "qemu-img check $1"
}

fl_sum() { sha256sum <"$1" | cut -d' ' -f1; }

fl_rss_anon() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }

fl_notify_count() { nt_count "$1" 2>/dev/null || echo 0; }
