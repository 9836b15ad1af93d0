/* vmm_ops.c — VM operations: start stop destroy pause resume reboot save
 * restore. Each runs its libvirt calls on a worker (never on the loop) and
 * answers when libvirt has done it; stop and reboot go through the guest's
 * agent first and wait for libvirt's event, forcing after a timeout. */
#include "vmm_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "vmm"

enum op_work {
    W_NONE = 0,
    W_START,    /* (re)define from the spec, then start */
    W_RESTORE,
    W_DESTROY,
    W_SUSPEND,
    W_RESUME,
    W_SAVE,
    W_SHUTDOWN, /* ACPI power button */
    W_REBOOT,   /* ACPI reboot */
    W_RESET,
};

struct vmm_op {
    struct vmm *m;
    struct vmm_vm *vm;
    const char *op;
    vmm_reply_fn reply; /* NULL for internal operations */
    void *ctx;
    int64_t t0_us;
    unsigned timeout_ms;

    /* worker input */
    enum op_work work;
    struct hv *hv;
    char domain[128];
    char path[VMM_PATH_MAX];
    char sock_dir[VMM_PATH_MAX];
    char *xml;

    /* worker output */
    int rc;
    struct cgv_error err;
    bool have_info;
    struct hv_dom_info info;
    int64_t info_us;

    /* waiting for libvirt's event (stop, reboot) */
    bool wait_stop, wait_reboot;
    struct loop_timer *timer;
    bool forced;
    const char *how; /* how the stop/reboot was asked for */
};

static void op_submit(struct vmm_op *op, enum op_work work);

static json_t *op_result(struct vmm_op *op, bool changed, const char *note)
{
    json_t *o = json_object();
    struct vmm_vm *vm = op->vm;
    const char *state = hv_state_name(vm->state);

    if (vm->state == HV_ST_SHUTOFF && vm->save_path)
        state = "saved";
    json_object_set_new(o, "vm", json_string(vm->name));
    json_object_set_new(o, "op", json_string(op->op));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "changed", json_boolean(changed));
    json_object_set_new(o, "duration_ms",
                        json_integer((cgv_mono_us() - op->t0_us + 500) / 1000));
    if (note)
        json_object_set_new(o, "note", json_string(note));
    return o;
}

static void op_free(struct vmm_op *op)
{
    if (op->timer)
        loop_timer_cancel(op->m->loop, op->timer);
    free(op->xml);
    free(op);
}

/* Finish: clear busy, tell HA, answer, free. */
static void op_finish(struct vmm_op *op, bool changed, const char *note)
{
    struct vmm_vm *vm = op->vm;

    vm->busy = NULL;
    vm->op = NULL;
    if (changed && op->reply) {
        /* Operator actions move the VM in or out of HA management. Internal
         * operations (reply NULL) are HA's own. */
        const char *o = op->op;
        if (!strcmp(o, "start") || !strcmp(o, "restore") || !strcmp(o, "resume")) {
            vmm_ha_operator_started(vm);
        } else if (!strcmp(o, "reboot")) {
            vmm_ha_operator_stopped(vm);
            vmm_ha_operator_started(vm);
        } else {
            vmm_ha_operator_stopped(vm);
        }
    }
    if (op->reply)
        op->reply(op->ctx, op_result(op, changed, note), NULL, NULL);
    op_free(op);
}

static void op_fail(struct vmm_op *op)
{
    struct vmm_vm *vm = op->vm;

    vm->busy = NULL;
    vm->op = NULL;
    evlog_emit(op->m->ev, "error", "vm.op_failed", vm->svc->name, vm->name, "%s failed: %s",
               op->op, op->err.msg);
    if (op->reply)
        op->reply(op->ctx, NULL, &op->err, NULL);
    op_free(op);
}

