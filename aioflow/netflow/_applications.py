"""The IPFIX application elements' columns (applicationId, applicationName,
applicationCategoryName, ntop's flow server name) of a batch from a FlowParser(dissect=True):
straight from the dissect meter's C blocks, the texts as the fixed-size bytes C keeps (no str per
flow)."""

from __future__ import annotations

import numpy as np

from .._engine import Batch
from .._frame import _field_kind
from ._templates import APPLICATION_ENGINE_ID

_TEXTS = ("application_name", "application_category_name", "requested_server_name")
_IDS = ("master_protocol", "app_protocol")


def ipfix_application_columns(batch: Batch) -> dict[str, np.ndarray] | None:
    """application_id ((count, 3) bytes: RFC 6759 engine id, then nDPI's protocol id, big-endian),
    application_name, application_category_name and requested_server_name (S48 / S32 / S80) of
    every record; None for a batch without the dissect meter."""
    layout = batch.meter_layout
    offset = dict(layout.offsets).get("dissect")
    if offset is None:
        return None
    raw = np.frombuffer(batch.meter_data, dtype=np.uint8, count=batch.count * layout.stride)
    raw = raw.reshape(batch.count, layout.stride)
    fields = {f.name: f for f in layout.info("dissect").fields}
    cols: dict[str, np.ndarray] = {}
    for name in (*_TEXTS, *_IDS):
        f = fields[name]
        kind = _field_kind(f.ctype)
        at = offset + f.offset
        cols[name] = raw[:, at : at + kind.itemsize].copy().view(kind).reshape(batch.count)
    selector = np.where(cols["app_protocol"] != 0, cols["app_protocol"], cols["master_protocol"]).astype(">u2")
    application_id = np.empty((batch.count, 3), dtype=np.uint8)
    application_id[:, 0] = APPLICATION_ENGINE_ID
    application_id[:, 1:] = selector.view(np.uint8).reshape(batch.count, 2)
    return {"application_id": application_id, **{name: cols[name] for name in _TEXTS}}

