"""Live capture in a network of the test's own: a namespace joined to this one by a veth pair.
Real traffic crosses it (Python sockets, curl, ping) while aioflow and tcpdump both capture the
host end; the flows aioflow reports must match what tcpdump's capture holds."""

from __future__ import annotations

import collections
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from support import reference
from support.livenet import Net, http_get, pcap_records, udp_exchange
from support.tools import TOOL_ENV

import aioflow

pytestmark = pytest.mark.anyio

def key_of(proto: int, a: tuple[str, int], b: tuple[str, int]) -> tuple[int, frozenset[tuple[str, int]]]:
    return proto, frozenset((a, b))


async def capture_while(net: Net, traffic, ready, **options):  # type: ignore[no-untyped-def]
    """Runs traffic (a blocking function) while aioflow and tcpdump capture, until
    `await ready(parser, ended_flows)` says aioflow has seen what the test waits for; returns
    aioflow's ended flows, its info, and tcpdump's capture file. Each step waits for an event
    (tcpdump listening, aioflow's counts, tcpdump's file holding what aioflow read), not for a
    time; the deadlines only bound failures."""
    pcap = Path(f"/tmp/aioflow-live-{os.getpid()}.pcap")
    tcpdump = subprocess.Popen(  # noqa: ASYNC220 (starts it and returns; nothing waits)
        ["tcpdump", "-i", net.host_if, "-U", "-w", str(pcap), "-s", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=TOOL_ENV,
    )
    assert tcpdump.stderr is not None
    flows: list[aioflow.Flow] = []
    try:
        # tcpdump says "listening on IFACE" once its capture is open
        line = await anyio.to_thread.run_sync(tcpdump.stderr.readline)
        assert "listening on" in line, line
        async with aioflow.FlowParser(net.host_if, **options) as parser:
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    async for flow in parser.terminated():
                        flows.append(flow)

                tg.start_soon(consume)
                await anyio.to_thread.run_sync(traffic)
                with anyio.fail_after(30):
                    while not await ready(parser, flows):  # noqa: ASYNC110 (polling the engine's counts)
                        await anyio.sleep(0.05)
                parser.stop()
        info = parser.info()
        with anyio.fail_after(30):  # tcpdump's file holds every packet aioflow read
            while pcap_records(pcap) < info.packets:  # noqa: ASYNC110 (a file filling up: no event)
                await anyio.sleep(0.05)
    finally:
        tcpdump.send_signal(signal.SIGINT)
        await anyio.to_thread.run_sync(lambda: tcpdump.wait(timeout=10))
        tcpdump.stderr.close()
    return flows, info, pcap


async def one_tcp_flow_ended(parser: aioflow.FlowParser, flows: list[aioflow.Flow]) -> bool:
    return any(f.protocol == 6 for f in flows)


@pytest.mark.parametrize("workers", [1, 2])
async def test_flows_match_tcpdump_of_the_same_interface(net: Net, workers: int) -> None:
    """workers=2: two capture handles joined by PACKET_FANOUT, two flow tables; still every
    connection is one flow (none split between them) and the flows are tcpdump's."""
    udp_port = []

    def traffic() -> None:
        for _ in range(3):
            http_get(net.peer_ip)
        url = f"http://{net.peer_ip}:8080/"
        subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True, timeout=10, env=TOOL_ENV)
        udp_port.append(udp_exchange(net.peer_ip, 5))
        subprocess.run(["ping", "-c", "3", "-i", "0.2", net.peer_ip], check=True, capture_output=True, env=TOOL_ENV)

    async def seen(parser: aioflow.FlowParser, ended: list[aioflow.Flow]) -> bool:
        """The 4 TCP connections ended, the UDP exchange (5 + 5) and the pings (3 + 3) all read."""
        active = await parser.snapshot()
        return (sum(f.protocol == 6 for f in ended) >= 4
                and [f.packets for f in active if f.protocol == 17] == [10]
                and [f.packets for f in active if f.protocol == 1] == [6])  # fmt: skip

    flows, info, pcap = await capture_while(net, traffic, seen, fin_timeout=0.3, idle_timeout=30, workers=workers)
    try:
        expected = collections.Counter()
        expected_bytes = collections.Counter()
        for f in reference.reference_flows(pcap).flows:
            k = key_of(f.protocol, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))
            expected[k] += f.src2dst_packets + f.dst2src_packets
            expected_bytes[k] += f.src2dst_bytes + f.dst2src_bytes
        got = collections.Counter()
        got_bytes = collections.Counter()
        for f in flows:
            k = key_of(f.protocol, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))
            got[k] += f.packets
            got_bytes[k] += f.bytes
    finally:
        pcap.unlink(missing_ok=True)
    assert got == expected and got_bytes == expected_bytes
    tcp = [f for f in flows if f.protocol == 6]
    assert len(tcp) == 4 and all(f.end_reason == "fin" for f in tcp), [(f, f.end_reason) for f in tcp]
    assert all(f.src_ip == net.host_ip and f.dst_port == 8080 for f in tcp)
    assert len({f.key for f in tcp}) == 4, "each connection is one flow"
    udp = [f for f in flows if f.protocol == 17]
    assert [(f.src_port, f.src2dst_packets, f.dst2src_packets) for f in udp] == [(udp_port[0], 5, 5)]
    icmp = [f for f in flows if f.protocol == 1]
    assert len(icmp) == 1 and icmp[0].src2dst_packets == 3 and icmp[0].dst2src_packets == 3
    assert info.kernel_dropped == 0
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    assert len(info.workers) == workers, "the kernel refused PACKET_FANOUT"
    assert sum(w["flows_created"] for w in info.workers) == info.flows_created


