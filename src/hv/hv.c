/* hv.c — libvirt connection, event thread and blocking domain operations.
 * See hv.h. The only file of cgv that includes libvirt's headers. */
#include "hv.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "hv"
#define HV_QUEUE_MAX 4096

struct hv_queue_item {
    struct hv_event ev;
    struct hv_queue_item *next;
};

struct hv {
    char *uri;
    char *pid_dir;
    int efd;

    pthread_mutex_t lock;      /* guards conn, callback ids, the queue */
    virConnectPtr conn;        /* NULL while disconnected */
    int cb_lifecycle, cb_reboot, cb_watchdog;
    bool close_cb;
    struct hv_queue_item *head, *tail;
    size_t queued;
    uint64_t dropped;

    pthread_t thread;
    atomic_bool stop;
};

#define PIN_MAP_BYTES 128 /* 1024 CPUs */

/* "0-2,5" into a libvirt CPU map; returns the highest CPU, or -1. */
static int pin_map_parse(const char *s, unsigned char *map, size_t len)
{
    int max = -1;

    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b;
        if (end == s || a < 0)
            return -1;
        b = a;
        if (*end == '-') {
            s = end + 1;
            b = strtol(s, &end, 10);
            if (end == s || b < a)
                return -1;
        }
        for (long x = a; x <= b; x++) {
            if ((size_t)(x / 8) >= len)
                return -1;
            map[x / 8] |= (unsigned char)(1u << (x % 8));
            if (x > max)
                max = (int)x;
        }
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return max;
}

static pthread_once_t hv_once = PTHREAD_ONCE_INIT;
static int hv_once_rc;

static void hv_silent_error(void *opaque, virErrorPtr e)
{
    (void)opaque;
    (void)e; /* errors are reported through struct cgv_error instead */
}

static void hv_global_init(void)
{
    virSetErrorFunc(NULL, hv_silent_error);
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0)
        hv_once_rc = -1;
}

/* ---- errors ----------------------------------------------------------- */

static int hv_fail(struct cgv_error *err, const char *what, const char *name)
{
    virErrorPtr e = virGetLastError();
    enum cgv_errcode code = CGV_E_LIBVIRT;
    const char *msg = e && e->message ? e->message : "unknown libvirt error";

    if (e) {
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
            code = CGV_E_NOTFOUND;
            break;
        case VIR_ERR_OPERATION_INVALID:
        case VIR_ERR_OPERATION_DENIED:
            code = CGV_E_CONFLICT;
            break;
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_INVALID_CONN:
        case VIR_ERR_SYSTEM_ERROR:
            if (e->domain == VIR_FROM_RPC || e->domain == VIR_FROM_REMOTE)
                code = CGV_E_UNAVAIL;
            break;
        default:
            break;
        }
    }
    cgv_err(err, code, "libvirt: %s %s: %s", what, name ? name : "", msg);
    virResetLastError();
    return -1;
}

/* ---- event queue -------------------------------------------------------- */

