#!/usr/bin/python3
"""An upstream that is not librdkafka: kafka-python (Debian's python3-kafka;
python3-lz4 reads our lz4-compressed outcomes), with its default partitioner (murmur2, the Java client's). Publishes valid
payment intents, encoded by hand from proto/payments.proto, keyed by
idempotency key, and then reads payments.outcomes with its own consumer
until every intent has a terminal outcome.

usage: upstream_python.py publish BOOTSTRAP RUN COUNT   -> prints "key partition"
       upstream_python.py outcomes BOOTSTRAP RUN COUNT TIMEOUT_S
                                                        -> prints "key status"
"""
import struct
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

API = (2, 5, 0)  # kafka-python 2.0.2 predates Kafka 3's version probe answers


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def s(num, text):
    raw = text.encode()
    return field(num, 2, varint(len(raw)) + raw)


def msg(num, body):
    return field(num, 2, varint(len(body)) + body)


def i64(num, v):
    return field(num, 0, varint(v & 0xFFFFFFFFFFFFFFFF))


def f64(num, v):
    return field(num, 1, struct.pack("<d", v))


def intent_event(key, i, now_ms):
    money = i64(1, 1000 + i) + s(2, "USD")
    pm = s(1, "pm_card_visa") + s(2, "fp_py_%d" % i) + i64(3, now_ms - 90 * 86400 * 1000) + s(4, "US")
    ctx = (s(1, "198.51.100.9") + s(2, "US") + f64(3, 40.7) + f64(4, -74.0) + s(5, "dev_py")
           + s(6, "py@example.com"))
    intent = (s(1, key) + s(2, "m_%d" % (i % 3 + 1)) + s(3, "cus_py_%d" % i) + msg(4, money)
              + i64(5, now_ms) + msg(6, pm) + msg(7, ctx) + s(8, "python upstream order"))
    return field(1, 0, varint(1)) + msg(2, intent) + i64(7, now_ms)  # PaymentEvent


def parse(buf):
    """Top-level fields of a protobuf message: {number: value} (last wins)."""
    out, pos = {}, 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            v, pos = read_varint(buf, pos)
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            v, pos = bytes(buf[pos:pos + n]), pos + n
        elif wire == 1:
            v, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            v, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("wire type %d" % wire)
        out[num] = v
    return out


def read_varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


STATUS = {1: "succeeded", 2: "declined", 3: "blocked", 4: "failed", 5: "rejected", 6: "review"}


def publish(bootstrap, run, count):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", api_version=API)
    parts = sorted(p.partitions_for("payments.intents"))
    now = int(time.time() * 1000)
    futures = []
    for i in range(count):
        key = "%s-%06d" % (run, i)
        futures.append((key, p.send("payments.intents", key=key.encode(), value=intent_event(key, i, now))))
    p.flush(60)
    for key, f in futures:
        md = f.get(timeout=60)
        # The Java client's placement: murmur2 of the key, positive, modulo.
        want = parts[(murmur2(key.encode()) & 0x7FFFFFFF) % len(parts)]
        print(key, md.partition, want)
    p.close()


def outcomes(bootstrap, run, count, timeout_s):
    c = KafkaConsumer("payments.outcomes", bootstrap_servers=bootstrap, group_id=None,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=1000, api_version=API)
    seen = {}
    deadline = time.time() + timeout_s
    while len(seen) < count and time.time() < deadline:
        for m in c:
            o = parse(m.value)
            key = o.get(3, b"").decode()
            status = STATUS.get(o.get(4, 0), "unspecified")
            if key.startswith(run + "-") and status != "review" and not o.get(7, 0):
                seen.setdefault(key, []).append(status)
    c.close()
    for key in sorted(seen):
        print(key, ",".join(seen[key]))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "publish":
        publish(sys.argv[2].split(","), sys.argv[3], int(sys.argv[4]))
    elif cmd == "outcomes":
        outcomes(sys.argv[2].split(","), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(2)
