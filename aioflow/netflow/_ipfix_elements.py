"""IPFIX information elements (IANA registry, RFC 7012) and the NetFlow v9 field types that share
their numbers (RFC 3954 types 1..~100 are the IANA ids 1..~100), with the data-type helpers both the
encoder and the decoder use. Data only, plus tiny helpers: no I/O, no numpy.

Reverse elements (RFC 5103) are the same ids under private enterprise number 29305; their names are
``reverse`` + the forward name with a capital (``reverseOctetDeltaCount``).
"""

from __future__ import annotations

from typing import NamedTuple

VARLEN = 65535  # a template field length meaning "variable length" (RFC 7011 section 7)
REVERSE_PEN = 29305  # RFC 5103: reverse information elements live under this enterprise number
ENTERPRISE_BIT = 0x8000  # in a template field's id: an enterprise number follows

# RFC 7011 section 6.1: NTP seconds start in 1900, Unix seconds in 1970.
NTP_UNIX_OFFSET = 2_208_988_800

# RFC 7012 abstract data types -> their full length in octets (VARLEN for strings and arrays).
TYPE_LENGTHS: dict[str, int] = {
    "unsigned8": 1, "unsigned16": 2, "unsigned32": 4, "unsigned64": 8,
    "signed8": 1, "signed16": 2, "signed32": 4, "signed64": 8,
    "float32": 4, "float64": 8, "boolean": 1, "macAddress": 6,
    "octetArray": VARLEN, "string": VARLEN,
    "dateTimeSeconds": 4, "dateTimeMilliseconds": 8, "dateTimeMicroseconds": 8, "dateTimeNanoseconds": 8,
    "ipv4Address": 4, "ipv6Address": 16,
    "basicList": VARLEN, "subTemplateList": VARLEN, "subTemplateMultiList": VARLEN,
}  # fmt: skip

UNSIGNED_TYPES = frozenset({"unsigned8", "unsigned16", "unsigned32", "unsigned64"})
SIGNED_TYPES = frozenset({"signed8", "signed16", "signed32", "signed64"})
ADDRESS_TYPES = frozenset({"ipv4Address", "ipv6Address"})
TIME_TYPES = frozenset({"dateTimeSeconds", "dateTimeMilliseconds", "dateTimeMicroseconds", "dateTimeNanoseconds"})


class IE(NamedTuple):
    """One information element: enterprise 0 is IANA's."""

    id: int
    name: str
    type: str
    enterprise: int = 0

    @property
    def length(self) -> int:
        """The full (default) length an exporter uses, VARLEN for variable-length types."""
        return TYPE_LENGTHS[self.type]


