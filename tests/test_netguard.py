from __future__ import annotations

import socket

import pytest

from tests.netguard import NonLoopbackConnection


@pytest.mark.parametrize("address", [("10.0.0.1", 80), ("8.8.8.8", 53), ("example.com", 443)])
def test_non_loopback_connections_fail(address: tuple[str, int]) -> None:
    with socket.socket() as s, pytest.raises(NonLoopbackConnection):
        s.connect(address)


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
