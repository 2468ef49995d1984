#!/bin/bash
# qemu:///system as a desktop user lives it (issue 13), one scenario per run:
#   system-scenarios.sh commit|discard|denied|hostile|cancel|quit|grouprule|nopool
# World (system-env.sh): root libvirtd in system mode, guests as
# libvirt-qemu, dynamic_ownership = 1; a system bus with the real polkitd;
# real pkexec; the applet as the unprivileged user $SE_USER (group libvirt)
# on its own session bus; a tiny TCG VM whose base and overlay are libvirt
# volumes in a root-owned 0711 pool dir. After the VM stops libvirt gives the
# overlay back to root (0600) and leaves the base libvirt-qemu's (0600): the
# applet can read neither, and learns their facts from libvirt.
#
# polkit: a rule in /etc/polkit-1/rules.d names only the action and the user
# (subject.user == "$SE_USER" -> YES or NO). Left out on purpose: subject.active
# and subject.local. Without logind (no systemd here) polkitd sees the
# applet's pkexec as a bare unix-process, never in an active local session,
# so a rule requiring them, or the action's allow_active default, can never
# apply; and with no authentication agent, auth_admin_keep cannot be answered
# (pkexec exits 127), so "dismissed" (126, needs an agent) is not exercised.
set -u
SCEN=${1:?scenario: commit|discard|denied|hostile}
. "${VMO_SRC:?}/tests/integration/system-env.sh"
fail() {
	echo "FAIL [$SCEN]: $*" >&2
	echo "  domain: $(se_state "${VM:-}" 2>/dev/null)" >&2
	[ -n "${SE_APP_LOG:-}" ] && [ -f "$SE_APP_LOG" ] && tail -25 "$SE_APP_LOG" >&2
	exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(now_ms)
se_setup || fail "set-up"
T_SETUP=$(now_ms)

VM=sysvm
B=$SE_PDIR/$VM-base.qcow2
O=$SE_PDIR/$VM.qcow2
sum() { sha256sum <"$1" | cut -d' ' -f1; }
owner() { stat -c '%U:%G %a' "$1"; }
# The guest's whole disk as the chain shows it (64 MiB, raw): what must
# be in the base after a commit, byte for byte.
disk_sum() { qemu-img convert -U -O raw "$1" "$SE_DIR/disk.raw" && sum "$SE_DIR/disk.raw" && rm -f "$SE_DIR/disk.raw"; }
fresh() { # OVERLAY [BASE]: qcow2 over BASE ($B) (qcow2), no data of its own
	local info
	info=$(qemu-img info -U --output=json "$1") || return 1
	grep -q "\"backing-filename\": \"${2:-$B}\"" <<<"$info" &&
		grep -q '"backing-filename-format": "qcow2"' <<<"$info" &&
		! qemu-img map -U --output=json "$1" | grep '"depth": 0' | grep -q '"data": true'
}
actions_of() { # VM: the actions the control interface offers
	se_as_user gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Status | grep -o "('$1', [^)]*" | grep -o "\[[^]]*\]" | head -1
}
ok() { echo "ok [$SCEN]: $*"; }
# The applet's commit journal (one per domain: <uuid>@<uri hash>.commit).
has_journal() { compgen -G "$SE_DIR/home/state/vmoverlay/*.commit" >/dev/null; }

if [ "$SCEN" = nopool ]; then
	# Root's images outside every storage pool (made by root, not libvirt).
	NP=/var/lib/libvirt/vmosys-nopool
	SE_CLEANUP+=("$NP")
	mkdir -m 0711 "$NP"
	B=$NP/$VM-base.qcow2 O=$NP/$VM.qcow2
	qemu-img create -q -f qcow2 "$B" 64M && qemu-img create -q -f qcow2 -F qcow2 -b "$B" "$O" &&
		chmod 0600 "$B" "$O" || fail "images"
	se_make_vm "$VM" 0x11 0x5a || fail "images"
	se_virsh undefine "$VM" >/dev/null || fail "undefine"
	sed -i "s|$SE_PDIR/$VM.qcow2|$O|" "$SE_DIR/$VM.xml"
	se_virsh define "$SE_DIR/$VM.xml" >/dev/null || fail "define on $O"
elif [ "$SCEN" = cancel ] || [ "$SCEN" = quit ]; then
	# A commit that lasts: 512 MiB of session data.
	se_make_vm "$VM" 0x11 0x5a 1G || fail "images"
	qemu-io -f qcow2 -c "write -q -P 0x66 16M 512M" "$O" >/dev/null || fail "session data"
elif [ "$SCEN" = others ]; then
	# Other VMs on the daemon, shut off, their images root's 0600 as libvirt
	# leaves them (the applet cannot read their headers): one on its own
	# base, one cloned from this VM's base.
	se_make_vm "$VM" 0x11 0x5a || fail "images"
	se_make_vm other 0x22 0x33 || fail "images of other"
	chown root:root "$SE_PDIR/other.qcow2" && chmod 0600 "$SE_PDIR/other.qcow2" &&
		chown libvirt-qemu:libvirt-qemu "$SE_PDIR/other-base.qcow2" &&
		chmod 0600 "$SE_PDIR/other-base.qcow2" || fail "other's owners"
elif [ "$SCEN" = twodisk ]; then
	# A system and a data disk, both root's volumes (issue 15): one
	# decision, the helper run once per disk.
	se_make_vm "$VM" 0x11 0x5a 64M data || fail "images"
	DB=$SE_PDIR/$VM-data-base.qcow2 DO=$SE_PDIR/$VM-data.qcow2
else
	se_make_vm "$VM" 0x11 0x5a || fail "images"
fi
se_bus_start || fail "session bus"
se_app_start "connect = \"qemu:///system\";
reconcile_interval = 0;
keep_discarded = true;
vms = ( { name = \"$VM\"; policy = \"ask\"; } );" || fail "applet"
app_uid=$(awk '/^Uid:/ {print $2 "," $3}' "/proc/$SE_APP_PID/status")
[ "$app_uid" = "$(id -u "$SE_USER"),$(id -u "$SE_USER")" ] || fail "the applet does not run as $SE_USER (uid $app_uid)"

# A session: boot, ACPI shutdown (what libvirt does with the owners).
run_session() {
	se_start "$VM" || fail "start"
	se_wait_status "$VM" running || fail "applet did not see the start"
	[ "$(awk '/^Uid:/ {print $2}' "/proc/$(cat /run/libvirt/qemu/$VM.pid)/status")" = "$(id -u libvirt-qemu)" ] ||
		fail "qemu does not run as libvirt-qemu"
	se_shutdown "$VM" || fail "shutdown"
	se_wait_status "$VM" pending || fail "no prompt after the shutdown"
	[ "$(owner "$O")" = "root:root 600" ] || fail "overlay after stop: $(owner "$O")"
	[ "$(owner "$B")" = "libvirt-qemu:libvirt-qemu 600" ] || fail "base after stop: $(owner "$B")"
	se_as_user head -c1 "$O" >/dev/null 2>&1 && fail "the user can read the overlay: not the case under test"
	local a
	a=$(actions_of "$VM")
	case $a in *commit*discard*) ;; *) fail "pending without commit+discard: $a" ;; esac
	ok "shutdown -> prompt (pending, offers $a) although the overlay is root's 0600"
}

# The commit's progress as the control interface reports it.
progress() {
	se_as_user gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Status | grep -o "('$VM', 'shutoff', 'committing', '[^']*', [^,]*, [0-9.-]*" |
		sed 's/.*, //'
}
started() { local p; p=$(progress); [ -n "$p" ] && awk -v p="$p" 'BEGIN { exit !(p > 0) }'; }
# The helper's pid: pkexec execs it in place (the applet logs the pid it started).
helper_pid() { sed -n 's|.*runner: started /usr/bin/pkexec as pid \([0-9]*\).*|\1|p' "$SE_APP_LOG" | tail -1; }

case $SCEN in
twodisk)
	se_rule yes || fail "rule"
	run_session
	[ "$(owner "$DO")" = "root:root 600" ] || fail "data overlay after stop: $(owner "$DO")"
	st=$(se_ctl status 2>&1)
	grep -q "vdb" <<<"$st" || fail "status does not show vdb: $st"
	want=$(disk_sum "$O") want2=$(disk_sum "$DO")
	t=$(now_ms)
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_status "$VM" clean 180 || fail "commit did not end clean"
	ok "commit of both disks through pkexec + helper in $(($(now_ms) - t)) ms"
	[ "$(grep -c 'runner: started /usr/bin/pkexec' "$SE_APP_LOG")" -ge 2 ] ||
		fail "the helper did not run once per disk"
	[ "$(disk_sum "$B")" = "$want" ] || fail "vda's base does not hold the session byte for byte"
	[ "$(disk_sum "$DB")" = "$want2" ] || fail "vdb's base does not hold the session byte for byte"
	qemu-io -r -f qcow2 -c "read -q -P 0x44 2M 3M" "$DB" >/dev/null || fail "vdb's pattern not in its base"
	fresh "$O" || fail "vda not fresh"
	fresh "$DO" "$DB" || fail "vdb not fresh"
	[ "$(owner "$O")" = "root:root 600" ] && [ "$(owner "$DO")" = "root:root 600" ] ||
		fail "new overlays are $(owner "$O") / $(owner "$DO"), want root:root 600"
	! has_journal || fail "journal left"
	ok "both bases hold their sessions byte for byte; both fresh overlays root:root 0600"
	# The next session on both disks, then Discard: both fresh, bases as they were.
	run_session
	b0=$(sum "$B") d0=$(sum "$DB")
	out=$(se_ctl discard "$VM" 2>&1) || fail "vmoverlay discard: $out"
	se_wait_status "$VM" clean 120 || fail "discard did not end clean"
	[ "$(sum "$B")" = "$b0" ] && [ "$(sum "$DB")" = "$d0" ] || fail "discard changed a base"
	fresh "$O" || fail "vda not fresh after the discard"
	fresh "$DO" "$DB" || fail "vdb not fresh after the discard"
	compgen -G "$SE_DIR/home/state/vmoverlay/*.set" >/dev/null && fail "the .set journal stayed"
	ok "discard of both disks: bases byte-identical, both overlays fresh"
	se_start "$VM" || fail "the VM does not boot again"
	se_destroy "$VM"
	ok "the VM boots again from both fresh overlays"
	;;
