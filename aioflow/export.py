"""``aioflow.export``: the documented home of the NetFlow/IPFIX exporters and flow file writers,
which live in :mod:`aioflow.netflow.export` (see there). Importing this module imports numpy."""

from .netflow.export import *  # noqa: F403 (this module is an alias: the same names, all of them)
from .netflow.export import __all__ as __all__
