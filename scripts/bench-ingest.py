#!/usr/bin/env python3
"""Measures HTTP ingest of `journeyflow run`: EVENTS events of the standard workload posted to
/v1/batch in batches of BATCH by CLIENTS concurrent connections (keep-alive; bodies encoded up
front, so the client costs little), through the six standard segments. Reports, for each
binary given (the first is the baseline, measured in the same run on the same machine):

- acknowledged events/s: from the first request to the last 200 (each call answered only once
  its events are synced to the ingest log);
- processed events/s: from the first request until /metrics says every event is read by the
  workers;
- answers other than 200 (a 429 is retried after its Retry-After).

    scripts/bench-ingest.py EVENTS_FILE BINARY [BINARY ...]   [env: CLIENTS=8 BATCH=500 WORKERS=2]

Run it with release builds (`cargo build --release`)."""

import http.client, json, os, re, socket, subprocess, sys, tempfile, threading, time

events_file, binaries = sys.argv[1], sys.argv[2:]
clients = int(os.environ.get("CLIENTS", "8"))
batch = int(os.environ.get("BATCH", "500"))
workers = os.environ.get("WORKERS", "2")
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
segments = os.path.join(root, "datasets", "sample", "segments.json")

with open(events_file) as f:
    events = [json.loads(line) for line in f if line.strip()]
# The workload's timestamps are in the past: shift them to end now, so none is refused as from the
# future and none is far behind the watermark.
shift = int(time.time() * 1000) - max(e["timestamp"] if isinstance(e["timestamp"], int) else 0 for e in events)
for e in events:
    if isinstance(e.get("timestamp"), int):
        e["timestamp"] += shift
bodies = [json.dumps({"batch": events[i:i + batch]}).encode() for i in range(0, len(events), batch)]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


def metric(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def measure(binary):
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen([binary, "run", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                                   "--workers", workers, "--segments", segments, "--checkpoint-interval", "off"],
                                  stderr=subprocess.PIPE, text=True)
        for line in server.stderr:
            if "listening on" in line:
                break
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        answers, lock = {}, threading.Lock()
        queue = list(range(len(bodies)))

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while True:
                with lock:
                    if not queue:
                        break
                    i = queue.pop()
                while True:
                    conn.request("POST", "/v1/batch", body=bodies[i], headers={"content-type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    with lock:
                        answers[r.status] = answers.get(r.status, 0) + 1
                    if r.status == 200:
                        break
                    time.sleep(float(r.getheader("retry-after") or "0.1"))
            conn.close()

        start = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        acked = time.monotonic() - start
        while metric(port, "journeyflow_events_processed") < len(events):
            time.sleep(0.05)
        processed = time.monotonic() - start
        server.terminate()
        server.wait()
    return {"acked_per_s": len(events) / acked, "processed_per_s": len(events) / processed, "answers": answers}


results = [(b, measure(b)) for b in binaries]
base = results[0][1]
print(f"{len(events)} events, {len(bodies)} batches of {batch}, {clients} clients, {workers} workers")
for binary, r in results:
    print(f"{binary}: acknowledged {r['acked_per_s']:,.0f} events/s ({r['acked_per_s'] / base['acked_per_s']:.2f}x), "
          f"processed {r['processed_per_s']:,.0f} events/s ({r['processed_per_s'] / base['processed_per_s']:.2f}x), "
          f"answers {r['answers']}")
