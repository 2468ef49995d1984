# shellcheck shell=bash
# A private, throw-away libvirt session daemon with tiny TCG VMs, for tests.
# Source it; it defines functions and starts nothing by itself.
# Recipe and measurements: research/libvirt-harness.md (session mode under a
# non-root user, private XDG dirs, stdio_handler=file, tini as subreaper,
# LIBVIRT_AUTOSTART=0, a 40-byte boot sector so `virsh shutdown` works).
#
# Who runs what:
#   * libvirtd, qemu and the image files belong to VE_USER (a non-root user:
#     `qemu:///session` does not exist for root). As root the harness creates
#     the system user `vmotest` (override with VE_USER) if missing; as a normal
#     user it uses that user (tests/integration/test-user).
#   * The applet under test runs as VE_USER too, as our users run it: start it
#     with "${VE_AS[@]}" (or ve_as_user), its XDG dirs given to VE_USER.
#   * Clients connect with VE_URI = qemu:///session?socket=<our socket>. Root may
#     use that URI directly (the test script inspecting). Other users can't:
#     the socket is 0700. Use ve_as_user to run a command as VE_USER with the
#     daemon's environment. Files a root process creates for VE_USER's
#     processes must be given to VE_USER (ve_give).
#
# Functions (all return non-zero on failure, with a line on stderr):
#   ve_setup                 make VE_DIR, the user, start the daemon; sets an EXIT
#                            trap that calls ve_teardown (set VE_NO_TRAP=1 to skip)
#   ve_teardown              destroy our domains, stop the daemon, kill our qemus,
#                            remove VE_DIR (VMO_KEEP_TMP=1 keeps it)
#   ve_as_user CMD...        run CMD as VE_USER with HOME/XDG_*/LIBVIRT_AUTOSTART=0
#                            (in the background use "${VE_AS[@]}" CMD &: $! is CMD's pid)
#   ve_virsh ARGS...         virsh -c "$VE_URI" ARGS... (as VE_USER)
#   ve_give PATH...          chown PATH to VE_USER (no-op when not root)
#   ve_start_daemon          start libvirtd (tini -s) and wait for its socket
#   ve_stop_daemon [SIG]     signal libvirtd (default TERM) and wait for it to exit;
#                            running guests survive (libvirtd re-attaches on start)
#                            and stay reaped by the harness's long-lived tini
#   ve_bootsector FILE       write the 512-byte "guest OS" that powers off on ACPI
#   ve_make_base PATH [SIZE] [PATTERN]
#                            qcow2 base (default 64M) holding the boot sector; with
#                            PATTERN (e.g. 0x11) also 1 MiB of it at offset 1M
#   ve_make_overlay PATH BASE [PATTERN]
#                            qcow2 overlay over BASE (-F qcow2, absolute backing);
#                            with PATTERN, 1 MiB of it at offset 1M (overlay only)
#   ve_define_vm NAME DISK   define a 64 MiB TCG domain booting from DISK (qcow2)
#   ve_start NAME            start it and wait until it runs
#   ve_destroy NAME          virsh destroy
#   ve_shutdown NAME [TIMEOUT]
#                            ACPI shutdown, re-sent every second until shut off
#                            (a press before the boot sector runs is lost)
#   ve_domstate NAME         "running (booted)", "shut off (destroyed)" ...
#   ve_wait_state NAME PREFIX [TIMEOUT]
#                            wait until ve_domstate starts with PREFIX
#   ve_wait_for TIMEOUT CMD...  poll CMD every 20 ms until it succeeds
#   ve_qemu_pid NAME         pid of the domain's qemu process (or fail)
#
# Set before ve_setup: VE_USER (default vmotest when root), VE_NO_TRAP=1,
# VE_SERVER_KEEPALIVE=N (libvirtd's keepalive_interval; -1 = the daemon never
# pings, so an idle client really sleeps; libvirt's default is 5 s).
#
# Variables after ve_setup: VE_DIR (work dir, owned by VE_USER), VE_USER,
# VE_URI, VE_SOCK, VE_IMAGES (a directory for images, owned by VE_USER).

