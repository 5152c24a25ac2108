import subprocess
import sys

import redis

from vad.config import load_config
from vad.kafka_clients import ensure_topics
from vadctl import stack


def test_up_twice_is_harmless_and_status_reports_both(stack_env, run_vad):
    cfg = load_config(env=stack_env)
    again = run_vad("stack", "up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    st = stack.status(cfg)
    assert "answering=True" in st["kafka"] and "answering=True" in st["redis"]
    assert redis.Redis(port=cfg.stack.redis_port).ping()
    assert ensure_topics(cfg.kafka) == []  # `up` created every topic already


def test_down_leaves_foreign_processes_alone(tmp_path):
    # A process holding a pid file in a stack folder, but not started there, is not ours to kill.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path.parent)
    try:
        cfg = load_config(env={"VAD_STACK__STATE_DIR": str(tmp_path), "VAD_STACK__KAFKA_PORT": "29192"})
        (tmp_path / "kafka.pid").write_text(str(other.pid))
        assert stack.down(cfg)["kafka"] == "not running"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
