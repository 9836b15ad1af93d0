/* place_int.h — what the files of src/place share: the host allocator's
 * state (place_host.c) as seen by the cluster scheduler (place_cluster.c),
 * the topology normaliser (place_topo.c) and bit helpers. Not installed,
 * not for other modules. */
#ifndef PLACE_INT_H
#define PLACE_INT_H

#include "place.h"

#define PLACE_WORDS (PLACE_MAX_CPUS / 64)

/* What a CPU is used for. */
enum place_role {
    PR_ABSENT = 0, /* not in the topology */
    PR_HK,         /* housekeeping */
    PR_FREE,       /* shared pool (may be named by pinned VMs: pins > 0) */
    PR_DED,        /* runs one vCPU of a dedicated VM */
    PR_IDLE,       /* held idle for a dedicated VM (SMT sibling / spare) */
    PR_GROUP,      /* a shared group's CPU */
    PR_RT,         /* held exclusively by a realtime pinned VM */
};

struct place_core {
    uint16_t first;   /* index into place_host.core_cpus of its first CPU */
    uint8_t n;        /* threads */
    uint8_t node;
};

/* One VM's allocation, enough to undo it and to rebuild its result. */
struct place_vm {
    char name[PLACE_NAME_MAX];
    uint32_t hash;
    bool used;
    bool realtime;
    bool isolate;
    bool numa_strict;
    uint8_t policy;
    uint16_t vcpus;
    int16_t node;        /* -1: several */
    uint32_t mem_nodes;  /* memory nodeset */
    uint32_t cpu_nodes;  /* floating: nodes whose pool its vCPUs use */
    int32_t group;       /* shared-group: group index */
    int32_t next_free;
    uint16_t n_cores;    /* dedicated: cores held */
    uint16_t n_held;     /* pinned: CPUs held */
    uint16_t cores[PLACE_MAX_VCPUS];
    uint16_t held[PLACE_MAX_VCPUS];
    uint16_t vcpu_cpu[PLACE_MAX_VCPUS]; /* dedicated / pinned */
    uint64_t mem[PLACE_MAX_NODES];
};

struct place_group {
    char name[PLACE_NAME_MAX];
    uint32_t hash;
    bool used;
    int16_t node;
    uint32_t nodes;
    unsigned members;
    uint16_t n_cores;
    uint16_t cores[PLACE_MAX_VCPUS];
    struct place_cpuset cpus;
};

struct place_host {
    /* topology, fixed */
    unsigned n_nodes;
    unsigned n_cpu_ids;                 /* highest CPU id + 1 */
    unsigned n_cores;
    bool memory_unknown;
    bool uniform;                       /* every core has tpc threads */
    unsigned tpc;                       /* threads per core (max) */
    uint64_t node_mem[PLACE_MAX_NODES];
    uint16_t cpu_core[PLACE_MAX_CPUS];  /* CPU id -> core index */
    uint8_t cpu_node[PLACE_MAX_CPUS];
    struct place_core *cores;           /* n_cores, ordered by first CPU id */
    uint16_t *core_cpus;                /* CPU ids, core by core */
    uint64_t node_core_bits[PLACE_MAX_NODES][PLACE_WORDS];
    struct place_cpuset node_cpus[PLACE_MAX_NODES];
    uint32_t cpu_node_mask;             /* nodes that have CPUs */
    struct place_cpuset hk;

    /* state */
    uint8_t role[PLACE_MAX_CPUS];
    int32_t owner[PLACE_MAX_CPUS];      /* VM or group index */
    uint16_t pins[PLACE_MAX_CPUS];      /* pinned VMs naming the CPU */
    uint64_t core_free_bits[PLACE_WORDS];
    unsigned free_cores[PLACE_MAX_NODES];
    unsigned free_threads[PLACE_MAX_NODES];
    unsigned pool_cpus[PLACE_MAX_NODES];
    unsigned free_cores_total;
    unsigned pool_total;
    uint64_t free_mem[PLACE_MAX_NODES];
    struct place_cpuset pool;
    unsigned n_floating;
    unsigned strict_floating[PLACE_MAX_NODES]; /* floating numa-strict VMs */
    uint64_t pool_gen;
    bool floating_on_hk;                /* see place_host_set_floating_on_hk() */

    struct place_vm *vms;
    int32_t n_vms, cap_vms, free_vm;
    struct place_group *groups;
    int32_t n_groups, cap_groups;
};

/* What an allocation would take: found by place_plan(), carried out by
 * place_commit(). */
struct place_plan {
    int group;           /* existing group, or -1 */
    bool new_group;
    uint16_t n_cores;    /* dedicated / new group: cores taken */
    uint16_t cores[PLACE_MAX_VCPUS];
    uint16_t vcpu_cpu[PLACE_MAX_VCPUS];
    uint16_t n_held;
    uint16_t held[PLACE_MAX_VCPUS];
    uint32_t cpu_nodes;
    uint32_t mem_nodes;
    uint64_t mem[PLACE_MAX_NODES];
    unsigned cores_left; /* free cores the host would have left */
};

uint32_t place_hash(const char *s);
int place_validate_request(const struct place_request *req, struct cgv_error *err);
/* Plan req on h without changing it; err may be NULL (no text is made).
 * place_plan_fit leaves out the check that req->vm holds nothing there. */
int place_plan(const struct place_host *h, const struct place_request *req,
               struct place_plan *p, struct cgv_error *err);
int place_plan_fit(const struct place_host *h, const struct place_request *req,
                   struct place_plan *p, struct cgv_error *err);
/* Carry out a plan made by place_plan (or the adoption code) just now. */
void place_commit(struct place_host *h, const struct place_request *req,
                  const struct place_plan *p, struct place_result *out);
int place_find_vm(const struct place_host *h, const char *vm);
/* Threads per core of the host's cores (0 if they differ). */
unsigned place_host_uniform_tpc(const struct place_host *h);

static inline bool place_bit(const uint64_t *w, unsigned i)
{
    return (w[i / 64] >> (i % 64)) & 1;
}
static inline void place_bit_set(uint64_t *w, unsigned i)
{
    w[i / 64] |= UINT64_C(1) << (i % 64);
}
static inline void place_bit_clr(uint64_t *w, unsigned i)
{
    w[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

/* Raw CPU record the parsers fill before place_topo_finish(). */
struct place_raw_cpu {
    unsigned id, socket, die, core, node;
    bool has_siblings;
    struct place_cpuset siblings;
};
/* Sort, check and number the raw CPUs into out (n_nodes and memory are set
 * by the caller). */
int place_topo_finish(struct place_raw_cpu *raw, size_t n, struct place_topology *out,
                      struct cgv_error *err);

#endif
