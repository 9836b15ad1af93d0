/* guest_ha.c — watchdog, process supervision and role switching of cgv-guest
 * (the I/O half; see guest_ha.h). */
#include "guest_ha.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/watchdog.h>

#include "guest_log.h"
#include "guest_net.h"

extern char **environ;

static const int64_t garp_at_us[GUEST_HA_GARP_ROUNDS] = {0, 5000, 20000};

#define ORPHAN_POLL_US 10000
#define STATE_CONFIG "config"
#define STATE_ROLE "role"
#define STATE_PROCS "procs"

static double ms(int64_t us)
{
    return (double)us / 1000.0;
}

void guest_ha_init(struct guest_ha *h, const struct guest_ha_paths *paths,
                   struct guest_agent *agent)
{
    memset(h, 0, sizeof(*h));
    h->paths = (struct guest_ha_paths){GUEST_HA_STATE_DIR, GUEST_HA_ROLE_SOCK,
                                       GUEST_HA_ROLE_HOOK, GUEST_HA_WATCHDOG,
                                       GUEST_HA_VIP_DEV};
    if (paths) {
        if (paths->state_dir)
            h->paths.state_dir = paths->state_dir;
        if (paths->role_sock)
            h->paths.role_sock = paths->role_sock;
        if (paths->role_hook)
            h->paths.role_hook = paths->role_hook;
        if (paths->watchdog)
            h->paths.watchdog = paths->watchdog;
        if (paths->vip_dev)
            h->paths.vip_dev = paths->vip_dev;
    }
    h->agent = agent;
    h->wd_fd = h->nl_fd = h->pkt_fd = h->listen_fd = -1;
    guest_super_init(&h->sup);
    guest_role_init(&h->role);
}

/* ---- state files ------------------------------------------------------ */

static void state_path(const struct guest_ha *h, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", h->paths.state_dir, name);
}

