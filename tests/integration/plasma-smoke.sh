#!/bin/bash
# Smoke test against the REAL KDE Plasma 5.27 system tray, headless
# (research/sni-host-harness.md; docs/design.md §7): Xvfb on a free display,
# kwin_x11, kded5 (the StatusNotifierWatcher) and plasmashell with its tray
# applet on a private session bus, then vmoverlay on libvirt's test:///default
# watching the running domain "test" through real qcow2 files.
# Checks:
#   - the item is in the watcher's RegisteredStatusNotifierItems;
#   - Plasma draws our icon: the panel changed where the item appeared, and
#     the changed region holds the active icon's two layers (#3daee9 over
#     #7f8c8d, icons/hicolor/scalable/apps/vmoverlay-active.svg);
#   - Plasma read our menu with GetLayout on /MenuBar (dbus-monitor on the
#     private bus) and our replies carry our labels; an xdotool right-click
#     on the icon makes it call AboutToShow and draw the menu (the screen
#     changed above the icon); opening the VM's submenu makes it call
#     AboutToShow and GetLayout for that submenu, whose reply carries the
#     VM's labels, and draws it;
#   - choosing "Quit" in Plasma's menu sends Event(clicked) and vmoverlay
#     exits with status 0; the item leaves the watcher and the panel;
#   - plasmashell is still alive at the end.
# Artifacts (screenshots, logs, the D-Bus trace) go to $VMO_BUILD/plasma-smoke.
# Every program used is required: a missing one fails the test.
# The session (bus, kwin, kded5, plasmashell, vmoverlay) belongs to the
# unprivileged test user (integration/test-user), as a desktop session
# belongs to its user; only Xvfb, started by the outer script, is root's.
set -u

fail() { echo "FAIL: $*" >&2; exit 1; }

if [ "${1:-}" != --inner ]; then
	# ------------------------------------------------------------ outer
	[ -x "${VMO_BIN:-}" ] || fail "VMO_BIN not set or not executable"
	[ -d "${VMO_SRC:-}" ] || fail "VMO_SRC not set"
	# The PATH may hold a stand-in `convert` and a pyenv python3: name the
	# Debian programs by their absolute paths.
	for p in Xvfb xdpyinfo tini dbus-run-session dbus-monitor dbus-send \
		dbus-update-activation-environment busctl kded5 plasmashell xdotool \
		qemu-img /usr/bin/import /usr/bin/convert; do
		command -v "$p" >/dev/null || fail "required program missing: $p (tools/debian-packages.txt installs it)"
	done
	[ -n "${PLASMA_SMOKE_NO_KWIN:-}" ] || command -v kwin_x11 >/dev/null ||
		fail "required program missing: kwin_x11 (PLASMA_SMOKE_NO_KWIN=1 runs without a window manager)"
	[ -d /usr/share/plasma/shells/org.kde.plasma.desktop ] ||
		fail "Plasma's desktop shell is missing (package plasma-desktop)"
	[ -d /usr/share/plasma/plasmoids/org.kde.plasma.systemtray ] ||
		fail "Plasma's system tray applet is missing (package plasma-workspace)"

	OUT=${VMO_BUILD:-/tmp}/plasma-smoke
	rm -rf "$OUT"
	mkdir -p "$OUT" || fail "cannot make $OUT"
	work=$(mktemp -d /tmp/vmo-plasma.XXXXXX) || fail "mktemp"
	tu=$("$VMO_SRC/tests/integration/test-user" name) || fail "no unprivileged test user"
	xvfb=
	cleanup() {
		[ -n "$xvfb" ] && kill "$xvfb" 2>/dev/null && wait "$xvfb" 2>/dev/null
		rm -rf "$work"
	}
	trap cleanup EXIT

	# A free display: Xvfb picks it and writes its number to fd 3.
	Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" \
		>"$OUT/xvfb.log" 2>&1 &
	xvfb=$!
	for _ in $(seq 100); do
		[ -s "$work/display" ] && break
		kill -0 "$xvfb" 2>/dev/null || fail "Xvfb died: $(cat "$OUT/xvfb.log")"
		sleep 0.1
	done
	[ -s "$work/display" ] || fail "Xvfb did not report a display"
	export DISPLAY=:$(head -1 "$work/display")
	xdpyinfo >/dev/null 2>&1 || fail "Xvfb on $DISPLAY does not answer"
	# Xvfb runs without -auth: any local client, the test user's too, may
	# connect.

	# A fresh private home; everything exported BEFORE the bus starts, so
	# the services D-Bus activates (kglobalaccel5, kactivitymanagerd, ...)
	# see the display too (pitfall 1 of the research).
	export HOME=$work/home
	export XDG_RUNTIME_DIR=$work/run XDG_CONFIG_HOME=$work/home/.config \
		XDG_CACHE_HOME=$work/home/.cache XDG_DATA_HOME=$work/home/.local/share \
		XDG_STATE_HOME=$work/home/.local/state
	mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$XDG_DATA_HOME" "$XDG_STATE_HOME"
	mkdir -m 700 -p "$XDG_RUNTIME_DIR"
	# Hide plasmashell's own "Software Renderer In Use" item (pitfall 2).
	printf '[softwarerenderer]\nneverShow=true\n' >"$XDG_CONFIG_HOME/plasmashellrc"
	export QT_QPA_PLATFORM=xcb QT_QUICK_BACKEND=software LIBGL_ALWAYS_SOFTWARE=1 \
		QT_XCB_GL_INTEGRATION=none
	export XDG_SESSION_TYPE=x11 XDG_CURRENT_DESKTOP=KDE KDE_FULL_SESSION=true \
		KDE_SESSION_VERSION=5 DESKTOP_SESSION=plasma
	export LANG=C.UTF-8 LC_ALL=C.UTF-8
	unset LANGUAGE DBUS_SESSION_BUS_ADDRESS
	export PLASMA_OUT=$OUT PLASMA_WORK=$work
	[ "$(id -u)" != 0 ] || chown -R "$tu:" "$work" "$OUT" || fail "cannot give $work to $tu"
	# tini -s: the services our dbus-daemon starts are orphaned when it
	# exits; a subreaper collects them instead of leaving zombies to pid 1.
	"$VMO_SRC/tests/integration/test-user" run "$tu" \
		tini -s -- dbus-run-session -- bash "$0" --inner
	rc=$?
	[ $rc = 0 ] && echo "PASS (artifacts in $OUT)" || echo "FAILED with $rc (artifacts in $OUT)"
	exit $rc
