"""The listening socket shared by the HTTP servers (``serve`` and the simulator)."""

from __future__ import annotations

import errno
import socket
import sys

from tanglebrain.errors import UsageError


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0 picks a free one).

    Args:
        host: an address or name; IPv6 addresses may be given in brackets.
        port: the port, or 0.
        reuse_port: set ``SO_REUSEPORT`` so that several sockets share the port and the
            kernel spreads new connections across them (Linux).

    Raises:
        OSError: the address cannot be bound.
    """
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every response or streamed event stalls ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if sys.platform != "win32":  # on Windows it would allow stealing the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def listen_error(host: str, port: int, exc: OSError) -> UsageError:
    """The error for a failed ``bind_socket``: its fix names the port or the host at fault."""
    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        fix = "pick another --port"
    else:
        fix = "check --host: an address of this machine, such as 127.0.0.1"
    return UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", fix=fix)
