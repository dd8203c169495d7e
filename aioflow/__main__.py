"""``python -m aioflow`` is the ``aioflow`` command."""

from aioflow._cli import main

raise SystemExit(main())
