/* test_cpu.c — CPU-core allocation, QoS, live resource changes and per-VM
 * KPIs on real QEMU/TCG guests through our own cgvd (itest.h).
 *
 * What is checked is what the kernel and libvirt say, not only what cgvd
 * reports: the affinity of every QEMU thread (sched_getaffinity on the
 * threads of /proc/PID/task; vCPU threads are those named "CPU n/TCG" or
 * "CPU n/KVM", every other thread is an emulator thread), libvirt's own view
 * (virsh vcpupin/emulatorpin/schedinfo/vcpucount/dominfo) and the QEMU pid
 * (a live change keeps it, a controlled restart changes it).
 *
 * Expected CPUs come from cgvd's /v1/health "placement" (housekeeping CPUs,
 * shared pool) and the host: on a host of fewer than 4 CPUs floating vCPUs
 * may also use the housekeeping CPUs. On this machine kind (2 CPUs) CPU 0 is
 * housekeeping and CPU 1 is the one CPU that can be dedicated.
 *
 * Services (all "itc-*", domains "cgvit-itc-*"):
 *   itc-flo   1 floating VM (tests a, c, e)
 *   itc-ded   1 dedicated VM (a, b; deleted in c)
 *   itc-ded2  a second dedicated VM the host has no core for (b: refused)
 *   itc-pin   1 VM, 2 vCPUs pinned to the dedicatable CPU (c)
 *   itc-set   1 floating VM, max_vcpus 2, changed with cgv vm set (d)
 * Each test creates what it needs if it is not there, so every test also
 * runs alone (CGV_IT_FILTER=test_set_live).
 */
#include "itest.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

#define SVC_FLO "itc-flo"
#define SVC_DED "itc-ded"
#define SVC_DED2 "itc-ded2"
#define SVC_PIN "itc-pin"
#define SVC_SET "itc-set"

#define BOOT_MS 180000    /* apply -> agent hello (TCG on a busy 2-core box) */
#define REPIN_MS 15000    /* a pool change -> floating vCPU threads re-pinned */
#define KPI_MS 15000      /* KPIs are sampled every second */
#define RESTART_MS 180000 /* a controlled restart (stop, redefine, start) */

typedef uint64_t cpumask; /* CPUs 0..63: enough for the hosts these tests run on */

/* ---- small helpers ----------------------------------------------------------------- */

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void wait_ms(int ms)
{
    poll(NULL, 0, ms);
}

/* "0-1,3" -> mask; -1 on a malformed list or a CPU >= 64. "" is 0. */
static int mask_parse(const char *s, cpumask *out)
{
    cpumask m = 0;

    if (!s)
        return -1;
    while (*s) {
        char *end;
        unsigned long a = strtoul(s, &end, 10), b;
        if (end == s || a >= 64)
            return -1;
        b = a;
        s = end;
        if (*s == '-') {
            b = strtoul(s + 1, &end, 10);
            if (end == s + 1 || b >= 64 || b < a)
                return -1;
            s = end;
        }
        for (unsigned long c = a; c <= b; c++)
            m |= (cpumask)1 << c;
        if (*s == ',')
            s++;
        else if (*s && *s != '\n')
            return -1;
        else if (*s == '\n')
            break;
    }
    *out = m;
    return 0;
}

static void mask_fmt(cpumask m, char *buf, size_t cap)
{
    size_t off = 0;

    buf[0] = '\0';
    for (unsigned c = 0; c < 64 && off < cap; c++) {
        unsigned e = c;
        if (!(m & ((cpumask)1 << c)))
            continue;
        while (e + 1 < 64 && (m & ((cpumask)1 << (e + 1))))
            e++;
        off += (size_t)snprintf(buf + off, cap - off, off ? ",%u" : "%u", c);
        if (e > c && off < cap)
            off += (size_t)snprintf(buf + off, cap - off, "-%u", e);
        c = e;
    }
}

static unsigned mask_count(cpumask m)
{
    return (unsigned)__builtin_popcountll(m);
}

static unsigned mask_first(cpumask m)
{
    return m ? (unsigned)__builtin_ctzll(m) : 64;
}

/* ---- the host as cgvd sees it -------------------------------------------------------------- */

struct host {
    unsigned ncpus;
    cpumask all, hk, pool;
    bool hk_shared; /* small host: floating vCPUs may use the housekeeping CPUs too */
    long long free_cores;
};

static void host_read(struct itest *t, struct host *h)
{
    json_t *hl = it_get(t, "/v1/health"), *n;
    size_t i;

    memset(h, 0, sizeof(*h));
    h->ncpus = (unsigned)it_jint(hl, "placement.cpus");
    it_check(t, h->ncpus >= 1 && h->ncpus <= 64, NULL, "placement.cpus is %u", h->ncpus);
    h->all = h->ncpus == 64 ? ~(cpumask)0 : (((cpumask)1 << h->ncpus) - 1);
    it_check(t, mask_parse(it_jstr(hl, "placement.housekeeping"), &h->hk) == 0 && h->hk, NULL,
             "placement.housekeeping is '%s'", it_jstr(hl, "placement.housekeeping") ?: "(none)");
    it_check(t, mask_parse(it_jstr(hl, "placement.shared_pool"), &h->pool) == 0, NULL,
             "placement.shared_pool is '%s'", it_jstr(hl, "placement.shared_pool") ?: "(none)");
    json_array_foreach(it_jget(hl, "placement.nodes"), i, n)
        h->free_cores += it_jint(n, "free_cores");
    h->hk_shared = h->ncpus < 4;
    json_decref(hl);
}

/* Where a floating vCPU may run now. */
static cpumask floating_set(const struct host *h)
{
    return h->pool | (h->hk_shared || !h->pool ? h->hk : 0);
}

/* ---- QEMU threads ---------------------------------------------------------------------------- */

#define MAX_THREADS 128

struct qthreads {
    size_t n;
    struct {
        pid_t tid;
        char comm[32];
        int vcpu; /* -1: an emulator thread */
        cpumask aff;
    } th[MAX_THREADS];
};

/* Every thread of QEMU pid with its affinity (sched_getaffinity). Threads
 * that end while we read are skipped. */
static void threads_read(struct itest *t, pid_t pid, struct qthreads *q)
{
    char path[64];
    DIR *d;
    struct dirent *de;

    memset(q, 0, sizeof(*q));
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    it_check(t, d != NULL, NULL, "opendir %s: %s", path, strerror(errno));
    while ((de = readdir(d)) && q->n < MAX_THREADS) {
        char cpath[300], *comm;
        cpu_set_t set;
        pid_t tid;
        unsigned idx;
        char kind[8];
        cpumask m = 0;

        if (de->d_name[0] == '.')
            continue;
        tid = (pid_t)atoi(de->d_name);
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%d/comm", (int)pid, (int)tid);
        comm = it_read_file(cpath);
        if (!comm)
            continue;
        comm[strcspn(comm, "\n")] = '\0';
        CPU_ZERO(&set);
        if (sched_getaffinity(tid, sizeof(set), &set) < 0) {
            free(comm);
            continue;
        }
        for (unsigned c = 0; c < 64; c++)
            if (CPU_ISSET(c, &set))
                m |= (cpumask)1 << c;
        q->th[q->n].tid = tid;
        cgv_strlcpy(q->th[q->n].comm, comm, sizeof(q->th[0].comm));
        q->th[q->n].vcpu = sscanf(comm, "CPU %u/%7s", &idx, kind) == 2 &&
                                   (streq(kind, "TCG") || streq(kind, "KVM"))
                               ? (int)idx
                               : -1;
        q->th[q->n].aff = m;
        q->n++;
        free(comm);
    }
    closedir(d);
}

