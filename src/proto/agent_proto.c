/* agent_proto.c — encoder, payload decoder and bounded stream reader for the
 * agent channel. See agent_proto.h for the wire format. */
#include "agent_proto.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- packing ---------------------------------------------------------- */

struct pack {
    uint8_t *p;
    size_t cap, len;
    bool overflow;
};

static void pack_bytes(struct pack *pk, const void *b, size_t n)
{
    if (pk->overflow || pk->cap - pk->len < n) {
        pk->overflow = true;
        return;
    }
    memcpy(pk->p + pk->len, b, n);
    pk->len += n;
}

static void pack_u8(struct pack *pk, uint8_t v)
{
    pack_bytes(pk, &v, 1);
}

static void pack_u16(struct pack *pk, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    pack_bytes(pk, b, 2);
}

static void pack_u32(struct pack *pk, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    pack_bytes(pk, b, 4);
}

static void pack_u64(struct pack *pk, uint64_t v)
{
    pack_u32(pk, (uint32_t)(v >> 32));
    pack_u32(pk, (uint32_t)v);
}

static bool str_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    }
    return true;
}

static void pack_str_max(struct pack *pk, const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);

    if (n > max || !str_printable(s, n)) {
        pk->overflow = true;
        return;
    }
    pack_u16(pk, (uint16_t)n);
    pack_bytes(pk, s, n);
}

static void pack_str(struct pack *pk, const char *s)
{
    pack_str_max(pk, s, PROTO_MAX_STR);
}

int proto_encode(const struct proto_msg *m, uint8_t *out, size_t cap)
{
    struct pack pk = {.p = out, .cap = cap};
    size_t payload_len;

    pack_u8(&pk, PROTO_MAGIC0);
    pack_u8(&pk, PROTO_MAGIC1);
    pack_u8(&pk, PROTO_VERSION);
    pack_u8(&pk, (uint8_t)m->type);
    pack_u32(&pk, 0); /* patched below */

    switch (m->type) {
    case PROTO_HOST_HELLO:
        pack_u16(&pk, m->u.host_hello.version);
        pack_u32(&pk, m->u.host_hello.heartbeat_ms);
        pack_str(&pk, m->u.host_hello.vm_name);
        break;
    case PROTO_HELLO:
        pack_u16(&pk, m->u.hello.version);
        pack_str(&pk, m->u.hello.agent_version);
        pack_str(&pk, m->u.hello.vm_name);
        pack_u64(&pk, m->u.hello.boot_id);
        pack_u64(&pk, m->u.hello.uptime_ms);
        break;
    case PROTO_HEARTBEAT:
        pack_u64(&pk, m->u.heartbeat.seq);
        pack_u64(&pk, m->u.heartbeat.uptime_ms);
        pack_u64(&pk, m->u.heartbeat.app_served);
        break;
    case PROTO_PING:
    case PROTO_PONG:
        pack_u64(&pk, m->u.ping.seq);
        pack_u64(&pk, m->u.ping.host_ts_us);
        break;
    case PROTO_SHUTDOWN:
        if (m->u.shutdown.action > PROTO_SHUTDOWN_REBOOT)
            return -1;
        pack_u8(&pk, m->u.shutdown.action);
        break;
    case PROTO_CONFIG:
        if (m->u.config.n_procs > PROTO_MAX_PROCS ||
            m->u.config.watchdog_s > PROTO_MAX_WATCHDOG_S)
            return -1;
        pack_u32(&pk, m->u.config.watchdog_s);
        pack_u32(&pk, m->u.config.app_max_restarts);
        pack_u32(&pk, m->u.config.app_window_ms);
        pack_u8(&pk, m->u.config.n_procs);
        for (unsigned i = 0; i < m->u.config.n_procs; i++) {
            pack_str(&pk, m->u.config.procs[i].name);
            pack_str_max(&pk, m->u.config.procs[i].command, PROTO_MAX_LSTR);
        }
        break;
    case PROTO_ROLE_SET:
        if (m->u.role_set.n_vips > PROTO_MAX_VIPS || m->u.role_set.role > PROTO_ROLE_STANDBY)
            return -1;
        pack_u64(&pk, m->u.role_set.generation);
        pack_u8(&pk, m->u.role_set.role);
        pack_str(&pk, m->u.role_set.assignment);
        pack_u8(&pk, m->u.role_set.n_vips);
        for (unsigned i = 0; i < m->u.role_set.n_vips; i++)
            pack_str(&pk, m->u.role_set.vips[i]);
        break;
    case PROTO_ROLE_ACK:
        pack_u64(&pk, m->u.role_ack.generation);
        pack_u8(&pk, m->u.role_ack.role);
        pack_u8(&pk, m->u.role_ack.result);
        pack_str(&pk, m->u.role_ack.detail);
        break;
    case PROTO_APP_EVENT:
        pack_str(&pk, m->u.app_event.name);
        pack_u8(&pk, m->u.app_event.kind);
        pack_u32(&pk, (uint32_t)m->u.app_event.status);
        pack_u32(&pk, m->u.app_event.restarts);
        pack_u32(&pk, m->u.app_event.pid);
        break;
    default:
        return -1;
    }
    if (pk.overflow)
        return -1;
    payload_len = pk.len - PROTO_HDR_LEN;
    if (payload_len > PROTO_MAX_PAYLOAD)
        return -1;
    out[4] = (uint8_t)(payload_len >> 24);
    out[5] = (uint8_t)(payload_len >> 16);
    out[6] = (uint8_t)(payload_len >> 8);
    out[7] = (uint8_t)payload_len;
    return (int)pk.len;
}

