#!/bin/bash
# usage: h24-trace.sh OUT  — waits for a new kefu-server (or b0-server) process and records sync syscalls + jbd2 commits until it exits
out=$1; pat=${2:-kefu-server serve}
old=$(pgrep -f "$pat" | tr "\n" " ")
while :; do
  for p in $(pgrep -f "$pat"); do case " $old " in *" $p "*) ;; *) pid=$p; break 2;; esac; done
  sleep 0.2
done
echo "tracing $pid" >&2
perf record -q -o $out -e syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_exit_fsync,jbd2:jbd2_run_stats -a -- bash -c "while kill -0 $pid 2>/dev/null; do sleep 0.5; done" 2>/dev/null
echo "$pid" > $out.pid
