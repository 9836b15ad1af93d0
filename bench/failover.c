/* failover.c — the high-availability fail-over benchmark (docs/BENCH.md).
 *
 * Starts its own cgvd (temporary directory, domain prefix "cgvfo-", bridge
 * cgvfo0 10.79.3.1/24) and measures:
 *
 *  - fail-over: a 2N service "fo" (virtual IP 10.79.3.50, heartbeat 100 ms,
 *    3 misses, watchdog 2 s, cgv-nf supervised with app_restarts max 0,
 *    restart fast). Round-robin over the fault kinds, --runs times each, a
 *    fault is injected into the current active: process_death (SIGKILL of
 *    its QEMU), panic (sysrq crash on its serial console), hang (SIGSTOP of
 *    its vCPU thread, behind cgvd's back), watchdog (cgv-guest told to stop
 *    petting), application (cgv-nf killed; max 0 restarts: the agent gives
 *    up at once). Per round: injection -> the detect.* event (detection),
 *    -> recover.role_acked of the standby (recovery), and the client-side
 *    outage: the longest reply gap of a cgv-udpping (-i 5 --gaps 10 --json)
 *    against the VIP that starts between the injection and the recovery.
 *    Before the next round the service must be fully redundant again (both
 *    VMs healthy with acknowledged roles, ha.up, cgv-nf answering on both).
 *  - soak (--soak SEC): 4 idle VMs (two 2N services) at 100 ms heartbeats;
 *    every detect.* event is a false detection.
 *  - fast vs cold restart: two 1-VM "none" services, restart fast and cold;
 *    their QEMU is killed alternately; kill -> recover.healthy.
 *
 * A round that fails (an injection that did not take, a deadline missed, an
 * unexpected detection) is discarded and run again; three failures in a row
 * abandon that fault kind. Everything created is removed on every exit.
 * Output: key=value lines on stdout; progress on stderr. Percentiles are
 * nearest-rank. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_config.h"
#include "cgv_common.h"
#include "client.h"

#define PREFIX "cgvfo-"
#define BRIDGE "cgvfo0"
#define GATEWAY "10.79.3.1/24"
#define POOL "10.79.3.100-10.79.3.199"
#define VIP "10.79.3.50"
#define VIP2 "10.79.3.51"
#define SVC "fo"       /* the 2N service of the fail-over rounds */
#define SVC2 "fo2"     /* the second 2N service of the soak */
#define SVC_FAST "rf"  /* none, restart fast */
#define SVC_COLD "rc"  /* none, restart cold */
#define LOCK_PATH "/run/lock/cgvbench-failover.lock"
#define HEARTBEAT_MS 100
#define MISSES 3
#define WATCHDOG_S 2
#define MEMORY_MIB 256
#define GAP_TOLERANCE_US 100000 /* udpping start vs our clock, injection jitter */
#define SETTLE_MS 300           /* the client runs this long before an injection */
#define MAX_FAILS_IN_A_ROW 3
#define CONSOLE_TIMEOUT_MS 8000
#define STUCK_US 20000000 /* agent up, HA state "starting": cgvd lost the hello */

enum fault { F_DEATH = BC_F_DEATH, F_PANIC = BC_F_PANIC, F_HANG = BC_F_HANG,
             F_WATCHDOG = BC_F_WATCHDOG, F_APP = BC_F_APP, F_N = BC_F_N };
/* From the injection to the detection, at most (generous: a busy host). */
static const long detect_timeout_ms[F_N] = {10000, 20000, 20000, 30000, 20000};

struct fo {
    struct bc b;
    unsigned runs, warmup, restart_runs, soak_s;
    bool quick, fault_on[F_N];
    const char *image;
    long boot_timeout_ms;
    char *spec_fo, *spec_fo2, *spec_rf, *spec_rc;

    bool measuring;
    struct bc_series detect[F_N], recover[F_N], outage[F_N];
    unsigned outage_no_gap[F_N], discarded[F_N];
    unsigned misclassified[F_N]; /* detected as another kind of fault */
    unsigned kicks;              /* instances stuck in "starting" restarted */
    bool abandoned[F_N];
    unsigned unexpected_detections;
    unsigned other_gaps;      /* client gaps in a round outside the outage */
    double other_gap_max_ms;
    struct bc_series restart_fast, restart_cold;
    unsigned restart_discarded;
    bool soak_ran;
    unsigned soak_seconds, soak_false_detections, soak_outages;
};

/* ---- specs ------------------------------------------------------------------------ */

static char *spec_2n(const struct fo *f, const char *name, const char *vip)
{
    return cgv_asprintf("name: %s\n"
                        "instances: 2\n"
                        "vcpus: 1\n"
                        "memory: %uMiB\n"
                        "image: %s\n"
                        "acceleration: auto\n"
                        "heartbeat_ms: %u\n"
                        "networks:\n"
                        "  - network: default\n"
                        "redundancy:\n"
                        "  model: 2n\n"
                        "  virtual_ips: [%s]\n"
                        "health:\n"
                        "  heartbeat_misses: %u\n"
                        "  watchdog_s: %u\n"
                        "processes:\n"
                        "  - name: nf\n"
                        "    command: /usr/sbin/cgv-nf\n"
                        "recovery:\n"
                        "  app_restarts: {max: 0, window_s: 60}\n"
                        "  vm_restarts: {max: 100, window_s: 600}\n"
                        "  failovers: {max: 100, window_s: 600}\n"
                        "  restart: fast\n",
                        name, MEMORY_MIB, f->image, HEARTBEAT_MS, vip, MISSES, WATCHDOG_S);
}

