/* The compiled module's own code: it only pulls in the engine's public header. The engine lives
 * in _csrc/ (decode.c: link/IP/transport decoding, flowtable.c: the bounded flow table and expiry,
 * engine.c: libpcap sources, batches and the entry points named in api.h). */
#include "aioflow.h"
