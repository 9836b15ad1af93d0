/* vmm_kpi.c — per-VM and per-host key performance indicators: CPU time and
 * use, memory, network and block I/O (libvirt's bulk stats, one call a
 * second on a worker), the agent channel's round trip (PING/PONG), HA role,
 * restarts and availability; served as JSON in the VM views and as
 * Prometheus text at /metrics. */
#include "vmm_priv.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgv_log.h"

#define LOG_MODULE "kpi"
#define KPI_PERIOD_MS 1000

struct kpi_job {
    struct vmm *m;
    char prefix[64];
    struct hv_dom_stats *stats;
    size_t n;
    int64_t at_us;
    int rc;
    struct cgv_error err;
    struct vmm_host_kpi host;
};

/* /proc/stat's first line and /proc/meminfo: the host's CPU and memory. */
static void read_host(struct vmm_host_kpi *h)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];

    if (f) {
        unsigned long long v[10] = {0};
        if (fgets(line, sizeof(line), f) &&
            sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 4) {
            h->cpu_busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            h->cpu_total = h->cpu_busy + v[3] + v[4];
        }
        h->ncpus = 0;
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9')
                h->ncpus++;
        }
        fclose(f);
    }
    f = fopen("/proc/meminfo", "re");
    if (f) {
        unsigned long long kib;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
                h->mem_total_kib = kib;
            else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                h->mem_avail_kib = kib;
        }
        fclose(f);
    }
}

static void kpi_work(void *arg)
{
    struct kpi_job *j = arg;

    j->rc = hv_dom_stats_all(j->m->hv, j->prefix, &j->stats, &j->n, &j->err);
    read_host(&j->host);
    j->at_us = cgv_mono_us();
}

static double rate(uint64_t now, uint64_t before, double secs)
{
    return now >= before && secs > 0 ? (double)(now - before) / secs : 0.0;
}

static void kpi_done(void *arg)
{
    struct kpi_job *j = arg;
    struct vmm *m = j->m;
    struct vmm_host_kpi *h = &m->host_kpi;

    m->kpi_pending = false;
    if (h->cpu_total && j->host.cpu_total > h->cpu_total)
        h->cpu_ratio = (double)(j->host.cpu_busy - h->cpu_busy) /
                       (double)(j->host.cpu_total - h->cpu_total);
    h->cpu_busy = j->host.cpu_busy;
    h->cpu_total = j->host.cpu_total;
    h->ncpus = j->host.ncpus;
    h->mem_total_kib = j->host.mem_total_kib;
    h->mem_avail_kib = j->host.mem_avail_kib;
    if (j->rc == 0) {
        for (size_t i = 0; i < j->n; i++) {
            struct vmm_vm *vm = vmm_find_domain(m, j->stats[i].name);
            struct vmm_kpi *k;
            double secs;
            if (!vm)
                continue;
            k = &vm->kpi;
            if (k->pid != vm->pid) {
                /* A new QEMU: its counters start again. */
                k->valid = false;
                k->pid = vm->pid;
            }
            secs = k->at_us ? (double)(j->at_us - k->at_us) / 1e6 : 0;
            if (k->valid && secs > 0 && j->stats[i].cpu_time_ns >= k->cur.cpu_time_ns) {
                k->cpu_ratio = rate(j->stats[i].cpu_time_ns, k->cur.cpu_time_ns, secs) / 1e9;
                k->vcpu_ratio = rate(j->stats[i].vcpu_time_ns, k->cur.vcpu_time_ns, secs) / 1e9;
                k->net_rx_bps = rate(j->stats[i].net_rx_bytes, k->cur.net_rx_bytes, secs);
                k->net_tx_bps = rate(j->stats[i].net_tx_bytes, k->cur.net_tx_bytes, secs);
                k->blk_rd_bps = rate(j->stats[i].blk_rd_bytes, k->cur.blk_rd_bytes, secs);
                k->blk_wr_bps = rate(j->stats[i].blk_wr_bytes, k->cur.blk_wr_bytes, secs);
            } else {
                k->cpu_ratio = k->vcpu_ratio = 0;
                k->net_rx_bps = k->net_tx_bps = k->blk_rd_bps = k->blk_wr_bps = 0;
            }
            k->cur = j->stats[i];
            k->at_us = j->at_us;
            k->valid = true;
        }
    } else {
        log_debug("stats: %s", j->err.msg);
    }
    free(j->stats);
    free(j);
}

