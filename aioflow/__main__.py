"""``python -m aioflow`` is the ``aioflow`` command."""

from aioflow.cli import main

raise SystemExit(main())
