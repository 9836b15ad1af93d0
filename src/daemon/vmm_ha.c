/* vmm_ha.c — high availability in cgvd: turns what cgvd observes into
 * calls of the policy in src/ha (pure) and carries out its plans.
 *
 * Fault sources, fastest first: the QEMU process's pidfd (readable the
 * moment it exits) and EOF on the agent channel; libvirt's crashed
 * (pvpanic) and watchdog events and unexpected stop/pause; heartbeat loss
 * (health.heartbeat_misses intervals without one); the agent giving up on a
 * supervised process. Plans are carried out in order: fence (destroy) on a
 * worker, ROLE_SET over the agent channel (complete when the guest acks, or
 * a fault after HA_ACK_TIMEOUT_MS), restart on a worker — fast (restore the
 * memory snapshot taken when the VM was first healthy after a cold boot) or
 * cold (define + start).
 *
 * Times given to the policy are wall-clock milliseconds (its book of
 * outages outlives cgvd restarts); latencies in events are monotonic.
 * The policy state is persisted in the store's meta table under
 * "ha.svc.<service>", written from the monitor tick when it changed, so the
 * fsync stays off the failover path.
 */
#include "vmm_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgv_log.h"

/* A pause behind cgv's back waits this long for a crashed event (panic). */
#define VMM_PAUSE_GRACE_MS 50

#define LOG_MODULE "ha"
#define HA_ACK_TIMEOUT_MS 3000

static void exec_plan(struct vmm *m, struct vmm_service *svc, const struct ha_plan *p);
static void check_drains(struct vmm *m, struct vmm_service *svc);

/* ---- helpers ------------------------------------------------------------------ */

static struct vmm_vm *vm_at(struct vmm *m, struct vmm_service *svc, int index)
{
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        if (vm->svc == svc && vm->index == index)
            return vm;
    }
    return NULL;
}

static bool managed(const struct vmm_vm *vm)
{
    return vm->svc->ha && vm->index >= 0 && (unsigned)vm->index < vm->svc->ha->n_inst;
}

static struct ha_inst *inst_of(struct vmm_vm *vm)
{
    return &vm->svc->ha->inst[vm->index];
}

static int64_t now_wall(void)
{
    return cgv_wall_ms();
}

static enum ha_model model_of(const struct spec_service *spec)
{
    switch (spec->redundancy) {
    case SPEC_RED_2N: return HA_2N;
    case SPEC_RED_NPM: return HA_NPM;
    case SPEC_RED_NWAY: return HA_NWAY;
    case SPEC_RED_NONE: break;
    }
    return HA_NONE;
}

static void golden_path(const struct vmm *m, const struct vmm_vm *vm, char *out, size_t cap)
{
    snprintf(out, cap, "%s/golden/%s.mem", m->state_dir, vm->name);
}

static void account(struct vmm *m, struct vmm_service *svc, const char *cause)
{
    struct ha_svc *h = svc->ha;
    bool was_down = h->down, was_up_ever = h->ever_up;
    int64_t now = now_wall();

    ha_account(h, now, cause);
    svc->ha_dirty = true;
    if (!was_down && h->down) {
        evlog_emit(m->ev, "error", "ha.outage", svc->name, NULL,
                   "service %s is down (%s)", svc->name, cause);
    } else if (was_down && !h->down) {
        const struct ha_outage *o = &h->outages[(h->n_outages - 1) % HA_OUTAGES];
        evlog_emit(m->ev, "info", "ha.restored", svc->name, NULL,
                   "service %s is up again after %" PRId64 " ms (%s)", svc->name,
                   o->end_ms - o->start_ms, o->cause);
    } else if (!was_up_ever && h->ever_up) {
        evlog_emit(m->ev, "info", "ha.up", svc->name, NULL,
                   "service %s is up (%s, %u assignment%s)", svc->name,
                   ha_model_name(h->model), h->n_assign, h->n_assign == 1 ? "" : "s");
    }
}

/* ---- the QEMU process watch (pidfd) ------------------------------------------- */

static void do_fault(struct vmm_vm *vm, enum ha_fault f, const char *source);

static void fenced_early(struct vmm_vm *vm);

/* The watched QEMU exited: the end of a fence that killed it, or a fault. */
static void qemu_gone(struct vmm_vm *vm, const char *why)
{
    vmm_ha_unwatch(vm);
    if (vm->fence_job)
        fenced_early(vm);
    else
        do_fault(vm, HA_F_DEATH, why);
}

static void on_pidfd(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct vmm_vm *vm = opaque;

    (void)l;
    (void)fd;
    (void)events;
    qemu_gone(vm, "QEMU process exited (pidfd)");
}

void vmm_ha_watch(struct vmm_vm *vm)
{
    int fd;

    if (vm->pid <= 0 || (vm->pidfd >= 0 && vm->pidfd_pid == vm->pid))
        return;
    vmm_ha_unwatch(vm);
    fd = (int)syscall(SYS_pidfd_open, vm->pid, 0);
    if (fd < 0) {
        log_warn("%s: pidfd_open(%d): %s", vm->name, vm->pid, strerror(errno));
        return;
    }
    if (loop_add_fd(vm->m->loop, fd, EPOLLIN, on_pidfd, vm, NULL) < 0) {
        close(fd);
        return;
    }
    vm->pidfd = fd;
    vm->pidfd_pid = vm->pid;
}

void vmm_ha_unwatch(struct vmm_vm *vm)
{
    if (vm->pidfd >= 0) {
        loop_del_fd(vm->m->loop, vm->pidfd);
        close(vm->pidfd);
    }
    vm->pidfd = -1;
    vm->pidfd_pid = 0;
}

/* Fencing starts with SIGKILL through the pidfd (never the wrong process,
 * even if the pid was reused): libvirt's destroy first sends SIGTERM and
 * waits up to 10 s, which a stopped (hung) QEMU never answers. The destroy
 * job that follows cleans up libvirt's side. */
