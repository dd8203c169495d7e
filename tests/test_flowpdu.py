"""pyflowtools' FlowPDU shape on aioflow's PDU: header fields, ordering between one exporter's PDUs
(sequence wrap-around included), FlowSet.write_pdu; and softflowd's real export of a capture
written by aioflow equal to the file flow-capture wrote from the same softflowd run."""

from __future__ import annotations

import io
import itertools
import re
import struct

import pytest
from support.corpus import ABSENT, CORPUS
from support.flowtools_ref import BUNDLED, SHARED
from support.softflowd import SOFTFLOWD, softflowd_datagrams

import aioflow
from aioflow.netflow import FlowPDU, FlowSet
from aioflow.netflow.collect import Decoder

EXPORTER = "192.0.2.7"


def v5(seq: int, count: int, *, uptime: int = 10_000, secs: int = 1_700_000_000, nsecs: int = 250_000_000,
       engine: tuple[int, int] = (1, 2), sampling: int = 0x4064) -> bytes:  # fmt: skip
    header = struct.pack("!HHIIIIBBH", 5, count, uptime, secs, nsecs, seq, *engine, sampling)
    records = b"".join(
        struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 0, 0, i + 1]), bytes([10, 0, 1, 1]), bytes(4), 3, 4,
                    i + 1, 100 * (i + 1), 9_000, 9_750, 1000 + i, 80, 0, 0x1B, 6, 0x10, 64512, 65001, 24, 16, 0)
        for i in range(count)
    )  # fmt: skip
    return header + records


def test_flowpdu_header_fields_v5() -> None:
    pdu = FlowPDU(EXPORTER, v5(41, 3), decoder=Decoder())
    assert (pdu.version, pdu.count, len(pdu), pdu.sysUpTime, pdu.unix_secs, pdu.unix_nsecs) == (
        5, 3, 3, 10_000, 1_700_000_000, 250_000_000)  # fmt: skip
    assert (pdu.flow_sequence, pdu.engine_type, pdu.engine_id, pdu.sampling_interval) == (41, 1, 2, 0x64)
    r = list(pdu)[2]
    assert (r.srcaddr, r.dstaddr, r.srcport, r.dstport, r.prot, r.tos, r.tcp_flags) == (
        "10.0.0.3", "10.0.1.1", 1002, 80, 6, 0x10, 0x1B)  # fmt: skip
    assert (r.unix_secs, r.unix_nsecs, r.sysUpTime, r.engine_type, r.engine_id, r.exaddr) == (
        1_700_000_000, 250_000_000, 10_000, 1, 2, EXPORTER)  # fmt: skip
    # flow-tools' time: export ms (…000.250) - uptime 10 s + First 9 s
    assert (r.first, r.last) == (1_699_999_999.25, 1_700_000_000.0)
    assert (r.first_raw, r.last_raw, r.src_as, r.dst_as, r.src_mask, r.dst_mask) == (9000, 9750, 64512, 65001, 24, 16)


def test_flowpdu_is_pyflowtools_constructor_and_raises_typed() -> None:
    with pytest.raises(aioflow.MalformedPDUError):
        FlowPDU(EXPORTER, b"\x00\x05\x00")


def test_pdu_order_and_is_next_with_wrap_around() -> None:
    d = Decoder()
    a = FlowPDU(EXPORTER, v5(2**32 - 2, 2), decoder=d)  # sequence wraps to 0 after it
    b = FlowPDU(EXPORTER, v5(0, 1), decoder=d)
    c = FlowPDU(EXPORTER, v5(5, 1), decoder=d)
    assert b.is_next(a) and not c.is_next(b)
    assert a < b < c and c > a and sorted([c, a, b]) == [a, b, c]
    other = FlowPDU("192.0.2.8", v5(1, 1), decoder=d)
    with pytest.raises(ValueError, match="one exporter"):
        _ = other < a