/* Replace a state file atomically (write a temporary, rename). */
static void state_write(const struct guest_ha *h, const char *name, const void *data,
                        size_t len)
{
    char path[256], tmp[272];
    int fd;

    state_path(h, name, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
        guest_log("cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    if (rename(tmp, path) < 0)
        guest_log("cannot rename %s: %s", tmp, strerror(errno));
}

/* Read a whole small file; returns its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    ssize_t n, len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while ((size_t)len < cap && (n = read(fd, buf + len, cap - (size_t)len)) > 0)
        len += n;
    close(fd);
    return len;
}

static ssize_t state_read(const struct guest_ha *h, const char *name, char *buf, size_t cap)
{
    char path[256];

    state_path(h, name, path, sizeof(path));
    return read_small(path, buf, cap);
}

/* State and start time of a live process; -1 if there is none. */
static int proc_stat(int32_t pid, char *state, uint64_t *starttime)
{
    char path[64], buf[1024];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    n = read_small(path, buf, sizeof(buf));
    if (n <= 0)
        return -1;
    return guest_stat_parse(buf, (size_t)n, state, starttime);
}

/* ---- messages to the host --------------------------------------------- */

static const char *app_kind_name(uint8_t kind)
{
    switch (kind) {
    case PROTO_APP_STARTED: return "started";
    case PROTO_APP_EXITED: return "exited";
    default: return "gave-up";
    }
}

static void send_app_event(struct guest_ha *h, const struct proto_app_event *ev)
{
    if (!h->connected)
        return; /* nothing is queued while the host is away */
    if (guest_agent_queue_app_event(h->agent, ev) < 0)
        guest_log("APP_EVENT %s %s dropped (output full)", ev->name,
                  app_kind_name(ev->kind));
}

static void send_role_ack(struct guest_ha *h, uint64_t generation, uint8_t role,
                          uint8_t result, const char *detail)
{
    if (!h->connected)
        return;
    if (guest_agent_queue_role_ack(h->agent, generation, role, result, detail) < 0)
        guest_log("ROLE_ACK %" PRIu64 " dropped (output full)", generation);
}

/* ---- watchdog ------------------------------------------------------------ */

static void wd_pet(struct guest_ha *h, int64_t now_us)
{
    if (h->wd_fd < 0 || h->wd_paused)
        return;
    if (ioctl(h->wd_fd, WDIOC_KEEPALIVE, 0) < 0)
        guest_log("watchdog keepalive: %s", strerror(errno));
    h->wd_last_pet_us = now_us;
}

static void wd_disarm(struct guest_ha *h)
{
    if (h->wd_fd < 0)
        return;
    /* The magic close: without the 'V' the kernel keeps it running. */
    if (write(h->wd_fd, "V", 1) != 1)
        guest_log("watchdog magic close: %s", strerror(errno));
    close(h->wd_fd);
    h->wd_fd = -1;
    h->wd_timeout_s = 0;
    guest_log("watchdog disarmed");
}

static void wd_apply(struct guest_ha *h, uint32_t timeout_s, int64_t now_us)
{
    int t = (int)timeout_s;

    if (timeout_s == 0) {
        wd_disarm(h);
        return;
    }
    if (h->wd_fd >= 0 && h->wd_timeout_s == timeout_s)
        return;
    if (h->wd_fd < 0) {
        h->wd_fd = open(h->paths.watchdog, O_WRONLY | O_CLOEXEC);
        if (h->wd_fd < 0) {
            guest_log("cannot open %s: %s (no watchdog)", h->paths.watchdog,
                      strerror(errno));
            return;
        }
    }
    if (ioctl(h->wd_fd, WDIOC_SETTIMEOUT, &t) < 0)
        guest_log("watchdog: cannot set a %u s timeout: %s", timeout_s, strerror(errno));
    h->wd_timeout_s = timeout_s;
    wd_pet(h, now_us);
    guest_log("watchdog armed: %d s%s", t, h->wd_paused ? " (petting paused)" : "");
}

void guest_ha_toggle_pet(struct guest_ha *h)
{
    uint32_t t = h->wd_timeout_s;

    h->wd_paused = !h->wd_paused;
    guest_log("test hook: watchdog petting %s", h->wd_paused ? "stopped" : "resumed");
    if (h->wd_paused || h->wd_fd < 0)
        return;
    /* QEMU's i6300esb disables itself once it has fired (with libvirt's
     * action 'none' the guest lives on), and pets do not enable it again:
     * re-arm it (magic close, open). */
    wd_disarm(h);
    wd_apply(h, t, guest_mono_us());
}

void guest_ha_heartbeat(struct guest_ha *h, int64_t now_us)
{
    wd_pet(h, now_us);
}

/* ---- processes ------------------------------------------------------------ */

/* A pipe for a child's output, read end kept in h->outputs. Returns the
 * write end for the child, or -1 (then the child writes to the console). */
static int output_open(struct guest_ha *h, const char *name)
{
    struct guest_ha_output *o;
    int p[2];

    if (h->n_outputs >= GUEST_HA_MAX_OUTPUTS || pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    o = &h->outputs[h->n_outputs++];
    o->fd = p[0];
    o->len = 0;
    snprintf(o->name, sizeof(o->name), "%s", name);
    return p[1];
}

static void output_close(struct guest_ha *h, unsigned i)
{
    struct guest_ha_output *o = &h->outputs[i];

    if (o->len)
        guest_log_child(o->name, o->buf, o->len);
    close(o->fd);
    *o = h->outputs[--h->n_outputs];
}

/* Read what a child wrote; returns false at EOF (every writer gone). */
static bool output_read(struct guest_ha_output *o)
{
    for (int reads = 0; reads < 16; reads++) {
        char chunk[2048];
        ssize_t n = read(o->fd, chunk, sizeof(chunk));

        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        if (n == 0)
            return false;
        for (ssize_t i = 0; i < n; i++) {
            o->buf[o->len++] = chunk[i];
            if (chunk[i] == '\n' || o->len == sizeof(o->buf)) {
                guest_log_child(o->name, o->buf, o->len);
                o->len = 0;
            }
        }
    }
    return true;
}

/* Start path with argv in a new session, stdin /dev/null, stdout and stderr
 * out_fd (if >= 0), default signal handling and an empty signal mask.
 * Returns 0 or an errno. */
static int spawn(const char *path, char *const argv[], char *const envp[], int out_fd,
                 pid_t *pid)
{
    posix_spawnattr_t at;
    posix_spawn_file_actions_t fa;
    sigset_t none, dfl;
    int rc;

    sigemptyset(&none);
    sigfillset(&dfl);
    sigdelset(&dfl, SIGKILL);
    sigdelset(&dfl, SIGSTOP);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (out_fd >= 0) {
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO);
    }
    rc = posix_spawn(pid, path, &fa, &at, argv, envp);
    if (out_fd >= 0)
        close(out_fd); /* the child has it now */
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc;
}

/* Signal a process group (the session the agent made), or the process if the
 * group is gone. */
static void kill_group(int32_t pid, int sig)
{
    if (pid <= 0)
        return;
    if (kill(-pid, sig) < 0 && errno == ESRCH)
        kill(pid, sig);
}

static void proc_start(struct guest_ha *h, unsigned slot, int64_t now_us)
{
    struct guest_proc *p = &h->sup.procs[slot];
    char *shell[] = {(char *)"sh", (char *)"-c", p->command, NULL};
    char words[PROTO_MAX_LSTR + 1], *argv[32];
    struct proto_app_event ev;
    int64_t t0 = guest_mono_us(), t1;
    pid_t pid;
    int rc;

    if (guest_super_split(p->command, words, sizeof(words), argv, 32) > 0)
        rc = spawn(argv[0], argv, environ, output_open(h, p->name), &pid);
    else
        rc = spawn("/bin/sh", shell, environ, output_open(h, p->name), &pid);
    t1 = guest_mono_us();

    if (rc != 0) {
        guest_log("%s: cannot start: %s", p->name, strerror(rc));
        if (guest_super_spawn_failed(&h->sup, slot, now_us, &ev)) {
            guest_log("%s: %s (status %d, %u restarts in the window)", ev.name,
                      app_kind_name(ev.kind), ev.status, ev.restarts);
            send_app_event(h, &ev);
        }
        return;
    }
    guest_super_started(&h->sup, slot, pid, &ev);
    h->procs_dirty = true;
    if (h->reaped_us[slot] && p->n_hist > 0)
        guest_log("%s: restarted, pid %d (spawn %.2f ms, %.2f ms after the exit was reaped)",
                  p->name, (int)pid, ms(t1 - t0), ms(t1 - h->reaped_us[slot]));
    else
        guest_log("%s: started, pid %d: %s", p->name, (int)pid, p->command);
    h->reaped_us[slot] = 0;
    send_app_event(h, &ev);
}

static void supervise(struct guest_ha *h, int64_t now_us)
{
    struct guest_super_action act;

    while (guest_super_next(&h->sup, now_us, h->n_orphans == 0, &act)) {
        struct guest_proc *p = &h->sup.procs[act.slot];
        switch (act.act) {
        case GUEST_ACT_START:
            proc_start(h, act.slot, now_us);
            break;
        case GUEST_ACT_TERM:
            guest_log("%s: stopping pid %d (SIGTERM)", p->name, (int)act.pid);
            kill_group(act.pid, SIGTERM);
            break;
        case GUEST_ACT_KILL:
            guest_log("%s: pid %d still there after %lld s, SIGKILL", p->name,
                      (int)act.pid, GUEST_SUPER_STOP_GRACE_US / 1000000);
            kill_group(act.pid, SIGKILL);
            break;
        default:
            return;
        }
    }
}

static bool config_equal(const struct proto_config *a, const struct proto_config *b)
{
    if (a->watchdog_s != b->watchdog_s || a->app_max_restarts != b->app_max_restarts ||
        a->app_window_ms != b->app_window_ms || a->n_procs != b->n_procs)
        return false;
    for (unsigned i = 0; i < a->n_procs && i < PROTO_MAX_PROCS; i++) {
        if (strcmp(a->procs[i].name, b->procs[i].name) != 0 ||
            strcmp(a->procs[i].command, b->procs[i].command) != 0)
            return false;
    }
    return true;
}

void guest_ha_config(struct guest_ha *h, const struct proto_config *c, int64_t now_us)
{
    unsigned changes;

    if (h->have_config && config_equal(&h->config, c)) {
        guest_log("config unchanged");
        return;
    }
    h->config = *c;
    h->have_config = true;
    h->config_dirty = true;
    guest_log("config: watchdog %u s, %u process%s, at most %u restarts in %u ms",
              c->watchdog_s, c->n_procs, c->n_procs == 1 ? "" : "es", c->app_max_restarts,
              c->app_window_ms);
    wd_apply(h, c->watchdog_s, now_us);
    changes = guest_super_configure(&h->sup, c);
    if (changes)
        supervise(h, now_us);
}

/* ---- role ---------------------------------------------------------------- */

static int nl_open(struct guest_ha *h)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};

    if (h->nl_fd >= 0)
        return 0;
    h->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (h->nl_fd < 0)
        return -1;
    if (bind(h->nl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(h->nl_fd);
        h->nl_fd = -1;
        return -1;
    }
    /* The kernel answers inside sendmsg(); the timeout only guards a bug. */
    setsockopt(h->nl_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return 0;
}

/* Add or delete one address. Returns 0 or an errno. */
static int nl_addr(struct guest_ha *h, bool add, int ifindex, const struct guest_vip *v)
{
    uint8_t req[GUEST_NL_ADDR_MAX], resp[4096];
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    char label[IF_NAMESIZE + 8];
    uint32_t seq = ++h->nl_seq;
    size_t n;
    int err = EIO;

    if (nl_open(h) < 0)
        return errno;
    snprintf(label, sizeof(label), "%s:cgv", h->paths.vip_dev);
    if (strlen(label) > 15)
        label[0] = '\0';
    n = guest_nl_addr_request(req, sizeof(req), add, seq, ifindex, v, label);
    if (n == 0)
        return EINVAL;
    if (sendto(h->nl_fd, req, n, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return errno;
    for (;;) {
        ssize_t got = recv(h->nl_fd, resp, sizeof(resp), 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        switch (guest_nl_parse_ack(resp, (size_t)got, seq, &err)) {
        case 1: return err;
        case 0: continue; /* an answer to an earlier, timed-out request */
        default: return EPROTO;
        }
    }
}

static int if_mac(const char *dev, uint8_t mac[6])
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc;

    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
    rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
    close(fd);
    if (rc < 0)
        return -1;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

/* One gratuitous ARP for every wanted VIP. */
static void garp_round(struct guest_ha *h)
{
    struct sockaddr_ll sll;
    uint8_t mac[6], frame[GUEST_ARP_FRAME_LEN];
    int ifindex = (int)if_nametoindex(h->paths.vip_dev);

    if (h->role.role != PROTO_ROLE_ACTIVE || h->role.n_vips == 0)
        return;
    if (ifindex <= 0 || if_mac(h->paths.vip_dev, mac) < 0) {
        guest_log("gratuitous ARP: no interface %s", h->paths.vip_dev);
        return;
    }
    if (h->pkt_fd < 0) {
        h->pkt_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); /* send only */
        if (h->pkt_fd < 0) {
            guest_log("gratuitous ARP: packet socket: %s", strerror(errno));
            return;
        }
    }
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ARP);
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    memset(sll.sll_addr, 0xff, 6);
    for (unsigned i = 0; i < h->role.n_vips; i++) {
        guest_arp_announce(frame, sizeof(frame), mac, h->role.vips[i].addr);
        if (sendto(h->pkt_fd, frame, sizeof(frame), 0, (struct sockaddr *)&sll,
                   sizeof(sll)) < 0)
            guest_log("gratuitous ARP: %s", strerror(errno));
    }
}

static void clients_close(struct guest_ha *h, unsigned i)
{
    close(h->clients[i]);
    h->clients[i] = h->clients[--h->n_clients];
}

/* Send the role line to one client; a client that cannot take it is dropped. */
static bool client_send(struct guest_ha *h, int fd)
{
    char line[256];
    int n = guest_role_line(&h->role, line, sizeof(line));

    return n > 0 && send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n;
}

static void clients_notify(struct guest_ha *h)
{
    for (unsigned i = 0; i < h->n_clients;) {
        if (client_send(h, h->clients[i]))
            i++;
        else
            clients_close(h, i);
    }
}

static void listen_open(struct guest_ha *h)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->paths.role_sock) >=
        (int)sizeof(sa.sun_path))
        return;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return;
    unlink(sa.sun_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
        guest_log("role socket %s: %s", sa.sun_path, strerror(errno));
        close(fd);
        return;
    }
    chmod(sa.sun_path, 0666); /* read-only information for every local program */
    h->listen_fd = fd;
}

