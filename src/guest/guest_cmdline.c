/* guest_cmdline.c — parse and validate the cgv.* kernel command line. */
#include "guest_cmdline.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool guest_name_valid(const char *s, size_t n)
{
    if (n < 1 || n > GUEST_NAME_MAX)
        return false;
    if (s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* A strict dotted quad ("10.0.0.5"), copied into dst[16]. */
static bool ipv4_valid(const char *s, size_t n, char dst[16])
{
    struct in_addr a;
    char tmp[16];

    if (n < 7 || n > 15)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET, tmp, &a) != 1)
        return false;
    memcpy(dst, tmp, n + 1);
    return true;
}

/* "a.b.c.d/p" with p in 1..32. */
static bool cidr_valid(const char *s, size_t n, struct guest_net *net)
{
    const char *slash = memchr(s, '/', n);
    size_t plen;
    unsigned prefix = 0;

    if (!slash)
        return false;
    plen = n - (size_t)(slash - s) - 1;
    if (plen < 1 || plen > 2)
        return false;
    for (size_t i = 0; i < plen; i++) {
        char c = slash[1 + i];
        if (c < '0' || c > '9')
            return false;
        prefix = prefix * 10 + (unsigned)(c - '0');
    }
    if (prefix < 1 || prefix > 32)
        return false;
    if (!ipv4_valid(s, (size_t)(slash - s), net->addr))
        return false;
    net->prefix = prefix;
    net->set = true;
    return true;
}

static void note_bad(struct guest_cmdline *out, char *why, size_t whycap,
                     const char *arg, size_t n)
{
    if (out->n_bad++ == 0 && why && whycap)
        snprintf(why, whycap, "ignoring invalid argument '%.*s'",
                 (int)(n > 80 ? 80 : n), arg);
}

static void parse_arg(const char *arg, size_t n, struct guest_cmdline *out, char *why,
                      size_t whycap)
{
    const char *eq = memchr(arg, '=', n);
    size_t klen, vlen;
    const char *val;

    if (!eq || n < 4 || strncmp(arg, "cgv.", 4) != 0)
        return;
    klen = (size_t)(eq - arg);
    val = eq + 1;
    vlen = n - klen - 1;
    /* The kernel passes "a=\"b c\"" through with the quotes. */
    if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
        val++;
        vlen -= 2;
    }
    if (klen == 8 && memcmp(arg, "cgv.name", 8) == 0) {
        if (!guest_name_valid(val, vlen)) {
            note_bad(out, why, whycap, arg, n);
            return;
        }
        memcpy(out->name, val, vlen);
        out->name[vlen] = '\0';
        out->has_name = true;
    } else if (klen == 6 && memcmp(arg, "cgv.gw", 6) == 0) {
        if (!ipv4_valid(val, vlen, out->gw)) {
            note_bad(out, why, whycap, arg, n);
            return;
        }
        out->has_gw = true;
    } else if (klen == 8 && memcmp(arg, "cgv.net", 7) == 0 && arg[7] >= '0' &&
               arg[7] < '0' + GUEST_MAX_NETS) {
        struct guest_net net = {0};
        if (!cidr_valid(val, vlen, &net)) {
            note_bad(out, why, whycap, arg, n);
            return;
        }
        out->net[arg[7] - '0'] = net;
    } else {
        note_bad(out, why, whycap, arg, n);
    }
}

void guest_cmdline_parse(const char *cmdline, struct guest_cmdline *out, char *why,
                         size_t whycap)
{
    const char *p = cmdline;

    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", GUEST_DEFAULT_NAME);
    if (why && whycap)
        why[0] = '\0';
    while (p && *p) {
        const char *start;
        bool quoted = false;

        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        start = p;
        /* An argument ends at unquoted white space. */
        while (*p && (quoted || (*p != ' ' && *p != '\t' && *p != '\n'))) {
            if (*p == '"')
                quoted = !quoted;
            p++;
        }
        parse_arg(start, (size_t)(p - start), out, why, whycap);
    }
}

struct outbuf {
    char *p;
    size_t cap, len;
    bool overflow;
};

static void out_printf(struct outbuf *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_printf(struct outbuf *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = true;
        return;
    }
    o->len += (size_t)n;
}

int guest_cmdline_format_env(const struct guest_cmdline *c, char *out, size_t cap)
{
    struct outbuf o = {.p = out, .cap = cap};
    const char *sep = "";

    if (!cap)
        return -1;
    out[0] = '\0';
    out_printf(&o, "CGV_NAME=%s\n", c->name);
    out_printf(&o, "CGV_NETS=\"");
    for (unsigned i = 0; i < GUEST_MAX_NETS; i++) {
        if (c->net[i].set) {
            out_printf(&o, "%s%u", sep, i);
            sep = " ";
        }
    }
    out_printf(&o, "\"\n");
    for (unsigned i = 0; i < GUEST_MAX_NETS; i++) {
        if (c->net[i].set)
            out_printf(&o, "CGV_NET%u=%s/%u\n", i, c->net[i].addr, c->net[i].prefix);
    }
    if (c->has_gw)
        out_printf(&o, "CGV_GW=%s\n", c->gw);
    return o.overflow ? -1 : (int)o.len;
}
