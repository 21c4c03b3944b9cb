#!/bin/bash
# One kefu-bench run with this shell's autogroup at nice -15 (a shared
# machine); start, end and the 1/5/15-min load average appended to runs.log.
# usage: run.sh NAME kefu-bench-args...   (BENCH, A, B: see plan.sh)
echo -15 > /proc/self/autogroup
NAME=$1; shift
echo "$NAME start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) :: $*" >> runs.log
"$BENCH" --server-bin "$A" --server-bin-b "$B" "$@" --json "$NAME.json" > "$NAME.txt" 2> "$NAME.err"
rc=$?
echo "$NAME end   $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) rc $rc" >> runs.log
