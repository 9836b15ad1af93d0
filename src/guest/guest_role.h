/* guest_role.h — the HA role of this instance, without any I/O.
 *
 * cgv-guest (guest_ha.c) asks guest_role_check() what to do with each
 * ROLE_SET, and for APPLY gets from guest_role_plan() the addresses to remove
 * and to add, carries them out (rtnetlink), records what it did
 * (guest_role_added / _removed) and finally the result (guest_role_done).
 *
 * Generation rules:
 *  - older than the current generation: STALE (ack PROTO_ACK_STALE, no change);
 *  - equal, with the same role, assignment and VIPs: REACK with the result
 *    of the earlier application (no work), or PENDING while that application
 *    is still running (its ack is still to come) — except that an earlier
 *    FAILED application is tried again (APPLY);
 *  - anything else (newer, or an equal generation with other content): APPLY.
 *    A ROLE_SET whose VIPs or assignment are malformed is INVALID (ack
 *    FAILED, no change).
 * VIPs count only for ACTIVE; STANDBY and NONE remove every VIP this agent
 * added (and only those: an address that was already there is left alone).
 * The assignment must be 0..64 of [A-Za-z0-9._:-] (it goes into the
 * space-separated role line and the hook's arguments). */
#ifndef GUEST_ROLE_H
#define GUEST_ROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

struct guest_vip {
    uint32_t addr;  /* network byte order */
    uint8_t prefix; /* 1..32 */
};

/* Strict "a.b.c.d/prefix" (no leading zeros, prefix 1..32). Returns 0 or -1. */
int guest_vip_parse(const char *s, struct guest_vip *v);
/* "a.b.c.d/prefix" into buf[cap] (19 bytes suffice). */
void guest_vip_format(const struct guest_vip *v, char *buf, size_t cap);
bool guest_vip_equal(const struct guest_vip *a, const struct guest_vip *b);

struct guest_role {
    uint64_t generation;
    uint8_t role; /* enum proto_role */
    char assignment[PROTO_MAX_STR + 1];
    uint8_t n_vips; /* wanted: only while ACTIVE */
    struct guest_vip vips[PROTO_MAX_VIPS];
    uint8_t n_added; /* configured by this agent and not removed since */
    struct guest_vip added[PROTO_MAX_VIPS];
    uint8_t result; /* of the latest application, enum proto_ack_result */
    bool busy;      /* applied, the hook still running: no ack yet */
};

enum guest_role_verdict {
    GUEST_ROLE_APPLY = 0,
    GUEST_ROLE_STALE,
    GUEST_ROLE_REACK,
    GUEST_ROLE_PENDING,
    GUEST_ROLE_INVALID,
};

/* Generation 0, role NONE, nothing added. */
void guest_role_init(struct guest_role *r);

/* What to do with rs; why[whycap] says why for INVALID. */
enum guest_role_verdict guest_role_check(const struct guest_role *r,
                                         const struct proto_role_set *rs, char *why,
                                         size_t whycap);

struct guest_role_plan {
    uint8_t n_del;
    struct guest_vip del[PROTO_MAX_VIPS];
    uint8_t n_add;
    struct guest_vip add[PROTO_MAX_VIPS];
    uint8_t n_announce; /* every wanted VIP: gratuitous ARP for each */
    struct guest_vip announce[PROTO_MAX_VIPS];
};

/* Adopt rs (checked: APPLY) as the current role: generation, role,
 * assignment, wanted VIPs, busy = true, result = OK; and fill the plan from
 * what was added before: delete first (added but no longer wanted), then add
 * (wanted but not added). Returns 0, or -1 if rs is malformed. */
int guest_role_adopt(struct guest_role *r, const struct proto_role_set *rs,
                     struct guest_role_plan *plan);

/* Record that a VIP was configured by the agent / is gone. */
void guest_role_added(struct guest_role *r, const struct guest_vip *v);
void guest_role_removed(struct guest_role *r, const struct guest_vip *v);
/* The application ended (busy = false) with this result. */
void guest_role_done(struct guest_role *r, uint8_t result);

const char *guest_role_name(uint8_t role); /* "none", "active", "standby" */

/* The line /run/cgv/role.sock sends:
 *   "role <none|active|standby> <assignment|-> <generation> <vip,...|->\n"
 * Returns its length, or -1 if cap is too small. */
int guest_role_line(const struct guest_role *r, char *buf, size_t cap);
/* Comma-separated wanted VIPs, "" if none. Returns its length or -1. */
int guest_role_vips(const struct guest_role *r, char *buf, size_t cap);

/* The state file that lets a restarted agent carry on (text, one "key
 * value" per line: generation, role, assignment, result, vip (wanted),
 * added). Returns the length, or -1 if cap is too small. */
int guest_role_state_format(const struct guest_role *r, char *buf, size_t cap);
/* Returns 0, or -1 (and *r untouched) if the text is malformed. */
int guest_role_state_parse(const char *buf, size_t len, struct guest_role *r);

#endif
