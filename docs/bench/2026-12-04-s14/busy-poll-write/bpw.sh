#!/bin/bash
# busy-poll testbed: capture with/without write, optionally under perf. usage: bpw.sh TAG "extra capture args" [perf]
L=${L:-/tmp/s14/linecap}; TAG=$1; EXTRA=$2; PERF=$3
P=""; [ -n "$PERF" ] && P="perf record -e cpu-clock -F 4000 -o /tmp/s14/$TAG.perf --"
ip netns exec bpw-rx $P $L capture --backend xdp --iface bpwr --listen 198.18.0.2:9000 --cpus 1 --busy-poll 20 --duration 14s --name bpw $EXTRA > /tmp/s14/$TAG.out 2>&1 &
sleep 1.5
ip netns exec bpw-tx $L send --to 198.18.0.2:9001 --count 1 >/dev/null 2>&1
ip netns exec bpw-tx $L send --backend xdp-live --iface bpwt --to 198.18.0.2:9000 --size 272 --rate 2.35Mpps --duration 10s --cpus 0 > /tmp/s14/$TAG.send 2>&1
wait
sent=$(grep -oE "sent [0-9]+" /tmp/s14/$TAG.send | grep -oE "[0-9]+")
del=$(grep -oE "delivered +[0-9]+" /tmp/s14/$TAG.out | grep -oE "[0-9]+")
echo "$TAG sent $sent delivered $del lost $(python3 -c "print(f'{100*(1-$del/$sent):.2f}%')") | $(grep -E 'drops' /tmp/s14/$TAG.out | tr -s ' ') | $(grep -oE '[0-9]+ ns/packet' /tmp/s14/$TAG.out)"
rm -f /dev/shm/bp.pcap
