/* guest_role.c — role generation rules and VIP bookkeeping (pure, see header). */
#include "guest_role.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decimal 0..max without leading zeros, from s[0..n). */
static int parse_dec(const char *s, size_t n, unsigned max, unsigned *out)
{
    unsigned v = 0;

    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int guest_vip_parse(const char *s, struct guest_vip *v)
{
    uint32_t host = 0;
    const char *p = s;
    unsigned part, prefix;
    uint8_t b[4];

    if (!s)
        return -1;
    for (int i = 0; i < 4; i++) {
        const char *end = p;
        while (*end >= '0' && *end <= '9')
            end++;
        if (parse_dec(p, (size_t)(end - p), 255, &part) < 0)
            return -1;
        host = (host << 8) | part;
        if (*end != (i < 3 ? '.' : '/'))
            return -1;
        p = end + 1;
    }
    if (parse_dec(p, strlen(p), 32, &prefix) < 0 || prefix < 1)
        return -1;
    /* addr holds the bytes a.b.c.d in memory order, i.e. network order */
    b[0] = (uint8_t)(host >> 24);
    b[1] = (uint8_t)(host >> 16);
    b[2] = (uint8_t)(host >> 8);
    b[3] = (uint8_t)host;
    memcpy(&v->addr, b, 4);
    v->prefix = (uint8_t)prefix;
    return 0;
}

void guest_vip_format(const struct guest_vip *v, char *buf, size_t cap)
{
    uint8_t b[4];

    memcpy(b, &v->addr, 4);
    snprintf(buf, cap, "%u.%u.%u.%u/%u", b[0], b[1], b[2], b[3], v->prefix);
}

bool guest_vip_equal(const struct guest_vip *a, const struct guest_vip *b)
{
    return a->addr == b->addr && a->prefix == b->prefix;
}

void guest_role_init(struct guest_role *r)
{
    memset(r, 0, sizeof(*r));
    r->role = PROTO_ROLE_NONE;
    r->result = PROTO_ACK_OK;
}

static bool assignment_valid(const char *s)
{
    size_t n = strlen(s);

    if (n > PROTO_MAX_STR)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

/* The VIPs rs asks for (none unless ACTIVE), validated and without repeats. */
static int wanted_vips(const struct proto_role_set *rs, struct guest_vip *out, uint8_t *n,
                       char *why, size_t whycap)
{
    *n = 0;
    if (rs->role != PROTO_ROLE_ACTIVE)
        return 0;
    for (unsigned i = 0; i < rs->n_vips && i < PROTO_MAX_VIPS; i++) {
        struct guest_vip v;
        bool dup = false;

        if (guest_vip_parse(rs->vips[i], &v) < 0) {
            if (why && whycap)
                snprintf(why, whycap, "bad vip '%s'", rs->vips[i]);
            return -1;
        }
        for (unsigned k = 0; k < *n; k++)
            dup = dup || out[k].addr == v.addr;
        if (dup) {
            if (why && whycap)
                snprintf(why, whycap, "vip '%s' listed twice", rs->vips[i]);
            return -1;
        }
        out[(*n)++] = v;
    }
    return 0;
}

enum guest_role_verdict guest_role_check(const struct guest_role *r,
                                         const struct proto_role_set *rs, char *why,
                                         size_t whycap)
{
    struct guest_vip v[PROTO_MAX_VIPS];
    uint8_t n;
    bool same;

    if (rs->generation < r->generation)
        return GUEST_ROLE_STALE;
    if (rs->role > PROTO_ROLE_STANDBY) {
        if (why && whycap)
            snprintf(why, whycap, "unknown role %u", rs->role);
        return GUEST_ROLE_INVALID;
    }
    if (!assignment_valid(rs->assignment)) {
        if (why && whycap)
            snprintf(why, whycap, "bad assignment name");
        return GUEST_ROLE_INVALID;
    }
    if (wanted_vips(rs, v, &n, why, whycap) < 0)
        return GUEST_ROLE_INVALID;
    if (rs->generation > r->generation)
        return GUEST_ROLE_APPLY;
    same = rs->role == r->role && strcmp(rs->assignment, r->assignment) == 0 &&
           n == r->n_vips;
    for (unsigned i = 0; same && i < n; i++)
        same = guest_vip_equal(&v[i], &r->vips[i]);
    if (!same)
        return GUEST_ROLE_APPLY;
    if (r->busy)
        return GUEST_ROLE_PENDING;
    return r->result == PROTO_ACK_OK ? GUEST_ROLE_REACK : GUEST_ROLE_APPLY;
}

static bool in_list(const struct guest_vip *list, unsigned n, const struct guest_vip *v)
{
    for (unsigned i = 0; i < n; i++) {
        if (guest_vip_equal(&list[i], v))
            return true;
    }
    return false;
}

int guest_role_adopt(struct guest_role *r, const struct proto_role_set *rs,
                     struct guest_role_plan *plan)
{
    struct guest_vip v[PROTO_MAX_VIPS];
    uint8_t n;

    memset(plan, 0, sizeof(*plan));
    if (rs->role > PROTO_ROLE_STANDBY || !assignment_valid(rs->assignment) ||
        wanted_vips(rs, v, &n, NULL, 0) < 0)
        return -1;
    r->generation = rs->generation;
    r->role = rs->role;
    snprintf(r->assignment, sizeof(r->assignment), "%s", rs->assignment);
    r->n_vips = n;
    memcpy(r->vips, v, sizeof(v[0]) * n);
    r->busy = true;
    r->result = PROTO_ACK_OK;
    for (unsigned i = 0; i < r->n_added; i++) {
        if (!in_list(v, n, &r->added[i]))
            plan->del[plan->n_del++] = r->added[i];
    }
    for (unsigned i = 0; i < n; i++) {
        /* an address of the same IP with another prefix is deleted first */
        if (!in_list(r->added, r->n_added, &v[i]))
            plan->add[plan->n_add++] = v[i];
        plan->announce[plan->n_announce++] = v[i];
    }
    return 0;
}

void guest_role_added(struct guest_role *r, const struct guest_vip *v)
{
    if (in_list(r->added, r->n_added, v) || r->n_added >= PROTO_MAX_VIPS)
        return;
    r->added[r->n_added++] = *v;
}

void guest_role_removed(struct guest_role *r, const struct guest_vip *v)
{
    for (unsigned i = 0; i < r->n_added; i++) {
        if (guest_vip_equal(&r->added[i], v)) {
            memmove(&r->added[i], &r->added[i + 1],
                    (r->n_added - i - 1) * sizeof(r->added[0]));
            r->n_added--;
            return;
        }
    }
}

void guest_role_done(struct guest_role *r, uint8_t result)
{
    r->busy = false;
    r->result = result;
}

const char *guest_role_name(uint8_t role)
{
    switch (role) {
    case PROTO_ROLE_ACTIVE: return "active";
    case PROTO_ROLE_STANDBY: return "standby";
    default: return "none";
    }
}

int guest_role_vips(const struct guest_role *r, char *buf, size_t cap)
{
    size_t len = 0;

    if (cap == 0)
        return -1;
    buf[0] = '\0';
    for (unsigned i = 0; i < r->n_vips; i++) {
        char one[24];
        int n;

        guest_vip_format(&r->vips[i], one, sizeof(one));
        n = snprintf(buf + len, cap - len, "%s%s", i ? "," : "", one);
        if (n < 0 || (size_t)n >= cap - len)
            return -1;
        len += (size_t)n;
    }
    return (int)len;
}

int guest_role_line(const struct guest_role *r, char *buf, size_t cap)
{
    char vips[PROTO_MAX_VIPS * 20 + 1];
    int n;

    if (guest_role_vips(r, vips, sizeof(vips)) < 0)
        return -1;
    n = snprintf(buf, cap, "role %s %s %" PRIu64 " %s\n", guest_role_name(r->role),
                 r->assignment[0] ? r->assignment : "-", r->generation,
                 vips[0] ? vips : "-");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

int guest_role_state_format(const struct guest_role *r, char *buf, size_t cap)
{
    size_t len = 0;
    int n;

#define EMIT(...)                                                        \
    do {                                                                 \
        n = snprintf(buf + len, cap - len, __VA_ARGS__);                 \
        if (n < 0 || (size_t)n >= cap - len)                             \
            return -1;                                                   \
        len += (size_t)n;                                                \
    } while (0)
    if (cap == 0)
        return -1;
    EMIT("generation %" PRIu64 "\n", r->generation);
    EMIT("role %s\n", guest_role_name(r->role));
    EMIT("assignment %s\n", r->assignment[0] ? r->assignment : "-");
    EMIT("result %s\n", r->result == PROTO_ACK_OK ? "ok" : "failed");
    for (unsigned i = 0; i < r->n_vips; i++) {
        char one[24];
        guest_vip_format(&r->vips[i], one, sizeof(one));
        EMIT("vip %s\n", one);
    }
    for (unsigned i = 0; i < r->n_added; i++) {
        char one[24];
        guest_vip_format(&r->added[i], one, sizeof(one));
        EMIT("added %s\n", one);
    }
#undef EMIT
    return (int)len;
}

int guest_role_state_parse(const char *buf, size_t len, struct guest_role *out)
{
    struct guest_role r;
    size_t off = 0;
    unsigned seen = 0;

    guest_role_init(&r);
    while (off < len) {
        char line[128], *val;
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (buf + off)) : len - off;

        if (n >= sizeof(line))
            return -1;
        memcpy(line, buf + off, n);
        line[n] = '\0';
        off += n + (nl ? 1 : 0);
        if (n == 0)
            continue;
        val = strchr(line, ' ');
        if (!val)
            return -1;
        *val++ = '\0';
        if (strcmp(line, "generation") == 0) {
            char *end;
            if (*val < '0' || *val > '9')
                return -1;
            r.generation = strtoull(val, &end, 10);
            if (*end)
                return -1;
            seen |= 1;
        } else if (strcmp(line, "role") == 0) {
            if (strcmp(val, "none") == 0)
                r.role = PROTO_ROLE_NONE;
            else if (strcmp(val, "active") == 0)
                r.role = PROTO_ROLE_ACTIVE;
            else if (strcmp(val, "standby") == 0)
                r.role = PROTO_ROLE_STANDBY;
            else
                return -1;
            seen |= 2;
        } else if (strcmp(line, "assignment") == 0) {
            if (strcmp(val, "-") != 0) {
                if (!assignment_valid(val))
                    return -1;
                snprintf(r.assignment, sizeof(r.assignment), "%s", val);
            }
        } else if (strcmp(line, "result") == 0) {
            if (strcmp(val, "ok") == 0)
                r.result = PROTO_ACK_OK;
            else if (strcmp(val, "failed") == 0)
                r.result = PROTO_ACK_FAILED;
            else
                return -1;
        } else if (strcmp(line, "vip") == 0 || strcmp(line, "added") == 0) {
            bool added = line[0] == 'a';
            uint8_t *cnt = added ? &r.n_added : &r.n_vips;
            struct guest_vip *list = added ? r.added : r.vips;
            if (*cnt >= PROTO_MAX_VIPS || guest_vip_parse(val, &list[*cnt]) < 0)
                return -1;
            (*cnt)++;
        } else {
            return -1;
        }
    }
    if (seen != 3)
        return -1;
    *out = r;
    return 0;
}
