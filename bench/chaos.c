/* chaos.c — the chaos benchmark (docs/BENCH.md): random faults of every kind
 * for a set time against two HA services, with the safety invariants checked
 * all along.
 *
 * Starts its own cgvd (temporary directory, domain prefix "cgvch-", bridge
 * cgvch0 10.79.4.1/24, pool 10.79.4.100-199) and two services of 1-vCPU,
 * 256 MiB VMs, heartbeat 100 ms, 3 misses, watchdog 2 s, cgv-nf supervised
 * with app_restarts max 0 (a killed cgv-nf is a fault of its VM), restart
 * fast:
 *   c2n  2n,  VIP 10.79.4.50                                 2 VMs
 *   cnm  n+m, 2 actives + 1 standby, VIPs 10.79.4.51, .52     3 VMs
 *
 * Until --duration ends, after a random pause (--min-gap-ms..--max-gap-ms),
 * a random fault kind (process_death, panic, hang, watchdog, application:
 * see bc_inject) goes into a random VM that cgvd reports healthy with an
 * acknowledged role (active or standby) and that has no fault of ours still
 * open. Faults in different VMs overlap: that is the storm. A fault is
 * recovered when its VM's recover.healthy came and its service is up again;
 * time to recover = injection -> recover.healthy. Console injections run in
 * a child process so that the checks below never pause for a slow shell.
 *
 * Checked all along, and after the window until every fault has recovered
 * (bounded by --settle-timeout):
 *  - double_active, three ways (each episode counted once):
 *    cgvd's view: every POLL_MS, both services (one GET /v1/services): more
 *    than one VM with role active for the same assignment;
 *    the wire: every ARP_ROUND_MS an ARP request for each VIP on the
 *    bridge; two different MACs answering in two rounds in a row;
 *    the clients: the VM answering a VIP switching to another one and back
 *    within FLAP_MS (a real hand-over and back takes a restart: ~0.5 s at
 *    least).
 *  - lost_instances: VMs cgvd gave up (ha.failed; the benchmark starts them
 *    again, as an operator would, so that the storm goes on) and VMs that
 *    are missing or not healthy at the end.
 * Availability over the window: one cgv-udpping per VIP (-i 5 --gaps 10
 * --json --duration), run in back-to-back segments of at most SEGMENT_S s
 * (its gap and switch logs hold 512 entries each): 1 - (sum of the gaps) /
 * (time measured); and cgvd's own downtime_ms of each service over the
 * window.
 *
 * Everything created is removed on every exit (services, domains, cgvd,
 * working directory, the bridge). Output: key=value lines on stdout;
 * progress on stderr. Percentiles are nearest-rank. Exit status: 0 ok,
 * 1 double_active or lost_instances not 0 (or a step failed), 2 usage or
 * another instance running, 130 interrupted. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_config.h"
#include "cgv_common.h"
#include "client.h"

extern char **environ;

#define PREFIX "cgvch-"
#define BRIDGE "cgvch0"
#define GATEWAY "10.79.4.1/24"
#define GATEWAY_IP "10.79.4.1"
#define POOL "10.79.4.100-10.79.4.199"
#define LOCK_PATH "/run/lock/cgvbench-chaos.lock"
#define HEARTBEAT_MS 100
#define MISSES 3
#define WATCHDOG_S 2
#define MEMORY_MIB 256
#define RESTARTS_MAX 100   /* vm_restarts and failovers, per RESTARTS_WINDOW_S */
#define RESTARTS_WINDOW_S 600
#define POLL_MS 50         /* cgvd's HA view is read this often */
#define SEGMENT_S 15.0     /* longest cgv-udpping run */
#define UDPPING_LOG_MAX 512 /* entries of its gap and switch logs */
#define GAP_THRESHOLD_MS 10
#define FLAP_MS 100.0      /* a VIP switching to another VM and back this fast */
#define ARP_ROUND_MS 100   /* an ARP request for every VIP this often */
#define ARP_LATE_MS 300    /* a round is judged this long after its requests */
#define ARP_RING 64
#define ARP_MACS 4
#define CONSOLE_TIMEOUT_MS 15000
#define PROGRESS_US 15000000
#define N_SVC 2
#define N_VIP 3
#define MAX_VMS 8
#define RING 1024          /* recent events kept for the report of an anomaly */

enum fault { F_DEATH = BC_F_DEATH, F_PANIC = BC_F_PANIC, F_HANG = BC_F_HANG,
             F_WATCHDOG = BC_F_WATCHDOG, F_APP = BC_F_APP, F_N = BC_F_N };

struct svcrec {
    const char *name, *model;
    unsigned instances, standbys;
    const char *vips[2];
    size_t n_vips;
    char *spec;
    /* the last view */
    bool have, up, redundant;
    char why[256];
    long long downtime, outages;
    double lifetime_avail;
    bool in_double[4];
    /* the window */
    long long down0, down_end, out0, out_end;
    double lifetime_avail_end;
};

struct vmrec {
    char name[64];
    int svc;
    /* the last view */
    bool seen, eligible;
    pid_t pid;
    char domain[128], console[PATH_MAX];
    char state[24], busy[32], agent[16], hastate[16], role[16], asg[8], mac[24];
    bool acked;
    /* the fault it has open (at most one): ours, or (spont) one cgvd
     * detected by itself while the VM was healthy */
    bool open, pending;     /* pending: the injection child has not answered */
    bool spont;
    unsigned no;            /* fault number (0: cgvd's own) */
    enum fault kind;
    char was[24];           /* its role when picked */
    int64_t pick_wall_us, pick_mono_us, inj_wall_us, inj_mono_us;
    bool detected, healthy, stuck;
    char detect_type[48];
    int64_t detect_ms, healthy_ms; /* cgvd's wall clock (event time_ms) */
    pid_t child;
    int child_fd;
    /* outcome */
    bool lost, failed_now;
    char lost_why[200];
};

struct vipc {
    int svc;
    unsigned asg;
    const char *ip;
    pid_t pid;
    int fd;
    char *out;
    size_t len, cap;
    double seg_s;
    int64_t t0_wall_us, t0_mono_us;
    /* accumulated */
    unsigned segments;
    bool truncated;
    double measured_s, gap_sum_ms, gap_max_ms;
    unsigned gaps, switches, flaps;
    long long sent, received, lost, duplicates;
};

/* ARP requests for the VIPs on the bridge: the guests that hold a VIP
 * answer. Two different MACs answering one round, in two rounds in a row,
 * is two VMs holding the VIP (one round alone may straddle a legitimate
 * hand-over under load: the old holder answered just before it died, the
 * new one just after it took the VIP; it is counted as an overlap). */
struct arp_round {
    int64_t sent_wall_us;
    unsigned n[N_VIP];
    unsigned char mac[N_VIP][ARP_MACS][ETH_ALEN];
};

struct arpmon {
    int fd, ifindex;
    struct in_addr src, vip[N_VIP];
    uint64_t rounds, judged;
    int64_t last_mono_us;
    struct arp_round r[ARP_RING];
    unsigned prev_n[N_VIP];
    bool in_double[N_VIP];
    unsigned double_rounds[N_VIP];
    unsigned long long replies, answered[N_VIP];
    unsigned overlaps, doubles;
};

struct inj_result {
    int rc;
    int64_t wall_us, mono_us;
    char msg[256];
};

struct ch {
    struct bc b;
    unsigned duration_s, seed, min_gap_ms, max_gap_ms, max_concurrent;
    bool quick, fault_on[F_N];
    const char *image;
    long boot_timeout_ms, recover_timeout_ms, settle_timeout_ms;
    uint64_t rng;

    struct svcrec svc[N_SVC];
    struct vmrec vm[MAX_VMS];
    size_t n_vm;
    struct vipc vip[N_VIP];
    struct arpmon arp;
    int64_t after;
    struct bc_event ring[RING];
    uint64_t ring_n;
    bool in_window;

    /* figures */
    bool ran;
    double window_s;
    unsigned attempts, injected, by_kind[F_N], inj_failed;
    unsigned recoveries, unrecovered, stuck, max_open;
    struct bc_series recover, recover_k[F_N], detect;
    unsigned misclassified, unexpected, unexpected_recovered, redetections, alarms;
    unsigned failed_events;
    unsigned outage_events, operator_starts;
    unsigned double_cgvd, double_client;
    unsigned gap_hist_n[4];     /* client gaps: <20, 20-100, 100-1000, >=1000 ms */
    double gap_hist_ms[4];
    unsigned lost;
    unsigned vips_silent_at_end;
};

/* ---- random numbers (splitmix64: reproducible from --seed) ---------------------------- */

