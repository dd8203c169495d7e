"""Live-capture benchmark: aioflow and tcpdump capture the same flood of small UDP datagrams.

    sudo .venv/bin/python benchmarks/live.py                        # 10 s as fast as possible
    sudo .venv/bin/python benchmarks/live.py --rate 200000 --seconds 10
    sudo .venv/bin/python benchmarks/live.py --flows 50000 --idle-timeout 1 --churn 2

Two network namespaces of this run's own (sender, capture) are joined by a veth pair. In the
sender namespace udp_flood.c (compiled here on first use) writes 60-byte UDP frames with sendmmsg
on an AF_PACKET socket, round-robin over --flows source ports, for --seconds. In the capture
namespace, on the same interface and at the same time, run
  aioflow  a child Python process: `async with FlowParser(iface, buffer_size=B) as p: async for f
           in p.terminated()`, stopped (stop()) once the sender is done and --settle has passed;
           Engine.pump_some and Engine.expire (the calls that run C with the GIL released) are
           wrapped with time.thread_time() to split its CPU time into C and Python
  tcpdump  `tcpdump -i iface -B B/1024 -s SNAPLEN -w /dev/null`, stopped with SIGINT
with the same kernel buffer (--buffer-mb) and snapshot length. Printed: packets each saw, packets/s
over the sender's run, kernel and interface drops, CPU time, and aioflow's C/Python split. Needs
root. The namespaces go away at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_capture as mc  # sibling script, not a package: its compile_c builds the sender

HERE = mc.HERE
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the aioflow child (runs in the capture namespace) ---


def _process_cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


async def _child(iface: str, buffer_size: int, snaplen: int, idle_timeout: float) -> dict[str, Any]:
    import aioflow
    from aioflow import _engine

    # [C seconds, calls, calls that returned flows, longest call]; the wrapped calls hold no GIL and
    # run C (libpcap's ring, decode, table, the batch copy; also their few lines of Python glue), so
    # what is left of the CPU time is Python. The longest call is how long the event loop was blocked.
    acc: dict[str, list[float]] = {"pump_some": [0.0, 0, 0, 0.0], "expire": [0.0, 0, 0, 0.0], "select": [0.0, 0]}

    def timed(name: str, fn: Callable[[Any, Any], tuple[bool, Any]]) -> Callable[[Any, Any], tuple[bool, Any]]:
        slot = acc[name]

        def wrapper(self: Any, arg: Any) -> tuple[bool, Any]:
            t0 = time.thread_time()
            try:
                out = fn(self, arg)
            finally:
                spent = time.thread_time() - t0
                slot[0] += spent
                slot[1] += 1
                slot[3] = max(slot[3], spent)
            if out[1].count:
                slot[2] += 1
            return out

        return wrapper

    _engine.Engine.pump_some = timed("pump_some", _engine.Engine.pump_some)  # type: ignore[method-assign]
    _engine.Engine.expire = timed("expire", _engine.Engine.expire)  # type: ignore[method-assign]

    # Not C, but not interpreter work either: the event loop's epoll_wait (the kernel putting the
    # thread to sleep and waking it, ~0.1 ms per wait on this VM), shown apart from the Python share.
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    select = selector.select
    waits = acc["select"]

    def timed_select(timeout: float | None = None) -> Any:
        t0 = time.thread_time()
        try:
            return select(timeout)
        finally:
            waits[0] += time.thread_time() - t0
            waits[1] += 1

    selector.select = timed_select

    flows = 0
    marks: list[dict[str, float]] = []

    def mark() -> None:  # SIGUSR2 from the harness: the sender starts / has finished
        user, system = _process_cpu()
        marks.append({"wall": time.perf_counter(), "cpu": user + system, "c": acc["pump_some"][0] + acc["expire"][0],
                      "pumps": acc["pump_some"][1], "flows": flows, "waits": waits[0],
                      "wait_calls": waits[1]})  # fmt: skip

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, mark)
    cpu0, wall0 = _process_cpu(), time.perf_counter()
    async with aioflow.FlowParser(iface, buffer_size=buffer_size, snaplen=snaplen, idle_timeout=idle_timeout) as p:
        loop.add_signal_handler(signal.SIGUSR1, p.stop)  # the harness: sender done, settled
        print("ready", flush=True)
        async for _flow in p.terminated():
            flows += 1
    cpu1, wall1 = _process_cpu(), time.perf_counter()
    info = p.info()
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    c_seconds = acc["pump_some"][0] + acc["expire"][0]
    window = {k: marks[1][k] - marks[0][k] for k in marks[0]} if len(marks) >= 2 else {}
    return {
        "window": window,  # while the sender ran: what the targets are about
        "packets": info.packets,
        "kernel_received": info.kernel_received,
        "kernel_dropped": info.kernel_dropped,
        "interface_dropped": info.interface_dropped,
        "flows": flows,
        "flows_created": info.flows_created,
        "flows_dropped": info.flows_dropped,
        "peak_active_flows": info.peak_active_flows,
        "wall_seconds": wall1 - wall0,
        "cpu_user": user,
        "cpu_system": system,
        "cpu_total": user + system,
        "c_seconds": c_seconds,
        "c_pump_seconds": acc["pump_some"][0],
        "c_expire_seconds": acc["expire"][0],
        "pump_calls": int(acc["pump_some"][1]),
        "pump_calls_with_flows": int(acc["pump_some"][2]),
        "expire_calls": int(acc["expire"][1]),
        "longest_pump_ms": acc["pump_some"][3] * 1000,
        "longest_expire_ms": acc["expire"][3] * 1000,
        "loop_wait_seconds": waits[0],
        "loop_wait_calls": int(waits[1]),
    }


def child_main(argv: list[str]) -> int:
    iface, buffer_size, snaplen, idle = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    rep = asyncio.run(_child(iface, buffer_size, snaplen, idle))
    print(json.dumps(rep), flush=True)
    return 0


# --- the harness ---


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def in_ns(ns: str, *args: str) -> list[str]:
    # `ip netns exec` execs the command (no fork), so the pid we hold is the tool's own
    return ["ip", "netns", "exec", ns, *args]


@dataclass
class Net:
    sender_ns: str
    capture_ns: str
    sender_if: str
    capture_if: str
    made: list[str] = field(default_factory=list)

    def up(self) -> None:
        sh("ip", "netns", "add", self.sender_ns)
        self.made.append(self.sender_ns)
        sh("ip", "netns", "add", self.capture_ns)
        self.made.append(self.capture_ns)
        sh("ip", "link", "add", self.sender_if, "netns", self.sender_ns, "type", "veth",
           "peer", "name", self.capture_if, "netns", self.capture_ns)  # fmt: skip
        for ns, ifname in ((self.sender_ns, self.sender_if), (self.capture_ns, self.capture_if)):
            # no IPv6 autoconfiguration chatter and no addresses: every frame on the wire is the sender's
            sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"))
            sh("ip", "-n", ns, "link", "set", ifname, "up")

    def down(self) -> None:
        for ns in reversed(self.made):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made.clear()

    def mac(self, ns: str, ifname: str) -> str:
        return json.loads(sh("ip", "-j", "-n", ns, "link", "show", "dev", ifname))[0]["address"]

    def counters(self, ns: str, ifname: str) -> dict[str, int]:
        stats = json.loads(sh("ip", "-j", "-s", "-n", ns, "link", "show", "dev", ifname))[0]["stats64"]
        return {
            "rx_packets": stats["rx"]["packets"],
            "rx_dropped": stats["rx"]["dropped"],
            "tx_packets": stats["tx"]["packets"],
            "tx_dropped": stats["tx"]["dropped"],
        }


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class StderrReader:
    """Collects a child's stderr in a thread (so the pipe never fills) and says when a line matches."""

    def __init__(self, proc: subprocess.Popen[str], ready: str) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._ready_text = ready
        self._proc = proc
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if self._ready_text in line:
                self.ready.set()
        self.ready.set()  # ended: whoever waits sees it did not get ready

    def join(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


def tcpdump_counts(text: str) -> dict[str, int]:
    out = {"packets": 0, "kernel_received": 0, "kernel_dropped": 0, "interface_dropped": 0}
    for key, pattern in (
        ("packets", r"(\d+) packets? captured"),
        ("kernel_received", r"(\d+) packets? received by filter"),
        ("kernel_dropped", r"(\d+) packets? dropped by kernel"),
        ("interface_dropped", r"(\d+) packets? dropped by interface"),
    ):
        m = re.search(pattern, text)
        if m:
            out[key] = int(m.group(1))
    return out


def stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(a: argparse.Namespace) -> dict[str, Any]:
    sender_exe = mc.compile_c(HERE / "udp_flood.c", [])
    tag = str(os.getpid() % 100000)
    net = Net(f"aflive-snd-{tag}", f"aflive-cap-{tag}", f"afsnd{tag}", f"afcap{tag}")
    buffer_bytes = int(a.buffer_mb * 1024 * 1024)
    procs: list[subprocess.Popen[Any]] = []
    report: dict[str, Any] = {
        "seconds": a.seconds,
        "rate": a.rate,
        "flows": a.flows,
        "buffer_bytes": buffer_bytes,
        "snaplen": a.snaplen,
        "idle_timeout": a.idle_timeout,
        "churn": a.churn,
        "cpus": os.cpu_count(),
    }
    try:
        net.up()
        cap_ns, cap_if = net.capture_ns, net.capture_if

        tcpdump = tcpdump_err = None
        if not a.skip_tcpdump:
            cmd = ["tcpdump", "-i", cap_if, "-B", str(buffer_bytes // 1024), "-s", str(a.snaplen), "-n",
                   "-w", "/dev/null"]  # fmt: skip
            tcpdump = subprocess.Popen(in_ns(cap_ns, *cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True, start_new_session=True)  # fmt: skip
            procs.append(tcpdump)
            tcpdump_err = StderrReader(tcpdump, "listening on")
        child = None
        if not a.skip_aioflow:
            args = [cap_if, str(buffer_bytes), str(a.snaplen), str(a.idle_timeout)]
            child = subprocess.Popen(in_ns(cap_ns, a.python, str(Path(__file__).resolve()), "--child", *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # fmt: skip
            procs.append(child)
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit(f"aioflow child did not start: {child.communicate()[1][-2000:]}")
        if tcpdump_err is not None:
            tcpdump_err.ready.wait(timeout=10)
            if tcpdump is None or tcpdump.poll() is not None:
                raise SystemExit(f"tcpdump did not start: {tcpdump_err.join()[-2000:]}")
        time.sleep(0.5)  # both rings are open and idle before the first frame

        cpu0 = {"tcpdump": proc_cpu(tcpdump.pid) if tcpdump else 0.0}
        veth0 = net.counters(cap_ns, cap_if)
        dst_mac = net.mac(cap_ns, cap_if)
        # aioflow's CPU split is taken from here to the end of --settle: the sender's traffic and
        # its backlog, without the start-up and the final flush of every flow on stop()
        if child is not None:
            child.send_signal(signal.SIGUSR2)
        sender = subprocess.run(
            in_ns(net.sender_ns, str(sender_exe), net.sender_if, dst_mac, str(a.seconds), str(a.rate),
                  str(a.flows), str(a.churn), str(a.payload)),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if sender.returncode != 0:
            raise SystemExit(f"sender failed: {sender.stderr.strip()}")
        report["sender"] = json.loads(sender.stdout)
        time.sleep(a.settle)  # what is queued in the rings is read before the tools are stopped
        if child is not None:
            child.send_signal(signal.SIGUSR2)
        veth1 = net.counters(cap_ns, cap_if)
        report["veth"] = {k: veth1[k] - veth0[k] for k in veth0}

        if tcpdump is not None and tcpdump_err is not None:
            cpu = proc_cpu(tcpdump.pid) - cpu0["tcpdump"]
            stop(tcpdump, signal.SIGINT)  # SIGINT: tcpdump prints its counters and exits
            report["tcpdump"] = {**tcpdump_counts(tcpdump_err.join()), "cpu_total": cpu}
        if child is not None:
            child.send_signal(signal.SIGUSR1)
            out, err = child.communicate(timeout=60)
            if child.returncode != 0:
                raise SystemExit(f"aioflow child failed: {err[-2000:]}")
            report["aioflow"] = json.loads(out.strip().splitlines()[-1])
        return report
    finally:
        for p in procs:
            stop(p)
        net.down()


def print_report(r: dict[str, Any]) -> list[str]:
    snd = r["sender"]
    secs = snd["seconds"]
    rate = f"{r['rate']:,.0f}/s" if r["rate"] else "max"
    lines = [
        f"{r['cpus']} CPUs; {r['seconds']:g} s, rate {rate}, "
        f"{r['flows']:,} flows, churn {r['churn']:g} s, {snd['frame_bytes']}-byte frames; kernel buffer "
        f"{r['buffer_bytes']:,} bytes for both (tcpdump -B {r['buffer_bytes'] // 1024}), snaplen {r['snaplen']}",
        f"sender: {snd['sent']:,} packets in {secs:.2f} s = {snd['sent'] / secs:,.0f}/s"
        f" (send errors {snd['send_errors']:,}); capture veth: {r['veth']['rx_packets']:,} received,"
        f" {r['veth']['rx_dropped']:,} dropped before any capture",
        "",
    ]
    head = ["tool", "packets seen", "packets/s", "kernel drops", "drop %", "interface drops", "CPU s"]
    rows = []
    for tool in ("aioflow", "tcpdump"):
        t = r.get(tool)
        if t is None:
            continue
        offered = t["packets"] + t["kernel_dropped"]
        rows.append([
            tool,
            f"{t['packets']:,}",
            f"{t['packets'] / secs:,.0f}",
            f"{t['kernel_dropped']:,}",
            f"{100 * t['kernel_dropped'] / offered:.1f}" if offered else "-",
            f"{t['interface_dropped']:,}",
            f"{t['cpu_total']:.2f}",
        ])  # fmt: skip
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    lines += [fmt(head), fmt(["-" * w for w in widths]), *(fmt(row) for row in rows)]
    af = r.get("aioflow")
    if af:
        total, c = af["cpu_total"], af["c_seconds"]
        w = af["window"]
        share = 1 - w["c"] / w["cpu"] if w.get("cpu") else 0.0
        lines += [
            "",
            f"aioflow CPU while sending + settle ({w['wall']:.1f} s): {w['cpu']:.2f} s, in C {w['c']:.2f} s, "
            f"{w['pumps']:,.0f} pumps ({af['packets'] / max(w['pumps'], 1):,.0f} packets each): "
            f"Python share {100 * share:.1f}% (of which the event loop's epoll_wait {w['waits']:.3f} s in "
            f"{w['wait_calls']:,.0f} calls: {100 * w['waits'] / w['cpu']:.1f}% of the CPU)",
            f"aioflow CPU whole run (with start-up and the final flush): {total:.2f} s (user {af['cpu_user']:.2f}, "
            f"system {af['cpu_system']:.2f}) over {af['wall_seconds']:.1f} s; in C {c:.2f} s (pump_some "
            f"{af['c_pump_seconds']:.2f} in {af['pump_calls']:,} calls, {af['pump_calls_with_flows']:,} with "
            f"flows; expire {af['c_expire_seconds']:.2f} in {af['expire_calls']:,}); Python share "
            f"{100 * (1 - c / total if total else 0):.1f}%; longest call (the event loop blocked): pump_some "
            f"{af['longest_pump_ms']:.1f} ms, expire {af['longest_expire_ms']:.1f} ms",
            f"aioflow flows: {af['flows']:,} delivered, {af['flows_created']:,} created, peak active "
            f"{af['peak_active_flows']:,}, dropped for want of a consumer {af['flows_dropped']:,}",
        ]
        t = r.get("tcpdump")
        if t is not None:
            met = "met" if af["kernel_dropped"] <= t["kernel_dropped"] else "NOT met"
            lines.append(f"target aioflow drops <= tcpdump drops: {met}; target Python share < 10%: "
                         f"{'met' if share < 0.10 else 'NOT met'}")  # fmt: skip
    for line in lines:
        print(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the sender sends")
    ap.add_argument("--rate", type=float, default=0.0, help="packets/s to send (0: as fast as possible)")
    ap.add_argument("--flows", type=int, default=10_000, help="distinct source ports (flows) sent round-robin")
    from aioflow._live import LIVE_BUFFER_BYTES

    ap.add_argument("--buffer-mb", type=float, default=LIVE_BUFFER_BYTES / 2**20,
                    help="kernel capture buffer, MiB, for both tools (default: FlowParser's, 16)")  # fmt: skip
    ap.add_argument("--snaplen", type=int, default=65535, help="snapshot length for both (aioflow's default)")
    ap.add_argument("--payload", type=int, default=18, help="UDP payload bytes (18: 60-byte frames)")
    ap.add_argument("--idle-timeout", type=float, default=120.0, help="aioflow's idle_timeout")
    ap.add_argument("--churn", type=float, default=0.0, help="sender moves to new flows every S seconds (0: never)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds after the sender before stopping the tools")
    ap.add_argument("--skip-tcpdump", action="store_true", help="aioflow alone")
    ap.add_argument("--skip-aioflow", action="store_true", help="tcpdump alone")
    ap.add_argument("--python", default=sys.executable, help="interpreter with aioflow for the child")
    ap.add_argument("--json", type=Path, help="where to write the results (default: benchmarks/results/)")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root: it creates network namespaces and captures on them")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the finally blocks remove the namespaces

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (a shell's `&`)
    try:
        report = run(a)
    except KeyboardInterrupt:
        print("interrupted; namespaces removed", file=sys.stderr)
        return 130
    report["table"] = print_report(report)
    out = a.json or HERE / "results" / f"live-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
