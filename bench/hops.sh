#!/usr/bin/env bash
# bench/hops.sh: where a payment's end-to-end latency goes, hop by hop, at a
# fixed open-loop rate. Each stage stamps its own transaction time in
# Postgres (payments.created_at by ingest, fraud_assessments.created_at,
# charge_attempts.created_at and .updated_at when the answer is recorded,
# ledger_transactions.created_at), so the gaps between them are the time a
# payment spent between stages: the previous stage's produce and commit,
# the Kafka hop, and waiting for the next stage's current batch.
# usage: bench/hops.sh [build-dir] [rate/s] [seconds]
# (WORKER_KAFKA_PROPERTIES: the workers' librdkafka settings, default none: lib/kafka.c's fetch.wait.max.ms=100)
source "$(dirname "$0")/lib.sh" "${1:-}"
RATE=${2:-1500}
SECS=${3:-20}
new_stack
for s in ingest fraud charge ledger; do
  env PAYSTREAM_LOG_LEVEL=warn PAYSTREAM_KAFKA_PROPERTIES="${WORKER_KAFKA_PROPERTIES:-}" "$STACK" start-worker "$s" 1
done
for s in ingest fraud charge ledger; do wait_ready "$s" 1; done
"$PAYCTL" load --run warm --count 1000 >/dev/null 2>&1 || true
"$PAYCTL" load --run hops --rate "$RATE" --count $((RATE * SECS)) --json "$PAYSTREAM_RUN_DIR/load.json" >/dev/null 2>&1
echo "rate $RATE/s for $SECS s: end to end (publication -> outcome) p50 $(jq .latency_ms.p50 "$PAYSTREAM_RUN_DIR/load.json") ms, p99 $(jq .latency_ms.p99 "$PAYSTREAM_RUN_DIR/load.json") ms"
echo "p99 by second of publication (ms): $(jq -r '[.latency_by_second[] | .p99 | floor] | join(" ")' "$PAYSTREAM_RUN_DIR/load.json")"
echo
echo "| hop (ms) | p50 | p90 | p99 |"
echo "|---|---|---|---|"
sql "WITH h AS (
  SELECT extract(epoch FROM a.created_at - p.created_at) * 1000 AS ingest_to_fraud,
         extract(epoch FROM c.created_at - a.created_at) * 1000 AS fraud_to_charge,
         extract(epoch FROM c.updated_at - c.created_at) * 1000 AS charge_attempt,
         extract(epoch FROM t.created_at - c.updated_at) * 1000 AS charge_to_ledger
  FROM payments p JOIN fraud_assessments a USING (payment_id)
  JOIN charge_attempts c USING (payment_id) JOIN ledger_transactions t USING (payment_id)
  WHERE p.idempotency_key LIKE 'hops-%')
SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY v)::numeric, 1),
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY v)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY v)::numeric, 1)
FROM h, LATERAL (VALUES ('ingest -> fraud', ingest_to_fraud), ('fraud -> charge', fraud_to_charge),
                        ('charge: attempt opened -> answer recorded', charge_attempt),
                        ('charge -> ledger', charge_to_ledger)) AS x(name, v)
GROUP BY name ORDER BY min(CASE name WHEN 'ingest -> fraud' THEN 1 WHEN 'fraud -> charge' THEN 2
  WHEN 'charge: attempt opened -> answer recorded' THEN 3 ELSE 4 END)" | sed 's/\t/ | /g; s/^/| /; s/$/ |/'
echo
echo "Each stage's batches during the run (its /metrics: paystream_batch_seconds covers decode, the"
echo "stage's Postgres work, the produce until acknowledged and the offset commit; warm-up included):"
echo
echo "| stage | batches | mean batch size | mean batch ms |"
echo "|---|---|---|---|"
for s in ingest fraud charge ledger; do
  port=$(cat "$PAYSTREAM_RUN_DIR/metrics/$s-1.port")
  curl -s "http://127.0.0.1:$port/metrics" | awk -v s="$s" '
    /^paystream_batch_seconds_sum/ { bs = $NF } /^paystream_batch_seconds_count/ { bc = $NF }
    /^paystream_batch_size_sum/ { ns = $NF }
    END { if (bc > 0) printf "| %s | %d | %.1f | %.1f |\n", s, bc, ns / bc, 1000 * bs / bc }'
done