static void send_pings(struct vmm *m)
{
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next) {
        struct proto_msg msg = {.type = PROTO_PING};
        if (vm->agent != AGENT_UP || !agentch_connected(vm->ch))
            continue;
        msg.u.ping.seq = ++vm->kpi.ping_seq;
        msg.u.ping.host_ts_us = (uint64_t)cgv_mono_us();
        if (agentch_send(vm->ch, &msg) == 0)
            vm->kpi.pings++;
    }
}

static void on_kpi_tick(struct loop *l, void *opaque)
{
    struct vmm *m = opaque;
    struct kpi_job *j;

    m->kpi_timer = loop_timer_add(l, KPI_PERIOD_MS, on_kpi_tick, m);
    send_pings(m);
    if (!m->connected || m->kpi_pending)
        return;
    j = cgv_malloc0(sizeof(*j));
    j->m = m;
    cgv_strlcpy(j->prefix, m->domain_prefix, sizeof(j->prefix));
    m->kpi_pending = true;
    jobs_submit(m->jobs, kpi_work, kpi_done, j);
}

void vmm_kpi_start(struct vmm *m)
{
    if (!m->kpi_timer)
        m->kpi_timer = loop_timer_add(m->loop, KPI_PERIOD_MS, on_kpi_tick, m);
}

void vmm_kpi_stop(struct vmm *m)
{
    if (m->kpi_timer)
        loop_timer_cancel(m->loop, m->kpi_timer);
    m->kpi_timer = NULL;
}

void vmm_kpi_pong(struct vmm_vm *vm, const struct proto_ping *pong, int64_t now_us)
{
    struct vmm_kpi *k = &vm->kpi;
    double rtt;

    if ((int64_t)pong->host_ts_us > now_us || pong->seq > k->ping_seq)
        return; /* not ours: a guest cannot make us record the future */
    rtt = (double)(now_us - (int64_t)pong->host_ts_us) / 1000.0;
    k->rtt_ms = rtt;
    k->rtt_avg_ms = k->pongs ? 0.8 * k->rtt_avg_ms + 0.2 * rtt : rtt;
    if (rtt > k->rtt_max_ms)
        k->rtt_max_ms = rtt;
    k->pongs++;
}

json_t *vmm_kpi_vm_json(struct vmm_vm *vm)
{
    const struct vmm_kpi *k = &vm->kpi;
    json_t *o = json_object();

    json_object_set_new(o, "valid", json_boolean(k->valid));
    json_object_set_new(o, "cpu_seconds_total", json_real((double)k->cur.cpu_time_ns / 1e9));
    json_object_set_new(o, "cpu_percent", json_real(k->cpu_ratio * 100.0));
    json_object_set_new(o, "vcpu_percent", json_real(k->vcpu_ratio * 100.0));
    json_object_set_new(o, "vcpus", json_integer(k->cur.vcpus));
    json_object_set_new(o, "memory_bytes", json_integer((json_int_t)k->cur.mem_max_kib * 1024));
    json_object_set_new(o, "memory_rss_bytes",
                        json_integer((json_int_t)k->cur.mem_rss_kib * 1024));
    json_object_set_new(o, "net_rx_bytes", json_integer((json_int_t)k->cur.net_rx_bytes));
    json_object_set_new(o, "net_tx_bytes", json_integer((json_int_t)k->cur.net_tx_bytes));
    json_object_set_new(o, "net_rx_bytes_per_s", json_real(k->net_rx_bps));
    json_object_set_new(o, "net_tx_bytes_per_s", json_real(k->net_tx_bps));
    json_object_set_new(o, "net_rx_drops", json_integer((json_int_t)k->cur.net_rx_drop));
    json_object_set_new(o, "net_tx_drops", json_integer((json_int_t)k->cur.net_tx_drop));
    json_object_set_new(o, "block_read_bytes", json_integer((json_int_t)k->cur.blk_rd_bytes));
    json_object_set_new(o, "block_write_bytes", json_integer((json_int_t)k->cur.blk_wr_bytes));
    json_object_set_new(o, "rtt_ms", k->pongs ? json_real(k->rtt_ms) : json_null());
    json_object_set_new(o, "rtt_avg_ms", k->pongs ? json_real(k->rtt_avg_ms) : json_null());
    json_object_set_new(o, "rtt_max_ms", k->pongs ? json_real(k->rtt_max_ms) : json_null());
    return o;
}

json_t *vmm_kpi_host_json(struct vmm *m)
{
    const struct vmm_host_kpi *h = &m->host_kpi;
    json_t *o = json_object();

    json_object_set_new(o, "cpus", json_integer(h->ncpus));
    json_object_set_new(o, "cpu_percent", json_real(h->cpu_ratio * 100.0));
    json_object_set_new(o, "memory_total_bytes", json_integer((json_int_t)h->mem_total_kib * 1024));
    json_object_set_new(o, "memory_available_bytes",
                        json_integer((json_int_t)h->mem_avail_kib * 1024));
    return o;
}