fi

# ---------------------------------------------------------------- inner
OUT=$PLASMA_OUT
work=$PLASMA_WORK
t0=$(date +%s%N)
log() { printf '[%6d ms] %s\n' $((($(date +%s%N) - t0) / 1000000)) "$*"; }
pids=()
monitor=
applet=
cleanup_inner() {
	# The processes D-Bus activated for plasmashell are children of our
	# dbus-daemon, not of this script: end each by the pid the bus reports
	# for it, before dbus-run-session closes the bus.
	local bus_pids p
	bus_pids=$(busctl --user list --no-pager --no-legend 2>/dev/null |
		awk '$2 ~ /^[0-9]+$/ {print $2}' | sort -u)
	for p in ${applet:-} "${pids[@]}" $monitor; do
		kill "$p" 2>/dev/null
	done
	for p in $bus_pids; do
		[ "$p" != $$ ] && kill "$p" 2>/dev/null
	done
	sleep 0.5
	for p in ${applet:-} "${pids[@]}" $monitor $bus_pids; do
		[ "$p" != $$ ] && kill -9 "$p" 2>/dev/null
	done
}
trap cleanup_inner EXIT

owned() { busctl --user list --no-pager --no-legend 2>/dev/null | awk '{print $1}' | grep -qE "$1"; }
owner_of() {
	dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.GetNameOwner "string:$1" 2>/dev/null | tr -d ' '
}
items() {
	busctl --user get-property org.kde.StatusNotifierWatcher /StatusNotifierWatcher \
		org.kde.StatusNotifierWatcher RegisteredStatusNotifierItems 2>/dev/null
}
waitfor() { # what timeout_s command...
	local what=$1 n=$(($2 * 10)) i
	shift 2
	for ((i = 0; i < n; i++)); do
		"$@" >/dev/null 2>&1 && { log "$what: ok"; return 0; }
		sleep 0.1
	done
	fail "$what: not within ${n}00 ms"
}
# Screenshots are compared as PPM (PNG's default compression of a photo
# wallpaper costs ~0.6 s a picture); the settled one is kept as PNG.
shot() { /usr/bin/import -window root "$work/$1.ppm" || fail "screenshot $1"; }
# Number of pixels that differ between two same-size pictures.
ndiff() {
	/usr/bin/convert "$1" "$2" -compose difference -composite -colorspace gray \
		-threshold 3% -format '%[fx:round(mean*w*h)]' info:
}
# Wait until the screen stops changing: QUIET shots 250 ms apart agree.
settle() { # name timeout_s [quiet]
	local i n=$(($2 * 4)) same=0
	shot "$1"
	for ((i = 0; i < n; i++)); do
		sleep 0.25
		shot settle
		if [ "$(ndiff "$work/$1.ppm" "$work/settle.ppm")" = 0 ]; then
			same=$((same + 1))
			[ "$same" -ge "${3:-1}" ] && break
		else
			same=0
		fi
		mv "$work/settle.ppm" "$work/$1.ppm"
	done
	[ "$i" -lt "$n" ] || log "screen still changing after $2 s ($1)"
	/usr/bin/convert "$work/$1.ppm" -quality 10 "$OUT/$1.png" || fail "convert $1"
}
alive() { kill -0 "$plasma" 2>/dev/null || fail "plasmashell died: $(tail -20 "$OUT/plasma.log")"; }