static uint64_t rnd(struct ch *c)
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rnd_below(struct ch *c, unsigned n)
{
    return n ? (unsigned)(rnd(c) % n) : 0;
}

/* ---- specs ------------------------------------------------------------------------------ */

static char *spec_of(const struct ch *c, const struct svcrec *s)
{
    char vips[64];

    snprintf(vips, sizeof(vips), "%s%s%s", s->vips[0], s->n_vips > 1 ? ", " : "",
             s->n_vips > 1 ? s->vips[1] : "");
    return cgv_asprintf("name: %s\n"
                        "instances: %u\n"
                        "vcpus: 1\n"
                        "memory: %uMiB\n"
                        "image: %s\n"
                        "acceleration: auto\n"
                        "heartbeat_ms: %u\n"
                        "networks:\n"
                        "  - network: default\n"
                        "redundancy:\n"
                        "  model: %s\n"
                        "  standbys: %u\n"
                        "  virtual_ips: [%s]\n"
                        "health:\n"
                        "  heartbeat_misses: %u\n"
                        "  watchdog_s: %u\n"
                        "processes:\n"
                        "  - name: nf\n"
                        "    command: /usr/sbin/cgv-nf\n"
                        "recovery:\n"
                        "  app_restarts: {max: 0, window_s: 60}\n"
                        "  vm_restarts: {max: %u, window_s: %u}\n"
                        "  failovers: {max: %u, window_s: %u}\n"
                        "  restart: fast\n",
                        s->name, s->instances, MEMORY_MIB, c->image, HEARTBEAT_MS, s->model,
                        s->standbys, vips, MISSES, WATCHDOG_S, RESTARTS_MAX,
                        RESTARTS_WINDOW_S, RESTARTS_MAX, RESTARTS_WINDOW_S);
}

/* ---- recent events (for the report of an anomaly) -------------------------------------- */

static void ring_add(struct ch *c, const struct bc_event *ev)
{
    c->ring[c->ring_n % RING] = *ev;
    c->ring_n++;
}

/* Events of service svc (and, if vm is not NULL, of that VM or of the
 * service as a whole) from the last since_ms, to stderr. */
static void ring_dump(const struct ch *c, const char *svc, const char *vm, int64_t since_ms)
{
    uint64_t first = c->ring_n > RING ? c->ring_n - RING : 0;
    int64_t now = cgv_wall_ms();

    for (uint64_t i = first; i < c->ring_n; i++) {
        const struct bc_event *e = &c->ring[i % RING];
        char ts[40];
        if (e->time_ms < now - since_ms || (svc && strcmp(e->service, svc) != 0) ||
            (vm && e->vm[0] && strcmp(e->vm, vm) != 0))
            continue;
        cgv_fmt_wall_ms(e->time_ms, ts, sizeof(ts));
        fprintf(stderr, "      %s #%" PRId64 " %-22s %-8s %s\n", ts + (strlen(ts) > 11 ? 11 : 0),
                e->id, e->type, e->vm[0] ? e->vm : "-", e->msg);
    }
}

/* ---- the services' state ---------------------------------------------------------------- */

static int svc_index(const struct ch *c, const char *name)
{
    for (int k = 0; k < N_SVC; k++) {
        if (strcmp(c->svc[k].name, name) == 0)
            return k;
    }
    return -1;
}

static struct vmrec *vm_find(struct ch *c, const char *name)
{
    for (size_t i = 0; i < c->n_vm; i++) {
        if (strcmp(c->vm[i].name, name) == 0)
            return &c->vm[i];
    }
    return NULL;
}

static bool is_null_or_absent(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return !v || json_is_null(v);
}

static void take_vm(struct ch *c, int k, const json_t *v, bool svc_busy)
{
    const char *name = bc_jstr(v, "name");
    struct vmrec *r = vm_find(c, name);

    if (!r) {
        if (c->n_vm >= MAX_VMS)
            return;
        r = &c->vm[c->n_vm++];
        memset(r, 0, sizeof(*r));
        cgv_strlcpy(r->name, name, sizeof(r->name));
        r->svc = k;
        r->child_fd = -1;
    }
    r->seen = true;
    r->pid = (pid_t)bc_jint(v, "pid");
    cgv_strlcpy(r->domain, bc_jstr(v, "domain"), sizeof(r->domain));
    cgv_strlcpy(r->console, bc_jstr(v, "console_socket"), sizeof(r->console));
    cgv_strlcpy(r->state, bc_jstr(v, "state"), sizeof(r->state));
    cgv_strlcpy(r->busy, is_null_or_absent(v, "busy") ? "" : bc_jstr(v, "busy"),
                sizeof(r->busy));
    cgv_strlcpy(r->agent, bc_jstr(v, "agent.state"), sizeof(r->agent));
    cgv_strlcpy(r->hastate, bc_jstr(v, "ha.state"), sizeof(r->hastate));
    cgv_strlcpy(r->role, bc_jstr(v, "ha.role"), sizeof(r->role));
    cgv_strlcpy(r->asg, bc_jstr(v, "ha.assignment"), sizeof(r->asg));
    cgv_strlcpy(r->mac, bc_jstr(v, "mac"), sizeof(r->mac));
    r->acked = json_is_true(bc_jget(v, "ha.acked"));
    r->eligible = !svc_busy && strcmp(r->state, "running") == 0 && !r->busy[0] &&
                  strcmp(r->agent, "up") == 0 && strcmp(r->hastate, "healthy") == 0 &&
                  (strcmp(r->role, "active") == 0 || strcmp(r->role, "standby") == 0) &&
                  r->acked && r->pid > 1;
}

static void take_service(struct ch *c, int k, const json_t *s)
{
    struct svcrec *sv = &c->svc[k];
    const json_t *a, *v;
    size_t i;
    bool svc_busy = !is_null_or_absent(s, "busy");

    sv->have = true;
    sv->up = json_is_true(bc_jget(s, "ha.up"));
    sv->redundant = bc_svc_redundant(s, sv->why, sizeof(sv->why));
    sv->downtime = bc_jint(s, "ha.downtime_ms");
    sv->outages = bc_jint(s, "ha.outages_total");
    sv->lifetime_avail = json_number_value(bc_jget(s, "ha.availability"));
    json_array_foreach(json_object_get(s, "vms"), i, v)
        take_vm(c, k, v, svc_busy);
    /* Never two actives for one assignment. */
    json_array_foreach(bc_jget(s, "ha.assignments"), i, a) {
        const char *asg = bc_jstr(a, "name");
        unsigned n = bc_svc_actives_for(s, asg);
        if (i >= CGV_ARRAY_LEN(sv->in_double))
            break;
        if (n > 1 && !sv->in_double[i]) {
            char who[256] = "";
            size_t off = 0, j;
            const json_t *w;
            json_array_foreach(json_object_get(s, "vms"), j, w) {
                if (strcmp(bc_jstr(w, "ha.role"), "active") == 0 &&
                    strcmp(bc_jstr(w, "ha.assignment"), asg) == 0 && off < sizeof(who))
                    off += (size_t)snprintf(who + off, sizeof(who) - off, " %s(%s, HA %s, %s)",
                                            bc_jstr(w, "name"), bc_jstr(w, "state"),
                                            bc_jstr(w, "ha.state"),
                                            json_is_true(bc_jget(w, "ha.acked")) ? "acked"
                                                                                   : "not acked");
            }
            c->double_cgvd++;
            bc_note("DOUBLE ACTIVE in cgvd's view: %s %s has %u actives:%s", sv->name, asg, n,
                    who);
            ring_dump(c, sv->name, NULL, 30000);
        }
        sv->in_double[i] = n > 1;
    }
}

/* One GET /v1/services: the view of both services. */
static int refresh(struct ch *c, struct cgv_error *err)
{
    json_t *out = NULL, *s;
    size_t i;

    if (client_services_list(c->b.c, &out, err) < 0)
        return -1;
    for (size_t k = 0; k < c->n_vm; k++)
        c->vm[k].seen = false;
    for (int k = 0; k < N_SVC; k++)
        c->svc[k].have = false;
    json_array_foreach(json_object_get(out, "services"), i, s) {
        int k = svc_index(c, bc_jstr(s, "name"));
        if (k >= 0)
            take_service(c, k, s);
    }
    json_decref(out);
    return 0;
}

/* Wait until every service is fully redundant and cgv-nf answers on every
 * VM's own address; at most timeout_ms. An instance cgvd gave up on is
 * started once. */
