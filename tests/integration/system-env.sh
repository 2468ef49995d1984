# shellcheck shell=bash
# The world of a qemu:///system user, for tests (issue 13): a root libvirtd in
# system mode (guests run as libvirt-qemu, dynamic_ownership = 1, the shipped
# defaults), a system bus and the real polkitd, real pkexec, our polkit
# action for the helper under test, and an unprivileged desktop user in group
# libvirt who runs the applet on a private session bus. Images are libvirt
# volumes in a root-owned 0711 pool directory, made by that user through
# libvirt the way virt-manager makes them.
# Recipe and measurements: research/system-libvirt-harness.md (+ .sh).
# Source it; it starts nothing by itself. Must run as root.
#
# Machine-wide parts (one per machine, pitfall P4): /run/libvirt,
# /var/lib/libvirt/images/$SE_POOL, /etc/libvirt/qemu/<dom>.xml, the system
# bus, /etc/polkit-1/rules.d/$SE_RULE_NAME, our .policy file. So:
#   * the suite holds a lock (flock on $SE_LOCK) for its whole run, and ctest
#     gives its tests RESOURCE_LOCK system_libvirt;
#   * it fails (never skips) if a system libvirtd it did not start answers;
#   * it reuses a running system bus / polkitd and never stops those;
#   * everything it started is killed by PID, every file it made is removed.
# Session-mode daemons of the other suites (libvirt-env.sh, user vmotest,
# private sockets) are not touched.
#
# Functions (non-zero + a line on stderr on failure):
#   se_setup                  all of the above; EXIT trap -> se_teardown (SE_NO_TRAP=1: none)
#   se_teardown
#   se_as_user CMD...         CMD as $SE_USER (groups of the user, its own env, the
#                             private session bus once se_bus_start ran)
#   se_virsh ARGS...          virsh as $SE_USER on qemu:///system (read-write, via polkit)
#   se_vroot ARGS...          virsh as root
#   se_rule yes|no|none       the polkit rule for our action and $SE_USER; waits
#                             until polkitd answers accordingly (pkcheck)
#   se_rule_file FILE         install FILE as the rule instead (e.g. the shipped example)
#   se_make_vm NAME BASEPAT OVPAT [SIZE]
#                             base + overlay volumes (qcow2, -F qcow2, SIZE default 64M) with the
#                             boot sector, 1 MiB of BASEPAT at 1M in the base and of
#                             OVPAT at 2M in the overlay; define the domain as $SE_USER
#   se_start NAME / se_shutdown NAME / se_destroy NAME / se_state NAME
#   se_bus_start              the user's private session bus
#   se_app_start CONF_TEXT    the applet as $SE_USER (config written for it); SE_APP_LOG
#   se_app_stop               TERM it, wait; returns its exit status
#   se_app_status VM          its flow state through the control interface
#   se_wait_status VM STATE [TIMEOUT_S]
#   se_ctl ARGS...            `vmoverlay ARGS` (the control CLI) as $SE_USER
#   se_wait_for TIMEOUT CMD...
# Variables: SE_CLEANUP (array: paths removed at teardown), SE_DIR (work dir), SE_USER, SE_URI, SE_POOL, SE_PDIR, SE_APP_LOG.

SE_URI=qemu:///system
SE_USER=${SE_USER:-vmosys}
SE_POOL=${SE_POOL:-vmosys}
SE_PDIR=/var/lib/libvirt/images/$SE_POOL
SE_LOCK=/run/lock/vmoverlay-system-suite.lock
SE_RULE_NAME=10-vmoverlay-systest.rules
SE_RULE=/etc/polkit-1/rules.d/$SE_RULE_NAME
SE_ACTION_FILE=/usr/share/polkit-1/actions/io.github.vmoverlay.systest.policy
SE_ACTION=io.github.vmoverlay.helper

se__die() { echo "system-env: $*" >&2; return 1; }
se_wait_for() {
	local timeout=$1 end
	shift
	end=$(($(date +%s%N) + timeout * 1000000000))
	until "$@"; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.02
	done
}
se__now_ms() { echo $(($(date +%s%N) / 1000000)); }

