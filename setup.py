from setuptools import setup

# Everything else lives in pyproject.toml; cffi can only be named here.
setup(cffi_modules=["aioflow/_build_pcap.py:ffibuilder"])
