#!/bin/bash
# vmoverlay-helper, run as root against a real libvirt daemon (a private
# session daemon from libvirt-env.sh, reached with --connect, which the
# helper honours only for root calling it directly, never under pkexec)
# with root-owned images that the daemon's user cannot even read:
#   * commit, discard (+ keep .discarded), undo-discard and rebuild change
#     root-owned images correctly (data checked with qemu-io, owner and mode
#     kept, base untouched where it must be);
#   * it refuses a running domain, a symlinked overlay, a symlinked base,
#     a base that is neither recorded in the domain (<backingStore>) nor a
#     volume of a storage pool, a directory someone else may write (group,
#     world, or owned by another user), a file writable by another group, a
#     disk target the domain does not have, a base other than --base, an
#     unknown UUID, a name that is not the domain's, a base shared with
#     another domain, a held qemu image lock, a non-root caller, --connect
#     under pkexec: each with its exit status (doc/vmoverlay-helper.8), a clear message, and no change
#     to any file (sha256 of every image before and after).
# This test is about root: the helper is the one part of vmoverlay that runs
# as root (through pkexec), so it runs as root here; the daemon and the
# non-root caller it must refuse are VE_USER.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
: "${VMO_SRC:?}" "${VMO_HELPER:?the vmoverlay-helper target is not built}"
[ "$(id -u)" = 0 ] || fail "must run as root (the helper refuses anyone else)"
for p in qemu-img qemu-io sha256sum runuser; do
	command -v $p >/dev/null || fail "$p is missing"
done
# shellcheck source=libvirt-env.sh
. "$VMO_SRC/tests/integration/libvirt-env.sh"
VE_NO_TRAP=1 ve_setup
H=$VMO_HELPER
checks=0

# Root-owned images in a root-owned directory, mode 0600: only root can
# change them, as under /var/lib/libvirt/images after a shutdown. Not
# under /tmp: the helper acts only below directories nobody but root (or
# the qemu user) can write, and /tmp is world-writable.
R=$(mktemp -d /var/lib/vmoverlay-helpertest.XXXXXX)
trap 've_teardown; rm -rf "$R"' EXIT
chmod 0711 "$R"
# A domain on DISK whose definition records its base (<backingStore>): the
# helper commits only into a recorded base or a storage-pool volume.
define_vm() { # NAME DISK BASE
	local xml="$VE_DIR/$1.xml"
	cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$1</name> <memory unit='MiB'>64</memory> <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$2'/>
      <backingStore type='file'><format type='qcow2'/><source file='$3'/></backingStore>
      <target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>
EOF
	ve_give "$xml"
	ve_virsh define "$xml" >/dev/null
}
mkroot_base() { # path pattern
	qemu-img create -q -f qcow2 "$1" 64M
	qemu-io -f qcow2 -c "write -q -P $2 1M 1M" "$1" >/dev/null
	chmod 0600 "$1"
}
mkroot_overlay() { # path base pattern
	qemu-img create -q -f qcow2 -F qcow2 -b "$2" "$1"
	qemu-io -f qcow2 -c "write -q -P $3 1M 1M" "$1" >/dev/null
	chmod 0600 "$1"
}
reads() { # image offset pattern: the image reads back pattern there
	qemu-io -r -f qcow2 -c "read -q -P $3 $2 1M" "$1" >/dev/null 2>&1
}
sums() { find "$R" "$VE_IMAGES" -type f -name '*.qcow2*' -print0 | sort -z | xargs -0 sha256sum; }

# Runs the helper; sets rc, out (stdout), err (stderr).
helper() {
	rc=0
	out=$("$H" "$@" 2>"$VE_DIR/helper.err") || rc=$?
	err=$(cat "$VE_DIR/helper.err")
}
# expect_refusal STATUS PATTERN -- helper args: refused with STATUS, the
# last stderr line matches PATTERN, and no image changed.
expect_refusal() {
	local want=$1 pattern=$2
	shift 3
	local before after
	before=$(sums)
	helper "$@"
	after=$(sums)
	[ "$rc" = "$want" ] || fail "helper $*: exit $rc, want $want; stderr: $err"
	local last
	last=$(tail -n 1 <<<"$err")
	grep -qE -- "$pattern" <<<"$last" || fail "helper $*: message '$last' does not match /$pattern/"
	[ "$before" = "$after" ] || fail "helper $*: images changed although it refused:
$(diff <(echo "$before") <(echo "$after"))"
	echo "ok: refused ($rc): $last"
	checks=$((checks + 1))
}

