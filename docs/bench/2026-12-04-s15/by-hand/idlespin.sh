#!/bin/bash
# one xdp capture with or without a SCHED_IDLE spinner on the receive core
L=/tmp/old-linecap; TAG=$1; SPIN=$2; shift 2
SP=
if [ $SPIN = 1 ]; then taskset -c 1 chrt -i 0 sh -c 'while :; do :; done' & SP=$!; fi
ip netns exec pf-rx $L capture --backend xdp --iface pfr --listen 198.18.0.2:9000 --cpus 1 --duration 6s --name is$TAG "$@" > /tmp/s15/is-$TAG.out 2>&1 &
CP=$!
sleep 1.5
ip netns exec pf-tx $L send --backend xdp-live --iface pft --to 198.18.0.2:9000 --size 272 --rate 2.35M --duration 4s --cpus 0 > /tmp/s15/issend-$TAG.out 2>&1
wait $CP
[ -n "$SP" ] && kill $SP
echo "$TAG spin=$SPIN $(grep delivered /tmp/s15/is-$TAG.out) | $(grep -o 'xsk_no_fill_frame [0-9]*' /tmp/s15/is-$TAG.out) | $(grep -o 'cpu .*' /tmp/s15/is-$TAG.out)"
