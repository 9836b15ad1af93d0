/* placement.c — benchmark of the placement core (src/place): 10,000 VMs
 * (5,000 actives, each with a standby kept off its active's host) placed
 * over 1,000 simulated hosts (2 sockets x 16 cores x 2 threads, 2 NUMA
 * nodes, 256 GiB), best fit, repeated; pure CPU work, no root, no libvirt.
 *
 *   bench/placement [--runs N] [--hosts N] [--vms N] [--seed N]
 *
 * Mix per service (active and standby alike): 40% floating 1-2 vCPUs, 40%
 * dedicated 2-4 vCPUs (a quarter of them isolate_smt, a tenth realtime),
 * 10% shared-group 1-2 vCPUs (200 group names, 1-2 cores), 10% pinned 1-2
 * vCPUs on random non-housekeeping CPUs; memory 512 MiB-8 GiB in 512 MiB
 * steps; a fifth numa strict. Figures go to stdout as key=value lines:
 *   place_10k_vms_ms        median over the runs of the time to place them all
 *   place_10k_vms_p99_ms    99th percentile of that (nearest rank)
 *   place_alloc_p50_us / place_alloc_p99_us   one place_cluster_alloc call
 *   place_vms_placed / place_vms_refused      per run (the same every run)
 *   place_dedicated_cores_used_pct   cores held by dedicated VMs, of all
 *                                    non-housekeeping cores of the cluster
 *   place_hosts_used                 hosts holding at least one VM
 *   place_anti_affinity_violations   standbys on their active's host (0)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "place.h"

#define SOCKETS 2
#define CORES 16
#define THREADS 2
#define NODES 2
#define NODE_MIB (128 * 1024)

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static unsigned rnd_in(unsigned lo, unsigned hi)
{
    return lo + rnd() % (hi - lo + 1);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* nearest rank */
