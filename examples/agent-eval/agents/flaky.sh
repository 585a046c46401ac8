#!/bin/sh
# A stand-in agent that is right on t1, wrong on t2 in repeat 2, too slow
# on t2 in repeat 3, and hangs on t3. Usage: flaky.sh TASK REPEAT
set -eu
task=$1 repeat=$2
echo "flaky: reading tasks/$task.md"
echo '{"cost_usd": 0.004}' > "$JOBWATCH_RESULT"
case $task in
t1) echo 'hello, world' > hello.txt ;;
t2)
    if [ "$repeat" = 2 ]; then
        echo 20 > sum.txt            # wrong: the judge says no
    elif [ "$repeat" = 3 ]; then
        while :; do echo "flaky: thinking..."; sleep 0.2; done   # busy past the time limit
    else
        awk '{ s += $1 } END { print s }' data/numbers.txt > sum.txt
    fi
    ;;
t3) exec sleep 600 ;;               # silent, no CPU: hung once stale passes
esac
echo "flaky: done"