static void op_persist(struct vmm_op *op)
{
    struct cgv_error err = {0};

    if (vmm_vm_persist(op->m, op->vm, &err) < 0)
        evlog_emit(op->m->ev, "error", "vm.op_failed", op->vm->svc->name, op->vm->name,
                   "%s done, but %s", op->op, err.msg);
}

static void set_desired(struct vmm_vm *vm, const char *desired)
{
    cgv_strlcpy(vm->desired, desired, sizeof(vm->desired));
}

/* ---- worker ----------------------------------------------------------------- */

static void op_work_fn(void *arg)
{
    struct vmm_op *op = arg;
    struct cgv_error *e = &op->err;

    op->rc = 0;
    switch (op->work) {
    case W_START:
        if (cgv_mkdir_p(op->sock_dir, 0755, e) < 0) {
            op->rc = -1;
            break;
        }
        if (op->xml && hv_dom_define(op->hv, op->xml, e) < 0) {
            op->rc = -1;
            break;
        }
        op->rc = hv_dom_start(op->hv, op->domain, e);
        break;
    case W_RESTORE:
        if (cgv_mkdir_p(op->sock_dir, 0755, e) < 0) {
            op->rc = -1;
            break;
        }
        op->rc = hv_dom_restore(op->hv, op->path, e);
        /* The image is spent; removing ~100 MB takes tens of ms: here, not
         * on the loop. */
        if (op->rc == 0 && unlink(op->path) < 0 && errno != ENOENT)
            log_warn("removing %s: %s", op->path, strerror(errno));
        break;
    case W_DESTROY:
        op->rc = hv_dom_destroy(op->hv, op->domain, e);
        break;
    case W_SUSPEND:
        op->rc = hv_dom_suspend(op->hv, op->domain, e);
        break;
    case W_RESUME:
        op->rc = hv_dom_resume(op->hv, op->domain, e);
        break;
    case W_SAVE: {
        char dir[VMM_PATH_MAX], *slash;
        cgv_strlcpy(dir, op->path, sizeof(dir));
        slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        if (cgv_mkdir_p(dir, 0700, e) < 0) {
            op->rc = -1;
            break;
        }
        op->rc = hv_dom_save(op->hv, op->domain, op->path, e);
        break;
    }
    case W_SHUTDOWN:
        op->rc = hv_dom_shutdown(op->hv, op->domain, e);
        break;
    case W_REBOOT:
        op->rc = hv_dom_reboot(op->hv, op->domain, e);
        break;
    case W_RESET:
        op->rc = hv_dom_reset(op->hv, op->domain, e);
        break;
    case W_NONE:
        break;
    }
    op->have_info = hv_dom_info(op->hv, op->domain, &op->info, NULL) == 0;
    op->info_us = cgv_mono_us();
}

static void op_apply_info(struct vmm_op *op)
{
    if (op->have_info) {
        op->vm->exists = true;
        vmm_vm_set_state(op->vm, op->info.state, op->info.reason, op->info_us);
        if (op->info.pid)
            op->vm->pid = op->info.pid;
    }
}

static void on_timeout(struct loop *l, void *opaque);

