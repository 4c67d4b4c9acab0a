#!/usr/bin/env python3
"""Measures `journeyflow run` on the standard workload: HTTP ingest events/s through
/v1/batch on loopback, then, over the retained events, the time from POST /v1/segments to
the first members answer for each of S1-S6, beside the time of a members answer for a
segment already installed (the baseline: what any answer costs, measured in the same run),
and the server's resident memory before installing, with the six segments installed and after
removing them.

    scripts/bench-run.py EVENTS_FILE [WORKERS]

The events are shifted in time to end two seconds ago, as live events would."""

import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request

events_file = sys.argv[1]
workers = sys.argv[2] if len(sys.argv) > 2 else "2"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.environ.get("JOURNEYFLOW_BIN", os.path.join(root, "target", "release", "journeyflow"))
data = tempfile.mkdtemp(prefix="jf-bench-")
server = subprocess.Popen([binary, "run", "--listen", "127.0.0.1:0", "--workers", workers, "--data-dir", data,
                           "--max-body-bytes", str(64 << 20)], stderr=subprocess.PIPE, text=True)
base = None
for line in server.stderr:
    m = re.match(r"journeyflow listening on (\S+)", line)
    if m:
        base = m.group(1)
        break

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")

def metric(name):
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0

# Streamed (10M events do not fit in memory as Python objects): one pass for the latest
# timestamp, one to shift and batch.
stamp = re.compile(r'"timestamp":\s*(\d+)')
latest = 0
with open(events_file) as f:
    for line in f:
        latest = max(latest, int(stamp.search(line).group(1)))
shift = int(time.time() * 1000) - 2000 - latest

def bodies():
    batch = []
    with open(events_file) as f:
        for line in f:
            batch.append(stamp.sub(lambda m: '"timestamp":%d' % (int(m.group(1)) + shift), line.strip(), 1))
            if len(batch) == 10000:
                yield ('{"batch":[' + ",".join(batch) + ']}').encode()
                batch = []
    if batch:
        yield ('{"batch":[' + ",".join(batch) + ']}').encode()

count = 0
start = time.time()
for body in bodies():
    count += body.count(b'"messageId"')
    req = urllib.request.Request(base + "/v1/batch", data=body, method="POST", headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=600).read()
ingest_s = time.time() - start
while metric("journeyflow_events_processed") < count:
    time.sleep(0.05)
processed_s = time.time() - start
segments = json.load(open(os.path.join(root, "datasets", "sample", "segments.json")))
order = ["s1_pro_north_america", "s2_frequent_viewer", "s3_lapsed_buyer", "s4_high_value", "s5_window_shopper",
         "s6_abandoned_cart"]
def rss_mb():
    for line in open("/proc/%d/status" % server.pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

def settled_rss_mb():
    # Merges and compaction go on for a while after ingest: wait for the RSS to settle.
    last = rss_mb()
    for _ in range(40):
        time.sleep(0.5)
        now = rss_mb()
        if abs(now - last) < 0.005 * last:
            return now
        last = now
    return last

before = settled_rss_mb()
rows = []
for sid in order:
    definition = next(s for s in segments if s["id"] == sid)
    t0 = time.time()
    call("POST", "/v1/segments", definition)
    call("GET", "/v1/segments/%s/members?limit=1" % sid)
    install = time.time() - t0
    t1 = time.time()
    call("GET", "/v1/segments/%s/members?limit=1" % sid)
    baseline = time.time() - t1
    size = metric('journeyflow_segment_members{segment="%s"}' % sid)
    rows.append((sid, install, baseline, int(size)))
# Memory with the six segments installed, then after removing them all (in reverse order).
with_segments = settled_rss_mb()
for sid in reversed(order):
    call("DELETE", "/v1/segments/%s" % sid)
without = settled_rss_mb()
server.terminate()
server.wait()
shutil.rmtree(data)
print("journeyflow run, %d events over HTTP, %s workers, %d cores, %s" % (
    count, workers, os.cpu_count(), time.strftime("%Y-%m-%d")))
print("  ingest /v1/batch (10k events per request, fsynced): %.2f s, %.0f events/s; all processed after %.2f s" % (
    ingest_s, count / ingest_s, processed_s))
print("  %-22s %10s %12s %8s %8s" % ("segment", "install_s", "answer_s", "ratio", "members"))
for sid, install, baseline, size in rows:
    print("  %-22s %10.3f %12.3f %8.2f %8d" % (sid, install, baseline, install / baseline, size))
print("  RSS before installing: %.0f MB; with S1-S6 installed: %.0f MB; after removing them: %.0f MB"
      % (before, with_segments, without))
print("  memory the six segments took: %.0f MB; given back on removal: %.0f MB" % (
    with_segments - before, with_segments - without))