# ---- the domain on root-owned images ----
mkroot_base "$R/base.qcow2" 0x11
mkroot_overlay "$R/ov.qcow2" "$R/base.qcow2" 0x5a
define_vm rootvm "$R/ov.qcow2" "$R/base.qcow2"
ve_virsh dumpxml --inactive rootvm | grep -q "<backingStore type='file'>" ||
	fail "libvirt did not keep the recorded <backingStore>"
UUID=$(ve_virsh domuuid rootvm | tr -d '[:space:]')
owner_mode() { stat -c '%u:%g %a' "$1"; }
[ "$(owner_mode "$R/ov.qcow2")" = "0:0 600" ] || fail "set-up: overlay not root 0600"

# Refusals first, while the overlay still holds the session's data.
expect_refusal 5 'no domain with UUID' -- --connect "$VE_URI" commit rootvm 00000000-1111-2222-3333-444444444444 vda
expect_refusal 5 'is named rootvm' -- --connect "$VE_URI" commit notrootvm "$UUID" vda
expect_refusal 5 'has no disk vdb' -- --connect "$VE_URI" commit rootvm "$UUID" vdb
mkroot_base "$R/other-base.qcow2" 0x22
expect_refusal 5 'not backed by the base' -- --connect "$VE_URI" commit rootvm "$UUID" vda --base "$R/other-base.qcow2"
expect_refusal 2 'invalid domain UUID' -- --connect "$VE_URI" commit rootvm "$UUID;rm" vda
expect_refusal 2 'invalid disk target' -- --connect "$VE_URI" commit rootvm "$UUID" ../vda
expect_refusal 2 'unknown operation' -- --connect "$VE_URI" delete rootvm "$UUID" vda

# Rule 3: another defined domain uses the same base.
mkroot_overlay "$R/ov2.qcow2" "$R/base.qcow2" 0x33
define_vm sharevm "$R/ov2.qcow2" "$R/base.qcow2"
expect_refusal 5 'also used by sharevm' -- --connect "$VE_URI" commit rootvm "$UUID" vda
ve_virsh undefine sharevm >/dev/null
rm -f "$R/ov2.qcow2"

# Issue 15 item 4: a chain deeper than one (base <- template <- overlay).
# A base two levels down is refused unless commit_into = "deepest"; a
# deepest commit is refused by the helper (not supported as root yet).
mkroot_base "$R/cbase.qcow2" 0x11
mkroot_overlay "$R/ctmpl.qcow2" "$R/cbase.qcow2" 0x22
mkroot_overlay "$R/cov.qcow2" "$R/ctmpl.qcow2" 0x5a
define_vm chainvm "$R/cov.qcow2" "$R/ctmpl.qcow2"
CUUID=$(ve_virsh domuuid chainvm | tr -d '[:space:]')
expect_refusal 5 '2 levels down.*commit_into' -- --connect "$VE_URI" commit chainvm "$CUUID" vda --base "$R/cbase.qcow2"
expect_refusal 5 'commit_into = "deepest".*not supported' -- --connect "$VE_URI" commit chainvm "$CUUID" vda --commit-into deepest
expect_refusal 5 'not supported' -- --connect "$VE_URI" commit chainvm "$CUUID" vda --base "$R/cbase.qcow2" --commit-into deepest
expect_refusal 2 'takes backing or deepest' -- --connect "$VE_URI" commit chainvm "$CUUID" vda --commit-into sideways
ve_virsh undefine chainvm >/dev/null
rm -f "$R/cbase.qcow2" "$R/ctmpl.qcow2" "$R/cov.qcow2"