# id name type: the IANA registry from 1 up to the elements aioflow and common probes use.
_IANA = """
1 octetDeltaCount unsigned64
2 packetDeltaCount unsigned64
3 deltaFlowCount unsigned64
4 protocolIdentifier unsigned8
5 ipClassOfService unsigned8
6 tcpControlBits unsigned16
7 sourceTransportPort unsigned16
8 sourceIPv4Address ipv4Address
9 sourceIPv4PrefixLength unsigned8
10 ingressInterface unsigned32
11 destinationTransportPort unsigned16
12 destinationIPv4Address ipv4Address
13 destinationIPv4PrefixLength unsigned8
14 egressInterface unsigned32
15 ipNextHopIPv4Address ipv4Address
16 bgpSourceAsNumber unsigned32
17 bgpDestinationAsNumber unsigned32
18 bgpNextHopIPv4Address ipv4Address
19 postMCastPacketDeltaCount unsigned64
20 postMCastOctetDeltaCount unsigned64
21 flowEndSysUpTime unsigned32
22 flowStartSysUpTime unsigned32
23 postOctetDeltaCount unsigned64
24 postPacketDeltaCount unsigned64
25 minimumIpTotalLength unsigned64
26 maximumIpTotalLength unsigned64
27 sourceIPv6Address ipv6Address
28 destinationIPv6Address ipv6Address
29 sourceIPv6PrefixLength unsigned8
30 destinationIPv6PrefixLength unsigned8
31 flowLabelIPv6 unsigned32
32 icmpTypeCodeIPv4 unsigned16
33 igmpType unsigned8
34 samplingInterval unsigned32
35 samplingAlgorithm unsigned8
36 flowActiveTimeout unsigned16
37 flowIdleTimeout unsigned16
38 engineType unsigned8
39 engineId unsigned8
40 exportedOctetTotalCount unsigned64
41 exportedMessageTotalCount unsigned64
42 exportedFlowRecordTotalCount unsigned64
43 ipv4RouterSc ipv4Address
44 sourceIPv4Prefix ipv4Address
45 destinationIPv4Prefix ipv4Address
46 mplsTopLabelType unsigned8
47 mplsTopLabelIPv4Address ipv4Address
48 samplerId unsigned8
49 samplerMode unsigned8
50 samplerRandomInterval unsigned32
51 classId unsigned8
52 minimumTTL unsigned8
53 maximumTTL unsigned8
54 fragmentIdentification unsigned32
55 postIpClassOfService unsigned8
56 sourceMacAddress macAddress
57 postDestinationMacAddress macAddress
58 vlanId unsigned16
59 postVlanId unsigned16
60 ipVersion unsigned8
61 flowDirection unsigned8
62 ipNextHopIPv6Address ipv6Address
63 bgpNextHopIPv6Address ipv6Address
64 ipv6ExtensionHeaders unsigned32
70 mplsTopLabelStackSection octetArray
71 mplsLabelStackSection2 octetArray
72 mplsLabelStackSection3 octetArray
73 mplsLabelStackSection4 octetArray
74 mplsLabelStackSection5 octetArray
75 mplsLabelStackSection6 octetArray
76 mplsLabelStackSection7 octetArray
77 mplsLabelStackSection8 octetArray
78 mplsLabelStackSection9 octetArray
79 mplsLabelStackSection10 octetArray
80 destinationMacAddress macAddress
81 postSourceMacAddress macAddress
82 interfaceName string
83 interfaceDescription string
84 samplerName string
85 octetTotalCount unsigned64
86 packetTotalCount unsigned64
87 flagsAndSamplerId unsigned32
88 fragmentOffset unsigned16
89 forwardingStatus unsigned8
90 mplsVpnRouteDistinguisher octetArray
91 mplsTopLabelPrefixLength unsigned8
92 srcTrafficIndex unsigned32
93 dstTrafficIndex unsigned32
94 applicationDescription string
95 applicationId octetArray
96 applicationName string
98 postIpDiffServCodePoint unsigned8
99 multicastReplicationFactor unsigned32
100 className string
101 classificationEngineId unsigned8
102 layer2packetSectionOffset unsigned16
103 layer2packetSectionSize unsigned16
104 layer2packetSectionData octetArray
128 bgpNextAdjacentAsNumber unsigned32
129 bgpPrevAdjacentAsNumber unsigned32
130 exporterIPv4Address ipv4Address
131 exporterIPv6Address ipv6Address
132 droppedOctetDeltaCount unsigned64
133 droppedPacketDeltaCount unsigned64
134 droppedOctetTotalCount unsigned64
135 droppedPacketTotalCount unsigned64
136 flowEndReason unsigned8
137 commonPropertiesId unsigned64
138 observationPointId unsigned64
139 icmpTypeCodeIPv6 unsigned16
140 mplsTopLabelIPv6Address ipv6Address
141 lineCardId unsigned32
142 portId unsigned32
143 meteringProcessId unsigned32
144 exportingProcessId unsigned32
145 templateId unsigned16
146 wlanChannelId unsigned8
147 wlanSSID string
148 flowId unsigned64
149 observationDomainId unsigned32
150 flowStartSeconds dateTimeSeconds
151 flowEndSeconds dateTimeSeconds
152 flowStartMilliseconds dateTimeMilliseconds
153 flowEndMilliseconds dateTimeMilliseconds
154 flowStartMicroseconds dateTimeMicroseconds
155 flowEndMicroseconds dateTimeMicroseconds
156 flowStartNanoseconds dateTimeNanoseconds
157 flowEndNanoseconds dateTimeNanoseconds
158 flowStartDeltaMicroseconds unsigned32
159 flowEndDeltaMicroseconds unsigned32
160 systemInitTimeMilliseconds dateTimeMilliseconds
161 flowDurationMilliseconds unsigned32
162 flowDurationMicroseconds unsigned32
163 observedFlowTotalCount unsigned64
164 ignoredPacketTotalCount unsigned64
165 ignoredOctetTotalCount unsigned64
166 notSentFlowTotalCount unsigned64
167 notSentPacketTotalCount unsigned64
168 notSentOctetTotalCount unsigned64
169 destinationIPv6Prefix ipv6Address
170 sourceIPv6Prefix ipv6Address
171 postOctetTotalCount unsigned64
172 postPacketTotalCount unsigned64
173 flowKeyIndicator unsigned64
174 postMCastPacketTotalCount unsigned64
175 postMCastOctetTotalCount unsigned64
176 icmpTypeIPv4 unsigned8
177 icmpCodeIPv4 unsigned8
178 icmpTypeIPv6 unsigned8
179 icmpCodeIPv6 unsigned8
180 udpSourcePort unsigned16
181 udpDestinationPort unsigned16
182 tcpSourcePort unsigned16
183 tcpDestinationPort unsigned16
184 tcpSequenceNumber unsigned32
185 tcpAcknowledgementNumber unsigned32
186 tcpWindowSize unsigned16
187 tcpUrgentPointer unsigned16
188 tcpHeaderLength unsigned8
189 ipHeaderLength unsigned8
190 totalLengthIPv4 unsigned16
191 payloadLengthIPv6 unsigned16
192 ipTTL unsigned8
193 nextHeaderIPv6 unsigned8
194 mplsPayloadLength unsigned32
195 ipDiffServCodePoint unsigned8
196 ipPrecedence unsigned8
197 fragmentFlags unsigned8
198 octetDeltaSumOfSquares unsigned64
199 octetTotalSumOfSquares unsigned64
200 mplsTopLabelTTL unsigned8
201 mplsLabelStackLength unsigned32
202 mplsLabelStackDepth unsigned32
203 mplsTopLabelExp unsigned8
204 ipPayloadLength unsigned32
205 udpMessageLength unsigned16
206 isMulticast unsigned8
207 ipv4IHL unsigned8
208 ipv4Options unsigned32
209 tcpOptions unsigned64
210 paddingOctets octetArray
211 collectorIPv4Address ipv4Address
212 collectorIPv6Address ipv6Address
213 exportInterface unsigned32
214 exportProtocolVersion unsigned8
215 exportTransportProtocol unsigned8
216 collectorTransportPort unsigned16
217 exporterTransportPort unsigned16
218 tcpSynTotalCount unsigned64
219 tcpFinTotalCount unsigned64
220 tcpRstTotalCount unsigned64
221 tcpPshTotalCount unsigned64
222 tcpAckTotalCount unsigned64
223 tcpUrgTotalCount unsigned64
224 ipTotalLength unsigned64
225 postNATSourceIPv4Address ipv4Address
226 postNATDestinationIPv4Address ipv4Address
227 postNAPTSourceTransportPort unsigned16
228 postNAPTDestinationTransportPort unsigned16
229 natOriginatingAddressRealm unsigned8
230 natEvent unsigned8
231 initiatorOctets unsigned64
232 responderOctets unsigned64
233 firewallEvent unsigned8
234 ingressVRFID unsigned32
235 egressVRFID unsigned32
236 VRFname string
237 postMplsTopLabelExp unsigned8
238 tcpWindowScale unsigned16
239 biflowDirection unsigned8
240 ethernetHeaderLength unsigned8
241 ethernetPayloadLength unsigned16
242 ethernetTotalLength unsigned16
243 dot1qVlanId unsigned16
244 dot1qPriority unsigned8
245 dot1qCustomerVlanId unsigned16
246 dot1qCustomerPriority unsigned8
252 ingressPhysicalInterface unsigned32
253 egressPhysicalInterface unsigned32
254 postDot1qVlanId unsigned16
255 postDot1qCustomerVlanId unsigned16
256 ethernetType unsigned16
257 postIpPrecedence unsigned8
258 collectionTimeMilliseconds dateTimeMilliseconds
260 maxExportSeconds dateTimeSeconds
261 maxFlowEndSeconds dateTimeSeconds
264 minExportSeconds dateTimeSeconds
265 minFlowStartSeconds dateTimeSeconds
266 opaqueOctets octetArray
268 maxFlowEndMicroseconds dateTimeMicroseconds
269 maxFlowEndMilliseconds dateTimeMilliseconds
270 maxFlowEndNanoseconds dateTimeNanoseconds
271 minFlowStartMicroseconds dateTimeMicroseconds
272 minFlowStartMilliseconds dateTimeMilliseconds
273 minFlowStartNanoseconds dateTimeNanoseconds
276 dataRecordsReliability boolean
277 observationPointType unsigned8
278 newConnectionDeltaCount unsigned32
279 connectionSumDurationSeconds unsigned64
280 connectionTransactionId unsigned64
291 basicList basicList
292 subTemplateList subTemplateList
293 subTemplateMultiList subTemplateMultiList
298 initiatorPackets unsigned64
299 responderPackets unsigned64
312 dataLinkFrameSize unsigned16
313 ipHeaderPacketSection octetArray
314 ipPayloadPacketSection octetArray
315 dataLinkFrameSection octetArray
322 observationTimeSeconds dateTimeSeconds
323 observationTimeMilliseconds dateTimeMilliseconds
324 observationTimeMicroseconds dateTimeMicroseconds
325 observationTimeNanoseconds dateTimeNanoseconds
372 applicationCategoryName string
"""


