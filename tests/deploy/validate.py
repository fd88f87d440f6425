#!/usr/bin/python3
"""Validates the deploy files that cannot be run here: the YAML parses; every
PAYSTREAM_* variable compose and Kubernetes set is one the binaries read;
every variable the binaries read is documented in the README; each stage
has probes, resources and a disruption budget; the Grafana dashboard only
queries metrics the code exports. Exit status 1 lists every problem."""
import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(sys.argv[1])
problems = []

# Variables the binaries read: literal names, plus processor settings built
# from a prefix (PAYSTREAM_PROCESSOR_*, PAYSTREAM_BACKUP_PROCESSOR_*), plus
# NAME_FILE for every secret.
src = "".join(p.read_text() for d in ("lib", "services") for p in (root / d).rglob("*.c"))
known = set(re.findall(r'"(PAYSTREAM_[A-Z0-9_]+)"', src))
for prefix in ("PAYSTREAM_PROCESSOR", "PAYSTREAM_BACKUP_PROCESSOR"):
    known |= {f"{prefix}_{s}" for s in ("URL", "NAME", "API_KEY", "FLAVOUR", "API_KEY_FILE")}
secrets = {"PAYSTREAM_PG_DSN", "PAYSTREAM_REDIS_PASSWORD"}
known |= {s + "_FILE" for s in secrets}
known.discard("PAYSTREAM_PROCESSOR")
known.discard("PAYSTREAM_BACKUP_PROCESSOR")

readme = (root / "README.md").read_text()
for v in sorted(known):
    base = v[:-5] if v.endswith("_FILE") else v
    if f"`{v}`" not in readme and f"`{base}` (`_FILE`)" not in readme:
        problems.append(f"README does not document {v}")


def check_env(where, names):
    for n in names:
        if n.startswith("PAYSTREAM_") and n not in known:
            problems.append(f"{where}: sets {n}, which no binary reads")


compose = yaml.safe_load((root / "deploy/compose/docker-compose.yml").read_text())
services = compose["services"]
for name, svc in services.items():
    env = svc.get("environment") or {}
    check_env(f"compose service {name}", env.keys() if isinstance(env, dict) else
              [e.split("=")[0] for e in env])
    for s in svc.get("secrets", []):
        if s not in compose["secrets"]:
            problems.append(f"compose service {name}: unknown secret {s}")
for s, spec in compose["secrets"].items():
    if not (root / "deploy/compose" / spec["file"]).exists():
        problems.append(f"compose secret {s}: missing file {spec['file']}")
for stage in ("ingest", "fraud", "charge", "ledger"):
    svc = services.get(stage)
    if not svc:
        problems.append(f"compose: no service {stage}")
        continue
    if svc["command"] != [f"ps-{stage}"]:
        problems.append(f"compose {stage}: runs {svc['command']}")
    if "readyz" not in " ".join(svc.get("healthcheck", {}).get("test", [])):
        problems.append(f"compose {stage}: no /readyz healthcheck")
    if f"pg_dsn_{stage}" not in svc.get("secrets", []):
        problems.append(f"compose {stage}: does not use its own Postgres role")
for need in ("kafka", "kafka-init", "postgres", "redis", "procsim", "prometheus", "grafana", "migrate"):
    if need not in services:
        problems.append(f"compose: no service {need}")

prom = yaml.safe_load((root / "deploy/compose/prometheus.yml").read_text())
jobs = {j["job_name"] for j in prom["scrape_configs"]}
if jobs != {"ingest", "fraud", "charge", "ledger"}:
    problems.append(f"prometheus.yml: jobs {sorted(jobs)}")

docs = []
for f in sorted((root / "deploy/k8s").glob("*.yaml")):
    docs += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
kinds = {}
for fname, d in docs:
    kinds.setdefault(d["kind"], []).append(d)
cm_keys = set()
for cm in kinds.get("ConfigMap", []):
    cm_keys |= set(cm["data"])
check_env("k8s ConfigMap", cm_keys)
secret_keys = set()
for s in kinds.get("Secret", []):
    secret_keys |= set(s.get("stringData", {}))
pdbs = {p["metadata"]["name"] for p in kinds.get("PodDisruptionBudget", [])}
for stage in ("ingest", "fraud", "charge", "ledger"):
    deps = [d for d in kinds.get("Deployment", []) if d["metadata"]["name"] == f"paystream-{stage}"]
    if not deps:
        problems.append(f"k8s: no Deployment paystream-{stage}")
        continue
    c = deps[0]["spec"]["template"]["spec"]["containers"][0]
    if c["command"] != [f"ps-{stage}"]:
        problems.append(f"k8s {stage}: runs {c['command']}")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append(f"k8s {stage}: readiness probe is not /readyz")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append(f"k8s {stage}: liveness probe is not /healthz")
    if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
        problems.append(f"k8s {stage}: no resource requests/limits")
    env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    check_env(f"k8s {stage}", env)
    for path in list(env.values()) + [cm.get("data", {}).get("PAYSTREAM_KAFKA_PROPERTIES_FILE", "")
                                      for cm in kinds.get("ConfigMap", [])]:
        if path.startswith("/etc/paystream/secrets/") and path.rsplit("/", 1)[1] not in secret_keys:
            problems.append(f"k8s {stage}: reads {path}, not a key of the Secret")
    if env.get("PAYSTREAM_PG_DSN_FILE", "").rsplit("-", 1)[-1] != stage:
        problems.append(f"k8s {stage}: does not use its own Postgres role")
    if f"paystream-{stage}" not in pdbs:
        problems.append(f"k8s {stage}: no PodDisruptionBudget")

exported = set(re.findall(r'"(paystream_[a-z_]+)"', src))
dash = json.loads((root / "deploy/compose/grafana/dashboards/paystream.json").read_text())
for p in dash["panels"]:
    for t in p["targets"]:
        for m in re.findall(r"paystream_[a-z_]+", t["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            if base not in exported:
                problems.append(f"dashboard panel '{p['title']}': unknown metric {m}")

for p in problems:
    print(f"not ok - {p}")
print(f"deploy files: {len(problems)} problems")
sys.exit(1 if problems else 0)
