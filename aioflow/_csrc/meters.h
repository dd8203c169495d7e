/* The meter registry: one line per meter, AF_METER(name), for a `const af_meter af_meter_<name>`
 * defined in <name>.c (which _build_pcap.py then compiles). The order gives each meter its bit in
 * af_config.meters: append new meters at the end. An X-macro list, without include guard: meter.c
 * includes it once to declare the meters and once to fill the table. */
AF_METER(reassembly)
AF_METER(low_ttl)
AF_METER(stream_search)
AF_METER(dissect)
AF_METER(timeline)
AF_METER(statistics)
AF_METER(splt)
AF_METER(community_id)
AF_METER(conn_state)