static int wait_ready(struct ch *c, long timeout_ms, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + (int64_t)timeout_ms * 1000, after = 0;
    bool started[MAX_VMS] = {false};

    if (bc_last_event_id(&c->b, &after, err) < 0)
        return -1;
    for (;;) {
        char why[320] = "";
        bool ok = true;
        long left;

        if (bc_stop)
            return cgv_err(err, CGV_E_INTERNAL, "interrupted");
        if (refresh(c, err) < 0)
            return -1;
        for (int k = 0; k < N_SVC && ok; k++) {
            if (!c->svc[k].have || !c->svc[k].redundant) {
                snprintf(why, sizeof(why), "%s", c->svc[k].have ? c->svc[k].why : "missing");
                ok = false;
            }
        }
        for (size_t i = 0; i < c->n_vm; i++) {
            struct vmrec *r = &c->vm[i];
            if (!started[i] &&
                (strcmp(r->hastate, "failed") == 0 || strcmp(r->hastate, "stopped") == 0)) {
                json_t *out = NULL;
                struct cgv_error e = {0};
                started[i] = true;
                bc_note("%s is %s: starting it", r->name, r->hastate);
                if (client_vm_op(c->b.c, r->name, "start", 0, &out, &e) < 0)
                    bc_note("start %s: %s", r->name, e.msg);
                json_decref(out);
            }
        }
        if (ok) {
            json_t *out = NULL, *s, *v;
            size_t i, j;
            if (client_services_list(c->b.c, &out, err) < 0)
                return -1;
            json_array_foreach(json_object_get(out, "services"), i, s) {
                if (svc_index(c, bc_jstr(s, "name")) < 0)
                    continue;
                json_array_foreach(json_object_get(s, "vms"), j, v) {
                    const char *addr =
                        json_string_value(json_array_get(bc_jget(v, "addresses"), 0));
                    struct cgv_error e = {0};
                    if (ok && (!addr || bc_udp_probe(addr, 2000, NULL, 0, &e) < 0)) {
                        snprintf(why, sizeof(why), "cgv-nf on %s does not answer: %s",
                                 bc_jstr(v, "name"), e.msg);
                        ok = false;
                    }
                }
            }
            json_decref(out);
        }
        if (ok)
            return 0;
        left = (long)((deadline - cgv_mono_us()) / 1000);
        if (left <= 0)
            return cgv_err(err, CGV_E_INTERNAL, "not fully redundant within %ld ms: %s",
                           timeout_ms, why);
        if (bc_poll_events(&c->b, &after, NULL, left < 1000 ? left : 1000, NULL, NULL, err) <
            0)
            return -1;
    }
}

/* ---- the clients (cgv-udpping per VIP, in segments) -------------------------------------- */

static int vip_start(struct ch *c, struct vipc *u, double seg_s, struct cgv_error *err)
{
    char dur[32], errlog[PATH_MAX];
    const char *argv[] = {c->b.o.udpping, "-i", "5", "--gaps", "10", "--json",
                          "--duration", dur, u->ip, NULL};

    snprintf(dur, sizeof(dur), "%.3f", seg_s);
    snprintf(errlog, sizeof(errlog), "%s/udpping.err", c->b.tmp);
    u->len = 0;
    u->seg_s = seg_s;
    u->t0_mono_us = cgv_mono_us();
    if (bc_spawn_pipe(argv, errlog, &u->pid, &u->fd, &u->t0_wall_us, err) < 0) {
        u->pid = 0;
        u->fd = -1;
        return -1;
    }
    return 0;
}

/* A segment's summary: gaps, switches (two VMs answering: a switch to a VM
 * and back within FLAP_MS), counters. */
static void vip_take(struct ch *c, struct vipc *u, const json_t *sum, double ran_s)
{
    const json_t *g, *sw, *prev = NULL;
    size_t i;
    const json_t *gaps = json_object_get(sum, "gaps"), *sws = json_object_get(sum, "switches");

    u->segments++;
    u->measured_s += ran_s;
    u->sent += bc_jint(sum, "sent");
    u->received += bc_jint(sum, "received");
    u->lost += bc_jint(sum, "lost");
    u->duplicates += bc_jint(sum, "duplicates");
    if (json_array_size(gaps) >= UDPPING_LOG_MAX || json_array_size(sws) >= UDPPING_LOG_MAX)
        u->truncated = true;
    json_array_foreach(gaps, i, g) {
        double len = json_number_value(json_object_get(g, "len_ms"));
        int h = len < 20.0 ? 0 : len < 100.0 ? 1 : len < 1000.0 ? 2 : 3;
        c->gap_hist_n[h]++;
        c->gap_hist_ms[h] += len;
        u->gaps++;
        u->gap_sum_ms += len;
        if (len > u->gap_max_ms)
            u->gap_max_ms = len;
        if (len >= 1000.0)
            bc_note("  client %s: no reply for %.1f ms (%s -> %s)", u->ip, len,
                    bc_jstr(g, "from"), bc_jstr(g, "to"));
    }
    json_array_foreach(sws, i, sw) {
        u->switches++;
        if (prev && strcmp(bc_jstr(sw, "from"), bc_jstr(prev, "to")) == 0 &&
            strcmp(bc_jstr(sw, "to"), bc_jstr(prev, "from")) == 0) {
            double dt = json_number_value(json_object_get(sw, "at_ms")) -
                        json_number_value(json_object_get(prev, "at_ms"));
            if (dt < FLAP_MS) {
                int64_t at_ms = u->t0_wall_us / 1000 +
                                (int64_t)json_number_value(json_object_get(prev, "at_ms"));
                char ts[40];
                cgv_fmt_wall_ms(at_ms, ts, sizeof(ts));
                u->flaps++;
                c->double_client++;
                bc_note("DOUBLE ACTIVE seen by the client of %s: %s -> %s at %s and back "
                        "%.1f ms later",
                        u->ip, bc_jstr(prev, "from"), bc_jstr(prev, "to"), ts, dt);
                ring_dump(c, c->svc[u->svc].name, NULL, 60000);
            }
        }
        prev = sw;
    }
}

/* Read what a running segment printed; at its end take its summary and, in
 * the window, start the next one. */
static void vip_pump(struct ch *c, struct vipc *u, int64_t end_mono_us)
{
    for (;;) {
        ssize_t r;

        if (u->pid <= 0)
            return;
        if (u->len + 4096 + 1 > u->cap) {
            u->cap = u->cap ? u->cap * 2 : 65536;
            u->out = cgv_realloc(u->out, u->cap);
        }
        r = read(u->fd, u->out + u->len, u->cap - u->len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r > 0) {
            u->len += (size_t)r;
            continue;
        }
        /* EOF (or an error): the segment is over. */
        {
            int status = 0;
            struct cgv_error e = {0};
            double ran_s = (double)(cgv_mono_us() - u->t0_mono_us) / 1e6;
            json_t *sum;

            close(u->fd);
            u->fd = -1;
            (void)bc_wait_child(u->pid, 5000, &status, &e);
            u->pid = 0;
            u->out[u->len] = '\0';
            {
                /* Kept with --keep-tmp: every gap and switch of the run. */
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/udpping-%s-%03u.json", c->b.tmp, u->ip,
                         u->segments);
                if (cgv_write_file_atomic(path, u->out, u->len, 0644, &e) < 0)
                    cgv_err_clear(&e);
            }
            sum = json_loads(u->out, 0, NULL);
            if (ran_s > u->seg_s)
                ran_s = u->seg_s;
            if (sum)
                vip_take(c, u, sum, ran_s);
            else
                bc_note("cgv-udpping %s printed no summary: '%.200s'", u->ip, u->out);
            json_decref(sum);
        }
        if (c->in_window && !bc_stop) {
            double left_s = (double)(end_mono_us - cgv_mono_us()) / 1e6;
            struct cgv_error e = {0};
            if (left_s >= 0.2 &&
                vip_start(c, u, left_s < SEGMENT_S ? left_s : SEGMENT_S, &e) < 0)
                bc_note("client %s: %s", u->ip, e.msg);
        }
        return;
    }
}

/* The last segments: they end by themselves (SIGTERM when interrupted). */
static void vip_finish(struct ch *c)
{
    int64_t deadline = cgv_mono_us() + (int64_t)(SEGMENT_S + 15) * 1000000;
    bool termed = false;

    c->in_window = false;
    for (;;) {
        bool running = false;
        for (int i = 0; i < N_VIP; i++) {
            vip_pump(c, &c->vip[i], 0);
            running = running || c->vip[i].pid > 0;
        }
        if (!running)
            return;
        if (!termed && (bc_stop || cgv_mono_us() >= deadline)) {
            for (int i = 0; i < N_VIP; i++) {
                if (c->vip[i].pid > 0)
                    kill(c->vip[i].pid, SIGTERM);
            }
            termed = true;
            deadline = cgv_mono_us() + 10000000;
        } else if (termed && cgv_mono_us() >= deadline) {
            for (int i = 0; i < N_VIP; i++) {
                if (c->vip[i].pid > 0) {
                    int status;
                    kill(c->vip[i].pid, SIGKILL);
                    (void)bc_wait_child(c->vip[i].pid, 5000, &status, NULL);
                    close(c->vip[i].fd);
                    c->vip[i].fd = -1;
                    c->vip[i].pid = 0;
                }
            }
            return;
        }
        (void)poll(NULL, 0, 20);
    }
}