static void op_done_fn(void *arg)
{
    struct vmm_op *op = arg;
    struct vmm_vm *vm = op->vm;
    struct vmm *m = op->m;
    enum op_work work = op->work;

    op_apply_info(op);
    op->work = W_NONE;
    if (op->rc < 0) {
        op_fail(op);
        return;
    }
    switch (work) {
    case W_START:
        set_desired(vm, "running");
        vm->restart_pending = false;
        vm->fresh_boot = true; /* a cold boot: snapshot it when it is healthy */
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.started", vm->svc->name, vm->name,
                   "started (QEMU pid %d)", vm->pid);
        op_finish(op, true, NULL);
        break;
    case W_RESTORE:
        free(vm->save_path);
        vm->save_path = NULL;
        set_desired(vm, "running");
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.restored", vm->svc->name, vm->name,
                   "restored from its saved image (QEMU pid %d)", vm->pid);
        op_finish(op, true, NULL);
        break;
    case W_DESTROY:
        if (op->wait_stop) {
            /* A stop that timed out, or of a paused guest: forced. */
            bool paused = strcmp(op->how, "paused guest") == 0;
            set_desired(vm, "stopped");
            op_persist(op);
            if (paused)
                evlog_emit(m->ev, "warn", "vm.stopped", vm->svc->name, vm->name,
                           "was paused and cannot shut down; destroyed");
            else
                evlog_emit(m->ev, "warn", "vm.stopped", vm->svc->name, vm->name,
                           "did not stop within %u ms (%s); destroyed", op->timeout_ms,
                           op->how);
            op_finish(op, true,
                      paused ? "forced: a paused guest cannot shut down"
                             : "forced: the guest did not stop in time");
            break;
        }
        if (vm->save_path) {
            if (unlink(vm->save_path) < 0 && errno != ENOENT)
                log_warn("%s: removing %s: %s", vm->name, vm->save_path, strerror(errno));
            free(vm->save_path);
            vm->save_path = NULL;
        }
        set_desired(vm, "stopped");
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.destroyed", vm->svc->name, vm->name, "destroyed");
        op_finish(op, true, NULL);
        break;
    case W_SUSPEND:
        set_desired(vm, "paused");
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.paused", vm->svc->name, vm->name, "paused");
        op_finish(op, true, NULL);
        break;
    case W_RESUME:
        set_desired(vm, "running");
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.resumed", vm->svc->name, vm->name, "resumed");
        op_finish(op, true, NULL);
        break;
    case W_SAVE:
        free(vm->save_path);
        vm->save_path = cgv_strdup(op->path);
        set_desired(vm, "saved");
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.saved", vm->svc->name, vm->name, "saved to %s",
                   op->path);
        op_finish(op, true, NULL);
        break;
    case W_RESET:
        evlog_emit(m->ev, "warn", "vm.rebooted", vm->svc->name, vm->name,
                   "did not reboot within %u ms (%s); reset", op->timeout_ms, op->how);
        op_finish(op, true, "forced: the guest did not reboot in time");
        break;
    case W_SHUTDOWN:
    case W_REBOOT:
        /* Asked through ACPI: now wait for libvirt's event (or the timer). */
        if (op->wait_stop && vm->state == HV_ST_SHUTOFF) {
            vmm_ops_on_lifecycle(vm, NULL);
            break;
        }
        op->timer = loop_timer_add(m->loop, op->timeout_ms, on_timeout, op);
        break;
    case W_NONE:
        op_finish(op, false, NULL);
        break;
    }
}

static void op_submit(struct vmm_op *op, enum op_work work)
{
    op->work = work;
    op->rc = 0;
    op->have_info = false;
    jobs_submit(op->m->jobs, op_work_fn, op_done_fn, op);
}

/* ---- waiting on libvirt's events (stop, reboot) ------------------------------ */

static void on_timeout(struct loop *l, void *opaque)
{
    struct vmm_op *op = opaque;

    (void)l;
    op->timer = NULL;
    op->forced = true;
    if (op->wait_stop)
        op_submit(op, W_DESTROY);
    else
        op_submit(op, W_RESET);
}

