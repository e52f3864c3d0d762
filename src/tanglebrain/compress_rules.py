"""Rules behind :mod:`tanglebrain.compress`: terminal rendering and line analysis.

Everything here is a pure function of its input and uses the standard library only.
:func:`render` turns raw terminal output into the lines a terminal finally showed;
:func:`analyse` marks, for every line, its level (error/warning), whether it is a test or build
summary (or reports an exit code), the must-keep facts it carries (source paths, ``file:line``
locations, error codes, exception types) and a template with volatile tokens masked.

Scanning is done once over the whole text (a lower-cased copy for keywords) and hits are mapped
back to line numbers, so the per-line Python work is limited to lines that actually hit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

# --------------------------------------------------------------------------------------------
# Terminal rendering
# --------------------------------------------------------------------------------------------

# Sequences that never move the cursor or change text: colours, private modes, OSC titles and
# hyperlinks, DCS/APC/PM/SOS strings (e.g. Buildkite's ``ESC _bk;t=… BEL`` timestamps),
# charset selection, other two-byte escapes and 8-bit CSI.
_INERT = re.compile(
    r"\x1b\[[0-?]*[ -/]*m"
    r"|\x1b\[\?[0-9;]*[hl]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[P_^X][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\\]^_=>78]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f\ud800-\udfff]")
_SEQ = re.compile(r"(\x1b\[[0-?]*[ -/]*[@-~]|\r|\x1b)")
_GHA_TS = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z(?: |$)", re.MULTILINE)
_WIDE_GAP = re.compile(r"[ \t]{3,}")
# overwritten text worth rescuing: it names an error or a warning
_RESCUE = re.compile(r"(?i)\b(?:error|fatal|fail(?:ed|ure)?|exception|panic|warn(?:ing)?)\b")


_MAX_COL = 1000  # cursor columns beyond this are clamped


def _int(params: str, default: int) -> int:
    head = params.split(";", 1)[0][:9]
    return int(head) if head.isdigit() and int(head) > 0 else default


def _emulate(segments: list[str]) -> list[str]:
    """Replay line feeds, carriage returns, cursor moves and erasures on a grid of rows.

    A line feed moves to column 0 of the next row. Text written at column 0 replaces the row
    (a carriage-return rewrite shows its last non-empty segment, as progress bars intend);
    text written further right overwrites in place. Cursor up/down/next/previous line, column
    moves and erase-in-line/display are honoured; anything else is dropped. Overwritten rows
    that named an error or warning are kept, just above the row that replaced them.
    """
    rows: list[str] = []
    lost: dict[str, int] = {}
    cur = -1
    for seg in segments:
        cur += 1
        if cur == len(rows):
            rows.append("")
        if "\x1b" not in seg and "\r" not in seg:
            if seg:
                old = rows[cur]
                if old and old != seg:
                    lost.setdefault(old, cur)
                rows[cur] = seg
            continue
        col = 0
        saved = (cur, 0)
        for k, part in enumerate(_SEQ.split(seg)):
            if not k & 1:
                if not part:
                    continue
                old = rows[cur]
                if col == 0 and part.strip():
                    if old and old != part:
                        lost.setdefault(old, cur)
                    rows[cur] = part
                elif col or part.strip():
                    rows[cur] = old[:col].ljust(col) + part + old[col + len(part) :]
                col += len(part)
                continue
            if part == "\r":
                col = 0
                continue
            if part == "\x1b":
                continue
            final, params = part[-1], part[2:-1]
            if final in "AF":
                cur = max(0, cur - _int(params, 1))
                col = 0 if final == "F" else col
            elif final in "BE":  # down; like a terminal, never below the last row
                cur = min(cur + _int(params, 1), len(rows) - 1)
                col = 0 if final == "E" else col
            elif final == "C":
                col = min(col + _int(params, 1), _MAX_COL)
            elif final == "D":
                col = max(0, col - _int(params, 1))
            elif final in "GHf`":
                col = min(_int(params.split(";")[-1] if final in "Hf" else params, 1) - 1, _MAX_COL)
            elif final == "K":
                old = rows[cur]
                mode = params or "0"
                new = old[:col] if mode == "0" else " " * col + old[col:] if mode == "1" else ""
                if old.strip() and new != old:
                    lost.setdefault(old, cur)
                rows[cur] = new
            elif final == "J" and params in ("", "0"):
                for old in rows[cur + 1 :]:
                    lost.setdefault(old, cur)
                del rows[cur + 1 :]
                rows[cur] = rows[cur][:col]
            elif final == "s":
                saved = (cur, col)
            elif final == "u":
                cur, col = min(saved[0], len(rows) - 1), saved[1]
    shown = set(rows)
    rescue: dict[int, list[str]] = {}
    for old, at in lost.items():
        if old not in shown and _RESCUE.search(old):
            rescue.setdefault(at, []).append(old)
    if not rescue:
        return rows
    out: list[str] = []
    for i, row in enumerate(rows):
        out.extend(rescue.get(i, ()))
        out.append(row)
    return out


@dataclass(frozen=True)
class Rendered:
    """Text as the terminal finally showed it.

    Attributes:
        lines: The visible lines, without trailing whitespace or control sequences.
        first_ts: First GitHub Actions timestamp prefix removed from a line ("" if none).
        last_ts: Last such timestamp ("" if none).
    """

    lines: list[str]
    first_ts: str
    last_ts: str


def render(text: str) -> Rendered:
    """Strip terminal control sequences and resolve overwrites to the final screen.

    Args:
        text: Raw text, possibly with ANSI/VT sequences, carriage-return rewrites and cursor
            moves.

    Returns:
        The rendered lines, without trailing blanks or trailing empty lines. GitHub Actions
        per-line timestamps are removed (the first and last are reported).
    """
    if "\x1b" in text or "\x9b" in text:
        text = _INERT.sub("", text)
    text = _CTRL.sub("", text)
    while "\r\n" in text:  # \r+\n ends a line
        text = text.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    if "\x1b" in text or "\r" in text:
        text = "\n".join(_emulate(text.split("\n")))
    first_ts = last_ts = ""
    m = _GHA_TS.search(text)
    if m:
        first_ts = last_ts = m.group().strip()
        end = len(text)
        while end > m.end():
            begin = text.rfind("\n", 0, end - 1) + 1
            last = _GHA_TS.match(text, begin)
            if last:
                last_ts = last.group().strip()
                break
            end = begin
        text = _GHA_TS.sub("", text)
    lines = [x.rstrip() for x in text.split("\n")] if text else []
    while lines and not lines[-1]:
        lines.pop()
    return Rendered(lines, first_ts, last_ts)


def narrow(line: str) -> str:
    """Shrink runs of three or more blanks inside ``line`` to two; indentation stays."""
    if "   " not in line.lstrip():
        return line
    body = line.lstrip()
    return line[: len(line) - len(body)] + _WIDE_GAP.sub("  ", body)


# --------------------------------------------------------------------------------------------
# Line analysis
# --------------------------------------------------------------------------------------------

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
_WS = re.compile(r"\s+")
_HSPACE = re.compile(r"[^\S\n]{2,}|[^\S \n]")
_VOLATILE = re.compile(r"\d[\da-fA-F]*")
_HEX_HEAD_REVERSED = re.compile(r"#[a-fA-F]+")
_BLANKS = re.compile("  \x20*")  # two literal blanks first: the engine searches for them fast
_DIGITS = re.compile(r"\d+")
# Volatile tokens, masked in this order (timestamps, UUIDs, hex, IPs, clock times, numbers),
# then every placeholder becomes "<*>". A leading "\b" is written as "first character, then
# (?<!\w<first>)" so the regex engine can skip ahead to candidate characters; the matches are
# the same.
_HEXC = "[0-9a-fA-F]"
_MASKS = (
    (
        re.compile(
            r"\d(?<!\w\d)\d{3}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
        ),
        "<TS>",
    ),
    (
        re.compile(rf"{_HEXC}(?<!\w{_HEXC}){_HEXC}{{7}}-(?:{_HEXC}{{4}}-){{3}}{_HEXC}{{12}}\b"),
        "<UUID>",
    ),
    (re.compile(r"0(?<!\w0)x[0-9a-fA-F]+\b"), "<HEX>"),
    (
        re.compile(
            rf"{_HEXC}(?<!\w{_HEXC})(?:(?<=\d)|(?={_HEXC}*\d))(?:(?<=[a-fA-F])|(?={_HEXC}*[a-fA-F]))"
            rf"{_HEXC}{{6,}}\b"
        ),
        "<HEX>",
    ),
    (re.compile(r"\d(?<!\w\d)\d{0,2}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\d(?<!\w\d)\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<TS>"),
    (_DIGITS, "<N>"),
    (re.compile(r"<[^<>\s]{1,12}>"), "<*>"),
)
# numbers that are volatile on their own: durations, sizes, percentages, long ids
_VOLATILE_NUM = re.compile(
    r"\d(?<!\w\d)(?:\d*(?:\.\d+)?(?:\s?(?:ms|us|µs|ns|s|secs?|seconds?|mins?|minutes?|h|hours?)"
    r"|\s?(?:[kKMGT]i?B|bytes?)|%)(?![\w])"
    r"|\d{5,}\b)"
)
# progress bars, spinners, percentages and transfer rates (looked for in the template,
# where every number is "#")
_PROGRESS_MARKS = ("#%", "B/s", "[==", "[##", "=>  ", "#>  ")
_PROGRESS_SIZE = re.compile(r"/#(?:\.#)? ?[kKMG]i?B\b")  # "12.1/45 MB"
_PROGRESS_GLYPHS = re.compile(r"[█▉▊▋▌▍▎▏▓▒░━⠁-⣿]")  # bars and braille spinners
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
ERROR, WARNING = 2, 1


def squash(line: str) -> str:
    """Collapse whitespace runs to one blank and strip the ends."""
    return _WS.sub(" ", line).strip()


def template(line: str) -> str:
    """Cheap template: hex runs containing a digit become ``#``, blank runs one blank."""
    # hex letters before the first digit are absorbed on the reversed text, where the
    # pattern starts with a literal and scans fast
    t = _HEX_HEAD_REVERSED.sub("#", _VOLATILE.sub("#", line)[::-1])[::-1]
    return _BLANKS.sub(" ", t.replace("\t", " "))


