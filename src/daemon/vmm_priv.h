/* vmm_priv.h — the VM manager's internal types, shared by vmm.c (model,
 * events, agents, adoption), vmm_apply.c (apply/delete) and vmm_ops.c
 * (VM operations). Not for use outside src/daemon/vmm*.c. */
#ifndef VMM_PRIV_H
#define VMM_PRIV_H

#include "agentch.h"
#include "ha.h"
#include "place.h"
#include "vmm.h"

#define VMM_VM_NAME_MAX 48
#define VMM_PATH_MAX 256

enum vmm_agent_state { AGENT_NEVER = 0, AGENT_UP, AGENT_DOWN, AGENT_PAUSED };

struct vmm_op;

/* A VM's overrides of its service's spec (cgv vm set). */
struct vmm_ovr {
    unsigned vcpus;              /* 0 = spec */
    uint64_t memory_mib;         /* 0 = spec */
    size_t n_pins;               /* pinned by hand: the VM becomes "pinned" */
    unsigned pins[PLACE_MAX_VCPUS];
    bool has_qos;
    struct spec_qos qos;         /* replaces the spec's when has_qos */
};

struct vmm_kpi {
    bool valid;
    int pid;                  /* the QEMU the counters came from */
    struct hv_dom_stats cur;  /* latest counters */
    int64_t at_us;            /* when they were read */
    double cpu_ratio, vcpu_ratio;          /* CPUs used over the last period */
    double net_rx_bps, net_tx_bps, blk_rd_bps, blk_wr_bps;
    uint64_t ping_seq, pings, pongs;
    double rtt_ms, rtt_avg_ms, rtt_max_ms;
};

struct vmm_host_kpi {
    unsigned ncpus;
    unsigned long long cpu_busy, cpu_total; /* jiffies */
    double cpu_ratio;
    unsigned long long mem_total_kib, mem_avail_kib;
};

struct ha_job;

struct vmm_service {
    char name[SPEC_NAME_MAX + 1];
    struct spec_service *spec; /* owned */
    int64_t generation;
    int64_t created_ms, updated_ms;
    const char *busy;          /* "apply" | "delete" | NULL */
    struct ha_svc *ha;         /* owned; availability state */
    bool ha_dirty;             /* ha state changed since last persisted */
    /* an apply or delete that arrived while HA worked on its VMs (snapshot,
     * fence, restart: a moment): run when the last of that work ends */
    struct {
        char *text; /* owned; the spec of an apply */
        size_t len;
        bool dry_run, is_delete;
        vmm_reply_fn reply;
        void *ctx;
    } deferred;
    struct vmm_service *next;
};

struct vmm_vm {
    struct vmm *m;
    struct vmm_service *svc;
    char name[VMM_VM_NAME_MAX + 1];
    char domain[128];
    int index;
    char uuid[37];
    char mac[18];
    char desired[16];
    size_t n_addrs;
    char addrs[SPEC_MAX_NETWORKS][24]; /* "ip/prefix" */
    bool restart_pending;
    char *save_path;                   /* owned, NULL if none */
    int64_t created_ms;

    /* libvirt's view */
    bool exists;           /* the domain is defined */
    enum hv_state state;
    char reason[32];
    int pid;
    int64_t state_us;      /* monotonic time of the newest state we applied */

    /* operation in progress */
    const char *busy;
    struct vmm_op *op;

    /* agent */
    char agent_sock[VMM_PATH_MAX];
    char console_sock[VMM_PATH_MAX];
    char console_log[VMM_PATH_MAX];
    char sock_dir[VMM_PATH_MAX];
    struct agentch *ch;
    enum vmm_agent_state agent;
    bool hello_on_conn;    /* a HELLO came on the current connection */
    bool greeted;          /* HOST_HELLO sent to the agent now behind the channel */
    int64_t hb_grace_until_ms; /* a just-started guest: twice the miss budget until then */
    struct ha_job *fence_job; /* a fence whose SIGKILL was sent; not owned */
    char agent_version[PROTO_MAX_STR + 1];
    uint64_t boot_id;
    int64_t last_hb_ms;    /* monotonic, of the last HELLO/HEARTBEAT */
    uint64_t heartbeats;
    uint64_t app_served;
    uint64_t proto_errors;
    uint64_t proto_errors_reported;
    int64_t proto_report_ms;
    char proto_last_why[160];
    int64_t last_reboot_ms;    /* monotonic, of the last reboot event */