/* ---- unpacking -------------------------------------------------------- */

struct unpack {
    const uint8_t *p;
    size_t len, off;
    const char *fail; /* first failure, static text */
};

static bool need(struct unpack *u, size_t n, const char *field)
{
    if (u->fail)
        return false;
    if (u->len - u->off < n) {
        u->fail = field;
        return false;
    }
    return true;
}

static uint16_t unpack_u16(struct unpack *u, const char *field)
{
    uint16_t v;

    if (!need(u, 2, field))
        return 0;
    v = (uint16_t)((u->p[u->off] << 8) | u->p[u->off + 1]);
    u->off += 2;
    return v;
}

static uint32_t unpack_u32(struct unpack *u, const char *field)
{
    uint32_t v;

    if (!need(u, 4, field))
        return 0;
    v = ((uint32_t)u->p[u->off] << 24) | ((uint32_t)u->p[u->off + 1] << 16) |
        ((uint32_t)u->p[u->off + 2] << 8) | u->p[u->off + 3];
    u->off += 4;
    return v;
}

static uint64_t unpack_u64(struct unpack *u, const char *field)
{
    uint64_t hi = unpack_u32(u, field);
    uint64_t lo = unpack_u32(u, field);
    return (hi << 32) | lo;
}

static uint8_t unpack_u8(struct unpack *u, const char *field)
{
    if (!need(u, 1, field))
        return 0;
    return u->p[u->off++];
}

/* dst must hold max + 1 bytes. */
static void unpack_str_max(struct unpack *u, char *dst, size_t max, const char *field)
{
    uint16_t n = unpack_u16(u, field);

    dst[0] = '\0';
    if (u->fail)
        return;
    if (n > max) {
        u->fail = field;
        return;
    }
    if (!need(u, n, field))
        return;
    if (!str_printable((const char *)u->p + u->off, n)) {
        u->fail = field;
        return;
    }
    memcpy(dst, u->p + u->off, n);
    dst[n] = '\0';
    u->off += n;
}

static void unpack_str(struct unpack *u, char *dst, const char *field)
{
    unpack_str_max(u, dst, PROTO_MAX_STR, field);
}