static void threads_log(struct itest *t, const char *what, const struct qthreads *q)
{
    char line[2048], cpus[64];
    size_t off = 0;

    line[0] = '\0';
    for (size_t i = 0; i < q->n && off < sizeof(line); i++) {
        mask_fmt(q->th[i].aff, cpus, sizeof(cpus));
        off += (size_t)snprintf(line + off, sizeof(line) - off, "%s'%s'(%d)=%s", i ? ", " : "",
                                q->th[i].comm, (int)q->th[i].tid, cpus);
    }
    it_log(t, "%s threads: %s", what, line);
}

static unsigned n_vcpu_threads(const struct qthreads *q)
{
    unsigned n = 0;

    for (size_t i = 0; i < q->n; i++)
        n += q->th[i].vcpu >= 0;
    return n;
}

/* Is every vCPU thread's affinity exactly want (vcpu -1: every one, else only
 * that one) and every emulator thread's a subset of emu (0: not checked)?
 * why says the first that is not. */
static bool threads_ok(const struct qthreads *q, int vcpu, cpumask want, cpumask emu,
                       unsigned want_vcpus, char *why, size_t cap)
{
    char a[64], b[64];

    if (want_vcpus && n_vcpu_threads(q) != want_vcpus) {
        snprintf(why, cap, "%u vCPU threads, want %u", n_vcpu_threads(q), want_vcpus);
        return false;
    }
    for (size_t i = 0; i < q->n; i++) {
        if (q->th[i].vcpu >= 0 && (vcpu < 0 || q->th[i].vcpu == vcpu) && q->th[i].aff != want) {
            mask_fmt(q->th[i].aff, a, sizeof(a));
            mask_fmt(want, b, sizeof(b));
            snprintf(why, cap, "vCPU thread '%s' (tid %d) may run on CPUs %s, want exactly %s",
                     q->th[i].comm, (int)q->th[i].tid, a, b);
            return false;
        }
        if (q->th[i].vcpu < 0 && emu && (q->th[i].aff & ~emu)) {
            mask_fmt(q->th[i].aff, a, sizeof(a));
            mask_fmt(emu, b, sizeof(b));
            snprintf(why, cap,
                     "emulator thread '%s' (tid %d) may run on CPUs %s, outside the "
                     "housekeeping CPUs %s",
                     q->th[i].comm, (int)q->th[i].tid, a, b);
            return false;
        }
    }
    return true;
}

static pid_t vm_pid(struct itest *t, const char *vm)
{
    json_t *v = it_vm(t, vm);
    int64_t pid = it_jint(v, "pid");

    json_decref(v);
    it_check(t, pid > 0, vm, "%s has no QEMU pid", vm);
    return (pid_t)pid;
}

/* Poll (condition + deadline) until the threads of vm's QEMU are placed as
 * threads_ok() wants; fails with the threads seen. */
static void wait_threads(struct itest *t, const char *vm, int vcpu, cpumask want, cpumask emu,
                         unsigned want_vcpus, int timeout_ms)
{
    int64_t t0 = cgv_mono_ms(), deadline = t0 + timeout_ms;
    struct qthreads *q = cgv_malloc0(sizeof(*q));
    char why[512] = "", w[64];

    for (;;) {
        threads_read(t, vm_pid(t, vm), q);
        if (threads_ok(q, vcpu, want, emu, want_vcpus, why, sizeof(why)))
            break;
        if (cgv_mono_ms() >= deadline) {
            threads_log(t, vm, q);
            free(q);
            it_fail(t, vm, "%s: threads not placed within %d ms: %s", vm, timeout_ms, why);
        }
        wait_ms(100);
    }
    mask_fmt(want, w, sizeof(w));
    threads_log(t, vm, q);
    it_log(t, "%s: vCPU threads on %s, emulator threads on housekeeping (%lld ms)", vm, w,
           (long long)(cgv_mono_ms() - t0));
    free(q);
}

/* ---- libvirt's view (virsh) ----------------------------------------------------------------- */

static char *virsh(struct itest *t, const char *a1, const char *a2, const char *a3,
                   const char *a4)
{
    const char *argv[] = {"virsh", "-q", "-c", "qemu:///system", a1, a2, a3, a4, NULL};
    char *out = NULL, *err = NULL;
    int rc = it_run(t, 60000, &out, &err, argv);

    if (rc != 0) {
        it_log(t, "virsh %s %s: exit %d: %s", a1, a2 ?: "", rc, err);
        free(out);
        free(err);
        it_fail(t, NULL, "virsh %s %s failed", a1, a2 ?: "");
    }
    free(err);
    return out;
}

static char *domain_of(const char *vm)
{
    return cgv_asprintf("%s%s", IT_PREFIX, vm);
}

/* `virsh vcpupin DOM --live`: the affinity of vCPU i as libvirt has it. */
static cpumask virsh_vcpupin(struct itest *t, const char *vm, unsigned vcpu)
{
    char *dom = domain_of(vm), *out = virsh(t, "vcpupin", dom, "--live", NULL), *save = NULL;
    cpumask m = 0;
    bool found = false;

    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        unsigned idx;
        char list[256];
        if (sscanf(l, " %u %255s", &idx, list) == 2 && idx == vcpu) {
            found = mask_parse(list, &m) == 0;
            break;
        }
    }
    it_check(t, found, vm, "virsh vcpupin %s shows no vCPU %u", dom, vcpu);
    free(out);
    free(dom);
    return m;
}

/* `virsh emulatorpin DOM --live`. */
static cpumask virsh_emulatorpin(struct itest *t, const char *vm)
{
    char *dom = domain_of(vm), *out = virsh(t, "emulatorpin", dom, "--live", NULL), *save = NULL;
    cpumask m = 0;
    bool found = false;

    /* "       *: 0" (virsh -q prints only "0") */
    for (char *l = strtok_r(out, "\n", &save); l && !found; l = strtok_r(NULL, "\n", &save)) {
        char list[256];
        if (sscanf(l, " *: %255s", list) == 1 || sscanf(l, " %255s", list) == 1)
            found = mask_parse(list, &m) == 0;
    }
    it_check(t, found, vm, "virsh emulatorpin %s: no CPU list", dom);
    free(out);
    free(dom);
    return m;
}

/* A value of `virsh schedinfo DOM --live` ("cpu_shares"), -1 if missing. */
static long long virsh_sched(struct itest *t, const char *vm, const char *key)
{
    char *dom = domain_of(vm), *out = virsh(t, "schedinfo", dom, "--live", NULL), *save = NULL;
    long long v = -1;

    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char k[64];
        long long x;
        if (sscanf(l, " %63s : %lld", k, &x) == 2 && streq(k, key))
            v = x;
    }
    free(out);
    free(dom);
    return v;
}

/* `virsh vcpucount DOM --live --active`: vCPUs the running domain has. */
static long long virsh_vcpus(struct itest *t, const char *vm)
{
    char *dom = domain_of(vm),
         *out = virsh(t, "vcpucount", dom, "--live", "--active");
    long long v = atoll(out);

    free(out);
    free(dom);
    return v;
}