static void hv_push(struct hv *hv, const struct hv_event *ev)
{
    struct hv_queue_item *it;
    uint64_t one = 1;

    pthread_mutex_lock(&hv->lock);
    if (hv->queued >= HV_QUEUE_MAX) {
        hv->dropped++;
        pthread_mutex_unlock(&hv->lock);
        return;
    }
    it = cgv_malloc0(sizeof(*it));
    it->ev = *ev;
    if (hv->tail)
        hv->tail->next = it;
    else
        hv->head = it;
    hv->tail = it;
    hv->queued++;
    pthread_mutex_unlock(&hv->lock);
    if (write(hv->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("eventfd write: %s", strerror(errno));
}

bool hv_next_event(struct hv *hv, struct hv_event *out)
{
    struct hv_queue_item *it;
    uint64_t cnt;

    pthread_mutex_lock(&hv->lock);
    it = hv->head;
    if (it) {
        hv->head = it->next;
        if (!hv->head)
            hv->tail = NULL;
        hv->queued--;
    } else {
        /* Queue empty: clear the eventfd (reads fail with EAGAIN when 0). */
        if (read(hv->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
            log_warn("eventfd read: %s", strerror(errno));
    }
    if (hv->dropped) {
        log_error("event queue overflowed: %llu libvirt events dropped",
                  (unsigned long long)hv->dropped);
        hv->dropped = 0;
    }
    pthread_mutex_unlock(&hv->lock);
    if (!it)
        return false;
    *out = it->ev;
    free(it);
    return true;
}

int hv_event_fd(const struct hv *hv)
{
    return hv->efd;
}

/* ---- names -------------------------------------------------------------- */

static const char *const lc_details[][10] = {
    [HV_LC_DEFINED] = {"added", "updated", "renamed", "from-snapshot"},
    [HV_LC_UNDEFINED] = {"removed", "renamed"},
    [HV_LC_STARTED] = {"booted", "migrated", "restored", "from-snapshot", "wakeup"},
    [HV_LC_SUSPENDED] = {"paused", "migrated", "ioerror", "watchdog", "restored",
                         "from-snapshot", "api-error", "postcopy", "postcopy-failed"},
    [HV_LC_RESUMED] = {"unpaused", "migrated", "from-snapshot", "postcopy"},
    [HV_LC_STOPPED] = {"shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
                       "from-snapshot"},
    [HV_LC_SHUTDOWN] = {"finished", "guest", "host"},
    [HV_LC_PMSUSPENDED] = {"memory", "disk"},
    [HV_LC_CRASHED] = {"panicked", "crashloaded"},
};

static enum hv_lifecycle lc_from_virt(int event)
{
    switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED: return HV_LC_DEFINED;
    case VIR_DOMAIN_EVENT_UNDEFINED: return HV_LC_UNDEFINED;
    case VIR_DOMAIN_EVENT_STARTED: return HV_LC_STARTED;
    case VIR_DOMAIN_EVENT_SUSPENDED: return HV_LC_SUSPENDED;
    case VIR_DOMAIN_EVENT_RESUMED: return HV_LC_RESUMED;
    case VIR_DOMAIN_EVENT_STOPPED: return HV_LC_STOPPED;
    case VIR_DOMAIN_EVENT_SHUTDOWN: return HV_LC_SHUTDOWN;
    case VIR_DOMAIN_EVENT_PMSUSPENDED: return HV_LC_PMSUSPENDED;
    case VIR_DOMAIN_EVENT_CRASHED: return HV_LC_CRASHED;
    default: return HV_LC_OTHER;
    }
}

const char *hv_lifecycle_name(enum hv_lifecycle lc)
{
    static const char *const names[] = {"defined", "undefined", "started", "suspended",
                                        "resumed", "stopped", "shutdown", "pmsuspended",
                                        "crashed", "other"};
    return (unsigned)lc < CGV_ARRAY_LEN(names) ? names[lc] : "other";
}

const char *hv_state_name(enum hv_state s)
{
    static const char *const names[] = {"unknown", "running", "paused", "shutdown",
                                        "shutoff", "crashed", "pmsuspended"};
    return (unsigned)s < CGV_ARRAY_LEN(names) ? names[s] : "unknown";
}

static enum hv_state state_from_virt(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
        return HV_ST_RUNNING;
    case VIR_DOMAIN_PAUSED: return HV_ST_PAUSED;
    case VIR_DOMAIN_SHUTDOWN: return HV_ST_SHUTDOWN;
    case VIR_DOMAIN_SHUTOFF: return HV_ST_SHUTOFF;
    case VIR_DOMAIN_CRASHED: return HV_ST_CRASHED;
    case VIR_DOMAIN_PMSUSPENDED: return HV_ST_PMSUSPENDED;
    default: return HV_ST_UNKNOWN;
    }
}

static const char *reason_name(int st, int reason)
{
    static const char *const running[] = {"unknown", "booted", "migrated", "restored",
                                          "from-snapshot", "unpaused", "migration-canceled",
                                          "save-canceled", "wakeup", "crashed", "postcopy"};
    static const char *const paused[] = {"unknown", "user", "migration", "save", "dump",
                                         "ioerror", "watchdog", "from-snapshot",
                                         "shutting-down", "snapshot", "crashed",
                                         "starting-up", "postcopy", "postcopy-failed"};
    static const char *const shutoff[] = {"unknown", "shutdown", "destroyed", "crashed",
                                          "migrated", "saved", "failed", "from-snapshot",
                                          "daemon"};
    static const char *const crashed[] = {"unknown", "panicked"};

    switch (st) {
    case VIR_DOMAIN_RUNNING:
        return (unsigned)reason < CGV_ARRAY_LEN(running) ? running[reason] : "unknown";
    case VIR_DOMAIN_PAUSED:
        return (unsigned)reason < CGV_ARRAY_LEN(paused) ? paused[reason] : "unknown";
    case VIR_DOMAIN_SHUTOFF:
        return (unsigned)reason < CGV_ARRAY_LEN(shutoff) ? shutoff[reason] : "unknown";
    case VIR_DOMAIN_CRASHED:
        return (unsigned)reason < CGV_ARRAY_LEN(crashed) ? crashed[reason] : "unknown";
    default:
        return "unknown";
    }
}

/* ---- libvirt callbacks (event thread) ----------------------------------- */

static void fill_dom(struct hv_event *ev, virDomainPtr dom)
{
    const char *name = virDomainGetName(dom);
    cgv_strlcpy(ev->domain, name ? name : "", sizeof(ev->domain));
    if (virDomainGetUUIDString(dom, ev->uuid) < 0)
        ev->uuid[0] = '\0';
    ev->mono_us = cgv_mono_us();
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail,
                        void *opaque)
{
    struct hv_event ev = {.kind = HV_EV_LIFECYCLE};
    enum hv_lifecycle lc = lc_from_virt(event);
    const char *dn = NULL;

    (void)conn;
    fill_dom(&ev, dom);
    ev.lifecycle = lc;
    ev.detail = detail;
    if (lc != HV_LC_OTHER && detail >= 0 && detail < 10)
        dn = lc_details[lc][detail];
    cgv_strlcpy(ev.detail_name, dn ? dn : "unknown", sizeof(ev.detail_name));
    hv_push(opaque, &ev);
    return 0;
}

static int on_reboot(virConnectPtr conn, virDomainPtr dom, void *opaque)
{
    struct hv_event ev = {.kind = HV_EV_REBOOT};

    (void)conn;
    fill_dom(&ev, dom);
    hv_push(opaque, &ev);
    return 0;
}

static int on_watchdog(virConnectPtr conn, virDomainPtr dom, int action, void *opaque)
{
    struct hv_event ev = {.kind = HV_EV_WATCHDOG};

    (void)conn;
    fill_dom(&ev, dom);
    ev.detail = action;
    hv_push(opaque, &ev);
    return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
    struct hv_event ev = {.kind = HV_EV_DISCONNECTED};
    static const char *const reasons[] = {"error", "eof", "keepalive", "client"};

    (void)conn;
    ev.detail = reason;
    cgv_strlcpy(ev.detail_name,
                (unsigned)reason < CGV_ARRAY_LEN(reasons) ? reasons[reason] : "unknown",
                sizeof(ev.detail_name));
    ev.mono_us = cgv_mono_us();
    hv_push(opaque, &ev);
}

static void *hv_event_thread(void *arg)
{
    struct hv *hv = arg;
    sigset_t all;

    /* Signals belong to the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!atomic_load(&hv->stop)) {
        if (virEventRunDefaultImpl() < 0) {
            log_error("libvirt event loop: %s", virGetLastErrorMessage());
            usleep(100 * 1000);
        }
    }
    return NULL;
}

static void wake_cb(int timer, void *opaque)
{
    (void)opaque;
    virEventRemoveTimeout(timer);
}

/* ---- lifetime ----------------------------------------------------------- */

int hv_new(const char *uri, const char *pid_dir, struct hv **out, struct cgv_error *err)
{
    struct hv *hv;

    pthread_once(&hv_once, hv_global_init);
    if (hv_once_rc < 0)
        return cgv_err(err, CGV_E_LIBVIRT, "libvirt: initialisation failed: %s",
                       virGetLastErrorMessage());
    hv = cgv_malloc0(sizeof(*hv));
    hv->uri = cgv_strdup(uri);
    hv->pid_dir = cgv_strdup(pid_dir ? pid_dir : "/run/libvirt/qemu");
    hv->cb_lifecycle = hv->cb_reboot = hv->cb_watchdog = -1;
    pthread_mutex_init(&hv->lock, NULL);
    hv->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (hv->efd < 0) {
        cgv_err(err, CGV_E_IO, "eventfd: %s", strerror(errno));
        goto error;
    }
    if (pthread_create(&hv->thread, NULL, hv_event_thread, hv) != 0) {
        cgv_err(err, CGV_E_INTERNAL, "cannot start the libvirt event thread");
        goto error;
    }
    *out = hv;
    return 0;

error:
    if (hv->efd >= 0)
        close(hv->efd);
    free(hv->uri);
    free(hv->pid_dir);
    free(hv);
    return -1;
}

void hv_free(struct hv *hv)
{
    struct hv_event ev;

    if (!hv)
        return;
    hv_disconnect(hv);
    atomic_store(&hv->stop, true);
    virEventAddTimeout(0, wake_cb, NULL, NULL);
    pthread_join(hv->thread, NULL);
    while (hv_next_event(hv, &ev))
        ;
    close(hv->efd);
    pthread_mutex_destroy(&hv->lock);
    free(hv->uri);
    free(hv->pid_dir);
    free(hv);
}

const char *hv_uri(const struct hv *hv)
{
    return hv->uri;
}

int hv_connect(struct hv *hv, struct cgv_error *err)
{
    virConnectPtr conn;
    int lc, rb, wd;

    pthread_mutex_lock(&hv->lock);
    if (hv->conn) {
        pthread_mutex_unlock(&hv->lock);
        return 0;
    }
    pthread_mutex_unlock(&hv->lock);

    conn = virConnectOpen(hv->uri);
    if (!conn) {
        hv_fail(err, "connect to", hv->uri);
        if (err)
            err->code = CGV_E_UNAVAIL;
        return -1;
    }
    if (virConnectSetKeepAlive(conn, 5, 3) < 0)
        virResetLastError(); /* not fatal: the test driver has no keepalive */
    lc = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                          VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), hv,
                                          NULL);
    rb = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
                                          VIR_DOMAIN_EVENT_CALLBACK(on_reboot), hv, NULL);
    wd = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_WATCHDOG,
                                          VIR_DOMAIN_EVENT_CALLBACK(on_watchdog), hv,
                                          NULL);
    if (lc < 0 || rb < 0 || wd < 0) {
        hv_fail(err, "register domain events on", hv->uri);
        if (lc >= 0)
            virConnectDomainEventDeregisterAny(conn, lc);
        if (rb >= 0)
            virConnectDomainEventDeregisterAny(conn, rb);
        if (wd >= 0)
            virConnectDomainEventDeregisterAny(conn, wd);
        virConnectClose(conn);
        return -1;
    }
    pthread_mutex_lock(&hv->lock);
    hv->conn = conn;
    hv->cb_lifecycle = lc;
    hv->cb_reboot = rb;
    hv->cb_watchdog = wd;
    hv->close_cb = virConnectRegisterCloseCallback(conn, on_close, hv, NULL) == 0;
    if (!hv->close_cb)
        virResetLastError();
    pthread_mutex_unlock(&hv->lock);
    log_info("connected to %s", hv->uri);
    return 0;
}