se__user_cmd() { # sets SE_CMD: CMD... as $SE_USER
	SE_CMD=(setpriv --reuid="$SE_USER" --regid="$SE_USER" --init-groups -- env -i
		HOME="$SE_DIR/home" XDG_RUNTIME_DIR="$SE_DIR/home/run" XDG_CONFIG_HOME="$SE_DIR/home/config"
		XDG_STATE_HOME="$SE_DIR/home/state" XDG_CACHE_HOME="$SE_DIR/home/cache"
		PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 LIBVIRT_AUTOSTART=0)
	[ -n "${SE_BUS_ADDR:-}" ] && SE_CMD+=(DBUS_SESSION_BUS_ADDRESS="$SE_BUS_ADDR")
	[ -n "${VMO_HELPER:-}" ] && SE_CMD+=(VMO_HELPER="$VMO_HELPER")
	[ -n "${ASAN_OPTIONS:-}" ] && SE_CMD+=(ASAN_OPTIONS="$ASAN_OPTIONS")
	[ -n "${UBSAN_OPTIONS:-}" ] && SE_CMD+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
	SE_CMD+=("$@")
}
se_as_user() { local SE_CMD; se__user_cmd "$@"; "${SE_CMD[@]}"; }
se_virsh() { se_as_user virsh -q -c "$SE_URI" "$@"; }
se_vroot() { timeout 60 virsh -q -c "$SE_URI" "$@"; }
se__bus_up() { busctl --system status >/dev/null 2>&1; }
se__polkit_up() { busctl --system status org.freedesktop.PolicyKit1 >/dev/null 2>&1; }
se__libvirt_up() { se_vroot uri >/dev/null 2>&1; }
se__action_known() { pkaction --action-id "$SE_ACTION" --verbose 2>/dev/null | grep -q "$VMO_HELPER"; }
se__gone() { ! kill -0 "$1" 2>/dev/null; }
se__kill() { # PID: TERM, wait up to 10 s, then KILL
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	se_wait_for 10 se__gone "$1" || kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

se_setup() {
	local p
	[ "$(id -u)" = 0 ] || { se__die "must run as root (it starts the system daemons)"; return 1; }
	for p in libvirtd virtlogd virsh qemu-img qemu-io qemu-system-x86_64 dbus-daemon tini \
		pkexec pkcheck busctl setpriv flock as ld gdbus; do
		command -v "$p" >/dev/null 2>&1 ||
			{ se__die "required program '$p' is missing (tools/setup.sh installs tools/debian-packages.txt)"; return 1; }
	done
	[ -x /usr/lib/polkit-1/polkitd ] || { se__die "polkitd is missing"; return 1; }
	getent group libvirt >/dev/null && id libvirt-qemu >/dev/null 2>&1 ||
		{ se__die "libvirt-daemon-system is not installed (no group libvirt / user libvirt-qemu)"; return 1; }
	[ -n "${VMO_HELPER:-}" ] && [ -x "$VMO_HELPER" ] || { se__die "VMO_HELPER is not built"; return 1; }
	[ -s "${VMO_BUILD:?}/install-gen/io.github.vmoverlay.policy" ] ||
		{ se__die "the polkit action was not built"; return 1; }
	# What the shipped qemu.conf must still say (the defaults this suite is about).
	if grep -Eq '^[[:space:]]*(dynamic_ownership[[:space:]]*=[[:space:]]*0|user[[:space:]]*=|group[[:space:]]*=)' /etc/libvirt/qemu.conf; then
		se__die "/etc/libvirt/qemu.conf is not the shipped default (user/group/dynamic_ownership set)"
		return 1
	fi

	# pkexec finds the action by the helper's path; a second definition of
	# the same action id (an installed vmoverlay) would hide ours.
	local other
	other=$(grep -l "id=\"$SE_ACTION\"" /usr/share/polkit-1/actions/*.policy 2>/dev/null | grep -vx "$SE_ACTION_FILE")
	[ -z "$other" ] || { se__die "$other also defines $SE_ACTION (an installed vmoverlay?); remove it for this suite"; return 1; }
	mkdir -p "${SE_LOCK%/*}" || return 1
	exec 8>>"$SE_LOCK" || return 1
	flock -w 900 8 || { se__die "another system suite holds $SE_LOCK"; return 1; }
	if [ -S /run/libvirt/libvirt-sock ] && se__libvirt_up; then
		se__die "a system libvirtd that this test did not start is running; it needs its own"
		return 1
	fi
	SE_DIR=$(mktemp -d /tmp/vmosys.XXXXXX) || return 1
	chmod 0755 "$SE_DIR"
	SE_CLEANUP=()
	SE_OWN_BUS=0 SE_OWN_POLKIT=0 SE_OWN_USER=0 SE_STARTED_LIBVIRT=0 SE_BUS_PID= SE_APP_PID=
	SE_CG_BEFORE=$(ls -d /sys/fs/cgroup/*/machine 2>/dev/null)
	export SE_DIR
	if [ -z "${SE_NO_TRAP:-}" ]; then
		trap se_teardown EXIT
		# A timeout's SIGTERM must still clean up (the EXIT trap runs on exit).
		trap 'exit 143' TERM INT HUP
	fi

	local t0
	t0=$(se__now_ms)
	# P1: the system bus before libvirtd. P3: stale files of a dead bus.
	if ! se__bus_up; then
		rm -f /run/dbus/pid /run/dbus/system_bus_socket
		mkdir -p /run/dbus
		# 8>&-: no daemon may inherit the suite's lock (an orphan would hold it).
		dbus-daemon --system --fork --print-pid >"$SE_DIR/dbus.pid" 8>&- || { se__die "system bus"; return 1; }
		SE_OWN_BUS=1
	fi
	# Our action, pointing at the helper under test (pkexec finds the action
	# by the program's path). Installed before polkitd starts or re-reads.
	sed "s|<annotate key=\"org.freedesktop.policykit.exec.path\">[^<]*<|<annotate key=\"org.freedesktop.policykit.exec.path\">$VMO_HELPER<|" \
		"$VMO_BUILD/install-gen/io.github.vmoverlay.policy" >"$SE_ACTION_FILE" || return 1
	if ! se__polkit_up; then
		/usr/lib/polkit-1/polkitd --no-debug >"$SE_DIR/polkitd.log" 2>&1 8>&- &
		echo $! >"$SE_DIR/polkitd.pid"
		SE_OWN_POLKIT=1
		se_wait_for 10 se__polkit_up || { se__die "polkitd did not come up"; return 1; }
	fi
	se_wait_for 10 se__action_known ||
		{ se__die "polkitd does not know $SE_ACTION for $VMO_HELPER"; return 1; }

	# P6: virtlogd by hand; P5: tini as subreaper for the double-forked qemu.
	SE_STARTED_LIBVIRT=1
	virtlogd >"$SE_DIR/virtlogd.log" 2>&1 8>&- &
	echo $! >"$SE_DIR/virtlogd.pid"
	tini -s -- libvirtd --timeout=0 >"$SE_DIR/libvirtd.log" 2>&1 8>&- &
	echo $! >"$SE_DIR/tini.pid"
	se_wait_for 30 se__libvirt_up || { se__die "libvirtd did not come up: $(tail -3 "$SE_DIR/libvirtd.log")"; return 1; }

	if id "$SE_USER" >/dev/null 2>&1; then
		id -nG "$SE_USER" | grep -qw libvirt || { se__die "user $SE_USER exists but is not in group libvirt"; return 1; }
		# Left by a run that was killed (SIGKILL: no teardown): ours, as
		# its home /nonexistent and shell nologin say; removed at the end.
		[ "$(getent passwd "$SE_USER" | cut -d: -f6,7)" = /nonexistent:/usr/sbin/nologin ] && SE_OWN_USER=1
	else
		useradd -M -d /nonexistent -s /usr/sbin/nologin -G libvirt "$SE_USER" || return 1
		SE_OWN_USER=1
	fi
	mkdir -p "$SE_DIR"/home/{run,config,state,cache}
	chmod 0700 "$SE_DIR/home/run"
	chown -R "$SE_USER:" "$SE_DIR/home"
	se_virsh list --all >/dev/null || { se__die "$SE_USER cannot use $SE_URI (polkit, 60-libvirt.rules)"; return 1; }
	# Left by a killed run: our pool's definition (libvirtd keeps it in /etc).
	if se_vroot pool-info "$SE_POOL" >/dev/null 2>&1; then
		se_vroot pool-destroy "$SE_POOL" >/dev/null 2>&1
		se_vroot pool-undefine "$SE_POOL" >/dev/null 2>&1
		rm -rf "$SE_PDIR"
	fi
	se_virsh pool-define-as "$SE_POOL" dir --target "$SE_PDIR" >/dev/null &&
		se_virsh pool-build "$SE_POOL" >/dev/null && se_virsh pool-start "$SE_POOL" >/dev/null ||
		{ se__die "pool $SE_POOL"; return 1; }
	[ "$(stat -c '%U:%G %a' "$SE_PDIR")" = "root:root 711" ] || { se__die "pool dir is $(stat -c '%U:%G %a' "$SE_PDIR")"; return 1; }
	se_bootsector "$SE_DIR/boot.bin" || return 1
	echo "system-env: up in $(($(se__now_ms) - t0)) ms (bus ours=$SE_OWN_BUS polkitd ours=$SE_OWN_POLKIT)" >&2
}

se_teardown() {
	trap - EXIT
	[ -n "${SE_DIR:-}" ] && [ -d "$SE_DIR" ] || return 0
	local d p c
	se_app_stop >/dev/null 2>&1
	[ -n "${SE_BUS_PID:-}" ] && se__kill "$SE_BUS_PID"
	SE_BUS_PID=
	rm -f "$SE_RULE" "$SE_ACTION_FILE"
	# Anything a scenario made outside SE_DIR (it adds to SE_CLEANUP).
	for p in "${SE_CLEANUP[@]}"; do [ -n "$p" ] && rm -rf "$p"; done
	if [ "$SE_STARTED_LIBVIRT" = 1 ]; then
		for d in $(se_vroot list --all --name 2>/dev/null); do
			se_vroot destroy "$d" >/dev/null 2>&1
			se_vroot undefine "$d" >/dev/null 2>&1
			rm -f "/var/log/libvirt/qemu/$d.log"
		done
		se_vroot pool-destroy "$SE_POOL" >/dev/null 2>&1
		se_vroot pool-undefine "$SE_POOL" >/dev/null 2>&1
		se__kill "$(cat "$SE_DIR/tini.pid" 2>/dev/null)"
		se__kill "$(cat "$SE_DIR/virtlogd.pid" 2>/dev/null)"
		rm -rf /run/libvirt /run/libvirtd.pid /run/virtlogd.pid "$SE_PDIR"
	fi
	if [ "$SE_OWN_POLKIT" = 1 ]; then
		# P2: the bus may have re-activated it (launch helper): that one too.
		p=$(busctl --system status org.freedesktop.PolicyKit1 2>/dev/null | sed -n 's/^PID=//p')
		se__kill "$(cat "$SE_DIR/polkitd.pid" 2>/dev/null)"
		[ -n "$p" ] && se__kill "$p"
	fi
	if [ "$SE_OWN_BUS" = 1 ]; then
		se__kill "$(cat "$SE_DIR/dbus.pid" 2>/dev/null)"
		rm -f /run/dbus/pid /run/dbus/system_bus_socket
	fi
	[ "$SE_OWN_USER" = 1 ] && userdel "$SE_USER" 2>/dev/null
	for c in /sys/fs/cgroup/*/machine; do
		case $'\n'"$SE_CG_BEFORE"$'\n' in *$'\n'"$c"$'\n'*) ;; *) [ -d "$c" ] && rmdir "$c" 2>/dev/null ;; esac
	done
	if [ -n "${VMO_KEEP_TMP:-}" ]; then echo "system-env: kept $SE_DIR" >&2; else rm -rf "$SE_DIR"; fi
	SE_DIR=
	flock -u 8 2>/dev/null
	return 0
}

# ---- polkit ----
se__pk_answer() { # pkcheck's status for our action, asked by a process of $SE_USER about itself
	se_as_user sh -c 'pkcheck --action-id "$1" --process $$ >/dev/null 2>&1; echo $?' sh "$SE_ACTION"
}
se__rule_effective() { # yes|no|none
	local rc
	rc=$(se__pk_answer)
	case $1 in
	yes) [ "$rc" = 0 ] ;;
	*) [ "$rc" != 0 ] ;;
	esac
}
# Rules name only the user and the action: without logind the subject is a
# bare unix-process, so subject.active / subject.local are false here
# (research/polkit-harness.md) and a rule needing them would never match.
se_rule() {
	case $1 in
	none) rm -f "$SE_RULE" ;;
	yes | no)
		local res=YES
		[ "$1" = no ] && res=NO
		cat >"$SE_RULE.tmp" <<EOF
// vmoverlay system suite: the test user may (or may not) run the helper.
polkit.addRule(function(action, subject) {
    if (action.id == "$SE_ACTION" && subject.user == "$SE_USER")
        return polkit.Result.$res;
});
EOF
		mv "$SE_RULE.tmp" "$SE_RULE"
		;;
	*) se__die "se_rule yes|no|none"; return 1 ;;
	esac
	# polkitd re-reads rules.d by itself (inotify) within about a second.
	se_wait_for 20 se__rule_effective "$1" || { se__die "polkitd did not apply rule '$1'"; return 1; }
}

# ---- images and the domain ----
se_bootsector() {
	local out=$1
	as --32 -o "$SE_DIR/b.o" - <<'EOF' && ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$out" "$SE_DIR/b.o"
	.code16
	.globl _start
_start:
	cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x7c00,%sp
	mov $0x602,%dx; mov $0x0100,%ax; out %ax,%dx; sti
1:	hlt; mov $0x600,%dx; in %dx,%ax; test $0x0100,%ax; jz 1b
	mov $0x604,%dx; mov $0x2000,%ax; out %ax,%dx
2:	hlt; jmp 2b
	.org 510
	.word 0xaa55
EOF
	[ "$(stat -c %s "$out" 2>/dev/null)" = 512 ] || { se__die "boot sector"; return 1; }
}

se_make_vm() { # NAME BASEPAT OVPAT [SIZE [DATA]]: with DATA a second disk (vdb), NAME-data
	local n=$1 b="$SE_PDIR/$1-base.qcow2" o="$SE_PDIR/$1.qcow2" second=
	se_virsh vol-create-as "$SE_POOL" "$n-base.qcow2" "${4:-64M}" --format qcow2 >/dev/null &&
		qemu-io -f qcow2 -c "write -q -s $SE_DIR/boot.bin 0 512" -c "write -q -P $2 1M 1M" "$b" >/dev/null &&
		se_virsh vol-create-as "$SE_POOL" "$n.qcow2" "${4:-64M}" --format qcow2 \
			--backing-vol "$b" --backing-vol-format qcow2 >/dev/null &&
		qemu-io -f qcow2 -c "write -q -P $3 2M 1M" "$o" >/dev/null || { se__die "images of $n"; return 1; }
	if [ -n "${5:-}" ]; then
		local db="$SE_PDIR/$1-data-base.qcow2" do="$SE_PDIR/$1-data.qcow2"
		se_virsh vol-create-as "$SE_POOL" "$n-data-base.qcow2" 32M --format qcow2 >/dev/null &&
			qemu-io -f qcow2 -c "write -q -P 0x22 1M 1M" "$db" >/dev/null &&
			se_virsh vol-create-as "$SE_POOL" "$n-data.qcow2" 32M --format qcow2 \
				--backing-vol "$db" --backing-vol-format qcow2 >/dev/null &&
			qemu-io -f qcow2 -c "write -q -P 0x44 2M 3M" "$do" >/dev/null ||
			{ se__die "data disk of $n"; return 1; }
		second="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$do'/><target dev='vdb' bus='virtio'/></disk>"
	fi
	cat >"$SE_DIR/$n.xml" <<EOF
<domain type='qemu'>
  <name>$n</name> <memory unit='MiB'>64</memory> <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features> <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$o'/><target dev='vda' bus='virtio'/></disk>
    $second
    <controller type='usb' model='none'/> <video><model type='none'/></video> <memballoon model='none'/>
  </devices>
</domain>
EOF
	chmod 0644 "$SE_DIR/$n.xml"
	se_virsh define "$SE_DIR/$n.xml" >/dev/null || { se__die "define $n"; return 1; }
}

se_state() { se_vroot domstate --reason "$1" 2>/dev/null; }
se__state_is() { case "$(se_state "$1")" in "$2"*) return 0 ;; esac; return 1; }
se_start() { se_virsh start "$1" >/dev/null && se_wait_for 60 se__state_is "$1" running; }
se_destroy() { se_virsh destroy "$1" >/dev/null; }
se_shutdown() { # P11: a press before the boot sector runs is lost: re-send
	local end=$(($(date +%s) + ${2:-120}))
	while [ "$(date +%s)" -le "$end" ]; do
		se__state_is "$1" "shut off" && return 0
		se_virsh shutdown "$1" >/dev/null 2>&1
		se_wait_for 1 se__state_is "$1" "shut off" && return 0
	done
	se__die "$1 did not shut down"
}

# ---- the applet ----
se_bus_start() {
	local out
	out=$(se_as_user dbus-daemon --config-file="${VMO_SRC:?}/tests/private-bus.conf" --fork \
		--print-address=1 --print-pid=1 8>&-) || { se__die "session bus"; return 1; }
	SE_BUS_ADDR=$(sed -n 1p <<<"$out")
	SE_BUS_PID=$(sed -n 2p <<<"$out")
}
se__app_up() { se_as_user gdbus call --session -d org.freedesktop.DBus -o /org/freedesktop/DBus \
	-m org.freedesktop.DBus.NameHasOwner io.github.vmoverlay 2>/dev/null | grep -q true; }
se_app_start() { # CONFIG-TEXT
	mkdir -p "$SE_DIR/home/config/vmoverlay"
	printf '%s\n' "$1" >"$SE_DIR/home/config/vmoverlay/vmoverlay.conf"
	chown -R "$SE_USER:" "$SE_DIR/home"
	SE_APP_LOG=$SE_DIR/app.log
	# setpriv and env exec: $! is the applet itself (kill by PID).
	local SE_CMD
	se__user_cmd "${VMO_BIN:?}" --verbose
	"${SE_CMD[@]}" >>"$SE_APP_LOG" 2>&1 8>&- &
	SE_APP_PID=$!
	se_wait_for 30 se__app_up || { se__die "the applet did not come up: $(tail -5 "$SE_APP_LOG")"; return 1; }
}
se_app_stop() {
	[ -n "${SE_APP_PID:-}" ] || return 0
	local rc=0
	kill -TERM "$SE_APP_PID" 2>/dev/null
	se_wait_for 20 se__gone "$SE_APP_PID" || kill -KILL "$SE_APP_PID" 2>/dev/null
	wait "$SE_APP_PID" 2>/dev/null || rc=$?
	SE_APP_PID=
	return $rc
}
se_ctl() { se_as_user "${VMO_BIN:?}" "$@"; }
se_app_status() {
	se_as_user gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Status 2>/dev/null |
		grep -o "('$1', '[^']*', '[^']*'" | sed "s/.*, '\([^']*\)'$/\1/"
}
se__status_is() { [ "$(se_app_status "$1")" = "$2" ]; }
se_wait_status() { # VM STATE [TIMEOUT_S]
	se_wait_for "${3:-60}" se__status_is "$1" "$2" ||
		{ se__die "$1 is '$(se_app_status "$1")', not '$2'"; return 1; }
}