/* `virsh dominfo DOM`: "Max memory: N KiB". */
static long long virsh_max_mem_kib(struct itest *t, const char *vm)
{
    char *dom = domain_of(vm), *out = virsh(t, "dominfo", dom, NULL, NULL);
    const char *p = strstr(out, "Max memory:");
    long long v = p ? atoll(p + strlen("Max memory:")) : -1;

    free(out);
    free(dom);
    return v;
}

/* ---- services ------------------------------------------------------------------------------- */

static bool service_exists(struct itest *t, const char *name)
{
    char path[128];
    int st = 0;

    snprintf(path, sizeof(path), "/v1/services/%s", name);
    if (it_api(t, "GET", path, NULL, NULL, &st, NULL, NULL) == 0)
        return true;
    it_check(t, st == 404, NULL, "GET %s: HTTP %d, want 200 or 404", path, st);
    return false;
}

static void drop_service(struct itest *t, const char *name)
{
    if (service_exists(t, name)) {
        int rc = it_cgv(t, NULL, NULL, "delete", name, NULL);
        it_check(t, rc == 0, NULL, "cgv delete %s: exit %d", name, rc);
    }
    it_service_forget(t, name);
}

/* Apply spec (service name) and wait until its VM NAME-0 runs with its agent up. */
static void ensure_service(struct itest *t, const char *name, const char *spec)
{
    char vm[64];
    int64_t cur = it_event_cursor(t), t0 = cgv_mono_ms();
    json_t *res = NULL, *err = NULL, *v;
    int st = 0;

    snprintf(vm, sizeof(vm), "%s-0", name);
    it_service_created(t, name);
    if (it_apply(t, spec, false, &st, &res, &err) < 0) {
        char *txt = json_dumps(err, JSON_COMPACT);
        it_log(t, "apply %s: HTTP %d %s", name, st, txt ?: "");
        free(txt);
        json_decref(err);
        it_fail(t, NULL, "applying %s failed", name);
    }
    it_log(t, "apply %s -> %s", name, it_jstr(res, "result"));
    json_decref(res);
    v = it_vm(t, vm);
    if (!streq(it_jstr(v, "state"), "running"))
        json_decref(it_vm_op(t, vm, "start"));
    json_decref(v);
    it_wait_agent_up(t, vm, cur, BOOT_MS);
    /* and settled: healthy in cgvd's view, no operation under way */
    for (int64_t deadline = cgv_mono_ms() + BOOT_MS;;) {
        bool ok;
        v = it_vm(t, vm);
        ok = streq(it_jstr(v, "ha.state"), "healthy") && json_is_null(it_jget(v, "busy"));
        if (!ok && cgv_mono_ms() >= deadline)
            it_fail(t, vm, "%s: HA state %s, busy %s after its agent said hello", vm,
                    it_jstr(v, "ha.state"), it_jstr(v, "busy") ?: "-");
        json_decref(v);
        if (ok)
            break;
        wait_ms(100);
    }
    it_log(t, "%s: running, agent up, healthy (%lld ms)", vm, (long long)(cgv_mono_ms() - t0));
}

/* recovery cold: no memory snapshot for fast restarts (it would keep the
 * VM busy for a while after its first hello) */
#define COLD "recovery: {restart: cold}\n"

static const char spec_flo[] = "name: " SVC_FLO "\n"
                               "memory: 256MiB\n"
                               "heartbeat_ms: 500\n" COLD
                               "processes:\n"
                               "  - name: nf\n"
                               "    command: /usr/sbin/cgv-nf\n";
static const char spec_ded[] = "name: " SVC_DED "\n"
                               "memory: 256MiB\n"
                               "heartbeat_ms: 500\n" COLD
                               "cpu: {policy: dedicated}\n";
static const char spec_ded2[] = "name: " SVC_DED2 "\n"
                                "memory: 256MiB\n" COLD
                                "cpu: {policy: dedicated}\n";

/* The one CPU a dedicated or pinned VM gets here: the first one that is
 * not housekeeping. */
static unsigned dedicatable_cpu(struct itest *t, const struct host *h)
{
    cpumask free = h->all & ~h->hk;

    if (!free) {
        it_log(t, "SKIP: every CPU of this host is housekeeping: nothing to dedicate");
        skip();
    }
    return mask_first(free);
}

/* ---- a: dedicated --------------------------------------------------------------------------- */

