"""Zeek's conn.log from aioflow flows: one row per flow, Zeek's columns and its ASCII (TSV) and JSON
writers' formats. The per-packet work (conn_state, history, payload sizes, Zeek's originator) is
the conn_state meter's, in C; community_id is the community_id meter's. Here: columns only."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._flow import Flow

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
          "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
          "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents")  # fmt: skip
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
         "string", "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]")  # fmt: skip
METERS = ("conn_state", "community_id")
# Zeek's inactivity timeouts (tcp_inactivity_timeout 5 min; udp and icmp 1 min) and its
# tcp_close_delay (5 s): the FlowParser options that come closest (aioflow has one idle timeout).
ZEEK_OPTIONS: dict[str, Any] = {"idle_timeout": 300.0, "active_timeout": 10**9, "fin_timeout": 5.0,
                                "defragment": True}  # fmt: skip
PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}
# conn.log's service from the dissect meter: nDPI's protocol name (either part of its
# application_name, "MASTER.APP") -> the name of the Zeek analyzer for that protocol, lower case,
# as Zeek logs it. Protocols Zeek has no analyzer for (Telnet, Spotify, DHCPv6, ...) and nDPI's
# application names (Google, ...) are absent: they name no service.
SERVICES = {"DNS": "dns", "MDNS": "dns", "LLMNR": "dns", "HTTP": "http", "HTTP_Proxy": "http",
            "HTTP_Connect": "http", "TLS": "ssl", "SMTPS": "ssl", "IMAPS": "ssl", "POP3S": "ssl",
            "DTLS": "dtls", "SSH": "ssh", "DHCP": "dhcp", "NTP": "ntp", "QUIC": "quic", "SMTP": "smtp",
            "POP3": "pop3", "IMAP": "imap", "FTP_CONTROL": "ftp", "FTP_DATA": "ftp-data", "IRC": "irc",
            "MySQL": "mysql", "PostgreSQL": "postgresql", "Radius": "radius", "RDP": "rdp", "VNC": "rfb",
            "SIP": "sip", "SNMP": "snmp", "Syslog": "syslog",
            "Jabber": "xmpp", "MQTT": "mqtt", "Modbus": "modbus", "DNP3": "dnp3_tcp", "SOCKS": "socks",
            "Redis": "redis", "DCE_RPC": "dce_rpc", "WebSocket": "websocket", "Teredo": "teredo",
            "Ayiya": "ayiya", "GTP": "gtpv1", "GTP_U": "gtpv1", "GTP_C": "gtpv1", "VXLAN": "vxlan"}  # fmt: skip
# Zeek's analyzer differs by transport for these.
SERVICES_BY_TRANSPORT = {("LDAP", 6): "ldap_tcp", ("LDAP", 17): "ldap_udp", ("Kerberos", 6): "krb_tcp",
                         ("Kerberos", 17): "krb", ("SMBv1", 6): "smb", ("SMBv23", 6): "smb"}  # fmt: skip
NETBIOS_NAME_PORT = 137  # Zeek's DNS analyzer also parses NetBIOS name service (its dns ports include 137/udp)

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
# Zeek's Site::private_address_space (IANA's special-purpose ranges), which its default
# Site::local_nets includes (Site::private_address_space_is_local).
ZEEK_LOCAL_NETS = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                   "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
                   "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/24", "233.252.0.0/24", "239.0.0.0/8",
                   "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "64:ff9b:1::/48", "100::/64",
                   "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10")  # fmt: skip


def local_networks(texts: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Site::local_nets from CIDR texts; ValueError names the bad one."""
    return [ipaddress.ip_network(t, strict=False) for t in texts]


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _zeek_uid(text: str) -> str:
    """Zeek's uid form ("C" + a 96-bit number in base62) of a hash of `text` (Zeek's are random)."""
    n = int.from_bytes(hashlib.sha1(text.encode()).digest()[:12], "big")
    digits = ""
    while n:
        n, d = divmod(n, 62)
        digits = BASE62[d] + digits
    return "C" + (digits or "0")


def uid(flow: Flow) -> str:
    """A Zeek-like connection uid, stable for a flow's record: from its id and endpoints."""
    return _zeek_uid(f"{flow.id}|{flow.bidirectional_id}|{flow.first_seen_ns}")


def tunnel_uid(flow: Flow) -> str | None:
    """The uid of the tunnel a flow read with decode_tunnels=True came out of (None outside
    tunnels, or without decode_tunnels): Zeek's tunnel_parents names the innermost tunnel's uid,
    that of its outer UDP connection (VXLAN, Geneve, GTP-U, Teredo) or of its tunnel.log entry
    (IP-in-IP, GRE). aioflow counts each packet in one flow, so a decapsulated tunnel has no flow
    of its own whose uid to name: its uid is derived from the tunnel instead, from the tunnel
    meter's tunnel_id (a hash of every level's type, carrier addresses and VNI, the same for both
    directions) and its outermost type and endpoints (in either order), so every inner connection
    of one tunnel names the same one."""
    t = flow.meter("tunnel")
    if not t or not t["tunnel_id"]:
        return None
    ends = sorted((str(t["tunnel_src_ip"]), str(t["tunnel_dst_ip"])))
    return _zeek_uid(f"tunnel|{t['tunnel_type']}|{ends[0]}|{ends[1]}|{t['tunnel_id']}")