commit)
	se_rule yes || fail "rule"
	run_session
	want=$(disk_sum "$O")
	t=$(now_ms)
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_status "$VM" clean 120 || fail "commit did not end clean"
	ok "commit through pkexec + helper in $(($(now_ms) - t)) ms"
	[ "$(disk_sum "$B")" = "$want" ] || fail "the base does not hold the session byte for byte"
	qemu-io -r -f qcow2 -c "read -q -P 0x5a 2M 1M" "$B" >/dev/null || fail "session pattern not in base"
	qemu-img check -q "$B" || fail "base check"
	fresh "$O" || fail "overlay not fresh"
	[ "$(owner "$O")" = "root:root 600" ] || fail "new overlay is $(owner "$O"), want root:root 600"
	[ "$(owner "$B")" = "libvirt-qemu:libvirt-qemu 600" ] || fail "base owner changed: $(owner "$B")"
	ls "$SE_PDIR"/.$VM.qcow2.* >/dev/null 2>&1 && fail "temporary file left"
	! has_journal || fail "journal left"
	ok "base holds the session byte for byte; fresh overlay root:root 0600"
	se_start "$VM" || fail "the VM does not boot again"
	se_wait_status "$VM" running || fail "applet did not see the second start"
	se_destroy "$VM"
	ok "the VM boots again from the fresh overlay"
	;;
