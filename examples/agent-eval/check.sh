#!/bin/sh
# The judge: exits 0 when the task's answer is right. Usage: check.sh TASK
set -u
case $1 in
t1) [ "$(cat hello.txt 2>/dev/null)" = 'hello, world' ] ;;
t2) [ "$(cat sum.txt 2>/dev/null)" = 21 ] ;;
t3) [ "$(cat sorted.txt 2>/dev/null)" = "$(printf 'apple\nfig\npear')" ] ;;
*) echo "unknown task $1" >&2; exit 2 ;;
esac