static void test_dedicated(void **state)
{
    struct itest *t = *state;
    struct host h0, h1;
    json_t *v, *st;
    char *out = NULL;
    cpumask ded = 0, emu = 0, flo_before;
    unsigned cpu;
    int rc;
    struct qthreads *q;
    char why[512];

    it_begin(t, "dedicated");
    drop_service(t, SVC_DED);
    drop_service(t, SVC_PIN);
    ensure_service(t, SVC_FLO, spec_flo);
    host_read(t, &h0);
    cpu = dedicatable_cpu(t, &h0);
    it_check(t, h0.free_cores >= 1, NULL, "the host has %lld free cores before, want >= 1",
             h0.free_cores);
    flo_before = floating_set(&h0);
    it_check(t, flo_before & ((cpumask)1 << cpu), NULL,
             "before: the floating set does not hold CPU %u", cpu);
    /* the floating VM may use the CPU that is about to be dedicated */
    wait_threads(t, SVC_FLO "-0", -1, flo_before, h0.hk, 0, REPIN_MS);

    ensure_service(t, SVC_DED, spec_ded);
    host_read(t, &h1);

    /* cgvd's view: the VM JSON (and cgv status --json) */
    v = it_vm(t, SVC_DED "-0");
    it_check(t, streq(it_jstr(v, "cpu.policy"), "dedicated"), SVC_DED "-0", "cpu.policy %s",
             it_jstr(v, "cpu.policy"));
    it_check(t, json_is_true(it_jget(v, "cpu.placed")), SVC_DED "-0", "cpu.placed not true");
    it_check(t, json_array_size(it_jget(v, "cpu.vcpu_pins")) == 1, SVC_DED "-0",
             "%zu vcpu_pins, want 1", json_array_size(it_jget(v, "cpu.vcpu_pins")));
    it_check(t, mask_parse(json_string_value(json_array_get(it_jget(v, "cpu.vcpu_pins"), 0)),
                           &ded) == 0 &&
                    mask_count(ded) == 1,
             SVC_DED "-0", "vcpu_pins[0] is not one CPU");
    it_check(t, !(ded & h0.hk), SVC_DED "-0", "the dedicated CPU is a housekeeping CPU");
    it_check(t, ded == ((cpumask)1 << cpu), SVC_DED "-0",
             "dedicated CPU %u, want %u (the only non-housekeeping CPU free)", mask_first(ded),
             cpu);
    it_check(t, mask_parse(it_jstr(v, "cpu.emulator_pin"), &emu) == 0 && emu == h0.hk,
             SVC_DED "-0", "emulator_pin '%s', want the housekeeping CPUs",
             it_jstr(v, "cpu.emulator_pin"));
    json_decref(v);
    rc = it_cgv(t, &out, NULL, "status", SVC_DED, "--json", NULL);
    it_check(t, rc == 0, NULL, "cgv status %s --json: exit %d", SVC_DED, rc);
    st = json_loads(out, 0, NULL);
    free(out);
    it_check(t, st != NULL, NULL, "cgv status --json printed no JSON");
    v = json_array_get(json_object_get(st, "vms"), 0);
    it_check(t, streq(it_jstr(v, "cpu.policy"), "dedicated") &&
                    json_array_size(it_jget(v, "cpu.vcpu_pins")) == 1,
             NULL, "cgv status --json does not report the placement");
    {
        cpumask m = 0;
        it_check(t,
                 mask_parse(json_string_value(json_array_get(it_jget(v, "cpu.vcpu_pins"), 0)),
                            &m) == 0 &&
                     m == ded,
                 NULL, "cgv status --json: vcpu_pins differ from the VM's");
    }
    json_decref(st);

    /* the host: one core less, the CPU left the shared pool */
    it_check(t, h1.free_cores == h0.free_cores - 1, NULL, "free cores %lld -> %lld, want -1",
             h0.free_cores, h1.free_cores);
    it_check(t, !(h1.pool & ded), NULL, "the dedicated CPU is still in the shared pool");

    /* the kernel's view: the vCPU thread alone on the dedicated CPU, every
     * other QEMU thread on the housekeeping CPUs */
    q = cgv_malloc0(sizeof(*q));
    threads_read(t, vm_pid(t, SVC_DED "-0"), q);
    threads_log(t, SVC_DED "-0", q);
    it_check(t, n_vcpu_threads(q) == 1, SVC_DED "-0", "%u vCPU threads, want 1",
             n_vcpu_threads(q));
    it_check(t, q->n > n_vcpu_threads(q), SVC_DED "-0", "QEMU has no emulator thread?");
    it_check(t, threads_ok(q, -1, ded, h0.hk, 1, why, sizeof(why)), SVC_DED "-0", "%s", why);
    free(q);
    /* libvirt's view */
    it_check(t, virsh_vcpupin(t, SVC_DED "-0", 0) == ded, SVC_DED "-0",
             "virsh vcpupin: vCPU 0 is not pinned to the dedicated CPU");
    it_check(t, virsh_emulatorpin(t, SVC_DED "-0") == h0.hk, SVC_DED "-0",
             "virsh emulatorpin is not the housekeeping CPUs");

    /* the floating VM left the dedicated CPU (re-pinned live, same QEMU) */
    it_check(t, !(floating_set(&h1) & ded), NULL, "the floating set still holds CPU %u", cpu);
    wait_threads(t, SVC_FLO "-0", -1, floating_set(&h1), h0.hk, 0, REPIN_MS);
    v = it_vm(t, SVC_FLO "-0");
    {
        cpumask m = 0;
        it_check(t,
                 mask_parse(json_string_value(json_array_get(it_jget(v, "cpu.vcpu_pins"), 0)),
                            &m) == 0 &&
                     m == floating_set(&h1),
                 SVC_FLO "-0", "the floating VM's vcpu_pins are not the floating set");
    }
    json_decref(v);
    it_end(t);
}

/* ---- b: no over-commit ----------------------------------------------------------------------- */

static void test_no_overcommit(void **state)
{
    struct itest *t = *state;
    struct host h;
    json_t *res = NULL, *err = NULL, *doms, *evs;
    int st = 0, rc;
    int64_t cur;
    char *path, *e = NULL, *spec;
    unsigned hk_cpu;

    it_begin(t, "no_overcommit");
    drop_service(t, SVC_PIN); /* a pinned VM's CPU cannot be dedicated */
    ensure_service(t, SVC_DED, spec_ded);
    host_read(t, &h);
    if (h.free_cores > 0) {
        it_log(t, "SKIP: the host still has %lld free cores with one dedicated VM",
               h.free_cores);
        skip();
    }
    cur = it_event_cursor(t);

    /* through the API: 409 conflict, the message says what is short */
    it_check(t, it_apply(t, spec_ded2, false, &st, &res, &err) < 0, NULL,
             "a second dedicated service was accepted");
    it_log(t, "apply %s -> HTTP %d %s: %s", SVC_DED2, st, it_jstr(err, "code"),
           it_jstr(err, "message"));
    it_check(t, st == 409 && streq(it_jstr(err, "code"), "conflict"), NULL,
             "HTTP %d code %s, want 409 conflict", st, it_jstr(err, "code"));
    it_check(t, strstr(it_jstr(err, "message") ?: "", "dedicated core") &&
                    strstr(it_jstr(err, "message") ?: "", SVC_DED2 "-0"),
             NULL, "the error does not name the VM and the dedicated core it lacks: %s",
             it_jstr(err, "message"));
    json_decref(err);
    json_decref(res);
    err = res = NULL;

    /* through the CLI: exit 5, the same reason */
    path = it_write_file(t, "itc-ded2.yaml", spec_ded2);
    rc = it_cgv(t, NULL, &e, "apply", "-f", path, NULL);
    it_check(t, rc == 5, NULL, "cgv apply of a second dedicated service: exit %d, want 5", rc);
    it_check(t, strstr(e, "dedicated core") != NULL, NULL, "cgv apply stderr: %s", e);
    free(e);
    free(path);

    /* a pinned CPU the host lacks, and a housekeeping one: 400 invalid */
    spec = cgv_asprintf("name: %s\ncpu: {policy: pinned, pinned: [63]}\n", SVC_DED2);
    it_check(t, it_apply(t, spec, false, &st, &res, &err) < 0, NULL,
             "pinned to CPU 63 was accepted");
    it_log(t, "pinned [63] -> HTTP %d: %s", st, it_jstr(err, "message"));
    it_check(t, st == 400 && strstr(it_jstr(err, "message") ?: "", "does not exist"), NULL,
             "pinned [63]: HTTP %d, %s", st, it_jstr(err, "message"));
    json_decref(err);
    free(spec);
    err = NULL;
    hk_cpu = mask_first(h.hk);
    spec = cgv_asprintf("name: %s\ncpu: {policy: pinned, pinned: [%u]}\n", SVC_DED2, hk_cpu);
    it_check(t, it_apply(t, spec, false, &st, &res, &err) < 0, NULL,
             "pinned to housekeeping CPU %u was accepted", hk_cpu);
    it_log(t, "pinned [%u] -> HTTP %d: %s", hk_cpu, st, it_jstr(err, "message"));
    it_check(t, st == 400 && strstr(it_jstr(err, "message") ?: "", "housekeeping"), NULL,
             "pinned [%u]: HTTP %d, %s", hk_cpu, st, it_jstr(err, "message"));
    json_decref(err);
    free(spec);

    /* nothing was created */
    it_check(t, !service_exists(t, SVC_DED2), NULL, "service %s exists", SVC_DED2);
    doms = it_domains(t, IT_PREFIX SVC_DED2);
    it_check(t, json_array_size(doms) == 0, NULL, "%zu libvirt domains %s* exist",
             json_array_size(doms), IT_PREFIX SVC_DED2);
    json_decref(doms);
    evs = it_events(t, cur, SVC_DED2 "-0");
    it_check(t, json_array_size(evs) == 0, NULL, "%zu events of %s-0 (defined/started?)",
             json_array_size(evs), SVC_DED2);
    json_decref(evs);
    /* and what ran is untouched */
    host_read(t, &h);
    it_check(t, h.free_cores == 0, NULL, "free cores %lld after the refusals", h.free_cores);
    it_end(t);
}

