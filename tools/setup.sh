#!/usr/bin/env bash
# The README's two commands. On a fresh Debian 12 machine with only git and
# root or sudo:
#   tools/setup.sh run [ARGS...]  install what is missing, build, start the applet
#                                 (demo mode on test:///default when no VM is configured)
#   tools/setup.sh test           install what is missing, build, run every test (ctest),
#                                 then the unit tests again under ASan+UBSan
# Packages come from tools/debian-packages.txt (one list, one file).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mode=${1:-run}
[ $# -gt 0 ] && shift

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
	local want missing=()
	want=$(grep -v '^[[:space:]]*#' tools/debian-packages.txt | awk 'NF {print $1}')
	for p in $want; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
	# Translations are tested in German and Chinese: generate those locales.
	if [ -x tools/gen-locales.sh ]; then as_root tools/gen-locales.sh; fi
}

build() { # build-dir cmake-args...
	local dir=$1; shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j"$(nproc)"
}

install_packages
case "$mode" in
run)
	build build
	args=("$@")
	conf="${XDG_CONFIG_HOME:-$HOME/.config}/vmoverlay/vmoverlay.conf"
	if [ ${#args[@]} -eq 0 ] && [ ! -f "$conf" ]; then
		echo "setup: no $conf: starting the demo (libvirt test:///default, temporary images)"
		args=(--demo)
	fi
	if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ ! -S "${XDG_RUNTIME_DIR:-/nonexistent}/bus" ]; then
		echo "setup: no session bus here: starting a private one with dbus-run-session"
		exec dbus-run-session -- build/vmoverlay "${args[@]}"
	fi
	exec build/vmoverlay "${args[@]}"
	;;
test)
	build build
	# Integration tests start their own dbus-daemon and libvirtd; they run
	# one at a time (-j1) because they share the machine's CPU budget.
	ctest --test-dir build --output-on-failure --timeout 900 "$@"
	build build-asan -DVMO_SANITIZE=ON
	ctest --test-dir build-asan --output-on-failure -L unit
	;;
*)
	echo "usage: tools/setup.sh run [vmoverlay args...] | tools/setup.sh test [ctest args...]" >&2
	exit 2
	;;
esac
