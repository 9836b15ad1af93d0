/* pinning.c — what a dedicated core buys a VM beside a noisy neighbour
 * (docs/BENCH.md, "bench/pinning").
 *
 * Starts its own cgvd (temporary directory, domain prefix "cgvpin-", bridge
 * cgvpin0 10.79.5.1/24) and two services:
 *
 *  - "noisy": --noisy-vms floating VMs (default 1) of --noisy-vcpus vCPUs
 *    (default 2) whose every vCPU burns CPU: one `while :; do :; done` per
 *    vCPU, typed on its serial console;
 *  - "work": one VM (1 vCPU) running the sample UDP function cgv-nf
 *    (supervised by the agent), measured in two placements:
 *      pinned    cpu.policy dedicated: its vCPU alone on the one CPU that
 *                can be dedicated (CPU 1 on a 2-CPU host), the neighbour's
 *                vCPUs re-pinned live by cgvd to what is left;
 *      floating  cpu.policy floating, like the neighbour: every vCPU may run
 *                on every CPU the shared pool (and, on a small host, the
 *                housekeeping CPUs) has.
 *
 * The steady work is request/response: a UDP client in this process sends a
 * request to cgv-nf every --interval-us (default 2000 µs) for --duration
 * seconds (default 30) and takes every reply's round trip; a request without
 * a reply within --timeout-ms (default 1000) is lost. The client does not
 * burst to catch up when it falls behind (a late send moves the schedule),
 * and runs SCHED_FIFO (priority 1) while it measures, so that the
 * neighbour delays the VM, not the client. Alongside: how long the work
 * VM's vCPU thread waited, runnable, for a CPU (its schedstat run delay,
 * per second), and how many CPUs the neighbours burned. Then (--busy SEC)
 * the work VM burns CPU too, and the share of a CPU its vCPU thread gets is
 * its throughput.
 *
 * Each round measures both placements (the work VM is created anew for
 * each; the order alternates between rounds); the samples of all rounds are
 * pooled. Percentiles are nearest-rank. Output: key=value lines on stdout,
 * progress on stderr. Everything created is removed on every exit. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_config.h"
#include "cgv_common.h"
#include "client.h"
#include "udpping_stats.h"

#define PREFIX "cgvpin-"
#define BRIDGE "cgvpin0"
#define GATEWAY "10.79.5.1/24"
#define POOL "10.79.5.100-10.79.5.199"
#define LOCK_PATH "/run/lock/cgvbench-pinning.lock"
#define SVC_WORK "work"
#define SVC_NOISY "noisy"
#define VM_WORK "work-0"
#define MAX_NOISY 8
#define MEMORY_MIB 256
#define MAX_VCPUS 16
#define CONSOLE_TIMEOUT_MS 15000
#define PLACE_TIMEOUT_MS 20000 /* the neighbour re-pinned after the work VM came */

/* pinned_emu (--emulator-too): dedicated, and the work VM's emulator
 * threads moved to its dedicated CPU as well (virsh emulatorpin, behind
 * cgvd's back: an experiment, not something cgvd does) */
enum mode { M_PINNED, M_FLOATING, M_PINNED_EMU, M_N };
static const char *const mode_names[M_N] = {"pinned", "floating", "pinned_emu"};
static const char *const mode_policy[M_N] = {"dedicated", "floating", "dedicated"};

struct phase {
    struct bc_series rtt_ms;
    uint64_t sent, answered, late_replies, late_sends;
    double send_seconds;
    double vcpu_wait_s, noisy_cpu_s, work_cpu_s, seconds; /* summed over rounds */
    struct bc_series busy_share; /* CPU share of the work vCPU when it is busy too */
    char work_cpus[64], noisy_cpus[64];
    unsigned runs;
};

struct pin {
    struct bc b;
    unsigned duration_s, warmup_s, interval_us, timeout_ms, noisy_vcpus, noisy_vms, rounds,
        busy_s;
    pid_t noisy_pid[MAX_NOISY];
    bool fifo, emu_too;
    const char *image;
    long boot_timeout_ms;
    struct phase ph[M_N];
    char hk[64], pool[64];
    unsigned host_cpus;
    double noisy_alone_cpus; /* what the neighbour burned before the first phase */
};

/* ---- specs ------------------------------------------------------------------------- */

static char *spec_noisy(const struct pin *p)
{
    return cgv_asprintf("name: %s\n"
                        "instances: %u\n"
                        "vcpus: %u\n"
                        "memory: %uMiB\n"
                        "image: %s\n"
                        "cpu: {policy: floating}\n"
                        "recovery: {restart: cold}\n",
                        SVC_NOISY, p->noisy_vms, p->noisy_vcpus, MEMORY_MIB, p->image);
}

