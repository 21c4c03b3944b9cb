#!/bin/bash
# Extra repetitions of one half of a pair (after pair.sh): reps FROM..TO.
# usage: more.sh tp|lat TAG BEFORE_SHORT AFTER_SHORT FROM TO
echo -15 > /proc/self/autogroup
KIND=$1; TAG=$2; B=/var/tmp/kt-bins/kefu-server-$3; A=/var/tmp/kt-bins/kefu-server-$4
export BENCH=/var/tmp/kt-bins/kefu-bench
cd "$(dirname "$0")"
echo "# $TAG ($KIND, reps $5-$6): before $3 = Kefu-B, after $4 = Kefu" >> runs.log
for r in $(seq $5 $6); do
  for order in kefu,kefu-b kefu-b,kefu; do
    o=$([ $order = kefu,kefu-b ] && echo af || echo bf)
    if [ $KIND = tp ]; then
      ./run.sh $TAG-tp-$r$o --server-bin $A --server-bin-b $B --systems $order throughput
    else
      ./run.sh $TAG-lat-$r$o --server-bin $A --server-bin-b $B --systems $order latency --conversations 1000
    fi
  done
done