/* ---- c: pinned and floating ------------------------------------------------------------------ */

static void test_pinned_floating(void **state)
{
    struct itest *t = *state;
    struct host h;
    unsigned cpu;
    char *spec;
    cpumask pin;
    json_t *v;

    it_begin(t, "pinned_floating");
    ensure_service(t, SVC_FLO, spec_flo);
    /* the dedicated VM goes: its CPU comes back to the pool, and the
     * floating VM may use it again (re-pinned live) */
    drop_service(t, SVC_DED);
    host_read(t, &h);
    cpu = dedicatable_cpu(t, &h);
    it_check(t, h.pool & ((cpumask)1 << cpu), NULL, "CPU %u is not back in the pool", cpu);
    wait_threads(t, SVC_FLO "-0", -1, floating_set(&h), h.hk, 1, REPIN_MS);

    /* 2 vCPUs pinned to one CPU: vCPU i runs on pinned[i % n] */
    pin = (cpumask)1 << cpu;
    spec = cgv_asprintf("name: %s\nvcpus: 2\nmemory: 256MiB\nheartbeat_ms: 500\n" COLD
                        "cpu: {policy: pinned, pinned: [%u]}\n",
                        SVC_PIN, cpu);
    ensure_service(t, SVC_PIN, spec);
    free(spec);
    wait_threads(t, SVC_PIN "-0", -1, pin, h.hk, 2, 1);
    it_check(t, virsh_vcpupin(t, SVC_PIN "-0", 0) == pin &&
                    virsh_vcpupin(t, SVC_PIN "-0", 1) == pin,
             SVC_PIN "-0", "virsh vcpupin: the vCPUs are not pinned to CPU %u", cpu);
    it_check(t, virsh_emulatorpin(t, SVC_PIN "-0") == h.hk, SVC_PIN "-0",
             "virsh emulatorpin is not the housekeeping CPUs");
    v = it_vm(t, SVC_PIN "-0");
    it_check(t, streq(it_jstr(v, "cpu.policy"), "pinned") &&
                    json_array_size(it_jget(v, "cpu.vcpu_pins")) == 2,
             SVC_PIN "-0", "cpu.policy %s, %zu vcpu_pins", it_jstr(v, "cpu.policy"),
             json_array_size(it_jget(v, "cpu.vcpu_pins")));
    json_decref(v);

    /* a pinned (not realtime) CPU stays in the pool: the floating VM keeps it */
    host_read(t, &h);
    it_check(t, h.pool & pin, NULL, "CPU %u left the pool for a pinned VM", cpu);
    wait_threads(t, SVC_FLO "-0", -1, floating_set(&h), h.hk, 1, 1);
    it_check(t, virsh_vcpupin(t, SVC_FLO "-0", 0) == floating_set(&h), SVC_FLO "-0",
             "virsh vcpupin of the floating VM differs from its threads");
    it_end(t);
}

/* ---- d: cgv vm set --------------------------------------------------------------------------- */

static void set_expect(struct itest *t, int want_rc, const char *want_out, const char *want_err,
                       const char *a1, const char *a2, const char *a3, const char *a4)
{
    char *out = NULL, *err = NULL;
    int64_t deadline = cgv_mono_ms() + 60000;
    int rc;

    /* busy with another operation (exit 5): wait for it to end */
    while ((rc = it_cgv(t, &out, &err, "vm", "set", SVC_SET "-0", a1, a2, a3, a4, NULL)) == 5 &&
           want_rc != 5 && strstr(err, "busy") && cgv_mono_ms() < deadline) {
        free(out);
        free(err);
        wait_ms(200);
    }

    it_check(t, rc == want_rc, SVC_SET "-0", "cgv vm set %s %s: exit %d, want %d", a1,
             a2 ?: "", rc, want_rc);
    if (want_out)
        it_check(t, strstr(out, want_out) != NULL, SVC_SET "-0",
                 "cgv vm set stdout lacks '%s': %s", want_out, out);
    if (want_err)
        it_check(t, strstr(err, want_err) != NULL, SVC_SET "-0",
                 "cgv vm set stderr lacks '%s': %s", want_err, err);
    free(out);
    free(err);
}

