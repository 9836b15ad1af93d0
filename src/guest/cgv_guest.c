/* cgv_guest.c — cgv-guest, the agent inside every VM (static binary).
 *
 * Finds the virtio-serial port PROTO_CHANNEL_NAME, says HELLO, sends a
 * HEARTBEAT every interval (1000 ms until the host's HOST_HELLO says
 * otherwise), answers PING with PONG and powers the guest off (or reboots it)
 * on SHUTDOWN. One ppoll() loop; heartbeats run on CLOCK_MONOTONIC deadlines.
 *
 * How the guest end of a virtio-serial port behaves (Linux virtio_console,
 * confirmed in a TCG guest): while no host process is connected to the QEMU
 * chardev, poll() reports POLLHUP (and POLLIN) continuously, read() returns 0
 * and a non-blocking write() fails with EAGAIN. So while the host is away the
 * port is taken out of the poll set (no busy loop) and looked at again when
 * the kernel sends SIGIO (it does so on every host open/close, O_ASYNC) and,
 * as a fallback, on every heartbeat tick (measured: HELLO reached a host 2 ms
 * after it reconnected). Nothing is queued while the host is away and the
 * heartbeat seq does not advance; when it comes back the agent says HELLO and
 * the host's HOST_HELLO gets another one. A host that closes and reconnects
 * within a few ms may go unnoticed (the port is open again by the time the
 * agent looks), which is why the host must send HOST_HELLO on every connect.
 *
 * High availability (guest_ha.h): CONFIG arms the virtual watchdog (petted on
 * every heartbeat tick) and lists the processes the agent supervises; ROLE_SET
 * moves the virtual IPs, tells the guest's applications and is answered with
 * ROLE_ACK; supervised processes report through APP_EVENT. Nothing in this
 * loop blocks: the port is looked for on a timer (while it is missing the
 * watchdog is still petted and the processes still supervised), children are
 * reaped on SIGCHLD.
 *
 * Signals: SIGIO (the host's end of the port changed), SIGCHLD (a child
 * ended), SIGUSR1 (test hook: send the host a burst of malformed frames),
 * SIGUSR2 (test hook: stop petting the watchdog so that it fires; again to
 * resume), SIGTERM (disarm the watchdog, stop the supervised processes, exit).
 * All are blocked except while waiting in ppoll().
 *
 * Also: `cgv-guest --cmdline-env [FILE]` prints the validated cgv.* kernel
 * arguments as shell assignments for /init; `cgv-guest --role [--follow]`
 * prints the role line of /run/cgv/role.sock (and every change after it), for
 * shell scripts in the guest (busybox nc cannot talk to a unix socket).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "guest_agent.h"
#include "guest_cmdline.h"
#include "guest_ha.h"
#include "guest_log.h"
#include "guest_port.h"
#include "nf_counter.h"

#ifndef CGV_GUEST_VERSION
#error "CGV_GUEST_VERSION must come from the build"
#endif

#define SHUTDOWN_FALLBACK_US (5 * 1000000LL)
/* The port shows up a few hundred ms after virtio_console loads: look often
 * at first, then settle to once a second. */
#define PORT_RETRY_FAST_MS 50
#define PORT_RETRY_FAST_FOR_US (10 * 1000000LL)
#define PORT_RETRY_MAX_MS 1000
#define LOG_BURST 5 /* at most this many "garbage" lines per second */
#define MAX_POLLFDS (1 + GUEST_HA_MAX_POLLFDS)

#define glog guest_log
#define mono_us guest_mono_us

static volatile sig_atomic_t g_sigio, g_garbage, g_sigchld, g_usr2, g_term;

/* Token bucket for log lines the host can provoke. */
struct ratelimit {
    int64_t window_start;
    unsigned in_window;
    uint64_t suppressed;
};

static bool ratelimit_ok(struct ratelimit *rl, int64_t now)
{
    if (now - rl->window_start >= 1000000) {
        if (rl->suppressed)
            glog("(%" PRIu64 " similar messages suppressed)", rl->suppressed);
        rl->window_start = now;
        rl->in_window = 0;
        rl->suppressed = 0;
    }
    if (rl->in_window < LOG_BURST) {
        rl->in_window++;
        return true;
    }
    rl->suppressed++;
    return false;
}

