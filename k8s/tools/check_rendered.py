#!/usr/bin/env python3
"""Cross-resource rules that a per-object schema cannot see, checked on one rendered kustomization.

kubeconform proves each object is well-formed; these rules catch the mistakes that are well-formed
but wrong together, the kind that only shows in a cluster hours later:

* the autoscaler's max vertex parallelism equals the partition count of the input topic (more
  source subtasks than partitions idle; fewer leave partitions unused), the starting parallelism
  lies within the autoscaler's bounds and the key-group count divides evenly by the maximum;
* the job's VAD_JOB__PARALLELISM override agrees with spec.job.parallelism, and its scoring shards
  (VAD_JOB__SCORE_SHARDS) are a multiple of the autoscaler's max vertex parallelism (fewer leave
  subtasks without records once it scales up; a multiple spreads them evenly);
* savepoint upgrades have somewhere to write (checkpoint/savepoint dirs, Kubernetes HA storage);
* credentials only ever come from Secrets (no literal value on a password-like variable) and, with
  ``--secrets forbid``, no Secret object is rendered at all (base, prod); with ``--secrets resolve``
  (dev) every required Secret/ConfigMap a FlinkDeployment names is in the render;
* the PodMonitor selects the FlinkDeployment's pods on the port the Prometheus reporter listens on.

Input: the JSON array yaml2json makes of ``kustomize build`` output. Stdlib only (see schemagen.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def _containers(fd: dict[str, Any]) -> list[dict[str, Any]]:
    return fd["spec"].get("podTemplate", {}).get("spec", {}).get("containers", [])


def check_flinkdeployment(fd: dict[str, Any], docs: list[dict[str, Any]], input_topic: str) -> list[str]:
    name = fd["metadata"]["name"]
    spec, errs = fd["spec"], []
    conf: dict[str, str] = spec.get("flinkConfiguration", {})

    def need(key: str) -> str | None:
        if not conf.get(key):
            errs.append(f"{name}: flinkConfiguration {key} is not set")
            return None
        return conf[key]

    if need("job.autoscaler.enabled") not in (None, "true"):
        errs.append(f'{name}: job.autoscaler.enabled must be "true"')
    for key in ("high-availability.storageDir", "state.checkpoints.dir", "state.savepoints.dir"):
        need(key)
    if need("high-availability.type") not in (None, "kubernetes"):
        errs.append(f"{name}: high-availability.type must be kubernetes")
    if spec.get("job", {}).get("upgradeMode") != "savepoint":
        errs.append(f"{name}: job.upgradeMode must be savepoint")

    max_p = int(need("job.autoscaler.vertex.max-parallelism") or 0)
    min_p = int(conf.get("job.autoscaler.vertex.min-parallelism", "1"))
    key_groups = int(need("pipeline.max-parallelism") or 0)
    par = spec.get("job", {}).get("parallelism", 0)
    topics = [t for t in _by_kind(docs, "KafkaTopic") if t["spec"].get("topicName") == input_topic]
    if len(topics) != 1:
        errs.append(f"{name}: expected one KafkaTopic for {input_topic}, found {len(topics)}")
    elif max_p and topics[0]["spec"]["partitions"] != max_p:
        errs.append(
            f"{name}: job.autoscaler.vertex.max-parallelism={max_p} but {input_topic} has "
            f"{topics[0]['spec']['partitions']} partitions (keep them equal)"
        )
    if max_p and not (min_p <= par <= max_p):
        errs.append(f"{name}: job.parallelism={par} outside autoscaler bounds [{min_p}, {max_p}]")
    if max_p and key_groups and key_groups % max_p:
        errs.append(f"{name}: pipeline.max-parallelism={key_groups} is not a multiple of {max_p}")

    envs = [e for c in _containers(fd) for e in c.get("env", [])]
    env_par = [e.get("value") for e in envs if e["name"] == "VAD_JOB__PARALLELISM"]
    if env_par != [str(par)]:
        errs.append(f"{name}: VAD_JOB__PARALLELISM={env_par} must equal job.parallelism={par}")
    shards = [e.get("value") for e in envs if e["name"] == "VAD_JOB__SCORE_SHARDS"]
    if max_p and (len(shards) != 1 or not str(shards[0]).isdigit() or int(shards[0]) % max_p):
        errs.append(
            f"{name}: VAD_JOB__SCORE_SHARDS={shards} must be a multiple of "
            f"job.autoscaler.vertex.max-parallelism={max_p}"
        )
    for e in envs:
        if SECRET_LIKE.search(e["name"]) and ("value" in e or "secretKeyRef" not in e.get("valueFrom", {})):
            errs.append(f"{name}: env {e['name']} must come from a secretKeyRef, not a literal")
    return errs


def check_references(fd: dict[str, Any], docs: list[dict[str, Any]], secrets_mode: str) -> list[str]:
    name, errs = fd["metadata"]["name"], []
    pod = fd["spec"].get("podTemplate", {}).get("spec", {})
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for vol in pod.get("volumes", []):
        if "configMap" in vol and ("ConfigMap", vol["configMap"]["name"]) not in have:
            errs.append(f"{name}: volume {vol['name']} names missing ConfigMap {vol['configMap']['name']}")
        sec = vol.get("secret")
        if sec and secrets_mode == "resolve" and not sec.get("optional"):
            if ("Secret", sec["secretName"]) not in have:
                errs.append(f"{name}: volume {vol['name']} names missing Secret {sec['secretName']}")
    if secrets_mode == "resolve":
        for c in pod.get("containers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional") and ("Secret", ref["name"]) not in have:
                    errs.append(f"{name}: env {e['name']} names missing Secret {ref['name']}")
    return errs


def check_podmonitor(docs: list[dict[str, Any]]) -> list[str]:
    errs = []
    fds = _by_kind(docs, "FlinkDeployment")
    for pm in _by_kind(docs, "PodMonitor"):
        want = pm["spec"]["selector"].get("matchLabels", {})
        ports = {ep.get("port") for ep in pm["spec"]["podMetricsEndpoints"]}
        for fd in fds:
            labels = fd["spec"].get("podTemplate", {}).get("metadata", {}).get("labels", {})
            if any(labels.get(k) != v for k, v in want.items()):
                errs.append(f"PodMonitor {pm['metadata']['name']} does not select {fd['metadata']['name']}'s pods")
            prom_port = fd["spec"]["flinkConfiguration"].get("metrics.reporter.prom.port")
            named = {
                p["name"]: str(p["containerPort"]) for c in _containers(fd) for p in c.get("ports", []) if "name" in p
            }
            for port in ports:
                if named.get(port) != prom_port:
                    errs.append(
                        f"PodMonitor port {port!r} is {named.get(port)} on {fd['metadata']['name']}, "
                        f"the Prometheus reporter listens on {prom_port}"
                    )
    return errs


def check(docs: list[dict[str, Any]], secrets_mode: str, input_topic: str) -> list[str]:
    errs: list[str] = []
    fds = _by_kind(docs, "FlinkDeployment")
    if not fds:
        errs.append("no FlinkDeployment rendered")
    for fd in fds:
        errs += check_flinkdeployment(fd, docs, input_topic)
        errs += check_references(fd, docs, secrets_mode)
    errs += check_podmonitor(docs)
    if secrets_mode == "forbid":
        errs += [f"Secret {s['metadata']['name']} must not be rendered here" for s in _by_kind(docs, "Secret")]
    return errs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rendered", type=Path, help="JSON array of the rendered documents")
    ap.add_argument("--secrets", choices=["forbid", "resolve"], required=True)
    ap.add_argument("--input-topic", default="vad.frame-features")
    args = ap.parse_args(argv)
    errs = check(json.loads(args.rendered.read_text()), args.secrets, args.input_topic)
    for e in errs:
        print(f"check_rendered: {args.rendered.name}: {e}", file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
