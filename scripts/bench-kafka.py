#!/usr/bin/env python3
"""Measures `journeyflow run` reading Kafka (a tansu broker on the same machine), on the
standard workload, through the six standard segments and two journeys:

1. throughput: EVENTS produced up front, read by journeyflow; events/s from the first event
   read to the last, beside the same run with no definitions (the baseline: what reading
   and entering alone cost, measured in the same run), and peak resident memory;
2. lag at half that rate: events produced at 50% of the measured rate for 60 seconds (stamped
   with the time they are sent), consumer lag sampled every second from /metrics;
3. overload: events produced as fast as the producer can (aiming at 10x the measured rate)
   for 30 seconds: resident memory sampled every second stays bounded (librdkafka fetches at
   most max_in_flight_bytes ahead; the source pauses) while the lag grows.

    scripts/bench-kafka.py EVENTS_FILE [WORKERS]

Needs the venv of scripts/test.sh (confluent-kafka) and a release build; the broker is
JOURNEYFLOW_TEST_KAFKA if set, else tansu from the test cache on a free port."""

import json, os, re, socket, subprocess, sys, tempfile, threading, time, urllib.request, uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

events_file = sys.argv[1]
workers = sys.argv[2] if len(sys.argv) > 2 else "2"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.environ.get("JOURNEYFLOW_BIN", os.path.join(root, "target", "release", "journeyflow"))
sample = os.path.join(root, "datasets", "sample")

broker = os.environ.get("JOURNEYFLOW_TEST_KAFKA")
tansu = None
if broker is None:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    cache = os.environ.get("JOURNEYFLOW_CACHE", os.path.expanduser("~/.cache/journeyflow"))
    url = f"tcp://127.0.0.1:{port}"
    tansu = subprocess.Popen([f"{cache}/tansu-0.6.0/bin/tansu", "broker", "--listener-url", url,
                              "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in tansu.stdout:
        if line.startswith("ready"):
            break
    threading.Thread(target=lambda: [None for _ in tansu.stdout], daemon=True).start()
    broker = f"127.0.0.1:{port}"

admin = AdminClient({"bootstrap.servers": broker})
run_id = uuid.uuid4().hex[:8]
stamp = re.compile(rb'"timestamp":\s*(\d+)')
user = re.compile(rb'"userId":\s*"([^"]*)"')


def new_topic(name, partitions=4):
    topic = f"bench-{run_id}-{name}"
    for f in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        f.result(timeout=30)
    return topic


def producer():
    return Producer({"bootstrap.servers": broker, "linger.ms": 20, "batch.num.messages": 10000,
                     "queue.buffering.max.messages": 1000000, "compression.type": "lz4"})


def send(p, topic, line):
    key = user.search(line)
    while True:
        try:
            p.produce(topic, value=line, key=key.group(1) if key else None)
            return
        except BufferError:
            p.poll(0.01)


def lines():
    with open(events_file, "rb") as f:
        for line in f:
            yield line.rstrip(b"\n")


class Run:
    """A journeyflow process reading `topic`."""

    def __init__(self, topic, definitions):
        self.data = tempfile.mkdtemp(prefix="jf-kafka-bench-")
        args = [binary, "run", "--listen", "127.0.0.1:0", "--workers", workers, "--data-dir", self.data,
                "--kafka-brokers", broker, "--kafka-topics", topic, "--kafka-group", f"{topic}-{int(definitions)}",
                "--allowed-lateness", "1m"]
        if definitions:
            args += ["--segments", f"{sample}/segments.json", "--journeys", f"{sample}/journeys.json"]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        self.started = time.monotonic()
        for line in self.proc.stderr:
            m = re.match(r"journeyflow listening on (\S+)", line)
            if m:
                self.base = m.group(1)
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def metrics(self):
        out = {}
        text = urllib.request.urlopen(self.base + "/metrics", timeout=30).read().decode()
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            if name.startswith("journeyflow_source_lag_messages"):
                out["lag"] = out.get("lag", 0.0) + float(value)
            else:
                out[name] = float(value)
        return out

    def memory(self):
        status = open(f"/proc/{self.proc.pid}/status").read()
        kb = lambda k: int(re.search(k + r":\s+(\d+)", status).group(1))
        return kb("VmRSS") * 1024, kb("VmHWM") * 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=600)


def throughput(topic, n, definitions):
    run = Run(topic, definitions)
    first = last = None
    while True:
        processed = run.metrics().get("journeyflow_events_processed", 0)
        now = time.monotonic()
        if processed > 0 and first is None:
            first = (now, processed)
        if processed >= n:
            last = now
            break
        time.sleep(0.05)
    rate = (n - first[1]) / max(last - first[0], 1e-9)
    rss, peak = run.memory()
    run.stop()
    return rate, peak


# 1. Throughput, with and without the definitions.
topic = new_topic("all")
p = producer()
count = 0
t = time.monotonic()
for line in lines():
    send(p, topic, line)
    count += 1
    if count % 10000 == 0:
        p.poll(0)
p.flush(600)
produce_rate = count / (time.monotonic() - t)
rate, peak = throughput(topic, count, True)
base_rate, base_peak = throughput(topic, count, False)

# 2. Half that rate for 60 s, stamped now.
def paced(run, topic, rate, seconds, samples):
    p = producer()
    source = lines()
    start = time.monotonic()
    sent = 0
    next_sample = start
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate) if rate else sent + 10000
        while sent < due:
            line = next(source, None)
            if line is None:
                source = lines()
                continue
            send(p, topic, stamp.sub(b'"timestamp":%d' % int(time.time() * 1000), line, 1))
            sent += 1
        p.poll(0)
        if time.monotonic() >= next_sample:
            m = run.metrics()
            rss, _ = run.memory()
            samples.append({"t": round(time.monotonic() - start, 1), "sent": sent, "lag": m.get("lag", 0),
                            "processed": m.get("journeyflow_events_processed", 0), "rss": rss})
            next_sample += 1.0
        time.sleep(0.001)
    p.flush(600)
    return sent


