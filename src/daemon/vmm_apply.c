/* vmm_apply.c — apply a spec (create, scale, update a service) and delete a
 * service.
 *
 * Apply is all-or-nothing where it creates: the spec is validated against
 * the host before anything changes; the new state is committed to the store
 * in one transaction; then every new VM is defined and started on workers.
 * If any of them fails, every VM this request created is destroyed and
 * undefined again and the store is put back, so the service is exactly as
 * before. Only when all new VMs run are removed VMs (scale down) destroyed
 * and existing VMs redefined (template change, taking effect at their next
 * cold start); failures there are reported as warnings, never hidden. */
#include "vmm_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "apply"

enum item_kind { AI_CREATE, AI_REMOVE, AI_REDEFINE };

struct apply_ctx;

struct apply_item {
    struct apply_ctx *ctx;
    struct vmm_vm *vm;
    enum item_kind kind;
    bool rollback;                 /* a created VM being removed again */

    /* worker input */
    struct hv *hv;
    char domain[128];
    char uuid[37];                 /* the domain is ours only with this UUID */
    char sock_dir[VMM_PATH_MAX];
    char save_path[VMM_PATH_MAX];
    char *xml;

    /* worker output */
    int rc;
    struct cgv_error err;
    bool defined;                  /* this request's define succeeded */
    bool have_info;
    struct hv_dom_info info;
    int64_t info_us;

    /* for rolling back a changed existing VM */
    size_t old_n_addrs;
    char old_addrs[SPEC_MAX_NETWORKS][24];
    struct place_result *old_alloc; /* owned: its placement before this apply */
    bool replaced;                  /* placed anew by this apply */
    char *pins[PLACE_MAX_VCPUS];    /* owned: new pins to apply live */
    char *emu_pin;
    unsigned live_vcpus;
};

enum apply_phase { PH_CREATE, PH_ROLLBACK, PH_CHANGE, PH_DELETE };

struct apply_ctx {
    struct vmm *m;
    vmm_reply_fn reply;
    void *rctx;
    int64_t t0_us;
    struct vmm_service *svc;
    bool created;                  /* the service is new */
    struct spec_service *old_spec; /* owned; restored on rollback */
    int64_t old_generation, old_updated_ms;
    struct apply_item *items;
    size_t n_items;
    size_t pending;
    enum apply_phase phase;
    json_t *warnings;
    struct cgv_error fail;         /* first creation failure */
};

/* ---- workers -------------------------------------------------------------------- */

static void item_work(void *arg)
{
    struct apply_item *it = arg;
    struct cgv_error *e = &it->err;
    struct cgv_error ignore = {0};

    it->rc = 0;
    if (it->kind == AI_CREATE && !it->rollback) {
        if (cgv_mkdir_p(it->sock_dir, 0755, e) < 0 || hv_dom_define(it->hv, it->xml, e) < 0) {
            it->rc = -1;
        } else {
            it->defined = true;
            if (hv_dom_start(it->hv, it->domain, e) < 0)
                it->rc = -1;
            it->have_info = hv_dom_info(it->hv, it->domain, &it->info, NULL) == 0;
            it->info_us = cgv_mono_us();
        }
    } else if (it->kind == AI_REDEFINE) {
        it->rc = hv_dom_define(it->hv, it->xml, e);
        it->have_info = hv_dom_info(it->hv, it->domain, &it->info, NULL) == 0;
        it->info_us = cgv_mono_us();
        if (it->rc == 0 && it->have_info &&
            (it->info.state == HV_ST_RUNNING || it->info.state == HV_ST_PAUSED)) {
            /* New placement: pin the running QEMU now, not at the next boot. */
            for (unsigned k = 0; k < it->live_vcpus && it->pins[k]; k++) {
                if (hv_dom_pin(it->hv, it->domain, (int)k, it->pins[k], true, false,
                               &ignore) < 0) {
                    log_warn("%s: live pin of vCPU %u: %s", it->domain, k, ignore.msg);
                    cgv_err_clear(&ignore);
                }
            }
            if (it->emu_pin && hv_dom_pin(it->hv, it->domain, -1, it->emu_pin, true, false,
                                          &ignore) < 0)
                log_warn("%s: live pin of the emulator: %s", it->domain, ignore.msg);
        }
    } else {
        /* AI_REMOVE, or a created VM rolled back: destroy, undefine, clean up
         * — only a domain that is ours: same name *and* our UUID. A create
         * whose define failed (say, the name belongs to a domain cgv did not
         * make) has nothing of ours in libvirt. */
        struct hv_dom_info cur;
        if (it->rollback && !it->defined)
            return;
        if (hv_dom_info(it->hv, it->domain, &cur, &ignore) < 0) {
            if (ignore.code == CGV_E_NOTFOUND)
                goto local_cleanup; /* already gone */
            *e = ignore;
            it->rc = -1;
            return;
        }
        if (strcmp(cur.uuid, it->uuid) != 0) {
            log_warn("domain %s has UUID %s, not cgv's %s: left alone", it->domain,
                     cur.uuid, it->uuid);
            return;
        }
        cgv_err_clear(&ignore);
        if (hv_dom_destroy(it->hv, it->domain, &ignore) < 0 &&
            ignore.code != CGV_E_NOTFOUND && ignore.code != CGV_E_CONFLICT) {
            *e = ignore;
            it->rc = -1;
            return;
        }
        cgv_err_clear(&ignore);
        if (hv_dom_undefine(it->hv, it->domain, &ignore) < 0 &&
            ignore.code != CGV_E_NOTFOUND) {
            *e = ignore;
            it->rc = -1;
            return;
        }
    local_cleanup:
        if (it->save_path[0] && unlink(it->save_path) < 0 && errno != ENOENT)
            log_warn("removing %s: %s", it->save_path, strerror(errno));
        rmdir(it->sock_dir);
    }
}

