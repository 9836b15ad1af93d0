/* Unit tests for the bytes cgv-guest sends to move a VIP: rtnetlink address
 * requests and acks, and the gratuitous ARP frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "guest_net.h"
#include "guest_role.h"

struct attrs {
    int n;
    uint16_t type[8];
    uint8_t data[8][32];
    size_t len[8];
};

/* Check the request's framing and collect its attributes. */
static void parse_request(const uint8_t *buf, size_t n, struct nlmsghdr *nh,
                          struct ifaddrmsg *ifa, struct attrs *at)
{
    size_t off;

    assert_true(n >= NLMSG_LENGTH(sizeof(*ifa)));
    memcpy(nh, buf, sizeof(*nh));
    assert_int_equal(nh->nlmsg_len, n);
    memcpy(ifa, buf + NLMSG_HDRLEN, sizeof(*ifa));
    memset(at, 0, sizeof(*at));
    off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*ifa));
    while (off < n) {
        struct rtattr rta;
        memcpy(&rta, buf + off, sizeof(rta));
        assert_true(rta.rta_len >= RTA_LENGTH(0) && off + rta.rta_len <= n);
        assert_true(at->n < 8);
        at->type[at->n] = rta.rta_type;
        at->len[at->n] = rta.rta_len - RTA_LENGTH(0);
        assert_true(at->len[at->n] <= 32);
        memcpy(at->data[at->n], buf + off + RTA_LENGTH(0), at->len[at->n]);
        at->n++;
        off += RTA_ALIGN(rta.rta_len);
    }
    assert_int_equal(off, n);
}

static const uint8_t *attr(const struct attrs *at, uint16_t type, size_t *len)
{
    for (int i = 0; i < at->n; i++) {
        if (at->type[i] == type) {
            *len = at->len[i];
            return at->data[i];
        }
    }
    return NULL;
}

