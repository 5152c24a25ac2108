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