# Issue 12, defect 10: an overlay a fresh one cannot replace (here with an
# internal snapshot) is refused for commit and discard, before anything runs.
qemu-img snapshot -c keep-me "$R/ov.qcow2" || fail "snapshot -c"
expect_refusal 5 'internal snapshot' -- --connect "$VE_URI" commit rootvm "$UUID" vda
expect_refusal 5 'internal snapshot' -- --connect "$VE_URI" discard rootvm "$UUID" vda
qemu-img snapshot -d keep-me "$R/ov.qcow2" || fail "snapshot -d"

# Rule 2: qemu's image lock held by another process (qemu-io waiting for
# commands on a FIFO keeps the overlay open read-write).
mkfifo "$VE_DIR/fifo"
qemu-io -f qcow2 "$R/ov.qcow2" <"$VE_DIR/fifo" >/dev/null 2>&1 &
lockpid=$!
exec 9>"$VE_DIR/fifo"
ve_wait_for 10 grep -q OFDLCK /proc/locks || fail "qemu-io did not lock the overlay"
expect_refusal 4 'in use' -- --connect "$VE_URI" commit rootvm "$UUID" vda
exec 9>&-
wait $lockpid || true

# Who may run it.
rc=0
errmsg=$(runuser -u "$VE_USER" -- "$H" commit rootvm "$UUID" vda 2>&1 >/dev/null) || rc=$?
[ $rc = 7 ] || fail "non-root caller: exit $rc, want 7 ($errmsg)"
grep -q 'must run as root' <<<"$errmsg" || fail "non-root caller: message '$errmsg'"
echo "ok: refused (7) for a non-root caller"
before=$(sums)
rc=0
errmsg=$(PKEXEC_UID=1000 "$H" --connect "$VE_URI" commit rootvm "$UUID" vda 2>&1 >/dev/null) || rc=$?
[ $rc = 7 ] && grep -q 'not allowed through pkexec' <<<"$errmsg" ||
	fail "--connect under pkexec: exit $rc ($errmsg)"
[ "$before" = "$(sums)" ] || fail "--connect under pkexec changed images"
echo "ok: refused (7): --connect under pkexec"
checks=$((checks + 2))

# ---- issue 13: what a hostile user could prepare ----
# The overlay's header points at a root file that is not the recorded base
# (a copy of /etc/shadow, as raw): root's qemu-img must never write it.
install -m 0640 /etc/shadow "$R/shadow-copy"
cp -p "$R/ov.qcow2" "$R/ov.saved"
qemu-img rebase -q -u -F raw -b "$R/shadow-copy" "$R/ov.qcow2"
shadow_sum=$(sha256sum <"$R/shadow-copy")
expect_refusal 5 'not backed by the base|neither the backing store recorded' -- --connect "$VE_URI" commit rootvm "$UUID" vda
[ "$(sha256sum <"$R/shadow-copy")" = "$shadow_sum" ] || fail "the shadow copy changed"
mv "$R/ov.saved" "$R/ov.qcow2"
# Directories someone else may write.
# (Group root may write: only root is in it.)
for m in 771:root:"$VE_USER" 717:root:root 711:"$VE_USER":root; do
	IFS=: read -r mode o g <<<"$m"
	chmod "$mode" "$R"
	chown "$o:$g" "$R"
	expect_refusal 5 "$R is owned by $o:$g with mode $mode" -- --connect "$VE_URI" discard rootvm "$UUID" vda
done
chown root:root "$R"
chmod 0711 "$R"
# A file another group may write.
chgrp "$VE_USER" "$R/ov.qcow2"
chmod 0660 "$R/ov.qcow2"
expect_refusal 5 "ov.qcow2 is owned by root:$VE_USER with mode 660" -- --connect "$VE_URI" discard rootvm "$UUID" vda
chgrp root "$R/ov.qcow2"
chmod 0600 "$R/ov.qcow2"

# ---- commit on root-owned images ----
base_mode=$(owner_mode "$R/base.qcow2")
helper --connect "$VE_URI" commit rootvm "$UUID" vda
[ "$rc" = 0 ] || fail "commit: exit $rc: $err"
reads "$R/base.qcow2" 1M 0x5a || fail "commit: the overlay's data is not in the base"
reads "$R/ov.qcow2" 1M 0x5a || fail "commit: the chain no longer reads the committed data"
[ "$(qemu-img map --output=json "$R/ov.qcow2" | grep -c '"depth": 0, .*"data": true' || true)" = 0 ] ||
	fail "commit: the rebuilt overlay is not empty"