/* The application of a role ended: record, ack, log. */
static void role_finish(struct guest_ha *h, uint8_t result, const char *detail,
                        int64_t now_us)
{
    bool changed = result != h->role.result;

    guest_role_done(&h->role, result);
    snprintf(h->role_detail, sizeof(h->role_detail), "%s", detail ? detail : "");
    if (changed || result != PROTO_ACK_OK)
        h->role_dirty = true;
    send_role_ack(h, h->role.generation, h->role.role, result, h->role_detail);
    guest_log("role %s generation %" PRIu64 ": %s%s%s (addresses %.2f ms, ack %.2f ms "
              "after ROLE_SET)",
              guest_role_name(h->role.role), h->role.generation,
              result == PROTO_ACK_OK ? "ok" : "FAILED", h->role_detail[0] ? ": " : "",
              h->role_detail, ms(h->role_addr_us - h->role_t0_us),
              ms(now_us - h->role_t0_us));
}

static void hook_start(struct guest_ha *h, int64_t now_us)
{
    char gen[24], env_vips[PROTO_MAX_VIPS * 20 + 16], env_role[32], env_asg[96],
        env_gen[48], vips[PROTO_MAX_VIPS * 20 + 1];
    char *argv[] = {(char *)h->paths.role_hook, (char *)guest_role_name(h->role.role),
                    h->role.assignment[0] ? h->role.assignment : (char *)"-", gen, NULL};
    char *envp[] = {(char *)"PATH=/sbin:/bin:/usr/sbin:/usr/bin", env_role, env_asg,
                    env_gen, env_vips, NULL};
    struct stat st;
    pid_t pid;
    int rc;

    if (stat(h->paths.role_hook, &st) < 0 || !S_ISREG(st.st_mode) ||
        access(h->paths.role_hook, X_OK) < 0) {
        char detail[PROTO_MAX_STR + 1];
        snprintf(detail, sizeof(detail), "%s", h->role_detail);
        role_finish(h, h->role.result, detail, now_us);
        return;
    }
    snprintf(gen, sizeof(gen), "%" PRIu64, h->role.generation);
    guest_role_vips(&h->role, vips, sizeof(vips));
    snprintf(env_role, sizeof(env_role), "CGV_ROLE=%s", guest_role_name(h->role.role));
    snprintf(env_asg, sizeof(env_asg), "CGV_ASSIGNMENT=%s", h->role.assignment);
    snprintf(env_gen, sizeof(env_gen), "CGV_GENERATION=%s", gen);
    snprintf(env_vips, sizeof(env_vips), "CGV_VIPS=%s", vips);
    rc = spawn(h->paths.role_hook, argv, envp, output_open(h, "role-hook"), &pid);
    if (rc != 0) {
        char detail[PROTO_MAX_STR + 1];
        snprintf(detail, sizeof(detail), "role-hook: %s", strerror(rc));
        role_finish(h, PROTO_ACK_FAILED, detail, now_us);
        return;
    }
    h->hook_pid = pid;
    h->hook_timed_out = false;
    h->hook_start_us = now_us;
    h->hook_deadline_us = now_us + GUEST_HA_HOOK_TIMEOUT_US;
}

