#!/usr/bin/env bash
# Schema validation of every Kubernetes manifest under deploy/ (ctest
# deploy_schema): the Kubernetes API and KEDA schemas from npm
# (tests/deploy/schema/package.json, installed once into the build
# directory with npm ci). No Debian package ships kubeconform or kubeval.
#   schema_validate.sh <repo> <build-dir>
set -euo pipefail
repo=$1 dir=$2/deploy-schema
mkdir -p "$dir"
for f in package.json package-lock.json validate.mjs; do
  cmp -s "$repo/tests/deploy/schema/$f" "$dir/$f" || cp "$repo/tests/deploy/schema/$f" "$dir/$f"
done
if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock" 2>/dev/null; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock"
fi
/usr/bin/python3 - "$repo" <<'PY' | node "$dir/validate.mjs"
import json, pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
for f in sorted((root / "deploy").rglob("*.yaml")):
    if "compose" in f.parts or "local" in f.parts:
        continue
    for d in yaml.safe_load_all(f.read_text()):
        if isinstance(d, dict) and "apiVersion" in d and "kind" in d:
            print(json.dumps({"file": str(f.relative_to(root)), "doc": d}))
PY
