/* guest_ha.h — cgv-guest's high-availability side, the I/O half: the virtual
 * watchdog, the supervised processes, the role (virtual IPs, gratuitous ARP,
 * the local role socket and hook) and the state a restarted agent picks up.
 * The decisions are in guest_super.c and guest_role.c (pure, unit-tested);
 * this file forks, signals, reaps and talks rtnetlink.
 *
 * Driven by cgv_guest.c's single ppoll() loop: nothing here blocks for long
 * (netlink requests are answered inside the sendmsg(); the role hook and the
 * supervised processes are children reaped on SIGCHLD).
 *
 * Watchdog: CONFIG watchdog_s > 0 opens the device and sets its timeout
 * (WDIOC_SETTIMEOUT); it is petted on every heartbeat tick, and at least
 * every timeout/2 when heartbeats are slower. 0 disarms it (magic 'V', close).
 * guest_ha_toggle_pet() (SIGUSR2) stops the petting without disarming — the
 * watchdog then fires, libvirt's event about watchdog_s after the last pet —
 * and a second call resumes it, re-arming the device (QEMU's i6300esb turns
 * itself off once it has fired).
 *
 * Processes: `/bin/sh -c COMMAND` (a plain command is exec'd directly, see
 * guest_super_split) in a session of its own (setsid, so the whole group is
 * signalled), stdin /dev/null, stdout and stderr a pipe to the agent, which
 * copies each line to the console as "[name] line" without ever blocking: a
 * console nobody drains must not stop the processes (nor the agent). When the process the agent started exits, whatever is left
 * of its group is SIGKILLed before the restart.
 *
 * Role: ROLE_SET → (rtnetlink) delete the VIPs no longer wanted, add the new
 * ones to vip_dev with the label "<dev>:cgv", send a gratuitous ARP for each
 * (and again 5 and 20 ms later, from the loop), tell the clients of role_sock, run
 * role_hook (if it is an executable file) as `role-hook ROLE ASSIGNMENT
 * GENERATION` with CGV_VIPS in its environment and a GUEST_HA_HOOK_TIMEOUT_US
 * limit, then ROLE_ACK. The ack is FAILED, with a short detail, if an address
 * could not be added or removed, or the hook failed or timed out; what was
 * configured stays configured (the host decides what to do next: a STANDBY
 * removes the VIPs; the same ROLE_SET again retries).
 *
 * Restart of the agent (busybox init respawns it): state_dir holds the last
 * CONFIG (as its frame), the role (guest_role_state_format) and the pids of
 * the supervised processes. A new agent kills the processes of the old one
 * (SIGTERM, SIGKILL after 2 s), re-applies the CONFIG — watchdog re-armed,
 * processes started anew — and carries on with the role, generation and VIPs
 * it finds. */
#ifndef GUEST_HA_H
#define GUEST_HA_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent_proto.h"
#include "guest_agent.h"
#include "guest_role.h"
#include "guest_super.h"

#define GUEST_HA_STATE_DIR "/run/cgv"
#define GUEST_HA_ROLE_SOCK "/run/cgv/role.sock"
#define GUEST_HA_ROLE_HOOK "/etc/cgv/role-hook"
#define GUEST_HA_WATCHDOG "/dev/watchdog"
#define GUEST_HA_VIP_DEV "eth0"

#define GUEST_HA_MAX_CLIENTS 16
#define GUEST_HA_MAX_ORPHANS 16
#define GUEST_HA_MAX_OUTPUTS 24 /* pipes from children still open */
/* What guest_ha_pollfds() may ask for at most. */
#define GUEST_HA_MAX_POLLFDS (1 + GUEST_HA_MAX_CLIENTS + GUEST_HA_MAX_OUTPUTS)
#define GUEST_HA_HOOK_TIMEOUT_US (2 * 1000000LL)
#define GUEST_HA_GARP_ROUNDS 3 /* at 0, 5 and 20 ms */

