"""SIGINT and SIGTERM, the same for every command: the first one stops what the command reads (a
FlowParser ends every active flow as "stop", through the command's own sinks), the command finishes
as usual (rows, summary, files, exports), and the exit code is then 128 + the signal's number (130,
143), as a shell reports a process that a signal ended. A second signal while that flush runs
exits at once, with the same code.

A command runs as ``run(command, *args)``, which calls ``await command(stopper, *args)`` on a new
event loop; the command registers what stops it with ``stopper.on_signal(parser.stop)``."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import anyio

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """128 + the signal number: what a shell reports for a process a signal ended (130, 143)."""
    return 128 + signum


class Stopper:
    """What a command does on the first signal (its stop callbacks), and which signal came."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._stops: list[Callable[[], object]] = []

    def on_signal(self, stop: Callable[[], object]) -> None:
        """Calls stop() on the first signal; at once if it came already (e.g. while a capture opened)."""
        self._stops.append(stop)
        if self.signum is not None:
            stop()

    def exit_code(self, code: int) -> int:
        """The command's own exit code, or 128 + the signal's number if one stopped it."""
        return code if self.signum is None else exit_code(self.signum)

    def received(self, signum: int) -> None:
        """The first signal runs the stop callbacks; a second one ends the process now."""
        name = signal.Signals(signum).name
        lead = "\n" if sys.stderr.isatty() else ""  # after the terminal's ^C
        if self.signum is not None:
            sys.stderr.write(f"{lead}aioflow: {name} again: exiting without finishing\n")
            sys.stderr.flush()
            os._exit(exit_code(self.signum))  # at once: no flush of buffers, no cleanup can hang it
        self.signum = signum
        again = f"{name} again quits at once"
        sys.stderr.write(f"{lead}aioflow: {name}: stopping; what was read is still written out ({again})\n")
        sys.stderr.flush()
        for stop in self._stops:
            stop()


def capturing(err: TextIO, source: str, prefix: str = "aioflow") -> None:
    """The line a live command prints once its capture is open (and signals are handled): from
    then on a signal ends every active flow as "stop" through the command's outputs."""
    err.write(f"{prefix}: capturing on {source} (Ctrl-C stops; the active flows are still written out)\n")
    err.flush()


async def _watch(stopper: Stopper, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    # A signal the process was started ignoring (`nohup`, a background job's SIGINT) stays ignored.
    wanted = [s for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN]
    with anyio.open_signal_receiver(*wanted) as signals:
        task_status.started()
        async for signum in signals:
            stopper.received(signum)


def run(command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """anyio.run of ``command(stopper, *args)`` with SIGINT/SIGTERM handled on its event loop (the
    handlers are in place before the command starts); returns the command's exit code, or 128 +
    the signal's number if one stopped it."""

    async def main() -> int:
        stopper = Stopper()
        async with anyio.create_task_group() as tasks:
            await tasks.start(_watch, stopper)
            code = await command(stopper, *args)
            tasks.cancel_scope.cancel()
        return stopper.exit_code(code)

    return anyio.run(main)
