"""Code the tests share, one concern per module (test modules never import each other):

- corpus: where the capture corpus and the bundled captures are, and their pytest parameters
- crafted: packet builders, capture writers and the runner for captures crafted in a test
- reference: the independent dpkt flow reference (and the parsing of tshark's conversation table)
- compare: aioflow's flows and conversations side by side with the reference's and tshark's
- tshark: the tshark runner (runs kept per session and in pytest's cache) and its IPFIX reading
- tcpflow_ref: tcpflow as the reference for reassembled TCP streams
- nfdump_peer: nfcapd/nfdump as the reference NetFlow/IPFIX collector
- livenet: the live tests' network namespace, its servers and the traffic sent through it
- tools: the environment external tools run in
- files: what a result kept for the session is keyed by

Fixtures built on them (corpus skips, tool runners, the live namespace) are in tests/conftest.py.
"""
