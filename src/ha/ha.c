/* ha.c — the availability policy (see ha.h): roles, escalation, fencing
 * order, outage accounting. Pure: the caller passes the time. */
#include "ha.h"

#include <stdio.h>
#include <string.h>

/* ---- limit windows --------------------------------------------------------- */

static unsigned win_count(const struct ha_window *w, int64_t now, int64_t window_ms)
{
    unsigned c = 0;

    for (unsigned k = 0; k < w->n; k++) {
        if (w->t[k] > now - window_ms)
            c++;
    }
    return c;
}

unsigned ha_recent(const struct ha_window *w, int64_t now_ms, int64_t window_ms)
{
    return win_count(w, now_ms, window_ms);
}

static void win_add(struct ha_window *w, int64_t now)
{
    w->t[w->next] = now;
    w->next = (w->next + 1) % HA_HIST;
    w->total++;
    if (w->n < HA_HIST)
        w->n++;
}

/* May one more action happen now, within the limit? */
static bool win_allows(const struct ha_window *w, const struct ha_limit *lim, int64_t now)
{
    return lim->max > 0 && win_count(w, now, lim->window_ms) < lim->max;
}

/* ---- plans ------------------------------------------------------------------ */

static struct ha_act *plan_add(struct ha_plan *p, enum ha_act_kind kind, int inst)
{
    struct ha_act *a;

    if (p->n >= HA_MAX_ACTS)
        return NULL; /* cannot happen with HA_MAX_ACTS >= 4 + assignments moved */
    a = &p->acts[p->n++];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->inst = inst;
    a->assignment = -1;
    return a;
}

static void send_role(struct ha_svc *s, struct ha_plan *p, int i, enum ha_role role,
                      int assignment)
{
    struct ha_inst *in = &s->inst[i];
    struct ha_act *a;

    in->role = role;
    in->assignment = assignment;
    in->role_gen = ++s->generation;
    in->role_acked = false;
    a = plan_add(p, HA_ACT_ROLE, i);
    if (a) {
        a->role = role;
        a->assignment = assignment;
        a->gen = in->role_gen;
    }
}

static void plan_why(struct ha_plan *p, const char *why)
{
    if (p->n)
        snprintf(p->acts[p->n - 1].why, sizeof(p->acts[0].why), "%s", why);
}

/* ---- roles ------------------------------------------------------------------- */

unsigned ha_actives_for(const struct ha_svc *s, int a)
{
    unsigned c = 0;

    for (unsigned i = 0; i < s->n_inst; i++) {
        const struct ha_inst *in = &s->inst[i];
        if (in->role == HA_ROLE_ACTIVE && in->assignment == a && !in->dead)
            c++;
    }
    return c;
}

int ha_holder(const struct ha_svc *s, int a)
{
    for (unsigned i = 0; i < s->n_inst; i++) {
        const struct ha_inst *in = &s->inst[i];
        if (in->role == HA_ROLE_ACTIVE && in->assignment == a && !in->dead)
            return (int)i;
    }
    return -1;
}

static bool has_standbys(const struct ha_svc *s)
{
    return s->model == HA_2N || s->model == HA_NPM;
}

/* Give every assignment without a holder to a healthy standby. */
static void fill_assignments(struct ha_svc *s, struct ha_plan *p)
{
    /* failovers.max 0: never fail over; an assignment waits for its own
     * instance to come back (ha_healthy gives it the unheld assignment). */
    bool draining = false;

    for (unsigned i = 0; i < s->n_inst; i++)
        draining = draining || s->inst[i].draining;
    /* A planned switchover moves the assignment even then. */
    if (!has_standbys(s) || (s->failovers.max == 0 && !draining))
        return;
    for (unsigned a = 0; a < s->n_assign; a++) {
        if (ha_actives_for(s, (int)a) > 0)
            continue;
        for (unsigned i = 0; i < s->n_inst; i++) {
            struct ha_inst *in = &s->inst[i];
            if (in->state == HA_I_HEALTHY && in->role == HA_ROLE_STANDBY && !in->dead &&
                !in->draining) {
                send_role(s, p, (int)i, HA_ROLE_ACTIVE, (int)a);
                plan_why(p, "standby takes over the assignment");
                break;
            }
        }
    }
}

