"""The streaming matchers of `aioflow grep` against the plain answer: the same regex (or a naive
window-by-window distance) over the whole stream at once. Chunking must never change the first
match, whatever the chunk boundaries."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from rapidfuzz.distance import DamerauLevenshtein, Hamming, Levenshtein

from aioflow._errors import ConfigError
from aioflow.grep._match import DistanceMatcher, RegexMatcher, StreamScanner, compile_patterns, longest_match

ALPHABET = b"ab\n xyPASWORD"


def chunked(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(0, 12)))) if len(data) > 1 else []
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def first_streamed(matcher: RegexMatcher | DistanceMatcher, chunks: list[bytes]) -> tuple[int, int] | None:
    scanner = StreamScanner([matcher])
    offset = 0
    for chunk in chunks:
        found = scanner.feed(offset, chunk)
        if found is not None:
            return found.start, found.end
        offset += len(chunk)
    found = scanner.finish()
    return None if found is None else (found.start, found.end)


@pytest.mark.parametrize(
    ("pattern", "plant"),
    [
        (r"PASSWORD", b"PASSWORD"),
        (r"^ab", b"\nab"),
        (r"a\nb", b"a\nb"),
        (r"x{2,5}y", b"xxxy"),
        (r"\bxy\b", b" xy "),
        (r"(?:ab|ba)+x", b"ababx"),
        (r"P.S", b"PAS"),
        (r"[xy]{3}$", b"xyx\n"),
        (r"(?<=ab)x(?=yz)", b"abxyz"),
        (r"P\w+D\b", b"PASSWORD "),
        (r"a.*b", b"a  b"),
    ],
)
def test_streamed_matches_agree_with_the_whole_stream(pattern: str, plant: bytes) -> None:
    """Chunked or not, a stream matches or not alike; the streamed match is found as soon as
    data completes one (not always the leftmost one), and it is a real match in the whole stream."""
    rng = random.Random(pattern)
    (compiled,) = compile_patterns([pattern], ignore_case=False)
    matcher = RegexMatcher([compiled], span=64)
    outcomes = {True: 0, False: 0}
    for _ in range(400):
        data = bytearray(rng.choice(ALPHABET) for _ in range(rng.randint(1, 120)))
        if rng.random() < 0.5:
            at = rng.randrange(len(data) + 1)
            data[at:at] = plant
        data = bytes(data)
        expected = compiled.search(data)
        if expected is not None and longest_match(compiled) is None and expected.end() - expected.start() > 64:
            continue  # unbounded and longer than the span: only promised within one chunk
        got = first_streamed(matcher, chunked(data, rng))
        outcomes[expected is not None] += 1
        assert (got is None) == (expected is None), (data, got, expected)
        if got is not None:
            assert compiled.match(data, got[0]) is not None, (data, got)
            assert got[0] >= expected.start()
    assert min(outcomes.values()) > 20  # both outcomes were exercised


def test_a_hole_breaks_a_match() -> None:
    (compiled,) = compile_patterns(["PASSWORD"], ignore_case=False)
    scanner = StreamScanner([RegexMatcher([compiled])])
    assert scanner.feed(0, b"xxPASS") is None
    assert scanner.feed(10, b"WORD") is None  # bytes 6..9 were never seen
    assert scanner.feed(14, b"PASSWORD") is not None


def test_ignore_case_and_longest_match() -> None:
    (compiled,) = compile_patterns(["host: [a-z]{1,10}"], ignore_case=True)
    assert longest_match(compiled) == 16
    assert compiled.search(b"HOST: ABC")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        compile_patterns(["(unclosed"], ignore_case=False)


def naive_distance(algorithm: str, window: bytes, needle: bytes) -> float:
    if algorithm == "levenshtein":
        return Levenshtein.distance(window, needle)
    if algorithm == "damerau":
        return DamerauLevenshtein.distance(window, needle)
    if algorithm == "hamming":
        return Hamming.distance(window, needle)
    a, b = set(window), set(needle)
    return 1 - len(a & b) / len(a | b)


@pytest.mark.parametrize(("algorithm", "score"), [("levenshtein", 1), ("damerau", 1), ("hamming", 1), ("jaccard", 0.2)])
def test_distance_matching_equals_a_naive_window_scan(algorithm: str, score: float) -> None:
    rng = random.Random(algorithm)
    needle = b"PASSWORD"
    matcher = DistanceMatcher(algorithm, [needle.decode()], score)
    found = 0
    for _ in range(150):
        data = bytearray(rng.choice(ALPHABET) for _ in range(rng.randint(8, 60)))
        if rng.random() < 0.5:  # plant a near copy of the needle
            near = bytearray(needle)
            near[rng.randrange(len(near))] = rng.choice(ALPHABET)
            at = rng.randrange(len(data) - len(near) + 1)
            data[at : at + len(near)] = near
        data = bytes(data)
        windows = [data[i : i + len(needle)] for i in range(len(data) - len(needle) + 1)]
        expected = next((i for i, w in enumerate(windows) if naive_distance(algorithm, w, needle) <= score), None)
        got = first_streamed(matcher, chunked(data, rng))
        assert (got[0] if got else None) == expected, (data, got, expected)
        found += expected is not None
    assert 20 < found < 140


def test_distance_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        DistanceMatcher("soundex", ["x"], 1)
    with pytest.raises(ConfigError, match=r"0\.\.1"):
        DistanceMatcher("jaccard", ["x"], 2)
    with pytest.raises(ConfigError, match="-e STRING"):
        DistanceMatcher("lev", [], 1)
    assert DistanceMatcher("LEV", ["abc"], 0).algorithm == "levenshtein"


def test_patterns_are_bytes_regexes() -> None:
    (compiled,) = compile_patterns([r"\x00\xff"], ignore_case=False)
    assert isinstance(compiled, re.Pattern) and compiled.search(b"a\x00\xffb")


def test_datagrams_match_one_by_one() -> None:
    from aioflow.grep._match import search_datagrams

    (plain,) = compile_patterns(["PASSWORD"], ignore_case=False)
    (anchored,) = compile_patterns(["WORD$"], ignore_case=False)
    data, lengths = b"xxPASSWORDyy" + b"PASS" + b"WORDzz", (12, 4, 6)
    found = search_datagrams([RegexMatcher([plain])], data, lengths)
    assert found is not None and (found.start, found.end) == (2, 10)
    # straddling two datagrams is no match; an anchor sees each datagram's own end
    assert search_datagrams([RegexMatcher([plain])], data[12:], lengths[1:]) is None
    found = search_datagrams([RegexMatcher([anchored])], b"WORDx" + b"aWORD", (5, 5))
    assert found is not None and found.start == 6


def test_forged_reset_is_a_valid_packet_for_an_independent_decoder() -> None:
    import dpkt

    from aioflow.grep._tcp_kill import rst_packet

    for src, dst, ip_class in (("10.0.0.1", "10.0.0.2", dpkt.ip.IP), ("2001:db8::1", "2001:db8::2", dpkt.ip6.IP6)):
        raw = rst_packet(src, 40000, dst, 80, 0xDEADBEEF)
        packet = ip_class(raw)
        tcp = packet.data
        assert isinstance(tcp, dpkt.tcp.TCP)
        assert (tcp.sport, tcp.dport, tcp.seq, tcp.flags) == (40000, 80, 0xDEADBEEF, dpkt.tcp.TH_RST)
        sent = tcp.sum
        tcp.sum = 0
        packet.data = tcp
        if ip_class is dpkt.ip.IP:
            packet.sum = 0
            packet.len = len(raw)
        assert ip_class(bytes(packet)).data.sum == sent  # dpkt recomputes the checksum on packing