static void test_set_live(void **state)
{
    struct itest *t = *state;
    struct host h;
    pid_t pid0, pid1;
    unsigned cpu;
    char cpus[16], hk_s[16], *out = NULL;
    cpumask pin;
    int64_t cur;
    json_t *v, *evs;
    int st = 0;

    it_begin(t, "set_live");
    drop_service(t, SVC_DED); /* its core is the one we pin to */
    drop_service(t, SVC_SET);
    ensure_service(t, SVC_SET,
                   "name: " SVC_SET "\nvcpus: 1\nmemory: 256MiB\nheartbeat_ms: 500\n" COLD
                   "cpu: {policy: floating, max_vcpus: 2}\n");
    host_read(t, &h);
    cpu = dedicatable_cpu(t, &h);
    pin = (cpumask)1 << cpu;
    snprintf(cpus, sizeof(cpus), "%u", cpu);
    snprintf(hk_s, sizeof(hk_s), "%u", mask_first(h.hk));
    pid0 = vm_pid(t, SVC_SET "-0");
    it_check(t, virsh_vcpus(t, SVC_SET "-0") == 1, SVC_SET "-0", "not 1 vCPU at the start");

    /* QoS: CPU shares and quota, live */
    cur = it_event_cursor(t);
    set_expect(t, 0, "reconfigured live", NULL, "--cpu-shares", "512", "--cpu-quota-us",
               "40000");
    json_decref(it_wait_event(t, cur, "vm.reconfigured", SVC_SET "-0", "qos", 10000));
    it_check(t, virsh_sched(t, SVC_SET "-0", "cpu_shares") == 512, SVC_SET "-0",
             "virsh schedinfo cpu_shares %lld, want 512",
             virsh_sched(t, SVC_SET "-0", "cpu_shares"));
    it_check(t, virsh_sched(t, SVC_SET "-0", "vcpu_quota") == 40000, SVC_SET "-0",
             "virsh schedinfo vcpu_quota %lld, want 40000",
             virsh_sched(t, SVC_SET "-0", "vcpu_quota"));
    it_check(t, virsh_sched(t, SVC_SET "-0", "vcpu_period") == 100000, SVC_SET "-0",
             "virsh schedinfo vcpu_period %lld, want 100000",
             virsh_sched(t, SVC_SET "-0", "vcpu_period"));
    it_check(t, vm_pid(t, SVC_SET "-0") == pid0, SVC_SET "-0", "QEMU was restarted");

    /* vCPUs 1 -> 2 (within max_vcpus): hot-plugged */
    set_expect(t, 0, "reconfigured live", NULL, "--vcpus", "2", NULL, NULL);
    it_check(t, virsh_vcpus(t, SVC_SET "-0") == 2, SVC_SET "-0",
             "virsh vcpucount --live: %lld, want 2", virsh_vcpus(t, SVC_SET "-0"));
    wait_threads(t, SVC_SET "-0", -1, floating_set(&h), h.hk, 2, REPIN_MS);
    it_check(t, vm_pid(t, SVC_SET "-0") == pid0, SVC_SET "-0", "QEMU was restarted");

    /* pinning, live: both vCPU threads to the one CPU */
    set_expect(t, 0, "reconfigured live", NULL, "--cpus", cpus, NULL, NULL);
    wait_threads(t, SVC_SET "-0", -1, pin, h.hk, 2, 1);
    it_check(t, virsh_vcpupin(t, SVC_SET "-0", 1) == pin, SVC_SET "-0",
             "virsh vcpupin: vCPU 1 not on CPU %u", cpu);
    v = it_vm(t, SVC_SET "-0");
    it_check(t, streq(it_jstr(v, "cpu.policy"), "pinned (set by operator)"), SVC_SET "-0",
             "cpu.policy %s", it_jstr(v, "cpu.policy"));
    json_decref(v);
    it_check(t, vm_pid(t, SVC_SET "-0") == pid0, SVC_SET "-0", "QEMU was restarted");

    /* bad input: a clear error, nothing changes */
    cur = it_event_cursor(t);
    set_expect(t, 4, NULL, "cpu_shares", "--cpu-shares", "1", NULL, NULL);
    set_expect(t, 4, NULL, "housekeeping", "--cpus", hk_s, NULL, NULL);
    set_expect(t, 4, NULL, "vcpus", "--vcpus", "0", NULL, NULL);
    set_expect(t, 4, NULL, "memory", "--memory", "10MiB", NULL, NULL);
    set_expect(t, 2, NULL, "--cpu-shares", "--cpu-shares", "lots", NULL, NULL);
    {
        char *err = NULL;
        int rc = it_cgv(t, NULL, &err, "vm", "set", "itc-nosuch-0", "--vcpus", "1", NULL);
        it_check(t, rc == 3, NULL, "cgv vm set of an unknown VM: exit %d, want 3", rc);
        free(err);
    }
    {
        json_t *e = NULL;
        it_check(t, it_api(t, "POST", "/v1/vms/" SVC_SET "-0/set", NULL, "{\"cpu_sharez\": 5}",
                           &st, NULL, &e) < 0 &&
                        st == 400 && strstr(it_jstr(e, "message") ?: "", "cpu_sharez"),
                 SVC_SET "-0", "an unknown field: HTTP %d %s", st, it_jstr(e, "message"));
        json_decref(e);
    }
    it_check(t, virsh_sched(t, SVC_SET "-0", "cpu_shares") == 512, SVC_SET "-0",
             "cpu_shares changed by a refused set");
    it_check(t, virsh_vcpus(t, SVC_SET "-0") == 2, SVC_SET "-0", "vCPUs changed by a refused set");
    it_check(t, virsh_max_mem_kib(t, SVC_SET "-0") == 256 * 1024, SVC_SET "-0",
             "memory changed by a refused set");
    wait_threads(t, SVC_SET "-0", -1, pin, h.hk, 2, 1);
    it_check(t, vm_pid(t, SVC_SET "-0") == pid0, SVC_SET "-0", "QEMU was restarted");
    evs = it_events(t, cur, SVC_SET "-0");
    it_check(t, it_count_events(evs, "vm.reconfigured", NULL) == 0 &&
                    it_count_events(evs, "vm.stopped", NULL) == 0,
             SVC_SET "-0", "a refused set reconfigured or stopped the VM");
    json_decref(evs);

    /* memory: a controlled restart, then running with the new size */
    cur = it_event_cursor(t);
    set_expect(t, 0, "reconfigured restart", NULL, "--memory", "320MiB", NULL, NULL);
    pid1 = vm_pid(t, SVC_SET "-0");
    it_check(t, pid1 != pid0, SVC_SET "-0", "same QEMU pid %d after a memory change",
             (int)pid0);
    v = it_vm(t, SVC_SET "-0");
    it_check(t, streq(it_jstr(v, "state"), "running"), SVC_SET "-0", "state %s after the restart",
             it_jstr(v, "state"));
    json_decref(v);
    it_check(t, virsh_max_mem_kib(t, SVC_SET "-0") == 320 * 1024, SVC_SET "-0",
             "virsh dominfo: max memory %lld KiB, want %d", virsh_max_mem_kib(t, SVC_SET "-0"),
             320 * 1024);
    it_wait_agent_up(t, SVC_SET "-0", cur, RESTART_MS);
    /* the earlier live changes survived the restart */
    it_check(t, virsh_vcpus(t, SVC_SET "-0") == 2, SVC_SET "-0", "vCPUs after the restart: %lld",
             virsh_vcpus(t, SVC_SET "-0"));
    it_check(t, virsh_sched(t, SVC_SET "-0", "cpu_shares") == 512, SVC_SET "-0",
             "cpu_shares after the restart: %lld", virsh_sched(t, SVC_SET "-0", "cpu_shares"));
    wait_threads(t, SVC_SET "-0", -1, pin, h.hk, 2, REPIN_MS);
    /* the KPIs see the new memory */
    {
        int64_t deadline = cgv_mono_ms() + KPI_MS;
        long long mem = 0;
        for (;;) {
            v = it_vm(t, SVC_SET "-0");
            mem = (long long)it_jint(v, "kpi.memory_bytes");
            json_decref(v);
            if (mem == 320LL << 20 || cgv_mono_ms() >= deadline)
                break;
            wait_ms(200);
        }
        it_check(t, mem == 320LL << 20, SVC_SET "-0", "kpi.memory_bytes %lld, want %lld", mem,
                 320LL << 20);
    }
    it_check(t, it_cgv(t, &out, NULL, "status", SVC_SET, NULL) == 0, NULL, "cgv status");
    free(out);
    drop_service(t, SVC_SET);
    it_end(t);
}

/* ---- e: /metrics and cgv top ----------------------------------------------------------------- */

/* GET /metrics: the Prometheus text as "name{labels}" -> value. Checks the
 * format: every sample line is NAME[{LABELS}] VALUE and its metric has a
 * # TYPE line before it. */
static json_t *scrape(struct itest *t)
{
    struct cgv_error err = {0};
    struct client *c = it_client(t);
    char *text = NULL, *save = NULL;
    size_t len = 0;
    int st = 0;
    json_t *m = json_object(), *types = json_object();

    if (client_request_raw(c, "GET", "/metrics", NULL, NULL, 0, &st, &text, &len, &err) < 0)
        it_fail(t, NULL, "GET /metrics: HTTP %d %s", st, err.msg);
    client_free(c);
    it_check(t, st == 200 && len > 0, NULL, "GET /metrics: HTTP %d, %zu bytes", st, len);
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[128], key[512], *sp;
        double val;
        size_t n;
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char tn[128], ty[32];
            int got = sscanf(l + 7, "%127s %31s", tn, ty);
            it_check(t, got == 2, NULL, "bad TYPE line: %s", l);
            json_object_set_new(types, tn, json_string(ty));
            continue;
        }
        if (l[0] == '#')
            continue;
        sp = strrchr(l, ' ');
        it_check(t, sp && sp > l, NULL, "bad sample line: %s", l);
        n = (size_t)(sp - l);
        it_check(t, n < sizeof(key), NULL, "sample line too long: %s", l);
        memcpy(key, l, n);
        key[n] = '\0';
        val = strtod(sp + 1, NULL);
        it_check(t, isfinite(val), NULL, "not a number: %s", l);
        n = strcspn(key, "{");
        it_check(t, n < sizeof(name), NULL, "bad name: %s", l);
        memcpy(name, key, n);
        name[n] = '\0';
        it_check(t, json_object_get(types, name) != NULL, NULL,
                 "sample of %s before its # TYPE line", name);
        it_check(t, json_object_get(m, key) == NULL, NULL, "duplicate sample %s", key);
        json_object_set_new(m, key, json_real(val));
    }
    free(text);
    json_decref(types);
    return m;
}

