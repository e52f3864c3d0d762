"""The shape of a shell command line, enough to classify it and to judge its permissions.

This is not a shell parser: it splits a POSIX/bash command line into simple commands
(at ``;``, ``&&``, ``||``, ``|``, ``&`` and newlines, outside quotes), removes quotes from
their words, skips heredoc bodies and comments, and flags every construct that can run
code it does not see (command and process substitution, grouping, shell keywords).
Anything it cannot follow (an unclosed quote or heredoc) makes ``ok`` false, and callers
treat such a line as one they do not understand.
"""

from __future__ import annotations

from tanglebrain.hooks._record import Record

_OPERATORS = ("&&", "||", ";;", "|&", ";", "|", "&", "\n")
_REDIRECTS = ("<<<", "<<-", "&>>", "<<", ">>", ">&", "<&", ">|", "<>", "&>", ">", "<")
_KEYWORDS = frozenset(
    {"if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "case",
     "esac", "select", "function", "{", "}", "!", "[[", "]]", "coproc"}
)  # fmt: skip


class Command(Record):
    """One simple command: its words with quotes removed.

    Attributes:
        words: the words, quotes and escapes removed.
        plain_head: whether its first word was written without quotes, escapes or ``$``.
        piped: whether its output goes into a pipe.
    """

    words: tuple[str, ...]
    plain_head: bool
    piped: bool

    @property
    def text(self) -> str:
        """The words joined by single spaces."""
        return " ".join(self.words)


