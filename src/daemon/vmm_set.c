/* vmm_set.c — change a VM's vCPUs, CPU pinning, memory and QoS (cgv vm
 * set). The change is an override of that VM's service spec, validated by
 * the spec parser itself (the VM's effective spec with the change applied
 * must be a valid spec), admitted by the CPU allocator, persisted
 * ("vm.override.<vm>"), and applied:
 *   - live where libvirt can (vCPU hot-plug within max_vcpus, pinning, CPU
 *     shares/quota, memory hard limit, network bandwidth), and into the
 *     persistent definition as well;
 *   - otherwise (memory size, more vCPUs than the domain has room for)
 *     through a controlled restart: stop — which for an active first hands
 *     its assignment to the standby — redefine, start;
 *   - for a VM that is not running, into its definition only.
 * Nothing is half-applied: a refused change leaves the override, the
 * placement and the domain as they were. */
#include "vmm_priv.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgv_log.h"

#define LOG_MODULE "set"

struct set_ctx {
    struct vmm *m;
    struct vmm_vm *vm;
    vmm_reply_fn reply;
    void *rctx;
    int64_t t0_us;
    const char *how;           /* "live", "restart", "config", "unchanged" */
    json_t *changes;           /* names of what changed */

    /* worker input */
    struct hv *hv;
    char domain[128];
    struct hv_tune tune;
    bool live;
    unsigned n_pins;
    char *pins[PLACE_MAX_VCPUS];
    char *emu_pin;
    char *xml;                 /* redefine with this (persistent config) */
    /* what to put back if libvirt refuses the change */
    struct vmm_ovr old_ovr;
    bool old_placed, realloc;
    struct place_result old_alloc;
    int rc;
    struct cgv_error err;
};

static void ctx_free(struct set_ctx *c)
{
    for (unsigned i = 0; i < PLACE_MAX_VCPUS; i++)
        free(c->pins[i]);
    free(c->emu_pin);
    free(c->xml);
    json_decref(c->changes);
    free(c);
}

static void reply_ok(struct set_ctx *c)
{
    json_t *o = json_object();

    json_object_set_new(o, "vm", json_string(c->vm->name));
    json_object_set_new(o, "applied", json_string(c->how));
    json_object_set_new(o, "changes", json_incref(c->changes));
    json_object_set_new(o, "duration_ms",
                        json_integer((cgv_mono_us() - c->t0_us + 500) / 1000));
    c->reply(c->rctx, o, NULL, NULL);
}

/* ---- overrides: persistence ------------------------------------------------------ */

static json_t *qos_json(const struct spec_qos *q)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "cpu_shares", (json_int_t)q->cpu_shares,
                     "cpu_period_us", (json_int_t)q->cpu_period_us, "cpu_quota_us",
                     (json_int_t)q->cpu_quota_us, "memory_hard_limit_mib",
                     (json_int_t)q->memory_hard_limit_mib, "net_inbound_kbps",
                     (json_int_t)q->net_inbound_kbps, "net_outbound_kbps",
                     (json_int_t)q->net_outbound_kbps, "net_burst_kb",
                     (json_int_t)q->net_burst_kb);
}

