/* cgvd.c — the cgv host daemon: options, start-up, the loop, shut-down.
 *
 * Start-up order: lock the state directory (one cgvd per state), open the
 * store, pick the acceleration, make sure the network bridge exists, open
 * the API socket, then load the state and adopt running domains. A cgvd
 * that stops (or is killed) leaves every VM running; the next one adopts
 * them. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_server.h"
#include "cgv_log.h"
#include "evlog.h"
#include "hv.h"
#include "hv_accel.h"
#include "jobs.h"
#include "loop.h"
#include "net.h"
#include "store.h"
#include "vmm.h"

#define LOG_MODULE "cgvd"

struct cgvd_opts {
    const char *socket;
    const char *state_dir;
    const char *run_dir;
    const char *log_dir;
    const char *image_dir;
    const char *uri;
    const char *pid_dir;
    const char *prefix;
    const char *net_name;
    const char *bridge;
    const char *gateway;
    const char *pool;
    const char *log_file;
    const char *pidfile;
    const char *log_level;
    const char *housekeeping;
    unsigned stop_timeout_ms;
    unsigned workers;
    bool daemon;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cgvd [OPTIONS]\n"
            "The cgv host daemon: runs services' VMs through libvirt and serves the\n"
            "cgv API on a Unix socket. Running VMs survive a cgvd restart.\n\n"
            "  --socket PATH         API socket (default /run/cgv/cgvd.sock)\n"
            "  --state-dir DIR       database and saved images (default /var/lib/cgv)\n"
            "  --run-dir DIR         per-VM sockets (default /run/cgv)\n"
            "  --log-dir DIR         VM console logs (default /var/log/cgv)\n"
            "  --image-dir DIR       guest images (default /var/lib/cgv/images)\n"
            "  --libvirt-uri URI     (default qemu:///system)\n"
            "  --libvirt-pid-dir DIR where libvirt keeps <domain>.pid (default /run/libvirt/qemu)\n"
            "  --domain-prefix P     libvirt domain name prefix (default cgv-)\n"
            "  --network NAME        name specs use for the host network (default default)\n"
            "  --bridge NAME         its Linux bridge (default cgvbr0)\n"
            "  --gateway CIDR        the host's address on it (default 10.77.0.1/24)\n"
            "  --pool FIRST-LAST     VM address pool (default 10.77.0.100-10.77.0.199)\n"
            "  --stop-timeout-ms N   graceful stop/reboot before forcing (default 30000)\n"
            "  --housekeeping-cpus L CPUs for cgvd, libvirt and VMs' emulator threads\n"
            "                        (default: the first core and its SMT siblings)\n"
            "  --workers N           threads for libvirt calls (default 4)\n"
            "  --log-level L         debug|info|warn|error (default info)\n"
            "  --log-file PATH       log here instead of stderr\n"
            "  --daemon              go to the background once serving\n"
            "  --pidfile PATH        write the pid here\n"
            "  -h, --help            this text\n"
            "  --version             print the version\n");
}

static int parse_opts(int argc, char **argv, struct cgvd_opts *o)
{
    enum {
        O_SOCKET = 256, O_STATE, O_RUN, O_LOGDIR, O_IMAGE, O_URI, O_PIDDIR, O_PREFIX, O_NET,
        O_BRIDGE, O_GW, O_POOL, O_STOPTO, O_WORKERS, O_LEVEL, O_LOGFILE, O_DAEMON,
        O_PIDFILE, O_VERSION, O_HK,
    };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, O_SOCKET},
        {"state-dir", required_argument, NULL, O_STATE},
        {"run-dir", required_argument, NULL, O_RUN},
        {"log-dir", required_argument, NULL, O_LOGDIR},
        {"image-dir", required_argument, NULL, O_IMAGE},
        {"libvirt-uri", required_argument, NULL, O_URI},
        {"libvirt-pid-dir", required_argument, NULL, O_PIDDIR},
        {"domain-prefix", required_argument, NULL, O_PREFIX},
        {"network", required_argument, NULL, O_NET},
        {"bridge", required_argument, NULL, O_BRIDGE},
        {"gateway", required_argument, NULL, O_GW},
        {"pool", required_argument, NULL, O_POOL},
        {"stop-timeout-ms", required_argument, NULL, O_STOPTO},
        {"workers", required_argument, NULL, O_WORKERS},
        {"log-level", required_argument, NULL, O_LEVEL},
        {"log-file", required_argument, NULL, O_LOGFILE},
        {"daemon", no_argument, NULL, O_DAEMON},
        {"pidfile", required_argument, NULL, O_PIDFILE},
        {"version", no_argument, NULL, O_VERSION},
        {"housekeeping-cpus", required_argument, NULL, O_HK},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    char *end;
    unsigned long v;

    *o = (struct cgvd_opts){
        .socket = "/run/cgv/cgvd.sock",
        .state_dir = "/var/lib/cgv",
        .run_dir = "/run/cgv",
        .log_dir = "/var/log/cgv",
        .image_dir = "/var/lib/cgv/images",
        .uri = "qemu:///system",
        .pid_dir = NULL,
        .prefix = "cgv-",
        .net_name = "default",
        .bridge = "cgvbr0",
        .gateway = "10.77.0.1/24",
        .pool = "10.77.0.100-10.77.0.199",
        .log_level = "info",
        .stop_timeout_ms = 30000,
        .workers = 4,
    };
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_SOCKET: o->socket = optarg; break;
        case O_STATE: o->state_dir = optarg; break;
        case O_RUN: o->run_dir = optarg; break;
        case O_LOGDIR: o->log_dir = optarg; break;
        case O_IMAGE: o->image_dir = optarg; break;
        case O_URI: o->uri = optarg; break;
        case O_PIDDIR: o->pid_dir = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_NET: o->net_name = optarg; break;
        case O_BRIDGE: o->bridge = optarg; break;
        case O_GW: o->gateway = optarg; break;
        case O_POOL: o->pool = optarg; break;
        case O_LEVEL: o->log_level = optarg; break;
        case O_LOGFILE: o->log_file = optarg; break;
        case O_DAEMON: o->daemon = true; break;
        case O_PIDFILE: o->pidfile = optarg; break;
        case O_HK: o->housekeeping = optarg; break;
        case O_STOPTO:
        case O_WORKERS:
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (errno || *end || v == 0 || v > 3600000 || (c == O_WORKERS && v > 64)) {
                fprintf(stderr, "cgvd: bad number '%s'\n", optarg);
                return -1;
            }
            if (c == O_STOPTO)
                o->stop_timeout_ms = (unsigned)v;
            else
                o->workers = (unsigned)v;
            break;
        case O_VERSION:
            printf("cgvd %s\n", CGV_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cgvd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    for (const char *p = o->prefix; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            fprintf(stderr, "cgvd: domain prefix may hold only [a-z0-9-]\n");
            return -1;
        }
    }
    return 0;
}

/* Real-time vCPUs must never starve the rest of the host: the kernel's RT
 * throttling keeps 5% of every period for other tasks. A host where it is
 * off (-1) gets it back on, and says so. */
