/* guest_super.h — supervision of the processes cgvd lists in CONFIG, without
 * any I/O (cgv-guest's guest_ha.c forks, signals and reaps; this decides).
 *
 * Each process is a slot: PENDING (to be started), RUNNING, STOPPING (taken
 * out of the list or its command changed: SIGTERM sent, SIGKILL once
 * GUEST_SUPER_STOP_GRACE_US have passed) or GAVE_UP.
 *
 * Restart policy: a RUNNING process that exits is restarted at once if fewer
 * than max_restarts restarts happened within the last window_ms (a sliding
 * window; window_ms 0 = the agent's whole life); otherwise it is given up on:
 * no more restarts until a CONFIG changes its command or the restart policy,
 * or the agent restarts.
 *
 * Events for the host (proto_app_event):
 *  - STARTED  pid, restarts = restarts in the window (0 for a first start);
 *  - EXITED   status (exit code, or -signal), restarts = restarts in the
 *             window including the one this exit triggers, pid = the old pid;
 *  - GAVE_UP  instead of EXITED when the limit is reached (same fields).
 * A process stopped because CONFIG removed or changed it gives no event.
 *
 * CONFIG is idempotent: an identical one changes nothing (a given-up process
 * stays given up). A new policy (max or window) clears every restart history
 * and starts given-up processes again. Times: CLOCK_MONOTONIC microseconds. */
#ifndef GUEST_SUPER_H
#define GUEST_SUPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

/* Old (stopping) and new entries can coexist. */
#define GUEST_SUPER_SLOTS (2 * PROTO_MAX_PROCS)
#define GUEST_SUPER_STOP_GRACE_US (2 * 1000000LL)
/* Restart times remembered per process; a larger max_restarts is cut to it. */
#define GUEST_SUPER_MAX_HISTORY 128

enum guest_proc_state {
    GUEST_PROC_FREE = 0,
    GUEST_PROC_PENDING,
    GUEST_PROC_RUNNING,
    GUEST_PROC_STOPPING,
    GUEST_PROC_GAVE_UP,
};

struct guest_proc {
    enum guest_proc_state state;
    char name[PROTO_MAX_STR + 1];
    char command[PROTO_MAX_LSTR + 1];
    /* STOPPING: the command to start once it is gone ("" = drop the slot). */
    char next_command[PROTO_MAX_LSTR + 1];
    bool term_sent, kill_sent;
    int64_t kill_at_us;
    int32_t pid;        /* RUNNING, STOPPING */
    uint32_t n_hist;
    int64_t hist[GUEST_SUPER_MAX_HISTORY]; /* restart times, oldest first */
};

struct guest_super {
    bool configured; /* a CONFIG was applied */
    uint32_t max_restarts, window_ms;
    struct guest_proc procs[GUEST_SUPER_SLOTS];
};

enum guest_super_act {
    GUEST_ACT_NONE = 0,
    GUEST_ACT_START, /* start procs[slot].command; then _started or _spawn_failed */
    GUEST_ACT_TERM,  /* SIGTERM the process group of pid */
    GUEST_ACT_KILL,  /* SIGKILL the process group of pid */
};

struct guest_super_action {
    enum guest_super_act act;
    unsigned slot;
    int32_t pid;
};

void guest_super_init(struct guest_super *s);

/* Adopt a CONFIG's process list and restart policy. Returns how many slots
 * changed (0: identical, nothing to do). */
unsigned guest_super_configure(struct guest_super *s, const struct proto_config *c);

/* The next thing to do at now_us (TERM and KILL are marked done when handed
 * out; START stays pending until _started/_spawn_failed is called). START is
 * only handed out when may_start. Returns false when there is nothing. */
bool guest_super_next(struct guest_super *s, int64_t now_us, bool may_start,
                      struct guest_super_action *act);

/* The START of slot succeeded: fills the STARTED event. */
void guest_super_started(struct guest_super *s, unsigned slot, int32_t pid,
                         struct proto_app_event *ev);
/* The START of slot failed before the command ran: handled as an exit with
 * status 127. Returns like guest_super_exited. */
bool guest_super_spawn_failed(struct guest_super *s, unsigned slot, int64_t now_us,
                              struct proto_app_event *ev);
/* A child was reaped (status: guest_status_code). Returns true and fills ev
 * when the host must be told; *slot_out (may be NULL) gets the slot or -1 if
 * the pid is not a supervised process. */
bool guest_super_exited(struct guest_super *s, int32_t pid, int32_t status, int64_t now_us,
                        struct proto_app_event *ev, int *slot_out);

/* Earliest SIGKILL deadline of a STOPPING process, INT64_MAX if none. */
int64_t guest_super_deadline(const struct guest_super *s);
/* Is any slot PENDING (something to start)? */
bool guest_super_has_pending(const struct guest_super *s);

/* A command the shell would only split on spaces — an absolute path, then
 * words of [A-Za-z0-9/._,:+@%=-] separated by spaces — is started directly
 * (what `sh -c` ends up doing for it, minus the shell's own exec: about a
 * millisecond and a half under TCG); anything else runs with /bin/sh -c.
 * Splits cmd into buf[cap] and argv[max] (NULL-terminated). Returns argc, or
 * 0 if the command needs the shell or does not fit. */
int guest_super_split(const char *cmd, char *buf, size_t cap, char **argv, size_t max);

/* A waitpid() status as the protocol wants it: exit code, or -signal. */
int32_t guest_status_code(int wstatus);

/* From a /proc/PID/stat text: field 3 (state: 'R', 'S', 'Z', ...) and field
 * 22 (starttime, clock ticks since boot, which identifies a process across
 * pid reuse). The command name (field 2) may hold spaces and parentheses.
 * Returns 0, or -1 if malformed. */
int guest_stat_parse(const char *stat, size_t len, char *state, uint64_t *starttime);

#endif
