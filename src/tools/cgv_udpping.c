/* cgv_udpping.c — cgv-udpping, a host-side client for the guest's cgv-nf.
 *
 *   cgv-udpping [-c COUNT] [-i INTERVAL_MS] [-t TIMEOUT_MS] [-q] [--json] HOST[:PORT]
 *
 * Sends numbered requests every INTERVAL_MS, matches replies by sequence and
 * prints one line per reply and a summary; max_gap_ms (the longest time
 * without any reply while sending) measures an outage such as a failover.
 * Exit status: 0 if at least one reply came, 1 if none, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "cgv_common.h"
#include "udpping_stats.h"

enum { EXIT_REPLY = 0, EXIT_NO_REPLY = 1, EXIT_USAGE = 2 };

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

struct probe {
    int64_t sent_us;   /* 0: not sent */
    bool answered;
    bool timed_out;
};

struct run {
    /* options */
    uint64_t count; /* 0 = until interrupted */
    unsigned interval_ms, timeout_ms;
    bool quiet, json;
    char host[256], port[16];
    /* state */
    uint64_t token;
    struct probe *probes; /* index seq - 1 */
    size_t probes_cap;
    uint64_t sent, received, duplicates, late, send_errors;
    double *rtts;
    size_t n_rtts, rtts_cap;
    struct udpping_gap gap;
    int64_t first_send_us, last_send_us;
    char last_vm[65];
    uint64_t last_count;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cgv-udpping [-c COUNT] [-i INTERVAL_MS] [-t TIMEOUT_MS] [-q] [--json]\n"
            "                   HOST[:PORT]\n"
            "Sends numbered UDP requests to a cgv-nf (port %s by default), prints\n"
            "each reply and a summary.\n"
            "  -c COUNT        requests to send (default: until interrupted)\n"
            "  -i INTERVAL_MS  time between requests (default 1000)\n"
            "  -t TIMEOUT_MS   how long a request waits for its reply (default 1000)\n"
            "  -q              print only the summary\n"
            "  --json          print only the summary, as one JSON object\n"
            "Exit status: 0 if a reply came, 1 if none, 2 on a usage error.\n",
            UDPPING_DEFAULT_PORT);
}

static bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int open_socket(const struct run *r)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    rc = getaddrinfo(r->host, r->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "cgv-udpping: %s: %s\n", r->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        /* connect(): only the target's datagrams reach us, and ICMP errors do. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        fprintf(stderr, "cgv-udpping: cannot reach %s:%s: %s\n", r->host, r->port,
                strerror(errno));
    freeaddrinfo(res);
    return fd;
}

static struct probe *probe_get(struct run *r, uint64_t seq)
{
    if (seq == 0 || seq > r->sent)
        return NULL;
    return &r->probes[seq - 1];
}

static void send_one(struct run *r, int fd, int64_t now)
{
    char req[64];
    uint64_t seq = r->sent + 1;
    int n = udpping_format_request(req, sizeof(req), r->token, seq);

    if (r->sent == r->probes_cap) {
        r->probes_cap = r->probes_cap ? r->probes_cap * 2 : 256;
        r->probes = cgv_realloc(r->probes, r->probes_cap * sizeof(*r->probes));
    }
    r->probes[seq - 1] = (struct probe){.sent_us = now};
    r->sent = seq;
    if (seq == 1) {
        r->first_send_us = now;
        udpping_gap_start(&r->gap, now);
    }
    r->last_send_us = now;
    if (send(fd, req, (size_t)n, 0) < 0) {
        /* ICMP errors from an earlier datagram land here too; the request
         * counts as sent (and lost). */
        if (r->send_errors++ == 0 && !r->json)
            fprintf(stderr, "cgv-udpping: send: %s\n", strerror(errno));
    }
}

static void take_reply(struct run *r, const char *buf, size_t len, int64_t now)
{
    struct udpping_reply rep;
    struct probe *p;
    double rtt;

    if (udpping_parse_reply(buf, len, &rep) < 0 || rep.token != r->token)
        return;
    p = probe_get(r, rep.seq);
    if (!p)
        return;
    udpping_gap_reply(&r->gap, now);
    if (p->answered) {
        r->duplicates++;
        return;
    }
    p->answered = true;
    r->received++;
    if (p->timed_out)
        r->late++;
    rtt = (double)(now - p->sent_us) / 1000.0;
    if (r->n_rtts == r->rtts_cap) {
        r->rtts_cap = r->rtts_cap ? r->rtts_cap * 2 : 256;
        r->rtts = cgv_realloc(r->rtts, r->rtts_cap * sizeof(*r->rtts));
    }
    r->rtts[r->n_rtts++] = rtt;
    snprintf(r->last_vm, sizeof(r->last_vm), "%s", rep.vm_name);
    r->last_count = rep.count;
    if (!r->quiet && !r->json)
        printf("reply seq=%" PRIu64 " from %s count=%" PRIu64 " rtt_ms=%.1f%s\n",
               rep.seq, rep.vm_name, rep.count, rtt, p->timed_out ? " (late)" : "");
}

/* Mark requests whose timeout passed; returns the earliest pending deadline
 * (INT64_MAX if none). */
static int64_t check_timeouts(struct run *r, int64_t now, uint64_t *scan_from)
{
    int64_t t = (int64_t)r->timeout_ms * 1000;
    uint64_t seq;

    for (seq = *scan_from; seq <= r->sent; seq++) {
        struct probe *p = &r->probes[seq - 1];
        if (p->answered)
            continue;
        if (now - p->sent_us < t)
            return p->sent_us + t;
        if (!p->timed_out) {
            p->timed_out = true;
            if (!r->quiet && !r->json)
                printf("timeout seq=%" PRIu64 "\n", seq);
        }
    }
    /* Everything before seq is answered or timed out. */
    *scan_from = seq;
    return INT64_MAX;
}

