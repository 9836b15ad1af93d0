/* Unit tests for net.c: network definitions, address checks, and (as root)
 * creating a bridge of our own, cgvut0, which is deleted afterwards. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "net.h"

#define TEST_BRIDGE "cgvut0"

static void parse_ok(const char *gw, const char *pool, struct net_def *d)
{
    struct cgv_error err = {0};

    if (net_def_parse("default", "cgvbr0", gw, pool, d, &err) != 0) {
        print_error("'%s' pool '%s' refused: %s\n", gw, pool ? pool : "(none)", err.msg);
        fail();
    }
}

static void parse_bad(const char *name, const char *bridge, const char *gw, const char *pool)
{
    struct cgv_error err = {0};
    struct net_def d;

    if (net_def_parse(name, bridge, gw, pool, &d, &err) != -1) {
        print_error("accepted: name '%s' bridge '%s' gw '%s' pool '%s'\n", name, bridge, gw,
                    pool ? pool : "(none)");
        fail();
    }
    assert_int_equal(err.code, CGV_E_INVALID);
    assert_true(err.msg[0] != '\0');
}

static uint32_t ip(const char *s)
{
    uint32_t v;

    assert_int_equal(net_parse_ip(s, &v), 0);
    return v;
}

static void test_parse_good(void **state)
{
    struct net_def d;
    char buf[16];

    (void)state;
    parse_ok("10.77.0.1/24", NULL, &d);
    assert_string_equal(d.name, "default");
    assert_string_equal(d.bridge, "cgvbr0");
    assert_int_equal(d.gateway, ip("10.77.0.1"));
    assert_int_equal(d.prefix, 24);
    /* Every host address (the allocator skips the gateway). */
    assert_true(d.pool_first == ip("10.77.0.1") || d.pool_first == ip("10.77.0.2"));
    assert_int_equal(d.pool_last, ip("10.77.0.254"));

    parse_ok("10.77.0.1/24", "10.77.0.100-10.77.0.199", &d);
    assert_int_equal(d.pool_first, ip("10.77.0.100"));
    assert_int_equal(d.pool_last, ip("10.77.0.199"));

    /* A single-address pool, the edges of the prefix range. */
    parse_ok("192.168.5.254/24", "192.168.5.7-192.168.5.7", &d);
    assert_int_equal(d.pool_first, d.pool_last);
    parse_ok("10.0.0.1/8", NULL, &d);
    assert_int_equal(d.pool_last, ip("10.255.255.254"));
    parse_ok("172.16.0.2/30", NULL, &d);
    assert_int_equal(d.pool_first, ip("172.16.0.1"));
    assert_int_equal(d.pool_last, ip("172.16.0.2"));
    /* The gateway need not be the first address. */
    parse_ok("10.77.3.200/22", "10.77.0.1-10.77.3.254", &d);
    assert_int_equal(d.prefix, 22);

    net_fmt_ip(ip("1.2.3.4"), buf);
    assert_string_equal(buf, "1.2.3.4");
    net_fmt_ip(0xffffffffu, buf);
    assert_string_equal(buf, "255.255.255.255");
    net_fmt_ip(0, buf);
    assert_string_equal(buf, "0.0.0.0");
}

static void test_parse_bad(void **state)
{
    char longname[64];

    (void)state;
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    /* names */
    parse_bad("", "cgvbr0", "10.77.0.1/24", NULL);
    parse_bad("Default", "cgvbr0", "10.77.0.1/24", NULL);
    parse_bad("a b", "cgvbr0", "10.77.0.1/24", NULL);
    parse_bad(longname, "cgvbr0", "10.77.0.1/24", NULL);
    /* bridges */
    parse_bad("default", "", "10.77.0.1/24", NULL);
    parse_bad("default", "averylongbridgename", "10.77.0.1/24", NULL);
    /* gateway/prefix */
    parse_bad("default", "cgvbr0", "10.77.0.1", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/7", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/31", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/32", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/24x", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/99999999999999999999999", NULL);
    parse_bad("default", "cgvbr0", "10.77.0/24", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.256/24", NULL);
    parse_bad("default", "cgvbr0", "fe80::1/64", NULL);
    parse_bad("default", "cgvbr0", "/24", NULL);
    parse_bad("default", "cgvbr0", "", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1/24/24", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.1000000000000000000000000000001/24", NULL);
    /* the gateway is the network or broadcast address */
    parse_bad("default", "cgvbr0", "10.77.0.0/24", NULL);
    parse_bad("default", "cgvbr0", "10.77.0.255/24", NULL);
    parse_bad("default", "cgvbr0", "10.77.3.255/22", NULL);
    /* pools */
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.100");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.199-10.77.0.100");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.100-10.77.1.10");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.76.255.250-10.77.0.10");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.0-10.77.0.10");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.10-10.77.0.255");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.10-x");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "-10.77.0.10");
    parse_bad("default", "cgvbr0", "10.77.0.1/24", "10.77.0.10-10.77.0.20-10.77.0.30");
    parse_bad("default", "cgvbr0", "10.77.0.1/24",
              "10.77.0.10-10.77.0.20                                                  x");
}