static char *spec_none(const struct fo *f, const char *name, const char *restart)
{
    return cgv_asprintf("name: %s\n"
                        "instances: 1\n"
                        "vcpus: 1\n"
                        "memory: %uMiB\n"
                        "image: %s\n"
                        "acceleration: auto\n"
                        "heartbeat_ms: %u\n"
                        "networks:\n"
                        "  - network: default\n"
                        "health:\n"
                        "  heartbeat_misses: %u\n"
                        "recovery:\n"
                        "  vm_restarts: {max: 100, window_s: 600}\n"
                        "  restart: %s\n",
                        name, MEMORY_MIB, f->image, HEARTBEAT_MS, MISSES, restart);
}

/* ---- service state ------------------------------------------------------------------ */

static int svc_get(struct fo *f, const char *name, json_t **out, struct cgv_error *err)
{
    return client_service_get(f->b.c, name, out, err);
}

/* Wait until service name is fully redundant (bc_svc_redundant) and, with
 * probe, cgv-nf answers on every VM's own address; at most timeout_ms. An
 * instance cgvd gave up on (failed) is started once. */
static int wait_redundant(struct fo *f, const char *name, bool probe, long timeout_ms,
                          struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000, after = 0;
    char why[256] = "";
    bool started[8] = {false};
    int64_t stuck_since[8] = {0};

    if (bc_last_event_id(&f->b, &after, err) < 0)
        return -1;
    for (;;) {
        json_t *svc = NULL, *v;
        size_t i;
        bool ok;
        long left;

        if (bc_stop)
            return cgv_err(err, CGV_E_INTERNAL, "interrupted");
        if (svc_get(f, name, &svc, err) < 0)
            return -1;
        ok = bc_svc_redundant(svc, why, sizeof(why));
        json_array_foreach(json_object_get(svc, "vms"), i, v) {
            const char *st = bc_jstr(v, "ha.state");
            if (i < CGV_ARRAY_LEN(started) && !started[i] &&
                (strcmp(st, "failed") == 0 || strcmp(st, "stopped") == 0)) {
                json_t *out = NULL;
                struct cgv_error e = {0};
                started[i] = true;
                bc_note("%s is %s: starting it", bc_jstr(v, "name"), st);
                if (client_vm_op(f->b.c, bc_jstr(v, "name"), "start", 0, &out, &e) < 0)
                    bc_note("start %s: %s", bc_jstr(v, "name"), e.msg);
                json_decref(out);
            }
            /* Agent up but never healthy: cgvd dropped the hello that came
             * while its restart job still ran (see docs/BENCH.md). Only a
             * new start helps; counted. */
            if (i < CGV_ARRAY_LEN(stuck_since) && strcmp(st, "starting") == 0 &&
                strcmp(bc_jstr(v, "agent.state"), "up") == 0 &&
                json_is_null(json_object_get(v, "busy"))) {
                if (!stuck_since[i]) {
                    stuck_since[i] = cgv_mono_us();
                } else if (cgv_mono_us() - stuck_since[i] > STUCK_US) {
                    json_t *out = NULL;
                    struct cgv_error e = {0};
                    stuck_since[i] = 0;
                    f->kicks++;
                    bc_note("%s: agent up but HA state still starting after %d s: destroying "
                            "and starting it",
                            bc_jstr(v, "name"), (int)(STUCK_US / 1000000));
                    if (client_vm_op(f->b.c, bc_jstr(v, "name"), "destroy", 0, &out, &e) == 0) {
                        json_decref(out);
                        out = NULL;
                        (void)client_vm_op(f->b.c, bc_jstr(v, "name"), "start", 0, &out, &e);
                    }
                    if (e.msg[0])
                        bc_note("restarting %s: %s", bc_jstr(v, "name"), e.msg);
                    json_decref(out);
                }
            } else if (i < CGV_ARRAY_LEN(stuck_since)) {
                stuck_since[i] = 0;
            }
            if (ok && probe) {
                const char *addr = json_string_value(json_array_get(bc_jget(v, "addresses"), 0));
                char said[80];
                struct cgv_error e = {0};
                if (!addr || bc_udp_probe(addr, 2000, said, sizeof(said), &e) < 0) {
                    snprintf(why, sizeof(why), "cgv-nf on %s does not answer: %s",
                             bc_jstr(v, "name"), e.msg);
                    ok = false;
                }
            }
        }
        json_decref(svc);
        if (ok)
            return 0;
        left = (long)((deadline - cgv_mono_us()) / 1000);
        if (left <= 0)
            return cgv_err(err, CGV_E_INTERNAL, "%s not fully redundant within %ld ms: %s",
                           name, timeout_ms, why);
        /* Any event of the service may change it; look again at least
         * every second. */
        if (bc_poll_events(&f->b, &after, name, left < 1000 ? left : 1000, NULL, NULL, err) <
            0)
            return -1;
    }
}