log "display $DISPLAY, bus $DBUS_SESSION_BUS_ADDRESS"
dbus-update-activation-environment --all >/dev/null 2>&1 || fail "dbus-update-activation-environment"

# Every call to the menu and the item, and everything our process sends (it
# is the primary owner of io.github.vmoverlay, so its method returns match).
dbus-monitor --session "type='method_call',interface='com.canonical.dbusmenu'" \
	"type='method_call',path='/StatusNotifierItem'" \
	"sender='io.github.vmoverlay'" >"$OUT/dbus-monitor.log" 2>&1 &
monitor=$!

read -r W H < <(xdpyinfo | awk '/dimensions:/ {split($2, a, "x"); print a[1], a[2]}')
if [ -z "${PLASMA_SMOKE_NO_KWIN:-}" ]; then
	kwin_x11 >"$OUT/kwin.log" 2>&1 &
	pids+=($!)
	waitfor "kwin_x11 on the bus" 30 owned '^org\.kde\.KWin$'
fi
kded5 >"$OUT/kded.log" 2>&1 &
pids+=($!)
waitfor "StatusNotifierWatcher (kded5) on the bus" 30 owned '^org\.kde\.StatusNotifierWatcher$'
plasmashell --no-respawn >"$OUT/plasma.log" 2>&1 &
plasma=$!
pids+=($plasma)
waitfor "plasmashell on the bus" 60 owned '^org\.kde\.plasmashell$'
# IsStatusNotifierHostRegistered is true before any host exists (pitfall 3).
waitfor "tray host org.kde.StatusNotifierHost-*" 90 owned '^org\.kde\.StatusNotifierHost-'
host=$(busctl --user list --no-pager --no-legend | awk '$1 ~ /^org\.kde\.StatusNotifierHost-/ {print $1; exit}')
host_owner=$(owner_of "$host")
log "host $host is $host_owner; items before: $(items)"
settle before 20 4 # a quiet second: the panel is complete
alive

