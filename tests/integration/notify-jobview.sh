#!/bin/bash
# The commit in Plasma's job tracker (issue 6 item 2, issue 14 items 3 and
# 4), end to end: the vmoverlay binary on a private bus (notify-env.sh) with
# the dbusmock notification server and a second dbusmock instance owning
# org.kde.JobViewServer and org.kde.kuiserver (jobview-server.py: the V2
# server KF6 talks to and the old one, one recorded view object per job,
# built from the interface XML in dbus-xml/).
#
# The VM is a shut-off domain of a per-process test:///ABS/node.xml driver
# whose overlay holds 64 MiB of data; the commit is asked for through the
# control interface. qemu_img is the real one behind a wrapper that adds
# qemu-img's own rate limit (-r, read from $W/rate) to commits. qemu-img
# commits through a mirror job that copies 16 MiB (its buffer) at once and
# then sleeps off the rate limit, so at 16 MiB/s the commit moves on by 25 %
# each second and lasts ~4 s (with less data than the buffer it would jump
# to 100 % at once and only then wait).
#   1. V2 server: Commit -> JobViewServerV2.requestView("vmoverlay", killable,
#      {immediate, transient, ...}); the view gets update() with its title,
#      the VM field and percentages rising to 100, then terminate(0, "", {})
#      as its last call; base holds the data. One progress display: no
#      "committing changes" notification of ours, and exactly one result
#      notification.
#   2. Commit; once part of it is merged, cancelRequested on the view's path
#      from another client is ignored (the commit goes on), then the
#      server's own (the job's cancel button, JobViewV3) really stops it:
#      state "interrupted", only Resume/Keep offered, the overlay still holds
#      every byte, the journal is there, the view is terminated with
#      ERR_USER_CANCELED (1) and the cancel message and a "commit cancelled"
#      notification arrives; then Resume (control interface) -> a new job
#      view that ends with terminate(0), the base holds the data, the overlay
#      is fresh and empty, the journal is gone.
#   3. The job server goes away mid-commit: our own progress notification
#      takes over (with the percentage in its body); a new server appears:
#      the running commit asks it for a view, which sees the rest of the
#      commit and its terminate(0).
#   4. A server without JobViewServerV2: the old requestView(ssi) and
#      JobViewV2's setters, ending with terminate(""); still no progress
#      notification of ours.
# The applet and its images belong to the unprivileged test user (NT_USER),
# as our users' do.
set -u
. "$VMO_SRC/tests/integration/notify-env.sh"
fail() {
	echo "FAIL: $*" >&2
	[ -n "${applog:-}" ] && [ -f "$applog" ] && { echo "--- applet log:"; tail -30 "$applog"; } >&2
	[ -f "${W:-}/jobview.log" ] && { echo "--- job view server log:"; tail -30 "$W/jobview.log"; } >&2
	exit 1
}
[ -x "${VMO_BIN:-}" ] || fail "VMO_BIN not set or not executable"
for p in qemu-img qemu-io; do
	command -v "$p" >/dev/null 2>&1 || fail "required program '$p' is missing"
