/* vmm.c — the VM manager's model, libvirt event handling, agent channels,
 * heartbeat monitoring and adoption. See vmm.h / vmm_priv.h. */
#include "vmm_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "vmm"
#define VMM_MONITOR_MS 50
#define VMM_RECONNECT_MIN_MS 100
#define VMM_RECONNECT_MAX_MS 2000
#define VMM_PROTO_REPORT_MS 5000
#define VMM_REBOOT_BURST_MS 2000
#define VMM_HB_GRACE_MS 2000 /* after a hello: twice the heartbeat miss budget */
#define VMM_STALL_MS 50      /* a monitor tick this late: cgvd was stalled */

/* ---- small helpers ------------------------------------------------------- */

void vmm_gen_uuid(char out[37])
{
    uint8_t b[16];

    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        /* getrandom on Linux >= 3.17 does not fail for 16 bytes; be safe. */
        uint64_t t = (uint64_t)cgv_mono_us() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (uint8_t)(t >> ((i % 8) * 8)) ^ (uint8_t)(i * 29);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

void vmm_reply_error(vmm_reply_fn reply, void *ctx, const struct cgv_error *err)
{
    reply(ctx, NULL, err, NULL);
}

static const char *agent_state_name(enum vmm_agent_state s)
{
    switch (s) {
    case AGENT_UP: return "up";
    case AGENT_DOWN: return "down";
    case AGENT_PAUSED: return "paused";
    case AGENT_NEVER: break;
    }
    return "never";
}

/* ---- model --------------------------------------------------------------- */

struct vmm_service *vmm_find_service(struct vmm *m, const char *name)
{
    for (struct vmm_service *s = m->services; s; s = s->next) {
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

struct vmm_vm *vmm_find_vm(struct vmm *m, const char *name)
{
    for (struct vmm_vm *v = m->vms; v; v = v->next) {
        if (strcmp(v->name, name) == 0)
            return v;
    }
    return NULL;
}

struct vmm_vm *vmm_find_domain(struct vmm *m, const char *domain)
{
    for (struct vmm_vm *v = m->vms; v; v = v->next) {
        if (strcmp(v->domain, domain) == 0)
            return v;
    }
    return NULL;
}

struct vmm_service *vmm_service_add(struct vmm *m, const char *name)
{
    struct vmm_service *s = cgv_malloc0(sizeof(*s)), **pp;

    cgv_strlcpy(s->name, name, sizeof(s->name));
    for (pp = &m->services; *pp && strcmp((*pp)->name, name) < 0; pp = &(*pp)->next)
        ;
    s->next = *pp;
    *pp = s;
    return s;
}

void vmm_service_remove(struct vmm *m, struct vmm_service *svc)
{
    for (struct vmm_service **pp = &m->services; *pp; pp = &(*pp)->next) {
        if (*pp == svc) {
            *pp = svc->next;
            /* At shutdown the API has answered (and freed) every request. */
            if (svc->deferred.reply && !m->stopping) {
                struct cgv_error err = {0};
                cgv_err(&err, CGV_E_UNAVAIL, "service %s went away before the %s could run",
                        svc->name, svc->deferred.is_delete ? "delete" : "apply");
                vmm_reply_error(svc->deferred.reply, svc->deferred.ctx, &err);
            }
            free(svc->deferred.text);
            free(svc->ha);
            spec_free(svc->spec);
            free(svc);
            return;
        }
    }
}

static void agent_connected(void *opaque);
static void agent_message(void *opaque, const struct proto_msg *msg, int64_t mono_us);
static void agent_bad(void *opaque, const char *why);
static void agent_closed(void *opaque, const char *why);

static const struct agentch_ops vm_agent_ops = {
    .connected = agent_connected,
    .message = agent_message,
    .bad = agent_bad,
    .closed = agent_closed,
};

struct vmm_vm *vmm_vm_add(struct vmm *m, struct vmm_service *svc, int index,
                          const char *uuid)
{
    struct vmm_vm *vm = cgv_malloc0(sizeof(*vm)), **pp;

    vm->m = m;
    vm->svc = svc;
    vm->index = index;
    snprintf(vm->name, sizeof(vm->name), "%s-%d", svc->name, index);
    snprintf(vm->domain, sizeof(vm->domain), "%s%s", m->domain_prefix, vm->name);
    cgv_strlcpy(vm->uuid, uuid, sizeof(vm->uuid));
    hv_mac_from_uuid(uuid, 0, vm->mac);
    cgv_strlcpy(vm->desired, "running", sizeof(vm->desired));
    snprintf(vm->sock_dir, sizeof(vm->sock_dir), "%s/vm/%s", m->run_dir, vm->name);
    snprintf(vm->agent_sock, sizeof(vm->agent_sock), "%s/agent.sock", vm->sock_dir);
    snprintf(vm->console_sock, sizeof(vm->console_sock), "%s/console.sock", vm->sock_dir);
    snprintf(vm->console_log, sizeof(vm->console_log), "%s/%s.console.log", m->log_dir,
             vm->domain);
    vm->state = HV_ST_UNKNOWN;
    cgv_strlcpy(vm->reason, "unknown", sizeof(vm->reason));
    vm->created_ms = cgv_wall_ms();
    vm->ch = agentch_new(m->loop, vm->agent_sock, &vm_agent_ops, vm);
    vm->pidfd = -1;

    /* Keep the list ordered by service name, then index. */
    for (pp = &m->vms; *pp; pp = &(*pp)->next) {
        int c = strcmp((*pp)->svc->name, svc->name);
        if (c > 0 || (c == 0 && (*pp)->index > index))
            break;
    }
    vm->next = *pp;
    *pp = vm;
    return vm;
}

void vmm_vm_remove(struct vmm *m, struct vmm_vm *vm)
{
    for (struct vmm_vm **pp = &m->vms; *pp; pp = &(*pp)->next) {
        if (*pp == vm) {
            *pp = vm->next;
            vmm_ops_abandon(vm);
            vmm_ha_unwatch(vm);
            if (vm->ack_timer)
                loop_timer_cancel(m->loop, vm->ack_timer);
            if (vm->pause_timer)
                loop_timer_cancel(m->loop, vm->pause_timer);
            if (vm->drain_timer)
                loop_timer_cancel(m->loop, vm->drain_timer);
            vmm_place_release(m, vm);
            vmm_place_strings_free(vm);
            if (!m->stopping) {
                char golden[VMM_PATH_MAX], key[96];
                snprintf(key, sizeof(key), "vm.override.%s", vm->name);
                if (store_meta_set(m->st, key, NULL, NULL) < 0)
                    log_warn("could not remove %s", key);
                snprintf(golden, sizeof(golden), "%s/golden/%s.mem", m->state_dir, vm->name);
                unlink(golden);
            }
            agentch_free(vm->ch);
            free(vm->save_path);
            free(vm);
            return;
        }
    }
}

void vmm_vm_to_store(const struct vmm_vm *vm, struct store_vm *out, char **addr_json)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < vm->n_addrs; i++)
        json_array_append_new(arr, json_string(vm->addrs[i]));
    *addr_json = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    memset(out, 0, sizeof(*out));
    out->name = (char *)vm->name;
    out->service = vm->svc->name;
    out->index = vm->index;
    out->uuid = (char *)vm->uuid;
    out->mac = (char *)vm->mac;
    out->desired = (char *)vm->desired;
    out->addresses_json = *addr_json;
    out->restart_pending = vm->restart_pending;
    out->save_path = vm->save_path;
    out->created_ms = vm->created_ms;
}

int vmm_vm_persist(struct vmm *m, struct vmm_vm *vm, struct cgv_error *err)
{
    struct store_vm rec;
    char *addr_json = NULL;
    int rc;

    vmm_vm_to_store(vm, &rec, &addr_json);
    rc = store_vm_put(m->st, &rec, err);
    free(addr_json);
    if (rc < 0)
        cgv_err_prefix(err, "saving the state of %s", vm->name);
    return rc;
}

/* ---- effective sizes ---------------------------------------------------------- */

unsigned vmm_vm_vcpus(const struct vmm_vm *vm)
{
    return vm->ovr.vcpus ? vm->ovr.vcpus : vm->svc->spec->vcpus;
}

unsigned vmm_vm_max_vcpus(const struct vmm_vm *vm)
{
    unsigned max = vm->svc->spec->cpu.max_vcpus, cur = vmm_vm_vcpus(vm);

    return max > cur ? max : cur;
}

uint64_t vmm_vm_memory_mib(const struct vmm_vm *vm)
{
    return vm->ovr.memory_mib ? vm->ovr.memory_mib : vm->svc->spec->memory_mib;
}

const struct spec_qos *vmm_vm_qos(const struct vmm_vm *vm)
{
    return vm->ovr.has_qos ? &vm->ovr.qos : &vm->svc->spec->qos;
}

/* ---- domain XML ------------------------------------------------------------ */

int vmm_vm_build_xml(struct vmm *m, struct vmm_vm *vm, char **xml, struct cgv_error *err)
{
    const struct spec_service *spec = vm->svc->spec;
    struct hv_domain_def d = {0};
    enum hv_accel accel;
    char why[256], gw[16], kernel[VMM_PATH_MAX], initrd[VMM_PATH_MAX], cmdline[512];
    size_t off;

    if (hv_accel_decide((enum hv_accel_req)spec->accel, &m->cfg.probe, &accel, why,
                        sizeof(why), err) < 0)
        return -1;
    /* The uncompressed kernel boots through its PVH entry, twice as fast
     * under TCG; images without one boot the compressed kernel. */
    snprintf(kernel, sizeof(kernel), "%s/%s/vmlinux", m->image_dir, spec->image);
    if (access(kernel, R_OK) < 0)
        snprintf(kernel, sizeof(kernel), "%s/%s/vmlinuz", m->image_dir, spec->image);
    snprintf(initrd, sizeof(initrd), "%s/%s/initrd.img", m->image_dir, spec->image);
    net_fmt_ip(m->cfg.net.gateway, gw);
    /* loglevel=0 (after quiet): a panic does not print its backtrace to a
     * slow serial console first, so pvpanic reports it in tens of ms;
     * oops=panic: an oops is a panic too (the guest is not to be trusted
     * after one). */
    off = (size_t)snprintf(cmdline, sizeof(cmdline),
                           "console=ttyS0 quiet loglevel=0 oops=panic panic=-1 cgv.name=%s",
                           vm->name);
    for (size_t i = 0; i < vm->n_addrs && off < sizeof(cmdline); i++)
        off += (size_t)snprintf(cmdline + off, sizeof(cmdline) - off, " cgv.net%zu=%s", i,
                                vm->addrs[i]);
    if (off < sizeof(cmdline))
        snprintf(cmdline + off, sizeof(cmdline) - off, " cgv.gw=%s", gw);

    d.name = vm->domain;
    d.uuid = vm->uuid;
    d.owner = store_owner_id(m->st);
    d.service = vm->svc->name;
    d.vm = vm->name;
    d.generation = vm->svc->generation;
    d.vcpus = vmm_vm_vcpus(vm);
    d.max_vcpus = vmm_vm_max_vcpus(vm);
    vm->defined_max_vcpus = d.max_vcpus;
    d.memory_mib = vmm_vm_memory_mib(vm);
    {
        const struct spec_qos *q = vmm_vm_qos(vm);
        d.cpu_shares = q->cpu_shares;
        d.cpu_period_us = q->cpu_period_us;
        d.cpu_quota_us = q->cpu_quota_us;
        d.mem_hard_limit_mib = q->memory_hard_limit_mib;
        /* spec: kilobits per second; libvirt: kilobytes per second */
        d.net_in_kbps = q->net_inbound_kbps ? (q->net_inbound_kbps + 7) / 8 : 0;
        d.net_out_kbps = q->net_outbound_kbps ? (q->net_outbound_kbps + 7) / 8 : 0;
        d.net_burst_kb = q->net_burst_kb;
    }
    d.rt_priority = spec->cpu.realtime ? (spec->cpu.realtime_priority ? spec->cpu.realtime_priority : 1) : 0;
    vmm_place_fill_def(m, vm, &d);
    d.kvm = accel == HV_ACCEL_KVM;
    d.kernel = kernel;
    d.initrd = initrd;
    d.cmdline = cmdline;
    d.n_nics = vm->n_addrs;
    for (size_t i = 0; i < vm->n_addrs && i < HV_MAX_NICS; i++) {
        cgv_strlcpy(d.nics[i].bridge, m->cfg.net.bridge, sizeof(d.nics[i].bridge));
        hv_mac_from_uuid(vm->uuid, (unsigned)i, d.nics[i].mac);
    }
    d.console_socket = vm->console_sock;
    d.console_log = vm->console_log;
    d.agent_socket = vm->agent_sock;
    return hv_xml_build(&d, xml, err);
}

/* ---- state ------------------------------------------------------------------ */

static bool state_live(enum hv_state st)
{
    return st == HV_ST_RUNNING || st == HV_ST_PAUSED || st == HV_ST_SHUTDOWN;
}

static void agent_follow_state(struct vmm_vm *vm, bool was_live)
{
    bool live = state_live(vm->state);

    if (live && !was_live && vm->agent == AGENT_DOWN) {
        /* A fresh boot: no HELLO from this boot yet. */
        vm->agent = AGENT_NEVER;
        vm->last_hb_ms = 0;
    }
    agentch_enable(vm->ch, live);
    if (vm->state == HV_ST_PAUSED) {
        if (vm->agent == AGENT_UP)
            vm->agent = AGENT_PAUSED;
    } else if (vm->state == HV_ST_RUNNING) {
        if (vm->agent == AGENT_PAUSED) {
            /* The guest was frozen: heartbeat age starts again now. */
            vm->agent = AGENT_UP;
            vm->last_hb_ms = cgv_mono_ms();
        }
    } else if (!live) {
        if (vm->agent == AGENT_UP || vm->agent == AGENT_PAUSED)
            vm->agent = AGENT_DOWN;
        vm->hello_on_conn = false;
    }
}

void vmm_vm_set_state(struct vmm_vm *vm, enum hv_state st, const char *reason,
                      int64_t at_us)
{
    bool was_live = state_live(vm->state);

    if (at_us < vm->state_us)
        return; /* older news than what we know */
    vm->state_us = at_us;
    vm->state = st;
    cgv_strlcpy(vm->reason, reason ? reason : "unknown", sizeof(vm->reason));
    if (st == HV_ST_RUNNING || st == HV_ST_PAUSED || st == HV_ST_SHUTDOWN) {
        vm->exists = true;
        if (vm->pid == 0)
            vm->pid = hv_dom_pid(vm->m->hv, vm->domain);
        if (!vm->busy)
            vmm_ha_watch(vm);
    } else {
        vm->pid = 0;
    }
    agent_follow_state(vm, was_live);
}

/* ---- agent channel ------------------------------------------------------------ */

static unsigned vm_heartbeat_ms(const struct vmm_vm *vm)
{
    return vm->svc->spec->heartbeat_ms;
}

/* HOST_HELLO, then what HA tells every agent (CONFIG, its role). */
static void greet(struct vmm_vm *vm)
{
    struct proto_msg m = {.type = PROTO_HOST_HELLO};

    m.u.host_hello.version = PROTO_VERSION;
    m.u.host_hello.heartbeat_ms = vm_heartbeat_ms(vm);
    cgv_strlcpy(m.u.host_hello.vm_name, vm->name, sizeof(m.u.host_hello.vm_name));
    if (agentch_send(vm->ch, &m) < 0)
        log_warn("%s: could not send HOST_HELLO", vm->name);
    vm->greeted = true;
    vmm_ha_connected(vm);
}

void vmm_vm_regreet(struct vmm_vm *vm)
{
    if (!agentch_connected(vm->ch) || !vm->hello_on_conn)
        return;
    greet(vm);
    /* Its heartbeats may still come at the old interval for a moment. */
    if (vm->last_hb_ms)
        vm->last_hb_ms = cgv_mono_ms();
    vm->hb_grace_until_ms = cgv_mono_ms() + VMM_HB_GRACE_MS;
}

static void agent_connected(void *opaque)
{
    struct vmm_vm *vm = opaque;

    vm->hello_on_conn = false;
    log_debug("%s: agent channel connected", vm->name);
    greet(vm);
}

static void agent_up(struct vmm_vm *vm, int64_t now_ms)
{
    bool was_down = vm->agent == AGENT_DOWN;

    vm->agent = vm->state == HV_ST_PAUSED ? AGENT_PAUSED : AGENT_UP;
    vm->last_hb_ms = now_ms;
    if (was_down)
        evlog_emit(vm->m->ev, "info", "agent.recovered", vm->svc->name, vm->name,
                   "agent heartbeats are back");
}

static void agent_message(void *opaque, const struct proto_msg *msg, int64_t mono_us)
{
    struct vmm_vm *vm = opaque;
    int64_t now_ms = mono_us / 1000;

    switch (msg->type) {
    case PROTO_HELLO: {
        const struct proto_hello *h = &msg->u.hello;
        bool new_boot = h->boot_id != vm->boot_id;
        bool first = !vm->hello_on_conn;

        if (h->version != PROTO_VERSION) {
            vm->proto_errors++;
            evlog_emit(vm->m->ev, "warn", "agent.protocol_error", vm->svc->name, vm->name,
                       "agent speaks protocol version %u, cgvd speaks %u", h->version,
                       PROTO_VERSION);
            return;
        }
        vm->hello_on_conn = true;
        /* A guest just booted or restored (cold caches, TCG, and often
         * others restoring beside it on a busy host) gets twice the miss
         * budget for its first seconds: a late heartbeat then is not a
         * hang worth a fence. */
        vm->hb_grace_until_ms = now_ms + VMM_HB_GRACE_MS;
        cgv_strlcpy(vm->agent_version, h->agent_version, sizeof(vm->agent_version));
        vm->boot_id = h->boot_id;
        vm->agent = vm->state == HV_ST_PAUSED ? AGENT_PAUSED : AGENT_UP;
        vm->last_hb_ms = now_ms;
        if (new_boot || first)
            evlog_emit(vm->m->ev, "info", "agent.hello", vm->svc->name, vm->name,
                       "agent %s up (boot %016" PRIx64 ", guest uptime %" PRIu64
                       " ms%s)",
                       h->agent_version, h->boot_id, h->uptime_ms,
                       new_boot ? "" : ", same boot");
        /* A new agent behind a channel that stayed connected (the guest
         * rebooted, or the agent restarted): it has heard nothing yet. */
        if (!vm->greeted || (new_boot && !first))
            greet(vm);
        if (first)
            vmm_ha_hello(vm);
        break;
    }
    case PROTO_HEARTBEAT:
        if (!vm->hello_on_conn)
            return; /* heartbeats count only after a HELLO on this connection */
        vm->heartbeats++;
        vm->app_served = msg->u.heartbeat.app_served;
        if (vm->agent != AGENT_UP && vm->agent != AGENT_PAUSED)
            agent_up(vm, now_ms);
        vm->last_hb_ms = now_ms;
        break;
    case PROTO_PONG:
        vmm_kpi_pong(vm, &msg->u.ping, mono_us);
        break;
    case PROTO_ROLE_ACK:
        vmm_ha_role_ack(vm, &msg->u.role_ack);
        break;
    case PROTO_APP_EVENT:
        vmm_ha_app_event(vm, &msg->u.app_event);
        break;
    default:
        /* A guest must not send host-to-guest messages. */
        agent_bad(vm, "unexpected message from guest");
        break;
    }
}

static void report_proto_errors(struct vmm_vm *vm, int64_t now)
{
    uint64_t n = vm->proto_errors - vm->proto_errors_reported;

    if (n == 0)
        return;
    vm->proto_report_ms = now;
    vm->proto_errors_reported = vm->proto_errors;
    evlog_emit(vm->m->ev, "warn", "agent.protocol_error", vm->svc->name, vm->name,
               "%" PRIu64 " malformed message%s from the guest (%" PRIu64
               " in all), last: %s",
               n, n == 1 ? "" : "s", vm->proto_errors, vm->proto_last_why);
}

static void agent_bad(void *opaque, const char *why)
{
    struct vmm_vm *vm = opaque;
    int64_t now = cgv_mono_ms();

    vm->proto_errors++;
    cgv_strlcpy(vm->proto_last_why, why, sizeof(vm->proto_last_why));
    /* At most one event per VM every few seconds: a hostile guest must not
     * flood the event log. The monitor reports what a window held back. */
    if (vm->proto_report_ms == 0 || now - vm->proto_report_ms >= VMM_PROTO_REPORT_MS)
        report_proto_errors(vm, now);
}

static void agent_closed(void *opaque, const char *why)
{
    struct vmm_vm *vm = opaque;

    vm->hello_on_conn = false;
    vm->greeted = false;
    vmm_ha_channel_eof(vm);
    if (vm->agent == AGENT_UP || vm->agent == AGENT_PAUSED) {
        vm->agent = AGENT_DOWN;
        if (vm->busy || vm->svc->busy)
            return; /* an operation is stopping the VM: expected */
        evlog_emit(vm->m->ev, "warn", "agent.lost", vm->svc->name, vm->name,
                   "agent channel closed (%s)", why);
    }
}

static void on_monitor(struct loop *l, void *opaque)
{
    struct vmm *m = opaque;
    int64_t now = cgv_mono_ms();
    int64_t tick = VMM_MONITOR_MS;
    bool stalled;

    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        /* A twentieth of the shortest heartbeat interval: hang detection stays
         * within a few ms of heartbeat_misses intervals. */
        if ((int64_t)vm_heartbeat_ms(vm) / 20 < tick)
            tick = vm_heartbeat_ms(vm) / 20 > 5 ? vm_heartbeat_ms(vm) / 20 : 5;
    }
    m->monitor = loop_timer_add(l, tick, on_monitor, m);
    /* cgvd itself did not run for a while (the host stalled it): heartbeats
     * that arrived meanwhile are still unread in the channels. Read them
     * first (the next tick is due in a few ms) rather than blame the
     * guests for our own silence. */
    stalled = m->monitor_due_ms && now - m->monitor_due_ms > VMM_STALL_MS;
    if (stalled)
        log_warn("cgvd's loop ran %" PRId64 " ms late: hang checks wait one tick",
                 now - m->monitor_due_ms);
    m->monitor_due_ms = now + tick;
    vmm_ha_flush(m);
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        unsigned misses = vm->svc->spec->heartbeat_misses ? vm->svc->spec->heartbeat_misses
                                                          : m->cfg.agent_miss_limit;
        int64_t limit = (int64_t)vm_heartbeat_ms(vm) * misses;
        if (now < vm->hb_grace_until_ms)
            limit *= 2;
        if (vm->proto_errors > vm->proto_errors_reported &&
            now - vm->proto_report_ms >= VMM_PROTO_REPORT_MS)
            report_proto_errors(vm, now);
        if (vm->agent != AGENT_UP || vm->state != HV_ST_RUNNING)
            continue;
        if (vm->busy || vm->svc->busy)
            continue; /* an operation (stop, reboot, ...) explains silence */
        if (!stalled && now - vm->last_hb_ms > limit) {
            vm->agent = AGENT_DOWN;
            evlog_emit(m->ev, "warn", "agent.lost", vm->svc->name, vm->name,
                       "no heartbeat for %" PRId64 " ms (%u intervals of %u ms)",
                       now - vm->last_hb_ms, misses, vm_heartbeat_ms(vm));
            vmm_ha_heartbeat_lost(vm, now - vm->last_hb_ms);
        }
    }
}

