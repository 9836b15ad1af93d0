/* Tests of CPU/NUMA placement (src/place): topology parsing of every
 * fixture (capabilities XML, sysfs trees) into a transcript and against
 * the synthetic topologies they were generated from; scenario files
 * replayed against a host or a cluster, their transcripts compared to
 * .expected files (REGENERATE=1 rewrites them); and random request storms
 * on random topologies checking the invariants after every step (no CPU
 * dedicated twice, dedicated cores in nobody else's sets, emulators on
 * housekeeping, memory per node adds up), that a failed call changes
 * nothing, that adopting everything on a fresh host gives the same state,
 * that the same sequence gives the same placement, and that the cluster
 * picks what a brute-force best fit picks, never an avoided host. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "place.h"
#include "place_int.h"

#ifndef PLACE_FIXTURES
#error "PLACE_FIXTURES must name the fixture directory"
#endif

#define MAX_LIVE 512

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static unsigned rnd_in(unsigned lo, unsigned hi)
{
    return lo + rnd() % (hi - lo + 1);
}

static char *slurp(const char *path)
{
    char *text = NULL;
    struct cgv_error err = {0};

    if (cgv_read_file(path, 16 << 20, &text, NULL, &err) < 0)
        fail_msg("%s: %s", path, err.msg);
    return text;
}

static void fmt_set(const struct place_cpuset *s, char *buf, size_t cap)
{
    place_cpuset_format(s, buf, cap);
    if (!buf[0])
        snprintf(buf, cap, "-");
}

static bool set_eq(const struct place_cpuset *a, const struct place_cpuset *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

static bool result_eq(const struct place_result *a, const struct place_result *b)
{
    if (a->vcpus != b->vcpus || a->node != b->node || !set_eq(&a->nodes, &b->nodes) ||
        !set_eq(&a->emulator, &b->emulator) ||
        memcmp(a->node_memory_mib, b->node_memory_mib, sizeof(a->node_memory_mib)) != 0)
        return false;
    for (unsigned v = 0; v < a->vcpus; v++) {
        if (!set_eq(&a->vcpu[v], &b->vcpu[v]))
            return false;
    }
    return true;
}

static void print_result(FILE *out, const struct place_result *r)
{
    char buf[4096], nodes[64];

    fmt_set(&r->nodes, nodes, sizeof(nodes));
    fprintf(out, "  ok node %d mem", r->node);
    for (unsigned n = 0, any = 0; n < PLACE_MAX_NODES; n++) {
        if (r->node_memory_mib[n])
            fprintf(out, "%s%u:%" PRIu64, any++ ? "," : " ", n, r->node_memory_mib[n]);
        if (n == PLACE_MAX_NODES - 1 && !any)
            fprintf(out, " -");
    }
    fprintf(out, " nodes %s", nodes);
    fmt_set(&r->emulator, buf, sizeof(buf));
    fprintf(out, " emu %s vcpu", buf);
    for (unsigned v = 0; v < r->vcpus;) {
        unsigned w = v;
        while (w + 1 < r->vcpus && set_eq(&r->vcpu[w + 1], &r->vcpu[v]))
            w++;
        fmt_set(&r->vcpu[v], buf, sizeof(buf));
        if (w == v)
            fprintf(out, " %u:%s", v, buf);
        else
            fprintf(out, " %u-%u:%s", v, w, buf);
        v = w + 1;
    }
    fputc('\n', out);
}

static void print_free(FILE *out, const struct place_host *h)
{
    struct place_free f;
    char pool[4096];

    place_host_free_info(h, &f);
    fmt_set(&f.pool, pool, sizeof(pool));
    fprintf(out, "  = free cores");
    for (unsigned n = 0; n < f.n_nodes; n++)
        fprintf(out, "%s%u", n ? "," : " ", f.free_cores[n]);
    fprintf(out, " mem");
    for (unsigned n = 0; n < f.n_nodes; n++) {
        if (f.free_memory_mib[n] == UINT64_MAX)
            fprintf(out, "%s?", n ? "," : " ");
        else
            fprintf(out, "%s%" PRIu64, n ? "," : " ", f.free_memory_mib[n]);
    }
    fprintf(out, " pool %s\n", pool);
}

/* ---- invariants ------------------------------------------------------------ */

struct live {
    char name[PLACE_NAME_MAX];
    int host; /* cluster scenarios */
    struct place_request req;
};

/* Check everything a host promises, from the outside: its free info and
 * the result of every VM it holds. */