done
NT_NO_TRAP=1
W=$(mktemp -d)
app_pid='' jv_pid=''
cleanup() {
	[ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
	[ -n "$jv_pid" ] && kill "$jv_pid" 2>/dev/null && wait "$jv_pid" 2>/dev/null
	nt_cleanup
	rm -rf "$W"
}
trap cleanup EXIT
nt_bus_start || exit 1
nt_mock_start "" || exit 1

JV=/JobViewServer
# jv_start V2 (true|false): a job view server, with or without JobViewServerV2.
jv_start() {
	"$NT_PY" -m dbusmock --template "$VMO_SRC/tests/integration/jobview-server.py" \
		-l "$W/jobview.log" -p "{\"xml_dir\": \"$VMO_SRC/dbus-xml\", \"v2\": $1}" >/dev/null 2>&1 &
	jv_pid=$!
	for _ in $(seq 200); do
		nt_has_owner org.kde.JobViewServer && nt_has_owner org.kde.kuiserver && return 0
		sleep 0.05
	done
	fail "the job view server did not start"
}
jv_stop() {
	kill "$jv_pid" && wait "$jv_pid" 2>/dev/null
	jv_pid=
	for _ in $(seq 200); do
		nt_has_owner org.kde.JobViewServer || return 0
		sleep 0.05
	done
	fail "the job view server did not go"
}
jv_start true

# ---- images, domain, configuration ----
MIB=64
RATE=$((16 * 1024 * 1024)) # bytes/s: 16 MiB a second, ~4 s in all
# The cancel case needs the commit to last while this script (slow on a
# loaded machine) sees two progress steps and then cancels: 4 MiB/s, 25 %
# every 4 s, ~16 s in all. The wrapper reads the rate from $W/rate.
SLOW_RATE=$((4 * 1024 * 1024))
img=$W/img
mkdir -p "$img" "$W/bin" "$W/config/vmoverlay" "$W/state"
base=$img/jv-base.qcow2 ov=$img/jv.qcow2
# Commit journals are keyed by the domain (<uuid>@<hash of the URI>.commit).
journals() { ls "$W/state/vmoverlay" 2>/dev/null | grep '\.commit$'; }
make_images() { # OVERLAY_PATTERN: base of 0x11, overlay with MIB MiB of the pattern
	rm -f "$base" "$ov"
	"${NT_AS[@]}" qemu-img create -q -f qcow2 "$base" "${MIB}M" &&
		"${NT_AS[@]}" qemu-io -f qcow2 -c "write -q -P 0x11 0 ${MIB}M" "$base" >/dev/null &&
		"${NT_AS[@]}" qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$ov" &&
		"${NT_AS[@]}" qemu-io -f qcow2 -c "write -q -P $1 0 ${MIB}M" "$ov" >/dev/null ||
		fail "cannot make the images"
}
holds() { # IMAGE PATTERN: every byte of the first MIB MiB reads as PATTERN
	local out
	out=$(qemu-io -r -f qcow2 -c "read -P $2 0 ${MIB}M" "$1" 2>&1) &&
		! grep -q "verification failed" <<<"$out" && grep -q "^read $((MIB * 1048576))/" <<<"$out"
}
cat >"$W/node.xml" <<XML
<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>jv</name><memory unit='MiB'>64</memory>
    <os><type arch='x86_64' machine='pc'>hvm</type></os><test:runstate>5</test:runstate>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$ov'/><target dev='vda' bus='virtio'/></disk></devices>
  </domain>
</node>
XML
# The real qemu-img; commits get qemu-img's own rate limit so that they last
# long enough to show progress and to be cancelled.
real_qemu_img=$(command -v qemu-img)
echo "$RATE" >"$W/rate"
cat >"$W/bin/qemu-img" <<WRAP
#!/bin/bash
if [ "\$1" = commit ]; then shift; exec "$real_qemu_img" commit -r \$(cat "$W/rate") "\$@"; fi
exec "$real_qemu_img" "\$@"
WRAP
chmod 755 "$W/bin/qemu-img"
cat >"$W/config/vmoverlay/vmoverlay.conf" <<CONF
connect = "test://$W/node.xml";
reconcile_interval = 0;
qemu_img = "$W/bin/qemu-img";
vms = ( { name = "jv"; policy = "ask"; } );
CONF
nt_user_home "$W" || fail "cannot give $W to $NT_USER"

# ---- helpers ----
now_ms() { echo $(($(date +%s%N) / 1000000)); }
ctl() { nt_call io.github.vmoverlay /io/github/vmoverlay "io.github.vmoverlay.Control1.$1" "${@:2}"; }
# "STATE ACTION,ACTION" of jv as the control interface reports it.
status_of() {
	"$NT_PY" - <<'PYEOF' 2>/dev/null
import dbus
ctl = dbus.SessionBus().get_object('io.github.vmoverlay', '/io/github/vmoverlay')
for name, run, flow, policy, size, pct, actions, lines in ctl.Status(
        dbus_interface='io.github.vmoverlay.Control1'):
    if name == 'jv':
        print(flow, ','.join(sorted(actions)))
PYEOF
}
wait_state() { # STATE [TIMEOUT_S]
	local end=$(($(now_ms) + ${2:-20} * 1000)) s
	until s=$(status_of) && [ "${s%% *}" = "$1" ]; do
		[ "$(now_ms)" -lt "$end" ] || fail "jv not '$1' (is '$s')"
		sleep 0.05
	done
}
# Every call an object of the job view server received, one per line:
# METHOD<TAB>ARG<TAB>ARG..., a dictionary as its sorted KEY=VALUE items
# joined by ",".
calls() { # PATH
	"$NT_PY" - "$1" <<'PYEOF'
import sys, dbus
obj = dbus.SessionBus().get_object('org.kde.JobViewServer', sys.argv[1])
try:
    rows = obj.GetCalls(dbus_interface='org.freedesktop.DBus.Mock')
except dbus.exceptions.DBusException:
    rows = []  # no such object (yet)
def text(a):
    if isinstance(a, dict):
        return ','.join(f'{k}={text(v)}' for k, v in sorted(a.items()))
    if isinstance(a, dbus.Boolean):
        return 'true' if a else 'false'
    return str(a)
for _, method, args in rows:
    print('\t'.join([str(method)] + [text(a) for a in args]))
PYEOF
}
views() { calls "$JV" | grep -c '^requestView' ; }
wait_views() { # N [TIMEOUT_S]
	local end=$(($(now_ms) + ${2:-10} * 1000))
	until [ "$(views)" -ge "$1" ]; do
		[ "$(now_ms)" -lt "$end" ] || fail "fewer than $1 requestView calls"
		sleep 0.05
	done
}
# The percentages a view received (setPercent or update's percent).
percents() {
	calls "$1" | awk -F'\t' '$1 == "setPercent" {print $2}
		$1 == "update" {n = split($2, kv, ","); for (i = 1; i <= n; i++) if (kv[i] ~ /^percent=/) print substr(kv[i], 9)}'
}
# The checks every job view must pass: it was asked for by "vmoverlay" with
# the killable capability (V2: immediate, transient, our name and icon;
# V1: with its icon), got its title and the VM's name, and its percentages
# rose.
check_view() { # N (its requestView, in order) v2|v1
	local path=$JV/JobView_$1 req
	req=$(calls "$JV" | grep '^requestView' | sed -n "${1}p")
	if [ "$2" = v2 ]; then
		case $req in
		"$(printf 'requestView\tvmoverlay\t1\t')"application-display-name=vmoverlay,application-icon-name=*,immediate=true,transient=true) ;;
		*) fail "requestView $1 is not V2's (vmoverlay, 1, {immediate, transient, ...}): '$req'" ;;
		esac
		calls "$path" | grep -q "$(printf '^update\t')descriptionLabel1=Virtual machine,descriptionValue1=jv,percent=[0-9]*,title=Committing jv$" ||
			fail "view $1: no update() with title and VM field: $(calls "$path" | head -3)"
		! calls "$path" | grep -q '^set' || fail "view $1: V2 setters on a V3 view"
	else
		case $req in
		"$(printf 'requestView\tvmoverlay\t')"*"$(printf '\t1')") ;;
		*) fail "requestView $1 is not the old one (vmoverlay, icon, 1): '$req'" ;;
		esac
		calls "$path" | grep -qx "$(printf 'setInfoMessage\tCommitting jv')" || fail "view $1: no title"
		calls "$path" | grep -qx "$(printf 'setDescriptionField\t0\tVirtual machine\tjv')" ||
			fail "view $1: no VM field"
	fi
	# Rising, each value once (qemu-img repeats its records; the view needs
	# each value once).
	percents "$path" | sort -n -u -c 2>/dev/null ||
		fail "view $1: percent not strictly rising: $(percents "$path" | tr '\n' ' ')"
}
terminated() { calls "$1" | grep -c '^terminate'; }
wait_terminated() { # PATH [TIMEOUT_S]
	local end=$(($(now_ms) + ${2:-10} * 1000))
	until [ "$(terminated "$1")" -ge 1 ]; do
		[ "$(now_ms)" -lt "$end" ] || fail "$1 not terminated"
		sleep 0.05
	done
}
# Our notifications whose summary is exactly TEXT (dbusmock's recorded Notify calls).
n_notes() { nt_calls Notify | grep -o "'$1'" | wc -l; }
TERM_OK="$(printf 'terminate\t0\t\t')"