discard)
	se_rule yes || fail "rule"
	run_session
	b0=$(sum "$B")
	t=$(now_ms)
	out=$(se_ctl discard "$VM" 2>&1) || fail "vmoverlay discard: $out"
	se_wait_status "$VM" clean 60 || fail "discard did not end clean"
	ok "discard through pkexec + helper in $(($(now_ms) - t)) ms"
	[ "$(sum "$B")" = "$b0" ] || fail "discard changed the base"
	fresh "$O" || fail "overlay not fresh"
	qemu-io -r -U -f qcow2 -c "read -q -P 0 2M 1M" "$O" >/dev/null || fail "session still visible"
	[ "$(owner "$O")" = "root:root 600" ] || fail "new overlay is $(owner "$O")"
	# keep_discarded = true, but not for root's images: the applet could not
	# remove a stale one later, and Undo must never bring one back.
	[ ! -e "$O.discarded" ] || fail ".discarded kept in root's directory"
	case $(actions_of "$VM") in *undo*) fail "Undo offered" ;; esac
	ok "base byte-identical; fresh overlay root:root 0600; no .discarded, no Undo"
	se_start "$VM" || fail "the VM does not boot again"
	se_destroy "$VM"
	ok "the VM boots again"
	;;
denied)
	se_rule no || fail "rule"
	run_session
	b0=$(sum "$B") o0=$(sum "$O")
	t=$(now_ms)
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_status "$VM" failed 60 || fail "not failed after the denial"
	ok "denied in $(($(now_ms) - t)) ms"
	[ "$(sum "$B")" = "$b0" ] && [ "$(sum "$O")" = "$o0" ] || fail "images changed"
	a=$(actions_of "$VM")
	case $a in *retry*) ;; *) fail "no Retry offered: $a" ;; esac
	st=$(se_ctl status 2>&1)
	grep -q 'not authorized' <<<"$st" || fail "status does not say why: $st"
	! has_journal || fail "journal left"
	ok "nothing changed (sha256 of both images), offers $a, says: $(grep -o '[^:]*not authorized[^;]*' <<<"$st" | head -1)"
	# Allowed now: the same choice goes through.
	se_rule yes || fail "rule"
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit (2): $out"
	se_wait_status "$VM" clean 120 || fail "commit after allowing did not end clean"
	qemu-io -r -f qcow2 -c "read -q -P 0x5a 2M 1M" "$B" >/dev/null || fail "session not in base"
	ok "after the rule allows it, commit goes through"
	;;
