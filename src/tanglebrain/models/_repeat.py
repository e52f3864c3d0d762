"""The repetition guard of streamed replies: stop a model that writes one block forever."""

from __future__ import annotations

REPEATED = "repetition"
"""The finish reason of a streamed reply stopped by the repetition guard (see ``looping``)."""
REPEAT_MAX_BLOCK = 500
REPEAT_MIN_COPIES = 10
REPEAT_MIN_CHARS = 2000
_REPEAT_CHECK_EVERY = 256  # characters of new text between two checks
_REPEAT_WINDOW = 8192  # characters of the reply's tail kept for checking
_REPEAT_KEY = 16


def looping(text: str) -> bool:
    """Whether ``text`` ends in a loop: one block of text written over and over.

    The rule: the text ends in ``REPEAT_MIN_COPIES`` (10) or more back-to-back copies of
    one block of at most ``REPEAT_MAX_BLOCK`` (500) characters, and those copies cover at
    least ``REPEAT_MIN_CHARS`` (2,000) characters. A 60-character sentence must come 34
    times in a row, a 400-character paragraph 10 times, a single character 2,000 times.
    Only the text counts, not how a provider splits it into stream chunks.
    """
    if len(text) < REPEAT_MIN_CHARS:
        return False
    pos = len(text) - _REPEAT_KEY  # where the last characters, the key, start
    key = text[pos:]
    lo = max(0, pos - REPEAT_MAX_BLOCK)
    # Each earlier occurrence of the key, nearest first, gives a candidate block length.
    found = text.rfind(key, lo, pos - 1 + _REPEAT_KEY)
    while found != -1:
        block = pos - found
        need = max(REPEAT_MIN_COPIES * block, REPEAT_MIN_CHARS)
        if need > len(text):
            return False  # longer blocks need even more text
        tail = text[-need:]
        if tail[block:] == tail[:-block]:  # periodic with this block length
            return True
        found = text.rfind(key, lo, found - 1 + _REPEAT_KEY)
    return False


class RepetitionGuard:
    """Feeds a stream's text to ``looping`` every ``_REPEAT_CHECK_EVERY`` characters."""

    def __init__(self) -> None:
        self._tail = ""
        self._unchecked = 0

    def feed(self, text: str) -> bool:
        """Add a delta; True when the reply is looping."""
        self._tail = (self._tail + text)[-_REPEAT_WINDOW:]
        self._unchecked += len(text)
        if self._unchecked < _REPEAT_CHECK_EVERY:
            return False
        self._unchecked = 0
        return looping(self._tail)