static bool fence_kill(struct vmm_vm *vm)
{
    /* vm->pid is 0 once libvirt called the domain crashed: the pidfd
     * still names its QEMU. */
    if (vm->pidfd < 0 || (vm->pid != 0 && vm->pidfd_pid != vm->pid)) {
        log_debug("%s: no pidfd on QEMU %d (pidfd %d of pid %d): libvirt's destroy fences",
                 vm->name, (int)vm->pid, vm->pidfd, (int)vm->pidfd_pid);
        return false;
    }
    if (syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0) < 0) {
        if (errno != ESRCH)
            log_warn("%s: pidfd_send_signal(SIGKILL) to QEMU %d: %s", vm->name,
                     (int)vm->pid, strerror(errno));
        return false;
    }
    return true;
}

/* Has the watched QEMU exited already? */
static bool pid_gone(struct vmm_vm *vm)
{
    struct pollfd p = {.fd = vm->pidfd, .events = POLLIN};

    if (vm->pidfd < 0)
        return vm->pid > 0 && kill(vm->pid, 0) < 0 && errno == ESRCH;
    return poll(&p, 1, 0) == 1;
}

/* ---- roles ------------------------------------------------------------------------ */

static void on_ack_timeout(struct loop *l, void *opaque)
{
    struct vmm_vm *vm = opaque;

    (void)l;
    vm->ack_timer = NULL;
    if (!managed(vm) || inst_of(vm)->role_acked)
        return;
    evlog_emit(vm->m->ev, "error", "ha.role_timeout", vm->svc->name, vm->name,
               "role %s (generation %" PRIu64 ") not acknowledged within %d ms",
               ha_role_name(inst_of(vm)->role), inst_of(vm)->role_gen, HA_ACK_TIMEOUT_MS);
    do_fault(vm, HA_F_APP, "role not acknowledged");
}

static void fill_role_msg(struct vmm_vm *vm, struct proto_msg *msg)
{
    const struct ha_inst *in = inst_of(vm);
    const struct spec_service *spec = vm->svc->spec;

    memset(msg, 0, sizeof(*msg));
    msg->type = PROTO_ROLE_SET;
    msg->u.role_set.generation = in->role_gen;
    msg->u.role_set.role = in->role == HA_ROLE_ACTIVE    ? PROTO_ROLE_ACTIVE
                           : in->role == HA_ROLE_STANDBY ? PROTO_ROLE_STANDBY
                                                         : PROTO_ROLE_NONE;
    if (in->assignment >= 0)
        snprintf(msg->u.role_set.assignment, sizeof(msg->u.role_set.assignment), "a%d",
                 in->assignment);
    if (in->role == HA_ROLE_ACTIVE && in->assignment >= 0 &&
        (size_t)in->assignment < spec->n_vips) {
        snprintf(msg->u.role_set.vips[0], sizeof(msg->u.role_set.vips[0]), "%s/%u",
                 spec->vips[in->assignment].ip, vm->m->cfg.net.prefix);
        msg->u.role_set.n_vips = 1;
    }
}

static void send_role(struct vmm_vm *vm)
{
    struct proto_msg msg;

    fill_role_msg(vm, &msg);
    vm->role_sent_us = cgv_mono_us();
    if (vm->ack_timer)
        loop_timer_cancel(vm->m->loop, vm->ack_timer);
    vm->ack_timer = loop_timer_add(vm->m->loop, HA_ACK_TIMEOUT_MS, on_ack_timeout, vm);
    if (agentch_connected(vm->ch) && agentch_send(vm->ch, &msg) < 0)
        log_warn("%s: could not send ROLE_SET", vm->name);
    /* Not connected: vmm_ha_connected() sends it on (re)connect. */
}

static void send_config(struct vmm_vm *vm)
{
    const struct spec_service *spec = vm->svc->spec;
    static struct proto_msg msg; /* large; the loop is single-threaded */

    memset(&msg, 0, sizeof(msg));
    msg.type = PROTO_CONFIG;
    msg.u.config.watchdog_s = spec->watchdog_s;
    msg.u.config.app_max_restarts = spec->app_restarts.max;
    msg.u.config.app_window_ms = spec->app_restarts.window_s * 1000u;
    for (size_t k = 0; k < spec->n_processes && k < PROTO_MAX_PROCS; k++) {
        cgv_strlcpy(msg.u.config.procs[k].name, spec->processes[k].name,
                    sizeof(msg.u.config.procs[k].name));
        cgv_strlcpy(msg.u.config.procs[k].command, spec->processes[k].command,
                    sizeof(msg.u.config.procs[k].command));
        msg.u.config.n_procs++;
    }
    if (agentch_send(vm->ch, &msg) < 0)
        log_warn("%s: could not send CONFIG", vm->name);
}

/* ---- jobs: fence, restart, snapshot ----------------------------------------------- */

enum ha_job_kind { HJ_FENCE, HJ_RESTART, HJ_SNAPSHOT };

struct ha_job {
    struct vmm *m;
    struct vmm_vm *vm;
    enum ha_job_kind kind;
    struct hv *hv;
    char domain[128];
    char sock_dir[VMM_PATH_MAX];
    char path[VMM_PATH_MAX]; /* golden snapshot */
    char *xml;               /* cold restart: define this first */
    bool fast;
    int64_t t0_us;
    int rc;
    struct cgv_error err;
    bool have_info;
    struct hv_dom_info info;
    int64_t info_us;
    /* fence: the QEMU was SIGKILLed and its pidfd said it is gone before
     * libvirt's destroy returned; what ha_fenced() planned for the fenced
     * VM itself (its restart) waits for the destroy */
    bool fenced_early;
    struct ha_plan rest;
};