topic = new_topic("half")
run = Run(topic, True)
half = []
sent_half = paced(run, topic, rate / 2, 60, half)
_, half_peak = run.memory()
run.stop()

# 3. Overload: as fast as the producer goes, 30 s.
topic = new_topic("overload")
run = Run(topic, True)
over = []
sent_over = paced(run, topic, 0, 30, over)
_, over_peak = run.memory()
run.stop()
if tansu:
    tansu.terminate()

lags = sorted(s["lag"] for s in half)
# What the producer sent and the workers had not read yet (producer batching included).
behind = sorted(s["sent"] - s["processed"] for s in half)
result = {
    "events": count, "workers": int(workers), "produce_rate": produce_rate,
    "rate": rate, "baseline_rate": base_rate, "peak_rss": peak, "baseline_peak_rss": base_peak,
    "half": {"target_rate": rate / 2, "sent": sent_half, "lag_max": lags[-1], "lag_median": lags[len(lags) // 2],
             "behind_max": behind[-1], "behind_median": behind[len(behind) // 2],
             "peak_rss": half_peak, "samples": half},
    "overload": {"sent": sent_over, "offered_rate": sent_over / 30, "peak_rss": over_peak, "samples": over},
}
os.makedirs(os.path.join(root, "target", "bench"), exist_ok=True)
with open(os.path.join(root, "target", "bench", f"kafka-{run_id}.json"), "w") as f:
    json.dump(result, f, indent=1)
mb = lambda b: f"{b / 2**20:.0f} MB"
print(f"events: {count:,} ({workers} workers); producer wrote {produce_rate:,.0f}/s")
print(f"| run | events/s from Kafka | ratio to baseline | peak RSS |")
print(f"| --- | --- | --- | --- |")
print(f"| S1-S6 + J1-J2 | {rate:,.0f} | {rate / base_rate:.2f} | {mb(peak)} |")
print(f"| no definitions (baseline) | {base_rate:,.0f} | 1.00 | {mb(base_peak)} |")
print(f"half rate ({rate / 2:,.0f}/s for 60 s, {sent_half:,} sent): consumer lag median {lags[len(lags) // 2]:,.0f}, "
      f"max {lags[-1]:,.0f} messages; sent but not read yet median {behind[len(behind) // 2]:,.0f}, max "
      f"{behind[-1]:,.0f}; peak RSS {mb(half_peak)}")
rss = [s["rss"] for s in over]
# Memory per event read, overloaded and not: the backlog stays in Kafka, not in memory.
per_event = lambda samples: samples[-1]["rss"] / max(samples[-1]["processed"], 1)
print(f"overload ({sent_over / 30:,.0f}/s offered, {sent_over / 30 / rate:.1f}x the measured rate): lag "
      f"{over[0]['lag']:,.0f} -> {over[-1]['lag']:,.0f} messages; RSS at 5 s {mb(rss[min(5, len(rss) - 1)])}, "
      f"at the end {mb(rss[-1])}, peak {mb(over_peak)}; RSS per event read {per_event(over):.0f} B "
      f"(at half rate: {per_event(half):.0f} B)")