static char *spec_work(const struct pin *p, enum mode m)
{
    return cgv_asprintf("name: %s\n"
                        "vcpus: 1\n"
                        "memory: %uMiB\n"
                        "image: %s\n"
                        "cpu: {policy: %s}\n"
                        "recovery: {restart: cold}\n"
                        "processes:\n"
                        "  - name: nf\n"
                        "    command: /usr/sbin/cgv-nf\n",
                        SVC_WORK, MEMORY_MIB, p->image, mode_policy[m]);
}

/* ---- VMs ---------------------------------------------------------------------------- */

/* Apply spec and wait until the agents of its n VMs (svc-0 ...) say hello. */
static int create(struct pin *p, const char *svc, unsigned n, const char *spec,
                  struct cgv_error *err)
{
    int64_t after = 0, t0 = cgv_mono_us();
    struct bc_want w[MAX_NOISY];
    char names[MAX_NOISY][64];

    for (unsigned i = 0; i < n && i < MAX_NOISY; i++) {
        snprintf(names[i], sizeof(names[i]), "%s-%u", svc, i);
        w[i] = (struct bc_want){.type = "agent.hello", .vm = names[i]};
    }
    if (bc_last_event_id(&p->b, &after, err) < 0 || bc_apply(&p->b, svc, spec, err) < 0)
        return -1;
    if (bc_wait_events(&p->b, &after, svc, w, n, p->boot_timeout_ms, NULL, NULL, err) < 0) {
        cgv_err_prefix(err, "waiting for the agents of %s", svc);
        return -1;
    }
    bc_note("%s: %u agent%s up %.1f s after apply", svc, n, n == 1 ? "" : "s",
            (double)(cgv_mono_us() - t0) / 1e6);
    return 0;
}

static int vm_info(struct pin *p, const char *vm, pid_t *pid, char *ip, size_t ipcap,
                   char *console, size_t ccap, struct cgv_error *err)
{
    json_t *o = NULL;
    char dom[128];

    snprintf(dom, sizeof(dom), "%s%s", PREFIX, vm);
    if (client_vm_get(p->b.c, vm, &o, err) < 0)
        return -1;
    *pid = (pid_t)bc_jint(o, "pid");
    if (ip)
        cgv_strlcpy(ip, json_string_value(json_array_get(json_object_get(o, "addresses"), 0))
                            ?: "",
                    ipcap);
    if (console)
        cgv_strlcpy(console, bc_jstr(o, "console_socket"), ccap);
    json_decref(o);
    if (*pid <= 0 || !bc_qemu_is(*pid, dom))
        return cgv_err(err, CGV_E_INTERNAL, "%s has no running QEMU (pid %d)", vm, (int)*pid);
    return 0;
}

/* The CPUs of every vCPU thread of pid, "1" or "0-1" when they all agree,
 * else "0:1 1:0-1". */
static int vcpu_cpus(pid_t pid, char *buf, size_t cap)
{
    pid_t tids[MAX_VCPUS];
    char one[MAX_VCPUS][64];
    int n = bc_vcpu_tids(pid, tids, MAX_VCPUS);
    bool same = true;
    size_t off = 0;

    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (tids[i] <= 0 || bc_thread_cpus(tids[i], one[i], sizeof(one[i])) < 0)
            return -1;
        same = same && strcmp(one[i], one[0]) == 0;
    }
    if (same) {
        cgv_strlcpy(buf, one[0], cap);
        return 0;
    }
    buf[0] = '\0';
    for (int i = 0; i < n && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%d:%s", i ? " " : "", i, one[i]);
    return 0;
}

/* "0-1,3" -> bit mask (CPUs < 64). */
static uint64_t cpus_mask(const char *s)
{
    uint64_t m = 0;

    while (s && *s) {
        char *end;
        unsigned long a = strtoul(s, &end, 10), b = a;
        if (end == s)
            break;
        s = end;
        if (*s == '-') {
            b = strtoul(s + 1, &end, 10);
            s = end;
        }
        for (unsigned long c = a; c <= b && c < 64; c++)
            m |= 1ULL << c;
        if (*s != ',')
            break;
        s++;
    }
    return m;
}

/* CPU time of every neighbour's QEMU so far, in seconds; -1 if one is gone. */
static double noisy_cpu_seconds(const struct pin *p)
{
    double sum = 0;

    for (unsigned i = 0; i < p->noisy_vms; i++) {
        double s = bc_proc_cpu_seconds(p->noisy_pid[i]);
        if (s < 0)
            return -1;
        sum += s;
    }
    return sum;
}

/* The neighbours burn CPU: their QEMUs' CPU time over 1 s. */
static int noisy_burn(struct pin *p, double *cpus, struct cgv_error *err)
{
    double a = noisy_cpu_seconds(p), b;
    int64_t t0 = cgv_mono_us();

    poll(NULL, 0, 1000);
    b = noisy_cpu_seconds(p);
    if (a < 0 || b < 0)
        return cgv_err(err, CGV_E_INTERNAL, "cannot read the CPU time of the neighbours");
    *cpus = (b - a) / ((double)(cgv_mono_us() - t0) / 1e6);
    return 0;
}