hostile)
	# What a user who could once write the overlay or its directory might
	# prepare for root's helper. Each is refused before anything is opened
	# for writing; the target file stays byte-identical.
	se_rule yes || fail "rule"
	run_session
	S=/var/lib/libvirt/vmosys-secret
	SE_CLEANUP+=("$S")
	mkdir -m 0711 "$S"
	install -m 0640 /etc/shadow "$S/shadow"
	shadow=$(sum "$S/shadow")
	# (a) the overlay's backing pointed at a root file (as raw).
	cp -p "$O" "$SE_DIR/ov.saved"
	qemu-img rebase -q -u -F raw -b "$S/shadow" "$O" || fail "rebase"
	b0=$(sum "$B") o0=$(sum "$O")
	t=$(now_ms)
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_status "$VM" failed 60 || fail "commit into a root file not refused"
	[ "$(sum "$S/shadow")" = "$shadow" ] || fail "THE ROOT FILE CHANGED"
	[ "$(sum "$B")" = "$b0" ] && [ "$(sum "$O")" = "$o0" ] || fail "images changed"
	grep -q "neither the backing store recorded in the domain's definition nor a volume" "$SE_APP_LOG" ||
		fail "not refused by the helper's base check"
	case $(actions_of "$VM") in *retry*) ;; *) fail "no Retry" ;; esac
	ok "(a) backing -> a copy of /etc/shadow: refused by the helper in $(($(now_ms) - t)) ms; it is byte-identical"
	cp -p "$SE_DIR/ov.saved" "$O"
	# (b) a directory the user can write (group libvirt, 0771): symbolic
	# links to the root file at the .discarded name and at temp-like names.
	chgrp libvirt "$SE_PDIR"
	chmod 0771 "$SE_PDIR"
	for n in "$VM.qcow2.discarded" ".$VM.qcow2.AAAAAA" ".$VM.qcow2.tmp"; do
		se_as_user ln -s "$S/shadow" "$SE_PDIR/$n" || fail "plant $n"
	done
	b0=$(sum "$B") o0=$(sum "$O")
	t=$(now_ms)
	out=$(se_ctl discard "$VM" 2>&1) || fail "vmoverlay discard: $out"
	se_wait_status "$VM" failed 60 || fail "discard in a user-writable directory not refused"
	[ "$(sum "$S/shadow")" = "$shadow" ] || fail "THE ROOT FILE CHANGED"
	[ "$(sum "$B")" = "$b0" ] && [ "$(sum "$O")" = "$o0" ] || fail "images changed"
	grep -q "$SE_PDIR is owned by root:libvirt with mode 771" "$SE_APP_LOG" ||
		fail "not refused by the helper's directory check"
	[ -L "$SE_PDIR/$VM.qcow2.discarded" ] || fail "the planted link was touched"
	ok "(b) user-writable pool dir with planted links: refused in $(($(now_ms) - t)) ms; root file and images byte-identical"
	find "$SE_PDIR" -type l -delete
	chmod 0711 "$SE_PDIR"
	chgrp root "$SE_PDIR"
	# Repaired: the same request goes through.
	out=$(se_ctl discard "$VM" 2>&1) || fail "vmoverlay discard: $out"
	se_wait_status "$VM" clean 60 || fail "discard after the repair"
	fresh "$O" || fail "overlay not fresh"
	ok "after the repair the discard goes through"
	;;