/* ---- libvirt connection and sync -------------------------------------------- */

static void schedule_reconnect(struct vmm *m);

struct connect_job {
    struct vmm *m;
    struct cgv_error err;
    int rc;
};

static void connect_work(void *arg)
{
    struct connect_job *j = arg;
    j->rc = hv_connect(j->m->hv, &j->err);
}

static void connect_done(void *arg)
{
    struct connect_job *j = arg;
    struct vmm *m = j->m;

    m->connecting = false;
    if (j->rc < 0) {
        log_debug("libvirt connect failed: %s", j->err.msg);
        schedule_reconnect(m);
    } else {
        m->connected = true;
        m->reconnect_ms = VMM_RECONNECT_MIN_MS;
        evlog_emit(m->ev, "info", "libvirt.connected", NULL, NULL, "connected to %s",
                   hv_uri(m->hv));
        vmm_sync(m);
    }
    free(j);
}

static void start_connect(struct vmm *m)
{
    struct connect_job *j;

    if (m->connecting || m->connected)
        return;
    m->connecting = true;
    j = cgv_malloc0(sizeof(*j));
    j->m = m;
    jobs_submit(m->jobs, connect_work, connect_done, j);
}

static void on_reconnect(struct loop *l, void *opaque)
{
    struct vmm *m = opaque;

    (void)l;
    m->reconnect = NULL;
    start_connect(m);
}

