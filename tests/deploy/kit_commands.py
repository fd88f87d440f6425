#!/usr/bin/python3
"""Executes what the deployment kit executes, as written in its YAML.

Static checks passed while the compose file's `roles` step could never run
(psql does not substitute :variables in -c). So this test extracts every
shell and SQL command that the compose file's one-shot services and the
Kubernetes Jobs run, and runs it against a real Postgres 15 (password
authentication, TLS), with the paystream binaries from the build directory
standing in for the image's /usr/local/bin:

  compose:    db-bootstrap, migrate, roles (twice: a redeploy must pass),
              kafka-init (twice) against a real Kafka 3.9.1 broker (KRaft, the
              image's version; deploy/local's cached jars plus Kafka's tools:
              deploy/local/kafka/fetch --tools), a transactional producer
              per stage (transaction log settings), redis and procsim, then each stage
              (its command, environment and secrets as written) until its
              healthcheck passes, then SIGTERM: exit 0 within its
              stop_grace_period; the webhook receiver takes a delivery
              signed with its secret (and refuses a forged one), and the
              events stage records it in Postgres as its own role; ops (its first round, pushed to a
              capturing Pushgateway stand-in, checked with promtool); expire
              (the sweeper's first round): an authorization past its window
              is released, posted and its `expired` outcome is on
              payments.outcomes, announced; paystream_expire may run the
              sweep and nothing more
  kubernetes: bootstrap-job, migrate-job (init container, then main
              container; twice), ops-cronjob; then each stage's Deployment
              container (ConfigMap, its own Secret, CA bundles) against
              Postgres over verified TLS and a broker as Strimzi would run
              it (SASL_SSL, SCRAM principals from the stages' Secrets, the
              topics and ACLs of deploy/kafka applied) until its readiness
              probe answers, then SIGTERM within the grace period (the
              webhook receiver and the events stage as in compose, the
              delivery posted to the path the Ingress routes); then
              each principal commits a Kafka transaction under its own
              transactional.id prefix and is refused another stage's; the
              expire CronJob, as its own role and principal, releases and
              announces an authorization past its window

It runs in private mount and network namespaces (unshare), so the commands
see their files at the exact paths the manifests mount them (/run/secrets,
/etc/paystream/...), reach `postgres`, `procsim` and `pushgateway` by the
names the manifests use, and Postgres listens on 5432 as in production
without touching the host. Each command sees only the secrets its own
service or pod mounts: one that reads another's fails here as it would there.

Substitutions, all named: the Postgres server is a local initdb (as the
postgres image's entrypoint makes it) and the broker a local KRaft node
configured as the compose `kafka` service; /opt/kafka/bin/kafka-topics.sh
runs the same tool class as the image's script; the CA ConfigMaps
(operator-provided) hold the CA this test makes; the Kubernetes ops job's
processor URL points at procsim. The Strimzi topics (deploy/kafka) are
applied by Strimzi's operator, not by a command: validate.py checks them.

usage: kit_commands.py <repo> <build-dir> [--compose FILE]
Exit status 1 lists what failed."""
import base64
import hashlib
import http.server
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import yaml

HOSTS = ["postgres", "procsim", "pushgateway", "pushgateway.monitoring.svc", "kafka", "redis", "webhook",
         "paystream-kafka-bootstrap.kafka.svc"]
PGBIN = pathlib.Path("/usr/lib/postgresql/15/bin")

problems = []


def fail(msg):
    problems.append(msg)
    print(f"not ok - {msg}", flush=True)