static void check_rt_throttling(void)
{
    const char *path = "/proc/sys/kernel/sched_rt_runtime_us";
    char *text = NULL;

    if (cgv_read_file(path, 64, &text, NULL, NULL) < 0)
        return;
    if (atol(text) < 0) {
        struct cgv_error err = {0};
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "950000", 6) != 6)
            cgv_err(&err, CGV_E_IO, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        if (err.code)
            log_warn("RT throttling is off and cannot be turned on (%s): real-time vCPUs "
                     "could starve the host",
                     err.msg);
        else
            log_warn("RT throttling was off: set %s to 950000 so real-time vCPUs leave "
                     "5%% of each second to the rest",
                     path);
    } else {
        log_info("RT throttling: %ld us of each RT period for real-time tasks", atol(text));
    }
    free(text);
}

/* One cgvd per state directory: an flock held for the process lifetime. */
static int lock_state(const char *state_dir, struct cgv_error *err)
{
    char path[512];
    int fd;

    snprintf(path, sizeof(path), "%s/cgvd.lock", state_dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return cgv_err(err, CGV_E_CONFLICT,
                       "another cgvd is using %s (lock %s is held)", state_dir, path);
    }
    return fd;
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct signalfd_siginfo si;

    (void)events;
    (void)opaque;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
            fprintf(stderr, "---- cgvd flight recorder ----\n");
            cgv_log_dump_ring(stderr);
            continue;
        }
        log_info("signal %u: shutting down (VMs keep running)", si.ssi_signo);
        loop_quit(l);
    }
}

