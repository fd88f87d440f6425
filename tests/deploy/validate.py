#!/usr/bin/python3
"""Validates the deploy files that cannot be run here: the YAML parses; every
PAYSTREAM_* variable compose and Kubernetes set is one the binaries read;
every variable the binaries read is documented in the README; each stage
has probes, resources and a disruption budget; the Grafana dashboard only
queries metrics the code exports. Exit status 1 lists every problem."""
import hashlib
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


# ps-webhook builds its per-processor names (wh_config.c):
# PAYSTREAM_WEBHOOK_SECRET_<NAME>[_FILE], PAYSTREAM_WEBHOOK_ID_<NAME>.
PER_PROCESSOR = re.compile(r"PAYSTREAM_WEBHOOK_(SECRET_[A-Z0-9_]+|ID_[A-Z0-9_]+)$")


def check_env(where, names):
    for n in names:
        if n.startswith("PAYSTREAM_") and n not in known and not PER_PROCESSOR.match(n):
            problems.append(f"{where}: sets {n}, which no binary reads")


def webhook_processors(env):
    """The processor names PAYSTREAM_WEBHOOK_PROCESSORS lists (default stripe)."""
    return [e.strip().split(":")[0] for e in env.get("PAYSTREAM_WEBHOOK_PROCESSORS", "stripe:stripe").split(",")
            if e.strip()]


# Every binary: the four pipeline stages, the processor events' recorder
# (ps-events) and the webhook receiver (ps-webhook).
STAGES = ("ingest", "fraud", "charge", "ledger")
WORKERS = STAGES + ("events", "webhook")


compose = yaml.safe_load((root / "deploy/compose/docker-compose.yml").read_text())
services = compose["services"]
for name, svc in services.items():
    env = svc.get("environment") or {}
    check_env(f"compose service {name}", env.keys() if isinstance(env, dict) else
              [e.split("=")[0] for e in env])
    for k, v in (env.items() if isinstance(env, dict) else []):
        if str(v).startswith("/run/secrets/") and str(v)[len("/run/secrets/"):] not in svc.get("secrets", []):
            problems.append(f"compose service {name}: {k}={v}, a secret it does not mount")
    for s in svc.get("secrets", []):
        if s not in compose["secrets"]:
            problems.append(f"compose service {name}: unknown secret {s}")
for s, spec in compose["secrets"].items():
    if not (root / "deploy/compose" / spec["file"]).exists():
        problems.append(f"compose secret {s}: missing file {spec['file']}")
for stage in WORKERS:
    svc = services.get(stage)
    if not svc:
        problems.append(f"compose: no service {stage}")
        continue
    if svc["command"] != [f"ps-{stage}"]:
        problems.append(f"compose {stage}: runs {svc['command']}")
    if "readyz" not in " ".join(svc.get("healthcheck", {}).get("test", [])):
        problems.append(f"compose {stage}: no /readyz healthcheck")
    want = {"redis_password", f"pg_dsn_{stage}"} | ({"processor_api_key"} if stage == "charge" else set())
    if stage == "events":  # Postgres as paystream_events; no Redis
        want = {"pg_dsn_events"}
    if stage == "webhook":  # the processors' signing secrets only
        want = {f"webhook_secret_{n}" for n in webhook_processors(svc.get("environment") or {})}
        for n in webhook_processors(svc.get("environment") or {}):
            v = (svc.get("environment") or {}).get(f"PAYSTREAM_WEBHOOK_SECRET_{n.upper()}_FILE")
            if v != f"/run/secrets/webhook_secret_{n}":
                problems.append(f"compose webhook: PAYSTREAM_WEBHOOK_SECRET_{n.upper()}_FILE is {v!r}")
    if set(svc.get("secrets", [])) != want:
        problems.append(f"compose {stage}: secrets {sorted(svc.get('secrets', []))}, want only {sorted(want)}")
