"""Masking of API-key values in any text tanglebrain shows, stores or exports.

Providers echo credentials in error bodies, messages get cut, and a cut key no longer
matches a plain search for the whole key. So the rule is stronger than "replace the
key": every run of at least ``MIN_RUN`` characters that also occurs in a configured key
value is replaced by ``[redacted]``, wherever it is in the text. A value shorter than
``MIN_RUN`` (a placeholder such as ``"none"`` rather than a real key) is masked only
where it occurs whole, and only from ``MIN_WHOLE`` characters on, so that short words
in answers are not garbled.

Scanning is linear in the text: every run of ``MIN_RUN`` key characters contains a
``PROBE``-character slice that starts at a multiple of ``STRIDE``, so only those slices
are looked up, and only a hit is examined closely.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[redacted]"
MIN_RUN = 8
MIN_WHOLE = 6
PROBE = 4
STRIDE = MIN_RUN - PROBE + 1  # any MIN_RUN-long run holds an aligned PROBE-long slice


class Redactor:
    """Masks the key values it was built with; build it once, apply it to many texts."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        """Build a redactor.

        Args:
            secrets: key values; None and empty values are ignored.
        """
        values = {s for s in secrets if s}
        self._whole = sorted(
            (s for s in values if MIN_WHOLE <= len(s) < MIN_RUN), key=len, reverse=True
        )
        self._runs = {
            s[i : i + MIN_RUN] for s in values if len(s) >= MIN_RUN
            for i in range(len(s) - MIN_RUN + 1)
        }  # fmt: skip
        self._probes = {r[j : j + PROBE] for r in self._runs for j in range(MIN_RUN - PROBE + 1)}

    def __bool__(self) -> bool:
        return bool(self._runs or self._whole)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every key run (and every whole short key) masked."""
        if not text or not self:
            return text
        spans = self._run_spans(text) + self._whole_spans(text)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        cursor = 0
        start, end = spans[0]
        for s, e in spans[1:]:
            if s <= end:  # overlapping or touching: one mask
                end = max(end, e)
                continue
            out += [text[cursor:start], MASK]
            cursor, start, end = end, s, e
        out += [text[cursor:start], MASK, text[end:]]
        return "".join(out)

    def _run_spans(self, text: str) -> list[tuple[int, int]]:
        if not self._runs:
            return []
        runs, probes, n = self._runs, self._probes, len(text)
        spans: list[tuple[int, int]] = []
        last = -1  # windows already examined end here: each is looked up once
        for q in range(0, n - PROBE + 1, STRIDE):
            if text[q : q + PROBE] not in probes:
                continue
            for p in range(max(q - (MIN_RUN - PROBE), last + 1), min(q, n - MIN_RUN) + 1):
                if text[p : p + MIN_RUN] in runs:
                    spans.append((p, p + MIN_RUN))
                last = p
        return spans

    def _whole_spans(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for value in self._whole:
            at = text.find(value)
            while at != -1:
                spans.append((at, at + len(value)))
                at = text.find(value, at + 1)
        return spans


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every run of ``MIN_RUN`` or more characters of a key in ``secrets`` masked.

    Args:
        text: any text that may quote a key, whole or in part.
        secrets: the configured key values.

    Returns:
        The text with each such run replaced by ``[redacted]``.
    """
    return Redactor(secrets)(text)
