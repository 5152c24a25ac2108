"""The secured variant of the embedded stack (``stack.secure``): a CA and a server certificate of its
own, the broker's SASL_SSL listener with SCRAM users and the StandardAuthorizer, Redis with TLS, a
password and an ACL user, and the helpers that give a principal its Kafka ACLs.

The broker's super user is ``kafka.sasl_username``: the tools log in as it. Every other principal
(an edge, say) is added with ``add_scram_user`` and may do only what ``grant`` allows it; a job that
runs as a principal of its own is given ``job_acls``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
from pathlib import Path

from vad.config import Config
from vad.kafka_clients import jaas_quote

CA_DAYS, SERVER_DAYS = 3650, 825
SCRAM_ITERATIONS = 8192


class SecureStackError(RuntimeError):
    pass


def tls_dir(state: Path) -> Path:
    return state / "tls"


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SecureStackError(f"openssl {args[0]} failed: {res.stderr.strip()[-500:]}")


def ensure_tls(state: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, made once in <state>/tls.
    Returns the folder: ca.pem (what clients trust), server.pem, server.key, server-keystore.pem."""
    d = tls_dir(state)
    if (d / "server-keystore.pem").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"),
        *("-days", str(CA_DAYS), "-subj", "/CN=vad stack CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"),
        *("-out", "server.pem", "-days", str(SERVER_DAYS), "-extfile", "server.ext"),
        cwd=d,
    )
    # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the certificate chain, in one file.
    keystore = d / "server-keystore.pem"
    keystore.write_text((d / "server.key").read_text() + (d / "server.pem").read_text() + (d / "ca.pem").read_text())
    for f in d.iterdir():
        os.chmod(f, 0o600)
    return d


def _require_credentials(cfg: Config) -> tuple[str, str, str]:
    k = cfg.kafka
    if k.security_protocol != "SASL_SSL" or k.sasl_mechanism not in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        raise SecureStackError(
            "stack.secure needs kafka.security_protocol SASL_SSL and kafka.sasl_mechanism SCRAM-SHA-512 or "
            "SCRAM-SHA-256 (the stack's super user is kafka.sasl_username)"
        )
    if not cfg.redis.tls or not cfg.redis.password:
        raise SecureStackError("stack.secure needs redis.tls true and redis.password set")
    return k.sasl_mechanism, k.sasl_username, k.sasl_password.get_secret_value()


def kafka_listener_properties(cfg: Config, tls: Path) -> str:
    """server.properties lines for the secured broker: clients on SASL_SSL (SCRAM), the controller on
    SASL_PLAINTEXT (PLAIN: SCRAM credentials live in the metadata the controller serves, so the
    controller cannot log in with them) with a password made for this start, ACLs on."""
    mech, user, pw = _require_credentials(cfg)
    ctl_pw = secrets.token_urlsafe(24)
    scram_module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain_module = "org.apache.kafka.common.security.plain.PlainLoginModule"
    lines = [
        f"listeners=SASL_SSL://127.0.0.1:{cfg.stack.kafka_port},CONTROLLER://127.0.0.1:{cfg.stack.controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{cfg.stack.kafka_port}",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        f"listener.name.sasl_ssl.sasl.enabled.mechanisms={mech}",
        f"sasl.mechanism.inter.broker.protocol={mech}",
        f"listener.name.sasl_ssl.{mech.lower()}.sasl.jaas.config={scram_module} required "
        f"username={jaas_quote(user)} password={jaas_quote(pw)};",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain_module} required "
        f'username="vad-controller" password="{ctl_pw}" user_vad-controller="{ctl_pw}";',
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls / 'server-keystore.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls / 'ca.pem'}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{user};User:vad-controller",
        "allow.everyone.if.no.acl.found=false",
    ]
    return "\n".join(_properties_escape(line) for line in lines) + "\n"


def _properties_escape(line: str) -> str:
    """A server.properties line as Java's Properties reads it back: backslashes are escapes there too
    (the JAAS quoting's come through doubled) and the file is Latin-1 (other characters as \\uXXXX)."""
    out = line.replace("\\", "\\\\")
    return "".join(c if ord(c) < 128 else "".join(f"\\u{ord(u):04x}" for u in _utf16(c)) for c in out)


def _utf16(c: str) -> list[str]:
    b = c.encode("utf-16-be")
    return [chr(int.from_bytes(b[i : i + 2], "big")) for i in range(0, len(b), 2)]


def scram_format_argument(mechanism: str, user: str, password: str) -> str:
    """The StorageTool's --add-scram value for a user, given as salt and salted password (base64), so
    no character of the password needs quoting on the tool's command line."""
    salt = secrets.token_bytes(24)
    algo = "sha512" if mechanism == "SCRAM-SHA-512" else "sha256"
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), salt, SCRAM_ITERATIONS)
    b64 = base64.b64encode
    return (
        f'{mechanism}=[name={user},iterations={SCRAM_ITERATIONS},salt="{b64(salt).decode()}",'
        f'saltedpassword="{b64(salted).decode()}"]'
    )


