import json,sys
for t in sys.argv[1:]:
    j=json.load(open(f'/tmp/s14/lc-{t}.json'))
    c={st['name']:dict(st['counters']) for st in j[0]['stages']}
    rx=c['rx.0']; q=c['pcap.queue.0']
    ns=(rx['cpu_user_ns']+rx['cpu_sys_ns'])/rx['packets']
    print(f"{t}: rx {rx['packets']/1e6:.2f} M, thread {ns:.0f} ns/pkt, kernel drops {rx['kernel_drops']/1e6:.2f} M | pcap taken {q['packets']/1e6:.2f} M, lent {q['lent']/1e6:.2f} M, copied {(q['packets']-q['lent'])/1e3:.0f} k, refused {q['ring_full_drops']/1e6:.2f} M")