static void hook_ended(struct guest_ha *h, int wstatus, int64_t now_us)
{
    char detail[PROTO_MAX_STR + 1] = "";
    uint8_t result = h->role.result;

    kill(-h->hook_pid, SIGKILL); /* whatever it left in its group */
    h->hook_pid = 0;
    if (h->hook_timed_out) {
        snprintf(detail, sizeof(detail), "role-hook timed out after %lld ms",
                 GUEST_HA_HOOK_TIMEOUT_US / 1000);
        result = PROTO_ACK_FAILED;
    } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0) {
        snprintf(detail, sizeof(detail), "role-hook exit %d", WEXITSTATUS(wstatus));
        result = PROTO_ACK_FAILED;
    } else if (WIFSIGNALED(wstatus)) {
        snprintf(detail, sizeof(detail), "role-hook killed by signal %d",
                 WTERMSIG(wstatus));
        result = PROTO_ACK_FAILED;
    }
    guest_log("role-hook done in %.2f ms", ms(now_us - h->hook_start_us));
    /* An address failure (already in role_detail) takes precedence. */
    if (h->role.result != PROTO_ACK_OK)
        snprintf(detail, sizeof(detail), "%s", h->role_detail);
    if (h->role.result != PROTO_ACK_OK)
        role_finish(h, h->role.result, detail, now_us);
    else
        role_finish(h, result, detail, now_us);
}

