# paystream images, one Dockerfile:
#   docker build -t paystream .                 production (the default, last stage):
#       the workers (ps-ingest, ps-fraud, ps-charge, ps-ledger), the processor
#       events' receiver and recorder (ps-webhook, ps-events) and payctl
#   docker build --target dev -t paystream:dev . development and demo: the
#       same plus procsim (processor simulator), fraudgen and fraud-train
# The command picks the binary. The production image carries no simulator
# and no training tool: what is not there cannot be started by mistake.
FROM debian:bookworm AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libpq-dev libhiredis-dev libprotobuf-c-dev protobuf-c-compiler \
      libcurl4-openssl-dev libjansson-dev libmicrohttpd-dev libglib2.0-dev libssl-dev \
      libcriterion-dev libxgboost-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY lib lib
COPY services services
COPY tools tools
COPY tests tests
COPY db db
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPS_MIGRATIONS_DIR=/usr/share/paystream/migrations \
 && cmake --build build -j"$(nproc)" --target ps-ingest ps-fraud ps-charge ps-ledger ps-webhook ps-events payctl procsim \
      fraudgen fraud-train

# What both images run on. psql is for the ops checks (deploy/k8s/ops-cronjob.yaml).
FROM debian:bookworm-slim AS runtime
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      librdkafka1 libpq5 libhiredis0.14 libprotobuf-c1 libcurl4 libjansson4 libmicrohttpd12 \
      libglib2.0-0 libssl3 libxgboost0 libyaml-0-2 ca-certificates curl postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home paystream \
 && mkdir -p /etc/paystream/postgres-ca /etc/paystream/kafka-ca /run/secrets/paystream
COPY db/migrations /usr/share/paystream/migrations
# The fraud model and rules the worker starts with (PAYSTREAM_FRAUD_MODEL,
# PAYSTREAM_FRAUD_RULES); mount others over them to change either.
COPY models/fraud-model.json /usr/share/paystream/models/fraud-model.json
COPY config/fraud-rules.yaml /usr/share/paystream/fraud-rules.yaml
# Mount points (deploy/k8s): the Postgres CA at /etc/paystream/postgres-ca/ca.crt
# (the DSN's sslrootcert), the Kafka CA at /etc/paystream/kafka-ca/ca.crt,
# the pod's own secrets under /run/secrets/paystream.
# Metrics, /healthz and /readyz (PAYSTREAM_METRICS_ADDR); curl is for probes.
# ps-webhook also listens for the processors' webhooks (PAYSTREAM_WEBHOOK_ADDR).
EXPOSE 9400 9410
ENV PAYSTREAM_METRICS_ADDR=0.0.0.0:9400

FROM runtime AS dev
COPY --from=build /src/build/ps-ingest /src/build/ps-fraud /src/build/ps-charge \
     /src/build/ps-ledger /src/build/ps-webhook /src/build/ps-events /src/build/payctl /src/build/procsim \
     /src/build/fraudgen /src/build/fraud-train /usr/local/bin/
USER 10001
CMD ["ps-ingest"]

FROM runtime AS production
COPY --from=build /src/build/ps-ingest /src/build/ps-fraud /src/build/ps-charge \
     /src/build/ps-ledger /src/build/ps-webhook /src/build/ps-events /src/build/payctl /usr/local/bin/
USER 10001
CMD ["ps-ingest"]