/* ---- life cycle ---------------------------------------------------------------- */

void ha_svc_init(struct ha_svc *s, enum ha_model model, unsigned n_inst, unsigned standbys,
                 struct ha_limit vm_restarts, struct ha_limit failovers, int64_t now_ms)
{
    memset(s, 0, sizeof(*s));
    if (n_inst > HA_MAX_INST)
        n_inst = HA_MAX_INST;
    s->model = model;
    s->n_inst = n_inst;
    switch (model) {
    case HA_NONE: s->n_assign = n_inst; break;
    case HA_2N: s->n_assign = 1; break;
    case HA_NPM: s->n_assign = standbys < n_inst ? n_inst - standbys : 1; break;
    case HA_NWAY: s->n_assign = 1; break;
    }
    s->vm_restarts = vm_restarts;
    s->failovers = failovers;
    s->created_ms = now_ms;
    for (unsigned i = 0; i < n_inst; i++) {
        s->inst[i].assignment = -1;
        s->inst[i].drain_from = -1;
        s->inst[i].dead = true;
    }
}

void ha_started(struct ha_svc *s, int i, int64_t now_ms)
{
    struct ha_inst *in = &s->inst[i];

    (void)now_ms;
    in->state = HA_I_STARTING;
    in->dead = false;
    in->draining = false;
    in->drain_from = -1;
    /* A (re)started guest holds no role until it is told one. */
    in->role = HA_ROLE_NONE;
    in->assignment = -1;
    in->role_acked = false;
}

void ha_rebalance(struct ha_svc *s, int64_t now_ms, struct ha_plan *p)
{
    struct ha_plan one;

    p->n = 0;
    for (unsigned i = 0; i < s->n_inst; i++) {
        struct ha_inst *in = &s->inst[i];
        bool no_standbys = s->model == HA_NONE || s->model == HA_NWAY;
        if (in->state != HA_I_HEALTHY || in->dead)
            continue;
        if (in->role != HA_ROLE_NONE && !(in->role == HA_ROLE_STANDBY && no_standbys))
            continue;
        /* As if it had just become healthy: the role its model gives it. */
        in->state = HA_I_STARTING;
        ha_healthy(s, (int)i, now_ms, &one);
        for (size_t k = 0; k < one.n && p->n < HA_MAX_ACTS; k++)
            p->acts[p->n++] = one.acts[k];
    }
}

void ha_healthy(struct ha_svc *s, int i, int64_t now_ms, struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];

    (void)now_ms;
    p->n = 0;
    if (in->state != HA_I_STARTING && in->state != HA_I_DOWN)
        return; /* already healthy, or being fenced / failed / stopped */
    in->state = HA_I_HEALTHY;
    in->dead = false;
    switch (s->model) {
    case HA_NONE:
        send_role(s, p, i, HA_ROLE_ACTIVE, i);
        return;
    case HA_NWAY:
        send_role(s, p, i, HA_ROLE_ACTIVE, 0);
        return;
    case HA_2N:
    case HA_NPM:
        for (unsigned a = 0; a < s->n_assign; a++) {
            if (ha_actives_for(s, (int)a) == 0) {
                send_role(s, p, i, HA_ROLE_ACTIVE, (int)a);
                return;
            }
        }
        send_role(s, p, i, HA_ROLE_STANDBY, -1);
        return;
    }
}

/* A confirmed-dead (or fenced) instance: drop its role, hand its assignment
 * on, then restart or give up. */
static void after_gone(struct ha_svc *s, int i, int64_t now, bool give_up, const char *why,
                       struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];
    struct ha_act *a;

    in->dead = true;
    in->role = HA_ROLE_NONE;
    in->assignment = -1;
    in->role_acked = false;
    fill_assignments(s, p);
    if (give_up || !win_allows(&in->restarts, &s->vm_restarts, now)) {
        in->state = HA_I_FAILED;
        a = plan_add(p, HA_ACT_FAIL, i);
        if (a)
            snprintf(a->why, sizeof(a->why), "%s",
                     give_up ? why : "VM restart limit reached");
        return;
    }
    win_add(&in->restarts, now);
    in->state = HA_I_DOWN; /* until cgvd reports it started (ha_started) */
    plan_add(p, HA_ACT_RESTART, i);
}