static void persist(struct vmm *m, struct vmm_vm *vm)
{
    char key[96], *text = NULL;
    json_t *o, *pins;
    struct cgv_error err = {0};

    snprintf(key, sizeof(key), "vm.override.%s", vm->name);
    if (vm->ovr.vcpus || vm->ovr.memory_mib || vm->ovr.n_pins || vm->ovr.has_qos) {
        pins = json_array();
        for (size_t i = 0; i < vm->ovr.n_pins; i++)
            json_array_append_new(pins, json_integer(vm->ovr.pins[i]));
        o = json_pack("{s:I,s:I,s:o}", "vcpus", (json_int_t)vm->ovr.vcpus, "memory_mib",
                      (json_int_t)vm->ovr.memory_mib, "pins", pins);
        if (vm->ovr.has_qos)
            json_object_set_new(o, "qos", qos_json(&vm->ovr.qos));
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    if (store_meta_set(m->st, key, text, &err) < 0)
        log_error("saving the overrides of %s: %s", vm->name, err.msg);
    free(text);
}

void vmm_set_load(struct vmm *m, struct vmm_vm *vm)
{
    char key[96], *text = NULL;
    json_t *o, *v, *q;
    size_t i;

    snprintf(key, sizeof(key), "vm.override.%s", vm->name);
    if (store_meta_get(m->st, key, &text, NULL) < 0 || !text)
        return;
    o = json_loads(text, 0, NULL);
    free(text);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    vm->ovr.vcpus = (unsigned)json_integer_value(json_object_get(o, "vcpus"));
    vm->ovr.memory_mib = (uint64_t)json_integer_value(json_object_get(o, "memory_mib"));
    json_array_foreach(json_object_get(o, "pins"), i, v)
    {
        if (i < PLACE_MAX_VCPUS) {
            vm->ovr.pins[i] = (unsigned)json_integer_value(v);
            vm->ovr.n_pins = i + 1;
        }
    }
    q = json_object_get(o, "qos");
    if (json_is_object(q)) {
        struct spec_qos *d = &vm->ovr.qos;
        vm->ovr.has_qos = true;
        d->cpu_shares = (unsigned)json_integer_value(json_object_get(q, "cpu_shares"));
        d->cpu_period_us = (unsigned)json_integer_value(json_object_get(q, "cpu_period_us"));
        d->cpu_quota_us = (uint64_t)json_integer_value(json_object_get(q, "cpu_quota_us"));
        d->memory_hard_limit_mib =
            (uint64_t)json_integer_value(json_object_get(q, "memory_hard_limit_mib"));
        d->net_inbound_kbps = (uint64_t)json_integer_value(json_object_get(q, "net_inbound_kbps"));
        d->net_outbound_kbps =
            (uint64_t)json_integer_value(json_object_get(q, "net_outbound_kbps"));
        d->net_burst_kb = (uint64_t)json_integer_value(json_object_get(q, "net_burst_kb"));
    }
    json_decref(o);
}

/* ---- workers ------------------------------------------------------------------------ */

static void live_work(void *arg)
{
    struct set_ctx *c = arg;

    c->rc = 0;
    if (c->live) {
        if (hv_dom_tune(c->hv, c->domain, &c->tune, true, true, &c->err) < 0) {
            c->rc = -1;
            return;
        }
        for (unsigned i = 0; i < c->n_pins && c->rc == 0; i++) {
            if (c->pins[i])
                c->rc = hv_dom_pin(c->hv, c->domain, (int)i, c->pins[i], true, true, &c->err);
        }
        if (c->rc == 0 && c->emu_pin)
            c->rc = hv_dom_pin(c->hv, c->domain, -1, c->emu_pin, true, true, &c->err);
        if (c->rc < 0)
            return;
    }
    /* The persistent definition, exactly as cgvd builds it now. */
    if (c->xml)
        c->rc = hv_dom_define(c->hv, c->xml, &c->err);
}

static void live_done(void *arg)
{
    struct set_ctx *c = arg;

    c->vm->busy = NULL;
    if (c->rc < 0) {
        struct vmm_vm *vm = c->vm;
        /* cgvd's records go back to what they were: the override, the
         * placement (libvirt refused before or while applying). */
        vm->ovr = c->old_ovr;
        persist(c->m, vm);
        if (c->realloc && c->m->place) {
            vmm_place_release(c->m, vm);
            if (c->old_placed) {
                struct place_request pr;
                vmm_place_request(vm, &pr);
                if (place_adopt(c->m->place, &pr, &c->old_alloc, NULL) == 0) {
                    vm->alloc = c->old_alloc;
                    vm->placed = true;
                }
            }
            vmm_place_persist(c->m, vm);
        }
        cgv_err_prefix(&c->err, "nothing changed in cgvd's records");
        evlog_emit(c->m->ev, "error", "vm.op_failed", c->vm->svc->name, c->vm->name,
                   "set failed: %s", c->err.msg);
        c->reply(c->rctx, NULL, &c->err, NULL);
    } else {
        char *list = json_dumps(c->changes, JSON_COMPACT);
        evlog_emit(c->m->ev, "info", "vm.reconfigured", c->vm->svc->name, c->vm->name,
                   "%s applied %s", list, c->how);
        free(list);
        reply_ok(c);
    }
    ctx_free(c);
}

/* ---- controlled restart ------------------------------------------------------------- */

static void restart_started(void *arg, json_t *body, const struct cgv_error *err,
                            const struct spec_issues *issues)
{
    struct set_ctx *c = arg;

    (void)issues;
    if (!body) {
        struct cgv_error e = *err;
        cgv_err_prefix(&e, "%s was stopped and redefined but did not start again",
                       c->vm->name);
        c->reply(c->rctx, NULL, &e, NULL);
    } else {
        char *list = json_dumps(c->changes, JSON_COMPACT);
        json_decref(body);
        evlog_emit(c->m->ev, "info", "vm.reconfigured", c->vm->svc->name, c->vm->name,
                   "%s applied by a controlled restart", list);
        free(list);
        reply_ok(c);
    }
    ctx_free(c);
}

static void restart_stopped(void *arg, json_t *body, const struct cgv_error *err,
                            const struct spec_issues *issues)
{
    struct set_ctx *c = arg;

    (void)issues;
    if (!body) {
        c->reply(c->rctx, NULL, err, NULL);
        ctx_free(c);
        return;
    }
    json_decref(body);
    /* start (re)defines the domain from the spec and the new overrides. */
    vmm_vm_op(c->m, c->vm->name, "start", 0, restart_started, c);
}

/* ---- the request ---------------------------------------------------------------------- */

/* A spec_qos in the canonical spec JSON's shape. */
static void qos_into(json_t *spec, const struct spec_qos *q)
{
    char mem[32];

    snprintf(mem, sizeof(mem), "%" PRIu64 "MiB", q->memory_hard_limit_mib);
    json_object_set_new(
        spec, "qos",
        json_pack("{s:I,s:I,s:I,s:o,s:{s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I}}", "cpu_shares",
                  (json_int_t)q->cpu_shares, "cpu_period_us", (json_int_t)q->cpu_period_us,
                  "cpu_quota_us", (json_int_t)q->cpu_quota_us, "memory_hard_limit",
                  q->memory_hard_limit_mib ? json_string(mem) : json_null(), "net",
                  "inbound_kbps", (json_int_t)q->net_inbound_kbps, "outbound_kbps",
                  (json_int_t)q->net_outbound_kbps, "burst_kb", (json_int_t)q->net_burst_kb,
                  "block", "read_bps", (json_int_t)q->block_read_bps, "write_bps",
                  (json_int_t)q->block_write_bps, "read_iops", (json_int_t)q->block_read_iops,
                  "write_iops", (json_int_t)q->block_write_iops));
}

static void merge_object(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)src, k, v)
    {
        json_t *cur = json_object_get(dst, k);
        if (json_is_object(v) && json_is_object(cur))
            merge_object(cur, v);
        else
            json_object_set(dst, k, v);
    }
}

