/* vmm_place.c — CPU-core and NUMA placement of this host's VMs (the policy
 * is src/place; this file feeds it and carries out what it decides).
 *
 * The host's topology comes from libvirt's capabilities (sysfs if libvirt
 * cannot tell). Every VM holds an allocation from the moment apply creates
 * it until it is deleted: dedicated cores are reserved for a stopped VM too,
 * so starting it (or a standby taking over) never finds the host short.
 * Allocations are persisted ("place.vm.<vm>" in the store) and re-adopted
 * exactly after a cgvd restart. When the shared pool changes (a dedicated
 * VM came or went), running floating VMs are re-pinned live.
 */
#include "vmm_priv.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgv_log.h"

#define LOG_MODULE "place"

static json_t *cpuset_json(const struct place_cpuset *s)
{
    char buf[4096];

    place_cpuset_format(s, buf, sizeof(buf));
    return json_string(buf);
}

static int cpuset_load(const json_t *v, struct place_cpuset *out)
{
    place_cpuset_clear(out);
    if (!json_is_string(v))
        return -1;
    return place_cpuset_parse(json_string_value(v), out, NULL);
}

/* The request a VM makes, from its service's spec and its overrides. */
void vmm_place_request(const struct vmm_vm *vm, struct place_request *r)
{
    const struct spec_service *spec = vm->svc->spec;
    const struct spec_cpu *cpu = &spec->cpu;

    memset(r, 0, sizeof(*r));
    cgv_strlcpy(r->vm, vm->name, sizeof(r->vm));
    r->vcpus = vmm_vm_max_vcpus(vm);
    r->memory_mib = vmm_vm_memory_mib(vm);
    r->numa = cpu->numa == SPEC_NUMA_STRICT ? PLACE_NUMA_STRICT : PLACE_NUMA_PREFER;
    r->realtime = cpu->realtime;
    if (vm->ovr.n_pins) {
        /* The operator pinned it by hand (cgv vm set --cpus). */
        r->policy = PLACE_PINNED;
        r->n_pinned = vm->ovr.n_pins;
        memcpy(r->pinned, vm->ovr.pins, sizeof(unsigned) * vm->ovr.n_pins);
        return;
    }
    switch (cpu->policy) {
    case SPEC_CPU_FLOATING: r->policy = PLACE_FLOATING; break;
    case SPEC_CPU_DEDICATED: r->policy = PLACE_DEDICATED; break;
    case SPEC_CPU_SHARED_GROUP: r->policy = PLACE_SHARED_GROUP; break;
    case SPEC_CPU_PINNED: r->policy = PLACE_PINNED; break;
    }
    r->isolate_smt = cpu->isolate_smt;
    cgv_strlcpy(r->group, cpu->group, sizeof(r->group));
    r->group_cores = cpu->group_cores ? cpu->group_cores : 1;
    r->n_pinned = cpu->n_pinned;
    for (size_t i = 0; i < cpu->n_pinned; i++)
        r->pinned[i] = cpu->pinned[i];
}

void vmm_place_persist(struct vmm *m, struct vmm_vm *vm)
{
    char key[96], *text;
    json_t *o, *pins, *mem;
    struct cgv_error err = {0};

    snprintf(key, sizeof(key), "place.vm.%s", vm->name);
    if (!vm->placed) {
        if (store_meta_set(m->st, key, NULL, &err) < 0)
            log_warn("%s: %s", key, err.msg);
        return;
    }
    o = json_object();
    pins = json_array();
    mem = json_array();
    for (unsigned i = 0; i < vm->alloc.vcpus; i++)
        json_array_append_new(pins, cpuset_json(&vm->alloc.vcpu[i]));
    for (unsigned n = 0; n < PLACE_MAX_NODES; n++)
        json_array_append_new(mem, json_integer((json_int_t)vm->alloc.node_memory_mib[n]));
    json_object_set_new(o, "vcpus", pins);
    json_object_set_new(o, "emulator", cpuset_json(&vm->alloc.emulator));
    json_object_set_new(o, "node", json_integer(vm->alloc.node));
    json_object_set_new(o, "nodes", cpuset_json(&vm->alloc.nodes));
    json_object_set_new(o, "node_memory_mib", mem);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (store_meta_set(m->st, key, text, &err) < 0)
        log_error("saving the placement of %s: %s", vm->name, err.msg);
    free(text);
}

