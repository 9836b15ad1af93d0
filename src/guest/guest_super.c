/* guest_super.c — process supervision decisions of cgv-guest (pure, see header). */
#include "guest_super.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

void guest_super_init(struct guest_super *s)
{
    memset(s, 0, sizeof(*s));
}

static void copy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);

    memmove(dst, src, n);
    dst[n] = '\0';
}

static void slot_reset_history(struct guest_proc *p)
{
    p->n_hist = 0;
}

static struct guest_proc *find_live(struct guest_super *s, const char *name)
{
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        struct guest_proc *p = &s->procs[i];
        if (p->state != GUEST_PROC_FREE && strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

static const struct proto_proc *find_cfg(const struct proto_config *c, const char *name)
{
    for (unsigned i = 0; i < c->n_procs && i < PROTO_MAX_PROCS; i++) {
        if (strcmp(c->procs[i].name, name) == 0)
            return &c->procs[i];
    }
    return NULL;
}

static void begin_stop(struct guest_proc *p, const char *then)
{
    p->state = GUEST_PROC_STOPPING;
    p->term_sent = false;
    p->kill_sent = false;
    p->kill_at_us = 0;
    copy(p->next_command, sizeof(p->next_command), then);
}

unsigned guest_super_configure(struct guest_super *s, const struct proto_config *c)
{
    unsigned changes = 0;
    uint32_t max = c->app_max_restarts;

    if (max > GUEST_SUPER_MAX_HISTORY)
        max = GUEST_SUPER_MAX_HISTORY;
    if (!s->configured || s->max_restarts != max || s->window_ms != c->app_window_ms) {
        /* A new policy: forget the history, try given-up processes again. */
        s->configured = true;
        s->max_restarts = max;
        s->window_ms = c->app_window_ms;
        for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
            struct guest_proc *p = &s->procs[i];
            slot_reset_history(p);
            if (p->state == GUEST_PROC_GAVE_UP) {
                p->state = GUEST_PROC_PENDING;
                changes++;
            }
        }
    }

    /* Existing slots against the new list. */
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        struct guest_proc *p = &s->procs[i];
        const struct proto_proc *want;

        if (p->state == GUEST_PROC_FREE)
            continue;
        want = find_cfg(c, p->name);
        if (!want) {
            switch (p->state) {
            case GUEST_PROC_RUNNING:
                begin_stop(p, "");
                changes++;
                break;
            case GUEST_PROC_STOPPING:
                if (p->next_command[0]) {
                    p->next_command[0] = '\0';
                    changes++;
                }
                break;
            default: /* PENDING, GAVE_UP: nothing runs */
                memset(p, 0, sizeof(*p));
                changes++;
                break;
            }
            continue;
        }
        switch (p->state) {
        case GUEST_PROC_STOPPING:
            if (strcmp(p->next_command, want->command) != 0) {
                copy(p->next_command, sizeof(p->next_command), want->command);
                changes++;
            }
            break;
        case GUEST_PROC_RUNNING:
            if (strcmp(p->command, want->command) != 0) {
                begin_stop(p, want->command);
                changes++;
            }
            break;
        case GUEST_PROC_PENDING:
        case GUEST_PROC_GAVE_UP:
            if (strcmp(p->command, want->command) != 0) {
                copy(p->command, sizeof(p->command), want->command);
                slot_reset_history(p);
                p->state = GUEST_PROC_PENDING;
                changes++;
            }
            break;
        default:
            break;
        }
    }

    /* New names. */
    for (unsigned k = 0; k < c->n_procs && k < PROTO_MAX_PROCS; k++) {
        const struct proto_proc *want = &c->procs[k];
        struct guest_proc *p;

        if (find_live(s, want->name) || find_cfg(c, want->name) != want)
            continue; /* known, or a duplicate name in the list */
        for (p = s->procs; p < s->procs + GUEST_SUPER_SLOTS; p++) {
            if (p->state == GUEST_PROC_FREE)
                break;
        }
        if (p == s->procs + GUEST_SUPER_SLOTS)
            break; /* cannot happen: at most PROTO_MAX_PROCS old + new */
        memset(p, 0, sizeof(*p));
        copy(p->name, sizeof(p->name), want->name);
        copy(p->command, sizeof(p->command), want->command);
        p->state = GUEST_PROC_PENDING;
        changes++;
    }
    return changes;
}

bool guest_super_next(struct guest_super *s, int64_t now_us, bool may_start,
                      struct guest_super_action *act)
{
    memset(act, 0, sizeof(*act));
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        struct guest_proc *p = &s->procs[i];

        if (p->state != GUEST_PROC_STOPPING)
            continue;
        if (!p->term_sent) {
            p->term_sent = true;
            p->kill_at_us = now_us + GUEST_SUPER_STOP_GRACE_US;
            *act = (struct guest_super_action){GUEST_ACT_TERM, i, p->pid};
            return true;
        }
        if (!p->kill_sent && now_us >= p->kill_at_us) {
            p->kill_sent = true;
            *act = (struct guest_super_action){GUEST_ACT_KILL, i, p->pid};
            return true;
        }
    }
    if (!may_start)
        return false;
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        if (s->procs[i].state == GUEST_PROC_PENDING) {
            *act = (struct guest_super_action){GUEST_ACT_START, i, 0};
            return true;
        }
    }
    return false;
}