static void ha_job_work(void *arg)
{
    struct ha_job *j = arg;
    struct cgv_error ignore = {0};

    j->rc = 0;
    switch (j->kind) {
    case HJ_FENCE:
        if (hv_dom_destroy(j->hv, j->domain, &ignore) < 0 && ignore.code != CGV_E_CONFLICT &&
            ignore.code != CGV_E_NOTFOUND) {
            j->err = ignore;
            j->rc = -1;
        }
        break;
    case HJ_RESTART:
        if (cgv_mkdir_p(j->sock_dir, 0755, &j->err) < 0) {
            j->rc = -1;
            break;
        }
        if (j->fast) {
            j->rc = hv_dom_restore(j->hv, j->path, &j->err);
            if (j->rc == 0)
                break;
            /* A bad snapshot must not cost the VM: fall back to a boot. */
            log_warn("%s: fast restart failed (%s); booting", j->domain, j->err.msg);
            cgv_err_clear(&j->err);
            j->fast = false;
        }
        if (j->xml && hv_dom_define(j->hv, j->xml, &j->err) < 0) {
            j->rc = -1;
            break;
        }
        j->rc = hv_dom_start(j->hv, j->domain, &j->err);
        break;
    case HJ_SNAPSHOT: {
        char dir[VMM_PATH_MAX], *slash, tmp[VMM_PATH_MAX + 8];
        cgv_strlcpy(dir, j->path, sizeof(dir));
        if ((slash = strrchr(dir, '/')))
            *slash = '\0';
        snprintf(tmp, sizeof(tmp), "%s.new", j->path);
        unlink(tmp);
        if (cgv_mkdir_p(dir, 0700, &j->err) < 0 ||
            hv_dom_snapshot_memory(j->hv, j->domain, tmp, &j->err) < 0) {
            j->rc = -1;
            unlink(tmp);
            break;
        }
        if (rename(tmp, j->path) < 0) {
            cgv_err(&j->err, CGV_E_IO, "rename %s: %s", tmp, strerror(errno));
            j->rc = -1;
        }
        break;
    }
    }
    j->have_info = hv_dom_info(j->hv, j->domain, &j->info, NULL) == 0;
    j->info_us = cgv_mono_us();
}

static void proceed_healthy(struct vmm_vm *vm);

static void ha_job_done(void *arg)
{
    struct ha_job *j = arg;
    struct vmm *m = j->m;
    struct vmm_vm *vm = j->vm;
    struct vmm_service *svc = vm->svc;
    struct ha_plan p = {0};
    int64_t ms = (cgv_mono_us() - j->t0_us + 500) / 1000;

    vm->recovering = false;
    vm->busy = NULL;
    if (j->have_info) {
        vm->exists = true;
        vmm_vm_set_state(vm, j->info.state, j->info.reason, j->info_us);
        if (j->info.pid)
            vm->pid = j->info.pid;
    }
    switch (j->kind) {
    case HJ_FENCE:
        vm->fence_job = NULL;
        if (j->fenced_early) {
            /* The rest of the plan (the fenced VM's restart) now that
             * libvirt has let go of the domain too. */
            if (j->rc < 0)
                log_warn("%s: destroy after the kill: %s", vm->name, j->err.msg);
            exec_plan(m, svc, &j->rest);
            account(m, svc, vm->fault_name);
            break;
        }
        if (j->rc < 0) {
            /* Cannot fence: never promote over a holder that may still run. */
            evlog_emit(m->ev, "error", "ha.alarm", svc->name, vm->name,
                       "fencing failed, its role is not moved: %s", j->err.msg);
            break;
        }
        evlog_emit(m->ev, "info", "recover.fenced", svc->name, vm->name,
                   "fenced in %" PRId64 " ms", ms);
        vmm_ha_unwatch(vm);
        ha_fenced(svc->ha, vm->index, now_wall(), &p);
        exec_plan(m, svc, &p);
        account(m, svc, vm->fault_name);
        break;
    case HJ_RESTART:
        if (j->rc < 0) {
            evlog_emit(m->ev, "error", "recover.restart_failed", svc->name, vm->name,
                       "restart failed: %s", j->err.msg);
            ha_restart_failed(svc->ha, vm->index, now_wall(), &p);
            exec_plan(m, svc, &p);
            account(m, svc, vm->fault_name);
            break;
        }
        vm->fresh_boot = !j->fast;
        vm->restart_pending = false;
        ha_started(svc->ha, vm->index, now_wall());
        svc->ha_dirty = true;
        vmm_ha_watch(vm);
        evlog_emit(m->ev, "info", "recover.restarted", svc->name, vm->name,
                   "%s restart in %" PRId64 " ms (QEMU pid %d), %" PRId64
                   " ms after the fault",
                   j->fast ? "fast (from its snapshot)" : "cold", ms, vm->pid,
                   vm->fault_us ? (cgv_mono_us() - vm->fault_us) / 1000 : 0);
        /* A restored agent may say hello before this job's end reaches the
         * loop (vmm_ha_hello() ignored it then): take it now. */
        if (vm->hello_on_conn && vm->agent == AGENT_UP)
            vmm_ha_hello(vm);
        break;
    case HJ_SNAPSHOT:
        if (j->rc < 0) {
            evlog_emit(m->ev, "warn", "recover.snapshot", svc->name, vm->name,
                       "no snapshot for fast restart (restarts will boot): %s", j->err.msg);
        } else {
            vm->golden_gen = svc->generation;
            svc->ha_dirty = true;
            evlog_emit(m->ev, "info", "recover.snapshot", svc->name, vm->name,
                       "snapshot for fast restart taken in %" PRId64 " ms", ms);
        }
        vm->fresh_boot = false;
        proceed_healthy(vm);
        vmm_ops_run_deferred(vm);
        break;
    }
    if (!vm->busy)
        vmm_apply_run_deferred(m, svc);
    free(j->xml);
    free(j);
}

static struct ha_job *job_new(struct vmm_vm *vm, enum ha_job_kind kind)
{
    struct ha_job *j = cgv_malloc0(sizeof(*j));

    j->m = vm->m;
    j->vm = vm;
    j->kind = kind;
    j->hv = vm->m->hv;
    j->t0_us = cgv_mono_us();
    cgv_strlcpy(j->domain, vm->domain, sizeof(j->domain));
    cgv_strlcpy(j->sock_dir, vm->sock_dir, sizeof(j->sock_dir));
    golden_path(vm->m, vm, j->path, sizeof(j->path));
    vm->recovering = true;
    vm->busy = kind == HJ_SNAPSHOT ? "snapshot" : "recover";
    return j;
}