static void fail(vmm_reply_fn reply, void *ctx, enum cgv_errcode code, const char *msg)
{
    struct cgv_error err = {0};

    cgv_err(&err, code, "%s", msg);
    reply(ctx, NULL, &err, NULL);
}

void vmm_vm_set(struct vmm *m, const char *name, const char *body, size_t len,
                vmm_reply_fn reply, void *rctx)
{
    struct vmm_vm *vm = vmm_find_vm(m, name);
    json_t *req = NULL, *eff = NULL, *cpu, *v;
    json_error_t je;
    struct spec_issues *issues = NULL;
    struct spec_service *ns = NULL;
    struct set_ctx *c = NULL;
    char *text = NULL, msg[512];
    const char *k;
    bool reset;
    unsigned old_vcpus, old_max, new_vcpus;
    uint64_t old_mem, new_mem;
    struct spec_qos old_qos;
    bool pins_changed, qos_changed, running;
    struct vmm_ovr old_ovr;
    struct place_result *old_alloc = NULL;
    bool old_placed;
    struct cgv_error err = {0};

    if (!vm) {
        snprintf(msg, sizeof(msg), "no VM named '%s'", name);
        return fail(reply, rctx, CGV_E_NOTFOUND, msg);
    }
    if (vm->busy && strcmp(vm->busy, "snapshot") == 0 && !vm->deferred.reply) {
        /* A background snapshot takes a moment: run the change after it. */
        cgv_strlcpy(vm->deferred.op, "set", sizeof(vm->deferred.op));
        vm->deferred.body = cgv_malloc0(len + 1);
        if (len)
            memcpy(vm->deferred.body, body, len);
        vm->deferred.len = len;
        vm->deferred.reply = reply;
        vm->deferred.ctx = rctx;
        return;
    }
    if (vm->busy || vm->svc->busy) {
        snprintf(msg, sizeof(msg), "%s is busy: %s in progress", vm->name,
                 vm->busy ? vm->busy : vm->svc->busy);
        return fail(reply, rctx, CGV_E_CONFLICT, msg);
    }
    if (!m->connected || !m->adopted_once)
        return fail(reply, rctx, CGV_E_UNAVAIL, "cgvd is not ready (libvirt); try again");
    req = json_loadb(body ? body : "", len, 0, &je);
    if (!json_is_object(req)) {
        snprintf(msg, sizeof(msg), "the request must be a JSON object: %s",
                 req ? "got another JSON type" : je.text);
        json_decref(req);
        return fail(reply, rctx, CGV_E_INVALID, msg);
    }
    json_object_foreach(req, k, v)
    {
        if (strcmp(k, "vcpus") && strcmp(k, "memory") && strcmp(k, "cpus") &&
            strcmp(k, "qos") && strcmp(k, "reset")) {
            snprintf(msg, sizeof(msg),
                     "unknown field '%.40s' (vcpus, memory, cpus, qos, reset)", k);
            json_decref(req);
            return fail(reply, rctx, CGV_E_INVALID, msg);
        }
    }
    reset = json_is_true(json_object_get(req, "reset"));
    if (json_object_get(req, "reset") && !json_is_boolean(json_object_get(req, "reset"))) {
        json_decref(req);
        return fail(reply, rctx, CGV_E_INVALID, "reset must be true or false");
    }

    /* The VM's effective spec (the service's, plus its overrides), then the
     * change; the spec parser says whether the result is valid. */
    eff = spec_to_json(vm->svc->spec);
    cpu = json_object_get(eff, "cpu");
    if (!reset) {
        if (vm->ovr.vcpus)
            json_object_set_new(eff, "vcpus", json_integer(vm->ovr.vcpus));
        if (vm->ovr.memory_mib)
            json_object_set_new(eff, "memory", json_integer((json_int_t)vm->ovr.memory_mib));
        if (vm->ovr.n_pins) {
            json_t *pins = json_array();
            for (size_t i = 0; i < vm->ovr.n_pins; i++)
                json_array_append_new(pins, json_integer(vm->ovr.pins[i]));
            json_object_set_new(cpu, "policy", json_string("pinned"));
            json_object_set_new(cpu, "pinned", pins);
            json_object_set_new(cpu, "isolate_smt", json_false());
            json_object_set_new(cpu, "group", json_null());
            json_object_set_new(cpu, "group_cores", json_integer(1));
        }
        if (vm->ovr.has_qos)
            qos_into(eff, &vm->ovr.qos);
    }
    if ((v = json_object_get(req, "vcpus"))) {
        json_object_set(eff, "vcpus", v);
        if (json_is_integer(v) &&
            json_integer_value(v) > json_integer_value(json_object_get(cpu, "max_vcpus")))
            json_object_set(cpu, "max_vcpus", v);
    }
    if ((v = json_object_get(req, "memory")))
        json_object_set(eff, "memory", v);
    if ((v = json_object_get(req, "cpus"))) {
        if (json_is_null(v)) {
            /* Back to the service's CPU policy. */
            json_t *sj = spec_to_json(vm->svc->spec);
            json_object_set_new(eff, "cpu", json_deep_copy(json_object_get(sj, "cpu")));
            json_decref(sj);
            cpu = json_object_get(eff, "cpu");
        } else {
            json_object_set_new(cpu, "policy", json_string("pinned"));
            json_object_set(cpu, "pinned", v);
            json_object_set_new(cpu, "isolate_smt", json_false());
            json_object_set_new(cpu, "group", json_null());
            json_object_set_new(cpu, "group_cores", json_integer(1));
        }
    }
    if ((v = json_object_get(req, "qos"))) {
        if (!json_is_object(v)) {
            json_decref(req);
            json_decref(eff);
            return fail(reply, rctx, CGV_E_INVALID, "qos must be an object");
        }
        merge_object(json_object_get(eff, "qos"), v);
    }
    text = json_dumps(eff, JSON_COMPACT);
    issues = cgv_malloc0(sizeof(*issues));
    if (spec_parse(text, strlen(text), &ns, issues) < 0) {
        struct cgv_error e = {0};
        /* Line numbers are those of cgvd's own rendering: meaningless. */
        for (size_t i = 0; i < issues->n; i++)
            issues->items[i].line = issues->items[i].column = 0;
        cgv_err(&e, CGV_E_INVALID, "invalid change: %zu problem%s", issues->n,
                issues->n == 1 ? "" : "s");
        reply(rctx, NULL, &e, issues);
        goto cleanup;
    }

    /* What changes. */
    old_ovr = vm->ovr;
    old_vcpus = vmm_vm_vcpus(vm);
    old_max = vm->defined_max_vcpus ? vm->defined_max_vcpus : vmm_vm_max_vcpus(vm);
    old_mem = vmm_vm_memory_mib(vm);
    old_qos = *vmm_vm_qos(vm);
    memset(&vm->ovr, 0, sizeof(vm->ovr));
    if (ns->vcpus != vm->svc->spec->vcpus)
        vm->ovr.vcpus = ns->vcpus;
    if (ns->memory_mib != vm->svc->spec->memory_mib)
        vm->ovr.memory_mib = ns->memory_mib;
    if (ns->cpu.policy == SPEC_CPU_PINNED &&
        (vm->svc->spec->cpu.policy != SPEC_CPU_PINNED ||
         ns->cpu.n_pinned != vm->svc->spec->cpu.n_pinned ||
         memcmp(ns->cpu.pinned, vm->svc->spec->cpu.pinned,
                sizeof(unsigned) * ns->cpu.n_pinned) != 0)) {
        vm->ovr.n_pins = ns->cpu.n_pinned;
        for (size_t i = 0; i < ns->cpu.n_pinned; i++)
            vm->ovr.pins[i] = ns->cpu.pinned[i];
    }
    if (memcmp(&ns->qos, &vm->svc->spec->qos, sizeof(ns->qos)) != 0) {
        vm->ovr.has_qos = true;
        vm->ovr.qos = ns->qos;
    }
    new_vcpus = vmm_vm_vcpus(vm);
    new_mem = vmm_vm_memory_mib(vm);
    pins_changed = old_ovr.n_pins != vm->ovr.n_pins ||
                   memcmp(old_ovr.pins, vm->ovr.pins, sizeof(unsigned) * vm->ovr.n_pins) != 0;
    qos_changed = memcmp(&old_qos, vmm_vm_qos(vm), sizeof(old_qos)) != 0;

    c = cgv_malloc0(sizeof(*c));
    c->m = m;
    c->vm = vm;
    c->reply = reply;
    c->rctx = rctx;
    c->t0_us = cgv_mono_us();
    c->changes = json_array();
    c->hv = m->hv;
    cgv_strlcpy(c->domain, vm->domain, sizeof(c->domain));
    if (new_vcpus != old_vcpus)
        json_array_append_new(c->changes, json_sprintf("vcpus %u -> %u", old_vcpus, new_vcpus));
    if (new_mem != old_mem)
        json_array_append_new(c->changes,
                              json_sprintf("memory %" PRIu64 " -> %" PRIu64 " MiB", old_mem,
                                           new_mem));
    if (pins_changed)
        json_array_append_new(c->changes, json_string("cpu pinning"));
    if (qos_changed)
        json_array_append_new(c->changes, json_string("qos"));
    if (json_array_size(c->changes) == 0) {
        c->how = "unchanged";
        reply_ok(c);
        goto cleanup;
    }

    /* Admission: the new placement, or nothing changes. */
    old_placed = vm->placed;
    c->old_ovr = old_ovr;
    c->old_placed = old_placed;
    if (old_placed)
        c->old_alloc = vm->alloc;
    if (m->place && (pins_changed || new_vcpus != old_vcpus || new_mem != old_mem ||
                     vmm_vm_max_vcpus(vm) != old_max)) {
        c->realloc = true;
        if (old_placed) {
            old_alloc = cgv_malloc0(sizeof(*old_alloc));
            *old_alloc = vm->alloc;
        }
        vmm_place_release(m, vm);
        if (vmm_place_alloc(m, vm, &err) < 0) {
            struct place_request pr;
            vm->ovr = old_ovr;
            if (old_alloc) {
                vmm_place_request(vm, &pr);
                if (place_adopt(m->place, &pr, old_alloc, NULL) == 0) {
                    vm->alloc = *old_alloc;
                    vm->placed = true;
                    vmm_place_persist(m, vm);
                }
            }
            cgv_err_prefix(&err, "nothing changed");
            reply(rctx, NULL, &err, NULL);
            ctx_free(c);
            c = NULL;
            goto cleanup;
        }
    }
    persist(m, vm);
    /* The fast-restart snapshot holds the old configuration. */
    if (vm->golden_gen) {
        vm->golden_gen = 0;
        vm->svc->ha_dirty = true;
    }

    running = vm->state == HV_ST_RUNNING || vm->state == HV_ST_PAUSED;
    if (running && (new_mem != old_mem || new_vcpus > old_max)) {
        /* Not possible live: stop (switching over first), redefine, start. */
        c->how = "restart";
        vmm_vm_op(m, vm->name, "stop", 0, restart_stopped, c);
        c = NULL;
        goto cleanup;
    }
    if (vmm_vm_build_xml(m, vm, &c->xml, &err) < 0) {
        c->rc = -1;
        c->err = err;
        live_done(c); /* puts the records back, replies */
        c = NULL;
        goto cleanup;
    }
    c->live = running;
    c->how = running ? "live" : "config";
    if (new_vcpus != old_vcpus)
        c->tune.vcpus = new_vcpus;
    if (qos_changed) {
        const struct spec_qos *q = vmm_vm_qos(vm);
        c->tune.set_shares = q->cpu_shares != old_qos.cpu_shares && q->cpu_shares;
        c->tune.shares = q->cpu_shares;
        c->tune.set_quota = q->cpu_quota_us != old_qos.cpu_quota_us ||
                            q->cpu_period_us != old_qos.cpu_period_us;
        c->tune.period_us = q->cpu_period_us;
        c->tune.quota_us = q->cpu_quota_us ? (int64_t)q->cpu_quota_us : -1;
        c->tune.set_hard_limit = q->memory_hard_limit_mib != old_qos.memory_hard_limit_mib;
        c->tune.hard_limit_mib = q->memory_hard_limit_mib;
        c->tune.set_bandwidth = q->net_inbound_kbps != old_qos.net_inbound_kbps ||
                                q->net_outbound_kbps != old_qos.net_outbound_kbps ||
                                q->net_burst_kb != old_qos.net_burst_kb;
        c->tune.net_in_kbps = q->net_inbound_kbps ? (q->net_inbound_kbps + 7) / 8 : 0;
        c->tune.net_out_kbps = q->net_outbound_kbps ? (q->net_outbound_kbps + 7) / 8 : 0;
        c->tune.net_burst_kb = q->net_burst_kb;
    }
    if (vm->placed) {
        char buf[4096];
        c->n_pins = new_vcpus < vm->alloc.vcpus ? new_vcpus : vm->alloc.vcpus;
        for (unsigned i = 0; i < c->n_pins; i++) {
            struct place_cpuset s;
            vmm_place_vcpu_set(m, vm, i, &s);
            place_cpuset_format(&s, buf, sizeof(buf));
            c->pins[i] = cgv_strdup(buf);
        }
        place_cpuset_format(&vm->alloc.emulator, buf, sizeof(buf));
        c->emu_pin = cgv_strdup(buf);
    }
    vm->busy = "set";
    jobs_submit(m->jobs, live_work, live_done, c);
    c = NULL;

cleanup:
    if (c)
        ctx_free(c);
    free(old_alloc);
    spec_free(ns);
    free(issues);
    free(text);
    json_decref(eff);
    json_decref(req);
}
