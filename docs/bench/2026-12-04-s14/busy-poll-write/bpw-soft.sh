#!/bin/bash
# bpw.sh plus per-CPU NET_RX softirqs, TLB shootdowns and function-call IPIs over the run.
TAG=$1; EXTRA=$2
snap() { echo "$(grep NET_RX /proc/softirqs | awk '{print $2, $3}') $(grep TLB: /proc/interrupts | awk '{print $2, $3}') $(grep CAL: /proc/interrupts | awk '{print $2, $3}')"; }
a=($(snap)); /tmp/s14/bpw.sh $TAG "$EXTRA"; b=($(snap))
echo "$TAG NET_RX cpu0 +$((b[0]-a[0])) cpu1 +$((b[1]-a[1])) | TLB cpu0 +$((b[2]-a[2])) cpu1 +$((b[3]-a[3])) | CAL cpu0 +$((b[4]-a[4])) cpu1 +$((b[5]-a[5]))"
