#!/bin/bash
# Every receiver against its plainest peer: 2 NAPI priorities x 2 senders x 3 rates.
L=/tmp/s14/linecap; OUT=/work/main/docs/bench/2026-12-04-s14
for napi in normal fifo; do for sender in xdp-live sendmmsg; do for rate in 250kpps 1Mpps 2.35Mpps; do
  F=""; [ $napi = normal ] && F="$F --napi-normal"; [ $sender = xdp-live ] && F="$F --xdp-live"
  echo "== $napi $sender $rate $(date -u +%H:%M:%S)"
  $L bench --backends plain-recvmmsg,default,xdp-minimal,xdp,tcpdump,afpacket --at $rate --rounds 3 --duration 2s --sender-rounds 0 $F --out /tmp/s14/mx > /tmp/s14/mx.log 2>&1 || { echo FAILED; tail -3 /tmp/s14/mx.log; }
  cp /tmp/s14/mx/results.json $OUT/mx-$napi-$sender-$rate.json
done; done; done
echo "done $(date -u +%H:%M:%S)"
