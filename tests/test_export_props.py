"""Properties of the encoders over random flow records (hypothesis): whatever the records and the
MTU, every message fits, its lengths add up, no record is lost or invented, sequence numbers
follow the RFCs, and v5/v9's sysUptime-relative times give back the exact milliseconds when a
collector applies the textbook formula (header time - sysUptime + FIRST, no wrap handling), even
for records spread over a century."""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aioflow._frame import RECORD_DTYPE
from aioflow.netflow._encode import encoder_for

YEAR_NS = 365 * 86_400 * 10**9
Y2000_NS = 946_684_800 * 10**9


def random_records(seed: int, n: int, span_years: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rec = np.zeros(n, dtype=RECORD_DTYPE)
    rec["ip_version"] = rng.choice([4, 6], n)
    rec["protocol"] = rng.choice([1, 6, 17, 58, 132], n)
    rec["src_ip"] = rng.integers(0, 256, (n, 16))
    rec["dst_ip"] = rng.integers(0, 256, (n, 16))
    rec["src_port"], rec["dst_port"] = rng.integers(0, 65536, n), rng.integers(0, 65536, n)
    rec["vlan_id"] = rng.integers(0, 4096, n)
    start = Y2000_NS + rng.integers(0, span_years * YEAR_NS + 1, n, dtype=np.int64)
    for d in ("src2dst", "dst2src"):
        packets = rng.integers(0, 3, n) * rng.integers(1, 2**40, n)  # a third of directions saw nothing
        rec[f"{d}_packets"] = packets
        rec[f"{d}_bytes"] = packets * rng.integers(20, 1500, n)
        first = start + rng.integers(0, 10**12, n)  # within ~17 minutes of the flow's start
        rec[f"{d}_first_ns"] = first
        rec[f"{d}_last_ns"] = first + rng.integers(0, 86_400 * 10**9, n)  # up to a day long
        rec[f"{d}_tcp_flags"] = rng.integers(0, 256, n)
    rec["first_ns"] = np.minimum(rec["src2dst_first_ns"], rec["dst2src_first_ns"])
    rec["last_ns"] = np.maximum(rec["src2dst_last_ns"], rec["dst2src_last_ns"])
    rec["end_reason"] = rng.integers(0, 8, n)
    return rec


def expected_times(fmt: str, rec: np.ndarray) -> Counter[tuple[int, int]]:
    want: Counter[tuple[int, int]] = Counter()
    for r in rec:
        if fmt == "v5" and r["ip_version"] != 4:
            continue
        for d in ("src2dst", "dst2src"):
            if r[f"{d}_packets"]:
                want[(int(r[f"{d}_first_ns"]) // 10**6, int(r[f"{d}_last_ns"]) // 10**6)] += 1
    return want


def v9_template_offsets(body: bytes) -> dict[int, tuple[int, dict[int, tuple[int, int]]]]:
    """template id -> (record length, {field type: (offset, length)}) from a v9 template FlowSet."""
    out = {}
    offset = 0
    while offset + 4 <= len(body):
        template_id, count = struct.unpack_from("!HH", body, offset)
        offset += 4
        fields, position = {}, 0
        for _ in range(count):
            kind, length = struct.unpack_from("!HH", body, offset)
            fields[kind] = (position, length)
            position += length
            offset += 4
        out[template_id] = (position, fields)
    return out


def decode_times(fmt: str, messages: list[bytes]) -> tuple[Counter[tuple[int, int]], int]:
    """(first ms, last ms) of every record by the textbook collector formula, and the record count."""
    got: Counter[tuple[int, int]] = Counter()
    templates: dict[int, tuple[int, dict[int, tuple[int, int]]]] = {}
    for m in messages:
        if fmt == "v5":
            _, count, uptime, secs, nsecs = struct.unpack_from("!HHIII", m)
            boot_ms = secs * 1000 + nsecs // 10**6 - uptime
            for i in range(count):
                first, last = struct.unpack_from("!II", m, 24 + 48 * i + 24)
                got[(boot_ms + first, boot_ms + last)] += 1
            continue
        _, count, uptime, secs = struct.unpack_from("!HHII", m)
        boot_ms = secs * 1000 - uptime
        offset = 20
        while offset < len(m):
            set_id, length = struct.unpack_from("!HH", m, offset)
            body = m[offset + 4 : offset + length]
            if set_id == 0:
                templates.update(v9_template_offsets(body))
            else:
                size, fields = templates[set_id]  # templates come before their data
                for i in range(len(body) // size):
                    first = int.from_bytes(body[i * size + fields[22][0] :][:4], "big")
                    last = int.from_bytes(body[i * size + fields[21][0] :][:4], "big")
                    got[(boot_ms + first, boot_ms + last)] += 1
            offset += length
    return got, sum(got.values())


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(["v5", "v9", "ipfix"]),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    mtu=st.integers(256, 9000),
    span_years=st.sampled_from([0, 1, 100]),
    batches=st.integers(1, 4),
)
def test_messages_fit_and_carry_every_record(fmt: str, seed: int, n: int, mtu: int, span_years: int,
                                             batches: int) -> None:  # fmt: skip
    rec = random_records(seed, n, span_years)
    options = {"mtu": mtu} if fmt == "v5" else {"mtu": mtu, "template_refresh_packets": 3}
    encoder = encoder_for(fmt, **options)
    messages = [m for part in np.array_split(rec, batches) for m in encoder.encode(part)]
    assert all(len(m) <= mtu for m in messages)
    expected_records = (
        len(rec) if fmt == "ipfix" else sum(expected_times(fmt, rec).values())
    )
    assert encoder.stats.records == expected_records
    assert encoder.stats.messages == len(messages)
    sequence = 0
    for i, m in enumerate(messages):
        version = struct.unpack_from("!H", m)[0]
        if fmt == "v5":
            count, seq = struct.unpack_from("!H", m, 2)[0], struct.unpack_from("!I", m, 16)[0]
            assert (version, seq, len(m)) == (5, sequence, 24 + 48 * count)
            sequence += count
        elif fmt == "v9":
            assert (version, struct.unpack_from("!I", m, 12)[0]) == (9, i)
        else:
            length, seq = struct.unpack_from("!HHI", m)[1], struct.unpack_from("!I", m, 8)[0]
            assert (version, length, seq) == (10, len(m), sequence & 0xFFFFFFFF)
            data_id, data_length = struct.unpack_from("!HH", m, len(m) - data_length_of(m))
            sequence += (data_length - 4) // (74 if data_id == 256 else 98)
    if fmt != "ipfix":
        got, count = decode_times(fmt, messages)
        assert count == expected_records
        assert got == expected_times(fmt, rec)


def data_length_of(m: bytes) -> int:
    """The length of an IPFIX message's last set (its data set), walking the sets from the header."""
    offset, last = 16, 0
    while offset < len(m):
        last = struct.unpack_from("!H", m, offset + 2)[0]
        offset += last
    assert offset == len(m)
    return last