static void start_restart(struct vmm *m, struct vmm_vm *vm)
{
    struct ha_job *j = job_new(vm, HJ_RESTART);
    struct stat st;

    j->fast = vm->svc->spec->restart == SPEC_RESTART_FAST &&
              vm->golden_gen == vm->svc->generation && stat(j->path, &st) == 0;
    /* Cold, or the fallback of a failed fast restart: define from the spec. */
    if (vmm_vm_build_xml(m, vm, &j->xml, &j->err) < 0)
        log_warn("%s: %s", vm->name, j->err.msg);
    jobs_submit(m->jobs, ha_job_work, ha_job_done, j);
}

/* The SIGKILLed QEMU of a fence is gone (its pidfd): nothing of it can act
 * any more, so the promotions that waited for the fence go now, while
 * libvirt's destroy still runs; the fenced VM's own actions (its restart)
 * wait for the destroy (ha_job_done). */
static void fenced_early(struct vmm_vm *vm)
{
    struct vmm *m = vm->m;
    struct vmm_service *svc = vm->svc;
    struct ha_job *j = vm->fence_job;
    struct ha_plan p = {0}, now = {0};

    if (j->fenced_early)
        return;
    j->fenced_early = true;
    evlog_emit(m->ev, "info", "recover.fenced", svc->name, vm->name,
               "fenced in %" PRId64 " ms (QEMU killed)", (cgv_mono_us() - j->t0_us + 500) / 1000);
    ha_fenced(svc->ha, vm->index, now_wall(), &p);
    for (size_t k = 0; k < p.n; k++) {
        struct ha_plan *to = p.acts[k].inst == vm->index ? &j->rest : &now;
        if (to->n < HA_MAX_ACTS)
            to->acts[to->n++] = p.acts[k];
    }
    exec_plan(m, svc, &now);
    account(m, svc, vm->fault_name);
}

/* ---- plans --------------------------------------------------------------------------- */

static void exec_plan(struct vmm *m, struct vmm_service *svc, const struct ha_plan *p)
{
    for (size_t k = 0; k < p->n; k++) {
        const struct ha_act *a = &p->acts[k];
        struct vmm_vm *vm = vm_at(m, svc, a->inst);

        if (!vm)
            continue;
        svc->ha_dirty = true;
        switch (a->kind) {
        case HA_ACT_FENCE:
            evlog_emit(m->ev, "info", "recover.fence", svc->name, vm->name,
                       "fencing (%s)", a->why);
            if (fence_kill(vm)) {
                /* Fenced as soon as the pidfd says the QEMU is gone. */
                struct ha_job *j = job_new(vm, HJ_FENCE);
                vm->fence_job = j;
                jobs_submit(m->jobs, ha_job_work, ha_job_done, j);
            } else {
                jobs_submit(m->jobs, ha_job_work, ha_job_done, job_new(vm, HJ_FENCE));
            }
            break;
        case HA_ACT_ROLE: {
            char asg[24] = "";
            if (a->assignment >= 0)
                snprintf(asg, sizeof(asg), " for a%d", a->assignment);
            evlog_emit(m->ev, "info", "ha.role", svc->name, vm->name,
                       "%s%s (generation %" PRIu64 ")%s%s", ha_role_name(a->role), asg,
                       a->gen, a->why[0] ? ": " : "", a->why);
            send_role(vm);
            break;
        }
        case HA_ACT_RESTART:
            start_restart(m, vm);
            break;
        case HA_ACT_FAIL:
            vmm_ha_unwatch(vm);
            evlog_emit(m->ev, "error", "ha.failed", svc->name, vm->name,
                       "given up, left stopped: %s; 'cgv vm start %s' brings it back",
                       a->why, vm->name);
            break;
        case HA_ACT_ALARM:
            evlog_emit(m->ev, "error", "ha.alarm", svc->name, vm->name, "%s", a->why);
            break;
        }
    }
}

/* ---- faults ---------------------------------------------------------------------------- */

static const char *fault_event(enum ha_fault f)
{
    switch (f) {
    case HA_F_DEATH: return "detect.process_death";
    case HA_F_PANIC: return "detect.panic";
    case HA_F_HANG: return "detect.hang";
    case HA_F_WATCHDOG: return "detect.watchdog";
    case HA_F_APP: return "detect.application";
    case HA_F_STOPPED: return "detect.stopped";
    case HA_F_COUNT: break;
    }
    return "detect.unknown";
}

static void do_fault(struct vmm_vm *vm, enum ha_fault f, const char *source)
{
    struct vmm *m = vm->m;
    struct vmm_service *svc = vm->svc;
    struct ha_plan p = {0};
    struct ha_inst *in;

    if (!managed(vm) || vm->busy || svc->busy || vm->recovering)
        return; /* a deliberate operation or a recovery explains it */
    in = inst_of(vm);
    if (in->state != HA_I_HEALTHY && in->state != HA_I_STARTING)
        return;
    if (strcmp(vm->desired, "running") != 0)
        return;
    vm->fault_us = cgv_mono_us();
    cgv_strlcpy(vm->fault_name, ha_fault_name(f), sizeof(vm->fault_name));
    evlog_emit(m->ev, "error", fault_event(f), svc->name, vm->name, "%s (%s, was %s%s)",
               ha_fault_name(f), source, ha_role_name(in->role),
               in->role == HA_ROLE_ACTIVE && in->assignment >= 0 ? " of an assignment" : "");
    if (vm->ack_timer) {
        loop_timer_cancel(m->loop, vm->ack_timer);
        vm->ack_timer = NULL;
    }
    ha_fault(svc->ha, vm->index, f, now_wall(), &p);
    exec_plan(m, svc, &p);
    account(m, svc, vm->fault_name);
}

void vmm_ha_channel_eof(struct vmm_vm *vm)
{
    if (pid_gone(vm))
        qemu_gone(vm, "agent channel closed, QEMU gone");
}

void vmm_ha_heartbeat_lost(struct vmm_vm *vm, int64_t silent_ms)
{
    char src[64];

    snprintf(src, sizeof(src), "no heartbeat for %" PRId64 " ms", silent_ms);
    do_fault(vm, HA_F_HANG, src);
}

void vmm_ha_watchdog(struct vmm_vm *vm)
{
    do_fault(vm, HA_F_WATCHDOG, "virtual watchdog expired (libvirt)");
}