static int load(struct vmm *m, struct vmm_vm *vm, struct place_result *res)
{
    char key[96], *text = NULL;
    json_t *o, *v;
    size_t i;
    int ret = -1;

    snprintf(key, sizeof(key), "place.vm.%s", vm->name);
    if (store_meta_get(m->st, key, &text, NULL) < 0 || !text)
        return -1;
    o = json_loads(text, 0, NULL);
    free(text);
    if (!json_is_object(o))
        goto cleanup;
    memset(res, 0, sizeof(*res));
    json_array_foreach(json_object_get(o, "vcpus"), i, v)
    {
        if (i >= PLACE_MAX_VCPUS || cpuset_load(v, &res->vcpu[i]) < 0)
            goto cleanup;
        res->vcpus = (unsigned)i + 1;
    }
    if (cpuset_load(json_object_get(o, "emulator"), &res->emulator) < 0 ||
        cpuset_load(json_object_get(o, "nodes"), &res->nodes) < 0)
        goto cleanup;
    res->node = (int)json_integer_value(json_object_get(o, "node"));
    json_array_foreach(json_object_get(o, "node_memory_mib"), i, v)
    {
        if (i < PLACE_MAX_NODES)
            res->node_memory_mib[i] = (uint64_t)json_integer_value(v);
    }
    ret = 0;

cleanup:
    json_decref(o);
    return ret;
}

/* Where vCPU i of vm may run. On a small host (fewer than 4 CPUs, no
 * explicit --housekeeping-cpus) floating vCPUs may also use the
 * housekeeping CPUs: confining every floating guest to what is left would
 * cost more than it protects. */
void vmm_place_vcpu_set(const struct vmm *m, const struct vmm_vm *vm, unsigned i,
                        struct place_cpuset *out)
{
    *out = vm->alloc.vcpu[i];
    if (m->hk_shared && vm->svc->spec->cpu.policy == SPEC_CPU_FLOATING && !vm->ovr.n_pins) {
        for (size_t w = 0; w < CGV_ARRAY_LEN(out->bits); w++)
            out->bits[w] |= vm->alloc.emulator.bits[w];
    }
}

/* ---- re-pinning floating VMs when the pool changes ------------------------------- */

struct repin_job {
    struct hv *hv;
    char domain[128];
    char name[VMM_VM_NAME_MAX + 1];
    unsigned n;
    char cpus[PLACE_MAX_VCPUS][512];
    char emulator[512];
    struct cgv_error err;
    int rc;
};

static void repin_work(void *arg)
{
    struct repin_job *j = arg;

    j->rc = 0;
    for (unsigned i = 0; i < j->n && j->rc == 0; i++) {
        if (j->cpus[i][0])
            j->rc = hv_dom_pin(j->hv, j->domain, (int)i, j->cpus[i], true, true, &j->err);
    }
    if (j->rc == 0 && j->emulator[0])
        j->rc = hv_dom_pin(j->hv, j->domain, -1, j->emulator, true, true, &j->err);
}

static void repin_done(void *arg)
{
    struct repin_job *j = arg;

    if (j->rc < 0)
        log_warn("re-pinning %s: %s", j->name, j->err.msg);
    else
        log_debug("re-pinned %s to the new shared pool", j->name);
    free(j);
}

static void repin(struct vmm *m, struct vmm_vm *vm)
{
    struct repin_job *j;
    unsigned cur = vm->kpi.valid && vm->kpi.cur.vcpus ? vm->kpi.cur.vcpus : vmm_vm_vcpus(vm);

    if (vm->state != HV_ST_RUNNING && vm->state != HV_ST_PAUSED)
        return;
    j = cgv_malloc0(sizeof(*j));
    j->hv = m->hv;
    cgv_strlcpy(j->domain, vm->domain, sizeof(j->domain));
    cgv_strlcpy(j->name, vm->name, sizeof(j->name));
    j->n = cur < vm->alloc.vcpus ? cur : vm->alloc.vcpus;
    for (unsigned i = 0; i < j->n; i++) {
        struct place_cpuset s;
        vmm_place_vcpu_set(m, vm, i, &s);
        place_cpuset_format(&s, j->cpus[i], sizeof(j->cpus[i]));
    }
    place_cpuset_format(&vm->alloc.emulator, j->emulator, sizeof(j->emulator));
    jobs_submit(m->jobs, repin_work, repin_done, j);
}

/* A running VM adopted after a restart: do its vCPU threads run where they
 * should (read from the kernel)? Re-pin those that do not. */
void vmm_place_check_pins(struct vmm *m, struct vmm_vm *vm)
{
    char **aff = NULL;
    size_t n = 0;
    bool wrong = false;

    if (!vm->placed || vm->pid <= 0)
        return;
    if (hv_vcpu_affinity(vm->pid, &aff, &n, NULL) < 0)
        return;
    for (size_t i = 0; i < n && i < vm->alloc.vcpus; i++) {
        struct place_cpuset want, have;
        vmm_place_vcpu_set(m, vm, (unsigned)i, &want);
        if (!aff[i] || place_cpuset_parse(aff[i], &have, NULL) < 0 ||
            memcmp(&want, &have, sizeof(want)) != 0)
            wrong = true;
    }
    for (size_t i = 0; i < n; i++)
        free(aff[i]);
    free(aff);
    if (wrong) {
        log_info("%s: vCPU threads are not where its placement says; re-pinning", vm->name);
        repin(m, vm);
    }
}

