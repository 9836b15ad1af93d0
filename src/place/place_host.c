/* place_host.c — the CPU-core and NUMA allocator of one host: housekeeping,
 * dedicated cores, shared groups, the shared pool, pinned CPUs, memory per
 * node; allocation, release, adoption after a restart. See place.h. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place_int.h"

/* ---- small helpers ----------------------------------------------------- */

struct sbuf {
    char text[768];
    size_t len;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) CGV_PRINTF(2, 3);
static void sb_add(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->len >= sizeof(b->text) - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->text + b->len, sizeof(b->text) - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n;
    if (b->len > sizeof(b->text) - 1)
        b->len = sizeof(b->text) - 1;
}

static void nodes_format(uint32_t mask, char *buf, size_t cap)
{
    struct place_cpuset s;

    place_cpuset_clear(&s);
    s.bits[0] = mask;
    place_cpuset_format(&s, buf, cap);
}

static unsigned popcount32(uint32_t v)
{
    return (unsigned)__builtin_popcount(v);
}

static uint64_t mem_free(const struct place_host *h, unsigned n)
{
    return h->memory_unknown ? UINT64_MAX : h->free_mem[n];
}

static const char *plural(unsigned n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* ---- host creation ------------------------------------------------------ */

static void core_refresh(struct place_host *h, unsigned k)
{
    const struct place_core *c = &h->cores[k];
    bool was = place_bit(h->core_free_bits, k), now = true;

    for (unsigned t = 0; t < c->n; t++) {
        unsigned cpu = h->core_cpus[c->first + t];
        if (h->role[cpu] != PR_FREE || h->pins[cpu] != 0)
            now = false;
    }
    if (was == now)
        return;
    if (now) {
        place_bit_set(h->core_free_bits, k);
        h->free_cores[c->node]++;
        h->free_threads[c->node] += c->n;
        h->free_cores_total++;
    } else {
        place_bit_clr(h->core_free_bits, k);
        h->free_cores[c->node]--;
        h->free_threads[c->node] -= c->n;
        h->free_cores_total--;
    }
}

static void set_role(struct place_host *h, unsigned cpu, enum place_role role, int32_t owner)
{
    enum place_role old = (enum place_role)h->role[cpu];

    if (old == PR_FREE && role != PR_FREE) {
        place_bit_clr(h->pool.bits, cpu);
        h->pool_cpus[h->cpu_node[cpu]]--;
        h->pool_total--;
        h->pool_gen++;
    } else if (old != PR_FREE && role == PR_FREE) {
        place_bit_set(h->pool.bits, cpu);
        h->pool_cpus[h->cpu_node[cpu]]++;
        h->pool_total++;
        h->pool_gen++;
    }
    h->role[cpu] = (uint8_t)role;
    h->owner[cpu] = owner;
}

struct place_host *place_host_new(const struct place_topology *topo,
                                  const struct place_cpuset *housekeeping)
{
    struct place_host *h;
    unsigned n_nodes, last = 0;
    unsigned first_socket = UINT32_MAX, first_core = UINT32_MAX;
    unsigned *order = NULL;

    if (!topo || topo->n_cpus == 0 || topo->n_cpus > PLACE_MAX_CPUS)
        return NULL;
    n_nodes = topo->n_nodes;
    for (unsigned i = 0; i < topo->n_cpus; i++) {
        const struct place_cpu *c = &topo->cpus[i];
        if (c->id >= PLACE_MAX_CPUS || c->node >= PLACE_MAX_NODES ||
            (i > 0 && c->id <= last))
            return NULL; /* not sorted, duplicate or out of range */
        last = c->id;
        if (c->node + 1 > n_nodes)
            n_nodes = c->node + 1;
    }
    if (n_nodes > PLACE_MAX_NODES)
        return NULL;

    h = cgv_malloc0(sizeof(*h));
    h->n_nodes = n_nodes;
    h->n_cpu_ids = last + 1;
    h->memory_unknown = topo->memory_unknown;
    for (unsigned n = 0; n < n_nodes; n++) {
        h->node_mem[n] = topo->node_memory_mib[n];
        h->free_mem[n] = topo->node_memory_mib[n];
    }
    h->cores = cgv_malloc0(sizeof(*h->cores) * topo->n_cpus);
    h->core_cpus = cgv_malloc0(sizeof(*h->core_cpus) * topo->n_cpus);

    /* Cores: CPUs with the same (socket, core), ordered by their first CPU. */
    order = cgv_malloc0(sizeof(*order) * topo->n_cpus);
    {
        unsigned *core_of = cgv_malloc0(sizeof(*core_of) * topo->n_cpus);
        unsigned *count = cgv_malloc0(sizeof(*count) * topo->n_cpus);
        unsigned pos = 0;

        for (unsigned i = 0; i < topo->n_cpus; i++) {
            const struct place_cpu *c = &topo->cpus[i];
            unsigned k;
            for (k = 0; k < h->n_cores; k++) {
                const struct place_cpu *f = &topo->cpus[order[k]];
                if (f->socket == c->socket && f->core == c->core)
                    break;
            }
            if (k == h->n_cores)
                order[h->n_cores++] = i; /* first CPU of a new core */
            core_of[i] = k;
            count[k]++;
        }
        for (unsigned k = 0; k < h->n_cores; k++) {
            h->cores[k].first = (uint16_t)pos;
            h->cores[k].node = (uint8_t)topo->cpus[order[k]].node;
            pos += count[k];
        }
        for (unsigned i = 0; i < topo->n_cpus; i++) {
            struct place_core *k = &h->cores[core_of[i]];
            h->core_cpus[k->first + k->n] = (uint16_t)topo->cpus[i].id;
            k->n++;
            h->cpu_core[topo->cpus[i].id] = (uint16_t)core_of[i];
        }
        free(core_of);
        free(count);
    }
    h->uniform = true;
    for (unsigned k = 0; k < h->n_cores; k++) {
        if (h->cores[k].n > h->tpc)
            h->tpc = h->cores[k].n;
        if (h->cores[k].n != h->cores[0].n)
            h->uniform = false;
        place_bit_set(h->node_core_bits[h->cores[k].node], k);
    }

    for (unsigned i = 0; i < topo->n_cpus; i++) {
        const struct place_cpu *c = &topo->cpus[i];
        h->cpu_node[c->id] = (uint8_t)c->node;
        place_cpuset_add(&h->node_cpus[c->node], c->id);
        h->cpu_node_mask |= 1u << c->node;
        if (c->socket < first_socket || (c->socket == first_socket && c->core < first_core)) {
            first_socket = c->socket;
            first_core = c->core;
        }
    }
    for (unsigned i = 0; i < topo->n_cpus; i++) {
        const struct place_cpu *c = &topo->cpus[i];
        bool hk = housekeeping ? place_cpuset_has(housekeeping, c->id)
                               : c->socket == first_socket && c->core == first_core;
        if (hk)
            place_cpuset_add(&h->hk, c->id);
    }
    free(order);
    if (place_cpuset_count(&h->hk) == 0) {
        place_host_free(h);
        return NULL;
    }
    for (unsigned i = 0; i < topo->n_cpus; i++) {
        unsigned id = topo->cpus[i].id;
        h->role[id] = PR_HK; /* set_role counts the pool from here */
        h->owner[id] = -1;
        if (!place_cpuset_has(&h->hk, id))
            set_role(h, id, PR_FREE, -1);
    }
    for (unsigned k = 0; k < h->n_cores; k++)
        core_refresh(h, k);
    h->pool_gen = 1;
    h->free_vm = -1;
    return h;
}

void place_host_free(struct place_host *h)
{
    if (!h)
        return;
    free(h->cores);
    free(h->core_cpus);
    free(h->vms);
    free(h->groups);
    free(h);
}

void place_host_set_floating_on_hk(struct place_host *h, bool on)
{
    h->floating_on_hk = on;
}

unsigned place_host_uniform_tpc(const struct place_host *h)
{
    return h->uniform ? h->tpc : 0;
}

uint64_t place_host_pool_gen(const struct place_host *h)
{
    return h->pool_gen;
}

void place_host_free_info(const struct place_host *h, struct place_free *out)
{
    memset(out, 0, sizeof(*out));
    out->n_nodes = h->n_nodes;
    for (unsigned n = 0; n < h->n_nodes; n++) {
        out->free_cores[n] = h->free_cores[n];
        out->free_memory_mib[n] = mem_free(h, n);
    }
    out->pool = h->pool;
    out->housekeeping = h->hk;
}

/* ---- lookups ------------------------------------------------------------ */

int place_find_vm(const struct place_host *h, const char *vm)
{
    uint32_t hash = place_hash(vm);

    for (int32_t i = 0; i < h->n_vms; i++) {
        const struct place_vm *r = &h->vms[i];
        if (r->used && r->hash == hash && strcmp(r->name, vm) == 0)
            return i;
    }
    return -1;
}

static int find_group(const struct place_host *h, const char *name)
{
    uint32_t hash = place_hash(name);

    for (int32_t i = 0; i < h->n_groups; i++) {
        const struct place_group *g = &h->groups[i];
        if (g->used && g->hash == hash && strcmp(g->name, name) == 0)
            return i;
    }
    return -1;
}

/* What holds a CPU, for error texts. */
static void describe_cpu(const struct place_host *h, unsigned cpu, char *buf, size_t cap)
{
    char hk[256];

    switch ((enum place_role)h->role[cpu]) {
    case PR_ABSENT:
        snprintf(buf, cap, "CPU %u does not exist", cpu);
        break;
    case PR_HK:
        place_cpuset_format(&h->hk, hk, sizeof(hk));
        snprintf(buf, cap, "CPU %u is a housekeeping CPU (housekeeping: %s)", cpu, hk);
        break;
    case PR_FREE:
        if (h->pins[cpu])
            snprintf(buf, cap, "CPU %u is pinned by %u %s", cpu, h->pins[cpu],
                     plural(h->pins[cpu], "VM", "VMs"));
        else
            snprintf(buf, cap, "CPU %u is free", cpu);
        break;
    case PR_DED:
        snprintf(buf, cap, "CPU %u is dedicated to %s", cpu, h->vms[h->owner[cpu]].name);
        break;
    case PR_IDLE:
        snprintf(buf, cap, "CPU %u is kept idle on a core dedicated to %s", cpu,
                 h->vms[h->owner[cpu]].name);
        break;
    case PR_GROUP:
        snprintf(buf, cap, "CPU %u belongs to shared group %s", cpu,
                 h->groups[h->owner[cpu]].name);
        break;
    case PR_RT:
        snprintf(buf, cap, "CPU %u is held by realtime %s", cpu, h->vms[h->owner[cpu]].name);
        break;
    }
}

/* Why core k is not free: cpu if it is not, else the first of its CPUs
 * that is not. */
static void describe_core(const struct place_host *h, unsigned k, unsigned cpu0, char *buf,
                          size_t cap)
{
    const struct place_core *c = &h->cores[k];

    if (h->role[cpu0] != PR_FREE) {
        describe_cpu(h, cpu0, buf, cap);
        return;
    }
    for (unsigned t = 0; t < c->n; t++) {
        unsigned cpu = h->core_cpus[c->first + t];
        if (h->role[cpu] != PR_FREE || h->pins[cpu]) {
            describe_cpu(h, cpu, buf, cap);
            return;
        }
    }
    snprintf(buf, cap, "its core is free");
}

/* ---- requests ----------------------------------------------------------- */

static bool name_ok(const char *s)
{
    return memchr(s, '\0', PLACE_NAME_MAX) != NULL && s[0] != '\0';
}

int place_validate_request(const struct place_request *req, struct cgv_error *err)
{
    const char *vm = req->vm;
    const char *pol;

    if (!name_ok(req->vm))
        return cgv_err(err, CGV_E_INVALID, "a placement request needs a VM name of 1..%d bytes",
                       PLACE_NAME_MAX - 1);
    if ((unsigned)req->policy > PLACE_PINNED)
        return cgv_err(err, CGV_E_INVALID, "%s: unknown CPU policy %d", vm, (int)req->policy);
    if ((unsigned)req->numa > PLACE_NUMA_STRICT)
        return cgv_err(err, CGV_E_INVALID, "%s: unknown numa mode %d", vm, (int)req->numa);
    pol = place_policy_name(req->policy);
    if (req->vcpus < 1 || req->vcpus > PLACE_MAX_VCPUS)
        return cgv_err(err, CGV_E_INVALID, "%s: %u vCPUs is out of 1..%d", vm, req->vcpus,
                       PLACE_MAX_VCPUS);
    if (req->isolate_smt && req->policy != PLACE_DEDICATED)
        return cgv_err(err, CGV_E_INVALID, "%s: isolate_smt is for policy dedicated, not %s", vm,
                       pol);
    if (req->group[0] && req->policy != PLACE_SHARED_GROUP)
        return cgv_err(err, CGV_E_INVALID, "%s: a group is for policy shared-group, not %s", vm,
                       pol);
    if (req->policy == PLACE_SHARED_GROUP) {
        if (!name_ok(req->group))
            return cgv_err(err, CGV_E_INVALID,
                           "%s: policy shared-group needs a group name of 1..%d bytes", vm,
                           PLACE_NAME_MAX - 1);
        if (req->group_cores > PLACE_MAX_VCPUS)
            return cgv_err(err, CGV_E_INVALID, "%s: group_cores %u is out of 1..%d", vm,
                           req->group_cores, PLACE_MAX_VCPUS);
    }
    if (req->n_pinned && req->policy != PLACE_PINNED)
        return cgv_err(err, CGV_E_INVALID, "%s: pinned CPUs are for policy pinned, not %s", vm,
                       pol);
    if (req->policy == PLACE_PINNED) {
        if (req->n_pinned == 0)
            return cgv_err(err, CGV_E_INVALID, "%s: policy pinned needs at least one CPU", vm);
        if (req->n_pinned > PLACE_MAX_VCPUS)
            return cgv_err(err, CGV_E_INVALID, "%s: %zu pinned CPUs; at most %d", vm,
                           req->n_pinned, PLACE_MAX_VCPUS);
        for (size_t i = 0; i < req->n_pinned; i++) {
            if (req->pinned[i] >= PLACE_MAX_CPUS)
                return cgv_err(err, CGV_E_INVALID,
                               "%s: pinned CPU %u does not exist (CPU ids go up to %d)", vm,
                               req->pinned[i], PLACE_MAX_CPUS - 1);
            for (size_t j = 0; j < i; j++) {
                if (req->pinned[j] == req->pinned[i])
                    return cgv_err(err, CGV_E_INVALID, "%s: pinned CPU %u is listed twice", vm,
                                   req->pinned[i]);
            }
        }
    }
    if (req->realtime) {
        if (req->policy != PLACE_DEDICATED && req->policy != PLACE_PINNED)
            return cgv_err(err, CGV_E_INVALID,
                           "%s: realtime needs policy dedicated or pinned, not %s", vm, pol);
        if (req->policy == PLACE_PINNED && req->n_pinned < req->vcpus)
            return cgv_err(err, CGV_E_INVALID,
                           "%s: realtime pinned needs one CPU per vCPU: %u vCPUs, %zu %s", vm,
                           req->vcpus, req->n_pinned, req->n_pinned == 1 ? "CPU" : "CPUs");
    }
    return 0;
}

/* ---- planning ------------------------------------------------------------ */

static unsigned usable_cores(const struct place_host *h, unsigned node);

/* Nodes of mask, best first: most free cores, then most free memory, then
 * lowest number (by_cores), or most free memory then lowest number. */
static unsigned node_order(const struct place_host *h, uint32_t mask, bool by_cores,
                           unsigned *order)
{
    unsigned n = 0;

    for (unsigned node = 0; node < h->n_nodes; node++) {
        unsigned i;
        if (!(mask & (1u << node)))
            continue;
        for (i = n; i > 0; i--) {
            unsigned o = order[i - 1];
            bool better;
            if (by_cores && usable_cores(h, node) != usable_cores(h, o))
                better = usable_cores(h, node) > usable_cores(h, o);
            else
                better = mem_free(h, node) > mem_free(h, o);
            if (!better)
                break;
            order[i] = o;
        }
        order[i] = node;
        n++;
    }
    return n;
}

static uint32_t all_nodes(const struct place_host *h)
{
    return h->n_nodes >= 32 ? UINT32_MAX : (1u << h->n_nodes) - 1;
}

static void host_mem_text(const struct place_host *h, struct sbuf *b)
{
    uint64_t total = 0;

    for (unsigned n = 0; n < h->n_nodes; n++)
        total += h->free_mem[n];
    sb_add(b, "the host has %" PRIu64 " MiB free", total);
    if (popcount32(h->cpu_node_mask) > 1 || h->n_nodes > 1) {
        for (unsigned n = 0; n < h->n_nodes; n++)
            sb_add(b, "%s%u: %" PRIu64, n ? ", node " : " (node ", n, h->free_mem[n]);
        sb_add(b, ")");
    }
}

/* Put need MiB on the nodes of prefer (most free first), then, if others,
 * on the rest. */
static int mem_place(const struct place_host *h, const struct place_request *req, uint64_t need,
                     uint32_t prefer, bool others, struct place_plan *p, struct cgv_error *err)
{
    unsigned order[PLACE_MAX_NODES], n;
    uint64_t left = need;

    memset(p->mem, 0, sizeof(p->mem));
    p->mem_nodes = 0;
    if (h->memory_unknown || need == 0) {
        p->mem_nodes = prefer ? prefer : p->cpu_nodes;
        return 0;
    }
    for (int pass = 0; pass < (others ? 2 : 1) && left; pass++) {
        n = node_order(h, pass == 0 ? prefer : all_nodes(h) & ~prefer, false, order);
        for (unsigned i = 0; i < n && left; i++) {
            uint64_t take = h->free_mem[order[i]] < left ? h->free_mem[order[i]] : left;
            if (take == 0)
                continue;
            p->mem[order[i]] = take;
            p->mem_nodes |= 1u << order[i];
            left -= take;
        }
    }
    if (left) {
        if (err) {
            struct sbuf b = {.len = 0};
            char nodes[64];
            if (others) {
                sb_add(&b, "%s needs %" PRIu64 " MiB, ", req->vm, need);
                host_mem_text(h, &b);
            } else {
                uint64_t have = 0;
                nodes_format(prefer, nodes, sizeof(nodes));
                for (unsigned k = 0; k < h->n_nodes; k++)
                    have += (prefer & (1u << k)) ? h->free_mem[k] : 0;
                sb_add(&b, "%s needs %" PRIu64 " MiB on NUMA node%s %s, which %s %" PRIu64
                       " MiB free", req->vm, need, popcount32(prefer) > 1 ? "s" : "", nodes,
                       popcount32(prefer) > 1 ? "have" : "has", have);
            }
            cgv_err(err, CGV_E_CONFLICT, "%s", b.text);
        }
        memset(p->mem, 0, sizeof(p->mem));
        p->mem_nodes = 0;
        return -1;
    }
    return 0;
}

/* Memory on one node, or (numa prefer) spread from it. `where` says why
 * that node ("where its group light is"). */
static int mem_on_node(const struct place_host *h, const struct place_request *req,
                       uint32_t nodes, const char *where, struct place_plan *p,
                       struct cgv_error *err)
{
    if (popcount32(nodes) == 1) {
        unsigned n = (unsigned)__builtin_ctz(nodes);
        if (mem_free(h, n) >= req->memory_mib)
            return mem_place(h, req, req->memory_mib, nodes, false, p, err);
        if (req->numa == PLACE_NUMA_STRICT)
            return cgv_err(err, CGV_E_CONFLICT,
                           "%s needs %" PRIu64 " MiB on NUMA node %u, %s, which has %" PRIu64
                           " MiB free", req->vm, req->memory_mib, n, where, h->free_mem[n]);
    }
    return mem_place(h, req, req->memory_mib, nodes, true, p, err);
}

/* 1 when node must keep a free core: numa-strict floating VMs run on its
 * pool and every pool CPU there is on a free core. The core kept is the
 * highest-numbered free one (take_cores takes from the lowest). */
static unsigned kept_cores(const struct place_host *h, unsigned node)
{
    return h->strict_floating[node] && h->free_cores[node] &&
           h->pool_cpus[node] == h->free_threads[node];
}

static unsigned kept_threads(const struct place_host *h, unsigned node)
{
    if (!kept_cores(h, node))
        return 0;
    for (unsigned w = PLACE_WORDS; w-- > 0;) {
        uint64_t bits = h->core_free_bits[w] & h->node_core_bits[node][w];
        if (bits)
            return h->cores[w * 64 + 63 - (unsigned)__builtin_clzll(bits)].n;
    }
    return 0;
}

/* Take free cores of node giving `slots` vCPU slots (a core gives one, or
 * all its threads when !per_core); returns the slots still missing. */
static unsigned take_cores(const struct place_host *h, unsigned node, unsigned slots,
                           bool per_core, struct place_plan *p)
{
    unsigned room = h->free_cores[node] - kept_cores(h, node);

    for (unsigned w = 0; w < PLACE_WORDS && slots && room; w++) {
        uint64_t bits = h->core_free_bits[w] & h->node_core_bits[node][w];
        while (bits && slots && room) {
            room--;
            unsigned k = w * 64 + (unsigned)__builtin_ctzll(bits);
            unsigned give = per_core ? 1 : h->cores[k].n;
            bits &= bits - 1;
            p->cores[p->n_cores++] = (uint16_t)k;
            p->cpu_nodes |= 1u << node;
            slots = give >= slots ? 0 : slots - give;
        }
    }
    return slots;
}

static unsigned usable_cores(const struct place_host *h, unsigned node)
{
    return h->free_cores[node] - kept_cores(h, node);
}

/* vCPU slots node can give (less what it keeps). */
static unsigned node_slots(const struct place_host *h, unsigned node, bool per_core)
{
    return per_core ? h->free_cores[node] - kept_cores(h, node)
                    : h->free_threads[node] - kept_threads(h, node);
}

/* Cores needed for slots, as said in messages (exact on uniform hosts). */
static unsigned cores_for(const struct place_host *h, unsigned slots, bool per_core)
{
    if (per_core || h->tpc <= 1)
        return slots;
    return (slots + h->tpc - 1) / h->tpc;
}

/* "4 dedicated cores" / "2 cores for group light" */
static void need_text(const struct place_host *h, const struct place_request *req,
                      unsigned slots, bool per_core, struct sbuf *b)
{
    unsigned cores = cores_for(h, slots, per_core);

    if (req->policy == PLACE_SHARED_GROUP) {
        sb_add(b, "%u %s for shared group %s", slots, plural(slots, "core", "cores"),
               req->group);
    } else if (!per_core && !h->uniform) {
        sb_add(b, "whole free cores with %u threads", slots);
    } else {
        sb_add(b, "%u dedicated %s", cores, plural(cores, "core", "cores"));
        if (cores != slots)
            sb_add(b, " for %u vCPUs", slots);
    }
}

static void free_text(const struct place_host *h, unsigned node, bool per_core, struct sbuf *b)
{
    if (!per_core && !h->uniform)
        sb_add(b, "%u", node_slots(h, node, per_core));
    else
        sb_add(b, "%u", h->free_cores[node] - kept_cores(h, node));
    if (kept_cores(h, node))
        sb_add(b, " (+1 kept for the pool of its numa-strict floating VMs)");
}

static int pool_guard(const struct place_host *h, const struct place_request *req,
                      unsigned taken, struct cgv_error *err)
{
    if (h->n_floating == 0 || taken < h->pool_total || h->floating_on_hk)
        return 0;
    return cgv_err(err, CGV_E_CONFLICT,
                   "%s would leave the shared pool empty, and %u floating %s there", req->vm,
                   h->n_floating, plural(h->n_floating, "VM runs", "VMs run"));
}

/* Realtime pinned CPUs leave the pool: neither the pool nor the pool of a
 * node with numa-strict floating VMs may run dry. */
static int rt_guard(const struct place_host *h, const struct place_request *req,
                    struct cgv_error *err)
{
    unsigned per_node[PLACE_MAX_NODES] = {0};

    if (pool_guard(h, req, (unsigned)req->n_pinned, err) < 0)
        return -1;
    for (size_t i = 0; i < req->n_pinned; i++)
        per_node[h->cpu_node[req->pinned[i]]]++;
    for (unsigned n = 0; n < h->n_nodes; n++) {
        if (h->strict_floating[n] && per_node[n] && per_node[n] >= h->pool_cpus[n])
            return cgv_err(err, CGV_E_CONFLICT,
                           "%s would take the last shared-pool CPUs of NUMA node %u, where "
                           "%u numa-strict floating %s run", req->vm, n,
                           h->strict_floating[n], plural(h->strict_floating[n], "VM", "VMs"));
    }
    return 0;
}

static unsigned pool_taken_by_cores(const struct place_host *h, const struct place_plan *p)
{
    unsigned n = 0;

    for (unsigned i = 0; i < p->n_cores; i++)
        n += h->cores[p->cores[i]].n;
    return n;
}

/* Whole free cores: dedicated vCPUs, or a new group's cores. */
static int plan_whole_cores(const struct place_host *h, const struct place_request *req,
                            unsigned slots, bool per_core, struct place_plan *p,
                            struct cgv_error *err)
{
    unsigned order[PLACE_MAX_NODES], n_order, total = 0;
    int best = -1;

    for (unsigned node = 0; node < h->n_nodes; node++) {
        if (!(h->cpu_node_mask & (1u << node)))
            continue;
        total += node_slots(h, node, per_core);
        if (node_slots(h, node, per_core) < slots || mem_free(h, node) < req->memory_mib)
            continue;
        if (best < 0 || usable_cores(h, node) > usable_cores(h, (unsigned)best) ||
            (usable_cores(h, node) == usable_cores(h, (unsigned)best) &&
             mem_free(h, node) > mem_free(h, (unsigned)best)))
            best = (int)node;
    }
    if (best >= 0) {
        take_cores(h, (unsigned)best, slots, per_core, p);
        if (mem_place(h, req, req->memory_mib, 1u << best, false, p, err) < 0)
            return -1;
    } else if (req->numa == PLACE_NUMA_STRICT && popcount32(h->cpu_node_mask) > 1) {
        if (err) {
            struct sbuf b = {.len = 0};
            bool cpu_short = false, mem_short = false;
            for (unsigned node = 0; node < h->n_nodes; node++) {
                if (!(h->cpu_node_mask & (1u << node)))
                    continue;
                cpu_short |= node_slots(h, node, per_core) < slots;
                mem_short |= mem_free(h, node) < req->memory_mib;
            }
            sb_add(&b, "%s needs ", req->vm);
            if (cpu_short)
                need_text(h, req, slots, per_core, &b);
            if (mem_short)
                sb_add(&b, "%s%" PRIu64 " MiB", cpu_short ? " and " : "", req->memory_mib);
            sb_add(&b, " on one NUMA node");
            for (unsigned node = 0; node < h->n_nodes; node++) {
                if (!(h->cpu_node_mask & (1u << node)))
                    continue;
                sb_add(&b, ", node %u has ", node);
                if (cpu_short && mem_short) {
                    unsigned have = !per_core && !h->uniform
                                        ? node_slots(h, node, per_core)
                                        : h->free_cores[node] - kept_cores(h, node);
                    free_text(h, node, per_core, &b);
                    sb_add(&b, " %s and %" PRIu64 " MiB free",
                           !per_core && !h->uniform ? plural(have, "thread", "threads")
                                                    : plural(have, "core", "cores"),
                           h->free_mem[node]);
                } else if (cpu_short) {
                    free_text(h, node, per_core, &b);
                    sb_add(&b, " free");
                } else {
                    sb_add(&b, "%" PRIu64 " MiB free", h->free_mem[node]);
                }
            }
            cgv_err(err, CGV_E_CONFLICT, "%s", b.text);
        }
        return -1;
    } else {
        unsigned left = slots;
        if (total < slots) {
            if (err) {
                struct sbuf b = {.len = 0};
                sb_add(&b, "%s needs ", req->vm);
                need_text(h, req, slots, per_core, &b);
                unsigned usable = 0;
                for (unsigned node = 0; node < h->n_nodes; node++)
                    usable += h->free_cores[node] - kept_cores(h, node);
                sb_add(&b, ", the host has %u free", !per_core && !h->uniform ? total : usable);
                if (popcount32(h->cpu_node_mask) > 1) {
                    for (unsigned node = 0, i = 0; node < h->n_nodes; node++) {
                        if (!(h->cpu_node_mask & (1u << node)))
                            continue;
                        sb_add(&b, "%s%u: ", i++ ? ", node " : " (node ", node);
                        free_text(h, node, per_core, &b);
                    }
                    sb_add(&b, ")");
                }
                cgv_err(err, CGV_E_CONFLICT, "%s", b.text);
            }
            return -1;
        }
        n_order = node_order(h, h->cpu_node_mask, true, order);
        for (unsigned i = 0; i < n_order && left; i++)
            left = take_cores(h, order[i], left, per_core, p);
        /* strict gets here only with one node of CPUs: its memory stays there */
        if (mem_place(h, req, req->memory_mib, p->cpu_nodes, req->numa == PLACE_NUMA_PREFER,
                      p, err) < 0)
            return -1;
    }
    return pool_guard(h, req, pool_taken_by_cores(h, p), err);
}

static int plan_floating(const struct place_host *h, const struct place_request *req,
                         struct place_plan *p, struct cgv_error *err)
{
    uint32_t pool_nodes = 0;
    int best = -1;

    if (h->pool_total == 0 && h->floating_on_hk) {
        /* a small host: on the housekeeping CPUs until the pool comes back */
        for (unsigned node = 0; node < h->n_nodes; node++) {
            for (unsigned w = 0; w < PLACE_WORDS; w++) {
                if (h->hk.bits[w] & h->node_cpus[node].bits[w])
                    p->cpu_nodes |= 1u << node;
            }
        }
        return mem_place(h, req, req->memory_mib, p->cpu_nodes,
                         req->numa == PLACE_NUMA_PREFER, p, err);
    }
    if (h->pool_total == 0)
        return cgv_err(err, CGV_E_CONFLICT,
                       "%s needs the shared pool, which is empty (every CPU is housekeeping, "
                       "dedicated or in a group)", req->vm);
    for (unsigned node = 0; node < h->n_nodes; node++) {
        if (h->pool_cpus[node] == 0)
            continue;
        pool_nodes |= 1u << node;
        if (mem_free(h, node) < req->memory_mib)
            continue;
        if (best < 0 || usable_cores(h, node) > usable_cores(h, (unsigned)best) ||
            (usable_cores(h, node) == usable_cores(h, (unsigned)best) &&
             mem_free(h, node) > mem_free(h, (unsigned)best)))
            best = (int)node;
    }
    if (best >= 0) {
        p->cpu_nodes = 1u << best;
        return mem_place(h, req, req->memory_mib, p->cpu_nodes, false, p, err);
    }
    if (req->numa == PLACE_NUMA_STRICT && popcount32(h->cpu_node_mask) > 1) {
        if (err) {
            struct sbuf b = {.len = 0};
            bool no_pool = pool_nodes != h->cpu_node_mask;
            sb_add(&b, "%s needs %" PRIu64 " MiB%s on one NUMA node", req->vm, req->memory_mib,
                   no_pool ? " and shared-pool CPUs" : "");
            for (unsigned node = 0; node < h->n_nodes; node++) {
                if (!(h->cpu_node_mask & (1u << node)))
                    continue;
                sb_add(&b, ", node %u has ", node);
                if (no_pool) {
                    if (h->pool_cpus[node])
                        sb_add(&b, "%u pool %s and ", h->pool_cpus[node],
                               plural(h->pool_cpus[node], "CPU", "CPUs"));
                    else
                        sb_add(&b, "no pool CPU and ");
                }
                sb_add(&b, "%" PRIu64 " MiB free", h->free_mem[node]);
            }
            cgv_err(err, CGV_E_CONFLICT, "%s", b.text);
        }
        return -1;
    }
    if (mem_place(h, req, req->memory_mib, pool_nodes, req->numa == PLACE_NUMA_PREFER, p,
                  err) < 0)
        return -1;
    /* its vCPUs follow its memory: the pool of those nodes, as it changes */
    p->cpu_nodes = p->mem_nodes & h->cpu_node_mask;
    if (!p->cpu_nodes)
        p->cpu_nodes = pool_nodes;
    return 0;
}

static int plan_group(const struct place_host *h, const struct place_request *req,
                      struct place_plan *p, struct cgv_error *err)
{
    int g = find_group(h, req->group);
    char where[PLACE_NAME_MAX + 64];

    if (g < 0) {
        p->new_group = true;
        return plan_whole_cores(h, req, req->group_cores ? req->group_cores : 1, true, p, err);
    }
    p->group = g;
    p->cpu_nodes = h->groups[g].nodes;
    if (req->numa == PLACE_NUMA_STRICT && popcount32(p->cpu_nodes) > 1) {
        char nodes[64];
        nodes_format(p->cpu_nodes, nodes, sizeof(nodes));
        return cgv_err(err, CGV_E_CONFLICT,
                       "%s: shared group %s spans NUMA nodes %s; numa strict needs one node",
                       req->vm, req->group, nodes);
    }
    snprintf(where, sizeof(where), "where its group %s is", req->group);
    return mem_on_node(h, req, p->cpu_nodes, where, p, err);
}

/* Host-dependent checks of pinned CPUs (place_validate_request did the rest). */
static int check_pinned(const struct place_host *h, const struct place_request *req,
                        struct cgv_error *err)
{
    char what[256];

    for (size_t i = 0; i < req->n_pinned; i++) {
        unsigned cpu = req->pinned[i];
        if (cpu >= h->n_cpu_ids || h->role[cpu] == PR_ABSENT) {
            struct place_cpuset all;
            char list[256];
            place_cpuset_clear(&all);
            for (unsigned n = 0; n < h->n_nodes; n++)
                for (unsigned w = 0; w < PLACE_WORDS; w++)
                    all.bits[w] |= h->node_cpus[n].bits[w];
            place_cpuset_format(&all, list, sizeof(list));
            return cgv_err(err, CGV_E_INVALID,
                           "%s: pinned CPU %u does not exist on this host (CPUs %s)", req->vm,
                           cpu, list);
        }
        if (h->role[cpu] == PR_HK) {
            describe_cpu(h, cpu, what, sizeof(what));
            return cgv_err(err, CGV_E_INVALID, "%s: pinned %s", req->vm, what);
        }
    }
    for (size_t i = 0; i < req->n_pinned; i++) {
        unsigned cpu = req->pinned[i];
        enum place_role r = (enum place_role)h->role[cpu];
        bool bad = r == PR_DED || r == PR_IDLE || r == PR_RT;
        if (req->realtime && (r == PR_GROUP || h->pins[cpu]))
            bad = true;
        if (bad) {
            describe_cpu(h, cpu, what, sizeof(what));
            return cgv_err(err, CGV_E_CONFLICT, "%s: pinned %s%s", req->vm, what,
                           req->realtime && (r == PR_GROUP || r == PR_FREE)
                               ? "; realtime needs CPUs no other VM uses"
                               : "");
        }
    }
    return 0;
}

static int plan_pinned(const struct place_host *h, const struct place_request *req,
                       struct place_plan *p, struct cgv_error *err)
{
    unsigned newly_busy = 0;

    if (check_pinned(h, req, err) < 0)
        return -1;
    for (size_t i = 0; i < req->n_pinned; i++) {
        unsigned cpu = req->pinned[i];
        unsigned k = h->cpu_core[cpu];
        bool counted = false;
        p->held[p->n_held++] = (uint16_t)cpu;
        p->cpu_nodes |= 1u << h->cpu_node[cpu];
        for (size_t j = 0; j < i; j++)
            counted |= h->cpu_core[req->pinned[j]] == k;
        if (!counted && place_bit(h->core_free_bits, k))
            newly_busy++;
    }
    for (unsigned v = 0; v < req->vcpus; v++)
        p->vcpu_cpu[v] = (uint16_t)req->pinned[v % req->n_pinned];
    p->cores_left = h->free_cores_total - newly_busy;
    if (req->realtime && rt_guard(h, req, err) < 0)
        return -1;
    if (req->numa == PLACE_NUMA_STRICT && popcount32(p->cpu_nodes) > 1) {
        char nodes[64];
        nodes_format(p->cpu_nodes, nodes, sizeof(nodes));
        return cgv_err(err, CGV_E_INVALID,
                       "%s: its pinned CPUs are on NUMA nodes %s; numa strict needs one node",
                       req->vm, nodes);
    }
    return mem_on_node(h, req, p->cpu_nodes, "where its pinned CPUs are", p, err);
}

static void dedicated_vcpus(const struct place_host *h, const struct place_request *req,
                            struct place_plan *p)
{
    unsigned v = 0;

    for (unsigned i = 0; i < p->n_cores && v < req->vcpus; i++) {
        const struct place_core *c = &h->cores[p->cores[i]];
        unsigned use = req->isolate_smt ? 1 : c->n;
        for (unsigned t = 0; t < use && v < req->vcpus; t++)
            p->vcpu_cpu[v++] = h->core_cpus[c->first + t];
    }
}

int place_plan(const struct place_host *h, const struct place_request *req,
               struct place_plan *p, struct cgv_error *err)
{
    if (place_find_vm(h, req->vm) >= 0)
        return cgv_err(err, CGV_E_CONFLICT, "%s already holds an allocation on this host",
                       req->vm);
    return place_plan_fit(h, req, p, err);
}

int place_plan_fit(const struct place_host *h, const struct place_request *req,
                   struct place_plan *p, struct cgv_error *err)
{
    int rc = -1;

    p->group = -1;
    p->new_group = false;
    p->n_cores = 0;
    p->n_held = 0;
    p->cpu_nodes = 0;
    p->mem_nodes = 0;
    switch (req->policy) {
    case PLACE_DEDICATED:
        rc = plan_whole_cores(h, req, req->vcpus, req->isolate_smt, p, err);
        if (rc == 0)
            dedicated_vcpus(h, req, p);
        break;
    case PLACE_SHARED_GROUP:
        rc = plan_group(h, req, p, err);
        break;
    case PLACE_PINNED:
        return plan_pinned(h, req, p, err);
    case PLACE_FLOATING:
        rc = plan_floating(h, req, p, err);
        break;
    }
    p->cores_left = h->free_cores_total - p->n_cores;
    return rc;
}

/* ---- carrying out, results, release ------------------------------------- */

static int32_t new_vm(struct place_host *h)
{
    int32_t i;

    if (h->free_vm >= 0) {
        i = h->free_vm;
        h->free_vm = h->vms[i].next_free;
    } else {
        if (h->n_vms == h->cap_vms) {
            h->cap_vms = h->cap_vms ? h->cap_vms * 2 : 16;
            h->vms = cgv_realloc(h->vms, sizeof(*h->vms) * (size_t)h->cap_vms);
        }
        i = h->n_vms++;
    }
    return i;
}

static int32_t new_group(struct place_host *h)
{
    for (int32_t i = 0; i < h->n_groups; i++) {
        if (!h->groups[i].used)
            return i;
    }
    if (h->n_groups == h->cap_groups) {
        h->cap_groups = h->cap_groups ? h->cap_groups * 2 : 4;
        h->groups = cgv_realloc(h->groups, sizeof(*h->groups) * (size_t)h->cap_groups);
    }
    return h->n_groups++;
}

static void fill_result(const struct place_host *h, const struct place_vm *r,
                        struct place_result *out)
{
    struct place_cpuset set;

    out->vcpus = r->vcpus;
    out->emulator = h->hk;
    out->node = r->node;
    place_cpuset_clear(&out->nodes);
    out->nodes.bits[0] = r->mem_nodes;
    memcpy(out->node_memory_mib, r->mem, sizeof(out->node_memory_mib));
    switch ((enum place_policy)r->policy) {
    case PLACE_DEDICATED:
    case PLACE_PINNED:
        for (unsigned v = 0; v < r->vcpus; v++) {
            place_cpuset_clear(&out->vcpu[v]);
            place_cpuset_add(&out->vcpu[v], r->vcpu_cpu[v]);
        }
        return;
    case PLACE_SHARED_GROUP:
        set = h->groups[r->group].cpus;
        break;
    case PLACE_FLOATING:
    default:
        place_cpuset_clear(&set);
        for (unsigned n = 0; n < h->n_nodes; n++) {
            if (!(r->cpu_nodes & (1u << n)))
                continue;
            for (unsigned w = 0; w < PLACE_WORDS; w++)
                set.bits[w] |= h->pool.bits[w] & h->node_cpus[n].bits[w];
        }
        if (place_cpuset_count(&set) == 0) {
            /* its node's pool is gone: anywhere in the pool, which makes
             * it span nodes until cores come back */
            set = h->pool;
            if (place_cpuset_count(&set) == 0 && h->floating_on_hk)
                set = h->hk;
            if (r->node >= 0) {
                for (unsigned w = 0; w < PLACE_WORDS; w++) {
                    if (set.bits[w] & ~h->node_cpus[r->node].bits[w])
                        out->node = -1;
                }
            }
        }
        break;
    }
    for (unsigned v = 0; v < r->vcpus; v++)
        out->vcpu[v] = set;
}

void place_commit(struct place_host *h, const struct place_request *req,
                  const struct place_plan *p, struct place_result *out)
{
    int32_t i = new_vm(h);
    struct place_vm *r = &h->vms[i];
    uint32_t all;

    memset(r, 0, sizeof(*r));
    cgv_strlcpy(r->name, req->vm, sizeof(r->name));
    r->hash = place_hash(r->name);
    r->used = true;
    r->policy = (uint8_t)req->policy;
    r->realtime = req->realtime;
    r->isolate = req->isolate_smt;
    r->vcpus = (uint16_t)req->vcpus;
    r->group = -1;
    r->next_free = -1;
    r->cpu_nodes = p->cpu_nodes;
    r->mem_nodes = p->mem_nodes;
    memcpy(r->mem, p->mem, sizeof(r->mem));
    switch (req->policy) {
    case PLACE_DEDICATED:
        r->n_cores = p->n_cores;
        memcpy(r->cores, p->cores, sizeof(p->cores[0]) * p->n_cores);
        memcpy(r->vcpu_cpu, p->vcpu_cpu, sizeof(p->vcpu_cpu[0]) * req->vcpus);
        for (unsigned c = 0; c < p->n_cores; c++) {
            const struct place_core *k = &h->cores[p->cores[c]];
            for (unsigned t = 0; t < k->n; t++)
                set_role(h, h->core_cpus[k->first + t], PR_IDLE, i);
        }
        for (unsigned v = 0; v < req->vcpus; v++)
            set_role(h, p->vcpu_cpu[v], PR_DED, i);
        for (unsigned c = 0; c < p->n_cores; c++)
            core_refresh(h, p->cores[c]);
        break;
    case PLACE_SHARED_GROUP: {
        int32_t g = p->group;
        struct place_group *grp;
        if (p->new_group) {
            g = new_group(h);
            grp = &h->groups[g];
            memset(grp, 0, sizeof(*grp));
            cgv_strlcpy(grp->name, req->group, sizeof(grp->name));
            grp->hash = place_hash(grp->name);
            grp->used = true;
            grp->n_cores = p->n_cores;
            memcpy(grp->cores, p->cores, sizeof(p->cores[0]) * p->n_cores);
            grp->nodes = p->cpu_nodes;
            for (unsigned c = 0; c < p->n_cores; c++) {
                const struct place_core *k = &h->cores[p->cores[c]];
                for (unsigned t = 0; t < k->n; t++) {
                    unsigned cpu = h->core_cpus[k->first + t];
                    set_role(h, cpu, PR_GROUP, g);
                    place_cpuset_add(&grp->cpus, cpu);
                }
                core_refresh(h, p->cores[c]);
            }
        }
        grp = &h->groups[g];
        grp->members++;
        r->group = g;
        break;
    }
    case PLACE_PINNED:
        r->n_held = p->n_held;
        memcpy(r->held, p->held, sizeof(p->held[0]) * p->n_held);
        memcpy(r->vcpu_cpu, p->vcpu_cpu, sizeof(p->vcpu_cpu[0]) * req->vcpus);
        for (unsigned c = 0; c < p->n_held; c++) {
            if (req->realtime)
                set_role(h, p->held[c], PR_RT, i);
            else
                h->pins[p->held[c]]++;
            core_refresh(h, h->cpu_core[p->held[c]]);
        }
        break;
    case PLACE_FLOATING:
        h->n_floating++;
        if (req->numa == PLACE_NUMA_STRICT && popcount32(p->cpu_nodes) == 1)
            h->strict_floating[__builtin_ctz(p->cpu_nodes)]++;
        break;
    }
    r->numa_strict = req->numa == PLACE_NUMA_STRICT;
    for (unsigned n = 0; n < h->n_nodes; n++)
        h->free_mem[n] -= p->mem[n];
    all = p->cpu_nodes | p->mem_nodes;
    r->node = (int16_t)(popcount32(all) == 1 ? __builtin_ctz(all) : -1);
    if (out)
        fill_result(h, r, out);
}

int place_alloc(struct place_host *h, const struct place_request *req,
                struct place_result *out, struct cgv_error *err)
{
    struct place_plan p;

    if (place_validate_request(req, err) < 0 || place_plan(h, req, &p, err) < 0)
        return -1;
    place_commit(h, req, &p, out);
    return 0;
}

int place_host_result(const struct place_host *h, const char *vm, struct place_result *out,
                      struct cgv_error *err)
{
    int i = place_find_vm(h, vm);

    if (i < 0)
        return cgv_err(err, CGV_E_NOTFOUND, "%s holds no allocation on this host", vm);
    fill_result(h, &h->vms[i], out);
    return 0;
}

void place_release(struct place_host *h, const char *vm)
{
    int i = vm ? place_find_vm(h, vm) : -1;
    struct place_vm *r;

    if (i < 0)
        return;
    r = &h->vms[i];
    switch ((enum place_policy)r->policy) {
    case PLACE_DEDICATED:
        for (unsigned c = 0; c < r->n_cores; c++) {
            const struct place_core *k = &h->cores[r->cores[c]];
            for (unsigned t = 0; t < k->n; t++)
                set_role(h, h->core_cpus[k->first + t], PR_FREE, -1);
            core_refresh(h, r->cores[c]);
        }
        break;
    case PLACE_SHARED_GROUP: {
        struct place_group *g = &h->groups[r->group];
        if (--g->members == 0) {
            for (unsigned c = 0; c < g->n_cores; c++) {
                const struct place_core *k = &h->cores[g->cores[c]];
                for (unsigned t = 0; t < k->n; t++)
                    set_role(h, h->core_cpus[k->first + t], PR_FREE, -1);
                core_refresh(h, g->cores[c]);
            }
            g->used = false;
        }
        break;
    }
    case PLACE_PINNED:
        for (unsigned c = 0; c < r->n_held; c++) {
            if (r->realtime)
                set_role(h, r->held[c], PR_FREE, -1);
            else
                h->pins[r->held[c]]--;
            core_refresh(h, h->cpu_core[r->held[c]]);
        }
        break;
    case PLACE_FLOATING:
        h->n_floating--;
        if (r->numa_strict && popcount32(r->cpu_nodes) == 1)
            h->strict_floating[__builtin_ctz(r->cpu_nodes)]--;
        break;
    }
    for (unsigned n = 0; n < h->n_nodes; n++)
        h->free_mem[n] += r->mem[n];
    r->used = false;
    r->next_free = h->free_vm;
    h->free_vm = i;
}

/* ---- adoption ------------------------------------------------------------ */

static int single_cpu(const struct place_host *h, const struct place_request *req,
                      const struct place_result *res, unsigned v, unsigned *cpu,
                      struct cgv_error *err)
{
    char set[256];

    if (place_cpuset_count(&res->vcpu[v]) != 1) {
        place_cpuset_format(&res->vcpu[v], set, sizeof(set));
        return cgv_err(err, CGV_E_INVALID,
                       "%s: vCPU %u runs on '%s'; a %s vCPU runs on one CPU", req->vm, v, set,
                       place_policy_name(req->policy));
    }
    for (unsigned c = 0; c < PLACE_MAX_CPUS; c++) {
        if (place_cpuset_has(&res->vcpu[v], c)) {
            *cpu = c;
            break;
        }
    }
    if (*cpu >= h->n_cpu_ids || h->role[*cpu] == PR_ABSENT)
        return cgv_err(err, CGV_E_INVALID, "%s: vCPU %u runs on CPU %u, which this host lacks",
                       req->vm, v, *cpu);
    return 0;
}

/* A core nobody holds: free, or (groups: pinned VMs may name group CPUs)
 * in the pool and only pinned. */
static bool core_unheld(const struct place_host *h, unsigned k, bool pins_ok)
{
    const struct place_core *c = &h->cores[k];

    if (!pins_ok)
        return place_bit(h->core_free_bits, k);
    for (unsigned t = 0; t < c->n; t++) {
        if (h->role[h->core_cpus[c->first + t]] != PR_FREE)
            return false;
    }
    return true;
}

/* The cores under the CPUs of set must all be unheld; adds them to p. */
static int adopt_cores(const struct place_host *h, const struct place_request *req,
                       const struct place_cpuset *set, bool pins_ok, struct place_plan *p,
                       struct cgv_error *err)
{
    for (unsigned cpu = 0; cpu < PLACE_MAX_CPUS; cpu++) {
        unsigned k;
        bool have = false;
        char what[256];

        if (!place_cpuset_has(set, cpu))
            continue;
        if (cpu >= h->n_cpu_ids || h->role[cpu] == PR_ABSENT)
            return cgv_err(err, CGV_E_INVALID, "%s runs on CPU %u, which this host lacks",
                           req->vm, cpu);
        k = h->cpu_core[cpu];
        for (unsigned i = 0; i < p->n_cores; i++)
            have |= p->cores[i] == k;
        if (have)
            continue;
        if (!core_unheld(h, k, pins_ok)) {
            describe_core(h, k, cpu, what, sizeof(what));
            return cgv_err(err, CGV_E_CONFLICT, "%s runs on CPU %u, but %s", req->vm, cpu,
                           what);
        }
        if (p->n_cores >= PLACE_MAX_VCPUS)
            return cgv_err(err, CGV_E_INVALID, "%s runs on more than %d cores", req->vm,
                           PLACE_MAX_VCPUS);
        p->cores[p->n_cores++] = (uint16_t)k;
        p->cpu_nodes |= 1u << h->cores[k].node;
    }
    return 0;
}

/* Memory as the result split it, or spread over mask. */
static int adopt_memory(const struct place_host *h, const struct place_request *req,
                        const struct place_result *res, uint32_t mask, struct place_plan *p,
                        struct cgv_error *err)
{
    uint64_t sum = 0;

    for (unsigned n = 0; n < PLACE_MAX_NODES; n++)
        sum += res->node_memory_mib[n];
    if (h->memory_unknown || sum != req->memory_mib || sum == 0) {
        if (mem_place(h, req, req->memory_mib, mask, false, p, err) < 0)
            return -1;
        p->mem_nodes = mask; /* as it runs, even if one node would do */
        return 0;
    }
    memset(p->mem, 0, sizeof(p->mem));
    for (unsigned n = 0; n < PLACE_MAX_NODES; n++) {
        uint64_t m = res->node_memory_mib[n];
        if (!m)
            continue;
        if (n >= h->n_nodes)
            return cgv_err(err, CGV_E_INVALID,
                           "%s: memory on NUMA node %u, which this host lacks", req->vm, n);
        if (m > h->free_mem[n])
            return cgv_err(err, CGV_E_CONFLICT,
                           "%s has %" PRIu64 " MiB on NUMA node %u, which has %" PRIu64
                           " MiB free", req->vm, m, n, h->free_mem[n]);
        p->mem[n] = m;
    }
    p->mem_nodes = mask;
    return 0;
}

static int adopt_plan(const struct place_host *h, const struct place_request *req,
                      const struct place_result *res, struct place_plan *p,
                      struct cgv_error *err)
{
    struct place_cpuset all;
    uint32_t mask = 0;

    memset(p, 0, sizeof(*p));
    p->group = -1;
    if (place_find_vm(h, req->vm) >= 0)
        return cgv_err(err, CGV_E_CONFLICT, "%s already holds an allocation on this host",
                       req->vm);
    if (res->vcpus != req->vcpus)
        return cgv_err(err, CGV_E_INVALID, "%s: the running VM has %u %s, the request %u",
                       req->vm, res->vcpus, plural(res->vcpus, "vCPU", "vCPUs"), req->vcpus);
    place_cpuset_clear(&all);
    for (unsigned v = 0; v < res->vcpus; v++)
        for (unsigned w = 0; w < PLACE_WORDS; w++)
            all.bits[w] |= res->vcpu[v].bits[w];

    switch (req->policy) {
    case PLACE_DEDICATED:
        for (unsigned v = 0; v < req->vcpus; v++) {
            unsigned cpu = 0;
            if (single_cpu(h, req, res, v, &cpu, err) < 0)
                return -1;
            for (unsigned u = 0; u < v; u++) {
                if (p->vcpu_cpu[u] == cpu)
                    return cgv_err(err, CGV_E_INVALID, "%s: vCPUs %u and %u share CPU %u",
                                   req->vm, u, v, cpu);
            }
            p->vcpu_cpu[v] = (uint16_t)cpu;
        }
        if (adopt_cores(h, req, &all, false, p, err) < 0)
            return -1;
        if (pool_guard(h, req, pool_taken_by_cores(h, p), err) < 0)
            return -1;
        break;
    case PLACE_PINNED:
        if (check_pinned(h, req, err) < 0)
            return -1;
        for (size_t i = 0; i < req->n_pinned; i++) {
            p->held[p->n_held++] = (uint16_t)req->pinned[i];
            p->cpu_nodes |= 1u << h->cpu_node[req->pinned[i]];
        }
        for (unsigned v = 0; v < req->vcpus; v++) {
            unsigned cpu = 0;
            bool listed = false;
            if (single_cpu(h, req, res, v, &cpu, err) < 0)
                return -1;
            for (size_t i = 0; i < req->n_pinned; i++)
                listed |= req->pinned[i] == cpu;
            if (!listed)
                return cgv_err(err, CGV_E_INVALID,
                               "%s: vCPU %u runs on CPU %u, which is not one of its pinned CPUs",
                               req->vm, v, cpu);
            p->vcpu_cpu[v] = (uint16_t)cpu;
        }
        if (req->realtime && rt_guard(h, req, err) < 0)
            return -1;
        break;
    case PLACE_SHARED_GROUP: {
        int g = find_group(h, req->group);
        if (place_cpuset_count(&all) == 0)
            return cgv_err(err, CGV_E_INVALID, "%s: its vCPUs run nowhere", req->vm);
        if (g >= 0) {
            const struct place_group *grp = &h->groups[g];
            for (unsigned w = 0; w < PLACE_WORDS; w++) {
                if (all.bits[w] & ~grp->cpus.bits[w]) {
                    char a[256], b[256];
                    place_cpuset_format(&all, a, sizeof(a));
                    place_cpuset_format(&grp->cpus, b, sizeof(b));
                    return cgv_err(err, CGV_E_CONFLICT,
                                   "%s runs on %s, but its group %s holds %s", req->vm, a,
                                   req->group, b);
                }
            }
            p->group = g;
            p->cpu_nodes = grp->nodes;
        } else {
            p->new_group = true;
            if (adopt_cores(h, req, &all, true, p, err) < 0)
                return -1;
            if (pool_guard(h, req, pool_taken_by_cores(h, p), err) < 0)
                return -1;
        }
        break;
    }
    case PLACE_FLOATING:
        if (h->pool_total == 0 && !h->floating_on_hk)
            return cgv_err(err, CGV_E_CONFLICT, "%s needs the shared pool, which is empty",
                           req->vm);
        /* its vCPUs follow its memory (they run wherever the pool of
         * those nodes is now) */
        p->cpu_nodes = (uint32_t)res->nodes.bits[0] & h->cpu_node_mask;
        if (!p->cpu_nodes && res->node >= 0 && (unsigned)res->node < h->n_nodes)
            p->cpu_nodes = (1u << res->node) & h->cpu_node_mask;
        for (unsigned cpu = 0; cpu < h->n_cpu_ids && !p->cpu_nodes; cpu++) {
            if (place_cpuset_has(&all, cpu) && h->role[cpu] != PR_ABSENT)
                p->cpu_nodes |= 1u << h->cpu_node[cpu];
        }
        if (!p->cpu_nodes)
            p->cpu_nodes = h->cpu_node_mask;
        break;
    }

    for (unsigned n = 0; n < PLACE_MAX_NODES; n++) {
        if (!place_cpuset_has(&res->nodes, n))
            continue;
        if (n >= h->n_nodes)
            return cgv_err(err, CGV_E_INVALID, "%s: memory on NUMA node %u, which this host lacks",
                           req->vm, n);
        mask |= 1u << n;
    }
    for (unsigned n = PLACE_MAX_NODES; n < PLACE_MAX_CPUS; n++) {
        if (place_cpuset_has(&res->nodes, n))
            return cgv_err(err, CGV_E_INVALID, "%s: memory on NUMA node %u, which this host lacks",
                           req->vm, n);
    }
    if (!mask) {
        if (res->node >= 0 && (unsigned)res->node < h->n_nodes)
            mask = 1u << res->node;
        else
            mask = p->cpu_nodes;
    }
    if (adopt_memory(h, req, res, mask, p, err) < 0)
        return -1;
    p->cores_left = h->free_cores_total - p->n_cores;
    return 0;
}

int place_adopt(struct place_host *h, const struct place_request *req,
                const struct place_result *res, struct cgv_error *err)
{
    struct place_plan p;

    if (place_validate_request(req, err) < 0 || adopt_plan(h, req, res, &p, err) < 0)
        return -1;
    place_commit(h, req, &p, NULL);
    return 0;
}
