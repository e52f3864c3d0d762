"""The uvicorn settings ``serve`` and the simulator share: quiet, no lifespan, deep backlog."""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.types import ASGIApp


def quiet_config(app: ASGIApp, **overrides: Any) -> uvicorn.Config:
    """Quiet uvicorn settings; ``overrides`` are the caller's own (``timeout_graceful_shutdown``).

    No access log, logging setup, lifespan, websockets or ``Server`` header; a backlog deep
    enough for a burst of 2,048 connections. uvicorn parses HTTP with httptools when it is
    installed (a dependency), else h11.
    """
    settings: dict[str, Any] = {
        "backlog": 2048,
        "access_log": False,
        "log_config": None,
        "log_level": "warning",
        "lifespan": "off",
        "ws": "none",
        "server_header": False,
    }
    return uvicorn.Config(app, **{**settings, **overrides})
