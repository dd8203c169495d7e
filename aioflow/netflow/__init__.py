"""NetFlow v5/v9 and IPFIX: exporting aioflow's flows (``aioflow.netflow.export``) and collecting
other exporters' records (``aioflow.netflow.collect``).

Both need numpy, so this package imports neither on its own: ``import aioflow`` stays light, and
``aioflow.IPFIXExporter``, ``aioflow.collect`` and friends load them on first use.

Modules: ``export`` (UDP exporters, IPFIX and Parquet file writers), ``collect`` (UDP collector,
PDU parsing, IPFIX file reading); private ``_encode`` (records to NetFlow/IPFIX messages, numpy),
``_decode`` (messages to record sets, numpy) and ``_ipfix_elements`` (the IANA element registry).
"""