def squash_all(lines: list[str]) -> str:
    """Apply :func:`squash` to every line and join them with newlines."""
    return "\n".join(x.strip() for x in _HSPACE.sub(" ", "\n".join(lines)).split("\n"))


def volatile_masked(lines: list[str]) -> list[str]:
    """Squashed ``lines`` with timestamps, UUIDs, hex ids and IPs masked (placeholders).

    This is the first half of the fidelity-key masking; :func:`kinds` and :func:`fold_keys`
    finish it in two different ways.
    """
    if not lines:
        return []
    s = squash_all(lines)
    for rx, rep in _MASKS[:6]:
        s = rx.sub(rep, s)
    return s.split("\n")


def kinds(masked: list[str]) -> list[str]:
    """Kinds of lines: :func:`volatile_masked` output with every number masked too."""
    s = _MASKS[7][0].sub("<*>", _DIGITS.sub("<N>", "\n".join(masked)))
    return s.split("\n") if masked else []


def fold_keys(masked: list[str]) -> list[str]:
    """Keys under which error lines may be folded together.

    Finer than :func:`kinds`: on top of timestamps, UUIDs, hex ids and IPs only durations,
    sizes, percentages and long numbers are masked; small numbers (line and column numbers,
    counts, type variables like ``CAP#1``) are kept, since they usually carry meaning. Every
    masked number is a whole digit run, so equal keys imply equal kinds.
    """
    s = _VOLATILE_NUM.sub(_mask_digits, "\n".join(masked))
    return s.split("\n") if masked else []


