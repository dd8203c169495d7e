"""aioflow's version, in one place: pyproject.toml reads it from here when building
([tool.setuptools.dynamic]), and ``aioflow.__version__`` imports it."""

__version__ = "0.1.0"