static void phase_done(struct apply_ctx *c);

static void item_done(void *arg)
{
    struct apply_item *it = arg;
    struct apply_ctx *c = it->ctx;

    if (it->have_info) {
        it->vm->exists = true;
        vmm_vm_set_state(it->vm, it->info.state, it->info.reason, it->info_us);
    }
    if (--c->pending == 0)
        phase_done(c);
}

static void item_prepare(struct vmm *m, struct apply_item *it)
{
    it->hv = m->hv;
    cgv_strlcpy(it->domain, it->vm->domain, sizeof(it->domain));
    cgv_strlcpy(it->uuid, it->vm->uuid, sizeof(it->uuid));
    cgv_strlcpy(it->sock_dir, it->vm->sock_dir, sizeof(it->sock_dir));
    if (it->vm->save_path)
        cgv_strlcpy(it->save_path, it->vm->save_path, sizeof(it->save_path));
}

static void submit_items(struct apply_ctx *c, bool (*pick)(const struct apply_item *))
{
    size_t n = 0;

    for (size_t i = 0; i < c->n_items; i++) {
        if (pick(&c->items[i]))
            n++;
    }
    c->pending = n;
    if (n == 0) {
        phase_done(c);
        return;
    }
    for (size_t i = 0; i < c->n_items; i++) {
        struct apply_item *it = &c->items[i];
        if (!pick(it))
            continue;
        it->rc = 0;
        cgv_err_clear(&it->err);
        jobs_submit(c->m->jobs, item_work, item_done, it);
    }
}

static bool pick_create(const struct apply_item *it) { return it->kind == AI_CREATE; }
static bool pick_rollback(const struct apply_item *it)
{
    return it->kind == AI_CREATE && it->rollback;
}
static bool pick_change(const struct apply_item *it) { return it->kind != AI_CREATE; }

/* ---- finishing ---------------------------------------------------------------------- */

static void ctx_free(struct apply_ctx *c)
{
    for (size_t i = 0; i < c->n_items; i++) {
        free(c->items[i].xml);
        free(c->items[i].old_alloc);
        free(c->items[i].emu_pin);
        for (unsigned k = 0; k < PLACE_MAX_VCPUS; k++)
            free(c->items[i].pins[k]);
    }
    free(c->items);
    spec_free(c->old_spec);
    json_decref(c->warnings);
    free(c);
}

static json_t *vm_names(struct apply_ctx *c)
{
    json_t *arr = json_array();

    for (struct vmm_vm *vm = c->m->vms; vm; vm = vm->next) {
        if (vm->svc == c->svc)
            json_array_append_new(arr, json_string(vm->name));
    }
    return arr;
}

static void finish_apply_ok(struct apply_ctx *c)
{
    struct vmm *m = c->m;
    json_t *body = json_object();
    size_t nvm = 0;

    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        if (vm->svc == c->svc) {
            vm->busy = NULL;
            nvm++;
            /* The running agents hear the new heartbeat interval, CONFIG
             * and role now, not at their next start. */
            if (!c->created)
                vmm_vm_regreet(vm);
        }
    }
    c->svc->busy = NULL;
    evlog_emit(m->ev, json_array_size(c->warnings) ? "warn" : "info", "service.applied",
               c->svc->name, NULL, "%s generation %lld: %zu VM%s%s",
               c->created ? "created" : "updated", (long long)c->svc->generation, nvm,
               nvm == 1 ? "" : "s",
               json_array_size(c->warnings) ? " (with warnings)" : "");
    json_object_set_new(body, "service", json_string(c->svc->name));
    json_object_set_new(body, "result", json_string(c->created ? "created" : "updated"));
    json_object_set_new(body, "generation", json_integer(c->svc->generation));
    json_object_set_new(body, "vms", vm_names(c));
    json_object_set_new(body, "duration_ms",
                        json_integer((cgv_mono_us() - c->t0_us + 500) / 1000));
    json_object_set_new(body, "warnings", json_incref(c->warnings));
    c->reply(c->rctx, body, NULL, NULL);
    ctx_free(c);
}

/* Give changed existing VMs their old placement back. */
static void restore_placements(struct vmm *m, struct apply_ctx *c)
{
    for (size_t i = 0; i < c->n_items; i++) {
        struct apply_item *it = &c->items[i];
        if (it->kind != AI_REDEFINE || !it->replaced || !it->vm)
            continue;
        vmm_place_release(m, it->vm);
        if (it->old_alloc && m->place) {
            struct place_request req;
            struct cgv_error err = {0};
            vmm_place_request(it->vm, &req);
            if (place_adopt(m->place, &req, it->old_alloc, &err) == 0) {
                it->vm->alloc = *it->old_alloc;
                it->vm->placed = true;
                vmm_place_persist(m, it->vm);
            } else {
                log_error("%s: restoring its placement: %s", it->vm->name, err.msg);
            }
        }
        it->replaced = false;
    }
}

