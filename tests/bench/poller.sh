#!/bin/bash
# The design vmoverlay replaces, as the benchmarks' point of comparison: a
# loop that asks `virsh list --name` every 5 seconds which domains run, and
# when a watched VM has left the list sends the "keep this session's
# changes?" notification (here with gdbus, one call per prompt).
#
#   poller.sh [-c URI] [-i SECONDS] VM...
#
# POLLER_TRACE=FILE appends "poll <epoch s.ns> <running VMs...>" per poll
# (for the start -> first state figure). SIGTERM/SIGINT end it cleanly, the
# sleep child reaped, so a parent's wait4 counts every process it ran.
uri=${LIBVIRT_DEFAULT_URI:-qemu:///session}
interval=5
while [ $# -gt 0 ]; do
	case $1 in
	-c) uri=$2; shift 2 ;;
	-i) interval=$2; shift 2 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
watched=("$@")

sleeper=
stop() {
	[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null && wait "$sleeper" 2>/dev/null
	exit 0
}
trap stop TERM INT

listed() { # NAME LIST
	local n
	for n in $2; do [ "$n" = "$1" ] && return 0; done
	return 1
}

prev=
first=1
while :; do
	if ! cur=$(virsh -q -c "$uri" list --name 2>/dev/null); then
		echo "poller: virsh list failed" >&2
		cur=$prev
	fi
	[ -n "${POLLER_TRACE:-}" ] && echo "poll $(date +%s.%N) $(echo $cur)" >>"$POLLER_TRACE"
	if [ -z "$first" ]; then
		for vm in "${watched[@]}"; do
			if listed "$vm" "$prev" && ! listed "$vm" "$cur"; then
				gdbus call --session -d org.freedesktop.Notifications \
					-o /org/freedesktop/Notifications -m org.freedesktop.Notifications.Notify -- \
					poller 0 '' "$vm shut down" "Keep this session's changes?" \
					"['commit', 'Commit', 'discard', 'Discard', 'keep', 'Keep for now']" \
					'{}' -1 >/dev/null || echo "poller: Notify failed" >&2
			fi
		done
	fi
	first=
	prev=$cur
	sleep "$interval" &
	sleeper=$!
	wait "$sleeper"
	sleeper=
done