def test_v9_and_ipfix_headers() -> None:
    # a v9 datagram with one template and one data record; IPFIX with the same
    template = struct.pack("!HHHH", 0, 16, 256, 2) + struct.pack("!HHHH", 8, 4, 2, 4)
    data = struct.pack("!HH4sI", 256, 12, bytes([10, 0, 0, 1]), 7)
    v9 = struct.pack("!HHIIII", 9, 2, 5_000, 1_700_000_000, 77, 9) + template + data
    pdu = FlowPDU(EXPORTER, v9, decoder=Decoder())
    assert (pdu.version, pdu.count, pdu.sysUpTime, pdu.unix_secs, pdu.flow_sequence, pdu.observation_domain) == (
        9, 2, 5_000, 1_700_000_000, 77, 9)  # fmt: skip
    assert (pdu.engine_type, pdu.sampling_interval, len(pdu)) == (None, None, 1)
    ipfix_template = struct.pack("!HHHH", 2, 16, 256, 2) + struct.pack("!HHHH", 8, 4, 2, 4)
    body = ipfix_template + data
    ipfix = struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_001, 2**32 - 1, 3) + body
    p1 = FlowPDU(EXPORTER, ipfix, decoder=(d := Decoder()))
    p2 = FlowPDU(EXPORTER, ipfix[:8] + struct.pack("!I", 0) + ipfix[12:], decoder=d)
    assert (p1.version, p1.sysUpTime, p1.unix_secs) == (10, None, 1_700_000_001)
    assert p2.is_next(p1) and p1 < p2


def test_write_pdu_round_trip() -> None:
    out = io.BytesIO()
    pdus = [FlowPDU(EXPORTER, v5(seq, 3), decoder=Decoder()) for seq in (0, 3)]
    with FlowSet(out, "w", version=5, compress=True) as fs:
        for pdu in pdus:
            fs.write_pdu(pdu)
    got = list(FlowSet(io.BytesIO(out.getvalue())))
    want = [r for pdu in pdus for r in pdu]
    names = ("srcaddr", "dstaddr", "nexthop", "exaddr", "srcport", "dstport", "prot", "tos", "tcp_flags", "dPkts",
             "dOctets", "first", "last", "first_raw", "last_raw", "input", "output", "src_as", "dst_as", "src_mask",
             "dst_mask", "engine_type", "engine_id", "unix_secs", "unix_nsecs", "sysUpTime")  # fmt: skip
    assert [[getattr(r, n) for n in names] for r in got] == [[getattr(r, n) for n in names] for r in want]
    assert [r.getID(bidir=True) for r in got] == [r.getID(bidir=True) for r in want]


def _v9(template_id: int, fields: list[tuple[int, int]], records: list[bytes], seq: int = 0) -> bytes:
    tpl = struct.pack("!HH", template_id, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    data = b"".join(records)
    sets = struct.pack("!HH", 0, 4 + len(tpl)) + tpl + struct.pack("!HH", template_id, 4 + len(data)) + data
    return struct.pack("!HHIIII", 9, 1 + len(records), 10_000, 1_700_000_000, seq, 0) + sets


def _written(pdu: FlowPDU, per_record: bool) -> tuple[list[list[object]], int]:
    out = io.BytesIO()
    with FlowSet(out, "w", version=5, compress=False) as fs:
        if per_record:
            for record in pdu:
                fs.write(record)
        else:
            fs.write_pdu(pdu)
        skipped = fs.skipped_ipv6
    names = ("srcaddr", "dstaddr", "srcport", "dstport", "prot", "dPkts", "dOctets", "first_raw", "last_raw",
             "unix_secs", "unix_nsecs", "sysUpTime", "exaddr")  # fmt: skip
    return [[getattr(r, n) for n in names] for r in FlowSet(io.BytesIO(out.getvalue()))], skipped


def test_write_pdu_resolves_fields_per_record() -> None:
    """write_pdu writes a data set column-wise as write() writes each record: fields the template
    carries under another name (packetTotalCount, udpSourcePort, ...) per record, not the first
    record's value for all; IPv6 records skipped and counted, not written as IPv4; IPFIX's absolute
    times anchored as write() anchors them."""
    fields = [(8, 4), (12, 4), (180, 2), (181, 2), (4, 1), (86, 8), (85, 8), (22, 4), (21, 4)]
    rows = [struct.pack("!4s4sHHBQQII", bytes([10, 0, 0, i + 1]), bytes([10, 0, 1, 1]), 5000 + i, 53, 17, i + 1,
                        100 * (i + 1), 9_000 + i, 9_750 + i) for i in range(3)]  # fmt: skip
    pdu = FlowPDU(EXPORTER, _v9(256, fields, rows), decoder=Decoder())
    got, skipped = _written(pdu, per_record=False)
    assert (got, skipped) == _written(pdu, per_record=True)
    assert [r[:9] for r in got] == [[f"10.0.0.{i + 1}", "10.0.1.1", 5000 + i, 53, 17, i + 1, 100 * (i + 1),
                                     9_000 + i, 9_750 + i] for i in range(3)]  # fmt: skip
    assert got[0][9:] == [1_700_000_000, 0, 10_000, EXPORTER]

    v6 = [struct.pack("!16s16sII", bytes(15) + bytes([i + 1]), bytes(15) + b"\x09", i + 1, 100) for i in range(2)]
    pdu6 = FlowPDU(EXPORTER, _v9(257, [(27, 16), (28, 16), (2, 4), (1, 4)], v6), decoder=Decoder())
    assert _written(pdu6, per_record=False) == _written(pdu6, per_record=True) == ([], 2)

    ms = 1_700_000_000_123  # IPFIX flowStart/EndMilliseconds: no uptime anywhere
    body = struct.pack("!HHHHHHHHHHHH", 2, 24, 300, 4, 8, 4, 2, 4, 152, 8, 153, 8)
    data = b"".join(struct.pack("!4sIQQ", bytes([10, 0, 0, i + 1]), i + 1, ms - 1500 * i, ms + 250) for i in range(2))
    body += struct.pack("!HH", 300, 4 + len(data)) + data
    ipfix = FlowPDU(EXPORTER, struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_001, 0, 0) + body,
                    decoder=Decoder())  # fmt: skip
    got, _ = _written(ipfix, per_record=False)
    assert got == _written(ipfix, per_record=True)[0]
    written = list(FlowSet(io.BytesIO(_write_pdus([ipfix]))))
    assert [(r.first, r.last) for r in written] == [((ms - 1500 * i) / 1000, (ms + 250) / 1000) for i in range(2)]


