/* lifecycle.c — the VM lifecycle benchmark (docs/BENCH.md).
 *
 * Starts its own cgvd (temporary socket, state, run and log directories,
 * domain prefix "cgvbench-", bridge cgvbench0) and measures, N times each:
 *
 *  - apply -> running: `cgv apply -f` (answers when the VM runs) against
 *    `virsh define --validate` + `virsh start` of an equivalent domain (cgvd's
 *    own domain XML as libvirt stores it, with name, UUID, MAC, owner, paths
 *    and guest name/address changed: see make_virsh_xml());
 *  - apply -> agent hello: the same start until the guest agent's HELLO (cgv:
 *    the agent.hello event through the /v1/events long poll; virsh: the HELLO
 *    frame read from the domain's agent channel socket directly);
 *  - pause / resume / save / restore: `cgv vm OP NAME` against `virsh suspend
 *    / resume / save --running / restore --running`, each a whole process,
 *    spawn to reaping;
 *  - the same through the client library (no process spawn) as "_api";
 *  - cgvd restart re-adoption: cgvd SIGKILLed and restarted until every VM of
 *    a 2-VM service is re-adopted (vm.adopted) and its agent said hello again.
 *
 * cgv and virsh runs are interleaved and alternate which goes first. Every
 * wait is an event or fd wait with a deadline. Everything it created is
 * removed again on success, failure and SIGINT/SIGTERM (the bridge stays).
 *
 * Output: one "key=value" line per figure on stdout; progress on stderr.
 * Percentiles are nearest-rank: the ceil(q*n)-th smallest sample. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_proto.h"
#include "bench_config.h"
#include "cgv_common.h"
#include "client.h"
#include "hv_xml.h"

extern char **environ;

#define PREFIX "cgvbench-"
#define BRIDGE "cgvbench0"
#define GATEWAY "10.79.1.1/24"
#define POOL "10.79.1.100-10.79.1.199"
#define SVC1 "lcb"          /* the 1-VM service of the per-operation figures */
#define SVC1_VM "lcb-0"
#define SVC2 "lcb2"         /* the 2-VM service of the restart figure */
#define VDOM "cgvbenchv-lcb" /* the virsh side's domain */
#define VDOM_VM "virsh-0"
#define VDOM_ADDR "10.79.1.90/24" /* outside cgvd's pool */
#define VDOM_OWNER "cgvbench-virsh" /* not cgvd's owner id: cgvd leaves it alone */
#define MEMORY_MIB 256
#define MAX_RUNS 10000
#define MAX_DISCARDS 3
/* One benchmark at a time: they share domain names, bridge and pool, and the
 * start-up removes leftovers with our names. */
#define LOCK_PATH "/run/lock/cgvbench-lifecycle.lock"

/* ---- signals ------------------------------------------------------------------ */

static volatile sig_atomic_t g_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    g_stop = g_stop + 1;
}

/* ---- samples -------------------------------------------------------------------- */

struct series {
    double *v;
    size_t n, cap;
};

static void series_add(struct series *s, double ms)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = cgv_realloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the ceil(q*n)-th smallest sample (1-based). */
static double series_pct(const struct series *s, double q)
{
    double *c, r;
    size_t rank;

    if (s->n == 0)
        return 0;
    c = cgv_malloc0(s->n * sizeof(*c));
    memcpy(c, s->v, s->n * sizeof(*c));
    qsort(c, s->n, sizeof(*c), cmp_double);
    rank = (size_t)(q * (double)s->n);
    if ((double)rank < q * (double)s->n)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    r = c[rank - 1];
    free(c);
    return r;
}

enum fig { F_APPLY_RUN, F_APPLY_HELLO, F_PAUSE, F_RESUME, F_SAVE, F_RESTORE, F_N };
/* S_CGVD: the duration_ms cgvd puts in its answer to the API call (its own
 * time from taking the request to answering it). */
enum side { S_CGV, S_VIRSH, S_API, S_CGVD, S_N };
enum rfig { R_READOPT, R_SERVING, R_ADOPTED, R_N };

static const char *const fig_names[F_N] = {"apply_to_running", "apply_to_hello", "pause",
                                           "resume", "save", "restore"};
static const char *const side_suffix[S_N] = {"", "_virsh", "_api", "_api_cgvd"};
static const char *const rfig_names[R_N] = {"cgvd_restart_readopt", "cgvd_restart_serving",
                                            "cgvd_restart_adopted"};

/* ---- the benchmark's state ------------------------------------------------------ */

struct bench {
    /* options */
    unsigned runs, warmup;
    unsigned restart_runs;
    const char *cgvd, *cgv, *virsh, *uri, *image_dir, *tmp_base, *cgvd_log_level;
    long boot_timeout_ms, op_timeout_ms;
    bool keep_tmp;

    /* paths */
    char tmp[PATH_MAX];
    char sock[PATH_MAX], state[PATH_MAX], run[PATH_MAX], log[PATH_MAX];
    char pidfile[PATH_MAX], cgvd_log[PATH_MAX], cmd_log[PATH_MAX];
    char spec1[PATH_MAX];
    char vdir[PATH_MAX], vxml[PATH_MAX], vagent[PATH_MAX], vsave[PATH_MAX];
    char *spec1_text, *spec2_text;

    /* live things to clean up */
    struct client *c;
    pid_t cgvd_pid;
    bool svc1_live, svc2_live, vdom_defined;

    char accel[16];
    bool measuring; /* false during warm-up */
    bool cleaning;  /* in cleanup(): run commands despite a stop signal */
    unsigned discarded; /* failed rounds run again */
    struct series fig[F_N][S_N];
    struct series rfig[R_N];
};

static void note(const char *fmt, ...) CGV_PRINTF(1, 2);
static void note(const char *fmt, ...)
{
    va_list ap;

    fputs("lifecycle: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int interrupted(struct cgv_error *err)
{
    return cgv_err(err, CGV_E_INTERNAL, "interrupted");
}

static void record(struct bench *b, enum fig f, enum side s, int64_t us)
{
    if (b->measuring)
        series_add(&b->fig[f][s], (double)us / 1000.0);
}

/* ---- child processes ------------------------------------------------------------ */

/* Wait for child pid to end, at most timeout_ms (then SIGKILL it). A stop
 * signal that arrives while waiting is passed on as SIGTERM once. *status
 * gets the wait status. */
static int wait_child(pid_t pid, long timeout_ms, int *status, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000;
    sig_atomic_t stop0 = g_stop;
    bool forwarded = false, killed = false;
    CGV_AUTOCLOSE int pfd = pidfd_open(pid, 0);

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        int64_t now;
        struct pollfd p;

        if (r == pid)
            break;
        if (r < 0 && errno == ECHILD && pfd >= 0) {
            /* Not our child (we could not become a subreaper): its pidfd
             * polls readable when it has exited. */
            struct pollfd q = {.fd = pfd, .events = POLLIN};
            int64_t left = deadline - cgv_mono_us();
            if (poll(&q, 1, left > 0 ? (int)(left / 1000) : 0) == 1) {
                *status = 0;
                return 0;
            }
            if (cgv_mono_us() >= deadline)
                return cgv_err(err, CGV_E_INTERNAL, "process %d did not end in time",
                               (int)pid);
            continue;
        }
        if (r < 0 && errno != EINTR)
            return cgv_err(err, CGV_E_INTERNAL, "waitpid %d: %s", (int)pid, strerror(errno));
        if (g_stop != stop0 && !forwarded) {
            kill(pid, SIGTERM);
            forwarded = true;
        }
        now = cgv_mono_us();
        if (now >= deadline && !killed) {
            kill(pid, SIGKILL);
            killed = true;
            deadline = now + 10000000; /* reaping a SIGKILLed child */
            continue;
        }
        if (now >= deadline && killed)
            return cgv_err(err, CGV_E_INTERNAL, "process %d does not go away", (int)pid);
        if (pfd < 0) {
            /* No pidfd: block in waitpid (interrupted by signals only). */
            r = waitpid(pid, status, 0);
            if (r == pid)
                break;
            continue;
        }
        p = (struct pollfd){.fd = pfd, .events = POLLIN};
        if (poll(&p, 1, (int)((deadline - now + 999) / 1000)) < 0 && errno != EINTR)
            return cgv_err(err, CGV_E_INTERNAL, "poll on pidfd: %s", strerror(errno));
    }
    if (killed)
        return cgv_err(err, CGV_E_INTERNAL, "timed out after %ld ms; killed", timeout_ms);
    return 0;
}

static void fmt_argv(const char *const *argv, char *buf, size_t cap)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; argv[i] && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? " " : "", argv[i]);
}

