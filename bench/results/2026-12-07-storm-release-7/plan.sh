#!/bin/bash
# The runs of this folder, in order. A (system `Kefu`) is the candidate,
# B (system `Kefu-B`) its parent; the first system of each run is a
# throw-away warm-up (the first slot is slow). usage: plan.sh REPS...
cd "$(dirname "$0")"
export BENCH=/var/tmp/wt69-bins/kefu-bench A=/var/tmp/wt69-bins/kefu-server-cand B=/var/tmp/wt69-bins/kefu-server-base
for r in "$@"; do
  ./run.sh tp-${r}af --systems b1,kefu,kefu-b throughput
  ./run.sh tp-${r}bf --systems b1,kefu-b,kefu throughput
  ./run.sh storm-${r}af --systems b1f,kefu,kefu-b,b1f,b1,node storm
  ./run.sh storm-${r}bf --systems b1f,kefu-b,kefu,b1f,b1,node storm
done