/* ---- Prometheus text exposition (format 0.0.4) ----------------------------------- */

struct mbuf {
    char *p;
    size_t len, cap;
};

static void mb_printf(struct mbuf *b, const char *fmt, ...) CGV_PRINTF(2, 3);
static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 256);
        b->p = cgv_realloc(b->p, b->cap);
    }
}

static void help(struct mbuf *b, const char *name, const char *type, const char *text)
{
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Label values here are cgv names ([a-z0-9-]) and fixed words: nothing to
 * escape. */
#define VM_LABELS "{service=\"%s\",vm=\"%s\"}"

char *vmm_kpi_metrics(struct vmm *m, size_t *len)
{
    struct mbuf b = {.p = cgv_malloc0(8192), .cap = 8192};
    const struct vmm_host_kpi *h = &m->host_kpi;
    int64_t now = cgv_mono_ms();

    help(&b, "cgv_up", "gauge", "1 while cgvd serves; libvirt connection in cgv_libvirt_connected");
    mb_printf(&b, "cgv_up 1\n");
    help(&b, "cgv_libvirt_connected", "gauge", "1 when cgvd is connected to libvirtd");
    mb_printf(&b, "cgv_libvirt_connected %d\n", m->connected ? 1 : 0);
    help(&b, "cgv_host_cpus", "gauge", "CPUs of the host");
    mb_printf(&b, "cgv_host_cpus %u\n", h->ncpus);
    help(&b, "cgv_host_cpu_usage_ratio", "gauge", "busy share of all host CPUs over the last second");
    mb_printf(&b, "cgv_host_cpu_usage_ratio %.6f\n", h->cpu_ratio);
    help(&b, "cgv_host_memory_total_bytes", "gauge", "host memory");
    mb_printf(&b, "cgv_host_memory_total_bytes %llu\n", (unsigned long long)h->mem_total_kib * 1024);
    help(&b, "cgv_host_memory_available_bytes", "gauge", "host memory available (MemAvailable)");
    mb_printf(&b, "cgv_host_memory_available_bytes %llu\n",
              (unsigned long long)h->mem_avail_kib * 1024);

    help(&b, "cgv_vm_up", "gauge", "1 when the VM runs and its agent is up");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        mb_printf(&b, "cgv_vm_up" VM_LABELS " %d\n", vm->svc->name, vm->name,
                  vm->state == HV_ST_RUNNING && vm->agent == AGENT_UP);
    help(&b, "cgv_vm_cpu_seconds_total", "counter", "CPU time of the VM's QEMU process");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_cpu_seconds_total" VM_LABELS " %.3f\n", vm->svc->name,
                      vm->name, (double)vm->kpi.cur.cpu_time_ns / 1e9);
    help(&b, "cgv_vm_cpu_usage_ratio", "gauge", "CPUs used by the VM over the last second (1 = one CPU)");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_cpu_usage_ratio" VM_LABELS " %.6f\n", vm->svc->name,
                      vm->name, vm->kpi.cpu_ratio);
    help(&b, "cgv_vm_vcpus", "gauge", "vCPUs online");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_vcpus" VM_LABELS " %u\n", vm->svc->name, vm->name,
                      vm->kpi.cur.vcpus);
    help(&b, "cgv_vm_memory_bytes", "gauge", "memory given to the VM");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_memory_bytes" VM_LABELS " %llu\n", vm->svc->name, vm->name,
                      (unsigned long long)vm->kpi.cur.mem_max_kib * 1024);
    help(&b, "cgv_vm_memory_rss_bytes", "gauge", "resident memory of the VM's QEMU process");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid && vm->kpi.cur.mem_rss_kib)
            mb_printf(&b, "cgv_vm_memory_rss_bytes" VM_LABELS " %llu\n", vm->svc->name,
                      vm->name, (unsigned long long)vm->kpi.cur.mem_rss_kib * 1024);
    help(&b, "cgv_vm_network_receive_bytes_total", "counter", "bytes received on all NICs");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_network_receive_bytes_total" VM_LABELS " %llu\n",
                      vm->svc->name, vm->name, (unsigned long long)vm->kpi.cur.net_rx_bytes);
    help(&b, "cgv_vm_network_transmit_bytes_total", "counter", "bytes sent on all NICs");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_network_transmit_bytes_total" VM_LABELS " %llu\n",
                      vm->svc->name, vm->name, (unsigned long long)vm->kpi.cur.net_tx_bytes);
    help(&b, "cgv_vm_network_receive_drops_total", "counter", "packets dropped on receive");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_network_receive_drops_total" VM_LABELS " %llu\n",
                      vm->svc->name, vm->name, (unsigned long long)vm->kpi.cur.net_rx_drop);
    help(&b, "cgv_vm_block_read_bytes_total", "counter", "bytes read from all disks");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_block_read_bytes_total" VM_LABELS " %llu\n", vm->svc->name,
                      vm->name, (unsigned long long)vm->kpi.cur.blk_rd_bytes);
    help(&b, "cgv_vm_block_write_bytes_total", "counter", "bytes written to all disks");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.valid)
            mb_printf(&b, "cgv_vm_block_write_bytes_total" VM_LABELS " %llu\n", vm->svc->name,
                      vm->name, (unsigned long long)vm->kpi.cur.blk_wr_bytes);
    help(&b, "cgv_vm_agent_rtt_seconds", "gauge", "last round trip of the agent channel (PING/PONG)");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->kpi.pongs)
            mb_printf(&b, "cgv_vm_agent_rtt_seconds" VM_LABELS " %.6f\n", vm->svc->name,
                      vm->name, vm->kpi.rtt_ms / 1000.0);
    help(&b, "cgv_vm_heartbeat_age_seconds", "gauge", "time since the agent's last heartbeat");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->last_hb_ms)
            mb_printf(&b, "cgv_vm_heartbeat_age_seconds" VM_LABELS " %.3f\n", vm->svc->name,
                      vm->name, (double)(now - vm->last_hb_ms) / 1000.0);
    help(&b, "cgv_vm_heartbeats_total", "counter", "heartbeats received from the agent");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        mb_printf(&b, "cgv_vm_heartbeats_total" VM_LABELS " %llu\n", vm->svc->name, vm->name,
                  (unsigned long long)vm->heartbeats);
    help(&b, "cgv_vm_ha_role", "gauge", "1 for the VM's current HA role");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->svc->ha && (unsigned)vm->index < vm->svc->ha->n_inst)
            mb_printf(&b, "cgv_vm_ha_role{service=\"%s\",vm=\"%s\",role=\"%s\"} 1\n",
                      vm->svc->name, vm->name,
                      ha_role_name(vm->svc->ha->inst[vm->index].role));
    help(&b, "cgv_vm_restarts_total", "counter", "restarts of the VM by HA recovery");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        if (vm->svc->ha && (unsigned)vm->index < vm->svc->ha->n_inst)
            mb_printf(&b, "cgv_vm_restarts_total" VM_LABELS " %llu\n", vm->svc->name, vm->name,
                      (unsigned long long)vm->svc->ha->inst[vm->index].restarts.total);
    help(&b, "cgv_vm_app_served_total", "counter", "requests the sample function answered");
    for (struct vmm_vm *vm = m->vms; vm; vm = vm->next)
        mb_printf(&b, "cgv_vm_app_served_total" VM_LABELS " %llu\n", vm->svc->name, vm->name,
                  (unsigned long long)vm->app_served);
    help(&b, "cgv_service_up", "gauge", "1 when every assignment of the service has an acknowledged active");
    for (struct vmm_service *s = m->services; s; s = s->next)
        if (s->ha)
            mb_printf(&b, "cgv_service_up{service=\"%s\"} %d\n", s->name,
                      ha_service_up(s->ha) ? 1 : 0);
    help(&b, "cgv_service_availability_ratio", "gauge", "availability since the service was created");
    for (struct vmm_service *s = m->services; s; s = s->next)
        if (s->ha)
            mb_printf(&b, "cgv_service_availability_ratio{service=\"%s\"} %.9f\n", s->name,
                      ha_availability(s->ha, cgv_wall_ms()));
    help(&b, "cgv_service_downtime_seconds_total", "counter", "time the service was down");
    for (struct vmm_service *s = m->services; s; s = s->next)
        if (s->ha)
            mb_printf(&b, "cgv_service_downtime_seconds_total{service=\"%s\"} %.3f\n", s->name,
                      (double)ha_downtime_ms(s->ha, cgv_wall_ms()) / 1000.0);
    help(&b, "cgv_service_outages_total", "counter", "outages of the service");
    for (struct vmm_service *s = m->services; s; s = s->next)
        if (s->ha)
            mb_printf(&b, "cgv_service_outages_total{service=\"%s\"} %u\n", s->name,
                      s->ha->n_outages);
    *len = b.len;
    return b.p;
}