others)
	# On qemu:///system every other VM's images are root's: the shared-base
	# check reads their chains through libvirt's storage API (the daemon is
	# root) instead of refusing every commit as "could not check". A VM
	# whose chain is known and separate does not block the commit; a clone
	# of this VM's base does, by name.
	se_rule yes || fail "rule"
	run_session
	se_as_user head -c1 "$SE_PDIR/other.qcow2" >/dev/null 2>&1 && fail "the user can read other's overlay"
	want=$(disk_sum "$O")
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out (status: $(se_ctl status 2>&1))"
	se_wait_status "$VM" clean 120 || fail "commit did not end clean: $(se_ctl status 2>&1)"
	[ "$(disk_sum "$B")" = "$want" ] || fail "the base does not hold the session byte for byte"
	ok "another VM with root's 0600 images on its own base does not block the commit"
	# A clone of this VM's base, made through libvirt as virt-manager does.
	se_virsh vol-create-as "$SE_POOL" clone.qcow2 64M --format qcow2 \
		--backing-vol "$B" --backing-vol-format qcow2 >/dev/null || fail "clone volume"
	chown root:root "$SE_PDIR/clone.qcow2" && chmod 0600 "$SE_PDIR/clone.qcow2" || fail "clone owner"
	sed "s|<name>other</name>|<name>clone</name>|; s|$SE_PDIR/other.qcow2|$SE_PDIR/clone.qcow2|" \
		"$SE_DIR/other.xml" >"$SE_DIR/clone.xml" && chmod 0644 "$SE_DIR/clone.xml" || fail "clone xml"
	se_virsh define "$SE_DIR/clone.xml" >/dev/null || fail "define clone"
	se_start "$VM" || fail "start"
	se_shutdown "$VM" || fail "shutdown"
	se_wait_status "$VM" pending || fail "no prompt after the second shutdown"
	case $(actions_of "$VM") in *commit*) fail "Commit offered although clone uses the base" ;; esac
	b0=$(sum "$B")
	se_ctl commit "$VM" >/dev/null 2>&1 && fail "commit accepted although clone's chain holds the base"
	st=$(se_ctl status 2>&1)
	grep -q "clone" <<<"$st" || fail "the refusal does not name clone: $st"
	[ "$(sum "$B")" = "$b0" ] || fail "the base changed"
	ok "a clone of the base (root's 0600 overlay) blocks the commit by name: $(grep -o '[^;]*clone[^;.]*' <<<"$st" | head -1)"
	;;
