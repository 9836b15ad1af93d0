/* agent_proto.h — the host <-> guest agent channel protocol, version 1.
 *
 * A byte stream over the virtio-serial port "org.cgv.agent.0" (guest:
 * /dev/vportNpM; host: a unix socket QEMU listens on). Every frame is
 *
 *   off 0  u8   magic 0xC6
 *   off 1  u8   magic 0x76 ('v')
 *   off 2  u8   protocol version (PROTO_VERSION)
 *   off 3  u8   message type (enum proto_type)
 *   off 4  u32  payload length, big-endian, at most PROTO_MAX_PAYLOAD
 *   off 8       payload
 *
 * Payload fields are packed in the order listed below: integers big-endian,
 * strings as a u16 length followed by that many bytes (no NUL), at most
 * PROTO_MAX_STR bytes of printable ASCII (PROTO_MAX_LSTR for the "long"
 * strings marked so). Lists are a u8 count then the items. Never a raw
 * struct dump.
 *
 * Compatibility: a receiver ignores payload bytes after the fields it knows
 * (later revisions of a version only append fields) and skips frames of a type
 * it does not know. A new version number means an incompatible change.
 *
 * The host treats every byte from a guest as hostile: the reader is bounded
 * (one frame at most), never allocates, resynchronises on the magic after
 * garbage, and reports each problem as a PROTO_BAD result with a reason.
 *
 * Conversation: when cgvd connects to the channel it sends HOST_HELLO; the
 * agent answers HELLO (it also sends HELLO when it starts), then sends
 * HEARTBEAT every heartbeat_ms. PING/PONG measure the channel round trip.
 * SHUTDOWN asks the agent to sync and power the guest off (or reboot it).
 *
 * High availability (after HOST_HELLO):
 *  - CONFIG (host -> guest, on every connect and when the spec changes):
 *    the virtual watchdog timeout the agent arms and pets, the processes it
 *    supervises (restarting each in place, at most app_max_restarts within
 *    app_window_ms, then giving up on it), replacing any earlier list.
 *  - APP_EVENT (guest -> host): a supervised process started, exited (with
 *    its status; the agent restarts it), or was given up on.
 *  - ROLE_SET (host -> guest): the instance's HA role for an assignment and
 *    the virtual IPs that follow the active. The agent configures (or
 *    removes) the addresses, announces them with gratuitous ARP, tells the
 *    guest's applications (hook script, local socket) and only then answers
 *    ROLE_ACK with the same generation. A role change is complete only when
 *    acknowledged; a ROLE_SET with an older generation than the agent's
 *    current one is acknowledged with result PROTO_ACK_STALE and ignored.
 */
#ifndef AGENT_PROTO_H
#define AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAGIC0 0xC6
#define PROTO_MAGIC1 0x76
#define PROTO_HDR_LEN 8
#define PROTO_MAX_PAYLOAD 4096
#define PROTO_MAX_FRAME (PROTO_HDR_LEN + PROTO_MAX_PAYLOAD)
#define PROTO_MAX_STR 64
#define PROTO_MAX_LSTR 256
#define PROTO_MAX_PROCS 8
#define PROTO_MAX_VIPS 4
#define PROTO_MAX_WATCHDOG_S 60

/* The virtio-serial port name both sides look for. */
#define PROTO_CHANNEL_NAME "org.cgv.agent.0"

/* Bounds on the heartbeat interval the host may ask for. */
#define PROTO_MIN_HEARTBEAT_MS 10
#define PROTO_MAX_HEARTBEAT_MS 60000

enum proto_type {
    PROTO_HOST_HELLO = 1, /* host -> guest */
    PROTO_HELLO = 2,      /* guest -> host */
    PROTO_HEARTBEAT = 3,  /* guest -> host */
    PROTO_PING = 4,       /* host -> guest */
    PROTO_PONG = 5,       /* guest -> host, echoes PING */
    PROTO_SHUTDOWN = 6,   /* host -> guest: power off or reboot the guest */
    PROTO_CONFIG = 7,     /* host -> guest: watchdog and supervised processes */
    PROTO_ROLE_SET = 8,   /* host -> guest: HA role and virtual IPs */
    PROTO_ROLE_ACK = 9,   /* guest -> host: the role is in place */
    PROTO_APP_EVENT = 10, /* guest -> host: a supervised process changed */
};

enum proto_role { PROTO_ROLE_NONE = 0, PROTO_ROLE_ACTIVE = 1, PROTO_ROLE_STANDBY = 2 };
enum proto_ack_result { PROTO_ACK_OK = 0, PROTO_ACK_FAILED = 1, PROTO_ACK_STALE = 2 };
enum proto_app_kind {
    PROTO_APP_STARTED = 0,
    PROTO_APP_EXITED = 1,  /* it will be restarted */
    PROTO_APP_GAVE_UP = 2, /* restarted too often: no more restarts */
};

enum proto_shutdown_action { PROTO_SHUTDOWN_POWEROFF = 0, PROTO_SHUTDOWN_REBOOT = 1 };

