"""Fixtures every test module may use (test modules never import each other; shared code is in
tests/support/, see its __init__):

- anyio_backend: async tests (`@pytest.mark.anyio`) run under asyncio and under trio
- corpus: the shared capture corpus, or a skip saying where it was looked for
- tshark, tcpflow, nfdump: the outside references, or a skip naming the package to install;
  tshark's and tcpflow's outputs are kept for the session (the same capture is asked about by
  several tests), tshark's also across runs in pytest's cache when the cache plugin is on
- net, streamer: the live tests' network namespace and its servers (root only)
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import livenet, nfdump_peer, reference, tcpflow_ref
from support.corpus import ABSENT, CORPUS
from support.reference import ReferenceFlows
from support.tcpflow_ref import TcpFlow
from support.tshark import TShark


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (`make test &`, a CI step run that way) with SIGINT ignored,
    # and every process it starts inherits that: the tests that stop an example or the CLI with
    # SIGINT, as Ctrl-C would, would wait for an exit that never comes. With a handler here, the
    # children start with SIGINT at its default again.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --- async tests ---


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every `@pytest.mark.anyio` test holds under both event loops aioflow supports."""
    return str(request.param)


# --- captures ---


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus folder (../shared/pcaps or $AIOFLOW_PCAPS); skips the test when absent."""
    if not CORPUS.is_dir():
        pytest.skip(ABSENT)
    return CORPUS


@pytest.fixture(scope="session")
def reference_flows() -> ReferenceFlows:
    """The dpkt reference's flows of a capture, computed once per capture and session."""
    return ReferenceFlows()


# --- tshark ---


@pytest.fixture(scope="session")
def tshark(request: pytest.FixtureRequest) -> Iterator[TShark]:
    if reference.TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark): the comparison needs it")
    runner = TShark(reference.TSHARK, getattr(request.config, "cache", None))
    yield runner
    runner.close()


# --- tcpflow ---


@pytest.fixture(scope="session")
def tcpflow() -> TcpFlow:
    if tcpflow_ref.TCPFLOW is None:
        pytest.skip("tcpflow is not installed (apt install tcpflow): it is the stream reference")
    return TcpFlow()


# --- nfdump ---


@pytest.fixture(scope="session")
def nfdump() -> Any:
    """nfcapd/nfdump as the reference collector (support.nfdump_peer); skips when not installed."""
    if not (nfdump_peer.NFCAPD and nfdump_peer.NFDUMP):
        pytest.skip("nfdump is not installed (apt install nfdump): nfcapd/nfdump are the reference collector")
    return nfdump_peer


# --- live network ---


@pytest.fixture(scope="module")
def net() -> Iterator[livenet.Net]:
    """A network namespace with the HTTP/UDP echo server, joined to this one by a veth pair."""
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root: they create a network namespace and a veth pair")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    with livenet.namespace() as n:
        yield n


@pytest.fixture(scope="module")
def streamer(net: livenet.Net) -> Iterator[None]:
    """The slow TCP streamer and UDP sink (livenet.STREAMER) running in `net`."""
    with livenet.streamer_running(net):
        yield