static void fmt_ms(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.2f", v);
}

static json_t *json_ms(double v)
{
    return isnan(v) ? json_null() : json_real(round(v * 1000.0) / 1000.0);
}

static void summary(struct run *r)
{
    double p50 = NAN, p99 = NAN, min = NAN, max = NAN, sum = 0;
    double gap_ms = (double)udpping_gap_finish(&r->gap, r->last_send_us) / 1000.0;
    uint64_t lost = r->sent - r->received;
    char s50[32], s99[32];

    udpping_sort(r->rtts, r->n_rtts);
    if (r->n_rtts) {
        p50 = udpping_percentile(r->rtts, r->n_rtts, 50);
        p99 = udpping_percentile(r->rtts, r->n_rtts, 99);
        min = r->rtts[0];
        max = r->rtts[r->n_rtts - 1];
        for (size_t i = 0; i < r->n_rtts; i++)
            sum += r->rtts[i];
    }
    if (r->json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, "
                              "s:o, s:o, s:o}",
                              "host", r->host, "port", r->port,
                              "sent", (json_int_t)r->sent,
                              "received", (json_int_t)r->received,
                              "lost", (json_int_t)lost,
                              "duplicates", (json_int_t)r->duplicates,
                              "late", (json_int_t)r->late,
                              "rtt_min_ms", json_ms(min),
                              "rtt_avg_ms", json_ms(r->n_rtts ? sum / (double)r->n_rtts : NAN),
                              "rtt_p50_ms", json_ms(p50), "rtt_p99_ms", json_ms(p99),
                              "rtt_max_ms", json_ms(max),
                              "max_gap_ms", json_ms(gap_ms),
                              "vm", r->last_vm[0] ? json_string(r->last_vm) : json_null());
        if (o) {
            json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(12));
            fputc('\n', stdout);
            json_decref(o);
        }
        return;
    }
    fmt_ms(s50, sizeof(s50), p50);
    fmt_ms(s99, sizeof(s99), p99);
    printf("sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64
           " rtt_p50_ms=%s rtt_p99_ms=%s max_gap_ms=%.2f\n",
           r->sent, r->received, lost, s50, s99, gap_ms);
}

static int run_loop(struct run *r, int fd)
{
    uint64_t scan_from = 1;
    int64_t next_send = cgv_mono_us();
    int64_t interval = (int64_t)r->interval_ms * 1000;

    while (!g_stop) {
        bool sending = r->count == 0 || r->sent < r->count;
        int64_t now = cgv_mono_us(), deadline, wake;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[2048];
        int timeout_ms, rc;

        if (sending && now >= next_send) {
            send_one(r, fd, now);
            next_send += interval;
            if (next_send <= now)
                next_send = now + interval; /* we were stalled: no burst */
            continue;
        }
        deadline = check_timeouts(r, now, &scan_from);
        if (!sending && deadline == INT64_MAX)
            break; /* all answered or timed out */
        wake = sending && next_send < deadline ? next_send : deadline;
        timeout_ms = wake <= now ? 0 : (int)((wake - now + 999) / 1000);
        rc = poll(&p, 1, timeout_ms);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "cgv-udpping: poll: %s\n", strerror(errno));
            return -1;
        }
        if (rc == 0)
            continue;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                /* ECONNREFUSED etc.: nobody listening right now; keep going. */
                break;
            }
            take_reply(r, buf, (size_t)n, cgv_mono_us());
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"count", required_argument, NULL, 'c'},
        {"interval", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct run r;
    struct sigaction sa;
    uint64_t v;
    int opt, fd, rc;

    memset(&r, 0, sizeof(r));
    r.interval_ms = 1000;
    r.timeout_ms = 1000;
    while ((opt = getopt_long(argc, argv, "c:i:t:qh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            if (!parse_uint(optarg, 1, UINT32_MAX, &v))
                goto bad_arg;
            r.count = v;
            break;
        case 'i':
            if (!parse_uint(optarg, 1, 3600000, &v))
                goto bad_arg;
            r.interval_ms = (unsigned)v;
            break;
        case 't':
            if (!parse_uint(optarg, 1, 3600000, &v))
                goto bad_arg;
            r.timeout_ms = (unsigned)v;
            break;
        case 'q': r.quiet = true; break;
        case 'j': r.json = true; break;
        case 'h': usage(stdout); return EXIT_REPLY;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (udpping_parse_target(argv[optind], r.host, sizeof(r.host), r.port,
                             sizeof(r.port)) < 0) {
        fprintf(stderr, "cgv-udpping: bad target '%s' (want HOST[:PORT])\n",
                argv[optind]);
        return EXIT_USAGE;
    }
    if (getrandom(&r.token, sizeof(r.token), 0) != (ssize_t)sizeof(r.token))
        r.token = (uint64_t)cgv_mono_us() ^ ((uint64_t)getpid() << 40);

    fd = open_socket(&r);
    if (fd < 0)
        return EXIT_USAGE;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    rc = run_loop(&r, fd);
    close(fd);
    summary(&r);
    free(r.probes);
    free(r.rtts);
    if (rc < 0 && r.received == 0)
        return EXIT_NO_REPLY;
    return r.received ? EXIT_REPLY : EXIT_NO_REPLY;

bad_arg:
    fprintf(stderr, "cgv-udpping: bad value '%s' for -%c\n", optarg, opt);
    usage(stderr);
    return EXIT_USAGE;
}
