"""Line analysis for :mod:`tanglebrain.compress`: what each rendered line is and carries.

:func:`analyse` marks, for every line, its level (error/warning), whether it is a test or build
summary (or reports an exit code), the must-keep facts it carries (source paths, ``file:line``
locations, error codes, exception types, stack frames), whether it is a progress bar, and a
cheap template with volatile tokens masked. Pure functions; standard library only.

Scanning is done once over the whole text (a lower-cased copy for keywords) and hits are mapped
back to line numbers, so the per-line Python work is limited to lines that actually hit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

from tanglebrain.compress._masks import squash, template

# extensions of source and config files: a path ending in one is a must-keep fact
_EXT_ROWS = (
    "c h cc cpp cxx c++ hpp hh hxx inl ipp m mm rs go py pyx pyi pxd js mjs cjs jsx ts tsx",
    "mts cts vue svelte java kt kts scala sc groovy gradle cs fs fsx vb swift rb erb php pl",
    "pm t lua sh bash zsh fish ps1 psm1 r jl ex exs erl hrl hs lhs ml mli clj cljs cljc edn",
    "dart sql proto thrift tf tfvars yaml yml json jsonc toml xml xsd html htm css scss sass",
    "less md rst tex sty bib txt cfg ini conf cmake mk make in am ac s asm f90 f95 nim zig",
    "sv svh vhd vhdl bzl bazel nix csproj vbproj fsproj sln props targets ipynb",
)
SOURCE_EXTS = frozenset(" ".join(_EXT_ROWS).split(" "))
_EXT_ALT = "|".join(sorted((re.escape(e) for e in SOURCE_EXTS), key=len, reverse=True))
# a source/config file name ends here (scanned on the lower-cased text): not followed by more
# path characters, so "x.cpp.o" or "x.h/" do not count
_EXT_HIT = re.compile(rf"\.(?:{_EXT_ALT})(?![\w@+~/\\-]|\.[\w@+~-])")
_TOK_END = re.compile(r"[^\s\"<>|*?]*")
_TOK_BEGIN = re.compile(r".*[\s\"<>|*?]", re.DOTALL)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
_PY_LOC = re.compile(r'File "([^"]+)", line (\d+)')
# stack frames (Java, JavaScript, C#, Go): "at pkg.Class.method(File.java:12)" and the like
_FRAME = re.compile(r"[ \t]+at \S")
_CODES = (
    re.compile(r"\[([A-Z]{1,4}\d{3,5})\]"),  # rustc error[E0308], other bracketed codes
    re.compile(r"\[(-W[\w=+\-]+)\]"),  # gcc / clang warning flags
    re.compile(r"(clippy::[a-z_0-9]+(?:-[a-z_0-9]+)*)"),
    re.compile(r"#!?\[(?:warn|deny|allow|forbid|expect)\(([\w:]+)\)\]"),
    re.compile(r":\d+:\d+: ([EWFCN]\d{3})\b"),  # flake8 / pycodestyle
)
# compiler / analyser codes such as TS2304, CS0618, MSB3245, LNK2019, C4996, SC2086
_CODE_WORD = re.compile(r"(?:TS|CS|MSB|LNK|BC|CA|IDE|NU|NETSDK|SC|CWE|C)\d{4,5}(?![\w])")
_EXC_HIT = re.compile(r"(?:Exception|Error|Failure|Fault)\b")
_EXC_NAME = re.compile(r"(?<![\w])(?:[a-z_]\w*\.)*[A-Z][A-Za-z0-9_]*\Z")
_ERR_WORDS = (
    "error", "fatal", "fail", "exception", "traceback", "panic", "segfault",
    "segmentation fault", "abort", "critical", "severe", "denied", "refused", "timeout",
    "time out", "timed out",
)  # fmt: skip
_ERR_AT = re.compile(
    r"(?:errors?|fatal|failed|failures?|fail|exceptions?|traceback|panic(?:ked)?|segfault"
    r"|segmentation fault|abort(?:ed)?|critical|severe|denied|refused|timed? ?out)\b"
)
ERROR_WORD = re.compile(r"(?i)\b" + _ERR_AT.pattern)
_WARN_AT = re.compile(r"warn(?:ings?|ed)?\b")
# whole-line error forms: pytest assertion detail ("E   assert ...") and Android logcat E/F
_PYTEST_E = re.compile(r"E[^\S\n]{2,}\S")
_LOGCAT_EF = re.compile(r"\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+ [EF] ")
_EXIT_TRIGGERS = ("exit", "return code", "returned non-zero")
_EXIT = re.compile(
    r"(?i)\b(?:exit(?:ed)?(?: with)? (?:code|status|value)|exit_?code|return code"
    r"|returned non-zero exit status|process completed with exit code)[:=]?\s*-?\d+"
)
# (anchor word, patterns tested on the squashed line when the anchor occurs in it); an anchor
# starting with "^" must start the line (after indentation)
_SUMMARIES: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = tuple(
    (anchor, tuple(re.compile(rx) for rx in rxs))
    for anchor, *rxs in (
        ("==", r"^=+ .*\b(?:passed|failed|errors?|skipped|xfailed|xpassed|warnings?|deselected)\b"),
        ("passed", r"^\d+ passed\b|\b\d+ passed(?:, \d+ \w+)* in [\d.]+m?s\b"),
        ("failed", r"^\d+ failed\b|\b\d+ failed(?:, \d+ \w+)* in [\d.]+m?s\b"),
        ("skipped", r"^\d+ skipped\b"),
        ("flaky", r"^\d+ flaky\b"),
        ("result:", r"^test result: "),
        ("Failures:", r"\bTests run: \d+, Failures: \d+, Errors: \d+"),
        ("Tests:", r"^Tests:\s+\d"),
        ("Suites:", r"^Test Suites:\s+\d"),
        ("Files:", r"^Test Files:\s+\d"),
        ("Snapshots:", r"^Snapshots:\s+\d"),
        ("BUILD", r"\bBUILD (?:SUCCESSFUL|FAILED|SUCCESS|FAILURE)\b"),
        ("compiled", r"\bcompiled (?:successfully|with \d+ (?:errors?|warnings?))"),
        ("actionable", r"\b\d+ actionable tasks?:"),
        ("error generated", r"\b1 error generated\b"),
        ("errors generated", r"\b\d+ errors generated\b"),
        ("warning generated", r"\b1 warning generated\b"),
        ("warnings generated", r"\b\d+ warnings generated\b"),
        ("Found", r"\bFound \d+ errors?\b"),
        ("aborting", r"\baborting due to (?:\d+ )?previous errors?\b"),
        ("could", r"\berror: could not compile\b"),
        ("failure", r"\b\d+ (?:tests?|examples?), \d+ failures?\b"),
        ("^FAIL", r"^FAILED \((?:failures|errors)=\d+", r"^FAIL\s+\S+\s+[\d.]+s$"),
        ("^ok", r"^ok\s+\S+\s+[\d.]+s$"),
        ("^Ran", r"^Ran \d+ tests? in "),
        ("(s)", r"\b\d+ (?:Warning|Error)\(s\)$"),
        ("detailed", r"\b(?:\d+ )?(?:errors?|warnings?) (?:have|has) detailed info"),
        ("^npm", r"^npm (?:ERR!|error) code\b"),
        ("Successfully", r"\bSuccessfully installed\b"),
        ("Total", r"\bTotal time: "),
        ("^Finished:", r"^Finished: [A-Z]+$"),
    )
)
# progress bars, spinners, percentages and transfer rates (looked for in the template,
# where every number is "#")
_PROGRESS_MARKS = ("#%", "B/s", "[==", "[##", "=>  ", "#>  ")
_PROGRESS_SIZE = re.compile(r"/#(?:\.#)? ?[kKMG]i?B\b")  # "12.1/45 MB"
_PROGRESS_GLYPHS = re.compile(r"[█▉▊▋▌▍▎▏▓▒░━⠁-⣿]")  # bars and braille spinners
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
ERROR, WARNING = 2, 1


class Analysis:
    """Per-line findings; every list is indexed by line number.

    Attributes:
        lines: The rendered lines.
        level: ``ERROR``, ``WARNING`` or 0.
        summary: True for test/build summary lines and lines reporting an exit code.
        facts: Must-keep facts on the line (source-file tokens, ``file:line`` locations,
            error codes, exception types); empty when none.
        progress: True for progress-bar, spinner and transfer-rate lines.
        tmpl: Cheap template (see :func:`~tanglebrain.compress._masks.template`).
    """

    __slots__ = ("facts", "level", "lines", "progress", "summary", "tmpl")

    def __init__(
        self,
        lines: list[str],
        level: list[int],
        summary: list[bool],
        facts: list[tuple[str, ...]],
        progress: list[bool],
        tmpl: list[str],
    ) -> None:
        self.lines = lines
        self.level = level
        self.summary = summary
        self.facts = facts
        self.progress = progress
        self.tmpl = tmpl


def _finds(hay: str, needle: str) -> list[int]:
    out = []
    p = hay.find(needle)
    while p >= 0:
        out.append(p)
        p = hay.find(needle, p + 1)
    return out


class _Text:
    """The lines joined once, with a lower-cased copy and each line's start offset."""

    __slots__ = ("joined", "lines", "low", "starts")

    def __init__(self, lines: list[str], joined: str, low: str, starts: list[int]) -> None:
        self.lines = lines
        self.joined = joined
        self.low = low
        self.starts = starts

    def at(self, p: int) -> int:
        """The number of the line holding offset ``p``."""
        return bisect_right(self.starts, p) - 1


