#!/usr/bin/env python3
"""The paced client of bench/compare.sh: drives prometheus-blackbox-exporter's /probe.

16 worker threads share the addresses; each address is requested once every INTERVAL_S
seconds, spread evenly, on keep-alive connections to the exporter at 127.0.0.1:9115. Prints
the number of probes the exporter reported successful (`probe_success 1`).

    python3 bench/compare_pace.py ADDRS_FILE MODULE URL_FMT INTERVAL_S SECONDS

ADDRS_FILE: whitespace-separated addresses; MODULE: a blackbox module (icmp, http_2xx);
URL_FMT: the probe target, `{}` standing for the address (e.g. `http://{}:19464/ping`).
compare.sh runs it inside its network namespace (`ip netns exec`).
"""
import http.client, sys, threading, time
addrs = open(sys.argv[1]).read().split()
module, url_fmt, iv, secs = sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
threads = 16
done = [0] * threads
def worker(k):
    mine = addrs[k::threads]
    gap = iv / max(1, len(mine))
    c = http.client.HTTPConnection("127.0.0.1", 9115, timeout=5)
    t = time.monotonic() + gap * k / threads
    end = time.monotonic() + secs
    i = 0
    while time.monotonic() < end:
        a = mine[i % len(mine)]; i += 1
        target = url_fmt.format(a)
        try:
            c.request("GET", f"/probe?module={module}&target={target}")
            body = c.getresponse().read()
            if b"probe_success 1" in body:
                done[k] += 1
        except Exception:
            c = http.client.HTTPConnection("127.0.0.1", 9115, timeout=5)
        t += gap
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sum(done))
