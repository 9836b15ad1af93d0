/* cgv_udpping.c — cgv-udpping, a host-side client for the guest's cgv-nf.
 *
 *   cgv-udpping [-c COUNT | --duration SEC] [-i INTERVAL_MS] [-t TIMEOUT_MS]
 *               [--gaps MS] [-q] [--json] HOST[:PORT]
 *
 * Sends numbered requests every INTERVAL_MS, matches replies by sequence and
 * prints one line per reply and a summary; max_gap_ms (the longest time
 * without any reply while sending) measures an outage such as a failover.
 * --gaps MS prints every interval longer than MS without a reply, with the
 * VM that answered before and after it; a change of the answering VM is
 * printed as a switch. The socket is not connected, so replies are taken
 * from whatever source they come (a virtual IP that moved, a VM answering
 * from its own address); the random token in every request keeps strays out.
 * SIGINT or SIGTERM ends the run early, with the summary.
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
    uint64_t count; /* 0 = until interrupted (or the duration ends) */
    int64_t duration_us; /* 0 = none */
    int64_t gaps_us;     /* --gaps threshold, 0 = off */
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
    struct udpping_log log;
    struct sockaddr_storage target;
    socklen_t target_len;
    int64_t first_send_us, last_send_us;
    char last_vm[65];
    uint64_t last_count;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cgv-udpping [-c COUNT | --duration SEC] [-i INTERVAL_MS] [-t TIMEOUT_MS]\n"
            "                   [--gaps MS] [-q] [--json] HOST[:PORT]\n"
            "Sends numbered UDP requests to a cgv-nf (port %s by default), prints\n"
            "each reply and a summary.\n"
            "  -c COUNT        requests to send (default: until interrupted)\n"
            "  --duration SEC  send for this long (decimals allowed), then stop\n"
            "  -i INTERVAL_MS  time between requests (default 1000)\n"
            "  -t TIMEOUT_MS   how long a request waits for its reply (default 1000)\n"
            "  --gaps MS       print every interval longer than MS without a reply:\n"
            "                  gap start_ms=.. end_ms=.. len_ms=.. from=VM to=VM\n"
            "                  (times since the first request), and every switch of\n"
            "                  the answering VM\n"
            "  -q              print only the summary (and gaps)\n"
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

static int open_socket(struct run *r)
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
        /* Not connected: a reply may come from another source than the one
         * asked (a VIP that moved, a function answering from its primary
         * address); the token filters out strays. */
        if (ai->ai_addrlen <= sizeof(r->target)) {
            memcpy(&r->target, ai->ai_addr, ai->ai_addrlen);
            r->target_len = (socklen_t)ai->ai_addrlen;
            break;
        }
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
        udpping_log_start(&r->log, now);
    }
    r->last_send_us = now;
    if (sendto(fd, req, (size_t)n, 0, (struct sockaddr *)&r->target, r->target_len) < 0) {
        /* ICMP errors from an earlier datagram land here too; the request
         * counts as sent (and lost). */
        if (r->send_errors++ == 0 && !r->json)
            fprintf(stderr, "cgv-udpping: send: %s\n", strerror(errno));
    }
}

static void print_gap(const struct run *r, const struct udpping_outage *o)
{
    if (r->json)
        return;
    printf("gap start_ms=%.1f end_ms=%.1f len_ms=%.1f from=%s to=%s\n",
           (double)o->start_us / 1000.0, (double)o->end_us / 1000.0,
           (double)(o->end_us - o->start_us) / 1000.0, o->from, o->to);
}

static void take_reply(struct run *r, const char *buf, size_t len, int64_t now)
{
    struct udpping_reply rep;
    struct probe *p;
    unsigned what;
    double rtt;

    if (udpping_parse_reply(buf, len, &rep) < 0 || rep.token != r->token)
        return;
    p = probe_get(r, rep.seq);
    if (!p)
        return;
    udpping_gap_reply(&r->gap, now);
    what = udpping_log_reply(&r->log, now, rep.vm_name);
    if ((what & UDPPING_NEW_GAP))
        print_gap(r, &r->log.gaps[r->log.n_gaps - 1]);
    if ((what & UDPPING_NEW_SWITCH) && !r->json) {
        const struct udpping_switch *sw = &r->log.switches[r->log.n_switches - 1];
        printf("switch at_ms=%.1f from=%s to=%s\n", (double)sw->at_us / 1000.0, sw->from,
               sw->to);
    }
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

    if (udpping_log_finish(&r->log, r->last_send_us) & UDPPING_NEW_GAP)
        print_gap(r, &r->log.gaps[r->log.n_gaps - 1]);

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
            json_t *sw = json_array();
            for (size_t i = 0; i < r->log.n_switches; i++) {
                const struct udpping_switch *w = &r->log.switches[i];
                json_array_append_new(sw, json_pack("{s:o, s:s, s:s}", "at_ms",
                                                    json_ms((double)w->at_us / 1000.0),
                                                    "from", w->from, "to", w->to));
            }
            json_object_set_new(o, "switches", sw);
            if (r->gaps_us) {
                json_t *gaps = json_array();
                for (size_t i = 0; i < r->log.n_gaps; i++) {
                    const struct udpping_outage *g = &r->log.gaps[i];
                    json_array_append_new(
                        gaps, json_pack("{s:o, s:o, s:o, s:s, s:s}", "start_ms",
                                        json_ms((double)g->start_us / 1000.0), "end_ms",
                                        json_ms((double)g->end_us / 1000.0), "len_ms",
                                        json_ms((double)(g->end_us - g->start_us) / 1000.0),
                                        "from", g->from, "to", g->to));
                }
                json_object_set_new(o, "gaps", gaps);
                json_object_set_new(o, "gap_threshold_ms",
                                    json_ms((double)r->gaps_us / 1000.0));
            }
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
        bool sending = (r->count == 0 || r->sent < r->count) &&
                       (r->duration_us == 0 || r->sent == 0 ||
                        cgv_mono_us() - r->first_send_us < r->duration_us);
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
            ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, NULL, NULL);
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
        {"duration", required_argument, NULL, 'd'},
        {"gaps", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct run r; /* large (the outage log): not on the stack */
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
        case 'd': {
            char *end;
            double sec;
            errno = 0;
            sec = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(sec > 0) || sec > 30 * 86400.0)
                goto bad_arg;
            r.duration_us = (int64_t)(sec * 1e6);
            if (r.duration_us < 1)
                r.duration_us = 1;
            break;
        }
        case 'g':
            if (!parse_uint(optarg, 1, 3600000, &v))
                goto bad_arg;
            r.gaps_us = (int64_t)v * 1000;
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
    udpping_log_init(&r.log, r.gaps_us);
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
    if (opt == 'd' || opt == 'g')
        fprintf(stderr, "cgv-udpping: bad value '%s' for --%s\n", optarg,
                opt == 'd' ? "duration" : "gaps");
    else
        fprintf(stderr, "cgv-udpping: bad value '%s' for -%c\n", optarg, opt);
    usage(stderr);
    return EXIT_USAGE;
}