/* ---- the UDP load --------------------------------------------------------------------- */

struct load {
    uint64_t sent, answered, late_replies, late_sends, stray;
    double send_seconds;
};

/* Requests to ip:BC_NF_PORT every interval_us for seconds, then up to
 * timeout_ms more for the last replies. RTTs (ms) of the replies that came
 * within timeout_ms go to rtt (may be NULL). */
static int udp_load(const struct pin *p, const char *ip, double seconds, struct bc_series *rtt,
                    struct load *r, struct cgv_error *err)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(BC_NF_PORT)};
    size_t cap = (size_t)(seconds * 1e6 / p->interval_us) + 16, seq = 0;
    int64_t *sent_at = NULL, t0, next, end, stop_at = 0, timeout_us = (int64_t)p->timeout_ms * 1000;
    bool *got = NULL;
    uint64_t token = 0;
    int rc = -1;
    CGV_AUTOCLOSE int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    if (inet_pton(AF_INET, ip, &to.sin_addr) != 1)
        return cgv_err(err, CGV_E_INVALID, "bad address '%s'", ip);
    if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0)
        return cgv_err(err, CGV_E_IO, "connect %s: %s", ip, strerror(errno));
    {
        int sz = 1 << 20;
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    if (getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token))
        token = (uint64_t)cgv_mono_us();
    sent_at = cgv_malloc0(cap * sizeof(*sent_at));
    got = cgv_malloc0(cap * sizeof(*got));
    t0 = cgv_mono_us();
    next = t0;
    end = t0 + (int64_t)(seconds * 1e6);
    for (;;) {
        int64_t now = cgv_mono_us(), wake;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        struct timespec ts;
        bool sending = stop_at == 0;

        if (bc_stop) {
            cgv_err(err, CGV_E_INTERNAL, "interrupted");
            goto out;
        }
        if (sending && (now >= end || seq >= cap)) {
            stop_at = now;
            r->send_seconds = (double)(now - t0) / 1e6;
            sending = false;
        }
        if (!sending && now >= stop_at + timeout_us)
            break;
        if (sending && now >= next) {
            char req[64];
            int n = udpping_format_request(req, sizeof(req), token, seq);
            if (now - next > (int64_t)p->interval_us / 2)
                r->late_sends++;
            sent_at[seq] = cgv_mono_us();
            if (n > 0 && send(fd, req, (size_t)n, 0) == n) {
                seq++;
                r->sent++;
            }
            next += p->interval_us;
            if (next <= now)
                next = now + p->interval_us; /* behind: no burst to catch up */
            continue;
        }
        wake = sending ? next : stop_at + timeout_us;
        ts.tv_sec = (time_t)((wake - now) / 1000000);
        ts.tv_nsec = (long)((wake - now) % 1000000) * 1000;
        if (ppoll(&pf, 1, &ts, NULL) <= 0)
            continue;
        for (;;) {
            char buf[512];
            struct udpping_reply rep;
            ssize_t k = recv(fd, buf, sizeof(buf), 0);
            int64_t at = cgv_mono_us();
            if (k < 0)
                break; /* EAGAIN, or an ICMP error (ECONNREFUSED: nf restarting) */
            if (udpping_parse_reply(buf, (size_t)k, &rep) < 0 || rep.token != token ||
                rep.seq >= seq || got[rep.seq]) {
                r->stray++;
                continue;
            }
            got[rep.seq] = true;
            if (at - sent_at[rep.seq] > timeout_us) {
                r->late_replies++;
                continue;
            }
            r->answered++;
            if (rtt)
                bc_series_add(rtt, (double)(at - sent_at[rep.seq]) / 1000.0);
        }
    }
    rc = 0;
out:
    free(sent_at);
    free(got);
    return rc;
}

static void set_fifo(bool on)
{
    struct sched_param sp = {.sched_priority = on ? 1 : 0};

    if (sched_setscheduler(0, on ? SCHED_FIFO : SCHED_OTHER, &sp) < 0 && on)
        bc_note("cannot run the client SCHED_FIFO: %s", strerror(errno));
}

/* ---- one phase ------------------------------------------------------------------------- */

