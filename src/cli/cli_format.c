/* cli_format.c — human-readable output of the cgv CLI (see cli.h). */
#include "cli.h"

#include <inttypes.h>
#include <string.h>

/* A JSON number as int64, or dflt when missing / null / not a number. */
static int64_t jint(const json_t *obj, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(obj, key);

    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

/* A JSON string member, or dflt. */
static const char *jstr(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return (s && s[0]) ? s : dflt;
}

void cli_fmt_age(int64_t age_ms, char *buf, size_t cap)
{
    if (age_ms < 0)
        snprintf(buf, cap, "-");
    else if (age_ms < 10000)
        snprintf(buf, cap, "%" PRId64 ".%" PRId64 "s ago", age_ms / 1000,
                 (age_ms % 1000) / 100);
    else if (age_ms < 60000)
        snprintf(buf, cap, "%" PRId64 "s ago", age_ms / 1000);
    else if (age_ms < 3600000)
        snprintf(buf, cap, "%" PRId64 "m ago", age_ms / 60000);
    else if (age_ms < 86400000)
        snprintf(buf, cap, "%" PRId64 "h ago", age_ms / 3600000);
    else
        snprintf(buf, cap, "%" PRId64 "d ago", age_ms / 86400000);
}

void cli_fmt_duration(int64_t ms, char *buf, size_t cap)
{
    if (ms < 0)
        ms = 0;
    if (ms < 1000)
        snprintf(buf, cap, "%" PRId64 " ms", ms);
    else if (ms < 10000)
        snprintf(buf, cap, "%" PRId64 ".%" PRId64 " s", ms / 1000, (ms % 1000) / 100);
    else if (ms < 60000)
        snprintf(buf, cap, "%" PRId64 " s", ms / 1000);
    else if (ms < 3600000)
        snprintf(buf, cap, "%" PRId64 "m%02" PRId64 "s", ms / 60000,
                 (ms / 1000) % 60);
    else
        snprintf(buf, cap, "%" PRId64 "h%02" PRId64 "m", ms / 3600000,
                 (ms / 60000) % 60);
}

/* --- status table ----------------------------------------------------------*/

enum { ST_SERVICE, ST_VM, ST_STATE, ST_ROLE, ST_AGENT, ST_HEARTBEAT, ST_ADDRESS, ST_BUSY,
       ST_NCOLS };

static const char *const status_headers[ST_NCOLS] = {
    "SERVICE", "VM", "STATE", "ROLE", "AGENT", "HEARTBEAT", "ADDRESS", "BUSY",
};

struct status_table {
    size_t n, cap;
    char *(*rows)[ST_NCOLS]; /* owned strings */
    bool restart_note;
};

static void status_add(struct status_table *t, char *cells[ST_NCOLS])
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->rows = cgv_realloc(t->rows, t->cap * sizeof(*t->rows));
    }
    memcpy(t->rows[t->n++], cells, sizeof(*t->rows));
}

/* Is the VM's state what it should be (desired uses different words)? */
static bool state_matches(const char *state, const char *desired)
{
    if (strcmp(desired, "stopped") == 0)
        return strcmp(state, "shutoff") == 0;
    return strcmp(state, desired) == 0;
}

/* "active a0", "standby", "failed", "-"; "?" marks a role not yet
 * acknowledged by the guest. */
static char *role_cell(const json_t *ha)
{
    const char *st = jstr(ha, "state", NULL), *role = jstr(ha, "role", "none");
    const char *asg = jstr(ha, "assignment", NULL);
    bool acked = json_is_true(json_object_get(ha, "acked"));

    if (!json_is_object(ha))
        return cgv_strdup("-");
    if (st && (!strcmp(st, "failed") || !strcmp(st, "fencing")))
        return cgv_strdup(st);
    if (!strcmp(role, "none"))
        return cgv_strdup("-");
    return cgv_asprintf("%s%s%s%s", role, asg ? " " : "", asg ? asg : "", acked ? "" : "?");
}