static void schedule_reconnect(struct vmm *m)
{
    if (m->reconnect)
        return;
    m->reconnect = loop_timer_add(m->loop, m->reconnect_ms, on_reconnect, m);
    m->reconnect_ms = m->reconnect_ms * 2 > VMM_RECONNECT_MAX_MS ? VMM_RECONNECT_MAX_MS
                                                                : m->reconnect_ms * 2;
}

struct sync_job {
    struct vmm *m;
    struct hv_dom_info *doms;
    size_t n;
    int64_t at_us;
    struct cgv_error err;
    int rc;
};

static void sync_work(void *arg)
{
    struct sync_job *j = arg;

    j->at_us = cgv_mono_us();
    j->rc = hv_dom_list(j->m->hv, &j->doms, &j->n, &j->err);
}

static void on_sync_retry(struct loop *l, void *opaque);

static void sync_done(void *arg)
{
    struct sync_job *j = arg;
    struct vmm *m = j->m;
    const char *owner = store_owner_id(m->st);
    bool adoption = !m->adopted_once;

    if (j->rc < 0) {
        log_warn("listing domains failed: %s", j->err.msg);
        free(j);
        /* A disconnect event follows if libvirt went away; otherwise retry. */
        if (m->connected && !m->sync_retry)
            m->sync_retry = loop_timer_add(m->loop, 500, on_sync_retry, m);
        return;
    }
    m->adopted_once = true;
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        vm->exists = false;
    for (size_t i = 0; i < j->n; i++) {
        const struct hv_dom_info *d = &j->doms[i];
        struct vmm_vm *vm;

        if (!d->has_meta || strcmp(d->meta.owner, owner) != 0)
            continue; /* not ours: never touched */
        vm = vmm_find_domain(m, d->name);
        if (!vm) {
            evlog_emit(m->ev, "warn", "vm.orphan", d->meta.service, d->meta.vm,
                       "domain %s carries this cgvd's mark but is not in its state; "
                       "left alone",
                       d->name);
            continue;
        }
        if (strcmp(vm->uuid, d->uuid) != 0)
            log_warn("%s: libvirt UUID %s differs from the stored %s", vm->name, d->uuid,
                     vm->uuid);
        vm->exists = true;
        if (vm->busy)
            continue; /* the operation's result will say */
        vmm_vm_set_state(vm, d->state, d->reason, j->at_us);
        if (d->pid)
            vm->pid = d->pid;
        if (adoption && (d->state == HV_ST_RUNNING || d->state == HV_ST_PAUSED)) {
            evlog_emit(m->ev, "info", "vm.adopted", vm->svc->name, vm->name,
                       "adopted %s domain %s (QEMU pid %d) without touching it",
                       hv_state_name(d->state), d->name, vm->pid);
            vmm_place_check_pins(m, vm);
        }
        else if (strcmp(vm->desired, "running") == 0 &&
                 (d->state == HV_ST_SHUTOFF || d->state == HV_ST_CRASHED))
            vmm_ha_found_dead(vm, adoption ? "found stopped when cgvd started"
                                           : "found stopped after libvirt reconnected");
    }
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        if (vm->exists || vm->busy)
            continue;
        vmm_vm_set_state(vm, HV_ST_UNKNOWN, "missing", j->at_us);
        if (strcmp(vm->desired, "running") == 0) {
            evlog_emit(m->ev, "warn", "vm.missing", vm->svc->name, vm->name,
                       "domain %s is not defined in libvirt; defining and starting it",
                       vm->domain);
            vmm_ha_found_dead(vm, "domain missing in libvirt");
        } else {
            evlog_emit(m->ev, "warn", "vm.missing", vm->svc->name, vm->name,
                       "domain %s is not defined in libvirt; 'cgv vm start %s' "
                       "defines and starts it",
                       vm->domain, vm->name);
        }
    }
    free(j->doms);
    free(j);
}

