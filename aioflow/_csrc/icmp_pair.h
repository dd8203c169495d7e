/* ICMP and ICMPv6 request/reply pairs, as Zeek maps them to ports and the Community ID spec
 * copies: a type's counterpart, or -1 for a one-way type (its "ports" are then type and code). */
#ifndef AIOFLOW_ICMP_PAIR_H
#define AIOFLOW_ICMP_PAIR_H
#include <stddef.h>
#include <stdint.h>

static inline int af_icmp_counterpart(int v6, int type) {
    static const uint8_t v4[][2] = {{8, 0}, {0, 8}, {13, 14}, {14, 13}, {15, 16}, {16, 15},
                                    {10, 9}, {9, 10}, {17, 18}, {18, 17}};
    static const uint8_t v6t[][2] = {{128, 129}, {129, 128}, {130, 131}, {131, 130}, {133, 134}, {134, 133},
                                     {135, 136}, {136, 135}, {139, 140}, {140, 139}, {144, 145}, {145, 144}};
    const uint8_t(*m)[2] = v6 ? v6t : v4;
    size_t n = v6 ? sizeof v6t / sizeof v6t[0] : sizeof v4 / sizeof v4[0];
    for (size_t i = 0; i < n; i++)
        if (m[i][0] == type) return m[i][1];
    return -1;
}

#endif