def _write_pdus(pdus: list[FlowPDU]) -> bytes:
    out = io.BytesIO()
    with FlowSet(out, "w", version=5, compress=False) as fs:
        for pdu in pdus:
            fs.write_pdu(pdu)
    return out.getvalue()


def test_get_id_as_pyflowtools() -> None:
    (r,) = FlowPDU(EXPORTER, v5(0, 1), decoder=Decoder())
    src = bytes([1, 0, 0, 10]) + struct.pack("<HH", 1000, 3)  # host (little-endian) order, as pyflowtools on x86
    dst = bytes([1, 1, 0, 10]) + struct.pack("<HH", 80, 4)
    assert r.getID() == src + dst + b"\x06\x00"
    assert r.getID(bidir=True) == src + dst + b"\x06\x00"  # memcmp(src, dst) < 0 keeps the order
    assert len(r.getID()) == 18


@pytest.mark.skipif(not SOFTFLOWD, reason="softflowd is not installed (apt install softflowd): it is the peer")
def test_softflowd_export_written_equals_flow_capture_file() -> None:
    """softflowd -a on ndpi_sites.pcapng, as when the reference file was made: the datagrams, parsed
    as FlowPDUs and written by FlowSet.write_pdu, hold the records flow-capture wrote (every field),
    and softflowd's own summary (.softflowd.txt: 115 records in 4 packets) matches."""
    capture = CORPUS / "ndpi_sites.pcapng"
    if not capture.is_file():
        pytest.skip(ABSENT)
    datagrams = softflowd_datagrams(capture, 5, ("-a",))
    summary = SHARED / "capture-softflowd-v5.ft.softflowd.txt"
    if summary.is_file():
        m = re.search(r"Flows exported: \d+ \((\d+) records\) in (\d+) packets", summary.read_text())
        assert m is not None and (len(datagrams), int(m[1])) == (int(m[2]), 115)
    decoder = Decoder()
    pdus = [FlowPDU(("127.0.0.1", 9995), d, decoder=decoder) for d in datagrams]
    assert all(b.is_next(a) and a < b for a, b in itertools.pairwise(pdus))
    assert sum(p.count for p in pdus) == 115
    out = io.BytesIO()
    with FlowSet(out, "w", version=5, compress=True) as fs:
        for pdu in pdus:
            fs.write_pdu(pdu)
    ours = FlowSet(io.BytesIO(out.getvalue()))
    reference = FlowSet(BUNDLED / "capture-softflowd-v5.ft")
    assert ours.flow_count == reference.flow_count == 115
    assert [r.to_dict() for r in ours] == [r.to_dict() for r in reference]
