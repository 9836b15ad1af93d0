/* spec.h — service specs: parse YAML or JSON text, validate, and render the
 * canonical JSON form that cgvd stores and the API returns.
 *
 * The text is parsed with libyaml (JSON is YAML's flow subset; input that
 * starts with '{' is first checked as strict JSON with jansson so that JSON
 * syntax errors read as JSON errors). Validation collects every problem, each
 * with its field path ("networks[0].addresses[1]") and the line/column where
 * that field is in the text; nothing is returned unless all of it is valid.
 *
 * Format (see README "Service spec"):
 *
 *   name: demo                 # required, [a-z][a-z0-9-]*, <= 40 chars
 *   instances: 2               # 1..64, default 1
 *   vcpus: 1                   # 1..64, default 1
 *   memory: 256MiB             # 64MiB..1TiB; bare integer = MiB; KiB/MiB/GiB/TiB or K/M/G/T
 *   image: default             # guest image name, default "default"
 *   acceleration: auto         # auto | kvm | tcg, default auto
 *   heartbeat_ms: 1000         # agent heartbeat interval, 10..60000, default 1000
 *   networks:                  # default: one interface on network "default"
 *     - network: default       # a network cgvd manages
 *       addresses: [10.77.0.10, 10.77.0.11]   # optional, one IPv4 per instance;
 *                                             # omitted = from the network's pool
 *   redundancy:                # default: model none
 *     model: 2n                # none | 2n | n+m | nway-active
 *     standbys: 1              # n+m: M, 1..instances-1 (default 1); other models
 *                              # may only repeat their fixed value;
 *                              # 2n implies 1 (instances must be 2); else 0
 *     virtual_ips: [10.77.0.50]  # optional; one per active assignment: 2n 1,
 *                              # n+m instances-standbys; refused for none and
 *                              # nway-active. On the first network, distinct,
 *                              # not among any addresses of the spec.
 *   health:
 *     heartbeat_misses: 3      # 1..100: missed heartbeats before a hang
 *     watchdog_s: 0            # 0 (off) or 1..60: the guest's i6300esb timeout
 *   processes:                 # supervised in the guest by cgv-guest, 0..8
 *     - name: nf               # cgv_name_valid, unique
 *       command: /usr/sbin/cgv-nf   # 1..256 printable ASCII, run by /bin/sh -c
 *   recovery:
 *     app_restarts: {max: 3, window_s: 60}    # in-guest restarts of a process
 *     vm_restarts:  {max: 3, window_s: 600}   # restarts of a VM
 *     failovers:    {max: 5, window_s: 3600}  # fail-overs away from a VM
 *     restart: fast            # fast (restore the snapshot taken when the
 *                              # VM was first healthy) | cold (boot)
 *   Limits: max 0..100 (0 = never), window_s 1..86400.
 *   cpu:                       # CPU placement of each VM (default floating)
 *     policy: dedicated        # floating | dedicated | shared-group | pinned
 *     isolate_smt: false       # dedicated only: keep the cores' SMT siblings idle
 *     group: light             # shared-group only (required there): [a-z0-9-] name
 *     group_cores: 1           # shared-group only: 1..64 cores when the group is made
 *     pinned: [2, 3]           # pinned only (required there): 1..64 distinct CPU ids 0..1023
 *     numa: prefer             # prefer | strict (vCPUs and memory on one node)
 *     realtime: false          # SCHED_FIFO vCPUs; only with dedicated or pinned
 *     realtime_priority: 1     # 1..99, only with realtime: true
 *     max_vcpus: 1             # vcpus..64 (default vcpus): room for live vCPU hot-plug
 *   qos:
 *     cpu_shares: 1024         # 2..262144 (default 0 = libvirt's default)
 *     cpu_period_us: 100000    # 1000..1000000, only with cpu_quota_us
 *     cpu_quota_us: 50000      # 1000..1000000000000 (0 = no quota); < period*vcpus
 *                              # is allowed (that is the point of a quota)
 *     memory_hard_limit: 512MiB # >= memory (default 0 = none); same units as memory
 *     net: {inbound_kbps: 0, outbound_kbps: 0, burst_kb: 0}   # 0 = unlimited; 0..100000000000
 *     block: {read_bps: 0, write_bps: 0, read_iops: 0, write_iops: 0}  # same range, 0 = unlimited
 *
 * Unknown fields are errors (they are usually typos).
 */
#ifndef SPEC_H
#define SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"

#define SPEC_MAX_TEXT (256 * 1024)
#define SPEC_MAX_INSTANCES 64
#define SPEC_MAX_NETWORKS 8
#define SPEC_MAX_ISSUES 64
#define SPEC_NAME_MAX 40

enum spec_accel { SPEC_ACCEL_AUTO = 0, SPEC_ACCEL_KVM, SPEC_ACCEL_TCG };
enum spec_redundancy { SPEC_RED_NONE = 0, SPEC_RED_2N, SPEC_RED_NPM, SPEC_RED_NWAY };
enum spec_restart { SPEC_RESTART_FAST = 0, SPEC_RESTART_COLD };

#define SPEC_MAX_VIPS 16
#define SPEC_MAX_PROCESSES 8
#define SPEC_COMMAND_MAX 256
#define SPEC_MAX_PINNED 64

/* Where a value was written (0/0 when it was defaulted). Positions let
 * cgvd's host-side checks point at the line and column too; spec_equal()
 * ignores them. */
struct spec_pos {
    int line;
    int column;
};

