#!/bin/bash
# The issue's writing measurement: busy-poll testbed, xdp --busy-poll 20, xdp-live 2.35 Mpps 10 s;
# alternates: new without write, old with write, new with write.  usage: bp.sh ROUNDS
N=${1:-2}
/tmp/new-linecap testbed up --name bpw --placement busy-poll > /dev/null 2>&1
for r in $(seq $N); do for cfg in "run:" "old:w" "run:w"; do b=${cfg%%:*}; w=${cfg##*:}
L=/tmp/$b-linecap; W=""; [ -n "$w" ] && W="--write /dev/shm/bp.pcap"
(ip netns exec bpw-rx $L capture --backend xdp --iface bpwr --listen 198.18.0.2:9000 --cpus 1 --busy-poll 20 --duration 14s --name bpw $W > /tmp/s13/bp-out.txt 2>&1 &); sleep 1.5

ip netns exec bpw-tx /tmp/run-linecap send --to 198.18.0.2:9001 --count 1 >/dev/null 2>&1
ip netns exec bpw-tx /tmp/run-linecap send --backend xdp-live --iface bpwt --to 198.18.0.2:9000 --size 272 --rate 2.35Mpps --duration 10s --cpus 0 > /tmp/s13/bp-send.txt 2>&1
sleep 3.5
sent=$(grep -oE "sent [0-9]+" /tmp/s13/bp-send.txt | grep -oE "[0-9]+")
del=$(grep -oE "delivered +[0-9]+" /tmp/s13/bp-out.txt | grep -oE "[0-9]+")
echo "r$r $b ${w:+write} sent $sent delivered $del lost $(python3 -c "print(f'{100*(1-$del/$sent):.2f}%')") | $(grep -E 'drops' /tmp/s13/bp-out.txt | tr -s ' ') | $(grep -oE '[0-9]+ ns/packet' /tmp/s13/bp-out.txt)"
rm -f /dev/shm/bp.pcap; done; done
/tmp/new-linecap testbed down --name bpw > /dev/null 2>&1
