#!/usr/bin/env python3
"""The measuring part of bench/onset.sh, run once its lab is up.

For each fault kind in FAULTS, RUNS times: waits until node-1's diagnosis has been healthy
for 3 s, injects the fault (`BINARY lab --prefix PREFIX fault ...`), polls
http://127.0.0.1:PORT/api/v1/diagnosis every 100 ms for SECS seconds recording every
distinct findings set, then `lab clear`. Prints one summary line per fault kind on stdout
(each onset's sequence on stderr) and writes every onset's record to OUT as JSON.

    python3 bench/onset_poll.py BINARY PREFIX PORT RUNS SECS OUT FAULTS INTERVAL WINDOW TIMEOUT

FAULTS: comma-separated kinds (partition,node-down,cni,route,loss,policy); INTERVAL, WINDOW,
TIMEOUT: the agents' durations (e.g. 1s, 8s, 500ms). See bench/onset.sh for the figures.
"""
import json, statistics, subprocess, sys, time, urllib.request

B, PREFIX, PORT, RUNS, SECS, OUT, FAULTS, INTERVAL, WINDOW, TIMEOUT = sys.argv[1:11]
RUNS, SECS = int(RUNS), float(SECS)


def seconds(d):
    for unit, f in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if d.endswith(unit) and d[: -len(unit)].replace(".", "", 1).isdigit():
            return float(d[: -len(unit)]) * f
    raise SystemExit(f"cannot read the duration {d!r} (ONSET_INTERVAL / ONSET_WINDOW: e.g. 500ms, 5s, 1m)")


IV, WIN = seconds(INTERVAL), seconds(WINDOW)
# The mesh view waits up to twice the probe timeout for a peer agent that has not been seen
# down yet: a poll waits longer than that (a timed-out poll is counted as "error").
POLL_TIMEOUT = 2 * seconds(TIMEOUT) + 2.0
URL = f"http://127.0.0.1:{PORT}/api/v1/diagnosis"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# fault args, and the right finding: (cause, nodes exact or None, nodes included, zones, targets, pairs)
KINDS = {
    "partition": (["partition", "zone-a", "zone-b"], ("vpc", [], [], ["zone-a", "zone-b"], [], [])),
    "node-down": (["node-down", "node-4"], ("node_down", ["node-4"], [], [], [], [])),
    "cni": (["cni", "node-3"], ("cni", ["node-3"], [], [], [], [])),
    "route": (["route", "node-1", "node-3"], ("routing", None, ["node-1"], [], [], [["node-1", "node-3"]])),
    "loss": (["loss", "node-2", "30"], ("packet_loss", ["node-2"], [], [], [], [])),
    "policy": (["policy", "web-node-2"], ("policy", ["node-2"], [], [], ["web-node-2"], [])),
}


def diag():
    try:
        with opener.open(URL, timeout=POLL_TIMEOUT) as r:
            return json.load(r)
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}


def key(d):
    if "findings" not in d:
        return ("error",)
    return tuple(sorted(
        (f.get("cause"), tuple(f.get("nodes", [])), tuple(f.get("zones", [])),
         tuple(f.get("targets", [])), len(f.get("pairs", [])))
        for f in d["findings"]))


def right(d, want):
    cause, nodes, incl, zones, targets, pairs = want
    fs = d.get("findings")
    if not isinstance(fs, list) or len(fs) != 1:
        return False
    f = fs[0]
    ps = [list(p) for p in f.get("pairs", [])]
    return (f.get("cause") == cause
            and (nodes is None or f.get("nodes") == nodes)
            and all(n in f.get("nodes", []) for n in incl)
            and (not zones or sorted(f.get("zones", [])) == sorted(zones))
            and all(t in f.get("targets", []) for t in targets)
            and all(p in ps for p in pairs))


def partial(d, want):
    cause, nodes, incl, zones, targets, pairs = want
    return right(d, (cause, nodes, incl, zones, [], []))


def healthy(d):
    return d.get("findings") == [] and d.get("healthy") is True


def lab(*args):
    subprocess.run([B, "lab", "--prefix", PREFIX, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_healthy(limit=WIN + 40.0, hold=3.0):
    t0 = time.monotonic()
    since = None
    while time.monotonic() - t0 < limit:
        if healthy(diag()):
            since = since or time.monotonic()
            if time.monotonic() - since >= hold:
                return True
        else:
            since = None
        time.sleep(0.2)
    return False


records = []
summary = {}
for kind in FAULTS.split(","):
    args, want = KINDS[kind]
    stats = {"wrong_onsets": 0, "wrong_sets": 0, "partial_onsets": 0, "right_s": [],
             "never": 0, "flips": 0}
    for run in range(RUNS):
        if not wait_healthy():
            print(f"  {kind} #{run + 1}: lab not healthy before the fault", file=sys.stderr)
        t0 = time.monotonic()
        lab("fault", *args)
        seq, seen, first_right, flips, wrong, part = [], set(), None, 0, set(), set()
        while time.monotonic() - t0 < SECS:
            d = diag()
            t = time.monotonic() - t0
            ok = right(d, want)
            k = key(d)
            if ok and first_right is None:
                first_right = t
            elif not ok and first_right is not None:
                flips += 1
            if not ok and not healthy(d) and not partial(d, want) and k != ("error",):
                wrong.add(k)
            if not ok and partial(d, want):
                part.add(k)
            if k not in seen:
                seen.add(k)
                seq.append({"t": round(t, 2), "right": ok, "findings": [list(x) for x in k]})
            time.sleep(0.1)
        lab("clear")
        stats["wrong_onsets"] += bool(wrong)
        stats["partial_onsets"] += bool(part)
        stats["wrong_sets"] += len(wrong)
        stats["flips"] += flips
        if first_right is None:
            stats["never"] += 1
        else:
            stats["right_s"].append(first_right)
        records.append({"fault": kind, "run": run + 1, "first_right": first_right,
                        "flips": flips, "wrong_sets": len(wrong), "sequence": seq})
        print(f"  {kind} #{run + 1}: right at {first_right if first_right is None else round(first_right, 2)}, "
              f"{len(wrong)} wrong sets, {flips} flips: "
              + " ".join(f"{s['t']}{'*' if s['right'] else ''}{s['findings']}" for s in seq),
              file=sys.stderr)
    r = stats["right_s"]
    summary[kind] = stats
    head = (f"{kind:10} wrong {stats['wrong_onsets']}/{RUNS} onsets ({stats['wrong_sets']} sets)  "
            f"partial {stats['partial_onsets']}/{RUNS}  ")
    print(head + (f"right median {statistics.median(r):.2f}s max {max(r):.2f}s"
                  f" ({statistics.median(r) / IV:.2f} / {max(r) / IV:.2f} intervals)" if r else "right -"),
          f" never {stats['never']}  flips {stats['flips']}")
    sys.stdout.flush()
with open(OUT, "w") as f:
    json.dump({"summary": summary, "onsets": records}, f, indent=1)
print(f"details: {OUT}")