void vmm_ops_on_lifecycle(struct vmm_vm *vm, const struct hv_event *ev)
{
    struct vmm_op *op = vm->op;
    struct vmm *m = vm->m;

    if (!op || op->work != W_NONE)
        return; /* a job is running: its result will tell */
    if (op->wait_stop &&
        (!ev || (ev->kind == HV_EV_LIFECYCLE && ev->lifecycle == HV_LC_STOPPED))) {
        if (op->timer) {
            loop_timer_cancel(m->loop, op->timer);
            op->timer = NULL;
        }
        set_desired(vm, "stopped");
        op_persist(op);
        evlog_emit(m->ev, "info", "vm.stopped", vm->svc->name, vm->name,
                   "stopped cleanly (%s)", op->how);
        op_finish(op, true, NULL);
    } else if (op->wait_reboot && ev && ev->kind == HV_EV_REBOOT) {
        if (op->timer) {
            loop_timer_cancel(m->loop, op->timer);
            op->timer = NULL;
        }
        evlog_emit(m->ev, "info", "vm.rebooted", vm->svc->name, vm->name,
                   "rebooted (%s)", op->how);
        op_finish(op, true, NULL);
    } else if (ev && ev->kind == HV_EV_LIFECYCLE && ev->lifecycle == HV_LC_STOPPED &&
               op->wait_reboot) {
        cgv_err(&op->err, CGV_E_CONFLICT, "the domain stopped (%s) instead of rebooting",
                ev->detail_name);
        op_fail(op);
    }
}

/* ---- requests ---------------------------------------------------------------- */

static struct vmm_op *op_new(struct vmm *m, struct vmm_vm *vm, const char *name,
                             unsigned timeout_ms, vmm_reply_fn reply, void *ctx)
{
    struct vmm_op *op = cgv_malloc0(sizeof(*op));

    op->m = m;
    op->vm = vm;
    op->op = name;
    op->reply = reply;
    op->ctx = ctx;
    op->t0_us = cgv_mono_us();
    op->timeout_ms = timeout_ms ? timeout_ms : m->cfg.stop_timeout_ms;
    op->hv = m->hv;
    cgv_strlcpy(op->domain, vm->domain, sizeof(op->domain));
    cgv_strlcpy(op->sock_dir, vm->sock_dir, sizeof(op->sock_dir));
    vm->busy = name;
    vm->op = op;
    return op;
}

static bool send_agent_shutdown(struct vmm_vm *vm, enum proto_shutdown_action action)
{
    struct proto_msg msg = {.type = PROTO_SHUTDOWN};

    if (vm->agent != AGENT_UP || !agentch_connected(vm->ch))
        return false;
    msg.u.shutdown.action = (uint8_t)action;
    return agentch_send(vm->ch, &msg) == 0;
}

struct deferred_op {
    char op[16];
    unsigned timeout_ms;
    vmm_reply_fn reply;
    void *ctx;
};

/* The switchover is done (or timed out): now the operation itself. The VM
 * is a standby now, so it is not drained again. */
static void after_drain(struct vmm_vm *vm, void *arg)
{
    struct deferred_op *d = arg;

    vm->busy = NULL;
    vmm_vm_op(vm->m, vm->name, d->op, d->timeout_ms, d->reply, d->ctx);
    free(d);
}

static const char *const op_names[] = {"start", "stop",   "destroy", "pause",
                                       "resume", "reboot", "save",    "restore"};

