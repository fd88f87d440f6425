#!/usr/bin/env bash
# charge_refund_pending.sh with a PayPal-like processor: refunds answered
# PENDING, their current state asked at GET /v2/payments/refunds/{id}.
FLAVOUR=paypal exec bash "$(dirname "$0")/charge_refund_pending.sh" "$@"
