/* net.h — the host networks cgvd manages: a Linux bridge with the host's
 * address on it, a subnet, and an address pool for VMs that do not name
 * their addresses. The bridge is created with plain ioctls (no shelling out)
 * and left in place when cgvd stops, so running VMs keep their network. */
#ifndef NET_H
#define NET_H

#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"

struct net_def {
    char name[41];      /* the name specs use, e.g. "default" */
    char bridge[16];    /* e.g. "cgvbr0" */
    uint32_t gateway;   /* host address on the bridge, host byte order */
    unsigned prefix;    /* 8..30 */
    uint32_t pool_first, pool_last; /* host byte order, inclusive */
};

/* Fill def from "10.77.0.1/24" and "10.77.0.100-10.77.0.199" (pool NULL:
 * every host address of the subnet but the gateway). */
int net_def_parse(const char *name, const char *bridge, const char *gateway_cidr,
                  const char *pool, struct net_def *def, struct cgv_error *err) CGV_WUR;

/* Create the bridge if missing, give it the gateway address, turn STP off
 * and forward delay to 0, bring it up. Idempotent. */
int net_bridge_ensure(const struct net_def *def, struct cgv_error *err) CGV_WUR;

/* Is ip (dotted) usable for a VM on this network? 0, or -1 with why. */
int net_addr_check(const struct net_def *def, const char *ip, char *why, size_t cap);

/* "a.b.c.d" of a host-order address into buf[16]. */
void net_fmt_ip(uint32_t ip, char buf[16]);
int net_parse_ip(const char *s, uint32_t *out);

#endif