def _table(text: str) -> dict[int, IE]:
    out: dict[int, IE] = {}
    for line in text.strip().splitlines():
        num, name, kind = line.split()
        out[int(num)] = IE(int(num), name, kind)
    return out


ELEMENTS: dict[int, IE] = _table(_IANA)

# NetFlow v9 options-template scope field types (RFC 3954 section 6.3.1): their own numbering.
V9_SCOPES: dict[int, IE] = {
    1: IE(1, "scopeSystem", "octetArray"),
    2: IE(2, "scopeInterface", "unsigned32"),
    3: IE(3, "scopeLineCard", "unsigned32"),
    4: IE(4, "scopeCache", "octetArray"),
    5: IE(5, "scopeTemplate", "octetArray"),
}

# flowEndReason (136) values, and biflowDirection (239) values (RFC 5103 section 6.3).
FLOW_END_REASONS: dict[int, str] = {
    1: "idleTimeout", 2: "activeTimeout", 3: "endOfFlowDetected", 4: "forcedEnd", 5: "lackOfResources",
}  # fmt: skip
BIFLOW_DIRECTIONS: dict[int, str] = {0: "arbitrary", 1: "initiator", 2: "reverseInitiator", 3: "perimeter"}


def reverse_name(name: str) -> str:
    """RFC 5103 naming: octetDeltaCount -> reverseOctetDeltaCount."""
    return "reverse" + name[0].upper() + name[1:]


