import json, sys, glob, statistics as st
# Usage: python3 mx.py 'GLOB'  (results.json files of `linecap bench --at`, one point each)
# For each point and each pair (row against its baseline of the same round): the delivered
# share's ratio (median and range over rounds), the receive thread's ns/packet ratio (median),
# the median loss of both, and the receive core's steal range.
PAIRS = [("Default", "PlainRecvmmsg"), ("Xdp", "XdpMinimal"), ("Afpacket", "Tcpdump")]
def med(v): return st.median(v) if v else float('nan')
for f in sorted(glob.glob(sys.argv[1])):
    pts = json.load(open(f))['fixed']
    cells, steal = [], [p['rx_core_steal_pct'] for p in pts]
    by = {(p['row'], p['round']): p for p in pts}
    rounds = sorted({p['round'] for p in pts})
    for row, base in PAIRS:
        share, thread, la, lb = [], [], [], []
        pairs = [(by[row, rd], by[base, rd]) for rd in rounds if (row, rd) in by and (base, rd) in by]
        for a, b in pairs:
            share.append((a['delivered'] / a['sent']) / (b['delivered'] / b['sent']))
            thread.append(a['rx_threads_ns_per_packet'] / b['rx_threads_ns_per_packet'])
            la.append(100 * (1 - a['delivered'] / a['sent']))
            lb.append(100 * (1 - b['delivered'] / b['sent']))
        if share:
            cells.append(f"{row}/{base} {med(share):.2f}x ({min(share):.2f}-{max(share):.2f}) thread {med(thread):.2f} lost {med(la):.3g}% vs {med(lb):.3g}%")
    offered = med([p['offered_pps'] for p in pts]) / 1e3
    print(f"{f.split('/')[-1]}: offered {offered:.0f} k, steal {min(steal):.1f}-{max(steal):.1f}% | " + " | ".join(cells))
