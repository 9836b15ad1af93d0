/* guest_agent.h — the agent's protocol state machine, without any I/O.
 *
 * cgv_guest.c owns the port and the clock and drives this: bytes read from the
 * port go into `rd` (proto_reader_tail/commit), guest_agent_step() handles one
 * frame at a time, guest_agent_tick() queues heartbeats on a CLOCK_MONOTONIC
 * schedule, and whatever is queued in out[0..out_len) is written to the port.
 * Times are microseconds of CLOCK_MONOTONIC, passed in by the caller so the
 * logic can be tested without a clock. */
#ifndef GUEST_AGENT_H
#define GUEST_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

#define GUEST_DEFAULT_HEARTBEAT_MS 1000
#define GUEST_OUT_CAP 4096

struct guest_agent {
    char vm_name[PROTO_MAX_STR + 1];
    char agent_version[PROTO_MAX_STR + 1];
    uint64_t boot_id;
    uint32_t heartbeat_ms;
    uint64_t hb_seq;     /* seq of the last heartbeat queued */
    int64_t next_hb_us;  /* absolute deadline of the next heartbeat */
    uint64_t n_bad;      /* frames or bytes from the host that were skipped */
    uint64_t n_dropped;  /* outgoing messages dropped: output buffer full */
    uint8_t shutdown_action; /* valid after GUEST_EV_SHUTDOWN */
    struct proto_config config;     /* valid after GUEST_EV_CONFIG */
    struct proto_role_set role_set; /* valid after GUEST_EV_ROLE_SET */
    struct proto_reader rd;
    uint8_t out[GUEST_OUT_CAP];
    size_t out_len;
};

enum guest_event {
    GUEST_EV_NONE = 0,   /* no complete frame buffered */
    GUEST_EV_HOST_HELLO, /* heartbeat interval adopted, HELLO queued */
    GUEST_EV_PING,       /* PONG queued */
    GUEST_EV_SHUTDOWN,   /* shutdown_action says what to do */
    GUEST_EV_CONFIG,     /* config holds the host's CONFIG */
    GUEST_EV_ROLE_SET,   /* role_set holds the host's ROLE_SET */
    GUEST_EV_IGNORED,    /* a valid frame the guest does not act on; why says */
    GUEST_EV_BAD,        /* garbage skipped; why says what */
};

/* vm_name and agent_version must be printable ASCII of at most PROTO_MAX_STR
 * bytes (longer ones are cut). The first heartbeat is due one interval after
 * now_us. Nothing is queued yet: call guest_agent_queue_hello(). */
void guest_agent_init(struct guest_agent *a, const char *vm_name,
                      const char *agent_version, uint64_t boot_id, int64_t now_us);

/* Queue a HELLO. Returns 0, or -1 if it was dropped (buffer full). */
int guest_agent_queue_hello(struct guest_agent *a, int64_t now_us);

/* Handle at most one buffered frame (see enum guest_event). Call until it
 * returns GUEST_EV_NONE. why[whycap] explains IGNORED and BAD. */
enum guest_event guest_agent_step(struct guest_agent *a, int64_t now_us, char *why,
                                  size_t whycap);

/* If the heartbeat is due at now_us, queue it (only when send is true: while
 * the host is away the tick passes unsent and seq does not advance) and move
 * the deadline one interval on; after a stall longer than an interval the
 * schedule restarts from now rather than bursting. Returns true if due. */
bool guest_agent_tick(struct guest_agent *a, int64_t now_us, uint64_t app_served,
                      bool send);

/* Fault injection for tests of the host's decoder (cgv-guest does this on
 * SIGUSR1): queue a burst of malformed bytes — stray bytes, bad magic, an
 * oversize length, a wrong version, a truncated payload, an unknown type, a
 * host-only message — each of which the host must skip without losing the
 * valid frames around it (no byte of the burst can start a frame that would
 * swallow the next ones). Returns the bytes queued, 0 if it did not fit. */
size_t guest_agent_queue_garbage(struct guest_agent *a);

/* Queue a ROLE_ACK / an APP_EVENT. Return 0, or -1 if dropped (buffer full
 * or a field out of bounds: detail and name are cut to PROTO_MAX_STR). */
int guest_agent_queue_role_ack(struct guest_agent *a, uint64_t generation, uint8_t role,
                               uint8_t result, const char *detail);
int guest_agent_queue_app_event(struct guest_agent *a, const struct proto_app_event *ev);

/* Drop n bytes from the front of the output (they were written). */
void guest_agent_out_consume(struct guest_agent *a, size_t n);
/* Forget queued output and partial input (the host went away). */
void guest_agent_reset_io(struct guest_agent *a);

#endif
