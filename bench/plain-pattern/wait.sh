#!/usr/bin/env bash
# The plain pattern's poll loop: check for NAME.status every INTERVAL
# seconds; call the job hung when NAME.heartbeat is older than STALE seconds.
#
# usage: wait.sh DIR NAME [INTERVAL_SECS (15)] [STALE_SECS (60)]
# exit:  0 SUCCESS, 1 FAILED, 3 hung (stale heartbeat)
set -u
dir=$1
name=$2
interval=${3:-15}
stale=${4:-60}
while true; do
    if [ -e "$dir/$name.status" ]; then
        read -r word < "$dir/$name.status"
        [ "$word" = SUCCESS ] && exit 0
        exit 1
    fi
    beat=$(stat -c %Y "$dir/$name.heartbeat" 2>/dev/null || echo 0)
    if [ $(( $(date +%s) - beat )) -gt "$stale" ]; then
        echo "hung: no heartbeat for more than ${stale}s" >&2
        exit 3
    fi
    sleep "$interval"
done
