"""What `aioflow grep` matches streams with: byte regexes and string-distance needles, fed a stream
chunk by chunk. A match may span chunk boundaries: each stream keeps only the tail a match could
still need (the pattern's longest possible match, or a bounded span for unbounded patterns), so
data that completes a match is found when it arrives and no stream is ever scanned twice."""

from __future__ import annotations

import bisect
import importlib
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._engine import check_stream_patterns, stream_patterns_available
from .._errors import ConfigError, PatternUnsupportedError
from .._stream import StreamPatterns

if TYPE_CHECKING:
    import numpy as np

# The regex parser's private modules, which typeshed does not describe (its sre_* stubs are of
# the deprecated aliases, and loosely): read as Any.
sre_constants: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")


def _numpy() -> Any:
    """numpy, imported only for distance matching (regex-only grep runs without it)."""
    try:
        import numpy
    except ImportError:
        raise ConfigError("distance matching (-E) needs numpy: pip install numpy (the 'grep' extra)") from None
    return numpy

# Unbounded patterns (`a.*b`, `\w+`) can match across at most this many bytes of a stream; a longer
# match is still found when it lies within one chunk.
DEFAULT_SPAN = 64 * 1024
# Windows compared per numpy/rapidfuzz call: bounds the scratch memory of distance matching.
_WINDOWS_PER_CALL = 65536

DISTANCE_ALGORITHMS = ("levenshtein", "damerau", "hamming", "jaccard")


@dataclass(frozen=True, slots=True)
class Match:
    """Where a pattern matched in a stream: stream offsets and the matched bytes (`partial`: not
    all of them, as the native search may report)."""

    start: int
    end: int
    data: bytes
    pattern: str
    partial: bool = False


def compile_patterns(patterns: Iterable[str], ignore_case: bool) -> list[re.Pattern[bytes]]:
    """Byte regexes, as flowgrep compiles them (MULTILINE, plus IGNORECASE for -i)."""
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    compiled = []
    for text in patterns:
        try:
            compiled.append(re.compile(text.encode("utf-8", "surrogateescape"), flags))
        except re.error as exc:
            raise ConfigError(f"pattern {text!r} is not a valid regular expression: {exc}") from None
    return compiled


# Python regex syntax that Vectorscan reads differently: {,n} (a literal there) and \Z (before a
# final newline too there). Patterns with it are searched in Python.
_PCRE_DIFFERENT = re.compile(rb"\{,|\\Z")


def native_patterns(
    client: Sequence[str], server: Sequence[str], ignore_case: bool
) -> tuple[StreamPatterns | None, str]:
    """The patterns as StreamPatterns for the C engine's search, or (None, why not) when it cannot
    run them with Python's meaning (a build without Vectorscan, a backreference, lookaround, ...)."""
    encoded = [[p.encode("utf-8", "surrogateescape") for p in side] for side in (client, server)]
    if not stream_patterns_available():
        return None, "aioflow was built without Vectorscan (apt-get install libvectorscan-dev, then reinstall)"
    different = next((p for side in encoded for p in side if _PCRE_DIFFERENT.search(p)), None)
    if different is not None:
        return None, f"pattern {different!r}: {{,n}} and \\Z mean other things to Vectorscan"
    try:
        check_stream_patterns(encoded[0], encoded[1], ignore_case)
    except PatternUnsupportedError as exc:
        return None, str(exc)
    return StreamPatterns(client=encoded[0], server=encoded[1], ignore_case=ignore_case), ""


def longest_match(pattern: re.Pattern[bytes]) -> int | None:
    """The most bytes a match of pattern can span, None when unbounded."""
    return _shape(pattern).width


@dataclass(frozen=True, slots=True)
class _Shape:
    width: int | None  # longest match, None when unbounded
    ahead: int | None  # bytes after a match that decide it ($, \b, lookahead); None: unbounded
    behind: int  # bytes before a match that decide it (^, \b, lookbehind)
    anchored: bool  # has assertions ($, ^, \b, lookarounds): where data ends changes its matches


_END_SENSITIVE = {
    sre_constants.AT_END, sre_constants.AT_END_LINE, sre_constants.AT_END_STRING,
    sre_constants.AT_BOUNDARY, sre_constants.AT_NON_BOUNDARY, sre_constants.AT_LOC_BOUNDARY,
    sre_constants.AT_LOC_NON_BOUNDARY, sre_constants.AT_UNI_BOUNDARY, sre_constants.AT_UNI_NON_BOUNDARY,
}


def _bounded(width: int) -> int | None:
    return None if width >= sre_constants.MAXREPEAT else int(width)