/* After the rollback jobs: put the store and the model back as they were. */
static void finish_rollback(struct apply_ctx *c)
{
    struct vmm *m = c->m;
    struct cgv_error err = {0};
    bool store_ok = true;
    char svc_name[SPEC_NAME_MAX + 1];

    bool stuck = false; /* a created VM that could not be removed again */

    cgv_strlcpy(svc_name, c->svc->name, sizeof(svc_name));
    for (size_t i = 0; i < c->n_items; i++)
        stuck = stuck || (c->items[i].kind == AI_CREATE && c->items[i].rc < 0);

    if (store_begin(m->st, &err) < 0) {
        store_ok = false;
    } else {
        for (size_t i = 0; i < c->n_items && store_ok; i++) {
            struct apply_item *it = &c->items[i];
            if (it->kind == AI_CREATE && it->rc == 0) {
                if (store_vm_delete(m->st, it->vm->name, &err) < 0)
                    store_ok = false;
            }
        }
        if (store_ok && c->created) {
            /* A VM that is still in libvirt keeps its service and its row,
             * so it stays visible and a later delete can remove it. */
            if (!stuck && store_service_delete(m->st, c->svc->name, &err) < 0)
                store_ok = false;
        } else if (store_ok) {
            struct store_service rec = {0};
            json_t *j = spec_to_json(c->old_spec);
            rec.name = c->svc->name;
            rec.spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
            rec.generation = c->old_generation;
            rec.created_ms = c->svc->created_ms;
            rec.updated_ms = c->old_updated_ms;
            json_decref(j);
            if (store_service_put(m->st, &rec, &err) < 0)
                store_ok = false;
            free(rec.spec_json);
            /* Existing VMs whose addresses the plan changed get them back. */
            for (size_t i = 0; i < c->n_items && store_ok; i++) {
                struct apply_item *it = &c->items[i];
                if (it->kind != AI_REDEFINE)
                    continue;
                it->vm->n_addrs = it->old_n_addrs;
                memcpy(it->vm->addrs, it->old_addrs, sizeof(it->old_addrs));
                if (store_addr_release_vm(m->st, it->vm->name, &err) < 0 ||
                    vmm_vm_persist(m, it->vm, &err) < 0) {
                    store_ok = false;
                    break;
                }
                for (size_t k = 0; k < it->vm->n_addrs; k++) {
                    char ip[24], *slash;
                    cgv_strlcpy(ip, it->vm->addrs[k], sizeof(ip));
                    if ((slash = strchr(ip, '/')))
                        *slash = '\0';
                    if (store_addr_claim(m->st, m->cfg.net.name, ip, it->vm->name, &err) < 0) {
                        store_ok = false;
                        break;
                    }
                }
            }
        }
        if (store_ok && store_commit(m->st, &err) < 0)
            store_ok = false;
        if (!store_ok)
            store_rollback(m->st);
    }
    if (!store_ok)
        log_error("rolling back the store after a failed apply of %s: %s", c->svc->name,
                  err.msg);

    for (size_t i = 0; i < c->n_items; i++) {
        struct apply_item *it = &c->items[i];
        if (it->kind == AI_CREATE) {
            if (it->rc == 0) {
                vmm_vm_remove(m, it->vm);
                it->vm = NULL;
            } else {
                /* Could not undo it: keep it visible rather than forget it. */
                it->vm->busy = NULL;
                cgv_err_prefix(&c->fail, "and removing %s again failed (%s)",
                               it->vm->name, it->err.msg);
            }
        } else if (it->vm) {
            it->vm->busy = NULL;
        }
    }
    if (c->created && store_ok) {
        bool left = false;
        for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
            left = left || vm->svc == c->svc;
        if (!left) {
            vmm_ha_service_free(m, c->svc);
            vmm_service_remove(m, c->svc);
            c->svc = NULL;
        }
    } else if (!c->created) {
        spec_free(c->svc->spec);
        c->svc->spec = c->old_spec;
        c->old_spec = NULL;
        c->svc->generation = c->old_generation;
        c->svc->updated_ms = c->old_updated_ms;
        vmm_ha_service_init(m, c->svc);
        restore_placements(m, c);
    }
    if (c->svc)
        c->svc->busy = NULL;
    evlog_emit(m->ev, "error", "service.apply_failed", svc_name, NULL, "%s", c->fail.msg);
    c->reply(c->rctx, NULL, &c->fail, NULL);
    ctx_free(c);
}

static void finish_change(struct apply_ctx *c)
{
    struct vmm *m = c->m;
    struct cgv_error err = {0};

    for (size_t i = 0; i < c->n_items; i++) {
        struct apply_item *it = &c->items[i];
        if (it->kind == AI_REMOVE) {
            if (it->rc < 0) {
                json_array_append_new(c->warnings,
                                      json_sprintf("removing %s failed: %s", it->vm->name,
                                                   it->err.msg));
                continue;
            }
            cgv_err_clear(&err);
            if (store_vm_delete(m->st, it->vm->name, &err) < 0)
                json_array_append_new(c->warnings,
                                      json_sprintf("%s removed, but %s", it->vm->name,
                                                   err.msg));
            evlog_emit(m->ev, "info", "vm.undefined", c->svc->name, it->vm->name,
                       "destroyed and undefined (scaled down)");
            vmm_vm_remove(m, it->vm);
            it->vm = NULL;
        } else if (it->kind == AI_REDEFINE) {
            if (it->rc < 0) {
                json_array_append_new(c->warnings,
                                      json_sprintf("redefining %s failed: %s", it->vm->name,
                                                   it->err.msg));
                continue;
            }
            if (it->vm->state == HV_ST_RUNNING || it->vm->state == HV_ST_PAUSED) {
                it->vm->restart_pending = true;
                cgv_err_clear(&err);
                if (vmm_vm_persist(m, it->vm, &err) < 0)
                    json_array_append_new(c->warnings, json_string(err.msg));
            }
        }
    }
    finish_apply_ok(c);
}

