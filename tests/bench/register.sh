#!/bin/bash
# Start -> RegisterStatusNotifierItem at a test watcher, median of 20
# (target <= 50 ms), with the applet watching three VMs on a private
# libvirtd; for comparison poller.sh's start -> its first `virsh list`
# result. The timing is register.py's; this part sets up libvirt.
set -u
. "$(dirname "$0")/lib.sh"
bench_check_env
trap bench_cleanup EXIT
bench_libvirt_setup
export BENCH_CONF VE_URI
"$BENCH_PY" "$BENCH_DIR/register.py" || bench_fail "the registration benchmark could not measure"
