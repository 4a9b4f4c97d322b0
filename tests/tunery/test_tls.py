"""TLS and mutual TLS on tunery's gRPC servers and clients (``tunery.tls``), with a CA, a server
certificate and a client certificate generated here with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controller.clients import GrpcSuggestionClient, ServiceUnavailableError
from metrics_collector.dbclient import DBManagerClient
from metrics_collector.dbmanager import create_dbmanager_server
from suggestion.server import create_suggestion_server
from tunery.api import api_pb2
from tunery.retry import RetryPolicy
from tunery.store.base import Store
from tunery.store.errors import StoreError
from tunery.tls import ClientTls, ServerTls, TlsError, open_channel
from tunery.trials import Observation

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common: str,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName] | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("tunery test CA")
    server_key, server_cert = _leaf(
        ca_key,
        ca_cert,
        "tunery server",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key, client_cert = _leaf(
        ca_key, ca_cert, "tunery controller", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    _, other_cert = _ca("some other CA")
    return Pki(
        ca=_write_cert(root / "ca.pem", ca_cert),
        server_cert=_write_cert(root / "server.pem", server_cert),
        server_key=_write_key(root / "server-key.pem", server_key),
        client_cert=_write_cert(root / "client.pem", client_cert),
        client_key=_write_key(root / "client-key.pem", client_key),
        other_ca=_write_cert(root / "other-ca.pem", other_cert),
    )


def _suggestion_server(tls: ServerTls) -> Iterator[int]:
    server, port = create_suggestion_server("127.0.0.1:0", tls=tls)
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()


@pytest.fixture
def tls_port(pki: Pki) -> Iterator[int]:
    yield from _suggestion_server(ServerTls(pki.server_cert, pki.server_key))


@pytest.fixture
def mtls_port(pki: Pki) -> Iterator[int]:
    yield from _suggestion_server(ServerTls(pki.server_cert, pki.server_key, pki.ca))


def _health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def _refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        _health(channel)
    return info.value.code()  # type: ignore[attr-defined,no-any-return]


SERVING = health_pb2.HealthCheckResponse.SERVING


def test_tls_server_answers_a_client_trusting_its_ca(pki: Pki, tls_port: int) -> None:
    with open_channel(f"localhost:{tls_port}", ClientTls(ca=pki.ca)) as channel:
        assert _health(channel) == SERVING


def test_tls_server_refuses_plaintext_and_untrusting_clients(pki: Pki, tls_port: int) -> None:
    with open_channel(f"localhost:{tls_port}", None) as channel:
        assert _refused(channel) is grpc.StatusCode.UNAVAILABLE
    with open_channel(f"localhost:{tls_port}", ClientTls(ca=pki.other_ca)) as channel:
        assert _refused(channel) is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(pki: Pki, mtls_port: int) -> None:
    with open_channel(f"localhost:{mtls_port}", ClientTls(ca=pki.ca)) as channel:
        assert _refused(channel) is grpc.StatusCode.UNAVAILABLE
    with_cert = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    with open_channel(f"localhost:{mtls_port}", with_cert) as channel:
        assert _health(channel) == SERVING


def _first_contact_refusal(
    port: int, monkeypatch: pytest.MonkeyPatch, ca: Path | None = None
) -> str:
    """The message of the controller's client refused at its first contact with ``port``,
    trusting ``ca`` (None: plaintext), with no client certificate."""
    for name in ("TUNERY_TLS_CA", "TUNERY_TLS_CERT", "TUNERY_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    if ca is not None:
        monkeypatch.setenv("TUNERY_TLS_CA", str(ca))
    client = GrpcSuggestionClient(f"127.0.0.1:{port}", policy=RetryPolicy(limit=1.0))
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.get_suggestions(api_pb2.GetSuggestionsRequest())
    finally:
        client.close()
    return str(caught.value)


def test_a_plaintext_client_closed_by_a_tls_server_is_pointed_at_tls(
    tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _first_contact_refusal(tls_port, monkeypatch)  # closed without a word
    assert "did not answer within 1 s" in message, message
    assert "if it requires TLS, set TUNERY_TLS_CA" in message, message


def test_a_missing_client_certificate_is_pointed_at_mutual_tls(
    pki: Pki, mtls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _first_contact_refusal(mtls_port, monkeypatch, pki.ca)
    assert "if it requires mutual TLS, set TUNERY_TLS_CERT and TUNERY_TLS_KEY" in message, message


def test_a_client_not_trusting_the_server_is_told_the_handshake_failed(
    pki: Pki, tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _first_contact_refusal(tls_port, monkeypatch, pki.other_ca)
    assert "the TLS handshake failed" in message, message


def test_the_controller_client_uses_tls_from_the_environment(
    pki: Pki, mtls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNERY_TLS_CA", str(pki.ca))
    monkeypatch.setenv("TUNERY_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("TUNERY_TLS_KEY", str(pki.client_key))
    client = GrpcSuggestionClient(f"localhost:{mtls_port}", timeout=10)
    try:
        spec = api_pb2.ExperimentSpec(
            algorithm=api_pb2.AlgorithmSpec(algorithm_name="random"),
            objective=api_pb2.ObjectiveSpec(type=api_pb2.MINIMIZE, objective_metric_name="y"),
            parameter_specs=api_pb2.ExperimentSpec.ParameterSpecs(
                parameters=[
                    api_pb2.ParameterSpec(
                        name="x",
                        parameter_type=api_pb2.DOUBLE,
                        feasible_space=api_pb2.FeasibleSpace(min="0", max="1"),
                    )
                ]
            ),
        )
        request = api_pb2.GetSuggestionsRequest(
            experiment=api_pb2.Experiment(name="e", spec=spec), current_request_number=2
        )
        assert len(client.get_suggestions(request).parameter_assignments) == 2
    finally:
        client.close()


def test_dbmanager_over_mutual_tls(
    pki: Pki, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, port = create_dbmanager_server(
        "127.0.0.1:0", sqlite_store, tls=ServerTls(pki.server_cert, pki.server_key, pki.ca)
    )
    server.start()
    try:
        for name in ("TUNERY_TLS_CA", "TUNERY_TLS_CERT", "TUNERY_TLS_KEY"):
            monkeypatch.delenv(name, raising=False)
        plain = DBManagerClient(f"localhost:{port}", timeout=1)  # no TLS: never connects
        with plain, pytest.raises(StoreError):
            plain.get_observations("t", "loss")
        monkeypatch.setenv("TUNERY_TLS_CA", str(pki.ca))
        monkeypatch.setenv("TUNERY_TLS_CERT", str(pki.client_cert))
        monkeypatch.setenv("TUNERY_TLS_KEY", str(pki.client_key))
        with DBManagerClient(f"localhost:{port}", timeout=5) as client:
            client.add_observations(
                "t", [Observation("loss", "0.5", 0, dt.datetime.now(dt.UTC), 0.5)]
            )
            assert [o.value for o in client.get_observations("t", "loss")] == ["0.5"]
    finally:
        server.stop(None).wait()


def test_incomplete_or_unreadable_settings_name_the_problem(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="--tls-cert and --tls-key must be given together"):
        ServerTls.from_options(str(pki.server_cert), None, None)
    assert ServerTls.from_options(None, None, None) is None
    with pytest.raises(TlsError, match="TUNERY_TLS_CERT and TUNERY_TLS_KEY"):
        ClientTls.from_env({"TUNERY_TLS_CERT": str(pki.client_cert)})
    assert ClientTls.from_env({}) is None
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsError, match=f"TLS key '{missing}' cannot be read"):
        ServerTls(pki.server_cert, missing).credentials()
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    with pytest.raises(TlsError, match="is not a PEM file"):
        ClientTls(ca=not_pem).credentials()


def test_tunery_serve_with_bad_tls_options_exits_2(pki: Pki, tmp_path: Path) -> None:
    for args in (
        ["--tls-cert", str(pki.server_cert)],
        ["--tls-cert", str(pki.server_cert), "--tls-key", str(tmp_path / "missing.pem")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tunery.cli", "serve", "suggestion", "--port", "0", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "Error:" in result.stderr and "Traceback" not in result.stderr
