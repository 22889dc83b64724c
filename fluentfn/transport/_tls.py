"""TLS settings for gRPC endpoints (multi-node clusters)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from ..errors import FluentError


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files: the endpoint's certificate and key, and the CA that signed the peers'."""

    cert_file: str
    key_file: str
    ca_file: str

    def _read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return (
                Path(self.cert_file).read_bytes(),
                Path(self.key_file).read_bytes(),
                Path(self.ca_file).read_bytes(),
            )
        except OSError as exc:
            raise FluentError(f"cannot read TLS files: {exc}") from None

    def server_credentials(self) -> grpc.ServerCredentials:
        cert, key, _ = self._read()
        return grpc.ssl_server_credentials([(key, cert)])

    def channel_credentials(self) -> grpc.ChannelCredentials:
        _, _, ca = self._read()
        return grpc.ssl_channel_credentials(root_certificates=ca)
