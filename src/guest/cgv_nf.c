/* cgv_nf.c — cgv-nf, the sample network function inside the demo guest.
 *
 * A UDP request/response service (default 0.0.0.0:7000): every request
 * datagram gets one reply, "cgv-nf <vm-name> <count> <request bytes>", where
 * count is the number of requests answered so far including this one (see
 * nf_reply.h). The count lives in a small mmap'd file (nf_counter.h) that
 * cgv-guest reads for its heartbeats, so it survives a respawn of cgv-nf.
 * Static binary, libc only.
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
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        ssize_t n;
        size_t rlen;

        /* A longer datagram is cut to NF_MAX_REQUEST and still answered. */
        n = recvfrom(fd, req, sizeof(req), 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "cgv-nf: recvfrom: %s\n", strerror(errno));
            return 1;
        }
        rlen = nf_reply_format(reply, sizeof(reply), name, count + 1, req, (size_t)n);
        if (sendto(fd, reply, rlen, 0, (struct sockaddr *)&peer, plen) < 0) {
            if (send_errors++ % 1000 == 0)
                fprintf(stderr, "cgv-nf: sendto: %s\n", strerror(errno));
            continue;
        }
        count++;
        nf_counter_set(&counter, count);
    }
}