enum spec_cpu_policy {
    SPEC_CPU_FLOATING = 0,
    SPEC_CPU_DEDICATED,
    SPEC_CPU_SHARED_GROUP,
    SPEC_CPU_PINNED,
};
enum spec_numa { SPEC_NUMA_PREFER = 0, SPEC_NUMA_STRICT };

struct spec_cpu {
    enum spec_cpu_policy policy;
    bool isolate_smt;
    char group[SPEC_NAME_MAX + 1];
    unsigned group_cores;        /* default 1 */
    size_t n_pinned;
    unsigned pinned[SPEC_MAX_PINNED];
    struct spec_pos pinned_pos;  /* of the list, for host-side checks */
    struct spec_pos policy_pos;
    enum spec_numa numa;
    bool realtime;
    unsigned realtime_priority;  /* 1..99 when realtime, else 0 */
    unsigned max_vcpus;          /* >= vcpus; default vcpus */
};

struct spec_qos {
    unsigned cpu_shares;         /* 0 = default */
    unsigned cpu_period_us;      /* 0 = default */
    uint64_t cpu_quota_us;       /* 0 = none */
    uint64_t memory_hard_limit_mib; /* 0 = none */
    uint64_t net_inbound_kbps, net_outbound_kbps, net_burst_kb;
    uint64_t block_read_bps, block_write_bps, block_read_iops, block_write_iops;
};

struct spec_limit {
    unsigned max;      /* 0..100 */
    unsigned window_s; /* 1..86400 */
};

struct spec_process {
    char name[SPEC_NAME_MAX + 1];
    char command[SPEC_COMMAND_MAX + 1];
};

struct spec_addr {
    char ip[16]; /* dotted IPv4 */
    int line;    /* where it was written, 0 if unknown */
    int column;
};


struct spec_network {
    char network[SPEC_NAME_MAX + 1];
    size_t n_addresses;          /* 0, or == instances */
    struct spec_addr *addresses; /* owned */
    int line;                    /* line of this list item */
    struct spec_pos network_pos; /* of the network name */
};

struct spec_service {
    char name[SPEC_NAME_MAX + 1];
    unsigned instances;
    unsigned vcpus;
    uint64_t memory_mib;
    char image[SPEC_NAME_MAX + 1];
    enum spec_accel accel;
    unsigned heartbeat_ms;
    size_t n_networks;
    struct spec_network *networks; /* owned */
    struct spec_pos image_pos, accel_pos;

    /* High availability (defaults: none, 0, no VIPs, 3, 0, no processes,
     * {3,60}, {3,600}, {5,3600}, fast) */
    enum spec_redundancy redundancy;
    unsigned standbys;
    size_t n_vips;
    struct spec_addr vips[SPEC_MAX_VIPS];
    unsigned heartbeat_misses;
    unsigned watchdog_s;
    size_t n_processes;
    struct spec_process processes[SPEC_MAX_PROCESSES];
    struct spec_limit app_restarts, vm_restarts, failovers;
    enum spec_restart restart;

    /* CPU placement and QoS (issue 4) */
    struct spec_cpu cpu;
    struct spec_qos qos;
};

/* One validation problem. path is "" for the document itself. */
struct spec_issue {
    char path[128];
    int line;   /* 1-based; 0 when not known */
    int column; /* 1-based; 0 when not known */
    char msg[256];
};

struct spec_issues {
    size_t n;
    size_t dropped; /* issues beyond SPEC_MAX_ISSUES, counted only */
    struct spec_issue items[SPEC_MAX_ISSUES];
};

/* Parse and validate text[len]. On success returns 0 and *out (caller frees
 * with spec_free). On failure returns -1, *out stays NULL and issues lists
 * every problem found (at least one). *issues is reset first; out and issues
 * may be NULL (validation only). text need not be NUL-terminated. */
int spec_parse(const char *text, size_t len, struct spec_service **out,
               struct spec_issues *issues) CGV_WUR;

void spec_free(struct spec_service *spec);

/* Canonical JSON (new reference): every field present, defaults filled in,
 * memory as a string in MiB ("256MiB"), networks with their addresses
 * (empty list when from the pool). spec_parse() of its dump gives an equal
 * spec. */
json_t *spec_to_json(const struct spec_service *spec);

/* Deep equality of two specs (what apply uses to say "unchanged"). */
int spec_equal(const struct spec_service *a, const struct spec_service *b);

/* Add an issue (used by cgvd's host-side checks too, e.g. an address outside
 * the network's subnet). Issues stay sorted by (line, column), line 0 first;
 * beyond SPEC_MAX_ISSUES the latest in the text are only counted. Bytes
 * outside printable ASCII in path and message become '?'. */
void spec_issue_add(struct spec_issues *issues, const char *path, int line,
                    int column, const char *fmt, ...) CGV_PRINTF(5, 6);

/* "invalid spec: 3 problems" + one line per issue ("line 4, col 3:
 * networks[0].addresses[1]: ..."), for logs and plain-text errors.
 * Caller frees. */
char *spec_issues_format(const struct spec_issues *issues);

const char *spec_accel_name(enum spec_accel a);
const char *spec_redundancy_name(enum spec_redundancy r); /* "none", "2n", "n+m", "nway-active" */
const char *spec_restart_name(enum spec_restart r);       /* "fast", "cold" */
const char *spec_cpu_policy_name(enum spec_cpu_policy p);  /* "floating", "dedicated", "shared-group", "pinned" */

#endif