/* ---- ARP: who holds a VIP ------------------------------------------------------------------ */

static void mac_fmt(const unsigned char *m, char *out, size_t cap)
{
    snprintf(out, cap, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* "cnm-0" for a MAC of ours, else the MAC. */
static void mac_who(const struct ch *c, const unsigned char *m, char *out, size_t cap)
{
    char s[24];

    mac_fmt(m, s, sizeof(s));
    for (size_t i = 0; i < c->n_vm; i++) {
        if (strcasecmp(c->vm[i].mac, s) == 0) {
            snprintf(out, cap, "%s", c->vm[i].name);
            return;
        }
    }
    snprintf(out, cap, "%s", s);
}

static int arp_open(struct ch *c, struct cgv_error *err)
{
    struct arpmon *a = &c->arp;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP)};
    int one = 1;

    a->fd = -1;
    a->ifindex = (int)if_nametoindex(BRIDGE);
    if (a->ifindex <= 0)
        return cgv_err(err, CGV_E_IO, "no bridge %s: %s", BRIDGE, strerror(errno));
    inet_pton(AF_INET, GATEWAY_IP, &a->src);
    for (int i = 0; i < N_VIP; i++)
        inet_pton(AF_INET, c->vip[i].ip, &a->vip[i]);
    a->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ARP));
    if (a->fd < 0)
        return cgv_err(err, CGV_E_IO, "packet socket: %s", strerror(errno));
    sll.sll_ifindex = a->ifindex;
    if (bind(a->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 ||
        setsockopt(a->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0)
        return cgv_err(err, CGV_E_IO, "packet socket on %s: %s", BRIDGE, strerror(errno));
    return 0;
}

static void arp_close(struct ch *c)
{
    if (c->arp.fd >= 0)
        close(c->arp.fd);
    c->arp.fd = -1;
}

/* One round: a request for every VIP, from the bridge's address. */
static void arp_send(struct ch *c)
{
    struct arpmon *a = &c->arp;
    struct arp_round *r = &a->r[a->rounds % ARP_RING];
    struct ifreq ifr;
    unsigned char mac[ETH_ALEN];

    memset(&ifr, 0, sizeof(ifr));
    cgv_strlcpy(ifr.ifr_name, BRIDGE, sizeof(ifr.ifr_name));
    if (ioctl(a->fd, SIOCGIFHWADDR, &ifr) < 0)
        return;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN); /* the bridge's MAC follows its ports */
    memset(r, 0, sizeof(*r));
    r->sent_wall_us = bc_wall_us();
    for (int i = 0; i < N_VIP; i++) {
        struct {
            struct ether_header eh;
            struct ether_arp arp;
        } __attribute__((packed)) f;
        struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
                                 .sll_ifindex = a->ifindex, .sll_halen = ETH_ALEN};

        memset(&f, 0, sizeof(f));
        memset(f.eh.ether_dhost, 0xff, ETH_ALEN);
        memcpy(f.eh.ether_shost, mac, ETH_ALEN);
        f.eh.ether_type = htons(ETHERTYPE_ARP);
        f.arp.arp_hrd = htons(ARPHRD_ETHER);
        f.arp.arp_pro = htons(ETHERTYPE_IP);
        f.arp.arp_hln = ETH_ALEN;
        f.arp.arp_pln = 4;
        f.arp.arp_op = htons(ARPOP_REQUEST);
        memcpy(f.arp.arp_sha, mac, ETH_ALEN);
        memcpy(f.arp.arp_spa, &a->src, 4);
        memcpy(f.arp.arp_tpa, &a->vip[i], 4);
        memset(to.sll_addr, 0xff, ETH_ALEN);
        (void)sendto(a->fd, &f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to));
    }
    a->rounds++;
    a->last_mono_us = cgv_mono_us();
}

/* Take the replies that came: each to the round whose requests went out
 * last before it arrived (kernel time stamp). */
static void arp_read(struct ch *c)
{
    struct arpmon *a = &c->arp;

    for (;;) {
        unsigned char buf[256];
        char ctl[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                            .msg_controllen = sizeof(ctl)};
        const struct ether_arp *ar = (const struct ether_arp *)(buf + sizeof(struct ether_header));
        int64_t at_us = 0;
        ssize_t n = recvmsg(a->fd, &mh, 0);
        int v = -1;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return;
        if ((size_t)n < sizeof(struct ether_header) + sizeof(struct ether_arp) ||
            ntohs(ar->arp_op) != ARPOP_REPLY || memcmp(ar->arp_tpa, &a->src, 4) != 0)
            continue;
        for (int i = 0; i < N_VIP; i++) {
            if (memcmp(ar->arp_spa, &a->vip[i], 4) == 0)
                v = i;
        }
        if (v < 0)
            continue;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
                at_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
            }
        }
        if (!at_us)
            at_us = bc_wall_us();
        a->replies++;
        for (uint64_t q = a->rounds; q > a->judged && q + ARP_RING > a->rounds; q--) {
            struct arp_round *r = &a->r[(q - 1) % ARP_RING];
            bool known = false;
            if (r->sent_wall_us > at_us)
                continue;
            for (unsigned k = 0; k < r->n[v]; k++)
                known = known || memcmp(r->mac[v][k], ar->arp_sha, ETH_ALEN) == 0;
            if (!known && r->n[v] < ARP_MACS)
                memcpy(r->mac[v][r->n[v]++], ar->arp_sha, ETH_ALEN);
            break;
        }
    }
}

static void arp_judge(struct ch *c, const struct arp_round *r)
{
    struct arpmon *a = &c->arp;

    for (int v = 0; v < N_VIP; v++) {
        char who[160] = "", ts[40];
        size_t off = 0;

        a->answered[v] += r->n[v] > 0;
        if (r->n[v] >= 2) {
            for (unsigned k = 0; k < r->n[v] && off < sizeof(who); k++) {
                char m[64];
                mac_who(c, r->mac[v][k], m, sizeof(m));
                off += (size_t)snprintf(who + off, sizeof(who) - off, " %s", m);
            }
            cgv_fmt_wall_ms(r->sent_wall_us / 1000, ts, sizeof(ts));
            a->overlaps++;
            if (!a->in_double[v])
                bc_note("  ARP: %s answered by%s (round at %s)", c->vip[v].ip, who,
                        ts + (strlen(ts) > 11 ? 11 : 0));
            if (a->prev_n[v] >= 2 && !a->in_double[v]) {
                a->in_double[v] = true;
                a->doubles++;
                a->double_rounds[v] = 1;
                bc_note("DOUBLE ACTIVE on the wire: %s answered by%s in two ARP rounds in a row",
                        c->vip[v].ip, who);
                ring_dump(c, c->svc[c->vip[v].svc].name, NULL, 30000);
            }
            a->double_rounds[v]++;
        } else {
            if (a->in_double[v])
                bc_note("  ARP: %s held by %s VM again after %u rounds with two",
                        c->vip[v].ip, r->n[v] ? "one" : "no", a->double_rounds[v]);
            a->in_double[v] = false;
        }
        a->prev_n[v] = r->n[v];
    }
}

/* Read replies, judge the rounds old enough, send the next round. */
static void arp_tick(struct ch *c)
{
    struct arpmon *a = &c->arp;
    int64_t now = bc_wall_us();

    if (a->fd < 0)
        return;
    arp_read(c);
    if (a->rounds > a->judged + ARP_RING - 1)
        a->judged = a->rounds - (ARP_RING - 1);
    while (a->judged < a->rounds) {
        const struct arp_round *r = &a->r[a->judged % ARP_RING];
        if (now - r->sent_wall_us < ARP_LATE_MS * 1000)
            break;
        arp_judge(c, r);
        a->judged++;
    }
    if (cgv_mono_us() - a->last_mono_us >= ARP_ROUND_MS * 1000)
        arp_send(c);
}

/* ---- faults ------------------------------------------------------------------------------- */

/* Faults open: ours and cgvd's own detections. */
static unsigned open_faults(const struct ch *c)
{
    unsigned n = 0;

    for (size_t i = 0; i < c->n_vm; i++)
        n += c->vm[i].open;
    return n;
}

static unsigned open_injected(const struct ch *c)
{
    unsigned n = 0;

    for (size_t i = 0; i < c->n_vm; i++)
        n += c->vm[i].open && !c->vm[i].spont;
    return n;
}