void hv_disconnect(struct hv *hv)
{
    virConnectPtr conn;

    pthread_mutex_lock(&hv->lock);
    conn = hv->conn;
    hv->conn = NULL;
    if (conn) {
        /* These fail harmlessly when the connection is already dead. */
        if (hv->cb_lifecycle >= 0)
            virConnectDomainEventDeregisterAny(conn, hv->cb_lifecycle);
        if (hv->cb_reboot >= 0)
            virConnectDomainEventDeregisterAny(conn, hv->cb_reboot);
        if (hv->cb_watchdog >= 0)
            virConnectDomainEventDeregisterAny(conn, hv->cb_watchdog);
        if (hv->close_cb)
            virConnectUnregisterCloseCallback(conn, on_close);
        virResetLastError();
    }
    hv->cb_lifecycle = hv->cb_reboot = hv->cb_watchdog = -1;
    hv->close_cb = false;
    pthread_mutex_unlock(&hv->lock);
    if (conn)
        virConnectClose(conn);
}

bool hv_is_connected(struct hv *hv)
{
    bool up;

    pthread_mutex_lock(&hv->lock);
    up = hv->conn != NULL;
    pthread_mutex_unlock(&hv->lock);
    return up;
}

/* A referenced connection for one operation, or NULL (err set). */
static virConnectPtr hv_conn_ref(struct hv *hv, struct cgv_error *err)
{
    virConnectPtr c;

    pthread_mutex_lock(&hv->lock);
    c = hv->conn;
    if (c)
        virConnectRef(c);
    pthread_mutex_unlock(&hv->lock);
    if (!c)
        cgv_err(err, CGV_E_UNAVAIL, "libvirt: not connected to %s", hv->uri);
    return c;
}

