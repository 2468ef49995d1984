#!/bin/bash
# The terminal front end (issue 15 item 1), driven through a real
# pseudo-terminal (pty-drive.py) as a person at a terminal would: no tray
# host and no notification server on the bus, so vmoverlay asks on the
# terminal. Everything runs as the unprivileged test user, on its own
# private session bus (dbus-run-session).
#   1. a real VM (private libvirtd, TCG) shuts down: the question, the policy
#      radio (answer 5 moves the mark to Commit), then 1 commits; the base
#      holds the session's bytes, the overlay is fresh (qemu-io, qemu-img).
#   2. the demo, answered 2 (discard): it ends by itself with exit 0, says
#      what it proved, and leaves nothing in TMPDIR.
#   3. the demo with no terminal at all (stdin /dev/null): it says nobody can
#      answer, ends with exit 0, changes nothing, leaves nothing.
#   4. the demo with --terminal and answers on a pipe: commits, ends.
set -u
. "$VMO_SRC/tests/integration/libvirt-env.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "${VMO_BIN:-}" ] || fail "VMO_BIN not set or not executable"
drive=$VMO_SRC/tests/integration/pty-drive.py
busconf=$VMO_SRC/tests/private-bus.conf
ve_setup || exit 1

# The binary must be reachable by the test user (the build tree may sit
# under root's 0700 home).
bin=$VE_DIR/vmoverlay
cp "$VMO_BIN" "$bin" && chmod 755 "$bin" || fail "copy the applet"
# The build tree's translations and icons are found relative to the build
# directory; run in the C locale so the transcript is English.
export LC_ALL=C.UTF-8 LANGUAGE=

# ---- 1. a real VM, answered on the terminal ----
base=$VE_IMAGES/vm1-base.qcow2 ov=$VE_IMAGES/vm1.qcow2
ve_make_base "$base" 64M 0x11 || fail "base"
ve_make_overlay "$ov" "$base" || fail "overlay"
ve_define_vm vm1 "$ov" || fail "define"
ve_as_user mkdir -p "$VE_DIR/c/vmoverlay"
ve_as_user tee "$VE_DIR/c/vmoverlay/vmoverlay.conf" >/dev/null <<CONF
connect = "$VE_URI";
reconcile_interval = 0;
vms = ( { name = "vm1"; policy = "ask"; } );
CONF
# The session's writes, then the VM runs on its overlay.
ve_as_user qemu-io -f qcow2 -c 'write -q -P 0x66 2M 1M' "$ov" || fail "write session"
ve_start vm1 || fail "start vm1"
# --verbose: the log on the same terminal says when the applet watches the
# VM; then the VM is destroyed (a real STOPPED/DESTROYED event).
ve_as_user "$drive" --timeout 120 --transcript "$VE_DIR/term1.txt" \
	'expect:vm1: state unknown -> running' \
	"run:virsh -q -c '$VE_URI' destroy vm1 >/dev/null" \
	'expect:vm1 shut down — Keep the changes made in this session\?' \
	'expect:The guest did not shut down cleanly' \
	'expect:4\) Ask ●  5\) Commit  6\) Discard  7\) Keep' \
	'expect:Choose 1-7 and press Enter:' 'send:5\n' \
	'expect:4\) Ask  5\) Commit ●' \
	'expect:Choose 1-7 and press Enter:' 'send:1\n' \
	'expect:vm1: [0-9.,]+ [KMG]?i?B(ytes)? committed into vm1-base.qcow2; fresh overlay ready' \
	"run:pkill -TERM -u '$VE_USER' -f '^$bin( |\$)'" \
	-- dbus-run-session --config-file="$busconf" -- "$bin" --verbose >/dev/null
st=$?
cat "$VE_DIR/term1.txt"
[ "$st" = 0 ] || fail "the applet's exit status after SIGTERM: $st"
grep -q 'committed into vm1-base.qcow2; fresh overlay ready' "$VE_DIR/term1.txt" ||
	fail "no result line on the terminal"
grep -q 'committing \[' "$VE_DIR/term1.txt" || fail "no progress bar"
ve_reads "$base" 0x66 2M 1M ||
	fail "the base lacks the session's bytes"
ve_reads "$base" 0x11 1M 1M ||
	fail "the base lost its own bytes"
! ve_as_user qemu-img map --output=json -f qcow2 "$ov" | grep '"depth": 0' | grep -q '"data": true' ||
	fail "the overlay is not fresh"
ve_as_user qemu-img check -q "$ov" || fail "qemu-img check overlay"
ve_as_user qemu-img check -q "$base" || fail "qemu-img check base"
echo "ok 1 real VM: asked on the terminal, policy radio, commit, bytes checked"

# ---- 2. the demo in a terminal, discarded ----
tmp=$VE_DIR/demo-tmp
ve_as_user mkdir -p "$tmp"
ve_as_user env TMPDIR="$tmp" VMO_DEMO_COUNTDOWN=2 "$drive" --timeout 120 \
	--transcript "$VE_DIR/term2.txt" \
	'expect:The demo shuts test down in' \
	'expect:Choose 1-7 and press Enter:' 'send:2\n' \
	'expect:Demo finished: the session.s 1 MiB \(pattern 0x5a\) was discarded' \
	-- dbus-run-session --config-file="$busconf" -- "$bin" --demo >/dev/null
st=$?
cat "$VE_DIR/term2.txt"
[ "$st" = 0 ] || fail "demo (discard) exit status $st"
grep -q 'base holds the session.s data: no' "$VE_DIR/term2.txt" || fail "discard report (base)"
grep -q 'overlay holds data of its own: no' "$VE_DIR/term2.txt" || fail "discard report (overlay)"
grep -q 'qemu-img check of base and overlay: passed' "$VE_DIR/term2.txt" || fail "discard report (check)"
[ -z "$(ls -A "$tmp")" ] || fail "the demo left $(ls -A "$tmp")"
echo "ok 2 demo in a terminal: discard, report, nothing left"

# ---- 3. the demo with no terminal and nobody to ask ----
out=$(ve_as_user env TMPDIR="$tmp" VMO_DEMO_COUNTDOWN=1 timeout 120 \
	dbus-run-session --config-file="$busconf" -- "$bin" --demo </dev/null 2>/dev/null)
st=$?
echo "$out"
[ "$st" = 0 ] || fail "demo without a terminal: exit status $st"
echo "$out" | grep -q 'Nobody can answer here' || fail "demo without a terminal: no explanation"
[ -z "$(ls -A "$tmp")" ] || fail "the demo left $(ls -A "$tmp")"
echo "ok 3 demo without a terminal ends by itself"

# ---- 4. --terminal with answers on a pipe ----
out=$(echo 1 | ve_as_user env TMPDIR="$tmp" VMO_DEMO_COUNTDOWN=1 timeout 120 \
	dbus-run-session --config-file="$busconf" -- "$bin" --demo --terminal 2>/dev/null)
st=$?
echo "$out"
[ "$st" = 0 ] || fail "demo --terminal on a pipe: exit status $st"
echo "$out" | grep -q 'committed into test-base.qcow2; fresh overlay ready' || fail "pipe: no result"
echo "$out" | grep -q 'base holds the session.s data: yes' || fail "pipe: commit report"
[ -z "$(ls -A "$tmp")" ] || fail "the demo left $(ls -A "$tmp")"
echo "ok 4 --terminal with a pipe"
