/* hv.h — cgv's only door to libvirt.
 *
 * Nothing outside src/hv includes libvirt headers. libvirt's events are
 * dispatched on a thread of this module (libvirt's default event loop) and
 * handed to the caller's event loop through a queue whose eventfd becomes
 * readable (hv_event_fd / hv_next_event). The domain operations block and
 * are safe from any thread: cgvd runs them on worker threads so that a slow
 * save never delays fault handling.
 *
 * The connection may drop (libvirtd restarted): an HV_EV_DISCONNECTED event
 * is queued and operations fail with CGV_E_UNAVAIL until hv_connect()
 * succeeds again; QEMU processes and their sockets are not affected.
 */
#ifndef HV_H
#define HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"
#include "hv_xml.h"

struct hv;

enum hv_ev_kind {
    HV_EV_LIFECYCLE = 1, /* a domain changed state: lifecycle/detail */
    HV_EV_REBOOT,        /* the guest reset itself */
    HV_EV_WATCHDOG,      /* the virtual watchdog fired */
    HV_EV_DISCONNECTED,  /* the libvirt connection closed */
};

/* libvirt's lifecycle event types, as cgv names them. */
enum hv_lifecycle {
    HV_LC_DEFINED = 0,
    HV_LC_UNDEFINED,
    HV_LC_STARTED,
    HV_LC_SUSPENDED,
    HV_LC_RESUMED,
    HV_LC_STOPPED,
    HV_LC_SHUTDOWN,
    HV_LC_PMSUSPENDED,
    HV_LC_CRASHED,
    HV_LC_OTHER,
};

struct hv_event {
    enum hv_ev_kind kind;
    char domain[128];
    char uuid[37];
    enum hv_lifecycle lifecycle;
    int detail;              /* libvirt's detail number */
    char detail_name[32];    /* e.g. "failed", "saved", "booted" */
    int64_t mono_us;         /* when libvirt delivered it to us */
};

/* Domain states, as cgv names them. */
enum hv_state {
    HV_ST_UNKNOWN = 0,
    HV_ST_RUNNING,
    HV_ST_PAUSED,
    HV_ST_SHUTDOWN, /* being shut down */
    HV_ST_SHUTOFF,
    HV_ST_CRASHED,
    HV_ST_PMSUSPENDED,
};

struct hv_dom_info {
    char name[128];
    char uuid[37];
    enum hv_state state;
    char reason[32];      /* libvirt's state reason, e.g. "booted", "saved" */
    bool persistent;
    int pid;              /* QEMU pid, 0 when not running or unknown */
    bool has_meta;        /* carries a cgv metadata element */
    struct hv_meta meta;
};

/* Create the adapter and start its event thread; does not connect yet.
 * pid_dir is where libvirt keeps "<domain>.pid" (NULL: /run/libvirt/qemu). */
int hv_new(const char *uri, const char *pid_dir, struct hv **out,
           struct cgv_error *err) CGV_WUR;
void hv_free(struct hv *hv);

/* Connect (blocking), register the event callbacks. No-op when connected. */
int hv_connect(struct hv *hv, struct cgv_error *err) CGV_WUR;
/* Drop the connection (after HV_EV_DISCONNECTED, before reconnecting). */
void hv_disconnect(struct hv *hv);
bool hv_is_connected(struct hv *hv);
const char *hv_uri(const struct hv *hv);

/* Readable while events are queued; take them with hv_next_event until it
 * returns false. Single consumer. */
int hv_event_fd(const struct hv *hv);
bool hv_next_event(struct hv *hv, struct hv_event *out);

/* Blocking operations by domain name. A missing domain fails with
 * CGV_E_NOTFOUND, a domain in the wrong state with CGV_E_CONFLICT, anything
 * else libvirt refuses with CGV_E_LIBVIRT; all carry libvirt's message. */