applog=
start_applet() { # LOG
	applog=$1
	"${NT_APP[@]}" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" LC_ALL=C.UTF-8 LANGUAGE='' \
		"$VMO_BIN" --verbose >"$applog" 2>&1 &
	app_pid=$!
	wait_state clean 20
	[ "$(stat -c %U "/proc/$app_pid")" = "$NT_USER" ] || fail "the applet does not run as $NT_USER"
}
stop_applet() {
	ctl Quit >/dev/null || fail "control Quit"
	wait "$app_pid"
	local st=$?
	app_pid=
	[ "$st" = 0 ] || fail "the applet exited with $st"
}

# ---- 1. a commit runs to its end (V2) ----
echo "$RATE" >"$W/rate"
make_images 0x5a
start_applet "$W/app1.log"
prog0=$(($(n_notes "jv: committing changes") + $(n_notes "jv: preparing a fresh overlay")))
res0=$(n_notes "jv: changes committed")
t0=$(now_ms)
ctl Commit jv >/dev/null || fail "control Commit"
wait_views 1
wait_state clean 30
t1=$(now_ms)
v=$JV/JobView_1
wait_terminated "$v"
for _ in $(seq 100); do
	[ "$(n_notes "jv: changes committed")" -gt "$res0" ] && break
	sleep 0.05