static void check_host(const struct place_host *h, const struct place_topology *topo,
                       const struct live *live, size_t n_live, const char *where)
{
    static struct place_result res[MAX_LIVE];
    struct place_free f;
    int core_of[PLACE_MAX_CPUS];
    int ded_core_owner[PLACE_MAX_CPUS]; /* by core key */
    unsigned pins[PLACE_MAX_CPUS] = {0};
    bool rt_cpu[PLACE_MAX_CPUS] = {0};
    uint64_t mem_used[PLACE_MAX_NODES] = {0};
    unsigned n_cores = 0;
    struct place_cpuset node_cpus[PLACE_MAX_NODES];

    place_host_free_info(h, &f);
    memset(node_cpus, 0, sizeof(node_cpus));
    for (unsigned i = 0; i < PLACE_MAX_CPUS; i++) {
        core_of[i] = -1;
        ded_core_owner[i] = -1;
    }
    for (unsigned i = 0; i < topo->n_cpus; i++) {
        const struct place_cpu *c = &topo->cpus[i];
        for (unsigned j = 0; j < i; j++) {
            if (topo->cpus[j].socket == c->socket && topo->cpus[j].core == c->core)
                core_of[c->id] = core_of[topo->cpus[j].id];
        }
        if (core_of[c->id] < 0)
            core_of[c->id] = (int)n_cores++;
        place_cpuset_add(&node_cpus[c->node], c->id);
    }
    for (unsigned cpu = 0; cpu < PLACE_MAX_CPUS; cpu++) {
        if (place_cpuset_has(&f.pool, cpu) && place_cpuset_has(&f.housekeeping, cpu))
            fail_msg("%s: CPU %u is housekeeping and in the pool", where, cpu);
        if ((place_cpuset_has(&f.pool, cpu) || place_cpuset_has(&f.housekeeping, cpu)) &&
            core_of[cpu] < 0)
            fail_msg("%s: CPU %u does not exist but is used", where, cpu);
    }
    if (n_live > MAX_LIVE)
        fail_msg("too many live VMs");
    /* results, and who holds which dedicated core */
    for (size_t i = 0; i < n_live; i++) {
        const struct place_request *q = &live[i].req;
        struct cgv_error err = {0};
        uint64_t sum = 0;

        memset(&res[i], 0, sizeof(res[i]));
        if (place_host_result(h, live[i].name, &res[i], &err) < 0)
            fail_msg("%s: %s: %s", where, live[i].name, err.msg);
        if (res[i].vcpus != q->vcpus)
            fail_msg("%s: %s has %u vCPUs, asked %u", where, live[i].name, res[i].vcpus,
                     q->vcpus);
        if (!set_eq(&res[i].emulator, &f.housekeeping))
            fail_msg("%s: %s: emulator not on housekeeping", where, live[i].name);
        if (q->numa == PLACE_NUMA_STRICT && res[i].node < 0)
            fail_msg("%s: %s is numa strict but spans nodes", where, live[i].name);
        for (unsigned n = 0; n < PLACE_MAX_NODES; n++) {
            sum += res[i].node_memory_mib[n];
            mem_used[n] += res[i].node_memory_mib[n];
            if (res[i].node_memory_mib[n] && !place_cpuset_has(&res[i].nodes, n))
                fail_msg("%s: %s: memory on node %u outside its nodeset", where, live[i].name,
                         n);
        }
        if (!topo->memory_unknown && sum != q->memory_mib)
            fail_msg("%s: %s: %" PRIu64 " MiB charged, asked %" PRIu64, where, live[i].name,
                     sum, q->memory_mib);
        if (res[i].node >= 0) {
            for (unsigned v = 0; v < res[i].vcpus; v++) {
                for (unsigned w = 0; w < PLACE_WORDS; w++) {
                    if (res[i].vcpu[v].bits[w] & ~node_cpus[res[i].node].bits[w])
                        fail_msg("%s: %s: node %d but a vCPU runs elsewhere", where,
                                 live[i].name, res[i].node);
                }
            }
            for (unsigned n = 0; n < PLACE_MAX_NODES; n++) {
                if (res[i].node_memory_mib[n] && n != (unsigned)res[i].node)
                    fail_msg("%s: %s: node %d but memory on %u", where, live[i].name,
                             res[i].node, n);
            }
        }
        for (unsigned v = 0; v < res[i].vcpus; v++) {
            if (place_cpuset_count(&res[i].vcpu[v]) == 0)
                fail_msg("%s: %s: vCPU %u runs nowhere", where, live[i].name, v);
            for (unsigned cpu = 0; cpu < PLACE_MAX_CPUS; cpu++) {
                if (!place_cpuset_has(&res[i].vcpu[v], cpu))
                    continue;
                if (core_of[cpu] < 0)
                    fail_msg("%s: %s: vCPU %u on absent CPU %u", where, live[i].name, v, cpu);
                if (place_cpuset_has(&f.housekeeping, cpu))
                    fail_msg("%s: %s: vCPU %u on housekeeping CPU %u", where, live[i].name, v,
                             cpu);
            }
        }
        if (q->policy == PLACE_DEDICATED) {
            for (unsigned v = 0; v < res[i].vcpus; v++) {
                unsigned cpu = 0;
                if (place_cpuset_count(&res[i].vcpu[v]) != 1)
                    fail_msg("%s: %s: dedicated vCPU %u on several CPUs", where, live[i].name,
                             v);
                while (!place_cpuset_has(&res[i].vcpu[v], cpu))
                    cpu++;
                for (unsigned u = 0; u < v; u++) {
                    if (place_cpuset_has(&res[i].vcpu[u], cpu))
                        fail_msg("%s: %s: CPU %u dedicated twice", where, live[i].name, cpu);
                    if (q->isolate_smt) {
                        for (unsigned c2 = 0; c2 < PLACE_MAX_CPUS; c2++) {
                            if (place_cpuset_has(&res[i].vcpu[u], c2) &&
                                core_of[c2] == core_of[cpu])
                                fail_msg("%s: %s: isolate_smt but vCPUs %u and %u share a core",
                                         where, live[i].name, u, v);
                        }
                    }
                }
                if (ded_core_owner[core_of[cpu]] >= 0 &&
                    ded_core_owner[core_of[cpu]] != (int)i)
                    fail_msg("%s: core of CPU %u dedicated to %s and %s", where, cpu,
                             live[ded_core_owner[core_of[cpu]]].name, live[i].name);
                ded_core_owner[core_of[cpu]] = (int)i;
            }
        }
        if (q->policy == PLACE_PINNED) {
            for (size_t k = 0; k < q->n_pinned; k++) {
                pins[q->pinned[k]]++;
                if (q->realtime)
                    rt_cpu[q->pinned[k]] = true;
            }
        }
    }
    /* nobody else on a dedicated core; the pool, groups, pinned apart */
    for (size_t i = 0; i < n_live; i++) {
        const struct place_request *q = &live[i].req;
        for (unsigned v = 0; v < res[i].vcpus; v++) {
            for (unsigned cpu = 0; cpu < PLACE_MAX_CPUS; cpu++) {
                int owner;
                if (!place_cpuset_has(&res[i].vcpu[v], cpu))
                    continue;
                owner = ded_core_owner[core_of[cpu]];
                if (owner >= 0 && owner != (int)i)
                    fail_msg("%s: %s runs on CPU %u, on a core dedicated to %s", where,
                             live[i].name, cpu, live[owner].name);
                /* only its realtime owner (pins[] counts it) runs there */
                if (rt_cpu[cpu] && !(q->policy == PLACE_PINNED && q->realtime && pins[cpu] == 1))
                    fail_msg("%s: %s runs on CPU %u, held by a realtime VM", where,
                             live[i].name, cpu);
                if (q->policy == PLACE_FLOATING && !place_cpuset_has(&f.pool, cpu))
                    fail_msg("%s: floating %s on CPU %u outside the pool", where, live[i].name,
                             cpu);
                if (q->policy == PLACE_SHARED_GROUP && place_cpuset_has(&f.pool, cpu))
                    fail_msg("%s: group VM %s on pool CPU %u", where, live[i].name, cpu);
            }
        }
    }
    for (unsigned cpu = 0; cpu < PLACE_MAX_CPUS; cpu++) {
        if (place_cpuset_has(&f.pool, cpu) && core_of[cpu] >= 0 &&
            ded_core_owner[core_of[cpu]] >= 0)
            fail_msg("%s: CPU %u is in the pool and on a dedicated core", where, cpu);
        if (place_cpuset_has(&f.pool, cpu) && rt_cpu[cpu])
            fail_msg("%s: realtime CPU %u is in the pool", where, cpu);
    }
    /* free cores: every CPU of the core in the pool and pinned by nobody */
    {
        unsigned want[PLACE_MAX_NODES] = {0};
        for (unsigned k = 0; k < n_cores; k++) {
            bool free_core = true;
            int node = -1;
            for (unsigned i = 0; i < topo->n_cpus; i++) {
                unsigned cpu = topo->cpus[i].id;
                if (core_of[cpu] != (int)k)
                    continue;
                if (node < 0)
                    node = (int)topo->cpus[i].node;
                if (!place_cpuset_has(&f.pool, cpu) || pins[cpu])
                    free_core = false;
            }
            if (free_core)
                want[node]++;
        }
        for (unsigned n = 0; n < f.n_nodes; n++) {
            if (want[n] != f.free_cores[n])
                fail_msg("%s: node %u reports %u free cores, there are %u", where, n,
                         f.free_cores[n], want[n]);
        }
    }
    if (!topo->memory_unknown) {
        for (unsigned n = 0; n < f.n_nodes; n++) {
            if (f.free_memory_mib[n] + mem_used[n] != topo->node_memory_mib[n])
                fail_msg("%s: node %u: %" PRIu64 " MiB free + %" PRIu64
                         " used != %" PRIu64, where, n, f.free_memory_mib[n], mem_used[n],
                         topo->node_memory_mib[n]);
        }
    }
}

