import json,sys,glob,statistics as st
# Usage: python3 summarize.py PREFIX...  (in this folder)
# Each linecap row against the plain recvmmsg loop of the same round: the ratio of
# delivered fractions, of delivered packets per second, and of offered rates (medians).
for pre in sys.argv[1:]:
  for pt in ['normal-xdp-live-2.35Mpps','fifo-sendmmsg-2.35Mpps']:
    for row in ['Recvmmsg','Default']:
      fr=[];pp=[];off=[]
      for f in glob.glob(f'{pre}-*-{pt}.json'):
        pts=json.load(open(f))['fixed']
        for rd in set(p['round'] for p in pts):
          a=[p for p in pts if p['row']==row and p['round']==rd]; c=[p for p in pts if p['row']=='PlainRecvmmsg' and p['round']==rd]
          if not a or not c: continue
          a=a[0];c=c[0]
          fr.append((a['delivered']/a['sent'])/(c['delivered']/c['sent'])); pp.append(a['delivered_pps']/c['delivered_pps']); off.append(a['offered_pps']/c['offered_pps'])
      if fr: print(f"{pre:6} {pt:26} {row:9} n={len(fr):2} fraction {st.median(fr):.3f}  delivered/s {st.median(pp):.3f} ({min(pp):.2f}-{max(pp):.2f})  offered {st.median(off):.3f}")