def _scan(lines: list[str]) -> _Text:
    joined = "\n".join(lines)
    low = joined.lower()
    if len(low) != len(joined):
        low = joined.translate(_ASCII_LOWER)
    starts = list(accumulate((len(x) + 1 for x in lines[:-1]), initial=0))
    return _Text(lines, joined, low, starts)


def _levels(t: _Text) -> list[int]:
    """``ERROR``, ``WARNING`` or 0 for every line."""
    lines, joined, low, at = t.lines, t.joined, t.low, t.at
    level = [0] * len(lines)
    for word in _ERR_WORDS:
        for p in _finds(low, word):
            if (p == 0 or not (low[p - 1].isalnum() or low[p - 1] == "_")) and _ERR_AT.match(
                low, p
            ):
                level[at(p)] = ERROR
    for p in [-1, *_finds(joined, "\nE")]:
        if _PYTEST_E.match(joined, p + 1):
            level[at(p + 1)] = ERROR
    for lit in (" E ", " F "):
        for i in {at(p) for p in _finds(joined, lit)}:
            if _LOGCAT_EF.match(lines[i]):
                level[i] = ERROR
    for p in _finds(low, "warn"):  # not in flags such as /warn:4 or --no-warn
        if (p == 0 or not (low[p - 1].isalnum() or low[p - 1] in "_/-")) and _WARN_AT.match(low, p):
            i = at(p)
            level[i] = level[i] or WARNING
    return level