def _mask_digits(m: re.Match[str]) -> str:
    return _DIGITS.sub("<N>", m.group())


@dataclass
class Analysis:
    """Per-line findings; every list is indexed by line number.

    Attributes:
        lines: The rendered lines.
        level: ``ERROR``, ``WARNING`` or 0.
        summary: True for test/build summary lines and lines reporting an exit code.
        facts: Must-keep facts on the line (source-file tokens, ``file:line`` locations,
            error codes, exception types); empty when none.
        progress: True for progress-bar, spinner and transfer-rate lines.
        tmpl: Cheap template (see :func:`template`).
    """

    lines: list[str]
    level: list[int]
    summary: list[bool]
    facts: list[tuple[str, ...]]
    progress: list[bool]
    tmpl: list[str]


def _finds(hay: str, needle: str) -> list[int]:
    out = []
    p = hay.find(needle)
    while p >= 0:
        out.append(p)
        p = hay.find(needle, p + 1)
    return out


def analyse(lines: list[str]) -> Analysis:
    """Classify rendered lines.

    Args:
        lines: Output of :func:`render`.

    Returns:
        The per-line :class:`Analysis`.
    """
    n = len(lines)
    joined = "\n".join(lines)
    low = joined.lower()
    if len(low) != len(joined):
        low = joined.translate(_ASCII_LOWER)
    starts = list(accumulate((len(x) + 1 for x in lines[:-1]), initial=0))

    def at(p: int) -> int:
        return bisect_right(starts, p) - 1

    level = [0] * n
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

    facts: dict[int, dict[str, None]] = {}

    def add(p: int, fact: str) -> None:
        facts.setdefault(at(p), {})[fact] = None

    end = 0
    for m in _EXT_HIT.finditer(low):
        s = m.start()
        if s < end:
            continue  # same token as the previous hit
        i = at(s)
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

    summary = [False] * n
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
        for i in {at(p) for p in _finds(low, lit)}:
            if not summary[i] and _EXIT.search(lines[i]):
                summary[i] = True

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
    fact_list: list[tuple[str, ...]] = [()] * n
    for i, fs in facts.items():
        fact_list[i] = tuple(fs)
    return Analysis(lines, level, summary, fact_list, progress, tmpl)
