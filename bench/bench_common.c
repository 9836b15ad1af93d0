/* bench_common.c — see bench_common.h. */
#include "bench_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "udpping_stats.h"

extern char **environ;

volatile sig_atomic_t bc_stop;
static const char *g_tag = "bench";

static void on_stop_signal(int sig)
{
    (void)sig;
    bc_stop = bc_stop + 1;
}

void bc_note(const char *fmt, ...)
{
    va_list ap;
    char ts[40];

    cgv_fmt_wall_ms(cgv_wall_ms(), ts, sizeof(ts));
    fprintf(stderr, "%s: %s ", g_tag, ts + (strlen(ts) > 11 ? 11 : 0));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int interrupted(struct cgv_error *err)
{
    return cgv_err(err, CGV_E_INTERNAL, "interrupted");
}

int64_t bc_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- samples ------------------------------------------------------------------ */

void bc_series_add(struct bc_series *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = cgv_realloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bc_series_pct(const struct bc_series *s, double q)
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

double bc_series_max(const struct bc_series *s)
{
    double m = 0;

    for (size_t i = 0; i < s->n; i++) {
        if (i == 0 || s->v[i] > m)
            m = s->v[i];
    }
    return m;
}

void bc_series_free(struct bc_series *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

void bc_print_series(const char *key, const struct bc_series *s)
{
    printf("%s_n=%zu\n", key, s->n);
    if (s->n == 0)
        return;
    printf("%s_p50_ms=%.1f\n", key, bc_series_pct(s, 0.50));
    printf("%s_p99_ms=%.1f\n", key, bc_series_pct(s, 0.99));
}

/* ---- child processes ------------------------------------------------------------ */

int bc_wait_child(pid_t pid, long timeout_ms, int *status, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000;
    sig_atomic_t stop0 = bc_stop;
    bool forwarded = false, killed = false;
    CGV_AUTOCLOSE int pfd = pidfd_open(pid, 0);

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        int64_t now;
        struct pollfd p;

        if (r == pid)
            break;
        if (r < 0 && errno == ECHILD && pfd >= 0) {
            /* Not our child: its pidfd polls readable when it has exited. */
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
        if (bc_stop != stop0 && !forwarded) {
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

void bc_cmd_output(struct bc *b, char *buf, size_t cap)
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

int bc_run(struct bc *b, const char *const *argv, struct cgv_error *err)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, rc;
    char cmd[512], out[600];

    fmt_argv(argv, cmd, sizeof(cmd));
    if (bc_stop && !b->cleaning)
        return interrupted(err);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, b->cmd_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return cgv_err(err, CGV_E_INTERNAL, "cannot run %s: %s", argv[0], strerror(rc));
    if (bc_wait_child(pid, b->o.op_timeout_ms, &status, err) < 0) {
        cgv_err_prefix(err, "%s", cmd);
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    bc_cmd_output(b, out, sizeof(out));
    if (WIFEXITED(status))
        return cgv_err(err, CGV_E_INTERNAL, "`%s` exited with %d: %s", cmd,
                       WEXITSTATUS(status), out);
    return cgv_err(err, CGV_E_INTERNAL, "`%s` was killed by signal %d", cmd, WTERMSIG(status));
}

int bc_spawn_pipe(const char *const *argv, const char *errlog, pid_t *pid, int *out_fd,
                  int64_t *wall_us, struct cgv_error *err)
{
    posix_spawn_file_actions_t fa;
    int p[2], rc;

    if (pipe2(p, O_CLOEXEC) < 0)
        return cgv_err(err, CGV_E_IO, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, errlog ? errlog : "/dev/null",
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (wall_us)
        *wall_us = bc_wall_us();
    rc = posix_spawnp(pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return cgv_err(err, CGV_E_INTERNAL, "cannot run %s: %s", argv[0], strerror(rc));
    }
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    *out_fd = p[0];
    return 0;
}

static int virsh(struct bc *b, const char *a1, const char *a2, const char *a3,
                 struct cgv_error *err)
{
    const char *argv[] = {b->o.virsh, "-c", b->o.uri, a1, a2, a3, NULL};
    return bc_run(b, argv, err);
}

/* ---- cgvd ----------------------------------------------------------------------------- */

static int cgvd_start(struct bc *b, struct cgv_error *err)
{
    const char *argv[] = {b->o.cgvd,
                          "--daemon",
                          "--pidfile", b->pidfile,
                          "--socket", b->sock,
                          "--state-dir", b->state,
                          "--run-dir", b->run,
                          "--log-dir", b->log,
                          "--image-dir", b->o.image_dir,
                          "--libvirt-uri", b->o.uri,
                          "--domain-prefix", b->o.prefix,
                          "--bridge", b->o.bridge,
                          "--gateway", b->o.gateway,
                          "--pool", b->o.pool,
                          "--log-file", b->cgvd_log,
                          "--log-level", b->o.log_level,
                          NULL};
    char *text = NULL;
    long pid;

    unlink(b->pidfile);
    if (bc_run(b, argv, err) < 0) {
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

static int cgvd_stop(struct bc *b, struct cgv_error *err)
{
    int status;

    if (b->cgvd_pid <= 0)
        return 0;
    if (kill(b->cgvd_pid, SIGTERM) < 0 && errno != ESRCH)
        return cgv_err(err, CGV_E_INTERNAL, "kill cgvd: %s", strerror(errno));
    if (bc_wait_child(b->cgvd_pid, 30000, &status, err) < 0) {
        cgv_err_prefix(err, "stopping cgvd");
        b->cgvd_pid = 0;
        return -1;
    }
    b->cgvd_pid = 0;
    return 0;
}

bool bc_cgvd_alive(struct bc *b)
{
    int status;

    if (b->cgvd_pid <= 0)
        return false;
    if (waitpid(b->cgvd_pid, &status, WNOHANG) != b->cgvd_pid)
        return kill(b->cgvd_pid, 0) == 0 || errno != ESRCH;
    if (WIFSIGNALED(status))
        bc_note("cgvd (pid %d) was killed by signal %d; see %s", (int)b->cgvd_pid,
                WTERMSIG(status), b->cgvd_log);
    else
        bc_note("cgvd (pid %d) exited with %d; see %s", (int)b->cgvd_pid, WEXITSTATUS(status),
                b->cgvd_log);
    b->cgvd_pid = 0;
    return false;
}

/* Destroy and undefine every libvirt domain whose name starts with our
 * prefix (ours alone: leftovers of a killed run, or what cgvd could not
 * remove). */
static void remove_prefixed_domains(struct bc *b)
{
    const char *argv[] = {b->o.virsh, "-c", b->o.uri, "list", "--all", "--name", NULL};
    struct cgv_error e = {0};
    char *text = NULL, *save = NULL;

    if (bc_run(b, argv, &e) < 0 || cgv_read_file(b->cmd_log, 1u << 20, &text, NULL, &e) < 0) {
        bc_note("cannot list libvirt domains: %s", e.msg);
        return;
    }
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        struct cgv_error ignore = {0};
        if (strncmp(l, b->o.prefix, strlen(b->o.prefix)) != 0)
            continue;
        bc_note("removing domain %s", l);
        (void)virsh(b, "destroy", l, NULL, &ignore);
        cgv_err_clear(&ignore);
        if (virsh(b, "undefine", l, "--managed-save", &ignore) < 0)
            bc_note("cannot undefine %s: %s", l, ignore.msg);
    }
    free(text);
}

static int take_lock(struct bc *b, struct cgv_error *err)
{
    b->lock_fd = open(b->o.lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (b->lock_fd < 0)
        return cgv_err(err, CGV_E_IO, "%s: %s", b->o.lock_path, strerror(errno));
    if (flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return cgv_err(err, errno == EWOULDBLOCK ? CGV_E_CONFLICT : CGV_E_IO, "%s: %s",
                       b->o.lock_path,
                       errno == EWOULDBLOCK ? "another instance of this benchmark is running"
                                            : strerror(errno));
    return 0;
}

int bc_setup(struct bc *b, struct cgv_error *err)
{
    struct sigaction sa = {.sa_handler = on_stop_signal};
    char tmpl[PATH_MAX];
    json_t *health = NULL;
    const char *accel, *why;
    struct sockaddr_un sun;

    g_tag = b->o.tag;
    b->lock_fd = -1;
    /* No SA_RESTART: a stop signal interrupts blocking calls. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* cgvd daemonizes; as a subreaper we get it as our child and reap it. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        bc_note("cannot become a child subreaper: %s", strerror(errno));
    if (take_lock(b, err) < 0)
        return -1;

    snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", b->o.tmp_base, b->o.tag);
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
#undef P
    if (strlen(b->run) + strlen("/vm/") + 40 + strlen("-00/console.sock") >=
        sizeof(sun.sun_path))
        return cgv_err(err, CGV_E_INVALID, "--tmp-dir %s is too long for socket paths",
                       b->o.tmp_base);
    if (cgv_mkdir_p(b->run, 0755, err) < 0)
        return -1;
    bc_note("working directory %s", b->tmp);

    remove_prefixed_domains(b);
    if (cgvd_start(b, err) < 0)
        return -1;
    b->c = client_new(b->sock, err);
    if (!b->c)
        return -1;
    client_set_cancel_flag(b->c, &bc_stop);
    client_set_timeout_ms(b->c, b->o.op_timeout_ms);
    if (client_health(b->c, &health, err) < 0)
        return -1;
    accel = json_string_value(json_object_get(health, "acceleration"));
    why = json_string_value(json_object_get(health, "acceleration_reason"));
    cgv_strlcpy(b->accel, accel ? accel : "unknown", sizeof(b->accel));
    bc_note("cgvd %d serves %s; acceleration %s (%s)", (int)b->cgvd_pid, b->sock, b->accel,
            why ? why : "");
    json_decref(health);
    return 0;
}

/* ---- services -------------------------------------------------------------------------- */

static void live_add(struct bc *b, const char *name)
{
    for (size_t i = 0; i < b->n_live; i++) {
        if (strcmp(b->live[i], name) == 0)
            return;
    }
    if (b->n_live < BC_MAX_LIVE)
        cgv_strlcpy(b->live[b->n_live++], name, sizeof(b->live[0]));
}

static void live_remove(struct bc *b, const char *name)
{
    for (size_t i = 0; i < b->n_live; i++) {
        if (strcmp(b->live[i], name) == 0) {
            memmove(b->live[i], b->live[i + 1], (b->n_live - i - 1) * sizeof(b->live[0]));
            b->n_live--;
            return;
        }
    }
}

int bc_apply(struct bc *b, const char *name, const char *text, struct cgv_error *err)
{
    json_t *out = NULL;
    const char *result;
    int rc = 0;

    live_add(b, name);
    for (int i = 0;; i++) {
        if (client_apply(b->c, text, strlen(text), NULL, false, &out, err) == 0)
            break;
        /* cgvd may just be (re)connecting to libvirt. */
        if ((err->code != CGV_E_UNAVAIL && err->code != CGV_E_LIBVIRT) || i >= 10 || bc_stop ||
            client_last_status(b->c) == 0)
            return -1;
        bc_note("applying %s: %s; trying again", name, err->msg);
        cgv_err_clear(err);
        {
            int64_t after = 0;
            json_t *ev = NULL;
            struct cgv_error e = {0};
            if (bc_last_event_id(b, &after, &e) == 0 &&
                client_events(b->c, after, 2000, 1, NULL, NULL, &ev, &e) == 0)
                json_decref(ev);
        }
    }
    result = json_string_value(json_object_get(out, "result"));
    if (!result || (strcmp(result, "created") != 0 && strcmp(result, "updated") != 0 &&
                    strcmp(result, "unchanged") != 0))
        rc = cgv_err(err, CGV_E_INTERNAL, "apply of %s answered result '%s'", name,
                     result ? result : "(none)");
    json_decref(out);
    return rc;
}

static int svc_delete_once(struct bc *b, const char *svc, struct cgv_error *err)
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
        return cgv_err(err, CGV_E_CONFLICT, "service %s still exists after its delete", svc);
    }
    if (err->code != CGV_E_NOTFOUND)
        return -1;
    cgv_err_clear(err);
    return 0;
}

int bc_delete(struct bc *b, const char *name, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + 60000000;

    for (;;) {
        enum cgv_errcode code;

        cgv_err_clear(err);
        if (svc_delete_once(b, name, err) == 0) {
            live_remove(b, name);
            return 0;
        }
        code = err->code;
        if ((code != CGV_E_CONFLICT && code != CGV_E_LIBVIRT && code != CGV_E_UNAVAIL) ||
            client_last_status(b->c) == 0 || cgv_mono_us() >= deadline || b->cgvd_pid <= 0 ||
            (bc_stop && !b->cleaning))
            return -1;
        bc_note("deleting %s: %s; trying again", name, err->msg);
        {
            /* Wait for cgvd's next event (the end of what keeps it busy). */
            int64_t after = 0;
            json_t *ev = NULL;
            struct cgv_error e = {0};
            if (bc_last_event_id(b, &after, &e) == 0 &&
                client_events(b->c, after, 2000, 1, NULL, NULL, &ev, &e) == 0)
                json_decref(ev);
        }
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        bc_note("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void bc_cleanup(struct bc *b)
{
    struct cgv_error err = {0};

    b->cleaning = true;
    if (b->c)
        client_set_cancel_flag(b->c, NULL);
    /* Stopped QEMUs first: libvirt's destroy waits 10 s for a SIGTERM a
     * stopped process never handles. */
    bc_resume_stopped(b);
    if (b->n_live > 0 && b->cgvd_pid > 0 && !bc_cgvd_alive(b))
        b->cgvd_pid = 0;
    if (b->n_live > 0 && b->cgvd_pid <= 0 && b->tmp[0]) {
        bc_note("cleaning up: starting cgvd again to delete the services");
        if (cgvd_start(b, &err) < 0) {
            bc_note("%s", err.msg);
            cgv_err_clear(&err);
        }
    }
    while (b->n_live > 0) {
        char name[48];

        cgv_strlcpy(name, b->live[b->n_live - 1], sizeof(name));
        if (b->c && b->cgvd_pid > 0 && bc_delete(b, name, &err) == 0) {
            bc_note("cleaning up: deleted service %s", name);
        } else {
            bc_note("cleaning up: deleting %s through cgvd failed (%s); its domains are "
                    "removed with virsh",
                    name, err.msg);
            cgv_err_clear(&err);
            live_remove(b, name);
        }
    }
    if (b->cgvd_pid > 0 && cgvd_stop(b, &err) < 0) {
        bc_note("%s", err.msg);
        cgv_err_clear(&err);
    }
    if (b->tmp[0])
        remove_prefixed_domains(b);
    client_free(b->c);
    b->c = NULL;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (b->tmp[0] && !b->o.keep_tmp)
        nftw(b->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else if (b->tmp[0])
        bc_note("kept %s", b->tmp);
    b->tmp[0] = '\0';
    if (b->lock_fd >= 0)
        close(b->lock_fd);
    b->lock_fd = -1;
}

/* ---- events ------------------------------------------------------------------------------ */

void bc_event_from_json(const json_t *e, struct bc_event *out)
{
    memset(out, 0, sizeof(*out));
    out->id = json_integer_value(json_object_get(e, "id"));
    out->time_ms = json_integer_value(json_object_get(e, "time_ms"));
    out->seen_us = cgv_mono_us();
    cgv_strlcpy(out->type, bc_jstr(e, "type"), sizeof(out->type));
    cgv_strlcpy(out->service, bc_jstr(e, "service"), sizeof(out->service));
    cgv_strlcpy(out->vm, bc_jstr(e, "vm"), sizeof(out->vm));
    cgv_strlcpy(out->msg, bc_jstr(e, "message"), sizeof(out->msg));
}

int bc_last_event_id(struct bc *b, int64_t *id, struct cgv_error *err)
{
    json_t *out = NULL;

    if (client_events(b->c, 0, 0, 1, NULL, NULL, &out, err) < 0)
        return -1;
    *id = json_integer_value(json_object_get(out, "last_id"));
    json_decref(out);
    return 0;
}

static bool type_matches(const char *want, const char *type)
{
    size_t n = strlen(want);

    if (n > 0 && want[n - 1] == '.')
        return strncmp(type, want, n) == 0;
    return strcmp(type, want) == 0;
}

struct wait_ctx {
    struct bc_want *w;
    size_t n, left;
    bc_event_fn fn;
    void *opaque;
};

static void wait_take(void *opaque, const struct bc_event *ev)
{
    struct wait_ctx *x = opaque;

    if (x->fn)
        x->fn(x->opaque, ev);
    for (size_t k = 0; k < x->n; k++) {
        struct bc_want *w = &x->w[k];
        if (w->seen || !type_matches(w->type, ev->type) || (w->vm && strcmp(ev->vm, w->vm) != 0))
            continue;
        w->seen = true;
        w->ev = *ev;
        x->left--;
        break;
    }
}

int bc_poll_events(struct bc *b, int64_t *after, const char *service, long wait_ms,
                   bc_event_fn fn, void *opaque, struct cgv_error *err)
{
    json_t *out = NULL, *evs, *e;
    size_t i;

    if (client_events(b->c, *after, wait_ms, 1000, service, NULL, &out, err) < 0)
        return -1;
    evs = json_object_get(out, "events");
    json_array_foreach(evs, i, e) {
        struct bc_event ev;
        bc_event_from_json(e, &ev);
        if (ev.id > *after)
            *after = ev.id;
        if (fn && ev.type[0])
            fn(opaque, &ev);
    }
    json_decref(out);
    return 0;
}

int bc_wait_events(struct bc *b, int64_t *after, const char *service, struct bc_want *w,
                   size_t n, long timeout_ms, bc_event_fn fn, void *opaque,
                   struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000;
    struct wait_ctx x = {.w = w, .n = n, .fn = fn, .opaque = opaque};

    for (size_t k = 0; k < n; k++)
        x.left += !w[k].seen;
    while (x.left > 0) {
        int64_t now = cgv_mono_us();
        long wait_ms;

        if (bc_stop)
            return interrupted(err);
        if (now >= deadline) {
            char missing[512];
            size_t off = 0;
            missing[0] = '\0';
            for (size_t k = 0; k < n && off < sizeof(missing); k++) {
                if (!w[k].seen)
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
        if (bc_poll_events(b, after, service, wait_ms, wait_take, &x, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- JSON -------------------------------------------------------------------------------- */

json_t *bc_jget(const json_t *o, const char *path)
{
    char key[64];
    const char *p = path;

    if (!o || !path)
        return NULL;
    while (o && *p) {
        size_t len = strcspn(p, ".");
        if (len >= sizeof(key))
            return NULL;
        memcpy(key, p, len);
        key[len] = '\0';
        o = json_object_get(o, key);
        p += len;
        if (*p == '.')
            p++;
    }
    return (json_t *)o;
}

const char *bc_jstr(const json_t *o, const char *path)
{
    const char *s = json_string_value(bc_jget(o, path));
    return s ? s : "";
}

long long bc_jint(const json_t *o, const char *path)
{
    return json_integer_value(bc_jget(o, path));
}

json_t *bc_svc_vm(const json_t *svc, const char *vm)
{
    size_t i;
    json_t *v;

    json_array_foreach(json_object_get(svc, "vms"), i, v) {
        if (strcmp(bc_jstr(v, "name"), vm) == 0)
            return v;
    }
    return NULL;
}

bool bc_svc_redundant(const json_t *svc, char *why, size_t cap)
{
    size_t i;
    json_t *v, *a;
    const char *name = bc_jstr(svc, "name");

    if (!json_is_true(bc_jget(svc, "ha.up"))) {
        snprintf(why, cap, "%s: not up", name);
        return false;
    }
    if (json_object_get(svc, "busy") && !json_is_null(json_object_get(svc, "busy"))) {
        snprintf(why, cap, "%s: busy (%s)", name, bc_jstr(svc, "busy"));
        return false;
    }
    json_array_foreach(json_object_get(svc, "vms"), i, v) {
        const char *vm = bc_jstr(v, "name"), *role = bc_jstr(v, "ha.role");
        if (strcmp(bc_jstr(v, "state"), "running") != 0) {
            snprintf(why, cap, "%s is %s", vm, bc_jstr(v, "state"));
            return false;
        }
        if (json_object_get(v, "busy") && !json_is_null(json_object_get(v, "busy"))) {
            snprintf(why, cap, "%s is busy (%s)", vm, bc_jstr(v, "busy"));
            return false;
        }
        if (strcmp(bc_jstr(v, "agent.state"), "up") != 0) {
            snprintf(why, cap, "%s: agent %s", vm, bc_jstr(v, "agent.state"));
            return false;
        }
        if (json_is_true(bc_jget(v, "agent.heartbeat_grace"))) {
            /* the first 2 s after a hello: hang detection is relaxed */
            snprintf(why, cap, "%s: in its heartbeat grace period", vm);
            return false;
        }
        if (strcmp(bc_jstr(v, "ha.state"), "healthy") != 0) {
            snprintf(why, cap, "%s: HA state %s", vm, bc_jstr(v, "ha.state"));
            return false;
        }
        if (strcmp(role, "active") != 0 && strcmp(role, "standby") != 0) {
            snprintf(why, cap, "%s: role %s", vm, role);
            return false;
        }
        if (!json_is_true(bc_jget(v, "ha.acked"))) {
            snprintf(why, cap, "%s: role %s not acknowledged", vm, role);
            return false;
        }
    }
    json_array_foreach(bc_jget(svc, "ha.assignments"), i, a) {
        if (!json_is_string(json_object_get(a, "active")) ||
            !json_is_true(json_object_get(a, "acked"))) {
            snprintf(why, cap, "%s: assignment %s has no acknowledged active", name,
                     bc_jstr(a, "name"));
            return false;
        }
    }
    why[0] = '\0';
    return true;
}

unsigned bc_svc_actives_for(const json_t *svc, const char *asg)
{
    size_t i;
    json_t *v;
    unsigned n = 0;

    json_array_foreach(json_object_get(svc, "vms"), i, v) {
        if (strcmp(bc_jstr(v, "ha.role"), "active") == 0 &&
            strcmp(bc_jstr(v, "ha.assignment"), asg) == 0)
            n++;
    }
    return n;
}

/* ---- fault injection ------------------------------------------------------------------------ */

int bc_console_inject(const char *path, const char *pre, const char *action, long timeout_ms,
                      int64_t *wall_us, int64_t *mono_us, struct cgv_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000;
    unsigned n;
    char marker[32], line[1024], buf[16384];
    size_t len = 0, off = 0, l;
    CGV_AUTOCLOSE int fd = -1;

    if (getrandom(&n, sizeof(n), 0) != (ssize_t)sizeof(n))
        n = (unsigned)cgv_mono_us();
    n = 100000 + n % 800000;
    snprintf(marker, sizeof(marker), "@@%u@@", n + 1);
    if (pre)
        snprintf(line, sizeof(line), "\n%s && echo \"@@$((%u+1))@@\" && %s\n", pre, n, action);
    else
        snprintf(line, sizeof(line), "\necho \"@@$((%u+1))@@\"; %s\n", n, action);
    if (cgv_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0 || !path[0])
        return cgv_err(err, CGV_E_INVALID, "bad console socket path '%s'", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return cgv_err(err, CGV_E_IO, "connect to console %s: %s", path, strerror(errno));
    for (l = strlen(line); off < l;) {
        ssize_t w = send(fd, line + off, l - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            if (bc_stop)
                return interrupted(err);
            continue;
        }
        if (w < 0)
            return cgv_err(err, CGV_E_IO, "write to console %s: %s", path, strerror(errno));
        off += (size_t)w;
    }
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t now = cgv_mono_us();
        ssize_t r;

        if (bc_stop)
            return interrupted(err);
        if (now >= deadline)
            return cgv_err(err, CGV_E_INTERNAL,
                           "the console %s did not run '%s' within %ld ms", path, action,
                           timeout_ms);
        if (poll(&p, 1, (int)((deadline - now + 999) / 1000)) <= 0)
            continue;
        if (len + 1 >= sizeof(buf)) {
            /* Keep the tail: the marker may straddle the cut. */
            memmove(buf, buf + len - 64, 64);
            len = 64;
        }
        r = read(fd, buf + len, sizeof(buf) - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return cgv_err(err, CGV_E_IO, "console %s: %s", path,
                           r == 0 ? "closed" : strerror(errno));
        len += (size_t)r;
        buf[len] = '\0';
        /* The NULs a terminal may send would cut strstr short. */
        for (size_t k = len - (size_t)r; k < len; k++) {
            if (buf[k] == '\0')
                buf[k] = ' ';
        }
        if (strstr(buf, marker)) {
            if (wall_us)
                *wall_us = bc_wall_us();
            if (mono_us)
                *mono_us = cgv_mono_us();
            return 0;
        }
    }
}

bool bc_qemu_is(pid_t pid, const char *dom)
{
    char path[64], want[160], *text = NULL;
    size_t len = 0;
    bool ok = false;

    if (pid <= 1)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    snprintf(want, sizeof(want), "guest=%s,", dom);
    if (cgv_read_file(path, 1u << 20, &text, &len, NULL) < 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\0')
            text[i] = ' ';
    }
    ok = strstr(text, want) != NULL;
    free(text);
    return ok;
}

pid_t bc_vcpu_tid(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *de;
    pid_t found = -1;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL && found < 0) {
        char cpath[300], *comm = NULL;
        if (de->d_name[0] == '.')
            continue;
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
        if (cgv_read_file(cpath, 256, &comm, NULL, NULL) == 0 && strncmp(comm, "CPU 0/", 6) == 0)
            found = (pid_t)atoi(de->d_name);
        free(comm);
    }
    closedir(d);
    return found;
}

static unsigned long long proc_start(pid_t pid)
{
    char path[64], *text = NULL, *p;
    unsigned long long v = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (cgv_read_file(path, 4096, &text, NULL, NULL) < 0)
        return 0;
    p = strrchr(text, ')');
    /* After "pid (comm)": state is field 3; starttime is field 22. */
    for (int field = 2; p && *p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p)
        v = strtoull(p + 1, NULL, 10);
    free(text);
    return v;
}

int bc_sigstop_vcpu(struct bc *b, pid_t pid, pid_t tid, int64_t *wall_us, int64_t *mono_us,
                    struct cgv_error *err)
{
    unsigned long long start = proc_start(pid);

    size_t k = 0;

    if (start == 0)
        return cgv_err(err, CGV_E_NOTFOUND, "process %d is gone", (int)pid);
    /* Forget the ones that are gone (fenced). */
    for (size_t i = 0; i < b->n_stopped; i++) {
        if (proc_start(b->stopped[i].pid) == b->stopped[i].start)
            b->stopped[k++] = b->stopped[i];
    }
    b->n_stopped = k;
    if (b->n_stopped < BC_MAX_STOPPED)
        b->stopped[b->n_stopped++] = (struct bc_stopped){.pid = pid, .start = start};
    *wall_us = bc_wall_us();
    *mono_us = cgv_mono_us();
    if (tgkill(pid, tid, SIGSTOP) < 0)
        return cgv_err(err, CGV_E_IO, "tgkill %d/%d SIGSTOP: %s", (int)pid, (int)tid,
                       strerror(errno));
    return 0;
}

void bc_resume_stopped(struct bc *b)
{
    for (size_t i = 0; i < b->n_stopped; i++) {
        const struct bc_stopped *s = &b->stopped[i];
        if (proc_start(s->pid) == s->start && kill(s->pid, SIGCONT) == 0)
            bc_note("resumed stopped process %d", (int)s->pid);
    }
    b->n_stopped = 0;
}

int bc_udp_probe(const char *ip, long timeout_ms, char *vm, size_t cap, struct cgv_error *err)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(BC_NF_PORT)};
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000, next = 0;
    uint64_t token = 0, seq = 0;
    CGV_AUTOCLOSE int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    if (inet_pton(AF_INET, ip, &to.sin_addr) != 1)
        return cgv_err(err, CGV_E_INVALID, "bad address '%s'", ip);
    if (getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token))
        token = (uint64_t)cgv_mono_us();
    for (;;) {
        int64_t now = cgv_mono_us();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[512];
        ssize_t r;

        if (bc_stop)
            return interrupted(err);
        if (now >= deadline)
            return cgv_err(err, CGV_E_INTERNAL, "no answer from %s:%d within %ld ms", ip,
                           BC_NF_PORT, timeout_ms);
        if (now >= next) {
            char req[64];
            int n = udpping_format_request(req, sizeof(req), token, ++seq);
            if (n > 0)
                (void)sendto(fd, req, (size_t)n, 0, (struct sockaddr *)&to, sizeof(to));
            next = now + 100000;
        }
        if (poll(&p, 1, (int)((next - now + 999) / 1000)) <= 0)
            continue;
        while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
            struct udpping_reply rep;
            if (udpping_parse_reply(buf, (size_t)r, &rep) == 0 && rep.token == token) {
                if (vm)
                    cgv_strlcpy(vm, rep.vm_name, cap);
                return 0;
            }
        }
    }
}

const char *const bc_fault_names[BC_F_N] = {"process_death", "panic", "hang", "watchdog",
                                            "application"};
const char *const bc_detect_types[BC_F_N] = {"detect.process_death", "detect.panic",
                                             "detect.hang", "detect.watchdog",
                                             "detect.application"};

int bc_parse_faults(const char *tag, const char *list, bool on[BC_F_N])
{
    char *copy = cgv_strdup(list), *save = NULL;
    int rc = 0;

    for (int k = 0; k < BC_F_N; k++)
        on[k] = false;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k;
        for (k = 0; k < BC_F_N && strcmp(t, bc_fault_names[k]) != 0; k++) {
        }
        if (k == BC_F_N) {
            fprintf(stderr, "%s: unknown fault '%s'\n", tag, t);
            rc = -1;
            break;
        }
        on[k] = true;
    }
    free(copy);
    return rc;
}

int bc_inject(struct bc *b, enum bc_fault k, pid_t pid, const char *dom, const char *console,
              long console_timeout_ms, int64_t *wall_us, int64_t *mono_us,
              struct cgv_error *err)
{
    switch (k) {
    case BC_F_DEATH:
        if (!bc_qemu_is(pid, dom))
            return cgv_err(err, CGV_E_INTERNAL, "pid %d is not the QEMU of %s", (int)pid, dom);
        *wall_us = bc_wall_us();
        *mono_us = cgv_mono_us();
        if (kill(pid, SIGKILL) < 0)
            return cgv_err(err, CGV_E_IO, "kill %d: %s", (int)pid, strerror(errno));
        return 0;
    case BC_F_HANG: {
        pid_t tid;
        if (!bc_qemu_is(pid, dom))
            return cgv_err(err, CGV_E_INTERNAL, "pid %d is not the QEMU of %s", (int)pid, dom);
        tid = bc_vcpu_tid(pid);
        if (tid <= 0)
            return cgv_err(err, CGV_E_INTERNAL, "no 'CPU 0/' thread in QEMU %d", (int)pid);
        return bc_sigstop_vcpu(b, pid, tid, wall_us, mono_us, err);
    }
    case BC_F_PANIC:
        return bc_console_inject(console, NULL, "echo c > /proc/sysrq-trigger",
                                 console_timeout_ms, wall_us, mono_us, err);
    case BC_F_WATCHDOG:
        return bc_console_inject(console, "p=$(pidof cgv-guest) && [ -n \"$p\" ]",
                                 "kill -USR2 $p", console_timeout_ms, wall_us, mono_us, err);
    case BC_F_APP:
        return bc_console_inject(console, "p=$(pidof cgv-nf) && [ -n \"$p\" ]", "kill -9 $p",
                                 console_timeout_ms, wall_us, mono_us, err);
    case BC_F_N:
        break;
    }
    return cgv_err(err, CGV_E_INTERNAL, "bad fault kind %d", (int)k);
}

/* ---- threads and CPUs ------------------------------------------------------------------------ */

int bc_vcpu_tids(pid_t pid, pid_t *tids, size_t cap)
{
    char path[64];
    DIR *d;
    struct dirent *de;
    int n = 0;

    for (size_t i = 0; i < cap; i++)
        tids[i] = 0;
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        char cpath[300], *comm = NULL;
        unsigned idx;
        if (de->d_name[0] == '.')
            continue;
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
        if (cgv_read_file(cpath, 256, &comm, NULL, NULL) == 0 &&
            sscanf(comm, "CPU %u/", &idx) == 1 && idx < cap) {
            tids[idx] = (pid_t)atoi(de->d_name);
            if ((int)idx + 1 > n)
                n = (int)idx + 1;
        }
        free(comm);
    }
    closedir(d);
    return n;
}

int bc_thread_cpus(pid_t tid, char *buf, size_t cap)
{
    cpu_set_t set;
    size_t off = 0;

    if (cap == 0)
        return -1;
    buf[0] = '\0';
    CPU_ZERO(&set);
    if (sched_getaffinity(tid, sizeof(set), &set) < 0)
        return -1;
    for (int c = 0; c < CPU_SETSIZE && off < cap; c++) {
        int e = c;
        if (!CPU_ISSET(c, &set))
            continue;
        while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &set))
            e++;
        off += (size_t)snprintf(buf + off, cap - off, off ? ",%d" : "%d", c);
        if (e > c && off < cap)
            off += (size_t)snprintf(buf + off, cap - off, "-%d", e);
        c = e;
    }
    return 0;
}

double bc_proc_cpu_seconds(pid_t pid)
{
    char path[64], *text = NULL, *p;
    unsigned long long ut = 0, st = 0;
    long tck = sysconf(_SC_CLK_TCK);
    int field;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (cgv_read_file(path, 4096, &text, NULL, NULL) < 0)
        return -1;
    p = strrchr(text, ')');
    /* After "pid (comm)": utime and stime are fields 14 and 15. */
    for (field = 2; p && *p && field < 14; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p + 1, "%llu %llu", &ut, &st) != 2) {
        free(text);
        return -1;
    }
    free(text);
    return (double)(ut + st) / (double)(tck > 0 ? tck : 100);
}

/* /proc/PID/task/TID/schedstat: "run_ns wait_ns timeslices". */
static int thread_schedstat(pid_t pid, pid_t tid, long long *run, long long *wait)
{
    char path[96], *text = NULL;
    unsigned long long r = 0, w = 0;
    int n;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
    if (cgv_read_file(path, 256, &text, NULL, NULL) < 0)
        return -1;
    n = sscanf(text, "%llu %llu", &r, &w);
    free(text);
    if (n != 2)
        return -1;
    *run = (long long)r;
    *wait = (long long)w;
    return 0;
}

long long bc_thread_run_delay_ns(pid_t pid, pid_t tid)
{
    long long run, wait;

    return thread_schedstat(pid, tid, &run, &wait) < 0 ? -1 : wait;
}

long long bc_thread_run_ns(pid_t pid, pid_t tid)
{
    long long run, wait;

    return thread_schedstat(pid, tid, &run, &wait) < 0 ? -1 : run;
}

/* ---- options --------------------------------------------------------------------------------- */

bool bc_take_option(struct bc_opts *o, int c, const char *arg)
{
    switch (c) {
    case BC_O_IMGDIR: o->image_dir = arg; return true;
    case BC_O_CGVD: o->cgvd = arg; return true;
    case BC_O_UDPPING: o->udpping = arg; return true;
    case BC_O_VIRSH: o->virsh = arg; return true;
    case BC_O_URI: o->uri = arg; return true;
    case BC_O_TMP: o->tmp_base = arg; return true;
    case BC_O_KEEP: o->keep_tmp = true; return true;
    case BC_O_LEVEL: o->log_level = arg; return true;
    default: return false;
    }
}

int bc_parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > max || s[0] == '-')
        return -1;
    *out = (unsigned)v;
    return 0;
}
