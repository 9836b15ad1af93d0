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
 *
 * Details the text above leaves open, as implemented (src/place/):
 *  - "Core" is a physical core: the CPUs sharing (socket, core), i.e. SMT
 *    siblings. A dedicated VM always holds whole cores, never shares one with
 *    another VM, and each of its vCPUs runs on one CPU of its own. Without
 *    isolate_smt a core's threads go to consecutive vCPUs of the same VM
 *    (4 vCPUs on 2-thread cores = 2 cores; a 3rd thread left over stays idle
 *    and held); with isolate_smt each vCPU gets a core of its own, pinned to
 *    its first thread, the siblings idle. Needs and "free" counts are cores.
 *  - A core is free (dedicatable) when none of its CPUs is housekeeping,
 *    held by a VM, in a group or named by a pinned VM.
 *  - Floating vCPUs get the shared pool of the node(s) holding the VM's
 *    memory. The pool shrinks when cores are dedicated, grouped or taken by
 *    realtime pinned VMs: after any call that changes place_host_pool_gen(),
 *    re-pin the floating VMs to what place_host_result() says now. An
 *    allocation that would leave the pool empty while floating VMs run is
 *    refused; a node keeps one free core for the pool of its numa-strict
 *    floating VMs. A numa-prefer floating VM whose node's pool is gone runs
 *    anywhere in the pool (its result's node is -1 until cores come back).
 *  - Shared groups take whole free cores on one node (like dedicated cores,
 *    chosen by the same NUMA rule from the first member's memory); later
 *    members' group_cores is ignored; their memory goes to the group's node.
 *  - Pinned: at most PLACE_MAX_VCPUS distinct CPUs (more than vcpus is fine:
 *    room for hot-plugged vCPUs); the VM holds every CPU listed. Naming a
 *    housekeeping or absent CPU is CGV_E_INVALID, a CPU held by another VM
 *    CGV_E_CONFLICT. Group CPUs may be named. Memory goes to the node(s) of
 *    the listed CPUs; with numa strict they must all be on one node.
 *  - Realtime: dedicated, or pinned with one listed CPU per vCPU, none of
 *    them used by any other VM or group; such CPUs leave the pool and are
 *    held exclusively (nobody may pin there later; their SMT siblings stay
 *    in the pool: ask for dedicated + isolate_smt for quiet cores). Other
 *    policies:
 *    CGV_E_INVALID. isolate_smt is for dedicated only, group for
 *    shared-group only, pinned CPUs for pinned only (CGV_E_INVALID);
 *    group_cores is ignored outside shared-group.
 *  - NUMA: with numa prefer a VM that fits on no single node spans: cores
 *    from the nodes with the most free cores first, memory first from the
 *    nodes its vCPUs are on (most free first), then from the others.
 *    place_result.node is -1 when vCPUs or memory use several nodes.
 *  - Memory is accounted per node against node_memory_mib (nothing is kept
 *    back for the host: pass less if the host needs some).
 *  - Ties are broken by the lowest node / core / CPU number: the same
 *    sequence of calls always gives the same placement.
 *  - Not thread-safe: one caller at a time per host / cluster.
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
    bool memory_unknown;   /* the source gave no memory sizes: memory is not
                              accounted (free memory reads UINT64_MAX) */
};

/* From libvirt's capabilities XML (<capabilities><host><topology><cells>…,
 * cpu elements with socket_id, core_id, siblings). CPUs listed without
 * socket_id/core_id (libvirt's offline CPUs) are left out. Without <cells>
 * (no NUMA information) one node is assumed, CPUs are laid out from
 * <host><cpu><topology sockets dies cores threads> in Linux's usual order
 * (all first threads, then all second threads…) and memory_unknown is set.
 * Core ids repeated across dies are made unique (die * (max core id + 1) +
 * core id); if the SMT siblings attributes disagree with the (socket, die,
 * core) grouping, the siblings win: core becomes the lowest sibling's id. */
int place_topology_from_caps(const char *xml, struct place_topology *out,
                             struct cgv_error *err) CGV_WUR;
/* From sysfs (sysdir is "/sys" except in tests): cpuN/topology/ and
 * nodeN/cpulist, nodeN/meminfo (MemTotal). Offline CPUs are left out;
 * without devices/system/node there is one node and memory_unknown. Cores
 * are numbered as for the capabilities. */
int place_topology_from_sysfs(const char *sysdir, struct place_topology *out,
                              struct cgv_error *err) CGV_WUR;
/* A synthetic topology for tests and the placement benchmark. CPUs are
 * numbered like Linux does: first threads of all cores (socket by socket),
 * then second threads…; nodes split the cores evenly in order (2 nodes on
 * 1 socket = sub-NUMA clusters). Clamped to PLACE_MAX_CPUS / _NODES. */
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
    uint64_t node_memory_mib[PLACE_MAX_NODES]; /* memory charged to each node
                                      (all 0 when memory_unknown) */
};