static int run_phase(struct pin *p, enum mode m, struct cgv_error *err)
{
    struct phase *ph = &p->ph[m];
    char *spec = spec_work(p, m), ip[64], work_cpus[64] = "", noisy_cpus[64] = "", vm_name[64];
    char console[256];
    pid_t pid = 0, tid;
    pid_t tids[MAX_VCPUS];
    struct load warm, meas;
    long long wait0, wait1;
    double ncpu0, ncpu1, wcpu0, wcpu1;
    int64_t t0, deadline;
    json_t *o = NULL;
    int rc = -1;

    bc_note("%s: creating the work VM (cpu.policy %s)", mode_names[m], mode_policy[m]);
    if (create(p, SVC_WORK, 1, spec, err) < 0)
        goto out;
    if (vm_info(p, VM_WORK, &pid, ip, sizeof(ip), console, sizeof(console), err) < 0)
        goto out;
    if (bc_udp_probe(ip, 60000, vm_name, sizeof(vm_name), err) < 0) {
        cgv_err_prefix(err, "cgv-nf of %s", VM_WORK);
        goto out;
    }
    /* where cgvd put it, and the neighbour (re-pinned live when the work VM
     * took a dedicated core) */
    if (client_vm_get(p->b.c, VM_WORK, &o, err) < 0)
        goto out;
    if (m != M_FLOATING) {
        const char *pin = json_string_value(json_array_get(bc_jget(o, "cpu.vcpu_pins"), 0));
        if (strcmp(bc_jstr(o, "cpu.policy"), "dedicated") != 0 || !pin ||
            __builtin_popcountll(cpus_mask(pin)) != 1 || (cpus_mask(pin) & cpus_mask(p->hk))) {
            cgv_err(err, CGV_E_INTERNAL, "%s is not on a dedicated CPU (policy %s, pins %s)",
                    VM_WORK, bc_jstr(o, "cpu.policy"), pin ? pin : "-");
            goto out;
        }
    }
    deadline = cgv_mono_us() + (int64_t)PLACE_TIMEOUT_MS * 1000;
    for (;;) {
        bool shared = false;
        if (vcpu_cpus(pid, work_cpus, sizeof(work_cpus)) < 0) {
            cgv_err(err, CGV_E_INTERNAL, "cannot read the vCPU threads' CPUs");
            goto out;
        }
        for (unsigned i = 0; i < p->noisy_vms; i++) {
            if (vcpu_cpus(p->noisy_pid[i], noisy_cpus, sizeof(noisy_cpus)) < 0) {
                cgv_err(err, CGV_E_INTERNAL, "cannot read the vCPU threads' CPUs");
                goto out;
            }
            shared = shared || (cpus_mask(work_cpus) & cpus_mask(noisy_cpus));
        }
        if (m == M_FLOATING || !shared)
            break;
        if (cgv_mono_us() >= deadline || bc_stop) {
            cgv_err(err, CGV_E_INTERNAL,
                    "the neighbour's vCPUs still share CPUs %s with the dedicated one %s",
                    noisy_cpus, work_cpus);
            goto out;
        }
        poll(NULL, 0, 100);
    }
    if (m != M_FLOATING && strcmp(work_cpus, json_string_value(json_array_get(
                                                 bc_jget(o, "cpu.vcpu_pins"), 0))) != 0) {
        cgv_err(err, CGV_E_INTERNAL, "the vCPU thread runs on %s, cgvd says %s", work_cpus,
                json_string_value(json_array_get(bc_jget(o, "cpu.vcpu_pins"), 0)));
        goto out;
    }
    if (m == M_PINNED_EMU) {
        char dom[128];
        const char *argv[] = {p->b.o.virsh, "-c", p->b.o.uri, "emulatorpin", dom,
                              "--cpulist", work_cpus, "--live", NULL};
        snprintf(dom, sizeof(dom), "%s%s", PREFIX, VM_WORK);
        if (bc_run(&p->b, argv, err) < 0)
            goto out;
    }
    bc_note("%s: work vCPU on CPUs %s, neighbour's vCPUs on %s, work VM %s at %s",
            mode_names[m], work_cpus, noisy_cpus, vm_name, ip);
    if (ph->runs == 0) {
        cgv_strlcpy(ph->work_cpus, work_cpus, sizeof(ph->work_cpus));
        cgv_strlcpy(ph->noisy_cpus, noisy_cpus, sizeof(ph->noisy_cpus));
    }

    /* warm-up (not recorded), then the measurement */
    set_fifo(p->fifo);
    if (p->warmup_s && udp_load(p, ip, p->warmup_s, NULL, &warm, err) < 0)
        goto fifo_off;
    if (bc_vcpu_tids(pid, tids, MAX_VCPUS) < 1 || (tid = tids[0]) <= 0) {
        cgv_err(err, CGV_E_INTERNAL, "QEMU %d has no vCPU thread", (int)pid);
        goto fifo_off;
    }
    wait0 = bc_thread_run_delay_ns(pid, tid);
    ncpu0 = noisy_cpu_seconds(p);
    wcpu0 = bc_proc_cpu_seconds(pid);
    t0 = cgv_mono_us();
    if (udp_load(p, ip, p->duration_s, &ph->rtt_ms, &meas, err) < 0)
        goto fifo_off;
    {
        double secs = (double)(cgv_mono_us() - t0) / 1e6;
        wait1 = bc_thread_run_delay_ns(pid, tid);
        ncpu1 = noisy_cpu_seconds(p);
        wcpu1 = bc_proc_cpu_seconds(pid);
        ph->seconds += secs;
        if (wait0 >= 0 && wait1 >= wait0)
            ph->vcpu_wait_s += (double)(wait1 - wait0) / 1e9;
        if (ncpu0 >= 0 && ncpu1 >= ncpu0)
            ph->noisy_cpu_s += ncpu1 - ncpu0;
        if (wcpu0 >= 0 && wcpu1 >= wcpu0)
            ph->work_cpu_s += wcpu1 - wcpu0;
    }
    ph->sent += meas.sent;
    ph->answered += meas.answered;
    ph->late_replies += meas.late_replies;
    ph->late_sends += meas.late_sends;
    ph->send_seconds += meas.send_seconds;
    ph->runs++;
    bc_note("%s: %" PRIu64 " requests, %" PRIu64 " answered, %" PRIu64 " late sends; "
            "rtt p50 %.3f ms p99 %.3f ms max %.3f ms (all %s rounds so far)",
            mode_names[m], meas.sent, meas.answered, meas.late_sends,
            bc_series_pct(&ph->rtt_ms, 0.50), bc_series_pct(&ph->rtt_ms, 0.99),
            bc_series_max(&ph->rtt_ms), mode_names[m]);
    set_fifo(false);

    /* throughput: the work VM's vCPU busy too, how much of a CPU it gets */
    if (p->busy_s > 0) {
        int64_t wall, mono, t1;
        long long r0, r1;
        if (bc_console_inject(console, NULL, "(while :; do :; done) &", CONSOLE_TIMEOUT_MS,
                              &wall, &mono, err) < 0)
            goto out;
        poll(NULL, 0, 300);
        r0 = bc_thread_run_ns(pid, tid);
        t1 = cgv_mono_us();
        poll(NULL, 0, (int)p->busy_s * 1000);
        r1 = bc_thread_run_ns(pid, tid);
        if (r0 >= 0 && r1 >= r0) {
            double share = (double)(r1 - r0) / 1e3 / (double)(cgv_mono_us() - t1);
            bc_series_add(&ph->busy_share, share);
            bc_note("%s: the work vCPU, busy, got %.2f of a CPU", mode_names[m], share);
        }
    }
    rc = 0;
    goto out;
fifo_off:
    set_fifo(false);
out:
    json_decref(o);
    free(spec);
    if (rc == 0 && bc_delete(&p->b, SVC_WORK, err) < 0)
        rc = -1;
    return rc;
}

