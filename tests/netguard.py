"""Refuse every network connection that does not go to a loopback address.

Installed for the test process by ``conftest.py``; CLI subprocesses are started as
``python tests/netguard.py ARGS`` which installs the same guard and then runs
``tanglebrain`` exactly as its console script would.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class NonLoopbackConnection(OSError):
    """A test tried to reach something other than 127.0.0.0/8 or ::1."""


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # unix sockets and the like stay on this machine
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise NonLoopbackConnection(f"tests may not resolve or reach {host!r}") from None
    if not ip.is_loopback:
        raise NonLoopbackConnection(f"tests may only connect to loopback, not {host}")


def _connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _original_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _original_connect_ex(self, address)


def install() -> None:
    """Patch ``socket.socket`` so non-loopback connections raise."""
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from tanglebrain.cli import main

    sys.argv[0] = "tanglebrain"
    main()