/* The tail of the last command's output, for error messages. */
static void cmd_output(struct bench *b, char *buf, size_t cap)
{
    char *text = NULL;
    size_t len = 0;
    const char *p;

    buf[0] = '\0';
    if (cgv_read_file(b->cmd_log, 1u << 20, &text, &len, NULL) < 0)
        return;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    p = len > cap - 1 ? text + len - (cap - 1) : text;
    cgv_strlcpy(buf, p, cap);
    free(text);
}

/* Run argv (PATH lookup) with stdin from /dev/null and stdout+stderr into
 * b->cmd_log; *t0_us and *t1_us: just before the spawn and just after the
 * reaping. Returns 0 when it exited with status 0. */
static int run_cmd(struct bench *b, const char *const *argv, int64_t *t0_us, int64_t *t1_us,
                   struct cgv_error *err)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, rc;
    int64_t t0 = 0, t1 = 0;
    char cmd[512], out[600];

    fmt_argv(argv, cmd, sizeof(cmd));
    if (g_stop && !b->cleaning)
        return interrupted(err);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, b->cmd_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    t0 = cgv_mono_us();
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return cgv_err(err, CGV_E_INTERNAL, "cannot run %s: %s", argv[0], strerror(rc));
    if (wait_child(pid, b->op_timeout_ms, &status, err) < 0) {
        cgv_err_prefix(err, "%s", cmd);
        return -1;
    }
    t1 = cgv_mono_us();
    if (t0_us)
        *t0_us = t0;
    if (t1_us)
        *t1_us = t1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    cmd_output(b, out, sizeof(out));
    if (WIFEXITED(status))
        return cgv_err(err, CGV_E_INTERNAL, "`%s` exited with %d: %s", cmd,
                       WEXITSTATUS(status), out);
    return cgv_err(err, CGV_E_INTERNAL, "`%s` was killed by signal %d", cmd,
                   WTERMSIG(status));
}

/* virsh -c URI ARGS... */
static int virsh(struct bench *b, const char *a1, const char *a2, const char *a3,
                 const char *a4, int64_t *t0, int64_t *t1, struct cgv_error *err)
{
    const char *argv[] = {b->virsh, "-c", b->uri, a1, a2, a3, a4, NULL};
    return run_cmd(b, argv, t0, t1, err);
}

/* ---- cgvd ------------------------------------------------------------------------- */

/* Start cgvd in --daemon mode: its launcher exits 0 once cgvd serves the API,
 * has loaded its state and asked libvirt for the domains to adopt. We are a
 * child subreaper, so the daemon becomes our child and we can reap it. */
static int cgvd_start(struct bench *b, int64_t *serving_us, struct cgv_error *err)
{
    const char *argv[] = {b->cgvd,
                          "--daemon",
                          "--pidfile", b->pidfile,
                          "--socket", b->sock,
                          "--state-dir", b->state,
                          "--run-dir", b->run,
                          "--log-dir", b->log,
                          "--image-dir", b->image_dir,
                          "--libvirt-uri", b->uri,
                          "--domain-prefix", PREFIX,
                          "--bridge", BRIDGE,
                          "--gateway", GATEWAY,
                          "--pool", POOL,
                          "--log-file", b->cgvd_log,
                          "--log-level", b->cgvd_log_level,
                          NULL};
    char *text = NULL;
    long pid;

    unlink(b->pidfile);
    if (run_cmd(b, argv, NULL, serving_us, err) < 0) {
        cgv_err_prefix(err, "starting cgvd (log: %s)", b->cgvd_log);
        return -1;
    }
    if (cgv_read_file(b->pidfile, 64, &text, NULL, err) < 0)
        return -1;
    pid = strtol(text, NULL, 10);
    free(text);
    if (pid <= 1)
        return cgv_err(err, CGV_E_INTERNAL, "bad pid in %s", b->pidfile);
    b->cgvd_pid = (pid_t)pid;
    return 0;
}

/* SIGTERM (or SIGKILL) cgvd and reap it. */
static int cgvd_stop(struct bench *b, int sig, struct cgv_error *err)
{
    int status;

    if (b->cgvd_pid <= 0)
        return 0;
    if (kill(b->cgvd_pid, sig) < 0 && errno != ESRCH)
        return cgv_err(err, CGV_E_INTERNAL, "kill cgvd: %s", strerror(errno));
    if (wait_child(b->cgvd_pid, sig == SIGKILL ? 10000 : 30000, &status, err) < 0) {
        cgv_err_prefix(err, "stopping cgvd");
        b->cgvd_pid = 0;
        return -1;
    }
    b->cgvd_pid = 0;
    return 0;
}

/* ---- events ------------------------------------------------------------------------ */

struct want {
    const char *type;
    const char *vm;
    int64_t at_us; /* when we saw it; 0 = not yet */
    char msg[256];
};

static int last_event_id(struct bench *b, int64_t *id, struct cgv_error *err)
{
    json_t *out = NULL;

    if (client_events(b->c, 0, 0, 1, NULL, NULL, &out, err) < 0)
        return -1;
    *id = json_integer_value(json_object_get(out, "last_id"));
    json_decref(out);
    return 0;
}

static bool is_warning_event(const char *type)
{
    static const char *const bad[] = {"vm.crashed", "vm.op_failed", "vm.missing",
                                      "vm.orphan", "agent.protocol_error", "agent.lost",
                                      "libvirt.disconnected"};

    for (size_t i = 0; type && i < CGV_ARRAY_LEN(bad); i++) {
        if (strcmp(type, bad[i]) == 0)
            return true;
    }
    return false;
}

/* Follow cgvd's events of service after *after (long poll) until every want
 * was seen, at most timeout_ms. */