static void on_sync_retry(struct loop *l, void *opaque)
{
    struct vmm *m = opaque;

    (void)l;
    m->sync_retry = NULL;
    if (m->connected)
        vmm_sync(m);
}

void vmm_sync(struct vmm *m)
{
    struct sync_job *j = cgv_malloc0(sizeof(*j));

    j->m = m;
    jobs_submit(m->jobs, sync_work, sync_done, j);
}

/* ---- libvirt events ------------------------------------------------------------ */

static enum hv_state state_after(const struct hv_event *ev, struct vmm_vm *vm)
{
    switch (ev->lifecycle) {
    case HV_LC_STARTED:
    case HV_LC_RESUMED:
        return HV_ST_RUNNING;
    case HV_LC_SUSPENDED:
        return HV_ST_PAUSED;
    case HV_LC_STOPPED:
        return HV_ST_SHUTOFF;
    case HV_LC_CRASHED:
        return HV_ST_CRASHED;
    case HV_LC_PMSUSPENDED:
        return HV_ST_PMSUSPENDED;
    default:
        return vm->state;
    }
}

static void on_lifecycle(struct vmm *m, const struct hv_event *ev)
{
    struct vmm_vm *vm = vmm_find_domain(m, ev->domain);
    enum hv_state st;

    /* Same name is not enough: only our domain (our UUID) is ours. */
    if (!vm || (ev->uuid[0] && strcmp(ev->uuid, vm->uuid) != 0))
        return;
    if (ev->lifecycle == HV_LC_UNDEFINED) {
        vm->exists = false;
        return;
    }
    if (ev->lifecycle == HV_LC_DEFINED) {
        vm->exists = true;
        return;
    }
    if (ev->lifecycle == HV_LC_SHUTDOWN)
        return; /* "stopped" follows */
    st = state_after(ev, vm);
    vmm_vm_set_state(vm, st, ev->detail_name, ev->mono_us);

    if (vm->op) {
        vmm_ops_on_lifecycle(vm, ev);
        return; /* the operation reports its own outcome */
    }
    if (vm->busy)
        return;
    vmm_ha_lifecycle(vm, ev);
    if (ev->lifecycle == HV_LC_STOPPED) {
        bool expected = strcmp(vm->desired, "running") != 0 &&
                        strcmp(vm->desired, "paused") != 0;
        evlog_emit(m->ev, expected ? "info" : "error", "vm.stopped", vm->svc->name,
                   vm->name, "domain stopped (%s)%s", ev->detail_name,
                   expected ? "" : " while it should run");
    } else if (ev->lifecycle == HV_LC_CRASHED) {
        evlog_emit(m->ev, "error", "vm.crashed", vm->svc->name, vm->name,
                   "guest crashed (%s)", ev->detail_name);
    } else if (ev->lifecycle == HV_LC_STARTED) {
        evlog_emit(m->ev, "info", "vm.started", vm->svc->name, vm->name,
                   "domain started (%s)", ev->detail_name);
    } else if (ev->lifecycle == HV_LC_SUSPENDED) {
        evlog_emit(m->ev, "warn", "vm.paused", vm->svc->name, vm->name,
                   "domain paused outside cgv (%s)", ev->detail_name);
    } else if (ev->lifecycle == HV_LC_RESUMED) {
        evlog_emit(m->ev, "info", "vm.resumed", vm->svc->name, vm->name,
                   "domain resumed (%s)", ev->detail_name);
    }
}

