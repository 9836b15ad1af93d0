/* ha.h — the availability manager's policy: pure code, no I/O, no clock.
 *
 * cgvd keeps one struct ha_svc per service, feeds it what it observes (an
 * instance became healthy, a fault was detected, a role was acknowledged, a
 * fence or restart finished) with the time, and executes the plans it gets
 * back. Everything here is decided from the state alone, so it is tested
 * offline against scenarios (tests/unit/ha).
 *
 * Models
 *   none         every instance works alone; a fault restarts it.
 *   2n           two instances, one assignment: one active, one standby.
 *   n+m          N assignments, N actives, M standbys; any standby may take
 *                any active's assignment.
 *   nway-active  one assignment served by every healthy instance.
 *
 * Recovery, for a fault on instance i (the escalation ladder):
 *   1. application: cgv-guest restarts a failed process in place, at most
 *      app_restarts within its window (in the guest; ha only hears of it
 *      when the agent gives up, which is a fault of the instance);
 *   2. fail over: if i is active and a healthy standby exists, the standby
 *      takes i's assignment at once — the fastest way to restore service;
 *   3. restart the VM: i is fenced (destroyed, unless its QEMU is known to
 *      be dead) and restarted (fast: from its snapshot; or cold), at most
 *      vm_restarts within the window; when healthy again it becomes the
 *      standby (or the active, if its assignment has no holder);
 *   4. mark failed: beyond the restart limit (or when fail-overs away from
 *      it exceed theirs, i.e. it flaps) i is left stopped and an alarm is
 *      raised; an operator action (start) clears it.
 *   A limit with max 0 forbids the step: vm_restarts 0 gives an instance up
 *   at its first fault; failovers 0 never moves an assignment (it waits for
 *   its own instance to be restarted).
 *
 * Never two actives for one assignment: a standby is promoted only once the
 * previous holder cannot act any more — its QEMU is dead (process exit, or
 * a panicked guest preserved by libvirt) or cgvd has fenced it. A holder
 * that is merely suspected (hang, watchdog, application given up, unknown
 * reason) is fenced first. Each role change carries a generation that only
 * grows; an acknowledgement for an older generation is ignored.
 */
#ifndef HA_H
#define HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HA_MAX_INST 64
#define HA_MAX_ASSIGN 64
#define HA_HIST 128    /* timestamps kept per limit window */
#define HA_OUTAGES 32  /* outage intervals kept per service */

enum ha_model { HA_NONE = 0, HA_2N, HA_NPM, HA_NWAY };
enum ha_role { HA_ROLE_NONE = 0, HA_ROLE_ACTIVE, HA_ROLE_STANDBY };

enum ha_fault {
    HA_F_DEATH = 0,  /* the QEMU process exited (pidfd, channel EOF, libvirt) */
    HA_F_PANIC,      /* guest kernel panic (pvpanic): QEMU halted it */
    HA_F_HANG,       /* heartbeats stopped */
    HA_F_WATCHDOG,   /* the virtual watchdog expired */
    HA_F_APP,        /* the agent gave up restarting a supervised process */
    HA_F_STOPPED,    /* the domain stopped by itself (guest shut down) */
    HA_F_COUNT
};

enum ha_inst_state {
    HA_I_DOWN = 0,   /* not running, not yet started */
    HA_I_STARTING,   /* (re)started, waiting for the agent's hello */
    HA_I_HEALTHY,    /* agent up, role may be assigned */
    HA_I_FENCING,    /* being destroyed after a fault */
    HA_I_FAILED,     /* given up: no more automatic restarts */
    HA_I_STOPPED,    /* stopped by the operator: not HA-managed until started */
};

struct ha_limit {
    unsigned max;       /* actions allowed within the window; 0 = none */
    int64_t window_ms;
};

struct ha_window {
    int64_t t[HA_HIST]; /* ring of action times */
    unsigned n, next;
    uint64_t total;     /* every action ever (the ring keeps the last HA_HIST) */
};

struct ha_inst {
    enum ha_inst_state state;
    enum ha_role role;      /* the role last sent (acked or not) */
    int assignment;         /* -1: none */
    uint64_t role_gen;      /* generation of the role last sent */
    bool role_acked;        /* the guest acknowledged role_gen */
    bool dead;              /* its QEMU is known not to run (safe to replace) */
    bool draining;          /* handing its assignment over before an operator
                               action; never given one while draining */
    int drain_from;         /* the assignment it hands over, -1 if none */
    struct ha_window restarts, failovers;
};

struct ha_outage {
    int64_t start_ms, end_ms; /* end 0 while open */
    char cause[48];
};

struct ha_svc {
    enum ha_model model;
    unsigned n_inst;
    unsigned n_assign;       /* 2n: 1, n+m: N, none: n_inst, nway: 1 */
    struct ha_limit vm_restarts, failovers;
    uint64_t generation;     /* last role generation handed out */
    struct ha_inst inst[HA_MAX_INST];