/* ---- requests from text ---------------------------------------------------- */

static int parse_policy(const char *s)
{
    for (int p = PLACE_FLOATING; p <= PLACE_PINNED; p++) {
        if (strcmp(s, place_policy_name((enum place_policy)p)) == 0)
            return p;
    }
    return -1;
}

/* "key=value ..." after the VM name; at= (adopt: vCPU sets split by ';'),
 * nodes=, node=, avoid= are filled when the pointers are given. */
static void parse_req(const char *where, char *args, struct place_request *req,
                      struct place_result *at, int *avoid, size_t *n_avoid)
{
    char *save = NULL;
    char *tok = strtok_r(args, " \t", &save);

    memset(req, 0, sizeof(*req));
    req->vcpus = 1;
    if (!tok)
        fail_msg("%s: a VM name is missing", where);
    cgv_strlcpy(req->vm, tok, sizeof(req->vm));
    if (at) {
        memset(at, 0, sizeof(*at));
        at->node = -1;
    }
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
        char *val = strchr(tok, '=');
        struct cgv_error err = {0};
        if (val)
            *val++ = '\0';
        if (strcmp(tok, "vcpus") == 0 && val) {
            req->vcpus = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(tok, "mem") == 0 && val) {
            req->memory_mib = strtoull(val, NULL, 10);
        } else if (strcmp(tok, "policy") == 0 && val) {
            int p = parse_policy(val);
            if (p < 0)
                fail_msg("%s: unknown policy %s", where, val);
            req->policy = (enum place_policy)p;
        } else if (strcmp(tok, "isolate") == 0) {
            req->isolate_smt = true;
        } else if (strcmp(tok, "rt") == 0) {
            req->realtime = true;
        } else if (strcmp(tok, "strict") == 0) {
            req->numa = PLACE_NUMA_STRICT;
        } else if (strcmp(tok, "group") == 0 && val) {
            cgv_strlcpy(req->group, val, sizeof(req->group));
            if (req->policy == PLACE_FLOATING)
                req->policy = PLACE_SHARED_GROUP;
        } else if (strcmp(tok, "cores") == 0 && val) {
            req->group_cores = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(tok, "pin") == 0 && val) {
            /* an ordered list: 5,3,7 */
            char *s2 = NULL;
            for (char *p = strtok_r(val, ",", &s2); p; p = strtok_r(NULL, ",", &s2))
                req->pinned[req->n_pinned++] = (unsigned)strtoul(p, NULL, 10);
            if (req->policy == PLACE_FLOATING)
                req->policy = PLACE_PINNED;
        } else if (strcmp(tok, "at") == 0 && val && at) {
            char *s2 = NULL;
            for (char *p = strtok_r(val, ";", &s2); p; p = strtok_r(NULL, ";", &s2)) {
                if (place_cpuset_parse(p, &at->vcpu[at->vcpus++], &err) < 0)
                    fail_msg("%s: %s", where, err.msg);
            }
        } else if (strcmp(tok, "nodes") == 0 && val && at) {
            if (place_cpuset_parse(val, &at->nodes, &err) < 0)
                fail_msg("%s: %s", where, err.msg);
        } else if (strcmp(tok, "node") == 0 && val && at) {
            at->node = atoi(val);
        } else if (strcmp(tok, "nodemem") == 0 && val && at) {
            /* 0:2048,1:1024 */
            char *s2 = NULL;
            for (char *p = strtok_r(val, ",", &s2); p; p = strtok_r(NULL, ",", &s2)) {
                unsigned n;
                unsigned long long m;
                if (sscanf(p, "%u:%llu", &n, &m) != 2 || n >= PLACE_MAX_NODES)
                    fail_msg("%s: nodemem N:MiB,...", where);
                at->node_memory_mib[n] = m;
            }
        } else if (strcmp(tok, "avoid") == 0 && val && avoid) {
            char *s2 = NULL;
            for (char *p = strtok_r(val, ",", &s2); p; p = strtok_r(NULL, ",", &s2))
                avoid[(*n_avoid)++] = atoi(p);
        } else {
            fail_msg("%s: unknown argument %s", where, tok);
        }
    }
}

/* ---- scenarios ------------------------------------------------------------- */

struct scn {
    struct place_topology topo;
    bool have_hk;
    struct place_cpuset hk;
    struct place_host *h;
    struct place_cluster *c;
    struct live live[MAX_LIVE];
    size_t n_live;
};

static void live_add(struct scn *s, const struct place_request *req, int host)
{
    if (s->n_live >= MAX_LIVE)
        fail_msg("too many live VMs");
    cgv_strlcpy(s->live[s->n_live].name, req->vm, PLACE_NAME_MAX);
    s->live[s->n_live].req = *req;
    s->live[s->n_live].host = host;
    s->n_live++;
}

static void live_del(struct scn *s, const char *name, int host)
{
    for (size_t i = 0; i < s->n_live; i++) {
        if (strcmp(s->live[i].name, name) == 0 && s->live[i].host == host) {
            memmove(&s->live[i], &s->live[i + 1], (s->n_live - i - 1) * sizeof(s->live[0]));
            s->n_live--;
            return;
        }
    }
}

static void load_topo(const char *where, char *args, struct place_topology *topo)
{
    char kind[32] = "", file[256] = "";
    unsigned a, b, c, d;
    unsigned long long m;
    struct cgv_error err = {0};
    char path[600];

    if (sscanf(args, "synthetic %u %u %u %u %llu", &a, &b, &c, &d, &m) == 5) {
        place_topology_synthetic(topo, a, b, c, d, m);
        return;
    }
    if (sscanf(args, "%31s %255s", kind, file) != 2)
        fail_msg("%s: host synthetic S C T N MIB | caps FILE | sysfs DIR", where);
    snprintf(path, sizeof(path), "%s/%s", PLACE_FIXTURES, file);
    if (strcmp(kind, "caps") == 0) {
        char *xml = slurp(path);
        int rc = place_topology_from_caps(xml, topo, &err);
        free(xml);
        if (rc < 0)
            fail_msg("%s: %s", where, err.msg);
    } else if (strcmp(kind, "sysfs") == 0) {
        if (place_topology_from_sysfs(path, topo, &err) < 0)
            fail_msg("%s: %s", where, err.msg);
    } else {
        fail_msg("%s: unknown topology kind %s", where, kind);
    }
}