/* ---- figures ---------------------------------------------------------------------------- */

static void print_figures(const struct pin *p)
{
    printf("pinning_host_cpus=%u\n", p->host_cpus);
    printf("pinning_housekeeping_cpus=%s\n", p->hk);
    printf("pinning_acceleration=%s\n", p->b.accel);
    printf("pinning_interval_ms=%.3f\n", p->interval_us / 1000.0);
    printf("pinning_duration_s=%u\n", p->duration_s);
    printf("pinning_rounds=%u\n", p->rounds);
    printf("pinning_noisy_vms=%u\n", p->noisy_vms);
    printf("pinning_noisy_vcpus=%u\n", p->noisy_vcpus);
    printf("pinning_noisy_alone_cpus=%.2f\n", p->noisy_alone_cpus);
    for (int m = 0; m < M_N; m++) {
        const struct phase *ph = &p->ph[m];
        const char *k = mode_names[m];
        if (ph->runs == 0)
            continue;
        printf("%s_work_vcpu_cpus=%s\n", k, ph->work_cpus);
        printf("%s_noisy_vcpu_cpus=%s\n", k, ph->noisy_cpus);
        printf("%s_requests=%" PRIu64 "\n", k, ph->sent);
        printf("%s_answered=%" PRIu64 "\n", k, ph->answered);
        printf("%s_loss_pct=%.3f\n", k,
               ph->sent ? 100.0 * (double)(ph->sent - ph->answered) / (double)ph->sent : 0.0);
        printf("%s_late_replies=%" PRIu64 "\n", k, ph->late_replies);
        printf("%s_client_late_sends=%" PRIu64 "\n", k, ph->late_sends);
        printf("%s_rtt_p50_ms=%.3f\n", k, bc_series_pct(&ph->rtt_ms, 0.50));
        printf("%s_rtt_p90_ms=%.3f\n", k, bc_series_pct(&ph->rtt_ms, 0.90));
        printf("%s_rtt_p99_ms=%.3f\n", k, bc_series_pct(&ph->rtt_ms, 0.99));
        printf("%s_rtt_p999_ms=%.3f\n", k, bc_series_pct(&ph->rtt_ms, 0.999));
        printf("%s_rtt_max_ms=%.3f\n", k, bc_series_max(&ph->rtt_ms));
        printf("%s_answered_per_s=%.1f\n", k,
               ph->send_seconds > 0 ? (double)ph->answered / ph->send_seconds : 0.0);
        printf("%s_vcpu_wait_ms_per_s=%.2f\n", k,
               ph->seconds > 0 ? 1000.0 * ph->vcpu_wait_s / ph->seconds : 0.0);
        printf("%s_work_qemu_cpus=%.3f\n", k, ph->seconds > 0 ? ph->work_cpu_s / ph->seconds : 0);
        printf("%s_noisy_cpus=%.3f\n", k, ph->seconds > 0 ? ph->noisy_cpu_s / ph->seconds : 0);
        if (ph->busy_share.n)
            printf("%s_busy_vcpu_cpu_share=%.3f\n", k, bc_series_pct(&ph->busy_share, 0.5));
    }
    if (p->ph[M_PINNED].runs && p->ph[M_FLOATING].runs) {
        double pp50 = bc_series_pct(&p->ph[M_PINNED].rtt_ms, 0.50),
               fp50 = bc_series_pct(&p->ph[M_FLOATING].rtt_ms, 0.50),
               pp99 = bc_series_pct(&p->ph[M_PINNED].rtt_ms, 0.99),
               fp99 = bc_series_pct(&p->ph[M_FLOATING].rtt_ms, 0.99),
               pmax = bc_series_max(&p->ph[M_PINNED].rtt_ms),
               fmax = bc_series_max(&p->ph[M_FLOATING].rtt_ms);
        printf("p50_ratio_floating_over_pinned=%.2f\n", pp50 > 0 ? fp50 / pp50 : 0.0);
        printf("p99_ratio_floating_over_pinned=%.2f\n", pp99 > 0 ? fp99 / pp99 : 0.0);
        printf("max_ratio_floating_over_pinned=%.2f\n", pmax > 0 ? fmax / pmax : 0.0);
        if (p->ph[M_PINNED_EMU].runs) {
            double e50 = bc_series_pct(&p->ph[M_PINNED_EMU].rtt_ms, 0.50),
                   e99 = bc_series_pct(&p->ph[M_PINNED_EMU].rtt_ms, 0.99);
            printf("p50_ratio_floating_over_pinned_emu=%.2f\n", e50 > 0 ? fp50 / e50 : 0.0);
            printf("p99_ratio_floating_over_pinned_emu=%.2f\n", e99 > 0 ? fp99 / e99 : 0.0);
        }
        if (p->ph[M_PINNED].busy_share.n && p->ph[M_FLOATING].busy_share.n)
            printf("busy_share_ratio_floating_over_pinned=%.2f\n",
                   bc_series_pct(&p->ph[M_FLOATING].busy_share, 0.5) /
                       bc_series_pct(&p->ph[M_PINNED].busy_share, 0.5));
    }
    fflush(stdout);
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pinning [options]   (as root; see docs/BENCH.md)\n"
            "  --duration SEC      measured seconds per placement and round (default 30)\n"
            "  --warmup SEC        unrecorded load before each measurement (default 2)\n"
            "  --interval-us N     time between requests (default 2000)\n"
            "  --timeout-ms N      a reply later than this is a loss (default 1000)\n"
            "  --rounds N          pinned + floating measurements (default 1)\n"
            "  --noisy-vms N       neighbour VMs (default 1, at most 8)\n"
            "  --noisy-vcpus N     vCPUs of each neighbour, each burning (default 2)\n"
            "  --busy SEC          after the UDP load, the work VM burns too: its vCPU's\n"
            "                      CPU share over SEC seconds (default 5; 0 skips)\n"
            "  --emulator-too      also measure pinned_emu: dedicated, and the work VM's\n"
            "                      emulator threads moved to its CPU too (virsh emulatorpin)\n"
            "  --no-fifo           do not run the client SCHED_FIFO while it measures\n"
            "  --image NAME        guest image (default default)\n"
            "  --image-dir DIR     (default /var/lib/cgv/images)\n"
            "  --cgvd PATH         (default %s)\n"
            "  --virsh PATH        (default virsh)\n"
            "  --libvirt-uri URI   (default qemu:///system)\n"
            "  --tmp-dir DIR       where the working directory goes (default $TMPDIR or /tmp)\n"
            "  --boot-timeout SEC  deadline for a VM's agent hello (default 300)\n"
            "  --op-timeout SEC    deadline for any other step (default 180)\n"
            "  --keep-tmp          keep the working directory (cgvd log, console logs)\n"
            "  --cgvd-log-level L  cgvd's --log-level (default info)\n"
            "  -h, --help\n",
            BENCH_CGVD_PATH);
}

