/* udpping_stats.c — pure helpers of cgv-udpping (see header). */
#include "udpping_stats.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int udpping_format_request(char *out, size_t cap, uint64_t token, uint64_t seq)
{
    int n = snprintf(out, cap, "udpping %016" PRIx64 " %" PRIu64, token, seq);

    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

/* Next space-separated field of buf[*off..len); returns its length (0 if
 * none) and moves *off past it and one following space. */
static size_t next_field(const char *buf, size_t len, size_t *off, const char **f)
{
    size_t start = *off, end = start;

    while (end < len && buf[end] != ' ')
        end++;
    *f = buf + start;
    *off = end < len ? end + 1 : end;
    return end - start;
}

static bool parse_u64(const char *s, size_t n, int base, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        char c = s[i];
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        if (v > (UINT64_MAX - d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return true;
}

int udpping_parse_reply(const char *buf, size_t len, struct udpping_reply *out)
{
    const char *f;
    size_t off = 0, n;

    memset(out, 0, sizeof(*out));
    n = next_field(buf, len, &off, &f);
    if (n != 6 || memcmp(f, "cgv-nf", 6) != 0)
        return -1;
    n = next_field(buf, len, &off, &f);
    if (n == 0 || n >= sizeof(out->vm_name))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)f[i] < 0x21 || (unsigned char)f[i] > 0x7e)
            return -1;
    }
    memcpy(out->vm_name, f, n);
    n = next_field(buf, len, &off, &f);
    if (!parse_u64(f, n, 10, &out->count))
        return -1;
    n = next_field(buf, len, &off, &f);
    if (n != 7 || memcmp(f, "udpping", 7) != 0)
        return -1;
    n = next_field(buf, len, &off, &f);
    if (n != 16 || !parse_u64(f, n, 16, &out->token))
        return -1;
    n = next_field(buf, len, &off, &f);
    if (!parse_u64(f, n, 10, &out->seq) || off != len)
        return -1;
    return 0;
}

static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int udpping_parse_target(const char *arg, char *host, size_t hcap, char *port,
                         size_t pcap)
{
    const char *colon, *p = NULL;
    size_t hlen;

    if (!arg || !*arg)
        return -1;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (!close)
            return -1;
        if (copy_part(host, hcap, arg + 1, (size_t)(close - arg - 1)) < 0)
            return -1;
        if (close[1] == ':')
            p = close + 2;
        else if (close[1] != '\0')
            return -1;
    } else {
        colon = strchr(arg, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* a bare IPv6 address */
        hlen = colon ? (size_t)(colon - arg) : strlen(arg);
        if (copy_part(host, hcap, arg, hlen) < 0)
            return -1;
        if (colon)
            p = colon + 1;
    }
    if (!p)
        p = UDPPING_DEFAULT_PORT;
    if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 5 ||
        atoi(p) < 1 || atoi(p) > 65535)
        return -1;
    return copy_part(port, pcap, p, strlen(p));
}

double udpping_percentile(const double *sorted, size_t n, double p)
{
    double rank;
    size_t idx;

    if (n == 0)
        return NAN;
    if (p <= 0)
        return sorted[0];
    rank = ceil(p / 100.0 * (double)n);
    idx = rank < 1 ? 0 : (size_t)rank - 1;
    if (idx >= n)
        idx = n - 1;
    return sorted[idx];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

void udpping_sort(double *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_double);
}

void udpping_gap_start(struct udpping_gap *g, int64_t first_send_us)
{
    g->started = true;
    g->last_us = first_send_us;
    g->max_us = 0;
}

void udpping_gap_reply(struct udpping_gap *g, int64_t reply_us)
{
    if (!g->started)
        return;
    if (reply_us - g->last_us > g->max_us)
        g->max_us = reply_us - g->last_us;
    if (reply_us > g->last_us)
        g->last_us = reply_us;
}

int64_t udpping_gap_finish(const struct udpping_gap *g, int64_t last_send_us)
{
    int64_t m;

    if (!g->started)
        return 0;
    m = g->max_us;
    if (last_send_us - g->last_us > m)
        m = last_send_us - g->last_us;
    return m;
}

void udpping_log_init(struct udpping_log *l, int64_t threshold_us)
{
    memset(l, 0, sizeof(*l));
    l->threshold_us = threshold_us > 0 ? threshold_us : 0;
}

void udpping_log_start(struct udpping_log *l, int64_t first_send_us)
{
    l->started = true;
    l->t0_us = first_send_us;
    l->last_us = first_send_us;
}

static void vm_copy(char *dst, const char *vm)
{
    snprintf(dst, UDPPING_VM_MAX + 1, "%s", vm && *vm ? vm : "-");
}

static unsigned add_gap(struct udpping_log *l, int64_t end_us, const char *to)
{
    struct udpping_outage *o;

    if (!l->threshold_us || end_us - l->last_us <= l->threshold_us)
        return 0;
    if (l->n_gaps == UDPPING_MAX_EVENTS) {
        l->gaps_dropped++;
        return 0;
    }
    o = &l->gaps[l->n_gaps++];
    o->start_us = l->last_us - l->t0_us;
    o->end_us = end_us - l->t0_us;
    vm_copy(o->from, l->last_vm);
    vm_copy(o->to, to);
    return UDPPING_NEW_GAP;
}

unsigned udpping_log_reply(struct udpping_log *l, int64_t now_us, const char *vm)
{
    unsigned what;

    if (!l->started || now_us < l->last_us)
        return 0;
    what = add_gap(l, now_us, vm);
    if (l->last_vm[0] && strcmp(l->last_vm, vm) != 0) {
        if (l->n_switches == UDPPING_MAX_EVENTS) {
            l->switches_dropped++;
        } else {
            struct udpping_switch *s = &l->switches[l->n_switches++];
            s->at_us = now_us - l->t0_us;
            vm_copy(s->from, l->last_vm);
            vm_copy(s->to, vm);
            what |= UDPPING_NEW_SWITCH;
        }
    }
    l->last_us = now_us;
    snprintf(l->last_vm, sizeof(l->last_vm), "%s", vm);
    return what;
}

unsigned udpping_log_finish(struct udpping_log *l, int64_t end_us)
{
    unsigned what;

    if (!l->started || end_us < l->last_us)
        return 0;
    what = add_gap(l, end_us, NULL);
    l->started = false; /* once */
    return what;
}
