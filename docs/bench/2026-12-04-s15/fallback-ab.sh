#!/bin/bash
# /tmp/nc-linecap: f15a332 with the pcap sink refusing instead of copying once the spares are out when LC_NO_COPY is set (not committed).
# same binary, the copy fallback on (copy) or off (LC_NO_COPY=1: refused at the hand-off), alternated
TAG=$1; RATE=$2; RUNS=$3; ROUNDS=$4; shift 4
for i in $(seq $RUNS); do for b in copy nocopy; do
  if [ $b = nocopy ]; then export LC_NO_COPY=1; else unset LC_NO_COPY; fi
  /tmp/nc-linecap bench --backends xdp,xdp+write --at $RATE --rounds $ROUNDS --duration 3s --sender-rounds 0 "$@" --out /tmp/s15/out-$TAG-$b-$i > /tmp/s15/log-$TAG-$b-$i.txt 2>&1
  cp /tmp/s15/out-$TAG-$b-$i/results.json /tmp/s15/$TAG-$b-$i.json
done; done
unset LC_NO_COPY
echo finished $(date -u +%T)