struct guest_ha_paths {
    const char *state_dir, *role_sock, *role_hook, *watchdog, *vip_dev;
};

/* The stdout/stderr pipe of a child: its lines go to the console log as
 * "[name] text", written without ever blocking (see guest_log.h). */
struct guest_ha_output {
    int fd;
    char name[PROTO_MAX_STR + 1];
    size_t len;
    char buf[256]; /* a partial line */
};

struct guest_ha_orphan {
    int32_t pid;
    uint64_t starttime;
    int64_t kill_at_us;
    bool killed;
};

struct guest_ha {
    struct guest_ha_paths paths;
    struct guest_agent *agent; /* messages for the host are queued here */
    bool connected;            /* kept up to date by the caller: queue only then */

    /* CONFIG and supervision */
    bool have_config;
    struct proto_config config;
    struct guest_super sup;
    struct guest_ha_orphan orphans[GUEST_HA_MAX_ORPHANS];
    unsigned n_orphans;
    int64_t orphan_check_us;
    int64_t reaped_us[GUEST_SUPER_SLOTS]; /* when a slot's process was reaped */
    bool procs_dirty, config_dirty;

    /* watchdog */
    int wd_fd;
    uint32_t wd_timeout_s;
    int64_t wd_last_pet_us;
    bool wd_paused;

    /* role */
    struct guest_role role;
    bool role_dirty;
    int nl_fd, pkt_fd;
    uint32_t nl_seq;
    char role_detail[PROTO_MAX_STR + 1]; /* of the latest application */
    int32_t hook_pid;
    bool hook_timed_out;
    int64_t hook_deadline_us, role_t0_us, role_addr_us, hook_start_us;
    unsigned garp_round;
    int64_t garp_t0_us;
    int listen_fd;
    int clients[GUEST_HA_MAX_CLIENTS];
    unsigned n_clients;

    struct guest_ha_output outputs[GUEST_HA_MAX_OUTPUTS];
    unsigned n_outputs;
};

/* paths NULL = the defaults above. Opens nothing yet. */
void guest_ha_init(struct guest_ha *h, const struct guest_ha_paths *paths,
                   struct guest_agent *agent);
/* Pick up what an earlier agent left in state_dir and open the role socket. */
void guest_ha_restore(struct guest_ha *h, int64_t now_us);

void guest_ha_config(struct guest_ha *h, const struct proto_config *c, int64_t now_us);
void guest_ha_role_set(struct guest_ha *h, const struct proto_role_set *rs, int64_t now_us);

/* A heartbeat tick: pet the watchdog. */
void guest_ha_heartbeat(struct guest_ha *h, int64_t now_us);
/* SIGCHLD: reap every child that ended (restarts are left to
 * guest_ha_work, so that the caller can send the EXITED events first). */
void guest_ha_reap(struct guest_ha *h, int64_t now_us);
/* Timers and pending work: starts, stops, hook timeout, ARP rounds, orphans. */
void guest_ha_work(struct guest_ha *h, int64_t now_us);
/* Write what changed to state_dir (call after the output was flushed). */
void guest_ha_persist(struct guest_ha *h);
/* Earliest time guest_ha_work has something to do, INT64_MAX if none. */
int64_t guest_ha_deadline(const struct guest_ha *h);

/* The role socket's and the children's output fds for ppoll, and their
 * results. */
unsigned guest_ha_pollfds(const struct guest_ha *h, struct pollfd *p, unsigned cap);
void guest_ha_polled(struct guest_ha *h, const struct pollfd *p, unsigned n);

/* Test hook (SIGUSR2): stop / resume petting the watchdog. */
void guest_ha_toggle_pet(struct guest_ha *h);
/* The agent is told to end (SIGTERM): disarm the watchdog, SIGTERM the
 * supervised process groups. */
void guest_ha_shutdown(struct guest_ha *h);

#endif