/* After any change: floating VMs follow the pool. */
static void follow_pool(struct vmm *m)
{
    uint64_t gen;

    if (!m->place)
        return;
    gen = place_host_pool_gen(m->place);
    if (gen == m->pool_gen)
        return;
    m->pool_gen = gen;
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        struct place_result now;
        if (!vm->placed || place_host_result(m->place, vm->name, &now, NULL) < 0)
            continue;
        if (memcmp(&now.vcpu, &vm->alloc.vcpu, sizeof(now.vcpu)) != 0 ||
            memcmp(&now.emulator, &vm->alloc.emulator, sizeof(now.emulator)) != 0) {
            vm->alloc = now;
            vmm_place_persist(m, vm);
            repin(m, vm);
        }
    }
}

/* ---- public ---------------------------------------------------------------------- */

void vmm_place_init(struct vmm *m)
{
    struct place_topology *topo = cgv_malloc0(sizeof(*topo));
    struct place_cpuset hk, *hkp = NULL;
    struct cgv_error err = {0};
    char *caps = m->connected ? hv_capabilities(m->hv, &err) : NULL;
    const char *from = "libvirt capabilities";
    char buf[256];

    if (!caps || place_topology_from_caps(caps, topo, &err) < 0) {
        cgv_err_clear(&err);
        from = "sysfs";
        if (place_topology_from_sysfs("/sys", topo, &err) < 0) {
            log_error("cannot read the host topology (%s): CPU placement is off", err.msg);
            free(caps);
            free(topo);
            return;
        }
    }
    free(caps);
    if (m->cfg.housekeeping && m->cfg.housekeeping[0]) {
        if (place_cpuset_parse(m->cfg.housekeeping, &hk, &err) < 0)
            log_error("--housekeeping-cpus %s: %s; using the default", m->cfg.housekeeping,
                      err.msg);
        else
            hkp = &hk;
    }
    m->place = place_host_new(topo, hkp);
    if (!m->place && hkp) {
        log_error("--housekeeping-cpus %s leaves no usable CPU on this host; using the default",
                  m->cfg.housekeeping);
        m->place = place_host_new(topo, NULL);
        hkp = NULL;
    }
    if (!m->place) {
        log_error("CPU placement is off: the host topology cannot be used");
        free(topo);
        return;
    }
    m->topo = topo;
    m->hk_shared = !hkp && topo->n_cpus < 4;
    if (m->place && m->hk_shared)
        place_host_set_floating_on_hk(m->place, true);
    {
        struct place_free f;
        place_host_free_info(m->place, &f);
        place_cpuset_format(&f.housekeeping, buf, sizeof(buf));
    }
    log_info("topology from %s: %u CPUs, %u NUMA node%s; housekeeping CPUs %s%s", from,
             topo->n_cpus, topo->n_nodes, topo->n_nodes == 1 ? "" : "s", buf,
             m->hk_shared ? " (a small host: floating vCPUs may use them too)" : "");
    m->pool_gen = place_host_pool_gen(m->place);
}

void vmm_place_free(struct vmm *m)
{
    place_host_free(m->place);
    m->place = NULL;
    free(m->topo);
    m->topo = NULL;
}

int vmm_place_alloc(struct vmm *m, struct vmm_vm *vm, struct cgv_error *err)
{
    struct place_request *req;
    int rc;

    if (!m->place || vm->placed)
        return 0;
    req = cgv_malloc0(sizeof(*req));
    vmm_place_request(vm, req);
    rc = place_alloc(m->place, req, &vm->alloc, err);
    free(req);
    if (rc < 0) {
        cgv_err_prefix(err, "placing %s (%s)", vm->name,
                       spec_cpu_policy_name(vm->svc->spec->cpu.policy));
        return -1;
    }
    vm->placed = true;
    vmm_place_persist(m, vm);
    follow_pool(m);
    return 0;
}

void vmm_place_release(struct vmm *m, struct vmm_vm *vm)
{
    if (!m->place || !vm->placed)
        return;
    place_release(m->place, vm->name);
    vm->placed = false;
    if (!m->stopping) {
        vmm_place_persist(m, vm);
        follow_pool(m);
    }
}

