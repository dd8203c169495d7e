# Typing stub of the cffi-compiled engine; only aioflow._engine imports it.
from typing import Any

ffi: Any
lib: Any
