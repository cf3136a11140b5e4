"""The connection flags every client command shares: server address, token, TLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from muselens.runtime.client.client import MuselensClient, read_token


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="HOST:PORT of a muselens server")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="token file ('<client|admin> <token>' lines); its client token is sent")
    parser.add_argument("--tls-ca", type=Path, default=None, help="PEM CA certificate: connect with TLS")
    parser.add_argument("--tls-server-name", default=None, help="expected server name in its certificate")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default: %(default)s)")


def connect(args: argparse.Namespace, role: str = "client") -> MuselensClient:
    token = None
    if args.token_file is not None:
        try:
            token = read_token(args.token_file, role)
        except ValueError:
            token = read_token(args.token_file, "admin")
    return MuselensClient(args.server, token=token, tls_ca=args.tls_ca, tls_server_name=args.tls_server_name,
                          timeout=args.timeout)


def parse_roi(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x0,y0,x1,y1 in [0,1], got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 numbers x0,y0,x1,y1, got {text!r}")
    return values  # type: ignore[return-value]