static int parse_opts(int argc, char **argv, struct pin *p)
{
    enum { O_DUR = 256, O_WARM, O_INT, O_TO, O_ROUNDS, O_NOISY, O_NOISYVMS, O_BUSY, O_EMU, O_NOFIFO,
           O_IMAGE, O_BOOTTO, O_OPTO };
    static const struct option longopts[] = {
        {"duration", required_argument, NULL, O_DUR},
        {"warmup", required_argument, NULL, O_WARM},
        {"interval-us", required_argument, NULL, O_INT},
        {"timeout-ms", required_argument, NULL, O_TO},
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"noisy-vcpus", required_argument, NULL, O_NOISY},
        {"noisy-vms", required_argument, NULL, O_NOISYVMS},
        {"busy", required_argument, NULL, O_BUSY},
        {"emulator-too", no_argument, NULL, O_EMU},
        {"no-fifo", no_argument, NULL, O_NOFIFO},
        {"image", required_argument, NULL, O_IMAGE},
        {"boot-timeout", required_argument, NULL, O_BOOTTO},
        {"op-timeout", required_argument, NULL, O_OPTO},
        BC_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned v;
    int c;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const char *bad = NULL;
        switch (c) {
        case O_DUR:
            if (bc_parse_uint(optarg, 3600, &v) < 0 || v == 0)
                bad = "--duration wants 1..3600";
            p->duration_s = v;
            break;
        case O_WARM:
            if (bc_parse_uint(optarg, 600, &v) < 0)
                bad = "--warmup wants 0..600";
            p->warmup_s = v;
            break;
        case O_INT:
            if (bc_parse_uint(optarg, 1000000, &v) < 0 || v < 100)
                bad = "--interval-us wants 100..1000000";
            p->interval_us = v;
            break;
        case O_TO:
            if (bc_parse_uint(optarg, 60000, &v) < 0 || v < 10)
                bad = "--timeout-ms wants 10..60000";
            p->timeout_ms = v;
            break;
        case O_ROUNDS:
            if (bc_parse_uint(optarg, 100, &v) < 0 || v == 0)
                bad = "--rounds wants 1..100";
            p->rounds = v;
            break;
        case O_NOISY:
            if (bc_parse_uint(optarg, MAX_VCPUS, &v) < 0 || v == 0)
                bad = "--noisy-vcpus wants 1..16";
            p->noisy_vcpus = v;
            break;
        case O_NOISYVMS:
            if (bc_parse_uint(optarg, MAX_NOISY, &v) < 0 || v == 0)
                bad = "--noisy-vms wants 1..8";
            p->noisy_vms = v;
            break;
        case O_BUSY:
            if (bc_parse_uint(optarg, 600, &v) < 0)
                bad = "--busy wants 0..600";
            p->busy_s = v;
            break;
        case O_EMU: p->emu_too = true; break;
        case O_NOFIFO: p->fifo = false; break;
        case O_IMAGE: p->image = optarg; break;
        case O_BOOTTO:
        case O_OPTO:
            if (bc_parse_uint(optarg, 86400, &v) < 0 || v == 0) {
                bad = "--boot-timeout/--op-timeout want seconds > 0";
                break;
            }
            if (c == O_BOOTTO)
                p->boot_timeout_ms = (long)v * 1000;
            else
                p->b.o.op_timeout_ms = (long)v * 1000;
            break;
        case 'h': usage(stdout); exit(0);
        default:
            if (bc_take_option(&p->b.o, c, optarg))
                break;
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "pinning: %s (got '%s')\n", bad, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pinning: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!cgv_name_valid(p->image)) {
        fprintf(stderr, "pinning: bad image name '%s'\n", p->image);
        return -1;
    }
    return 0;
}

