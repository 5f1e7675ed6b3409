#!/usr/bin/env python3
"""The summary bench/soak.sh prints at the end of a soak, read from its CSV.

Per agent (only the samples of its last process, since a restarted agent starts over):
first, last and max of RSS, open fds, threads and Tokio tasks, and the least-squares slope
per hour over the second half of the run; then node-1's diagnosis latency (max, median)
and the HTTP statuses of its POST /api/v1/probe calls.

    python3 bench/soak_report.py OUT_CSV

OUT_CSV has the header t_s,node,pid,rss_kib,fds,threads,tasks,diag_ms,probe_status.
"""
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["node"], []).append(r)
def slope(xs, ys):
    n = len(xs)
    if n < 2: return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 3600 if den else 0.0
print(f"soak: {len(rows)} samples in {sys.argv[1]}")
print(f"{'node':7} {'pid':>7} {'n':>4} {'figure':8} {'first':>8} {'last':>8} {'max':>8} {'slope/h (2nd half)':>19}")
for node, rs in sorted(by.items()):
    last_pid = rs[-1]["pid"]
    rs = [r for r in rs if r["pid"] == last_pid]
    for fig in ("rss_kib", "fds", "threads", "tasks"):
        pts = [(int(r["t_s"]), float(r[fig])) for r in rs if r[fig]]
        if not pts: continue
        half = [p for p in pts if p[0] >= (pts[0][0] + pts[-1][0]) / 2]
        s = slope([p[0] for p in half], [p[1] for p in half])
        ys = [p[1] for p in pts]
        # A restarted agent's last process may have lived a minute: no trend from a few points.
        sl = f"{s:19.1f}" if len(half) >= 15 else f"{'- (few samples)':>19}"
        print(f"{node:7} {last_pid:>7} {len(pts):>4} {fig:8} {ys[0]:8.0f} {ys[-1]:8.0f} {max(ys):8.0f} {sl}")
d = [int(r["diag_ms"]) for r in rows if r["node"] == "node-1"]
codes = {}
for r in rows:
    if r["node"] == "node-1": codes[r["probe_status"]] = codes.get(r["probe_status"], 0) + 1
if d: print(f"diagnosis on node-1: max {max(d)} ms, median {sorted(d)[len(d)//2]} ms; POST /api/v1/probe statuses: {codes}")