static void on_pause_grace(struct loop *l, void *opaque)
{
    struct vmm_vm *vm = opaque;

    (void)l;
    vm->pause_timer = NULL;
    if (vm->state == HV_ST_PAUSED)
        do_fault(vm, HA_F_HANG, "libvirt: paused behind cgv's back");
}

void vmm_ha_lifecycle(struct vmm_vm *vm, const struct hv_event *ev)
{
    char src[64];

    snprintf(src, sizeof(src), "libvirt: %s (%s)", hv_lifecycle_name(ev->lifecycle),
             ev->detail_name);
    switch (ev->lifecycle) {
    case HV_LC_CRASHED:
        do_fault(vm, HA_F_PANIC, src);
        break;
    case HV_LC_STOPPED:
        if (strcmp(ev->detail_name, "shutdown") == 0)
            do_fault(vm, HA_F_STOPPED, src);
        else
            do_fault(vm, HA_F_DEATH, src);
        break;
    case HV_LC_SUSPENDED:
        /* Frozen behind cgv's back: it cannot serve; a hang. But a panic
         * shows first as a pause (QEMU's STOP comes before GUEST_PANICKED):
         * give the crashed event a moment to name the real fault. */
        if (!vm->pause_timer && managed(vm) && !vm->recovering)
            vm->pause_timer = loop_timer_add(vm->m->loop, VMM_PAUSE_GRACE_MS, on_pause_grace, vm);
        break;
    default:
        break;
    }
}

void vmm_ha_guest_reset(struct vmm_vm *vm)
{
    /* Out of service until it boots again, behind cgv's back: a fault like
     * a shutdown (its role moves; it is restarted, from its snapshot when
     * it has one, which is faster than its own reboot). */
    do_fault(vm, HA_F_STOPPED, "the guest reset itself (reboot)");
}

void vmm_ha_found_dead(struct vmm_vm *vm, const char *why)
{
    if (!managed(vm))
        return;
    /* Its persisted state may say healthy: it is not. */
    if (inst_of(vm)->state != HA_I_HEALTHY && inst_of(vm)->state != HA_I_STARTING)
        ha_started(vm->svc->ha, vm->index, now_wall());
    do_fault(vm, HA_F_DEATH, why);
}

/* ---- the agent ------------------------------------------------------------------------- */

void vmm_ha_connected(struct vmm_vm *vm)
{
    if (!managed(vm))
        return;
    send_config(vm);
    if (inst_of(vm)->role != HA_ROLE_NONE && inst_of(vm)->role_gen > 0 &&
        !inst_of(vm)->dead) {
        struct proto_msg msg;
        fill_role_msg(vm, &msg);
        agentch_send(vm->ch, &msg);
    }
}

static void proceed_healthy(struct vmm_vm *vm)
{
    struct vmm *m = vm->m;
    struct vmm_service *svc = vm->svc;
    struct ha_plan p = {0};

    if (vm->fault_us) {
        evlog_emit(m->ev, "info", "recover.healthy", svc->name, vm->name,
                   "agent up again %" PRId64 " ms after the %s",
                   (cgv_mono_us() - vm->fault_us) / 1000, vm->fault_name);
        vm->fault_us = 0;
    }
    ha_healthy(svc->ha, vm->index, now_wall(), &p);
    exec_plan(m, svc, &p);
    account(m, svc, "instance healthy");
}

void vmm_ha_hello(struct vmm_vm *vm)
{
    struct vmm *m = vm->m;
    struct ha_inst *in;

    if (!managed(vm) || vm->recovering)
        return;
    in = inst_of(vm);
    if (in->state == HA_I_HEALTHY) {
        /* Reconnected (or adopted after a cgvd restart): it keeps its role;
         * vmm_ha_connected() re-sent it. */
        return;
    }
    if (in->state != HA_I_STARTING && in->state != HA_I_DOWN)
        return;
    if (vm->fresh_boot && vm->svc->spec->restart == SPEC_RESTART_FAST &&
        vm->golden_gen != vm->svc->generation) {
        /* First healthy after a cold boot, before any role (so the
         * snapshot never holds a virtual IP): take the snapshot the fast
         * restarts restore. */
        jobs_submit(m->jobs, ha_job_work, ha_job_done, job_new(vm, HJ_SNAPSHOT));
        return;
    }
    vm->fresh_boot = false;
    proceed_healthy(vm);
}

void vmm_ha_role_ack(struct vmm_vm *vm, const struct proto_role_ack *ack)
{
    struct vmm *m = vm->m;
    struct vmm_service *svc = vm->svc;
    int64_t ms;

    if (!managed(vm))
        return;
    if (ack->result == PROTO_ACK_STALE) {
        log_debug("%s: stale ack for generation %" PRIu64, vm->name, ack->generation);
        return;
    }
    if (ack->generation != inst_of(vm)->role_gen)
        return;
    if (ack->result == PROTO_ACK_FAILED) {
        evlog_emit(m->ev, "error", "ha.role_failed", svc->name, vm->name,
                   "guest could not take role %s: %s", ha_role_name(inst_of(vm)->role),
                   ack->detail);
        do_fault(vm, HA_F_APP, "role refused by the guest");
        return;
    }
    if (!ha_acked(svc->ha, vm->index, ack->generation, now_wall()))
        return;
    if (vm->ack_timer) {
        loop_timer_cancel(m->loop, vm->ack_timer);
        vm->ack_timer = NULL;
    }
    ms = (cgv_mono_us() - vm->role_sent_us) / 1000;
    {
        /* The fault this completes a recovery of, if any, in this service. */
        int64_t since = 0;
        const char *what = NULL, *who = NULL;
        for (struct vmm_vm *o = m->vms; o; o = o->next) {
            if (o->svc == svc && o->fault_us && o != vm &&
                inst_of(vm)->role == HA_ROLE_ACTIVE) {
                since = (cgv_mono_us() - o->fault_us) / 1000;
                what = o->fault_name;
                who = o->name;
            }
        }
        if (what)
            evlog_emit(m->ev, "info", "recover.role_acked", svc->name, vm->name,
                       "%s acknowledged in %" PRId64 " ms (generation %" PRIu64
                       "): recovered from the %s of %s %" PRId64 " ms after detection",
                       ha_role_name(inst_of(vm)->role), ms, ack->generation, what, who,
                       since);
        else
            evlog_emit(m->ev, "info", "ha.role_acked", svc->name, vm->name,
                       "%s acknowledged in %" PRId64 " ms (generation %" PRIu64 ")",
                       ha_role_name(inst_of(vm)->role), ms, ack->generation);
    }
    svc->ha_dirty = true;
    {
        struct ha_plan p = {0};
        ha_after_ack(svc->ha, vm->index, now_wall(), &p);
        exec_plan(m, svc, &p);
    }
    account(m, svc, "role acknowledged");
    check_drains(m, svc);
}

