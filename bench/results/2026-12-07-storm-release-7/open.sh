#!/bin/bash
# Opening 5,000 conversations (the latency scenario's opening phase,
# `open s`) for Kefu, Kefu-B and B1 in one run, B1 first as the warm-up.
cd "$(dirname "$0")"
export BENCH=/var/tmp/wt69-bins/kefu-bench A=/var/tmp/wt69-bins/kefu-server-cand B=/var/tmp/wt69-bins/kefu-server-base
for r in "$@"; do
  ./run.sh open-${r}af --systems b1,kefu,kefu-b,b1 latency --conversations 5000
  ./run.sh open-${r}bf --systems b1,kefu-b,kefu,b1 latency --conversations 5000
done