static void event(struct proto_app_event *ev, const struct guest_proc *p, uint8_t kind,
                  int32_t status, int32_t pid)
{
    memset(ev, 0, sizeof(*ev));
    copy(ev->name, sizeof(ev->name), p->name);
    ev->kind = kind;
    ev->status = status;
    ev->restarts = p->n_hist;
    ev->pid = pid > 0 ? (uint32_t)pid : 0;
}

void guest_super_started(struct guest_super *s, unsigned slot, int32_t pid,
                         struct proto_app_event *ev)
{
    struct guest_proc *p = &s->procs[slot];

    p->state = GUEST_PROC_RUNNING;
    p->pid = pid;
    event(ev, p, PROTO_APP_STARTED, 0, pid);
}

/* Drop restart times that left the window. */
static void prune(const struct guest_super *s, struct guest_proc *p, int64_t now_us)
{
    uint32_t drop = 0;

    if (s->window_ms == 0)
        return;
    while (drop < p->n_hist && now_us - p->hist[drop] >= (int64_t)s->window_ms * 1000)
        drop++;
    if (drop) {
        memmove(p->hist, p->hist + drop, (p->n_hist - drop) * sizeof(p->hist[0]));
        p->n_hist -= drop;
    }
}

/* A RUNNING (or failed to start) process ended: restart or give up. */
static bool ended(struct guest_super *s, struct guest_proc *p, int32_t status,
                  int32_t pid, int64_t now_us, struct proto_app_event *ev)
{
    prune(s, p, now_us);
    p->pid = 0;
    if (p->n_hist < s->max_restarts) {
        p->hist[p->n_hist++] = now_us;
        p->state = GUEST_PROC_PENDING;
        event(ev, p, PROTO_APP_EXITED, status, pid);
    } else {
        p->state = GUEST_PROC_GAVE_UP;
        event(ev, p, PROTO_APP_GAVE_UP, status, pid);
    }
    return true;
}

bool guest_super_spawn_failed(struct guest_super *s, unsigned slot, int64_t now_us,
                              struct proto_app_event *ev)
{
    return ended(s, &s->procs[slot], 127, 0, now_us, ev);
}

bool guest_super_exited(struct guest_super *s, int32_t pid, int32_t status, int64_t now_us,
                        struct proto_app_event *ev, int *slot_out)
{
    if (slot_out)
        *slot_out = -1;
    if (pid <= 0)
        return false;
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        struct guest_proc *p = &s->procs[i];

        if (p->pid != pid ||
            (p->state != GUEST_PROC_RUNNING && p->state != GUEST_PROC_STOPPING))
            continue;
        if (slot_out)
            *slot_out = (int)i;
        if (p->state == GUEST_PROC_RUNNING)
            return ended(s, p, status, pid, now_us, ev);
        /* Stopped on purpose: start the new command, or free the slot. */
        p->pid = 0;
        if (p->next_command[0]) {
            copy(p->command, sizeof(p->command), p->next_command);
            p->next_command[0] = '\0';
            slot_reset_history(p);
            p->state = GUEST_PROC_PENDING;
        } else {
            memset(p, 0, sizeof(*p));
        }
        return false;
    }
    return false;
}

int64_t guest_super_deadline(const struct guest_super *s)
{
    int64_t t = INT64_MAX;

    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        const struct guest_proc *p = &s->procs[i];
        if (p->state == GUEST_PROC_STOPPING && p->term_sent && !p->kill_sent &&
            p->kill_at_us < t)
            t = p->kill_at_us;
    }
    return t;
}

bool guest_super_has_pending(const struct guest_super *s)
{
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        if (s->procs[i].state == GUEST_PROC_PENDING ||
            (s->procs[i].state == GUEST_PROC_STOPPING && !s->procs[i].term_sent))
            return true;
    }
    return false;
}

int guest_super_split(const char *cmd, char *buf, size_t cap, char **argv, size_t max)
{
    size_t n = strlen(cmd), argc = 0;

    if (n == 0 || n >= cap || cmd[0] != '/' || max < 2)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = cmd[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("/._,:+@%=- ", c)))
            return 0;
    }
    memcpy(buf, cmd, n + 1);
    for (char *p = buf; *p;) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        if (argc + 1 >= max)
            return 0;
        argv[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
    argv[argc] = NULL;
    return (int)argc;
}

int32_t guest_status_code(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return -WTERMSIG(wstatus);
    return 0;
}

int guest_stat_parse(const char *stat, size_t len, char *state, uint64_t *starttime)
{
    size_t i, close = len;
    unsigned field = 2; /* the command name ends field 2 */
    uint64_t v = 0;

    for (i = len; i > 0; i--) {
        if (stat[i - 1] == ')') {
            close = i - 1;
            break;
        }
    }
    if (close == len)
        return -1;
    if (len - close < 4 || stat[close + 1] != ' ' || stat[close + 3] != ' ')
        return -1;
    *state = stat[close + 2];
    i = close + 1;
    /* fields are separated by single spaces from here on */
    while (i < len && field < 22) {
        if (stat[i] == ' ')
            field++;
        i++;
    }
    if (field != 22 || i >= len || stat[i] < '0' || stat[i] > '9')
        return -1;
    for (; i < len && stat[i] >= '0' && stat[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(stat[i] - '0');
    }
    if (i < len && stat[i] != ' ' && stat[i] != '\n')
        return -1;
    *starttime = v;
    return 0;
}