info=$(qemu-img info --output=json "$R/ov.qcow2")
grep -q "\"backing-filename\": \"$R/base.qcow2\"" <<<"$info" || fail "commit: new overlay's backing: $info"
grep -q '"backing-filename-format": "qcow2"' <<<"$info" || fail "commit: new overlay's backing format: $info"
[ "$(owner_mode "$R/ov.qcow2")" = "0:0 600" ] || fail "commit: overlay owner/mode now $(owner_mode "$R/ov.qcow2")"
[ "$(owner_mode "$R/base.qcow2")" = "$base_mode" ] || fail "commit: base owner/mode changed"
grep -q '(100.00/100%)' <<<"$out" || fail "commit: no progress records on stdout: $out"
ls "$R"/.ov.qcow2.* >/dev/null 2>&1 && fail "commit: a temporary file was left behind"
echo "ok: commit of root-owned images ($(tail -n 1 <<<"$out" | tr -d '\r'))"
checks=$((checks + 1))

# ---- discard, keeping the old overlay; then undo; then rebuild ----
qemu-io -f qcow2 -c "write -q -P 0x77 2M 1M" "$R/ov.qcow2" >/dev/null
base_sum=$(sha256sum <"$R/base.qcow2")
helper --connect "$VE_URI" discard rootvm "$UUID" vda --keep-discarded
[ "$rc" = 0 ] || fail "discard: exit $rc: $err"
reads "$R/ov.qcow2" 2M 0x00 || fail "discard: the new overlay still has the discarded data"
reads "$R/ov.qcow2.discarded" 2M 0x77 || fail "discard: .discarded does not hold the old data"
[ "$(sha256sum <"$R/base.qcow2")" = "$base_sum" ] || fail "discard: the base changed"
[ "$(owner_mode "$R/ov.qcow2")" = "0:0 600" ] || fail "discard: owner/mode not kept"
echo "ok: discard keeping .discarded"

helper --connect "$VE_URI" undo-discard rootvm "$UUID" vda
[ "$rc" = 0 ] || fail "undo-discard: exit $rc: $err"
reads "$R/ov.qcow2" 2M 0x77 || fail "undo-discard: the old overlay is not back"
[ ! -e "$R/ov.qcow2.discarded" ] || fail "undo-discard: .discarded still there"
echo "ok: undo-discard"

helper --connect "$VE_URI" rebuild rootvm "$UUID" vda
[ "$rc" = 0 ] || fail "rebuild: exit $rc: $err"
reads "$R/ov.qcow2" 2M 0x00 || fail "rebuild: the overlay is not fresh"
reads "$R/ov.qcow2" 1M 0x5a || fail "rebuild: the base's data does not show through"
[ "$(sha256sum <"$R/base.qcow2")" = "$base_sum" ] || fail "rebuild: the base changed"
echo "ok: rebuild"
checks=$((checks + 3))

# ---- the rebuild could not run: refused before the commit ----
# (issue 12, defect 5: a commit empties the overlay; a rebuild refused after
# it would leave the VM failed.) The overlay's directory is immutable, so
# the fresh overlay's temporary file could not be created.
mkdir -m 0755 "$R/c8"
mkroot_base "$R/c8-base.qcow2" 0x11
mkroot_overlay "$R/c8/ov.qcow2" "$R/c8-base.qcow2" 0x5b
define_vm c8vm "$R/c8/ov.qcow2" "$R/c8-base.qcow2"
C8UUID=$(ve_virsh domuuid c8vm | tr -d '[:space:]')
chattr +i "$R/c8" || fail "chattr +i (needs root on ext4/xfs/btrfs)"
c8sum=$(sha256sum <"$R/c8-base.qcow2")
helper --connect "$VE_URI" commit c8vm "$C8UUID" vda
chattr -i "$R/c8"
[ "$rc" = 5 ] || fail "commit whose rebuild cannot run: exit $rc, want 5; stderr: $err"
grep -q 'cannot create a file next to' <<<"$err" || fail "commit whose rebuild cannot run: $err"
[ "$(sha256sum <"$R/c8-base.qcow2")" = "$c8sum" ] || fail "commit whose rebuild cannot run: the base changed"
reads "$R/c8/ov.qcow2" 1M 0x5b || fail "commit whose rebuild cannot run: the overlay lost the session"
echo "ok: refused (5) before the commit: $(tail -n 1 <<<"$err")"
checks=$((checks + 1))

