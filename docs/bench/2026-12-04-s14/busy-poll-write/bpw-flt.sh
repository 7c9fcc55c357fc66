#!/bin/bash
# bpw.sh with the receive thread's minor faults and voluntary switches sampled over the run.
TAG=$1; EXTRA=$2; L=${L:-/tmp/s14/linecap}
ip netns exec bpw-rx $L capture --backend xdp --iface bpwr --listen 198.18.0.2:9000 --cpus 1 --busy-poll 20 --duration 12s --name bpw $EXTRA > /tmp/s14/$TAG.out 2>&1 &
sleep 1.5
P=$(pgrep -f "linecap capture" | head -1); RX=$(grep -l rx0 /proc/$P/task/*/comm | cut -d/ -f5)
f0=$(awk '{print $10}' /proc/$P/task/$RX/stat); n0=$(grep NET_RX /proc/softirqs | awk '{print $2}')
ip netns exec bpw-tx $L send --to 198.18.0.2:9001 --count 1 >/dev/null 2>&1
ip netns exec bpw-tx $L send --backend xdp-live --iface bpwt --to 198.18.0.2:9000 --size 272 --rate 2.35Mpps --duration 4s --cpus 0 > /tmp/s14/$TAG.send 2>&1 &
for i in 1 2 3 4 5 6; do sleep 1; echo "t+$i rx0 minflt +$(( $(awk '{print $10}' /proc/$P/task/$RX/stat) - f0 )) NET_RX cpu0 +$(( $(grep NET_RX /proc/softirqs | awk '{print $2}') - n0 ))"; done
wait; grep -E "delivered|drops" /tmp/s14/$TAG.out | cut -c1-160; rm -f /dev/shm/bp.pcap