def _shape(pattern: re.Pattern[bytes]) -> _Shape:
    try:
        tree = sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:  # the private parser changed: assume the worst
        return _Shape(None, None, 1, True)
    ahead: int | None = 0
    behind = 1
    anchored = False

    def walk(node: Any) -> None:
        nonlocal ahead, behind, anchored
        if isinstance(node, sre_parse.SubPattern):
            for op, value in node:
                anchored |= op in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT)
                if op is sre_constants.AT and value in _END_SENSITIVE and ahead is not None:
                    ahead = max(ahead, 1)
                elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
                    direction, sub = value
                    width = _bounded(sub.getwidth()[1])
                    if direction == 1:
                        ahead = None if width is None or ahead is None else max(ahead, width)
                    else:
                        behind = max(behind, width or 0)
                walk(value)
        elif isinstance(node, tuple | list):
            for item in node:
                walk(item)

    walk(tree)
    return _Shape(_bounded(tree.getwidth()[1]), ahead, behind, anchored)


def read_pattern_file(path: str) -> list[str]:
    """One pattern per line (flowgrep's -f/-F); blank lines are skipped."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            return [line.rstrip("\r\n") for line in file if line.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read patterns from {path}: {exc.strerror or exc}") from None


class RegexMatcher:
    """Any of several byte regexes.

    A match that touches the end of the data so far is only final when what follows cannot undo
    it: patterns ending in $, \\b or a lookahead wait for that many more bytes (or the stream's end)."""

    def __init__(self, patterns: Sequence[re.Pattern[bytes]], span: int = DEFAULT_SPAN) -> None:
        self.patterns = [(p, _shape(p)) for p in patterns]
        shapes = [shape for _, shape in self.patterns]
        # bytes a match still pending at the end of a chunk may need again: where it began
        # (width - 1 back) plus what decides its end
        self.keep = max(
            (span if s.width is None or s.ahead is None else max(s.width - 1, 0) + s.ahead) for s in shapes
        ) if shapes else 0
        self.context = max((s.behind for s in shapes), default=1)
        self.anchored = any(s.anchored for s in shapes)

    def search(self, buffer: bytes, start: int, final: bool) -> tuple[int, int, str] | None:
        """The first settled match from `start` in `buffer`: (start, end, pattern), or None."""
        best: tuple[int, int, str] | None = None
        for pattern, shape in self.patterns:
            found = pattern.search(buffer, start)
            if found is None:
                continue
            settled = final or (shape.ahead is not None and found.end() + shape.ahead <= len(buffer))
            if settled and (best is None or found.start() < best[0]):
                best = (found.start(), found.end(), pattern.pattern.decode("utf-8", "backslashreplace"))
        return best


def _jaccard_distances(windows: np.ndarray, needle_set: np.ndarray) -> np.ndarray:
    """1 - |A & B| / |A | B| between each window's byte set and the needle's."""
    import numpy as np  # there: DistanceMatcher() checked it (_numpy)
    rows = np.sort(windows, axis=1)
    distinct = np.ones(rows.shape, dtype=bool)
    distinct[:, 1:] = rows[:, 1:] != rows[:, :-1]
    in_needle = np.zeros(256, dtype=bool)
    in_needle[needle_set] = True
    inter = (distinct & in_needle[rows]).sum(axis=1)
    union = distinct.sum(axis=1) + len(needle_set) - inter
    distances: np.ndarray = 1.0 - inter / union
    return distances


class DistanceMatcher:
    """flowgrep's -E/-e/-D: some window of the stream, as long as a needle, lies within `score` of
    it by the chosen string distance (levenshtein, damerau, hamming: edits; jaccard: 0..1 between
    byte sets). Scores are distances: 0 is an exact match. Raises ConfigError for an unknown
    algorithm, a score out of range, no needle, or numpy/rapidfuzz missing."""

    anchored = False  # no assertions: a window matches wherever the data ends

    def __init__(self, algorithm: str, needles: Sequence[str], score: float) -> None:
        _numpy()  # fail here, with what to install, rather than at the first chunk
        name = next((a for a in DISTANCE_ALGORITHMS if a.startswith(algorithm.lower()[:2])), None)
        if name is None or len(algorithm) < 2:
            raise ConfigError(f"-E {algorithm!r}: choose one of {', '.join(DISTANCE_ALGORITHMS)}")
        if score < 0 or (name == "jaccard" and score > 1):
            raise ConfigError(f"-D {score}: a {name} distance is {'0..1' if name == 'jaccard' else '>= 0'}")
        self.algorithm = name
        self.needles = [n.encode("utf-8", "surrogateescape") for n in needles if n]
        if not self.needles:
            raise ConfigError("-E needs at least one non-empty -e STRING to compare with")
        self.score = score
        self.keep = max(len(n) for n in self.needles) - 1  # a window open at a chunk's end
        self.context = 0
        self._distance = self._scorer(name)

    @staticmethod
    def _scorer(name: str) -> Callable[[bytes, np.ndarray, bytes, float], np.ndarray]:
        import numpy as np  # there: DistanceMatcher() checked it (_numpy)
        if name == "hamming":
            return lambda _b, windows, needle, _s: (windows != np.frombuffer(needle, np.uint8)).sum(axis=1)
        if name == "jaccard":
            return lambda _b, windows, needle, _s: _jaccard_distances(
                windows, np.unique(np.frombuffer(needle, np.uint8))
            )
        try:
            from rapidfuzz import process
            from rapidfuzz.distance import DamerauLevenshtein, Levenshtein
        except ImportError:
            raise ConfigError(f"-E {name} needs rapidfuzz: pip install numpy rapidfuzz (the 'grep' extra)") from None
        scorer: Any = Levenshtein.distance if name == "levenshtein" else DamerauLevenshtein.distance

        def edits(buffer: bytes, windows: np.ndarray, needle: bytes, score: float) -> np.ndarray:
            m = len(needle)
            slices = [buffer[i : i + m] for i in range(len(windows))]
            cutoff = int(score)
            found: np.ndarray = process.cdist([needle], slices, scorer=scorer, score_cutoff=cutoff, dtype=np.int32)[0]
            return found

        return edits

    def search(self, buffer: bytes, start: int, final: bool) -> tuple[int, int, str] | None:
        """The first settled match from `start` in `buffer`: (start, end, pattern), or None."""
        import numpy as np  # there: DistanceMatcher() checked it (_numpy)
        data = np.frombuffer(buffer, np.uint8)
        for needle in self.needles:
            m = len(needle)
            for low in range(start, len(buffer) - m + 1, _WINDOWS_PER_CALL):
                high = min(low + _WINDOWS_PER_CALL, len(buffer) - m + 1)
                windows = np.lib.stride_tricks.sliding_window_view(data[low : high + m - 1], m)
                distances = self._distance(buffer[low : high + m - 1], windows, needle, self.score)
                hits = np.flatnonzero(distances <= self.score)
                if hits.size:
                    at = low + int(hits[0])
                    return at, at + m, f"{self.algorithm}<={self.score:g}:{needle.decode('utf-8', 'replace')}"
        return None


Matcher = RegexMatcher | DistanceMatcher


class StreamScanner:
    """One direction of one stream: feed chunks in stream order, then finish() at its end; each
    returns the first settled Match (None once one was returned: a stream matches once).

    The kept tail begins with `context` bytes that only decide ^, \\b and lookbehinds; matches are
    searched from just after them."""

    __slots__ = ("context", "context_bytes", "keep", "matchers", "next_offset", "tail")

    def __init__(self, matchers: Sequence[Matcher]) -> None:
        self.matchers = matchers
        self.keep = max((m.keep for m in matchers), default=0)
        self.context_bytes = max((m.context for m in matchers), default=0)
        self.tail = b""
        self.context = 0
        self.next_offset = 0

    def feed(self, offset: int, data: bytes) -> Match | None:
        """Adds `data`, found at byte `offset` of the stream (a gap restarts the search); the first
        match it completes, or None."""
        if offset != self.next_offset:  # a hole: nothing matches across missing bytes
            self.tail, self.context = b"", 0
        buffer = self.tail + data if self.tail else data
        self.next_offset = offset + len(data)
        found = self._search(buffer, offset - len(self.tail), final=False)
        if len(buffer) > self.keep + self.context_bytes:
            self.tail, self.context = buffer[len(buffer) - self.keep - self.context_bytes :], self.context_bytes
        else:
            self.tail = buffer  # self.context unchanged: the buffer starts where the old tail did
        return found

    def finish(self) -> Match | None:
        """The stream ended: a match waiting for what would follow it is settled now."""
        found = self._search(self.tail, self.next_offset - len(self.tail), final=True) if self.tail else None
        self.tail = b""
        return found

    def _search(self, buffer: bytes, base: int, final: bool) -> Match | None:
        return _first_match(self.matchers, buffer, self.context, final, base)


def _first_match(matchers: Sequence[Matcher], buffer: bytes, start: int, final: bool, base: int) -> Match | None:
    """The first matcher's match in buffer from start on; base: the stream offset of buffer[0]."""
    for matcher in matchers:
        found = matcher.search(buffer, start, final)
        if found is not None:
            begin, end, pattern = found
            return Match(base + begin, base + end, buffer[begin:end], pattern)
    return None


def search_datagrams(matchers: Sequence[Matcher], data: bytes, lengths: Sequence[int], base: int = 0) -> Match | None:
    """Datagrams (UDP) match one by one, never across two. One search over them all decides when
    no pattern has anchors and no match straddles two datagrams; otherwise each is searched alone.
    base: the offset of data[0] among the direction's datagram bytes."""
    edges = [0]
    for length in lengths:
        edges.append(edges[-1] + length)
    if not any(m.anchored for m in matchers):
        found = _first_match(matchers, data, 0, True, base)
        if found is None:
            return None
        index = bisect.bisect_right(edges, found.start - base) - 1
        if found.end - base <= edges[index + 1]:
            return found
    for begin, end in itertools.pairwise(edges):
        found = _first_match(matchers, data[begin:end], 0, True, base + begin)
        if found is not None:
            return found
    return None