/* ---- domain operations --------------------------------------------------- */

typedef int (*dom_op_fn)(virDomainPtr dom);

static int dom_op(struct hv *hv, const char *name, const char *what, dom_op_fn fn,
                  struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom = NULL;
    int ret = -1;

    if (!c)
        return -1;
    dom = virDomainLookupByName(c, name);
    if (!dom) {
        hv_fail(err, "look up", name);
        goto cleanup;
    }
    if (fn(dom) < 0) {
        hv_fail(err, what, name);
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (dom)
        virDomainFree(dom);
    virConnectClose(c);
    return ret;
}

static int op_undefine(virDomainPtr d)
{
    const unsigned base =
        VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;

    if (virDomainUndefineFlags(d, base | VIR_DOMAIN_UNDEFINE_NVRAM) == 0)
        return 0;
    /* Drivers without NVRAM support refuse the flag (virsh retries too). */
    if (virGetLastErrorCode() != VIR_ERR_NO_SUPPORT &&
        virGetLastErrorCode() != VIR_ERR_INVALID_ARG)
        return -1;
    virResetLastError();
    return virDomainUndefineFlags(d, base);
}
static int op_start(virDomainPtr d) { return virDomainCreate(d); }
static int op_destroy(virDomainPtr d) { return virDomainDestroy(d); }
static int op_shutdown(virDomainPtr d)
{
    return virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
}
static int op_reboot(virDomainPtr d)
{
    return virDomainReboot(d, VIR_DOMAIN_REBOOT_ACPI_POWER_BTN);
}
static int op_reset(virDomainPtr d) { return virDomainReset(d, 0); }
static int op_suspend(virDomainPtr d) { return virDomainSuspend(d); }
static int op_resume(virDomainPtr d) { return virDomainResume(d); }

int hv_dom_undefine(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "undefine", op_undefine, err);
}
int hv_dom_start(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "start", op_start, err);
}
int hv_dom_destroy(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "destroy", op_destroy, err);
}
int hv_dom_shutdown(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "shut down", op_shutdown, err);
}
int hv_dom_reboot(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "reboot", op_reboot, err);
}
int hv_dom_reset(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "reset", op_reset, err);
}
int hv_dom_suspend(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "pause", op_suspend, err);
}
int hv_dom_resume(struct hv *hv, const char *name, struct cgv_error *err)
{
    return dom_op(hv, name, "resume", op_resume, err);
}

