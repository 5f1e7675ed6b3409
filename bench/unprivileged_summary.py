#!/usr/bin/env python3
"""One line for a /api/v1/diagnosis answer read on stdin (bench/unprivileged.sh).

Prints the findings as `CAUSE NODES ZONES` joined by `; `, `healthy` when there are none,
or `no answer` when stdin is not JSON (e.g. curl timed out).

    curl -s http://ADDR/api/v1/diagnosis | python3 bench/unprivileged_summary.py
"""
import json,sys
try: d=json.load(sys.stdin)
except Exception: print('no answer'); sys.exit()
print('; '.join(f"{f['cause']} {','.join(f.get('nodes',[]))} {','.join(f.get('zones',[]))}".strip() for f in d['findings']) or 'healthy')
