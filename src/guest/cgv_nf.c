/* cgv_nf.c — cgv-nf, the sample network function inside the demo guest.
 *
 * A UDP request/response service (default 0.0.0.0:7000): every request
 * datagram gets one reply, "cgv-nf <vm-name> <count> <request bytes>", where
 * count is the number of requests answered so far including this one (see
 * nf_reply.h). The count lives in a small mmap'd file (nf_counter.h) that
 * cgv-guest reads for its heartbeats, so it survives a respawn of cgv-nf.
 *
 * Each reply leaves from the address its request was sent to (IP_PKTINFO on
 * receive, its ipi_spec_dst as the source on send): a client talking to a
 * virtual IP that cgv-guest added next to the interface's own address gets its
 * replies from the virtual IP, not from the primary address, so a connected
 * client socket accepts them and a moved VIP keeps working.
 *
 * Runs supervised by cgv-guest (cgvd lists it in the spec's processes, e.g.
 * `command: /usr/sbin/cgv-nf`). Static binary, libc only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "guest_cmdline.h"
#include "nf_counter.h"
#include "nf_reply.h"

#ifndef CGV_GUEST_VERSION
#error "CGV_GUEST_VERSION must come from the build"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: cgv-nf [-p PORT] [-n VM-NAME] [-c COUNTER-FILE] [--cmdline FILE]\n"
               "       cgv-nf --version\n"
               "Answers UDP requests on 0.0.0.0:PORT (default %d) with\n"
               "\"cgv-nf <vm-name> <count> <request>\".\n",
            NF_DEFAULT_PORT);
}

static void vm_name_from_cmdline(const char *path, char *name, size_t cap)
{
    struct guest_cmdline kc;
    char buf[4096];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    guest_cmdline_parse(buf, &kc, NULL, 0);
    snprintf(name, cap, "%s", kc.name);
}

static bool parse_port(const char *s, unsigned *port)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < 1 || v > 65535)
        return false;
    *port = (unsigned)v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"counter", required_argument, NULL, 'c'},
        {"cmdline", required_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *counter_path = NF_COUNTER_PATH, *cmdline_path = "/proc/cmdline";
    char name[GUEST_NAME_MAX + 1] = "";
    struct sockaddr_in sin;
    struct nf_counter counter;
    unsigned port = NF_DEFAULT_PORT;
    uint64_t count, send_errors = 0;
    int opt, fd, one = 1;

    while ((opt = getopt_long(argc, argv, "p:n:c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (!parse_port(optarg, &port)) {
                fprintf(stderr, "cgv-nf: bad port '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n':
            if (!guest_name_valid(optarg, strlen(optarg))) {
                fprintf(stderr, "cgv-nf: bad name '%s'\n", optarg);
                return 2;
            }
            snprintf(name, sizeof(name), "%s", optarg);
            break;
        case 'c': counter_path = optarg; break;
        case 'k': cmdline_path = optarg; break;
        case 'V': printf("cgv-nf %s\n", CGV_GUEST_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!name[0])
        vm_name_from_cmdline(cmdline_path, name, sizeof(name));

    if (nf_counter_open_rw(&counter, counter_path) < 0) {
        fprintf(stderr, "cgv-nf: %s: %s\n", counter_path, strerror(errno));
        return 1;
    }
    count = nf_counter_get(&counter);

    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "cgv-nf: socket: %s\n", strerror(errno));
        return 1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
        fprintf(stderr, "cgv-nf: IP_PKTINFO: %s (replies leave from the primary address)\n",
                strerror(errno));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    sin.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        fprintf(stderr, "cgv-nf: bind 0.0.0.0:%u: %s\n", port, strerror(errno));
        return 1;
    }
    fprintf(stderr, "cgv-nf: %s serving udp 0.0.0.0:%u (count %" PRIu64 ")\n", name,
            port, count);

    for (;;) {
        uint8_t req[NF_MAX_REQUEST], reply[NF_MAX_REPLY];
        union {
            struct cmsghdr align;
            uint8_t buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        } ctl;
        struct sockaddr_storage peer;
        struct iovec iov = {.iov_base = req, .iov_len = sizeof(req)};
        struct msghdr msg = {
            .msg_name = &peer, .msg_namelen = sizeof(peer),
            .msg_iov = &iov, .msg_iovlen = 1,
            .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
        };
        struct in_pktinfo *pi = NULL;
        struct cmsghdr *cm;
        ssize_t n;
        size_t rlen;

        /* A longer datagram is cut to NF_MAX_REQUEST and still answered. */
        n = recvmsg(fd, &msg, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "cgv-nf: recvmsg: %s\n", strerror(errno));
            return 1;
        }
        for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO)
                pi = (struct in_pktinfo *)CMSG_DATA(cm);
        }
        rlen = nf_reply_format(reply, sizeof(reply), name, count + 1, req, (size_t)n);
        iov.iov_base = reply;
        iov.iov_len = rlen;
        if (pi) {
            /* Source = the address the request came to; the route decides
             * the interface. */
            struct in_pktinfo *out;
            struct in_addr src = pi->ipi_spec_dst;
            msg.msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
            cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = IPPROTO_IP;
            cm->cmsg_type = IP_PKTINFO;
            cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
            out = (struct in_pktinfo *)CMSG_DATA(cm);
            memset(out, 0, sizeof(*out));
            out->ipi_spec_dst = src;
        } else {
            msg.msg_control = NULL;
            msg.msg_controllen = 0;
        }
        msg.msg_flags = 0;
        if (sendmsg(fd, &msg, 0) < 0) {
            if (send_errors++ % 1000 == 0)
                fprintf(stderr, "cgv-nf: sendmsg: %s\n", strerror(errno));
            continue;
        }
        count++;
        nf_counter_set(&counter, count);
    }
}
