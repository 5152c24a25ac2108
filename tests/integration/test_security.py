"""The pipeline over a secured stack (`stack.secure`, started by the project's own stack code): Kafka
on SASL_SSL with SCRAM-SHA-512 and ACLs, Redis on TLS with a password and an ACL user, both under a CA
made for this module. Passwords hold ``"``, ``\\`` and ``;``, so the job's Java clients only log in
if their JAAS values are quoted and escaped. Refused clients end with one line naming the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from kafka.admin import ResourceType
from kafka.errors import TopicAuthorizationFailedError

from vad.config import load_config
from vad.consumer import read_kafka_dead_letters, read_kafka_events, read_kafka_scores, read_redis_events
from vad.kafka_clients import ensure_topics, make_producer
from vadctl import stack, stack_secure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OFFSET = int(os.environ.get("VAD_TEST_PORT_OFFSET", "0"))
KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT = 29050 + _OFFSET, 29051 + _OFFSET, 26350 + _OFFSET
JOB_PASSWORD = 'j"o\\b;pw= é'
EDGE_PASSWORD = 'e"dge\\;pw'
SCORER_PASSWORD = 's"cor\\er;pw'
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


def _as(env: dict[str, str], user: str, password: str) -> dict[str, str]:
    return {**env, "VAD_KAFKA__SASL_USERNAME": user, "VAD_KAFKA__SASL_PASSWORD": password}


def _edge(env: dict[str, str]) -> dict[str, str]:
    return _as(env, "vad-edge", EDGE_PASSWORD)


@contextmanager
def _edge_producer(env: dict[str, str]):
    cfg = load_config(env=_edge(env))
    producer = make_producer(cfg.kafka)
    try:
        yield cfg.kafka.topics, producer
    finally:
        producer.close(timeout=10)


@pytest.fixture(scope="module")
def produced(secure_env, ped2):
    """The anomalous clip in the features topic, sent by `vad produce` as vad-edge, and one record
    that is not a frame (a dead letter for the jobs that read it)."""
    rc, out, err = _finish(
        _vad(_edge(secure_env), "produce", "--camera", CAMERA, "--source", f"{ped2}/test/{CLIP}.mp4"), 300
    )
    assert rc == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["sent"] > 100
    with _edge_producer(secure_env) as (topics, producer):
        producer.send(topics.features, key=b"bad-cam", value=b"not a record").get(timeout=30)
    return secure_env


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


def test_pipeline_runs_over_sasl_ssl_and_redis_tls(produced):
    """The edge logs in as vad-edge (may write only the features topic), the job as the super user
    with a password only an escaped JAAS value carries; events reach Kafka and, over TLS as the
    Redis ACL user, Redis."""
    secure_env = produced
    rc, _, err = _finish(_vad({**secure_env, "VAD_JOB__BOUNDED": "true"}, "run"), 600)
    assert rc == 0, err[-5000:]
    cfg = load_config(env=secure_env)
    closed = {e.event_id for e in read_kafka_events(cfg, timeout_s=20) if e.camera_id == CAMERA and e.phase == "close"}
    assert closed, "no event from the anomalous clip in the events topic"
    in_redis = {e.event_id for e in read_redis_events(cfg) if e.camera_id == CAMERA and e.phase == "close"}
    assert in_redis == closed


def test_edge_principal_may_write_features_but_not_events(secure_env):
    with _edge_producer(secure_env) as (topics, producer):
        producer.send(topics.features, key=b"acl-cam", value=b"not a record").get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topics.events, key=b"acl-cam", value=b"{}").get(timeout=30)


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


def _job_as_own_principal(secure_env, name: str, delivery: str, drop=lambda acl: False, **extra: str):
    """Run the bounded job as User:vad-<name>, not a super user, granted stack_secure.job_acls for its
    config (topics and group named after `name`) less those `drop` picks. Returns the config as the
    super user (who reads the outputs back) and the run's exit code and stderr."""
    names = {f"VAD_KAFKA__TOPICS__{t.upper()}": f"sec.{name}.{t}" for t in ("events", "dead_letter", "scores")}
    env = {**secure_env, **names, "VAD_KAFKA__GROUP_ID": f"sec-{name}", "VAD_JOB__DELIVERY": delivery, **extra}
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    stack_secure.add_scram_user(cfg, f"vad-{name}", SCORER_PASSWORD)
    stack_secure.add_acls(cfg, [a for a in stack_secure.job_acls(cfg, f"vad-{name}") if not drop(a)])
    job = {**_as(env, f"vad-{name}", SCORER_PASSWORD), "VAD_JOB__BOUNDED": "true", "VAD_JOB__EMIT_SCORES": "true"}
    rc, _, err = _finish(_vad(job, "run"), 600)
    return cfg, rc, err


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_job_runs_as_a_principal_with_only_the_job_acls(produced, delivery):
    """Every output the job writes (events, scores, a dead letter) arrives, read committed (so an
    exactly-once run's only once its transactions commit)."""
    cfg, rc, err = _job_as_own_principal(produced, f"job-{delivery.replace('_', '-')}", delivery)
    assert rc == 0, err[-5000:]
    assert any(e.phase == "close" for e in read_kafka_events(cfg, timeout_s=20) if e.camera_id == CAMERA)
    assert {s.camera_id for s in read_kafka_scores(cfg, timeout_s=10)} == {CAMERA}
    assert [d.reason for d in read_kafka_dead_letters(cfg, timeout_s=10)], "no dead letter for the bad record"


# The job's ACLs less one (each case names a principal of its own): the sink is refused, the job
# fails, and no event arrives. READ on the group is not among them: a bounded run may end before a
# checkpoint commits offsets, and a refused commit does not fail the job.
LESS_ONE = {
    "no-events": ("at_least_once", ResourceType.TOPIC, "Not authorized to access topics: [sec.job-no-events.events]"),
    "no-txn": ("exactly_once", ResourceType.TRANSACTIONAL_ID, "TransactionalIdAuthorizationException"),
}


@pytest.mark.parametrize("case", list(LESS_ONE))
def test_job_with_one_job_acl_less_fails_and_delivers_nothing(produced, case):
    delivery, kind, refusal = LESS_ONE[case]
    name = f"job-{case}"

    def dropped(acl) -> bool:
        pattern = acl.resource_pattern
        return pattern.resource_type == kind and pattern.resource_name in (f"sec.{name}.events", f"sec-{name}-")

    cfg, rc, err = _job_as_own_principal(produced, name, delivery, drop=dropped, VAD_JOB__RESTART_ATTEMPTS="1")
    assert rc != 0, f"{case}: the job ran"
    # After a restart the final error can be a follow-on one (a mini-cluster on a loaded machine can
    # refuse the restart's slot request while the failed attempt winds down): `vad run` then names
    # the first failure, the refusal, on a line of its own.
    assert refusal in err, err[-5000:]
    assert read_kafka_events(cfg, timeout_s=5) == []
