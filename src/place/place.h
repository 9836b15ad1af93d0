/* place.h — CPU-core and NUMA allocation for VMs on one host, and VM
 * placement over many hosts. Pure code: no libvirt, no clock, no I/O except
 * parsing the topology text it is handed. Heavily unit-tested against
 * synthetic topologies (tests/fixtures/place).
 *
 * A host's CPUs are split into
 *   housekeeping  where cgvd, libvirt and every VM's emulator and I/O
 *                 threads run (configured; default: the first core, with its
 *                 SMT siblings);
 *   dedicated     cores given whole to one vCPU each (policy dedicated);
 *                 with isolate_smt the core's other SMT siblings stay idle;
 *   groups        named shared groups: a small core set that packs the light
 *                 vCPUs of every VM naming the group (policy shared-group);
 *   shared pool   everything else: floating vCPUs run anywhere in it, and
 *                 pinned vCPUs on the CPUs an operator lists (policy pinned,
 *                 which may name any non-housekeeping CPU not dedicated).
 * A dedicated core is never over-committed: a request that does not fit is
 * refused with an error that says what is short ("needs 4 dedicated cores
 * on one NUMA node, node 0 has 2 free, node 1 has 1 free"). A VM's vCPUs and
 * memory stay on one NUMA node when they fit on one (preferring the node
 * with the most free dedicated cores, then the most free memory); otherwise
 * the request says whether it may span nodes (numa: prefer | strict).
 *
 * Standbys reserve what they need simply by being VMs with the same spec:
 * each standby holds its own dedicated cores, so taking over its active's
 * load never finds the host short.
 */
#ifndef PLACE_H
#define PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"

#define PLACE_MAX_CPUS 1024
#define PLACE_MAX_NODES 16
#define PLACE_MAX_VCPUS 64
#define PLACE_NAME_MAX 64

/* A set of CPU ids 0..PLACE_MAX_CPUS-1. */
struct place_cpuset {
    uint64_t bits[PLACE_MAX_CPUS / 64];
};

void place_cpuset_clear(struct place_cpuset *s);
void place_cpuset_add(struct place_cpuset *s, unsigned cpu);
bool place_cpuset_has(const struct place_cpuset *s, unsigned cpu);
unsigned place_cpuset_count(const struct place_cpuset *s);
/* "0-3,8,10-11" (libvirt's cpuset syntax); "" for the empty set. */
void place_cpuset_format(const struct place_cpuset *s, char *buf, size_t cap);
int place_cpuset_parse(const char *text, struct place_cpuset *out,
                       struct cgv_error *err) CGV_WUR;

struct place_cpu {
    unsigned id;     /* the OS CPU number */
    unsigned socket;
    unsigned core;   /* core id, unique within its socket */
    unsigned node;   /* NUMA node */
};

struct place_topology {
    unsigned n_cpus;
    struct place_cpu cpus[PLACE_MAX_CPUS]; /* sorted by id */
    unsigned n_nodes;
    uint64_t node_memory_mib[PLACE_MAX_NODES];
};

/* From libvirt's capabilities XML (<capabilities><host><topology><cells>…,
 * cpu elements with socket_id, core_id, siblings). */
int place_topology_from_caps(const char *xml, struct place_topology *out,
                             struct cgv_error *err) CGV_WUR;
/* From sysfs (sysdir is "/sys" except in tests): cpu*/topology/ and
 * node*/cpulist, node*/meminfo. */
int place_topology_from_sysfs(const char *sysdir, struct place_topology *out,
                              struct cgv_error *err) CGV_WUR;
/* A synthetic topology for tests and the placement benchmark. */
void place_topology_synthetic(struct place_topology *out, unsigned sockets,
                              unsigned cores_per_socket, unsigned threads_per_core,
                              unsigned nodes, uint64_t memory_mib_per_node);

enum place_policy {
    PLACE_FLOATING = 0, /* anywhere in the shared pool (default) */
    PLACE_DEDICATED,    /* one whole core per vCPU */
    PLACE_SHARED_GROUP, /* on the named group's cores */
    PLACE_PINNED,       /* on the listed CPUs, vCPU i on pinned[i % n] */
};

enum place_numa { PLACE_NUMA_PREFER = 0, PLACE_NUMA_STRICT };

struct place_request {
    char vm[PLACE_NAME_MAX];
    unsigned vcpus;               /* 1..PLACE_MAX_VCPUS */
    uint64_t memory_mib;
    enum place_policy policy;
    bool isolate_smt;             /* dedicated: keep the cores' siblings idle */
    char group[PLACE_NAME_MAX];   /* shared-group */
    unsigned group_cores;         /* shared-group: cores the group gets when it is
                                     first created (default 1) */
    size_t n_pinned;              /* pinned */
    unsigned pinned[PLACE_MAX_CPUS];
    enum place_numa numa;
    bool realtime;                /* only dedicated or pinned-to-own cores may be RT */
};

struct place_result {
    unsigned vcpus;
    struct place_cpuset vcpu[PLACE_MAX_VCPUS]; /* where each vCPU may run */
    struct place_cpuset emulator;  /* the housekeeping CPUs */
    int node;                      /* NUMA node of memory and vCPUs, -1 = several */
    struct place_cpuset nodes;     /* memory nodeset (bits are node numbers) */
};

struct place_host;

/* housekeeping NULL: the first core of the first socket (all its threads). */
struct place_host *place_host_new(const struct place_topology *topo,
                                  const struct place_cpuset *housekeeping);
void place_host_free(struct place_host *h);

/* Allocate for req.vm (which must not hold an allocation already). On
 * failure nothing changed and err says what is short (CGV_E_CONFLICT) or
 * what is wrong with the request (CGV_E_INVALID). */
int place_alloc(struct place_host *h, const struct place_request *req,
                struct place_result *out, struct cgv_error *err) CGV_WUR;
/* Give back what vm holds (no-op if nothing). Groups with no member left
 * return their cores to the pool. */
void place_release(struct place_host *h, const char *vm);
/* Re-enter an allocation found on a running VM (cgvd restart) exactly as
 * it is; fails if it collides with what is already allocated. */
int place_adopt(struct place_host *h, const struct place_request *req,
                const struct place_result *res, struct cgv_error *err) CGV_WUR;

/* What the host has left: free dedicatable cores per node, free memory per
 * node, the shared pool. */
struct place_free {
    unsigned n_nodes;
    unsigned free_cores[PLACE_MAX_NODES];
    uint64_t free_memory_mib[PLACE_MAX_NODES];
    struct place_cpuset pool;
    struct place_cpuset housekeeping;
};
void place_host_free_info(const struct place_host *h, struct place_free *out);

/* ---- placement over many hosts (the cluster scheduler's core) ---------- */

struct place_cluster;
struct place_cluster *place_cluster_new(void);
void place_cluster_free(struct place_cluster *c);
/* Adds a host (copied) and returns its index. */
int place_cluster_add_host(struct place_cluster *c, const char *name,
                           const struct place_topology *topo,
                           const struct place_cpuset *housekeeping);
/* Choose a host for req and allocate there: the host where it fits with
 * the fewest free dedicated cores left (best fit), ties by index; never a
 * host listed in avoid (anti-affinity: an active's standby avoids its
 * host). Returns the host index, or -1 with err saying why no host fits. */
int place_cluster_alloc(struct place_cluster *c, const struct place_request *req,
                        const int *avoid, size_t n_avoid, struct place_result *out,
                        struct cgv_error *err);
void place_cluster_release(struct place_cluster *c, int host, const char *vm);

const char *place_policy_name(enum place_policy p);

#endif