static void status_add_vm(struct status_table *t, const char *service,
                          const json_t *vm)
{
    char *cells[ST_NCOLS];
    const json_t *agent = json_object_get(vm, "agent");
    const json_t *addrs = json_object_get(vm, "addresses");
    const char *state = jstr(vm, "state", "unknown");
    const char *desired = jstr(vm, "desired", NULL);
    const char *busy = jstr(vm, "busy", NULL);
    bool restart = json_is_true(json_object_get(vm, "restart_pending"));
    char age[32];
    char *addr = NULL;
    size_t i, n;

    cells[ST_SERVICE] = cgv_strdup(jstr(vm, "service", service ? service : "-"));
    cells[ST_VM] = cgv_strdup(jstr(vm, "name", "-"));
    if (desired && !busy && !state_matches(state, desired))
        cells[ST_STATE] = cgv_asprintf("%s%s (want %s)", state, restart ? "*" : "",
                                       desired);
    else
        cells[ST_STATE] = cgv_asprintf("%s%s", state, restart ? "*" : "");
    if (restart)
        t->restart_note = true;
    cells[ST_ROLE] = role_cell(json_object_get(vm, "ha"));
    cells[ST_AGENT] = cgv_strdup(json_is_object(agent) ? jstr(agent, "state", "-")
                                                       : "-");
    cli_fmt_age(json_is_object(agent) ? jint(agent, "last_heartbeat_age_ms", -1) : -1,
                age, sizeof(age));
    cells[ST_HEARTBEAT] = cgv_strdup(age);
    n = json_is_array(addrs) ? json_array_size(addrs) : 0;
    for (i = 0; i < n; i++) {
        const char *a = json_string_value(json_array_get(addrs, i));
        char *joined;
        if (!a)
            continue;
        joined = addr ? cgv_asprintf("%s,%s", addr, a) : cgv_strdup(a);
        free(addr);
        addr = joined;
    }
    cells[ST_ADDRESS] = addr ? addr : cgv_strdup("-");
    cells[ST_BUSY] = cgv_strdup(busy ? busy : "-");
    status_add(t, cells);
}

static void status_add_service(struct status_table *t, const json_t *svc)
{
    const char *name = jstr(svc, "name", "-");
    const json_t *vms = json_object_get(svc, "vms");
    size_t n = json_is_array(vms) ? json_array_size(vms) : 0;

    if (n == 0) {
        char *cells[ST_NCOLS] = {
            cgv_strdup(name), cgv_strdup("-"), cgv_strdup("(no VMs)"), cgv_strdup("-"),
            cgv_strdup("-"),  cgv_strdup("-"), cgv_strdup("-"), cgv_strdup("-"),
        };
        status_add(t, cells);
        return;
    }
    for (size_t i = 0; i < n; i++)
        status_add_vm(t, name, json_array_get(vms, i));
}

/* Columns separated by two spaces; the last one is not padded. */
static void status_print_row(FILE *out, const size_t width[ST_NCOLS],
                             const char *const cells[ST_NCOLS])
{
    for (int c = 0; c < ST_NCOLS - 1; c++)
        fprintf(out, "%-*s  ", (int)width[c], cells[c]);
    fprintf(out, "%s\n", cells[ST_NCOLS - 1]);
}

void cli_print_ha_summary(FILE *out, const json_t *svc)
{
    const json_t *ha = json_object_get(svc, "ha");
    const json_t *asg = json_object_get(ha, "assignments");
    double avail;

    if (!json_is_object(ha))
        return;
    avail = json_real_value(json_object_get(ha, "availability"));
    fprintf(out, "%s: %s, %s, availability %.5f%% (downtime %lld ms, %lld outage%s)",
            jstr(svc, "name", "?"), jstr(ha, "model", "?"),
            json_is_true(json_object_get(ha, "up")) ? "up" : "DOWN", avail * 100.0,
            (long long)jint(ha, "downtime_ms", 0), (long long)jint(ha, "outages_total", 0),
            jint(ha, "outages_total", 0) == 1 ? "" : "s");
    for (size_t k = 0; k < json_array_size(asg); k++) {
        const json_t *a = json_array_get(asg, k);
        const char *vip = jstr(a, "virtual_ip", NULL);
        if (!vip)
            continue;
        fprintf(out, "%s %s %s -> %s", k == 0 ? ";" : ",", jstr(a, "name", "?"), vip,
                jstr(a, "active", "(none)"));
    }
    fputc('\n', out);
}

