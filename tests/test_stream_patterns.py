"""FlowParser(stream_patterns=...): the C engine's Vectorscan search over reassembled streams.

The oracle is Python's re over each whole direction as the capture's sender wrote it (the
segments are crafted here, so the stream is known): a direction matches in the engine exactly
when re finds the pattern in it, whatever the segmentation and order; and the reported offsets
and text are re's bytes at those offsets."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.crafted import ACK, CLIENT, FIN, PSH, SERVER, SYN, ether, ip4, segment, split_session, udp, write

import aioflow
from aioflow import Flow, FlowParser, PatternUnsupportedError, StreamMatch, StreamPatterns
from aioflow._engine import stream_patterns_available

pytestmark = pytest.mark.skipif(
    not stream_patterns_available(),
    reason="aioflow was built without Vectorscan (apt-get install libvectorscan-dev, then make dev)",
)


def events(capture: Path, patterns: StreamPatterns, **options: Any) -> tuple[list[object], aioflow.ParserInfo]:
    async def run() -> tuple[list[object], aioflow.ParserInfo]:
        out: list[object] = []
        async with FlowParser(str(capture), reassemble=True, stream_patterns=patterns, **options) as parser:
            async for event in parser.stream_events(chunks=False):
                out.append(event)
        return out, parser.info()

    return anyio.run(run)


def matches(found: list[object]) -> list[StreamMatch]:
    return [e for e in found if isinstance(e, StreamMatch)]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
def test_a_match_split_across_segments_in_any_order(tmp_path: Path, order: list[int]) -> None:
    parts = [b"USER bob\r\nPASS", b"WO", b"RD hunter2\r\n"]
    capture = write(tmp_path, "split.pcap", split_session(parts, order))
    found, info = events(capture, StreamPatterns(client=[rb"PASSWORD \w+"], server=[rb"PASSWORD"]))
    (match,) = matches(found)
    assert (match.direction, match.start, match.end, match.data, match.partial) == ("client", 10, 26,
                                                                                      b"PASSWORD hunter2", False)
    assert match.pattern == rb"PASSWORD \w+" and match.pattern_index == 0
    # the match comes before its flow's record; TCP fields are there for -k
    assert isinstance(found[-1], Flow) and found.index(match) < len(found) - 1
    assert match.next_seq == 1000 + 1 + sum(map(len, parts)) and match.last_ack == 5001
    assert info.reassembly["stream_matches"] == 1 and info.reassembly["stream_match_memory"] == 0


def test_text_of_a_match_that_began_long_before_is_its_end(tmp_path: Path) -> None:
    capture = write(tmp_path, "long.pcap", split_session([b"BEGIN" + b"x" * 600, b"END."]))
    (match,) = matches(events(capture, StreamPatterns(client=[rb"BEGINx*END"]))[0])
    assert (match.start, match.end, match.partial) == (0, 608, True)
    # what is held: the last 224 bytes before the completing segment, then the segment's part
    assert match.data == b"x" * 224 + b"END"
    capture = write(tmp_path, "one.pcap", split_session([b"<" + b"y" * 700 + b">"]))
    (match,) = matches(events(capture, StreamPatterns(client=[rb"<y+>"]))[0])
    assert (match.start, match.end, match.partial, match.data) == (0, 702, True, b"<" + b"y" * 511)


def test_udp_datagrams_match_alone_with_offsets_among_their_bytes(tmp_path: Path) -> None:
    frames = [
        (1.0, ether(ip4(CLIENT, SERVER, 17, udp(5000, 53, b"xxPASS")))),
        (1.1, ether(ip4(CLIENT, SERVER, 17, udp(5000, 53, b"WORDxx")))),
        (1.2, ether(ip4(CLIENT, SERVER, 17, udp(5000, 53, b"^a PASSWORD")))),
        (2.0, ether(ip4(SERVER, CLIENT, 17, udp(53, 5000, b"PASSWORD")))),
    ]
    capture = write(tmp_path, "udp.pcap", frames)
    (match,) = matches(events(capture, StreamPatterns(client=[rb"PASSWORD$"]))[0])
    assert (match.start, match.end, match.data, match.next_seq) == (15, 23, b"PASSWORD", None)
    # ^ is the start of each datagram
    (match,) = matches(events(capture, StreamPatterns(client=[rb"^WORD"]))[0])
    assert match.start == 6


def test_end_anchored_matches_settle_when_the_flow_ends(tmp_path: Path) -> None:
    capture = write(tmp_path, "bye.pcap", split_session([b"hello\nsay bye"]))
    found = events(capture, StreamPatterns(client=[rb"bye$"]))[0]
    (match,) = matches(found)
    assert (match.start, match.data) == (10, b"bye") and found.index(match) == len(found) - 2
    # not at the end of a line: no match, whatever comes later
    assert matches(events(capture, StreamPatterns(client=[rb"say$"]))[0]) == []
    assert [m.start for m in matches(events(capture, StreamPatterns(client=[rb"^say"]))[0])] == [6]


def test_case_insensitive_and_both_sides(tmp_path: Path) -> None:
    capture = write(tmp_path, "c.pcap", split_session([b"Hello World"]))
    patterns = StreamPatterns(client=[rb"nothing", rb"world"], server=[rb"230 ok"], ignore_case=True)
    found = matches(events(capture, patterns)[0])
    # a flow reports its first match only: the client's came first
    assert [(m.direction, m.pattern_index, m.data) for m in found] == [("client", 1, b"World")]
    only_server = StreamPatterns(client=[rb"nothing"], server=[rb"230 ok"], ignore_case=True)
    assert [(m.direction, m.data) for m in matches(events(capture, only_server)[0])] == [("server", b"230 OK")]


def test_a_match_across_an_active_timeout_split_is_found(tmp_path: Path) -> None:
    """The search goes on across the records of a long flow; a matched flow matches again in the next."""
    c, s = 1000, 5000
    data = [(5.0, b"one PASS"), (7.0, b"WORD two PASSWORD"), (20.0, b" three"), (21.0, b" PASSWORD")]
    packets = [segment(1.0, CLIENT, 40000, SERVER, 80, SYN, c, 0),
               segment(1.1, SERVER, 80, CLIENT, 40000, SYN | ACK, s, c + 1)]  # fmt: skip
    seq = c + 1
    for t, payload in data:  # the first packet past the active timeout starts the next record
        packets.append(segment(t, CLIENT, 40000, SERVER, 80, PSH | ACK | (FIN if t == 21.0 else 0), seq, s + 1,
                               payload))  # fmt: skip
        seq += len(payload)
    capture = write(tmp_path, "long.pcap", packets)
    found = events(capture, StreamPatterns(client=[rb"PASSWORD"]), active_timeout=5)[0]
    shape = [("match", e.start) if isinstance(e, StreamMatch) else (e.end_reason, e.last_seen) for e in found]
    # record 1 ends with "PASS"; record 2 completes it (4..12); record 3 matches on its own
    assert shape == [("active", 5.0), ("match", 4), ("active", 7.0), ("match", 32), ("eof", 21.0)]


def test_bad_uses_raise_errors_that_say_what_to_do(tmp_path: Path) -> None:
    capture = write(tmp_path, "a.pcap", split_session([b"x"]))
    with pytest.raises(aioflow.ConfigError, match="reassemble=True"):
        FlowParser(str(capture), stream_patterns=StreamPatterns(client=[b"x"]))
    for pattern, message in [(rb"(a)\1", r"\(a\)\\1"), (rb"a*", "empty"), (b"a\0b", "NUL")]:
        with pytest.raises(PatternUnsupportedError, match=message):
            FlowParser(str(capture), reassemble=True, stream_patterns=StreamPatterns(client=[pattern]))


ALPHABET = b"ab\n"
PATTERNS = [rb"abba", rb"a\nb", rb"^b+a$", rb"(ab|ba){3}", rb"\bab", rb"b{4,}", rb"a[^a]*a\n"]


def _cut(stream: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 6))))
    return [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.binary(min_size=1, max_size=60).map(lambda b: bytes(ALPHABET[x % 3] for x in b)),
       pattern=st.sampled_from(PATTERNS), seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_the_engine_agrees_with_re_over_the_whole_stream(tmp_path: Path, stream: bytes, pattern: bytes,
                                                          seed: int) -> None:  # fmt: skip
    rng = random.Random(seed)
    parts = _cut(stream, rng)
    order = list(range(len(parts)))
    rng.shuffle(order)
    capture = write(tmp_path, f"p{seed}.pcap", split_session(parts, order))
    found = matches(events(capture, StreamPatterns(client=[pattern]))[0])
    expected = re.search(pattern, stream, re.MULTILINE)
    assert bool(found) == (expected is not None), (parts, order)
    if found:
        (match,) = found
        # the match reported ends first; its text is what the stream holds there
        assert stream[match.start : match.end] == match.data and re.fullmatch(pattern, match.data, re.MULTILINE)


def test_matches_gives_the_matches_alone(tmp_path: Path) -> None:
    capture = write(tmp_path, "m.pcap", split_session([b"USER bob\r\nPASS", b"WORD x"]) +
                    split_session([b"nothing"]))  # fmt: skip

    async def run() -> list[object]:
        async with FlowParser(str(capture), reassemble=True, keep_streams=False,
                              stream_patterns=StreamPatterns(client=[rb"PASSWORD"])) as parser:  # fmt: skip
            return [m async for m in parser.matches()]

    found = anyio.run(run)
    assert [(type(m).__name__, m.start) for m in found] == [("StreamMatch", 10)]  # type: ignore[attr-defined]

    async def without_patterns() -> None:
        async with FlowParser(str(capture), reassemble=True) as parser:
            parser.matches()

    with pytest.raises(aioflow.ConfigError, match="stream_patterns"):
        anyio.run(without_patterns)


def test_chunks_carry_no_matches(tmp_path: Path) -> None:
    """chunks() is the data alone, even when the parser has stream patterns."""
    capture = write(tmp_path, "c.pcap", split_session([b"USER bob\r\nPASSWORD x"]))

    async def run() -> list[object]:
        patterns = StreamPatterns(client=[rb"PASSWORD"])
        async with FlowParser(str(capture), reassemble=True, stream_patterns=patterns) as p:
            return [c async for c in p.chunks()]

    chunks = anyio.run(run)
    assert chunks and all(isinstance(c, aioflow.StreamChunk) for c in chunks)
    assert b"".join(c.data for c in chunks if c.direction == "client") == b"USER bob\r\nPASSWORD x"
