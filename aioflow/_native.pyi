# Typing stub of the cffi-compiled engine (api.h); only aioflow._engine imports it.
# Functions and constants are listed (tests/test_c_layout.py checks the list against the module);
# C pointers and structs are cffi CData objects, typed Any.
from typing import Any

ffi: Any

class _Lib:
    AF_ADDRESS_TEXT: int
    AF_FLOW_ID_TEXT: int
    AF_GATHER_U8: int
    AF_GATHER_I8: int
    AF_GATHER_U16: int
    AF_GATHER_I16: int
    AF_GATHER_U32: int
    AF_GATHER_I32: int
    AF_GATHER_64: int
    AF_ASIDE_BAD_HEADER: int
    AF_ASIDE_COUNT: int
    AF_ASIDE_FILTERED: int
    AF_ASIDE_FRAGMENT_DROPPED: int
    AF_ASIDE_FRAGMENT_MERGED: int
    AF_ASIDE_FRAGMENT_ORPHAN: int
    AF_ASIDE_NON_IP: int
    AF_ASIDE_NO_MEMORY: int
    AF_ASIDE_TRUNCATED: int
    AF_ASIDE_UNSUPPORTED_LINK: int
    AF_CHUNK_DATA: int
    AF_CHUNK_MATCH: int
    AF_DECODE_EVENT_COUNT: int
    AF_DEFRAG_INCONSISTENT: int
    AF_DEFRAG_MEMORY_FULL: int
    AF_DEFRAG_OVERLAP: int
    AF_DEFRAG_REASON_COUNT: int
    AF_DEFRAG_TABLE_FULL: int
    AF_DEFRAG_TIMEOUT: int
    AF_DEFRAG_TOO_BIG: int
    AF_DEFRAG_TOO_MANY_FRAGMENTS: int
    AF_DEFRAG_TRUNCATED: int
    AF_DEFRAG_UNFINISHED: int
    AF_DONE: int
    AF_END_ACTIVE: int
    AF_END_COUNT: int
    AF_END_CUSTOM: int
    AF_END_EOF: int
    AF_END_EVICTED: int
    AF_END_FIN: int
    AF_END_IDLE: int
    AF_END_NONE: int
    AF_END_RST: int
    AF_END_STOP: int
    AF_ERR_CONFIG: int
    AF_ERR_FILTER: int
    AF_ERR_FORMAT: int
    AF_ERR_NOMEM: int
    AF_ERR_NOT_FOUND: int
    AF_ERR_PERMISSION: int
    AF_ERR_SOURCE: int
    AF_ERR_UNSUPPORTED: int
    AF_EVENT_BAD_CHECKSUM: int
    AF_EVENT_FIRST_FRAGMENT_SHORT: int
    AF_EVENT_FRAGMENT_EARLY: int
    AF_EVENT_FRAGMENT_EARLY_FULL: int
    AF_EVENT_FRAGMENT_EARLY_TIMEOUT: int
    AF_EVENT_FRAGMENT_EARLY_UNFINISHED: int
    AF_EVENT_FRAGMENT_UNMERGED: int
    AF_EVENT_IPV6_IN_IPV4: int
    AF_EVENT_TCP_BAD_DATA_OFFSET: int
    AF_EVENT_TUNNEL_MALFORMED: int
    AF_EVENT_TUNNEL_TOO_DEEP: int
    AF_LIVE_LATENCY_MS: int
    AF_MATCH_CASELESS: int
    AF_MAX_DATAGRAM_SIZE: int
    AF_MAX_FRAGMENTS_PER_DATAGRAM: int
    AF_MAX_FRAGMENT_DATAGRAMS: int
    AF_MAX_HEADERS_PER_FLOW: int
    AF_TIMELINE_MAX_BUCKETS: int
    AF_TIMELINE_CLASSES: int
    AF_TIMELINE_TCP: int
    AF_TIMELINE_UDP: int
    AF_TIMELINE_ICMP: int
    AF_TIMELINE_OTHER: int
    AF_MAX_SNAPLEN: int
    AF_MAX_SPLT: int
    AF_MAX_WORKERS: int
    AF_MAX_WORKER_FLOWS: int
    AF_MAX_STREAM_BYTES: int
    AF_MIN_DATAGRAM_SIZE: int
    AF_MIN_FRAGMENT_MEMORY: int
    AF_MIN_REASSEMBLY_MEMORY: int
    AF_MAX_DISSECTIONS: int
    AF_MAX_DISSECTING_FLOWS: int
    AF_MORE: int
    AF_OK: int
    AF_TCP_FLAG_COUNT: int
    AF_TUNNEL_ERSPAN: int
    AF_TUNNEL_GENEVE: int
    AF_TUNNEL_GRE: int
    AF_TUNNEL_GTP: int
    AF_TUNNEL_IPIP: int
    AF_TUNNEL_MPLS: int
    AF_TUNNEL_NONE: int
    AF_TUNNEL_TEREDO: int
    AF_TUNNEL_TYPE_COUNT: int
    AF_TUNNEL_VXLAN: int
    def af_aside_reason_name(self, a0: int) -> Any: ...
    def af_batch_meters_alloc(self, a0: Any, a1: Any, a2: int) -> int: ...
    def af_batch_meters_free(self, a0: Any) -> None: ...
    def af_check_stream_patterns(self, a0: Any, a1: int, a2: Any, a3: int, a4: int, a5: Any, a6: int) -> int: ...
    def af_close(self, a0: Any) -> None: ...
    def af_defrag_reason_name(self, a0: int) -> Any: ...
    def af_decode_event_name(self, a0: int) -> Any: ...
    def af_enable_chunks(self, a0: Any) -> None: ...
    def af_end_reason_name(self, a0: int) -> Any: ...
    def af_error_message(self, a0: Any) -> Any: ...
    def af_expire(self, a0: Any, a1: int, a2: Any) -> int: ...
    def af_get_stats(self, a0: Any, a1: Any) -> None: ...
    def af_workers(self, a0: Any) -> int: ...
    def af_get_worker_stats(self, a0: Any, a1: int, a2: Any) -> int: ...
    def af_flow_table_bytes(self, a0: int, a1: int) -> int: ...
    def af_meter_state_bytes(self, a0: int, a1: Any) -> int: ...
    def af_get_timeline(self, a0: Any, a1: Any) -> int: ...
    def af_lookup(self, a0: Any, a1: int, a2: Any, a3: int, a4: Any, a5: int, a6: int, a7: int, a8: Any) -> int: ...
    def af_loaded_meter_info(self, a0: Any, a1: int) -> Any: ...
    def af_meter_info_of(self, a0: int) -> Any: ...
    def af_meter_offset(self, a0: Any, a1: int) -> int: ...
    def af_meter_registry_size(self) -> int: ...
    def af_meter_stride(self, a0: Any) -> int: ...
    def af_next_deadline(self, a0: Any) -> int: ...
    def af_notify_fd(self, a0: Any) -> int: ...
    def af_open_error(self) -> Any: ...
    def af_open_live(self, a0: Any, a1: Any, a2: Any, a3: int, a4: int, a5: Any) -> int: ...
    def af_open_offline(self, a0: Any, a1: Any, a2: Any, a3: Any) -> int: ...
    def af_gather_columns(self, a0: Any, a1: int, a2: int, a3: Any, a4: int, a5: Any) -> None: ...
    def af_pack_text(self, a0: Any, a1: int, a2: int, a3: Any, a4: Any) -> int: ...
    def af_pump_some(self, a0: Any, a1: int, a2: Any) -> int: ...
    def af_ready(self, a0: Any, a1: Any) -> int: ...
    def af_records_text(self, a0: Any, a1: int, a2: Any, a3: Any, a4: Any) -> None: ...
    def af_release(self, a0: Any) -> None: ...
    def af_selectable_fd(self, a0: Any) -> int: ...
    def af_set_stream_patterns(self, a0: Any, a1: Any, a2: int, a3: Any, a4: int, a5: int, a6: Any, a7: int) -> int: ...
    def af_snapshot(self, a0: Any, a1: Any, a2: Any, a3: int) -> int: ...
    def af_start(self, a0: Any, a1: int, a2: int, a3: int) -> int: ...
    def af_stop(self, a0: Any) -> int: ...
    def af_stream_patterns_available(self) -> int: ...
    def af_dissect_unavailable(self) -> Any: ...
    def af_tunnel_type_name(self, a0: int) -> Any: ...

lib: _Lib
