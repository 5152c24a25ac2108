"""The Kubernetes manifests render and validate offline, and the validator has teeth.

Runs k8s/tools/validate.sh (kustomize + kubeconform -strict against schemas built from published
artifacts, then the cross-object rules of check_rendered.py), and checks that the same validator
rejects broken manifests, that the rendered job config loads with the project's own config model,
and that the Flink version agrees everywhere it is pinned. Needs go, mvn, java and the package
registries on the first run (about a minute or two); later runs use .cache/ and take seconds.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VALIDATE = REPO / "k8s" / "tools" / "validate.sh"
RENDERED = REPO / ".cache" / "k8s" / "rendered"
TARGETS = ("base", "dev", "prod")
TIMEOUT_S = 900
# A cold first run builds tools and schemas (minutes); later ones take seconds.
pytestmark = pytest.mark.timeout(TIMEOUT_S)


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(VALIDATE), *args], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def validated() -> subprocess.CompletedProcess[str]:
    return run_validate()


@pytest.fixture(scope="module")
def rendered(validated) -> dict[str, list[dict]]:
    assert validated.returncode == 0, validated.stdout + validated.stderr
    return {t: json.loads((RENDERED / f"{t}.json").read_text()) for t in TARGETS}


def one(docs: list[dict], kind: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_validate_sh_passes_for_base_and_overlays(validated):
    out = validated.stdout + validated.stderr
    assert validated.returncode == 0, out
    assert "all manifests valid" in out
    # Every target was rendered and every object in it checked by kubeconform, none skipped.
    summaries = re.findall(r"Summary: (\d+) resources? found .* Invalid: (\d+), Errors: (\d+), Skipped: (\d+)", out)
    assert len(summaries) == len(TARGETS) + 1, out  # + k8s/examples
    for found, invalid, errors, skipped in summaries:
        assert int(found) > 0 and (invalid, errors, skipped) == ("0", "0", "0"), out


def test_every_target_renders_the_expected_kinds(rendered):
    for target, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        want = {
            "FlinkDeployment",
            "ConfigMap",
            "KafkaTopic",
            "PodMonitor",
            "PrometheusRule",
            "ServiceAccount",
            "NetworkPolicy",
        }
        assert want <= kinds, (target, kinds)
    # Credentials are generated only by the dev overlay, never in base or prod.
    assert not [d for d in rendered["prod"] + rendered["base"] if d["kind"] == "Secret"]
    assert len([d for d in rendered["dev"] if d["kind"] == "Secret"]) == 2  # Redis, S3: dev Kafka is PLAINTEXT


def _broken_variants(fd: dict) -> dict[str, tuple[dict, str]]:
    """name -> (manifest, text the rejection must mention)."""
    out = {}
    b = copy.deepcopy(fd)
    b["spec"]["job"]["parallelism"] = "four"  # wrong type
    out["wrong-type"] = (b, "/spec/job/parallelism")
    b = copy.deepcopy(fd)
    b["spec"]["job"]["paralelism"] = 4  # misspelt field: only caught by strict schemas
    out["unknown-field"] = (b, "paralelism")
    b = copy.deepcopy(fd)
    b["spec"]["flinkVersion"] = "v9_9"  # the (widened) enum still holds
    out["bad-enum"] = (b, "/spec/flinkVersion")
    b = copy.deepcopy(fd)
    b["spec"]["podTemplate"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9249"
    out["pod-template"] = (b, "containerPort")
    return out


@pytest.mark.parametrize("variant", ["wrong-type", "unknown-field", "bad-enum", "pod-template"])
def test_broken_flinkdeployment_is_rejected(rendered, tmp_path, variant):
    fd = one(rendered["prod"], "FlinkDeployment")
    manifest, mention = _broken_variants(fd)[variant]
    path = tmp_path / f"{variant}.yaml"
    path.write_text(json.dumps(manifest))  # JSON is YAML
    res = run_validate("--files", str(path))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "FlinkDeployment vad-anomaly is invalid" in out and mention in out, out


def test_validator_accepts_the_unbroken_control_and_refuses_unknown_kinds(rendered, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(one(rendered["prod"], "FlinkDeployment")))
    res = run_validate("--files", str(good))
    assert res.returncode == 0, res.stdout + res.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(json.dumps({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}))
    res = run_validate("--files", str(unknown))
    assert res.returncode != 0 and "could not find schema" in res.stdout + res.stderr


def _load_check_rendered():
    spec = importlib.util.spec_from_file_location("check_rendered", REPO / "k8s" / "tools" / "check_rendered.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cross_object_rules_catch_mistakes(rendered):
    check = _load_check_rendered().check
    prod = rendered["prod"]
    assert check(prod, "forbid", "vad.frame-features") == []

    fewer = copy.deepcopy(prod)
    next(t for t in fewer if t.get("spec", {}).get("topicName") == "vad.frame-features")["spec"]["partitions"] = 8
    assert any("partitions" in e for e in check(fewer, "forbid", "vad.frame-features"))

    inline = copy.deepcopy(prod)
    env = one(inline, "FlinkDeployment")["spec"]["podTemplate"]["spec"]["containers"][0]["env"]
    env.append({"name": "VAD_REDIS__PASSWORD", "value": "hunter2"})
    assert any("secretKeyRef" in e for e in check(inline, "forbid", "vad.frame-features"))

    drift = copy.deepcopy(prod)
    one(drift, "FlinkDeployment")["spec"]["job"]["parallelism"] = 3
    assert any("VAD_JOB__PARALLELISM" in e for e in check(drift, "forbid", "vad.frame-features"))

    few_shards = copy.deepcopy(prod)
    env = one(few_shards, "FlinkDeployment")["spec"]["podTemplate"]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == "VAD_JOB__SCORE_SHARDS")["value"] = "4"
    assert any("VAD_JOB__SCORE_SHARDS" in e for e in check(few_shards, "forbid", "vad.frame-features"))

    leaked = [*copy.deepcopy(prod), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}]
    assert any("Secret x" in e for e in check(leaked, "forbid", "vad.frame-features"))


def test_autoscaler_bounds_follow_partitions(rendered):
    want = {"dev": 2, "base": 4, "prod": 12}
    for target, docs in rendered.items():
        fd = one(docs, "FlinkDeployment")
        conf = fd["spec"]["flinkConfiguration"]
        assert conf["job.autoscaler.enabled"] == "true"
        assert float(conf["job.autoscaler.target.utilization"]) == pytest.approx(0.7)
        topic = next(t for t in docs if t["kind"] == "KafkaTopic" and t["spec"]["topicName"] == "vad.frame-features")
        assert topic["spec"]["partitions"] == want[target] == int(conf["job.autoscaler.vertex.max-parallelism"])


def test_rendered_job_config_loads_with_the_project_model(rendered, tmp_path):
    pytest.importorskip("pydantic")
    from vad.config import load_config

    for target, docs in rendered.items():
        (job_config,) = [d for d in docs if d["kind"] == "ConfigMap" and "job.yaml" in d.get("data", {})]
        text = job_config["data"]["job.yaml"]
        path = tmp_path / f"{target}.yaml"
        path.write_text(text)
        fd = one(docs, "FlinkDeployment")
        container = fd["spec"]["podTemplate"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "placeholder") for e in container["env"]}
        cfg = load_config(path, env=env)
        assert cfg.job.parallelism == fd["spec"]["job"]["parallelism"]
        assert cfg.kafka.topics.features == "vad.frame-features"
        topic_names = {t["spec"]["topicName"] for t in docs if t["kind"] == "KafkaTopic"}
        t = cfg.kafka.topics
        assert {t.features, t.events, t.dead_letter, t.scores} == topic_names
        # The job config file lands where the FlinkDeployment's args point.
        assert fd["spec"]["job"]["args"][-2:] == ["--config", "/opt/vad/config/job.yaml"]
        # Snapshots go where the FlinkDeployment says: a directory in the job's config would override
        # its flinkConfiguration (jobs/runtime.py sets them only on a local run, or when named).
        assert cfg.job.checkpoint_dir is None and cfg.job.savepoint_dir is None
        assert fd["spec"]["flinkConfiguration"]["execution.checkpointing.dir"].startswith("s3://")


def _flink_versions() -> dict[str, str]:
    req = (REPO / "requirements.txt").read_text()
    (pip_v,) = re.findall(r"^apache-flink==([0-9][^\s;#]*)", req, re.MULTILINE)
    pom = ET.parse(REPO / "java" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom_v = pom.find("m:properties/m:flink.version", ns).text.strip()
    froms = re.findall(r"^FROM\s+(\S+)", (REPO / "docker" / "Dockerfile").read_text(), re.MULTILINE)
    assert froms, "no FROM in docker/Dockerfile"
    docker_vs = set()
    for image in froms:
        m = re.fullmatch(r"flink:([0-9.]+)-scala_2\.12-java17", image)
        assert m, f"docker/Dockerfile: FROM {image} is not the pinned official Flink image"
        docker_vs.add(m.group(1))
    assert len(docker_vs) == 1, docker_vs
    return {"requirements.txt": pip_v, "java/pom.xml": pom_v, "docker/Dockerfile": docker_vs.pop()}


def test_flink_version_is_the_same_everywhere(rendered):
    versions = _flink_versions()
    assert len(set(versions.values())) == 1, versions
    v = versions["requirements.txt"]
    major, minor = v.split(".")[:2]
    for target, docs in rendered.items():
        for fd in (d for d in docs if d["kind"] == "FlinkDeployment"):
            spec = fd["spec"]
            assert spec["flinkVersion"] == f"v{major}_{minor}", (target, spec["flinkVersion"], v)
            tag = spec["image"].rsplit(":", 1)[1]
            assert tag == v or tag.startswith(f"{v}-"), (target, spec["image"], v)
            assert spec["job"]["jarURI"] == f"local:///opt/flink/opt/flink-python-{v}.jar", target
    # The S3 plugin is baked into the image at the same version (the root filesystem is read-only).
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert f"cp /opt/flink/opt/flink-s3-fs-presto-{v}.jar /opt/flink/plugins/s3-fs-presto/" in dockerfile


def test_job_pods_run_hardened_and_fenced(rendered):
    """No privilege escalation, no capabilities, a read-only root with writable emptyDirs exactly
    where Flink and the Python workers write, and a NetworkPolicy selecting the job's pods."""
    for target, docs in rendered.items():
        fd = one(docs, "FlinkDeployment")
        pod = fd["spec"]["podTemplate"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, target
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, target
        main = next(c for c in pod["containers"] if c["name"] == "flink-main-container")
        sc = main["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, target
        assert sc["capabilities"] == {"drop": ["ALL"]}, target
        assert "ENABLE_BUILT_IN_PLUGINS" not in {e["name"] for e in main["env"]}, target
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        assert {mounts.get("/tmp"), mounts.get("/opt/flink/log")} <= empty, (target, mounts)
        pod_labels = fd["spec"]["podTemplate"]["metadata"]["labels"]
        (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), (target, selector, pod_labels)
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}, target
        ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
        assert ingress_ports == {8081, 9249}, (target, ingress_ports)


def test_every_target_provisions_the_grafana_dashboards(rendered):
    """One ConfigMap the Grafana sidecar picks up by its label, holding the dashboards as they are
    in k8s/base/grafana, under a name that stays put (no hash suffix to leave old copies behind)."""
    files = {p.name: p.read_text() for p in (REPO / "k8s" / "base" / "grafana").glob("*.json")}
    assert set(files) == {"job.json", "edge.json"}
    for target, docs in rendered.items():
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "vad-grafana-dashboards"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", target
        assert cm["data"] == files, target
        assert {json.loads(v)["uid"] for v in cm["data"].values()} == {"vad-job", "vad-edge"}, target
        # Camera ids reach Prometheus unchanged, so the job's labels match the edge's and the events'.
        conf = one(docs, "FlinkDeployment")["spec"]["flinkConfiguration"]
        assert conf["metrics.reporter.prom.filterLabelValueCharacters"] == "false", target