int hv_dom_save(struct hv *hv, const char *name, const char *path, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom = NULL;
    int ret = -1;

    if (!c)
        return -1;
    dom = virDomainLookupByName(c, name);
    if (!dom) {
        hv_fail(err, "look up", name);
        goto cleanup;
    }
    if (virDomainSaveFlags(dom, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0) {
        hv_fail(err, "save", name);
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (dom)
        virDomainFree(dom);
    virConnectClose(c);
    return ret;
}

int hv_dom_restore(struct hv *hv, const char *path, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    int ret = 0;

    if (!c)
        return -1;
    if (virDomainRestoreFlags(c, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0)
        ret = hv_fail(err, "restore from", path);
    virConnectClose(c);
    return ret;
}

int hv_dom_snapshot_memory(struct hv *hv, const char *name, const char *path,
                           struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom = NULL;
    virDomainSnapshotPtr snap = NULL;
    char *xml = NULL;
    int ret = -1;

    if (!c)
        return -1;
    if (hv_xml_snapshot(path, &xml, err) < 0)
        goto cleanup;
    dom = virDomainLookupByName(c, name);
    if (!dom) {
        hv_fail(err, "look up", name);
        goto cleanup;
    }
    snap = virDomainSnapshotCreateXML(dom, xml,
                                      VIR_DOMAIN_SNAPSHOT_CREATE_LIVE |
                                          VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA);
    if (!snap) {
        hv_fail(err, "snapshot the memory of", name);
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (snap)
        virDomainSnapshotFree(snap);
    if (dom)
        virDomainFree(dom);
    free(xml);
    virConnectClose(c);
    return ret;
}

static unsigned mod_flags(bool live, bool config)
{
    return (live ? VIR_DOMAIN_AFFECT_LIVE : 0) | (config ? VIR_DOMAIN_AFFECT_CONFIG : 0);
}

int hv_dom_tune(struct hv *hv, const char *name, const struct hv_tune *t, bool live,
                bool config, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom = NULL;
    unsigned flags = mod_flags(live, config);
    virTypedParameterPtr params = NULL;
    int nparams = 0, maxparams = 0, ret = -1;

    if (!c)
        return -1;
    dom = virDomainLookupByName(c, name);
    if (!dom) {
        hv_fail(err, "look up", name);
        goto cleanup;
    }
    if (t->vcpus && virDomainSetVcpusFlags(dom, t->vcpus, flags) < 0) {
        hv_fail(err, "set the vCPU count of", name);
        goto cleanup;
    }
    if (t->set_shares &&
        virTypedParamsAddULLong(&params, &nparams, &maxparams, VIR_DOMAIN_SCHEDULER_CPU_SHARES,
                                t->shares) < 0)
        goto param_fail;
    if (t->set_quota &&
        (virTypedParamsAddULLong(&params, &nparams, &maxparams,
                                 VIR_DOMAIN_SCHEDULER_VCPU_PERIOD,
                                 t->period_us ? t->period_us : 100000) < 0 ||
         virTypedParamsAddLLong(&params, &nparams, &maxparams, VIR_DOMAIN_SCHEDULER_VCPU_QUOTA,
                                t->quota_us) < 0))
        goto param_fail;
    if (nparams && virDomainSetSchedulerParametersFlags(dom, params, nparams, flags) < 0) {
        hv_fail(err, "set the CPU shares/quota of", name);
        goto cleanup;
    }
    virTypedParamsFree(params, nparams);
    params = NULL;
    nparams = maxparams = 0;
    if (t->set_hard_limit) {
        unsigned long long kib = t->hard_limit_mib ? t->hard_limit_mib * 1024ULL
                                                   : VIR_DOMAIN_MEMORY_PARAM_UNLIMITED;
        if (virTypedParamsAddULLong(&params, &nparams, &maxparams,
                                    VIR_DOMAIN_MEMORY_HARD_LIMIT, kib) < 0)
            goto param_fail;
        if (virDomainSetMemoryParameters(dom, params, nparams, flags) < 0) {
            hv_fail(err, "set the memory hard limit of", name);
            goto cleanup;
        }
        virTypedParamsFree(params, nparams);
        params = NULL;
        nparams = maxparams = 0;
    }
    if (t->set_bandwidth) {
        char *xml = virDomainGetXMLDesc(dom, 0);
        char macs[HV_MAX_NICS][18];
        size_t nm = xml ? hv_xml_macs(xml, macs, HV_MAX_NICS) : 0;
        free(xml);
        for (size_t k = 0; k < nm; k++) {
            if (virTypedParamsAddUInt(&params, &nparams, &maxparams,
                                      VIR_DOMAIN_BANDWIDTH_IN_AVERAGE,
                                      (unsigned)t->net_in_kbps) < 0 ||
                virTypedParamsAddUInt(&params, &nparams, &maxparams,
                                      VIR_DOMAIN_BANDWIDTH_OUT_AVERAGE,
                                      (unsigned)t->net_out_kbps) < 0 ||
                virTypedParamsAddUInt(&params, &nparams, &maxparams,
                                      VIR_DOMAIN_BANDWIDTH_IN_BURST,
                                      (unsigned)t->net_burst_kb) < 0 ||
                virTypedParamsAddUInt(&params, &nparams, &maxparams,
                                      VIR_DOMAIN_BANDWIDTH_OUT_BURST,
                                      (unsigned)t->net_burst_kb) < 0)
                goto param_fail;
            if (virDomainSetInterfaceParameters(dom, macs[k], params, nparams, flags) < 0) {
                hv_fail(err, "set the network bandwidth of", name);
                goto cleanup;
            }
            virTypedParamsFree(params, nparams);
            params = NULL;
            nparams = maxparams = 0;
        }
    }
    ret = 0;
    goto cleanup;

param_fail:
    hv_fail(err, "prepare the parameters for", name);

cleanup:
    virTypedParamsFree(params, nparams);
    if (dom)
        virDomainFree(dom);
    virConnectClose(c);
    return ret;
}

int hv_dom_pin(struct hv *hv, const char *name, int vcpu, const char *cpuset, bool live,
               bool config, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom = NULL;
    unsigned char map[PIN_MAP_BYTES] = {0};
    int ret = -1, maxcpu;

    if (!c)
        return -1;
    maxcpu = pin_map_parse(cpuset, map, sizeof(map));
    if (maxcpu < 0) {
        cgv_err(err, CGV_E_INVALID, "bad CPU set '%s'", cpuset);
        goto cleanup;
    }
    dom = virDomainLookupByName(c, name);
    if (!dom) {
        hv_fail(err, "look up", name);
        goto cleanup;
    }
    if ((vcpu < 0 ? virDomainPinEmulator(dom, map, sizeof(map), mod_flags(live, config))
                  : virDomainPinVcpuFlags(dom, (unsigned)vcpu, map, sizeof(map),
                                          mod_flags(live, config))) < 0) {
        hv_fail(err, vcpu < 0 ? "pin the emulator threads of" : "pin a vCPU of", name);
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (dom)
        virDomainFree(dom);
    virConnectClose(c);
    return ret;
}

char *hv_capabilities(struct hv *hv, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    char *caps;

    if (!c)
        return NULL;
    caps = virConnectGetCapabilities(c);
    if (!caps)
        hv_fail(err, "read the capabilities of", hv->uri);
    virConnectClose(c);
    return caps;
}

int hv_vcpu_affinity(int qemu_pid, char ***out, size_t *n, struct cgv_error *err)
{
    char path[128], *comm = NULL, *status = NULL;
    DIR *d;
    struct dirent *de;
    char **list = NULL;
    size_t cnt = 0;

    *out = NULL;
    *n = 0;
    snprintf(path, sizeof(path), "/proc/%d/task", qemu_pid);
    d = opendir(path);
    if (!d)
        return cgv_err(err, CGV_E_NOTFOUND, "QEMU pid %d: %s", qemu_pid, strerror(errno));
    /* QEMU names vCPU threads "CPU <n>/TCG" or "CPU <n>/KVM". */
    list = cgv_malloc0(sizeof(char *) * 256);
    while ((de = readdir(d))) {
        unsigned idx;
        char *line;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", qemu_pid, de->d_name);
        if (cgv_read_file(path, 256, &comm, NULL, NULL) < 0)
            continue;
        if (sscanf(comm, "CPU %u/", &idx) != 1 || idx >= 256) {
            free(comm);
            continue;
        }
        free(comm);
        snprintf(path, sizeof(path), "/proc/%d/task/%s/status", qemu_pid, de->d_name);
        if (cgv_read_file(path, 65536, &status, NULL, NULL) < 0)
            continue;
        line = strstr(status, "Cpus_allowed_list:");
        if (line) {
            char val[256] = "";
            sscanf(line, "Cpus_allowed_list: %255s", val);
            free(list[idx]);
            list[idx] = cgv_strdup(val);
            if (idx + 1 > cnt)
                cnt = idx + 1;
        }
        free(status);
    }
    closedir(d);
    *out = list;
    *n = cnt;
    return 0;
}

int hv_dom_define(struct hv *hv, const char *xml, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom;
    int ret = 0;

    if (!c)
        return -1;
    dom = virDomainDefineXMLFlags(c, xml, VIR_DOMAIN_DEFINE_VALIDATE);
    if (!dom)
        ret = hv_fail(err, "define", "domain");
    else
        virDomainFree(dom);
    virConnectClose(c);
    return ret;
}

static int read_pid(const struct hv *hv, const char *name)
{
    char path[512], *text = NULL;
    int pid = 0;

    snprintf(path, sizeof(path), "%s/%s.pid", hv->pid_dir, name);
    if (cgv_read_file(path, 64, &text, NULL, NULL) == 0) {
        pid = atoi(text);
        if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH)
            pid = 0;
    }
    free(text);
    return pid > 0 ? pid : 0;
}

int hv_dom_pid(struct hv *hv, const char *name)
{
    return read_pid(hv, name);
}

static void fill_info(struct hv *hv, virDomainPtr dom, struct hv_dom_info *out)
{
    int st = 0, reason = 0;
    char *meta;

    memset(out, 0, sizeof(*out));
    cgv_strlcpy(out->name, virDomainGetName(dom), sizeof(out->name));
    if (virDomainGetUUIDString(dom, out->uuid) < 0)
        out->uuid[0] = '\0';
    if (virDomainGetState(dom, &st, &reason, 0) == 0) {
        out->state = state_from_virt(st);
        cgv_strlcpy(out->reason, reason_name(st, reason), sizeof(out->reason));
    }
    out->persistent = virDomainIsPersistent(dom) == 1;
    if (out->state == HV_ST_RUNNING || out->state == HV_ST_PAUSED ||
        out->state == HV_ST_SHUTDOWN)
        out->pid = read_pid(hv, out->name);
    meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HV_META_NS, 0);
    if (meta) {
        out->has_meta = hv_xml_parse_meta(meta, &out->meta, NULL) == 0;
        free(meta);
    }
    virResetLastError();
}

int hv_dom_info(struct hv *hv, const char *name, struct hv_dom_info *out,
                struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr dom;

    if (!c)
        return -1;
    dom = virDomainLookupByName(c, name);
    if (!dom) {
        hv_fail(err, "look up", name);
        virConnectClose(c);
        return -1;
    }
    fill_info(hv, dom, out);
    virDomainFree(dom);
    virConnectClose(c);
    return 0;
}

static void stats_add(struct hv_dom_stats *s, const char *name, unsigned long long v)
{
    /* Fields arrive as "cpu.time", "vcpu.0.time", "net.1.rx.bytes", ... */
    char field[VIR_TYPED_PARAM_FIELD_LENGTH + 1], tail[VIR_TYPED_PARAM_FIELD_LENGTH + 1];
    unsigned idx;

    cgv_strlcpy(field, name, sizeof(field));
    if (strcmp(field, "cpu.time") == 0) {
        s->cpu_time_ns = v;
    } else if (strcmp(field, "vcpu.current") == 0) {
        s->vcpus = (unsigned)v;
    } else if (strcmp(field, "balloon.maximum") == 0) {
        s->mem_max_kib = v;
    } else if (strcmp(field, "balloon.rss") == 0) {
        s->mem_rss_kib = v;
    } else if (sscanf(field, "vcpu.%u.%64s", &idx, tail) == 2) {
        if (strcmp(tail, "time") == 0)
            s->vcpu_time_ns += v;
    } else if (sscanf(field, "net.%u.%64s", &idx, tail) == 2) {
        if (!strcmp(tail, "rx.bytes")) s->net_rx_bytes += v;
        else if (!strcmp(tail, "tx.bytes")) s->net_tx_bytes += v;
        else if (!strcmp(tail, "rx.pkts")) s->net_rx_pkts += v;
        else if (!strcmp(tail, "tx.pkts")) s->net_tx_pkts += v;
        else if (!strcmp(tail, "rx.drop")) s->net_rx_drop += v;
        else if (!strcmp(tail, "tx.drop")) s->net_tx_drop += v;
        else if (!strcmp(tail, "rx.errs")) s->net_rx_errs += v;
        else if (!strcmp(tail, "tx.errs")) s->net_tx_errs += v;
    } else if (sscanf(field, "block.%u.%64s", &idx, tail) == 2) {
        if (!strcmp(tail, "rd.bytes")) s->blk_rd_bytes += v;
        else if (!strcmp(tail, "wr.bytes")) s->blk_wr_bytes += v;
        else if (!strcmp(tail, "rd.reqs")) s->blk_rd_reqs += v;
        else if (!strcmp(tail, "wr.reqs")) s->blk_wr_reqs += v;
    }
}

int hv_dom_stats_all(struct hv *hv, const char *prefix, struct hv_dom_stats **out,
                     size_t *n, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainStatsRecordPtr *recs = NULL;
    int count;
    size_t k = 0;
    unsigned stats = VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
                     VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE |
                     VIR_DOMAIN_STATS_BLOCK;

    *out = NULL;
    *n = 0;
    if (!c)
        return -1;
    count = virConnectGetAllDomainStats(c, stats, &recs,
                                        VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE |
                                            VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
    if (count < 0) {
        hv_fail(err, "read domain stats on", hv->uri);
        virConnectClose(c);
        return -1;
    }
    *out = cgv_malloc0(sizeof(**out) * (size_t)(count ? count : 1));
    for (int i = 0; i < count; i++) {
        const char *name = virDomainGetName(recs[i]->dom);
        struct hv_dom_stats *s;
        if (!name || strncmp(name, prefix, strlen(prefix)) != 0)
            continue;
        s = &(*out)[k++];
        cgv_strlcpy(s->name, name, sizeof(s->name));
        for (int p = 0; p < recs[i]->nparams; p++) {
            virTypedParameterPtr tp = &recs[i]->params[p];
            unsigned long long v;
            switch (tp->type) {
            case VIR_TYPED_PARAM_ULLONG: v = tp->value.ul; break;
            case VIR_TYPED_PARAM_UINT: v = tp->value.ui; break;
            case VIR_TYPED_PARAM_LLONG: v = tp->value.l < 0 ? 0 : (unsigned long long)tp->value.l; break;
            case VIR_TYPED_PARAM_INT: v = tp->value.i < 0 ? 0 : (unsigned long long)tp->value.i; break;
            default: continue;
            }
            stats_add(s, tp->field, v);
        }
    }
    virDomainStatsRecordListFree(recs);
    *n = k;
    virConnectClose(c);
    return 0;
}

int hv_dom_list(struct hv *hv, struct hv_dom_info **out, size_t *n, struct cgv_error *err)
{
    virConnectPtr c = hv_conn_ref(hv, err);
    virDomainPtr *doms = NULL;
    int count;

    *out = NULL;
    *n = 0;
    if (!c)
        return -1;
    count = virConnectListAllDomains(c, &doms, 0);
    if (count < 0) {
        hv_fail(err, "list domains on", hv->uri);
        virConnectClose(c);
        return -1;
    }
    *out = cgv_malloc0(sizeof(**out) * (size_t)(count ? count : 1));
    for (int i = 0; i < count; i++) {
        fill_info(hv, doms[i], &(*out)[i]);
        virDomainFree(doms[i]);
    }
    free(doms);
    *n = (size_t)count;
    virConnectClose(c);
    return 0;
}
