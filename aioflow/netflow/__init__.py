"""NetFlow v5/v9 and IPFIX: exporting aioflow's flows (``aioflow.netflow.export``) and collecting
other exporters' records (``aioflow.netflow.collect``).

Both need numpy, so this package imports neither on its own: ``import aioflow`` stays light, and
``aioflow.IPFIXExporter``, ``aioflow.collect`` and friends load them on first use.

``FlowSet`` (flow-tools files, pyflowtools' API) and ``FlowPDU`` are importable from here too
(loaded on first use).

Modules: ``export`` (UDP exporters, IPFIX and Parquet file writers), ``collect`` (UDP collector,
PDU parsing, IPFIX file reading); private ``_encode`` (records to NetFlow/IPFIX messages, numpy),
``_decode`` (messages to record sets, numpy), ``_records`` (FlowRecord, PDU: re-exported by ``collect``)
and ``_ipfix_elements`` (the IANA element registry),
``flowtools`` (flow-tools files) with private ``_ftlayout``, ``_ftread``, ``_ftwrite``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collect import FlowPDU as FlowPDU
    from .flowtools import FlowSet as FlowSet
else:
    _LAZY = {"FlowSet": "aioflow.netflow.flowtools", "FlowPDU": "aioflow.netflow.collect"}

    def __getattr__(name: str) -> Any:
        """FlowSet and FlowPDU, imported (with numpy) when first asked for."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'aioflow.netflow' has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)
