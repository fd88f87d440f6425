# deploy/local/kafka/broker.sh: Apache Kafka brokers for deploy/local/stack
# (sourced by it; uses its RUN, BIN, die, wait_for and free_port). Each node
# is a combined KRaft controller and broker on two free 127.0.0.1 ports, its
# log dir under $RUN/kafka/node-I, its output in $RUN/kafka-I.log.
#
#   PAYSTREAM_KAFKA_HEAP      max heap per broker JVM (default 512m)
#   PAYSTREAM_KAFKA_JVM_OPTS  JVM flags (default: quick start-up, below)
#   PAYSTREAM_TOPIC_CONFIG    per-topic settings at creation, space-separated
#                             TOPIC:KEY=VALUE items (retention tests)

KDIR=$RUN/kafka
# A test broker lives for a minute: the client compiler and one GC thread
# start it in about half the CPU time of the server defaults. bench/run sets
# server flags.
KAFKA_JVM_OPTS_DEFAULT="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Xshare:auto"

kafka_nodes() { cat "$KDIR/nodes"; }

kafka_write_config() {
  local n=$1 i voters="" rf=1 isr=1
  [ "$n" -ge 3 ] && rf=3 isr=2
  for i in $(seq 1 "$n"); do voters+="${voters:+,}$i@127.0.0.1:$(cat "$KDIR/node-$i.cport")"; done
  cat >"$KDIR/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.server.ControllerServer=INFO
log4j.logger.kafka.Kafka$=INFO
log4j.logger.kafka.log.UnifiedLog=INFO
LOG
  for i in $(seq 1 "$n"); do
    mkdir -p "$KDIR/node-$i/data"
    cat >"$KDIR/node-$i/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(cat "$KDIR/node-$i.port"),CONTROLLER://127.0.0.1:$(cat "$KDIR/node-$i.cport")
advertised.listeners=PLAINTEXT://127.0.0.1:$(cat "$KDIR/node-$i.port")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KDIR/node-$i/data
auto.create.topics.enable=false
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=1000
log.initial.task.delay.ms=0
log.segment.delete.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
PROPS
  done
}