int hv_dom_define(struct hv *hv, const char *xml, struct cgv_error *err) CGV_WUR;
int hv_dom_undefine(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_start(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_destroy(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_shutdown(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_reboot(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_reset(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_suspend(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_resume(struct hv *hv, const char *name, struct cgv_error *err) CGV_WUR;
int hv_dom_save(struct hv *hv, const char *name, const char *path,
                struct cgv_error *err) CGV_WUR;
int hv_dom_restore(struct hv *hv, const char *path, struct cgv_error *err) CGV_WUR;
/* A live snapshot of the running domain's memory into path (an external
 * memory snapshot without metadata: the domain keeps running, the file
 * restores with hv_dom_restore like a saved image). */
int hv_dom_snapshot_memory(struct hv *hv, const char *name, const char *path,
                           struct cgv_error *err) CGV_WUR;
int hv_dom_info(struct hv *hv, const char *name, struct hv_dom_info *out,
                struct cgv_error *err) CGV_WUR;
/* Counters of one running domain (libvirt's bulk stats). */
struct hv_dom_stats {
    char name[128];
    uint64_t cpu_time_ns;      /* all threads of the QEMU process */
    uint64_t vcpu_time_ns;     /* sum over vCPUs */
    unsigned vcpus;
    uint64_t mem_max_kib;      /* configured */
    uint64_t mem_rss_kib;      /* QEMU's resident set, 0 if unknown */
    uint64_t net_rx_bytes, net_tx_bytes, net_rx_pkts, net_tx_pkts;
    uint64_t net_rx_drop, net_tx_drop, net_rx_errs, net_tx_errs;
    uint64_t blk_rd_bytes, blk_wr_bytes, blk_rd_reqs, blk_wr_reqs;
};

/* Stats of every running domain whose name starts with prefix, in one call.
 * *out is caller-freed. */
int hv_dom_stats_all(struct hv *hv, const char *prefix, struct hv_dom_stats **out,
                     size_t *n, struct cgv_error *err) CGV_WUR;

/* Live (and persistent) tuning of a domain. live: apply to the running
 * domain too; config: to its persistent definition too. A change libvirt
 * cannot make live fails with CGV_E_CONFLICT and libvirt's reason. */
struct hv_tune {
    unsigned vcpus;              /* 0 = leave */
    bool set_shares;
    unsigned shares;
    bool set_quota;
    unsigned period_us;
    int64_t quota_us;            /* -1 = no quota */
    bool set_hard_limit;
    uint64_t hard_limit_mib;     /* 0 = unlimited */
    bool set_bandwidth;
    uint64_t net_in_kbps, net_out_kbps, net_burst_kb;
};
int hv_dom_tune(struct hv *hv, const char *name, const struct hv_tune *t, bool live,
                bool config, struct cgv_error *err) CGV_WUR;
/* Pin vCPU vcpu (or the emulator, vcpu -1) to cpuset ("2-3,6"). */
int hv_dom_pin(struct hv *hv, const char *name, int vcpu, const char *cpuset, bool live,
               bool config, struct cgv_error *err) CGV_WUR;
/* libvirt's capabilities XML (caller frees). */
char *hv_capabilities(struct hv *hv, struct cgv_error *err);
/* The CPU affinity list of every vCPU thread of a running domain, as the
 * kernel has it ("2", "0-1", ...), read from /proc/PID/task: what pinning
 * really did. (*out)[i] for vCPU i, i < *n (NULL if that thread was not
 * found); the caller frees each string and the array. */
int hv_vcpu_affinity(int qemu_pid, char ***out, size_t *n, struct cgv_error *err) CGV_WUR;

/* QEMU pid of a running domain from libvirt's pid file (no RPC, safe on
 * the loop thread), 0 when not known. */
int hv_dom_pid(struct hv *hv, const char *name);
/* Every domain, cgv's or not (has_meta tells); *out is caller-freed. */
int hv_dom_list(struct hv *hv, struct hv_dom_info **out, size_t *n,
                struct cgv_error *err) CGV_WUR;

const char *hv_state_name(enum hv_state s);
const char *hv_lifecycle_name(enum hv_lifecycle lc);

#endif
