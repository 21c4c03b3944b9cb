#!/bin/bash
# usage: h24-kefu-series.sh BINDIR PREFIX ROUNDS VARIANTS...   variant: base | shim | knobs:a,b
bindir=$1; prefix=$2; rounds=$3; shift 3
out=/work/wt24/bench/results/2026-12-07-storm-release-3
echo -15 > /proc/self/autogroup
cd /work/wt24
for round in $(seq 1 $rounds); do
  for v in "$@"; do
    name=$prefix-$round-${v//[:,]/+}
    trace-syncs.sh /tmp/h24-$name.perf "kefu-server serve --data-dir" & tr=$!
    sleep 1
    e=""
    case $v in shim) e="LD_PRELOAD=/var/tmp/h24-shim/nosqlsync.so";; knobs:*) e="KEFUEXP_LOG=${v#knobs:}";; esac
    echo "run $name (autogroup nice -15) bin=$bindir systems=${SYSTEMS:-kefu} $e start $(date -u +%H:%M:%S) $(cat /proc/loadavg)" >> $out/runs.log
    env $e $bindir/kefu-bench --server-bin $bindir/kefu-server storm --systems ${SYSTEMS:-kefu} --json $out/$name.json > $out/$name.txt 2> /tmp/h24-$name.err
    echo "run $name end $(date -u +%H:%M:%S) $(cat /proc/loadavg) rc=$?" >> $out/runs.log
    wait $tr
    python3 bench/results/2026-12-07-storm-release-3/syncs.py /tmp/h24-$name.perf $(cat /tmp/h24-$name.perf.pid) > $out/$name.syncs.txt 2>&1
  done
done