    /* high availability */
    int pidfd;                 /* watches the QEMU process, -1 if none */
    int pidfd_pid;
    bool recovering;           /* an HA job (fence, restart, snapshot) runs */
    bool fresh_boot;           /* cold-booted: snapshot it when first healthy */
    int64_t golden_gen;        /* spec generation of the golden snapshot, 0 none */
    int64_t fault_us;          /* monotonic time the last fault was detected */
    char fault_name[24];
    int64_t role_sent_us;      /* when the last ROLE_SET went out */
    struct loop_timer *ack_timer;
    struct loop_timer *pause_timer; /* paused behind cgv's back: a hang unless it crashed */
    struct vmm_kpi kpi;

    /* planned switchover before an operator action */
    void (*drain_cb)(struct vmm_vm *vm, void *ctx);
    void *drain_ctx;
    struct loop_timer *drain_timer;
    unsigned defined_max_vcpus;  /* vCPU room of the last definition built */

    /* CPU placement */
    bool placed;
    struct place_result alloc;
    char *pin_strs[PLACE_MAX_VCPUS]; /* for the domain XML (vmm_place_fill_def) */
    char *emu_str, *nodes_str;
    /* operator overrides (cgv vm set), on top of the service's spec */
    struct vmm_ovr ovr;
    /* an operator operation that arrived during a background snapshot and
     * runs when it ends */
    struct {
        char op[16];        /* an operation, or "set" */
        unsigned timeout_ms;
        char *body;         /* set: the request body (owned) */
        size_t len;
        vmm_reply_fn reply;
        void *ctx;
    } deferred;

    struct vmm_vm *next;
};

struct vmm {
    struct vmm_config cfg;
    char *state_dir, *run_dir, *log_dir, *image_dir, *domain_prefix;
    struct loop *loop;
    struct jobs *jobs;
    struct hv *hv;
    struct store *st;
    struct evlog *ev;

    struct vmm_service *services;
    struct vmm_vm *vms; /* ordered by service, then index */

    bool connected;
    bool connecting;
    bool stopping;      /* vmm_free: tearing down memory, not the VMs */
    bool adopted_once;  /* the first sync after start is the adoption */
    int64_t reconnect_ms;
    struct loop_timer *reconnect;
    struct loop_timer *sync_retry;
    int64_t monitor_due_ms;  /* when the running monitor tick was due */
    struct loop_timer *monitor;
    int64_t started_mono_ms;
    char host[64];
    struct loop_timer *kpi_timer;
    struct place_host *place;   /* NULL: placement off (topology unknown) */
    struct place_topology *topo;
    uint64_t pool_gen;
    bool hk_shared;     /* small host: floating vCPUs may use housekeeping CPUs */
    bool kpi_pending;
    struct vmm_host_kpi host_kpi;
};

/* vmm.c */
struct vmm_service *vmm_find_service(struct vmm *m, const char *name);
struct vmm_vm *vmm_find_vm(struct vmm *m, const char *name);
struct vmm_vm *vmm_find_domain(struct vmm *m, const char *domain);
struct vmm_service *vmm_service_add(struct vmm *m, const char *name);
void vmm_service_remove(struct vmm *m, struct vmm_service *svc);
/* Create the in-memory VM (not stored, not defined). */
struct vmm_vm *vmm_vm_add(struct vmm *m, struct vmm_service *svc, int index,
                          const char *uuid);
void vmm_vm_remove(struct vmm *m, struct vmm_vm *vm);
/* Write the VM's persistent fields to the store. */
int vmm_vm_persist(struct vmm *m, struct vmm_vm *vm, struct cgv_error *err) CGV_WUR;
void vmm_vm_to_store(const struct vmm_vm *vm, struct store_vm *out, char **addr_json);
/* Apply a state libvirt reported at mono time at_us (older news is ignored). */
void vmm_vm_set_state(struct vmm_vm *vm, enum hv_state st, const char *reason,
                      int64_t at_us);
/* The domain XML for a VM from its service's spec. */
int vmm_vm_build_xml(struct vmm *m, struct vmm_vm *vm, char **xml, struct cgv_error *err) CGV_WUR;
void vmm_gen_uuid(char out[37]);
void vmm_reply_error(vmm_reply_fn reply, void *ctx, const struct cgv_error *err);
/* Run a sync with libvirt (adoption, after reconnect). */
void vmm_sync(struct vmm *m);

