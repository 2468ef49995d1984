#!/bin/bash
# The Debian package end to end: `dpkg-buildpackage -us -uc -b` on a copy of
# the source tree (the real tree stays untouched: no obj-*/, no debian/
# build residue), then `dpkg -i` on this machine, check that the files land
# where a desktop looks for them and that `vmoverlay --version` runs, that
# the user unit is installed but not enabled, then `dpkg -r` / `dpkg -P`
# and check that everything is gone again.
#
# Needs root (dpkg -i). Refuses to run if a vmoverlay package is already
# installed, so it never replaces or removes a real installation.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "$1 is missing (Debian package: $2)"; }
need dpkg-buildpackage dpkg-dev
need dh debhelper
need fakeroot fakeroot
need dpkg dpkg
: "${VMO_SRC:?}"
[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i)"
if dpkg-query -W -f='${Status}' vmoverlay 2>/dev/null | grep -q 'installed'; then
	fail "a vmoverlay package is already installed; not touching it"
fi

# dpkg with its log in $work/$1.log; waits (up to 3 minutes) while another
# package manager (apt-get of a parallel job) holds the dpkg lock.
dpkg_wait() {
	local log=$work/$1.log i
	shift
	for i in $(seq 90); do
		if dpkg "$@" >"$log" 2>&1; then return 0; fi
		grep -q 'lock' "$log" || return 1
		sleep 2
	done
	return 1
}

work=$(mktemp -d /tmp/vmo-deb.XXXXXX)
installed=0
cleanup() {
	if [ $installed = 1 ]; then dpkg_wait purge-on-exit -P vmoverlay || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

version=$(dpkg-parsechangelog -l "$VMO_SRC/debian/changelog" -S Version)
src=$work/vmoverlay-$version
mkdir "$src"
# Everything but VCS data and build trees (every helper has its own build-*).
tar -C "$VMO_SRC" --exclude=./.git --exclude='./build*' --exclude='./obj-*' \
	--exclude=./debian/vmoverlay --exclude=./debian/.debhelper --exclude=./debian/tmp \
	-cf - . | tar -C "$src" -xf -

start=$(date +%s)
(cd "$src" && DEB_BUILD_OPTIONS="parallel=2 nocheck noddebs" \
	dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) ||
	{ tail -n 60 "$work/build.log" >&2; fail "dpkg-buildpackage failed (log above)"; }
echo "deb-build: dpkg-buildpackage took $(($(date +%s) - start)) s"

arch=$(dpkg --print-architecture)
deb=$work/vmoverlay_${version}_${arch}.deb
[ -f "$deb" ] || fail "no $deb after the build: $(ls "$work")"

# What the package declares.
deps=$(dpkg-deb -f "$deb" Depends)
# libconfig's runtime package is named by its SONAME: libconfig9 on Debian 12,
# libconfig11 on Debian 13; libconfig-dev depends on the one built against.
libconfig=$(dpkg-query -W -f='${Depends}' libconfig-dev | grep -oE 'libconfig[0-9]+' | head -1)
[ -n "$libconfig" ] || fail "cannot tell libconfig's runtime package from libconfig-dev"
for d in qemu-utils pkexec libvirt0 libdbus-1-3 libnotify4 "$libconfig"; do
	grep -qw "$d" <<<"$deps" || fail "Depends lacks $d: $deps"
done
dpkg-deb -c "$deb" >"$work/contents"
grep -q '/etc/systemd/user/' "$work/contents" && fail "the package must not enable the user unit"

dpkg_wait install -i "$deb" || { cat "$work/install.log" >&2; fail "dpkg -i failed"; }
installed=1

for f in /usr/bin/vmoverlay /usr/libexec/vmoverlay/vmoverlay-helper; do
	[ -x "$f" ] || fail "not installed or not executable: $f"
done
for f in \
	/usr/share/applications/vmoverlay.desktop \
	/etc/xdg/autostart/vmoverlay.desktop \
	/usr/lib/systemd/user/vmoverlay.service \
	/usr/share/polkit-1/actions/io.github.vmoverlay.policy \
	/usr/share/man/man1/vmoverlay.1.gz \
	/usr/share/man/man5/vmoverlay.conf.5.gz \
	/usr/share/man/man8/vmoverlay-helper.8.gz \
	/usr/share/doc/vmoverlay/copyright \
	/usr/share/doc/vmoverlay/vmoverlay.conf.example \
	/usr/share/dbus-1/interfaces/io.github.vmoverlay.Control1.xml \
	/usr/share/icons/hicolor/scalable/apps/vmoverlay.svg \
	/usr/share/icons/hicolor/48x48/apps/vmoverlay.png \
	/usr/share/locale/de/LC_MESSAGES/vmoverlay.mo; do
	[ -s "$f" ] || fail "not installed: $f"
done
# The autostart entry is a conffile (the admin may hide it for everyone).
dpkg-query -W -f='${Conffiles}\n' vmoverlay | grep -q '/etc/xdg/autostart/vmoverlay.desktop' ||
	fail "/etc/xdg/autostart/vmoverlay.desktop is not a conffile"
# Installed but not enabled: the autostart entry is the default.
[ ! -e /etc/systemd/user/graphical-session.target.wants/vmoverlay.service ] ||
	fail "dpkg -i enabled the user unit"
grep -q "/usr/libexec/vmoverlay/vmoverlay-helper" /usr/share/polkit-1/actions/io.github.vmoverlay.policy ||
	fail "the polkit action does not name the installed helper"

# Installing is root's; running vmoverlay is the unprivileged user's.
tuser=$("$VMO_SRC/tests/integration/test-user" name) || fail "no unprivileged test user"
out=$("$VMO_SRC/tests/integration/test-user" run "$tuser" vmoverlay --version) || fail "vmoverlay --version failed"
[ "$out" = "vmoverlay ${version%%-*}" ] || fail "vmoverlay --version printed '$out', want 'vmoverlay ${version%%-*}'"
echo "deb-build: installed; vmoverlay --version: $out"
# The helper refuses an unprivileged caller and explains itself; as root
# without arguments it prints its usage with exit status 2.
rc=0
/usr/libexec/vmoverlay/vmoverlay-helper >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "vmoverlay-helper without arguments exited $rc, want 2"

dpkg_wait remove -r vmoverlay || { cat "$work/remove.log" >&2; fail "dpkg -r failed"; }
[ ! -e /usr/bin/vmoverlay ] || fail "dpkg -r left /usr/bin/vmoverlay"
[ ! -e /usr/libexec/vmoverlay/vmoverlay-helper ] || fail "dpkg -r left the helper"
dpkg_wait purge -P vmoverlay || { cat "$work/purge.log" >&2; fail "dpkg -P failed"; }
installed=0
[ ! -e /etc/xdg/autostart/vmoverlay.desktop ] || fail "dpkg -P left the autostart entry"
echo "deb-build: built, installed, ran, removed and purged $(basename "$deb") ($(wc -l <"$work/contents") paths)"