# ------------------------------------------------ vmoverlay on real images
img=$work/images
mkdir -p "$img" "$XDG_CONFIG_HOME/vmoverlay"
qemu-img create -q -f qcow2 "$img/test-base.qcow2" 16M || fail "qemu-img base"
qemu-img create -q -f qcow2 -F qcow2 -b "$img/test-base.qcow2" "$img/test.qcow2" || fail "qemu-img overlay"
cat >"$XDG_CONFIG_HOME/vmoverlay/vmoverlay.conf" <<EOF
connect = "test:///default";
vms = ( { name = "test"; overlay = "$img/test.qcow2"; base = "$img/test-base.qcow2"; } );
EOF
"$VMO_BIN" -v >"$OUT/vmoverlay.log" 2>&1 &
applet=$!
svc=org.kde.StatusNotifierItem-$applet-1
waitfor "$svc registered with the watcher" 20 bash -c "busctl --user get-property org.kde.StatusNotifierWatcher /StatusNotifierWatcher org.kde.StatusNotifierWatcher RegisteredStatusNotifierItems | grep -qF '\"$svc/StatusNotifierItem\"'"
[ "$(id -u)" != 0 ] || fail "the session runs as root"
log "vmoverlay runs as $(stat -c %U "/proc/$applet")"
log "items now: $(items)"
icon=$(busctl --user get-property "$svc" /StatusNotifierItem org.kde.StatusNotifierItem IconName)
[ "$icon" = 's "vmoverlay-active"' ] || fail "IconName is $icon, expected vmoverlay-active (domain test runs)"
# ------------------------------------------------------- the icon drawn
# The panel strip (Plasma's default panel is at the bottom) before and after
# the item appeared: the changed region must hold our active icon, its
# overlay layer (#3daee9) above its base layer (#7f8c8d), the blue absent
# there before. Other tray entries may shift and the clock may tick: only
# our colours inside the changed region count.
strip=80
region() { # picture colour WxH+X+Y -> "count w h x y" of that colour in that rectangle
	/usr/bin/convert "$1" -crop "$3" +repage -fuzz 6% \
		-fill black +opaque "$2" -fill white -opaque "$2" \
		-format '%[fx:round(mean*w*h)] ' -write info: -trim -format '%w %h %X %Y\n' info: 2>/dev/null
}
find_icon() { # sets ix iy iw ih; why=reason when not found
	local dw dh dx dy nb bw bh bx by nb0 ng gw gh gx gy
	/usr/bin/convert "$OUT/before.png" "$OUT/after.png" -crop "${W}x$strip+0+$((H - strip))" +repage \
		-compose difference -composite -colorspace gray -threshold 3% "$work/changed.png" || fail convert
	read -r dw dh dx dy < <(/usr/bin/convert "$work/changed.png" -trim -format '%w %h %X %Y' info: 2>/dev/null)
	[ "${dw:-0}" -gt 1 ] && [ "${dh:-0}" -gt 1 ] || { why="the panel did not change"; return 1; }
	dx=${dx#+} dy=$((H - strip + ${dy#+}))
	read -r nb bw bh bx by < <(region "$OUT/after.png" '#3daee9' "${dw}x$dh+$dx+$dy")
	read -r nb0 _ < <(region "$OUT/before.png" '#3daee9' "${dw}x$dh+$dx+$dy")
	[ "$nb" -ge 40 ] || { why="our icon's overlay layer (#3daee9) is not drawn where the panel changed (${dw}x$dh at $dx,$dy)"; return 1; }
	[ "$nb0" -lt 5 ] || fail "the blue was in the panel before the item appeared"
	bx=${bx#+} by=${by#+}
	# The base layer: in the same columns, below the blue.
	[ $((dh - by - bh)) -gt 0 ] || { why="nothing below the blue"; return 1; }
	read -r ng gw gh gx gy < <(region "$OUT/after.png" '#7f8c8d' "${bw}x$((dh - by - bh))+$((dx + bx))+$((dy + by + bh))")
	[ "$ng" -ge 20 ] || { why="our icon's base layer (#7f8c8d) is not drawn below its overlay layer"; return 1; }
	gx=$((bx + ${gx#+})) gy=$((by + bh + ${gy#+}))
	log "panel changed in ${dw}x$dh at $dx,$dy; there: overlay layer $nb px ${bw}x$bh at +$bx+$by, base layer $ng px ${gw}x$gh at +$gx+$gy; blue before: $nb0 px"
	[ "$bw" -ge 10 ] && [ "$bw" -le 64 ] && [ $((bw - gw)) -le 2 ] && [ $((gw - bw)) -le 2 ] ||
		fail "the layers' widths ($bw, $gw) are not those of one tray icon"
	ix=$((dx + bx)) iy=$((dy + by)) iw=$bw ih=$((gy + gh - by))
}
deadline=$((SECONDS + 30))
while :; do
	settle after 10
	find_icon && break
	[ $SECONDS -lt $deadline ] || fail "$why"
	sleep 0.5
done
alive
cx=$((ix + iw / 2)) cy=$((iy + ih / 2))
[ "$cx" -gt $((W / 2)) ] || fail "the icon is not in the tray (x $cx)"
log "our icon: ${iw}x$ih at $ix,$iy; centre $cx,$cy"
pad=12
/usr/bin/convert "$OUT/after.png" -crop "$((iw + 2 * pad))x$((ih + 2 * pad))+$((ix - pad))+$((iy - pad))" \
	+repage -scale 400% "$OUT/icon-zoom.png"
tx=$((ix - 60)) tw=$((W - ix + 60))
/usr/bin/convert "$OUT/after.png" -crop "${tw}x$strip+$tx+$((H - strip))" +repage "$OUT/tray.png"

# ------------------------------------------------------- the menu, by Plasma
unique=$(owner_of "$svc")
[ -n "$unique" ] || fail "no owner for $svc"
# Messages from line $1 of the trace on: serials of Plasma's calls of member
# $2 on /MenuBar, and the body of our reply to serial $2.
calls() {
	tail -n "+$1" "$OUT/dbus-monitor.log" | awk -v s="sender=$host_owner" -v m="member=$2" '
		/^method call/ && index($0, " " s " ") && index($0, "path=/MenuBar;") && $NF == m {
			for (i = 1; i <= NF; i++) if ($i ~ /^serial=/) print substr($i, 8) }'
}
reply() {
	tail -n "+$1" "$OUT/dbus-monitor.log" | awk -v u="sender=$unique" -v r="reply_serial=$2" '
		/^[a-z]/ { on = /^method return/ && index($0, " " u " ") && $NF == r; next } on'
}
replies_to() { # from member
	local s
	for s in $(calls "$1" "$2"); do reply "$1" "$s"; done
}
trace_mark() { wc -l <"$OUT/dbus-monitor.log"; }
has_labels() { # text labels...
	local text=$1 l
	shift
	for l in "$@"; do
		grep -qF "string \"$l\"" <<<"$text" || { echo "$l"; return 1; }
	done
}
mark=$(trace_mark)
xdotool mousemove "$cx" "$cy" click 3 || fail "xdotool right-click"
waitfor "Plasma calls AboutToShow on /MenuBar" 10 bash -c "[ -n \"\$(tail -n +$mark '$OUT/dbus-monitor.log' | grep -F 'sender=$host_owner' | grep -F 'path=/MenuBar;' | grep -F 'member=AboutToShow')\" ]"
settle menu-open 10
alive
sleep 0.3 # the trace is written by another process
# Plasma (libdbusmenuqt) fetched the layout when the item appeared and
# refetches only when AboutToShow says it changed: its menu is built from
# every GetLayout reply of ours since the item registered.
top=$(replies_to 1 GetLayout)
[ -n "$(calls 1 GetLayout)" ] || fail "Plasma never called GetLayout on /MenuBar"
[ -n "$top" ] || fail "no reply of ours to Plasma's GetLayout in the trace"
missing=$(has_labels "$top" test _Reload\ configuration _About\ vmoverlay _Quit) ||
	fail "our GetLayout replies lack the label \"$missing\""
[ -n "$(replies_to "$mark" AboutToShow)" ] || fail "no reply of ours to AboutToShow"
log "on right-click Plasma called AboutToShow x$(calls "$mark" AboutToShow | wc -l), GetLayout x$(calls "$mark" GetLayout | wc -l) (x$(calls 1 GetLayout | wc -l) in all); our replies carry test, Reload configuration, About vmoverlay, Quit"
# The menu is drawn: the screen changed in a menu-sized region above the icon.
read -r mw mh mx my < <(/usr/bin/convert "$OUT/after.png" "$OUT/menu-open.png" -compose difference \
	-composite -colorspace gray -threshold 3% -trim -format '%w %h %X %Y' info:)
mx=${mx#+} my=${my#+}
log "screen changed in ${mw}x$mh at $mx,$my"
[ "$mw" -ge 100 ] && [ "$mh" -ge 60 ] || fail "no menu drawn (changed ${mw}x$mh)"
[ "$my" -lt "$iy" ] || fail "the changed region is not above the icon"
cropmenu() { # picture out: the menu region and the tray below it
	local x0=$((mx < tx ? mx : tx)) y0=$((my - 4))
	/usr/bin/convert "$1" -crop "$((W - x0))x$((H - y0))+$x0+$y0" +repage "$2"
}
cropmenu "$OUT/menu-open.png" "$OUT/menu.png"
menu_w=$mw

# The VM's submenu: Plasma asks for it when it opens (Down selects the
# first entry, the VM, Right opens it).
mark=$(trace_mark)
xdotool key Down && sleep 0.3 && xdotool key Right || fail "xdotool key"
waitfor "Plasma fetches the VM submenu" 10 bash -c "[ -n \"\$(tail -n +$mark '$OUT/dbus-monitor.log' | grep -F 'sender=$host_owner' | grep -F 'path=/MenuBar;' | grep -E 'member=(AboutToShow|GetLayout)')\" ]"
settle submenu-first 10
sleep 0.3
sub=$(replies_to "$mark" GetLayout)
[ -n "$sub" ] || fail "Plasma did not fetch the VM submenu with GetLayout"
missing=$(has_labels "$sub" "_Commit changes into base…" "_Discard changes" "_Keep for now" "_When it shuts down") ||
	fail "the VM submenu Plasma fetched lacks \"$missing\""
[ "$(ndiff "$OUT/menu-open.png" "$OUT/submenu-first.png")" -gt 500 ] || fail "the submenu was not drawn"
# Plasma fills a submenu after it is placed (its importer does not wait for
# the AboutToShow reply), so the first time it grows off the screen's edge;
# opened again it is placed by its full size.
xdotool key Left && sleep 0.3 && xdotool key Right || fail "xdotool key"
settle submenu-open 10
read -r mw mh mx my < <(/usr/bin/convert "$OUT/after.png" "$OUT/submenu-open.png" -compose difference \
	-composite -colorspace gray -threshold 3% -trim -format '%w %h %X %Y' info:)
mx=${mx#+} my=${my#+}
[ "$mw" -ge $((menu_w + 100)) ] || fail "the submenu is not drawn beside the menu (${mw}x$mh changed)"
cropmenu "$OUT/submenu-open.png" "$OUT/submenu.png"
log "submenu: Plasma called AboutToShow x$(calls "$mark" AboutToShow | wc -l), GetLayout x$(calls "$mark" GetLayout | wc -l); our replies carry Commit changes into base…, Discard changes, Keep for now, When it shuts down; drawn"
xdotool key Escape && sleep 0.2 && xdotool key Escape && sleep 0.5

# ------------------------------------------------ Quit from Plasma's menu
quit_id=$(busctl --user --json=short call "$svc" /MenuBar com.canonical.dbusmenu GetLayout iias 0 1 0 |
	/usr/bin/python3 -c '
import json, sys
root = json.load(sys.stdin)["data"][1]
for c in root[2]:
    c = c["data"]
    if c[1].get("label", {}).get("data") == "_Quit":
        print(c[0])') || fail "reading the menu"
[ -n "$quit_id" ] || fail "no Quit entry"
mark=$(trace_mark)
xdotool mousemove "$cx" "$cy" click 3 || fail "xdotool right-click"
waitfor "the menu opens again" 10 bash -c "[ -n \"\$(tail -n +$mark '$OUT/dbus-monitor.log' | grep -F 'sender=$host_owner' | grep -F 'member=AboutToShow')\" ]"
sleep 0.5
xdotool key Up && sleep 0.3 && xdotool key Return || fail "xdotool key"
for _ in $(seq 100); do
	kill -0 "$applet" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$applet" 2>/dev/null && fail "vmoverlay still runs after Quit was chosen in Plasma's menu"
wait "$applet"
status=$?
applet=
[ "$status" = 0 ] || fail "vmoverlay exited with status $status: $(tail -5 "$OUT/vmoverlay.log")"
sleep 0.3
tail -n "+$mark" "$OUT/dbus-monitor.log" | awk -v s="sender=$host_owner" -v id="$quit_id" '
	/^[a-z]/ { ev = /^method call/ && index($0, " " s " ") && index($0, "path=/MenuBar;") && $NF == "member=Event"; n = 0; next }
	ev { n++; if (n == 1) ok = ($1 == "int32" && $2 == id); if (n == 2 && ok && $0 ~ /^ *string "clicked"$/) found = 1 }
	END { exit !found }' || fail "no Event($quit_id, \"clicked\") from Plasma in the trace"
log "Plasma sent Event($quit_id, clicked); vmoverlay exited with status 0"
waitfor "item gone from the watcher" 10 bash -c "! busctl --user get-property org.kde.StatusNotifierWatcher /StatusNotifierWatcher org.kde.StatusNotifierWatcher RegisteredStatusNotifierItems | grep -qF '$svc'"
settle gone 10
n=$(/usr/bin/convert "$OUT/gone.png" -crop "${iw}x$ih+$ix+$iy" +repage -fuzz 6% -fill black +opaque '#3daee9' \
	-fill white -opaque '#3daee9' -format '%[fx:round(mean*w*h)]' info:)
[ "$n" -lt 5 ] || fail "our icon is still drawn after vmoverlay quit ($n px)"
log "icon gone from the panel"
# Every call Plasma made was answered without a D-Bus error.
errs=$(grep -E "^error .* sender=$unique " "$OUT/dbus-monitor.log" | grep -F "destination=$host_owner ")
[ -z "$errs" ] || fail "we answered Plasma with errors: $errs"
log "Plasma's calls, all answered without error: $(awk -v s="sender=$host_owner" '/^method call/ && index($0, " " s " ") && (index($0, "path=/MenuBar;") || index($0, "path=/StatusNotifierItem;")) {sub(/.*member=/, ""); print}' "$OUT/dbus-monitor.log" | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')"
alive
log "plasmashell still alive"
exit 0
