#!/usr/bin/python3
"""procsim_receiver: a tiny webhook receiver for procsim's tests (stdlib only).

Verifies each delivery's signature the way the contract says (Stripe-like:
Stripe-Signature t=,v1= over "<t>.<body>", 300 s tolerance; PayPal-like:
HMAC over "<transmission id>|<time>|<webhook id>|<hex sha256(body)>") and
appends one JSON line per delivery to LOG: flavour, event id, type, payment
id, whether the signature verified, and the status it answered.
POST /fail?n=N answers the next N deliveries 500 (to exercise retries).

usage: procsim_receiver.py PORT_FILE LOG  (env STRIPE_SECRET, PAYPAL_SECRET,
PAYPAL_WEBHOOK_ID)
"""
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

PORT_FILE, LOG = sys.argv[1], sys.argv[2]
SECRETS = {"stripe": os.environ.get("STRIPE_SECRET", ""),
           "paypal": os.environ.get("PAYPAL_SECRET", "")}
WEBHOOK_ID = os.environ.get("PAYPAL_WEBHOOK_ID", "")
lock = threading.Lock()
fail_next = 0


def stripe_valid(headers, body):
    parts = dict(p.split("=", 1) for p in headers.get("Stripe-Signature", "").split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts:
        return False
    if abs(time.time() - int(parts["t"])) > 300:
        return False
    want = hmac.new(SECRETS["stripe"].encode(), parts["t"].encode() + b"." + body,
                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v1"])


def paypal_valid(headers, body):
    tid = headers.get("PayPal-Transmission-Id", "")
    when = headers.get("PayPal-Transmission-Time", "")
    whid = headers.get("PayPal-Webhook-Id", "")
    if not tid or not when or whid != WEBHOOK_ID:
        return False
    msg = "|".join([tid, when, whid, hashlib.sha256(body).hexdigest()])
    want = hmac.new(SECRETS["paypal"].encode(), msg.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers.get("PayPal-Transmission-Sig", ""))


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        global fail_next
        url = urllib.parse.urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path == "/fail":
            with lock:
                fail_next = int(urllib.parse.parse_qs(url.query)["n"][0])
            self.send_response(200)
            self.end_headers()
            return
        flavour = url.path.strip("/")
        valid = stripe_valid(self.headers, body) if flavour == "stripe" else paypal_valid(self.headers, body)
        ev = json.loads(body)
        if flavour == "stripe":
            obj = ev["data"]["object"]
            pid, etype = obj.get("metadata", {}).get("payment_id", ""), ev["type"]
        else:
            obj = ev["resource"]
            pid, etype = obj.get("custom_id", ""), ev["event_type"]
        with lock:
            status = 500 if fail_next > 0 else 200
            if fail_next > 0:
                fail_next -= 1
            with open(LOG, "a") as f:
                f.write(json.dumps({"flavour": flavour, "id": ev["id"], "type": etype,
                                    "payment_id": pid, "valid": valid, "answered": status,
                                    "object": obj}) + "\n")
        self.send_response(status)
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
