# paystream workers, payctl and procsim in one image; the command picks the
# binary (ps-ingest, ps-fraud, ps-charge, ps-ledger, payctl, procsim,
# fraudgen, fraud-train).
# Build: docker build -t paystream .
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
 && cmake --build build -j"$(nproc)" --target ps-ingest ps-fraud ps-charge ps-ledger payctl procsim \
      fraudgen fraud-train

FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      librdkafka1 libpq5 libhiredis0.14 libprotobuf-c1 libcurl4 libjansson4 libmicrohttpd12 \
      libglib2.0-0 libssl3 libxgboost0 libyaml-0-2 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home paystream
COPY --from=build /src/build/ps-ingest /src/build/ps-fraud /src/build/ps-charge \
     /src/build/ps-ledger /src/build/payctl /src/build/procsim \
     /src/build/fraudgen /src/build/fraud-train /usr/local/bin/
COPY db/migrations /usr/share/paystream/migrations
# The fraud model and rules the worker starts with (PAYSTREAM_FRAUD_MODEL,
# PAYSTREAM_FRAUD_RULES); mount others over them to change either.
COPY models/fraud-model.json /usr/share/paystream/models/fraud-model.json
COPY config/fraud-rules.yaml /usr/share/paystream/fraud-rules.yaml
USER 10001
# Metrics, /healthz and /readyz (PAYSTREAM_METRICS_ADDR); curl is for probes.
EXPOSE 9400
ENV PAYSTREAM_METRICS_ADDR=0.0.0.0:9400
CMD ["ps-ingest"]