static int why_set(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_set(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (why && cap) {
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int proto_decode_payload(uint8_t type, const uint8_t *p, size_t len,
                         struct proto_msg *out, char *why, size_t whycap)
{
    struct unpack u = {.p = p, .len = len};

    memset(out, 0, sizeof(*out));
    out->type = (enum proto_type)type;
    switch (type) {
    case PROTO_HOST_HELLO:
        out->u.host_hello.version = unpack_u16(&u, "version");
        out->u.host_hello.heartbeat_ms = unpack_u32(&u, "heartbeat_ms");
        unpack_str(&u, out->u.host_hello.vm_name, "vm_name");
        if (!u.fail && (out->u.host_hello.heartbeat_ms < PROTO_MIN_HEARTBEAT_MS ||
                        out->u.host_hello.heartbeat_ms > PROTO_MAX_HEARTBEAT_MS))
            u.fail = "heartbeat_ms (out of range)";
        break;
    case PROTO_HELLO:
        out->u.hello.version = unpack_u16(&u, "version");
        unpack_str(&u, out->u.hello.agent_version, "agent_version");
        unpack_str(&u, out->u.hello.vm_name, "vm_name");
        out->u.hello.boot_id = unpack_u64(&u, "boot_id");
        out->u.hello.uptime_ms = unpack_u64(&u, "uptime_ms");
        break;
    case PROTO_HEARTBEAT:
        out->u.heartbeat.seq = unpack_u64(&u, "seq");
        out->u.heartbeat.uptime_ms = unpack_u64(&u, "uptime_ms");
        out->u.heartbeat.app_served = unpack_u64(&u, "app_served");
        break;
    case PROTO_PING:
    case PROTO_PONG:
        out->u.ping.seq = unpack_u64(&u, "seq");
        out->u.ping.host_ts_us = unpack_u64(&u, "host_ts_us");
        break;
    case PROTO_SHUTDOWN:
        if (need(&u, 1, "action")) {
            out->u.shutdown.action = u.p[u.off++];
            if (out->u.shutdown.action > PROTO_SHUTDOWN_REBOOT)
                u.fail = "action (unknown)";
        }
        break;
    case PROTO_CONFIG: {
        struct proto_config *c = &out->u.config;
        c->watchdog_s = unpack_u32(&u, "watchdog_s");
        c->app_max_restarts = unpack_u32(&u, "app_max_restarts");
        c->app_window_ms = unpack_u32(&u, "app_window_ms");
        c->n_procs = unpack_u8(&u, "n_procs");
        if (!u.fail && c->watchdog_s > PROTO_MAX_WATCHDOG_S)
            u.fail = "watchdog_s (out of range)";
        if (!u.fail && c->n_procs > PROTO_MAX_PROCS)
            u.fail = "n_procs (too many)";
        for (unsigned i = 0; !u.fail && i < c->n_procs; i++) {
            unpack_str(&u, c->procs[i].name, "procs.name");
            unpack_str_max(&u, c->procs[i].command, PROTO_MAX_LSTR, "procs.command");
        }
        break;
    }
    case PROTO_ROLE_SET: {
        struct proto_role_set *r = &out->u.role_set;
        r->generation = unpack_u64(&u, "generation");
        r->role = unpack_u8(&u, "role");
        unpack_str(&u, r->assignment, "assignment");
        r->n_vips = unpack_u8(&u, "n_vips");
        if (!u.fail && r->role > PROTO_ROLE_STANDBY)
            u.fail = "role (unknown)";
        if (!u.fail && r->n_vips > PROTO_MAX_VIPS)
            u.fail = "n_vips (too many)";
        for (unsigned i = 0; !u.fail && i < r->n_vips; i++)
            unpack_str(&u, r->vips[i], "vips");
        break;
    }
    case PROTO_ROLE_ACK: {
        struct proto_role_ack *a = &out->u.role_ack;
        a->generation = unpack_u64(&u, "generation");
        a->role = unpack_u8(&u, "role");
        a->result = unpack_u8(&u, "result");
        unpack_str(&u, a->detail, "detail");
        if (!u.fail && (a->role > PROTO_ROLE_STANDBY || a->result > PROTO_ACK_STALE))
            u.fail = "role or result (unknown)";
        break;
    }
    case PROTO_APP_EVENT: {
        struct proto_app_event *a = &out->u.app_event;
        unpack_str(&u, a->name, "name");
        a->kind = unpack_u8(&u, "kind");
        a->status = (int32_t)unpack_u32(&u, "status");
        a->restarts = unpack_u32(&u, "restarts");
        a->pid = unpack_u32(&u, "pid");
        if (!u.fail && a->kind > PROTO_APP_GAVE_UP)
            u.fail = "kind (unknown)";
        break;
    }
    default:
        return why_set(why, whycap, "unknown message type %u", type);
    }
    if (u.fail)
        return why_set(why, whycap, "%s message: bad or truncated field %s",
                       proto_type_name(type), u.fail);
    return 0;
}

/* ---- stream reader ---------------------------------------------------- */

void proto_reader_init(struct proto_reader *r)
{
    r->len = 0;
}

void proto_reader_commit(struct proto_reader *r, size_t n)
{
    if (n > proto_reader_space(r))
        n = proto_reader_space(r);
    r->len += n;
}

size_t proto_reader_push(struct proto_reader *r, const uint8_t *data, size_t n)
{
    size_t take = proto_reader_space(r);

    if (take > n)
        take = n;
    memcpy(r->buf + r->len, data, take);
    r->len += take;
    return take;
}

static void reader_drop(struct proto_reader *r, size_t n)
{
    if (n >= r->len) {
        r->len = 0;
        return;
    }
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

/* Drop bytes up to the next position that could start a frame. */
static size_t reader_resync(struct proto_reader *r)
{
    size_t i;

    for (i = 1; i < r->len; i++) {
        if (r->buf[i] == PROTO_MAGIC0 &&
            (i + 1 == r->len || r->buf[i + 1] == PROTO_MAGIC1))
            break;
    }
    reader_drop(r, i);
    return i;
}

enum proto_next proto_reader_next(struct proto_reader *r, struct proto_msg *out,
                                  char *why, size_t whycap)
{
    uint32_t plen;
    uint8_t version, type;
    int rc;

    if (r->len == 0)
        return PROTO_NEED_MORE;
    if (r->buf[0] != PROTO_MAGIC0 || (r->len >= 2 && r->buf[1] != PROTO_MAGIC1)) {
        size_t n = reader_resync(r);
        why_set(why, whycap, "bad frame magic, skipped %zu bytes", n);
        return PROTO_BAD;
    }
    if (r->len < PROTO_HDR_LEN)
        return PROTO_NEED_MORE;
    version = r->buf[2];
    type = r->buf[3];
    plen = ((uint32_t)r->buf[4] << 24) | ((uint32_t)r->buf[5] << 16) |
           ((uint32_t)r->buf[6] << 8) | r->buf[7];
    if (plen > PROTO_MAX_PAYLOAD) {
        size_t n = reader_resync(r);
        why_set(why, whycap, "frame length %u exceeds %u, skipped %zu bytes", plen,
                PROTO_MAX_PAYLOAD, n);
        return PROTO_BAD;
    }
    if (r->len < PROTO_HDR_LEN + plen)
        return PROTO_NEED_MORE;
    if (version != PROTO_VERSION) {
        reader_drop(r, PROTO_HDR_LEN + plen);
        why_set(why, whycap, "unsupported protocol version %u (want %u)", version,
                PROTO_VERSION);
        return PROTO_BAD;
    }
    rc = proto_decode_payload(type, r->buf + PROTO_HDR_LEN, plen, out, why, whycap);
    reader_drop(r, PROTO_HDR_LEN + plen);
    return rc == 0 ? PROTO_MSG : PROTO_BAD;
}

const char *proto_type_name(unsigned type)
{
    switch (type) {
    case PROTO_HOST_HELLO: return "HOST_HELLO";
    case PROTO_HELLO: return "HELLO";
    case PROTO_HEARTBEAT: return "HEARTBEAT";
    case PROTO_PING: return "PING";
    case PROTO_PONG: return "PONG";
    case PROTO_SHUTDOWN: return "SHUTDOWN";
    case PROTO_CONFIG: return "CONFIG";
    case PROTO_ROLE_SET: return "ROLE_SET";
    case PROTO_ROLE_ACK: return "ROLE_ACK";
    case PROTO_APP_EVENT: return "APP_EVENT";
    }
    return "UNKNOWN";
}