void vmm_handle_hv_events(struct vmm *m)
{
    struct hv_event ev;

    while (hv_next_event(m->hv, &ev)) {
        struct vmm_vm *vm;

        switch (ev.kind) {
        case HV_EV_LIFECYCLE:
            log_debug("libvirt: %s %s (%s)", ev.domain, hv_lifecycle_name(ev.lifecycle),
                      ev.detail_name);
            on_lifecycle(m, &ev);
            break;
        case HV_EV_REBOOT: {
            int64_t now = ev.mono_us / 1000, last;
            vm = vmm_find_domain(m, ev.domain);
            if (!vm || (ev.uuid[0] && strcmp(ev.uuid, vm->uuid) != 0))
                break;
            /* One guest reboot gives libvirt several resets in a burst. */
            last = vm->last_reboot_ms;
            vm->last_reboot_ms = now;
            /* A new boot: its agent says hello again; until then silence is
             * not a hang. */
            vm->agent = AGENT_NEVER;
            vm->last_hb_ms = 0;
            vm->hello_on_conn = false;
            vm->greeted = false;
            if (vm->op) {
                vmm_ops_on_lifecycle(vm, &ev);
            } else if (last == 0 || now - last > VMM_REBOOT_BURST_MS) {
                evlog_emit(m->ev, "info", "vm.rebooted", vm->svc->name, vm->name,
                           "guest reset itself");
                vmm_ha_guest_reset(vm);
            }
            break;
        }
        case HV_EV_WATCHDOG:
            vm = vmm_find_domain(m, ev.domain);
            if (vm && (!ev.uuid[0] || strcmp(ev.uuid, vm->uuid) == 0)) {
                evlog_emit(m->ev, "error", "vm.watchdog", vm->svc->name, vm->name,
                           "virtual watchdog expired");
                vmm_ha_watchdog(vm);
            }
            break;
        case HV_EV_DISCONNECTED:
            if (!m->connected)
                break;
            m->connected = false;
            hv_disconnect(m->hv);
            evlog_emit(m->ev, "error", "libvirt.disconnected", NULL, NULL,
                       "lost the connection to %s (%s); VMs keep running, reconnecting",
                       hv_uri(m->hv), ev.detail_name);
            m->reconnect_ms = VMM_RECONNECT_MIN_MS;
            schedule_reconnect(m);
            break;
        }
    }
}

