#!/bin/bash
# one capture (xdp or the minimal loop) at 2.35 Mpps xdp-live, perf of the receive core
L=/tmp/old-linecap; TAG=$1; shift
ip netns exec pf-rx $L capture --backend xdp --iface pfr --listen 198.18.0.2:9000 --cpus 1 --duration 7s --name pp$TAG "$@" > /tmp/s15/perf-$TAG.out 2>&1 &
sleep 1.5
perf record -q -C 1 -e cpu-clock -g -o /tmp/s15/perf-$TAG.data -- sleep 4 > /dev/null 2>&1 &
ip netns exec pf-tx $L send --backend xdp-live --iface pft --to 198.18.0.2:9000 --size 272 --rate 2.35M --duration 4s --cpus 0 > /tmp/s15/send-$TAG.out 2>&1
wait