void vmm_place_adopt_all(struct vmm *m)
{
    struct place_request *req;

    if (!m->place)
        return;
    req = cgv_malloc0(sizeof(*req));
    /* Exact adoption first (the order does not matter), then fresh
     * allocations for VMs that had none (made before placement existed or
     * whose stored one no longer fits). */
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        struct place_result res;
        struct cgv_error err = {0};
        if (load(m, vm, &res) < 0)
            continue;
        vmm_place_request(vm, req);
        if (place_adopt(m->place, req, &res, &err) < 0) {
            log_error("%s: its stored placement no longer fits (%s); placing it again",
                      vm->name, err.msg);
            continue;
        }
        vm->alloc = res;
        vm->placed = true;
    }
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        struct cgv_error err = {0};
        if (!vm->placed && vmm_place_alloc(m, vm, &err) < 0)
            evlog_emit(m->ev, "error", "place.failed", vm->svc->name, vm->name, "%s",
                       err.msg);
    }
    free(req);
    m->pool_gen = ~0ULL;
    follow_pool(m);
}

static char *cpuset_str(const struct place_cpuset *s)
{
    char buf[4096];

    place_cpuset_format(s, buf, sizeof(buf));
    return cgv_strdup(buf);
}

void vmm_place_strings_free(struct vmm_vm *vm)
{
    for (unsigned i = 0; i < PLACE_MAX_VCPUS; i++) {
        free(vm->pin_strs[i]);
        vm->pin_strs[i] = NULL;
    }
    free(vm->emu_str);
    free(vm->nodes_str);
    vm->emu_str = vm->nodes_str = NULL;
}

/* Fill the CPU parts of a domain definition; the strings are the VM's (valid
 * until the next call). */
void vmm_place_fill_def(struct vmm *m, struct vmm_vm *vm, struct hv_domain_def *d)
{
    d->numa = false;
    d->numa_node = -1;
    vmm_place_strings_free(vm);
    if (!vm->placed)
        return;
    for (unsigned i = 0; i < vm->alloc.vcpus && i < PLACE_MAX_VCPUS; i++) {
        struct place_cpuset s;
        vmm_place_vcpu_set(m, vm, i, &s);
        vm->pin_strs[i] = cpuset_str(&s);
    }
    d->vcpu_pins = (const char *const *)vm->pin_strs;
    vm->emu_str = cpuset_str(&vm->alloc.emulator);
    d->emulator_pin = vm->emu_str;
    d->numa = true;
    d->numa_strict = vm->svc->spec->cpu.numa == SPEC_NUMA_STRICT;
    d->numa_node = vm->alloc.node;
    if (vm->alloc.node < 0) {
        vm->nodes_str = cpuset_str(&vm->alloc.nodes);
        d->numa_nodeset = vm->nodes_str;
    }
}

json_t *vmm_place_vm_json(struct vmm_vm *vm)
{
    json_t *o = json_object(), *pins = json_array();
    char buf[4096];

    json_object_set_new(o, "policy",
                        json_string(vm->ovr.n_pins ? "pinned (set by operator)"
                                                   : spec_cpu_policy_name(vm->svc->spec->cpu.policy)));
    if (!vm->placed) {
        json_object_set_new(o, "placed", json_false());
        json_decref(pins);
        return o;
    }
    for (unsigned i = 0; i < vm->alloc.vcpus; i++) {
        struct place_cpuset s;
        vmm_place_vcpu_set(vm->m, vm, i, &s);
        place_cpuset_format(&s, buf, sizeof(buf));
        json_array_append_new(pins, json_string(buf));
    }
    json_object_set_new(o, "placed", json_true());
    json_object_set_new(o, "vcpu_pins", pins);
    place_cpuset_format(&vm->alloc.emulator, buf, sizeof(buf));
    json_object_set_new(o, "emulator_pin", json_string(buf));
    json_object_set_new(o, "numa_node", vm->alloc.node >= 0 ? json_integer(vm->alloc.node)
                                                            : json_null());
    json_object_set_new(o, "realtime", json_boolean(vm->svc->spec->cpu.realtime));
    return o;
}

json_t *vmm_place_host_json(struct vmm *m)
{
    struct place_free f;
    json_t *o, *nodes;
    char buf[4096];

    if (!m->place)
        return json_null();
    place_host_free_info(m->place, &f);
    o = json_object();
    nodes = json_array();
    json_object_set_new(o, "cpus", json_integer(m->topo->n_cpus));
    place_cpuset_format(&f.housekeeping, buf, sizeof(buf));
    json_object_set_new(o, "housekeeping", json_string(buf));
    place_cpuset_format(&f.pool, buf, sizeof(buf));
    json_object_set_new(o, "shared_pool", json_string(buf));
    for (unsigned n = 0; n < f.n_nodes; n++)
        json_array_append_new(nodes, json_pack("{s:i,s:i,s:I}", "node", (int)n,
                                               "free_cores", (int)f.free_cores[n],
                                               "free_memory_mib",
                                               (json_int_t)(f.free_memory_mib[n] == UINT64_MAX
                                                                ? -1
                                                                : (json_int_t)f.free_memory_mib[n])));
    json_object_set_new(o, "nodes", nodes);
    return o;
}
