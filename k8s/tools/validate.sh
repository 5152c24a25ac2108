#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests: render k8s/base and every overlay with kustomize,
# validate each object with `kubeconform -strict` against schemas built from published artifacts,
# then check the cross-object rules (check_rendered.py). Non-zero exit on any failure.
#
#   k8s/tools/validate.sh                  render base + overlays/dev + overlays/prod and validate
#   k8s/tools/validate.sh --files F.yaml…  validate just these manifests with the same schemas
#
# Idempotent: tools and schemas are fetched/built into .cache/ (git-ignored) only when missing or
# when the pinned versions below (or the converter) change. Registries only, nothing else:
#   kustomize, kubeconform   Go module proxy (go install)
#   Kubernetes core schemas  Go module k8s.io/kubernetes, api/openapi-spec/swagger.json
#   FlinkDeployment CRD      Maven Central org.apache.flink:flink-kubernetes-operator-api (jar)
#   Strimzi KafkaTopic CRD   Maven Central io.strimzi:api + io.strimzi:crd-generator, generated
#                            the way Strimzi's own build does (no CRD files are published there)
#   PodMonitor/PrometheusRule  Go module github.com/prometheus-operator/prometheus-operator,
#                            example/prometheus-operator-crd/*.yaml
# kubeconform is always given our local schema location, so it never reaches for its default
# (internet) one; a kind without a local schema fails ("could not find schema").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/k8s/tools"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
WORK="$CACHE/k8s"
PY="${PYTHON:-python3}"

KUSTOMIZE_VERSION=v5.8.2           # v5.8.3 needs go >= 1.27
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VERSION=v1.34.2         # core API schemas
PROM_OPERATOR_VERSION=v0.85.0
# The newest operator API jar on Maven Central (1.10.0, k8s/tools/pom.xml) predates Flink 2.x, so its
# CRD enumerates flinkVersion only up to v1_20. Only that enum is widened, by the values operator
# releases for Flink 2.x accept; every other field is validated as published. Reported when applied.
FLINK_CRD_EXTEND="FlinkDeployment/v1beta1:spec.flinkVersion=v2_0,v2_1,v2_2"
SCHEMA_LOCATION="$WORK/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"