# Enterprise elements aioflow writes, by (enterprise, id): ntop's (PEN 35632, nProbe's and ntopng's
# numbering, which tshark's cflow dissector names: cflow.pie.ntop.*) where IANA has no element.
NTOP_PEN = 35632
ENTERPRISE_ELEMENTS: dict[tuple[int, int], IE] = {
    (NTOP_PEN, 122): IE(122, "ntopFlowServerName", "string", NTOP_PEN),  # nProbe's FLOW_SERVER_NAME
}

_BY_NAME: dict[str, IE] = {ie.name: ie for ie in ELEMENTS.values()}
_BY_NAME.update(
    {reverse_name(ie.name): IE(ie.id, reverse_name(ie.name), ie.type, REVERSE_PEN) for ie in ELEMENTS.values()}
)
_BY_NAME.update({ie.name: ie for ie in ENTERPRISE_ELEMENTS.values()})


def lookup(element_id: int, enterprise: int = 0) -> IE | None:
    """The element (IANA when enterprise is 0, RFC 5103 reverse for 29305, ENTERPRISE_ELEMENTS);
    None when unknown."""
    if enterprise not in (0, REVERSE_PEN):
        return ENTERPRISE_ELEMENTS.get((enterprise, element_id))
    ie = ELEMENTS.get(element_id)
    if ie is None or enterprise not in (0, REVERSE_PEN):
        return None
    return ie if enterprise == 0 else IE(ie.id, reverse_name(ie.name), ie.type, REVERSE_PEN)


def by_name(name: str) -> IE:
    """The element of that IANA (reverse, or ENTERPRISE_ELEMENTS) name; KeyError when unknown."""
    return _BY_NAME[name]


def field_name(element_id: int, enterprise: int = 0) -> str:
    """A stable name for a template field: the IANA (or reverse) name, else ``ie<id>`` or
    ``ie<enterprise>_<id>`` so that unknown enterprise elements stay distinct by number."""
    ie = lookup(element_id, enterprise)
    if ie is not None:
        return ie.name
    return f"ie{element_id}" if enterprise == 0 else f"ie{enterprise}_{element_id}"


def element_type(element_id: int, enterprise: int = 0) -> str:
    """The abstract data type; unknown elements are octetArray (kept as raw bytes)."""
    ie = lookup(element_id, enterprise)
    return ie.type if ie is not None else "octetArray"

