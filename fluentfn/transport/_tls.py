"""TLS settings for gRPC endpoints (multi-node clusters)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..errors import FluentError


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files: the endpoint's certificate and key, and the CA that signed the peers'.

    ``require_client_cert=True`` makes it mutual: servers accept only peers presenting a
    certificate signed by the CA (clients always present theirs). ``server_name``: the
    name every endpoint's certificate carries, checked instead of the address dialled
    (pods and VMs get addresses no certificate can list in advance); None: the address.
    """

    cert_file: str
    key_file: str
    ca_file: str
    require_client_cert: bool = False
    server_name: str | None = None

    def channel_options(self) -> list[tuple[str, str]]:
        """gRPC channel options for this configuration (the name to check, if given)."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def _read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return (
                Path(self.cert_file).read_bytes(),
                Path(self.key_file).read_bytes(),
                Path(self.ca_file).read_bytes(),
            )
        except OSError as exc:
            raise FluentError(f"cannot read TLS files: {exc}") from None

    def ssl_server_context(self) -> ssl.SSLContext:
        """The same server side for plain TLS sockets (the hosts' metrics endpoint)."""
        self._read()  # one clear error for missing files
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca_file)
        context.load_cert_chain(self.cert_file, self.key_file)
        context.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_NONE
        return context

    def server_credentials(self) -> grpc.ServerCredentials:
        cert, key, ca = self._read()
        if self.require_client_cert:
            return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
        return grpc.ssl_server_credentials([(key, cert)])

    def channel_credentials(self) -> grpc.ChannelCredentials:
        cert, key, ca = self._read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