/* Re-create the host and adopt every VM it holds (in reverse order): the
 * free info and every result must come out the same. */
static void restart_host(struct scn *s, FILE *out, const char *where)
{
    static struct place_result before[MAX_LIVE];
    struct place_result after;
    struct place_free f0, f1;
    struct place_host *h2 = place_host_new(&s->topo, s->have_hk ? &s->hk : NULL);

    assert_non_null(h2);
    place_host_free_info(s->h, &f0);
    for (size_t i = 0; i < s->n_live; i++) {
        struct cgv_error err = {0};
        memset(&before[i], 0, sizeof(before[i]));
        if (place_host_result(s->h, s->live[i].name, &before[i], &err) < 0)
            fail_msg("%s: %s", where, err.msg);
    }
    for (size_t k = s->n_live; k-- > 0;) {
        struct cgv_error err = {0};
        if (place_adopt(h2, &s->live[k].req, &before[k], &err) < 0)
            fail_msg("%s: adopting %s: %s", where, s->live[k].name, err.msg);
    }
    place_host_free_info(h2, &f1);
    if (memcmp(&f0, &f1, sizeof(f0)) != 0)
        fail_msg("%s: the free info differs after adopting everything", where);
    for (size_t i = 0; i < s->n_live; i++) {
        struct cgv_error err = {0};
        memset(&after, 0, sizeof(after));
        if (place_host_result(h2, s->live[i].name, &after, &err) < 0)
            fail_msg("%s: %s", where, err.msg);
        if (!result_eq(&before[i], &after)) {
            fprintf(stderr, "%s (%s) before:\n", s->live[i].name,
                    place_policy_name(s->live[i].req.policy));
            print_result(stderr, &before[i]);
            fprintf(stderr, "after:\n");
            print_result(stderr, &after);
            fail_msg("%s: %s is placed differently after adoption", where, s->live[i].name);
        }
    }
    place_host_free(s->h);
    s->h = h2;
    if (out)
        fprintf(out, "  restart: %zu VMs adopted, same state\n", s->n_live);
}

static void print_err(FILE *out, const struct cgv_error *err)
{
    fprintf(out, "  error %s: %s\n", cgv_errcode_name(err->code), err->msg);
}

static void scn_line(struct scn *s, FILE *out, char *line, const char *where)
{
    char cmd[32] = "";
    char *args;
    struct place_request req;
    struct place_result res, at;
    struct cgv_error err = {0};
    struct place_free before, after;

    sscanf(line, "%31s", cmd);
    args = line + strlen(cmd);
    while (*args == ' ')
        args++;
    if (strcmp(cmd, "host") == 0) {
        char *hk = strstr(args, " hk=");
        s->have_hk = false;
        if (hk) {
            *hk = '\0';
            if (place_cpuset_parse(hk + 4, &s->hk, &err) < 0)
                fail_msg("%s: %s", where, err.msg);
            s->have_hk = true;
        }
        load_topo(where, args, &s->topo);
        place_host_free(s->h);
        s->n_live = 0;
        s->h = place_host_new(&s->topo, s->have_hk ? &s->hk : NULL);
        if (!s->h) {
            fprintf(out, "  no host\n");
            return;
        }
        print_free(out, s->h);
        return;
    }
    if (strcmp(cmd, "cluster") == 0) {
        unsigned n;
        char rest[256];
        if (sscanf(args, "%u %255[^\n]", &n, rest) != 2)
            fail_msg("%s: cluster N TOPOLOGY", where);
        load_topo(where, rest, &s->topo);
        place_cluster_free(s->c);
        s->n_live = 0;
        s->c = place_cluster_new();
        for (unsigned i = 0; i < n; i++) {
            char name[16];
            snprintf(name, sizeof(name), "h%u", i);
            assert_int_equal(place_cluster_add_host(s->c, name, &s->topo, NULL), (int)i);
        }
        return;
    }
    if (strcmp(cmd, "calloc") == 0) {
        int avoid[64];
        size_t n_avoid = 0;
        int hi;
        parse_req(where, args, &req, NULL, avoid, &n_avoid);
        memset(&res, 0, sizeof(res));
        hi = place_cluster_alloc(s->c, &req, avoid, n_avoid, &res, &err);
        if (hi < 0) {
            print_err(out, &err);
            return;
        }
        fprintf(out, "  -> %s\n", place_cluster_host_name(s->c, hi));
        print_result(out, &res);
        live_add(s, &req, hi);
        return;
    }
    if (strcmp(cmd, "crelease") == 0) {
        int hi;
        char name[PLACE_NAME_MAX];
        if (sscanf(args, "%d %63s", &hi, name) != 2)
            fail_msg("%s: crelease HOST VM", where);
        place_cluster_release(s->c, hi, name);
        live_del(s, name, hi);
        return;
    }
    if (strcmp(cmd, "cfree") == 0) {
        fprintf(out, "  =");
        for (size_t i = 0; i < place_cluster_n_hosts(s->c); i++) {
            struct place_free f;
            unsigned cores = 0;
            place_host_free_info(place_cluster_host(s->c, (int)i), &f);
            for (unsigned n = 0; n < f.n_nodes; n++)
                cores += f.free_cores[n];
            fprintf(out, " %s:%u", place_cluster_host_name(s->c, (int)i), cores);
        }
        fputc('\n', out);
        return;
    }
    if (!s->h)
        fail_msg("%s: no host yet", where);
    place_host_free_info(s->h, &before);
    if (strcmp(cmd, "alloc") == 0) {
        parse_req(where, args, &req, NULL, NULL, NULL);
        memset(&res, 0, sizeof(res));
        if (place_alloc(s->h, &req, &res, &err) < 0) {
            print_err(out, &err);
            place_host_free_info(s->h, &after);
            if (memcmp(&before, &after, sizeof(before)) != 0)
                fail_msg("%s: a failed alloc changed the host", where);
            return;
        }
        print_result(out, &res);
        live_add(s, &req, -1);
    } else if (strcmp(cmd, "adopt") == 0) {
        parse_req(where, args, &req, &at, NULL, NULL);
        if (at.vcpus == 0)
            at.vcpus = req.vcpus;
        if (place_adopt(s->h, &req, &at, &err) < 0) {
            print_err(out, &err);
            place_host_free_info(s->h, &after);
            if (memcmp(&before, &after, sizeof(before)) != 0)
                fail_msg("%s: a failed adopt changed the host", where);
            return;
        }
        memset(&res, 0, sizeof(res));
        assert_int_equal(place_host_result(s->h, req.vm, &res, &err), 0);
        print_result(out, &res);
        live_add(s, &req, -1);
    } else if (strcmp(cmd, "release") == 0) {
        char name[PLACE_NAME_MAX];
        if (sscanf(args, "%63s", name) != 1)
            fail_msg("%s: release VM", where);
        place_release(s->h, name);
        live_del(s, name, -1);
    } else if (strcmp(cmd, "show") == 0) {
        char name[PLACE_NAME_MAX];
        if (sscanf(args, "%63s", name) != 1)
            fail_msg("%s: show VM", where);
        memset(&res, 0, sizeof(res));
        if (place_host_result(s->h, name, &res, &err) < 0)
            print_err(out, &err);
        else
            print_result(out, &res);
        return;
    } else if (strcmp(cmd, "restart") == 0) {
        restart_host(s, out, where);
        return;
    } else {
        fail_msg("%s: unknown command %s", where, cmd);
    }
    print_free(out, s->h);
}

