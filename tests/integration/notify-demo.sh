#!/bin/bash
# `vmoverlay --demo` end to end, unattended, on a private bus with the
# dbusmock notification server: the countdown shuts the test:///default
# domain down, the prompt arrives with its three actions, the answer comes
# through the notification (first run) or the control interface (second run),
# the commit lands in the demo's base, and nothing is left in TMPDIR.
# The applet runs as the unprivileged test user (NT_USER), owning its XDG
# dirs, TMPDIR and so the demo's images.
set -u
. "$VMO_SRC/tests/integration/notify-env.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "${VMO_BIN:-}" ] || fail "VMO_BIN not set or not executable"
nt_bus_start || exit 1
nt_mock_start || exit 1
work=$(mktemp -d)
trap 'nt_cleanup; rm -rf "$work"' EXIT
mkdir -p "$work/tmp-action" "$work/tmp-control"
nt_user_home "$work" || exit 1
export XDG_STATE_HOME=$work/state XDG_CONFIG_HOME=$work/config VMO_DEMO_COUNTDOWN=1

run_demo() { # $1: how to answer (action|control)
	local tmp=$work/tmp-$1 before pid status
	mkdir -p "$tmp"
	before=$(nt_count Notify)
	done_before=$(nt_calls Notify | grep -o "committed into test-base.qcow2; fresh overlay ready" | wc -l)
	"${NT_APP[@]}" TMPDIR="$tmp" "$VMO_BIN" --demo >"$work/log-$1" 2>&1 &
	pid=$!
	nt_wait_count Notify $((before + 1)) 20 || { cat "$work/log-$1"; fail "no prompt ($1)"; }
	[ "$(stat -c %U "/proc/$pid")" = "$NT_USER" ] || fail "the demo does not run as $NT_USER"
	nt_calls Notify | grep -q "'test shut down'" || fail "prompt summary"
	nt_calls Notify | grep -q "'commit', 'Commit', 'discard', 'Discard', 'keep', 'Keep for now'" \
		|| fail "prompt actions"
	ls "$tmp"/vmoverlay-demo-*/test.qcow2 >/dev/null || fail "demo images missing while running"
	if [ "$1" = action ]; then
		nt_emit_action $((before + 1)) commit
	else
		nt_call io.github.vmoverlay /io/github/vmoverlay io.github.vmoverlay.Control1.Commit test \
			>/dev/null || fail "control Commit"
	fi
	results() { nt_calls Notify | grep -o "committed into test-base.qcow2; fresh overlay ready" | wc -l; }
	for _ in $(seq 250); do
		[ "$(results)" -gt "$done_before" ] && break
		sleep 0.04
	done
	[ "$(results)" -gt "$done_before" ] || { cat "$work/log-$1"; fail "no result notification ($1)"; }
	# qemu-io prints "read N/N bytes" even when the pattern does not match:
	# its exit status and the absence of "verification failed" count.
	o=$(qemu-io -r -f qcow2 -c 'read -P 0x5a 0 1M' "$tmp"/vmoverlay-demo-*/test-base.qcow2 2>&1) &&
		! grep -q 'verification failed' <<<"$o" || fail "base lacks the committed pattern ($1)"
	nt_call io.github.vmoverlay /io/github/vmoverlay io.github.vmoverlay.Control1.Quit >/dev/null
	wait "$pid"; status=$?
	[ "$status" = 0 ] || { cat "$work/log-$1"; fail "exit status $status ($1)"; }
	[ -z "$(ls -A "$tmp")" ] || fail "temporary files left: $(ls -A "$tmp")"
	echo "ok demo answered by $1"
}
run_demo action
run_demo control