static void finish_delete(struct apply_ctx *c)
{
    struct vmm *m = c->m;
    struct cgv_error err = {0};
    json_t *names = json_array();
    size_t failed = 0;
    char first[512] = "";

    for (size_t i = 0; i < c->n_items; i++) {
        struct apply_item *it = &c->items[i];
        if (it->rc < 0) {
            if (!failed)
                snprintf(first, sizeof(first), "%s: %s", it->vm->name, it->err.msg);
            failed++;
            it->vm->busy = NULL;
            continue;
        }
        json_array_append_new(names, json_string(it->vm->name));
        cgv_err_clear(&err);
        if (store_vm_delete(m->st, it->vm->name, &err) < 0)
            log_error("deleting %s from the store: %s", it->vm->name, err.msg);
        vmm_vm_remove(m, it->vm);
        it->vm = NULL;
    }
    c->svc->busy = NULL;
    if (failed) {
        struct cgv_error e = {0};
        cgv_err(&e, CGV_E_LIBVIRT,
                "could not remove %zu VM%s of service %s (%s); the service stays, retry "
                "the delete",
                failed, failed == 1 ? "" : "s", c->svc->name, first);
        evlog_emit(m->ev, "error", "service.delete_failed", c->svc->name, NULL, "%s", e.msg);
        c->reply(c->rctx, NULL, &e, NULL);
        json_decref(names);
        ctx_free(c);
        return;
    }
    cgv_err_clear(&err);
    if (store_service_delete(m->st, c->svc->name, &err) < 0 && err.code != CGV_E_NOTFOUND) {
        c->reply(c->rctx, NULL, &err, NULL);
        json_decref(names);
        ctx_free(c);
        return;
    }
    evlog_emit(m->ev, "info", "service.deleted", c->svc->name, NULL,
               "deleted with %zu VM%s", json_array_size(names),
               json_array_size(names) == 1 ? "" : "s");
    {
        json_t *body = json_object();
        json_object_set_new(body, "service", json_string(c->svc->name));
        json_object_set_new(body, "result", json_string("deleted"));
        json_object_set_new(body, "vms", names);
        json_object_set_new(body, "duration_ms",
                            json_integer((cgv_mono_us() - c->t0_us + 500) / 1000));
        vmm_ha_service_free(m, c->svc);
        vmm_service_remove(m, c->svc);
        c->svc = NULL;
        c->reply(c->rctx, body, NULL, NULL);
    }
    ctx_free(c);
}

static void phase_done(struct apply_ctx *c)
{
    switch (c->phase) {
    case PH_CREATE: {
        struct apply_item *bad = NULL;
        for (size_t i = 0; i < c->n_items; i++) {
            if (c->items[i].kind == AI_CREATE && c->items[i].rc < 0) {
                bad = &c->items[i];
                break;
            }
        }
        if (bad) {
            c->fail = bad->err;
            cgv_err_prefix(&c->fail, "creating %s of service %s failed, rolled back",
                           bad->vm->name, c->svc->name);
            c->phase = PH_ROLLBACK;
            for (size_t i = 0; i < c->n_items; i++) {
                if (c->items[i].kind == AI_CREATE)
                    c->items[i].rollback = true;
            }
            submit_items(c, pick_rollback);
            return;
        }
        for (size_t i = 0; i < c->n_items; i++) {
            struct apply_item *it = &c->items[i];
            if (it->kind == AI_CREATE) {
                evlog_emit(c->m->ev, "info", "vm.started", c->svc->name, it->vm->name,
                           "defined and started (QEMU pid %d)", it->vm->pid);
                vmm_ha_created(it->vm);
            }
        }
        c->phase = PH_CHANGE;
        submit_items(c, pick_change);
        return;
    }
    case PH_ROLLBACK:
        finish_rollback(c);
        return;
    case PH_CHANGE:
        finish_change(c);
        return;
    case PH_DELETE:
        finish_delete(c);
        return;
    }
}

/* ---- validation against this host ----------------------------------------------- */

static void check_host(struct vmm *m, const struct spec_service *spec,
                       struct spec_issues *issues)
{
    char path[VMM_PATH_MAX], why[256];
    struct stat st;
    enum hv_accel accel;
    struct cgv_error err = {0};

    snprintf(path, sizeof(path), "%s/%s/vmlinuz", m->image_dir, spec->image);
    if (stat(path, &st) < 0) {
        spec_issue_add(issues, "image", spec->image_pos.line, spec->image_pos.column,
                       "no guest image '%s' on this host (%s: %s)", spec->image, path,
                       strerror(errno));
    } else {
        snprintf(path, sizeof(path), "%s/%s/initrd.img", m->image_dir, spec->image);
        if (stat(path, &st) < 0)
            spec_issue_add(issues, "image", spec->image_pos.line, spec->image_pos.column,
                           "guest image '%s' lacks %s", spec->image, path);
    }
    if (hv_accel_decide((enum hv_accel_req)spec->accel, &m->cfg.probe, &accel, why,
                        sizeof(why), &err) < 0)
        spec_issue_add(issues, "acceleration", spec->accel_pos.line, spec->accel_pos.column,
                       "%s", err.msg);

