#!/bin/bash
# qemu-img as the applet runs it during bench_commit_applet: the real
# /usr/bin/qemu-img (or BENCH_REAL_QEMU_IMG), with its own run time appended
# to BENCH_QI_LOG as "<verb> <ms>", so the applet's overhead around it can be
# told apart from qemu-img's run-to-run noise. $EPOCHREALTIME: no forks of
# our own in the timed span; stdout/stderr (the progress) pass through.
s=$EPOCHREALTIME
"${BENCH_REAL_QEMU_IMG:-/usr/bin/qemu-img}" "$@"
rc=$?
e=$EPOCHREALTIME
[ -n "${BENCH_QI_LOG:-}" ] &&
	echo "$1 $(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f", (e - s) * 1000}')" >>"$BENCH_QI_LOG"
exit $rc