static void fault_opened(struct ch *c, struct vmrec *r)
{
    unsigned n = open_injected(c);

    c->injected++;
    c->by_kind[r->kind]++;
    if (n > c->max_open)
        c->max_open = n;
}

/* The console kinds run in a child; its answer (struct inj_result) comes
 * through a pipe. */
static int inject_child(struct ch *c, struct vmrec *r, struct cgv_error *err)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0)
        return cgv_err(err, CGV_E_IO, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return cgv_err(err, CGV_E_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        struct inj_result res;
        struct cgv_error e = {0};

        memset(&res, 0, sizeof(res));
        close(p[0]);
        res.rc = bc_inject(&c->b, (enum bc_fault)r->kind, r->pid, r->domain, r->console,
                           CONSOLE_TIMEOUT_MS, &res.wall_us, &res.mono_us, &e);
        cgv_strlcpy(res.msg, e.msg, sizeof(res.msg));
        if (write(p[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    r->child = pid;
    r->child_fd = p[0];
    r->pending = true;
    return 0;
}

static void inj_failed(struct ch *c, struct vmrec *r, const char *msg)
{
    c->inj_failed++;
    bc_note("  #%u %s -> %s: not injected: %s", r->no, bc_fault_names[r->kind], r->name, msg);
    r->open = false;
    r->pending = false;
}

/* The answer of an injection child, if it came. */
static void collect_child(struct ch *c, struct vmrec *r, bool wait)
{
    struct inj_result res;
    ssize_t n;
    int status;

    if (r->child <= 0)
        return;
    if (wait) {
        struct pollfd p = {.fd = r->child_fd, .events = POLLIN};
        (void)poll(&p, 1, CONSOLE_TIMEOUT_MS + 5000);
    }
    n = read(r->child_fd, &res, sizeof(res));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    close(r->child_fd);
    r->child_fd = -1;
    (void)bc_wait_child(r->child, 5000, &status, NULL);
    r->child = 0;
    if (n != (ssize_t)sizeof(res)) {
        memset(&res, 0, sizeof(res));
        res.rc = -1;
        snprintf(res.msg, sizeof(res.msg), "the injection process gave no answer");
    }
    if (res.rc < 0 && !r->detected) {
        inj_failed(c, r, res.msg);
        return;
    }
    r->pending = false;
    if (res.rc < 0) {
        /* It did happen (cgvd detected it), only the marker was not seen. */
        bc_note("  #%u %s: the injection reported '%s' but %s was detected", r->no, r->name,
                res.msg, r->detect_type);
        r->inj_wall_us = r->pick_wall_us;
        r->inj_mono_us = r->pick_mono_us;
    } else {
        r->inj_wall_us = res.wall_us;
        r->inj_mono_us = res.mono_us;
    }
    fault_opened(c, r);
}

/* Pick a fault kind and a VM and inject. Returns 1 if nothing could be
 * picked now (no eligible VM, or --max-concurrent reached). */
static int inject_one(struct ch *c)
{
    struct vmrec *cand[MAX_VMS], *r;
    enum fault kinds[F_N];
    size_t n = 0, nk = 0;
    struct cgv_error e = {0};

    if (c->max_concurrent && open_faults(c) >= c->max_concurrent)
        return 1;
    for (size_t i = 0; i < c->n_vm; i++) {
        if (c->vm[i].seen && c->vm[i].eligible && !c->vm[i].open && c->vm[i].child <= 0)
            cand[n++] = &c->vm[i];
    }
    for (int k = 0; k < F_N; k++) {
        if (c->fault_on[k])
            kinds[nk++] = (enum fault)k;
    }
    if (n == 0 || nk == 0)
        return 1;
    r = cand[rnd_below(c, (unsigned)n)];
    r->kind = kinds[rnd_below(c, (unsigned)nk)];
    r->no = ++c->attempts;
    r->open = true;
    r->pending = false;
    r->spont = false;
    r->detected = r->healthy = r->stuck = false;
    r->detect_type[0] = '\0';
    r->detect_ms = r->healthy_ms = 0;
    r->pick_wall_us = bc_wall_us();
    r->pick_mono_us = cgv_mono_us();
    snprintf(r->was, sizeof(r->was), "%s%s%s", r->role, r->asg[0] ? " " : "", r->asg);
    bc_note("  #%u %s -> %s (%s; %u open)", r->no, bc_fault_names[r->kind], r->name, r->was,
            open_faults(c));
    if (r->kind == F_DEATH || r->kind == F_HANG) {
        if (bc_inject(&c->b, (enum bc_fault)r->kind, r->pid, r->domain, r->console,
                      CONSOLE_TIMEOUT_MS, &r->inj_wall_us, &r->inj_mono_us, &e) < 0) {
            inj_failed(c, r, e.msg);
            return 0;
        }
        fault_opened(c, r);
        return 0;
    }
    if (inject_child(c, r, &e) < 0)
        inj_failed(c, r, e.msg);
    return 0;
}

/* ---- events ----------------------------------------------------------------------------- */

static void close_fault(struct ch *c, struct vmrec *r);

/* A fault cgvd detected by itself in a VM that was healthy (no fault of
 * ours open, or ours had recovered already): followed like ours until the
 * VM is healthy again, counted apart. */
static void open_spont(struct ch *c, struct vmrec *r, const struct bc_event *ev)
{
    if (r->open)
        close_fault(c, r); /* its VM was healthy again: that was the recovery */
    r->open = true;
    r->spont = true;
    r->pending = false;
    r->no = 0;
    r->detected = true;
    r->healthy = r->stuck = false;
    r->detect_ms = ev->time_ms;
    cgv_strlcpy(r->detect_type, ev->type, sizeof(r->detect_type));
    r->pick_wall_us = ev->time_ms * 1000;
    r->pick_mono_us = cgv_mono_us();
}

static void on_event(void *opaque, const struct bc_event *ev)
{
    struct ch *c = opaque;
    struct vmrec *r = ev->vm[0] ? vm_find(c, ev->vm) : NULL;

    ring_add(c, ev);
    if (strncmp(ev->type, "detect.", 7) == 0) {
        if (r && r->open && !r->healthy) {
            if (!r->spont && !r->detected && ev->time_ms * 1000 >= r->pick_wall_us - 100000) {
                r->detected = true;
                r->detect_ms = ev->time_ms;
                cgv_strlcpy(r->detect_type, ev->type, sizeof(r->detect_type));
                if (strcmp(ev->type, bc_detect_types[r->kind]) != 0) {
                    c->misclassified++;
                    bc_note("  #%u %s %s detected as %s: %s", r->no, bc_fault_names[r->kind],
                            r->name, ev->type, ev->msg);
                }
            } else {
                /* Before it was healthy again (e.g. its restart failed). */
                c->redetections++;
                bc_note("  %s: another detection while recovering: %s %s", r->name, ev->type,
                        ev->msg);
            }
        } else {
            c->unexpected++;
            bc_note("  %s %s, not injected: %s", ev->type, ev->vm, ev->msg);
            if (r)
                open_spont(c, r, ev);
        }
    } else if (strcmp(ev->type, "recover.healthy") == 0) {
        if (r && r->open && r->detected && !r->healthy) {
            r->healthy = true;
            r->healthy_ms = ev->time_ms;
        }
    } else if (strcmp(ev->type, "ha.failed") == 0) {
        c->failed_events++;
        bc_note("LOST: %s %s: %s", ev->type, ev->vm, ev->msg);
        if (r) {
            if (!r->lost)
                snprintf(r->lost_why, sizeof(r->lost_why), "ha.failed: %s", ev->msg);
            r->lost = true;
            r->failed_now = true;
        }
        ring_dump(c, ev->service, ev->vm, 60000);
    } else if (strcmp(ev->type, "ha.alarm") == 0 || strcmp(ev->type, "ha.role_timeout") == 0 ||
               strcmp(ev->type, "ha.role_failed") == 0 ||
               strcmp(ev->type, "recover.restart_failed") == 0) {
        c->alarms++;
        bc_note("  %s %s: %s", ev->type, ev->vm, ev->msg);
    } else if (strcmp(ev->type, "ha.outage") == 0) {
        c->outage_events++;
    }
}

/* ---- after each look at cgvd's view ----------------------------------------------------- */

static void close_fault(struct ch *c, struct vmrec *r)
{
    double ttr = (double)r->healthy_ms - (double)r->inj_wall_us / 1000.0;
    double det = (double)r->detect_ms - (double)r->inj_wall_us / 1000.0;

    if (r->spont) {
        c->unexpected_recovered++;
        bc_note("  %s recovered from the %s: healthy %.1f ms after the detection", r->name,
                r->detect_type, (double)(r->healthy_ms - r->detect_ms));
        r->open = false;
        r->spont = false;
        return;
    }
    c->recoveries++;
    bc_series_add(&c->recover, ttr);
    bc_series_add(&c->recover_k[r->kind], ttr);
    bc_series_add(&c->detect, det);
    bc_note("  #%u %s %s recovered: detected %.1f ms (%s), healthy %.1f ms after the "
            "injection%s",
            r->no, bc_fault_names[r->kind], r->name, det, r->detect_type + 7, ttr,
            r->stuck ? " (late)" : "");
    r->open = false;
}

static void after_refresh(struct ch *c)
{
    int64_t now = cgv_mono_us();

    for (size_t i = 0; i < c->n_vm; i++) {
        struct vmrec *r = &c->vm[i];

        if (r->child > 0)
            collect_child(c, r, false);
        if (r->open && !r->pending && r->healthy && c->svc[r->svc].up)
            close_fault(c, r);
        if (r->open && !r->stuck && now - r->pick_mono_us > c->recover_timeout_ms * 1000) {
            r->stuck = true;
            c->stuck++;
            bc_note("STUCK: #%u %s %s not recovered after %ld s: %s, agent %s, HA %s, role %s, "
                    "busy %s; detected: %s",
                    r->no, r->spont ? "(cgvd's own detection)" : bc_fault_names[r->kind],
                    r->name, c->recover_timeout_ms / 1000,
                    r->state, r->agent, r->hastate, r->role, r->busy[0] ? r->busy : "no",
                    r->detected ? r->detect_type : "no");
            ring_dump(c, c->svc[r->svc].name, r->name, c->recover_timeout_ms + 10000);
        }
        if (r->failed_now && strcmp(r->hastate, "failed") == 0) {
            json_t *out = NULL;
            struct cgv_error e = {0};
            r->failed_now = false;
            c->operator_starts++;
            bc_note("  %s was given up: starting it (as an operator would)", r->name);
            if (client_vm_op(c->b.c, r->name, "start", 0, &out, &e) < 0)
                bc_note("  start %s: %s", r->name, e.msg);
            json_decref(out);
        }
    }
}

/* One round of the loop: events (long poll of at most wait_ms), cgvd's
 * view, the injection children, the clients. */
static int tick(struct ch *c, long wait_ms, int64_t end_mono_us, struct cgv_error *err)
{
    if (bc_poll_events(&c->b, &c->after, NULL, wait_ms, on_event, c, err) < 0 ||
        refresh(c, err) < 0) {
        if (bc_stop || !bc_cgvd_alive(&c->b))
            return -1;
        /* cgvd is there: a slow answer; try again. */
        bc_note("  cgvd: %s; going on", err->msg);
        cgv_err_clear(err);
        return 0;
    }
    after_refresh(c);
    for (int i = 0; i < N_VIP; i++)
        vip_pump(c, &c->vip[i], end_mono_us);
    arp_tick(c);
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------- */

static unsigned next_gap_ms(struct ch *c)
{
    return c->min_gap_ms + rnd_below(c, c->max_gap_ms - c->min_gap_ms + 1);
}

static void progress(struct ch *c, int64_t t0)
{
    bc_note("+%.0f s: %u faults, %u recovered, %u open; %s %s, %s %s",
            (double)(cgv_mono_us() - t0) / 1e6, c->injected, c->recoveries, open_faults(c),
            c->svc[0].name, c->svc[0].up ? "up" : "DOWN", c->svc[1].name,
            c->svc[1].up ? "up" : "DOWN");
}

static int chaos_window(struct ch *c, struct cgv_error *err)
{
    int64_t t0, end, next, last_progress;

    if (bc_last_event_id(&c->b, &c->after, err) < 0 || refresh(c, err) < 0)
        return -1;
    for (int k = 0; k < N_SVC; k++) {
        c->svc[k].down0 = c->svc[k].downtime;
        c->svc[k].out0 = c->svc[k].outages;
    }
    t0 = cgv_mono_us();
    end = t0 + (int64_t)c->duration_s * 1000000;
    c->in_window = true;
    c->ran = true;
    for (int i = 0; i < N_VIP; i++) {
        if (vip_start(c, &c->vip[i], c->duration_s < SEGMENT_S ? c->duration_s : SEGMENT_S,
                      err) < 0)
            return -1;
    }
    next = t0 + (int64_t)next_gap_ms(c) * 1000;
    last_progress = t0;
    bc_note("chaos: %u s, seed %u, a fault every %u..%u ms", c->duration_s, c->seed,
            c->min_gap_ms, c->max_gap_ms);
    for (;;) {
        int64_t now = cgv_mono_us(), until;
        long wait_ms;

        if (bc_stop)
            return cgv_err(err, CGV_E_INTERNAL, "interrupted");
        if (now >= end)
            break;
        if (now >= next) {
            if (inject_one(c) == 0)
                next = now + (int64_t)next_gap_ms(c) * 1000;
            else
                next = now + POLL_MS * 1000; /* nothing to pick now */
        }
        until = next < end ? next : end;
        wait_ms = (long)((until - cgv_mono_us()) / 1000);
        if (wait_ms > POLL_MS)
            wait_ms = POLL_MS;
        if (wait_ms < 0)
            wait_ms = 0;
        if (tick(c, wait_ms, end, err) < 0)
            return -1;
        if (cgv_mono_us() - last_progress >= PROGRESS_US) {
            last_progress = cgv_mono_us();
            progress(c, t0);
        }
    }
    /* The end of the window: cgvd's downtime now. */
    if (refresh(c, err) < 0)
        return -1;
    c->window_s = (double)(cgv_mono_us() - t0) / 1e6;
    for (int k = 0; k < N_SVC; k++) {
        c->svc[k].down_end = c->svc[k].downtime;
        c->svc[k].out_end = c->svc[k].outages;
        c->svc[k].lifetime_avail_end = c->svc[k].lifetime_avail;
    }
    progress(c, t0);
    return 0;
}

/* After the window: no more faults; wait (bounded) until every fault of
 * ours has recovered and both services are fully redundant, still
 * checking; then count what is lost. */
static int settle(struct ch *c, struct cgv_error *err)
{
    int64_t deadline = cgv_mono_us() + c->settle_timeout_ms * 1000;
    bool done = false;

    bc_note("settling: waiting up to %ld s for %u open fault%s and full redundancy",
            c->settle_timeout_ms / 1000, open_faults(c), open_faults(c) == 1 ? "" : "s");
    for (size_t i = 0; i < c->n_vm; i++)
        collect_child(c, &c->vm[i], true);
    while (!done) {
        if (bc_stop)
            return cgv_err(err, CGV_E_INTERNAL, "interrupted");
        if (tick(c, 200, 0, err) < 0)
            return -1;
        done = open_faults(c) == 0;
        for (int k = 0; k < N_SVC; k++)
            done = done && c->svc[k].have && c->svc[k].redundant;
        if (!done && cgv_mono_us() >= deadline) {
            bc_note("settling: not done after %ld s", c->settle_timeout_ms / 1000);
            break;
        }
    }
    /* Every VM there and healthy with an acknowledged role? */
    for (size_t i = 0; i < c->n_vm; i++) {
        struct vmrec *r = &c->vm[i];
        if (r->open) {
            c->unrecovered++;
            if (r->detected && !r->spont)
                bc_series_add(&c->detect, (double)r->detect_ms - (double)r->inj_wall_us / 1000.0);
            bc_note("UNRECOVERED: #%u %s %s: %s, agent %s, HA %s; detected: %s, healthy: %s",
                    r->no, r->spont ? "(cgvd's own detection)" : bc_fault_names[r->kind], r->name, r->state, r->agent, r->hastate,
                    r->detected ? r->detect_type : "no", r->healthy ? "yes" : "no");
        }
        if (!r->seen || !r->eligible) {
            if (!r->lost)
                snprintf(r->lost_why, sizeof(r->lost_why),
                         "not healthy at the end: %s, busy %s, agent %s, HA %s, role %s%s",
                         r->seen ? r->state : "missing", r->busy[0] ? r->busy : "no",
                         r->agent, r->hastate, r->role, r->acked ? "" : " (not acked)");
            r->lost = true;
            ring_dump(c, c->svc[r->svc].name, r->name, 120000);
        }
    }
    for (int k = 0; k < N_SVC; k++) {
        unsigned n = 0; /* VMs ever seen; one that vanished is counted below */
        for (size_t i = 0; i < c->n_vm; i++)
            n += c->vm[i].svc == k;
        if (n < c->svc[k].instances) {
            bc_note("LOST: %s has %u of its %u VMs", c->svc[k].name, n, c->svc[k].instances);
            c->lost += c->svc[k].instances - n;
        }
    }
    for (size_t i = 0; i < c->n_vm; i++) {
        if (c->vm[i].lost) {
            c->lost++;
            bc_note("LOST: %s: %s", c->vm[i].name, c->vm[i].lost_why);
        }
    }
    for (int i = 0; i < N_VIP; i++) {
        char said[80] = "";
        struct cgv_error e = {0};
        if (bc_udp_probe(c->vip[i].ip, 3000, said, sizeof(said), &e) < 0) {
            c->vips_silent_at_end++;
            bc_note("VIP %s does not answer at the end: %s", c->vip[i].ip, e.msg);
        }
    }
    return 0;
}

static int chaos_run(struct ch *c, struct cgv_error *err)
{
    for (int k = 0; k < N_SVC; k++) {
        bc_note("applying %s (%s, %u VMs, VIP%s %s%s%s)", c->svc[k].name, c->svc[k].model,
                c->svc[k].instances, c->svc[k].n_vips > 1 ? "s" : "", c->svc[k].vips[0],
                c->svc[k].n_vips > 1 ? " " : "", c->svc[k].n_vips > 1 ? c->svc[k].vips[1] : "");
        if (bc_apply(&c->b, c->svc[k].name, c->svc[k].spec, err) < 0)
            return -1;
    }
    if (wait_ready(c, c->boot_timeout_ms, err) < 0)
        return -1;
    bc_note("%zu VMs healthy, both services fully redundant", c->n_vm);
    if (arp_open(c, err) < 0)
        return -1;
    if (chaos_window(c, err) < 0)
        return -1;
    vip_finish(c);
    return settle(c, err);
}

/* ---- clean-up of what bc_cleanup() leaves ------------------------------------------------- */

static void stop_children(struct ch *c)
{
    arp_close(c);
    for (size_t i = 0; i < c->n_vm; i++) {
        struct vmrec *r = &c->vm[i];
        if (r->child > 0) {
            int status;
            kill(r->child, SIGTERM);
            (void)bc_wait_child(r->child, 5000, &status, NULL);
            r->child = 0;
        }
        if (r->child_fd >= 0)
            close(r->child_fd);
        r->child_fd = -1;
    }
    for (int i = 0; i < N_VIP; i++) {
        struct vipc *u = &c->vip[i];
        if (u->pid > 0) {
            int status;
            kill(u->pid, SIGTERM);
            (void)bc_wait_child(u->pid, 5000, &status, NULL);
            u->pid = 0;
        }
        if (u->fd >= 0)
            close(u->fd);
        u->fd = -1;
        free(u->out);
        u->out = NULL;
    }
}

/* cgvd made the bridge; it is ours alone. */
static void remove_bridge(void)
{
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

/* ---- output -------------------------------------------------------------------------------- */

static double pct(double part, double whole)
{
    return whole > 0 ? 100.0 * (1.0 - part / whole) : 0.0;
}

static void print_figures(const struct ch *c)
{
    char key[96];
    double gap_sum = 0, measured = 0, down_sum = 0;
    long long sent = 0, lost = 0, dups = 0;
    bool truncated = false;

    printf("chaos_duration_s=%u\n", c->duration_s);
    printf("chaos_window_s=%.1f\n", c->window_s);
    printf("chaos_seed=%u\n", c->seed);
    printf("chaos_gap_ms=%u-%u\n", c->min_gap_ms, c->max_gap_ms);
    printf("chaos_max_concurrent=%u\n", c->max_concurrent);
    printf("chaos_percentiles=nearest-rank\n");
    printf("chaos_acceleration=%s\n", c->b.accel[0] ? c->b.accel : "unknown");
    printf("chaos_vms=%zu\n", c->n_vm);
    printf("chaos_heartbeat_ms=%d\n", HEARTBEAT_MS);
    printf("chaos_heartbeat_misses=%d\n", MISSES);
    printf("chaos_watchdog_s=%d\n", WATCHDOG_S);
    printf("faults_injected=%u\n", c->injected);
    for (int k = 0; k < F_N; k++)
        printf("faults_%s=%u\n", bc_fault_names[k], c->by_kind[k]);
    printf("faults_not_injected=%u\n", c->inj_failed);
    printf("faults_max_concurrent=%u\n", c->max_open);
    printf("recoveries=%u\n", c->recoveries);
    if (c->recover.n) {
        printf("recover_p50_ms=%.1f\n", bc_series_pct(&c->recover, 0.50));
        printf("recover_p99_ms=%.1f\n", bc_series_pct(&c->recover, 0.99));
        printf("recover_max_ms=%.1f\n", bc_series_max(&c->recover));
    }
    for (int k = 0; k < F_N; k++) {
        snprintf(key, sizeof(key), "recover_%s", bc_fault_names[k]);
        bc_print_series(key, &c->recover_k[k]);
    }
    bc_print_series("detect", &c->detect);
    printf("detect_misclassified=%u\n", c->misclassified);
    printf("unexpected_detections=%u\n", c->unexpected);
    printf("unexpected_recovered=%u\n", c->unexpected_recovered);
    printf("detections_while_recovering=%u\n", c->redetections);
    printf("stuck_recoveries=%u\n", c->stuck);
    printf("unrecovered=%u\n", c->unrecovered);
    printf("alarms=%u\n", c->alarms);
    printf("ha_failed=%u\n", c->failed_events);
    printf("operator_starts=%u\n", c->operator_starts);
    printf("double_active_cgvd=%u\n", c->double_cgvd);
    printf("double_active_client=%u\n", c->double_client);
    printf("double_active_arp=%u\n", c->arp.doubles);
    printf("double_active=%u\n", c->double_cgvd + c->double_client + c->arp.doubles);
    printf("lost_instances=%u\n", c->lost);
    printf("vips_silent_at_end=%u\n", c->vips_silent_at_end);
    for (int i = 0; i < N_VIP; i++) {
        const struct vipc *u = &c->vip[i];
        char p[64];
        snprintf(p, sizeof(p), "client_%s_a%u", c->svc[u->svc].name, u->asg);
        printf("%s_vip=%s\n", p, u->ip);
        printf("%s_measured_s=%.1f\n", p, u->measured_s);
        printf("%s_gaps=%u\n", p, u->gaps);
        printf("%s_downtime_ms=%.1f\n", p, u->gap_sum_ms);
        printf("%s_max_gap_ms=%.1f\n", p, u->gap_max_ms);
        printf("%s_availability_pct=%.4f\n", p, pct(u->gap_sum_ms, u->measured_s * 1000.0));
        printf("%s_switches=%u\n", p, u->switches);
        printf("%s_sent=%lld\n", p, u->sent);
        printf("%s_lost=%lld\n", p, u->lost);
        gap_sum += u->gap_sum_ms;
        measured += u->measured_s * 1000.0;
        sent += u->sent;
        lost += u->lost;
        dups += u->duplicates;
        truncated = truncated || u->truncated;
    }
    printf("client_duplicates=%lld\n", dups);
    printf("arp_rounds=%llu\n", (unsigned long long)c->arp.judged);
    printf("arp_replies=%llu\n", c->arp.replies);
    for (int i = 0; i < N_VIP; i++)
        printf("arp_client_%s_a%u_answered_rounds=%llu\n", c->svc[c->vip[i].svc].name,
               c->vip[i].asg, c->arp.answered[i]);
    printf("arp_overlap_rounds=%u\n", c->arp.overlaps);
    printf("client_log_truncated=%d\n", truncated ? 1 : 0);
    printf("client_loss_pct=%.4f\n", sent > 0 ? 100.0 * (double)lost / (double)sent : 0.0);
    printf("downtime_client_ms=%.1f\n", gap_sum);
    {
        static const char *const h[4] = {"lt20", "20to100", "100to1000", "ge1000"};
        for (int i = 0; i < 4; i++)
            printf("downtime_client_gaps_%s_n=%u\ndowntime_client_gaps_%s_ms=%.1f\n", h[i],
                   c->gap_hist_n[i], h[i], c->gap_hist_ms[i]);
    }
    printf("availability_client_pct=%.4f\n", pct(gap_sum, measured));
    for (int k = 0; k < N_SVC; k++) {
        const struct svcrec *s = &c->svc[k];
        long long d = c->ran ? s->down_end - s->down0 : 0;
        printf("cgvd_%s_downtime_ms=%lld\n", s->name, d);
        printf("cgvd_%s_outages=%lld\n", s->name, c->ran ? s->out_end - s->out0 : 0);
        printf("cgvd_%s_availability_pct=%.4f\n", s->name, pct((double)d, c->window_s * 1000.0));
        printf("cgvd_%s_availability_since_created=%.6f\n", s->name, s->lifetime_avail_end);
        down_sum += (double)d;
    }
    printf("downtime_ms=%.0f\n", down_sum);
    printf("availability_cgvd_pct=%.4f\n", pct(down_sum, N_SVC * c->window_s * 1000.0));
    fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: chaos [OPTIONS]\n"
            "Injects random faults of every kind into two HA services for a set time and\n"
            "checks that no assignment ever has two actives and no instance is lost; prints\n"
            "recoveries, time-to-recover and availability (see docs/BENCH.md).\n"
            "Needs root, libvirtd (qemu:///system) and the guest image.\n\n"
            "  --duration SEC        how long faults are injected (default 300)\n"
            "  --quick               --duration 60\n"
            "  --seed N              random seed (default: random; printed)\n"
            "  --min-gap-ms MS       shortest pause between two faults (default 200)\n"
            "  --max-gap-ms MS       longest pause (default 4000)\n"
            "  --max-concurrent N    at most N faults open at once (default 0: no limit)\n"
            "  --faults LIST         only these (comma-separated: process_death,panic,hang,\n"
            "                        watchdog,application)\n"
            "  --recover-timeout SEC a fault not recovered by then is reported stuck\n"
            "                        (default 120)\n"
            "  --settle-timeout SEC  after the window, wait at most this long for every\n"
            "                        recovery (default 300)\n"
            "  --image NAME          guest image (default default)\n"
            "  --image-dir DIR       (default /var/lib/cgv/images)\n"
            "  --cgvd PATH           (default %s)\n"
            "  --udpping PATH        (default %s)\n"
            "  --virsh PATH          (default virsh)\n"
            "  --libvirt-uri URI     (default qemu:///system)\n"
            "  --tmp-dir DIR         where the working directory goes (default $TMPDIR or /tmp)\n"
            "  --boot-timeout SEC    deadline for the VMs to be healthy first (default 300)\n"
            "  --op-timeout SEC      deadline for any other step (default 180)\n"
            "  --keep-tmp            keep the working directory (cgvd log, console logs)\n"
            "  --cgvd-log-level L    cgvd's --log-level (default info)\n"
            "  -h, --help\n",
            BENCH_CGVD_PATH, BENCH_UDPPING_PATH);
}


static int parse_opts(int argc, char **argv, struct ch *c, bool *seed_set)
{
    enum { O_DUR = 256, O_QUICK, O_SEED, O_MINGAP, O_MAXGAP, O_MAXCONC, O_FAULTS, O_RECTO,
           O_SETTLE, O_IMAGE, O_BOOTTO, O_OPTO };
    static const struct option longopts[] = {
        {"duration", required_argument, NULL, O_DUR},
        {"quick", no_argument, NULL, O_QUICK},
        {"seed", required_argument, NULL, O_SEED},
        {"min-gap-ms", required_argument, NULL, O_MINGAP},
        {"max-gap-ms", required_argument, NULL, O_MAXGAP},
        {"max-concurrent", required_argument, NULL, O_MAXCONC},
        {"faults", required_argument, NULL, O_FAULTS},
        {"recover-timeout", required_argument, NULL, O_RECTO},
        {"settle-timeout", required_argument, NULL, O_SETTLE},
        {"image", required_argument, NULL, O_IMAGE},
        {"boot-timeout", required_argument, NULL, O_BOOTTO},
        {"op-timeout", required_argument, NULL, O_OPTO},
        BC_OPTIONS,
        BC_OPTION_UDPPING,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool dur_set = false;
    unsigned v;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_DUR:
        case O_SEED:
        case O_MINGAP:
        case O_MAXGAP:
        case O_MAXCONC:
        case O_RECTO:
        case O_SETTLE:
        case O_BOOTTO:
        case O_OPTO:
            if (bc_parse_uint(optarg, opt == O_SEED ? UINT_MAX : 10000000, &v) < 0 ||
                (v == 0 && (opt == O_DUR || opt == O_RECTO || opt == O_BOOTTO ||
                            opt == O_OPTO || opt == O_MAXGAP))) {
                fprintf(stderr, "chaos: bad number '%s'\n", optarg);
                return -1;
            }
            switch (opt) {
            case O_DUR:
                c->duration_s = v;
                dur_set = true;
                break;
            case O_SEED:
                c->seed = v;
                *seed_set = true;
                break;
            case O_MINGAP: c->min_gap_ms = v; break;
            case O_MAXGAP: c->max_gap_ms = v; break;
            case O_MAXCONC: c->max_concurrent = v; break;
            case O_RECTO: c->recover_timeout_ms = (long)v * 1000; break;
            case O_SETTLE: c->settle_timeout_ms = (long)v * 1000; break;
            case O_BOOTTO: c->boot_timeout_ms = (long)v * 1000; break;
            default: c->b.o.op_timeout_ms = (long)v * 1000; break;
            }
            break;
        case O_QUICK: c->quick = true; break;
        case O_FAULTS:
            if (bc_parse_faults("chaos", optarg, c->fault_on) < 0)
                return -1;
            break;
        case O_IMAGE: c->image = optarg; break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            if (bc_take_option(&c->b.o, opt, optarg))
                break;
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chaos: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!cgv_name_valid(c->image)) {
        fprintf(stderr, "chaos: bad image name '%s'\n", c->image);
        return -1;
    }
    if (c->min_gap_ms > c->max_gap_ms) {
        fprintf(stderr, "chaos: --min-gap-ms %u is above --max-gap-ms %u\n", c->min_gap_ms,
                c->max_gap_ms);
        return -1;
    }
    if (c->quick && !dur_set)
        c->duration_s = 60;
    return 0;
}

int main(int argc, char **argv)
{
    static struct ch c;
    struct cgv_error err = {0};
    const char *tmpdir = getenv("TMPDIR");
    bool seed_set = false;
    int rc = 1;

    c.duration_s = 300;
    c.min_gap_ms = 200;
    c.max_gap_ms = 4000;
    c.image = "default";
    c.boot_timeout_ms = 300000;
    c.recover_timeout_ms = 120000;
    c.settle_timeout_ms = 300000;
    for (int k = 0; k < F_N; k++)
        c.fault_on[k] = true;
    c.svc[0] = (struct svcrec){.name = "c2n", .model = "2n", .instances = 2, .standbys = 1,
                               .vips = {"10.79.4.50"}, .n_vips = 1};
    c.svc[1] = (struct svcrec){.name = "cnm", .model = "n+m", .instances = 3, .standbys = 1,
                               .vips = {"10.79.4.51", "10.79.4.52"}, .n_vips = 2};
    c.vip[0] = (struct vipc){.svc = 0, .asg = 0, .ip = "10.79.4.50", .fd = -1};
    c.vip[1] = (struct vipc){.svc = 1, .asg = 0, .ip = "10.79.4.51", .fd = -1};
    c.vip[2] = (struct vipc){.svc = 1, .asg = 1, .ip = "10.79.4.52", .fd = -1};
    c.b.o = (struct bc_opts){
        .tag = "chaos",
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
    c.b.lock_fd = -1;
    c.arp.fd = -1;
    if (parse_opts(argc, argv, &c, &seed_set) < 0)
        return 2;
    if (geteuid() != 0) {
        fprintf(stderr, "chaos: must run as root (cgvd and qemu:///system need it)\n");
        return 2;
    }
    if (!seed_set && getrandom(&c.seed, sizeof(c.seed), 0) != (ssize_t)sizeof(c.seed))
        c.seed = (unsigned)cgv_mono_us();
    c.rng = c.seed;
    for (int k = 0; k < N_SVC; k++)
        c.svc[k].spec = spec_of(&c, &c.svc[k]);

    if (bc_setup(&c.b, &err) < 0) {
        if (err.code == CGV_E_CONFLICT) {
            fprintf(stderr, "chaos: %s\n", err.msg);
            bc_cleanup(&c.b);
            return 2;
        }
        goto done;
    }
    if (chaos_run(&c, &err) < 0)
        goto done;
    rc = c.double_cgvd + c.double_client + c.arp.doubles > 0 || c.lost > 0 ? 1 : 0;

done:
    if (err.msg[0])
        bc_note("failed: %s", err.msg);
    stop_children(&c);
    bc_cleanup(&c.b);
    remove_bridge();
    print_figures(&c);
    bc_series_free(&c.recover);
    bc_series_free(&c.detect);
    for (int k = 0; k < F_N; k++)
        bc_series_free(&c.recover_k[k]);
    for (int k = 0; k < N_SVC; k++)
        free(c.svc[k].spec);
    if (bc_stop)
        return 130;
    return rc;
}