static void check_cluster(struct scn *s, const char *where)
{
    for (size_t i = 0; i < place_cluster_n_hosts(s->c); i++) {
        static struct live mine[MAX_LIVE];
        size_t n = 0;
        for (size_t k = 0; k < s->n_live; k++) {
            if (s->live[k].host == (int)i)
                mine[n++] = s->live[k];
        }
        check_host(place_cluster_host(s->c, (int)i), &s->topo, mine, n, where);
    }
}

static char *replay(const char *path)
{
    FILE *in = fopen(path, "r");
    char *buf = NULL, line[1024];
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    static struct scn s;
    int lineno = 0;

    assert_non_null(in);
    assert_non_null(out);
    memset(&s, 0, sizeof(s));
    while (fgets(line, sizeof(line), in)) {
        char where[600];
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            fprintf(out, "%s\n", line);
            continue;
        }
        fprintf(out, "> %s\n", line);
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        scn_line(&s, out, line, where);
        if (s.h)
            check_host(s.h, &s.topo, s.live, s.n_live, where);
        if (s.c)
            check_cluster(&s, where);
    }
    fclose(in);
    fclose(out);
    place_host_free(s.h);
    place_cluster_free(s.c);
    return buf;
}

static void compare_or_write(const char *exp_path, char *got)
{
    FILE *f;

    if (getenv("REGENERATE")) {
        f = fopen(exp_path, "w");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    } else {
        char *want = NULL;
        size_t n;
        f = fopen(exp_path, "r");
        if (!f)
            fail_msg("%s: %s (run with REGENERATE=1)", exp_path, strerror(errno));
        want = malloc(4 << 20);
        n = fread(want, 1, (4 << 20) - 1, f);
        want[n] = '\0';
        fclose(f);
        if (strcmp(want, got) != 0) {
            print_error("%s differs; got:\n%s\n", exp_path, got);
            free(want);
            free(got);
            fail();
        }
        free(want);
    }
    free(got);
}

static void test_scenario(void **state)
{
    const char *name = *state;
    char path[512], exp_path[512];

    snprintf(path, sizeof(path), "%s/%s", PLACE_FIXTURES, name);
    snprintf(exp_path, sizeof(exp_path), "%s/%.*s.expected", PLACE_FIXTURES,
             (int)(strlen(name) - 4), name);
    compare_or_write(exp_path, replay(path));
}

/* ---- topologies ------------------------------------------------------------ */

static void print_topo(FILE *out, const char *name, const struct place_topology *t)
{
    struct place_host *h = place_host_new(t, NULL);
    struct place_free f;
    char buf[4096];
    unsigned sockets = 0, cores = 0, max_threads = 0;

    assert_non_null(h);
    for (unsigned i = 0; i < t->n_cpus; i++) {
        bool new_socket = true, new_core = true;
        for (unsigned j = 0; j < i; j++) {
            if (t->cpus[j].socket == t->cpus[i].socket) {
                new_socket = false;
                if (t->cpus[j].core == t->cpus[i].core)
                    new_core = false;
            }
        }
        sockets += new_socket;
        cores += new_core;
    }
    max_threads = place_host_uniform_tpc(h);
    place_host_free_info(h, &f);
    fprintf(out, "%s: %u CPUs, %u cores, %u sockets, %u nodes, threads per core %u%s%s\n",
            name, t->n_cpus, cores, sockets, t->n_nodes, max_threads ? max_threads : h->tpc,
            max_threads ? "" : " at most (mixed)", t->memory_unknown ? ", memory unknown" : "");
    for (unsigned n = 0; n < t->n_nodes; n++) {
        struct place_cpuset s;
        place_cpuset_clear(&s);
        for (unsigned i = 0; i < t->n_cpus; i++) {
            if (t->cpus[i].node == n)
                place_cpuset_add(&s, t->cpus[i].id);
        }
        fmt_set(&s, buf, sizeof(buf));
        fprintf(out, "  node %u: CPUs %s, %" PRIu64 " MiB, %u free cores\n", n, buf,
                t->node_memory_mib[n], f.free_cores[n]);
    }
    /* the first and last four cores */
    fprintf(out, "  cores:");
    for (unsigned k = 0; k < h->n_cores; k++) {
        if (k == 4 && h->n_cores > 8) {
            fprintf(out, " …");
            k = h->n_cores - 4;
        }
        fprintf(out, " [");
        for (unsigned x = 0; x < h->cores[k].n; x++)
            fprintf(out, "%s%u", x ? "," : "", h->core_cpus[h->cores[k].first + x]);
        fprintf(out, "]");
    }
    fmt_set(&f.housekeeping, buf, sizeof(buf));
    fprintf(out, "\n  housekeeping %s\n", buf);
    place_host_free(h);
}

static const struct {
    const char *name;
    unsigned s, c, t, n;
    uint64_t mib;
} generated[] = {
    {"caps-1s-1c-1t-1n.xml", 1, 1, 1, 1, 2048},
    {"caps-1s-4c-2t-1n.xml", 1, 4, 2, 1, 16384},
    {"caps-1s-8c-1t-2n.xml", 1, 8, 1, 2, 32768},
    {"caps-2s-16c-2t-2n.xml", 2, 16, 2, 2, 131072},
    {"caps-2s-32c-1t-4n.xml", 2, 32, 1, 4, 65536},
    {"caps-4s-64c-2t-4n.xml", 4, 64, 2, 4, 262144},
    {"caps-odd-dies.xml", 1, 8, 2, 1, 16384},
    {"sysfs-1s-4c-2t-1n", 1, 4, 2, 1, 16384},
    {"sysfs-2s-4c-2t-2n", 2, 4, 2, 2, 8192},
};

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_topo(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return (strncmp(d->d_name, "caps-", 5) == 0 && n > 4 &&
            strcmp(d->d_name + n - 4, ".xml") == 0) ||
           strncmp(d->d_name, "sysfs-", 6) == 0;
}

