/* vmm.h — the VM manager: cgvd's model of services and their VMs, and the
 * only code that changes it. It turns specs into libvirt domains, runs VM
 * operations on worker threads, follows libvirt's lifecycle events and each
 * VM's agent channel, and re-adopts running VMs after a cgvd restart or a
 * libvirtd reconnect without touching them.
 *
 * Everything here runs on the loop thread. Requests answer through a
 * vmm_reply_fn, called exactly once, either before the request function
 * returns (immediate errors, reads) or later (operations that wait on
 * libvirt). */
#ifndef VMM_H
#define VMM_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cgv_common.h"
#include "evlog.h"
#include "hv.h"
#include "hv_accel.h"
#include "jobs.h"
#include "loop.h"
#include "net.h"
#include "spec.h"
#include "store.h"

struct vmm_config {
    const char *state_dir;     /* save images go to <state_dir>/save */
    const char *run_dir;       /* sockets: <run_dir>/vm/<vm>/{agent,console}.sock */
    const char *log_dir;       /* console logs: <log_dir>/<domain>.console.log */
    const char *image_dir;     /* <image_dir>/<image>/{vmlinuz,initrd.img} */
    const char *domain_prefix; /* libvirt domain name = prefix + VM name */
    struct net_def net;        /* the network specs call "default" (or its name) */
    struct hv_accel_probe probe;
    unsigned stop_timeout_ms;  /* default graceful stop/reboot timeout */
    unsigned agent_miss_limit; /* heartbeats missed before the agent is "down" */
    const char *housekeeping;  /* CPU list for cgvd, libvirt and emulator threads;
                                  NULL/"" = the first core */
};

struct vmm;

/* body: the JSON answer (ownership passes to the callee), NULL on error;
 * err: set on error; issues: validation problems for CGV_E_INVALID, or NULL. */
typedef void (*vmm_reply_fn)(void *ctx, json_t *body, const struct cgv_error *err,
                             const struct spec_issues *issues);

/* All pointers are borrowed and must outlive the vmm. */
int vmm_new(const struct vmm_config *cfg, struct loop *l, struct jobs *jobs,
            struct hv *hv, struct store *st, struct evlog *ev, struct vmm **out,
            struct cgv_error *err) CGV_WUR;
void vmm_free(struct vmm *m);

/* Load the store, connect to libvirt (retrying in the background if it is
 * not there) and adopt the running domains. */
int vmm_start(struct vmm *m, struct cgv_error *err) CGV_WUR;

/* Process queued libvirt events (call when hv_event_fd is readable). */
void vmm_handle_hv_events(struct vmm *m);

void vmm_apply(struct vmm *m, const char *text, size_t len, bool dry_run,
               vmm_reply_fn reply, void *ctx);
void vmm_delete_service(struct vmm *m, const char *name, vmm_reply_fn reply, void *ctx);
/* op: start stop destroy pause resume reboot save restore. timeout_ms 0 =
 * the configured default (stop, reboot). */
void vmm_vm_op(struct vmm *m, const char *name, const char *op, unsigned timeout_ms,
               vmm_reply_fn reply, void *ctx);

/* Change a VM's vCPUs, pinning, memory or QoS (cgv vm set): body is a JSON
 * object {vcpus, memory, cpus, qos, reset}. Live where possible, else by a
 * controlled restart (with a switchover first for an active). */
void vmm_vm_set(struct vmm *m, const char *name, const char *body, size_t len,
                vmm_reply_fn reply, void *ctx);

/* Read-only views (new references; NULL + err when not found). */
json_t *vmm_health_json(struct vmm *m);
json_t *vmm_services_json(struct vmm *m);
json_t *vmm_service_json(struct vmm *m, const char *name, struct cgv_error *err);
json_t *vmm_vms_json(struct vmm *m);
json_t *vmm_vm_json(struct vmm *m, const char *name, struct cgv_error *err);
/* Prometheus text of every metric (caller frees), its length in *len. */
char *vmm_kpi_metrics(struct vmm *m, size_t *len);
/* Path of a VM's console log (caller frees), or NULL + err. */
char *vmm_console_log_path(struct vmm *m, const char *name, struct cgv_error *err);

#endif