# Replaces the calling (sub)shell with the JVM: call it in ( ) or with &, so
# that a backgrounded node's $! is the JVM itself.
kafka_java() {
  local libs; libs=$(cat "$KDIR/libs")
  # shellcheck disable=SC2086
  exec java -Xmx"${PAYSTREAM_KAFKA_HEAP:-512m}" ${PAYSTREAM_KAFKA_JVM_OPTS:-$KAFKA_JVM_OPTS_DEFAULT} \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$KDIR/log4j.properties" \
    -cp "$libs/*" "$@"
}

# Class data sharing (a JDK 13+ dynamic archive): the classes a broker
# loads at start, archived once beside the jars (one archive per JVM build)
# and mapped by every later start instead of being read from the jars,
# parsed and verified again. Until it exists a node started here writes it
# at its normal exit (SIGTERM: kafka-down, stack down; its name is kept in
# node-I.cds) under a name of its own, renamed into place when complete.
# PAYSTREAM_KAFKA_CDS=0 leaves it out.
kafka_cds_opts() {
  local i=$1 libs jvm jsa
  rm -f "$KDIR/node-$i.cds"
  [ "${PAYSTREAM_KAFKA_CDS:-1}" = 1 ] || return 0
  libs=$(cat "$KDIR/libs")
  jvm=$(readlink -f "$(command -v java)") || return 0
  jsa=$(dirname "$libs")/broker-$(stat -L -c '%s-%Y' "$jvm" "$(dirname "$jvm")/../lib/server/libjvm.so" 2>/dev/null | md5sum | cut -c1-12).jsa
  if [ -s "$jsa" ]; then
    echo "-XX:SharedArchiveFile=$jsa"
  else
    local tmp=$jsa.tmp.$$.$RANDOM.$i
    printf '%s\n%s\n' "$jsa" "$tmp" >"$KDIR/node-$i.cds"
    echo "-XX:ArchiveClassesAtExit=$tmp"
  fi
}

# After node I's JVM exited: the archive it wrote goes into place when it
# was stopped by our SIGTERM alone (clean=1); otherwise it is dropped.
kafka_cds_keep() {
  local i=$1 clean=$2 jsa tmp
  [ -s "$KDIR/node-$i.cds" ] || return 0
  { read -r jsa; read -r tmp; } <"$KDIR/node-$i.cds"
  if [ "$clean" = 1 ] && [ -s "$tmp" ] && [ ! -s "$jsa" ]; then mv -f "$tmp" "$jsa"; fi
  rm -f "$tmp" "$KDIR/node-$i.cds"
}

kafka_start_node() {
  local i=$1 cds
  # Where this start's lines begin: kafka_started reads only past them.
  touch "$RUN/kafka-$i.log"
  wc -l <"$RUN/kafka-$i.log" >"$KDIR/node-$i.logline"
  cds=$(kafka_cds_opts "$i")
  # shellcheck disable=SC2086
  kafka_java $cds kafka.Kafka "$KDIR/node-$i/server.properties" </dev/null >>"$RUN/kafka-$i.log" 2>&1 &
  echo $! >"$RUN/kafka-$i.pid"
}

# A process that exists and is not a zombie (a node this shell started and
# killed stays one until the shell exits).
pid_running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }
kafka_alive() { [ -e "$RUN/kafka-$1.pid" ] && pid_running "$(cat "$RUN/kafka-$1.pid")"; }

# Node I's JVM, started last by kafka_start_node, says it has started (so a
# port another process took cannot pass for ours: that JVM fails to bind).
kafka_started() {
  tail -n +"$(($(cat "$KDIR/node-$1.logline") + 1))" "$RUN/kafka-$1.log" |
    grep -c "BrokerServer id=$1\] Transition from STARTING to STARTED" >/dev/null
}

# Waits until every node has started and the cluster serves metadata with
# all of them; fails at once if a node's JVM died.
kafka_wait_serving() {
  local n; n=$(kafka_nodes)
  local end=$((SECONDS + ${PAYSTREAM_KAFKA_START_TIMEOUT:-120})) i ok
  while :; do
    ok=1
    for i in $(seq 1 "$n"); do
      kafka_alive "$i" || return 1
      kafka_started "$i" || ok=
    done
    [ -n "$ok" ] && PAYSTREAM_KAFKA_BOOTSTRAP=$(cat "$RUN/kafka.bootstrap") \
      "$BIN/kadmin" wait --brokers "$n" --timeout 1 2>/dev/null && return 0
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}

# Formats node I's log dir: a copy of a KRaft log dir formatted once per node
# id and kept beside the jars (StorageTool is a JVM start of its own, and a
# format depends only on the cluster id, the node id and the metadata
# version: every local stack is a cluster of its own, so they may share the
# id). Templates are made under a lock: two stacks may start at once.
kafka_format() {
  local i=$1 libs fmt tpl cid
  libs=$(cat "$KDIR/libs")
  fmt=$(dirname "$libs")/format
  tpl=$fmt/node-$i
  mkdir -p "$fmt"
  (
    flock 9
    # One cluster id for every node template: the nodes of a three-node stack
    # must agree on it. A KRaft cluster id is 16 random bytes in URL-safe base64.
    [ -s "$fmt/cluster.id" ] ||
      head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$fmt/cluster.id"
    cid=$(cat "$fmt/cluster.id")
    if [ ! -e "$tpl/done" ] || ! grep -qx "cluster.id=$cid" "$tpl/data/meta.properties"; then
      rm -rf "$tpl" && mkdir -p "$tpl/data"
      sed "s|^log.dirs=.*|log.dirs=$tpl/data|" "$KDIR/node-$i/server.properties" >"$tpl/server.properties"
      (kafka_java kafka.tools.StorageTool format -t "$cid" -c "$tpl/server.properties") \
        >>"$RUN/kafka-$i.log" 2>&1 && touch "$tpl/done"
    fi
  ) 9>"$fmt/format.lock"
  [ -e "$tpl/done" ] || { cat "$RUN/kafka-$i.log" >&2; die "formatting kafka node $i failed"; }
  rm -rf "$KDIR/node-$i/data"
  cp -r "$tpl/data" "$KDIR/node-$i/data"
}

start_kafka() {
  local n=${1:-1} i attempt libs started=
  libs=$("$here/kafka/fetch") || die "no Kafka broker jars (deploy/local/kafka/fetch failed)"
  command -v java >/dev/null || die "java not found (run deploy/local/install-deps)"
  mkdir -p "$KDIR"
  echo "$libs" >"$KDIR/libs"
  echo "$n" >"$KDIR/nodes"
  for attempt in 1 2 3; do
    rm -rf "$KDIR"/node-* "$RUN"/kafka-*.log
    local bootstrap=""
    for i in $(seq 1 "$n"); do
      free_port >"$KDIR/node-$i.port"
      free_port >"$KDIR/node-$i.cport"
      bootstrap+="${bootstrap:+,}127.0.0.1:$(cat "$KDIR/node-$i.port")"
    done
    echo "$bootstrap" >"$RUN/kafka.bootstrap"
    kafka_write_config "$n"
    for i in $(seq 1 "$n"); do kafka_format "$i"; done
    for i in $(seq 1 "$n"); do kafka_start_node "$i"; done
    if kafka_wait_serving; then started=1; break; fi
    # Most likely another process took a port between our check and the bind.
    echo "stack: kafka did not start (attempt $attempt): $(grep -h -m1 -E 'ERROR|Exception' "$RUN"/kafka-*.log)" >&2
    kafka_kill_all
  done
  [ -n "$started" ] || die "kafka did not start (see $RUN/kafka-*.log)"
  local rf=1 topic_args=() item
  [ "$n" -ge 3 ] && rf=3
  for item in ${PAYSTREAM_TOPIC_CONFIG:-}; do topic_args+=(--topic-config "${item%%:*}" "${item#*:}"); done
  PAYSTREAM_KAFKA_BOOTSTRAP=$(cat "$RUN/kafka.bootstrap") "$BIN/kadmin" create \
    --partitions "${PAYSTREAM_PARTITIONS:-4}" --replication "$rf" --timeout 60 "${topic_args[@]}" \
    || die "could not create the topics"
}

# Stops node I (SIGTERM: a controlled shutdown), or kills it (SIGKILL).
kafka_stop_node() {
  local i=$1 sig=${2:-TERM} pid
  kafka_alive "$i" || { kafka_cds_keep "$i" 0; return 0; }
  pid=$(cat "$RUN/kafka-$i.pid")
  kill -"$sig" "$pid" 2>/dev/null || true
  local end=$((SECONDS + 60)) clean=1
  [ "$sig" = TERM ] || clean=0
  while pid_running "$pid"; do
    if [ $SECONDS -ge $end ]; then kill -KILL "$pid" 2>/dev/null || true; clean=0; fi
    sleep 0.1
  done
  kafka_cds_keep "$i" "$clean"
}

# At teardown: SIGKILL, but a node writing the class archive gets SIGTERM
# (the archive is written at a normal exit, once per machine).
kafka_kill_all() {
  local i
  for i in $(seq 1 "$(kafka_nodes)"); do
    if [ -s "$KDIR/node-$i.cds" ]; then kafka_stop_node "$i" TERM; else kafka_stop_node "$i" KILL; fi
  done
}

# kafka-down [I]: every node (or node I) stops; kafka-up [I] starts them on
# the same log dirs and ports and waits until the cluster serves metadata.
cmd_kafka_down() {
  local i
  for i in ${1:-$(seq 1 "$(kafka_nodes)")}; do kafka_stop_node "$i" "${2:-TERM}" & done
  wait
}
cmd_kafka_up() {
  local i
  for i in ${1:-$(seq 1 "$(kafka_nodes)")}; do kafka_alive "$i" || kafka_start_node "$i"; done
  kafka_wait_serving || die "kafka did not come back (see $RUN/kafka-*.log)"
}

# "Apache Kafka 3.9.1, 1 node" for the stack's banner and the demo.
kafka_describe() {
  local libs jar; libs=$(cat "$KDIR/libs")
  jar=$(basename "$(ls "$libs"/kafka_2.13-*.jar | head -n1)" .jar)
  echo "Apache Kafka ${jar#kafka_2.13-}, $(kafka_nodes) node$([ "$(kafka_nodes)" = 1 ] || echo s)"
}