async def test_rst_ends_a_flow(net: Net) -> None:
    def traffic() -> None:
        with pytest.raises(ConnectionRefusedError), socket.create_connection((net.peer_ip, 1), timeout=5):
            pass

    flows, _, pcap = await capture_while(net, traffic, one_tcp_flow_ended, fin_timeout=0.3)
    pcap.unlink(missing_ok=True)
    [flow] = [f for f in flows if f.protocol == 6]
    assert flow.end_reason == "rst" and flow.dst_port == 1
    assert (flow.src2dst_syn_packets, flow.dst2src_rst_packets) == (1, 1)


@pytest.mark.parametrize("workers", [1, 2])  # 2: each worker's own thread reaps on the wall clock
async def test_idle_udp_flow_ends_on_wall_clock_time(net: Net, workers: int) -> None:
    ended: list[tuple[float, aioflow.Flow]] = []
    async with aioflow.FlowParser(net.host_if, idle_timeout=0.6, filter="udp", workers=workers) as parser:
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for flow in parser.terminated():
                    ended.append((time.monotonic(), flow))

            tg.start_soon(consume)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"one and only", (net.peer_ip, 9999))
                sent = time.monotonic()
            # the flow must end with no further packet to wake the reader (the deadline only
            # bounds a failure; the flow's end is the event)
            with anyio.fail_after(30):
                while not ended:  # noqa: ASYNC110 (the list filling is the event)
                    await anyio.sleep(0.05)
            parser.stop()
    when, flow = ended[0]
    assert flow.end_reason == "idle" and flow.protocol == 17
    # the datagram and its echo, nothing after them: the wall clock ended the flow
    assert (flow.src2dst_packets, flow.dst2src_packets) == (1, 1)
    assert when - sent >= 0.6, "never before the idle timeout"


@pytest.mark.parametrize("workers", [1, 2])
async def test_find_flow_while_a_connection_is_open(net: Net, workers: int) -> None:
    async with aioflow.FlowParser(net.host_if, filter="tcp port 8080", workers=workers) as parser:
        await anyio.sleep(0.2)
        conn = socket.create_connection((net.peer_ip, 8080), timeout=5)
        try:
            local_port = conn.getsockname()[1]
            found = None
            with anyio.fail_after(5):
                while found is None or found.packets < 3:
                    await anyio.sleep(0.05)
                    found = await parser.find_flow(net.peer_ip, 8080, net.host_ip, local_port)
            assert found.src_ip == net.host_ip and found.src_port == local_port and found.end_reason == ""
            assert found.src2dst_syn_packets == 1 and found.dst2src_syn_packets == 1
        finally:
            conn.close()
        # stop() ends the open connection's flow at once: it does not wait for its timeouts
        # (fin 10 s, idle 120 s), which the deadline (a bound for a failure) separates
        with anyio.fail_after(5):
            parser.stop()
            flows = [f async for f in parser.terminated()]
    assert any(f.src_port == local_port for f in flows)


