#!/bin/bash
L=$1; TAG=$2
rm -f /dev/shm/lc.pcap
ip netns exec pf-rx $L capture --backend xdp --iface pfr --listen 0.0.0.0:9000 --cpus 1 --writer-cpus 0 --duration 7s --name lc$TAG --write /dev/shm/lc.pcap > /tmp/s14/lc-$TAG.out 2>&1 &
sleep 1.5
ip netns exec pf-tx /tmp/s14/linecap-head send --backend xdp-live --iface pft --to 198.18.0.2:9000 --size 272 --rate 2.35Mpps --duration 4s --cpus 0 > /tmp/s14/lc-$TAG.send 2>&1 &
for i in $(seq 12); do sleep 0.4; $L stats --json lc$TAG 2>/dev/null | python3 -c "
import json,sys
j=json.load(sys.stdin); c={st['name']:dict(st['counters']) for st in j[0]['stages']}
q=c['pcap.queue.0']; rx=c['rx.0']
print(f\"rx {rx['packets']/1e6:.2f} taken {q['packets']/1e6:.3f} lent {q['lent']/1e6:.3f} copied {(q['packets']-q['lent'])/1e3:.0f}k refused {q['ring_full_drops']/1e6:.3f} chunks {q['chunks']} written {c['pcap.writer.0']['packets']/1e6:.3f}\")"; done
wait; rm -f /dev/shm/lc.pcap
