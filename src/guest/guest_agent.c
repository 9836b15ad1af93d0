/* guest_agent.c — protocol state machine of cgv-guest (pure, see header). */
#include "guest_agent.h"

#include <stdio.h>
#include <string.h>

/* Copy at most PROTO_MAX_STR printable bytes; anything else becomes '?'. */
static void copy_str(char *dst, const char *src)
{
    size_t i;

    for (i = 0; src && src[i] && i < PROTO_MAX_STR; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c >= 0x20 && c <= 0x7e) ? (char)c : '?';
    }
    dst[i] = '\0';
}

void guest_agent_init(struct guest_agent *a, const char *vm_name,
                      const char *agent_version, uint64_t boot_id, int64_t now_us)
{
    memset(a, 0, sizeof(*a));
    copy_str(a->vm_name, vm_name);
    copy_str(a->agent_version, agent_version);
    a->boot_id = boot_id;
    a->heartbeat_ms = GUEST_DEFAULT_HEARTBEAT_MS;
    a->next_hb_us = now_us + (int64_t)a->heartbeat_ms * 1000;
    proto_reader_init(&a->rd);
}

static int queue(struct guest_agent *a, const struct proto_msg *m)
{
    int n = proto_encode(m, a->out + a->out_len, sizeof(a->out) - a->out_len);

    if (n < 0) {
        a->n_dropped++;
        return -1;
    }
    a->out_len += (size_t)n;
    return 0;
}

static uint64_t uptime_ms(int64_t now_us)
{
    return now_us > 0 ? (uint64_t)now_us / 1000 : 0;
}

int guest_agent_queue_hello(struct guest_agent *a, int64_t now_us)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_HELLO;
    m.u.hello.version = PROTO_VERSION;
    memcpy(m.u.hello.agent_version, a->agent_version, sizeof(a->agent_version));
    memcpy(m.u.hello.vm_name, a->vm_name, sizeof(a->vm_name));
    m.u.hello.boot_id = a->boot_id;
    m.u.hello.uptime_ms = uptime_ms(now_us);
    return queue(a, &m);
}

size_t guest_agent_queue_garbage(struct guest_agent *a)
{
    static const uint8_t burst[] = {
        /* stray bytes (none is the magic) */
        0x00, 0xff, 0x13, 0x37, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '\n', 0x7f, 0x80,
        /* bad second magic byte */
        PROTO_MAGIC0, 0x00, PROTO_VERSION, PROTO_HEARTBEAT, 0, 0, 0, 0,
        /* length far beyond PROTO_MAX_PAYLOAD */
        PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, PROTO_HEARTBEAT, 0x7f, 0xff, 0xff, 0xff,
        /* a version the host does not speak, empty payload */
        PROTO_MAGIC0, PROTO_MAGIC1, 99, PROTO_HEARTBEAT, 0, 0, 0, 0,
        /* HEARTBEAT whose payload is 3 bytes (needs 24) */
        PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, PROTO_HEARTBEAT, 0, 0, 0, 3, 1, 2, 3,
        /* HELLO whose string claims 200 bytes (max 64) */
        PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, PROTO_HELLO, 0, 0, 0, 4, 0, 1, 0, 200,
        /* an unknown message type */
        PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, 250, 0, 0, 0, 2, 'x', 'y',
        /* a host-to-guest message sent by the guest */
        PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, PROTO_SHUTDOWN, 0, 0, 0, 1, 0,
    };

    if (sizeof(a->out) - a->out_len < sizeof(burst))
        return 0;
    memcpy(a->out + a->out_len, burst, sizeof(burst));
    a->out_len += sizeof(burst);
    return sizeof(burst);
}

enum guest_event guest_agent_step(struct guest_agent *a, int64_t now_us, char *why,
                                  size_t whycap)
{
    struct proto_msg in, reply;

    switch (proto_reader_next(&a->rd, &in, why, whycap)) {
    case PROTO_NEED_MORE:
        return GUEST_EV_NONE;
    case PROTO_BAD:
        a->n_bad++;
        return GUEST_EV_BAD;
    case PROTO_MSG:
        break;
    }
    switch (in.type) {
    case PROTO_HOST_HELLO:
        /* The decoder has checked the interval bounds. */
        a->heartbeat_ms = in.u.host_hello.heartbeat_ms;
        a->next_hb_us = now_us + (int64_t)a->heartbeat_ms * 1000;
        guest_agent_queue_hello(a, now_us);
        return GUEST_EV_HOST_HELLO;
    case PROTO_PING:
        memset(&reply, 0, sizeof(reply));
        reply.type = PROTO_PONG;
        reply.u.ping = in.u.ping;
        queue(a, &reply);
        return GUEST_EV_PING;
    case PROTO_SHUTDOWN:
        a->shutdown_action = in.u.shutdown.action;
        return GUEST_EV_SHUTDOWN;
    case PROTO_CONFIG:
        a->config = in.u.config;
        return GUEST_EV_CONFIG;
    case PROTO_ROLE_SET:
        a->role_set = in.u.role_set;
        return GUEST_EV_ROLE_SET;
    default:
        if (why && whycap)
            snprintf(why, whycap, "ignoring %s message from the host",
                     proto_type_name(in.type));
        return GUEST_EV_IGNORED;
    }
}

bool guest_agent_tick(struct guest_agent *a, int64_t now_us, uint64_t app_served,
                      bool send)
{
    int64_t period = (int64_t)a->heartbeat_ms * 1000;
    struct proto_msg m;

    if (now_us < a->next_hb_us)
        return false;
    if (send) {
        memset(&m, 0, sizeof(m));
        m.type = PROTO_HEARTBEAT;
        m.u.heartbeat.seq = a->hb_seq + 1;
        m.u.heartbeat.uptime_ms = uptime_ms(now_us);
        m.u.heartbeat.app_served = app_served;
        if (queue(a, &m) == 0)
            a->hb_seq++;
    }
    a->next_hb_us += period;
    if (a->next_hb_us <= now_us)
        a->next_hb_us = now_us + period;
    return true;
}

int guest_agent_queue_role_ack(struct guest_agent *a, uint64_t generation, uint8_t role,
                               uint8_t result, const char *detail)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_ROLE_ACK;
    m.u.role_ack.generation = generation;
    m.u.role_ack.role = role;
    m.u.role_ack.result = result;
    copy_str(m.u.role_ack.detail, detail);
    return queue(a, &m);
}

int guest_agent_queue_app_event(struct guest_agent *a, const struct proto_app_event *ev)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_APP_EVENT;
    m.u.app_event = *ev;
    copy_str(m.u.app_event.name, ev->name);
    return queue(a, &m);
}

void guest_agent_out_consume(struct guest_agent *a, size_t n)
{
    if (n >= a->out_len) {
        a->out_len = 0;
        return;
    }
    memmove(a->out, a->out + n, a->out_len - n);
    a->out_len -= n;
}

void guest_agent_reset_io(struct guest_agent *a)
{
    a->out_len = 0;
    proto_reader_init(&a->rd);
}
