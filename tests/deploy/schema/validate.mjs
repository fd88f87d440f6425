// Validates manifests (JSON lines on stdin: {file, doc}) against the
// Kubernetes API's OpenAPI schemas as compiled by kubernetes-models, and
// KEDA's CRD schemas (@kubernetes-models/keda). Strimzi resources have no
// such package: tests/deploy/validate.py checks them. Field types, enums and
// required fields are checked; unknown fields are not (the compiled schemas
// allow them), so validate.py checks the fields that matter by name.
import { createInterface } from "node:readline";

const packages = { "keda.sh": "@kubernetes-models/keda/keda.sh" };
const skipped = new Set(["kafka.strimzi.io"]);
let bad = 0, checked = 0, skip = 0;

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { file, doc } = JSON.parse(line);
  const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : ["", doc.apiVersion];
  const where = `${file} ${doc.kind}/${doc.metadata?.name}`;
  if (skipped.has(group)) { skip++; continue; }
  const mod = packages[group] ? `${packages[group]}/${version}`
                              : `kubernetes-models/${group ? group + "/" : ""}${version}`;
  let Model;
  try {
    Model = (await import(mod))[doc.kind];
  } catch (e) {
    Model = undefined;
  }
  if (!Model) {
    console.log(`not ok - ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(doc).validate();
    checked++;
  } catch (e) {
    console.log(`not ok - ${where}: ${e.message}`);
    bad++;
  }
}
console.log(`schema: ${checked} manifests valid, ${bad} invalid, ${skip} without a schema package (Strimzi)`);
process.exit(bad || checked === 0 ? 1 : 0);