int cli_print_status(FILE *out, const json_t *doc)
{
    struct status_table t = {0};
    size_t width[ST_NCOLS];
    const json_t *services = json_object_get(doc, "services");
    int rows;

    if (json_is_array(services)) {
        for (size_t i = 0; i < json_array_size(services); i++)
            status_add_service(&t, json_array_get(services, i));
    } else if (json_object_get(doc, "name")) {
        status_add_service(&t, doc);
    } else if (json_is_array(json_object_get(doc, "vms"))) {
        const json_t *vms = json_object_get(doc, "vms");
        for (size_t i = 0; i < json_array_size(vms); i++)
            status_add_vm(&t, NULL, json_array_get(vms, i));
    }
    if (t.n == 0) {
        fprintf(out, "No services.\n");
        free(t.rows);
        return 0;
    }
    for (int c = 0; c < ST_NCOLS; c++) {
        width[c] = strlen(status_headers[c]);
        for (size_t r = 0; r < t.n; r++) {
            size_t l = strlen(t.rows[r][c]);
            if (l > width[c])
                width[c] = l;
        }
    }
    status_print_row(out, width, status_headers);
    for (size_t r = 0; r < t.n; r++) {
        status_print_row(out, width, (const char *const *)t.rows[r]);
        for (int c = 0; c < ST_NCOLS; c++)
            free(t.rows[r][c]);
    }
    if (t.restart_note)
        fprintf(out, "* restart pending: spec changes take effect when the VM next starts\n");
    if (json_is_array(services)) {
        for (size_t i = 0; i < json_array_size(services); i++)
            cli_print_ha_summary(out, json_array_get(services, i));
    } else if (json_object_get(doc, "name")) {
        cli_print_ha_summary(out, doc);
    }
    rows = (int)t.n;
    free(t.rows);
    return rows;
}

/* --- events, issues, results -----------------------------------------------*/

void cli_print_event(FILE *out, const json_t *ev)
{
    char tbuf[40];
    const char *time = jstr(ev, "time", NULL);
    const char *vm = jstr(ev, "vm", jstr(ev, "service", "-"));

    if (!time) {
        int64_t ms = jint(ev, "time_ms", -1);
        if (ms >= 0) {
            cgv_fmt_wall_ms(ms, tbuf, sizeof(tbuf));
            time = tbuf;
        } else {
            time = "-";
        }
    }
    fprintf(out, "%-24s %-5s %-20s %-10s %s\n", time, jstr(ev, "severity", "-"),
            jstr(ev, "type", "-"), vm, jstr(ev, "message", ""));
}

void cli_print_issue(FILE *out, const char *file, const json_t *issue)
{
    int64_t line = jint(issue, "line", 0);
    int64_t col = jint(issue, "column", 0);
    const char *path = jstr(issue, "path", NULL);
    const char *msg = jstr(issue, "message", "invalid");

    if (file)
        fprintf(out, "%s:", file);
    else
        fprintf(out, "cgv:");
    if (file && line > 0) {
        fprintf(out, "%" PRId64 ":", line);
        if (col > 0)
            fprintf(out, "%" PRId64 ":", col);
    }
    if (path)
        fprintf(out, " %s:", path);
    fprintf(out, " %s\n", msg);
}

size_t cli_print_issues(FILE *out, const char *file, const json_t *details)
{
    size_t n = json_is_array(details) ? json_array_size(details) : 0;

    for (size_t i = 0; i < n; i++)
        cli_print_issue(out, file, json_array_get(details, i));
    return n;
}

void cli_print_vm_op(FILE *out, const json_t *res)
{
    char dur[32];
    int64_t ms = jint(res, "duration_ms", -1);

    fprintf(out, "%s: %s", jstr(res, "vm", "?"),
            jstr(res, "state", jstr(res, "op", "done")));
    if (ms >= 0) {
        cli_fmt_duration(ms, dur, sizeof(dur));
        fprintf(out, " (%s", dur);
        if (json_is_string(json_object_get(res, "note")))
            fprintf(out, ", %s", jstr(res, "note", ""));
        fputc(')', out);
    } else if (json_is_string(json_object_get(res, "note"))) {
        fprintf(out, " (%s)", jstr(res, "note", ""));
    }
    fputc('\n', out);
}

static void print_vm_list(FILE *out, const json_t *vms)
{
    size_t n = json_is_array(vms) ? json_array_size(vms) : 0;

    if (n == 0)
        return;
    fprintf(out, ", VM%s: ", n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%s", i ? ", " : "",
                json_string_value(json_array_get(vms, i)) ?: "?");
}

void cli_print_apply(FILE *out, const json_t *res)
{
    const char *result = jstr(res, "result", "applied");
    int64_t ms = jint(res, "duration_ms", -1);
    char dur[32];

    fprintf(out, "%s: %s", jstr(res, "service", "?"), result);
    if (strcmp(result, "valid") == 0)
        fprintf(out, " (dry run)");
    else if (ms >= 0) {
        cli_fmt_duration(ms, dur, sizeof(dur));
        fprintf(out, " (%s)", dur);
    }
    print_vm_list(out, json_object_get(res, "vms"));
    fputc('\n', out);
}