/* Faults after which the old QEMU cannot act any more. */
static bool fault_is_final(enum ha_fault f)
{
    return f == HA_F_DEATH || f == HA_F_PANIC || f == HA_F_STOPPED;
}

void ha_fault(struct ha_svc *s, int i, enum ha_fault f, int64_t now, struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];
    bool was_active = in->role == HA_ROLE_ACTIVE && !in->dead;
    bool flapping = false;
    struct ha_act *a;

    p->n = 0;
    if (in->state != HA_I_HEALTHY && in->state != HA_I_STARTING)
        return;
    if (was_active && has_standbys(s)) {
        /* A fail-over away from i: too many of them means i flaps. */
        flapping = s->failovers.max > 0 &&
                   win_count(&in->failovers, now, s->failovers.window_ms) >= s->failovers.max;
        win_add(&in->failovers, now);
    }
    if (fault_is_final(f)) {
        /* Nothing of the old instance runs: promote now, fence (clean up
         * libvirt's side) in parallel. */
        in->state = HA_I_FENCING;
        in->dead = true;
        in->role = HA_ROLE_NONE;
        in->assignment = -1;
        fill_assignments(s, p);
        a = plan_add(p, HA_ACT_FENCE, i);
    } else {
        /* It may still run and hold its address: fence first, promote in
         * ha_fenced(). */
        in->state = HA_I_FENCING;
        a = plan_add(p, HA_ACT_FENCE, i);
    }
    if (a)
        snprintf(a->why, sizeof(a->why), "%s", ha_fault_name(f));
    if (flapping) {
        /* The standby still takes over; ha_fenced() gives i up. */
        a = plan_add(p, HA_ACT_ALARM, i);
        if (a)
            snprintf(a->why, sizeof(a->why),
                     "fail-over limit reached: the instance flaps");
    }
}

void ha_fenced(struct ha_svc *s, int i, int64_t now, struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];
    bool flapping;

    p->n = 0;
    if (in->state != HA_I_FENCING)
        return;
    /* Flapping: the last fail-over went beyond the limit. */
    flapping = has_standbys(s) && s->failovers.max > 0 &&
               win_count(&in->failovers, now, s->failovers.window_ms) > s->failovers.max;
    after_gone(s, i, now, flapping, "fail-over limit reached: the instance flaps", p);
}

bool ha_acked(struct ha_svc *s, int i, uint64_t gen, int64_t now_ms)
{
    struct ha_inst *in = &s->inst[i];

    (void)now_ms;
    if (gen != in->role_gen || in->role_acked)
        return false;
    in->role_acked = true;
    return true;
}

void ha_restart_failed(struct ha_svc *s, int i, int64_t now, struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];

    p->n = 0;
    if (in->state != HA_I_DOWN && in->state != HA_I_STARTING)
        return;
    after_gone(s, i, now, false, NULL, p);
}

bool ha_drain(struct ha_svc *s, int i, int64_t now, struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];
    bool standby = false;

    (void)now;
    p->n = 0;
    if (!has_standbys(s) || in->state != HA_I_HEALTHY || in->role != HA_ROLE_ACTIVE ||
        in->dead)
        return false;
    for (unsigned k = 0; k < s->n_inst; k++) {
        const struct ha_inst *o = &s->inst[k];
        standby = standby || ((int)k != i && o->state == HA_I_HEALTHY &&
                              o->role == HA_ROLE_STANDBY && !o->dead && !o->draining);
    }
    if (!standby)
        return false;
    in->draining = true;
    in->drain_from = in->assignment;
    send_role(s, p, i, HA_ROLE_STANDBY, -1);
    plan_why(p, "planned switchover: hand the assignment over");
    return true;
}

void ha_after_ack(struct ha_svc *s, int i, int64_t now, struct ha_plan *p)
{
    const struct ha_inst *in = &s->inst[i];

    (void)now;
    p->n = 0;
    if (in->draining && in->role == HA_ROLE_STANDBY && in->role_acked)
        fill_assignments(s, p);
}

bool ha_drained(const struct ha_svc *s, int i)
{
    const struct ha_inst *in = &s->inst[i];
    int h;

    if (!in->draining || in->drain_from < 0)
        return true;
    h = ha_holder(s, in->drain_from);
    return h >= 0 && h != i && s->inst[h].role_acked;
}