void vmm_ha_app_event(struct vmm_vm *vm, const struct proto_app_event *ev)
{
    struct vmm *m = vm->m;

    switch (ev->kind) {
    case PROTO_APP_STARTED:
        evlog_emit(m->ev, "info", "app.started", vm->svc->name, vm->name,
                   "%s started (pid %u)", ev->name, ev->pid);
        break;
    case PROTO_APP_EXITED:
        evlog_emit(m->ev, "warn", "app.exited", vm->svc->name, vm->name,
                   "%s exited (%s %d); restarted in place, %u restart%s in its window",
                   ev->name, ev->status < 0 ? "signal" : "status",
                   ev->status < 0 ? -ev->status : ev->status, ev->restarts,
                   ev->restarts == 1 ? "" : "s");
        break;
    case PROTO_APP_GAVE_UP:
        evlog_emit(m->ev, "error", "app.gave_up", vm->svc->name, vm->name,
                   "%s failed %u times within its window: the agent gave up", ev->name,
                   ev->restarts);
        do_fault(vm, HA_F_APP, "application given up by the agent");
        break;
    default:
        break;
    }
}

/* ---- planned switchover ------------------------------------------------------------------ */

#define HA_DRAIN_TIMEOUT_MS 3000

static void drain_fire(struct vmm_vm *vm)
{
    void (*cb)(struct vmm_vm *, void *) = vm->drain_cb;

    if (!cb)
        return;
    if (vm->drain_timer)
        loop_timer_cancel(vm->m->loop, vm->drain_timer);
    vm->drain_timer = NULL;
    vm->drain_cb = NULL;
    cb(vm, vm->drain_ctx);
}

static void on_drain_timeout(struct loop *l, void *opaque)
{
    struct vmm_vm *vm = opaque;

    (void)l;
    vm->drain_timer = NULL;
    evlog_emit(vm->m->ev, "warn", "ha.switchover", vm->svc->name, vm->name,
               "switchover not acknowledged within %d ms; going ahead", HA_DRAIN_TIMEOUT_MS);
    drain_fire(vm);
}

static void check_drains(struct vmm *m, struct vmm_service *svc)
{
    for (struct vmm_vm *v = m->vms; v; v = v->next) {
        if (v->svc == svc && v->drain_cb && managed(v) && ha_drained(svc->ha, v->index)) {
            evlog_emit(m->ev, "info", "ha.switchover", svc->name, v->name,
                       "assignment handed over in %" PRId64 " ms",
                       (cgv_mono_us() - v->role_sent_us) / 1000);
            drain_fire(v);
        }
    }
}

bool vmm_ha_drain(struct vmm_vm *vm, void (*cb)(struct vmm_vm *vm, void *ctx), void *ctx)
{
    struct ha_plan p = {0};

    if (!managed(vm) || vm->drain_cb)
        return false;
    if (!ha_drain(vm->svc->ha, vm->index, now_wall(), &p))
        return false;
    vm->drain_cb = cb;
    vm->drain_ctx = ctx;
    vm->drain_timer = loop_timer_add(vm->m->loop, HA_DRAIN_TIMEOUT_MS, on_drain_timeout, vm);
    evlog_emit(vm->m->ev, "info", "ha.switchover", vm->svc->name, vm->name,
               "handing its assignment to the standby first");
    exec_plan(vm->m, vm->svc, &p);
    account(vm->m, vm->svc, "planned switchover");
    return true;
}

/* ---- operator actions and apply -------------------------------------------------------- */

void vmm_ha_operator_started(struct vmm_vm *vm)
{
    if (!managed(vm))
        return;
    vm->fault_us = 0;
    ha_started(vm->svc->ha, vm->index, now_wall());
    vm->svc->ha_dirty = true;
    vmm_ha_watch(vm);
    /* Resumed (same QEMU, agent still connected): it is healthy now, and
     * must hear its role at once (it may still hold an old one). */
    if (vm->agent == AGENT_UP && agentch_connected(vm->ch))
        proceed_healthy(vm);
}

void vmm_ha_operator_stopped(struct vmm_vm *vm)
{
    struct ha_plan p = {0};

    if (!managed(vm))
        return;
    vmm_ha_unwatch(vm);
    if (vm->ack_timer) {
        loop_timer_cancel(vm->m->loop, vm->ack_timer);
        vm->ack_timer = NULL;
    }
    ha_operator_stop(vm->svc->ha, vm->index, now_wall(), &p);
    exec_plan(vm->m, vm->svc, &p);
    account(vm->m, vm->svc, "stopped by the operator");
}

void vmm_ha_created(struct vmm_vm *vm)
{
    if (!managed(vm))
        return;
    vm->fresh_boot = true;
    ha_started(vm->svc->ha, vm->index, now_wall());
    vm->svc->ha_dirty = true;
    vmm_ha_watch(vm);
}

/* ---- service state and persistence ----------------------------------------------------- */