/* ---- loading the store -------------------------------------------------------- */

static int load_service(struct vmm *m, const struct store_service *rec,
                        struct cgv_error *err)
{
    struct spec_issues issues = {0};
    struct spec_service *spec = NULL;
    struct vmm_service *svc;

    if (spec_parse(rec->spec_json, strlen(rec->spec_json), &spec, &issues) < 0) {
        char *text = spec_issues_format(&issues);
        cgv_err(err, CGV_E_INTERNAL, "stored spec of service %s does not parse: %s",
                rec->name, text);
        free(text);
        return -1;
    }
    svc = vmm_service_add(m, rec->name);
    svc->spec = spec;
    svc->generation = rec->generation;
    svc->created_ms = rec->created_ms;
    svc->updated_ms = rec->updated_ms;
    return 0;
}

static int load_vm(struct vmm *m, const struct store_vm *rec, struct cgv_error *err)
{
    struct vmm_service *svc = vmm_find_service(m, rec->service);
    struct vmm_vm *vm;
    json_t *arr;
    size_t i;
    json_t *v;

    if (!svc)
        return cgv_err(err, CGV_E_INTERNAL, "stored VM %s names unknown service %s",
                       rec->name, rec->service);
    vm = vmm_vm_add(m, svc, rec->index, rec->uuid);
    if (strcmp(vm->name, rec->name) != 0)
        log_warn("stored VM %s has index %d: named %s", rec->name, rec->index, vm->name);
    cgv_strlcpy(vm->mac, rec->mac ? rec->mac : vm->mac, sizeof(vm->mac));
    cgv_strlcpy(vm->desired, rec->desired, sizeof(vm->desired));
    vm->restart_pending = rec->restart_pending != 0;
    vm->save_path = rec->save_path ? cgv_strdup(rec->save_path) : NULL;
    vm->created_ms = rec->created_ms;
    arr = json_loads(rec->addresses_json ? rec->addresses_json : "[]", 0, NULL);
    json_array_foreach(arr, i, v)
    {
        if (i < SPEC_MAX_NETWORKS && json_is_string(v)) {
            cgv_strlcpy(vm->addrs[i], json_string_value(v), sizeof(vm->addrs[i]));
            vm->n_addrs = i + 1;
        }
    }
    json_decref(arr);
    return 0;
}

