#!/usr/bin/env bash
# The README's two commands. On a fresh Debian 12 machine with only git and
# root or sudo:
#   tools/setup.sh run [ARGS...]  install what is missing, build, start the applet
#                                 (demo mode on test:///default when no VM is configured)
#   tools/setup.sh test           install what is missing, build, run every test (ctest:
#                                 unit, integration, fault suite, quick benchmarks), the
#                                 unit tests under valgrind and again under ASan+UBSan,
#                                 and a short libFuzzer pass (clang, build-fuzz/);
#                                 the ctest part includes the plasma6 label: Plasma 6
#                                 on Wayland and the whole ctest again on Debian 13, in
#                                 a trixie chroot cached in build/plasma6-root
#                                 (tests/plasma6.cmake)
# Packages come from tools/debian-packages.txt (one list, one file).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mode=${1:-run}
[ $# -gt 0 ] && shift

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

install_packages() {
	local want missing=()
	# NAME [RELEASE...]: a name with releases is only for those (Debian 12
	# bookworm and 13 trixie name some packages differently).
	want=$(grep -v '^[[:space:]]*#' tools/debian-packages.txt | awk -v r="$release" 'NF == 1 { print $1; next }
		NF > 1 { for (i = 2; i <= NF; i++) if ($i == r) { print $1; break } }')
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
	# Every phase runs even when an earlier one failed; the exit status
	# says whether all passed. Measured on the 2-core CI machine: see
	# docs/fuzzing.md ("CI budget").
	failed=()
	phase() { # NAME COMMAND...
		local t0=$SECONDS
		echo "setup: == $1"
		if "${@:2}"; then
			echo "setup: == $1: ok ($((SECONDS - t0)) s)"
		else
			echo "setup: == $1: FAILED ($((SECONDS - t0)) s)"
			failed+=("$1")
		fi
	}
	# Benchmarks run in their short form unless told otherwise.
	export BENCH_QUICK=${BENCH_QUICK:-1}
	# valgrind for `ctest -T memcheck`: a unit test fails on any memory
	# error or a definite leak. Children are not traced: exec'd programs
	# (qemu-img, dbus-daemon, python) are not ours, and a forked child that
	# fails to exec exits at once with the parent's heap in its view.
	build build \
		"-DMEMORYCHECK_COMMAND_OPTIONS=--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --gen-suppressions=all --trace-children=no --child-silent-after-fork=yes"
	# Unit, integration (with the fault suite) and bench. Integration tests
	# start their own dbus-daemon and libvirtd; they run one at a time
	# because they share the machine's CPU budget.
	# With the plasma6 label: Plasma 6 on Wayland and this whole ctest again
	# on Debian 13, in a chroot cached in build/plasma6-root (a fresh one
	# takes ~8 min; tests/plasma6.cmake). plasma_smoke is Plasma 5.27 on
	# X11, Debian 12's Plasma; other releases ship Plasma 6 (plasma6 tests).
	only12=()
	if [ "$release" != bookworm ]; then
		echo "setup: plasma_smoke (Plasma 5.27, X11) is for Debian 12 only; here ($release) the plasma6 tests cover Plasma"
		only12=(-E '^plasma_smoke$')
	fi
	phase "ctest (unit, integration, bench, plasma6)" \
		ctest --test-dir build --output-on-failure --timeout 900 -LE fuzz "${only12[@]}" "$@"
	# The C unit tests (test_*; the other unit-labelled entries are scripts).
	# test_notify measures latencies against a hung server (< 100 ms) that
	# valgrind's slowdown breaks and then outlives its timeout; its memory
	# is checked by LeakSanitizer in the ASan run below.
	phase "valgrind memcheck (unit)" \
		ctest --test-dir build --output-on-failure --timeout 900 -L unit -R '^test_' \
		-E '^test_notify$' -T memcheck
	build build-asan -DVMO_SANITIZE=ON
	phase "ASan+UBSan (unit)" ctest --test-dir build-asan --output-on-failure -L unit
	# A short fuzz pass: clang + libFuzzer, each target VMO_FUZZ_SECONDS
	# (20 s) on the seed corpus (docs/fuzzing.md for long runs).
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMO_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j"$(nproc)" --target fuzz_bus fuzz_qcow2 fuzz_config
	phase "fuzz (short)" ctest --test-dir build-fuzz --output-on-failure -L fuzz
	if [ ${#failed[@]} -gt 0 ]; then
		printf 'setup: failed: %s\n' "${failed[@]}"
		exit 1
	fi
	echo "setup: all tests passed"
	;;
*)
	echo "usage: tools/setup.sh run [vmoverlay args...] | tools/setup.sh test [ctest args...]" >&2
	exit 2
	;;
esac