void vmm_ha_service_init(struct vmm *m, struct vmm_service *svc)
{
    const struct spec_service *spec = svc->spec;
    struct ha_svc *old = svc->ha, *h = cgv_malloc0(sizeof(*h));
    struct ha_limit vr = {spec->vm_restarts.max, (int64_t)spec->vm_restarts.window_s * 1000};
    struct ha_limit fo = {spec->failovers.max, (int64_t)spec->failovers.window_s * 1000};
    bool had_old = old != NULL;

    ha_svc_init(h, model_of(spec), spec->instances, spec->standbys, vr, fo,
                old ? old->created_ms : (svc->created_ms ? svc->created_ms : now_wall()));
    if (old) {
        /* Keep what is known of the instances that stay, the generation
         * counter and the outage book. */
        unsigned keep = old->n_inst < h->n_inst ? old->n_inst : h->n_inst;
        memcpy(h->inst, old->inst, sizeof(h->inst[0]) * keep);
        for (unsigned i = 0; i < keep; i++) {
            if (h->inst[i].assignment >= (int)h->n_assign) {
                h->inst[i].role = HA_ROLE_NONE;
                h->inst[i].assignment = -1;
            }
        }
        h->generation = old->generation;
        h->ever_up = old->ever_up;
        h->down = old->down;
        h->downtime_ms = old->downtime_ms;
        h->n_outages = old->n_outages;
        memcpy(h->outages, old->outages, sizeof(h->outages));
        free(old);
    }
    svc->ha = h;
    svc->ha_dirty = true;
    if (had_old) {
        /* Another model or count: roles for the instances left without. */
        struct ha_plan p = {0};
        ha_rebalance(h, now_wall(), &p);
        exec_plan(m, svc, &p);
        if (p.n)
            account(m, svc, "spec changed");
    }
}

void vmm_ha_service_free(struct vmm *m, struct vmm_service *svc)
{
    char key[96];

    snprintf(key, sizeof(key), "ha.svc.%s", svc->name);
    if (store_meta_set(m->st, key, NULL, NULL) < 0)
        log_warn("could not remove %s from the store", key);
    free(svc->ha);
    svc->ha = NULL;
}

static json_t *window_json(const struct ha_window *w)
{
    json_t *a = json_array();

    for (unsigned k = 0; k < w->n; k++)
        json_array_append_new(a, json_integer(w->t[k]));
    return a;
}

static void window_load(struct ha_window *w, const json_t *a, const json_t *total)
{
    size_t i;
    json_t *v;

    memset(w, 0, sizeof(*w));
    json_array_foreach(a, i, v)
    {
        if (w->n < HA_HIST && json_is_integer(v)) {
            w->t[w->n++] = json_integer_value(v);
            w->next = w->n % HA_HIST;
        }
    }
    w->total = json_is_integer(total) && json_integer_value(total) >= (json_int_t)w->n
                   ? (uint64_t)json_integer_value(total)
                   : w->n;
}

static json_t *state_json(struct vmm *m, struct vmm_service *svc)
{
    const struct ha_svc *h = svc->ha;
    json_t *o = json_object(), *insts = json_array(), *outs = json_array();

    json_object_set_new(o, "generation", json_integer((json_int_t)h->generation));
    json_object_set_new(o, "created_ms", json_integer(h->created_ms));
    json_object_set_new(o, "ever_up", json_boolean(h->ever_up));
    json_object_set_new(o, "down", json_boolean(h->down));
    json_object_set_new(o, "downtime_ms", json_integer(h->downtime_ms));
    json_object_set_new(o, "n_outages", json_integer(h->n_outages));
    for (unsigned k = 0; k < HA_OUTAGES && k < h->n_outages; k++) {
        const struct ha_outage *x = &h->outages[k];
        json_array_append_new(outs, json_pack("{s:I,s:I,s:s}", "start_ms",
                                              (json_int_t)x->start_ms, "end_ms",
                                              (json_int_t)x->end_ms, "cause", x->cause));
    }
    json_object_set_new(o, "outages", outs);
    for (unsigned i = 0; i < h->n_inst; i++) {
        const struct ha_inst *in = &h->inst[i];
        struct vmm_vm *vm = vm_at(m, svc, (int)i);
        json_t *x = json_object();
        json_object_set_new(x, "state", json_integer(in->state));
        json_object_set_new(x, "role", json_integer(in->role));
        json_object_set_new(x, "assignment", json_integer(in->assignment));
        json_object_set_new(x, "gen", json_integer((json_int_t)in->role_gen));
        json_object_set_new(x, "acked", json_boolean(in->role_acked));
        json_object_set_new(x, "dead", json_boolean(in->dead));
        json_object_set_new(x, "golden_gen", json_integer(vm ? vm->golden_gen : 0));
        json_object_set_new(x, "restarts", window_json(&in->restarts));
        json_object_set_new(x, "failovers", window_json(&in->failovers));
        json_object_set_new(x, "restarts_total", json_integer((json_int_t)in->restarts.total));
        json_object_set_new(x, "failovers_total",
                            json_integer((json_int_t)in->failovers.total));
        json_array_append_new(insts, x);
    }
    json_object_set_new(o, "insts", insts);
    return o;
}