static void on_signal(int sig)
{
    switch (sig) {
    case SIGIO: g_sigio = 1; break;
    /* SIGUSR1: send the host a burst of malformed frames (a test hook for the
     * host's decoder; see guest_agent_queue_garbage). */
    case SIGUSR1: g_garbage = 1; break;
    case SIGUSR2: g_usr2 = 1; break;
    case SIGCHLD: g_sigchld = 1; break;
    case SIGTERM: g_term = 1; break;
    default: break;
    }
}

static int read_cmdline(const char *path, char *buf, size_t cap)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* boot_id: random per agent start, not a secret. Early in a TCG boot the
 * kernel's CRNG is not ready, and then a read of /dev/urandom first spends
 * about a second of CPU gathering jitter entropy (measured: HELLO 1 s late).
 * GRND_INSECURE never waits; /dev/urandom is the fallback for old kernels. */
static uint64_t random_u64(void)
{
    uint64_t v = 0;
    int fd;

    if (getrandom(&v, sizeof(v), GRND_INSECURE) == (ssize_t)sizeof(v))
        return v;
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, &v, sizeof(v));
        close(fd);
        if (n == (ssize_t)sizeof(v))
            return v;
    }
    return (uint64_t)mono_us() ^ ((uint64_t)getpid() << 32);
}

struct options {
    const char *cmdline_path;
    const char *sysfs_dir;
    const char *port_path; /* skip discovery (tests) */
    const char *counter_path;
    struct guest_ha_paths ha;
    bool no_poweroff;      /* log SHUTDOWN instead of acting (tests) */
};

/* Everything the loop owns. */
struct io {
    const struct options *o;
    struct guest_agent a;
    struct guest_ha ha;
    struct nf_counter counter;
    struct ratelimit rl;
    /* the port */
    int fd;
    char path[256];
    bool connected;
    bool port_said;
    unsigned port_delay_ms;
    int64_t port_retry_at, port_search_start;
    /* SHUTDOWN */
    bool shutdown_pending;
    int64_t fallback_at;
};

static void set_connected(struct io *io, bool c)
{
    io->connected = c;
    io->ha.connected = c;
}

/* Is the host end open? One poll with no wait. -1: the port is gone. */
static int host_connected(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    if (poll(&p, 1, 0) < 0)
        return errno == EINTR ? 0 : -1;
    if (p.revents & (POLLERR | POLLNVAL))
        return -1;
    return (p.revents & POLLHUP) ? 0 : 1;
}

/* One attempt to find and open the port; on failure the next one is
 * scheduled with a bounded backoff. */
static void port_try_open(struct io *io, int64_t now)
{
    const struct options *o = io->o;
    char dev[128];
    int fd, c;

    if (o->port_path) {
        snprintf(io->path, sizeof(io->path), "%s", o->port_path);
    } else if (guest_port_find(o->sysfs_dir, PROTO_CHANNEL_NAME, dev, sizeof(dev)) == 0) {
        snprintf(io->path, sizeof(io->path), "/dev/%s", dev);
    } else {
        io->path[0] = '\0';
    }
    fd = io->path[0] ? open(io->path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) : -1;
    if (fd < 0) {
        if (io->path[0] && (!io->port_said || errno != ENOENT))
            glog("cannot open %s: %s", io->path, strerror(errno));
        else if (!io->port_said)
            glog("waiting for virtio-serial port %s", PROTO_CHANNEL_NAME);
        if (!io->port_said)
            io->port_search_start = now;
        io->port_said = true;
        io->port_delay_ms = guest_backoff_next(
            io->port_delay_ms, now - io->port_search_start < PORT_RETRY_FAST_FOR_US
                                   ? PORT_RETRY_FAST_MS
                                   : PORT_RETRY_MAX_MS);
        io->port_retry_at = now + (int64_t)io->port_delay_ms * 1000;
        return;
    }
    io->port_said = false;
    io->port_delay_ms = 0;
    glog("found port %s", io->path);
    /* The kernel signals a change of the host's connection (O_ASYNC). */
    if (fcntl(fd, F_SETOWN, getpid()) < 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC) < 0)
        glog("cannot enable SIGIO on %s: %s (falling back to heartbeat ticks)", io->path,
             strerror(errno));
    io->fd = fd;
    guest_agent_reset_io(&io->a);
    c = host_connected(fd);
    set_connected(io, c == 1);
    glog("port %s: host %s", io->path, c == 1 ? "connected" : "not connected");
    if (c == 1)
        guest_agent_queue_hello(&io->a, now);
}