static int wait_events(struct bench *b, int64_t *after, const char *service, struct want *w,
                       size_t n, long timeout_ms, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000;
    size_t left = 0;

    for (size_t k = 0; k < n; k++)
        left += w[k].at_us == 0;
    while (left > 0) {
        int64_t now = cgv_mono_us(), seen;
        long wait_ms;
        json_t *out = NULL, *evs, *e;
        size_t i;

        if (g_stop)
            return interrupted(err);
        if (now >= deadline) {
            char missing[512];
            size_t off = 0;
            missing[0] = '\0';
            for (size_t k = 0; k < n && off < sizeof(missing); k++) {
                if (!w[k].at_us)
                    off += (size_t)snprintf(missing + off, sizeof(missing) - off, " %s(%s)",
                                            w[k].type, w[k].vm ? w[k].vm : "*");
            }
            return cgv_err(err, CGV_E_INTERNAL, "timed out after %ld ms waiting for:%s",
                           timeout_ms, missing);
        }
        wait_ms = (long)((deadline - now) / 1000);
        if (wait_ms > 30000)
            wait_ms = 30000;
        if (wait_ms < 1)
            wait_ms = 1;
        if (client_events(b->c, *after, wait_ms, 1000, service, NULL, &out, err) < 0)
            return -1;
        seen = cgv_mono_us();
        evs = json_object_get(out, "events");
        json_array_foreach(evs, i, e) {
            int64_t id = json_integer_value(json_object_get(e, "id"));
            const char *type = json_string_value(json_object_get(e, "type"));
            const char *vm = json_string_value(json_object_get(e, "vm"));
            const char *msg = json_string_value(json_object_get(e, "message"));

            if (id > *after)
                *after = id;
            if (!type)
                continue;
            if (is_warning_event(type))
                note("event %s %s: %s", type, vm ? vm : "-", msg ? msg : "");
            for (size_t k = 0; k < n; k++) {
                if (w[k].at_us || strcmp(type, w[k].type) != 0 ||
                    (w[k].vm && (!vm || strcmp(vm, w[k].vm) != 0)))
                    continue;
                w[k].at_us = seen;
                cgv_strlcpy(w[k].msg, msg ? msg : "", sizeof(w[k].msg));
                left--;
                break;
            }
        }
        json_decref(out);
    }
    return 0;
}

/* ---- the virsh side's agent channel -------------------------------------------------- */

/* Connect to the agent channel socket of the virsh domain, say HOST_HELLO
 * like cgvd does, and wait for the agent's HELLO; *at_us: when it came. */
static int chan_wait_hello(const char *path, long timeout_ms, int64_t *at_us,
                           uint64_t *uptime_ms, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct proto_msg m = {.type = PROTO_HOST_HELLO};
    struct proto_reader r;
    uint8_t frame[PROTO_MAX_FRAME];
    CGV_AUTOCLOSE int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int len;

    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    if (cgv_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) < 0)
        return cgv_err(err, CGV_E_INVALID, "socket path too long: %s", path);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        return cgv_err(err, CGV_E_IO, "connect %s: %s", path, strerror(errno));
    m.u.host_hello.version = PROTO_VERSION;
    m.u.host_hello.heartbeat_ms = 1000;
    cgv_strlcpy(m.u.host_hello.vm_name, VDOM_VM, sizeof(m.u.host_hello.vm_name));
    len = proto_encode(&m, frame, sizeof(frame));
    if (len < 0 || send(fd, frame, (size_t)len, MSG_NOSIGNAL) != len)
        return cgv_err(err, CGV_E_IO, "sending HOST_HELLO to %s: %s", path, strerror(errno));
    proto_reader_init(&r);
    for (;;) {
        int64_t now = cgv_mono_us();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        struct proto_msg in;
        char why[128];
        ssize_t got;
        enum proto_next nx;

        if (g_stop)
            return interrupted(err);
        if (now >= deadline)
            return cgv_err(err, CGV_E_INTERNAL,
                           "timed out after %ld ms waiting for the agent's HELLO on %s",
                           timeout_ms, path);
        if (poll(&p, 1, (int)((deadline - now + 999) / 1000)) <= 0)
            continue; /* EINTR or the deadline: checked above */
        got = read(fd, proto_reader_tail(&r), proto_reader_space(&r));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return cgv_err(err, CGV_E_IO, "agent channel %s: %s", path,
                           got == 0 ? "closed" : strerror(errno));
        proto_reader_commit(&r, (size_t)got);
        while ((nx = proto_reader_next(&r, &in, why, sizeof(why))) != PROTO_NEED_MORE) {
            if (nx == PROTO_MSG && in.type == PROTO_HELLO) {
                *at_us = cgv_mono_us();
                *uptime_ms = in.u.hello.uptime_ms;
                return 0;
            }
        }
    }
}

/* ---- one side's steps ------------------------------------------------------------------ */

static int vm_state_is(struct bench *b, const char *vm, const char *want, struct cgv_error *err)
{
    json_t *out = NULL;
    const char *st;
    int rc = 0;

    if (client_vm_get(b->c, vm, &out, err) < 0)
        return -1;
    st = json_string_value(json_object_get(out, "state"));
    if (!st || strcmp(st, want) != 0)
        rc = cgv_err(err, CGV_E_INTERNAL, "%s is %s, expected %s", vm, st ? st : "(none)", want);
    json_decref(out);
    return rc;
}

static int cgv_apply_cli(struct bench *b, struct cgv_error *err)
{
    const char *argv[] = {b->cgv, "--socket", b->sock, "apply", "-f", b->spec1, NULL};
    struct want w = {.type = "agent.hello", .vm = SVC1_VM};
    int64_t after = 0, t0 = 0, t1 = 0;
    char said[600];

    if (last_event_id(b, &after, err) < 0)
        return -1;
    b->svc1_live = true;
    if (run_cmd(b, argv, &t0, &t1, err) < 0)
        return -1;
    cmd_output(b, said, sizeof(said));
    if (!strstr(said, SVC1 ": created"))
        return cgv_err(err, CGV_E_INTERNAL, "`cgv apply` said '%s', expected %s: created",
                       said, SVC1);
    if (wait_events(b, &after, SVC1, &w, 1, b->boot_timeout_ms, err) < 0)
        return -1;
    record(b, F_APPLY_RUN, S_CGV, t1 - t0);
    record(b, F_APPLY_HELLO, S_CGV, w.at_us - t0);
    note("  cgv   apply: running %.0f ms, agent hello %.0f ms (%s)", (double)(t1 - t0) / 1000.0,
         (double)(w.at_us - t0) / 1000.0, w.msg);
    return 0;
}

static int cgv_apply_api(struct bench *b, struct cgv_error *err)
{
    struct want w = {.type = "agent.hello", .vm = SVC1_VM};
    int64_t after = 0, t0 = 0, t1 = 0, server_ms;
    const char *result;
    json_t *out = NULL;

    if (last_event_id(b, &after, err) < 0)
        return -1;
    b->svc1_live = true;
    t0 = cgv_mono_us();
    if (client_apply(b->c, b->spec1_text, strlen(b->spec1_text), NULL, false, &out, err) < 0)
        return -1;
    t1 = cgv_mono_us();
    server_ms = json_integer_value(json_object_get(out, "duration_ms"));
    result = json_string_value(json_object_get(out, "result"));
    if (!result || strcmp(result, "created") != 0) {
        cgv_err(err, CGV_E_INTERNAL, "apply answered result '%s', expected 'created'",
                result ? result : "(none)");
        json_decref(out);
        return -1;
    }
    json_decref(out);
    if (wait_events(b, &after, SVC1, &w, 1, b->boot_timeout_ms, err) < 0)
        return -1;
    record(b, F_APPLY_RUN, S_API, t1 - t0);
    record(b, F_APPLY_RUN, S_CGVD, server_ms * 1000);
    record(b, F_APPLY_HELLO, S_API, w.at_us - t0);
    note("  api   apply: running %.0f ms, agent hello %.0f ms", (double)(t1 - t0) / 1000.0,
         (double)(w.at_us - t0) / 1000.0);
    return 0;
}

