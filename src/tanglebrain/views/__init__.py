"""Terminal rendering, and nothing else.

``render``: notes and summary lines of a run, its ``--json`` object, the live tree on
stderr. ``history``: the ``runs``, ``show`` and ``stats`` views of the ledger.
"""
