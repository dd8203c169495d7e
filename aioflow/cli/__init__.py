"""The ``aioflow`` command (``python -m aioflow``): ``main(argv)`` runs it and returns the exit code.

One private module per subcommand (``_flows``, ``_top``, ``_export``, ``_collect``, ``_grep``), each
with ``add_parser(commands)`` and ``run(args)``; ``_common`` holds what they share and imports no
command; ``_main`` builds the parser and dispatches. Commands import ``_common``, never each other.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
