#!/bin/bash
# A same-run pair: AFTER as Kefu (--server-bin), BEFORE as Kefu-B
# (--server-bin-b); throughput (os + fsync) and latency over 1,000 chats,
# both orders (af: after first, bf: before first), REPS repetitions.
# LAT=0 skips the latency runs (the bisection of the fsync drop).
# usage: [LAT=0] pair.sh TAG BEFORE_SHORT AFTER_SHORT [REPS]
echo -15 > /proc/self/autogroup
TAG=$1; B=/var/tmp/kt-bins/kefu-server-$2; A=/var/tmp/kt-bins/kefu-server-$3; REPS=${4:-2}
export BENCH=/var/tmp/kt-bins/kefu-bench
cd "$(dirname "$0")"
echo "# $TAG: before $2 = Kefu-B, after $3 = Kefu" >> runs.log
for r in $(seq 1 $REPS); do
  for order in kefu,kefu-b kefu-b,kefu; do
    o=$([ $order = kefu,kefu-b ] && echo af || echo bf)
    ./run.sh $TAG-tp-$r$o --server-bin $A --server-bin-b $B --systems $order throughput
    [ "${LAT:-1}" = 0 ] || ./run.sh $TAG-lat-$r$o --server-bin $A --server-bin-b $B --systems $order latency --conversations 1000
  done
done
