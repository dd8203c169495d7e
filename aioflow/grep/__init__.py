"""Stream search, the engine behind ``aioflow grep`` (flowgrep on reassembled streams).

Private modules: ``_search`` (Grep: runs a FlowParser and reports matched flows), ``_match``
(regular-expression and string-distance matchers over stream data) and ``_tcp_kill`` (resetting
a matched TCP connection, -k). The library's own stream search is ``aioflow.StreamPatterns``.
"""
