#!/bin/bash
# perf record -g of the release server for its whole life under the storm
# load; read the storm's second half with
#   perf report -i NAME.data --time 40%-100% --no-children --sort dso,sym -g none
# usage: BENCH=path/to/kefu-bench profile.sh SERVER_BIN NAME
echo -15 > /proc/self/autogroup
BIN=$1; OUT=$2
"$BENCH" --server-bin "$BIN" --systems kefu storm > "$OUT.txt" 2> "$OUT.err" &
B=$!
P=
while [ -z "$P" ]; do
  for c in $(pgrep -P $B); do
    [ "$(tr '\0' '\n' < /proc/$c/cmdline | sed -n 2p)" = serve ] && P=$c
  done
  sleep 0.2
done
perf record -F 499 -g -p "$P" -o "$OUT.data" 2> "$OUT.perf.err" &
wait $B