# ---- commit done, rebuild fails: exit 8, the base holds the session ----
# (issue 12, defect 9: the applet must not say "nothing was changed".) A
# qemu-img whose `create` fails: nothing checked before the commit can
# foresee that.
mkdir -p "$VE_DIR/failbin"
cat >"$VE_DIR/failbin/qemu-img" <<EOF
#!/bin/sh
if [ "\$1" = create ]; then echo "qemu-img: create failed (test)" >&2; exit 1; fi
exec $(command -v qemu-img) "\$@"
EOF
chmod 755 "$VE_DIR/failbin/qemu-img"
PATH="$VE_DIR/failbin:$PATH" helper --connect "$VE_URI" commit c8vm "$C8UUID" vda
[ "$rc" = 8 ] || fail "commit with a failing rebuild: exit $rc, want 8; stderr: $err"
reads "$R/c8-base.qcow2" 1M 0x5b || fail "commit with a failing rebuild: the base lacks the session"
reads "$R/c8/ov.qcow2" 1M 0x5b || fail "commit with a failing rebuild: the chain lost the session"
ls "$R"/c8/.ov.qcow2.* >/dev/null 2>&1 && fail "commit with a failing rebuild: a temporary file was left"
echo "ok: commit done, rebuild failed: exit 8 ($(tail -n 1 <<<"$err"))"
helper --connect "$VE_URI" rebuild c8vm "$C8UUID" vda
[ "$rc" = 0 ] || fail "rebuild after exit 8: exit $rc: $err"
reads "$R/c8/ov.qcow2" 1M 0x5b || fail "rebuild after exit 8: the base's data does not show through"
[ "$(qemu-img map --output=json "$R/c8/ov.qcow2" | grep -c '"depth": 0, .*"data": true' || true)" = 0 ] ||
	fail "rebuild after exit 8: the overlay is not fresh"
echo "ok: rebuild after exit 8"
ve_virsh undefine c8vm >/dev/null
checks=$((checks + 2))

# ---- symbolic links ----
mkroot_overlay "$R/real-ov.qcow2" "$R/base.qcow2" 0x44
ln -s "$R/real-ov.qcow2" "$R/link-ov.qcow2"
define_vm linkvm "$R/link-ov.qcow2" "$R/base.qcow2"
LUUID=$(ve_virsh domuuid linkvm | tr -d '[:space:]')
expect_refusal 5 'symbolic link' -- --connect "$VE_URI" discard linkvm "$LUUID" vda
ve_virsh undefine linkvm >/dev/null

ln -s "$R/other-base.qcow2" "$R/link-base.qcow2"
mkroot_overlay "$R/lb-ov.qcow2" "$R/link-base.qcow2" 0x45
define_vm linkbasevm "$R/lb-ov.qcow2" "$R/link-base.qcow2"
LBUUID=$(ve_virsh domuuid linkbasevm | tr -d '[:space:]')
expect_refusal 5 'symbolic link' -- --connect "$VE_URI" commit linkbasevm "$LBUUID" vda
ve_virsh undefine linkbasevm >/dev/null

# ---- a running domain (its own images, owned by the daemon's user) ----
ve_make_base "$VE_IMAGES/run-base.qcow2"
ve_make_overlay "$VE_IMAGES/run-ov.qcow2" "$VE_IMAGES/run-base.qcow2" 0x66
ve_define_vm runvm "$VE_IMAGES/run-ov.qcow2"
RUUID=$(ve_virsh domuuid runvm | tr -d '[:space:]')
ve_start runvm
expect_refusal 5 'not shut off' -- --connect "$VE_URI" commit runvm "$RUUID" vda
expect_refusal 5 'not shut off' -- --connect "$VE_URI" discard runvm "$RUUID" vda
ve_destroy runvm

echo "helper: $checks checks passed"