static int virsh_apply(struct bench *b, struct cgv_error *err)
{
    int64_t t0 = 0, ta = 0, tb = 0, t1 = 0, hello = 0;
    uint64_t uptime = 0;

    b->vdom_defined = true;
    if (virsh(b, "define", "--validate", b->vxml, NULL, &t0, &ta, err) < 0 ||
        virsh(b, "start", VDOM, NULL, NULL, &tb, &t1, err) < 0)
        return -1;
    if (chan_wait_hello(b->vagent, b->boot_timeout_ms, &hello, &uptime, err) < 0)
        return -1;
    record(b, F_APPLY_RUN, S_VIRSH, t1 - t0);
    record(b, F_APPLY_HELLO, S_VIRSH, hello - t0);
    note("  virsh apply: running %.0f ms (define %.0f + start %.0f), agent hello %.0f ms "
         "(guest uptime %" PRIu64 " ms)",
         (double)(t1 - t0) / 1000.0, (double)(ta - t0) / 1000.0, (double)(t1 - tb) / 1000.0,
         (double)(hello - t0) / 1000.0, uptime);
    return 0;
}

/* The per-VM operations, in the order they run. */
static const struct op_desc {
    const char *cgv;     /* cgv vm OP / API op */
    const char *virsh;   /* virsh command */
    const char *state;   /* cgv state afterwards */
    enum fig fig;
} op_descs[] = {
    {"pause", "suspend", "paused", F_PAUSE},
    {"resume", "resume", "running", F_RESUME},
    {"save", "save", "saved", F_SAVE},
    {"restore", "restore", "running", F_RESTORE},
};

static int cgv_op_cli(struct bench *b, const struct op_desc *op, struct cgv_error *err)
{
    const char *argv[] = {b->cgv, "--socket", b->sock, "vm", op->cgv, SVC1_VM, NULL};
    int64_t t0 = 0, t1 = 0;

    if (run_cmd(b, argv, &t0, &t1, err) < 0 || vm_state_is(b, SVC1_VM, op->state, err) < 0)
        return -1;
    record(b, op->fig, S_CGV, t1 - t0);
    note("  cgv   %-7s %7.1f ms", op->cgv, (double)(t1 - t0) / 1000.0);
    return 0;
}

static int cgv_op_api(struct bench *b, const struct op_desc *op, struct cgv_error *err)
{
    int64_t t0 = 0, t1 = 0, server_ms;
    json_t *out = NULL;

    if (g_stop)
        return interrupted(err);
    t0 = cgv_mono_us();
    if (client_vm_op(b->c, SVC1_VM, op->cgv, 0, &out, err) < 0)
        return -1;
    t1 = cgv_mono_us();
    server_ms = json_integer_value(json_object_get(out, "duration_ms"));
    json_decref(out);
    if (vm_state_is(b, SVC1_VM, op->state, err) < 0)
        return -1;
    record(b, op->fig, S_API, t1 - t0);
    record(b, op->fig, S_CGVD, server_ms * 1000);
    note("  api   %-7s %7.1f ms (cgvd: %" PRId64 " ms)", op->cgv, (double)(t1 - t0) / 1000.0,
         server_ms);
    return 0;
}

static int virsh_op(struct bench *b, const struct op_desc *op, struct cgv_error *err)
{
    int64_t t0 = 0, t1 = 0;
    int rc;

    if (op->fig == F_SAVE) {
        unlink(b->vsave);
        rc = virsh(b, "save", VDOM, b->vsave, "--running", &t0, &t1, err);
    } else if (op->fig == F_RESTORE) {
        rc = virsh(b, "restore", b->vsave, "--running", NULL, &t0, &t1, err);
        unlink(b->vsave);
    } else {
        rc = virsh(b, op->virsh, VDOM, NULL, NULL, &t0, &t1, err);
    }
    if (rc < 0)
        return -1;
    record(b, op->fig, S_VIRSH, t1 - t0);
    note("  virsh %-7s %7.1f ms", op->virsh, (double)(t1 - t0) / 1000.0);
    return 0;
}

static void virsh_remove(struct bench *b, const char *dom)
{
    struct cgv_error ignore = {0};

    /* Either may fail (not running, not defined): that is fine. */
    (void)virsh(b, "destroy", dom, NULL, NULL, NULL, NULL, &ignore);
    cgv_err_clear(&ignore);
    (void)virsh(b, "undefine", dom, "--managed-save", NULL, NULL, NULL, &ignore);
}

/* Delete svc; 0 only when cgvd then says it does not exist. */
static int svc_delete(struct bench *b, const char *svc, struct cgv_error *err)
{
    json_t *out = NULL;

    if (client_service_delete(b->c, svc, &out, err) < 0) {
        if (err->code != CGV_E_NOTFOUND)
            return -1;
        cgv_err_clear(err);
    }
    json_decref(out);
    out = NULL;
    if (client_service_get(b->c, svc, &out, err) == 0) {
        json_decref(out);
        /* CGV_E_CONFLICT: svc_delete_retry() waits and tries again. */
        return cgv_err(err, CGV_E_CONFLICT, "service %s still exists after its delete", svc);
    }
    if (err->code != CGV_E_NOTFOUND)
        return -1;
    cgv_err_clear(err);
    return 0;
}

/* In clean-up: wait up to ms for cgvd's next event (of svc, or any). It is
 * what we wait on before trying again: the end of an operation we
 * interrupted, or libvirt.connected after libvirtd came back. Returns at once
 * when cgvd cannot be asked. */
static void cleanup_wait(struct bench *b, const char *svc, long ms)
{
    struct cgv_error e = {0};
    int64_t after = 0;
    json_t *out = NULL;

    if (!b->c || b->cgvd_pid <= 0 || last_event_id(b, &after, &e) < 0 ||
        client_events(b->c, after, ms, 1, svc, NULL, &out, &e) < 0)
        return;
    json_decref(out);
}

/* In clean-up: delete svc through cgvd; while it is busy with an operation
 * we interrupted (409) or cannot reach libvirt (libvirtd restarting), wait
 * and try again, for up to a minute. */
static int svc_delete_retry(struct bench *b, const char *svc, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + 60000000;

    for (;;) {
        enum cgv_errcode code;

        cgv_err_clear(err);
        if (svc_delete(b, svc, err) == 0)
            return 0;
        code = err->code;
        /* No HTTP answer at all: cgvd is gone, waiting will not help. */
        if ((code != CGV_E_CONFLICT && code != CGV_E_LIBVIRT && code != CGV_E_UNAVAIL) ||
            client_last_status(b->c) == 0 || cgv_mono_us() >= deadline || b->cgvd_pid <= 0)
            return -1;
        note("cleaning up: deleting %s: %s; trying again", svc, err->msg);
        cleanup_wait(b, code == CGV_E_CONFLICT ? svc : NULL, 2000);
    }
}