    for (size_t i = 0; i < spec->n_networks; i++) {
        const struct spec_network *n = &spec->networks[i];
        char p[64];

        if (strcmp(n->network, m->cfg.net.name) != 0) {
            snprintf(p, sizeof(p), "networks[%zu].network", i);
            spec_issue_add(issues, p, n->network_pos.line, n->network_pos.column,
                           "unknown network '%s' (this host has: %s)", n->network,
                           m->cfg.net.name);
            continue;
        }
        for (size_t k = 0; k < n->n_addresses; k++) {
            const struct spec_addr *a = &n->addresses[k];
            char *owner = NULL, vmname[VMM_VM_NAME_MAX + 1];

            snprintf(p, sizeof(p), "networks[%zu].addresses[%zu]", i, k);
            if (net_addr_check(&m->cfg.net, a->ip, why, sizeof(why)) < 0) {
                spec_issue_add(issues, p, a->line, a->column, "%s", why);
                continue;
            }
            snprintf(vmname, sizeof(vmname), "%s-%zu", spec->name, k);
            if (store_addr_owner(m->st, m->cfg.net.name, a->ip, &owner, NULL) == 0 && owner &&
                strcmp(owner, vmname) != 0) {
                /* Scaling may move an address between VMs of this service only
                 * if that VM is going away; keep it simple and strict. */
                spec_issue_add(issues, p, a->line, a->column, "%s is already used by VM %s",
                               a->ip, owner);
            }
            free(owner);
        }
    }
}

/* Is ip a virtual IP of a service other than `except` (or of spec)? */
static const char *vip_user(struct vmm *m, const char *ip, const char *except,
                            const struct spec_service *spec)
{
    for (struct vmm_service *s = m->services; s; s = s->next) {
        if (except && strcmp(s->name, except) == 0)
            continue;
        for (size_t k = 0; s->spec && k < s->spec->n_vips; k++) {
            if (strcmp(s->spec->vips[k].ip, ip) == 0)
                return s->name;
        }
    }
    for (size_t k = 0; spec && k < spec->n_vips; k++) {
        if (strcmp(spec->vips[k].ip, ip) == 0)
            return spec->name;
    }
    return NULL;
}

static void check_vips(struct vmm *m, const struct spec_service *spec,
                       struct spec_issues *issues)
{
    char why[256], p[64];

    for (size_t k = 0; k < spec->n_vips; k++) {
        const struct spec_addr *a = &spec->vips[k];
        const char *user;
        char *owner = NULL;

        snprintf(p, sizeof(p), "redundancy.virtual_ips[%zu]", k);
        if (net_addr_check(&m->cfg.net, a->ip, why, sizeof(why)) < 0) {
            spec_issue_add(issues, p, a->line, a->column, "%s", why);
            continue;
        }
        if (store_addr_owner(m->st, m->cfg.net.name, a->ip, &owner, NULL) == 0 && owner) {
            spec_issue_add(issues, p, a->line, a->column, "%s is already VM %s's address",
                           a->ip, owner);
            free(owner);
            continue;
        }
        if ((user = vip_user(m, a->ip, spec->name, NULL)))
            spec_issue_add(issues, p, a->line, a->column,
                           "%s is already a virtual IP of service %s", a->ip, user);
    }
    /* An instance address may not be another service's virtual IP. */
    for (size_t i = 0; i < spec->n_networks; i++) {
        for (size_t k = 0; k < spec->networks[i].n_addresses; k++) {
            const struct spec_addr *a = &spec->networks[i].addresses[k];
            const char *user = vip_user(m, a->ip, spec->name, NULL);
            if (user) {
                snprintf(p, sizeof(p), "networks[%zu].addresses[%zu]", i, k);
                spec_issue_add(issues, p, a->line, a->column,
                               "%s is a virtual IP of service %s", a->ip, user);
            }
        }
    }
}

/* ---- planning --------------------------------------------------------------------- */

static int alloc_pool_addr(struct vmm *m, const struct spec_service *spec,
                           const char *vmname, char out[24], struct cgv_error *err)
{
    for (uint32_t ip = m->cfg.net.pool_first; ip <= m->cfg.net.pool_last; ip++) {
        char s[16], *owner = NULL;

        if (ip == m->cfg.net.gateway)
            continue;
        net_fmt_ip(ip, s);
        if (vip_user(m, s, NULL, spec))
            continue; /* a virtual IP, of this service or another */
        if (store_addr_owner(m->st, m->cfg.net.name, s, &owner, err) < 0)
            return -1;
        if (owner) {
            free(owner);
            continue;
        }
        if (store_addr_claim(m->st, m->cfg.net.name, s, vmname, err) < 0)
            return -1;
        snprintf(out, 24, "%s/%u", s, m->cfg.net.prefix);
        return 0;
    }
    return cgv_err(err, CGV_E_CONFLICT, "address pool of network %s is exhausted",
                   m->cfg.net.name);
}

