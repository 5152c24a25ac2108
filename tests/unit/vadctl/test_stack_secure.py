"""The secured stack's generated settings (the servers that read them: tests/integration/test_security.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from vad.config import load_config
from vadctl.stack_secure import (
    SCRAM_ITERATIONS,
    SecureStackError,
    acl_table,
    job_acls,
    kafka_listener_properties,
    redis_arguments,
    scram_format_argument,
)

SECURE = {
    "VAD_STACK__SECURE": "true",
    "VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "VAD_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "VAD_KAFKA__SASL_USERNAME": "job",
    "VAD_KAFKA__SASL_PASSWORD": 'p"w\\;é',
    "VAD_REDIS__TLS": "true",
    "VAD_REDIS__USERNAME": "writer",
    "VAD_REDIS__PASSWORD": 'r"p w',
}


def test_the_super_users_jaas_line_survives_the_properties_file():
    text = kafka_listener_properties(load_config(env=SECURE), Path("/tls"))
    (line,) = [x for x in text.splitlines() if x.startswith("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=")]
    # Properties unescape: \\ -> \, \uXXXX -> the character; the JAAS value is then "p\"w\\;é"
    unescaped = re.sub(r"\\u([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), line).replace("\\\\", "\\")
    assert unescaped.endswith('username="job" password="p\\"w\\\\;é";')
    assert text.isascii()
    assert "super.users=User:job;" in text and "allow.everyone.if.no.acl.found=false" in text


def test_scram_credentials_are_given_salted():
    arg = scram_format_argument("SCRAM-SHA-512", "job", 'p"w\\;é')
    m = re.fullmatch(r'SCRAM-SHA-512=\[name=job,iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]', arg)
    assert m and int(m.group(1)) == SCRAM_ITERATIONS
    salt = base64.b64decode(m.group(2))
    want = hashlib.pbkdf2_hmac("sha512", 'p"w\\;é'.encode(), salt, SCRAM_ITERATIONS)
    assert base64.b64decode(m.group(3)) == want


def test_redis_is_tls_only_with_the_acl_user_limited_to_its_prefix():
    argv = redis_arguments(load_config(env=SECURE), Path("/tls"))
    assert argv[:4] == ["--port", "0", "--tls-port", "6379"]
    i = argv.index("--user")
    assert argv[i : i + 6] == ["--user", "writer", "on", '>r"p w', "~vad:*", "+@all"]
    assert argv[argv.index("--requirepass") + 1] == 'r"p w'


def test_secure_stack_needs_sasl_ssl_scram_and_a_redis_password():
    with pytest.raises(SecureStackError, match="SASL_SSL"):
        kafka_listener_properties(load_config(env={"VAD_STACK__SECURE": "true"}), Path("/tls"))


def test_docs_security_lists_the_job_acls_the_code_grants():
    """docs/security.md's table of the job's ACLs is job_acls for a config whose names are the names
    of their settings (the integration test runs the job with job_acls)."""
    fields = {
        f"VAD_KAFKA__TOPICS__{t.upper()}": f"kafka.topics.{t}" for t in ("features", "events", "dead_letter", "scores")
    }
    env = {**fields, "VAD_KAFKA__GROUP_ID": "kafka.group_id"}
    at_least_once = acl_table(job_acls(load_config(env=env), "job"))
    exactly_once = acl_table(job_acls(load_config(env={**env, "VAD_JOB__DELIVERY": "exactly_once"}), "job"))
    docs = (Path(__file__).resolve().parents[3] / "docs" / "security.md").read_text()
    rows = [line for line in docs.splitlines() if re.match(r"\| (TOPIC|GROUP|TRANSACTIONAL_ID|CLUSTER) \|", line)]
    assert rows == exactly_once
    assert exactly_once[: len(at_least_once)] == at_least_once and len(exactly_once) == len(at_least_once) + 1
    assert "TRANSACTIONAL_ID" in exactly_once[-1]