static void test_topologies(void **state)
{
    struct dirent **names = NULL;
    int n = scandir(PLACE_FIXTURES, &names, is_topo, by_name);
    char *buf = NULL, exp_path[512];
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    static struct place_topology t, syn;

    (void)state;
    assert_true(n > 10);
    for (int i = 0; i < n; i++) {
        char path[600];
        struct cgv_error err = {0};
        int rc;
        snprintf(path, sizeof(path), "%s/%s", PLACE_FIXTURES, names[i]->d_name);
        if (names[i]->d_name[0] == 'c') {
            char *xml = slurp(path);
            rc = place_topology_from_caps(xml, &t, &err);
            free(xml);
        } else {
            rc = place_topology_from_sysfs(path, &t, &err);
        }
        if (rc < 0)
            fail_msg("%s: %s", path, err.msg);
        print_topo(out, names[i]->d_name, &t);
        for (size_t g = 0; g < CGV_ARRAY_LEN(generated); g++) {
            if (strcmp(generated[g].name, names[i]->d_name) != 0)
                continue;
            place_topology_synthetic(&syn, generated[g].s, generated[g].c, generated[g].t,
                                     generated[g].n, generated[g].mib);
            if (memcmp(&syn, &t, sizeof(t)) != 0)
                fail_msg("%s does not parse to the synthetic topology it was made from",
                         names[i]->d_name);
        }
        free(names[i]);
    }
    free(names);
    fclose(out);
    snprintf(exp_path, sizeof(exp_path), "%s/topologies.expected", PLACE_FIXTURES);
    compare_or_write(exp_path, buf);
}

static void expect_caps_error(const char *xml, const char *part)
{
    static struct place_topology t;
    struct cgv_error err = {0};

    assert_int_equal(place_topology_from_caps(xml, &t, &err), -1);
    assert_int_equal(err.code, CGV_E_INVALID);
    if (!strstr(err.msg, part))
        fail_msg("error '%s' does not say '%s'", err.msg, part);
    assert_int_equal(t.n_cpus, 0);
}

static void test_caps_errors(void **state)
{
    (void)state;
    expect_caps_error("<capabilities><host>", "not well-formed");
    expect_caps_error("<domain/>", "not <capabilities>");
    expect_caps_error("<capabilities/>", "no <host>");
    expect_caps_error("<capabilities><host/></capabilities>", "neither");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='16'/>"
                      "</cells></topology></host></capabilities>",
                      "NUMA node 16");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='0'><cpus>"
                      "<cpu id='1024' socket_id='0' core_id='0' siblings='0'/></cpus></cell>"
                      "</cells></topology></host></capabilities>",
                      "CPU 1024");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='0'><cpus>"
                      "<cpu id='1' socket_id='0' core_id='0' siblings='1'/>"
                      "<cpu id='1' socket_id='0' core_id='1' siblings='1'/></cpus></cell>"
                      "</cells></topology></host></capabilities>",
                      "CPU 1 is listed twice");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='0'><cpus>"
                      "<cpu id='0' socket_id='x' core_id='0' siblings='0'/></cpus></cell>"
                      "</cells></topology></host></capabilities>",
                      "malformed");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='0'><cpus>"
                      "<cpu id='0' socket_id='0' core_id='0' siblings='0-'/></cpus></cell>"
                      "</cells></topology></host></capabilities>",
                      "siblings");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='0'>"
                      "<memory unit='parsec'>5</memory><cpus>"
                      "<cpu id='0' socket_id='0' core_id='0' siblings='0'/></cpus></cell>"
                      "</cells></topology></host></capabilities>",
                      "unknown memory unit");
    expect_caps_error("<capabilities><host><topology><cells num='1'><cell id='0'><cpus>"
                      "<cpu id='0'/></cpus></cell></cells></topology></host></capabilities>",
                      "no online CPU");
}

static void test_caps_units_and_sysfs_errors(void **state)
{
    static struct place_topology t;
    struct cgv_error err = {0};

    (void)state;
    assert_int_equal(place_topology_from_caps(
                         "<capabilities><host><topology><cells num='2'><cell id='1'>"
                         "<memory unit='GiB'>2</memory><cpus><cpu id='3' socket_id='0' "
                         "core_id='0' siblings='3'/></cpus></cell></cells></topology></host>"
                         "</capabilities>",
                         &t, &err),
                     0);
    assert_int_equal(t.n_cpus, 1);
    assert_int_equal(t.n_nodes, 2);
    assert_int_equal(t.cpus[0].node, 1);
    assert_int_equal(t.node_memory_mib[1], 2048);
    assert_false(t.memory_unknown);
    assert_int_equal(place_topology_from_sysfs("/nonexistent-place-test", &t, &err), -1);
    assert_int_equal(err.code, CGV_E_INVALID);
}

/* ---- cpusets --------------------------------------------------------------- */

static void test_cpuset(void **state)
{
    struct place_cpuset s;
    struct cgv_error err = {0};
    char buf[64];
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"", ""},           {"0", "0"},         {"0-3,8,10-11", "0-3,8,10-11"},
        {"3,2,1,0", "0-3"}, {"0-7,^3", "0-2,4-7"}, {" 5\n", "5"},
        {"1023", "1023"},   {"0-1023,^1", "0,2-1023"},
    };
    static const char *bad[] = {"a", "1-", "3-1", "1,", "1024", "1,,2", "1 2", "-1", "0-1024"};

    (void)state;
    for (size_t i = 0; i < CGV_ARRAY_LEN(ok); i++) {
        if (place_cpuset_parse(ok[i].in, &s, &err) < 0)
            fail_msg("'%s': %s", ok[i].in, err.msg);
        place_cpuset_format(&s, buf, sizeof(buf));
        assert_string_equal(buf, ok[i].out);
    }
    for (size_t i = 0; i < CGV_ARRAY_LEN(bad); i++) {
        cgv_err_clear(&err);
        if (place_cpuset_parse(bad[i], &s, &err) == 0)
            fail_msg("'%s' parsed", bad[i]);
        assert_int_equal(err.code, CGV_E_INVALID);
    }
    place_cpuset_clear(&s);
    place_cpuset_add(&s, 5);
    place_cpuset_add(&s, 2000); /* ignored */
    assert_true(place_cpuset_has(&s, 5));
    assert_false(place_cpuset_has(&s, 2000));
    assert_int_equal(place_cpuset_count(&s), 1);
    /* a buffer too small holds whole ranges only */
    assert_int_equal(place_cpuset_parse("0-3,8,10-11", &s, &err), 0);
    place_cpuset_format(&s, buf, 8);
    assert_string_equal(buf, "0-3,8");
    assert_string_equal(place_policy_name(PLACE_SHARED_GROUP), "shared-group");
}