log() { printf 'validate.sh [%3ss]: %s\n' "$SECONDS" "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { log "missing '$1' on PATH ($2)"; exit 2; }; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
hash_files() { cat "$@" | sha256sum | cut -c1-16; }

# Non-login shells (CI) may lack the usual Go install dir on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi
need go "Go toolchain, for kustomize/kubeconform and the schema modules"
need "$PY" "Python 3, stdlib only"
mkdir -p "$BIN" "$WORK/stamps" "$WORK/tmp"
# One run at a time: two test processes must not rebuild the same schema tree under each other.
exec 9>"$WORK/.lock"
command -v flock >/dev/null 2>&1 && flock 9

# A neutral working dir for `go mod download M@V` / `go install P@V`: both name exact versions, so
# they neither read nor change any go.mod (GOWORK=off keeps a go.work out of it too).
GOSCRATCH="$WORK/tmp/go"
mkdir -p "$GOSCRATCH"
go_module_dir() { # MODULE VERSION -> extracted module directory
  (cd "$GOSCRATCH" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$1@$2") |
    "$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit("go mod download: "+d["Error"]) if d.get("Error") else print(d["Dir"])'
}

ensure_go_tool() { # NAME PACKAGE VERSION
  if [ -x "$BIN/$1" ] && stamp_ok "$WORK/stamps/$1" "$3"; then return; fi
  log "building $1 $3 (go install)"
  (cd "$GOSCRATCH" && GOWORK=off GOBIN="$BIN" go install "$2@$3")
  echo "$3" >"$WORK/stamps/$1"
}

ensure_tools() {
  ensure_go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
  ensure_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
  local src="$TOOLS/yaml2json" h
  h="$(hash_files "$src/main.go" "$src/go.mod" "$src/go.sum")"
  if ! { [ -x "$BIN/vad-yaml2json" ] && stamp_ok "$WORK/stamps/vad-yaml2json" "$h"; }; then
    log "building yaml2json"
    (cd "$src" && go build -o "$BIN/vad-yaml2json" .)
    echo "$h" >"$WORK/stamps/vad-yaml2json"
  fi
}

y2j() { "$BIN/vad-yaml2json" <"$1" >"$2"; }

build_schemas() { # into $1
  local out="$1" tmp="$WORK/tmp/crd"
  rm -rf "$tmp" && mkdir -p "$tmp"

  log "core schemas: k8s.io/kubernetes@$KUBERNETES_VERSION api/openapi-spec/swagger.json"
  local kdir
  kdir="$(go_module_dir k8s.io/kubernetes "$KUBERNETES_VERSION")"
  "$PY" "$TOOLS/schemagen.py" openapi --in "$kdir/api/openapi-spec/swagger.json" --out "$out"

  log "Maven Central artifacts (k8s/tools/pom.xml)"
  need mvn "Maven, for the operator CRD artifacts"
  need java "a JDK, to run Strimzi's CRD generator"
  # VAD_MVN_FLAGS: e.g. -Dmaven.repo.local=... to measure a cold run.
  rm -rf "$WORK/jars"  # exactly the pinned jars, no leftovers of an older pin
  # shellcheck disable=SC2086
  if ! mvn -q -B ${VAD_MVN_FLAGS:-} -f "$TOOLS/pom.xml" package >"$WORK/tmp/mvn.log" 2>&1; then
    cat "$WORK/tmp/mvn.log" >&2
    log "mvn failed"
    exit 1
  fi

  log "FlinkDeployment CRD from flink-kubernetes-operator-api"
  "$PY" - "$WORK"/jars/flink-operator/flink-kubernetes-operator-api-*.jar "$tmp/flinkdeployments.yaml" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml")
open(sys.argv[2], "wb").write(data)
EOF
  y2j "$tmp/flinkdeployments.yaml" "$tmp/flinkdeployments.json"
  "$PY" "$TOOLS/schemagen.py" crd --in "$tmp/flinkdeployments.json" --out "$out" --extend-enum "$FLINK_CRD_EXTEND"

  log "KafkaTopic CRD generated by io.strimzi:crd-generator from io.strimzi:api"
  java -cp "$WORK/jars/strimzi/*" io.strimzi.crdgenerator.CrdGenerator \
    --crd-api-version v1 --api-versions v1beta2 --storage-version v1beta2 --yaml \
    "io.strimzi.api.kafka.model.topic.KafkaTopic=$tmp/kafkatopics.yaml" 2> >(grep -v '^SLF4J' >&2)
  y2j "$tmp/kafkatopics.yaml" "$tmp/kafkatopics.json"
  "$PY" "$TOOLS/schemagen.py" crd --in "$tmp/kafkatopics.json" --out "$out"

  log "PodMonitor/PrometheusRule CRDs: prometheus-operator@$PROM_OPERATOR_VERSION"
  local pdir crd
  pdir="$(go_module_dir github.com/prometheus-operator/prometheus-operator "$PROM_OPERATOR_VERSION")"
  for crd in podmonitors prometheusrules; do
    y2j "$pdir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$tmp/$crd.json"
    "$PY" "$TOOLS/schemagen.py" crd --in "$tmp/$crd.json" --out "$out"
  done
}

ensure_schemas() {
  local recipe
  recipe="k8s=$KUBERNETES_VERSION prom=$PROM_OPERATOR_VERSION extend=$FLINK_CRD_EXTEND"
  recipe="$recipe code=$(hash_files "$TOOLS/schemagen.py" "$TOOLS/pom.xml" "$TOOLS/yaml2json/main.go")"
  if [ -d "$WORK/schemas" ] && stamp_ok "$WORK/stamps/schemas" "$recipe"; then return; fi
  rm -rf "$WORK/schemas.new"
  build_schemas "$WORK/schemas.new"
  rm -rf "$WORK/schemas" && mv "$WORK/schemas.new" "$WORK/schemas"
  echo "$recipe" >"$WORK/stamps/schemas"
}

kubeconform_run() {
  "$BIN/kubeconform" -strict -summary -output text -schema-location "$SCHEMA_LOCATION" "$@"
}

start=$SECONDS
ensure_tools
ensure_schemas
log "tools and schemas ready ($((SECONDS - start)) s)"

if [ "${1:-}" = "--files" ]; then
  shift
  [ $# -gt 0 ] || { log "--files needs at least one manifest"; exit 2; }
  kubeconform_run "$@"
  exit $?
fi

mkdir -p "$WORK/rendered"
status=0
for target in base overlays/dev overlays/prod; do
  name="$(basename "$target")"
  out="$WORK/rendered/$name"
  log "render k8s/$target"
  if ! "$BIN/kustomize" build "$ROOT/k8s/$target" >"$out.yaml"; then
    status=1
    continue
  fi
  y2j "$out.yaml" "$out.json"
  kubeconform_run "$out.yaml" || status=1
  # Credentials are generated only in the dev overlay; base and prod must render no Secret.
  mode=forbid
  [ "$name" = dev ] && mode=resolve
  "$PY" "$TOOLS/check_rendered.py" --secrets "$mode" "$out.json" || status=1
done
log "examples (never applied, but must stay valid)"
kubeconform_run "$ROOT"/k8s/examples/*.yaml || status=1

if [ "$status" -ne 0 ]; then
  log "FAILED ($((SECONDS - start)) s)"
  exit 1
fi
log "all manifests valid ($((SECONDS - start)) s)"
