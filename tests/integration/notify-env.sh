# shellcheck shell=bash
# A private session bus with a notification server stand-in, for the
# notification end-to-end tests. Source it; it starts nothing by itself.
#
# The server is python3-dbusmock's notification_daemon template: a real
# org.freedesktop.Notifications service that records every call (read back
# with org.freedesktop.DBus.Mock.GetMethodCalls) and emits ActionInvoked
# when told to (Mock.EmitSignal). No X server needed, and the recorded
# hints are exactly what arrived on the bus.
#
#   nt_bus_start             private dbus-daemon; exports DBUS_SESSION_BUS_ADDRESS.
#                            The bus is NT_USER's, as a desktop session's bus
#                            is its user's: NT_USER = VE_USER when libvirt-env.sh
#                            set it up, else the unprivileged test user
#                            (integration/test-user). Run the applet and its
#                            CLI as NT_USER: "${NT_AS[@]}" CMD (execs: $! of
#                            `"${NT_AS[@]}" CMD &` is CMD's pid). The test
#                            script itself, root in CI, may connect too
#                            (tests/private-bus.conf admits root).
#   nt_user_home DIR         DIR (the test's work directory) becomes NT_USER's,
#                            with home/ and runtime/ in it; sets NT_APP, the
#                            prefix that runs a command as NT_USER with HOME and
#                            XDG_RUNTIME_DIR there: "${NT_APP[@]}" VAR=X CMD
#                            (an env(1) command line; $! is CMD's pid)
#   nt_mock_start [CAPS]     the notification server (default caps with actions)
#   nt_mock_stop
#   nt_calls METHOD          recorded calls (GVariant text)
#   nt_count METHOD          how many
#   nt_wait_count METHOD N [TIMEOUT_S]
#   nt_emit_action ID ACTION ActionInvoked(ID, ACTION) from the server
#   nt_call DEST PATH IFACE.METHOD ARGS...   gdbus call on the private bus
#   nt_cleanup               stop everything (set as EXIT trap by nt_bus_start)

NT_PY=/usr/bin/python3
NT_AS=() NT_APP=()
NT_CAPS_DEFAULT="actions body body-markup persistence x-kde-urls"

nt__die() { echo "notify-env: $*" >&2; return 1; }

nt_cleanup() {
	nt_mock_stop
	[ -n "${NT_BUS_PID:-}" ] && kill "$NT_BUS_PID" 2>/dev/null
	NT_BUS_PID=
}

nt_bus_start() {
	local p out
	for p in dbus-daemon gdbus "$NT_PY"; do
		command -v "$p" >/dev/null 2>&1 || { nt__die "required program '$p' is missing"; return 1; }
	done
	"$NT_PY" -c 'import dbusmock' 2>/dev/null || { nt__die "python3-dbusmock is missing"; return 1; }
	NT_USER=${NT_USER:-${VE_USER:-}}
	[ -n "$NT_USER" ] || NT_USER=$("$VMO_SRC/tests/integration/test-user" name) || return 1
	NT_AS=("$VMO_SRC/tests/integration/test-user" run "$NT_USER")
	export NT_USER
	out=$("${NT_AS[@]}" dbus-daemon --config-file="${VMO_SRC:?}/tests/private-bus.conf" --fork --print-address=1 --print-pid=1) || return 1
	DBUS_SESSION_BUS_ADDRESS=$(printf '%s\n' "$out" | sed -n 1p)
	NT_BUS_PID=$(printf '%s\n' "$out" | sed -n 2p)
	export DBUS_SESSION_BUS_ADDRESS NT_BUS_PID
	[ -n "${NT_NO_TRAP:-}" ] || trap nt_cleanup EXIT
}

nt_user_home() {
	local d=$1
	[ -n "${NT_USER:-}" ] || { nt__die "nt_user_home before nt_bus_start"; return 1; }
	mkdir -p "$d/home" "$d/runtime" && chmod 700 "$d/runtime" || return 1
	if [ "$(id -u)" = 0 ]; then chown -R "$NT_USER:" "$d" || return 1; fi
	NT_APP=("${NT_AS[@]}" env HOME="$d/home" XDG_RUNTIME_DIR="$d/runtime")
}

nt_has_owner() {
	gdbus call --session -d org.freedesktop.DBus -o /org/freedesktop/DBus \
		-m org.freedesktop.DBus.NameHasOwner "$1" 2>/dev/null | grep -q true
}

nt_mock_start() {
	local caps=${1:-$NT_CAPS_DEFAULT} i
	nt_mock_stop
	# NT_MOCK_LOG: the server logs each call with a ms timestamp there.
	"$NT_PY" -m dbusmock --template notification_daemon ${NT_MOCK_LOG:+-l "$NT_MOCK_LOG"} \
		-p "{\"capabilities\": \"$caps\"}" >/dev/null 2>&1 &
	NT_MOCK_PID=$!
	for i in $(seq 200); do
		nt_has_owner org.freedesktop.Notifications && return 0
		sleep 0.05
	done
	nt__die "the notification server did not start"
}

nt_mock_stop() {
	if [ -n "${NT_MOCK_PID:-}" ]; then
		kill "$NT_MOCK_PID" 2>/dev/null
		wait "$NT_MOCK_PID" 2>/dev/null
	fi
	NT_MOCK_PID=
}

nt_calls() {
	gdbus call --session -d org.freedesktop.Notifications -o /org/freedesktop/Notifications \
		-m org.freedesktop.DBus.Mock.GetMethodCalls "$1"
}

nt_count() { nt_calls "$1" | grep -o '\[<' | wc -l; }

nt_wait_count() {
	local method=$1 n=$2 timeout=${3:-10} end
	end=$(($(date +%s%N) / 1000000 + timeout * 1000))
	while [ "$(nt_count "$method")" -lt "$n" ]; do
		[ "$(($(date +%s%N) / 1000000))" -lt "$end" ] || { nt__die "fewer than $n $method calls after ${timeout}s"; return 1; }
		sleep 0.02
	done
}

nt_emit_action() {
	gdbus call --session -d org.freedesktop.Notifications -o /org/freedesktop/Notifications \
		-m org.freedesktop.DBus.Mock.EmitSignal org.freedesktop.Notifications ActionInvoked us \
		"[<uint32 $1>, <'$2'>]" >/dev/null
}

# Clicks the enabled tray-menu item whose label contains TEXT, the way a
# tray host does (GetLayout, then Event "clicked") on the item's menu.
nt_menu_click() {
	local service=$1 text=$2
	"$NT_PY" - "$service" "$text" <<'PYEOF'
import sys, time, dbus
service, text = sys.argv[1], sys.argv[2]
bus = dbus.SessionBus()
menu = bus.get_object(service, '/MenuBar')
rev, layout = menu.GetLayout(0, -1, dbus.Array([], signature='s'),
                             dbus_interface='com.canonical.dbusmenu')
def walk(node):
    mid, props, children = node
    label = str(props.get('label', ''))
    if text in label.replace('_', '') and props.get('enabled', True):
        return mid
    for c in children:
        found = walk(c)
        if found is not None:
            return found
    return None
mid = walk(layout)
if mid is None:
    sys.exit('no enabled menu item with "%s"' % text)
menu.Event(dbus.Int32(mid), 'clicked', dbus.Int32(0, variant_level=1),
           dbus.UInt32(int(time.time())), dbus_interface='com.canonical.dbusmenu')
PYEOF
}

nt_call() {
	local dest=$1 path=$2 method=$3; shift 3
	gdbus call --session -d "$dest" -o "$path" -m "$method" "$@"
}