struct place_host;

/* housekeeping NULL: the first core of the first socket (all its threads).
 * CPUs of housekeeping that the topology does not have are ignored. Returns
 * NULL when the topology has no CPU or housekeeping names none of its CPUs.
 * The host copies what it needs from topo. */
struct place_host *place_host_new(const struct place_topology *topo,
                                  const struct place_cpuset *housekeeping);
void place_host_free(struct place_host *h);
/* A small host whose floating vCPUs may also run on the housekeeping CPUs
 * (cgvd: fewer than 4 CPUs): floating VMs then never need the shared pool.
 * Its last CPU may be dedicated (or taken by a group or a realtime pin)
 * while floating VMs run, and a floating VM may be placed while the pool is
 * empty; their vCPUs run on the housekeeping CPUs until the pool has CPUs
 * again. Off by default. */
void place_host_set_floating_on_hk(struct place_host *h, bool on);

/* Allocate for req.vm (which must not hold an allocation already). On
 * failure nothing changed and err says what is short (CGV_E_CONFLICT) or
 * what is wrong with the request (CGV_E_INVALID). */
int place_alloc(struct place_host *h, const struct place_request *req,
                struct place_result *out, struct cgv_error *err) CGV_WUR;
/* Give back what vm holds (no-op if nothing). Groups with no member left
 * return their cores to the pool. */
void place_release(struct place_host *h, const char *vm);
/* Re-enter an allocation found on a running VM (cgvd restart) exactly as
 * it is; fails if it collides with what is already allocated. req is the
 * VM's request (policy, isolate_smt, group, pinned list, memory), res where
 * it runs: dedicated and pinned vCPUs must each run on one CPU (pinned: one
 * of req's pinned CPUs), the cores of dedicated vCPUs are taken whole; a
 * group is re-created from the cores its first adopted member runs on;
 * floating vCPUs and res->emulator are not checked (re-pin them from
 * place_host_result()); memory is charged as res->node_memory_mib says when
 * that adds up to req->memory_mib (keep the result to re-adopt a VM that
 * spans nodes exactly), otherwise to res->nodes (or res->node), most free
 * node first. The order of the adoptions does not matter. */
int place_adopt(struct place_host *h, const struct place_request *req,
                const struct place_result *res, struct cgv_error *err) CGV_WUR;
/* Where vm's vCPUs should run now (floating ones follow the pool); -1 with
 * CGV_E_NOTFOUND if vm holds nothing. */
int place_host_result(const struct place_host *h, const char *vm,
                      struct place_result *out, struct cgv_error *err) CGV_WUR;
/* Changes whenever the shared pool does (so floating VMs need re-pinning). */
uint64_t place_host_pool_gen(const struct place_host *h);

/* What the host has left: free dedicatable cores per node, free memory per
 * node (UINT64_MAX when memory_unknown), the shared pool. */
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
/* Adds a host (copied) and returns its index, or -1 when place_host_new
 * would return NULL. */
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
/* place_adopt on one host of the cluster. */
int place_cluster_adopt(struct place_cluster *c, int host, const struct place_request *req,
                        const struct place_result *res, struct cgv_error *err) CGV_WUR;
/* The cluster's hosts (owned by the cluster; NULL when out of range). */
size_t place_cluster_n_hosts(const struct place_cluster *c);
const struct place_host *place_cluster_host(const struct place_cluster *c, int host);
const char *place_cluster_host_name(const struct place_cluster *c, int host);

const char *place_policy_name(enum place_policy p);

#endif