/* ---- random storms --------------------------------------------------------- */

static const char *const group_names[] = {"ga", "gb", "gc"};

static void random_request(struct place_request *req, const struct place_topology *t,
                           unsigned id)
{
    unsigned kind = rnd() % 100;
    unsigned max_cpu = t->cpus[t->n_cpus - 1].id;

    memset(req, 0, sizeof(*req));
    snprintf(req->vm, sizeof(req->vm), "vm-%u", id);
    req->vcpus = rnd() % 10 == 0 ? rnd_in(1, 64) : rnd_in(1, 6);
    req->memory_mib = rnd() % 5 == 0 ? 0 : rnd_in(1, 16) * 256;
    if (rnd() % 20 == 0)
        req->memory_mib = t->node_memory_mib[0] + 1;
    req->numa = rnd() % 3 == 0 ? PLACE_NUMA_STRICT : PLACE_NUMA_PREFER;
    if (kind < 30) {
        req->policy = PLACE_FLOATING;
    } else if (kind < 65) {
        req->policy = PLACE_DEDICATED;
        req->isolate_smt = rnd() % 3 == 0;
        req->realtime = rnd() % 4 == 0;
    } else if (kind < 80) {
        req->policy = PLACE_SHARED_GROUP;
        cgv_strlcpy(req->group, group_names[rnd() % 3], sizeof(req->group));
        req->group_cores = rnd_in(0, 3);
    } else {
        req->policy = PLACE_PINNED;
        req->n_pinned = rnd_in(1, req->vcpus < 4 ? req->vcpus : 4);
        for (size_t i = 0; i < req->n_pinned; i++) {
            unsigned cpu;
            bool dup;
            do {
                cpu = rnd() % 30 == 0 ? max_cpu + 1 + rnd() % 4 : t->cpus[rnd() % t->n_cpus].id;
                dup = false;
                for (size_t j = 0; j < i; j++)
                    dup |= req->pinned[j] == cpu;
            } while (dup);
            req->pinned[i] = cpu;
        }
        req->realtime = rnd() % 4 == 0;
        if (req->realtime && req->n_pinned < req->vcpus && rnd() % 2)
            req->vcpus = (unsigned)req->n_pinned;
    }
    if (rnd() % 50 == 0)
        req->isolate_smt = true; /* sometimes invalid */
}

static void random_topology(struct place_topology *t, struct place_cpuset *hk, bool *have_hk)
{
    unsigned sockets = rnd_in(1, 4), cores = rnd_in(1, 16), threads = rnd_in(1, 2);
    unsigned nodes = rnd_in(1, 4);

    if (rnd() % 10 == 0)
        threads = 4;
    place_topology_synthetic(t, sockets, cores, threads, nodes, rnd_in(2, 64) * 1024);
    *have_hk = rnd() % 3 == 0;
    place_cpuset_clear(hk);
    if (*have_hk) {
        unsigned n = rnd_in(1, 3);
        for (unsigned i = 0; i < n; i++)
            place_cpuset_add(hk, t->cpus[rnd() % t->n_cpus].id);
    }
}

static unsigned storm_ok[PLACE_PINNED + 1], storm_refused[PLACE_PINNED + 1], storm_restarts;

/* One storm: returns a hash of everything that happened (determinism). */
static uint64_t storm(uint64_t seed, unsigned steps)
{
    static struct scn s;
    uint64_t digest = 1469598103934665603ULL;
    unsigned next_id = 0;

    rng_state = seed * 2654435761u + 1;
    memset(&s, 0, sizeof(s));
    random_topology(&s.topo, &s.hk, &s.have_hk);
    s.h = place_host_new(&s.topo, s.have_hk ? &s.hk : NULL);
    assert_non_null(s.h);
    for (unsigned step = 0; step < steps; step++) {
        char where[64];
        unsigned what = rnd() % 100;
        snprintf(where, sizeof(where), "storm %" PRIu64 " step %u", seed, step);
        if (what < 60 && s.n_live < MAX_LIVE) {
            struct place_request req;
            struct place_result res;
            struct place_free before, after;
            struct cgv_error err = {0};
            random_request(&req, &s.topo, next_id++);
            place_host_free_info(s.h, &before);
            memset(&res, 0, sizeof(res));
            if (place_alloc(s.h, &req, &res, &err) == 0) {
                storm_ok[req.policy]++;
                live_add(&s, &req, -1);
                for (unsigned v = 0; v < res.vcpus; v++)
                    for (unsigned w = 0; w < PLACE_WORDS; w++)
                        digest = (digest ^ res.vcpu[v].bits[w]) * 1099511628211ULL;
                digest = (digest ^ (uint64_t)(res.node + 7)) * 1099511628211ULL;
            } else {
                storm_refused[req.policy]++;
                place_host_free_info(s.h, &after);
                if (memcmp(&before, &after, sizeof(before)) != 0)
                    fail_msg("%s: a failed alloc changed the host (%s)", where, err.msg);
                if ((err.code != CGV_E_CONFLICT && err.code != CGV_E_INVALID) || !err.msg[0])
                    fail_msg("%s: failure without a proper error", where);
                for (const char *p = err.msg; *p; p++)
                    digest = (digest ^ (uint8_t)*p) * 1099511628211ULL;
            }
        } else if (what < 97) {
            if (s.n_live) {
                size_t i = rnd() % s.n_live;
                char name[PLACE_NAME_MAX];
                cgv_strlcpy(name, s.live[i].name, sizeof(name));
                place_release(s.h, name);
                live_del(&s, name, -1);
            }
        } else {
            restart_host(&s, NULL, where);
            storm_restarts++;
        }
        check_host(s.h, &s.topo, s.live, s.n_live, where);
    }
    /* release everything: the host is as new */
    while (s.n_live) {
        place_release(s.h, s.live[s.n_live - 1].name);
        s.n_live--;
    }
    {
        struct place_host *fresh = place_host_new(&s.topo, s.have_hk ? &s.hk : NULL);
        struct place_free a, b;
        place_host_free_info(s.h, &a);
        place_host_free_info(fresh, &b);
        if (memcmp(&a, &b, sizeof(a)) != 0)
            fail_msg("storm %" PRIu64 ": releasing everything does not give a new host", seed);
        place_host_free(fresh);
    }
    place_host_free(s.h);
    return digest;
}

