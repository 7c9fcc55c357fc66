#!/bin/bash
# alternate old/new builds of `linecap bench --backends xdp,xdp+write`
# usage: ab-bench.sh TAG RATE RUNS ROUNDS EXTRA...
TAG=$1; RATE=$2; RUNS=$3; ROUNDS=$4; shift 4
for i in $(seq $RUNS); do for b in old new; do
  /tmp/$b-linecap bench --backends xdp,xdp+write --at $RATE --rounds $ROUNDS --duration 3s --sender-rounds 0 "$@" --out /tmp/s13/out-$TAG-$b-$i > /tmp/s13/log-$TAG-$b-$i.txt 2>&1
  cp /tmp/s13/out-$TAG-$b-$i/results.json /tmp/s13/$TAG-$b-$i.json
done; done
echo finished