done
prog=$(($(n_notes "jv: committing changes") + $(n_notes "jv: preparing a fresh overlay") - prog0))
res=$(($(n_notes "jv: changes committed") - res0))
echo "one commit with the job view: $prog progress notifications of ours, $res result notifications"
check_view 1 v2
[ "$(views)" = 1 ] || fail "one commit, $(views) job views"
p=$(percents "$v" | tr '\n' ' ')
[ "$(percents "$v" | wc -l)" -ge 3 ] || fail "view 1: too few progress steps: $p"
[ "$(percents "$v" | tail -1)" = 100 ] || fail "view 1: percent does not end at 100: $p"
[ "$(calls "$v" | tail -1)" = "$TERM_OK" ] ||
	fail "view 1: last call is not terminate(0, \"\", {}): $(calls "$v" | tail -1)"
[ "$(terminated "$v")" = 1 ] || fail "view 1: terminated $(terminated "$v") times"
[ "$prog" = 0 ] || fail "the job view shows the progress, yet $prog progress notifications of ours came"
[ "$res" = 1 ] || fail "$res result notifications for one commit"
holds "$base" 0x5a || fail "the base lacks the committed data"
[ -z "$(journals)" ] || fail "journal left after a finished commit"
stop_applet
echo "ok finished commit: one V2 job view, percent $p-> terminate(0), no progress notification, one result ($((t1 - t0)) ms)"

# ---- 2. the job's cancel button, then Resume ----
echo "$SLOW_RATE" >"$W/rate"
make_images 0xa5
start_applet "$W/app2.log"
notes_before=$(n_notes "jv: commit cancelled")
ctl Commit jv >/dev/null || fail "control Commit"
wait_views 2
v=$JV/JobView_2
wait_percent_above() { # PATH PERCENT: a percentage above PERCENT arrived
	local end=$(($(now_ms) + 60000))
	until [ "$(percents "$1" | tail -1)" -gt "$2" ] 2>/dev/null; do
		[ "$(now_ms)" -lt "$end" ] ||
			fail "$1: no progress past $2 % ($(percents "$1" | tr '\n' ' ')); jv is '$(status_of)'"
		[ "$(status_of)" = "committing cancel" ] ||
			fail "$1: the commit stopped at $2 %: jv is '$(status_of)'"
		sleep 0.02
	done
}
# Once part of the data is merged (the base is then half-written), another
# client sends the same signal on the same path: only the job view's server
# may press its cancel button, so the commit must go on (checked after the
# next progress step, a second later).
wait_percent_above "$v" 0
[ "$(status_of)" = "committing cancel" ] || fail "before cancel: '$(status_of)'"
gdbus emit --session --object-path "$v" --signal org.kde.JobViewV3.cancelRequested ||
	fail "cannot emit cancelRequested from another client"
wait_percent_above "$v" "$(percents "$v" | tail -1)"
[ "$(status_of)" = "committing cancel" ] || fail "another client's cancelRequested acted: '$(status_of)'"
! grep -q "cancel requested from the job view" "$applog" || fail "another client's cancelRequested was taken"
# Now the server's: the cancel button.
nt_call org.kde.JobViewServer "$v" org.freedesktop.DBus.Mock.EmitSignal \
	org.kde.JobViewV3 cancelRequested '' '[]' >/dev/null || fail "cannot emit cancelRequested"
wait_state interrupted 10
[ "$(status_of)" = "interrupted keep,resume" ] || fail "after cancel: '$(status_of)' (want only Resume and Keep)"
wait_terminated "$v"
check_view 2 v2
p=$(percents "$v" | tr '\n' ' ')
last=$(percents "$v" | tail -1)
[ "$last" -lt 100 ] || fail "view 2: the cancelled commit reached 100 %: $p"
term=$(calls "$v" | tail -1)
case $term in
"$(printf 'terminate\t1\t')"*"Nothing was lost"*) ;;
*) fail "view 2: last call is not terminate(ERR_USER_CANCELED, the cancel message): '$term'" ;;
esac
grep -q "cancel requested from the job view" "$applog" || fail "the applet did not log the job view's cancel"
for _ in $(seq 100); do
	[ "$(n_notes "jv: commit cancelled")" -gt "$notes_before" ] && break
	sleep 0.05
