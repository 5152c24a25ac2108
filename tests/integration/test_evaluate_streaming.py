"""`vad evaluate --streaming` runs the evaluation through Kafka and the Flink job and agrees with the
in-process evaluation (same features, windows, model and detector). The edge sends float32 values
here, so the scores must agree exactly; float16 on the wire (the default) is tested against its own
rounding in test_pipeline."""

from __future__ import annotations

import json
import shutil


def test_streaming_evaluation_agrees_with_in_process(run_vad, ped2, tmp_path):
    # Two clips keep the test short; the layout is the one users point the CLI at.
    data = tmp_path / "site"
    (data / "test").mkdir(parents=True)
    labels = json.loads((ped2 / "labels.json").read_text())
    keep = ("Test002", "Test004")
    for clip in keep:
        shutil.copy(ped2 / "test" / f"{clip}.mp4", data / "test")
    labels["clips"] = {k: v for k, v in labels["clips"].items() if k in keep}
    (data / "labels.json").write_text(json.dumps(labels))
    offline = run_vad("evaluate", "--data", str(data), timeout=600)
    assert offline.returncode == 0, offline.stderr[-3000:]
    exact = {"VAD_EDGE__WIRE_PRECISION": "float32"}
    streamed = run_vad("evaluate", "--data", str(data), "--streaming", timeout=900, extra_env=exact)
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    a = json.loads(offline.stdout.strip().splitlines()[-1])
    b = json.loads(streamed.stdout.strip().splitlines()[-1])
    assert b["frames"] == a["frames"] == 360 and b["clips"] == 2 and b["wire_precision"] == "float32"
    assert b["max_abs_diff_vs_in_process"] < 1e-4
    assert abs(b["frame_auc"] - a["frame_auc"]) < 1e-6 and b["event_recall"] == a["event_recall"]