/* The addresses a VM of this spec at this index should have; claims them. */
static int plan_addrs(struct vmm *m, const struct spec_service *spec, struct vmm_vm *vm,
                      bool keep_existing, struct cgv_error *err)
{
    size_t n = spec->n_networks;

    for (size_t i = 0; i < n && i < SPEC_MAX_NETWORKS; i++) {
        const struct spec_network *sn = &spec->networks[i];
        char want[24];

        if (sn->n_addresses > (size_t)vm->index) {
            snprintf(want, sizeof(want), "%s/%u", sn->addresses[vm->index].ip,
                     m->cfg.net.prefix);
            if (store_addr_claim(m->st, m->cfg.net.name, sn->addresses[vm->index].ip,
                                 vm->name, err) < 0)
                return -1;
        } else if (keep_existing && i < vm->n_addrs) {
            continue; /* keeps its pool address */
        } else if (alloc_pool_addr(m, spec, vm->name, want, err) < 0) {
            return -1;
        }
        cgv_strlcpy(vm->addrs[i], want, sizeof(vm->addrs[i]));
    }
    vm->n_addrs = n;
    return 0;
}

static bool addrs_equal(const struct vmm_vm *vm, size_t n, char addrs[][24])
{
    if (vm->n_addrs != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(vm->addrs[i], addrs[i]) != 0)
            return false;
    }
    return true;
}

static void reply_invalid(vmm_reply_fn reply, void *ctx, const struct spec_issues *issues)
{
    struct cgv_error err = {0};
    size_t n = issues->n + issues->dropped;

    cgv_err(&err, CGV_E_INVALID, "invalid spec: %zu problem%s", n, n == 1 ? "" : "s");
    reply(ctx, NULL, &err, issues);
}

/* ---- deferral behind background snapshots ---------------------------------- */

/* Is svc busy only with HA's background work on its VMs (a snapshot, a
 * fence or a restart: each takes a moment, and after them an apply or
 * delete can run)? */
static bool busy_only_snapshots(struct vmm *m, struct vmm_service *svc)
{
    bool any = false;

    if (svc->busy)
        return false;
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        if (vm->svc != svc || !vm->busy)
            continue;
        if (strcmp(vm->busy, "snapshot") != 0 && strcmp(vm->busy, "recover") != 0)
            return false;
        any = true;
    }
    return any;
}

/* Queue an apply (text) or a delete of svc to run when that work ends.
 * Returns false (nothing queued) if one is queued already. */
static bool defer(struct vmm_service *svc, const char *text, size_t len, bool dry_run,
                  bool is_delete, vmm_reply_fn reply, void *rctx)
{
    if (svc->deferred.reply)
        return false;
    svc->deferred.text = NULL;
    if (text) {
        svc->deferred.text = cgv_malloc0(len + 1);
        memcpy(svc->deferred.text, text, len);
    }
    svc->deferred.len = len;
    svc->deferred.dry_run = dry_run;
    svc->deferred.is_delete = is_delete;
    svc->deferred.reply = reply;
    svc->deferred.ctx = rctx;
    log_debug("%s: %s deferred behind a snapshot", svc->name, is_delete ? "delete" : "apply");
    return true;
}

void vmm_apply_run_deferred(struct vmm *m, struct vmm_service *svc)
{
    char name[SPEC_NAME_MAX + 1], *text;
    size_t len;
    bool dry_run, is_delete;
    vmm_reply_fn reply = svc->deferred.reply;
    void *rctx = svc->deferred.ctx;

    if (!reply || svc->busy)
        return;
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->svc == svc && vm->busy)
            return;
    cgv_strlcpy(name, svc->name, sizeof(name));
    text = svc->deferred.text;
    len = svc->deferred.len;
    dry_run = svc->deferred.dry_run;
    is_delete = svc->deferred.is_delete;
    memset(&svc->deferred, 0, sizeof(svc->deferred));
    /* svc may be gone after either call. */
    if (is_delete)
        vmm_delete_service(m, name, reply, rctx);
    else
        vmm_apply(m, text, len, dry_run, reply, rctx);
    free(text);
}

