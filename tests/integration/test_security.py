"""The pipeline over a secured stack (`stack.secure`, started by the project's own stack code): Kafka
on SASL_SSL with SCRAM-SHA-512 and ACLs, Redis on TLS with a password and an ACL user, both under a CA
made for this module. Passwords hold ``"``, ``\\`` and ``;``, so the job's Java clients only log in
if their JAAS values are quoted and escaped. Refused clients end with one line naming the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from kafka.errors import TopicAuthorizationFailedError

from vad.config import load_config
from vad.consumer import read_kafka_events, read_redis_events
from vad.kafka_clients import make_producer
from vadctl import stack, stack_secure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OFFSET = int(os.environ.get("VAD_TEST_PORT_OFFSET", "0"))
KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT = 29050 + _OFFSET, 29051 + _OFFSET, 26350 + _OFFSET
JOB_PASSWORD = 'j"o\\b;pw= é'
EDGE_PASSWORD = 'e"dge\\;pw'
REDIS_PASSWORD = 'r"ed\\is;pw'
CLIP, CAMERA = "Test004", "sec-test004"  # anomalous from frame 31 (labels.json)


@pytest.fixture(scope="module")
def secure_env(tmp_path_factory):
    """The job's (super user's) environment over a secured stack of this module's own."""
    state = tmp_path_factory.mktemp("secure-stack")
    ca = str(stack_secure.tls_dir(state) / "ca.pem")
    env = {
        "VAD_STACK__STATE_DIR": str(state),
        "VAD_STACK__SECURE": "true",
        "VAD_STACK__KAFKA_PORT": str(KAFKA_PORT),
        "VAD_STACK__CONTROLLER_PORT": str(CONTROLLER_PORT),
        "VAD_STACK__REDIS_PORT": str(REDIS_PORT),
        "VAD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
        "VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "VAD_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "VAD_KAFKA__SASL_USERNAME": "vad-job",
        "VAD_KAFKA__SASL_PASSWORD": JOB_PASSWORD,
        "VAD_KAFKA__SSL_CAFILE": ca,
        "VAD_KAFKA__TOPICS__PARTITIONS": "2",
        "VAD_KAFKA__TOPICS__FEATURES": "sec.features",
        "VAD_KAFKA__TOPICS__EVENTS": "sec.events",
        "VAD_KAFKA__TOPICS__DEAD_LETTER": "sec.dlq",
        "VAD_KAFKA__TOPICS__SCORES": "sec.scores",
        "VAD_KAFKA__GROUP_ID": "sec-job",
        "VAD_REDIS__PORT": str(REDIS_PORT),
        "VAD_REDIS__TLS": "true",
        "VAD_REDIS__TLS_CAFILE": ca,
        "VAD_REDIS__USERNAME": "vad-writer",
        "VAD_REDIS__PASSWORD": REDIS_PASSWORD,
        "VAD_REDIS__KEY_PREFIX": "sec",
        "VAD_JOB__RESTART_ATTEMPTS": "2",
    }
    cfg = load_config(env=env)
    try:
        stack.up(cfg)
        stack_secure.add_scram_user(cfg, "vad-edge", EDGE_PASSWORD)
        stack_secure.grant(cfg, "vad-edge", write_topics=[cfg.kafka.topics.features])
        yield env
    finally:
        stack.down(cfg)


def _edge(env: dict[str, str]) -> dict[str, str]:
    return {**env, "VAD_KAFKA__SASL_USERNAME": "vad-edge", "VAD_KAFKA__SASL_PASSWORD": EDGE_PASSWORD}


def _vad(env: dict[str, str], *args: str) -> subprocess.Popen:
    # Only `env`'s settings: a VAD_* variable of the calling shell must not slip into a case.
    base = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "vadctl.cli", *args],
        env={**base, **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(p: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, out, err


def test_pipeline_runs_over_sasl_ssl_and_redis_tls(secure_env, ped2):
    """The edge logs in as vad-edge (may write only the features topic), the job as the super user
    with a password only an escaped JAAS value carries; events reach Kafka and, over TLS as the
    Redis ACL user, Redis."""
    rc, out, err = _finish(
        _vad(_edge(secure_env), "produce", "--camera", CAMERA, "--source", f"{ped2}/test/{CLIP}.mp4"), 300
    )
    assert rc == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["sent"] > 100
    rc, _, err = _finish(_vad({**secure_env, "VAD_JOB__BOUNDED": "true"}, "run"), 600)
    assert rc == 0, err[-5000:]
    cfg = load_config(env=secure_env)
    closed = {e.event_id for e in read_kafka_events(cfg, timeout_s=20) if e.camera_id == CAMERA and e.phase == "close"}
    assert closed, "no event from the anomalous clip in the events topic"
    in_redis = {e.event_id for e in read_redis_events(cfg) if e.camera_id == CAMERA and e.phase == "close"}
    assert in_redis == closed


def test_edge_principal_may_write_features_but_not_events(secure_env):
    cfg = load_config(env=_edge(secure_env))
    producer = make_producer(cfg.kafka)
    try:
        producer.send(cfg.kafka.topics.features, key=b"acl-cam", value=b"not a record").get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(cfg.kafka.topics.events, key=b"acl-cam", value=b"{}").get(timeout=30)
    finally:
        producer.close(timeout=10)


def test_plaintext_and_wrong_passwords_are_refused_with_one_clear_line(secure_env, ped2):
    """Started side by side (each waits out a client's bootstrap): a plaintext edge, a job with a wrong
    Kafka password, a job with a wrong Redis password."""
    plaintext = {k: v for k, v in secure_env.items() if "__SASL_" not in k and "__SSL_" not in k}
    plaintext["VAD_KAFKA__SECURITY_PROTOCOL"] = "PLAINTEXT"
    cases = {
        "plaintext": (
            _vad(plaintext, "produce", "--camera", "c1", "--source", f"{ped2}/test/Test001.mp4", "--limit", "3"),
            "speaks TLS, and kafka.security_protocol is PLAINTEXT",
        ),
        "kafka password": (
            _vad({**secure_env, "VAD_KAFKA__SASL_PASSWORD": JOB_PASSWORD + "x"}, "run"),
            "login of user 'vad-job': wrong kafka.sasl_username or kafka.sasl_password",
        ),
        "redis password": (
            _vad({**secure_env, "VAD_REDIS__PASSWORD": "wrong"}, "run"),
            "refused the login of user 'vad-writer': wrong redis.username or redis.password",
        ),
    }
    for name, (proc, expected) in cases.items():
        rc, _, err = _finish(proc, 120)
        assert rc != 0, f"{name}: accepted"
        assert "Traceback" not in err, f"{name}: {err[-3000:]}"
        last = err.strip().splitlines()[-1]
        assert expected in last, f"{name}: {err[-3000:]}"