static void test_newaddr(void **state)
{
    uint8_t buf[GUEST_NL_ADDR_MAX];
    struct nlmsghdr nh;
    struct ifaddrmsg ifa;
    struct attrs at;
    struct guest_vip v;
    const uint8_t *d;
    size_t n, len;

    (void)state;
    assert_int_equal(guest_vip_parse("10.79.2.50/24", &v), 0);
    n = guest_nl_addr_request(buf, sizeof(buf), true, 77, 2, &v, "eth0:cgv");
    assert_true(n > 0);
    parse_request(buf, n, &nh, &ifa, &at);
    assert_int_equal(nh.nlmsg_type, RTM_NEWADDR);
    assert_int_equal(nh.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    assert_int_equal(nh.nlmsg_seq, 77);
    assert_int_equal(ifa.ifa_family, AF_INET);
    assert_int_equal(ifa.ifa_prefixlen, 24);
    assert_int_equal(ifa.ifa_index, 2);
    assert_int_equal(ifa.ifa_scope, RT_SCOPE_UNIVERSE);
    assert_int_equal(at.n, 4);
    d = attr(&at, IFA_LOCAL, &len);
    assert_non_null(d);
    assert_int_equal(len, 4);
    assert_memory_equal(d, "\x0a\x4f\x02\x32", 4);
    d = attr(&at, IFA_ADDRESS, &len);
    assert_non_null(d);
    assert_memory_equal(d, "\x0a\x4f\x02\x32", 4);
    d = attr(&at, IFA_BROADCAST, &len);
    assert_non_null(d);
    assert_memory_equal(d, "\x0a\x4f\x02\xff", 4);
    d = attr(&at, IFA_LABEL, &len);
    assert_non_null(d);
    assert_int_equal(len, 9);
    assert_string_equal((const char *)d, "eth0:cgv");

    /* a /31 or /32 has no broadcast; no label asked */
    assert_int_equal(guest_vip_parse("192.168.1.7/32", &v), 0);
    n = guest_nl_addr_request(buf, sizeof(buf), true, 1, 3, &v, NULL);
    parse_request(buf, n, &nh, &ifa, &at);
    assert_int_equal(at.n, 2);
    assert_null(attr(&at, IFA_BROADCAST, &len));
    assert_null(attr(&at, IFA_LABEL, &len));
    /* /30: broadcast is the last address */
    assert_int_equal(guest_vip_parse("192.168.1.5/30", &v), 0);
    n = guest_nl_addr_request(buf, sizeof(buf), true, 1, 3, &v, "");
    parse_request(buf, n, &nh, &ifa, &at);
    d = attr(&at, IFA_BROADCAST, &len);
    assert_non_null(d);
    assert_memory_equal(d, "\xc0\xa8\x01\x07", 4);
}

static void test_deladdr(void **state)
{
    uint8_t buf[GUEST_NL_ADDR_MAX];
    struct nlmsghdr nh;
    struct ifaddrmsg ifa;
    struct attrs at;
    struct guest_vip v;
    size_t n, len;

    (void)state;
    assert_int_equal(guest_vip_parse("10.79.2.50/24", &v), 0);
    n = guest_nl_addr_request(buf, sizeof(buf), false, 9, 2, &v, "eth0:cgv");
    parse_request(buf, n, &nh, &ifa, &at);
    assert_int_equal(nh.nlmsg_type, RTM_DELADDR);
    assert_int_equal(nh.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
    assert_int_equal(ifa.ifa_prefixlen, 24);
    /* only the address: a label would make the kernel match on it */
    assert_int_equal(at.n, 2);
    assert_non_null(attr(&at, IFA_LOCAL, &len));
    assert_null(attr(&at, IFA_LABEL, &len));
}

static void test_request_limits(void **state)
{
    uint8_t buf[GUEST_NL_ADDR_MAX];
    struct guest_vip v;

    (void)state;
    assert_int_equal(guest_vip_parse("10.0.0.1/8", &v), 0);
    assert_int_equal(guest_nl_addr_request(buf, 30, true, 1, 2, &v, "eth0:cgv"), 0);
    assert_int_equal(guest_nl_addr_request(buf, sizeof(buf), true, 1, 0, &v, NULL), 0);
    assert_int_equal(guest_nl_addr_request(buf, sizeof(buf), true, 1, 2, &v,
                                           "a-label-longer-than-15"), 0);
    v.prefix = 0;
    assert_int_equal(guest_nl_addr_request(buf, sizeof(buf), true, 1, 2, &v, NULL), 0);
    v.prefix = 33;
    assert_int_equal(guest_nl_addr_request(buf, sizeof(buf), false, 1, 2, &v, NULL), 0);
}

/* An NLMSG_ERROR for seq with the given (negative) error. */
static size_t put_error(uint8_t *buf, uint32_t seq, int error)
{
    struct nlmsghdr nh = {0};
    struct nlmsgerr e;

    memset(&e, 0, sizeof(e));
    e.error = error;
    nh.nlmsg_len = NLMSG_LENGTH(sizeof(e));
    nh.nlmsg_type = NLMSG_ERROR;
    nh.nlmsg_seq = seq;
    memcpy(buf, &nh, sizeof(nh));
    memcpy(buf + NLMSG_HDRLEN, &e, sizeof(e));
    return NLMSG_ALIGN(nh.nlmsg_len);
}

static void test_parse_ack(void **state)
{
    uint8_t buf[512];
    struct nlmsghdr nh = {0};
    size_t n = 0;
    int err = -1;

    (void)state;
    n += put_error(buf, 5, 0);
    assert_int_equal(guest_nl_parse_ack(buf, n, 5, &err), 1);
    assert_int_equal(err, 0);
    assert_int_equal(guest_nl_parse_ack(buf, n, 6, &err), 0);
    /* an older answer first, then ours with EEXIST */
    n += put_error(buf + n, 6, -EEXIST);
    assert_int_equal(guest_nl_parse_ack(buf, n, 6, &err), 1);
    assert_int_equal(err, EEXIST);
    /* another message type with our seq is not an ack */
    nh.nlmsg_len = NLMSG_LENGTH(4);
    nh.nlmsg_type = RTM_NEWADDR;
    nh.nlmsg_seq = 7;
    memcpy(buf, &nh, sizeof(nh));
    assert_int_equal(guest_nl_parse_ack(buf, NLMSG_ALIGN(nh.nlmsg_len), 7, &err), 0);
    /* a length beyond the buffer, or below a header */
    nh.nlmsg_len = 400;
    memcpy(buf, &nh, sizeof(nh));
    assert_int_equal(guest_nl_parse_ack(buf, 64, 7, &err), -1);
    nh.nlmsg_len = 4;
    memcpy(buf, &nh, sizeof(nh));
    assert_int_equal(guest_nl_parse_ack(buf, 64, 7, &err), -1);
    /* an NLMSG_ERROR too short for its error code */
    nh.nlmsg_len = NLMSG_LENGTH(2);
    nh.nlmsg_type = NLMSG_ERROR;
    memcpy(buf, &nh, sizeof(nh));
    assert_int_equal(guest_nl_parse_ack(buf, NLMSG_ALIGN(nh.nlmsg_len), 7, &err), -1);
    assert_int_equal(guest_nl_parse_ack(buf, 3, 7, &err), 0);
}

static void test_arp_frame(void **state)
{
    const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    uint8_t f[GUEST_ARP_FRAME_LEN + 4], zero[18] = {0};
    struct guest_vip v;

    (void)state;
    assert_int_equal(guest_vip_parse("10.79.2.50/24", &v), 0);
    assert_int_equal(guest_arp_announce(f, GUEST_ARP_FRAME_LEN - 1, mac, v.addr), 0);
    memset(f, 0xaa, sizeof(f));
    assert_int_equal(guest_arp_announce(f, sizeof(f), mac, v.addr), 60);
    assert_memory_equal(f, "\xff\xff\xff\xff\xff\xff", 6);           /* broadcast */
    assert_memory_equal(f + 6, mac, 6);                              /* from us */
    assert_memory_equal(f + 12, "\x08\x06", 2);                      /* ARP */
    assert_memory_equal(f + 14, "\x00\x01\x08\x00\x06\x04\x00\x01", 8); /* Eth/IPv4 request */
    assert_memory_equal(f + 22, mac, 6);                             /* sender hw */
    assert_memory_equal(f + 28, "\x0a\x4f\x02\x32", 4);              /* sender ip */
    assert_memory_equal(f + 32, zero, 6);                            /* target hw */
    assert_memory_equal(f + 38, "\x0a\x4f\x02\x32", 4);              /* target ip = sender */
    assert_memory_equal(f + 42, zero, 18);                           /* padding */
    assert_int_equal(f[60], 0xaa);                                   /* nothing beyond */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newaddr),
        cmocka_unit_test(test_deladdr),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_parse_ack),
        cmocka_unit_test(test_arp_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