void guest_ha_role_set(struct guest_ha *h, const struct proto_role_set *rs, int64_t now_us)
{
    struct guest_role_plan plan;
    char why[PROTO_MAX_STR + 1] = "", detail[PROTO_MAX_STR + 1] = "";
    int ifindex;

    switch (guest_role_check(&h->role, rs, why, sizeof(why))) {
    case GUEST_ROLE_STALE:
        snprintf(detail, sizeof(detail), "stale: current generation %" PRIu64,
                 h->role.generation);
        guest_log("ROLE_SET %s generation %" PRIu64 " refused: %s",
                  guest_role_name(rs->role), rs->generation, detail);
        send_role_ack(h, rs->generation, rs->role, PROTO_ACK_STALE, detail);
        return;
    case GUEST_ROLE_INVALID:
        guest_log("ROLE_SET generation %" PRIu64 " refused: %s", rs->generation, why);
        send_role_ack(h, rs->generation, rs->role, PROTO_ACK_FAILED, why);
        return;
    case GUEST_ROLE_REACK:
        guest_log("ROLE_SET %s generation %" PRIu64 " again: already in place",
                  guest_role_name(rs->role), rs->generation);
        send_role_ack(h, rs->generation, rs->role, h->role.result, h->role_detail);
        return;
    case GUEST_ROLE_PENDING:
        guest_log("ROLE_SET %s generation %" PRIu64 " again: still in progress",
                  guest_role_name(rs->role), rs->generation);
        return;
    case GUEST_ROLE_APPLY:
        break;
    }

    if (h->hook_pid > 0) {
        /* A newer role supersedes the one whose hook is still running. */
        guest_log("role-hook pid %d superseded, killing it", (int)h->hook_pid);
        kill_group(h->hook_pid, SIGKILL);
        h->hook_pid = 0;
        send_role_ack(h, h->role.generation, h->role.role, PROTO_ACK_FAILED,
                      "superseded by a newer generation");
    }
    h->role_t0_us = now_us;
    guest_role_adopt(&h->role, rs, &plan);
    h->role_detail[0] = '\0';
    h->role_dirty = true;

    ifindex = (int)if_nametoindex(h->paths.vip_dev);
    if ((plan.n_del || plan.n_add) && ifindex <= 0) {
        snprintf(h->role_detail, sizeof(h->role_detail), "no interface %s",
                 h->paths.vip_dev);
        h->role.result = PROTO_ACK_FAILED;
    }
    for (unsigned i = 0; ifindex > 0 && i < plan.n_del; i++) {
        int err = nl_addr(h, false, ifindex, &plan.del[i]);
        char a[24];

        guest_vip_format(&plan.del[i], a, sizeof(a));
        if (err == 0 || err == EADDRNOTAVAIL || err == ENOENT || err == ENODEV) {
            guest_role_removed(&h->role, &plan.del[i]);
            guest_log("vip %s removed from %s", a, h->paths.vip_dev);
        } else if (h->role.result == PROTO_ACK_OK) {
            snprintf(h->role_detail, sizeof(h->role_detail), "del %s: %s", a, strerror(err));
            h->role.result = PROTO_ACK_FAILED;
        }
    }
    for (unsigned i = 0; ifindex > 0 && i < plan.n_add; i++) {
        int err = nl_addr(h, true, ifindex, &plan.add[i]);
        char a[24];

        guest_vip_format(&plan.add[i], a, sizeof(a));
        if (err == 0) {
            guest_role_added(&h->role, &plan.add[i]);
            guest_log("vip %s added to %s", a, h->paths.vip_dev);
        } else if (err == EEXIST) {
            guest_log("vip %s was already on %s (left as it is)", a, h->paths.vip_dev);
        } else if (h->role.result == PROTO_ACK_OK) {
            snprintf(h->role_detail, sizeof(h->role_detail), "add %s: %s", a, strerror(err));
            h->role.result = PROTO_ACK_FAILED;
        }
    }
    h->role_addr_us = guest_mono_us();
    h->garp_round = 0;
    h->garp_t0_us = h->role_addr_us;
    if (h->role.role == PROTO_ROLE_ACTIVE) {
        garp_round(h);
        h->garp_round = 1;
    } else {
        h->garp_round = GUEST_HA_GARP_ROUNDS;
    }
    clients_notify(h);
    hook_start(h, guest_mono_us());
}

