#!/bin/bash
# Runs one libFuzzer target for a bounded time on its seed corpus:
#   run-fuzz.sh FUZZER SEED_DIR SECONDS [libFuzzer options...]
# New inputs go to a scratch directory (the committed corpus stays as it
# is); a crash, leak, timeout or broken contract leaves its reproducer in
# $VMO_FUZZ_ARTIFACTS (default: the scratch dir, kept on failure) and fails.
set -u
fuzzer=$1 seeds=$2 secs=$3
shift 3
[ -x "$fuzzer" ] || { echo "run-fuzz: $fuzzer is not built (cmake --build ... --target $(basename "$fuzzer"))" >&2; exit 1; }
[ -d "$seeds" ] || { echo "run-fuzz: no seed corpus $seeds" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/vmofuzz.XXXXXX") || exit 1
art=${VMO_FUZZ_ARTIFACTS:-$work/artifacts}
mkdir -p "$work/corpus" "$art"
# Leaks are checked per input; -timeout catches hangs (the bus target also
# aborts by itself when a call gets no reply within 5 s).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=1 \
LSAN_OPTIONS=suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
"$fuzzer" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$art/" "$@" "$work/corpus" "$seeds" 2>"$work/log"
rc=$?
grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$work/log"
if [ $rc != 0 ]; then
	tail -60 "$work/log" >&2
	echo "run-fuzz: $(basename "$fuzzer") failed (exit $rc); inputs and log kept in $work" >&2
	exit 1
fi
rm -rf "$work"
echo "run-fuzz: $(basename "$fuzzer") ok"