/* true if libvirt says dom does not exist (not: libvirt cannot be asked). */
static bool virsh_gone(struct bench *b, const char *dom)
{
    struct cgv_error e = {0};
    char out[600];

    if (virsh(b, "domstate", dom, NULL, NULL, NULL, NULL, &e) == 0)
        return false;
    cmd_output(b, out, sizeof(out));
    return strstr(out, "failed to get domain") || strstr(out, "Domain not found");
}

/* In clean-up: destroy and undefine dom until libvirt says it is gone (a
 * libvirtd restart may refuse the first tries), at most 30 tries. */
static void virsh_remove_retry(struct bench *b, const char *dom)
{
    for (int i = 0; i < 30; i++) {
        virsh_remove(b, dom);
        if (virsh_gone(b, dom))
            return;
        note("cleaning up: domain %s is still there; trying again", dom);
        cleanup_wait(b, NULL, 2000);
    }
    note("cleaning up: could not remove domain %s; remove it with "
         "`virsh destroy %s; virsh undefine %s --managed-save`",
         dom, dom, dom);
}

/* ---- phases -------------------------------------------------------------------------- */

static int one_run(struct bench *b, unsigned i, struct cgv_error *err)
{
    bool cgv_first = i % 2 == 0;

    /* apply: cgv CLI and virsh, alternating which goes first */
    for (int k = 0; k < 2; k++) {
        int rc = (k == 0) == cgv_first ? cgv_apply_cli(b, err) : virsh_apply(b, err);
        if (rc < 0)
            return -1;
    }
    /* pause resume save restore: CLI vs virsh, interleaved */
    for (size_t o = 0; o < CGV_ARRAY_LEN(op_descs); o++) {
        for (int k = 0; k < 2; k++) {
            int rc = (k == 0) == cgv_first ? cgv_op_cli(b, &op_descs[o], err)
                                           : virsh_op(b, &op_descs[o], err);
            if (rc < 0)
                return -1;
        }
    }
    /* the same operations through the client library */
    for (size_t o = 0; o < CGV_ARRAY_LEN(op_descs); o++) {
        if (cgv_op_api(b, &op_descs[o], err) < 0)
            return -1;
    }
    virsh_remove(b, VDOM);
    b->vdom_defined = false;
    if (svc_delete(b, SVC1, err) < 0)
        return -1;
    b->svc1_live = false;
    /* apply through the client library */
    if (cgv_apply_api(b, err) < 0 || svc_delete(b, SVC1, err) < 0)
        return -1;
    b->svc1_live = false;
    return 0;
}

/* The boot id in an agent.hello message ("agent 0.1.0 up (boot 9f..., ..."),
 * or "" if there is none. Points into a static buffer. */
static const char *boot_id(const char *msg)
{
    static char id[2][32];
    static int slot;
    const char *p = strstr(msg, "(boot ");
    char *out = id[slot++ % 2];

    out[0] = '\0';
    if (p) {
        p += strlen("(boot ");
        cgv_strlcpy(out, p, 32);
        out[strcspn(out, ",)")] = '\0';
    }
    return out;
}

static int restart_phase(struct bench *b, struct cgv_error *err)
{
    const char *vms[2] = {SVC2 "-0", SVC2 "-1"};
    struct want boot[2] = {{.type = "agent.hello", .vm = vms[0]},
                           {.type = "agent.hello", .vm = vms[1]}};
    int64_t after;
    json_t *out = NULL;

    note("restart re-adoption: applying %s (2 VMs)", SVC2);
    if (last_event_id(b, &after, err) < 0)
        return -1;
    b->svc2_live = true;
    if (client_apply(b->c, b->spec2_text, strlen(b->spec2_text), NULL, false, &out, err) < 0)
        return -1;
    if (!json_string_value(json_object_get(out, "result")) ||
        strcmp(json_string_value(json_object_get(out, "result")), "created") != 0) {
        json_decref(out);
        return cgv_err(err, CGV_E_INTERNAL, "apply of %s did not create it", SVC2);
    }
    json_decref(out);
    if (wait_events(b, &after, SVC2, boot, 2, b->boot_timeout_ms, err) < 0)
        return -1;
    for (unsigned i = 0; i < b->restart_runs; i++) {
        struct want w[4] = {{.type = "vm.adopted", .vm = vms[0]},
                            {.type = "vm.adopted", .vm = vms[1]},
                            {.type = "agent.hello", .vm = vms[0]},
                            {.type = "agent.hello", .vm = vms[1]}};
        int64_t t0, serving, adopted = 0, all = 0;

        if (last_event_id(b, &after, err) < 0)
            return -1;
        t0 = cgv_mono_us();
        if (cgvd_stop(b, SIGKILL, err) < 0 || cgvd_start(b, &serving, err) < 0)
            return -1;
        if (wait_events(b, &after, SVC2, w, 4, b->op_timeout_ms, err) < 0)
            return -1;
        for (int k = 0; k < 4; k++) {
            if (k < 2 && w[k].at_us > adopted)
                adopted = w[k].at_us;
            if (w[k].at_us > all)
                all = w[k].at_us;
            /* A new cgvd does not know the boot ids (it says "same boot" only
             * on a reconnect within one cgvd): compare them ourselves. */
            if (k >= 2 && strcmp(boot_id(w[k].msg), boot_id(boot[k - 2].msg)) != 0)
                note("warning: %s: the agent's hello after the restart is from another "
                     "boot than before (%s, before: %s): did the VM restart?",
                     w[k].vm, w[k].msg, boot[k - 2].msg);
        }
        series_add(&b->rfig[R_READOPT], (double)(all - t0) / 1000.0);
        series_add(&b->rfig[R_SERVING], (double)(serving - t0) / 1000.0);
        series_add(&b->rfig[R_ADOPTED], (double)(adopted - t0) / 1000.0);
        note("restart %u/%u: serving %.0f ms, all adopted %.0f ms, all agents up %.0f ms",
             i + 1, b->restart_runs, (double)(serving - t0) / 1000.0,
             (double)(adopted - t0) / 1000.0, (double)(all - t0) / 1000.0);
    }
    if (svc_delete(b, SVC2, err) < 0)
        return -1;
    b->svc2_live = false;
    return 0;
}

/* false (and a note why) if cgvd has exited. */
static bool cgvd_alive(struct bench *b)
{
    int status;

    if (b->cgvd_pid <= 0)
        return false;
    if (waitpid(b->cgvd_pid, &status, WNOHANG) != b->cgvd_pid)
        return true;
    if (WIFSIGNALED(status))
        note("cgvd (pid %d) was killed by signal %d; see %s", (int)b->cgvd_pid,
             WTERMSIG(status), b->cgvd_log);
    else
        note("cgvd (pid %d) exited with %d; see %s", (int)b->cgvd_pid, WEXITSTATUS(status),
             b->cgvd_log);
    b->cgvd_pid = 0;
    return false;
}

/* After a failed round: remove what it left (service, virsh domain, image). */
static int round_recover(struct bench *b, struct cgv_error *err)
{
    if (b->svc1_live) {
        if (svc_delete_retry(b, SVC1, err) < 0) {
            cgv_err_prefix(err, "recovering from a failed round: deleting %s", SVC1);
            return -1;
        }
        b->svc1_live = false;
    }
    if (b->vdom_defined) {
        virsh_remove_retry(b, VDOM);
        if (!virsh_gone(b, VDOM))
            return cgv_err(err, CGV_E_LIBVIRT,
                           "recovering from a failed round: cannot remove %s", VDOM);
        b->vdom_defined = false;
    }
    unlink(b->vsave);
    return 0;
}

