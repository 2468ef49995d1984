#!/bin/bash
# `cmake --install` of the build tree into a private DESTDIR, then: every
# file a user needs is there (binary, helper, icons in every size, desktop
# and autostart entries, user unit, polkit action, man pages, example
# config, our D-Bus interface XML, translations); desktop-file-validate
# passes on both entries; systemd-analyze verifies the unit; the man pages
# format without groff warnings and list every option of --help. An install
# with another --prefix than the configured one stops before writing a file
# (the programs have the configured paths compiled in, and the desktop
# entries, the unit and the polkit action name them), saying so.
#
# Expected locations come from the build's own configuration (env set by
# tests/install.cmake), so the test holds for any prefix.
#
# systemd-analyze and this container: PID 1 is not systemd and there is no
# user manager. `systemd-analyze --user verify` still works offline once
# XDG_RUNTIME_DIR points at a private 0700 directory (without it: "Failed
# to lookup RuntimeDirectory path"). It checks that ExecStart= is an
# executable file on this machine and runs `man` for every Documentation=
# entry, so the test verifies a copy whose ExecStart= points into DESTDIR
# and puts DESTDIR's man pages on MANPATH. --root= does not work with
# --user on systemd 252. Unknown keys are only warnings (exit status 0), so
# any output at all fails the test.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "$1 is missing (Debian package: $2)"; }
need cmake cmake
need desktop-file-validate desktop-file-utils
need systemd-analyze systemd
need groff groff-base
need python3 python3

: "${VMO_BUILD:?}" "${VMO_SRC:?}" "${VMO_BIN:?}"
: "${VMO_INSTALL_PREFIX:?}" "${VMO_INSTALL_BINDIR:?}" "${VMO_INSTALL_LIBEXECDIR:?}" "${VMO_INSTALL_DATADIR:?}"
: "${VMO_INSTALL_MANDIR:?}" "${VMO_INSTALL_DOCDIR:?}" "${VMO_INSTALL_LOCALEDIR:?}"
: "${VMO_AUTOSTART_DIR:?}" "${VMO_SYSTEMD_USER_UNIT_DIR:?}" "${VMO_POLKIT_ACTION_DIR:?}"