ve__die() { echo "libvirt-env: $*" >&2; return 1; }

ve__need() {
	local p
	for p in "$@"; do
		command -v "$p" >/dev/null 2>&1 || { ve__die "required program '$p' is missing (run the README's set-up)"; return 1; }
	done
}

VE_TU_BIN=${VMO_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/integration/test-user

# VE_AS: the command prefix ve_as_user uses, for starting a process as
# VE_USER in the background: `"${VE_AS[@]}" env X=Y CMD & pid=$!` gives CMD's
# own pid (test-user execs down to CMD; a shell function in the background
# would be a subshell between). Set by ve_setup.
VE_AS=()
ve__set_as() {
	VE_AS=("$VE_TU_BIN" run "$VE_USER" env HOME="$VE_DIR/h" XDG_RUNTIME_DIR="$VE_DIR/r"
		XDG_CONFIG_HOME="$VE_DIR/c" XDG_CACHE_HOME="$VE_DIR/k" XDG_DATA_HOME="$VE_DIR/d"
		LIBVIRT_AUTOSTART=0 PATH="$PATH")
}

ve_as_user() { "${VE_AS[@]}" "$@"; }

ve_virsh() { ve_as_user virsh -q -c "$VE_URI" "$@"; }

ve_give() {
	[ "$(id -u)" = 0 ] || return 0
	chown "$VE_USER:" "$@"
}

# ve_reads FILE PATTERN OFFSET SIZE [QEMU-IO OPTION...]: the disk seen
# through FILE (as VE_USER) holds PATTERN there. qemu-io prints "read N/N
# bytes" even after "Pattern verification failed" (and exits 1): its status
# and the absence of that line count, not the "read" line alone.
ve_reads() {
	local f=$1 pat=$2 off=$3 len=$4 o
	shift 4
	o=$(ve_as_user qemu-io -r "$@" -f qcow2 -c "read -P $pat $off $len" "$f" 2>&1) || return 1
	! grep -q "verification failed" <<<"$o" && grep -q "^read " <<<"$o"
}

ve_wait_for() {
	local timeout=$1; shift
	local end=$(( $(date +%s%N) + timeout * 1000000000 ))
	until "$@"; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.02
	done
}

ve__daemon_up() { ve_virsh uri >/dev/null 2>&1; }

# One long-lived reaper (tini -s) runs a tiny supervisor that starts libvirtd
# whenever $VE_DIR/want-daemon exists. qemu, double-forked by libvirtd, is
# reparented to that tini and reaped at once, also while libvirtd is down
# (pitfall P1: a non-reaping PID 1 would leave zombies that libvirtd takes
# for running guests after a restart).
ve__supervisor='
	d=$1
	while [ -e "$d/reaper-run" ]; do
		if [ -e "$d/want-daemon" ]; then
			libvirtd --timeout=0 >>"$d/libvirtd.log" 2>&1 </dev/null &
			echo $! >"$d/libvirtd.pid"
			wait $!
			echo "libvirtd $! exited with status $? (128+N: signal N)" >>"$d/reaper.log"
			rm -f "$d/libvirtd.pid"
		else
			sleep 0.05
		fi
	done'

ve_start_daemon() {
	ve__daemon_up && return 0
	if ! { [ -s "$VE_DIR/reaper.pid" ] && kill -0 "$(cat "$VE_DIR/reaper.pid")" 2>/dev/null; }; then
		touch "$VE_DIR/reaper-run" "$VE_DIR/libvirtd.log" "$VE_DIR/reaper.log"
		ve_give "$VE_DIR/libvirtd.log" "$VE_DIR/reaper.log"
		# The shell records its own pid and becomes tini.
		ve_as_user sh -c 'echo $$ >"$1/reaper.pid"; exec tini -s -- sh -c "$2" sh "$1"' sh \
			"$VE_DIR" "$ve__supervisor" >>"$VE_DIR/reaper.log" 2>&1 &
	fi
	touch "$VE_DIR/want-daemon"
	ve_wait_for 20 ve__daemon_up || { ve__die "libvirtd did not come up; see $VE_DIR/libvirtd.log"; return 1; }
}

ve_stop_daemon() {
	local sig=${1:-TERM} pid
	rm -f "$VE_DIR/want-daemon"
	pid=$(cat "$VE_DIR/libvirtd.pid" 2>/dev/null) || return 0
	[ -n "$pid" ] || return 0
	kill -s "$sig" "$pid" 2>/dev/null || true
	ve_wait_for 10 ve__gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
	ve_wait_for 5 ve__gone "$pid" || true
	rm -f "$VE_SOCK"
}

ve__stop_reaper() {
	local pid
	rm -f "$VE_DIR/reaper-run" "$VE_DIR/want-daemon"
	pid=$(cat "$VE_DIR/reaper.pid" 2>/dev/null) || return 0
	# Without reaper-run the supervisor ends within 50 ms, and tini with it.
	ve_wait_for 2 ve__gone "$pid" && return 0
	kill -TERM "$pid" 2>/dev/null || true
	ve_wait_for 5 ve__gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

ve__gone() { ! kill -0 "$1" 2>/dev/null; }

ve_setup() {
	ve__need virsh libvirtd tini qemu-img qemu-io qemu-system-x86_64 as ld setpriv || return 1
	VE_USER=$(VMO_TEST_USER=${VE_USER:-${VMO_TEST_USER:-}} "$VE_TU_BIN" name) || return 1
	# Short paths: qemu's monitor socket lives under XDG_CONFIG_HOME and unix
	# socket paths are limited to 108 bytes.
	VE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vmolv.XXXXXX") || return 1
	mkdir -p "$VE_DIR"/{h,r,c/libvirt,k,d,img}
	chmod 700 "$VE_DIR/r"
	chmod 755 "$VE_DIR"
	# No virtlogd (it would linger for 2 minutes): qemu logs to a file.
	echo 'stdio_handler = "file"' >"$VE_DIR/c/libvirt/qemu.conf"
	# libvirtd pings every client that supports keepalive every 5 s (its
	# keepalive_interval), which wakes an idle client; idle tests set -1.
	if [ -n "${VE_SERVER_KEEPALIVE:-}" ]; then
		echo "keepalive_interval = $VE_SERVER_KEEPALIVE" >"$VE_DIR/c/libvirt/libvirtd.conf"
	fi
	ve_give -R "$VE_DIR"
	VE_IMAGES=$VE_DIR/img
	VE_SOCK=$VE_DIR/r/libvirt/libvirt-sock
	VE_URI="qemu:///session?socket=$VE_SOCK"
	export LIBVIRT_AUTOSTART=0 VE_DIR VE_USER VE_URI VE_SOCK VE_IMAGES
	ve__set_as
	[ -n "${VE_NO_TRAP:-}" ] || trap ve_teardown EXIT
	ve_start_daemon
}

ve_qemu_pid() {
	local name=$1 f
	for f in "$VE_DIR/r/libvirt/qemu/run/$name.pid" "$VE_DIR/c/libvirt/qemu/run/$name.pid"; do
		if [ -s "$f" ]; then
			cat "$f"
			return 0
		fi
	done
	return 1
}

ve_teardown() {
	[ -n "${VE_DIR:-}" ] && [ -d "$VE_DIR" ] || return 0
	local d pid
	if [ -S "$VE_SOCK" ]; then
		for d in $(ve_virsh list --name 2>/dev/null); do
			ve_virsh destroy "$d" >/dev/null 2>&1 || true
		done
	fi
	# qemus left from a daemon outage, then the daemon itself.
	for f in "$VE_DIR"/r/libvirt/qemu/run/*.pid; do
		[ -s "$f" ] || continue
		pid=$(cat "$f")
		kill -KILL "$pid" 2>/dev/null || true
	done
	ve_stop_daemon TERM
	ve__stop_reaper
	if [ -n "${VMO_KEEP_TMP:-}" ]; then
		echo "libvirt-env: kept $VE_DIR" >&2
	else
		rm -rf "$VE_DIR"
	fi
	VE_DIR=
}

# The guest: enable the PIIX4 power-button event (PM1_EN at 0x602), sleep
# on the BIOS timer tick, poll PWRBTN_STS (PM1_STS at 0x600) and then write
# SLP_EN|S5 to PM1_CNT (0x604): qemu powers off, libvirt reports
# STOPPED/SHUTDOWN like a real guest.
ve_bootsector() {
	local out=$1 tmp
	tmp=$(mktemp -d) || return 1
	cat >"$tmp/b.S" <<'EOF'
	.code16
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %ss
	mov $0x7c00, %sp
	mov $0x602, %dx
	mov $0x0100, %ax
	out %ax, %dx
	sti
wait:
	hlt
	mov $0x600, %dx
	in %dx, %ax
	test $0x0100, %ax
	jz wait
	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
halt:
	hlt
	jmp halt
	.org 510
	.word 0xaa55
EOF
	as --32 "$tmp/b.S" -o "$tmp/b.o" &&
		ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$out" "$tmp/b.o"
	local rc=$?
	rm -rf "$tmp"
	[ $rc = 0 ] && [ "$(stat -c %s "$out")" = 512 ] || { ve__die "cannot build the boot sector"; return 1; }
}

ve_make_base() {
	local path=$1 size=${2:-64M} pattern=${3:-}
	local boot="$VE_DIR/boot.bin"
	[ -s "$boot" ] || { ve_bootsector "$boot" && ve_give "$boot"; } || return 1
	ve_as_user qemu-img create -q -f qcow2 "$path" "$size" &&
		ve_as_user qemu-io -f qcow2 -c "write -q -s $boot 0 512" "$path" >/dev/null || return 1
	if [ -n "$pattern" ]; then
		ve_as_user qemu-io -f qcow2 -c "write -q -P $pattern 1M 1M" "$path" >/dev/null || return 1
	fi
}

ve_make_overlay() {
	local path=$1 base=$2 pattern=${3:-}
	case $base in /*) ;; *) base=$PWD/$base ;; esac
	ve_as_user qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$path" || return 1
	if [ -n "$pattern" ]; then
		ve_as_user qemu-io -f qcow2 -c "write -q -P $pattern 1M 1M" "$path" >/dev/null || return 1
	fi
}

# ve_define_vm NAME DISK [DISK2]: DISK as vda, DISK2 (a data disk) as vdb.
ve_define_vm() {
	local name=$1 disk=$2 disk2=${3:-} xml="$VE_DIR/$1.xml" second=
	[ -z "$disk2" ] || second="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$disk2'/><target dev='vdb' bus='virtio'/></disk>"
	cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    $second
    <controller type='usb' model='none'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
	ve_give "$xml"
	ve_virsh define "$xml" >/dev/null
}

ve_domstate() { ve_virsh domstate --reason "$1" 2>/dev/null; }

ve__state_is() { case "$(ve_domstate "$1")" in "$2"*) return 0 ;; esac; return 1; }

ve_wait_state() { ve_wait_for "${3:-20}" ve__state_is "$1" "$2"; }

ve_start() {
	ve_virsh start "$1" >/dev/null && ve_wait_state "$1" running 20
}

ve_destroy() { ve_virsh destroy "$1" >/dev/null; }

ve_shutdown() {
	local name=$1 timeout=${2:-20}
	local end=$(( $(date +%s) + timeout ))
	while [ "$(date +%s)" -le "$end" ]; do
		ve__state_is "$name" "shut off" && return 0
		ve_virsh shutdown "$name" >/dev/null 2>&1 || true
		ve_wait_state "$name" "shut off" 1 && return 0
	done
	ve__die "$name did not shut down within ${timeout}s"
}