struct proto_host_hello {
    uint16_t version;      /* the host's PROTO_VERSION */
    uint32_t heartbeat_ms; /* PROTO_MIN_HEARTBEAT_MS .. PROTO_MAX_HEARTBEAT_MS */
    char vm_name[PROTO_MAX_STR + 1];
};

struct proto_hello {
    uint16_t version; /* the agent's PROTO_VERSION */
    char agent_version[PROTO_MAX_STR + 1];
    char vm_name[PROTO_MAX_STR + 1]; /* what the guest was told at boot */
    uint64_t boot_id;                /* random per agent start */
    uint64_t uptime_ms;              /* guest CLOCK_MONOTONIC */
};

struct proto_heartbeat {
    uint64_t seq;        /* +1 per heartbeat since the agent started */
    uint64_t uptime_ms;  /* guest CLOCK_MONOTONIC */
    uint64_t app_served; /* requests the sample function answered, 0 if none */
};

struct proto_ping {
    uint64_t seq;
    uint64_t host_ts_us; /* opaque to the guest, echoed back */
};

struct proto_shutdown {
    uint8_t action; /* enum proto_shutdown_action */
};

struct proto_proc {
    char name[PROTO_MAX_STR + 1];     /* [a-z0-9-], unique in the list */
    char command[PROTO_MAX_LSTR + 1]; /* long string; run with /bin/sh -c */
};

struct proto_config {
    uint32_t watchdog_s;        /* 0 = leave the watchdog off, else 1..60 */
    uint32_t app_max_restarts;  /* restarts allowed within app_window_ms */
    uint32_t app_window_ms;
    uint8_t n_procs;            /* <= PROTO_MAX_PROCS */
    struct proto_proc procs[PROTO_MAX_PROCS];
};

struct proto_role_set {
    uint64_t generation;        /* grows with every role change cgvd makes */
    uint8_t role;               /* enum proto_role */
    char assignment[PROTO_MAX_STR + 1];
    uint8_t n_vips;             /* <= PROTO_MAX_VIPS, only for ACTIVE */
    char vips[PROTO_MAX_VIPS][PROTO_MAX_STR + 1]; /* "a.b.c.d/prefix" */
};

struct proto_role_ack {
    uint64_t generation;
    uint8_t role;
    uint8_t result;             /* enum proto_ack_result */
    char detail[PROTO_MAX_STR + 1];
};

struct proto_app_event {
    char name[PROTO_MAX_STR + 1];
    uint8_t kind;               /* enum proto_app_kind */
    int32_t status;             /* exit code >= 0, or -signal */
    uint32_t restarts;          /* restarts within the current window */
    uint32_t pid;
};

struct proto_msg {
    enum proto_type type;
    union {
        struct proto_host_hello host_hello;
        struct proto_hello hello;
        struct proto_heartbeat heartbeat;
        struct proto_ping ping; /* PING and PONG */
        struct proto_shutdown shutdown;
        struct proto_config config;
        struct proto_role_set role_set;
        struct proto_role_ack role_ack;
        struct proto_app_event app_event;
    } u;
};

/* Encode one frame into out[cap]. Returns the frame length, or -1 if cap is
 * too small or a field is out of bounds (a string too long or not printable). */
int proto_encode(const struct proto_msg *msg, uint8_t *out, size_t cap);

/* Decode one payload of the given type (the header already checked).
 * Returns 0, or -1 with a reason in why[whycap]. */
int proto_decode_payload(uint8_t type, const uint8_t *p, size_t len,
                         struct proto_msg *out, char *why, size_t whycap);

/* Streaming reader: push bytes in, take frames out. Fixed size, no allocation. */
struct proto_reader {
    uint8_t buf[PROTO_MAX_FRAME];
    size_t len;
};

enum proto_next {
    PROTO_NEED_MORE = 0, /* no complete frame buffered */
    PROTO_MSG = 1,       /* *out holds a decoded message */
    PROTO_BAD = -1,      /* bytes were discarded; why says what; call again */
};

void proto_reader_init(struct proto_reader *r);
/* Free space at the tail, for read(2) straight into the buffer. */
static inline size_t proto_reader_space(const struct proto_reader *r)
{
    return sizeof(r->buf) - r->len;
}
static inline uint8_t *proto_reader_tail(struct proto_reader *r)
{
    return r->buf + r->len;
}
/* Account n bytes written at the tail (n <= proto_reader_space). */
void proto_reader_commit(struct proto_reader *r, size_t n);
/* Copy up to n bytes in; returns how many were taken. */
size_t proto_reader_push(struct proto_reader *r, const uint8_t *data, size_t n);
/* Take the next frame. Each call either returns PROTO_NEED_MORE or consumes
 * at least one byte, so a caller's loop always ends. */
enum proto_next proto_reader_next(struct proto_reader *r, struct proto_msg *out,
                                  char *why, size_t whycap);

const char *proto_type_name(unsigned type);

#endif