async def test_loopback_capture() -> None:
    if os.geteuid() != 0:
        pytest.skip("capturing on lo needs root (CAP_NET_RAW)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        async with aioflow.FlowParser("lo", filter=f"udp port {port}", idle_timeout=0.3) as parser:
            await anyio.sleep(0.2)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                for _ in range(4):
                    client.sendto(b"hello", ("127.0.0.1", port))
                client_port = client.getsockname()[1]
            with anyio.fail_after(5):
                flow = await parser.terminated().__anext__()
            parser.stop()
            await parser.wait()
    assert (flow.src_port, flow.dst_port, flow.packets, flow.end_reason) == (client_port, port, 4, "idle")


def test_unknown_interface_lists_the_real_ones() -> None:
    async def run() -> None:
        async with aioflow.FlowParser("nosuchif0"):
            pass

    with pytest.raises(aioflow.InterfaceNotFoundError) as caught:
        anyio.run(run)
    assert isinstance(caught.value, LookupError)
    assert "nosuchif0" in str(caught.value) and " lo" in str(caught.value)


def test_no_capture_permission_names_the_capability() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a child without CAP_NET_RAW")
    code = (
        "import anyio, aioflow\n"
        "async def run():\n"
        "    async with aioflow.FlowParser('lo'): pass\n"
        "try: anyio.run(run)\n"
        "except aioflow.CapturePermissionError as e: print('PERM', isinstance(e, PermissionError), e)\n"
    )
    proc = subprocess.run(["setpriv", "--bounding-set=-net_raw,-net_admin", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.startswith("PERM True"), proc.stdout + proc.stderr
    assert "CAP_NET_RAW" in proc.stdout


def test_privileges_are_dropped_once_the_capture_is_open(net: Net) -> None:
    code = (
        "import anyio, aioflow, os, socket\n"
        "async def run():\n"
        f"    async with aioflow.FlowParser({net.host_if!r}, user='nobody', filter='udp', idle_timeout=0.3) as p:\n"
        "        print('uid', os.getuid(), os.geteuid(), os.getgid(), flush=True)\n"
        "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"        s.sendto(b'x', ({net.peer_ip!r}, 9999))\n"
        "        f = await p.terminated().__anext__()\n"
        "        print('flow', f.protocol, f.dst_port, flush=True)\n"
        "        p.stop()\n"
        "anyio.run(run)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    nobody = subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout.strip()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"uid {nobody} {nobody} "), proc.stdout  # real and effective uid
    assert "flow 17 9999" in proc.stdout, "still capturing after the drop"


async def test_two_subscribers_both_see_every_live_flow(net: Net) -> None:
    got: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    async with aioflow.FlowParser(net.host_if, filter="udp port 9999", idle_timeout=0.3) as parser:
        streams = {"a": parser.terminated(), "b": parser.terminated()}

        async def consume(name: str) -> None:
            async for flow in streams[name]:
                got[name].append((flow.id, flow.src_port))
                if len(got[name]) == 3:
                    return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:  # ends when both consumers have 3 flows
                for name in streams:
                    tg.start_soon(consume, name)
                await anyio.sleep(0.2)
                ports = sorted([await anyio.to_thread.run_sync(udp_exchange, net.peer_ip, 2) for _ in range(3)])
        parser.stop()
    assert got["a"] == got["b"]
    assert sorted(port for _, port in got["a"]) == ports
    assert parser.info().flows_dropped == 0


async def test_cancelling_the_task_that_runs_a_parser_closes_it_promptly(net: Net) -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    parsers: list[aioflow.FlowParser] = []
    ended: list[aioflow.Flow] = []

    async def run() -> None:
        async with aioflow.FlowParser(net.host_if, on_tcp_end=ended.append) as parser:
            parsers.append(parser)
            async for _flow in parser.terminated():
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.sleep(0.3)
        await anyio.to_thread.run_sync(http_get, net.peer_ip)  # flows are open when the cancel comes
        with anyio.fail_after(2):
            while parsers[0].info().active_flows == 0:  # noqa: ASYNC110 (polling the engine, no event to wait on)
                await anyio.sleep(0.02)
        start = time.monotonic()
        tg.cancel_scope.cancel()
    # promptly: without waiting for the open flows' timeouts (fin 10 s, idle 120 s): cancelling
    # flushes them as ended by "stop", as stop() does (the time is a bound for a failure only)
    assert time.monotonic() - start < 5
    assert "stop" in {f.end_reason for f in ended}
    assert set(os.listdir("/proc/self/fd")) == fds_before, "the capture's descriptors were not all closed"
    with pytest.raises(RuntimeError, match="closed"):
        await parsers[0].find_flow(net.peer_ip, 8080, net.host_ip, 1)  # the engine is gone


async def test_live_reassembly_streams_and_chunks(net: Net) -> None:
    """A live HTTP exchange: the ended flow's streams are what the client sent and the server
    answered (the server's reply is known), and its chunks add up to them."""
    events: list[object] = []
    async with aioflow.FlowParser(net.host_if, filter="tcp port 8080", reassemble=True, fin_timeout=0.2) as parser:
        stream = parser.stream_events()

        async def consume() -> None:
            async for event in stream:
                events.append(event)
                if isinstance(event, aioflow.Flow):
                    return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.2)
                await anyio.to_thread.run_sync(http_get, net.peer_ip)
        parser.stop()
    flow = events[-1]
    assert isinstance(flow, aioflow.Flow)
    assert flow.client_stream == b"GET / HTTP/1.0\r\n\r\n"
    assert flow.server_stream == b"HTTP/1.0 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000
    assert flow.client_holes == flow.server_holes == ()
    chunks = [e for e in events if isinstance(e, aioflow.StreamChunk)]
    for direction, want in (("client", flow.client_stream), ("server", flow.server_stream)):
        assert b"".join(c.data for c in chunks if c.direction == direction) == want


# Sends argv[2] one-byte datagrams to argv[1]:9998 (no listener there: nothing comes back but
# ICMP, which the test's filter leaves out), as fast as Python can; prints the source port.
BURST = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))  # not connected: the ICMP errors would fail its sends
print(s.getsockname()[1], flush=True)
to = (sys.argv[1], 9998)
for _ in range(int(sys.argv[2])):
    s.sendto(b"x", to)
"""


async def test_a_burst_is_read_whole_and_stop_is_prompt_while_one_flows(net: Net) -> None:
    """While packets keep coming the reader pauses between reads instead of waiting on the fd:
    once a burst is over every datagram of it is in the flow (none left behind in the kernel ring,
    with no further packet to wake the reader), and stop() in the middle of a burst returns at once."""
    count = 30_000
    # room for the whole burst, so that a slow test machine cannot make the kernel drop any
    async with aioflow.FlowParser(net.host_if, filter="udp port 9998", buffer_size=16 << 20) as parser:
        await anyio.sleep(0.2)
        done = await anyio.run_process([sys.executable, "-c", BURST, net.peer_ip, str(count)])
        port = int(done.stdout)
        # no further packet comes to wake the reader: a burst left behind in the kernel ring would
        # never be counted (the deadline only bounds that failure)
        with anyio.fail_after(30):
            while parser.info().packets < count:  # noqa: ASYNC110 (counters, no event)
                await anyio.sleep(0.05)
        flow = await parser.find_flow(net.host_ip, port, net.peer_ip, 9998, "udp")
        info = parser.info()
        assert flow is not None and (flow.src2dst_packets, flow.dst2src_packets) == (count, 0)
        assert (info.kernel_received, info.kernel_dropped, info.packets) == (count, 0, count)

        async with await anyio.open_process([sys.executable, "-c", BURST, net.peer_ip, str(10**8)]) as sender:
            try:
                with anyio.fail_after(30):  # until the second burst is being read
                    while parser.info().packets <= count:  # noqa: ASYNC110 (counters, no event)
                        await anyio.sleep(0.05)
                parser.stop()
                await parser.wait()
                # stop() returned in the middle of the burst (10**8 datagrams take minutes): the
                # sender is still sending, and the reader stopped counting
                assert sender.returncode is None
                stopped_at = parser.info().packets
                await anyio.sleep(0.2)
                assert parser.info().packets == stopped_at
            finally:
                sender.kill()
    assert parser.info().packets > count


async def test_an_idle_interface_costs_no_cpu(net: Net) -> None:
    """No packet: the reader waits on the capture fd (and wakes only when a flow is due), it
    does not poll."""
    async with aioflow.FlowParser(net.host_if, filter="udp port 9998", idle_timeout=0.4) as parser:
        await anyio.sleep(0.2)
        cpu = time.thread_time()
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw  # each wake of the loop is one
        await anyio.sleep(1.0)
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - switches
        cpu = time.thread_time() - cpu
        parser.stop()
    assert cpu < 0.05, f"{cpu:.3f} s of CPU in 1 s on an idle interface: the reader is polling"
    # no flow exists, so nothing is due: besides this test's own sleep, the loop does not wake
    assert switches <= 3, f"{switches} wakes in 1 s on an idle interface: the reader is polling"


async def test_a_refused_fanout_leaves_one_handle_and_says_so(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fanout group the kernel will not let aioflow join (taken in another mode): one capture
    handle, one worker counting every flow, and a RuntimeWarning saying so."""
    packet_fanout, fanout_cpu, group = 18, 2, 4242  # linux/if_packet.h: PACKET_FANOUT, PACKET_FANOUT_CPU
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as other:
        other.bind((net.host_if, 0))
        other.setsockopt(263, packet_fanout, group | fanout_cpu << 16)  # SOL_PACKET
        monkeypatch.setenv("AIOFLOW_FANOUT_GROUP", str(group))
        with pytest.warns(RuntimeWarning, match="PACKET_FANOUT"):
            parser = aioflow.FlowParser(net.host_if, filter="udp", workers=2)
            await parser.__aenter__()
        try:
            assert len(parser.info().workers) == 1
            port = await anyio.to_thread.run_sync(lambda: udp_exchange(net.peer_ip, 3))
            with anyio.fail_after(10):  # the exchange, all 6 packets, in the one worker's flow
                found = None
                while found is None or found.packets < 6:
                    await anyio.sleep(0.05)
                    found = await parser.find_flow(net.host_ip, port, net.peer_ip, 9999, "udp")
        finally:
            parser.stop()
            await parser.__aexit__(None, None, None)