static void test_storms(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 150; seed++)
        storm(seed, 300);
    for (int p = PLACE_FLOATING; p <= PLACE_PINNED; p++) {
        print_message("storms: %-12s %5u placed %5u refused\n",
                      place_policy_name((enum place_policy)p), storm_ok[p], storm_refused[p]);
        /* both outcomes must be well exercised for the storm to mean much */
        assert_true(storm_ok[p] > 500);
        assert_true(storm_refused[p] > 100);
    }
    print_message("storms: %u restarts (adopt everything)\n", storm_restarts);
    assert_true(storm_restarts > 500);
}

static void test_deterministic(void **state)
{
    (void)state;
    for (uint64_t seed = 1000; seed < 1010; seed++)
        assert_true(storm(seed, 300) == storm(seed, 300));
}

/* ---- cluster ---------------------------------------------------------------- */

static void test_cluster_best_fit(void **state)
{
    static struct scn s;

    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        unsigned n_hosts, next_id = 0;
        static struct place_topology topos[80];
        rng_state = seed * 7919 + 3;
        n_hosts = rnd_in(1, 70);
        memset(&s, 0, sizeof(s));
        s.c = place_cluster_new();
        for (unsigned i = 0; i < n_hosts; i++) {
            bool have_hk;
            struct place_cpuset hk;
            char name[16];
            /* a few kinds of host, so buckets and tpc bounds matter */
            switch (rnd() % 3) {
            case 0:
                place_topology_synthetic(&topos[i], 2, 4, 2, 2, 16384);
                break;
            case 1:
                place_topology_synthetic(&topos[i], 1, 8, 1, 1, 32768);
                break;
            default:
                random_topology(&topos[i], &hk, &have_hk);
            }
            snprintf(name, sizeof(name), "h%u", i);
            assert_int_equal(place_cluster_add_host(s.c, name, &topos[i], NULL), (int)i);
        }
        for (unsigned step = 0; step < 600; step++) {
            struct place_request req;
            struct place_result res;
            struct cgv_error err = {0};
            int avoid[4];
            size_t n_avoid = rnd_in(0, 3);
            int want = -1, got;
            unsigned want_left = UINT32_MAX;

            if (rnd() % 4 == 0 && s.n_live) {
                size_t i = rnd() % s.n_live;
                char name[PLACE_NAME_MAX];
                int host = s.live[i].host;
                cgv_strlcpy(name, s.live[i].name, sizeof(name));
                place_cluster_release(s.c, host, name);
                live_del(&s, name, host);
                continue;
            }
            random_request(&req, &topos[0], next_id++);
            if (req.policy == PLACE_PINNED)
                continue; /* CPU numbers differ between host kinds */
            for (size_t k = 0; k < n_avoid; k++)
                avoid[k] = (int)(rnd() % (n_hosts + 1));
            for (unsigned i = 0; i < n_hosts; i++) {
                struct place_plan p;
                bool avoided = false;
                for (size_t k = 0; k < n_avoid; k++)
                    avoided |= avoid[k] == (int)i;
                if (avoided || place_validate_request(&req, NULL) < 0 ||
                    place_plan(place_cluster_host(s.c, (int)i), &req, &p, NULL) < 0)
                    continue;
                if (p.cores_left < want_left) {
                    want_left = p.cores_left;
                    want = (int)i;
                }
            }
            memset(&res, 0, sizeof(res));
            got = place_cluster_alloc(s.c, &req, avoid, n_avoid, &res, &err);
            if (got != want)
                fail_msg("seed %" PRIu64 " step %u: cluster chose %d, best fit is %d (%s)", seed,
                         step, got, want, err.msg);
            if (got < 0) {
                assert_true(err.msg[0] != '\0');
                continue;
            }
            for (size_t k = 0; k < n_avoid; k++)
                assert_int_not_equal(got, avoid[k]);
            live_add(&s, &req, got);
        }
        for (unsigned i = 0; i < n_hosts; i++) {
            static struct live mine[MAX_LIVE];
            size_t n = 0;
            for (size_t k = 0; k < s.n_live; k++) {
                if (s.live[k].host == (int)i)
                    mine[n++] = s.live[k];
            }
            check_host(place_cluster_host(s.c, (int)i), &topos[i], mine, n, "cluster");
        }
        place_cluster_free(s.c);
        s.c = NULL;
    }
}

static void test_host_new_edges(void **state)
{
    static struct place_topology t;
    struct place_cpuset hk;
    struct place_host *h;
    struct place_result res;
    struct place_request req;
    struct cgv_error err = {0};

    (void)state;
    memset(&t, 0, sizeof(t));
    assert_null(place_host_new(&t, NULL));           /* no CPU */
    place_topology_synthetic(&t, 1, 2, 1, 1, 1024);
    place_cpuset_clear(&hk);
    place_cpuset_add(&hk, 77);
    assert_null(place_host_new(&t, &hk));            /* housekeeping names no CPU */
    h = place_host_new(&t, NULL);
    assert_non_null(h);
    assert_int_equal(place_host_result(h, "nope", &res, &err), -1);
    assert_int_equal(err.code, CGV_E_NOTFOUND);
    place_release(h, "nope");                        /* a no-op */
    memset(&req, 0, sizeof(req));
    cgv_strlcpy(req.vm, "a", sizeof(req.vm));
    req.vcpus = 1;
    req.policy = PLACE_DEDICATED;
    {
        uint64_t gen = place_host_pool_gen(h);
        assert_int_equal(place_alloc(h, &req, &res, &err), 0);
        assert_true(place_host_pool_gen(h) != gen); /* the pool lost CPU 1 */
    }
    cgv_err_clear(&err);
    assert_int_equal(place_alloc(h, &req, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_CONFLICT);
    assert_non_null(strstr(err.msg, "already holds"));
    place_host_free(h);
    place_host_free(NULL);
    place_cluster_free(NULL);
}

/* ---- main -------------------------------------------------------------------- */

static int is_scn(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 4 && strcmp(d->d_name + n - 4, ".scn") == 0;
}

int main(void)
{
    struct dirent **names = NULL;
    int n = scandir(PLACE_FIXTURES, &names, is_scn, by_name);
    struct CMUnitTest *tests;
    int k = 0, rc;

    if (n < 1) {
        fprintf(stderr, "no scenarios in %s\n", PLACE_FIXTURES);
        return 1;
    }
    tests = calloc((size_t)n + 16, sizeof(*tests));
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_cpuset);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_topologies);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_caps_errors);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_caps_units_and_sysfs_errors);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_host_new_edges);
    for (int i = 0; i < n; i++) {
        tests[k].name = names[i]->d_name;
        tests[k].test_func = test_scenario;
        tests[k].initial_state = names[i]->d_name;
        k++;
    }
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_storms);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_deterministic);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_cluster_best_fit);
    rc = _cmocka_run_group_tests("place", tests, (size_t)k, NULL, NULL);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc;
}