/* ---- set-up and clean-up ------------------------------------------------------------- */

static int read_uuid(char out[37], struct cgv_error *err)
{
    char *text = NULL;
    int rc;

    if (cgv_read_file("/proc/sys/kernel/random/uuid", 64, &text, NULL, err) < 0)
        return -1;
    text[strcspn(text, "\n")] = '\0';
    rc = cgv_strlcpy(out, text, 37) < 0 || strlen(text) != 36
             ? cgv_err(err, CGV_E_INTERNAL, "bad uuid '%s'", text)
             : 0;
    free(text);
    return rc;
}

/* Set the text of every node xpath selects (elements: content, attributes:
 * value); -1 if it selects none and err is not NULL (a required node). */
static int xml_set(xmlXPathContextPtr ctx, const char *xpath, const char *value,
                   struct cgv_error *err)
{
    xmlXPathObjectPtr r = xmlXPathEvalExpression(BAD_CAST xpath, ctx);
    int n = r && r->nodesetval ? r->nodesetval->nodeNr : 0;

    for (int i = 0; i < n; i++) {
        xmlNodePtr node = r->nodesetval->nodeTab[i];
        xmlChar *esc = xmlEncodeSpecialChars(node->doc, BAD_CAST value);
        xmlNodeSetContent(node, esc);
        xmlFree(esc);
    }
    xmlXPathFreeObject(r);
    if (n == 0 && err)
        return cgv_err(err, CGV_E_INTERNAL, "cgvd's domain XML has no %s", xpath);
    return 0;
}

/* cgvd's kernel command line with our VM name and address. */
static char *virsh_cmdline(const char *cgvd_cmdline)
{
    char *copy = cgv_strdup(cgvd_cmdline), *save = NULL, *out = cgv_strdup("");

    for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *next;
        if (strncmp(tok, "cgv.name=", 9) == 0)
            next = cgv_asprintf("%s%scgv.name=%s", out, *out ? " " : "", VDOM_VM);
        else if (strncmp(tok, "cgv.net0=", 9) == 0)
            next = cgv_asprintf("%s%scgv.net0=%s", out, *out ? " " : "", VDOM_ADDR);
        else
            next = cgv_asprintf("%s%s%s", out, *out ? " " : "", tok);
        free(out);
        out = next;
    }
    free(copy);
    return out;
}

/* The virsh side's domain: cgvd's own domain XML of a 1-VM service as
 * libvirt stores it (virsh dumpxml --inactive), so that both sides run the
 * identical definition whatever cgvd puts in it, with only its identity
 * changed: name, UUID, MAC, metadata owner (so cgvd leaves it alone), socket
 * and log paths, and the cgv.name/cgv.net0 kernel arguments. */
static int make_virsh_xml(struct bench *b, struct cgv_error *err)
{
    char uuid[37], mac[18], csock[PATH_MAX], clog[PATH_MAX];
    char *dumped = NULL, *cmdline = NULL;
    xmlDocPtr doc = NULL;
    xmlXPathContextPtr ctx = NULL;
    xmlXPathObjectPtr r = NULL;
    xmlChar *mem = NULL;
    json_t *out = NULL;
    int size = 0, rc = -1;

    if (read_uuid(uuid, err) < 0)
        return -1;
    hv_mac_from_uuid(uuid, 0, mac);
    snprintf(csock, sizeof(csock), "%s/console.sock", b->vdir);
    snprintf(clog, sizeof(clog), "%s/console.log", b->vdir);

    b->svc1_live = true;
    /* cgvd may just be (re)connecting to libvirt: wait for that a few times. */
    for (int i = 0;; i++) {
        if (client_apply(b->c, b->spec1_text, strlen(b->spec1_text), NULL, false, &out,
                         err) == 0)
            break;
        if ((err->code != CGV_E_UNAVAIL && err->code != CGV_E_LIBVIRT) || i >= 10 || g_stop)
            goto cleanup;
        note("applying %s: %s; trying again", SVC1, err->msg);
        cgv_err_clear(err);
        cleanup_wait(b, NULL, 2000);
    }
    if (virsh(b, "dumpxml", "--inactive", PREFIX SVC1_VM, NULL, NULL, NULL, err) < 0 ||
        cgv_read_file(b->cmd_log, 1u << 20, &dumped, NULL, err) < 0 ||
        svc_delete(b, SVC1, err) < 0)
        goto cleanup;
    b->svc1_live = false;

    doc = xmlReadMemory(dumped, (int)strlen(dumped), "domain.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        cgv_err(err, CGV_E_INTERNAL, "virsh dumpxml %s%s: not XML", PREFIX, SVC1_VM);
        goto cleanup;
    }
    ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, BAD_CAST "cgv", BAD_CAST HV_META_NS);
    r = xmlXPathEvalExpression(BAD_CAST "/domain/os/cmdline", ctx);
    if (r && r->nodesetval && r->nodesetval->nodeNr == 1) {
        xmlChar *t = xmlNodeGetContent(r->nodesetval->nodeTab[0]);
        cmdline = virsh_cmdline(t ? (const char *)t : "");
        xmlFree(t);
    }
    if (!cmdline) {
        cgv_err(err, CGV_E_INTERNAL, "cgvd's domain XML has no kernel command line");
        goto cleanup;
    }
    if (xml_set(ctx, "/domain/name", VDOM, err) < 0 ||
        xml_set(ctx, "/domain/uuid", uuid, err) < 0 ||
        xml_set(ctx, "/domain/metadata/cgv:instance/cgv:owner", VDOM_OWNER, err) < 0 ||
        xml_set(ctx, "/domain/metadata/cgv:instance/cgv:service", "virsh", err) < 0 ||
        xml_set(ctx, "/domain/metadata/cgv:instance/cgv:vm", VDOM_VM, err) < 0 ||
        xml_set(ctx, "/domain/os/cmdline", cmdline, err) < 0 ||
        xml_set(ctx, "/domain/devices/interface/mac/@address", mac, err) < 0 ||
        xml_set(ctx, "/domain/devices/serial/source/@path", csock, err) < 0 ||
        xml_set(ctx, "/domain/devices/serial/log/@file", clog, err) < 0 ||
        xml_set(ctx, "/domain/devices/console/source/@path", csock, err) < 0 ||
        xml_set(ctx, "/domain/devices/channel/source/@path", b->vagent, err) < 0)
        goto cleanup;
    /* libvirt copies the serial's log to the console in its dump */
    xml_set(ctx, "/domain/devices/console/log/@file", clog, NULL);
    xmlDocDumpMemory(doc, &mem, &size);
    if (!mem || size <= 0) {
        cgv_err(err, CGV_E_INTERNAL, "could not serialise the virsh domain XML");
        goto cleanup;
    }
    rc = cgv_write_file_atomic(b->vxml, mem, (size_t)size, 0644, err);

cleanup:
    json_decref(out);
    xmlFree(mem);
    xmlXPathFreeObject(r);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    free(dumped);
    free(cmdline);
    return rc;
}

static char *spec_text(const char *name, unsigned instances)
{
    return cgv_asprintf("name: %s\n"
                        "instances: %u\n"
                        "vcpus: 1\n"
                        "memory: %uMiB\n"
                        "image: default\n"
                        "acceleration: auto\n"
                        "heartbeat_ms: 1000\n"
                        "networks:\n"
                        "  - network: default\n",
                        name, instances, MEMORY_MIB);
}