def service(flow: Flow) -> str | None:
    """Zeek's service of a flow read with dissect=True: the Zeek names of nDPI's master and app
    protocols, comma-separated, in that order (Zeek lists the analyzers that confirmed the protocol);
    None without dissection, when nDPI only guessed (by port: Zeek's analyzers log a service only
    once they parsed it) or when neither protocol has a Zeek analyzer."""
    d = flow.meter("dissect")
    if not d or d["application_is_guessed"]:
        return None
    names: list[str] = []
    for part in str(d["application_name"]).split("."):
        name = SERVICES_BY_TRANSPORT.get((part, flow.protocol)) or SERVICES.get(part)
        if part == "NetBIOS" and flow.protocol == 17 and NETBIOS_NAME_PORT in (flow.src_port, flow.dst_port):
            name = "dns"
        if name and name not in names:
            names.append(name)
    return ",".join(names) or None


def _is_local(address: str, nets: Networks) -> bool | None:
    if not nets:
        return None
    ip = ipaddress.ip_address(address)
    return any(ip in n for n in nets if n.version == ip.version)


def conn_record(flow: Flow, local_nets: Networks = (), community_id: bool = False) -> dict[str, Any]:
    """One conn.log row (None: unset) of a flow read with meters=("conn_state", ...)."""
    z = flow.meter("conn_state")
    if not z:
        raise ValueError("conn.log needs the conn_state meter: read with meters=('conn_state',)")
    as_src = bool(z["orig_is_src"])
    proto = PROTOCOLS.get(flow.protocol, "unknown_transport")
    ends = [(flow.src_ip, flow.src_port, flow.src2dst_packets, flow.src2dst_bytes),
            (flow.dst_ip, flow.dst_port, flow.dst2src_packets, flow.dst2src_bytes)]  # fmt: skip
    orig, resp = ends if as_src else ends[::-1]
    if flow.protocol in (1, 58):
        ports = int(z["icmp_orig_p"]), int(z["icmp_resp_p"])
    elif proto == "unknown_transport":
        ports = 0, 0
    else:
        ports = orig[1], resp[1]
    duration = int(z["duration_ns"]) / 1e9
    row: dict[str, Any] = {
        "ts": flow.first_seen,
        "uid": uid(flow),
        "id.orig_h": orig[0],
        "id.orig_p": ports[0],
        "id.resp_h": resp[0],
        "id.resp_p": ports[1],
        "proto": proto,
        "service": service(flow),
        "duration": duration if duration > 0 else None,
        "orig_bytes": z["orig_bytes"] if duration > 0 else None,
        "resp_bytes": z["resp_bytes"] if duration > 0 else None,
        "conn_state": z["state"],
        "local_orig": _is_local(orig[0], local_nets),
        "local_resp": _is_local(resp[0], local_nets),
        "missed_bytes": z["missed_bytes"],
        "history": z["history"] or None,
        "orig_pkts": orig[2],
        "orig_ip_bytes": orig[3],
        "resp_pkts": resp[2],
        "resp_ip_bytes": resp[3],
        "tunnel_parents": [parent] if (parent := tunnel_uid(flow)) else None,
    }
    if community_id:
        row["community_id"] = flow.meter("community_id")["value"]
    return row


def zeek_conn_record(flow: Flow, local_nets: Iterable[str] = ZEEK_LOCAL_NETS) -> dict[str, Any]:
    """Zeek's conn.log row of a flow read with meters=("conn_state",) (and "community_id" for
    that column; dissect=True for service): column name -> value, None where Zeek writes "-".
    `local_nets` (CIDR texts) is Site::local_nets for local_orig/local_resp; Zeek's private
    address space by default. ValueError when the conn_state meter was off or a network is malformed."""
    with_cid = bool(flow.meter("community_id"))
    return conn_record(flow, local_networks(local_nets), community_id=with_cid)


def _tsv_value(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind in ("time", "interval"):
        return f"{value:.6f}"
    if kind == "bool":
        return "T" if value else "F"
    if kind.startswith("set["):
        return ",".join(value) or "(empty)"
    return str(value)


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H-%M-%S")


def _columns(community_id: bool) -> list[tuple[str, str]]:
    columns = list(zip(FIELDS, TYPES, strict=True))
    return [*columns, ("community_id", "string")] if community_id else columns


def tsv_row(row: dict[str, Any], community_id: bool = False) -> str:
    """One conn.log line of Zeek's ASCII writer."""
    return "\t".join(_tsv_value(row.get(f), t) for f, t in _columns(community_id))


def close_line() -> str:
    return f"#close\t{_stamp(dt.datetime.now())}"


def tsv_lines(rows: Iterable[dict[str, Any]], community_id: bool = False) -> Iterator[str]:
    """Zeek's ASCII writer: the header, one TSV line per row, #close."""
    fields, types = zip(*_columns(community_id), strict=True)
    yield "#separator \\x09"
    yield "#set_separator\t,"
    yield "#empty_field\t(empty)"
    yield "#unset_field\t-"
    yield "#path\tconn"
    yield f"#open\t{_stamp(dt.datetime.now())}"
    yield "#fields\t" + "\t".join(fields)
    yield "#types\t" + "\t".join(types)
    for row in rows:
        yield tsv_row(row, community_id)
    yield close_line()


def json_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Zeek's JSON writer (LogAscii::use_json): one object per row, unset fields left out."""
    for row in rows:
        yield json.dumps({k: v for k, v in row.items() if v is not None}, separators=(",", ":"))
