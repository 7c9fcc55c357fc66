import json, glob, sys, statistics as st
# median loss % of each row over the files matching each glob
for pattern in sys.argv[1:]:
    rows = {}
    for f in sorted(glob.glob(pattern)):
        for p in json.load(open(f))['fixed']:
            rows.setdefault(p['row'], []).append(100 * (1 - p['delivered'] / p['sent']))
    print(pattern, {r: f"median {st.median(v):.2f}% ({min(v):.2f}-{max(v):.2f}, n={len(v)})" for r, v in rows.items()})