/* vmm_ha.c */
void vmm_ha_service_init(struct vmm *m, struct vmm_service *svc);
void vmm_ha_service_free(struct vmm *m, struct vmm_service *svc);
/* Load the persisted HA state of a service (after its VMs are loaded). */
void vmm_ha_load(struct vmm *m, struct vmm_service *svc);
/* The VM is running (state applied): watch its QEMU process. */
void vmm_ha_watch(struct vmm_vm *vm);
void vmm_ha_unwatch(struct vmm_vm *vm);
/* Observations. */
void vmm_ha_hello(struct vmm_vm *vm);
void vmm_ha_connected(struct vmm_vm *vm); /* send CONFIG (and the current role) */
void vmm_ha_role_ack(struct vmm_vm *vm, const struct proto_role_ack *ack);
void vmm_ha_app_event(struct vmm_vm *vm, const struct proto_app_event *ev);
void vmm_ha_channel_eof(struct vmm_vm *vm);
void vmm_ha_heartbeat_lost(struct vmm_vm *vm, int64_t silent_ms);
void vmm_ha_lifecycle(struct vmm_vm *vm, const struct hv_event *ev);
void vmm_ha_watchdog(struct vmm_vm *vm);
/* After adoption: the VM should run but does not. */
void vmm_ha_found_dead(struct vmm_vm *vm, const char *why);
/* Send a connected agent HOST_HELLO, CONFIG and its role again (after the
 * service's spec changed), with a heartbeat grace period. */
void vmm_vm_regreet(struct vmm_vm *vm);
/* The guest rebooted itself (no operation asked): a fault for HA. */
void vmm_ha_guest_reset(struct vmm_vm *vm);
/* Before an operator action on vm: hand its assignment to a standby (demote
 * it, promote the standby, wait for the ack). Returns true if that started:
 * cb(vm, ctx) runs when it is done (or after a timeout). */
bool vmm_ha_drain(struct vmm_vm *vm, void (*cb)(struct vmm_vm *vm, void *ctx), void *ctx);
/* Operator actions on a VM (after the operation succeeded). */
void vmm_ha_operator_started(struct vmm_vm *vm);
void vmm_ha_operator_stopped(struct vmm_vm *vm);
/* A VM was created by apply: HA starts following it. */
void vmm_ha_created(struct vmm_vm *vm);
json_t *vmm_ha_vm_json(struct vmm_vm *vm);
json_t *vmm_ha_service_json(struct vmm *m, struct vmm_service *svc);
/* Persist dirty HA state (called from the monitor). */
void vmm_ha_flush(struct vmm *m);

/* vmm_place.c */
void vmm_place_init(struct vmm *m);
void vmm_place_free(struct vmm *m);
int vmm_place_alloc(struct vmm *m, struct vmm_vm *vm, struct cgv_error *err) CGV_WUR;
void vmm_place_release(struct vmm *m, struct vmm_vm *vm);
void vmm_place_adopt_all(struct vmm *m);
void vmm_place_request(const struct vmm_vm *vm, struct place_request *r);
void vmm_place_persist(struct vmm *m, struct vmm_vm *vm);
void vmm_place_fill_def(struct vmm *m, struct vmm_vm *vm, struct hv_domain_def *d);
void vmm_place_strings_free(struct vmm_vm *vm);
void vmm_place_check_pins(struct vmm *m, struct vmm_vm *vm);
/* Where vCPU i of vm may run (its allocation, on small hosts widened). */
void vmm_place_vcpu_set(const struct vmm *m, const struct vmm_vm *vm, unsigned i,
                        struct place_cpuset *out);
json_t *vmm_place_vm_json(struct vmm_vm *vm);
json_t *vmm_place_host_json(struct vmm *m);
/* Effective sizes of a VM: its overrides, else its spec. */
unsigned vmm_vm_vcpus(const struct vmm_vm *vm);
unsigned vmm_vm_max_vcpus(const struct vmm_vm *vm);
uint64_t vmm_vm_memory_mib(const struct vmm_vm *vm);
const struct spec_qos *vmm_vm_qos(const struct vmm_vm *vm);

/* vmm_set.c */
void vmm_set_load(struct vmm *m, struct vmm_vm *vm);

/* vmm_kpi.c */
void vmm_kpi_start(struct vmm *m);
void vmm_kpi_stop(struct vmm *m);
void vmm_kpi_pong(struct vmm_vm *vm, const struct proto_ping *pong, int64_t now_us);
json_t *vmm_kpi_vm_json(struct vmm_vm *vm);
json_t *vmm_kpi_host_json(struct vmm *m);

/* vmm_ops.c */
/* A lifecycle/reboot event for a VM with an operation waiting on it. */
void vmm_ops_on_lifecycle(struct vmm_vm *vm, const struct hv_event *ev);
/* Drop a VM's pending operation without answering it (cgvd is stopping and
 * its loop and workers are gone). */
void vmm_ops_abandon(struct vmm_vm *vm);
/* Run the apply or delete of svc deferred behind background snapshots, once
 * none of its VMs is busy any more. */
void vmm_apply_run_deferred(struct vmm *m, struct vmm_service *svc);
/* Run the operation deferred behind a background job, if any. */
void vmm_ops_run_deferred(struct vmm_vm *vm);

#endif