class Shape:
    """What a command line is made of (see the module docstring)."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.redirects: list[str] = []  # output targets: files, 1 and 2 (``>&1``), …
        self.substitution = False  # $(…), `…`, <(…), >(…)
        self.grouping = False  # ( … ), { …; }, shell keywords
        self.heredoc = False
        self.background = False
        self.ok = True

    def __repr__(self) -> str:
        return f"Shape({self.__dict__!r})"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s, self.i, self.shape = text, 0, Shape()
        self.words: list[str] = []
        self.word: list[str] = []
        self.started = self.plain = False
        self.head_plain = True
        self.heredocs: list[tuple[str, bool]] = []

    def end_word(self) -> None:
        if self.started:
            if not self.words:
                self.head_plain = self.plain
            self.words.append("".join(self.word))
        self.word, self.started, self.plain = [], False, False

    def add(self, text: str, *, plain: bool) -> None:
        if not self.started:
            self.started, self.plain = True, plain
        elif not plain:
            self.plain = False
        self.word.append(text)

    def end_command(self, op: str) -> None:
        self.end_word()
        words = [w for w in self.words if w not in ("!",)]
        if words and words[0] in _KEYWORDS:
            self.shape.grouping = True
        if words:
            cmd = Command(tuple(words), self.head_plain, op in ("|", "|&"))
            self.shape.commands.append(cmd)
        self.words, self.head_plain = [], True
        if op == "&":
            self.shape.background = True
        if op == "\n" and self.heredocs:
            self.skip_heredocs()

    def skip_heredocs(self) -> None:
        for delim, tabs in self.heredocs:
            while True:
                if self.i >= len(self.s):
                    self.shape.ok = False
                    return
                end = self.s.find("\n", self.i)
                end = len(self.s) if end < 0 else end
                line = self.s[self.i : end]
                self.i = end + 1
                if "$(" in line or "`" in line:  # expanded in the body of an unquoted delimiter
                    self.shape.substitution = True
                if (line.lstrip("\t") if tabs else line) == delim:
                    break
        self.heredocs = []


def glob(text: str, pattern: str) -> bool:
    """Whether ``text`` matches ``pattern``, where only ``*`` is special (any characters).

    ``fnmatch`` would compile a regular expression per pattern: ~0.5 ms each, paid on every
    tool call for a hundred patterns.
    """
    parts = pattern.split("*")
    if len(parts) == 1:
        return text == pattern
    if not text.startswith(parts[0]):
        return False
    pos = len(parts[0])
    for part in parts[1:-1]:
        found = text.find(part, pos)
        if found < 0:
            return False
        pos = found + len(part)
    return len(text) - pos >= len(parts[-1]) and text.endswith(parts[-1])


def scan(text: str) -> Shape:
    """The :class:`Shape` of the command line ``text``."""
    sc = _Scanner(text)
    s, n = text, len(text)
    while sc.i < n and sc.shape.ok:
        c = s[sc.i]
        if c == "\\":
            if s.startswith("\\\n", sc.i):
                sc.i += 2
                continue
            sc.add(s[sc.i + 1 : sc.i + 2], plain=False)
            sc.i += 2
        elif c == "'":
            _single(sc)
        elif c == '"':
            _double(sc)
        elif c == "`" or (c in "$<>" and s.startswith("(", sc.i + 1)):
            sc.shape.substitution = True
            sc.add(c, plain=False)
            sc.i += 1
        elif c == "$":
            sc.add(c, plain=False)
            sc.i += 1
        elif c in " \t":
            sc.end_word()
            sc.i += 1
        elif c == "#" and not sc.started:
            end = s.find("\n", sc.i)
            sc.i = n if end < 0 else end
        elif c in "()":
            sc.shape.grouping = True
            sc.end_command(";")
            sc.i += 1
        elif c in "<>" or s.startswith("&>", sc.i):
            _redirect(sc)
        elif c in ";&|\n":
            op = next(o for o in _OPERATORS if s.startswith(o, sc.i))
            sc.i += len(op)
            sc.end_command(op)
        else:
            sc.add(c, plain=True)
            sc.i += 1
    sc.end_command("\n" if not sc.heredocs else ";")
    if sc.heredocs:
        sc.shape.ok = False
    return sc.shape


def _single(sc: _Scanner) -> None:
    end = sc.s.find("'", sc.i + 1)
    if end < 0:
        sc.shape.ok = False
        return
    sc.add(sc.s[sc.i + 1 : end], plain=False)
    sc.i = end + 1


def _double(sc: _Scanner) -> None:
    s, i, out = sc.s, sc.i + 1, []
    while i < len(s) and s[i] != '"':
        if s[i] == "\\" and i + 1 < len(s):
            out.append(s[i + 1] if s[i + 1] in '"\\$`\n' else s[i : i + 2])
            i += 2
            continue
        if s[i] == "`" or s.startswith("$(", i):
            sc.shape.substitution = True
        out.append(s[i])
        i += 1
    if i >= len(s):
        sc.shape.ok = False
        return
    sc.add("".join(out), plain=False)
    sc.i = i + 1


def _redirect(sc: _Scanner) -> None:
    s = sc.s
    if sc.started and "".join(sc.word).isdigit() and sc.plain:
        sc.word, sc.started = [], False  # ``2>``: the digits name a descriptor
    sc.end_word()
    op = next(o for o in _REDIRECTS if s.startswith(o, sc.i))
    sc.i += len(op)
    while sc.i < len(s) and s[sc.i] in " \t":
        sc.i += 1
    start = sc.i
    saved = (sc.words, sc.head_plain)
    sc.words = []
    while sc.i < len(s) and s[sc.i] not in " \t;&|\n()<>" and sc.shape.ok:
        if s[sc.i] == "'":
            _single(sc)
        elif s[sc.i] == '"':
            _double(sc)
        else:
            sc.add(s[sc.i], plain=s[sc.i] not in "$`\\")
            sc.i += 1
    target = "".join(sc.word) if sc.started else s[start : sc.i]
    sc.word, sc.started, sc.plain = [], False, False
    sc.words, sc.head_plain = saved
    if op in ("<<", "<<-"):
        sc.shape.heredoc = True
        sc.heredocs.append((target, op == "<<-"))
    elif op != "<<<" and ">" in op:
        sc.shape.redirects.append(target or "?")