static int64_t pct(int64_t *v, size_t n, double p)
{
    size_t k;

    qsort(v, n, sizeof(*v), cmp_i64);
    k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static void make_request(struct place_request *q, unsigned svc, bool standby)
{
    unsigned kind = rnd() % 100;

    memset(q, 0, sizeof(*q));
    snprintf(q->vm, sizeof(q->vm), "svc%u-%s", svc, standby ? "standby" : "active");
    q->memory_mib = 512ULL * rnd_in(1, 16);
    q->numa = rnd() % 5 == 0 ? PLACE_NUMA_STRICT : PLACE_NUMA_PREFER;
    if (kind < 40) {
        q->policy = PLACE_FLOATING;
        q->vcpus = rnd_in(1, 2);
    } else if (kind < 80) {
        q->policy = PLACE_DEDICATED;
        q->vcpus = rnd_in(2, 4);
        q->isolate_smt = rnd() % 4 == 0;
        q->realtime = rnd() % 10 == 0;
    } else if (kind < 90) {
        q->policy = PLACE_SHARED_GROUP;
        q->vcpus = rnd_in(1, 2);
        snprintf(q->group, sizeof(q->group), "grp-%u", rnd() % 200);
        q->group_cores = rnd_in(1, 2);
    } else {
        /* CPUs of one node (CPU c is core c % 32; cores 0-15 are node 0) */
        unsigned node = rnd() % NODES, per_node = SOCKETS * CORES / NODES;
        q->policy = PLACE_PINNED;
        q->vcpus = rnd_in(1, 2);
        q->n_pinned = q->vcpus;
        for (size_t i = 0; i < q->n_pinned; i++) {
            unsigned cpu;
            bool dup;
            do {
                cpu = rnd() % THREADS * SOCKETS * CORES + node * per_node + rnd() % per_node;
                dup = cpu % (SOCKETS * CORES) == 0; /* core 0 is housekeeping */
                for (size_t j = 0; j < i; j++)
                    dup |= q->pinned[j] == cpu;
            } while (dup);
            q->pinned[i] = cpu;
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: placement [--runs N] [--hosts N] [--vms N] [--seed N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned runs = 7, n_hosts = 1000, n_vms = 10000;
    unsigned long long seed = 1;
    struct place_topology *topo = calloc(1, sizeof(*topo));
    struct place_request *reqs;
    struct place_result *res = calloc(1, sizeof(*res));
    int64_t *run_ns, *alloc_ns;
    int *host_of;
    size_t n_alloc = 0;
    unsigned placed = 0, refused = 0, violations = 0, hosts_used = 0;
    uint64_t ded_cores = 0;

    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--runs") == 0)
            runs = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--hosts") == 0)
            n_hosts = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--vms") == 0)
            n_vms = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[++i], NULL, 10);
        else
            usage();
    }
    if (runs < 1 || n_hosts < 2 || n_vms < 2)
        usage();
    n_vms &= ~1u; /* active + standby pairs */
    rng ^= seed * 0x9E3779B97F4A7C15ULL;
    reqs = calloc(n_vms, sizeof(*reqs));
    run_ns = calloc(runs, sizeof(*run_ns));
    alloc_ns = calloc((size_t)runs * n_vms, sizeof(*alloc_ns));
    host_of = calloc(n_vms, sizeof(*host_of));
    if (!topo || !res || !reqs || !run_ns || !alloc_ns || !host_of) {
        fprintf(stderr, "placement: out of memory\n");
        return 1;
    }
    /* the same requests every run; a standby is its active's twin */
    for (unsigned s = 0; s < n_vms / 2; s++) {
        make_request(&reqs[2 * s], s, false);
        reqs[2 * s + 1] = reqs[2 * s];
        snprintf(reqs[2 * s + 1].vm, sizeof(reqs[0].vm), "svc%u-standby", s);
    }
    place_topology_synthetic(topo, SOCKETS, CORES, THREADS, NODES, NODE_MIB);

    for (unsigned r = 0; r < runs; r++) {
        struct place_cluster *c = place_cluster_new();
        unsigned ok = 0, no = 0;
        int64_t t0;

        for (unsigned h = 0; h < n_hosts; h++) {
            char name[32];
            snprintf(name, sizeof(name), "host%04u", h);
            if (place_cluster_add_host(c, name, topo, NULL) < 0) {
                fprintf(stderr, "placement: cannot add a host\n");
                return 1;
            }
        }
        t0 = now_ns();
        for (unsigned i = 0; i < n_vms; i++) {
            struct cgv_error err = {0};
            int avoid = i % 2 ? host_of[i - 1] : -1;
            int64_t a = now_ns();
            host_of[i] = place_cluster_alloc(c, &reqs[i], &avoid, avoid >= 0 ? 1 : 0, res, &err);
            alloc_ns[n_alloc++] = now_ns() - a;
            if (host_of[i] >= 0)
                ok++;
            else {
                no++;
                if (r == 0 && no <= 10) /* say why, once */
                    fprintf(stderr, "refused %s (%s): %s\n", reqs[i].vm,
                            place_policy_name(reqs[i].policy), err.msg);
            }
        }
        run_ns[r] = now_ns() - t0;
        fprintf(stderr, "run %u: %.1f ms, %u placed, %u refused\n", r + 1,
                (double)run_ns[r] / 1e6, ok, no);
        if (r == runs - 1) {
            /* the figures of the placement itself, from the last run */
            placed = ok;
            refused = no;
            for (unsigned i = 1; i < n_vms; i += 2) {
                if (host_of[i] >= 0 && host_of[i] == host_of[i - 1])
                    violations++;
            }
            for (unsigned i = 0; i < n_vms; i++) {
                struct cgv_error err = {0};
                bool seen[SOCKETS * CORES] = {0};
                if (host_of[i] < 0 || reqs[i].policy != PLACE_DEDICATED)
                    continue;
                if (place_host_result(place_cluster_host(c, host_of[i]), reqs[i].vm, res,
                                      &err) < 0) {
                    fprintf(stderr, "placement: %s\n", err.msg);
                    return 1;
                }
                for (unsigned v = 0; v < res->vcpus; v++) {
                    for (unsigned cpu = 0; cpu < SOCKETS * CORES * THREADS; cpu++) {
                        if (place_cpuset_has(&res->vcpu[v], cpu) &&
                            !seen[cpu % (SOCKETS * CORES)]) {
                            seen[cpu % (SOCKETS * CORES)] = true;
                            ded_cores++;
                        }
                    }
                }
            }
            for (unsigned h = 0; h < n_hosts; h++) {
                bool used = false;
                for (unsigned i = 0; i < n_vms && !used; i++)
                    used = host_of[i] == (int)h;
                hosts_used += used;
            }
        }
        place_cluster_free(c);
    }
    printf("place_hosts=%u\n", n_hosts);
    printf("place_vms=%u\n", n_vms);
    printf("place_runs=%u\n", runs);
    printf("place_10k_vms_ms=%.1f\n", (double)pct(run_ns, runs, 50) / 1e6);
    printf("place_10k_vms_p99_ms=%.1f\n", (double)pct(run_ns, runs, 99) / 1e6);
    printf("place_alloc_p50_us=%.2f\n", (double)pct(alloc_ns, n_alloc, 50) / 1e3);
    printf("place_alloc_p99_us=%.2f\n", (double)pct(alloc_ns, n_alloc, 99) / 1e3);
    printf("place_vms_placed=%u\n", placed);
    printf("place_vms_refused=%u\n", refused);
    printf("place_dedicated_cores_used_pct=%.1f\n",
           100.0 * (double)ded_cores / ((double)n_hosts * (SOCKETS * CORES - 1)));
    printf("place_hosts_used=%u\n", hosts_used);
    printf("place_anti_affinity_violations=%u\n", violations);
    free(topo);
    free(res);
    free(reqs);
    free(run_ns);
    free(alloc_ns);
    free(host_of);
    return violations ? 1 : 0;
}