/* Leniencies of the prefix parser: strtoul() takes leading blanks and a
 * sign. */
static void test_parse_prefix_strict(void **state)
{
    struct cgv_error err = {0};
    struct net_def d;

    (void)state;
    if (net_def_parse("default", "cgvbr0", "10.77.0.1/ 24", NULL, &d, &err) == 0 ||
        net_def_parse("default", "cgvbr0", "10.77.0.1/+24", NULL, &d, &err) == 0)
        fail_msg("a prefix with a space or a sign was accepted");
}

static void check_addr(const struct net_def *d, const char *a, int want, const char *why_has)
{
    char why[256] = "";
    int rc = net_addr_check(d, a, why, sizeof(why));

    if (rc != want || (why_has && !strstr(why, why_has))) {
        print_error("net_addr_check(%s): %d \"%s\", want %d \"%s\"\n", a, rc, why, want,
                    why_has ? why_has : "");
        fail();
    }
}

static void test_addr_check(void **state)
{
    struct net_def d;

    (void)state;
    parse_ok("10.77.0.1/24", "10.77.0.100-10.77.0.199", &d);
    check_addr(&d, "10.77.0.10", 0, NULL);
    check_addr(&d, "10.77.0.2", 0, NULL);
    check_addr(&d, "10.77.0.254", 0, NULL);
    /* Outside the pool is fine: explicit addresses need not be in it. */
    check_addr(&d, "10.77.0.200", 0, NULL);
    check_addr(&d, "10.77.1.10", -1, "outside");
    check_addr(&d, "10.78.0.10", -1, "outside");
    check_addr(&d, "192.168.0.10", -1, "outside");
    check_addr(&d, "0.0.0.0", -1, "outside");
    check_addr(&d, "255.255.255.255", -1, "outside");
    check_addr(&d, "10.77.0.0", -1, "network or broadcast");
    check_addr(&d, "10.77.0.255", -1, "network or broadcast");
    check_addr(&d, "10.77.0.1", -1, "host's own");
    check_addr(&d, "10.77.0", -1, "not an IPv4");
    check_addr(&d, "10.77.0.10/24", -1, "not an IPv4");
    check_addr(&d, " 10.77.0.10", -1, "not an IPv4");
    check_addr(&d, "", -1, "not an IPv4");
    check_addr(&d, "::1", -1, "not an IPv4");

    parse_ok("10.77.3.200/22", NULL, &d);
    check_addr(&d, "10.77.0.0", -1, "network or broadcast");
    check_addr(&d, "10.77.3.255", -1, "network or broadcast");
    check_addr(&d, "10.77.0.255", 0, NULL);
    check_addr(&d, "10.77.2.0", 0, NULL);
    check_addr(&d, "10.77.3.200", -1, "host's own");
    check_addr(&d, "10.77.4.1", -1, "outside");
}

/* ---- bridge (root only) ---------------------------------------------- */

static int sock(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    return fd;
}

static void bridge_delete(const char *name)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;

    if (fd < 0)
        return;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags &= (short)~IFF_UP;
        ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    ioctl(fd, SIOCBRDELBR, name);
    close(fd);
}

static int bridge_setup(void **state)
{
    (void)state;
    bridge_delete(TEST_BRIDGE);
    return 0;
}

static int bridge_teardown(void **state)
{
    (void)state;
    bridge_delete(TEST_BRIDGE);
    return 0;
}