nopool)
	# Facts come from libvirt's storage API only for pool volumes; outside
	# every pool the VM is misconfigured, and the message says what to do.
	se_wait_status "$VM" misconfigured 30 || fail "not misconfigured"
	st=$(se_ctl status 2>&1)
	grep -q "No libvirt storage pool holds it" <<<"$st" || fail "status does not say why: $st"
	grep -q "pool-define-as" <<<"$st" || fail "status does not say what to do: $st"
	ok "root's overlay in no pool: misconfigured, says: $(grep -o 'Cannot read the overlay[^.]*' <<<"$st" | head -1)"
	;;
quit)
	# Quit during a privileged commit: the applet cannot signal the root
	# helper, but closes its stdin; the helper stops qemu-img and exits,
	# the applet waits for that, the journal stays, the next start shows
	# *interrupted* and Resume finishes the commit.
	se_rule yes || fail "rule"
	run_session
	want=$(disk_sum "$O")
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_for 120 started || fail "no progress from the helper"
	t=$(now_ms)
	se_ctl quit >/dev/null 2>&1 || fail "vmoverlay quit"
	se_wait_for 120 se__gone "$SE_APP_PID" || fail "the applet did not exit"
	se_app_stop || fail "applet exit status $?"
	ok "quit during the helper's commit: the applet exited in $(($(now_ms) - t)) ms"
	hp=$(helper_pid)
	[ -n "$hp" ] || fail "no pid of the helper in the log"
	# Gone, or a zombie waiting for PID 1 to reap it (pitfall P5).
	helper_gone() { [ ! -e "/proc/$hp" ] || [ "$(awk '{print $3}' "/proc/$hp/stat" 2>/dev/null)" = Z ]; }
	se_wait_for 30 helper_gone || fail "the helper (pid $hp) still runs after the applet quit"
	has_journal || fail "journal gone"
	grep -q "cancel channel closed\|closing its stdin" "$SE_APP_LOG" || fail "the helper was not told"
	ok "the helper stopped too (no vmoverlay-helper left); the journal stays"
	se_app_start "connect = \"qemu:///system\";