/* ---- the client ---------------------------------------------------------------------- */

struct uping {
    pid_t pid;
    int fd;
    int64_t t0_wall_us; /* just before its spawn: its time 0 (plus a few ms) */
    char *out;
    size_t len, cap;
};

static int uping_start(struct fo *f, struct uping *u, struct cgv_error *err)
{
    const char *argv[] = {f->b.o.udpping, "-i", "5", "--gaps", "10", "--json", VIP, NULL};
    char errlog[PATH_MAX];

    memset(u, 0, sizeof(*u));
    u->fd = -1;
    snprintf(errlog, sizeof(errlog), "%s/udpping.err", f->b.tmp);
    return bc_spawn_pipe(argv, errlog, &u->pid, &u->fd, &u->t0_wall_us, err);
}

/* SIGTERM it (it prints its summary and exits), read the summary. */
static int uping_stop(struct uping *u, json_t **summary, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + 10000000;
    int status = 0, rc = 0;

    if (summary)
        *summary = NULL;
    if (u->pid <= 0)
        return 0;
    kill(u->pid, SIGTERM);
    for (;;) {
        struct pollfd p = {.fd = u->fd, .events = POLLIN};
        int64_t now = cgv_mono_us();
        ssize_t r;

        if (now >= deadline) {
            rc = cgv_err(err, CGV_E_INTERNAL, "cgv-udpping did not finish its output");
            break;
        }
        if (poll(&p, 1, (int)((deadline - now) / 1000) + 1) <= 0)
            continue;
        if (u->len + 4096 + 1 > u->cap) {
            u->cap = u->cap ? u->cap * 2 : 65536;
            u->out = cgv_realloc(u->out, u->cap);
        }
        r = read(u->fd, u->out + u->len, u->cap - u->len - 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            break;
        u->len += (size_t)r;
    }
    close(u->fd);
    u->fd = -1;
    if (bc_wait_child(u->pid, 5000, &status, rc < 0 ? NULL : err) < 0 && rc == 0)
        rc = -1;
    u->pid = 0;
    if (rc == 0 && summary) {
        u->out = u->out ? u->out : cgv_strdup("");
        u->out[u->len] = '\0';
        *summary = json_loads(u->out, 0, NULL);
        if (!*summary)
            rc = cgv_err(err, CGV_E_INTERNAL, "cgv-udpping printed no JSON summary: '%.200s'",
                         u->out);
    }
    free(u->out);
    u->out = NULL;
    return rc;
}

/* ---- a fail-over round ------------------------------------------------------------------ */

struct round_ctx {
    struct fo *f;
    const char *target;
    enum fault k;
    unsigned target_detections, unexpected;
};

/* Every event of a round: a detection on another VM, or a second one on the
 * target, is unexpected (a false detection: the round is discarded). */
static void round_event(void *opaque, const struct bc_event *ev)
{
    struct round_ctx *x = opaque;

    if (strncmp(ev->type, "detect.", 7) == 0) {
        if (strcmp(ev->vm, x->target) != 0 || ++x->target_detections > 1) {
            x->unexpected++;
            bc_note("  unexpected %s %s: %s", ev->type, ev->vm, ev->msg);
        } else if (strcmp(ev->type, bc_detect_types[x->k]) != 0) {
            bc_note("  %s detected as %s: %s", bc_fault_names[x->k], ev->type, ev->msg);
        }
    }
    if (strcmp(ev->type, "ha.alarm") == 0 || strcmp(ev->type, "ha.failed") == 0 ||
        strcmp(ev->type, "recover.restart_failed") == 0 ||
        strcmp(ev->type, "ha.role_timeout") == 0)
        bc_note("  %s %s: %s", ev->type, ev->vm, ev->msg);
}

/* The outage of a round: the longest client gap that starts between the
 * injection and the recovery (with a tolerance for the alignment of
 * udpping's clock start with ours). The round's other gaps are counted. */
static double round_outage(struct fo *f, const json_t *summary, int64_t t0_wall_us,
                           int64_t inj_us, int64_t acked_us, bool *found, char *desc,
                           size_t cap)
{
    const json_t *gaps = json_object_get(summary, "gaps");
    size_t i, best_i = 0;
    json_t *g;
    double best = 0;

    *found = false;
    desc[0] = '\0';
    json_array_foreach(gaps, i, g) {
        double len = json_number_value(json_object_get(g, "len_ms"));
        int64_t s_us = t0_wall_us +
                       (int64_t)(json_number_value(json_object_get(g, "start_ms")) * 1000.0);

        if (s_us >= inj_us - GAP_TOLERANCE_US && s_us <= acked_us + GAP_TOLERANCE_US &&
            (!*found || len > best)) {
            best = len;
            best_i = i;
            *found = true;
            snprintf(desc, cap,
                     "%.1f ms from %s to %s, starting %+.1f ms after the injection", len,
                     bc_jstr(g, "from"), bc_jstr(g, "to"), (double)(s_us - inj_us) / 1000.0);
        }
    }
    json_array_foreach(gaps, i, g) {
        double len = json_number_value(json_object_get(g, "len_ms"));
        if ((*found && i == best_i) || !f->measuring)
            continue;
        f->other_gaps++;
        if (len > f->other_gap_max_ms)
            f->other_gap_max_ms = len;
    }
    return best;
}

static int fo_round(struct fo *f, enum fault k, struct cgv_error *err)
{
    json_t *svc = NULL, *summary = NULL;
    json_t *tvm;
    char target[64] = "", standby[64] = "", gapdesc[160];
    struct uping u = {.pid = 0, .fd = -1};
    struct round_ctx x = {.f = f, .k = k};
    struct bc_want w[2];
    int64_t after = 0, inj_wall = 0, inj_mono = 0;
    double det_ms, rec_ms, out_ms;
    bool found;
    size_t i;
    json_t *v;
    int rc = -1;

    if (svc_get(f, SVC, &svc, err) < 0)
        goto cleanup;
    cgv_strlcpy(target, bc_jstr(json_array_get(bc_jget(svc, "ha.assignments"), 0), "active"),
                sizeof(target));
    json_array_foreach(json_object_get(svc, "vms"), i, v) {
        if (strcmp(bc_jstr(v, "name"), target) != 0)
            cgv_strlcpy(standby, bc_jstr(v, "name"), sizeof(standby));
    }
    tvm = target[0] ? bc_svc_vm(svc, target) : NULL;
    if (!tvm || !standby[0]) {
        cgv_err(err, CGV_E_INTERNAL, "%s has no active and standby", SVC);
        goto cleanup;
    }
    x.target = target;

    if (uping_start(f, &u, err) < 0 || bc_udp_probe(VIP, 5000, NULL, 0, err) < 0)
        goto cleanup;
    /* Let the client run a while: its gaps need a baseline before the fault. */
    if (poll(NULL, 0, SETTLE_MS) < 0 && bc_stop) {
        cgv_err(err, CGV_E_INTERNAL, "interrupted");
        goto cleanup;
    }
    if (bc_last_event_id(&f->b, &after, err) < 0)
        goto cleanup;
    if (bc_inject(&f->b, (enum bc_fault)k, (pid_t)bc_jint(tvm, "pid"), bc_jstr(tvm, "domain"),
                  bc_jstr(tvm, "console_socket"), CONSOLE_TIMEOUT_MS, &inj_wall, &inj_mono,
                  err) < 0) {
        cgv_err_prefix(err, "injecting %s into %s", bc_fault_names[k], target);
        goto cleanup;
    }
    memset(w, 0, sizeof(w));
    w[0].type = "detect."; /* any kind: a misclassification is counted */
    w[0].vm = target;
    w[1].type = "recover.role_acked";
    w[1].vm = standby;
    /* Both in one wait: one answer may carry both. The fence of a hung VM
     * may take libvirt's 10 s SIGTERM grace. */
    if (bc_wait_events(&f->b, &after, SVC, w, 2, detect_timeout_ms[k] + 60000, round_event,
                       &x, err) < 0) {
        cgv_err_prefix(err, "after %s of %s", bc_fault_names[k], target);
        goto cleanup;
    }
    if (wait_redundant(f, SVC, true, f->boot_timeout_ms, err) < 0)
        goto cleanup;
    if (uping_stop(&u, &summary, err) < 0)
        goto cleanup;
    if (x.unexpected) {
        f->unexpected_detections += x.unexpected;
        cgv_err(err, CGV_E_INTERNAL, "%u unexpected detection%s", x.unexpected,
                x.unexpected == 1 ? "" : "s");
        goto cleanup;
    }
    det_ms = (double)w[0].ev.time_ms - (double)inj_wall / 1000.0;
    rec_ms = (double)w[1].ev.time_ms - (double)inj_wall / 1000.0;
    out_ms = round_outage(f, summary, u.t0_wall_us, inj_wall, w[1].ev.time_ms * 1000, &found,
                          gapdesc, sizeof(gapdesc));
    if (f->measuring) {
        if (strcmp(w[0].ev.type, bc_detect_types[k]) != 0)
            f->misclassified[k]++;
        bc_series_add(&f->detect[k], det_ms);
        bc_series_add(&f->recover[k], rec_ms);
        bc_series_add(&f->outage[k], out_ms);
        f->outage_no_gap[k] += !found;
    }
    bc_note("  %-13s %s -> %s: detected %.1f ms (%s), recovered %.1f ms, client outage %s",
            bc_fault_names[k], target, standby, det_ms, w[0].ev.type + 7, rec_ms,
            found ? gapdesc : "none over 10 ms");
    rc = 0;

cleanup:
    if (u.pid > 0) {
        struct cgv_error e = {0};
        (void)uping_stop(&u, NULL, &e);
    }
    json_decref(summary);
    json_decref(svc);
    return rc;
}

/* ---- phases ---------------------------------------------------------------------------- */

static int failover_phase(struct fo *f, struct cgv_error *err)
{
    unsigned fails[F_N] = {0};

    bc_note("fail-over: applying %s (2N, VIP %s)", SVC, VIP);
    if (bc_apply(&f->b, SVC, f->spec_fo, err) < 0 ||
        wait_redundant(f, SVC, true, f->boot_timeout_ms, err) < 0)
        return -1;
    for (unsigned i = 0; i < f->warmup + f->runs; i++) {
        f->measuring = i >= f->warmup;
        if (f->measuring)
            bc_note("fail-over round %u/%u", i - f->warmup + 1, f->runs);
        else
            bc_note("fail-over warm-up round %u/%u (not recorded)", i + 1, f->warmup);
        for (int k = 0; k < F_N; k++) {
            while (f->fault_on[k] && !f->abandoned[k]) {
                if (fo_round(f, (enum fault)k, err) == 0) {
                    fails[k] = 0;
                    break;
                }
                if (bc_stop || !bc_cgvd_alive(&f->b))
                    return -1;
                bc_note("  round failed: %s", err->msg);
                cgv_err_clear(err);
                f->discarded[k]++;
                bc_resume_stopped(&f->b);
                if (++fails[k] >= MAX_FAILS_IN_A_ROW) {
                    bc_note("  %s failed %d times in a row: abandoned", bc_fault_names[k],
                            MAX_FAILS_IN_A_ROW);
                    f->abandoned[k] = true;
                }
                if (wait_redundant(f, SVC, true, 2 * f->boot_timeout_ms, err) < 0) {
                    cgv_err_prefix(err, "recovering from a failed round");
                    return -1;
                }
            }
        }
    }
    f->measuring = false;
    return 0;
}

static void soak_event(void *opaque, const struct bc_event *ev)
{
    struct fo *f = opaque;

    if (strncmp(ev->type, "detect.", 7) == 0) {
        f->soak_false_detections++;
        bc_note("  soak: %s %s: %s", ev->type, ev->vm, ev->msg);
    } else if (strcmp(ev->type, "ha.outage") == 0) {
        f->soak_outages++;
        bc_note("  soak: %s %s: %s", ev->type, ev->service, ev->msg);
    }
}

static int soak_phase(struct fo *f, struct cgv_error *err)
{
    int64_t after = 0, t0, end;

    bc_note("soak: applying %s (2N, VIP %s); 4 VMs at %d ms heartbeats", SVC2, VIP2,
            HEARTBEAT_MS);
    if (bc_apply(&f->b, SVC2, f->spec_fo2, err) < 0 ||
        wait_redundant(f, SVC2, true, f->boot_timeout_ms, err) < 0 ||
        wait_redundant(f, SVC, true, f->boot_timeout_ms, err) < 0 ||
        bc_last_event_id(&f->b, &after, err) < 0)
        return -1;
    t0 = cgv_mono_us();
    end = t0 + (int64_t)f->soak_s * 1000000;
    f->soak_ran = true;
    bc_note("soak: %u s idle, counting detections", f->soak_s);
    for (;;) {
        int64_t now = cgv_mono_us();
        if (bc_stop)
            return cgv_err(err, CGV_E_INTERNAL, "interrupted");
        if (now >= end)
            break;
        f->soak_seconds = (unsigned)((now - t0) / 1000000);
        if (bc_poll_events(&f->b, &after, NULL, (long)((end - now) / 1000) + 1 > 30000
                                                     ? 30000
                                                     : (long)((end - now) / 1000) + 1,
                           soak_event, f, err) < 0)
            return -1;
    }
    /* Events up to the end. */
    if (bc_poll_events(&f->b, &after, NULL, 0, soak_event, f, err) < 0)
        return -1;
    f->soak_seconds = f->soak_s;
    bc_note("soak: %u detections, %u outages in %u s", f->soak_false_detections,
            f->soak_outages, f->soak_s);
    return bc_delete(&f->b, SVC2, err);
}

static int restart_one(struct fo *f, const char *svc_name, bool fast, struct cgv_error *err)
{
    char vm[64];
    json_t *svc = NULL, *v;
    struct bc_want w[2];
    int64_t after = 0, inj_wall;
    pid_t pid;
    double ms;
    int rc = -1;

    snprintf(vm, sizeof(vm), "%s-0", svc_name);
    if (svc_get(f, svc_name, &svc, err) < 0)
        return -1;
    v = bc_svc_vm(svc, vm);
    pid = (pid_t)bc_jint(v, "pid");
    if (!v || !bc_qemu_is(pid, bc_jstr(v, "domain"))) {
        cgv_err(err, CGV_E_INTERNAL, "no QEMU for %s (pid %d)", vm, (int)pid);
        goto cleanup;
    }
    if (fast && !json_is_true(bc_jget(v, "ha.fast_restart_ready"))) {
        cgv_err(err, CGV_E_INTERNAL, "%s has no snapshot for a fast restart", vm);
        goto cleanup;
    }
    if (bc_last_event_id(&f->b, &after, err) < 0)
        goto cleanup;
    inj_wall = bc_wall_us();
    if (kill(pid, SIGKILL) < 0) {
        cgv_err(err, CGV_E_IO, "kill %d: %s", (int)pid, strerror(errno));
        goto cleanup;
    }
    memset(w, 0, sizeof(w));
    w[0].type = "recover.restarted";
    w[0].vm = vm;
    w[1].type = "recover.healthy";
    w[1].vm = vm;
    if (bc_wait_events(&f->b, &after, svc_name, w, 2, f->boot_timeout_ms, NULL, NULL, err) <
        0)
        goto cleanup;
    if (fast != (strstr(w[0].ev.msg, "fast") == w[0].ev.msg)) {
        cgv_err(err, CGV_E_INTERNAL, "%s: expected a %s restart: %s", vm,
                fast ? "fast" : "cold", w[0].ev.msg);
        goto cleanup;
    }
    ms = (double)w[1].ev.time_ms - (double)inj_wall / 1000.0;
    if (wait_redundant(f, svc_name, false, f->boot_timeout_ms, err) < 0)
        goto cleanup;
    if (f->measuring)
        bc_series_add(fast ? &f->restart_fast : &f->restart_cold, ms);
    bc_note("  %s restart of %s: healthy %.1f ms after the kill", fast ? "fast" : "cold", vm,
            ms);
    rc = 0;

cleanup:
    json_decref(svc);
    return rc;
}

static int restart_phase(struct fo *f, struct cgv_error *err)
{
    unsigned fails = 0;

    bc_note("restart: applying %s (restart fast) and %s (restart cold)", SVC_FAST, SVC_COLD);
    if (bc_apply(&f->b, SVC_FAST, f->spec_rf, err) < 0 ||
        bc_apply(&f->b, SVC_COLD, f->spec_rc, err) < 0 ||
        wait_redundant(f, SVC_FAST, false, f->boot_timeout_ms, err) < 0 ||
        wait_redundant(f, SVC_COLD, false, f->boot_timeout_ms, err) < 0)
        return -1;
    /* The fast one's snapshot is taken when it is first healthy. */
    for (int64_t deadline = cgv_mono_us() + f->boot_timeout_ms * 1000;;) {
        json_t *svc = NULL;
        int64_t after = 0;
        bool ready;
        if (svc_get(f, SVC_FAST, &svc, err) < 0)
            return -1;
        ready = json_is_true(
            bc_jget(json_array_get(json_object_get(svc, "vms"), 0), "ha.fast_restart_ready"));
        json_decref(svc);
        if (ready)
            break;
        if (cgv_mono_us() >= deadline)
            return cgv_err(err, CGV_E_INTERNAL, "%s-0 took no snapshot", SVC_FAST);
        if (bc_last_event_id(&f->b, &after, err) < 0 ||
            bc_poll_events(&f->b, &after, SVC_FAST, 1000, NULL, NULL, err) < 0)
            return -1;
    }
    for (unsigned i = 0; i < 1 + f->restart_runs;) {
        bool fast_first = i % 2 == 0, failed = false;

        f->measuring = i >= 1;
        if (f->measuring)
            bc_note("restart round %u/%u (%s first)", i, f->restart_runs,
                    fast_first ? "fast" : "cold");
        else
            bc_note("restart warm-up round (not recorded)");
        for (int s = 0; s < 2 && !failed; s++) {
            bool fast = (s == 0) == fast_first;
            if (restart_one(f, fast ? SVC_FAST : SVC_COLD, fast, err) < 0)
                failed = true;
        }
        if (!failed) {
            fails = 0;
            i++;
            continue;
        }
        if (bc_stop || !bc_cgvd_alive(&f->b) || ++fails >= MAX_FAILS_IN_A_ROW)
            return -1;
        bc_note("  restart round failed: %s; running it again", err->msg);
        cgv_err_clear(err);
        f->restart_discarded++;
        if (wait_redundant(f, SVC_FAST, false, 2 * f->boot_timeout_ms, err) < 0 ||
            wait_redundant(f, SVC_COLD, false, 2 * f->boot_timeout_ms, err) < 0)
            return -1;
    }
    f->measuring = false;
    if (bc_delete(&f->b, SVC_FAST, err) < 0 || bc_delete(&f->b, SVC_COLD, err) < 0)
        return -1;
    return 0;
}

/* ---- output ------------------------------------------------------------------------------ */

static const char *met(bool ok)
{
    return ok ? "met" : "missed";
}

static void print_figures(const struct fo *f)
{
    char key[96];
    unsigned disc = 0;

    for (int k = 0; k < F_N; k++)
        disc += f->discarded[k];
    printf("failover_runs=%u\n", f->runs);
    printf("failover_percentiles=nearest-rank\n");
    printf("failover_acceleration=%s\n", f->b.accel[0] ? f->b.accel : "unknown");
    printf("failover_heartbeat_ms=%d\n", HEARTBEAT_MS);
    printf("failover_heartbeat_misses=%d\n", MISSES);
    printf("failover_watchdog_s=%d\n", WATCHDOG_S);
    printf("failover_app_restarts_max=0\n");
    printf("failover_rounds_discarded=%u\n", disc);
    printf("failover_unexpected_detections=%u\n", f->unexpected_detections);
    printf("failover_stuck_instances_restarted=%u\n", f->kicks);
    for (int k = 0; k < F_N; k++) {
        if (!f->fault_on[k])
            continue;
        snprintf(key, sizeof(key), "detect_%s", bc_fault_names[k]);
        bc_print_series(key, &f->detect[k]);
        snprintf(key, sizeof(key), "recover_%s", bc_fault_names[k]);
        bc_print_series(key, &f->recover[k]);
        snprintf(key, sizeof(key), "outage_%s", bc_fault_names[k]);
        bc_print_series(key, &f->outage[k]);
        if (f->outage[k].n)
            printf("outage_%s_max_ms=%.1f\n", bc_fault_names[k], bc_series_max(&f->outage[k]));
        printf("outage_%s_no_gap=%u\n", bc_fault_names[k], f->outage_no_gap[k]);
        printf("detect_%s_misclassified=%u\n", bc_fault_names[k], f->misclassified[k]);
        printf("failover_%s_discarded=%u\n", bc_fault_names[k], f->discarded[k]);
        if (f->abandoned[k])
            printf("failover_%s_abandoned=1\n", bc_fault_names[k]);
    }
    printf("outage_other_gaps=%u\n", f->other_gaps);
    printf("outage_other_gap_max_ms=%.1f\n", f->other_gap_max_ms);
    bc_print_series("restart_fast", &f->restart_fast);
    bc_print_series("restart_cold", &f->restart_cold);
    if (f->restart_fast.n && f->restart_cold.n && bc_series_pct(&f->restart_cold, 0.5) > 0)
        printf("restart_fast_ratio_vs_cold=%.2f\n",
               bc_series_pct(&f->restart_fast, 0.5) / bc_series_pct(&f->restart_cold, 0.5));
    printf("restart_rounds_discarded=%u\n", f->restart_discarded);
    if (f->soak_ran) {
        printf("soak_seconds=%u\n", f->soak_seconds);
        printf("soak_vms=4\n");
        printf("soak_heartbeat_ms=%d\n", HEARTBEAT_MS);
        printf("soak_false_detections=%u\n", f->soak_false_detections);
        printf("soak_outages=%u\n", f->soak_outages);
    }
    /* The targets. */
    if (f->outage[F_DEATH].n)
        printf("target_failover_process_death_outage_p99_lt_100ms=%s\n",
               met(bc_series_pct(&f->outage[F_DEATH], 0.99) < 100.0));
    else
        printf("target_failover_process_death_outage_p99_lt_100ms=not_run\n");
    if (f->detect[F_HANG].n)
        printf("target_hang_detect_p99_le_%dms=%s\n", MISSES * HEARTBEAT_MS,
               met(bc_series_pct(&f->detect[F_HANG], 0.99) <= MISSES * HEARTBEAT_MS));
    else
        printf("target_hang_detect_p99_le_%dms=not_run\n", MISSES * HEARTBEAT_MS);
    if (f->soak_ran && f->soak_seconds == f->soak_s)
        printf("target_zero_false_detections=%s\n",
               met(f->soak_false_detections == 0 && f->unexpected_detections == 0));
    else
        printf("target_zero_false_detections=not_run\n");
    if (f->restart_fast.n && f->restart_cold.n)
        printf("target_fast_restart_faster_than_cold=%s\n",
               met(bc_series_pct(&f->restart_fast, 0.5) < bc_series_pct(&f->restart_cold, 0.5)));
    else
        printf("target_fast_restart_faster_than_cold=not_run\n");
    fflush(stdout);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: failover [OPTIONS]\n"
            "Measures cgv's fault detection, fail-over and restart (see docs/BENCH.md).\n"
            "Needs root, libvirtd (qemu:///system) and the guest image.\n\n"
            "  --runs N            injections per fault kind (default 20)\n"
            "  --warmup N          unrecorded rounds of every fault first (default 1)\n"
            "  --restart-runs N    kills per restart kind (default 10; 0 skips)\n"
            "  --soak SEC          idle soak with 4 VMs (default 0: off; the issue: 600)\n"
            "  --quick             --runs 5 --warmup 0 --restart-runs 3, no soak\n"
            "  --faults LIST       only these (comma-separated: process_death,panic,hang,\n"
            "                      watchdog,application)\n"
            "  --image NAME        guest image (default default)\n"
            "  --image-dir DIR     (default /var/lib/cgv/images)\n"
            "  --cgvd PATH         (default %s)\n"
            "  --udpping PATH      (default %s)\n"
            "  --virsh PATH        (default virsh)\n"
            "  --libvirt-uri URI   (default qemu:///system)\n"
            "  --tmp-dir DIR       where the working directory goes (default $TMPDIR or /tmp)\n"
            "  --boot-timeout SEC  deadline for a VM to be healthy again (default 300)\n"
            "  --op-timeout SEC    deadline for any other step (default 180)\n"
            "  --keep-tmp          keep the working directory (cgvd log, console logs)\n"
            "  --cgvd-log-level L  cgvd's --log-level (default info)\n"
            "  -h, --help\n",
            BENCH_CGVD_PATH, BENCH_UDPPING_PATH);
}