static void on_hv(struct loop *l, int fd, uint32_t events, void *opaque)
{
    (void)l;
    (void)fd;
    (void)events;
    vmm_handle_hv_events(opaque);
}

/* Fork; the parent waits until the child says it serves (or failed). */
static int daemonize(int *ready_fd)
{
    int p[2];
    pid_t pid;
    char c = 0;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(p[1]);
        if (read(p[0], &c, 1) != 1)
            c = 1;
        _exit(c == 0 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    *ready_fd = p[1];
    return 0;
}

int main(int argc, char **argv)
{
    struct cgvd_opts o;
    struct cgv_error err = {0};
    struct loop *l = NULL;
    struct jobs *jobs = NULL;
    struct store *st = NULL;
    struct evlog *ev = NULL;
    struct hv *hv = NULL;
    struct vmm *vmm = NULL;
    struct api_server *api = NULL;
    struct vmm_config cfg = {0};
    enum cgv_log_level lvl;
    enum hv_accel accel;
    char path[512], why[256];
    int lock_fd = -1, sig_fd = -1, ready_fd = -1, rc = 1;
    FILE *logf = NULL;
    sigset_t sigs;

    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    /* A daemon keeps nothing its caller left open: an inherited lock or
     * pipe would otherwise be held for as long as cgvd runs. */
    if (o.daemon)
        close_range(3, ~0U, 0);
    if (cgv_log_parse_level(o.log_level, &lvl) < 0) {
        fprintf(stderr, "cgvd: unknown log level '%s'\n", o.log_level);
        return 2;
    }
    cgv_log_set_level(lvl);
    if (o.log_file) {
        logf = fopen(o.log_file, "ae");
        if (!logf) {
            fprintf(stderr, "cgvd: open log file %s: %s\n", o.log_file, strerror(errno));
            return 1;
        }
        cgv_log_set_stream(logf);
    }
    if (o.daemon && daemonize(&ready_fd) < 0) {
        fprintf(stderr, "cgvd: cannot go to the background: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    log_info("cgvd %s starting (pid %d)", CGV_VERSION, (int)getpid());
    if (cgv_mkdir_p(o.state_dir, 0700, &err) < 0 || cgv_mkdir_p(o.run_dir, 0755, &err) < 0 ||
        cgv_mkdir_p(o.log_dir, 0755, &err) < 0)
        goto fail;
    snprintf(path, sizeof(path), "%s/vm", o.run_dir);
    if (cgv_mkdir_p(path, 0755, &err) < 0)
        goto fail;
    lock_fd = lock_state(o.state_dir, &err);
    if (lock_fd < 0)
        goto fail;
    if (o.pidfile) {
        char pid[32];
        int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (cgv_write_file_atomic(o.pidfile, pid, (size_t)n, 0644, &err) < 0)
            goto fail;
    }

    snprintf(path, sizeof(path), "%s/cgvd.db", o.state_dir);
    if (store_open(path, &st, &err) < 0)
        goto fail;
    if (evlog_new(st, &ev, &err) < 0)
        goto fail;

    cfg.state_dir = o.state_dir;
    cfg.run_dir = o.run_dir;
    cfg.log_dir = o.log_dir;
    cfg.image_dir = o.image_dir;
    cfg.domain_prefix = o.prefix;
    cfg.stop_timeout_ms = o.stop_timeout_ms;
    cfg.housekeeping = o.housekeeping;
    check_rt_throttling();
    hv_accel_probe_host("/sys", "/dev/kvm", &cfg.probe);
    if (hv_accel_decide(HV_ACCEL_REQ_AUTO, &cfg.probe, &accel, why, sizeof(why), NULL) == 0)
        log_info("acceleration for 'auto': %s", why);
    if (net_def_parse(o.net_name, o.bridge, o.gateway, o.pool, &cfg.net, &err) < 0)
        goto fail;
    if (net_bridge_ensure(&cfg.net, &err) < 0)
        goto fail;
    log_info("network %s: bridge %s, %s, pool %s", o.net_name, o.bridge, o.gateway, o.pool);

    if (loop_new(&l, &err) < 0 || jobs_new(l, o.workers, &jobs, &err) < 0)
        goto fail;
    if (hv_new(o.uri, o.pid_dir, &hv, &err) < 0)
        goto fail;
    if (loop_add_fd(l, hv_event_fd(hv), EPOLLIN, on_hv, NULL, &err) < 0)
        goto fail;
    if (vmm_new(&cfg, l, jobs, hv, st, ev, &vmm, &err) < 0)
        goto fail;
    /* on_hv needs the vmm: re-register with it. */
    loop_del_fd(l, hv_event_fd(hv));
    if (loop_add_fd(l, hv_event_fd(hv), EPOLLIN, on_hv, vmm, &err) < 0)
        goto fail;
    sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0 || loop_add_fd(l, sig_fd, EPOLLIN, on_signal, NULL, &err) < 0) {
        if (sig_fd < 0)
            cgv_err(&err, CGV_E_IO, "signalfd: %s", strerror(errno));
        goto fail;
    }
    if (api_server_new(l, o.socket, vmm, st, ev, &api, &err) < 0)
        goto fail;
    evlog_emit(ev, "info", "cgvd.started", NULL, NULL, "cgvd %s started (pid %d)",
               CGV_VERSION, (int)getpid());
    if (vmm_start(vmm, &err) < 0)
        goto fail;

    if (ready_fd >= 0) {
        char ok = 0;
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (write(ready_fd, &ok, 1) < 0)
            log_warn("readiness pipe: %s", strerror(errno));
        close(ready_fd);
        ready_fd = -1;
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
            if (logf)
                dup2(devnull, STDERR_FILENO);
            close(devnull);
        }
    }
    rc = loop_run(l) < 0 ? 1 : 0;
    evlog_emit(ev, "info", "cgvd.stopping", NULL, NULL, "cgvd stopping; VMs keep running");
    goto cleanup;

fail:
    log_error("%s", err.msg);
    if (!o.log_file || o.daemon)
        fprintf(stderr, "cgvd: %s\n", err.msg);
    if (ready_fd >= 0) {
        char bad = 1;
        if (write(ready_fd, &bad, 1) < 0)
            log_warn("readiness pipe: %s", strerror(errno));
    }
    rc = 1;

cleanup:
    api_server_free(api);
    jobs_free(jobs);
    vmm_free(vmm);
    hv_free(hv);
    evlog_free(ev);
    store_close(st);
    if (sig_fd >= 0)
        close(sig_fd);
    loop_free(l);
    if (o.pidfile && rc == 0)
        unlink(o.pidfile);
    if (lock_fd >= 0)
        close(lock_fd);
    if (logf)
        fclose(logf);
    return rc;
}
