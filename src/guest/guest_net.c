/* guest_net.c — rtnetlink address requests and gratuitous ARP (pure, see header). */
#include "guest_net.h"

#include <string.h>

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

struct nlbuf {
    uint8_t *p;
    size_t cap, len;
    bool overflow;
};

static void *nl_put(struct nlbuf *b, size_t n)
{
    size_t aligned = NLMSG_ALIGN(n);
    void *at;

    if (b->overflow || b->cap - b->len < aligned) {
        b->overflow = true;
        return NULL;
    }
    at = b->p + b->len;
    memset(at, 0, aligned);
    b->len += aligned;
    return at;
}

static void nl_attr(struct nlbuf *b, uint16_t type, const void *data, size_t n)
{
    struct rtattr rta;
    uint8_t *at = nl_put(b, RTA_LENGTH(n));

    if (!at)
        return;
    rta.rta_len = (unsigned short)RTA_LENGTH(n);
    rta.rta_type = type;
    memcpy(at, &rta, sizeof(rta));
    memcpy(at + RTA_LENGTH(0), data, n);
}

size_t guest_nl_addr_request(uint8_t *buf, size_t cap, bool add, uint32_t seq,
                             int ifindex, const struct guest_vip *v, const char *label)
{
    struct nlbuf b = {.p = buf, .cap = cap};
    struct nlmsghdr nh;
    struct ifaddrmsg ifa;
    uint8_t *hdr, *body;

    if (ifindex <= 0 || v->prefix < 1 || v->prefix > 32 ||
        (label && strlen(label) > 15))
        return 0;
    hdr = nl_put(&b, sizeof(nh));
    body = nl_put(&b, sizeof(ifa));
    if (!hdr || !body)
        return 0;
    memset(&ifa, 0, sizeof(ifa));
    ifa.ifa_family = AF_INET;
    ifa.ifa_prefixlen = v->prefix;
    ifa.ifa_scope = RT_SCOPE_UNIVERSE;
    ifa.ifa_index = (uint32_t)ifindex;
    memcpy(body, &ifa, sizeof(ifa));
    nl_attr(&b, IFA_LOCAL, &v->addr, 4);
    nl_attr(&b, IFA_ADDRESS, &v->addr, 4);
    if (add && v->prefix <= 30) {
        uint32_t host_mask = 0xffffffffu >> v->prefix; /* prefix 1..30 here */
        uint8_t a[4], m[4] = {(uint8_t)(host_mask >> 24), (uint8_t)(host_mask >> 16),
                              (uint8_t)(host_mask >> 8), (uint8_t)host_mask};
        memcpy(a, &v->addr, 4);
        for (int i = 0; i < 4; i++)
            a[i] |= m[i];
        nl_attr(&b, IFA_BROADCAST, a, 4);
    }
    if (add && label && label[0])
        nl_attr(&b, IFA_LABEL, label, strlen(label) + 1);
    if (b.overflow)
        return 0;
    memset(&nh, 0, sizeof(nh));
    nh.nlmsg_len = (uint32_t)b.len;
    nh.nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
    nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    nh.nlmsg_seq = seq;
    memcpy(hdr, &nh, sizeof(nh));
    return b.len;
}

int guest_nl_parse_ack(const uint8_t *buf, size_t len, uint32_t seq, int *err)
{
    size_t off = 0;

    while (len - off >= sizeof(struct nlmsghdr)) {
        struct nlmsghdr nh;
        struct nlmsgerr e;

        memcpy(&nh, buf + off, sizeof(nh));
        if (nh.nlmsg_len < sizeof(nh) || nh.nlmsg_len > len - off)
            return -1;
        if (nh.nlmsg_seq == seq && nh.nlmsg_type == NLMSG_ERROR) {
            if (nh.nlmsg_len < NLMSG_LENGTH(sizeof(e.error)))
                return -1;
            memcpy(&e.error, buf + off + NLMSG_HDRLEN, sizeof(e.error));
            *err = e.error < 0 ? -e.error : e.error;
            return 1;
        }
        off += NLMSG_ALIGN(nh.nlmsg_len);
        if (off > len)
            break;
    }
    return 0;
}

size_t guest_arp_announce(uint8_t *buf, size_t cap, const uint8_t mac[6], uint32_t addr)
{
    uint8_t *p = buf;

    if (cap < GUEST_ARP_FRAME_LEN)
        return 0;
    memset(buf, 0, GUEST_ARP_FRAME_LEN);
    memset(p, 0xff, 6); /* Ethernet: to everyone */
    memcpy(p + 6, mac, 6);
    p[12] = 0x08; /* ETH_P_ARP */
    p[13] = 0x06;
    p += 14;
    p[0] = 0x00; /* hardware type: Ethernet */
    p[1] = 0x01;
    p[2] = 0x08; /* protocol: IPv4 */
    p[3] = 0x00;
    p[4] = 6;
    p[5] = 4;
    p[6] = 0x00; /* opcode: request */
    p[7] = 0x01;
    memcpy(p + 8, mac, 6);
    memcpy(p + 14, &addr, 4);
    /* target hardware address stays zero */
    memcpy(p + 24, &addr, 4);
    return GUEST_ARP_FRAME_LEN;
}