static void port_failed(struct io *io, int64_t now)
{
    glog("port %s failed, looking for it again", io->path);
    close(io->fd);
    io->fd = -1;
    set_connected(io, false);
    guest_agent_reset_io(&io->a);
    io->port_retry_at = now + 100 * 1000;
}

static void host_gone(struct io *io, const char *how)
{
    set_connected(io, false);
    guest_agent_reset_io(&io->a);
    glog("host disconnected%s", how);
}

static void do_shutdown(struct io *io)
{
    uint8_t action = io->a.shutdown_action;
    bool reboot_it = action == PROTO_SHUTDOWN_REBOOT;

    glog("host asked to %s the guest", reboot_it ? "reboot" : "power off");
    guest_log_flush();
    if (io->o->no_poweroff || io->shutdown_pending)
        return;
    io->shutdown_pending = true;
    io->fallback_at = mono_us() + SHUTDOWN_FALLBACK_US;
    sync();
    /* busybox init: SIGUSR2 = poweroff, SIGTERM = reboot; it runs the
     * shutdown actions, stops every process and unmounts. */
    if (getpid() == 1 || kill(1, reboot_it ? SIGTERM : SIGUSR2) < 0) {
        glog("cannot signal init (%s), calling reboot(2)", strerror(errno));
        guest_log_flush();
        reboot(reboot_it ? RB_AUTOBOOT : RB_POWER_OFF);
    }
}

/* Write as much queued output as the port takes. Returns 1 if the host is
 * gone, -1 if the port is broken, 0 otherwise. */
