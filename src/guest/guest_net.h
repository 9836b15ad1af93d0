/* guest_net.h — the bytes cgv-guest sends to move a virtual IP, without I/O:
 * rtnetlink RTM_NEWADDR / RTM_DELADDR requests and their acks, and the
 * gratuitous ARP frame that announces an address.
 *
 * The agent does this in-process (a NETLINK_ROUTE socket and an AF_PACKET
 * socket) rather than running busybox `ip` and `arping`: a fork and exec of
 * busybox costs milliseconds under TCG, a netlink request microseconds. */
#ifndef GUEST_NET_H
#define GUEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_role.h"

#define GUEST_ARP_FRAME_LEN 60 /* Ethernet minimum without FCS: 42 bytes + padding */
#define GUEST_NL_ADDR_MAX 128  /* buffer enough for one address request */

/* An RTM_NEWADDR (add true: NLM_F_CREATE|NLM_F_EXCL, so an address that is
 * already there fails with EEXIST) or RTM_DELADDR request for v on ifindex,
 * asking for an ack. IFA_LOCAL and IFA_ADDRESS = the address, IFA_BROADCAST
 * for prefixes up to /30, IFA_LABEL = label (at most 15 bytes; NULL or "" for
 * none; add only). Returns the message length, or 0 if cap is too small or an
 * argument is out of range. */
size_t guest_nl_addr_request(uint8_t *buf, size_t cap, bool add, uint32_t seq,
                             int ifindex, const struct guest_vip *v, const char *label);

/* Look through a netlink reply for the ack (NLMSG_ERROR) of request seq.
 * Returns 1 and sets *err (0 = success, else a positive errno), 0 if the
 * buffer holds no answer to seq, -1 if the buffer is malformed. */
int guest_nl_parse_ack(const uint8_t *buf, size_t len, uint32_t seq, int *err);

/* A gratuitous ARP request announcing addr (network order) from mac:
 * broadcast, sender = target = addr, target hardware address zero. Linux
 * takes such a request as an override of its neighbour entry at once (no
 * locktime), as do bridges and switches for their forwarding tables. Fills
 * exactly GUEST_ARP_FRAME_LEN bytes; returns that, or 0 if cap is too small. */
size_t guest_arp_announce(uint8_t *buf, size_t cap, const uint8_t mac[6], uint32_t addr);

#endif
