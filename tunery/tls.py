"""TLS for tunery's gRPC servers and for every gRPC client of ours: one place for credentials.

Servers (``tunery serve suggestion|earlystop|dbmanager --tls-cert --tls-key
[--tls-client-ca]``) get a :class:`ServerTls`, which :func:`tunery.serving.create_server`
turns into a secure port; with a client CA the server requires and verifies a client
certificate (mutual TLS). Clients (the controller's Suggestion/EarlyStopping clients, the
DBManager client of the collector, the early-stopping service's DBManager reader) open their
channels with :func:`open_channel`, which reads :class:`ClientTls` from the environment:

- ``TUNERY_TLS_CA``: PEM file of the CA that signed the servers' certificates; setting it
  turns TLS on for every channel the process opens.
- ``TUNERY_TLS_CERT`` and ``TUNERY_TLS_KEY``: the client's own certificate and key (PEM), sent
  to servers that require mutual TLS.

Without any of them, channels are plaintext, as Katib's are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

ENV_CA = "TUNERY_TLS_CA"
ENV_CERT = "TUNERY_TLS_CERT"
ENV_KEY = "TUNERY_TLS_KEY"


class TlsError(ValueError):
    """A TLS setting is incomplete or a certificate/key file cannot be read."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise TlsError(f"{what} {str(path)!r} is not a PEM file")
    return data


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and key, and the CA its clients' certificates must chain
    to (None: clients are not asked for a certificate)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_options(
        cls, cert: str | None, key: str | None, client_ca: str | None
    ) -> ServerTls | None:
        """From the ``--tls-cert/--tls-key/--tls-client-ca`` options; None when none is set.

        Raises:
            TlsError: only one of cert and key, or a client CA without them.
        """
        if not (cert or key or client_ca):
            return None
        if not (cert and key):
            raise TlsError("--tls-cert and --tls-key must be given together")
        return cls(Path(cert), Path(key), Path(client_ca) if client_ca else None)

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials (reads the files now).

        Raises:
            TlsError: a file cannot be read or is not PEM.
        """
        pair = (_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
        if self.client_ca is None:
            return grpc.ssl_server_credentials([pair])
        return grpc.ssl_server_credentials(
            [pair],
            root_certificates=_read(self.client_ca, "TLS client CA"),
            require_client_auth=True,
        )


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts (``ca``; None: the system's roots) and the certificate it shows
    to servers requiring mutual TLS (``cert`` and ``key``, or neither)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsError(f"{ENV_CERT} and {ENV_KEY} must be set together")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientTls | None:
        """From ``TUNERY_TLS_CA/CERT/KEY``; None (plaintext) when none is set.

        Raises:
            TlsError: only one of cert and key.
        """
        env = os.environ if environ is None else environ
        ca, cert, key = (env.get(name, "").strip() for name in (ENV_CA, ENV_CERT, ENV_KEY))
        if not (ca or cert or key):
            return None
        return cls(
            Path(ca) if ca else None, Path(cert) if cert else None, Path(key) if key else None
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials (reads the files now).

        Raises:
            TlsError: a file cannot be read or is not PEM.
        """
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "TLS CA") if self.ca else None,
            private_key=_read(self.key, "TLS key") if self.key else None,
            certificate_chain=_read(self.cert, "TLS certificate") if self.cert else None,
        )


_FROM_ENV = object()


def open_channel(
    address: str,
    tls: ClientTls | object | None = _FROM_ENV,
    *,
    options: Sequence[tuple[str, object]] = (),
) -> grpc.Channel:
    """A channel to ``address``: TLS per ``tls`` (by default :meth:`ClientTls.from_env`),
    plaintext when that is None.

    Raises:
        TlsError: the TLS settings are incomplete or a file cannot be read.
    """
    settings = ClientTls.from_env() if tls is _FROM_ENV else tls
    if settings is None:
        return grpc.insecure_channel(address, options=list(options))
    assert isinstance(settings, ClientTls)
    return grpc.secure_channel(address, settings.credentials(), options=list(options))
