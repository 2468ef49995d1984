#!/bin/bash
# The Debian 13 (trixie) chroot the plasma6 tests run in: KDE Plasma 6.3 on
# Wayland, gcc 14, libvirt 11, qemu 10 (recipe: research/plasma6/README.md).
#
#   plasma6-chroot.sh ensure ROOT      make ROOT unless it is already there and
#                                      current (its stamp: the hash of the
#                                      package list and of this script's
#                                      build_root); a fresh one takes ~8 min
#   plasma6-chroot.sh project ROOT SRC copy SRC's working tree (no .git, no
#                                      build*) to ROOT/vmo/src, build it in
#                                      ROOT/vmo/build with gcc 14 (-Werror is
#                                      the project's) and install it to /usr
#   plasma6-chroot.sh run ROOT [--user NAME] [--env VAR=VAL]... -- CMD...
#                                      CMD inside ROOT (as root or NAME)
#   plasma6-chroot.sh clean ROOT       remove ROOT (refuses if anything is
#                                      mounted below it)
#
# Needs root, debootstrap and Debian's archive (the host's apt sources name
# the mirror). Packages: tools/debian-packages.txt's trixie set; clang,
# libclang-rt and valgrind are only resolved (apt-get -s), not installed: the
# fuzz, sanitizer and valgrind phases are not run in the chroot.
#
# Mounts. Every command that needs /proc, /sys, /dev... in ROOT (debootstrap,
# apt, the build, the tests) runs in its own mount namespace (unshare -m,
# private propagation): the mounts exist only there, vanish with the last
# process in it, and are never seen by the host, so a crash cannot leave a
# bind mount of /dev inside the build directory, where `rm -rf build` would
# follow it into the host's /dev. The namespace's script unmounts in an EXIT
# trap as well, and `clean` (and a rebuild) checks with findmnt that nothing
# is mounted below ROOT before it removes anything.
#
# Inside: user p6 (uid 1000) is the desktop user the session runs as; the
# session's kwin_wayland is a capability-free copy at
# /opt/vmo-p6/bin/kwin_wayland (trixie's has cap_sys_nice=ep and makes itself
# SCHED_RR, which starves a shared 2-core machine; the copy keeps the name:
# KWin finds its built-in Qt platform plugin by it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RELEASE=trixie
LIST=$here/debian-packages.txt
# In the chroot but not installed (their phases do not run there).
NOT_INSTALLED="clang libclang-rt-19-dev valgrind"

die() { echo "plasma6-chroot: $*" >&2; exit 1; }
log() { echo "plasma6-chroot: $*" >&2; }

# Packages of tools/debian-packages.txt for a release: NAME [RELEASE...]
packages_for() { # release
	grep -v '^[[:space:]]*#' "$LIST" | awk -v r="$1" 'NF == 1 { print $1; next }
		NF > 1 { for (i = 2; i <= NF; i++) if ($i == r) { print $1; break } }'
}

# Something mounted at or below DIR? (prints the mount points)
mounts_below() { # dir
	local d
	d=$(realpath -m "$1")
	findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1'
}

remove_root() { # root
	local m
	[ -e "$1" ] || return 0
	m=$(mounts_below "$1")
	[ -z "$m" ] || die "refusing to remove $1: mounted below it: $m"
	rm -rf --one-file-system "$1"
}

# ---------------------------------------------------------------- namespace
# `run` and the build steps re-enter this script as `__ns ROOT ...` under
# unshare; __ns mounts, runs the command (not exec: the trap must run) and
# unmounts.
ns_mount() { # root
	local R=$1
	mount -t proc proc "$R/proc"
	mount --rbind /sys "$R/sys"
	mount --make-rslave "$R/sys"
	mount --bind /dev "$R/dev"
	mount --bind /dev/pts "$R/dev/pts"
	mkdir -p "$R/dev/shm"
	mount -t tmpfs -o mode=1777,size=512m shm "$R/dev/shm"
	mount -t tmpfs -o mode=755 run "$R/run"
}
ns_umount() { # root: also stops what still runs in ROOT from this namespace (ours)
	local R=$1 p m ns
	ns=$(readlink /proc/$$/ns/mnt)
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] &&
			kill -9 "${p#/proc/}" 2>/dev/null
	done
	for m in run dev/shm dev/pts dev proc; do
		mountpoint -q "$R/$m" && { umount "$R/$m" || umount -l "$R/$m"; }
	done
	mountpoint -q "$R/sys" && { umount -R "$R/sys" || umount -R -l "$R/sys"; }
	return 0
}
in_ns() { # root cmd... : cmd (a host command) with ROOT's mounts, in a private namespace
	unshare --mount --propagation private -- "$here/plasma6-chroot.sh" __ns "$@"
}
if [ "${1:-}" = __ns ]; then
	R=$2
	shift 2
	trap 'ns_umount "$R"' EXIT
	ns_mount "$R"
	rc=0
	"$@" || rc=$?
	exit $rc