# The ops checks and the expiry sweeper: compose and the CronJob push the
# same metrics.
for svc_name, cron_file in (("ops", "ops-cronjob.yaml"), ("expire", "expire-cronjob.yaml")):
    compose_pushed = set(re.findall(r'echo "(paystream_[a-z_]+) ', " ".join(services.get(svc_name, {}).get("command", []))))
    k8s_pushed = set(re.findall(r'echo "(paystream_[a-z_]+) ', (root / "deploy/k8s" / cron_file).read_text()))
    if not k8s_pushed or compose_pushed != k8s_pushed:
        problems.append(f"{svc_name}: compose pushes {sorted(compose_pushed)}, the CronJob {sorted(k8s_pushed)}")
# The expiry sweeper runs payctl expire as paystream_expire, with that DSN alone.
exp = services.get("expire", {})
if "payctl expire" not in " ".join(exp.get("command", [])):
    problems.append("compose expire: does not run payctl expire")
if set(exp.get("secrets", [])) != {"pg_dsn_expire"}:
    problems.append(f"compose expire: secrets {sorted(exp.get('secrets', []))}, want only ['pg_dsn_expire']")
for name, svc in services.items():
    if "pg_dsn_admin" in svc.get("secrets", []) and name not in ("migrate", "roles", "payctl"):
        problems.append(f"compose service {name}: mounts the admin DSN")
for need in ("kafka", "kafka-init", "postgres", "redis", "procsim", "prometheus", "grafana", "migrate",
             "db-bootstrap", "roles", "ops", "expire", "pushgateway", "kafka-exporter"):
    if need not in services:
        problems.append(f"compose: no service {need}")

prom = yaml.safe_load((root / "deploy/compose/prometheus.yml").read_text())
jobs = {j["job_name"] for j in prom["scrape_configs"]}
if jobs != set(WORKERS) | {"kafka-exporter", "pushgateway"}:
    problems.append(f"compose prometheus.yml: jobs {sorted(jobs)}")
kprom = yaml.safe_load((root / "deploy/prometheus/scrape-kubernetes.yml").read_text())
kjobs = {j["job_name"]: j for j in kprom["scrape_configs"]}
relabel = kjobs.get("paystream", {}).get("relabel_configs", [])
keep = [r for r in relabel if r.get("action") == "keep" and r.get("source_labels") ==
        ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]]
if not keep or set(keep[0]["regex"].split("|")) != set(WORKERS):
    problems.append(f"scrape-kubernetes.yml: keeps {keep[0]['regex'] if keep else None}, want {'|'.join(WORKERS)}")
if not any(r.get("target_label") == "job" and r.get("source_labels") ==
           ["__meta_kubernetes_pod_label_app_kubernetes_io_component"] for r in relabel):
    problems.append("scrape-kubernetes.yml: stage pods do not get job=<stage>")
for j in ("kafka-exporter", "pushgateway"):
    if j not in kjobs:
        problems.append(f"scrape-kubernetes.yml: no job {j}")
if not kjobs.get("pushgateway", {}).get("honor_labels"):
    problems.append("scrape-kubernetes.yml: pushgateway without honor_labels")

docs = []
for f in sorted((root / "deploy/k8s").glob("*.yaml")):
    docs += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
kinds = {}
for fname, d in docs:
    kinds.setdefault(d["kind"], []).append(d)
    if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "paystream":
        problems.append(f"k8s {fname} {d['kind']}/{d['metadata']['name']}: not in namespace paystream")
cms = {cm["metadata"]["name"]: cm for cm in kinds.get("ConfigMap", [])}
cm_keys = set(cms["paystream"]["data"]) if "paystream" in cms else set()
check_env("k8s ConfigMap", cm_keys)
secrets_k8s = {s["metadata"]["name"]: s.get("stringData", {}) for s in kinds.get("Secret", [])}

ns = (kinds.get("Namespace") or [{}])[0]
if (ns.get("metadata", {}).get("labels") or {}).get("pod-security.kubernetes.io/enforce") != "restricted":
    problems.append("k8s namespace: not labelled pod-security.kubernetes.io/enforce=restricted")
for sa in kinds.get("ServiceAccount", []):
    if sa.get("automountServiceAccountToken") is not False:
        problems.append(f"k8s ServiceAccount {sa['metadata']['name']}: token automounted")