static int flush_out(int fd, struct guest_agent *a)
{
    while (a->out_len) {
        ssize_t n = write(fd, a->out, a->out_len);
        if (n > 0) {
            guest_agent_out_consume(a, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0; /* full, or the host just left: poll tells which */
        if (n < 0 && (errno == EPIPE || errno == ENOTCONN || errno == ECONNRESET))
            return 1;
        glog("write to port: %s", n < 0 ? strerror(errno) : "wrote nothing");
        return -1;
    }
    return 0;
}

/* One read into the agent's input buffer. Returns 0 if bytes came, 2 if
 * nothing is there now, 1 on EOF (host not connected), -1 if the port is
 * broken. */
static int read_once(int fd, struct guest_agent *a)
{
    ssize_t n;

    do {
        n = read(fd, proto_reader_tail(&a->rd), proto_reader_space(&a->rd));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 2;
    if (n < 0) {
        glog("read from port: %s", strerror(errno));
        return -1;
    }
    if (n == 0)
        return 1;
    proto_reader_commit(&a->rd, (size_t)n);
    return 0;
}

/* Handle every complete frame buffered in the agent. */
static void handle_frames(struct io *io)
{
    char why[160];
    enum guest_event ev;

    while ((ev = guest_agent_step(&io->a, mono_us(), why, sizeof(why))) != GUEST_EV_NONE) {
        switch (ev) {
        case GUEST_EV_HOST_HELLO:
            glog("host hello: heartbeat every %" PRIu32 " ms", io->a.heartbeat_ms);
            break;
        case GUEST_EV_SHUTDOWN:
            do_shutdown(io);
            break;
        case GUEST_EV_CONFIG:
            guest_ha_config(&io->ha, &io->a.config, mono_us());
            break;
        case GUEST_EV_ROLE_SET:
            guest_ha_role_set(&io->ha, &io->a.role_set, mono_us());
            break;
        case GUEST_EV_BAD:
        case GUEST_EV_IGNORED:
            if (ratelimit_ok(&io->rl, mono_us()))
                glog("from host: %s", why);
            break;
        default:
            break;
        }
    }
}

/* Read what the host sent (a bounded number of reads, so a flooding host
 * cannot starve the heartbeats) and act on it. */
static void port_input(struct io *io, short revents)
{
    int reads = 0, rc;

    if (revents & POLLNVAL) {
        port_failed(io, mono_us());
        return;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return;
    /* handle_frames() drains the reader, so there is always room. */
    do {
        rc = read_once(io->fd, &io->a);
        handle_frames(io);
    } while (rc == 0 && ++reads < 64 && io->connected);
    if (rc < 0)
        port_failed(io, mono_us());
    else if (rc == 1 || (rc == 2 && (revents & POLLHUP)))
        host_gone(io, "");
}

static void run(struct io *io, const sigset_t *during_poll)
{
    for (;;) {
        struct pollfd p[MAX_POLLFDS];
        struct timespec ts;
        unsigned np = 0, nha;
        int64_t now = mono_us(), wake, t;
        int rc;

        if (g_term) {
            glog("SIGTERM: stopping");
            guest_ha_shutdown(&io->ha);
            guest_ha_persist(&io->ha);
            guest_log_flush();
            exit(0);
        }
        if (io->fd < 0 && now >= io->port_retry_at)
            port_try_open(io, now);
        if (io->shutdown_pending && now >= io->fallback_at) {
            glog("init did not stop the guest, calling reboot(2)");
            guest_log_flush();
            sync();
            reboot(io->a.shutdown_action == PROTO_SHUTDOWN_REBOOT ? RB_AUTOBOOT
                                                                  : RB_POWER_OFF);
            io->shutdown_pending = false;
        }
        if (g_sigchld) {
            g_sigchld = 0;
            guest_ha_reap(&io->ha, now);
            /* APP_EVENT exited goes out before the restart is spawned; a
             * failure shows again in the flush below, which handles it. */
            if (io->connected && io->a.out_len)
                (void)flush_out(io->fd, &io->a);
        }
        if (g_usr2) {
            g_usr2 = 0;
            guest_ha_toggle_pet(&io->ha);
        }
        if (!io->counter.map)
            nf_counter_open_ro(&io->counter, io->o->counter_path);
        if (guest_agent_tick(&io->a, now, nf_counter_get(&io->counter), io->connected)) {
            guest_ha_heartbeat(&io->ha, now);
            if (!io->connected)
                g_sigio = 1; /* fallback: look at the port once per tick */
        }
        if (io->fd >= 0 && !io->connected && g_sigio) {
            g_sigio = 0;
            rc = host_connected(io->fd);
            if (rc < 0) {
                port_failed(io, now);
            } else if (rc == 1) {
                set_connected(io, true);
                glog("host connected");
                guest_agent_reset_io(&io->a);
                guest_agent_queue_hello(&io->a, now);
            }
        }
        guest_ha_work(&io->ha, now);
        if (g_garbage) {
            g_garbage = 0;
            if (io->connected) {
                size_t n = guest_agent_queue_garbage(&io->a);
                glog("test hook: sent the host %zu bytes of malformed frames", n);
            }
        }
        if (io->connected) {
            rc = flush_out(io->fd, &io->a);
            if (rc < 0)
                port_failed(io, now);
            else if (rc > 0)
                host_gone(io, " (write)");
        }
        guest_ha_persist(&io->ha);
        guest_log_flush(); /* after the host got its messages */

        now = mono_us();
        wake = io->a.next_hb_us;
        if (io->shutdown_pending && io->fallback_at < wake)
            wake = io->fallback_at;
        if (io->fd < 0 && io->port_retry_at < wake)
            wake = io->port_retry_at;
        t = guest_ha_deadline(&io->ha);
        if (t < wake)
            wake = t;
        if (wake < now)
            wake = now;
        ts.tv_sec = (wake - now) / 1000000;
        ts.tv_nsec = ((wake - now) % 1000000) * 1000;
        if (io->connected) {
            p[np++] = (struct pollfd){.fd = io->fd,
                                      .events = POLLIN | (io->a.out_len ? POLLOUT : 0)};
        }
        nha = guest_ha_pollfds(&io->ha, p + np, MAX_POLLFDS - np);
        rc = ppoll(p, np + nha, &ts, during_poll);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            glog("ppoll: %s", strerror(errno));
            continue;
        }
        if (rc == 0)
            continue;
        guest_ha_polled(&io->ha, p + np, nha);
        if (np && io->connected && p[0].fd == io->fd && p[0].revents)
            port_input(io, p[0].revents);
    }
}

/* `cgv-guest --role [--follow]`: copy the role socket's lines to stdout. */
static int role_client(const char *path, bool follow)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[512];
    int fd;

    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= (int)sizeof(sa.sun_path))
        return 2;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "cgv-guest: %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? 1 : 0;
        if (write(STDOUT_FILENO, buf, (size_t)n) != n)
            return 1;
        if (!follow && memchr(buf, '\n', (size_t)n))
            return 0; /* the first line is written whole (one send) */
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cgv-guest [--port DEV] [--sysfs DIR] [--cmdline FILE]\n"
            "                 [--counter FILE] [--state-dir DIR] [--role-sock PATH]\n"
            "                 [--role-hook PATH] [--watchdog DEV] [--vip-dev IFACE]\n"
            "                 [--no-poweroff]\n"
            "       cgv-guest --cmdline-env [FILE]\n"
            "       cgv-guest --role [--follow] [--role-sock PATH]\n"
            "       cgv-guest --version\n"
            "The cgv agent: talks to cgvd over the virtio-serial port %s.\n",
            PROTO_CHANNEL_NAME);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"sysfs", required_argument, NULL, 's'},
        {"cmdline", required_argument, NULL, 'k'},
        {"counter", required_argument, NULL, 'c'},
        {"state-dir", required_argument, NULL, 'S'},
        {"role-sock", required_argument, NULL, 'R'},
        {"role-hook", required_argument, NULL, 'H'},
        {"watchdog", required_argument, NULL, 'W'},
        {"vip-dev", required_argument, NULL, 'D'},
        {"no-poweroff", no_argument, NULL, 'n'},
        {"cmdline-env", no_argument, NULL, 'e'},
        {"role", no_argument, NULL, 'r'},
        {"follow", no_argument, NULL, 'f'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct io io; /* large: not on the stack */
    struct options o = {
        .cmdline_path = "/proc/cmdline",
        .sysfs_dir = GUEST_SYSFS_PORTS,
        .counter_path = NF_COUNTER_PATH,
    };
    struct guest_cmdline kc;
    struct sigaction sa;
    char cmdline[4096], why[160];
    static const int sigs[] = {SIGIO, SIGUSR1, SIGUSR2, SIGCHLD, SIGTERM};
    bool env_mode = false, role_mode = false, follow = false;
    sigset_t block, during_poll;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': o.port_path = optarg; break;
        case 's': o.sysfs_dir = optarg; break;
        case 'k': o.cmdline_path = optarg; break;
        case 'c': o.counter_path = optarg; break;
        case 'S': o.ha.state_dir = optarg; break;
        case 'R': o.ha.role_sock = optarg; break;
        case 'H': o.ha.role_hook = optarg; break;
        case 'W': o.ha.watchdog = optarg; break;
        case 'D': o.ha.vip_dev = optarg; break;
        case 'n': o.no_poweroff = true; break;
        case 'e': env_mode = true; break;
        case 'r': role_mode = true; break;
        case 'f': follow = true; break;
        case 'V': printf("cgv-guest %s\n", CGV_GUEST_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (role_mode) {
        if (optind != argc) {
            usage(stderr);
            return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        return role_client(o.ha.role_sock ? o.ha.role_sock : GUEST_HA_ROLE_SOCK, follow);
    }
    if (env_mode && optind < argc)
        o.cmdline_path = argv[optind++];
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (read_cmdline(o.cmdline_path, cmdline, sizeof(cmdline)) < 0) {
        fprintf(stderr, "cgv-guest: %s: %s\n", o.cmdline_path, strerror(errno));
        cmdline[0] = '\0';
        if (env_mode)
            return 1;
    }
    guest_cmdline_parse(cmdline, &kc, why, sizeof(why));
    if (env_mode) {
        char env[1024];
        if (kc.n_bad)
            fprintf(stderr, "cgv-guest: %s\n", why);
        if (guest_cmdline_format_env(&kc, env, sizeof(env)) < 0)
            return 1;
        fputs(env, stdout);
        return 0;
    }

    guest_log_init();
    glog("cgv-guest %s starting, vm %s", CGV_GUEST_VERSION, kc.name);
    if (kc.n_bad)
        glog("kernel command line: %s", why);
    guest_log_flush();

    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&block, sigs[i]);
    }
    /* These signals are only let in while waiting in ppoll(). */
    sigprocmask(SIG_BLOCK, &block, &during_poll);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigdelset(&during_poll, sigs[i]);

    io.o = &o;
    io.fd = -1;
    guest_agent_init(&io.a, kc.name, CGV_GUEST_VERSION, random_u64(), mono_us());
    guest_ha_init(&io.ha, &o.ha, &io.a);
    guest_ha_restore(&io.ha, mono_us());
    g_sigchld = 1; /* children of the restore may already have ended */
    run(&io, &during_poll);
    return 0;
}