work=$(mktemp -d /tmp/vmo-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The installed files are root's, as a package's are; vmoverlay itself runs
# as the unprivileged test user, as our users run it.
chmod 755 "$work"
tu=$("$VMO_SRC/tests/integration/test-user" name) || fail "no unprivileged test user"
as_user=("$VMO_SRC/tests/integration/test-user" run "$tu" env HOME="$work/home")
mkdir -p "$work/home"
[ "$(id -u)" != 0 ] || chown "$tu:" "$work/home"
dest=$work/dest

DESTDIR=$dest cmake --install "$VMO_BUILD" >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log" >&2; fail "cmake --install failed"; }

checks=0
present() { # path [x]
	[ -f "$dest$1" ] || fail "not installed: $1"
	[ -s "$dest$1" ] || fail "installed but empty: $1"
	if [ "${2:-}" = x ]; then [ -x "$dest$1" ] || fail "not executable: $1"; fi
	checks=$((checks + 1))
}
absent() {
	[ ! -e "$dest$1" ] || fail "must not be installed: $1"
	checks=$((checks + 1))
}

helper=$VMO_INSTALL_LIBEXECDIR/vmoverlay/vmoverlay-helper
present "$VMO_INSTALL_BINDIR/vmoverlay" x
present "$helper" x
present "$VMO_INSTALL_DATADIR/applications/vmoverlay.desktop"
present "$VMO_AUTOSTART_DIR/vmoverlay.desktop"
present "$VMO_SYSTEMD_USER_UNIT_DIR/vmoverlay.service"
present "$VMO_POLKIT_ACTION_DIR/io.github.vmoverlay.policy"
present "$VMO_INSTALL_MANDIR/man1/vmoverlay.1"
present "$VMO_INSTALL_MANDIR/man5/vmoverlay.conf.5"
present "$VMO_INSTALL_MANDIR/man8/vmoverlay-helper.8"
present "$VMO_INSTALL_DOCDIR/vmoverlay.conf.example"
# The opt-in rule is an example only: never active as installed.
present "$VMO_INSTALL_DATADIR/vmoverlay/polkit/60-vmoverlay-libvirt.rules"
[ -z "$(find "$dest" -path '*polkit-1/rules.d*' -print -quit)" ] || fail "a polkit rule was installed into rules.d"
present "$VMO_INSTALL_DATADIR/dbus-1/interfaces/io.github.vmoverlay.Control1.xml"
# Other projects' interfaces are theirs to install.
absent "$VMO_INSTALL_DATADIR/dbus-1/interfaces/org.kde.StatusNotifierItem.xml"
absent "$VMO_INSTALL_DATADIR/dbus-1/interfaces/com.canonical.dbusmenu.xml"

# Icons: every icons/hicolor/scalable/apps/*.svg as scalable plus a PNG of the right size each.
shopt -s nullglob
svgs=("$VMO_SRC"/icons/hicolor/scalable/apps/*.svg)
[ ${#svgs[@]} -gt 0 ] || fail "no icons/hicolor/scalable/apps/*.svg in the source tree"
hicolor=$VMO_INSTALL_DATADIR/icons/hicolor
for svg in "${svgs[@]}"; do
	name=$(basename "$svg" .svg)
	present "$hicolor/scalable/apps/$name.svg"
	for px in 16 22 24 32 48 64; do
		png=$hicolor/${px}x${px}/apps/$name.png
		present "$png"
		size=$(python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read(24)
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
print("%dx%d" % struct.unpack(">II", d[16:24]))' "$dest$png") || fail "$png is not a PNG"
		[ "$size" = "${px}x${px}" ] || fail "$png is $size, not ${px}x${px}"
	done
done
# The desktop entries name an icon that is installed.
present "$hicolor/scalable/apps/vmoverlay.svg"

# Translations: one catalog per po/LINGUAS language.
langs=$(grep -v '^#' "$VMO_SRC/po/LINGUAS" | tr ' ' '\n' | grep -v '^$' || true)
[ -n "$langs" ] || fail "po/LINGUAS lists no language"
for lang in $langs; do
	present "$VMO_INSTALL_LOCALEDIR/$lang/LC_MESSAGES/vmoverlay.mo"
done

# Desktop entries.
app=$dest$VMO_INSTALL_DATADIR/applications/vmoverlay.desktop
auto=$dest$VMO_AUTOSTART_DIR/vmoverlay.desktop
for f in "$app" "$auto"; do
	out=$(desktop-file-validate "$f" 2>&1) || fail "desktop-file-validate $f: $out"
	[ -z "$out" ] || fail "desktop-file-validate $f warns: $out"
	grep -qx "Exec=$VMO_INSTALL_BINDIR/vmoverlay" "$f" || fail "$f: Exec= is not $VMO_INSTALL_BINDIR/vmoverlay"
	grep -qx "Icon=vmoverlay" "$f" || fail "$f: Icon= is not vmoverlay"
	checks=$((checks + 1))
done
grep -qx 'X-KDE-autostart-phase=2' "$auto" || fail "autostart: X-KDE-autostart-phase=2 missing"
grep -qx 'X-GNOME-Autostart-enabled=true' "$auto" || fail "autostart: X-GNOME-Autostart-enabled=true missing"
! grep -q '^OnlyShowIn=' "$auto" || fail "autostart: must not restrict OnlyShowIn"
! grep -qE '^(Hidden=true|X-systemd-skip=true)' "$auto" || fail "autostart: the default must be enabled"
# Translated names from po/*.po reached the entries (msgfmt --desktop).
for lang in $langs; do
	grep -q "^Comment\[$lang\]=" "$app" || fail "$app: no Comment[$lang]"
done
checks=$((checks + 4))

# systemd user unit (see the header for why it is verified this way).
unit=$dest$VMO_SYSTEMD_USER_UNIT_DIR/vmoverlay.service
for want in 'PartOf=graphical-session.target' 'After=graphical-session.target' \
	'Restart=on-failure' 'WantedBy=graphical-session.target' \
	"ExecStart=$VMO_INSTALL_BINDIR/vmoverlay"; do
	grep -qx "$want" "$unit" || fail "unit: '$want' missing"
done
! grep -q '^Type=dbus' "$unit" || fail "unit: Type=dbus although the name is claimed late"
mkdir -p "$work/verify" "$work/runtime"
chmod 700 "$work/runtime"
sed "s|^ExecStart=|ExecStart=$dest|" "$unit" >"$work/verify/vmoverlay.service"
out=$(cd "$work/verify" && MANPATH=$dest$VMO_INSTALL_MANDIR XDG_RUNTIME_DIR=$work/runtime \
	systemd-analyze --user verify "$work/verify/vmoverlay.service" 2>&1) ||
	fail "systemd-analyze --user verify: $out"
[ -z "$out" ] || fail "systemd-analyze --user verify complains: $out"
checks=$((checks + 1))

# polkit action: well-formed, one action bound to the installed helper.
python3 - "$dest$VMO_POLKIT_ACTION_DIR/io.github.vmoverlay.policy" "$helper" <<'EOF' ||
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
acts = root.findall("action")
assert [a.get("id") for a in acts] == ["io.github.vmoverlay.helper"], "action ids"
a = acts[0]
ann = {x.get("key"): (x.text or "").strip() for x in a.findall("annotate")}
assert ann.get("org.freedesktop.policykit.exec.path") == sys.argv[2], ann
d = a.find("defaults")
assert d.find("allow_active").text == "auth_admin_keep"
assert d.find("allow_any").text in ("auth_admin", "no")
msg = a.find("message").text
assert "$(command_line)" in msg, "the prompt must show the command line (op and VM name)"
EOF
	fail "polkit action is not what the helper needs"
checks=$((checks + 1))

# Man pages: no groff warnings; every long option of --help is documented.
for page in man1/vmoverlay.1 man5/vmoverlay.conf.5 man8/vmoverlay-helper.8; do
	out=$(groff -man -ww -z "$dest$VMO_INSTALL_MANDIR/$page" 2>&1) || fail "groff $page: $out"
	[ -z "$out" ] || fail "groff warns on $page: $out"
done
help=$("${as_user[@]}" "$VMO_BIN" --help) || fail "vmoverlay --help failed"
man1=$(groff -man -Tutf8 -P-cbou "$dest$VMO_INSTALL_MANDIR/man1/vmoverlay.1" 2>/dev/null | sed 's/‐/-/g')
opts_help=$(grep -oE -- '--[a-z][a-z-]+' <<<"$help" | sort -u)
opts_man=$(grep -oE -- '--[a-z][a-z-]+' <<<"$man1" | sort -u)
[ -n "$opts_help" ] || fail "--help lists no option"
for o in $opts_help; do
	grep -qx -- "$o" <<<"$opts_man" || fail "--help has $o, vmoverlay(1) does not"
done
for o in $opts_man; do
	grep -qx -- "$o" <<<"$opts_help" || fail "vmoverlay(1) has $o, --help does not"
done
for verb in status commit discard keep quit; do
	grep -qw -- "$verb" <<<"$help" || fail "--help does not mention the '$verb' command"
done
checks=$((checks + 3))

# The example configuration is valid as shipped.
out=$("${as_user[@]}" "$VMO_BIN" --check-config --config "$dest$VMO_INSTALL_DOCDIR/vmoverlay.conf.example" 2>&1) ||
	fail "the example configuration does not pass --check-config: $out"
checks=$((checks + 1))

# Another prefix at install time (`cmake --install build --prefix /usr` after
# configuring for /usr/local): stopped before any file is written, with a
# message naming both prefixes; the configured prefix, even spelled with a
# trailing slash, installs.
other=$work/other-prefix
if out=$(cmake --install "$VMO_BUILD" --prefix "$other" 2>&1); then
	fail "cmake --install --prefix $other (configured: $VMO_INSTALL_PREFIX) succeeded"
fi
out=$(tr -s ' \n' '  ' <<<"$out")
grep -qF "configured for the prefix $VMO_INSTALL_PREFIX," <<<"$out" ||
	fail "the refusal does not name the configured prefix: $out"
grep -qF "asks for $other." <<<"$out" || fail "the refusal does not name the requested prefix: $out"
grep -qF "nothing was installed" <<<"$out" || fail "the refusal does not say nothing was installed: $out"
[ -z "$(find "$other" -mindepth 1 2>/dev/null)" ] ||
	fail "files written under $other before the refusal: $(find "$other" -mindepth 1 | head -3)"
DESTDIR=$work/dest2 cmake --install "$VMO_BUILD" --prefix "$VMO_INSTALL_PREFIX/" >"$work/install2.log" 2>&1 ||
	{ cat "$work/install2.log" >&2; fail "cmake --install --prefix $VMO_INSTALL_PREFIX/ failed"; }
[ -x "$work/dest2$helper" ] || fail "--prefix $VMO_INSTALL_PREFIX/ did not install the helper at $helper"
grep -qF ">$helper<" "$work/dest2$VMO_POLKIT_ACTION_DIR/io.github.vmoverlay.policy" ||
	fail "the polkit action does not name $helper"
echo "install-check: --prefix $other refused: $(grep -o 'vmoverlay was configured for the prefix [^ ]* but this install asks for [^ ]*' <<<"$out")"
checks=$((checks + 2))

# The installed binary runs and reports the project's version.
ver=$("${as_user[@]}" "$dest$VMO_INSTALL_BINDIR/vmoverlay" --version) || fail "installed vmoverlay --version failed"
grep -q "^vmoverlay [0-9]" <<<"$ver" || fail "unexpected --version output: $ver"

echo "install-check: $checks checks passed ($(find "$dest" -type f | wc -l) files installed)"
