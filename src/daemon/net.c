/* net.c — see net.h */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if_arp.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "net"

int net_parse_ip(const char *s, uint32_t *out)
{
    struct in_addr a;

    if (inet_pton(AF_INET, s, &a) != 1)
        return -1;
    *out = ntohl(a.s_addr);
    return 0;
}

void net_fmt_ip(uint32_t ip, char buf[16])
{
    snprintf(buf, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff,
             ip & 0xff);
}

static uint32_t mask_of(unsigned prefix)
{
    return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

int net_def_parse(const char *name, const char *bridge, const char *gateway_cidr,
                  const char *pool, struct net_def *def, struct cgv_error *err)
{
    char ipbuf[32], *slash, *end;
    unsigned long prefix;
    uint32_t mask, netw;

    memset(def, 0, sizeof(*def));
    if (cgv_strlcpy(def->name, name, sizeof(def->name)) < 0 || !cgv_name_valid(name))
        return cgv_err(err, CGV_E_INVALID, "network name '%s' is not valid", name);
    if (cgv_strlcpy(def->bridge, bridge, sizeof(def->bridge)) < 0 || !bridge[0])
        return cgv_err(err, CGV_E_INVALID, "bridge name '%s' is longer than %d characters",
                       bridge, IFNAMSIZ - 1);
    if (cgv_strlcpy(ipbuf, gateway_cidr, sizeof(ipbuf)) < 0 ||
        !(slash = strchr(ipbuf, '/')))
        return cgv_err(err, CGV_E_INVALID, "network %s: '%s' is not ADDRESS/PREFIX", name,
                       gateway_cidr);
    *slash = '\0';
    errno = 0;
    prefix = strtoul(slash + 1, &end, 10);
    if (slash[1] < '0' || slash[1] > '9' || errno || *end || prefix < 8 || prefix > 30)
        return cgv_err(err, CGV_E_INVALID, "network %s: prefix in '%s' must be 8..30",
                       name, gateway_cidr);
    if (net_parse_ip(ipbuf, &def->gateway) < 0)
        return cgv_err(err, CGV_E_INVALID, "network %s: '%s' is not an IPv4 address",
                       name, ipbuf);
    def->prefix = (unsigned)prefix;
    mask = mask_of(def->prefix);
    netw = def->gateway & mask;
    if (def->gateway == netw || def->gateway == (netw | ~mask))
        return cgv_err(err, CGV_E_INVALID,
                       "network %s: gateway %s is the network or broadcast address", name,
                       ipbuf);
    if (pool) {
        char pbuf[64], *dash;
        if (cgv_strlcpy(pbuf, pool, sizeof(pbuf)) < 0 || !(dash = strchr(pbuf, '-')))
            return cgv_err(err, CGV_E_INVALID, "network %s: pool '%s' is not FIRST-LAST",
                           name, pool);
        *dash = '\0';
        if (net_parse_ip(pbuf, &def->pool_first) < 0 ||
            net_parse_ip(dash + 1, &def->pool_last) < 0)
            return cgv_err(err, CGV_E_INVALID,
                           "network %s: pool '%s' has an address that is not IPv4", name,
                           pool);
        if (def->pool_first > def->pool_last || (def->pool_first & mask) != netw ||
            (def->pool_last & mask) != netw || def->pool_first == netw ||
            def->pool_last == (netw | ~mask))
            return cgv_err(err, CGV_E_INVALID,
                           "network %s: pool '%s' must be an ascending range of host "
                           "addresses inside %s/%u",
                           name, pool, ipbuf, def->prefix);
    } else {
        def->pool_first = netw + 1;
        def->pool_last = (netw | ~mask) - 1;
    }
    return 0;
}

int net_addr_check(const struct net_def *def, const char *ip, char *why, size_t cap)
{
    uint32_t a, mask = mask_of(def->prefix), netw = def->gateway & mask;
    char gw[16];

    net_fmt_ip(def->gateway, gw);
    if (net_parse_ip(ip, &a) < 0) {
        snprintf(why, cap, "'%s' is not an IPv4 address", ip);
        return -1;
    }
    if ((a & mask) != netw) {
        snprintf(why, cap, "%s is outside network %s (%s/%u)", ip, def->name, gw, def->prefix);
        return -1;
    }
    if (a == netw || a == (netw | ~mask)) {
        snprintf(why, cap, "%s is the network or broadcast address of %s", ip, def->name);
        return -1;
    }
    if (a == def->gateway) {
        snprintf(why, cap, "%s is the host's own address on %s", ip, def->name);
        return -1;
    }
    return 0;
}

static int write_sysfs(const char *bridge, const char *attr, const char *value)
{
    char path[256];
    CGV_AUTOCLOSE int fd = -1;

    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge/%s", bridge, attr);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    return write(fd, value, strlen(value)) < 0 ? -1 : 0;
}

/* The bridge's MAC address must never change: by default a Linux bridge
 * takes the lowest MAC of its ports, so when the VM owning that port dies
 * the host's MAC changes under every guest's ARP cache and their replies
 * go to an address nobody has until they ARP again (about 250 ms of lost
 * replies after a fail-over). An address set once (addr_assign_type 3,
 * NET_ADDR_SET) stays. A bridge that already has ports keeps the address
 * it has now (no running guest notices); an empty one gets a fixed
 * locally administered address derived from its name. */
static int pin_bridge_mac(int fd, const char *bridge, struct cgv_error *err)
{
    char path[128], buf[8] = "";
    struct ifreq ifr;
    unsigned char *mac = (unsigned char *)ifr.ifr_hwaddr.sa_data;
    bool zero = true;
    ssize_t n;
    CGV_AUTOCLOSE int tfd = -1;

    snprintf(path, sizeof(path), "/sys/class/net/%s/addr_assign_type", bridge);
    tfd = open(path, O_RDONLY | O_CLOEXEC);
    if (tfd >= 0 && (n = read(tfd, buf, sizeof(buf) - 1)) > 0 && atoi(buf) == 3)
        return 0; /* set already */
    memset(&ifr, 0, sizeof(ifr));
    cgv_strlcpy(ifr.ifr_name, bridge, IFNAMSIZ);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
        return cgv_err(err, CGV_E_IO, "read the MAC address of %s: %s", bridge,
                       strerror(errno));
    for (int i = 0; i < 6; i++)
        zero = zero && mac[i] == 0;
    if (zero) {
        uint32_t h = 2166136261u; /* FNV-1a of the name */
        for (const char *c = bridge; *c; c++)
            h = (h ^ (unsigned char)*c) * 16777619u;
        mac[0] = 0x02; /* locally administered, unicast */
        mac[1] = 0x63; /* 'c' */
        mac[2] = (unsigned char)(h >> 24);
        mac[3] = (unsigned char)(h >> 16);
        mac[4] = (unsigned char)(h >> 8);
        mac[5] = (unsigned char)h;
    }
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    if (ioctl(fd, SIOCSIFHWADDR, &ifr) < 0)
        return cgv_err(err, CGV_E_IO, "set the MAC address of %s: %s", bridge,
                       strerror(errno));
    log_info("bridge %s: MAC address fixed at %02x:%02x:%02x:%02x:%02x:%02x", bridge, mac[0],
             mac[1], mac[2], mac[3], mac[4], mac[5]);
    return 0;
}

int net_bridge_ensure(const struct net_def *def, struct cgv_error *err)
{
    CGV_AUTOCLOSE int fd = -1;
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    char gw[16];

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    if (ioctl(fd, SIOCBRADDBR, def->bridge) < 0) {
        char path[128];
        struct stat st;
        if (errno != EEXIST)
            return cgv_err(err, CGV_E_IO, "create bridge %s: %s", def->bridge,
                           strerror(errno));
        /* It exists: it must be a bridge, never a NIC we would readdress. */
        snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", def->bridge);
        if (stat(path, &st) < 0)
            return cgv_err(err, CGV_E_CONFLICT,
                           "network device %s exists and is not a bridge; choose another "
                           "--bridge name",
                           def->bridge);
    }
    if (write_sysfs(def->bridge, "stp_state", "0") < 0 ||
        write_sysfs(def->bridge, "forward_delay", "0") < 0)
        log_warn("bridge %s: could not turn STP off / forward delay to 0", def->bridge);
    if (pin_bridge_mac(fd, def->bridge, err) < 0)
        return -1;

    memset(&ifr, 0, sizeof(ifr));
    cgv_strlcpy(ifr.ifr_name, def->bridge, IFNAMSIZ);
    if (ioctl(fd, SIOCGIFADDR, &ifr) < 0 || sin->sin_family != AF_INET ||
        ntohl(sin->sin_addr.s_addr) != def->gateway) {
        memset(&ifr, 0, sizeof(ifr));
        cgv_strlcpy(ifr.ifr_name, def->bridge, IFNAMSIZ);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(def->gateway);
        net_fmt_ip(def->gateway, gw);
        if (ioctl(fd, SIOCSIFADDR, &ifr) < 0)
            return cgv_err(err, CGV_E_IO, "set address %s on %s: %s", gw, def->bridge,
                           strerror(errno));
        sin->sin_addr.s_addr = htonl(mask_of(def->prefix));
        if (ioctl(fd, SIOCSIFNETMASK, &ifr) < 0)
            return cgv_err(err, CGV_E_IO, "set netmask /%u on %s: %s", def->prefix,
                           def->bridge, strerror(errno));
    }
    memset(&ifr, 0, sizeof(ifr));
    cgv_strlcpy(ifr.ifr_name, def->bridge, IFNAMSIZ);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return cgv_err(err, CGV_E_IO, "read flags of %s: %s", def->bridge, strerror(errno));
    if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
            return cgv_err(err, CGV_E_IO, "bring %s up: %s", def->bridge, strerror(errno));
    }
    return 0;
}