def _path_facts(t: _Text, facts: dict[int, dict[str, None]]) -> None:
    """Add every token naming a source or config file (URLs excepted) to ``facts``."""
    joined, starts = t.joined, t.starts
    end = 0
    for m in _EXT_HIT.finditer(t.low):
        s = m.start()
        if s < end:
            continue  # same token as the previous hit
        i = t.at(s)
        lo = max(starts[i], s - 512)
        b = _TOK_BEGIN.match(joined, lo, s)
        begin = b.end() if b else lo
        tail = _TOK_END.match(joined, m.end(), m.end() + 512)
        end = tail.end() if tail else m.end()
        tok = joined[begin:end]
        if "://" in tok and any(u.start() <= s - begin < u.end() for u in _URL.finditer(tok)):
            end = s + 1
            continue
        facts.setdefault(i, {})[tok] = None


def _facts(t: _Text) -> list[tuple[str, ...]]:
    """The must-keep facts of every line, in order of kind, then of appearance."""
    lines, joined, starts, at = t.lines, t.joined, t.starts, t.at
    facts: dict[int, dict[str, None]] = {}

    def add(p: int, fact: str) -> None:
        facts.setdefault(at(p), {})[fact] = None

    _path_facts(t, facts)
    for p in _finds(joined, 'File "'):
        py = _PY_LOC.match(joined, p)
        if py:
            add(p, f"{py.group(1)}:{py.group(2)}")
    for lit in (" at ", "\tat "):
        for i in {at(p) for p in _finds(joined, lit)}:
            line = lines[i]
            if _FRAME.match(line):
                facts.setdefault(i, {})[line.strip()] = None
    for rx in _CODES:
        for m in rx.finditer(joined):
            add(m.start(), m.group(1))
    for m in _CODE_WORD.finditer(joined):
        s = m.start()
        if not s or not (joined[s - 1].isalnum() or joined[s - 1] == "_"):
            add(s, m.group())
    for m in _EXC_HIT.finditer(joined):
        s = m.start()
        lo = max(starts[at(s)], s - 300)
        name = _EXC_NAME.search(joined, lo, m.end())
        if name:
            add(s, name.group())
    fact_list: list[tuple[str, ...]] = [()] * len(lines)
    for i, fs in facts.items():
        fact_list[i] = tuple(fs)
    return fact_list