static int load_store(struct vmm *m, struct cgv_error *err)
{
    struct store_service *svcs = NULL;
    struct store_vm *vms = NULL;
    size_t ns = 0, nv = 0;
    int ret = -1;

    if (store_service_list(m->st, &svcs, &ns, err) < 0)
        return -1;
    if (store_vm_list(m->st, NULL, &vms, &nv, err) < 0)
        goto cleanup;
    for (size_t i = 0; i < ns; i++) {
        if (load_service(m, &svcs[i], err) < 0)
            goto cleanup;
    }
    for (size_t i = 0; i < nv; i++) {
        if (load_vm(m, &vms[i], err) < 0)
            goto cleanup;
    }
    for (struct vmm_service *s = m->services; s; s = s->next)
        vmm_ha_load(m, s);
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        vmm_set_load(m, vm);
    log_info("loaded %zu services and %zu VMs from the store", ns, nv);
    ret = 0;

cleanup:
    store_service_free_list(svcs, ns);
    store_vm_free_list(vms, nv);
    return ret;
}

/* ---- lifetime ------------------------------------------------------------------- */

int vmm_new(const struct vmm_config *cfg, struct loop *l, struct jobs *jobs, struct hv *hv,
            struct store *st, struct evlog *ev, struct vmm **out, struct cgv_error *err)
{
    struct vmm *m = cgv_malloc0(sizeof(*m));

    m->cfg = *cfg;
    m->state_dir = cgv_strdup(cfg->state_dir);
    m->run_dir = cgv_strdup(cfg->run_dir);
    m->log_dir = cgv_strdup(cfg->log_dir);
    m->image_dir = cgv_strdup(cfg->image_dir);
    m->domain_prefix = cgv_strdup(cfg->domain_prefix);
    if (m->cfg.stop_timeout_ms == 0)
        m->cfg.stop_timeout_ms = 30000;
    if (m->cfg.agent_miss_limit == 0)
        m->cfg.agent_miss_limit = 3;
    m->loop = l;
    m->jobs = jobs;
    m->hv = hv;
    m->st = st;
    m->ev = ev;
    m->reconnect_ms = VMM_RECONNECT_MIN_MS;
    m->started_mono_ms = cgv_mono_ms();
    if (gethostname(m->host, sizeof(m->host)) < 0)
        cgv_strlcpy(m->host, "unknown", sizeof(m->host));
    if (strlen(m->run_dir) > 60) {
        vmm_free(m);
        return cgv_err(err, CGV_E_INVALID,
                       "run directory %s is too long for Unix socket paths (max 60)",
                       cfg->run_dir);
    }
    *out = m;
    return 0;
}

void vmm_free(struct vmm *m)
{
    if (!m)
        return;
    m->stopping = true;
    vmm_ha_flush(m);
    vmm_kpi_stop(m);
    if (m->monitor)
        loop_timer_cancel(m->loop, m->monitor);
    if (m->reconnect)
        loop_timer_cancel(m->loop, m->reconnect);
    if (m->sync_retry)
        loop_timer_cancel(m->loop, m->sync_retry);
    while (m->vms)
        vmm_vm_remove(m, m->vms);
    while (m->services)
        vmm_service_remove(m, m->services);
    vmm_place_free(m);
    free(m->state_dir);
    free(m->run_dir);
    free(m->log_dir);
    free(m->image_dir);
    free(m->domain_prefix);
    free(m);
}

int vmm_start(struct vmm *m, struct cgv_error *err)
{
    if (load_store(m, err) < 0)
        return -1;
    m->monitor = loop_timer_add(m->loop, VMM_MONITOR_MS, on_monitor, m);
    vmm_kpi_start(m);
    /* Connecting to a local libvirtd takes milliseconds: do it now, so the
     * API does not answer "not connected" right after start. If libvirtd is
     * not there, keep retrying in the background. */
    if (hv_connect(m->hv, NULL) == 0) {
        m->connected = true;
        evlog_emit(m->ev, "info", "libvirt.connected", NULL, NULL, "connected to %s",
                   hv_uri(m->hv));
    }
    /* Placement before adoption: the domains' pins come back exactly. */
    vmm_place_init(m);
    vmm_place_adopt_all(m);
    if (m->connected)
        vmm_sync(m);
    else
        start_connect(m);
    return 0;
}

/* ---- JSON views ------------------------------------------------------------------ */

static const char *vm_accel_name(struct vmm *m, struct vmm_vm *vm)
{
    enum hv_accel a;
    char why[256];

    if (hv_accel_decide((enum hv_accel_req)vm->svc->spec->accel, &m->cfg.probe, &a, why,
                        sizeof(why), NULL) < 0)
        return "unavailable";
    return hv_accel_name(a);
}

