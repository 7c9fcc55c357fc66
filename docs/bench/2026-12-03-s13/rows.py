import json,sys,glob
def walk(o):
    if isinstance(o,dict):
        if 'row' in o and 'rx_threads_ns_per_packet' in o: yield o
        for v in o.values(): yield from walk(v)
    elif isinstance(o,list):
        for v in o: yield from walk(v)
for f in sorted(glob.glob(sys.argv[1])):
    for o in walk(json.load(open(f))):
        lost = 1 - o['delivered']/o['sent'] if o['sent'] else 0
        print(f"{f.split('/')[-1]:18} r{o['round']} {o['row']:14} offered {o['offered_pps']/1e3:7.0f}k  lost {100*lost:5.1f}%  thread {o['rx_threads_ns_per_packet']:6.0f} ns  core {o['rx_core_ns_per_packet']:5.0f}  steal {o['rx_core_steal_pct']:4.1f}")
