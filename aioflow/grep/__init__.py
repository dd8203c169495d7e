"""Stream search, the engine behind ``aioflow grep`` (flowgrep on reassembled streams).

Private modules: ``_search`` (Grep: runs a FlowParser and reports matched flows), ``_match``
(regular-expression and string-distance matchers over stream data) and ``_tcp_kill`` (resetting
a matched TCP connection, -k). The library's own stream search is ``aioflow.StreamPatterns``.
What the command uses is re-exported here, so ``aioflow.cli`` imports this package, not its
private modules.
"""

from ._match import (
    DEFAULT_SPAN,
    DistanceMatcher,
    Matcher,
    RegexMatcher,
    compile_patterns,
    native_patterns,
    read_pattern_file,
)
from ._search import Grep, GrepConfig, GrepSummary
from ._tcp_kill import TcpKiller

__all__ = [
    "DEFAULT_SPAN",
    "DistanceMatcher",
    "Grep",
    "GrepConfig",
    "GrepSummary",
    "Matcher",
    "RegexMatcher",
    "TcpKiller",
    "compile_patterns",
    "native_patterns",
    "read_pattern_file",
]