done
[ "$(n_notes "jv: commit cancelled")" -gt "$notes_before" ] || fail "no 'commit cancelled' notification"
holds "$ov" 0xa5 || fail "the overlay lost data after the cancel"
holds "$base" 0x11 && fail "the base is untouched: the cancel came before any data moved"
[ -n "$(journals)" ] || fail "no commit journal after the cancel"
cancelled_status=$("${NT_APP[@]}" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" LC_ALL=C.UTF-8 LANGUAGE='' "$VMO_BIN" status 2>&1)
echo "$cancelled_status" | grep -q "jv.*commit interrupted" ||
	fail "vmoverlay status does not show the interruption: $cancelled_status"
echo "$cancelled_status" | sed 's/^/  vmoverlay status: /'

echo "ok cancel from the job view at ${last} % (percent $p): interrupted, overlay intact, journal kept"

echo "$RATE" >"$W/rate"
ctl Resume jv >/dev/null || fail "control Resume"
wait_views 3
wait_state clean 30
v=$JV/JobView_3
wait_terminated "$v"
check_view 3 v2
p=$(percents "$v" | tr '\n' ' ')
[ "$(percents "$v" | tail -1)" = 100 ] || fail "view 3: percent does not end at 100: $p"
[ "$(calls "$v" | tail -1)" = "$TERM_OK" ] ||
	fail "view 3: last call is not terminate(0): $(calls "$v" | tail -1)"
holds "$base" 0xa5 || fail "the base lacks the data after Resume"
qemu-io -r -f qcow2 -c "alloc 0 ${MIB}M" "$ov" | grep -q "^0/" || fail "the overlay is not fresh after Resume"
[ -z "$(journals)" ] || fail "journal left after the resumed commit"
[ "$(views)" = 3 ] || fail "$(views) job views for three commits"
stop_applet
echo "ok resume: a new job view, percent $p-> terminate(0), base holds the data, fresh overlay"

# ---- 3. the job server's owner changes mid-commit ----
echo $((8 * 1024 * 1024)) >"$W/rate" # ~8 s: time to stop and restart the server
make_images 0x3c
start_applet "$W/app3.log"
prog0=$(n_notes "jv: committing changes")
ctl Commit jv >/dev/null || fail "control Commit"
wait_views 4
wait_percent_above "$JV/JobView_4" 0
jv_stop
# Nobody shows the progress now: our notification does, percentage in its body.
for _ in $(seq 200); do
	[ "$(n_notes "jv: committing changes")" -gt "$prog0" ] && break
	sleep 0.05
done
[ "$(n_notes "jv: committing changes")" -gt "$prog0" ] ||
	fail "no progress notification of ours while no job view server runs"
nt_calls Notify | grep -q "'jv: committing changes'>, <'[0-9]* % done'" ||
	fail "the progress notification lacks the percentage in its body"
[ "$(status_of)" = "committing cancel" ] || fail "the commit did not outlive the server: '$(status_of)'"
jv_start true
# A new owner: the running commit asks it for a view (its first: JobView_1).
wait_views 1
v=$JV/JobView_1
wait_state clean 30
wait_terminated "$v"
check_view 1 v2
p=$(percents "$v" | tr '\n' ' ')
[ "$(percents "$v" | tail -1)" = 100 ] || fail "the new server's view does not end at 100: $p"
[ "$(calls "$v" | tail -1)" = "$TERM_OK" ] || fail "the new server's view: $(calls "$v" | tail -1)"
holds "$base" 0x3c || fail "the base lacks the data after the server changed"
stop_applet
echo "ok server restarted mid-commit: own progress notification meanwhile, a new view on the new owner, percent $p-> terminate(0)"

# ---- 4. a server without JobViewServerV2: the old interface ----
jv_stop
jv_start false
echo "$RATE" >"$W/rate"
make_images 0x6b
start_applet "$W/app4.log"
prog0=$(n_notes "jv: committing changes")
ctl Commit jv >/dev/null || fail "control Commit"
wait_views 1
wait_state clean 30
v=$JV/JobView_1
wait_terminated "$v"
check_view 1 v1
[ "$(views)" = 1 ] || fail "the V1 fallback asked $(views) times"
[ "$(calls "$v" | tail -1)" = "$(printf 'terminate\t')" ] ||
	fail "V1 view: last call is not terminate(\"\"): $(calls "$v" | tail -1)"
! calls "$v" | grep -q '^update' || fail "V1 view got V3's update()"
[ "$(n_notes "jv: committing changes")" = "$prog0" ] || fail "progress notifications beside the V1 job view"
holds "$base" 0x6b || fail "the base lacks the data (V1)"
stop_applet
echo "ok server without V2: requestView(ssi), setPercent $(percents "$v" | tr '\n' ' ')-> terminate(\"\")"