# The Secret each pod kind may mount: its own, nothing else.
own_secret = {"ingest": "paystream-ingest", "fraud": "paystream-fraud", "charge": "paystream-charge",
              "ledger": "paystream-ledger", "migrate": "paystream-migrate", "ops": "paystream-ops",
              "events": "paystream-events", "webhook": "paystream-webhook",
              "bootstrap": "paystream-bootstrap", "expire": "paystream-expire"}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
configmap_sha = hashlib.sha256((root / "deploy/k8s/configmap.yaml").read_bytes()).hexdigest()


def pod_templates():
    for d in kinds.get("Deployment", []) + kinds.get("Job", []):
        yield d, d["spec"]["template"]
    for d in kinds.get("CronJob", []):
        yield d, d["spec"]["jobTemplate"]["spec"]["template"]


def check_pod(owner, tpl):
    where = f"k8s {owner['kind']}/{owner['metadata']['name']}"
    comp = tpl.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
    spec = tpl["spec"]
    if comp not in own_secret:
        problems.append(f"{where}: pod has no known app.kubernetes.io/component label")
        return
    if spec.get("serviceAccountName") != "paystream" or spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: not the paystream ServiceAccount without a token")
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 0) == 0:
        problems.append(f"{where}: pod may run as root")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: no seccompProfile RuntimeDefault")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append(f"{where}: host namespaces")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    for v in vols.values():
        if "hostPath" in v:
            problems.append(f"{where}: hostPath volume {v['name']}")
        if "secret" in v and v["secret"]["secretName"] != own_secret[comp]:
            problems.append(f"{where}: mounts Secret {v['secret']['secretName']}, not only its own "
                            f"{own_secret[comp]}")
        if "secret" in v and v["secret"]["secretName"] not in secrets_k8s:
            problems.append(f"{where}: mounts Secret {v['secret']['secretName']}, which secrets.yaml lacks")
    for c in spec.get("initContainers", []) + spec["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: root filesystem writable")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            problems.append(f"{cw}: capabilities not drop [ALL]")
        if sc.get("privileged") or sc.get("runAsUser", 1) == 0:
            problems.append(f"{cw}: privileged or root")
        if not DIGEST.search(c.get("image", "")):
            problems.append(f"{cw}: image {c.get('image')} not pinned by digest")
        if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
            problems.append(f"{cw}: no resource requests/limits")
        for ef in c.get("envFrom", []):
            if "secretRef" in ef:
                problems.append(f"{cw}: Secret as environment (mount it as files)")
        env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                if ref["key"] not in cms.get(ref["name"], {}).get("data", {}):
                    problems.append(f"{cw}: {e['name']} from ConfigMap {ref['name']} key {ref['key']}, "
                                    "which it lacks")
                env[e["name"]] = cms.get(ref["name"], {}).get("data", {}).get(ref["key"], "")
        check_env(cw, env)
        envall = dict(env)
        if any("configMapRef" in ef for ef in c.get("envFrom", [])):
            envall.update(cms.get("paystream", {}).get("data", {}))
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        # Every file a variable names is in a volume this container mounts.
        for k, path in envall.items():
            if not str(path).startswith(("/run/secrets/", "/etc/paystream/")) or not k.endswith(("_FILE", "LOCATION")):
                continue
            d, key = path.rsplit("/", 1)
            vol = vols.get(mounts[d]["name"]) if d in mounts else None
            if not vol:
                problems.append(f"{cw}: {k}={path}, but nothing is mounted at {d}")
            elif "secret" in vol and key not in secrets_k8s.get(vol["secret"]["secretName"], {}):
                problems.append(f"{cw}: {k}={path}, not a key of Secret {vol['secret']['secretName']}")
        # TLS to Postgres: the CA the DSN names is mounted.
        for v in vols.values():
            if "secret" not in v:
                continue
            for key, val in secrets_k8s.get(v["secret"]["secretName"], {}).items():
                if not key.startswith("pg-dsn"):
                    continue
                if "sslmode=verify-full" not in val:
                    problems.append(f"k8s Secret {v['secret']['secretName']} {key}: not sslmode=verify-full")
                m = re.search(r"sslrootcert=(\S+)", val)
                if not m or m.group(1).rsplit("/", 1)[0] not in mounts:
                    problems.append(f"{cw}: DSN {key} names a CA that is not mounted")
    if owner["kind"] == "Deployment":
        if not 15 <= spec.get("terminationGracePeriodSeconds", 30) <= 60:
            problems.append(f"{where}: terminationGracePeriodSeconds outside the drain's 15-60 s")
        if tpl["metadata"].get("annotations", {}).get("checksum/config") != configmap_sha:
            problems.append(f"{where}: checksum/config is not sha256sum deploy/k8s/configmap.yaml "
                            f"({configmap_sha})")
        if not spec.get("topologySpreadConstraints"):
            problems.append(f"{where}: no topologySpreadConstraints")