/* ---- children, timers ------------------------------------------------------ */

void guest_ha_reap(struct guest_ha *h, int64_t now_us)
{
    int wstatus;
    pid_t pid;

    while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
        struct proto_app_event ev;
        char name[PROTO_MAX_STR + 1] = "process";
        int slot;
        bool tell;

        if (pid == h->hook_pid) {
            hook_ended(h, wstatus, guest_mono_us());
            continue;
        }
        for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
            if (h->sup.procs[i].pid == pid)
                snprintf(name, sizeof(name), "%s", h->sup.procs[i].name);
        }
        tell = guest_super_exited(&h->sup, pid, guest_status_code(wstatus), now_us, &ev,
                                  &slot);
        if (slot < 0)
            continue; /* a superseded hook */
        /* Whatever the process left behind in its group goes with it. */
        kill(-pid, SIGKILL);
        h->procs_dirty = true;
        if (!tell) {
            guest_log("%s: pid %d stopped (status %d)", name, (int)pid,
                      guest_status_code(wstatus));
            continue;
        }
        if (ev.kind == PROTO_APP_EXITED)
            h->reaped_us[slot] = now_us;
        guest_log("%s: pid %d %s (status %d, %u restart%s in the window)", ev.name,
                  (int)pid, ev.kind == PROTO_APP_GAVE_UP ? "exited, giving up" : "exited",
                  ev.status, ev.restarts, ev.restarts == 1 ? "" : "s");
        send_app_event(h, &ev);
        /* The restart follows in guest_ha_work(), once the caller has sent
         * the host this EXITED. */
    }
}