void ha_operator_stop(struct ha_svc *s, int i, int64_t now, struct ha_plan *p)
{
    struct ha_inst *in = &s->inst[i];

    (void)now;
    p->n = 0;
    in->state = HA_I_STOPPED;
    in->dead = true;
    in->draining = false;
    in->drain_from = -1;
    in->role = HA_ROLE_NONE;
    in->assignment = -1;
    in->role_acked = false;
    fill_assignments(s, p);
}

/* ---- availability ------------------------------------------------------------- */

static bool inst_serves(const struct ha_inst *in)
{
    return in->state == HA_I_HEALTHY && in->role == HA_ROLE_ACTIVE && in->role_acked &&
           !in->dead;
}

bool ha_service_up(const struct ha_svc *s)
{
    unsigned stopped = 0, serving = 0;

    for (unsigned i = 0; i < s->n_inst; i++) {
        stopped += s->inst[i].state == HA_I_STOPPED;
        serving += inst_serves(&s->inst[i]);
    }
    if (s->n_inst == 0 || stopped == s->n_inst)
        return true; /* administratively down is not an outage */
    switch (s->model) {
    case HA_NWAY:
        return serving > 0;
    case HA_NONE:
        for (unsigned i = 0; i < s->n_inst; i++) {
            if (s->inst[i].state != HA_I_STOPPED && !inst_serves(&s->inst[i]))
                return false;
        }
        return true;
    case HA_2N:
    case HA_NPM:
        for (unsigned a = 0; a < s->n_assign; a++) {
            int h = ha_holder(s, (int)a);
            if (h < 0 || !inst_serves(&s->inst[h]))
                return false;
        }
        return true;
    }
    return false;
}

void ha_account(struct ha_svc *s, int64_t now, const char *cause)
{
    bool up = ha_service_up(s);
    struct ha_outage *o;

    if (!s->ever_up) {
        /* Bringing the service up the first time is not an outage. */
        s->ever_up = up;
        return;
    }
    if (!s->down && !up) {
        s->down = true;
        o = &s->outages[s->n_outages % HA_OUTAGES];
        memset(o, 0, sizeof(*o));
        o->start_ms = now;
        snprintf(o->cause, sizeof(o->cause), "%s", cause ? cause : "unknown");
        s->n_outages++;
    } else if (s->down && up) {
        o = &s->outages[(s->n_outages - 1) % HA_OUTAGES];
        o->end_ms = now;
        s->downtime_ms += now - o->start_ms;
        s->down = false;
    }
}

int64_t ha_downtime_ms(const struct ha_svc *s, int64_t now)
{
    int64_t d = s->downtime_ms;

    if (s->down && s->n_outages > 0)
        d += now - s->outages[(s->n_outages - 1) % HA_OUTAGES].start_ms;
    return d;
}

double ha_availability(const struct ha_svc *s, int64_t now)
{
    int64_t life = now - s->created_ms;

    if (life <= 0)
        return 1.0;
    return 1.0 - (double)ha_downtime_ms(s, now) / (double)life;
}

/* ---- names --------------------------------------------------------------------- */

const char *ha_model_name(enum ha_model m)
{
    static const char *const n[] = {"none", "2n", "n+m", "nway-active"};
    return (unsigned)m < 4 ? n[m] : "?";
}

const char *ha_role_name(enum ha_role r)
{
    static const char *const n[] = {"none", "active", "standby"};
    return (unsigned)r < 3 ? n[r] : "?";
}

const char *ha_fault_name(enum ha_fault f)
{
    static const char *const n[] = {"process-death", "panic", "hang", "watchdog",
                                    "application", "stopped"};
    return (unsigned)f < HA_F_COUNT ? n[f] : "?";
}

const char *ha_state_name(enum ha_inst_state st)
{
    static const char *const n[] = {"down", "starting", "healthy", "fencing", "failed",
                                    "stopped"};
    return (unsigned)st < 6 ? n[st] : "?";
}

const char *ha_act_name(enum ha_act_kind k)
{
    static const char *const n[] = {"fence", "role", "restart", "fail", "alarm"};
    return (unsigned)k < 5 ? n[k] : "?";
}