def kafka_format_arguments(cfg: Config) -> list[str]:
    mech, user, pw = _require_credentials(cfg)
    return ["--add-scram", scram_format_argument(mech, user, pw)]


def redis_arguments(cfg: Config, tls: Path) -> list[str]:
    """redis-server options: TLS only (no plaintext port), requirepass, and redis.username as an ACL
    user with the same password, limited to the keys under redis.key_prefix."""
    _require_credentials(cfg)
    pw = cfg.redis.password.get_secret_value()
    argv = ["--port", "0", "--tls-port", str(cfg.stack.redis_port)]
    argv += ["--tls-cert-file", str(tls / "server.pem"), "--tls-key-file", str(tls / "server.key")]
    argv += ["--tls-ca-cert-file", str(tls / "ca.pem"), "--tls-auth-clients", "no"]
    argv += ["--requirepass", pw]
    if cfg.redis.username:
        # One argument per word: redis-server quotes each, so the password needs no escaping here.
        argv += ["--user", cfg.redis.username, "on", f">{pw}", f"~{cfg.redis.key_prefix}:*", "+@all"]
    return argv


def _admin(cfg: Config):
    from kafka import KafkaAdminClient

    from vad.kafka_clients import security_settings

    return KafkaAdminClient(
        bootstrap_servers=cfg.kafka.bootstrap_servers, request_timeout_ms=20000, **security_settings(cfg.kafka)
    )


def add_scram_user(cfg: Config, user: str, password: str) -> None:
    """Create (or reset) a SCRAM user on the secured broker, as the super user."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    mech = ScramMechanism.SCRAM_SHA_512 if cfg.kafka.sasl_mechanism == "SCRAM-SHA-512" else ScramMechanism.SCRAM_SHA_256
    admin = _admin(cfg)
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, mech, password, iterations=SCRAM_ITERATIONS)]
        )
    finally:
        admin.close()
    if any(errors.values()):
        raise SecureStackError(f"could not set the SCRAM credentials of {user}: {errors}")


def _allow(user: str, op, kind, name: str, pattern=None):
    """An ACL binding allowing User:<user> `op` on a resource, from any host; a literal name unless
    `pattern` says otherwise."""
    from kafka.admin import ACL, ACLPermissionType, ACLResourcePatternType, ResourcePattern

    resource = ResourcePattern(kind, name, pattern or ACLResourcePatternType.LITERAL)
    return ACL(f"User:{user}", "*", op, ACLPermissionType.ALLOW, resource)


def grant(cfg: Config, user: str, write_topics: list[str] = (), read_topics: list[str] = (), group: str | None = None):
    """Allow User:<user> to write (and describe) `write_topics`, read `read_topics` with consumer group
    `group`; nothing else (the broker denies what no ACL allows)."""
    from kafka.admin import ACLOperation, ResourceType

    topic = ResourceType.TOPIC
    acls = [_allow(user, op, topic, t) for t in write_topics for op in (ACLOperation.WRITE, ACLOperation.DESCRIBE)]
    acls += [_allow(user, op, topic, t) for t in read_topics for op in (ACLOperation.READ, ACLOperation.DESCRIBE)]
    if group:
        acls.append(_allow(user, ACLOperation.READ, ResourceType.GROUP, group))
    add_acls(cfg, acls)


def add_acls(cfg: Config, acls: list) -> None:
    """Create kafka-python ACL bindings on the secured broker, as the super user `cfg` logs in as."""
    admin = _admin(cfg)
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    if result.get("failed"):
        raise SecureStackError(f"could not create ACLs: {result['failed']}")


def job_acls(cfg: Config, principal: str) -> list:
    """What User:<principal> needs to run the job of `cfg` (its topics, group and job.delivery), and
    no more: READ on the features topic and on kafka.group_id (the source commits its offsets to the
    group at each checkpoint), WRITE on the events, dead-letter and scores topics, and with
    exactly_once WRITE on the transactional ids the sinks make, ``<kafka.group_id>-<sink>-...``. READ
    and WRITE imply DESCRIBE. docs/security.md lists these (``acl_table``); tests/integration/
    test_security.py runs the job with exactly these in both delivery modes."""
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType

    k, read, write = cfg.kafka, ACLOperation.READ, ACLOperation.WRITE
    acls = [_allow(principal, read, ResourceType.TOPIC, k.topics.features)]
    acls.append(_allow(principal, read, ResourceType.GROUP, k.group_id))
    acls += [
        _allow(principal, write, ResourceType.TOPIC, t)
        for t in (k.topics.events, k.topics.dead_letter, k.topics.scores)
    ]
    if cfg.job.delivery == "exactly_once":
        prefixed = ACLResourcePatternType.PREFIXED
        acls.append(_allow(principal, write, ResourceType.TRANSACTIONAL_ID, f"{k.group_id}-", prefixed))
    return acls


def acl_table(acls: list) -> list[str]:
    """Markdown table rows (resource type, pattern type, name, operation) for ACL bindings."""
    return [
        f"| {a.resource_pattern.resource_type.name} | {a.resource_pattern.pattern_type.name} "
        f"| `{a.resource_pattern.resource_name}` | {a.operation.name} |"
        for a in acls
    ]