fi

# The command line of a process inside ROOT, clean environment: sets exec_inroot.
inroot_cmd() { # root user envs... -- cmd...
	local R=$1 user=$2 envs=() home=/root
	shift 2
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	local spec=()
	[ "$user" = root ] || { spec=(--userspec="$user:$user"); home=/home/$user; }
	exec_inroot=(chroot "${spec[@]}" "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "HOME=$home" "${envs[@]}" "$@")
}
inroot() { # root cmd... (as root, in the namespace)
	local R=$1
	shift
	inroot_cmd "$R" root -- "$@"
	in_ns "$R" nice -n 10 "${exec_inroot[@]}"
}

# ---------------------------------------------------------------- the chroot
# Everything that decides what ROOT holds is in build_root (and the package
# list): their text is the cache's stamp.
build_root() { # root logs
	local R=$1 L=$2 mirror sec s pkgs
	mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
	sec=$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$sec" ] || sec=http://deb.debian.org/debian-security
	command -v debootstrap >/dev/null || die "debootstrap is missing (tools/debian-packages.txt; tools/setup.sh installs it)"
	s=$SECONDS
	log "debootstrap --variant=minbase $RELEASE from $mirror into $R"
	mkdir -p "$R"
	# debootstrap mounts /proc etc. in the target itself: private namespace too
	unshare --mount --propagation private -- nice -n 10 debootstrap --variant=minbase "$RELEASE" "$R" "$mirror" \
		>"$L/debootstrap.log" 2>&1 || { tail -20 "$L/debootstrap.log" >&2; die "debootstrap failed ($L/debootstrap.log)"; }
	log "debootstrap: $((SECONDS - s)) s"
	printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
		"$mirror" "$RELEASE" "$mirror" "$RELEASE" "$sec" "$RELEASE" >"$R/etc/apt/sources.list"
	printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$R/etc/apt/apt.conf.d/90norecommends"
	cp /etc/resolv.conf "$R/etc/resolv.conf"
	inroot "$R" apt-get update -q >"$L/apt-update.log" 2>&1 || { tail "$L/apt-update.log" >&2; die "apt-get update failed"; }
	pkgs=$(packages_for "$RELEASE")
	# the whole list must resolve on this release, also what is not installed
	# shellcheck disable=SC2086
	inroot "$R" apt-get install -s -q $pkgs >"$L/apt-resolve.log" 2>&1 ||
		{ tail -20 "$L/apt-resolve.log" >&2; die "tools/debian-packages.txt does not resolve on $RELEASE ($L/apt-resolve.log)"; }
	pkgs=$(for p in $pkgs; do case " $NOT_INSTALLED " in *" $p "*) ;; *) echo "$p" ;; esac; done)
	s=$SECONDS
	# shellcheck disable=SC2086
	inroot "$R" apt-get install -y -q $pkgs >"$L/apt-install.log" 2>&1 ||
		{ tail -20 "$L/apt-install.log" >&2; die "apt-get install failed ($L/apt-install.log)"; }
	log "packages: $(grep -oE '[0-9]+ newly installed' "$L/apt-install.log"), $(grep -oE 'Need to get [^ ]+ [kMG]?B' "$L/apt-install.log"); $((SECONDS - s)) s"
	inroot "$R" apt-get clean
	inroot "$R" useradd -m -u 1000 -s /bin/bash p6
	mkdir -p "$R/opt/vmo-p6/bin"
	cp "$R/usr/bin/kwin_wayland" "$R/opt/vmo-p6/bin/kwin_wayland" # no file capabilities
	cp "$here/gen-locales.sh" "$R/opt/vmo-p6/gen-locales.sh"
	inroot "$R" /opt/vmo-p6/gen-locales.sh >"$L/locales.log" 2>&1 || die "gen-locales.sh failed ($L/locales.log)"
}

