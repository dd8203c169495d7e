"""Per-flow Python plugins (nfstream's NFPlugin shape), run on whole batches of ended flows.

The C core counts packets; Python sees a flow once, when its record is delivered. So a plugin's
hooks all run then, one flow after another, in this order per flow: every plugin's on_init, then
(only for plugins that define on_update, and only with headers=N) on_update for each kept packet
header in arrival order, then every plugin's on_expire. See README, "Plugins"."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._engine import Batch
    from ._flow import Flow, PacketHeader


class FlowPlugin:
    """Base class of a per-flow plugin: override the hooks you need; each may set fields on
    ``flow.udps`` (``flow.udps.x = ...``), which become ``udps.x`` in ``flow.to_dict()`` and
    read_frame()/read_arrow() columns.

    - ``on_init(flow)``: when the flow's record reaches Python (it has ended: its counters are
      final). Not at its first packet, as in nfstream: the core does not call Python per packet.
    - ``on_update(packet, flow)``: opt-in per-packet hook, only when overridden; needs
      ``headers=N`` (ConfigError without it) and sees the first N packets' kept headers
      (``flow.headers_dropped`` says how many it did not see).
    - ``on_expire(flow)``: right after, when the flow is handed to consumers.

    A hook's exception propagates out of read()/read_frame() or the FlowParser task, as a
    callback's does. Ending a flow early is not a hook's job here: use FlowParser's C rules
    ``max_packets``/``max_bytes`` (end reason ``custom``)."""

    def on_init(self, flow: Flow) -> None:
        """The flow's record was delivered: set its initial udps fields."""

    def on_update(self, packet: PacketHeader, flow: Flow) -> None:
        """One kept packet of the flow (headers=N), oldest first. Opt-in: costs a Python call per
        kept packet."""

    def on_expire(self, flow: Flow) -> None:
        """The flow is about to reach consumers: final udps fields."""


def wants_packets(plugin: FlowPlugin) -> bool:
    """Whether the plugin overrides on_update (the per-packet hook)."""
    return type(plugin).on_update is not FlowPlugin.on_update


def check_plugins(plugins: Sequence[FlowPlugin], headers: int) -> tuple[FlowPlugin, ...]:
    """The plugins as a tuple; ConfigError for an object that is no FlowPlugin, or for on_update
    without kept headers."""
    out = tuple(plugins)
    for p in out:
        if not isinstance(p, FlowPlugin):
            raise ConfigError(f"plugins: {p!r} is not an aioflow.FlowPlugin (subclass it and override its hooks)")
        if wants_packets(p) and headers == 0:
            raise ConfigError(
                f"plugins: {type(p).__name__}.on_update needs the packets' headers: add headers=N "
                "(on_update then sees each flow's first N packets)"
            )
    return out


def run_plugins(batch: Batch, plugins: tuple[FlowPlugin, ...]) -> None:
    """Runs every plugin's hooks on every flow of the batch (see the module doc for the order);
    their udps fields are kept in the batch (batch.udps), so every Flow view of a record sees them."""
    from ._flow import Flow

    if not plugins or not batch.count:
        return
    batch.udps = [SimpleNamespace() for _ in range(batch.count)]
    per_packet = tuple(p for p in plugins if wants_packets(p))
    for i in range(batch.count):
        flow = Flow(batch, i)
        for p in plugins:
            p.on_init(flow)
        if per_packet:
            for header in flow.headers:
                for p in per_packet:
                    p.on_update(header, flow)
        for p in plugins:
            p.on_expire(flow)