static int setup(struct bench *b, struct cgv_error *err)
{
    char tmpl[PATH_MAX];
    json_t *health = NULL;
    const char *accel, *why;
    struct sockaddr_un sun;

    snprintf(tmpl, sizeof(tmpl), "%s/cgvbench.XXXXXX", b->tmp_base);
    if (!mkdtemp(tmpl))
        return cgv_err(err, CGV_E_IO, "mkdtemp %s: %s", tmpl, strerror(errno));
    cgv_strlcpy(b->tmp, tmpl, sizeof(b->tmp));
    chmod(b->tmp, 0755); /* libvirt and QEMU (another user) reach sockets and logs here */
#define P(field, fmt, ...) snprintf(b->field, sizeof(b->field), fmt, __VA_ARGS__)
    P(sock, "%s/run/cgvd.sock", b->tmp);
    P(state, "%s/state", b->tmp);
    P(run, "%s/run", b->tmp);
    P(log, "%s/log", b->tmp);
    P(pidfile, "%s/cgvd.pid", b->tmp);
    P(cgvd_log, "%s/cgvd.log", b->tmp);
    P(cmd_log, "%s/last-command.out", b->tmp);
    P(spec1, "%s/%s.yaml", b->tmp, SVC1);
    P(vdir, "%s/virsh", b->tmp);
    P(vxml, "%s/virsh/domain.xml", b->tmp);
    P(vagent, "%s/virsh/agent.sock", b->tmp);
    P(vsave, "%s/virsh/domain.save", b->tmp);
#undef P
    if (strlen(b->run) + strlen("/vm/" SVC2 "-0/console.sock") >= sizeof(sun.sun_path))
        return cgv_err(err, CGV_E_INVALID, "--tmp-dir %s is too long for socket paths",
                       b->tmp_base);
    if (cgv_mkdir_p(b->vdir, 0755, err) < 0 || cgv_mkdir_p(b->run, 0755, err) < 0)
        return -1;
    b->spec1_text = spec_text(SVC1, 1);
    b->spec2_text = spec_text(SVC2, 2);
    if (cgv_write_file_atomic(b->spec1, b->spec1_text, strlen(b->spec1_text), 0644, err) < 0)
        return -1;
    note("working directory %s", b->tmp);

    /* Leftovers of an interrupted earlier run carry our prefixes: remove. */
    virsh_remove(b, VDOM);
    virsh_remove(b, PREFIX SVC1 "-0");
    virsh_remove(b, PREFIX SVC2 "-0");
    virsh_remove(b, PREFIX SVC2 "-1");

    if (cgvd_start(b, NULL, err) < 0)
        return -1;
    b->c = client_new(b->sock, err);
    if (!b->c)
        return -1;
    client_set_cancel_flag(b->c, &g_stop);
    client_set_timeout_ms(b->c, b->op_timeout_ms);
    if (client_health(b->c, &health, err) < 0)
        return -1;
    accel = json_string_value(json_object_get(health, "acceleration"));
    why = json_string_value(json_object_get(health, "acceleration_reason"));
    cgv_strlcpy(b->accel, accel ? accel : "unknown", sizeof(b->accel));
    note("cgvd %d serves %s; acceleration %s (%s)", (int)b->cgvd_pid, b->sock, b->accel,
         why ? why : "");
    json_decref(health);
    return make_virsh_xml(b, err);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        note("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static void cleanup(struct bench *b)
{
    struct cgv_error err = {0};
    static const char *const svc1_doms[] = {PREFIX SVC1 "-0"};
    static const char *const svc2_doms[] = {PREFIX SVC2 "-0", PREFIX SVC2 "-1"};

    b->cleaning = true;
    if (b->c)
        client_set_cancel_flag(b->c, NULL);
    if ((b->svc1_live || b->svc2_live) && b->cgvd_pid <= 0 && b->tmp[0]) {
        note("cleaning up: starting cgvd again to delete the services");
        if (cgvd_start(b, NULL, &err) < 0) {
            note("%s", err.msg);
            cgv_err_clear(&err);
        }
    }
    for (int s = 0; s < 2; s++) {
        bool *live = s == 0 ? &b->svc1_live : &b->svc2_live;
        const char *svc = s == 0 ? SVC1 : SVC2;
        const char *const *doms = s == 0 ? svc1_doms : svc2_doms;
        size_t nd = s == 0 ? CGV_ARRAY_LEN(svc1_doms) : CGV_ARRAY_LEN(svc2_doms);

        if (!*live)
            continue;
        if (b->c && b->cgvd_pid > 0 && svc_delete_retry(b, svc, &err) == 0) {
            note("cleaning up: deleted service %s", svc);
        } else {
            note("cleaning up: deleting %s through cgvd failed (%s); removing its domains "
                 "with virsh",
                 svc, err.msg);
            cgv_err_clear(&err);
            for (size_t k = 0; k < nd; k++)
                virsh_remove_retry(b, doms[k]);
        }
        *live = false;
    }
    if (b->vdom_defined) {
        note("cleaning up: removing domain %s", VDOM);
        virsh_remove_retry(b, VDOM);
        b->vdom_defined = false;
    }
    if (b->cgvd_pid > 0) {
        if (cgvd_stop(b, SIGTERM, &err) < 0) {
            note("%s", err.msg);
            cgv_err_clear(&err);
        }
    }
    client_free(b->c);
    b->c = NULL;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (b->tmp[0] && !b->keep_tmp)
        nftw(b->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else if (b->tmp[0])
        note("kept %s", b->tmp);
}

/* ---- output -------------------------------------------------------------------------- */

static void print_series(const char *name, const char *suffix, const struct series *s)
{
    printf("lifecycle_%s%s_n=%zu\n", name, suffix, s->n);
    if (s->n == 0)
        return;
    printf("lifecycle_%s%s_p50_ms=%.1f\n", name, suffix, series_pct(s, 0.50));
    printf("lifecycle_%s%s_p99_ms=%.1f\n", name, suffix, series_pct(s, 0.99));
}

static void print_figures(const struct bench *b)
{
    printf("lifecycle_runs=%u\n", b->runs);
    printf("lifecycle_percentiles=nearest-rank\n");
    printf("lifecycle_acceleration=%s\n", b->accel[0] ? b->accel : "unknown");
    printf("lifecycle_memory_mib=%u\n", MEMORY_MIB);
    printf("lifecycle_rounds_discarded=%u\n", b->discarded);
    for (int f = 0; f < F_N; f++) {
        const struct series *cg = &b->fig[f][S_CGV], *vs = &b->fig[f][S_VIRSH];

        print_series(fig_names[f], side_suffix[S_CGV], cg);
        print_series(fig_names[f], side_suffix[S_VIRSH], vs);
        if (cg->n && vs->n && series_pct(vs, 0.5) > 0)
            printf("lifecycle_%s_ratio_vs_virsh=%.2f\n", fig_names[f],
                   series_pct(cg, 0.5) / series_pct(vs, 0.5));
        print_series(fig_names[f], side_suffix[S_API], &b->fig[f][S_API]);
        if (b->fig[f][S_CGVD].n)
            print_series(fig_names[f], side_suffix[S_CGVD], &b->fig[f][S_CGVD]);
    }
    for (int r = 0; r < R_N; r++)
        print_series(rfig_names[r], "", &b->rfig[r]);
    fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lifecycle [OPTIONS]\n"
            "Measures cgv's VM lifecycle latencies against plain virsh on the same host\n"
            "(see docs/BENCH.md). Needs root, libvirtd (qemu:///system) and the guest image.\n\n"
            "  --runs N            samples per figure (default 10)\n"
            "  --warmup N          unrecorded runs first (default 1)\n"
            "  --restart-runs N    cgvd restarts (default: --runs)\n"
            "  --cgvd PATH         (default %s)\n"
            "  --cgv PATH          (default %s)\n"
            "  --virsh PATH        (default virsh)\n"
            "  --libvirt-uri URI   (default qemu:///system)\n"
            "  --image-dir DIR     guest images (default /var/lib/cgv/images)\n"
            "  --tmp-dir DIR       where the working directory goes (default $TMPDIR or /tmp)\n"
            "  --boot-timeout SEC  deadline for a guest agent to say hello (default 300)\n"
            "  --op-timeout SEC    deadline for any other step (default 180)\n"
            "  --keep-tmp          keep the working directory (cgvd log, console logs)\n"
            "  --cgvd-log-level L  cgvd's --log-level (default info)\n"
            "  -h, --help\n",
            BENCH_CGVD_PATH, BENCH_CGV_PATH);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct bench *b)
{
    enum { O_RUNS = 256, O_WARM, O_RRUNS, O_CGVD, O_CGV, O_VIRSH, O_URI, O_IMG, O_TMP,
           O_BOOTTO, O_OPTO, O_KEEP, O_LEVEL };
    static const struct option longopts[] = {
        {"runs", required_argument, NULL, O_RUNS},
        {"warmup", required_argument, NULL, O_WARM},
        {"restart-runs", required_argument, NULL, O_RRUNS},
        {"cgvd", required_argument, NULL, O_CGVD},
        {"cgv", required_argument, NULL, O_CGV},
        {"virsh", required_argument, NULL, O_VIRSH},
        {"libvirt-uri", required_argument, NULL, O_URI},
        {"image-dir", required_argument, NULL, O_IMG},
        {"tmp-dir", required_argument, NULL, O_TMP},
        {"boot-timeout", required_argument, NULL, O_BOOTTO},
        {"op-timeout", required_argument, NULL, O_OPTO},
        {"keep-tmp", no_argument, NULL, O_KEEP},
        {"cgvd-log-level", required_argument, NULL, O_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool rruns_set = false;
    unsigned v;
    int c;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_RUNS:
        case O_WARM:
        case O_RRUNS:
        case O_BOOTTO:
        case O_OPTO:
            if (parse_uint(optarg, MAX_RUNS, &v) < 0 ||
                (v == 0 && c != O_WARM && c != O_RRUNS)) {
                fprintf(stderr, "lifecycle: bad number '%s'\n", optarg);
                return -1;
            }
            if (c == O_RUNS)
                b->runs = v;
            else if (c == O_WARM)
                b->warmup = v;
            else if (c == O_RRUNS) {
                b->restart_runs = v;
                rruns_set = true;
            } else if (c == O_BOOTTO)
                b->boot_timeout_ms = (long)v * 1000;
            else
                b->op_timeout_ms = (long)v * 1000;
            break;
        case O_CGVD: b->cgvd = optarg; break;
        case O_CGV: b->cgv = optarg; break;
        case O_VIRSH: b->virsh = optarg; break;
        case O_URI: b->uri = optarg; break;
        case O_IMG: b->image_dir = optarg; break;
        case O_TMP: b->tmp_base = optarg; break;
        case O_KEEP: b->keep_tmp = true; break;
        case O_LEVEL: b->cgvd_log_level = optarg; break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lifecycle: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!rruns_set)
        b->restart_runs = b->runs;
    return 0;
}

int main(int argc, char **argv)
{
    static struct bench b;
    struct cgv_error err = {0};
    struct sigaction sa = {.sa_handler = on_stop_signal};
    const char *tmpdir = getenv("TMPDIR");
    int rc = 1, lock_fd;

    b.runs = 10;
    b.warmup = 1;
    b.cgvd = BENCH_CGVD_PATH;
    b.cgv = BENCH_CGV_PATH;
    b.virsh = "virsh";
    b.cgvd_log_level = "info";
    b.uri = "qemu:///system";
    b.image_dir = "/var/lib/cgv/images";
    b.tmp_base = tmpdir && tmpdir[0] ? tmpdir : "/tmp";
    b.boot_timeout_ms = 300000;
    b.op_timeout_ms = 180000;
    if (parse_opts(argc, argv, &b) < 0)
        return 2;
    if (geteuid() != 0) {
        fprintf(stderr, "lifecycle: must run as root (cgvd and qemu:///system need it)\n");
        return 2;
    }
    lock_fd = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 && errno == ENOENT)
        lock_fd = open("/run/cgvbench-lifecycle.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "lifecycle: %s: %s\n", LOCK_PATH,
                errno == EWOULDBLOCK ? "another lifecycle benchmark is running" : strerror(errno));
        return 2;
    }
    /* No SA_RESTART: a stop signal interrupts blocking calls. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* cgvd daemonizes; as a subreaper we get it as our child and reap it. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        note("cannot become a child subreaper: %s", strerror(errno));

    if (setup(&b, &err) < 0)
        goto done;
    for (unsigned i = 0; i < b.warmup + b.runs;) {
        size_t n0[F_N][S_N];

        b.measuring = i >= b.warmup;
        if (b.measuring)
            note("run %u/%u (%s first)", i - b.warmup + 1, b.runs,
                 (i - b.warmup) % 2 == 0 ? "cgv" : "virsh");
        else
            note("warm-up run %u/%u (not recorded)", i + 1, b.warmup);
        for (int f = 0; f < F_N; f++) {
            for (int s = 0; s < S_N; s++)
                n0[f][s] = b.fig[f][s].n;
        }
        if (one_run(&b, b.measuring ? i - b.warmup : i, &err) == 0) {
            i++;
            continue;
        }
        /* A round that failed (e.g. someone restarted libvirtd under it) is
         * discarded and run again, a few times at most; not when we were
         * interrupted or cgvd died. */
        if (g_stop || !cgvd_alive(&b) || b.discarded >= MAX_DISCARDS)
            goto done;
        b.discarded++;
        note("round failed: %s", err.msg);
        note("discarding its samples and running it again (%u of at most %d)", b.discarded,
             MAX_DISCARDS);
        for (int f = 0; f < F_N; f++) {
            for (int s = 0; s < S_N; s++)
                b.fig[f][s].n = n0[f][s];
        }
        cgv_err_clear(&err);
        if (round_recover(&b, &err) < 0)
            goto done;
    }
    if (b.restart_runs > 0 && restart_phase(&b, &err) < 0)
        goto done;
    rc = 0;

done:
    if (rc != 0)
        note("failed: %s", err.msg);
    cleanup(&b);
    print_figures(&b);
    for (int f = 0; f < F_N; f++) {
        for (int s = 0; s < S_N; s++)
            free(b.fig[f][s].v);
    }
    for (int r = 0; r < R_N; r++)
        free(b.rfig[r].v);
    free(b.spec1_text);
    free(b.spec2_text);
    if (g_stop)
        return 130;
    return rc;
}