void cli_print_delete(FILE *out, const json_t *res)
{
    fprintf(out, "%s: %s", jstr(res, "service", "?"), jstr(res, "result", "deleted"));
    print_vm_list(out, json_object_get(res, "vms"));
    fputc('\n', out);
}

void cli_print_health(FILE *out, const json_t *h)
{
    char up[32];
    const char *uri = jstr(h, "libvirt_uri", NULL);
    const char *reason = jstr(h, "acceleration_reason", NULL);

    cli_fmt_duration(jint(h, "uptime_ms", 0), up, sizeof(up));
    fprintf(out, "cgvd %s on %s, up %s\n", jstr(h, "version", "?"),
            jstr(h, "host", "?"), up);
    fprintf(out, "libvirt:      %s", jstr(h, "libvirt", "?"));
    if (uri)
        fprintf(out, " (%s)", uri);
    fprintf(out, "\nacceleration: %s", jstr(h, "acceleration", "?"));
    if (reason)
        fprintf(out, " (%s)", reason);
    fprintf(out, "\nservices:     %" PRId64 "\nvms:          %" PRId64 "\n",
            jint(h, "services", 0), jint(h, "vms", 0));
}

/* --- cgv top ---------------------------------------------------------------*/

static double jreal(const json_t *obj, const char *key, double dflt)
{
    const json_t *v = json_object_get(obj, key);

    return json_is_number(v) ? json_number_value(v) : dflt;
}

void cli_fmt_bytes(double bytes, char *buf, size_t cap)
{
    static const char units[] = "BKMGTP";
    int u = 0;

    while (bytes >= 1024.0 && u < 5) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f", bytes);
    else
        snprintf(buf, cap, bytes < 10 ? "%.1f%c" : "%.0f%c", bytes, units[u]);
}

int cli_print_top(FILE *out, const json_t *health, const json_t *vms)
{
    const json_t *h = json_object_get(health, "host_kpi");
    const json_t *list = json_object_get(vms, "vms");
    char total[16], avail[16];
    int rows = 0;

    cli_fmt_bytes(jreal(h, "memory_total_bytes", 0), total, sizeof(total));
    cli_fmt_bytes(jreal(h, "memory_available_bytes", 0), avail, sizeof(avail));
    fprintf(out, "host %s: %lld CPUs, %.1f%% busy, memory %s available of %s, %lld VMs\n",
            jstr(health, "host", "?"), (long long)jint(h, "cpus", 0),
            jreal(h, "cpu_percent", 0), avail, total, (long long)jint(health, "vms", 0));
    fprintf(out, "%-16s %-8s %-11s %6s %5s %7s %8s %8s %8s %7s %4s\n", "VM", "STATE",
            "ROLE", "CPU%", "VCPU", "MEM", "RSS", "NET-RX/s", "NET-TX/s", "RTT-ms", "RST");
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *vm = json_array_get(list, i);
        const json_t *k = json_object_get(vm, "kpi");
        const json_t *ha = json_object_get(vm, "ha");
        char *role = role_cell(ha);
        char mem[16], rss[16], rx[16], tx[16], rtt[16];

        cli_fmt_bytes(jreal(k, "memory_bytes", 0), mem, sizeof(mem));
        cli_fmt_bytes(jreal(k, "memory_rss_bytes", 0), rss, sizeof(rss));
        cli_fmt_bytes(jreal(k, "net_rx_bytes_per_s", 0), rx, sizeof(rx));
        cli_fmt_bytes(jreal(k, "net_tx_bytes_per_s", 0), tx, sizeof(tx));
        if (json_is_number(json_object_get(k, "rtt_ms")))
            snprintf(rtt, sizeof(rtt), "%.1f", jreal(k, "rtt_ms", 0));
        else
            snprintf(rtt, sizeof(rtt), "-");
        fprintf(out, "%-16s %-8s %-11s %6.1f %5lld %7s %8s %8s %8s %7s %4lld\n",
                jstr(vm, "name", "?"), jstr(vm, "state", "?"), role,
                jreal(k, "cpu_percent", 0), (long long)jint(k, "vcpus", 0), mem, rss, rx, tx,
                rtt, (long long)jint(ha, "restarts_total", 0));
        free(role);
        rows++;
    }
    return rows;
}
