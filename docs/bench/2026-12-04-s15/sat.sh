#!/bin/bash
# Built from f15a332 as /tmp/old-linecap.
# xdp against the minimal AF_XDP loop at the saturated kernel-sender points, many rounds
L=/tmp/old-linecap
for napi in fifo normal; do
  F="--xdp-live"; [ $napi = normal ] && F="$F --napi-normal"
  echo "== $napi $(date -u +%H:%M:%S)"
  $L bench --backends xdp-minimal,xdp --at 2.35Mpps --rounds 10 --duration 3s --sender-rounds 0 $F --out /tmp/s15/sat-$napi > /tmp/s15/sat-$napi.log 2>&1 || echo FAILED
  cp /tmp/s15/sat-$napi/results.json /tmp/s15/sat-$napi.json
done
echo "done $(date -u +%H:%M:%S)"
