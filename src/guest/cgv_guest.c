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
 * Also: `cgv-guest --cmdline-env [FILE]` prints the validated cgv.* kernel
 * arguments as shell assignments for /init.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "guest_agent.h"
#include "guest_cmdline.h"
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

static volatile sig_atomic_t g_sigio;

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void glog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void glog(const char *fmt, ...)
{
    int64_t now = mono_us();
    char line[512];
    va_list ap;
    int n;

    n = snprintf(line, sizeof(line), "[%5" PRId64 ".%03" PRId64 "] cgv-guest: ",
                 now / 1000000, (now / 1000) % 1000);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    line[n] = '\n'; /* room kept by the "- 1" above */
    line[n + 1] = '\0';
    /* One write(2) per line so lines from several programs do not mix. */
    if (write(STDERR_FILENO, line, strlen(line)) < 0) {
        /* nowhere else to report it */
    }
}

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

static volatile sig_atomic_t g_garbage;

static void on_sigio(int sig)
{
    (void)sig;
    g_sigio = 1;
}

/* SIGUSR1: send the host a burst of malformed frames (a test hook for the
 * host's decoder; see guest_agent_queue_garbage). */
static void on_sigusr1(int sig)
{
    (void)sig;
    g_garbage = 1;
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
    bool no_poweroff;      /* log SHUTDOWN instead of acting (tests) */
};