static int parse_opts(int argc, char **argv, struct fo *f)
{
    enum { O_RUNS = 256, O_WARM, O_RRUNS, O_SOAK, O_QUICK, O_FAULTS, O_IMAGE, O_BOOTTO, O_OPTO };
    static const struct option longopts[] = {
        {"runs", required_argument, NULL, O_RUNS},
        {"warmup", required_argument, NULL, O_WARM},
        {"restart-runs", required_argument, NULL, O_RRUNS},
        {"soak", required_argument, NULL, O_SOAK},
        {"quick", no_argument, NULL, O_QUICK},
        {"faults", required_argument, NULL, O_FAULTS},
        {"image", required_argument, NULL, O_IMAGE},
        {"boot-timeout", required_argument, NULL, O_BOOTTO},
        {"op-timeout", required_argument, NULL, O_OPTO},
        BC_OPTIONS,
        BC_OPTION_UDPPING,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool runs_set = false, warm_set = false, rruns_set = false;
    unsigned v;
    int c;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_RUNS:
        case O_WARM:
        case O_RRUNS:
        case O_SOAK:
        case O_BOOTTO:
        case O_OPTO:
            if (bc_parse_uint(optarg, 100000, &v) < 0 ||
                (v == 0 && (c == O_RUNS || c == O_BOOTTO || c == O_OPTO))) {
                fprintf(stderr, "failover: bad number '%s'\n", optarg);
                return -1;
            }
            if (c == O_RUNS) {
                f->runs = v;
                runs_set = true;
            } else if (c == O_WARM) {
                f->warmup = v;
                warm_set = true;
            } else if (c == O_RRUNS) {
                f->restart_runs = v;
                rruns_set = true;
            } else if (c == O_SOAK) {
                f->soak_s = v;
            } else if (c == O_BOOTTO) {
                f->boot_timeout_ms = (long)v * 1000;
            } else {
                f->b.o.op_timeout_ms = (long)v * 1000;
            }
            break;
        case O_QUICK: f->quick = true; break;
        case O_FAULTS:
            if (bc_parse_faults("failover", optarg, f->fault_on) < 0)
                return -1;
            break;
        case O_IMAGE: f->image = optarg; break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            if (bc_take_option(&f->b.o, c, optarg))
                break;
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "failover: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!cgv_name_valid(f->image)) {
        fprintf(stderr, "failover: bad image name '%s'\n", f->image);
        return -1;
    }
    if (f->quick) {
        if (!runs_set)
            f->runs = 5;
        if (!warm_set)
            f->warmup = 0;
        if (!rruns_set)
            f->restart_runs = 3;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct fo f;
    struct cgv_error err = {0};
    const char *tmpdir = getenv("TMPDIR");
    int rc = 1;

    f.runs = 20;
    f.warmup = 1;
    f.restart_runs = 10;
    f.image = "default";
    f.boot_timeout_ms = 300000;
    for (int k = 0; k < F_N; k++)
        f.fault_on[k] = true;
    f.b.o = (struct bc_opts){
        .tag = "failover",
        .prefix = PREFIX,
        .bridge = BRIDGE,
        .gateway = GATEWAY,
        .pool = POOL,
        .lock_path = LOCK_PATH,
        .cgvd = BENCH_CGVD_PATH,
        .cgv = BENCH_CGV_PATH,
        .udpping = BENCH_UDPPING_PATH,
        .virsh = "virsh",
        .uri = "qemu:///system",
        .image_dir = "/var/lib/cgv/images",
        .tmp_base = tmpdir && tmpdir[0] ? tmpdir : "/tmp",
        .log_level = "info",
        .op_timeout_ms = 180000,
    };
    f.b.lock_fd = -1;
    if (parse_opts(argc, argv, &f) < 0)
        return 2;
    if (geteuid() != 0) {
        fprintf(stderr, "failover: must run as root (cgvd and qemu:///system need it)\n");
        return 2;
    }
    f.spec_fo = spec_2n(&f, SVC, VIP);
    f.spec_fo2 = spec_2n(&f, SVC2, VIP2);
    f.spec_rf = spec_none(&f, SVC_FAST, "fast");
    f.spec_rc = spec_none(&f, SVC_COLD, "cold");

    if (bc_setup(&f.b, &err) < 0) {
        if (err.code == CGV_E_CONFLICT) {
            fprintf(stderr, "failover: %s\n", err.msg);
            bc_cleanup(&f.b);
            return 2;
        }
        goto done;
    }
    if (failover_phase(&f, &err) < 0)
        goto done;
    if (f.soak_s > 0 && !f.quick && soak_phase(&f, &err) < 0)
        goto done;
    if (bc_delete(&f.b, SVC, &err) < 0)
        goto done;
    if (f.restart_runs > 0 && restart_phase(&f, &err) < 0)
        goto done;
    rc = 0;
    for (int k = 0; k < F_N; k++) {
        if (f.abandoned[k])
            rc = 1;
    }

done:
    if (err.msg[0])
        bc_note("failed: %s", err.msg);
    bc_cleanup(&f.b);
    print_figures(&f);
    for (int k = 0; k < F_N; k++) {
        bc_series_free(&f.detect[k]);
        bc_series_free(&f.recover[k]);
        bc_series_free(&f.outage[k]);
    }
    bc_series_free(&f.restart_fast);
    bc_series_free(&f.restart_cold);
    free(f.spec_fo);
    free(f.spec_fo2);
    free(f.spec_rf);
    free(f.spec_rc);
    if (bc_stop)
        return 130;
    return rc;
}