void vmm_apply(struct vmm *m, const char *text, size_t len, bool dry_run,
               vmm_reply_fn reply, void *rctx)
{
    struct spec_issues *issues = cgv_malloc0(sizeof(*issues));
    struct spec_service *spec = NULL;
    struct vmm_service *svc;
    struct apply_ctx *c = NULL;
    struct cgv_error err = {0};
    json_t *j;
    char *spec_json = NULL;
    size_t n_items = 0;
    bool template_changed = false;

    if (spec_parse(text, len, &spec, issues) < 0) {
        reply_invalid(reply, rctx, issues);
        goto cleanup;
    }
    check_host(m, spec, issues);
    check_vips(m, spec, issues);
    if (issues->n + issues->dropped > 0) {
        reply_invalid(reply, rctx, issues);
        goto cleanup;
    }
    svc = vmm_find_service(m, spec->name);
    if (svc && busy_only_snapshots(m, svc) && defer(svc, text, len, dry_run, false, reply, rctx))
        goto cleanup;
    if (svc) {
        if (svc->busy) {
            cgv_err(&err, CGV_E_CONFLICT, "service %s is busy: %s in progress", svc->name,
                    svc->busy);
            vmm_reply_error(reply, rctx, &err);
            goto cleanup;
        }
        for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
            if (vm->svc == svc && vm->busy) {
                cgv_err(&err, CGV_E_CONFLICT, "service %s is busy: %s of %s in progress",
                        svc->name, vm->busy, vm->name);
                vmm_reply_error(reply, rctx, &err);
                goto cleanup;
            }
        }
        size_t have = 0;
        for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
            have += vm->svc == svc;
        /* Unchanged only if every VM the spec asks for exists, too. */
        if (spec_equal(svc->spec, spec) && have == svc->spec->instances) {
            json_t *body = json_object();
            json_object_set_new(body, "service", json_string(svc->name));
            json_object_set_new(body, "result", json_string(dry_run ? "valid" : "unchanged"));
            json_object_set_new(body, "generation", json_integer(svc->generation));
            json_object_set_new(body, "duration_ms", json_integer(0));
            json_object_set_new(body, "warnings", json_array());
            reply(rctx, body, NULL, NULL);
            goto cleanup;
        }
    }
    if (dry_run) {
        json_t *body = json_object();
        json_object_set_new(body, "service", json_string(spec->name));
        json_object_set_new(body, "result", json_string("valid"));
        json_object_set_new(body, "warnings", json_array());
        reply(rctx, body, NULL, NULL);
        goto cleanup;
    }
    if (!m->connected || !m->adopted_once) {
        cgv_err(&err, CGV_E_UNAVAIL, "%s; nothing changed, try again",
                m->connected ? "cgvd is starting (adopting the running VMs)"
                             : "libvirt is not connected");
        vmm_reply_error(reply, rctx, &err);
        goto cleanup;
    }

    c = cgv_malloc0(sizeof(*c));
    c->m = m;
    c->reply = reply;
    c->rctx = rctx;
    c->t0_us = cgv_mono_us();
    c->warnings = json_array();
    c->phase = PH_CREATE;
    c->items = cgv_malloc0(sizeof(*c->items) * (SPEC_MAX_INSTANCES * 2 + 1));

    j = spec_to_json(spec);
    spec_json = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);

    if (store_begin(m->st, &err) < 0) {
        vmm_reply_error(reply, rctx, &err);
        goto cleanup;
    }
    if (!svc) {
        svc = vmm_service_add(m, spec->name);
        svc->created_ms = cgv_wall_ms();
        svc->generation = 0;
        c->created = true;
    } else {
        c->old_spec = svc->spec;
        svc->spec = NULL;
        c->old_generation = svc->generation;
        c->old_updated_ms = svc->updated_ms;
    }
    c->svc = svc;
    {
        struct store_service rec = {.name = svc->name,
                                    .spec_json = spec_json,
                                    .generation = svc->generation + 1,
                                    .created_ms = svc->created_ms,
                                    .updated_ms = cgv_wall_ms()};
        if (store_service_put(m->st, &rec, &err) < 0)
            goto store_failed;
        svc->generation = rec.generation;
        svc->updated_ms = rec.updated_ms;
        svc->spec = spec;
        spec = NULL;
        vmm_ha_service_init(m, svc);
    }
    if (c->old_spec) {
        /* Same template with another instance count? Compare a shallow copy. */
        struct spec_service same = *svc->spec;
        same.instances = c->old_spec->instances;
        template_changed = !spec_equal(c->old_spec, &same);
    }

    /* Existing VMs: removed (index beyond the new count) or changed. */
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        struct apply_item *it;
        if (vm->svc != svc)
            continue;
        it = &c->items[n_items];
        it->ctx = c;
        it->vm = vm;
        if ((unsigned)vm->index >= svc->spec->instances) {
            it->kind = AI_REMOVE;
            item_prepare(m, it);
            vm->busy = "apply";
            n_items++;
            continue;
        }
        /* Template change (anything but the count) or new addresses: new XML. */
        it->old_n_addrs = vm->n_addrs;
        memcpy(it->old_addrs, vm->addrs, sizeof(it->old_addrs));
        if (store_addr_release_vm(m->st, vm->name, &err) < 0 ||
            plan_addrs(m, svc->spec, vm, true, &err) < 0)
            goto store_failed;
        /* Pool addresses kept: claim them again. */
        for (size_t k = 0; k < vm->n_addrs; k++) {
            char ip[24], *slash;
            cgv_strlcpy(ip, vm->addrs[k], sizeof(ip));
            if ((slash = strchr(ip, '/')))
                *slash = '\0';
            if (store_addr_claim(m->st, m->cfg.net.name, ip, vm->name, &err) < 0)
                goto store_failed;
        }
        if (vmm_vm_persist(m, vm, &err) < 0)
            goto store_failed;
        if (!template_changed && addrs_equal(vm, it->old_n_addrs, it->old_addrs))
            continue; /* the slot is reused by the next VM */
        it->kind = AI_REDEFINE;
        if (template_changed && m->place) {
            /* Place it again for the new template; the old placement comes
             * back if anything in this apply fails. */
            if (vm->placed) {
                it->old_alloc = cgv_malloc0(sizeof(*it->old_alloc));
                *it->old_alloc = vm->alloc;
            }
            vmm_place_release(m, vm);
            it->replaced = true;
            n_items++; /* so store_failed restores it */
            if (vmm_place_alloc(m, vm, &err) < 0)
                goto store_failed;
            n_items--;
            for (unsigned k = 0; k < vm->alloc.vcpus && k < PLACE_MAX_VCPUS; k++) {
                char buf[4096];
                struct place_cpuset set;
                vmm_place_vcpu_set(m, vm, k, &set);
                place_cpuset_format(&set, buf, sizeof(buf));
                it->pins[k] = cgv_strdup(buf);
            }
            {
                char buf[4096];
                place_cpuset_format(&vm->alloc.emulator, buf, sizeof(buf));
                it->emu_pin = cgv_strdup(buf);
            }
            it->live_vcpus = vmm_vm_vcpus(vm);
        }
        item_prepare(m, it);
        if (vmm_vm_build_xml(m, vm, &it->xml, &err) < 0)
            goto store_failed;
        vm->busy = "apply";
        n_items++;
    }
    /* New VMs. */
    for (unsigned idx = 0; idx < svc->spec->instances; idx++) {
        char vmname[VMM_VM_NAME_MAX + 1], uuid[37];
        struct apply_item *it;
        struct vmm_vm *vm;

        snprintf(vmname, sizeof(vmname), "%s-%u", svc->name, idx);
        if (vmm_find_vm(m, vmname))
            continue;
        vmm_gen_uuid(uuid);
        vm = vmm_vm_add(m, svc, (int)idx, uuid);
        vm->busy = "apply";
        it = &c->items[n_items++];
        it->ctx = c;
        it->vm = vm;
        it->kind = AI_CREATE;
        /* Address claims refer to the VM's row: store it first. */
        if (vmm_vm_persist(m, vm, &err) < 0 || plan_addrs(m, svc->spec, vm, false, &err) < 0 ||
            vmm_vm_persist(m, vm, &err) < 0)
            goto store_failed;
        /* Admission: its cores and memory, or nothing changes. */
        if (vmm_place_alloc(m, vm, &err) < 0)
            goto store_failed;
        item_prepare(m, it);
        if (vmm_vm_build_xml(m, vm, &it->xml, &err) < 0)
            goto store_failed;
    }
    c->n_items = n_items;
    if (store_commit(m->st, &err) < 0)
        goto store_failed;

    svc->busy = "apply";
    submit_items(c, pick_create);
    c = NULL;
    goto cleanup;