    /* availability since created_ms */
    int64_t created_ms;
    bool ever_up;            /* outages count only once the service was up */
    bool down;               /* an outage is open */
    int64_t downtime_ms;     /* closed outages */
    unsigned n_outages;      /* total ever */
    struct ha_outage outages[HA_OUTAGES]; /* the last ones, ring */
};

/* What cgvd must do, in this order. */
enum ha_act_kind {
    HA_ACT_FENCE = 0,   /* destroy inst (fence); reply with ha_fenced() */
    HA_ACT_ROLE,        /* send ROLE_SET role/assignment/gen to inst */
    HA_ACT_RESTART,     /* restart inst (after the fence, if any) */
    HA_ACT_FAIL,        /* inst is given up: leave it stopped, raise an alarm */
    HA_ACT_ALARM,       /* raise an alarm (why) without other action */
};

struct ha_act {
    enum ha_act_kind kind;
    int inst;
    enum ha_role role;  /* HA_ACT_ROLE */
    int assignment;     /* HA_ACT_ROLE */
    uint64_t gen;       /* HA_ACT_ROLE */
    char why[96];
};

#define HA_MAX_ACTS 16
struct ha_plan {
    size_t n;
    struct ha_act acts[HA_MAX_ACTS];
};

/* Set up a service. Every instance starts HA_I_DOWN without a role. */
void ha_svc_init(struct ha_svc *s, enum ha_model model, unsigned n_inst, unsigned standbys,
                 struct ha_limit vm_restarts, struct ha_limit failovers, int64_t now_ms);

/* Instance i runs (started by apply, an operator or a restart): STARTING. */
void ha_started(struct ha_svc *s, int i, int64_t now_ms);

/* Instance i's agent said hello: it is healthy; the plan gives its role. */
void ha_healthy(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *plan);

/* After the model or the instance count changed: give every healthy
 * instance without a role (or with a role its model no longer has) the
 * role it would get on becoming healthy now. */
void ha_rebalance(struct ha_svc *s, int64_t now_ms, struct ha_plan *plan);

/* A fault on instance i. Faults on an instance that is already recovering,
 * failed or stopped are ignored (empty plan). */
void ha_fault(struct ha_svc *s, int i, enum ha_fault f, int64_t now_ms,
              struct ha_plan *plan);

/* The fence of instance i is done (its QEMU no longer runs): promotions that
 * waited for it, then its restart (or failure) follow. */
void ha_fenced(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *plan);

/* Instance i acknowledged generation gen. Returns true if that completed a
 * role change (false for a stale or unknown generation). */
bool ha_acked(struct ha_svc *s, int i, uint64_t gen, int64_t now_ms);

/* A restart of instance i failed (libvirt refused): counts as a fault. */
void ha_restart_failed(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *plan);

/* Planned switchover before an operator action on instance i (stop,
 * pause, reconfigure...): if i is an active with a healthy standby, demote
 * i first (ROLE standby: it drops its virtual IP) and, once it acknowledged
 * (ha_after_ack), promote the standby — the assignment is never held twice.
 * Returns true if a switchover started (wait for ha_drained), false if
 * there is nothing to hand over (i is not active, or no standby is there:
 * the action will cost an outage). */
bool ha_drain(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *plan);
/* After any acknowledgement of instance i: the promotion a drain waits for. */
void ha_after_ack(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *plan);
/* Has the assignment draining instance i gave up an acknowledged active
 * elsewhere now? */
bool ha_drained(const struct ha_svc *s, int i);

/* The operator stopped instance i (or destroyed it): it leaves HA
 * management; its assignment moves to a standby if there is one. */
void ha_operator_stop(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *plan);

/* Is every assignment served by an acknowledged active on a healthy
 * instance (for nway-active: at least one)? */
bool ha_service_up(const struct ha_svc *s);
/* Update the outage book after any change (cgvd calls it after every
 * ha_* call); cause names the first outage's reason. */
void ha_account(struct ha_svc *s, int64_t now_ms, const char *cause);
/* Availability since creation, in [0, 1]. */
double ha_availability(const struct ha_svc *s, int64_t now_ms);
int64_t ha_downtime_ms(const struct ha_svc *s, int64_t now_ms);

/* Actions of a window within the last window_ms before now. */
unsigned ha_recent(const struct ha_window *w, int64_t now_ms, int64_t window_ms);

/* The active holder of assignment a, or -1. */
int ha_holder(const struct ha_svc *s, int a);
/* Number of instances that hold an active role for assignment a (must never
 * exceed 1 outside nway-active; the chaos benchmark checks it). */
unsigned ha_actives_for(const struct ha_svc *s, int a);

const char *ha_model_name(enum ha_model m);
const char *ha_role_name(enum ha_role r);
const char *ha_fault_name(enum ha_fault f);
const char *ha_state_name(enum ha_inst_state st);
const char *ha_act_name(enum ha_act_kind k);

#endif