/* cgvd made the bridge, after the benchmark's own prefix: ours alone. */
static void remove_bridge(void)
{
    extern char **environ;
    const char *argv[] = {"ip", "link", "delete", BRIDGE, "type", "bridge", NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, rc;

    if (if_nametoindex(BRIDGE) == 0)
        return;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        bc_note("cannot run ip: %s", strerror(rc));
        return;
    }
    if (bc_wait_child(pid, 30000, &status, NULL) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        bc_note("could not remove the bridge %s", BRIDGE);
    else
        bc_note("removed the bridge %s", BRIDGE);
}

/* ---- main ----------------------------------------------------------------------------------- */

static int run(struct pin *p, struct cgv_error *err)
{
    json_t *health = NULL;
    char *spec = spec_noisy(p), console[256], action[512], ncpus[64];
    size_t off = 0;
    int64_t wall, mono;
    int rc = -1;

    if (client_health(p->b.c, &health, err) < 0)
        goto out;
    p->host_cpus = (unsigned)bc_jint(health, "placement.cpus");
    cgv_strlcpy(p->hk, bc_jstr(health, "placement.housekeeping"), sizeof(p->hk));
    cgv_strlcpy(p->pool, bc_jstr(health, "placement.shared_pool"), sizeof(p->pool));
    if (!json_is_object(bc_jget(health, "placement")) || !p->hk[0]) {
        cgv_err(err, CGV_E_INTERNAL, "cgvd has no CPU placement (see its log)");
        goto out;
    }
    bc_note("host: %u CPUs, housekeeping %s, shared pool %s", p->host_cpus, p->hk, p->pool);
    if ((cpus_mask(p->pool) & ~cpus_mask(p->hk)) == 0) {
        cgv_err(err, CGV_E_CONFLICT, "no CPU can be dedicated here (shared pool '%s')", p->pool);
        goto out;
    }

    /* the neighbours, burning one loop per vCPU */
    if (create(p, SVC_NOISY, p->noisy_vms, spec, err) < 0)
        goto out;
    action[0] = '\0';
    for (unsigned i = 0; i < p->noisy_vcpus && off < sizeof(action); i++)
        off += (size_t)snprintf(action + off, sizeof(action) - off,
                                "(while :; do :; done) & ");
    for (unsigned i = 0; i < p->noisy_vms; i++) {
        char vm[64];
        snprintf(vm, sizeof(vm), "%s-%u", SVC_NOISY, i);
        if (vm_info(p, vm, &p->noisy_pid[i], NULL, 0, console, sizeof(console), err) < 0 ||
            bc_console_inject(console, NULL, action, CONSOLE_TIMEOUT_MS, &wall, &mono, err) < 0)
            goto out;
    }
    poll(NULL, 0, 500);
    if (noisy_burn(p, &p->noisy_alone_cpus, err) < 0)
        goto out;
    if (vcpu_cpus(p->noisy_pid[0], ncpus, sizeof(ncpus)) < 0)
        cgv_strlcpy(ncpus, "?", sizeof(ncpus));
    bc_note("%u neighbour%s: %u busy loops each, burning %.2f CPUs, vCPUs on %s", p->noisy_vms,
            p->noisy_vms == 1 ? "" : "s", p->noisy_vcpus, p->noisy_alone_cpus, ncpus);
    if (p->noisy_alone_cpus < 0.5) {
        cgv_err(err, CGV_E_INTERNAL, "the neighbour burns only %.2f CPUs",
                p->noisy_alone_cpus);
        goto out;
    }

    for (unsigned r = 0; r < p->rounds; r++) {
        enum mode first = r % 2 == 0 ? M_PINNED : M_FLOATING;
        bc_note("round %u of %u", r + 1, p->rounds);
        if (run_phase(p, first, err) < 0 ||
            run_phase(p, first == M_PINNED ? M_FLOATING : M_PINNED, err) < 0 ||
            (p->emu_too && run_phase(p, M_PINNED_EMU, err) < 0))
            goto out;
    }
    rc = 0;
out:
    json_decref(health);
    free(spec);
    return rc;
}

int main(int argc, char **argv)
{
    static struct pin p;
    struct cgv_error err = {0};
    const char *tmpdir = getenv("TMPDIR");
    int rc = 1;

    p.duration_s = 30;
    p.warmup_s = 2;
    p.interval_us = 2000;
    p.timeout_ms = 1000;
    p.rounds = 1;
    p.noisy_vcpus = 2;
    p.noisy_vms = 1;
    p.busy_s = 5;
    p.fifo = true;
    p.image = "default";
    p.boot_timeout_ms = 300000;
    p.b.o = (struct bc_opts){
        .tag = "pinning",
        .prefix = PREFIX,
        .bridge = BRIDGE,
        .gateway = GATEWAY,
        .pool = POOL,
        .lock_path = LOCK_PATH,
        .cgvd = BENCH_CGVD_PATH,
        .cgv = BENCH_CGV_PATH,
        .udpping = BENCH_UDPPING_PATH,
        .virsh = "virsh",
        .uri = "qemu:///system",
        .image_dir = "/var/lib/cgv/images",
        .tmp_base = tmpdir && tmpdir[0] ? tmpdir : "/tmp",
        .log_level = "info",
        .op_timeout_ms = 180000,
    };
    p.b.lock_fd = -1;
    if (parse_opts(argc, argv, &p) < 0)
        return 2;
    if (geteuid() != 0) {
        fprintf(stderr, "pinning: must run as root (cgvd and qemu:///system need it)\n");
        return 2;
    }
    if (bc_setup(&p.b, &err) < 0) {
        if (err.code == CGV_E_CONFLICT) {
            fprintf(stderr, "pinning: %s\n", err.msg);
            bc_cleanup(&p.b);
            return 2;
        }
        goto done;
    }
    if (run(&p, &err) == 0)
        rc = 0;

done:
    if (err.msg[0])
        bc_note("failed: %s", err.msg);
    bc_cleanup(&p.b);
    if (p.b.cgvd_pid <= 0)
        remove_bridge();
    print_figures(&p);
    for (int m = 0; m < M_N; m++) {
        bc_series_free(&p.ph[m].rtt_ms);
        bc_series_free(&p.ph[m].busy_share);
    }
    if (bc_stop)
        return 130;
    return rc;
}
