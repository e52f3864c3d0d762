"""tanglebrain: an async command-line orchestrator for LLMs.

The public API is small and lazily imported, so that ``import tanglebrain`` (and
``tanglebrain --version``) stays fast::

    from tanglebrain import Request, run, load_roster
"""

from __future__ import annotations

from tanglebrain._version import __version__

# Not ``typing.TYPE_CHECKING``: importing typing costs ~20 ms on every start, which the
# agent hooks (one process per tool call) cannot spare. Type checkers treat the name alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from tanglebrain.orchestrator import Hooks, Request, run
    from tanglebrain.roster import Roster
    from tanglebrain.roster import load as load_roster
    from tanglebrain.runtime import Attachment

__all__ = ["Attachment", "Hooks", "Request", "Roster", "__version__", "load_roster", "run"]

_LAZY = {
    "Hooks": ("tanglebrain.orchestrator", "Hooks"),
    "Request": ("tanglebrain.orchestrator", "Request"),
    "run": ("tanglebrain.orchestrator", "run"),
    "Roster": ("tanglebrain.roster", "Roster"),
    "load_roster": ("tanglebrain.roster", "load"),
    "Attachment": ("tanglebrain.runtime", "Attachment"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'tanglebrain' has no attribute {name!r}")
