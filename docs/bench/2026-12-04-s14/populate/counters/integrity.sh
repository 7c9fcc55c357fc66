#!/bin/bash
# usage: integrity.sh BUILD TAG : capture xdp --write at 2.35 Mpps on pf, then read the file back with --verify seq
L=$1; TAG=$2; F=/dev/shm/int-$TAG.pcap
rm -f $F
ip netns exec pf-rx $L capture --backend xdp --iface pfr --listen 0.0.0.0:9000 --cpus 1 --writer-cpus 0 --duration 7s --name int$TAG --write $F > /tmp/s14/int-$TAG.out 2>&1 &
sleep 1.5
ip netns exec pf-tx /tmp/s14/linecap-head send --backend xdp-live --iface pft --to 198.18.0.2:9000 --size 272 --rate 2.35Mpps --duration 4s --cpus 0 > /dev/null 2>&1
wait
grep -E "delivered|drops" /tmp/s14/int-$TAG.out | cut -c1-160
$L capture --read $F --verify seq 2>&1 | grep -E "delivered|verify" | cut -c1-200
rm -f $F
