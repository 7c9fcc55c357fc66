#!/bin/bash
# usage: lentcount.sh BUILD TAG : xdp+write on the pf testbed (normal NAPI), 2.35 Mpps xdp-live for 4 s; prints the pcap queue's packets, lent, drops
L=$1; TAG=$2
rm -f /dev/shm/lc.pcap
ip netns exec pf-rx $L capture --backend xdp --iface pfr --listen 0.0.0.0:9000 --cpus 1 --writer-cpus 0 --duration 7s --name lc$TAG --write /dev/shm/lc.pcap > /tmp/s14/lc-$TAG.out 2>&1 &
sleep 1.5
ip netns exec pf-tx /tmp/s14/linecap-head send --backend xdp-live --iface pft --to 198.18.0.2:9000 --size 272 --rate 2.35Mpps --duration 4s --cpus 0 > /tmp/s14/lc-$TAG.send 2>&1
wait
ip netns exec pf-rx $L stats --json lc$TAG > /tmp/s14/lc-$TAG.json 2>&1 || $L stats --json lc$TAG > /tmp/s14/lc-$TAG.json 2>&1
rm -f /dev/shm/lc.pcap
python3 - "$TAG" <<'PY'
import json,sys
t=sys.argv[1]
j=json.load(open(f'/tmp/s14/lc-{t}.json'))
def walk(o,pre=''):
    if isinstance(o,dict):
        for k,v in o.items(): yield from walk(v,pre+k+'.')
    elif isinstance(o,list):
        for i,v in enumerate(o): yield from walk(v,pre+str(i)+'.')
    else: yield pre[:-1],o
vals={k:v for k,v in walk(j)}
keys=[k for k in vals if 'pcap' in k and any(x in k for x in ('queue.packets','queue.lent','ring_full_drops','writer.packets'))]
print(t, {k.split('pcap.')[-1]:vals[k] for k in keys})
PY
grep -E "delivered|rx  |cpu" /tmp/s14/lc-$TAG.out | cut -c1-120
