#!/usr/bin/env python3
# edgecover.py CONTROL_FILE [CAP]: from a libFuzzer `-merge=1 -merge_control_file=` run, pick inputs
# greedily by the coverage edges they add (largest gain first, smaller file on ties), at most CAP;
# prints the chosen paths, and on stderr how many edges they keep. Used by run-all.sh merge.
import sys
CAP=int(sys.argv[2]) if len(sys.argv)>2 else 10**9
ctl=open(sys.argv[1]).read().split('\n')
n=int(ctl[0]); paths=ctl[2:2+n]
cov={}; size={}
for line in ctl[2+n:]:
    p=line.split()
    if not p: continue
    if p[0]=='STARTED': size[int(p[1])]=int(p[2])
    elif p[0]=='COV': cov[int(p[1])]=set(p[2:])
covered=set(); chosen=[]
remaining=dict(cov)
while True:
    best=None; gain=0
    for i,c in remaining.items():
        g=len(c-covered)
        if g>gain or (g==gain and g>0 and size.get(i,0)<size.get(best,0)): best,gain=i,g
    if not best and best!=0 or gain==0: break
    if len(chosen)>=CAP: break
    chosen.append(best); covered|=remaining.pop(best)
total=set().union(*cov.values()) if cov else set()
print(f"# {len(chosen)} files cover {len(covered)}/{len(total)} edges", file=sys.stderr)
for i in chosen: print(paths[i])