def ok(msg):
    print(f"ok - {msg}", flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def wait_for(what, cond, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    fail(f"timed out waiting for {what}")
    return False


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- the sandbox ---------------------------------------------------------

def enter_namespaces():
    """Re-executes this script in new mount and network namespaces."""
    if os.environ.get("KIT_IN_NAMESPACE") == "1":
        return
    if os.geteuid() != 0:
        print("kit_commands: needs root (mount and network namespaces)", file=sys.stderr)
        sys.exit(1)
    env = dict(os.environ, KIT_IN_NAMESPACE="1")
    # Fetched before the network namespace cuts Maven Central off.
    r = subprocess.run([str(CHECKOUT / "deploy/local/kafka/fetch"), "--tools"], stdout=subprocess.PIPE,
                       text=True)
    env["KIT_KAFKA_LIBS"] = str(pathlib.Path(r.stdout.strip()).resolve()) if r.returncode == 0 else ""
    os.execvpe("unshare", ["unshare", "--mount", "--net", "--fork", "--kill-child",
                           sys.executable, *sys.argv], env)


def prepare_sandbox(work):
    sh(["ip", "link", "set", "lo", "up"])
    # /etc: an overlay, so /etc/hosts and /etc/paystream can be written.
    for d in ("etc-upper", "etc-work", "opt-upper", "opt-work"):
        (work / d).mkdir()
    sh(["mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/etc,upperdir={work}/etc-upper,workdir={work}/etc-work", "/etc"])
    sh(["mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/opt,upperdir={work}/opt-upper,workdir={work}/opt-work", "/opt"])
    with open("/etc/hosts", "a") as f:
        f.write("127.0.0.1 " + " ".join(HOSTS) + "\n")
    # /run: empty, like a container's (secrets are mounted under it).
    sh(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"])
    # /usr/share: an overlay, for the files the image puts there.
    for d in ("share-upper", "share-work"):
        (work / d).mkdir()
    sh(["mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/usr/share,upperdir={work}/share-upper,workdir={work}/share-work", "/usr/share"])


# The checkout (binaries, migrations) must stay visible: a scratch volume
# mounted above it (an emptyDir at /tmp, when the checkout is under /tmp)
# is left out instead of hiding it.
CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


def mount_files(path, files):
    """A fresh tmpfs at path holding files {name: bytes}, readable by all;
    None (nothing mounted) when path holds the checkout and files is empty."""
    p = pathlib.Path(path)
    if not files and (p.resolve() == CHECKOUT or p.resolve() in CHECKOUT.parents):
        print(f"# {path}: scratch volume not mounted (it holds the checkout)", flush=True)
        return None
    p.mkdir(parents=True, exist_ok=True)
    sh(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(p)])
    for name, data in files.items():
        f = p / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        f.chmod(0o444)
    return str(p)


def killpg_quiet(pgid, sig):
    """Signals a process group that may already be gone (all exited)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def unmount(paths):
    for p in reversed(paths):
        if p is not None:
            subprocess.run(["umount", p], check=False)


# --- Postgres, as the postgres image starts it ------------------------------

class Postgres:
    def __init__(self, work, superuser_password, ca):
        self.data = work / "pgdata"
        self.work = work
        pwfile = work / "pwfile"
        pwfile.write_text(superuser_password + "\n")
        for p in (work, pwfile):
            shutil.chown(p, "postgres", "postgres")
        self.data.mkdir(mode=0o700)
        shutil.chown(self.data, "postgres", "postgres")
        self.as_pg([PGBIN / "initdb", "-D", self.data / "d", "-U", "postgres",
                    "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                    "--no-instructions"])
        d = self.data / "d"
        shutil.copy(ca.server_crt, d / "server.crt")
        shutil.copy(ca.server_key, d / "server.key")
        for f in ("server.crt", "server.key"):
            shutil.chown(d / f, "postgres", "postgres")
            (d / f).chmod(0o600)
        self.as_pg([PGBIN / "pg_ctl", "-D", d, "-l", self.data / "log", "-w", "-t", "60", "-o",
                    f"-p 5432 -k {self.data} -c listen_addresses=127.0.0.1 -c ssl=on", "start"])

    def as_pg(self, cmd):
        sh(["runuser", "-u", "postgres", "--"] + [str(c) for c in cmd], stdout=subprocess.DEVNULL)

    def sql(self, db, q):
        """As the superuser over the local socket: for the test's own checks."""
        r = subprocess.run(["psql", "-X", "-qAt", "-h", str(self.data), "-p", "5432", "-U",
                            "postgres", "-d", db, "-c", q], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    def stop(self):
        self.as_pg([PGBIN / "pg_ctl", "-D", self.data / "d", "-m", "fast", "-w", "stop"])


class CA:
    """A CA and a server certificate for the name `postgres`."""

    def __init__(self, work):
        d = work / "ca"
        d.mkdir()
        self.crt, key = d / "ca.crt", d / "ca.key"
        self.server_crt, self.server_key = d / "server.crt", d / "server.key"
        q = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=paystream-kit-ca", "-keyout", key, "-out", self.crt], **q)
        csr = d / "server.csr"
        sh(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=postgres",
            "-keyout", self.server_key, "-out", csr], **q)
        ext = d / "ext"
        ext.write_text("subjectAltName=DNS:postgres\n")
        sh(["openssl", "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", key,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.server_crt], **q)


# --- stand-ins at the edges --------------------------------------------------

class Pushgateway:
    """Captures what is pushed to :9091/metrics/job/<job>."""

    def __init__(self):
        self.pushes = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                outer.pushes.append((self.path, self.rfile.read(n).decode()))
                self.send_response(200)
                self.end_headers()

            do_PUT = do_POST

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 9091), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def compose_kafka_props(svc):
    """The broker settings of the compose `kafka` service as the
    apache/kafka image derives them from its environment (KAFKA_FOO_BAR ->
    foo.bar), so that the test's broker runs the compose file's settings."""
    return [f"{k[6:].lower().replace('_', '.')}={v}" for k, v in (svc.get("environment") or {}).items()
            if k.startswith("KAFKA_")]


JVM_SHORT_LIVED = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto"]


def tools_archive(libs):
    """A class-data archive of what a Kafka tool run loads (TopicCommand and
    its admin client), made once per machine beside the jars, as
    deploy/local/kafka/broker.sh keeps its broker-*.jsa; keyed by the JVM
    (an archive from another JVM build would be refused)."""
    java = pathlib.Path(shutil.which("java") or "java").resolve()
    ident = " ".join(f"{st.st_size}-{int(st.st_mtime)}" for st in
                     (p.stat() for p in (java, java.parent.parent / "lib/server/libjvm.so") if p.exists()))
    return pathlib.Path(libs).parent / f"kit-tools-{hashlib.md5(ident.encode()).hexdigest()[:12]}.jsa"


class KafkaBroker:
    """A single-node KRaft broker from the jars of the compose image's Kafka
    version (fetch --tools) with the given settings (the compose `kafka`
    service's, or a Strimzi-like listener set with this test's single-node
    replication settings); /opt/kafka/bin/kafka-topics.sh runs the tool
    class as the image's script does (kafka-run-class.sh
    org.apache.kafka.tools.TopicCommand)."""

    SINGLE_NODE = ["process.roles=broker,controller", "node.id=1", "controller.listener.names=CONTROLLER",
                   "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
                   "transaction.state.log.min.isr=1", "auto.create.topics.enable=false"]

    def __init__(self, work, libs, settings, scram_users=()):
        self.libs = libs
        d = work / "kafka"
        d.mkdir()
        self.dir = d
        props = d / "server.properties"
        # where the image keeps its data, and two start-up speed-ups
        props.write_text("\n".join(settings + [
            f"log.dirs={d}/data", "offsets.topic.num.partitions=1", "group.initial.rebalance.delay.ms=0", ""]))
        (d / "log4j.properties").write_text("log4j.rootLogger=WARN, stderr\n"
                                            "log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
                                            "log4j.appender.stderr.Target=System.err\n"
                                            "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
                                            "log4j.appender.stderr.layout.ConversionPattern=%p %m%n\n")
        # A JVM per tool run and per readiness poll (and the broker): so the JIT's
        # first tier, the serial collector and the JDK's class-data archive,
        # as deploy/local/kafka/broker.sh starts its nodes (KAFKA_JVM_OPTS's
        # default there). The classes run are the image's; only the JVM's
        # tuning differs, as it already did (kafka-run-class.sh's G1 options).
        self.java = ["java", *JVM_SHORT_LIVED, f"-Dlog4j.configuration=file:{d}/log4j.properties",
                     "-cp", f"{libs}/*"]
        self.jsa = tools_archive(libs)
        # StorageTool random-uuid's answer, without a JVM: Uuid.randomUuid()
        # is a random (v4) UUID in unpadded URL-safe base64, never one that
        # starts with "-".
        cluster = "-"
        while cluster.startswith("-"):
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        scram = [a for u, pw in scram_users for a in ("--add-scram", f"SCRAM-SHA-512=[name={u},password={pw}]")]
        sh(self.java + ["kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props)] + scram,
           stdout=subprocess.DEVNULL)
        self.log = open(d / "broker.log", "w")
        self.proc = subprocess.Popen(["java", "-Xmx512m"] + self.java[1:] + ["kafka.Kafka", str(props)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        pathlib.Path("/opt/kafka/bin").mkdir(parents=True, exist_ok=True)
        script = pathlib.Path("/opt/kafka/bin/kafka-topics.sh")
        script.write_text("#!/bin/sh\n# as the image's: kafka-run-class.sh org.apache.kafka.tools.TopicCommand\n"
                          f"cds=; [ -s '{self.jsa}' ] && cds='-XX:SharedArchiveFile={self.jsa}'\n"
                          f"exec {' '.join(self.java[:-2])} $cds -cp '{libs}/*' org.apache.kafka.tools.TopicCommand \"$@\"\n")
        script.chmod(0o755)

    def ready(self, bootstrap="kafka:9092"):
        if not (port_open(9092) and subprocess.run(
                ["/opt/kafka/bin/kafka-topics.sh", "--bootstrap-server", bootstrap, "--list"],
                capture_output=True).returncode == 0):
            return False
        if not self.jsa.exists():
            # The first run on this machine: the same listing again, its
            # classes archived at exit (a failure only leaves it out).
            tmp = self.jsa.with_name(f"{self.jsa.name}.{os.getpid()}.tmp")
            subprocess.run(self.java[:-2] + [f"-XX:ArchiveClassesAtExit={tmp}"] + self.java[-2:] +
                           ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--list"],
                           capture_output=True)
            if tmp.exists() and tmp.stat().st_size > 0:
                os.replace(tmp, self.jsa)
            tmp.unlink(missing_ok=True)
        return True

    def tool_java(self):
        """The JVM command for a Kafka tool class, with the tools' archive once made."""
        cds = [f"-XX:SharedArchiveFile={self.jsa}"] if self.jsa.exists() else []
        return self.java[:-2] + cds + self.java[-2:]

    def tool(self, cls, args):
        r = subprocess.run(self.tool_java() + [cls, "--bootstrap-server", "127.0.0.1:9092"] + args,
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"kafka {cls.rsplit('.', 1)[1]} {' '.join(args)}: {(r.stderr + r.stdout).strip()[-300:]}")
        return r.returncode == 0

    def describe(self):
        r = subprocess.run(["/opt/kafka/bin/kafka-topics.sh", "--bootstrap-server", "kafka:9092",
                            "--describe"], capture_output=True, text=True)
        topics = {}
        for line in r.stdout.splitlines():
            m = re.match(r"Topic: (\S+)\s+TopicId: \S+\s+PartitionCount: (\d+)\s+ReplicationFactor: (\d+)"
                         r"\s+Configs: ?(.*)", line.strip())
            if m:
                cfg = dict(kv.split("=", 1) for kv in m.group(4).split(",") if "=" in kv)
                topics[m.group(1)] = (int(m.group(2)), int(m.group(3)), cfg)
        return topics

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --- running extracted commands ---------------------------------------------

def compose_interpolate(s, where):
    """Compose replaces $$ with $ and ${VAR}/$VAR with the host's values: the
    kit must not depend on the host, so an unescaped $ is an error."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        fail(f"{where}: unescaped {m.group(0)} (compose would substitute it from the host)")
        return m.group(0)
    return re.sub(r"\$\$|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", sub, s)


def k8s_expand(s, env):
    """Kubernetes expands $(VAR) from the container's env; $$ escapes."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, s)


def base_env(bindir):
    return {"PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/tmp", "LANG": "C.UTF-8",
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", ""),
            }


def run(where, argv, env, background=False):
    print(f"# {where}: {argv[0]} ...", flush=True)
    if background:
        return subprocess.Popen(argv, env=env, cwd="/tmp", stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    r = subprocess.run(argv, env=env, cwd="/tmp", capture_output=True, text=True, timeout=300)
    out = (r.stdout + r.stderr).strip()
    if out:
        print("\n".join("    " + line for line in out.splitlines()), flush=True)
    if r.returncode != 0:
        fail(f"{where}: exited {r.returncode}")
        return False
    ok(f"{where} ran")
    return True


def compose_service(compose, cdir, name, bindir, background=False):
    svc = compose["services"][name]
    argv = list(svc.get("entrypoint") or []) + list(svc.get("command") or [])
    if not argv or not all(isinstance(a, str) for a in argv):
        fail(f"compose {name}: entrypoint/command must be lists")
        return None
    argv = [compose_interpolate(a, f"compose {name}") for a in argv]
    env = base_env(bindir)
    for k, v in (svc.get("environment") or {}).items():
        env[k] = compose_interpolate(str(v), f"compose {name}")
    files = {s: (cdir / compose["secrets"][s]["file"]).read_bytes() for s in svc.get("secrets", [])}
    mounts = [mount_files("/run/secrets", files)]
    try:
        return run(f"compose {name}", argv, env, background)
    finally:
        if not background:
            unmount(mounts)


class K8s:
    def __init__(self, kdir, ca):
        self.ca = ca
        self.docs = {}
        for f in sorted(kdir.glob("*.yaml")):
            for d in yaml.safe_load_all(f.read_text()):
                if d:
                    self.docs[(d["kind"], d["metadata"]["name"])] = d
        # Operator-provided CA bundles: the one this test's Postgres uses.
        for name in ("postgres-ca", "kafka-ca"):
            self.docs.setdefault(("ConfigMap", name), {"data": {"ca.crt": ca.crt.read_text()}})

    def secret(self, name):
        s = self.docs.get(("Secret", name))
        if not s:
            raise KeyError(f"no Secret {name} in deploy/k8s")
        return {k: v.encode() for k, v in (s.get("stringData") or {}).items()}

    def configmap(self, name):
        c = self.docs.get(("ConfigMap", name))
        if not c:
            raise KeyError(f"no ConfigMap {name} in deploy/k8s")
        return {k: v.encode() for k, v in (c.get("data") or {}).items()}

    def volume_files(self, vol):
        if "secret" in vol:
            src, data = vol["secret"], self.secret(vol["secret"]["secretName"])
        elif "configMap" in vol:
            src, data = vol["configMap"], self.configmap(vol["configMap"]["name"])
        elif "emptyDir" in vol:
            return {}
        else:
            raise KeyError(f"volume {vol['name']}: unsupported type")
        if src.get("items"):
            return {i["path"]: data[i["key"]] for i in src["items"]}
        return data

    def container_env(self, c, overrides):
        env = {}
        for ef in c.get("envFrom", []):
            if "configMapRef" in ef:
                env.update({k: v.decode() for k, v in self.configmap(ef["configMapRef"]["name"]).items()})
            if "secretRef" in ef:
                env.update({k: v.decode() for k, v in self.secret(ef["secretRef"]["name"]).items()})
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = k8s_expand(str(e["value"]), env)
            elif "configMapKeyRef" in e.get("valueFrom", {}):
                r = e["valueFrom"]["configMapKeyRef"]
                env[e["name"]] = self.configmap(r["name"])[r["key"]].decode()
            elif "secretKeyRef" in e.get("valueFrom", {}):
                r = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = self.secret(r["name"])[r["key"]].decode()
        env.update(overrides)
        return env

    def run_pod(self, where, pod, bindir, overrides=None):
        """Init containers in order, then the containers (one here)."""
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + pod["containers"]:
            mounts = []
            try:
                for vm in c.get("volumeMounts", []):
                    mounts.append(mount_files(vm["mountPath"], self.volume_files(vols[vm["name"]])))
                env = self.container_env(c, overrides or {})
                argv = [k8s_expand(a, env) for a in c.get("command", []) + c.get("args", [])]
                full = base_env(bindir)
                full.update(env)
                if not run(f"{where} container {c['name']}", argv, full):
                    return False
            except KeyError as e:
                fail(f"{where} container {c['name']}: {e}")
                return False
            finally:
                unmount(mounts)
        return True


    def start(self, where, pod, bindir, overrides):
        """Starts a Deployment's (single) container in the background:
        volumes mounted, environment resolved; returns (process, mounts)."""
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        c = pod["containers"][0]
        mounts = [mount_files(vm["mountPath"], self.volume_files(vols[vm["name"]]))
                  for vm in c.get("volumeMounts", [])]
        env = self.container_env(c, overrides)
        argv = [k8s_expand(a, env) for a in c.get("command", []) + c.get("args", [])]
        full = base_env(bindir)
        full.update(env)
        return run(f"{where} container {c['name']}", argv, full, background=True), mounts


def k8s_kafka(root, k, work):
    """A broker as the manifests expect the Strimzi cluster: SASL_SSL with
    SCRAM-SHA-512 on paystream-kafka-bootstrap.kafka.svc:9093 (a certificate
    from this test's CA), ACLs enforced; the stages' principals and
    passwords from their Secrets; the topics of deploy/kafka/topics.yaml and
    the ACLs of deploy/kafka/users.yaml applied as Strimzi's operators
    would. Substitution: one broker, so replicas and min.insync.replicas 1."""
    libs = os.environ.get("KIT_KAFKA_LIBS")
    if not libs:
        fail("k8s stages: no Kafka jars (deploy/local/kafka/fetch --tools failed), not run")
        return None
    ca = k.ca
    host = "paystream-kafka-bootstrap.kafka.svc"
    d = work / "kafka-tls"
    d.mkdir()
    key, csr, crt, ext = d / "key.pem", d / "csr.pem", d / "crt.pem", d / "ext"
    q = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sh(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", key,
        "-out", csr], **q)
    ext.write_text(f"subjectAltName=DNS:{host}\n")
    sh(["openssl", "x509", "-req", "-in", csr, "-CA", ca.crt, "-CAkey", ca.crt.parent / "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt], **q)
    (d / "keystore.pem").write_text(key.read_text() + crt.read_text())
    users = []
    for stage in WORKERS + ["expire"]:
        props = dict(l.split("=", 1) for l in k.secret(f"paystream-{stage}")["kafka.properties"].decode().split("\n")
                     if "=" in l)
        users.append((props["sasl.username"], props["sasl.password"]))
    listeners = [
        "controller.quorum.voters=1@127.0.0.1:9094",
        "listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9093,CONTROLLER://127.0.0.1:9094",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://{host}:9093",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type=PEM", f"ssl.keystore.location={d}/keystore.pem",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS", "allow.everyone.if.no.acl.found=false"]
    broker = KafkaBroker(work, libs, KafkaBroker.SINGLE_NODE + listeners, users)
    if not wait_for("the SASL_SSL Kafka broker", lambda: broker.ready("127.0.0.1:9092"), 120):
        return broker
    docs = [x for f in ("topics.yaml", "users.yaml")
            for x in yaml.safe_load_all((root / "deploy/kafka" / f).read_text()) if x]
    # Applied as Strimzi's operators would, through the Admin API in one
    # client (a JVM per AclCommand cost minutes on a loaded machine);
    # transactional-id ACLs, which librdkafka 2.0's Admin API cannot name,
    # through AclCommand, one per principal.
    topics = []
    for t in (x["spec"] for x in docs if x["kind"] == "KafkaTopic"):
        cfg = dict(t.get("config", {}), **{"min.insync.replicas": 1})
        topics.append((t["topicName"], t["partitions"], {k: str(v).lower() for k, v in cfg.items()}))
    acls, txn = [], []
    for u in (x for x in docs if x["kind"] == "KafkaUser" and x["metadata"]["name"] in dict(users)):
        for acl in u["spec"]["authorization"]["acls"]:
            r = acl["resource"]
            for op in acl["operations"]:
                row = (r["type"], r.get("name", "kafka-cluster"), r.get("patternType", "literal"),
                       f"User:{u['metadata']['name']}", op)
                (txn if r["type"] == "transactionalId" else acls).append(row)
    e = kafka_admin_create("127.0.0.1:9092", topics, acls)
    if e:
        fail(f"k8s kafka: applying deploy/kafka's topics and ACLs: {e}")
    batches = {}
    for rtype, name, pattern, principal, op in txn:
        batches.setdefault((principal, name, pattern), []).append(op)
    for (principal, name, pattern), ops in batches.items():
        broker.tool("kafka.admin.AclCommand",
                    ["--add", "--allow-principal", principal,
                     "--resource-pattern-type", {"prefix": "prefixed"}.get(pattern, pattern),
                     ACL_FLAG["transactionalId"], name] + [a for op in ops for a in ("--operation", op)])
    return broker


# Strimzi's ACL resource types and AclCommand's options for them (its
# pattern types: Strimzi's "prefix" is AclCommand's "prefixed").
ACL_FLAG = {"topic": "--topic", "group": "--group", "cluster": "--cluster",
            "transactionalId": "--transactional-id"}


# librdkafka's Admin API codes (rdkafka.h): resource types (BROKER is
# Kafka's CLUSTER), pattern types, operations.
RK_RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
RK_PATTERN = {"literal": 3, "prefix": 4}
RK_OP = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
         "ClusterAction": 9, "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12}


def kafka_admin_create(bootstrap, topics, acls):
    """Creates topics [(name, partitions, {config})] with replication 1 and
    ALLOW ACLs [(type, name, pattern, principal, operation)] through
    librdkafka's Admin API; returns None or the first error."""
    import ctypes
    lib = ctypes.CDLL("librdkafka.so.1")
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    for fn, res, args in (
            ("rd_kafka_conf_new", vp, []), ("rd_kafka_conf_set", ctypes.c_int, [vp, cp, cp, cp, sz]),
            ("rd_kafka_new", vp, [ctypes.c_int, vp, cp, sz]), ("rd_kafka_queue_new", vp, [vp]),
            ("rd_kafka_queue_poll", vp, [vp, ctypes.c_int]), ("rd_kafka_event_error", ctypes.c_int, [vp]),
            ("rd_kafka_event_error_string", cp, [vp]), ("rd_kafka_event_destroy", None, [vp]),
            ("rd_kafka_NewTopic_new", vp, [cp, ctypes.c_int, ctypes.c_int, cp, sz]),
            ("rd_kafka_NewTopic_set_config", ctypes.c_int, [vp, cp, cp]),
            ("rd_kafka_CreateTopics", None, [vp, ctypes.POINTER(vp), sz, vp, vp]),
            ("rd_kafka_event_CreateTopics_result", vp, [vp]),
            ("rd_kafka_CreateTopics_result_topics", ctypes.POINTER(vp), [vp, ctypes.POINTER(sz)]),
            ("rd_kafka_topic_result_error", ctypes.c_int, [vp]), ("rd_kafka_topic_result_error_string", cp, [vp]),
            ("rd_kafka_topic_result_name", cp, [vp]),
            ("rd_kafka_AclBinding_new", vp, [ctypes.c_int, cp, ctypes.c_int, cp, cp, ctypes.c_int, ctypes.c_int,
                                             cp, sz]),
            ("rd_kafka_CreateAcls", None, [vp, ctypes.POINTER(vp), sz, vp, vp]),
            ("rd_kafka_event_CreateAcls_result", vp, [vp]),
            ("rd_kafka_CreateAcls_result_acls", ctypes.POINTER(vp), [vp, ctypes.POINTER(sz)]),
            ("rd_kafka_acl_result_error", vp, [vp]), ("rd_kafka_error_string", cp, [vp]),
            ("rd_kafka_queue_destroy", None, [vp]), ("rd_kafka_destroy", None, [vp])):
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), errstr, 512)
    rk = lib.rd_kafka_new(0, conf, errstr, 512)
    if not rk:
        return f"rd_kafka_new: {errstr.value.decode()}"
    q = lib.rd_kafka_queue_new(rk)

    def wait(what):
        ev = lib.rd_kafka_queue_poll(q, 120000)
        if not ev:
            return None, f"{what}: no answer in 120 s"
        if lib.rd_kafka_event_error(ev):
            msg = lib.rd_kafka_event_error_string(ev).decode()
            lib.rd_kafka_event_destroy(ev)
            return None, f"{what}: {msg}"
        return ev, None

    try:
        new = []
        for name, parts, cfg in topics:
            nt = lib.rd_kafka_NewTopic_new(name.encode(), parts, 1, errstr, 512)
            if not nt:
                return f"topic {name}: {errstr.value.decode()}"
            for k, v in cfg.items():
                lib.rd_kafka_NewTopic_set_config(nt, k.encode(), v.encode())
            new.append(nt)
        if new:
            lib.rd_kafka_CreateTopics(rk, (vp * len(new))(*new), len(new), None, q)
            ev, e = wait("CreateTopics")
            if e:
                return e
            n = sz()
            res = lib.rd_kafka_CreateTopics_result_topics(lib.rd_kafka_event_CreateTopics_result(ev), ctypes.byref(n))
            errs = [f"{lib.rd_kafka_topic_result_name(res[i]).decode()}: "
                    f"{(lib.rd_kafka_topic_result_error_string(res[i]) or b'').decode()}"
                    for i in range(n.value) if lib.rd_kafka_topic_result_error(res[i])]
            lib.rd_kafka_event_destroy(ev)
            if errs or n.value != len(new):
                return f"CreateTopics: {errs or f'{n.value} results for {len(new)} topics'}"
        bindings = []
        for rtype, name, pattern, principal, op in acls:
            b = lib.rd_kafka_AclBinding_new(RK_RESOURCE[rtype], name.encode(), RK_PATTERN[pattern],
                                            principal.encode(), b"*", RK_OP[op], 3, errstr, 512)  # 3: ALLOW
            if not b:
                return f"ACL {rtype} {name} {op}: {errstr.value.decode()}"
            bindings.append(b)
        if bindings:
            lib.rd_kafka_CreateAcls(rk, (vp * len(bindings))(*bindings), len(bindings), None, q)
            ev, e = wait("CreateAcls")
            if e:
                return e
            n = sz()
            res = lib.rd_kafka_CreateAcls_result_acls(lib.rd_kafka_event_CreateAcls_result(ev), ctypes.byref(n))
            errs = [lib.rd_kafka_error_string(lib.rd_kafka_acl_result_error(res[i])).decode()
                    for i in range(n.value) if lib.rd_kafka_acl_result_error(res[i])]
            lib.rd_kafka_event_destroy(ev)
            if errs or n.value != len(bindings):
                return f"CreateAcls: {errs or f'{n.value} results for {len(bindings)} ACLs'}"
        return None
    finally:
        lib.rd_kafka_queue_destroy(q)
        lib.rd_kafka_destroy(rk)


def txn_id(stage, instance="kit-0"):
    """A stage's transactional.id as the workers form it:
    ${PAYSTREAM_TXN_PREFIX:-paystream}-<stage>-<instance id>."""
    return f"paystream-{stage}-{instance}"


def txn_produce(conf, tid, topic="payments.dlq"):
    """Commits one Kafka transaction (one record on topic) with librdkafka,
    the client the workers use, under transactional.id tid; returns None,
    or the error (its name first) of the step that failed."""
    import ctypes
    rk_lib = ctypes.CDLL("librdkafka.so.1")
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for fn, res, args in (("rd_kafka_conf_new", vp, []), ("rd_kafka_conf_set", ctypes.c_int, [vp, cp, cp, cp, ctypes.c_size_t]),
                          ("rd_kafka_new", vp, [ctypes.c_int, vp, cp, ctypes.c_size_t]),
                          ("rd_kafka_init_transactions", vp, [vp, ctypes.c_int]),
                          ("rd_kafka_begin_transaction", vp, [vp]),
                          ("rd_kafka_commit_transaction", vp, [vp, ctypes.c_int]),
                          ("rd_kafka_error_name", cp, [vp]), ("rd_kafka_error_string", cp, [vp]),
                          ("rd_kafka_error_destroy", None, [vp]), ("rd_kafka_topic_new", vp, [vp, cp, vp]),
                          ("rd_kafka_produce", ctypes.c_int, [vp, ctypes.c_int32, ctypes.c_int, cp, ctypes.c_size_t,
                                                             cp, ctypes.c_size_t, vp]),
                          ("rd_kafka_topic_destroy", None, [vp]), ("rd_kafka_destroy", None, [vp])):
        f = getattr(rk_lib, fn)
        f.restype, f.argtypes = res, args
    errstr = ctypes.create_string_buffer(512)
    c = rk_lib.rd_kafka_conf_new()
    for k, v in dict(conf, **{"transactional.id": tid, "log_level": "3",
                              "max.in.flight.requests.per.connection": "1"}).items():
        if rk_lib.rd_kafka_conf_set(c, k.encode(), str(v).encode(), errstr, 512) != 0:
            return f"conf {k}: {errstr.value.decode()}"
    rk = rk_lib.rd_kafka_new(0, c, errstr, 512)  # RD_KAFKA_PRODUCER
    if not rk:
        return f"rd_kafka_new: {errstr.value.decode()}"

    def err(step, e):
        if not e:
            return None
        msg = f"{rk_lib.rd_kafka_error_name(e).decode()} in {step}: {rk_lib.rd_kafka_error_string(e).decode()}"
        rk_lib.rd_kafka_error_destroy(e)
        return msg

    rkt = None
    try:
        e = err("init_transactions", rk_lib.rd_kafka_init_transactions(rk, 60000)) or \
            err("begin_transaction", rk_lib.rd_kafka_begin_transaction(rk))
        if e:
            return e
        rkt = rk_lib.rd_kafka_topic_new(rk, topic.encode(), None)
        payload = f"deploy kit check: a transaction as {tid}".encode()
        if rk_lib.rd_kafka_produce(rkt, -1, 2, payload, len(payload), tid.encode(), len(tid), None) != 0:
            return "produce refused"
        return err("commit_transaction", rk_lib.rd_kafka_commit_transaction(rk, 60000))
    finally:
        if rkt:
            rk_lib.rd_kafka_topic_destroy(rkt)
        rk_lib.rd_kafka_destroy(rk)


def check_txn(where, conf_of, stages):
    """Each stage's principal (conf_of(stage)) commits a transaction under its
    own transactional.id; with ACLs, one under the next stage's prefix is
    refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED)."""
    for stage in stages:
        e = txn_produce(conf_of(stage), txn_id(stage))
        if e:
            fail(f"{where}: {stage} cannot commit a transaction as {txn_id(stage)}: {e}")
        else:
            ok(f"{where}: {stage} commits a transaction as {txn_id(stage)}")


def check_txn_refused(where, conf_of, stages):
    for stage, other in zip(stages, stages[1:] + stages[:1]):
        e = txn_produce(conf_of(stage), txn_id(other))
        if not e or "AUTHORIZATION" not in e.upper():
            fail(f"{where}: {stage}'s principal as {txn_id(other)}: {e or 'committed'}, want an authorization error")
        else:
            ok(f"{where}: {stage}'s principal is refused {txn_id(other)}")


STAGES = ["ingest", "fraud", "charge", "ledger"]


def k8s_stage_kafka_conf(k, stage):
    """A stage's librdkafka settings as its pod has them: the ConfigMap's
    bootstrap and properties, its Secret's SASL principal."""
    cm = {kk: v.decode() for kk, v in k.configmap("paystream").items()}
    conf = {"bootstrap.servers": cm["PAYSTREAM_KAFKA_BOOTSTRAP"]}
    conf.update(kv.split("=", 1) for kv in cm["PAYSTREAM_KAFKA_PROPERTIES"].split(";") if "=" in kv)
    conf.update(l.split("=", 1) for l in k.secret(f"paystream-{stage}")["kafka.properties"].decode().split("\n")
                if "=" in l)
    conf["ssl.ca.location"] = str(k.ca.crt)  # the kafka-ca ConfigMap's bundle
    return conf


def k8s_stages(root, k, work, bindir, pg):
    """Each stage's Deployment container as written (ConfigMap, its own
    Secret, CA bundles), against Postgres over verified TLS as its own role
    and Kafka over SASL_SSL as its own principal with only its ACLs, until
    its readiness probe answers 200; then SIGTERM: exit 0 within
    terminationGracePeriodSeconds."""
    n0 = len(problems)
    broker = k8s_kafka(root, k, work)
    if broker is None:
        return
    redis_pw = k.secret("paystream-ingest")["redis-password"].decode()
    redis = subprocess.Popen(["redis-server", "--port", "6379", "--requirepass", redis_pw, "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    procsim = subprocess.Popen([str(bindir / "procsim"), "--port", "12111"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if len(problems) > n0 or not wait_for("redis and procsim", lambda: port_open(6379) and port_open(12111), 30):
            return
        event_id = "evt_kit_k8s"
        for stage in WORKERS:
            where = f"k8s Deployment paystream-{stage}"
            dep = k.docs[("Deployment", f"paystream-{stage}")]
            pod = dep["spec"]["template"]["spec"]
            c = pod["containers"][0]
            probe = c["readinessProbe"]["httpGet"]
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            port = ports.get(probe["port"], probe["port"])
            url = f"http://127.0.0.1:{port}{probe['path']}"
            exercise = None
            if stage == "webhook":
                exercise = exercise_webhook(k8s_webhook_url(k, ports), k.secret("paystream-webhook")
                                            ["webhook-secret-stripe"].decode(), event_id)
            elif stage == "events":
                exercise = exercise_events(pg, event_id)
            proc, mounts = k.start(where, pod, bindir, {"PAYSTREAM_PROCESSOR_URL": "http://procsim:12111"})
            start_stop_stage(where, proc, mounts, f"ready ({url})", lambda: http_status(url) == 200, url,
                             "ready over TLS as its own Kafka principal" + ("" if stage == "webhook" else
                                                                            " and Postgres role"),
                             pod.get("terminationGracePeriodSeconds", 30), "terminationGracePeriodSeconds",
                             exercise)
        # exactly-once: each principal's transactional.id prefix (users.yaml)
        conf_of = lambda stage: k8s_stage_kafka_conf(k, stage)
        check_txn("k8s KafkaUser", conf_of, STAGES)
        check_txn_refused("k8s KafkaUser", conf_of, STAGES)
        k8s_expire(k, bindir, pg)
    finally:
        for p in (redis, procsim):
            p.terminate()
            p.wait(timeout=30)
        broker.stop()


def k8s_webhook_url(k, ports):
    """Where the Ingress sends a processor's delivery: its path prefix plus
    the processor's name, to the Service's target port on the pod (the
    Ingress controller and the Service's virtual IP are not run here)."""
    ing = k.docs[("Ingress", "paystream-webhook")]
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    svc = k.docs[("Service", path["backend"]["service"]["name"])]
    sp = next(p for p in svc["spec"]["ports"] if p["name"] == path["backend"]["service"]["port"]["name"])
    return f"http://127.0.0.1:{ports.get(sp['targetPort'], sp['targetPort'])}{path['path']}stripe"


# --- checks ------------------------------------------------------------------

def login_as(dsn, role, where):
    r = subprocess.run(["psql", "-X", "-qAt", dsn, "-c", "SELECT current_user"],
                       capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    if r.returncode != 0 or r.stdout.strip() != role:
        fail(f"{where}: cannot log in as {role}: {r.stderr.strip()}")
    else:
        ok(f"{where}: logs in as {role}")


def check_audit(dsn, where):
    env = {"PATH": os.environ["PATH"]}
    r = subprocess.run(["psql", "-X", "-qAt", dsn, "-c", "SELECT count(*) FROM ledger_entries"],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        fail(f"{where}: paystream_audit cannot read ledger_entries: {r.stderr.strip()}")
    w = subprocess.run(["psql", "-X", "-qAt", dsn, "-c", "DELETE FROM ledger_entries"],
                       capture_output=True, text=True, env=env)
    if w.returncode == 0:
        fail(f"{where}: paystream_audit can delete ledger entries")
    if r.returncode == 0 and w.returncode != 0:
        ok(f"{where}: paystream_audit reads, cannot write")


def check_owner(pg, where):
    owner = pg.sql("paystream", "SELECT tableowner FROM pg_tables WHERE tablename = 'payments'")
    if owner != "paystream_admin":
        fail(f"{where}: schema owned by {owner!r}, not paystream_admin")
    else:
        ok(f"{where}: schema owned by paystream_admin (not a superuser)")


def check_push(gw, where, promtool):
    if not gw.pushes:
        fail(f"{where}: nothing pushed")
        return
    path, body = gw.pushes[-1]
    if path != "/metrics/job/paystream_ops":
        fail(f"{where}: pushed to {path}")
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
    if r.returncode != 0 and "error" in (r.stdout + r.stderr).lower():
        fail(f"{where}: pushed text is not valid exposition format: {r.stdout}{r.stderr}")
    values = dict(line.split(" ", 1) for line in body.splitlines() if line and line[0] != "#")
    want = {"paystream_ledger_verify_ok": "1", "paystream_reconcile_ok": "1",
            "paystream_unresolved_charges": "0", "paystream_unresolved_charge_oldest_seconds": "0"}
    for k, v in want.items():
        if values.get(k) != v:
            fail(f"{where}: {k} = {values.get(k)!r}, want {v}")
    if "paystream_ops_last_run_timestamp_seconds" not in values:
        fail(f"{where}: no paystream_ops_last_run_timestamp_seconds")
    if not [p for p in problems if p.startswith(where)]:
        ok(f"{where}: pushed {', '.join(sorted(values))}")


def check_topics(root, broker, where):
    """What kafka-init created on the broker: every topic the binaries use,
    with partitions and a retention, the DLQ kept longest."""
    got = broker.describe()
    src = (root / "lib/config.c").read_text()
    want = set(re.findall(r'cfg_env_str\("PAYSTREAM_TOPIC_[A-Z_]+", "([^"]+)"\)', src))
    if set(got) != want:
        fail(f"{where}: the broker has {sorted(got)}, the binaries use {sorted(want)}")
        return
    ret = {t: int(c.get("retention.ms", -1)) for t, (_, _, c) in got.items()}
    if any(v <= 0 for v in ret.values()):
        fail(f"{where}: topics without a retention.ms: {sorted(t for t, v in ret.items() if v <= 0)}")
    if ret["payments.dlq"] < max(ret.values()):
        fail(f"{where}: the DLQ is kept shorter than another topic")
    if len({p for p, _, _ in got.values()}) != 1:
        fail(f"{where}: partition counts differ: {got}")
    if not [p for p in problems if p.startswith(where)]:
        ok(f"{where}: {len(got)} topics on the broker, {next(iter(got.values()))[0]} partitions, retention set")


# --- the expiry sweeper ----------------------------------------------------------

def seed_expired_authorization(pg, pid):
    """An authorization of 1000 past its window, moved as the pipeline moves
    one (received, scored, charging, charged: the trigger fills authorized
    and the window; authorized with its outcome), as the superuser, then its
    window set in the past. Returns True when it is there."""
    q = (f"INSERT INTO payments (payment_id, merchant_id, idempotency_key, fingerprint, customer_id, "
         f"amount_minor, currency, payment_method, intent, source_topic, source_partition, source_offset, kind) "
         f"VALUES ('{pid}', 'm-kit', '{pid}', 'fp-kit', 'c-kit', 1000, 'USD', 'pm_card_visa', '\\x00', "
         f"'payments.intents', 0, 0, 'authorize'); "
         f"UPDATE payments SET status = 'scored' WHERE payment_id = '{pid}'; "
         f"UPDATE payments SET status = 'charging' WHERE payment_id = '{pid}'; "
         f"UPDATE payments SET status = 'charged', processor = 'stripe', processor_charge_id = 'ch_{pid}' "
         f"WHERE payment_id = '{pid}'; "
         f"UPDATE payments SET status = 'authorized', outcome = '\\x00' WHERE payment_id = '{pid}'; "
         f"UPDATE payments SET authorization_expires_at = now() - interval '1 minute' WHERE payment_id = '{pid}'; "
         f"SELECT status || ' ' || authorized_minor FROM payments WHERE payment_id = '{pid}'")
    return pg.sql("paystream", q) == "authorized 1000"


def check_expired(where, pg, pid, bindir):
    """The sweep as the pipeline's truth sees it: the payment expired with
    its 1000 released, one release posting, the expiry announced; and its
    outcome on payments.outcomes (read as the broker's super user)."""
    got = pg.sql("paystream", f"SELECT p.status || ' ' || p.released_minor || ' ' || (e.announced_at IS NOT NULL) "
                              f"|| ' ' || (SELECT count(*) FROM ledger_transactions t WHERE t.payment_id = p.payment_id "
                              f"AND t.kind = 'release') FROM payments p JOIN authorization_expiries e USING (payment_id) "
                              f"WHERE p.payment_id = '{pid}'")
    if got != "expired 1000 true 1":
        fail(f"{where}: {pid}: status, released, announced, release postings = {got!r}, "
             "want 'expired 1000 true 1'")
    env = dict(base_env(pathlib.Path(bindir)), PAYSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:9092")
    r = subprocess.run([str(bindir / "payctl"), "outcomes"], env=env, capture_output=True, text=True,
                       timeout=120)
    outs = [o for o in (json.loads(line) for line in r.stdout.splitlines() if line.startswith("{"))
            if o.get("payment_id") == pid]
    if [(o.get("status"), o.get("amount")) for o in outs] != [("expired", 1000)]:
        fail(f"{where}: {pid}: outcomes on payments.outcomes {outs} (exit {r.returncode}: "
             f"{r.stderr.strip()[-200:]}), want one expired for 1000")
    if got == "expired 1000 true 1" and len(outs) == 1:
        ok(f"{where}: an authorization past its window expired, 1000 released and posted, "
           "its outcome published and announced")


def check_expire_role(dsn, where):
    """paystream_expire runs the sweep; it may not write payments, the ledger
    or an expiry's record, nor read a payment's request."""
    env = {"PATH": os.environ["PATH"]}
    q = lambda sql: subprocess.run(["psql", "-X", "-qAt", dsn, "-c", sql], capture_output=True, text=True, env=env)
    r = q("SELECT count(*) FROM ps_expire_authorizations(0)")
    if r.returncode != 0:
        fail(f"{where}: paystream_expire cannot run the sweep: {r.stderr.strip()}")
    refused = 0
    for sql in ("UPDATE payments SET updated_at = now() WHERE false",
                "SELECT intent FROM payments LIMIT 1",
                "INSERT INTO ledger_transactions (payment_id, kind) SELECT 'x', 'release' WHERE false",
                "UPDATE authorization_expiries SET released_minor = 0 WHERE false",
                "DELETE FROM authorization_expiries WHERE false"):
        w = q(sql)
        if w.returncode == 0 or "permission denied" not in w.stderr:
            fail(f"{where}: paystream_expire may run {sql!r} ({w.stderr.strip() or 'allowed'})")
        else:
            refused += 1
    if r.returncode == 0 and refused == 5:
        ok(f"{where}: paystream_expire runs the sweep, may not write payments, the ledger or expiries")


def expire_push(gw, where):
    """The sweeper's last push: paystream_expire_ok 1 and a success time."""
    pushes = [b for p, b in gw.pushes if p == "/metrics/job/paystream_expire"]
    if not pushes:
        fail(f"{where}: nothing pushed to /metrics/job/paystream_expire ({[p for p, _ in gw.pushes]})")
        return
    values = dict(line.split(" ", 1) for line in pushes[-1].splitlines() if line and line[0] != "#")
    if values.get("paystream_expire_ok") != "1" or "paystream_expire_last_success_timestamp_seconds" not in values:
        fail(f"{where}: pushed {values}, want paystream_expire_ok 1 and a last success time")
    else:
        ok(f"{where}: pushed {', '.join(sorted(values))}")


def compose_expire(compose, cdir, bindir, pg, gw):
    """The compose `expire` service as written (its loop, its one secret)
    until its first push, then SIGTERM as `docker compose stop` sends it."""
    where = "compose expire"
    if "expire" not in compose["services"]:
        fail("compose: no expire service")
        return
    pid = "kit-exp-compose"
    if not seed_expired_authorization(pg, pid):
        fail(f"{where}: could not seed an authorization past its window")
        return
    proc = compose_service(compose, cdir, "expire", bindir, background=True)
    if proc is None:
        return
    try:
        wait_for("the expire service's first push",
                 lambda: any(p == "/metrics/job/paystream_expire" for p, _ in gw.pushes) or proc.poll() is not None, 120)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fail(f"{where}: did not exit within 15 s of SIGTERM")
    finally:
        killpg_quiet(proc.pid, 9)  # a sleep it left behind, if any
        out = proc.communicate()[0]
        print("\n".join("    " + line for line in out.strip().splitlines()), flush=True)
        unmount(["/run/secrets"])
    expire_push(gw, where)
    check_expired(where, pg, pid, bindir)


def k8s_expire(k, bindir, pg):
    """The expire CronJob's pod as written (its own Secret: paystream_expire
    over verified TLS, Kafka as principal paystream-expire with only its
    ACLs); its container's exit status is the run's."""
    where = "k8s expire-cronjob"
    cron = k.docs.get(("CronJob", "paystream-expire"))
    if not cron:
        fail("k8s: no CronJob paystream-expire")
        return
    pid = "kit-exp-k8s"
    if not seed_expired_authorization(pg, pid):
        fail(f"{where}: could not seed an authorization past its window")
        return
    gw = Pushgateway()
    try:
        k.run_pod(where, cron["spec"]["jobTemplate"]["spec"]["template"]["spec"], bindir)
    finally:
        gw.stop()
    expire_push(gw, where)
    check_expired(where, pg, pid, bindir)


# --- scenarios -----------------------------------------------------------------

def kafka_init(root, compose, cdir, bindir, work):
    libs = os.environ.get("KIT_KAFKA_LIBS")
    if not libs:
        fail("compose kafka-init: no Kafka jars (deploy/local/kafka/fetch --tools failed), not run")
        return
    image = compose["services"]["kafka"]["image"]
    jars = sorted(pathlib.Path(libs).glob("kafka_2.13-*.jar"))
    version = jars[0].name[len("kafka_2.13-"):-len(".jar")] if jars else None
    if image.split("@")[0].rsplit(":", 1)[-1] != version:
        fail(f"compose kafka: image {image}, but the test's broker is Kafka {version}")
    broker = KafkaBroker(work, libs, compose_kafka_props(compose["services"]["kafka"]))
    if not wait_for("the Kafka broker", broker.ready, 120):
        return broker
    for rnd in (1, 2):  # --if-not-exists: a redeploy passes
        if not compose_service(compose, cdir, "kafka-init", bindir):
            return broker
    check_topics(root, broker, "compose kafka-init")
    # exactly-once needs a transaction log the compose broker's settings
    # allow (replication 1 on its one node): each stage's transactional.id
    # commits a transaction.
    check_txn("compose kafka", lambda stage: {"bootstrap.servers": "kafka:9092"}, STAGES)
    return broker


def image_files(root):
    """The files the Dockerfile's runtime stage copies from the repository
    to /usr/share/paystream (migrations, fraud model and rules), at their
    image paths."""
    pathlib.Path("/usr/share/paystream").mkdir(parents=True, exist_ok=True)
    for m in re.finditer(r"^COPY (?!--)(\S+) (/usr/share/paystream\S*)$", (root / "Dockerfile").read_text(), re.M):
        src, dst = root / m.group(1), pathlib.Path(m.group(2))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy(src, dst)


def http_status(url):
    try:
        import urllib.request
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except Exception as e:  # HTTPError carries the status, the rest mean "not up"
        return getattr(e, "code", None)


def start_stop_stage(where, proc, mounts, what, ready, url, ready_msg, grace, grace_name, exercise=None):
    """A stage started in the background (proc, its volumes mounts): waits
    until ready() (its healthcheck or readiness probe), runs exercise(where)
    if given, then SIGTERM: it must exit 0 within grace seconds
    (stop_grace_period or terminationGracePeriodSeconds). Always kills what
    is left, prints its last output if it failed, and unmounts its volumes."""
    try:
        if not wait_for(f"{where} {what}", lambda: ready() or proc.poll() is not None, 120) \
                or proc.poll() is not None:
            fail(f"{where}: never ready (exit {proc.poll()}; {url} {http_status(url)})")
            return
        ok(f"{where}: {ready_msg}")
        if exercise:
            exercise(where)
        proc.terminate()
        try:
            rc = proc.wait(timeout=grace)
            if rc != 0:
                fail(f"{where}: exited {rc} after SIGTERM")
            else:
                ok(f"{where}: drained and exited 0 within {grace} s of SIGTERM ({grace_name})")
        except subprocess.TimeoutExpired:
            fail(f"{where}: still running {grace} s after SIGTERM ({grace_name})")
    finally:
        if proc.poll() is None:
            killpg_quiet(proc.pid, 9)
        out = proc.communicate()[0]
        if problems and problems[-1].startswith(where):
            print("\n".join("    " + line for line in out.strip().splitlines()[-30:]), flush=True)
        unmount(mounts)


WORKERS = STAGES + ["webhook", "events"]  # the receiver first: events records what it published


def post_webhook(url, secret, body, ts=None, forged=False):
    """POSTs a Stripe-like delivery signed as the processor would (t=,v1=
    HMAC-SHA256 of "<t>.<body>"); returns the HTTP status."""
    import hashlib
    import hmac
    import urllib.request
    ts = ts or int(time.time())
    key = (secret + ("x" if forged else "")).encode()
    sig = hmac.new(key, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Stripe-Signature": f"t={ts},v1={sig}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except Exception as e:
        return getattr(e, "code", str(e))


def webhook_event(event_id):
    return json.dumps({"id": event_id, "type": "charge.succeeded", "created": int(time.time()),
                       "data": {"object": {"id": "ch_" + event_id, "object": "charge", "amount": 1234,
                                           "currency": "usd", "metadata": {"payment_id": "kit-" + event_id}}}}
                      ).encode()


def exercise_webhook(url, secret, event_id):
    """A forged delivery is refused (400); one signed with the secret the
    receiver was given is acknowledged (200) only once on the topic, which
    needs its Kafka principal's write ACL."""
    def run_it(where):
        body = webhook_event(event_id)
        st = post_webhook(url, secret, body, forged=True)
        if st != 400:
            fail(f"{where}: a forged delivery answered {st}, want 400")
        st = post_webhook(url, secret, body)
        if st != 200:
            fail(f"{where}: a delivery signed with its secret answered {st}, want 200 (on the topic)")
        else:
            ok(f"{where}: POST {url.split(':', 2)[2].split('/', 1)[1]} signed with its secret: 200, forged: 400")
    return run_it


def exercise_events(pg, event_id):
    """The event the receiver published is recorded once in processor_events
    (the events stage's own role, grants and consumer group)."""
    def run_it(where):
        q = f"SELECT count(*) FROM processor_events WHERE event_id = '{event_id}'"
        if wait_for(f"{where} recording {event_id}", lambda: pg.sql("paystream", q) == "1", 60):
            ok(f"{where}: recorded {event_id} in processor_events")
    return run_it


def compose_workers(compose, cdir, bindir, pg):
    """Each stage's service as written (command, environment, secrets; its
    healthcheck command run as written) until healthy, then SIGTERM: it
    must exit 0 within stop_grace_period. One at a time: each binds :9400,
    as each container does in its own network."""
    event_id = "evt_kit_compose"
    for stage in WORKERS:
        svc = compose["services"][stage]
        where = f"compose {stage}"
        hc = svc.get("healthcheck", {}).get("test", [])
        if hc[:1] != ["CMD"]:
            fail(f"{where}: healthcheck is not a CMD list")
            continue
        env = base_env(bindir)
        exercise = None
        if stage == "webhook":
            senv = svc.get("environment") or {}
            port = senv["PAYSTREAM_WEBHOOK_ADDR"].rsplit(":", 1)[1]
            secret = (cdir / compose["secrets"][senv["PAYSTREAM_WEBHOOK_SECRET_STRIPE_FILE"].rsplit("/", 1)[1]]
                      ["file"]).read_text().rstrip("\r\n")
            exercise = exercise_webhook(f"http://webhook:{port}/webhooks/stripe", secret, event_id)
        elif stage == "events":
            exercise = exercise_events(pg, event_id)
        proc = compose_service(compose, cdir, stage, bindir, background=True)
        start_stop_stage(where, proc, ["/run/secrets"], f"healthcheck ({' '.join(hc[1:])})",
                         lambda: subprocess.run(hc[1:], env=env, capture_output=True).returncode == 0,
                         "http://127.0.0.1:9400/readyz", "healthy with its own secrets and role",
                         int(str(svc.get("stop_grace_period", "10s")).rstrip("s")), "stop_grace_period",
                         exercise)


def compose_scenario(root, bindir, compose_file, work, ca, promtool):
    cdir = compose_file.parent
    compose = yaml.safe_load(compose_file.read_text())
    svcs = compose["services"]
    su_secret = svcs["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].rsplit("/", 1)[1]
    su_pw = (cdir / compose["secrets"][su_secret]["file"]).read_text().strip()
    pg = Postgres(work, su_pw, ca)
    # the postgres image creates POSTGRES_DB
    pg.sql("postgres", f"CREATE DATABASE \"{svcs['postgres']['environment']['POSTGRES_DB']}\"")
    try:
        for rnd in (1, 2):
            for name in ("db-bootstrap", "migrate", "roles"):
                if name in svcs and not compose_service(compose, cdir, name, bindir):
                    return
            ok(f"compose database chain, round {rnd}")
        check_owner(pg, "compose")
        for name, spec in compose["secrets"].items():
            m = re.fullmatch(r"pg_dsn_(\w+)", name)
            if m and m.group(1) != "admin":
                login_as((cdir / spec["file"]).read_text().strip(), f"paystream_{m.group(1)}",
                         f"compose secret {name}")
        if "pg_dsn_audit" in compose["secrets"]:
            check_audit((cdir / compose["secrets"]["pg_dsn_audit"]["file"]).read_text().strip(), "compose")
        if "pg_dsn_expire" in compose["secrets"]:
            check_expire_role((cdir / compose["secrets"]["pg_dsn_expire"]["file"]).read_text().strip(), "compose")
        broker = kafka_init(root, compose, cdir, bindir, work)
        if "ops" not in svcs:
            fail("compose: no ops service")
            return
        procsim = compose_service(compose, cdir, "procsim", bindir, background=True)
        redis = compose_service(compose, cdir, "redis", bindir, background=True)
        gw = Pushgateway()
        try:
            if broker and wait_for("procsim on :12111 and redis on :6379",
                                   lambda: port_open(12111) and port_open(6379), 30):
                compose_workers(compose, cdir, bindir, pg)
            if wait_for("procsim on :12111", lambda: port_open(12111), 30):
                ops = compose_service(compose, cdir, "ops", bindir, background=True)
                wait_for("the ops service's first push", lambda: gw.pushes, 120)
                # SIGTERM to the shell alone, as `docker compose stop` sends
                # it: the script must exit promptly (its trap).
                # (a container ends with it; its sleep may linger here).
                ops.terminate()
                try:
                    ops.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    fail("compose ops: did not exit within 15 s of SIGTERM")
                killpg_quiet(ops.pid, 9)  # a sleep it left behind, if any
                out = ops.communicate()[0]
                print("\n".join("    " + line for line in out.strip().splitlines()), flush=True)
                check_push(gw, "compose ops", promtool)
            if broker:
                compose_expire(compose, cdir, bindir, pg, gw)
        finally:
            gw.stop()
            for p in (procsim, redis):
                killpg_quiet(p.pid, 15)
                p.communicate(timeout=30)
            if broker:
                broker.stop()
            unmount(["/run/secrets"] * 3)
    finally:
        pg.stop()


def k8s_scenario(root, bindir, work, ca, promtool):
    k = K8s(root / "deploy/k8s", ca)
    su_dsn = k.secret("paystream-bootstrap")["pg-dsn-superuser"].decode()
    su_pw = re.search(r"password=(\S+)", su_dsn).group(1)
    pg = Postgres(work, su_pw, ca)
    try:
        boot = k.docs[("Job", "paystream-bootstrap")]
        migrate = [d for (kind, n), d in k.docs.items() if kind == "Job" and n.startswith("paystream-migrate")]
        if len(migrate) != 1:
            fail(f"k8s: {len(migrate)} migrate Jobs, want 1")
            return
        for rnd in (1, 2):
            if not k.run_pod("k8s bootstrap-job", boot["spec"]["template"]["spec"], bindir):
                return
            if not k.run_pod("k8s migrate-job", migrate[0]["spec"]["template"]["spec"], bindir):
                return
            ok(f"k8s database Jobs, round {rnd}")
        check_owner(pg, "k8s")
        # Each stage's DSN, with TLS verified against the mounted CA.
        mounts = [mount_files("/etc/paystream/postgres-ca", k.configmap("postgres-ca"))]
        try:
            for stage in ("ingest", "fraud", "charge", "ledger", "events", "expire"):
                login_as(k.secret(f"paystream-{stage}")["pg-dsn"].decode(), f"paystream_{stage}",
                         f"k8s Secret paystream-{stage} (sslmode=verify-full)")
            check_audit(k.secret("paystream-ops")["pg-dsn"].decode(), "k8s")
            check_expire_role(k.secret("paystream-expire")["pg-dsn"].decode(), "k8s")
        finally:
            unmount(mounts)
        cron = k.docs[("CronJob", "paystream-ops")]
        procsim = subprocess.Popen([str(bindir / "procsim"), "--port", "12111"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gw = Pushgateway()
        try:
            if wait_for("procsim on :12111", lambda: port_open(12111), 30):
                # The processor is the one dependency not reachable here.
                k.run_pod("k8s ops-cronjob", cron["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                          bindir, {"PAYSTREAM_PROCESSOR_URL": "http://procsim:12111"})
                check_push(gw, "k8s ops-cronjob", promtool)
        finally:
            gw.stop()
            procsim.terminate()
            procsim.wait(timeout=30)
        k8s_stages(root, k, work, bindir, pg)
    finally:
        pg.stop()


def main():
    enter_namespaces()
    root = pathlib.Path(sys.argv[1]).resolve()
    bindir = pathlib.Path(sys.argv[2]).resolve()
    compose_file = root / "deploy/compose/docker-compose.yml"
    if "--compose" in sys.argv:
        compose_file = pathlib.Path(sys.argv[sys.argv.index("--compose") + 1]).resolve()
    promtool = shutil.which("promtool") or "promtool"
    for b in ("payctl", "procsim", "ps-ingest", "ps-fraud", "ps-charge", "ps-ledger", "ps-webhook", "ps-events"):
        if not (bindir / b).exists():
            print(f"kit_commands: {bindir}/{b} not built", file=sys.stderr)
            sys.exit(1)
    work = pathlib.Path(tempfile.mkdtemp(prefix="paystream-kit.", dir="/var/tmp"))
    work.chmod(0o755)
    try:
        prepare_sandbox(work)
        image_files(root)
        for name, fn in (("compose", lambda w: compose_scenario(root, bindir, compose_file, w, ca, promtool)),
                         ("k8s", lambda w: k8s_scenario(root, bindir, w, ca, promtool))):
            # KIT_SCENARIOS="k8s" runs one of them (while working on it; ctest runs both)
            if name not in os.environ.get("KIT_SCENARIOS", "compose k8s").split():
                print(f"# {name}: skipped (KIT_SCENARIOS)", flush=True)
                continue
            w = work / name
            w.mkdir()
            w.chmod(0o755)
            ca = CA(w)
            try:
                fn(w)
            except Exception as e:  # a missing key, a manifest of the wrong shape
                fail(f"{name}: {type(e).__name__}: {e}")
    finally:
        unmount(["/etc", "/opt", "/run", "/usr/share"])
        shutil.rmtree(work, ignore_errors=True)
    print(f"kit commands: {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