void vmm_vm_op(struct vmm *m, const char *name, const char *opname, unsigned timeout_ms,
               vmm_reply_fn reply, void *ctx)
{
    struct cgv_error err = {0};
    struct vmm_vm *vm = vmm_find_vm(m, name);
    const char *opn = NULL;
    struct vmm_op *op;
    bool active;

    for (size_t i = 0; i < CGV_ARRAY_LEN(op_names); i++) {
        if (strcmp(opname, op_names[i]) == 0)
            opn = op_names[i];
    }
    if (!opn) {
        cgv_err(&err, CGV_E_INVALID,
                "unknown operation '%s' (start, stop, destroy, pause, resume, reboot, "
                "save, restore)",
                opname);
        vmm_reply_error(reply, ctx, &err);
        return;
    }
    if (!vm) {
        cgv_err(&err, CGV_E_NOTFOUND, "no VM named '%s'", name);
        vmm_reply_error(reply, ctx, &err);
        return;
    }
    if (vm->busy && strcmp(vm->busy, "snapshot") == 0 && !vm->deferred.reply) {
        /* A background snapshot takes a moment: run the operation after it
         * rather than refuse it. */
        cgv_strlcpy(vm->deferred.op, opn, sizeof(vm->deferred.op));
        vm->deferred.timeout_ms = timeout_ms;
        vm->deferred.reply = reply;
        vm->deferred.ctx = ctx;
        return;
    }
    if (vm->busy || vm->svc->busy) {
        cgv_err(&err, CGV_E_CONFLICT, "%s is busy: %s in progress", vm->name,
                vm->busy ? vm->busy : vm->svc->busy);
        vmm_reply_error(reply, ctx, &err);
        return;
    }
    if (!m->connected || !m->adopted_once) {
        cgv_err(&err, CGV_E_UNAVAIL, "%s; try again shortly",
                m->connected ? "cgvd is starting (adopting the running VMs)"
                             : "libvirt is not connected");
        vmm_reply_error(reply, ctx, &err);
        return;
    }
    active = vm->state == HV_ST_RUNNING || vm->state == HV_ST_PAUSED ||
             vm->state == HV_ST_SHUTDOWN;
    if (active && vm->state == HV_ST_RUNNING &&
        (!strcmp(opn, "stop") || !strcmp(opn, "destroy") || !strcmp(opn, "pause") ||
         !strcmp(opn, "save") || !strcmp(opn, "reboot"))) {
        /* Fail over to the standby first (planned switchover), then act. */
        struct deferred_op *d = cgv_malloc0(sizeof(*d));
        cgv_strlcpy(d->op, opn, sizeof(d->op));
        d->timeout_ms = timeout_ms;
        d->reply = reply;
        d->ctx = ctx;
        if (vmm_ha_drain(vm, after_drain, d)) {
            vm->busy = "switchover";
            return;
        }
        free(d);
    }
    op = op_new(m, vm, opn, timeout_ms, reply, ctx);

    if (strcmp(opn, "start") == 0) {
        if (active) {
            op_finish(op, false, "already running");
            return;
        }
        if (vm->save_path) {
            op->op = "restore";
            cgv_strlcpy(op->path, vm->save_path, sizeof(op->path));
            op_submit(op, W_RESTORE);
            return;
        }
        if (vmm_vm_build_xml(m, vm, &op->xml, &op->err) < 0) {
            op_fail(op);
            return;
        }
        op_submit(op, W_START);
    } else if (strcmp(opn, "restore") == 0) {
        if (active || !vm->save_path) {
            cgv_err(&op->err, CGV_E_CONFLICT, "%s has no saved image to restore (it is %s)",
                    vm->name, hv_state_name(vm->state));
            op_fail(op);
            return;
        }
        cgv_strlcpy(op->path, vm->save_path, sizeof(op->path));
        op_submit(op, W_RESTORE);
    } else if (strcmp(opn, "destroy") == 0) {
        if (!active) {
            if (vm->save_path) {
                if (unlink(vm->save_path) < 0 && errno != ENOENT)
                    log_warn("%s: removing %s: %s", vm->name, vm->save_path,
                             strerror(errno));
                free(vm->save_path);
                vm->save_path = NULL;
                set_desired(vm, "stopped");
                op_persist(op);
                evlog_emit(m->ev, "info", "vm.destroyed", vm->svc->name, vm->name,
                           "saved image discarded");
                op_finish(op, true, "saved image discarded");
                return;
            }
            set_desired(vm, "stopped");
            op_persist(op);
            op_finish(op, false, "already stopped");
            return;
        }
        op_submit(op, W_DESTROY);
    } else if (strcmp(opn, "stop") == 0) {
        if (!active) {
            set_desired(vm, "stopped");
            op_persist(op);
            op_finish(op, false, "already stopped");
            return;
        }
        op->wait_stop = true;
        if (vm->state == HV_ST_PAUSED) {
            /* A frozen guest cannot act on a request to shut down. */
            op->how = "paused guest";
            op->forced = true;
            op_submit(op, W_DESTROY);
            return;
        }
        if (send_agent_shutdown(vm, PROTO_SHUTDOWN_POWEROFF)) {
            op->how = "asked the agent";
            op->timer = loop_timer_add(m->loop, op->timeout_ms, on_timeout, op);
        } else {
            op->how = "ACPI power button";
            op_submit(op, W_SHUTDOWN);
        }
    } else if (strcmp(opn, "reboot") == 0) {
        if (vm->state != HV_ST_RUNNING) {
            cgv_err(&op->err, CGV_E_CONFLICT, "%s is %s, not running", vm->name,
                    hv_state_name(vm->state));
            op_fail(op);
            return;
        }
        op->wait_reboot = true;
        if (send_agent_shutdown(vm, PROTO_SHUTDOWN_REBOOT)) {
            op->how = "asked the agent";
            op->timer = loop_timer_add(m->loop, op->timeout_ms, on_timeout, op);
        } else {
            op->how = "ACPI";
            op_submit(op, W_REBOOT);
        }
    } else if (strcmp(opn, "pause") == 0) {
        if (vm->state == HV_ST_PAUSED) {
            op_finish(op, false, "already paused");
            return;
        }
        if (vm->state != HV_ST_RUNNING) {
            cgv_err(&op->err, CGV_E_CONFLICT, "%s is %s, not running", vm->name,
                    hv_state_name(vm->state));
            op_fail(op);
            return;
        }
        op_submit(op, W_SUSPEND);
    } else if (strcmp(opn, "resume") == 0) {
        if (vm->state == HV_ST_RUNNING) {
            op_finish(op, false, "already running");
            return;
        }
        if (vm->state != HV_ST_PAUSED) {
            cgv_err(&op->err, CGV_E_CONFLICT, "%s is %s, not paused", vm->name,
                    hv_state_name(vm->state));
            op_fail(op);
            return;
        }
        op_submit(op, W_RESUME);
    } else if (strcmp(opn, "save") == 0) {
        if (vm->state != HV_ST_RUNNING && vm->state != HV_ST_PAUSED) {
            cgv_err(&op->err, CGV_E_CONFLICT, "%s is %s; only a running or paused VM can "
                                              "be saved",
                    vm->name, hv_state_name(vm->state));
            op_fail(op);
            return;
        }
        snprintf(op->path, sizeof(op->path), "%s/save/%s.sav", m->state_dir, vm->name);
        op_submit(op, W_SAVE);
    }
}