static void orphans_check(struct guest_ha *h, int64_t now_us)
{
    for (unsigned i = 0; i < h->n_orphans;) {
        struct guest_ha_orphan *o = &h->orphans[i];
        uint64_t start;
        char state;
        bool alive = proc_stat(o->pid, &state, &start) == 0 && start == o->starttime &&
                     state != 'Z' && state != 'X';

        if (alive && now_us >= o->kill_at_us && !o->killed) {
            guest_log("process %d of the previous agent ignores SIGTERM: SIGKILL",
                      (int)o->pid);
            kill_group(o->pid, SIGKILL);
            o->killed = true;
        }
        if (alive) {
            i++;
            continue;
        }
        kill(-o->pid, SIGKILL); /* what is left of its group */
        *o = h->orphans[--h->n_orphans];
    }
    h->orphan_check_us = now_us + ORPHAN_POLL_US;
}

void guest_ha_work(struct guest_ha *h, int64_t now_us)
{
    if (h->n_orphans && now_us >= h->orphan_check_us)
        orphans_check(h, now_us);
    supervise(h, now_us);
    if (h->hook_pid > 0 && !h->hook_timed_out && now_us >= h->hook_deadline_us) {
        guest_log("role-hook pid %d timed out, killing it", (int)h->hook_pid);
        h->hook_timed_out = true;
        kill_group(h->hook_pid, SIGKILL);
    }
    while (h->garp_round < GUEST_HA_GARP_ROUNDS &&
           now_us >= h->garp_t0_us + garp_at_us[h->garp_round]) {
        garp_round(h);
        h->garp_round++;
    }
    if (h->wd_fd >= 0 && h->wd_timeout_s &&
        now_us - h->wd_last_pet_us >= (int64_t)h->wd_timeout_s * 500000)
        wd_pet(h, now_us);
}

int64_t guest_ha_deadline(const struct guest_ha *h)
{
    int64_t t = guest_super_deadline(&h->sup);

    if (guest_super_has_pending(&h->sup) && h->n_orphans == 0)
        t = 0;
    if (h->n_orphans && h->orphan_check_us < t)
        t = h->orphan_check_us;
    if (h->hook_pid > 0 && !h->hook_timed_out && h->hook_deadline_us < t)
        t = h->hook_deadline_us;
    if (h->garp_round < GUEST_HA_GARP_ROUNDS &&
        h->garp_t0_us + garp_at_us[h->garp_round] < t)
        t = h->garp_t0_us + garp_at_us[h->garp_round];
    if (h->wd_fd >= 0 && h->wd_timeout_s && !h->wd_paused &&
        h->wd_last_pet_us + (int64_t)h->wd_timeout_s * 500000 < t)
        t = h->wd_last_pet_us + (int64_t)h->wd_timeout_s * 500000;
    return t;
}

/* ---- persistence ---------------------------------------------------------- */

void guest_ha_persist(struct guest_ha *h)
{
    if (h->config_dirty) {
        struct proto_msg m = {.type = PROTO_CONFIG};
        uint8_t frame[PROTO_MAX_FRAME];
        int n;

        m.u.config = h->config;
        n = proto_encode(&m, frame, sizeof(frame));
        if (n > 0)
            state_write(h, STATE_CONFIG, frame, (size_t)n);
        h->config_dirty = false;
    }
    if (h->role_dirty) {
        char buf[1024];
        int n = guest_role_state_format(&h->role, buf, sizeof(buf));
        if (n > 0)
            state_write(h, STATE_ROLE, buf, (size_t)n);
        h->role_dirty = false;
    }
    if (h->procs_dirty) {
        char buf[GUEST_SUPER_SLOTS * 96];
        size_t len = 0;

        for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
            const struct guest_proc *p = &h->sup.procs[i];
            uint64_t start;
            char state;
            int n;

            if ((p->state != GUEST_PROC_RUNNING && p->state != GUEST_PROC_STOPPING) ||
                p->pid <= 0 || proc_stat(p->pid, &state, &start) < 0)
                continue;
            n = snprintf(buf + len, sizeof(buf) - len, "%d %" PRIu64 " %s\n", (int)p->pid,
                         start, p->name);
            if (n > 0 && (size_t)n < sizeof(buf) - len)
                len += (size_t)n;
        }
        state_write(h, STATE_PROCS, buf, len);
        h->procs_dirty = false;
    }
}