for owner, tpl in pod_templates():
    check_pod(owner, tpl)
# The schema owner's DSN is in the migrate Job's Secret alone.
for name, data in secrets_k8s.items():
    if name != "paystream-migrate" and any("user=paystream_admin" in str(v) for v in data.values()):
        problems.append(f"k8s Secret {name}: holds the paystream_admin DSN")
migrates = [j for j in kinds.get("Job", []) if j["metadata"]["name"].startswith("paystream-migrate")]
stage_images = {c["image"] for d in kinds.get("Deployment", [])
                for c in d["spec"]["template"]["spec"]["containers"]}
for j in migrates:
    ver = j["metadata"].get("labels", {}).get("app.kubernetes.io/version", "")
    if j["metadata"]["name"] != "paystream-migrate-" + ver.replace(".", "-"):
        problems.append(f"k8s Job {j['metadata']['name']}: not named after its version label {ver!r}")
    imgs = {c["image"] for c in j["spec"]["template"]["spec"].get("initContainers", [])
            if c["image"].startswith(next(iter(stage_images), "").split(":")[0])}
    if imgs != stage_images:
        problems.append(f"k8s Job {j['metadata']['name']}: migrates with {imgs}, stages run {stage_images}")
if len(migrates) != 1:
    problems.append(f"k8s: {len(migrates)} migrate Jobs (one per release)")

