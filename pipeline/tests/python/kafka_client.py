"""Kafka as a journeyflow user's own tooling sees it, through confluent-kafka (not journeyflow's
client): `produce` writes the lines of an NDJSON file to a new topic, keyed by user id;
`consume` reads every record a topic holds (each partition to its end) into an NDJSON file;
`truncate` replaces a topic's first records by filler, as retention would delete them.

    kafka_client.py produce BROKERS TOPIC PARTITIONS FILE   (PARTITIONS 0: the topic exists)
    kafka_client.py consume BROKERS TOPIC OUT
    kafka_client.py truncate BROKERS TOPIC '[COUNT, ...]'
    kafka_client.py committed BROKERS GROUP TOPIC
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def user_key(line):
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    user = record.get("userId") or record.get("anonymousId")
    return str(user).encode() if user is not None else None


def produce(brokers, topic, partitions, path):
    if int(partitions) > 0:
        admin = AdminClient({"bootstrap.servers": brokers})
        for future in admin.create_topics([NewTopic(topic, num_partitions=int(partitions), replication_factor=1)]).values():
            future.result(timeout=30)
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 10_000_000})
    failed = []
    sent = 0

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    with open(path, "rb") as lines:
        for line in lines:
            line = line.rstrip(b"\n")
            if not line:
                continue
            while True:
                try:
                    producer.produce(topic, value=line, key=user_key(line), on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            sent += 1
    left = producer.flush(60)
    if left or failed:
        raise SystemExit(f"{left} records undelivered, failures: {failed[:3]}")
    print(sent)


def consume(brokers, topic, out):
    """Reads every partition to its end, as the broker's fetch responses say (tansu 0.6's
    ListOffsets answers can undercount, its fetch high watermarks do not)."""
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    metadata = consumer.list_topics(topic, timeout=30)
    if metadata.topics[topic].error is not None:
        raise SystemExit(f"topic {topic}: {metadata.topics[topic].error}")
    partitions = sorted(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    at_end = set()
    deadline = time.monotonic() + 120
    with open(out, "w") as f:
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out reading {topic}: at the end of {sorted(at_end)} of {partitions}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise KafkaException(msg.error())
            at_end.discard(msg.partition())
            value = msg.value().decode() if msg.value() is not None else None
            try:
                value = json.loads(value) if value is not None else None
            except ValueError:
                pass
            headers = {k: v.decode() for k, v in (msg.headers() or [])}
            key = msg.key().decode() if msg.key() is not None else None
            f.write(json.dumps({"key": key, "value": value, "headers": headers}) + "\n")
    consumer.close()


def truncate(brokers, topic, counts):
    """Stands in for retention: the topic is deleted and made again with as many partitions,
    each holding `counts[p]` filler records (`truncated-<p>-<i>`) where the first ones were, so
    the records produced next get the offsets they would have had."""
    counts = json.loads(counts)
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        futures = admin.create_topics([NewTopic(topic, num_partitions=len(counts), replication_factor=1)])
        try:
            for future in futures.values():
                future.result(timeout=30)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    producer = Producer({"bootstrap.servers": brokers})
    for p, n in enumerate(counts):
        for i in range(n):
            producer.produce(topic, value=f"truncated-{p}-{i}".encode(), partition=p)
            producer.poll(0)
    if producer.flush(60):
        raise SystemExit("filler records undelivered")


def committed(brokers, group, topic):
    """Prints the offsets `group` committed for each partition of `topic` (-1: none)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    print(json.dumps({str(tp.partition): tp.offset for tp in offsets}))
    consumer.close()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"produce": produce, "consume": consume, "truncate": truncate, "committed": committed}[command](*args)
