#!/usr/bin/env python3
"""bench/scale-prometheus.sh's driver: a fleet emulator and a real Prometheus per cluster size.

For each N: the emulator (`meshprobe plan --simulate --serve`, 3 zones, TARGETS target pods, the
agents' defaults: 5 s interval, 60 s window, sampled plan, --pair-metrics auto) with node-down, cni,
partition, route, policy (on a target), loss (30 % at a node) and mtu (a 1,400-byte black hole at
a node) switched on in turn (ON seconds each, longer where an alert's `for` needs it, OFF
seconds apart, after WARM seconds); Debian's Prometheus scraping one target per zone at SCRAPE
with the shipped rules; `meshprobe diagnose --prometheus` every POLL seconds. Per fault: seconds
from its start to the first exactly right answer (cause and place) and to the matching alert
firing, and the distinct wrong answers seen.
Then CLEAN seconds without faults: polls with any finding or firing alert. At the end: the
queries one diagnose makes (Prometheus' own request counter), diagnose wall times, Prometheus'
head series and RSS, the emulator's scrape size.

    scale_prometheus.py BIN N [N ...]    (environment: see the defaults below)
"""
import atexit
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRAPE = os.environ.get("SCRAPE", "30s")
INTERVAL = os.environ.get("INTERVAL", "5s")
WINDOW = os.environ.get("WINDOW", "60s")
WARM = int(os.environ.get("WARM", "150"))
ON = int(os.environ.get("ON", "180"))
OFF = int(os.environ.get("OFF", "150"))
CLEAN = int(os.environ.get("CLEAN", "600"))
POLL = float(os.environ.get("POLL", "5"))
FAULTS = os.environ.get("FAULTS", "node-down,cni,partition,route,policy,loss,mtu").split(",")
# Target pods every agent probes (the emulator's --targets; policy acts on the second).
TARGETS = int(os.environ.get("TARGETS", "3"))
# SAVE_WRONG=DIR: every diagnose also writes what it rested on (--save-inputs; tens of MB at
# 5,000 nodes, so off by default), and the first 3 wrong answers per fault are kept in DIR as
# wrong-FAULT-SECONDS.json, for `meshprobe diagnose --results FILE`.
SAVE_WRONG = os.environ.get("SAVE_WRONG", "")
if SAVE_WRONG:
    os.makedirs(SAVE_WRONG, exist_ok=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_http(url, what, limit=300):
    t0 = time.time()
    while True:
        try:
            return get(url)
        except Exception:
            if time.time() - t0 > limit:
                sys.exit(f"{what} not answering at {url} after {limit}s (logs in the work directory)")
            time.sleep(0.5)


def name(i, n):
    return f"node-{i:0{max(5, len(str(n)))}d}"


STARTED = []


@atexit.register
def _stop_all():
    for p in STARTED:
        stop(p)


def emulator(bin_, n, port, injects, log):
    args = [bin_, "plan", "--simulate", "--serve", f"127.0.0.1:{port}", "--nodes", str(n),
            "--zones", "3", "--interval", INTERVAL, "--window", WINDOW, "--targets", str(TARGETS)]
    for i in injects:
        args += ["--inject", i]
    p = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
    STARTED.append(p)
    return p


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss_mib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out


def promq(prom, q):
    body = get(f"http://{prom}/api/v1/query?query={urllib.parse.quote(q)}")
    return json.loads(body)["data"]["result"]


def run_n(bin_, n, work):
    emu_port, prom_port = free_port(), free_port()
    emu_addr, prom = f"127.0.0.1:{emu_port}", f"127.0.0.1:{prom_port}"
    log = open(os.path.join(work, f"emulator-{n}.log"), "w")
    # The plan's peers of node 1, for a route fault on a probed pair.
    p = emulator(bin_, n, emu_port, [], log)
    wait_http(f"http://{emu_addr}/", "emulator")
    peer = json.loads(get(f"http://{emu_addr}/peers/{name(1, n)}"))[0]
    stop(p)
    places = {
        "node-down": (f"node-down:{name(n // 5, n)}", "node_down", [name(n // 5, n)], [],
                      "MeshprobeNodeDown", {"dst": name(n // 5, n)}),
        "cni": (f"cni:{name(n // 3, n)}", "cni", [name(n // 3, n)], [],
                "MeshprobeNodePodNetworkIsolated", {"dst": name(n // 3, n)}),
        "partition": ("partition:zone-a,zone-b", "vpc", [], ["zone-a", "zone-b"],
                      "MeshprobeZonePartition", {}),
        "route": (f"route:{name(1, n)},{peer}", "routing", [name(1, n)], [],
                  "MeshprobePodToPodUnreachable", {"src_node": name(1, n)}),
        # web-00002 runs on the first node of the fleet's second third (the emulator's spread).
        "policy": ("policy:web-00002", "policy", [name(n // TARGETS + 1, n)], [],
                   "MeshprobeTargetUnreachable", {"dst": "web-00002"}),
        "loss": (f"loss:{name(n // 2, n)},30", "packet_loss", [name(n // 2, n)], [],
                 "MeshprobePacketLoss", {}),
        "mtu": (f"mtu:{name(2 * n // 3, n)},1400", "mtu", [name(2 * n // 3, n)], [],
                "MeshprobeMtuBlackHole", {}),
    }
    # A fault stays on at least its alert's `for` plus 3 scrapes, so the alert can fire.
    alert_for = {"loss": 300, "mtu": 120}
    scrape_s = float(SCRAPE.rstrip("s"))
    schedule = []
    start = WARM
    for f in FAULTS:
        on = max(ON, int(alert_for.get(f, 60) + 3 * scrape_s))
        schedule.append((f, start, start + on))
        start += on + OFF
    end_faults = schedule[-1][2] + OFF if schedule else WARM
    injects = [f"{places[f][0]}@{s}s-{e}s" for f, s, e in schedule]
    p = emulator(bin_, n, emu_port, injects, log)
    t_start = time.time()
    wait_http(f"http://{emu_addr}/", "emulator")
    with open(os.path.join(ROOT, "deploy/prometheus/meshprobe-rules.yaml")) as f:
        rules = f.read()
    rules_path = os.path.join(work, "rules.yaml")
    with open(rules_path, "w") as f:
        f.write(rules)
    targets = "".join(
        f"      - targets: [\"{emu_addr}\"]\n        labels: {{__metrics_path__: /metrics/{z}}}\n"
        for z in ("zone-a", "zone-b", "zone-c"))
    cfg = os.path.join(work, f"prometheus-{n}.yml")
    with open(cfg, "w") as f:
        f.write(f"global: {{scrape_interval: {SCRAPE}, scrape_timeout: {SCRAPE}, evaluation_interval: {SCRAPE}}}\n"
                f"rule_files: [\"{rules_path}\"]\n"
                "scrape_configs:\n  - job_name: meshprobe\n    honor_labels: true\n"
                f"    static_configs:\n{targets}")
    plog = open(os.path.join(work, f"prometheus-{n}.log"), "w")
    prom_p = subprocess.Popen(
        ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={work}/data-{n}",
         f"--web.listen-address={prom}", "--log.level=warn"],
        stdout=plog, stderr=plog, start_new_session=True)
    STARTED.append(prom_p)
    wait_http(f"http://{prom}/-/ready", "prometheus")

    seen = {f: {"right": None, "alert": None, "wrong": set(), "failed": 0, "others": {}}
            for f, _, _ in schedule}
    clean = {"polls": 0, "findings": 0, "alerts": 0, "what": set()}
    walls = []
    failures = []
    # Per fault: the slowest rules' evaluation times (Prometheus' /api/v1/rules), every 60 s.
    rule_costs = {f: {} for f, _, _ in schedule}
    last_rules = 0.0
    end = end_faults + CLEAN
    while True:
        t = time.time() - t_start
        if t > end:
            break
        t0 = time.time()
        save = ["--save-inputs", os.path.join(SAVE_WRONG, "last.json")] if SAVE_WRONG else []
        out = subprocess.run([bin_, "diagnose", "--prometheus", f"http://{prom}", "-o", "json",
                              "--timeout", "30s"] + save, capture_output=True, text=True)
        wall = time.time() - t0
        try:
            d = json.loads(out.stdout)
        except ValueError:
            d = None
            failures.append(f"{t:.0f}s: exit {out.returncode}: {out.stderr.strip()[-300:]}")
        try:
            alerts = [a for a in json.loads(get(f"http://{prom}/api/v1/alerts"))["data"]["alerts"]
                      if a["state"] == "firing"]
        except Exception:
            alerts = []
        if d is not None:
            walls.append(wall)
        active = [(f, s, e) for f, s, e in schedule if s <= t < e + OFF]
        live = [f for f, s, e in schedule if s <= t < e]
        if live and time.time() - last_rules >= 60:
            last_rules = time.time()
            try:
                groups = json.loads(get(f"http://{prom}/api/v1/rules"))["data"]["groups"]
            except Exception:
                groups = []
            costs = rule_costs[live[0]]
            for g in groups:
                key = f"(group {g.get('name', '?')})"
                costs[key] = max(costs.get(key, 0.0), g.get("evaluationTime", 0.0))
                for rule in g["rules"]:
                    rname = rule.get("name", "?")
                    costs[rname] = max(costs.get(rname, 0.0), rule.get("evaluationTime", 0.0))
        findings = d["findings"] if d else None
        if not active and t > WARM / 2 and (t < WARM or t >= end_faults):
            clean["polls"] += 1
            if findings:
                clean["findings"] += 1
                clean["what"].update(f"{x['cause']}:{','.join(x['nodes'] or x['zones'])}" for x in findings)
            if alerts:
                clean["alerts"] += 1
                clean["what"].update(a["labels"]["alertname"] for a in alerts)
        for f, s, e in active:
            if t >= e:
                continue  # cleared: the tail is for the next fault's baseline
            _, cause, nodes, zones, alert, labels = places[f]
            got = seen[f]
            if findings is None:
                got["failed"] += 1
            else:
                # The place: its nodes (node faults, routing) or its zones (a partition).
                right = (len(findings) == 1 and findings[0]["cause"] == cause
                         and (not nodes or sorted(findings[0]["nodes"]) == sorted(nodes))
                         and (not zones or sorted(findings[0]["zones"]) == sorted(zones)))
                if right and got["right"] is None:
                    got["right"] = t - s
                elif not right and findings:
                    kept = got.setdefault("kept", 0)
                    if SAVE_WRONG and kept < 3 and os.path.exists(os.path.join(SAVE_WRONG, "last.json")):
                        got["kept"] = kept + 1
                        os.replace(os.path.join(SAVE_WRONG, "last.json"),
                                   os.path.join(SAVE_WRONG, f"wrong-{f}-{t:.0f}.json"))
                    got["wrong"].add(";".join(f"{x['cause']}:{','.join(x['nodes'] or x['zones'])}"
                                              for x in findings))
            # Alerts firing besides the fault's own: the most instances of each name at once.
            others = {}
            for a in alerts:
                if a["labels"]["alertname"] != alert:
                    others[a["labels"]["alertname"]] = others.get(a["labels"]["alertname"], 0) + 1
            for k, v in others.items():
                got["others"][k] = max(got["others"].get(k, 0), v)
            if got["alert"] is None and any(
                    a["labels"]["alertname"] == alert
                    and all(a["labels"].get(k) == v for k, v in labels.items()) for a in alerts):
                got["alert"] = t - s
        time.sleep(max(0.0, POLL - (time.time() - t0)))

    # One diagnose's queries and the head series, from Prometheus' own /metrics.
    def own(metric, label=""):
        total = 0.0
        for line in get(f"http://{prom}/metrics").decode().splitlines():
            if line.startswith(metric) and label in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total
    q0 = own("prometheus_http_requests_total", 'handler="/api/v1/query"')
    subprocess.run([bin_, "diagnose", "--prometheus", f"http://{prom}", "-o", "json"],
                   capture_output=True)
    per_diagnose = own("prometheus_http_requests_total", 'handler="/api/v1/query"') - q0
    head_series = int(own("prometheus_tsdb_head_series "))
    # Per rule group (the rules file has two, evaluated side by side).
    def per_group(metric):
        out = {}
        for line in get(f"http://{prom}/metrics").decode().splitlines():
            m = re.match(metric + r'\{.*rule_group="[^"]*;([^"]+)".*\} (\S+)$', line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out
    rule_eval = per_group("prometheus_rule_group_last_duration_seconds")
    rule_missed = per_group("prometheus_rule_group_iterations_missed_total")
    mem = rss_mib(prom_p.pid)
    scrape_bytes = sum(len(get(f"http://{emu_addr}/metrics/{z}", timeout=120))
                       for z in ("zone-a", "zone-b", "zone-c"))
    emu_mem = rss_mib(p.pid)
    stop(prom_p)
    stop(p)
    return {
        "n": n, "schedule": schedule, "seen": seen, "clean": clean, "walls": walls,
        "queries_per_diagnose": per_diagnose, "head_series": head_series, "failures": failures,
        "rule_eval_seconds": rule_eval, "rule_iterations_missed": rule_missed,
        "rule_costs": rule_costs,
        "prometheus_rss_mib": mem, "scrape_bytes": scrape_bytes, "emulator_rss_mib": emu_mem,
    }


def report(r):
    print(f"\n## N = {r['n']:,} (3 zones; scrape {SCRAPE}, agents {INTERVAL} / {WINDOW}; "
          f"faults on {ON} s, {OFF} s apart)\n")
    def summarise_wrong(answers):
        """Distinct wrong answers, by cause: how many answers named it, the most findings one
        answer held, and the shortest answer as an example (a partition's can hold hundreds)."""
        if not answers:
            return "none"
        by_cause = {}
        for a in answers:
            parts = a.split(";")
            for c in {p.split(":", 1)[0] for p in parts}:
                n, most = by_cause.get(c, (0, 0))
                by_cause[c] = (n + 1, max(most, sum(p.startswith(c + ":") for p in parts)))
        causes = ", ".join(f"{c} in {n} (up to {m} findings)" for c, (n, m) in sorted(by_cause.items()))
        example = min(answers, key=len)
        return f"{len(answers)} distinct: {causes}; e.g. {example[:80]}"

    print("| fault | start → right `diagnose --prometheus` | start → alert firing | wrong answers seen | failed diagnoses | other alerts firing (most instances) |")
    print("|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.0f} s"
    for f, s, e in r["schedule"]:
        g = r["seen"][f]
        wrong = summarise_wrong(g["wrong"])
        others = ", ".join(f"{k} ({v})" for k, v in sorted(g["others"].items())) or "none"
        print(f"| {f} | {fmt(g['right'])} | {fmt(g['alert'])} | {wrong} | {g['failed']} | {others} |")
    c = r["clean"]
    w = r["walls"]
    print(f"\nclean polls: {c['polls']} ({WARM} s before the faults and {CLEAN} s after), "
          f"with findings: {c['findings']}, with firing alerts: {c['alerts']}"
          + (f" ({', '.join(sorted(c['what']))})" if c["what"] else ""))
    if w:
        print(f"diagnose --prometheus: {r['queries_per_diagnose']:.0f} queries, wall time median "
              f"{statistics.median(w):.2f} s, max {max(w):.2f} s over {len(w)} runs")
    if r["failures"]:
        print(f"diagnose --prometheus failed {len(r['failures'])} times, e.g. {r['failures'][0]}")
    for g, secs in sorted(r["rule_eval_seconds"].items()):
        print(f"rule group {g}: last evaluation {secs:.2f} s, iterations missed "
              f"{r['rule_iterations_missed'].get(g, 0):.0f}")
    for f, costs in r["rule_costs"].items():
        top = sorted(costs.items(), key=lambda kv: -kv[1])[:6]
        if top:
            print(f"slowest rules during {f} (max evaluation time, s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in top))
    pm = r["prometheus_rss_mib"]
    print(f"Prometheus: {r['head_series']:,} head series, RSS {pm.get('VmRSS', 0):.0f} MiB "
          f"(peak {pm.get('VmHWM', 0):.0f} MiB)")
    print(f"emulator: scrape of all zones {r['scrape_bytes']:,} bytes, "
          f"RSS {r['emulator_rss_mib'].get('VmRSS', 0):.0f} MiB")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    bin_ = sys.argv[1]
    work = tempfile.mkdtemp(prefix="meshprobe-scale-prom-")
    results = []
    for n in sys.argv[2:]:
        r = run_n(bin_, int(n), work)
        report(r)
        results.append(r)
        sys.stdout.flush()
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(results, f, default=lambda o: sorted(o) if isinstance(o, set) else str(o), indent=1)
    print(f"\n(raw results and logs: {work})")


if __name__ == "__main__":
    main()
