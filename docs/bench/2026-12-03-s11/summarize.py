import json, sys, glob, math, statistics as st
# Usage: python3 summarize.py ROW BASELINE GLOB...  (results.json files of `linecap bench --at`)
# For each group of files (one GLOB each): the row against its baseline of the same round:
# delivered share ratio, receive-thread and receive-core ns/packet ratios (median, geometric
# mean, range), and the offered rate ratio.
row, base = sys.argv[1], sys.argv[2]
def gmean(v): return math.exp(sum(math.log(x) for x in v) / len(v))
for pattern in sys.argv[3:]:
    share, thread, core, offered, steal = [], [], [], [], []
    for f in sorted(glob.glob(pattern)):
        pts = json.load(open(f))['fixed']
        for rd in sorted(set(p['round'] for p in pts)):
            a = [p for p in pts if p['row'] == row and p['round'] == rd]
            b = [p for p in pts if p['row'] == base and p['round'] == rd]
            if not a or not b:
                continue
            a, b = a[0], b[0]
            share.append((a['delivered'] / a['sent']) / (b['delivered'] / b['sent']))
            thread.append(a['rx_threads_ns_per_packet'] / b['rx_threads_ns_per_packet'])
            core.append(a['rx_core_ns_per_packet'] / b['rx_core_ns_per_packet'])
            offered.append(a['offered_pps'] / b['offered_pps'])
            steal += [a['rx_core_steal_pct'], b['rx_core_steal_pct']]
    if not share:
        continue
    def line(v): return f"{st.median(v):.3f} (gm {gmean(v):.3f}, {min(v):.2f}-{max(v):.2f})"
    print(f"{pattern}: n={len(share)}  share {line(share)}  thread {line(thread)}  core {line(core)}"
          f"  offered {st.median(offered):.3f}  steal {min(steal):.1f}-{max(steal):.1f}%")
