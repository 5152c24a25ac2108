"""`vad run` with a model its workers could not score with stops at once, saying why in one line,
instead of starting a job that fails in its workers and restarts for as long as it is deployed
(`job.restart_attempts: 0`, as here)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from vad.config import REPO_ROOT

DEFAULT = REPO_ROOT / "models" / "default"
WITHIN_S = 60


def _bad_model(kind: str, folder):
    if kind == "missing":
        return folder / "model.onnx"
    if kind == "corrupt":
        (folder / "model.onnx").write_bytes(bytes(range(256)) * 64)
        shutil.copy(DEFAULT / "card.json", folder / "card.json")
    else:  # a card of another feature layout
        shutil.copy(DEFAULT / "model.onnx", folder / "model.onnx")
        card = json.loads((DEFAULT / "card.json").read_text())
        (folder / "card.json").write_text(json.dumps({**card, "feature_schema_version": 99}))
    return folder / "model.onnx"


@pytest.mark.parametrize(
    "kind, says",
    [("missing", "no such file"), ("corrupt", "not a loadable ONNX model"), ("card", "feature_schema_version is 99")],
)
def test_vad_run_refuses_a_model_it_cannot_score(job_env, jobs, tmp_path, kind, says):
    model = _bad_model(kind, tmp_path)
    env = job_env("model-check", VAD_JOB__MODEL_PATH=str(model), VAD_JOB__RESTART_ATTEMPTS="0")
    job = jobs.start(env)
    try:
        rc = job.wait(timeout=WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`vad run` with a {kind} model still running after {WITHIN_S} s\n{jobs.logs(job)}")
    finally:
        jobs.kill(job)
    err = (jobs.folders[job] / "stderr").read_text().strip().splitlines()
    assert rc == 2, (rc, err)
    # The model's path, or its card's beside it.
    assert len(err) == 1 and err[0].startswith(f"job.model_path: {tmp_path}/") and says in err[0], err
