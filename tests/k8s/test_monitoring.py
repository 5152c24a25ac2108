"""The alert rules and the Grafana dashboards are valid PromQL over metrics the code exports.

``promtool`` (Debian package ``prometheus``, installed by scripts/setup.sh) checks the rule groups of
the PrometheusRule in k8s/base/monitoring.yaml and runs their unit tests
(tests/k8s/monitoring_rules_test.yaml: the score-drift alert and an existing one); every query of the
dashboards in k8s/base/grafana is parsed by promtool too, as a generated recording rule. Every
``vad`` metric either names is one the job's operators (udfs/) or the edge (vad/edge/metrics.py)
register. Fails, not skips, without promtool.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vad.dead_letter_reasons import MISMATCH_REASONS
from vad.edge.lag import LagWatch
from vad.edge.metrics import EdgeCollector
from vad.edge.stats import CameraStats

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "k8s" / "base" / "monitoring.yaml"
DASHBOARDS = sorted((REPO / "k8s" / "base" / "grafana").glob("*.json"))
RULE_TESTS = Path(__file__).with_name("monitoring_rules_test.yaml")
# The Flink Prometheus reporter's prefix of a metric of the job's `vad` group (monitoring.yaml's
# header; tests/integration/test_job_metrics.py checks the names against a real run's).
JOB_METRIC = re.compile(r"flink_taskmanager_job_task_operator_vad_(\w+)")
EDGE_METRIC = re.compile(r"\bvad_edge_\w+")
RECORDED = re.compile(r"\bvad:\w+:\w+")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/setup.sh installs it (Debian package prometheus)"
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def rule_groups() -> list[dict]:
    (rule,) = [d for d in yaml.safe_load_all(MONITORING.read_text()) if d and d["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"]


def _write_rules(dirname: Path, groups: list[dict]) -> Path:
    path = dirname / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def _rule(groups: list[dict], name: str) -> dict:
    return next(r for g in groups for r in g["rules"] if r.get("alert", r.get("record")) == name)


def _test_rules(promtool: str, tmp_path: Path, groups: list[dict]) -> subprocess.CompletedProcess[str]:
    _write_rules(tmp_path, groups)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return _run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)


def test_rule_groups_pass_promtool_check(promtool, tmp_path):
    groups = rule_groups()
    res = _run(promtool, "check", "rules", str(_write_rules(tmp_path, groups)), cwd=tmp_path)
    n = sum(len(g["rules"]) for g in groups)
    assert res.returncode == 0 and f"SUCCESS: {n} rules found" in res.stdout, res.stdout + res.stderr
    assert {"VadScoreDrift", "vad:camera_score_p99:calibration_ratio"} <= {
        r.get("alert", r.get("record")) for g in groups for r in g["rules"]
    }


def test_rule_unit_tests_pass(promtool, tmp_path):
    res = _test_rules(promtool, tmp_path, rule_groups())
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def _without_silence_guard(groups):
    r = _rule(groups, "vad:camera_score_p99:calibration_ratio")
    r["expr"] = r["expr"].split("and on")[0]  # a silent camera's last gauge value would count
    return 'camera="gone"'


def _without_calibration_guard(groups):
    r = _rule(groups, "vad:camera_score_p99:calibration_ratio")
    r["expr"] = r["expr"].replace("_calibration_p99_x1000 > 0)", "_calibration_p99_x1000)")  # x / 0 = +Inf
    return 'camera="uncalibrated"'


def _threshold_up(groups):
    r = _rule(groups, "VadScoreDrift")
    r["expr"] = r["expr"].replace("> 1.5", "> 2.5")  # a camera at twice its calibration passes
    return 'camera="moved"'


def _dead_letters_by_subtask(groups):
    r = _rule(groups, "VadDeadLetterRate")
    r["expr"] = r["expr"].replace("sum by (namespace, job_name)", "max by (namespace, job_name)")
    return "VadDeadLetterRate"


def _not_scored_at_once(groups):
    _rule(groups, "VadCameraNotScored")["for"] = "0m"  # one rejected record would page
    return "VadCameraNotScored"


def _not_scored_for_any_reason(groups):
    r = _rule(groups, "VadCameraNotScored")
    r["expr"] = re.sub(r"\{reason=~\"[^\"]+\"\}", "", r["expr"])  # malformed input would alert too
    return "VadCameraNotScored"


@pytest.mark.parametrize(
    "mutate",
    [
        _without_silence_guard,
        _without_calibration_guard,
        _threshold_up,
        _dead_letters_by_subtask,
        _not_scored_for_any_reason,
        _not_scored_at_once,
    ],
)
def test_rule_unit_tests_catch_a_broken_rule(promtool, tmp_path, mutate):
    groups = rule_groups()
    mentions = mutate(groups)
    res = _test_rules(promtool, tmp_path, groups)
    out = res.stdout + res.stderr  # promtool reports failures on stderr
    assert res.returncode != 0 and "FAILED" in out and mentions in out, out


def test_the_not_scored_alert_selects_exactly_the_mismatch_reasons():
    expr = _rule(rule_groups(), "VadCameraNotScored")["expr"]
    (selected,) = re.findall(r'reason=~"([^"]+)"', expr)
    assert set(selected.split("|")) == MISMATCH_REASONS


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def dashboard_queries(path: Path) -> list[str]:
    """Every PromQL query of a dashboard: its panels' targets and the selectors of its variables'
    label_values()."""
    board = json.loads(path.read_text())
    out = [n["expr"] for n in _walk(board["panels"]) if isinstance(n.get("expr"), str)]
    for var in board["templating"]["list"]:
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", q or "")
        if var["type"] == "query":
            assert m, (path.name, var["name"], q)
            out.append(m.group(1))
    return out


def _as_promql(query: str) -> str:
    """Grafana's variables replaced as Grafana would: intervals by a duration, the rest (used in
    regex matchers only) by a match-all regex."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: "5m" if m.group(1).startswith("__") else ".*", query)