pdbs = {p["metadata"]["name"]: p for p in kinds.get("PodDisruptionBudget", [])}
for stage in WORKERS:
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
    pdb = pdbs.get(f"paystream-{stage}")
    if not pdb:
        problems.append(f"k8s {stage}: no PodDisruptionBudget")
    elif pdb["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
        problems.append(f"k8s {stage}: PodDisruptionBudget without unhealthyPodEvictionPolicy AlwaysAllow")
    elif pdb["spec"]["selector"]["matchLabels"] != deps[0]["spec"]["selector"]["matchLabels"]:
        problems.append(f"k8s {stage}: PodDisruptionBudget selects other pods")
    sec = secrets_k8s.get(f"paystream-{stage}", {})
    if stage == "webhook":  # no database, no Redis: the signing secrets and its principal
        cenv = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        want_keys = {f"webhook-secret-{n}" for n in webhook_processors(cenv)} | {"kafka.properties"}
        if set(sec) != want_keys:
            problems.append(f"k8s webhook: its Secret holds {sorted(sec)}, want only {sorted(want_keys)}")
        for n in webhook_processors(cenv):
            if cenv.get(f"PAYSTREAM_WEBHOOK_SECRET_{n.upper()}_FILE") != f"/run/secrets/paystream/webhook-secret-{n}":
                problems.append(f"k8s webhook: PAYSTREAM_WEBHOOK_SECRET_{n.upper()}_FILE does not name its Secret's key")
        if not any(p.get("name") == "webhooks" for p in c.get("ports", [])):
            problems.append("k8s webhook: no container port named webhooks")
    elif f"user=paystream_{stage} " not in sec.get("pg-dsn", ""):
        problems.append(f"k8s {stage}: its Secret's pg-dsn is not its own Postgres role")
    if ("processor-api-key" in sec) != (stage == "charge"):
        problems.append(f"k8s {stage}: processor key {'missing' if stage == 'charge' else 'present'}")
    if stage in ("events", "webhook") and "redis-password" in sec:
        problems.append(f"k8s {stage}: its Secret holds the Redis password, which it does not use")
    if any(k.startswith("webhook-secret") for k in sec) != (stage == "webhook"):
        problems.append(f"k8s {stage}: webhook signing secrets {'missing' if stage == 'webhook' else 'present'}")

# Network: deny by default; only charge (and the ops checks' reconcile) reach
# addresses outside the cluster.
nps = kinds.get("NetworkPolicy", [])
if not any(n["spec"]["podSelector"] == {} and set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
           and not n["spec"].get("ingress") and not n["spec"].get("egress") for n in nps):
    problems.append("k8s: no default-deny NetworkPolicy")
for n in nps:
    for rule in n["spec"].get("egress", []):
        if any("ipBlock" in t for t in rule.get("to", [])):
            sel = n["spec"]["podSelector"]
            comps = set()
            for e in sel.get("matchExpressions", []):
                comps |= set(e["values"])
            if "app.kubernetes.io/component" in sel.get("matchLabels", {}):
                comps.add(sel["matchLabels"]["app.kubernetes.io/component"])
            if not comps or comps - {"charge", "ops"}:
                problems.append(f"k8s NetworkPolicy {n['metadata']['name']}: internet egress for {comps or 'all'}")

# Inbound: Prometheus (namespace monitoring) on the metrics port 9400 to any
# worker; anything else only to the webhook receiver's webhook port 9410.
for n in nps:
    sel = n["spec"]["podSelector"]
    comps = set((sel.get("matchLabels") or {}).get("app.kubernetes.io/component", "").split()) - {""}
    for e in sel.get("matchExpressions", []):
        comps |= set(e["values"])
    for rule in n["spec"].get("ingress", []):
        ports = {p.get("port") for p in rule.get("ports", [])}
        from_monitoring = rule.get("from") and all(
            (f.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
            and "podSelector" not in f and "ipBlock" not in f for f in rule["from"])
        if from_monitoring and ports == {9400}:
            continue
        if comps == {"webhook"} and ports == {9410}:
            continue
        problems.append(f"k8s NetworkPolicy {n['metadata']['name']}: ingress to {comps or 'all'} on {ports} "
                        "(only Prometheus on 9400, and the webhook receiver on 9410)")
services_k8s = kinds.get("Service", [])
for svc in services_k8s:
    if svc["metadata"]["name"] != "paystream-webhook" or svc["spec"].get("type", "ClusterIP") != "ClusterIP" \
            or svc["spec"].get("selector", {}).get("app.kubernetes.io/component") != "webhook" \
            or [p.get("targetPort") for p in svc["spec"].get("ports", [])] != ["webhooks"]:
        problems.append(f"k8s Service {svc['metadata']['name']}: only paystream-webhook (ClusterIP, the webhook "
                        "pods' port webhooks) may be exposed")
for ing in kinds.get("Ingress", []):
    for r in ing["spec"].get("rules", []):
        for path in r.get("http", {}).get("paths", []):
            if path["backend"].get("service", {}).get("name") != "paystream-webhook" \
                    or not path.get("path", "").startswith("/webhooks/"):
                problems.append(f"k8s Ingress {ing['metadata']['name']}: routes {path.get('path')} to "
                                f"{path['backend']}; only /webhooks/ to paystream-webhook")
    if not ing["spec"].get("tls"):
        problems.append(f"k8s Ingress {ing['metadata']['name']}: no TLS")
if not kinds.get("Ingress"):
    problems.append("k8s: no Ingress for the webhook receiver")

# Each binary a manifest runs is in the image it runs from: the Kubernetes
# manifests use the production image, compose the dev target.
dockerfile = (root / "Dockerfile").read_text()
images_bins = {}
for m in re.finditer(r"^FROM \S+ AS (\S+)$((?:\n(?!FROM ).*)*)", dockerfile, re.M):
    images_bins[m.group(1)] = set(re.findall(r"/src/build/(\S+)", m.group(2)))
for owner, tpl in pod_templates():
    for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]:
        if "/paystream:" in c["image"] and c.get("command"):
            b = c["command"][0]
            if b.startswith(("ps-", "payctl")) and b not in images_bins.get("production", set()):
                problems.append(f"k8s {owner['kind']}/{owner['metadata']['name']}: runs {b}, which the "
                                "production image (Dockerfile) lacks")
for name, svc in services.items():
    if svc.get("image", "").startswith("paystream") and svc.get("command"):
        b = (svc.get("entrypoint") or svc["command"])[0]
        if b.startswith(("ps-", "payctl", "procsim")) and b not in images_bins.get("dev", set()):
            problems.append(f"compose {name}: runs {b}, which the dev image (Dockerfile) lacks")
tm = re.search(r"cmake --build [^\n]*?--target((?:[^\n]*\\\n)*[^\n]*)", dockerfile)
build_targets = set(tm.group(1).replace("\\\n", " ").split()) if tm else set()
for target, bins in images_bins.items():
    for b in bins - build_targets:
        problems.append(f"Dockerfile: the {target} image copies {b}, which the build stage does not build")

exported = set(re.findall(r'"(paystream_[a-z_]+)"', src))
pushed_names = {m for f in ("ops-cronjob.yaml", "expire-cronjob.yaml")
                for m in re.findall(r'echo "(paystream_[a-z_]+) ', (root / "deploy/k8s" / f).read_text())}
dash = json.loads((root / "deploy/compose/grafana/dashboards/paystream.json").read_text())
queried, excused = set(), set()
if not any(v.get("type") == "datasource" and v.get("name") == "datasource"
           for v in dash.get("templating", {}).get("list", [])):
    problems.append("dashboard: no datasource variable")
for p in dash["panels"]:
    if p["type"] == "text":
        excused |= set(re.findall(r"`(paystream_[a-z_]+)`", p["options"]["content"]))
        continue
    if p.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"dashboard panel '{p['title']}': datasource is not the $datasource variable")
    if not p.get("targets"):
        problems.append(f"dashboard panel '{p['title']}': no query")
    for t in p.get("targets", []):
        for m in re.findall(r"paystream_[a-z_]+", t["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            queried.add(base)
            if base not in exported and base not in pushed_names:
                problems.append(f"dashboard panel '{p['title']}': unknown metric {m}")
        if "redis" in p["title"].lower() and "error" in p["title"].lower() and "redis_errors" not in t["expr"] \
                and not any("redis_errors" in x["expr"] for x in p["targets"]):
            problems.append(f"dashboard panel '{p['title']}': no errors query")
for m in sorted((exported | pushed_names) - queried - excused):
    problems.append(f"dashboard: metric {m} has no panel and no reason in 'Not on this dashboard'")

# Kafka for production: Strimzi topics and users, KEDA autoscaling.
flow = {"ingest": ("intents", "requests"), "fraud": ("requests", "fraud_scored"),
        "charge": ("fraud_scored", "charged"), "ledger": ("charged", "ledgered")}
topic_names = dict(re.findall(r'cfg_env_str\("PAYSTREAM_TOPIC_([A-Z_]+)", "([^"]+)"\)',
                              (root / "lib/config.c").read_text()))
topic_names = {k.lower(): v for k, v in topic_names.items()}
kafka_docs = [d for f in ("topics.yaml", "users.yaml")
              for d in yaml.safe_load_all((root / "deploy/kafka" / f).read_text()) if d]
ktopics = {d["spec"]["topicName"]: d["spec"] for d in kafka_docs if d["kind"] == "KafkaTopic"}
if set(ktopics) != set(topic_names.values()):
    problems.append(f"kafka topics.yaml: topics {sorted(ktopics)}, the binaries use {sorted(topic_names.values())}")
for t, spec in ktopics.items():
    cfg = spec.get("config", {})
    if spec.get("replicas") != 3 or int(cfg.get("min.insync.replicas", 0)) != 2:
        problems.append(f"kafka topic {t}: not replicas 3 with min.insync.replicas 2")
    if not str(cfg.get("retention.ms", "")).isdigit():
        problems.append(f"kafka topic {t}: no retention.ms")
dlq = ktopics.get(topic_names.get("dlq"), {}).get("config", {})
if any(int(dlq.get("retention.ms", 0)) < int(s.get("config", {}).get("retention.ms", 0)) for s in ktopics.values()):
    problems.append("kafka topic payments.dlq: shorter retention than another topic")
kusers = {d["metadata"]["name"]: d["spec"] for d in kafka_docs if d["kind"] == "KafkaUser"}
def check_acls(stage, got, want):
    if got != want:
        problems.append(f"kafka user paystream-{stage}: ACLs differ: extra {sorted(got - want)}, "
                        f"missing {sorted(want - got)}")


def acls_of(name):
    u = kusers.get(name)
    if not u:
        problems.append(f"kafka users.yaml: no KafkaUser {name}")
        return set()
    return {(a["resource"]["type"], a["resource"].get("name", ""), a["resource"].get("patternType", "literal"), op)
            for a in u["authorization"]["acls"] for op in a["operations"]}


def rw(topic, ops):
    return {("topic", topic_names[topic], "literal", op) for op in ops}


for stage, (src, dst) in flow.items():
    u = kusers.get(f"paystream-{stage}")
    if not u:
        problems.append(f"kafka users.yaml: no KafkaUser paystream-{stage}")
        continue
    got = {(a["resource"]["type"], a["resource"].get("name", ""), a["resource"].get("patternType", "literal"), op)
           for a in u["authorization"]["acls"] for op in a["operations"]}
    # exactly-once: its own transactional ids, paystream-<stage>-<instance>
    want = {("topic", topic_names[src], "literal", "Read"), ("topic", topic_names[src], "literal", "Describe"),
            ("group", stage, "literal", "Read"), ("cluster", "", "literal", "IdempotentWrite"),
            ("transactionalId", f"paystream-{stage}-", "prefix", "Write"),
            ("transactionalId", f"paystream-{stage}-", "prefix", "Describe")}
    for t in (dst, "outcomes", "dlq"):
        want |= {("topic", topic_names[t], "literal", "Write"), ("topic", topic_names[t], "literal", "Describe")}
    check_acls(stage, got, want)
    sec = secrets_k8s.get(f"paystream-{stage}", {}).get("kafka.properties", "")
    if f"sasl.username=paystream-{stage}\n" not in sec:
        problems.append(f"k8s Secret paystream-{stage}: kafka.properties is not principal paystream-{stage}")


# ps-webhook writes the processor events; ps-events reads them (group
# events) and writes what applying them produces: a settled charge to
# payments.charged, outcomes, dead letters. No transactions: no
# transactional ids. Both produce idempotently.
idem = {("cluster", "", "literal", "IdempotentWrite")}
check_acls("webhook", acls_of("paystream-webhook"), idem | rw("processor_events", ("Write", "Describe")))
check_acls("events", acls_of("paystream-events"),
           idem | rw("processor_events", ("Read", "Describe")) | {("group", "events", "literal", "Read")}
           | rw("charged", ("Write", "Describe")) | rw("outcomes", ("Write", "Describe")) | rw("dlq", ("Write", "Describe")))
# The expiry sweeper writes payments.outcomes only (idempotent, no
# transaction); its Secret: its DSN (paystream_expire) and principal, nothing else.
check_acls("expire", acls_of("paystream-expire"), idem | rw("outcomes", ("Write", "Describe")))
exp_sec = secrets_k8s.get("paystream-expire", {})
if set(exp_sec) != {"pg-dsn", "kafka.properties"} or "user=paystream_expire " not in exp_sec.get("pg-dsn", ""):
    problems.append(f"k8s Secret paystream-expire: keys {sorted(exp_sec)}, want pg-dsn (paystream_expire) and kafka.properties")
cron_exp = [c for c in kinds.get("CronJob", []) if c["metadata"]["name"] == "paystream-expire"]
if not cron_exp or "payctl expire" not in " ".join(
        a for c in cron_exp[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        for a in c.get("command", []) + c.get("args", [])):
    problems.append("k8s: no CronJob paystream-expire running payctl expire")
for stage in ("webhook", "events", "expire"):
    if f"sasl.username=paystream-{stage}\n" not in secrets_k8s.get(f"paystream-{stage}", {}).get("kafka.properties", ""):
        problems.append(f"k8s Secret paystream-{stage}: kafka.properties is not principal paystream-{stage}")
for name in ("paystream-operator", "paystream-keda"):
    groups = {n for t, n, _, _ in acls_of(name) if t == "group"}
    if groups != set(flow) | {"events"}:
        problems.append(f"kafka user {name}: groups {sorted(groups)}, want every consumer group")
scaled = {d["spec"]["scaleTargetRef"]["name"]: d["spec"] for d in kinds.get("ScaledObject", [])}
for stage, (src, dst) in dict(flow, events=("processor_events", "charged")).items():
    so = scaled.get(f"paystream-{stage}")
    dep = [d for d in kinds.get("Deployment", []) if d["metadata"]["name"] == f"paystream-{stage}"]
    if not so:
        problems.append(f"k8s: no ScaledObject for paystream-{stage}")
        continue
    trig = so["triggers"][0]["metadata"] if so.get("triggers") else {}
    if trig.get("consumerGroup") != stage or trig.get("topic") != topic_names[src]:
        problems.append(f"k8s ScaledObject {stage}: not group {stage} on {topic_names[src]}")
    parts = ktopics.get(topic_names[src], {}).get("partitions", 0)
    surge = dep[0]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] if dep else 0
    if so.get("maxReplicaCount", 100) + surge > parts:
        problems.append(f"k8s ScaledObject {stage}: maxReplicaCount {so.get('maxReplicaCount')} + surge "
                        f"{surge} exceeds {parts} partitions (a pod without partitions is not ready)")
    if so.get("minReplicaCount", 0) < 2:
        problems.append(f"k8s ScaledObject {stage}: fewer than 2 replicas")

# Alert rules: each has a runbook entry; each metric is one something exports
# (the workers, kafka-exporter, Prometheus itself, or the ops checks).
rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
runbook = (root / "docs/runbook.md").read_text()
pushed = pushed_names
for g in rules["groups"]:
    for r in g["rules"]:
        a = r["alert"]
        if f"## {a}\n" not in runbook:
            problems.append(f"alert {a}: no '## {a}' entry in docs/runbook.md")
        if r["annotations"].get("runbook") != f"docs/runbook.md#{a.lower()}":
            problems.append(f"alert {a}: runbook annotation is not docs/runbook.md#{a.lower()}")
        for m in re.findall(r"\b(paystream_[a-z_]+|kafka_[a-z_]+)\b", r["expr"]):
            if m not in exported and m not in pushed and m not in (
                    "kafka_consumergroup_lag", "kafka_consumergroup_current_offset"):
                problems.append(f"alert {a}: unknown metric {m}")

# deploy/k8s/pin-images: the release step that replaces the placeholder
# digests, on a copy: --check refuses the shipped placeholders, pinning
# sets every paystream (and postgres) image, --check then passes.
def pin_images_check():
    import shutil
    import subprocess
    import tempfile
    script = root / "deploy/k8s/pin-images"
    with tempfile.TemporaryDirectory() as tmp:
        for f in (root / "deploy/k8s").glob("*.yaml"):
            shutil.copy(f, tmp)
        env = {"PATH": "/usr/bin:/bin", "PIN_IMAGES_DIR": tmp}
        run = lambda *a: subprocess.run([str(script), *a], env=env, capture_output=True, text=True)
        if run("--check").returncode != 1:
            problems.append("pin-images --check passes the shipped placeholder digests")
        ours, pg = "reg.example/team/paystream:9.9.9@sha256:" + "ab" * 32, "postgres:15.9@sha256:" + "cd" * 32
        if run("x/paystream:1").returncode == 0:
            problems.append("pin-images accepts an image without a digest")
        r = run(ours, pg)
        if r.returncode != 0 or run("--check").returncode != 0:
            problems.append(f"pin-images: pinning failed or --check still refuses: {r.stderr.strip()}")
        got = {m.group(1) for f in pathlib.Path(tmp).glob("*.yaml")
               for m in re.finditer(r"^\s*(?:- )?image:\s*(\S+)", f.read_text(), re.M)}
        if got != {ours, pg}:
            problems.append(f"pin-images: images after pinning {sorted(got)}, want {ours} and {pg}")


pin_images_check()

for p in problems:
    print(f"not ok - {p}")
print(f"deploy files: {len(problems)} problems")
sys.exit(1 if problems else 0)