def _summaries(t: _Text) -> list[bool]:
    """For every line: is it a test/build summary or does it report an exit code."""
    lines, joined, starts, at = t.lines, t.joined, t.starts, t.at
    summary = [False] * len(lines)
    for anchor, rxs in _SUMMARIES:
        word = anchor.lstrip("^")
        hits = _finds(joined, word)
        if word != anchor:  # the line must start with it
            hits = [p for p in hits if p == 0 or joined[p - 1] in "\n \t"]
            hits = [p for p in hits if not joined[starts[at(p)] : p].strip()]
        for i in {at(p) for p in hits}:
            if not summary[i]:
                sq = squash(lines[i])
                summary[i] = any(rx.search(sq) for rx in rxs)
    for lit in _EXIT_TRIGGERS:
        for i in {at(p) for p in _finds(t.low, lit)}:
            if not summary[i] and _EXIT.search(lines[i]):
                summary[i] = True
    return summary


def _templates(joined: str, n: int) -> tuple[list[str], list[bool]]:
    """Every line's template, and whether it is a progress bar, spinner or transfer rate."""
    templated = template(joined)
    tmpl = templated.split("\n") if n else []
    progress = [False] * n
    tstarts = list(accumulate((len(x) + 1 for x in tmpl[:-1]), initial=0))
    hits = [m.start() for m in _PROGRESS_GLYPHS.finditer(templated)]
    if hits:  # spinner frames and bar glyphs do not make lines different
        templated = _PROGRESS_GLYPHS.sub("*", templated)
        tmpl = templated.split("\n")
    hits.extend(m.start() for m in _PROGRESS_SIZE.finditer(templated))
    for mark in _PROGRESS_MARKS:
        hits.extend(_finds(templated, mark))
    for p in hits:
        progress[bisect_right(tstarts, p) - 1] = True
    return tmpl, progress


def analyse(lines: list[str]) -> Analysis:
    """Classify rendered lines.

    Args:
        lines: Output of :func:`~tanglebrain.compress._render.render`.

    Returns:
        The per-line :class:`Analysis`.
    """
    t = _scan(lines)
    level = _levels(t)
    facts = _facts(t)
    summary = _summaries(t)
    tmpl, progress = _templates(t.joined, len(lines))
    return Analysis(lines, level, summary, facts, progress, tmpl)