void vmm_ops_abandon(struct vmm_vm *vm)
{
    /* At shutdown the API has answered (and freed) every request already. */
    if (vm->deferred.reply && !vm->m->stopping) {
        struct cgv_error err = {0};
        cgv_err(&err, CGV_E_UNAVAIL, "%s went away before its %s could run", vm->name,
                vm->deferred.op);
        vmm_reply_error(vm->deferred.reply, vm->deferred.ctx, &err);
        vm->deferred.reply = NULL;
    }
    free(vm->deferred.body);
    vm->deferred.body = NULL;
    if (!vm->op)
        return;
    op_free(vm->op);
    vm->op = NULL;
    vm->busy = NULL;
}

void vmm_ops_run_deferred(struct vmm_vm *vm)
{
    char op[16];
    vmm_reply_fn reply = vm->deferred.reply;

    if (!reply)
        return;
    cgv_strlcpy(op, vm->deferred.op, sizeof(op));
    vm->deferred.reply = NULL;
    if (strcmp(op, "set") == 0) {
        char *body = vm->deferred.body;
        vm->deferred.body = NULL;
        vmm_vm_set(vm->m, vm->name, body, vm->deferred.len, reply, vm->deferred.ctx);
        free(body);
        return;
    }
    vmm_vm_op(vm->m, vm->name, op, vm->deferred.timeout_ms, reply, vm->deferred.ctx);
}