store_failed:
    /* Nothing reached libvirt yet: undo the store and the model. */
    store_rollback(m->st);
    for (size_t i = 0; i < n_items; i++) {
        struct apply_item *it = &c->items[i];
        if (it->kind == AI_CREATE) {
            vmm_vm_remove(m, it->vm);
        } else {
            it->vm->busy = NULL;
            if (it->kind == AI_REDEFINE) {
                it->vm->n_addrs = it->old_n_addrs;
                memcpy(it->vm->addrs, it->old_addrs, sizeof(it->old_addrs));
            }
        }
    }
    if (c->created) {
        vmm_service_remove(m, svc);
    } else {
        spec_free(svc->spec);
        svc->spec = c->old_spec;
        c->old_spec = NULL;
        svc->generation = c->old_generation;
        svc->updated_ms = c->old_updated_ms;
        if (svc->spec)
            vmm_ha_service_init(m, svc);
        c->n_items = n_items;
        restore_placements(m, c);
    }
    cgv_err_prefix(&err, "applying %s: nothing changed", c->created ? "a new service" : svc->name);
    vmm_reply_error(reply, rctx, &err);
    c->n_items = n_items;

cleanup:
    if (c)
        ctx_free(c);
    free(spec_json);
    spec_free(spec);
    free(issues);
}

void vmm_delete_service(struct vmm *m, const char *name, vmm_reply_fn reply, void *rctx)
{
    struct vmm_service *svc = vmm_find_service(m, name);
    struct cgv_error err = {0};
    struct apply_ctx *c;
    size_t n = 0;

    if (!svc) {
        cgv_err(&err, CGV_E_NOTFOUND, "no service named '%s'", name);
        vmm_reply_error(reply, rctx, &err);
        return;
    }
    if (busy_only_snapshots(m, svc) && defer(svc, NULL, 0, false, true, reply, rctx))
        return;
    if (svc->busy) {
        cgv_err(&err, CGV_E_CONFLICT, "service %s is busy: %s in progress", name, svc->busy);
        vmm_reply_error(reply, rctx, &err);
        return;
    }
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        if (vm->svc != svc)
            continue;
        if (vm->busy) {
            cgv_err(&err, CGV_E_CONFLICT, "service %s is busy: %s of %s in progress", name,
                    vm->busy, vm->name);
            vmm_reply_error(reply, rctx, &err);
            return;
        }
        n++;
    }
    if (n > 0 && !m->connected) {
        cgv_err(&err, CGV_E_UNAVAIL, "libvirt is not connected; nothing changed, try again");
        vmm_reply_error(reply, rctx, &err);
        return;
    }
    c = cgv_malloc0(sizeof(*c));
    c->m = m;
    c->reply = reply;
    c->rctx = rctx;
    c->t0_us = cgv_mono_us();
    c->svc = svc;
    c->phase = PH_DELETE;
    c->warnings = json_array();
    c->items = cgv_malloc0(sizeof(*c->items) * (n ? n : 1));
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        struct apply_item *it;
        if (vm->svc != svc)
            continue;
        it = &c->items[c->n_items++];
        it->ctx = c;
        it->vm = vm;
        it->kind = AI_REMOVE;
        item_prepare(m, it);
        vm->busy = "delete";
    }
    svc->busy = "delete";
    submit_items(c, pick_change);
}