void guest_ha_restore(struct guest_ha *h, int64_t now_us)
{
    char buf[PROTO_MAX_FRAME];
    ssize_t n;

    if (mkdir(h->paths.state_dir, 0755) < 0 && errno != EEXIST)
        guest_log("cannot create %s: %s", h->paths.state_dir, strerror(errno));

    /* The processes an earlier agent started: stop them, start afresh. */
    n = state_read(h, STATE_PROCS, buf, sizeof(buf) - 1);
    if (n > 0) {
        char *save = NULL, *line;
        buf[n] = '\0';
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            struct guest_ha_orphan o = {0};
            unsigned long long start;
            uint64_t now_start;
            int pid;
            char state;

            if (sscanf(line, "%d %llu", &pid, &start) != 2 || pid <= 1 ||
                proc_stat(pid, &state, &now_start) < 0 || now_start != start ||
                h->n_orphans >= GUEST_HA_MAX_ORPHANS)
                continue;
            guest_log("stopping pid %d left by the previous agent", pid);
            kill_group(pid, SIGTERM);
            o.pid = pid;
            o.starttime = start;
            o.kill_at_us = now_us + GUEST_SUPER_STOP_GRACE_US;
            h->orphans[h->n_orphans++] = o;
        }
        h->orphan_check_us = now_us;
    }

    n = state_read(h, STATE_ROLE, buf, sizeof(buf));
    if (n > 0) {
        if (guest_role_state_parse(buf, (size_t)n, &h->role) == 0) {
            guest_log("role restored: %s generation %" PRIu64 ", %u vip%s added",
                      guest_role_name(h->role.role), h->role.generation, h->role.n_added,
                      h->role.n_added == 1 ? "" : "s");
            if (h->role.role == PROTO_ROLE_ACTIVE) {
                h->garp_t0_us = now_us;
                h->garp_round = 0;
            } else {
                h->garp_round = GUEST_HA_GARP_ROUNDS;
            }
        } else {
            guest_log("ignoring a malformed role state file");
        }
    } else {
        h->garp_round = GUEST_HA_GARP_ROUNDS;
    }

    n = state_read(h, STATE_CONFIG, buf, sizeof(buf));
    if (n > PROTO_HDR_LEN) {
        struct proto_reader r;
        struct proto_msg m;
        char why[128];

        proto_reader_init(&r);
        proto_reader_push(&r, (const uint8_t *)buf, (size_t)n);
        if (proto_reader_next(&r, &m, why, sizeof(why)) == PROTO_MSG &&
            m.type == PROTO_CONFIG) {
            guest_log("restoring the previous agent's config");
            guest_ha_config(h, &m.u.config, now_us);
            h->config_dirty = false;
        } else {
            guest_log("ignoring a malformed config state file");
        }
    }
    listen_open(h);
}

/* ---- role socket ------------------------------------------------------------ */

unsigned guest_ha_pollfds(const struct guest_ha *h, struct pollfd *p, unsigned cap)
{
    unsigned n = 0;

    if (h->listen_fd >= 0 && n < cap)
        p[n++] = (struct pollfd){.fd = h->listen_fd, .events = POLLIN};
    for (unsigned i = 0; i < h->n_clients && n < cap; i++)
        p[n++] = (struct pollfd){.fd = h->clients[i], .events = POLLIN};
    for (unsigned i = 0; i < h->n_outputs && n < cap; i++)
        p[n++] = (struct pollfd){.fd = h->outputs[i].fd, .events = POLLIN};
    return n;
}

void guest_ha_polled(struct guest_ha *h, const struct pollfd *p, unsigned n)
{
    for (unsigned k = 0; k < n; k++) {
        if (!p[k].revents)
            continue;
        if (p[k].fd == h->listen_fd) {
            int c;
            while ((c = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                if (h->n_clients >= GUEST_HA_MAX_CLIENTS || !client_send(h, c)) {
                    close(c);
                    continue;
                }
                h->clients[h->n_clients++] = c;
            }
            continue;
        }
        for (unsigned i = 0; i < h->n_outputs; i++) {
            if (h->outputs[i].fd != p[k].fd)
                continue;
            if (!output_read(&h->outputs[i]))
                output_close(h, i);
            break;
        }
        for (unsigned i = 0; i < h->n_clients; i++) {
            char junk[256];
            ssize_t r;

            if (h->clients[i] != p[k].fd)
                continue;
            /* Clients have nothing to say: read and drop; EOF closes. */
            r = recv(p[k].fd, junk, sizeof(junk), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                clients_close(h, i);
            break;
        }
    }
}

void guest_ha_shutdown(struct guest_ha *h)
{
    wd_disarm(h);
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        const struct guest_proc *p = &h->sup.procs[i];
        if ((p->state == GUEST_PROC_RUNNING || p->state == GUEST_PROC_STOPPING) && p->pid > 0)
            kill_group(p->pid, SIGTERM);
    }
    if (h->hook_pid > 0)
        kill_group(h->hook_pid, SIGKILL);
}
