/* Tunnels (decode_tunnels): one decoder per encapsulation, Suricata's way, each handing its payload
 * back to decode.c's layers. A packet is keyed on its innermost IP plus a tunnel id: a 32-bit
 * FNV-1a over every tunnel level's type, its carrier's two addresses in canonical order and, for
 * VXLAN and Geneve, the VNI. Ids that differ by direction (GTP TEIDs, GRE keys, MPLS labels) are
 * left out, so both directions of an inner conversation share their tunnel id.
 *
 * A tunnel header that is cut or impossible leaves the packet in its carrier's flow and counts
 * AF_EVENT_TUNNEL_MALFORMED; so does nesting past AF_MAX_TUNNELS (AF_EVENT_TUNNEL_TOO_DEEP). A
 * payload that is no IP (ARP over VXLAN, PPTP's encrypted PPP, GTP signalling) stays in the
 * carrier's flow, uncounted: there is no inner flow to key. */
#ifndef AIOFLOW_TUNNELS_H
#define AIOFLOW_TUNNELS_H
#include <stdint.h>

#include "decode.h"

#define AF_MAX_TUNNELS 4

/* af_tunnel_open and af_tunnel_mpls, this file's entry points, are declared in decode.h: the
 * decoder hands carriers to them and they hand payloads back to its layers (one module pair,
 * without an include cycle). */

#endif
