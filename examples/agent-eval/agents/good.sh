#!/bin/sh
# A stand-in agent that solves every task. Usage: good.sh TASK REPEAT
set -eu
task=$1
echo "good: reading tasks/$task.md"
case $task in
t1) echo 'hello, world' > hello.txt ;;
t2) awk '{ s += $1 } END { print s }' data/numbers.txt > sum.txt ;;
t3) sort data/words.txt > sorted.txt ;;
esac
# What it cost, where the plan's `cost: cost_usd` reads it.
echo '{"cost_usd": 0.012}' > "$JOBWATCH_RESULT"
echo "good: done"