def _check_queries(promtool: str, tmp_path: Path, queries: list[str]) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:query:{i}", "expr": _as_promql(q)} for i, q in enumerate(dict.fromkeys(queries))]
    path = _write_rules(tmp_path, [{"name": "dashboards", "rules": rules}])
    return _run(promtool, "check", "rules", str(path), cwd=tmp_path)


def test_dashboard_queries_parse(promtool, tmp_path):
    assert {p.name for p in DASHBOARDS} == {"job.json", "edge.json"}
    queries = [q for p in DASHBOARDS for q in dashboard_queries(p)]
    assert len(queries) > 30
    res = _check_queries(promtool, tmp_path, queries)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
    # The same check refuses a query that does not parse.
    res = _check_queries(promtool, tmp_path, [*queries, "sum by (camera) (rate(vad_edge_gaps_total[5m])"])
    assert res.returncode != 0, res.stdout + res.stderr


def test_dashboards_are_importable(tmp_path):
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"] and board["schemaVersion"] >= 36, path.name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        names = {v["name"] for v in board["templating"]["list"]}
        for p in board["panels"]:
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (path.name, p["title"])
            assert p["targets"], (path.name, p["title"])
            for t in p["targets"]:
                used = set(re.findall(r"\$\{?([a-z]\w*)\}?", t["expr"]))
                assert used <= names, (path.name, p["title"], used - names)


def job_metric_names() -> tuple[set[str], set[str]]:
    """(every metric the job's Python operators register, the distributions among them), as named
    under the `vad` group: a key group's name prefixes its metrics' (``add_group("camera", c)
    .gauge("score_p99_x1000", ...)`` is ``camera_score_p99_x1000``)."""
    names, distributions = set(), set()
    for path in (REPO / "udfs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            kind = node.func.attr
            if kind not in ("counter", "gauge", "meter", "distribution") or not node.args:
                continue
            if not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                continue
            name, recv = node.args[0].value, node.func.value
            if isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute) and recv.func.attr == "add_group":
                if len(recv.args) == 2 and isinstance(recv.args[0], ast.Constant):
                    name = f"{recv.args[0].value}_{name}"
            names.add(name)
            if kind == "distribution":
                distributions.add(name)
    return names, distributions


def edge_metric_names() -> set[str]:
    """Every sample name the edge's collector exports, for a paced camera with the blind check on
    (all families present)."""
    stats = CameraStats(camera_id="c", lag=LagWatch(limit_ms=1000.0), blind=False)

    class Cam:
        camera_id, running = "c", True

    cam = Cam()
    cam.stats = stats
    return {s.name for family in EdgeCollector([cam]).collect() for s in family.samples}


def referenced(texts: list[str]) -> tuple[set[str], set[str], set[str]]:
    job = {m for t in texts for m in JOB_METRIC.findall(t)}
    edge = {m for t in texts for m in EDGE_METRIC.findall(t)}
    recorded = {m for t in texts for m in RECORDED.findall(t)}
    return job, edge, recorded


def unknown_metrics(texts: list[str]) -> list[str]:
    """What ``texts`` (rules, dashboards) name that nothing exports: job metrics no operator
    registers, distributions (the Prometheus reporter exports a Python distribution as 0), edge
    samples the collector does not produce, recording rules monitoring.yaml does not define."""
    job, edge, recorded = referenced(texts)
    names, distributions = job_metric_names()
    records = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    return sorted(
        [f"job metric {n}" for n in job - names]
        + [f"distribution {n} (exported as 0)" for n in job & distributions]
        + [f"edge metric {n}" for n in edge - edge_metric_names()]
        + [f"recording rule {n}" for n in recorded - records]
    )


def test_names_are_found_where_they_are_registered():
    names, distributions = job_metric_names()
    want = {"records_in", "vad_dead_letters", "reason_dead_letters", "redis_retries", "inference_us_sum"}
    assert want | {"camera_score_p99_x1000", "camera_calibration_p99_x1000", "camera_windows_scored"} <= names
    assert {"frame_score_x1000", "inference_us"} <= distributions
    assert {"vad_edge_frames_read_total", "vad_edge_send_lag_seconds", "vad_edge_records_dropped_total"} <= (
        edge_metric_names()
    )


def test_rules_and_dashboards_name_only_exported_metrics():
    texts = [MONITORING.read_text(), *(p.read_text() for p in DASHBOARDS)]
    job, edge, recorded = referenced(texts)
    assert len(job) >= 10 and len(edge) >= 10 and recorded  # the patterns do find them
    assert unknown_metrics(texts) == []


def test_a_misspelt_or_unusable_metric_is_reported():
    texts = [
        "rate(flink_taskmanager_job_task_operator_vad_records_inn[5m])",
        "flink_taskmanager_job_task_operator_vad_frame_score_x1000",
        "rate(flink_taskmanager_job_task_operator_vad_vad_dead_leters[5m])",
        "vad_edge_frames_dropped_total",
        "vad:camera_score:ratio",
    ]
    assert unknown_metrics(texts) == [
        "distribution frame_score_x1000 (exported as 0)",
        "edge metric vad_edge_frames_dropped_total",
        "job metric records_inn",
        "job metric vad_dead_leters",
        "recording rule vad:camera_score:ratio",
    ]