/* The value of metric name for vm (service = vm up to its last '-'), or NAN. */
static double mval(const json_t *m, const char *name, const char *vm)
{
    char key[512], svc[64];
    const char *dash = strrchr(vm, '-');
    json_t *v;

    snprintf(svc, sizeof(svc), "%.*s", dash ? (int)(dash - vm) : (int)strlen(vm), vm);
    snprintf(key, sizeof(key), "%s{service=\"%s\",vm=\"%s\"}", name, svc, vm);
    v = json_object_get(m, key);
    return v ? json_real_value(v) : NAN;
}

static double hval(const json_t *m, const char *name)
{
    json_t *v = json_object_get(m, name);

    return v ? json_real_value(v) : NAN;
}

/* MemTotal of /proc/meminfo in bytes. */
static double host_mem_total(void)
{
    char *text = it_read_file("/proc/meminfo");
    const char *p = text ? strstr(text, "MemTotal:") : NULL;
    double v = p ? atof(p + strlen("MemTotal:")) * 1024.0 : NAN;

    free(text);
    return v;
}

static void test_metrics(void **state)
{
    struct itest *t = *state;
    json_t *m0, *m1 = NULL, *vms, *vm;
    const char *flo = SVC_FLO "-0";
    char *out = NULL;
    size_t i, n_running = 0;
    double cpu0, rx0, tx0, hb0, app0, ncpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
    int64_t deadline;
    int rc;

    it_begin(t, "metrics");
    ensure_service(t, SVC_FLO, spec_flo);
    /* the first KPI sample of a VM comes within a second or two of its start */
    deadline = cgv_mono_ms() + KPI_MS;
    for (;;) {
        const char *missing = NULL;
        m0 = scrape(t);
        vms = it_get(t, "/v1/vms");
        json_array_foreach(json_object_get(vms, "vms"), i, vm)
        {
            const char *name = it_jstr(vm, "name");
            if (streq(it_jstr(vm, "state"), "running") &&
                streq(it_jstr(vm, "agent.state"), "up") && !missing &&
                (isnan(mval(m0, "cgv_vm_cpu_seconds_total", name)) ||
                 isnan(mval(m0, "cgv_vm_agent_rtt_seconds", name))))
                missing = name;
        }
        if (!missing)
            break;
        it_check(t, cgv_mono_ms() < deadline, missing, "no CPU/RTT metrics for %s within %d ms",
                 missing, KPI_MS);
        json_decref(m0);
        json_decref(vms);
        wait_ms(200);
    }

    /* host */
    it_check(t, hval(m0, "cgv_up") == 1 && hval(m0, "cgv_libvirt_connected") == 1, NULL,
             "cgv_up %g, cgv_libvirt_connected %g", hval(m0, "cgv_up"),
             hval(m0, "cgv_libvirt_connected"));
    it_check(t, hval(m0, "cgv_host_cpus") == ncpus, NULL, "cgv_host_cpus %g, host has %g",
             hval(m0, "cgv_host_cpus"), ncpus);
    it_check(t, fabs(hval(m0, "cgv_host_memory_total_bytes") - host_mem_total()) < 1e6, NULL,
             "cgv_host_memory_total_bytes %g, /proc/meminfo says %g",
             hval(m0, "cgv_host_memory_total_bytes"), host_mem_total());
    it_check(t, hval(m0, "cgv_host_memory_available_bytes") > 0 &&
                    hval(m0, "cgv_host_memory_available_bytes") <=
                        hval(m0, "cgv_host_memory_total_bytes"),
             NULL, "cgv_host_memory_available_bytes %g",
             hval(m0, "cgv_host_memory_available_bytes"));
    it_check(t, hval(m0, "cgv_host_cpu_usage_ratio") >= 0 &&
                    hval(m0, "cgv_host_cpu_usage_ratio") <= 1,
             NULL, "cgv_host_cpu_usage_ratio %g", hval(m0, "cgv_host_cpu_usage_ratio"));

    /* every running VM with its agent up has sane figures */
    json_array_foreach(json_object_get(vms, "vms"), i, vm)
    {
        const char *name = it_jstr(vm, "name"), *role = it_jstr(vm, "ha.role");
        char key[256];
        double mem;
        if (!streq(it_jstr(vm, "state"), "running") || !streq(it_jstr(vm, "agent.state"), "up"))
            continue;
        n_running++;
        it_log(t, "%s: cpu %.2f s (%.3f CPUs), mem %.0f MiB, rss %.0f MiB, rx %.0f B, tx %.0f "
                  "B, blk r/w %.0f/%.0f B, rtt %.3f ms, hb age %.3f s, restarts %g",
               name, mval(m0, "cgv_vm_cpu_seconds_total", name),
               mval(m0, "cgv_vm_cpu_usage_ratio", name),
               mval(m0, "cgv_vm_memory_bytes", name) / 1048576.0,
               mval(m0, "cgv_vm_memory_rss_bytes", name) / 1048576.0,
               mval(m0, "cgv_vm_network_receive_bytes_total", name),
               mval(m0, "cgv_vm_network_transmit_bytes_total", name),
               mval(m0, "cgv_vm_block_read_bytes_total", name),
               mval(m0, "cgv_vm_block_write_bytes_total", name),
               mval(m0, "cgv_vm_agent_rtt_seconds", name) * 1000.0,
               mval(m0, "cgv_vm_heartbeat_age_seconds", name),
               mval(m0, "cgv_vm_restarts_total", name));
        it_check(t, mval(m0, "cgv_vm_up", name) == 1, name, "cgv_vm_up %g",
                 mval(m0, "cgv_vm_up", name));
        it_check(t, mval(m0, "cgv_vm_cpu_seconds_total", name) > 0, name,
                 "cgv_vm_cpu_seconds_total %g", mval(m0, "cgv_vm_cpu_seconds_total", name));
        it_check(t, mval(m0, "cgv_vm_cpu_usage_ratio", name) >= 0 &&
                        mval(m0, "cgv_vm_cpu_usage_ratio", name) <= ncpus + 0.5,
                 name, "cgv_vm_cpu_usage_ratio %g", mval(m0, "cgv_vm_cpu_usage_ratio", name));
        it_check(t, mval(m0, "cgv_vm_vcpus", name) >= 1, name, "cgv_vm_vcpus %g",
                 mval(m0, "cgv_vm_vcpus", name));
        mem = mval(m0, "cgv_vm_memory_bytes", name);
        it_check(t, mem == (double)it_jint(vm, "kpi.memory_bytes") && mem >= 64.0 * 1048576,
                 name, "cgv_vm_memory_bytes %g", mem);
        it_check(t, mval(m0, "cgv_vm_memory_rss_bytes", name) > 1048576 &&
                        mval(m0, "cgv_vm_memory_rss_bytes", name) < mem + 1024.0 * 1048576,
                 name, "cgv_vm_memory_rss_bytes %g", mval(m0, "cgv_vm_memory_rss_bytes", name));
        it_check(t, mval(m0, "cgv_vm_network_receive_bytes_total", name) >= 0 &&
                        mval(m0, "cgv_vm_network_transmit_bytes_total", name) >= 0 &&
                        mval(m0, "cgv_vm_network_receive_drops_total", name) >= 0,
                 name, "network counters missing");
        it_check(t, mval(m0, "cgv_vm_block_read_bytes_total", name) >= 0 &&
                        mval(m0, "cgv_vm_block_write_bytes_total", name) >= 0,
                 name, "block counters missing");
        it_check(t, mval(m0, "cgv_vm_agent_rtt_seconds", name) > 0 &&
                        mval(m0, "cgv_vm_agent_rtt_seconds", name) < 2,
                 name, "cgv_vm_agent_rtt_seconds %g", mval(m0, "cgv_vm_agent_rtt_seconds", name));
        it_check(t, mval(m0, "cgv_vm_heartbeat_age_seconds", name) >= 0 &&
                        mval(m0, "cgv_vm_heartbeat_age_seconds", name) < 5,
                 name, "cgv_vm_heartbeat_age_seconds %g",
                 mval(m0, "cgv_vm_heartbeat_age_seconds", name));
        it_check(t, mval(m0, "cgv_vm_heartbeats_total", name) >= 1, name,
                 "cgv_vm_heartbeats_total %g", mval(m0, "cgv_vm_heartbeats_total", name));
        it_check(t, mval(m0, "cgv_vm_restarts_total", name) == 0, name,
                 "cgv_vm_restarts_total %g (no HA restart happened)",
                 mval(m0, "cgv_vm_restarts_total", name));
        it_check(t, mval(m0, "cgv_vm_app_served_total", name) >= 0, name,
                 "cgv_vm_app_served_total missing");
        snprintf(key, sizeof(key), "cgv_vm_ha_role{service=\"%s\",vm=\"%s\",role=\"%s\"}",
                 it_jstr(vm, "service"), name, role ?: "?");
        it_check(t, json_real_value(json_object_get(m0, key)) == 1, name,
                 "no %s 1 (the VM's role is %s)", key, role);
    }
    it_check(t, n_running >= 1, NULL, "no running VM to check");

    /* counters grow: CPU time and heartbeats by themselves, network with
     * traffic to the VM */
    cpu0 = mval(m0, "cgv_vm_cpu_seconds_total", flo);
    hb0 = mval(m0, "cgv_vm_heartbeats_total", flo);
    rx0 = mval(m0, "cgv_vm_network_receive_bytes_total", flo);
    tx0 = mval(m0, "cgv_vm_network_transmit_bytes_total", flo);
    app0 = mval(m0, "cgv_vm_app_served_total", flo);
    {
        /* cgv-nf (supervised by the agent) may still be starting: retry */
        json_t *v = it_vm(t, flo);
        deadline = cgv_mono_ms() + 30000;
        while ((rc = it_udpping(t, it_vm_addr(v), 5, 1000, NULL)) != 0 &&
               cgv_mono_ms() < deadline)
            wait_ms(200);
        it_check(t, rc == 0, flo, "cgv-udpping to %s: exit %d", it_vm_addr(v), rc);
        json_decref(v);
    }
    deadline = cgv_mono_ms() + KPI_MS;
    for (;;) {
        m1 = scrape(t);
        if (mval(m1, "cgv_vm_cpu_seconds_total", flo) > cpu0 &&
            mval(m1, "cgv_vm_heartbeats_total", flo) > hb0 &&
            mval(m1, "cgv_vm_network_receive_bytes_total", flo) > rx0 &&
            mval(m1, "cgv_vm_network_transmit_bytes_total", flo) > tx0 &&
            mval(m1, "cgv_vm_app_served_total", flo) > app0)
            break;
        if (cgv_mono_ms() >= deadline)
            it_fail(t, flo,
                    "counters of %s did not grow within %d ms: cpu %g -> %g, heartbeats %g -> "
                    "%g, rx %g -> %g, tx %g -> %g, served %g -> %g",
                    flo, KPI_MS, cpu0, mval(m1, "cgv_vm_cpu_seconds_total", flo), hb0,
                    mval(m1, "cgv_vm_heartbeats_total", flo), rx0,
                    mval(m1, "cgv_vm_network_receive_bytes_total", flo), tx0,
                    mval(m1, "cgv_vm_network_transmit_bytes_total", flo), app0,
                    mval(m1, "cgv_vm_app_served_total", flo));
        json_decref(m1);
        wait_ms(250);
    }
    it_log(t, "%s: cpu %.3f -> %.3f s, heartbeats %g -> %g, rx %g -> %g B, tx %g -> %g B, "
              "served %g -> %g", flo,
           cpu0, mval(m1, "cgv_vm_cpu_seconds_total", flo), hb0,
           mval(m1, "cgv_vm_heartbeats_total", flo), rx0,
           mval(m1, "cgv_vm_network_receive_bytes_total", flo), tx0,
           mval(m1, "cgv_vm_network_transmit_bytes_total", flo), app0,
           mval(m1, "cgv_vm_app_served_total", flo));
    json_decref(m0);
    json_decref(m1);

    /* cgv top, one screen: a host line, a header and a row per VM */
    rc = it_cgv(t, &out, NULL, "top", "--help", NULL);
    it_check(t, rc == 0 && strstr(out, "--once"), NULL, "cgv top --help: exit %d", rc);
    free(out);
    rc = it_cgv(t, &out, NULL, "top", "--once", NULL);
    it_check(t, rc == 0, NULL, "cgv top --once: exit %d", rc);
    it_check(t, strncmp(out, "host ", 5) == 0 && strstr(out, "\nVM "), NULL,
             "cgv top --once: no host line or header:\n%s", out);
    json_array_foreach(json_object_get(vms, "vms"), i, vm)
    {
        char row[128];
        snprintf(row, sizeof(row), "\n%s ", it_jstr(vm, "name"));
        it_check(t, strstr(out, row) != NULL, NULL, "cgv top --once has no row for %s:\n%s",
                 it_jstr(vm, "name"), out);
    }
    {
        size_t rows = 0;
        for (const char *p = strstr(out, "\nVM "); p && (p = strchr(p + 1, '\n')) && p[1];)
            rows++;
        it_check(t, rows == json_array_size(json_object_get(vms, "vms")), NULL,
                 "cgv top --once: %zu rows for %zu VMs", rows,
                 json_array_size(json_object_get(vms, "vms")));
    }
    free(out);
    rc = it_cgv(t, &out, NULL, "top", "--json", NULL);
    {
        json_t *j = json_loads(out, 0, NULL);
        it_check(t, rc == 0 && j && json_array_size(json_object_get(j, "vms")) ==
                                        json_array_size(json_object_get(vms, "vms")) &&
                        it_jint(j, "host.cpus") == (int64_t)ncpus,
                 NULL, "cgv top --json: exit %d", rc);
        json_decref(j);
    }
    free(out);
    json_decref(vms);
    it_end(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedicated),
        cmocka_unit_test(test_no_overcommit),
        cmocka_unit_test(test_pinned_floating),
        cmocka_unit_test(test_set_live),
        cmocka_unit_test(test_metrics),
    };
    const char *filter = getenv("CGV_IT_FILTER");
    int rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    rc = cmocka_run_group_tests_name("integration-cpu", tests, it_group_setup,
                                     it_group_teardown);
    return rc ? rc : it_final_status();
}
