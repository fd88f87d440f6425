"""A processor's side of the webhook receiver tests (webhook_receiver.sh),
Python standard library only for sending (hmac, http.client, threads) and
kafka-python (Debian's python3-kafka) for reading the topic back.

  send URL FLAVOUR SECRET EVENT_ID PAYMENT_ID [--t-offset S] [--sig hex]
      one signed event; prints the HTTP status
  raw URL BODY_FILE [--chunked]   an unsigned POST of a file; prints the status
  slow HOST PORT N SECONDS        N connections that send half the headers and stall
  load URL SECRET N CONCURRENCY PREFIX OUT
      N signed Stripe-like events, CONCURRENCY at a time; appends the event id
      of every 2xx to OUT (flushed per line) and counts other answers on stderr
  topic BOOTSTRAP TOPIC           every message as "event_id payment_id key
                                  processor_header body_ok" lines
"""
import hashlib
import hmac
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse
import uuid

API = (2, 5, 0)


def stripe_event(event_id, payment_id):
    return json.dumps({"id": event_id, "object": "event", "type": "charge.succeeded",
                       "created": int(time.time()),
                       "data": {"object": {"id": "ch_" + event_id, "object": "charge",
                                           "status": "succeeded", "amount": 1234,
                                           "currency": "usd",
                                           "metadata": {"payment_id": payment_id}}}},
                      separators=(",", ":")).encode()


def paypal_event(event_id, payment_id):
    return json.dumps({"id": event_id, "event_type": "PAYMENT.CAPTURE.COMPLETED",
                       "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "resource": {"id": "CAP-" + event_id, "status": "COMPLETED",
                                    "amount": {"currency_code": "USD", "value": "12.34"},
                                    "custom_id": payment_id}},
                      separators=(",", ":")).encode()


def sign_stripe(secret, body, t):
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": "t=%d,v1=%s" % (t, mac)}


def sign_paypal(secret, body, t):
    tid = str(uuid.uuid4())
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    whid = "WH-local"
    msg = "|".join([tid, when, whid, hashlib.sha256(body).hexdigest()]).encode()
    return {"PayPal-Transmission-Id": tid, "PayPal-Transmission-Time": when,
            "PayPal-Webhook-Id": whid,
            "PayPal-Transmission-Sig": hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()}


def post(url, body, headers, timeout=30):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("POST", u.path, body=body, headers=dict(headers, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def cmd_send(args):
    url, flavour, secret, event_id, payment_id = args[:5]
    opts = dict(zip(args[5::2], args[6::2]))
    t = int(time.time()) + int(opts.get("--t-offset", "0"))
    if flavour == "stripe":
        body = stripe_event(event_id, payment_id)
        headers = sign_stripe(secret, body, t)
        if "--sig" in opts:
            headers["Stripe-Signature"] = "t=%d,v1=%s" % (t, opts["--sig"])
    else:
        body = paypal_event(event_id, payment_id)
        headers = sign_paypal(secret, body, t)
        if "--sig" in opts:
            headers["PayPal-Transmission-Sig"] = opts["--sig"]
    print(post(url, body, headers))


def cmd_raw(args):
    url, path = args[0], args[1]
    body = open(path, "rb").read()
    if "--chunked" in args:
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            c.request("POST", u.path, body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                      encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
            print(c.getresponse().status)
        except (BrokenPipeError, ConnectionResetError):
            # The receiver answered and closed before the whole body was
            # sent: read what it said if we can.
            try:
                print(c.getresponse().status)
            except Exception:
                print("closed")
        finally:
            c.close()
        return
    try:
        print(post(url, body, {}))
    except (BrokenPipeError, ConnectionResetError):
        print("closed")


def cmd_slow(args):
    host, port, n, secs = args[0], int(args[1]), int(args[2]), float(args[3])
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        socks.append(s)
    print("stalled %d" % len(socks), flush=True)
    time.sleep(secs)
    for s in socks:
        s.close()


def cmd_load(args):
    url, secret, n, conc, prefix, out = args[0], args[1], int(args[2]), int(args[3]), args[4], args[5]
    lock = threading.Lock()
    next_i = [0]
    other = {}
    f = open(out, "a")

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                return
            eid = "%s-%d" % (prefix, i)
            body = stripe_event(eid, "pay_%s_%d" % (prefix, i))
            try:
                st = post(url, body, sign_stripe(secret, body, int(time.time())), timeout=20)
            except Exception as e:  # the receiver died: no answer, no promise
                st = type(e).__name__
            with lock:
                if st == 200:
                    f.write(eid + "\n")
                    f.flush()
                else:
                    other[st] = other.get(st, 0) + 1
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    f.close()
    print("not 2xx: %s" % other, file=sys.stderr)


def fields(buf):
    """A protobuf message's top-level fields: {number: value} (last wins)."""
    out, i = {}, 0

    def varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v
    while i < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out[num] = varint()
        elif wt == 2:
            ln = varint()
            out[num] = buf[i:i + ln]
            i += ln
        else:
            raise ValueError("wire type %d" % wt)
    return out


def cmd_topic(args):
    from kafka import KafkaConsumer, TopicPartition
    bootstrap, topic = args[0], args[1]
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      api_version=API)
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    end = c.end_offsets(parts)
    deadline = time.time() + 60
    while time.time() < deadline and any(c.position(p) < end[p] for p in parts):
        for recs in c.poll(timeout_ms=500).values():
            for m in recs:
                h = {k: v.decode() for k, v in (m.headers or [])}
                f = fields(m.value)
                event_id = f.get(4, b"").decode()
                body_ok = event_id.encode() in f.get(15, b"") and h.get("event_id") == event_id
                print(event_id, f.get(6, b"").decode(), (m.key or b"").decode(),
                      h.get("processor", "-"), "body_ok" if body_ok else "body_bad")
    c.close()


if __name__ == "__main__":
    {"send": cmd_send, "raw": cmd_raw, "slow": cmd_slow, "load": cmd_load,
     "topic": cmd_topic}[sys.argv[1]](sys.argv[2:])