/* Wait for the port to show up, with a bounded backoff. Returns an fd. */
static int open_port(const struct options *o, char *path, size_t cap)
{
    unsigned delay = 0;
    bool said = false;
    int64_t start = mono_us();

    for (;;) {
        char dev[128];
        int fd;

        if (o->port_path) {
            snprintf(path, cap, "%s", o->port_path);
        } else if (guest_port_find(o->sysfs_dir, PROTO_CHANNEL_NAME, dev,
                                    sizeof(dev)) == 0) {
            snprintf(path, cap, "/dev/%s", dev);
        } else {
            path[0] = '\0';
        }
        if (path[0]) {
            fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
            if (fd >= 0)
                return fd;
            if (!said || errno != ENOENT)
                glog("cannot open %s: %s", path, strerror(errno));
        } else if (!said) {
            glog("waiting for virtio-serial port %s", PROTO_CHANNEL_NAME);
        }
        said = true;
        delay = guest_backoff_next(delay, mono_us() - start < PORT_RETRY_FAST_FOR_US
                                              ? PORT_RETRY_FAST_MS
                                              : PORT_RETRY_MAX_MS);
        usleep(delay * 1000);
    }
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

static void do_shutdown(uint8_t action, bool no_poweroff, bool *pending,
                        int64_t *fallback_at)
{
    bool reboot_it = action == PROTO_SHUTDOWN_REBOOT;

    glog("host asked to %s the guest", reboot_it ? "reboot" : "power off");
    if (no_poweroff || *pending)
        return;
    *pending = true;
    *fallback_at = mono_us() + SHUTDOWN_FALLBACK_US;
    sync();
    /* busybox init: SIGUSR2 = poweroff, SIGTERM = reboot; it runs the
     * shutdown actions, stops every process and unmounts. */
    if (getpid() == 1 || kill(1, reboot_it ? SIGTERM : SIGUSR2) < 0) {
        glog("cannot signal init (%s), calling reboot(2)", strerror(errno));
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
static void handle_frames(struct guest_agent *a, const struct options *o,
                          struct ratelimit *rl, bool *shutdown_pending,
                          int64_t *fallback_at)
{
    char why[160];
    enum guest_event ev;

    while ((ev = guest_agent_step(a, mono_us(), why, sizeof(why))) != GUEST_EV_NONE) {
        switch (ev) {
        case GUEST_EV_HOST_HELLO:
            glog("host hello: heartbeat every %" PRIu32 " ms", a->heartbeat_ms);
            break;
        case GUEST_EV_SHUTDOWN:
            do_shutdown(a->shutdown_action, o->no_poweroff, shutdown_pending,
                        fallback_at);
            break;
        case GUEST_EV_BAD:
        case GUEST_EV_IGNORED:
            if (ratelimit_ok(rl, mono_us()))
                glog("from host: %s", why);
            break;
        default:
            break;
        }
    }
}

static void session(int fd, const char *path, struct guest_agent *a,
                    const struct options *o, struct nf_counter *counter)
{
    struct ratelimit rl = {0};
    bool connected, shutdown_pending = false;
    int64_t fallback_at = 0;
    sigset_t during_poll;
    int c;

    sigprocmask(SIG_BLOCK, NULL, &during_poll);
    sigdelset(&during_poll, SIGIO);
    sigdelset(&during_poll, SIGUSR1);
    /* The kernel signals a change of the host's connection (O_ASYNC). */
    if (fcntl(fd, F_SETOWN, getpid()) < 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC) < 0)
        glog("cannot enable SIGIO on %s: %s (falling back to heartbeat ticks)", path,
             strerror(errno));

    guest_agent_reset_io(a);
    c = host_connected(fd);
    if (c < 0)
        return;
    connected = c == 1;
    glog("port %s: host %s", path, connected ? "connected" : "not connected");
    if (connected)
        guest_agent_queue_hello(a, mono_us());

    for (;;) {
        struct pollfd p = {.fd = -1};
        struct timespec ts;
        int64_t now = mono_us(), wake;
        int rc;

        if (shutdown_pending && now >= fallback_at) {
            glog("init did not stop the guest, calling reboot(2)");
            sync();
            reboot(a->shutdown_action == PROTO_SHUTDOWN_REBOOT ? RB_AUTOBOOT
                                                               : RB_POWER_OFF);
            shutdown_pending = false;
        }
        if (!counter->map)
            nf_counter_open_ro(counter, o->counter_path);
        if (guest_agent_tick(a, now, nf_counter_get(counter), connected) && !connected)
            g_sigio = 1; /* fallback: look at the port once per tick */
        if (!connected && g_sigio) {
            g_sigio = 0;
            c = host_connected(fd);
            if (c < 0)
                return;
            if (c == 1) {
                connected = true;
                glog("host connected");
                guest_agent_reset_io(a);
                guest_agent_queue_hello(a, now);
            }
        }
        if (g_garbage) {
            g_garbage = 0;
            if (connected) {
                size_t n = guest_agent_queue_garbage(a);
                glog("test hook: sent the host %zu bytes of malformed frames", n);
            }
        }
        if (connected) {
            rc = flush_out(fd, a);
            if (rc < 0)
                return;
            if (rc > 0) {
                connected = false;
                guest_agent_reset_io(a);
                glog("host disconnected (write)");
            }
        }

        wake = a->next_hb_us;
        if (shutdown_pending && fallback_at < wake)
            wake = fallback_at;
        if (wake < now)
            wake = now;
        ts.tv_sec = (wake - now) / 1000000;
        ts.tv_nsec = ((wake - now) % 1000000) * 1000;
        if (connected) {
            p.fd = fd;
            p.events = POLLIN | (a->out_len ? POLLOUT : 0);
        }
        rc = ppoll(&p, 1, &ts, &during_poll);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            glog("ppoll: %s", strerror(errno));
            return;
        }
        if (rc == 0 || p.fd < 0)
            continue;
        if (p.revents & POLLNVAL)
            return;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            /* handle_frames() drains the reader, so there is always room.
             * A bounded number of reads, so a flooding host cannot starve
             * the heartbeats. */
            int reads = 0;
            do {
                rc = read_once(fd, a);
                handle_frames(a, o, &rl, &shutdown_pending, &fallback_at);
            } while (rc == 0 && ++reads < 64);
            if (rc < 0)
                return;
            if (rc == 1 || (rc == 2 && (p.revents & POLLHUP))) {
                connected = false;
                guest_agent_reset_io(a);
                glog("host disconnected");
            }
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cgv-guest [--port DEV] [--sysfs DIR] [--cmdline FILE]\n"
            "                 [--counter FILE] [--no-poweroff]\n"
            "       cgv-guest --cmdline-env [FILE]\n"
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
        {"no-poweroff", no_argument, NULL, 'n'},
        {"cmdline-env", no_argument, NULL, 'e'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct options o = {
        .cmdline_path = "/proc/cmdline",
        .sysfs_dir = GUEST_SYSFS_PORTS,
        .counter_path = NF_COUNTER_PATH,
    };
    struct guest_cmdline kc;
    struct nf_counter counter = {0};
    struct guest_agent a;
    struct sigaction sa;
    char cmdline[4096], why[160];
    bool env_mode = false;
    sigset_t block;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': o.port_path = optarg; break;
        case 's': o.sysfs_dir = optarg; break;
        case 'k': o.cmdline_path = optarg; break;
        case 'c': o.counter_path = optarg; break;
        case 'n': o.no_poweroff = true; break;
        case 'e': env_mode = true; break;
        case 'V': printf("cgv-guest %s\n", CGV_GUEST_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
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

    glog("cgv-guest %s starting, vm %s", CGV_GUEST_VERSION, kc.name);
    if (kc.n_bad)
        glog("kernel command line: %s", why);

    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigio;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGIO, &sa, NULL);
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, NULL);
    /* SIGIO and SIGUSR1 are only let in while waiting in ppoll(). */
    sigemptyset(&block);
    sigaddset(&block, SIGIO);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);

    guest_agent_init(&a, kc.name, CGV_GUEST_VERSION, random_u64(), mono_us());
    for (;;) {
        char path[256];
        int fd = open_port(&o, path, sizeof(path));

        glog("found port %s", path);
        session(fd, path, &a, &o, &counter);
        glog("port %s failed, looking for it again", path);
        close(fd);
        usleep(100 * 1000);
    }
}