stamp_of() {
	{
		echo "$RELEASE $NOT_INSTALLED"
		packages_for "$RELEASE"
		sed -n '/^build_root() {/,/^}/p' "$0"
		cat "$here/gen-locales.sh"
	} | sha256sum | cut -d' ' -f1
}

ensure() { # root
	local R=$1 L want t0=$SECONDS
	R=$(realpath -m "$R")
	L=$(dirname "$R")/plasma6-logs
	mkdir -p "$L"
	want=$(stamp_of)
	local m
	m=$(mounts_below "$R")
	[ -z "$m" ] || die "something is mounted below $R in the host's namespace ($m): unmount it first"
	if [ -f "$R/.vmo-stamp" ] && [ "$(cat "$R/.vmo-stamp")" = "$want" ]; then
		log "reusing the cached chroot $R (stamp ${want:0:12})"
		return 0
	fi
	[ -e "$R" ] && log "the chroot $R is missing its stamp or is stale: building it again"
	remove_root "$R"
	build_root "$R" "$L"
	echo "$want" >"$R/.vmo-stamp"
	log "chroot ready: $(du -sxm "$R" | cut -f1) MB, built in $((SECONDS - t0)) s"
}

project() { # root src
	local R S s L
	R=$(realpath -m "$1") S=$(realpath "$2")
	L=$(dirname "$R")/plasma6-logs
	[ -f "$R/.vmo-stamp" ] || die "$R is not a finished chroot (run ensure)"
	# a copy, not a bind mount: the tests inside cannot write to the host's tree
	rm -rf --one-file-system "$R/vmo/src"
	mkdir -p "$R/vmo/src"
	tar -C "$S" --exclude=./.git --exclude='./build*' -cf - . | tar -C "$R/vmo/src" -xf -
	s=$SECONDS
	inroot "$R" sh -c 'gcc -dumpfullversion; cmake -S /vmo/src -B /vmo/build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_INSTALL_PREFIX=/usr && cmake --build /vmo/build -j2 && cmake --install /vmo/build' \
		>"$L/build.log" 2>&1 || { grep -E 'error|warning' "$L/build.log" | head -30 >&2; die "build in the chroot failed ($L/build.log)"; }
	local gcc
	gcc=$(head -1 "$L/build.log")
	[ "${gcc%%.*}" = 14 ] || die "the chroot's gcc is $gcc, not 14"
	! grep -q 'warning:' "$L/build.log" || die "warnings in the chroot build ($L/build.log)"
	log "built with gcc $gcc (-Wall -Wextra -Werror), 0 warnings, installed to /usr: $((SECONDS - s)) s"
}

cmd=${1:-}
[ $# -ge 2 ] || die "usage: plasma6-chroot.sh ensure|project|run|clean ROOT ..."
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
case $cmd in
ensure)
	exec 9>"$(realpath -m "$2").lock"
	flock 9
	ensure "$2"
	;;
project)
	[ $# -ge 3 ] || die "usage: plasma6-chroot.sh project ROOT SRC"
	exec 9>"$(realpath -m "$2").lock"
	flock 9
	project "$2" "$3"
	;;
run)
	R=$(realpath -m "$2")
	shift 2
	user=root envs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		case $1 in
		--user) user=$2; shift 2 ;;
		--env) envs+=("$2"); shift 2 ;;
		*) die "run: unknown option $1" ;;
		esac
	done
	[ "${1:-}" = -- ] && shift
	[ $# -gt 0 ] || die "run: no command"
	[ -f "$R/.vmo-stamp" ] || die "$R is not a finished chroot (run ensure)"
	inroot_cmd "$R" "$user" "${envs[@]}" -- "$@"
	in_ns "$R" nice -n 10 "${exec_inroot[@]}"
	;;
clean)
	remove_root "$(realpath -m "$2")"
	;;
*) die "unknown command $cmd" ;;
esac