static json_t *vm_json(struct vmm *m, struct vmm_vm *vm)
{
    json_t *o = json_object(), *agent = json_object(), *addrs = json_array();
    int64_t now = cgv_mono_ms();
    const char *state = hv_state_name(vm->state);
    char boot[24];

    if (!vm->exists && vm->state == HV_ST_UNKNOWN && m->adopted_once)
        state = "missing";
    else if (vm->state == HV_ST_SHUTOFF && vm->save_path)
        state = "saved";
    for (size_t i = 0; i < vm->n_addrs; i++) {
        char ip[24], *slash;
        cgv_strlcpy(ip, vm->addrs[i], sizeof(ip));
        slash = strchr(ip, '/');
        if (slash)
            *slash = '\0';
        json_array_append_new(addrs, json_string(ip));
    }
    snprintf(boot, sizeof(boot), "%016" PRIx64, vm->boot_id);
    json_object_set_new(agent, "state", json_string(agent_state_name(vm->agent)));
    json_object_set_new(agent, "version",
                        vm->agent_version[0] ? json_string(vm->agent_version) : json_null());
    json_object_set_new(agent, "boot_id", vm->boot_id ? json_string(boot) : json_null());
    json_object_set_new(agent, "last_heartbeat_age_ms",
                        vm->last_hb_ms ? json_integer(now - vm->last_hb_ms) : json_null());
    json_object_set_new(agent, "heartbeats", json_integer((json_int_t)vm->heartbeats));
    json_object_set_new(agent, "heartbeat_ms", json_integer(vm_heartbeat_ms(vm)));
    json_object_set_new(agent, "heartbeat_grace", json_boolean(now < vm->hb_grace_until_ms));
    json_object_set_new(agent, "app_served", json_integer((json_int_t)vm->app_served));
    json_object_set_new(agent, "protocol_errors",
                        json_integer((json_int_t)vm->proto_errors));
    json_object_set_new(agent, "connected", json_boolean(agentch_connected(vm->ch)));

    json_object_set_new(o, "name", json_string(vm->name));
    json_object_set_new(o, "service", json_string(vm->svc->name));
    json_object_set_new(o, "index", json_integer(vm->index));
    json_object_set_new(o, "domain", json_string(vm->domain));
    json_object_set_new(o, "uuid", json_string(vm->uuid));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "state_reason", json_string(vm->reason));
    json_object_set_new(o, "desired", json_string(vm->desired));
    json_object_set_new(o, "busy", vm->busy ? json_string(vm->busy) : json_null());
    json_object_set_new(o, "restart_pending", json_boolean(vm->restart_pending));
    json_object_set_new(o, "pid", vm->pid ? json_integer(vm->pid) : json_null());
    json_object_set_new(o, "acceleration", json_string(vm_accel_name(m, vm)));
    json_object_set_new(o, "addresses", addrs);
    json_object_set_new(o, "mac", json_string(vm->mac));
    json_object_set_new(o, "console_socket", json_string(vm->console_sock));
    json_object_set_new(o, "agent", agent);
    json_object_set_new(o, "ha", vmm_ha_vm_json(vm));
    json_object_set_new(o, "kpi", vmm_kpi_vm_json(vm));
    json_object_set_new(o, "cpu", vmm_place_vm_json(vm));
    return o;
}

static json_t *service_json(struct vmm *m, struct vmm_service *svc)
{
    json_t *o = json_object(), *vms = json_array();
    char when[40];

    cgv_fmt_wall_ms(svc->created_ms, when, sizeof(when));
    json_object_set_new(o, "name", json_string(svc->name));
    json_object_set_new(o, "generation", json_integer(svc->generation));
    json_object_set_new(o, "created", json_string(when));
    json_object_set_new(o, "busy", svc->busy ? json_string(svc->busy) : json_null());
    json_object_set_new(o, "spec", spec_to_json(svc->spec));
    json_object_set_new(o, "ha", vmm_ha_service_json(m, svc));
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        if (vm->svc == svc)
            json_array_append_new(vms, vm_json(m, vm));
    }
    json_object_set_new(o, "vms", vms);
    return o;
}

json_t *vmm_health_json(struct vmm *m)
{
    json_t *o = json_object();
    enum hv_accel a;
    char why[256];
    size_t ns = 0, nv = 0;

    for (struct vmm_service *s = m->services; s; s = s->next)
        ns++;
    for (struct vmm_vm *v = m->vms; v; v = v->next)
        nv++;
    if (hv_accel_decide(HV_ACCEL_REQ_AUTO, &m->cfg.probe, &a, why, sizeof(why), NULL) < 0)
        a = HV_ACCEL_TCG;
    json_object_set_new(o, "version", json_string(CGV_VERSION));
    json_object_set_new(o, "uptime_ms", json_integer(cgv_mono_ms() - m->started_mono_ms));
    json_object_set_new(o, "libvirt", json_string(m->connected ? "connected" : "disconnected"));
    /* Ready: connected and the running VMs adopted; operations are taken. */
    json_object_set_new(o, "ready", json_boolean(m->connected && m->adopted_once));
    json_object_set_new(o, "libvirt_uri", json_string(hv_uri(m->hv)));
    json_object_set_new(o, "acceleration", json_string(hv_accel_name(a)));
    json_object_set_new(o, "acceleration_reason", json_string(why));
    json_object_set_new(o, "host", json_string(m->host));
    json_object_set_new(o, "services", json_integer((json_int_t)ns));
    json_object_set_new(o, "vms", json_integer((json_int_t)nv));
    json_object_set_new(o, "jobs_pending", json_integer(jobs_pending(m->jobs)));
    json_object_set_new(o, "host_kpi", vmm_kpi_host_json(m));
    json_object_set_new(o, "placement", vmm_place_host_json(m));
    return o;
}

json_t *vmm_services_json(struct vmm *m)
{
    json_t *o = json_object(), *arr = json_array();

    for (struct vmm_service *s = m->services; s; s = s->next)
        json_array_append_new(arr, service_json(m, s));
    json_object_set_new(o, "services", arr);
    return o;
}

json_t *vmm_service_json(struct vmm *m, const char *name, struct cgv_error *err)
{
    struct vmm_service *s = vmm_find_service(m, name);

    if (!s) {
        cgv_err(err, CGV_E_NOTFOUND, "no service named '%s'", name);
        return NULL;
    }
    return service_json(m, s);
}

json_t *vmm_vms_json(struct vmm *m)
{
    json_t *o = json_object(), *arr = json_array();

    for (struct vmm_vm *v = m->vms; v; v = v->next)
        json_array_append_new(arr, vm_json(m, v));
    json_object_set_new(o, "vms", arr);
    return o;
}

json_t *vmm_vm_json(struct vmm *m, const char *name, struct cgv_error *err)
{
    struct vmm_vm *vm = vmm_find_vm(m, name);

    if (!vm) {
        cgv_err(err, CGV_E_NOTFOUND, "no VM named '%s'", name);
        return NULL;
    }
    return vm_json(m, vm);
}

char *vmm_console_log_path(struct vmm *m, const char *name, struct cgv_error *err)
{
    struct vmm_vm *vm = vmm_find_vm(m, name);

    if (!vm) {
        cgv_err(err, CGV_E_NOTFOUND, "no VM named '%s'", name);
        return NULL;
    }
    return cgv_strdup(vm->console_log);
}
