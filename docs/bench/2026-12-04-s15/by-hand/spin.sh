#!/bin/bash
# one xdp capture, the receive thread waiting in poll(2) or spinning with sched_yield (LC_SPIN)
L=/tmp/spin-linecap; TAG=$1; SPIN=$2
if [ $SPIN = 1 ]; then export LC_SPIN=1; else unset LC_SPIN; fi
ip netns exec pf-rx $L capture --backend xdp --iface pfr --listen 198.18.0.2:9000 --cpus 1 --duration 6s --name sp$TAG > /tmp/s15/sp-$TAG.out 2>&1 &
CP=$!
sleep 1.5
perf record -q -C 1 -e cpu-clock -o /tmp/s15/sp-$TAG.data -- sleep 3 > /dev/null 2>&1 &
env -u LC_SPIN ip netns exec pf-tx $L send --backend xdp-live --iface pft --to 198.18.0.2:9000 --size 272 --rate 2.35M --duration 4s --cpus 0 > /tmp/s15/spsend-$TAG.out 2>&1
wait $CP; wait
idle=$(perf report -i /tmp/s15/sp-$TAG.data --no-children --sort comm -q 2>/dev/null | grep swapper | awk '{print $1}')
echo "$TAG spin=$SPIN $(grep delivered /tmp/s15/sp-$TAG.out) | $(grep -o 'xsk_no_fill_frame [0-9]*' /tmp/s15/sp-$TAG.out | head -1) | $(grep -o 'iface_rx_dropped [0-9]*' /tmp/s15/sp-$TAG.out) | idle $idle | $(grep -o 'cpu .*' /tmp/s15/sp-$TAG.out)"