static void assert_bridge(const char *name, const char *addr, const char *mask)
{
    CGV_AUTOCLOSE int fd = sock();
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    struct stat st;
    char path[128], buf[16];

    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", name);
    assert_int_equal(stat(path, &st), 0); /* it is a bridge */
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
    assert_true(ifr.ifr_flags & IFF_UP);
    assert_int_equal(ioctl(fd, SIOCGIFADDR, &ifr), 0);
    assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), addr);
    assert_int_equal(ioctl(fd, SIOCGIFNETMASK, &ifr), 0);
    assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), mask);
}

static void read_attr(const char *name, const char *attr, char *out, size_t cap)
{
    char path[128];
    char *text = NULL;

    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge/%s", name, attr);
    assert_int_equal(cgv_read_file(path, 64, &text, NULL, NULL), 0);
    text[strcspn(text, "\n")] = '\0';
    snprintf(out, cap, "%s", text);
    free(text);
}

static void test_bridge_ensure(void **state)
{
    struct net_def d;
    struct cgv_error err = {0};
    char v[32];

    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: creating a bridge needs root\n");
        skip();
    }
    assert_int_equal(net_def_parse("cgvut", TEST_BRIDGE, "10.231.77.1/24", NULL, &d, &err), 0);
    if (net_bridge_ensure(&d, &err) != 0) {
        if (strstr(err.msg, "Operation not permitted") || strstr(err.msg, "not supported")) {
            print_message("skipped: %s\n", err.msg);
            skip();
        }
        print_error("net_bridge_ensure: %s\n", err.msg);
        fail();
    }
    assert_bridge(TEST_BRIDGE, "10.231.77.1", "255.255.255.0");
    read_attr(TEST_BRIDGE, "stp_state", v, sizeof(v));
    assert_string_equal(v, "0");
    read_attr(TEST_BRIDGE, "forward_delay", v, sizeof(v));
    assert_string_equal(v, "0");

    /* Idempotent: a second call changes nothing and succeeds. */
    assert_int_equal(net_bridge_ensure(&d, &err), 0);
    assert_bridge(TEST_BRIDGE, "10.231.77.1", "255.255.255.0");

    /* Brought down behind cgvd's back: brought up again. */
    {
        CGV_AUTOCLOSE int fd = sock();
        struct ifreq ifr;
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TEST_BRIDGE);
        assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
        ifr.ifr_flags &= (short)~IFF_UP;
        assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
    }
    assert_int_equal(net_bridge_ensure(&d, &err), 0);
    assert_bridge(TEST_BRIDGE, "10.231.77.1", "255.255.255.0");

    /* A different gateway and prefix replace the old address. */
    assert_int_equal(net_def_parse("cgvut", TEST_BRIDGE, "10.231.76.9/23", NULL, &d, &err), 0);
    assert_int_equal(net_bridge_ensure(&d, &err), 0);
    assert_bridge(TEST_BRIDGE, "10.231.76.9", "255.255.254.0");
}

/* An existing interface that is not a bridge must not be taken over (its
 * address replaced): net_bridge_ensure should refuse it. The interface is a
 * TAP device of our own, cgvut1, gone when its fd is closed. */
static void test_bridge_not_a_bridge(void **state)
{
    struct net_def d;
    struct cgv_error err = {0};
    struct ifreq ifr;
    CGV_AUTOCLOSE int tun = -1;
    int rc;

    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: needs root\n");
        skip();
    }
    tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (tun < 0) {
        print_message("skipped: /dev/net/tun: %s\n", strerror(errno));
        skip();
    }
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "cgvut1");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(tun, TUNSETIFF, &ifr) < 0) {
        print_message("skipped: TUNSETIFF: %s\n", strerror(errno));
        skip();
    }
    assert_int_equal(net_def_parse("cgvut", "cgvut1", "10.231.78.1/24", NULL, &d, &err), 0);
    rc = net_bridge_ensure(&d, &err);
    /* An existing device that is not a bridge (a NIC) is never readdressed. */
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "cgvut1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_prefix_strict),
        cmocka_unit_test(test_addr_check),
        cmocka_unit_test_setup_teardown(test_bridge_ensure, bridge_setup, bridge_teardown),
        cmocka_unit_test(test_bridge_not_a_bridge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