void vmm_ha_load(struct vmm *m, struct vmm_service *svc)
{
    char key[96], *text = NULL;
    json_t *o = NULL, *insts, *outs, *x;
    size_t i;
    struct ha_svc *h;

    vmm_ha_service_init(m, svc);
    h = svc->ha;
    snprintf(key, sizeof(key), "ha.svc.%s", svc->name);
    if (store_meta_get(m->st, key, &text, NULL) < 0 || !text)
        goto cleanup;
    o = json_loads(text, 0, NULL);
    if (!json_is_object(o)) {
        log_warn("stored HA state of %s is not JSON: ignored", svc->name);
        goto cleanup;
    }
    h->generation = (uint64_t)json_integer_value(json_object_get(o, "generation"));
    if (json_is_integer(json_object_get(o, "created_ms")))
        h->created_ms = json_integer_value(json_object_get(o, "created_ms"));
    h->ever_up = json_is_true(json_object_get(o, "ever_up"));
    h->down = json_is_true(json_object_get(o, "down"));
    h->downtime_ms = json_integer_value(json_object_get(o, "downtime_ms"));
    h->n_outages = (unsigned)json_integer_value(json_object_get(o, "n_outages"));
    outs = json_object_get(o, "outages");
    json_array_foreach(outs, i, x)
    {
        if (i >= HA_OUTAGES)
            break;
        h->outages[i].start_ms = json_integer_value(json_object_get(x, "start_ms"));
        h->outages[i].end_ms = json_integer_value(json_object_get(x, "end_ms"));
        cgv_strlcpy(h->outages[i].cause,
                    json_string_value(json_object_get(x, "cause")) ?: "",
                    sizeof(h->outages[i].cause));
    }
    insts = json_object_get(o, "insts");
    json_array_foreach(insts, i, x)
    {
        struct ha_inst *in;
        struct vmm_vm *vm;
        if (i >= h->n_inst)
            break;
        in = &h->inst[i];
        in->state = (enum ha_inst_state)json_integer_value(json_object_get(x, "state"));
        in->role = (enum ha_role)json_integer_value(json_object_get(x, "role"));
        in->assignment = (int)json_integer_value(json_object_get(x, "assignment"));
        in->role_gen = (uint64_t)json_integer_value(json_object_get(x, "gen"));
        in->role_acked = json_is_true(json_object_get(x, "acked"));
        in->dead = json_is_true(json_object_get(x, "dead"));
        window_load(&in->restarts, json_object_get(x, "restarts"),
                    json_object_get(x, "restarts_total"));
        window_load(&in->failovers, json_object_get(x, "failovers"),
                    json_object_get(x, "failovers_total"));
        if (in->assignment >= (int)h->n_assign) {
            in->role = HA_ROLE_NONE;
            in->assignment = -1;
        }
        vm = vm_at(m, svc, (int)i);
        if (vm)
            vm->golden_gen = json_integer_value(json_object_get(x, "golden_gen"));
        /* A recovery that cgvd's death interrupted starts over: fencing or
         * restarting instances are found dead or alive by the adoption. */
        if (in->state == HA_I_FENCING || in->state == HA_I_DOWN)
            in->state = HA_I_STARTING;
    }
    svc->ha_dirty = false;

cleanup:
    json_decref(o);
    free(text);
}

void vmm_ha_flush(struct vmm *m)
{
    for (struct vmm_service *svc = m->services; svc; svc = svc->next) {
        char key[96], *text;
        json_t *o;
        struct cgv_error err = {0};

        if (!svc->ha || !svc->ha_dirty)
            continue;
        o = state_json(m, svc);
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        snprintf(key, sizeof(key), "ha.svc.%s", svc->name);
        if (store_meta_set(m->st, key, text, &err) < 0)
            log_error("saving the HA state of %s: %s", svc->name, err.msg);
        else
            svc->ha_dirty = false;
        free(text);
    }
}

/* ---- views ------------------------------------------------------------------------------ */

json_t *vmm_ha_vm_json(struct vmm_vm *vm)
{
    const struct ha_inst *in;
    json_t *o;
    char a[16];
    int64_t now = now_wall();

    if (!managed(vm))
        return json_null();
    in = inst_of(vm);
    o = json_object();
    snprintf(a, sizeof(a), "a%d", in->assignment);
    json_object_set_new(o, "state", json_string(ha_state_name(in->state)));
    json_object_set_new(o, "role", json_string(ha_role_name(in->role)));
    json_object_set_new(o, "assignment", in->assignment >= 0 ? json_string(a) : json_null());
    json_object_set_new(o, "role_generation", json_integer((json_int_t)in->role_gen));
    json_object_set_new(o, "acked", json_boolean(in->role_acked));
    json_object_set_new(o, "restarts_in_window",
                        json_integer(ha_recent(&in->restarts, now,
                                               vm->svc->ha->vm_restarts.window_ms)));
    json_object_set_new(o, "restarts_total", json_integer((json_int_t)in->restarts.total));
    json_object_set_new(o, "failovers_total", json_integer((json_int_t)in->failovers.total));
    json_object_set_new(o, "fast_restart_ready",
                        json_boolean(vm->golden_gen == vm->svc->generation));
    return o;
}

json_t *vmm_ha_service_json(struct vmm *m, struct vmm_service *svc)
{
    const struct ha_svc *h = svc->ha;
    json_t *o, *asg, *outs;
    int64_t now = now_wall();

    if (!h)
        return json_null();
    o = json_object();
    asg = json_array();
    outs = json_array();
    json_object_set_new(o, "model", json_string(ha_model_name(h->model)));
    json_object_set_new(o, "up", json_boolean(ha_service_up(h)));
    for (unsigned a = 0; a < h->n_assign; a++) {
        json_t *x = json_object();
        int holder = ha_holder(h, (int)a);
        struct vmm_vm *vm = holder >= 0 ? vm_at(m, svc, holder) : NULL;
        char name[16];
        snprintf(name, sizeof(name), "a%u", a);
        json_object_set_new(x, "name", json_string(name));
        json_object_set_new(x, "virtual_ip", a < svc->spec->n_vips
                                                 ? json_string(svc->spec->vips[a].ip)
                                                 : json_null());
        json_object_set_new(x, "active", vm ? json_string(vm->name) : json_null());
        json_object_set_new(x, "acked", json_boolean(holder >= 0 && h->inst[holder].role_acked));
        json_array_append_new(asg, x);
    }
    json_object_set_new(o, "assignments", asg);
    json_object_set_new(o, "downtime_ms", json_integer(ha_downtime_ms(h, now)));
    json_object_set_new(o, "availability", json_real(ha_availability(h, now)));
    json_object_set_new(o, "outages_total", json_integer(h->n_outages));
    json_object_set_new(o, "since_ms", json_integer(h->created_ms));
    for (unsigned k = h->n_outages > HA_OUTAGES ? h->n_outages - HA_OUTAGES : 0;
         k < h->n_outages; k++) {
        const struct ha_outage *x = &h->outages[k % HA_OUTAGES];
        char s[40], e[40];
        cgv_fmt_wall_ms(x->start_ms, s, sizeof(s));
        cgv_fmt_wall_ms(x->end_ms, e, sizeof(e));
        json_array_append_new(
            outs, json_pack("{s:s,s:o,s:I,s:s}", "start", s, "end",
                            x->end_ms ? json_string(e) : json_null(), "duration_ms",
                            (json_int_t)((x->end_ms ? x->end_ms : now) - x->start_ms),
                            "cause", x->cause));
    }
    json_object_set_new(o, "outages", outs);
    return o;
}
