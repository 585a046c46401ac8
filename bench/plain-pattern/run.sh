#!/usr/bin/env bash
# The plain pattern jobwatch replaces, written the way it usually is:
# a wrapper that starts the command in the background, writes NAME.pid,
# touches NAME.heartbeat from a loop while the command runs, and writes
# NAME.status (SUCCESS/FAILED) when it exits.
#
# usage: run.sh DIR NAME CMD [ARGS...]
# env:   HEARTBEAT_SECS (default 10): how often the loop touches the heartbeat.
set -u
dir=$1
name=$2
shift 2
mkdir -p "$dir"
: > "$dir/$name.heartbeat"

# The heartbeat proves the wrapper lives, not that the command progresses.
( while true; do touch "$dir/$name.heartbeat"; sleep "${HEARTBEAT_SECS:-10}"; done ) &
beat=$!

"$@" > "$dir/$name.log" 2>&1 &
pid=$!
echo "$pid" > "$dir/$name.pid"

wait "$pid"
rc=$?
kill "$beat" 2>/dev/null
wait "$beat" 2>/dev/null
if [ "$rc" -eq 0 ]; then
    echo SUCCESS > "$dir/$name.status"
else
    echo FAILED > "$dir/$name.status"
fi
exit "$rc"