reconcile_interval = 0;
vms = ( { name = \"$VM\"; policy = \"ask\"; } );" || fail "applet restart"
	se_wait_status "$VM" interrupted 30 || fail "not interrupted after the restart"
	[ "$(disk_sum "$O")" = "$want" ] || fail "the guest's disk changed"
	se_as_user gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Resume "$VM" >/dev/null || fail "Resume refused"
	se_wait_status "$VM" clean 300 || fail "resume did not finish"
	[ "$(disk_sum "$B")" = "$want" ] || fail "the base does not hold the session byte for byte"
	fresh "$O" || fail "overlay not fresh"
	! has_journal || fail "journal left"
	ok "restart: interrupted; Resume completes the commit (base byte-checked)"
	;;
grouprule)
	# Item 4: the shipped opt-in rule for group libvirt, as the README
	# enables it, instead of the test's own rule. Without it the default
	# (auth_admin_keep; no agent here) does not authorize the user.
	se_rule none || fail "rule"
	[ "$(se__pk_answer)" != 0 ] || fail "authorized without any rule: the default must ask for a password"
	SE_CLEANUP+=(/etc/polkit-1/rules.d/60-vmoverlay-libvirt.rules)
	install -m 0644 "$VMO_SRC/doc/60-vmoverlay-libvirt.rules" /etc/polkit-1/rules.d/ || fail "install the rule"
	se_wait_for 20 eval '[ "$(se__pk_answer)" = 0 ]' || fail "the shipped rule does not authorize group libvirt"
	ok "default: not authorized without a password; the shipped rule authorizes $SE_USER (group libvirt)"
	run_session
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_status "$VM" clean 120 || fail "commit did not end clean"
	qemu-io -r -f qcow2 -c "read -q -P 0x5a 2M 1M" "$B" >/dev/null || fail "session not in base"
	fresh "$O" || fail "overlay not fresh"
	ok "commit through the shipped rule, no password"
	rm -f /etc/polkit-1/rules.d/60-vmoverlay-libvirt.rules
	se_wait_for 20 eval '[ "$(se__pk_answer)" != 0 ]' || fail "still authorized after removing the rule"
	ok "disabled again by removing the file"
	;;
cancel)
	# pkexec runs the helper as root: the applet's kill() gets EPERM. The
	# cancel goes through the helper's stdin (a pipe the applet closes).
	se_rule yes || fail "rule"
	run_session
	want=$(disk_sum "$O")
	out=$(se_ctl commit "$VM" 2>&1) || fail "vmoverlay commit: $out"
	se_wait_status "$VM" committing 60 || fail "not committing"
	# Cancel once qemu-img reports progress (the helper is running).
	se_wait_for 120 started || fail "no progress from the helper"
	t=$(now_ms)
	se_as_user gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
		-m io.github.vmoverlay.Control1.Cancel "$VM" >/dev/null || fail "Cancel refused"
	end_state() { s=$(se_app_status "$VM"); [ "$s" = interrupted ] || [ "$s" = clean ]; }
	se_wait_for 120 end_state || fail "no outcome after the cancel: $(se_app_status "$VM")"
	state=$(se_app_status "$VM")
	ok "cancel -> $state in $(($(now_ms) - t)) ms"
	if [ "$state" = interrupted ]; then
		grep -q 'commit cancelled; the base may hold part of the changes' "$SE_APP_LOG" ||
			fail "the helper did not report the cancel"
		has_journal || fail "journal gone after an interrupted commit"
		[ "$(disk_sum "$O")" = "$want" ] || fail "the guest's disk changed after the cancel"
		a=$(actions_of "$VM")
		case $a in *resume*) ;; *) fail "no Resume after the cancel: $a" ;; esac
		ok "the helper stopped qemu-img and said so; nothing lost (the chain reads the same disk), offers $a"
		se_as_user gdbus call --session -d io.github.vmoverlay -o /io/github/vmoverlay \
			-m io.github.vmoverlay.Control1.Resume "$VM" >/dev/null || fail "Resume refused"
		se_wait_status "$VM" clean 300 || fail "resume did not finish"
	else
		grep -q 'the cancel came too late' "$SE_APP_LOG" || fail "finished, but not reported as too late"
	fi
	[ "$(disk_sum "$B")" = "$want" ] || fail "the base does not hold the session byte for byte"
	fresh "$O" || fail "overlay not fresh"
	[ "$(owner "$O")" = "root:root 600" ] || fail "new overlay is $(owner "$O")"
	ok "the commit completed (base byte-checked, fresh overlay)"
	;;
*) fail "unknown scenario" ;;
esac

se_app_stop || fail "applet exit status $?"
T_END=$(now_ms)
echo "TIME [$SCEN]: set-up $((T_SETUP - T0)) ms, scenario $((T_END - T_SETUP)) ms"
echo "PASS [$SCEN]"
