/* bench_common.h — what bench/failover, bench/chaos and bench/pinning share
 * (docs/BENCH.md):
 * their own cgvd in a temporary directory, a lock file, child processes with
 * deadlines, cgvd's event long poll, the serial-console and UDP helpers of
 * the fault injection, sample series with nearest-rank percentiles, and the
 * clean-up that runs on every exit (success, failure, SIGINT/SIGTERM/SIGHUP).
 *
 * Clocks: *_mono_us is CLOCK_MONOTONIC, *_wall_us CLOCK_REALTIME, both in
 * microseconds. cgvd stamps its events with the wall clock of the same host
 * (time_ms), so injection-to-event latencies compare wall clocks.
 *
 * Ownership: strings in struct bc_opts are borrowed (argv, string literals)
 * and must outlive the struct bc; everything a function returns through a
 * pointer argument is owned by the caller unless its comment says otherwise.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgv_common.h"
#include "client.h"

#define BC_MAX_LIVE 16    /* services a benchmark creates */
#define BC_MAX_STOPPED 64 /* QEMU processes it SIGSTOPped (hang injections) */
#define BC_NF_PORT 7000   /* cgv-nf */

/* Set (incremented) by SIGINT, SIGTERM and SIGHUP; installed by bc_setup(). */
extern volatile sig_atomic_t bc_stop;

/* Progress to stderr, prefixed with the benchmark's name. */
void bc_note(const char *fmt, ...) CGV_PRINTF(1, 2);

int64_t bc_wall_us(void);

/* ---- samples ------------------------------------------------------------------ */

struct bc_series {
    double *v;
    size_t n, cap;
};

void bc_series_add(struct bc_series *s, double v);
/* Nearest rank: the ceil(q*n)-th smallest sample (1-based); 0 when empty. */
double bc_series_pct(const struct bc_series *s, double q);
double bc_series_max(const struct bc_series *s);
void bc_series_free(struct bc_series *s);
/* "<key>_n=", and if n > 0 "<key>_p50_ms=" and "<key>_p99_ms=" on stdout. */
void bc_print_series(const char *key, const struct bc_series *s);

/* ---- the benchmark's cgvd ----------------------------------------------------- */

struct bc_opts {
    const char *tag;       /* "failover": progress prefix, temp dir stem */
    const char *prefix;    /* libvirt domain prefix, e.g. "cgvfo-" (ours alone) */
    const char *bridge, *gateway, *pool;
    const char *lock_path; /* one instance at a time */
    const char *cgvd, *cgv, *udpping, *virsh, *uri, *image_dir, *tmp_base, *log_level;
    long op_timeout_ms;
    bool keep_tmp;
};

struct bc_stopped {
    pid_t pid;
    unsigned long long start; /* /proc/PID/stat starttime: the same process */
};

struct bc {
    struct bc_opts o;
    char tmp[PATH_MAX];
    char sock[PATH_MAX], state[PATH_MAX], run[PATH_MAX], log[PATH_MAX];
    char pidfile[PATH_MAX], cgvd_log[PATH_MAX], cmd_log[PATH_MAX];
    struct client *c;
    pid_t cgvd_pid;
    int lock_fd;
    bool cleaning; /* in bc_cleanup(): run commands despite a stop signal */
    char accel[16];
    char live[BC_MAX_LIVE][48]; /* services to delete at the end */
    size_t n_live;
    struct bc_stopped stopped[BC_MAX_STOPPED];
    size_t n_stopped;
};

/* Signals, subreaper, lock, working directory, leftover domains with our
 * prefix removed, cgvd started, client connected. -1 with err on failure;
 * bc_cleanup() must run either way. Returns 2-style "busy" as CGV_E_CONFLICT
 * when another instance holds the lock. */
int bc_setup(struct bc *b, struct cgv_error *err);
/* Delete the live services (through cgvd; virsh if that fails), remove any
 * domain with our prefix, SIGCONT processes we stopped that still exist,
 * stop cgvd, remove the working directory (unless keep_tmp). Idempotent. */
void bc_cleanup(struct bc *b);
/* false (and a note why) if cgvd has exited. */
bool bc_cgvd_alive(struct bc *b);

/* Apply spec text (a new service or an update) and remember name for the
 * clean-up. */
int bc_apply(struct bc *b, const char *name, const char *text, struct cgv_error *err);
/* Delete a service through cgvd, retrying while it is busy (409) or libvirt
 * reconnects, up to a minute; forgets it for the clean-up on success. */
int bc_delete(struct bc *b, const char *name, struct cgv_error *err);

/* ---- child processes ------------------------------------------------------------ */

/* Wait for pid to end, at most timeout_ms (then SIGKILL it). */
int bc_wait_child(pid_t pid, long timeout_ms, int *status, struct cgv_error *err);
/* Run argv (PATH lookup), stdin /dev/null, stdout+stderr into b->cmd_log;
 * 0 if it exited 0. */
int bc_run(struct bc *b, const char *const *argv, struct cgv_error *err);
/* The tail of the last bc_run()'s output. */
void bc_cmd_output(struct bc *b, char *buf, size_t cap);
/* Spawn argv with stdout into a new pipe (*out_fd, non-blocking, close-on-
 * exec; caller closes) and stderr appended to errlog (NULL: /dev/null);
 * *wall_us: just before the spawn. */
int bc_spawn_pipe(const char *const *argv, const char *errlog, pid_t *pid, int *out_fd,
                  int64_t *wall_us, struct cgv_error *err);

/* ---- events --------------------------------------------------------------------- */

struct bc_event {
    int64_t id;
    int64_t time_ms; /* cgvd's wall clock */
    int64_t seen_us; /* our monotonic clock when the answer came */
    char type[48];
    char service[48];
    char vm[64];
    char msg[512];
};

void bc_event_from_json(const json_t *e, struct bc_event *out);

struct bc_want {
    const char *type;   /* exact type, or a prefix ending in '.' ("detect.") */
    const char *vm;     /* NULL: any VM */
    bool seen;
    struct bc_event ev; /* the first match */
};

/* Called for every event a wait sees (e.g. to count detections). */
typedef void (*bc_event_fn)(void *opaque, const struct bc_event *ev);

int bc_last_event_id(struct bc *b, int64_t *id, struct cgv_error *err);
/* Follow cgvd's events of service (NULL: all) after *after (long poll) until
 * every want was seen, at most timeout_ms. Each event is passed to fn first
 * (may be NULL). *after advances past what was read. */
int bc_wait_events(struct bc *b, int64_t *after, const char *service, struct bc_want *w,
                   size_t n, long timeout_ms, bc_event_fn fn, void *opaque,
                   struct cgv_error *err);
/* One long poll of at most wait_ms for events after *after; fn gets each. */
int bc_poll_events(struct bc *b, int64_t *after, const char *service, long wait_ms,
                   bc_event_fn fn, void *opaque, struct cgv_error *err);

/* ---- JSON ----------------------------------------------------------------------- */

/* The value at a dotted path ("ha.state"); borrowed, NULL if absent. */
json_t *bc_jget(const json_t *o, const char *path);
/* Its string, or "" (never NULL). */
const char *bc_jstr(const json_t *o, const char *path);
long long bc_jint(const json_t *o, const char *path);
/* The VM of a service JSON with that name (borrowed), NULL if none. */
json_t *bc_svc_vm(const json_t *svc, const char *vm);

/* Is the service (GET /v1/services/NAME) fully redundant in cgvd's view:
 * ha.up, every VM running, not busy, agent up and out of its heartbeat
 * grace, HA state healthy with an acknowledged role other than none, and
 * every assignment held by an
 * acknowledged active? If not, why says what is missing first. */
bool bc_svc_redundant(const json_t *svc, char *why, size_t cap);
/* How many VMs of the service hold an active role for assignment asg ("a0")
 * in cgvd's view (must never exceed 1 outside nway-active). */
unsigned bc_svc_actives_for(const json_t *svc, const char *asg);

/* ---- fault injection -------------------------------------------------------------- */

/* Run "pre; echo <marker>; action" in the root shell on the serial console
 * socket path, and wait (at most timeout_ms) until the marker comes back:
 * the shell reached the action. *wall_us / *mono_us: when we read the
 * marker (the injection time). The marker is computed by the shell, so the
 * echo of the typed line never matches it. pre may be NULL. */
int bc_console_inject(const char *path, const char *pre, const char *action, long timeout_ms,
                      int64_t *wall_us, int64_t *mono_us, struct cgv_error *err);

/* Is pid a running QEMU of libvirt domain dom ("guest=dom," on its command
 * line)? */
bool bc_qemu_is(pid_t pid, const char *dom);
/* The thread id of QEMU's first vCPU thread (comm "CPU 0/..."), or -1. */
pid_t bc_vcpu_tid(pid_t pid);
/* SIGSTOP thread tid of pid (Linux stops the whole thread group) and
 * remember pid for the clean-up's SIGCONT. *wall_us, *mono_us: just before
 * the signal. */
int bc_sigstop_vcpu(struct bc *b, pid_t pid, pid_t tid, int64_t *wall_us, int64_t *mono_us,
                    struct cgv_error *err);
/* SIGCONT every process bc_sigstop_vcpu() stopped that still runs (the same
 * process: start time checked). */
void bc_resume_stopped(struct bc *b);

/* Send udpping requests to ip:BC_NF_PORT every 100 ms until one is answered,
 * at most timeout_ms; vm (may be NULL) gets the name the reply carries. */
int bc_udp_probe(const char *ip, long timeout_ms, char *vm, size_t cap, struct cgv_error *err);

/* The fault kinds both benchmarks inject. */
enum bc_fault { BC_F_DEATH, BC_F_PANIC, BC_F_HANG, BC_F_WATCHDOG, BC_F_APP, BC_F_N };

extern const char *const bc_fault_names[BC_F_N];  /* "process_death", ... */
extern const char *const bc_detect_types[BC_F_N]; /* "detect.process_death", ... */

/* --faults LIST (comma-separated fault names) into on[]: only those set.
 * Returns -1 (after saying which, prefixed with tag) on an unknown name. */
int bc_parse_faults(const char *tag, const char *list, bool on[BC_F_N]);

/* Inject fault k into the VM whose QEMU is pid (libvirt domain dom, serial
 * console socket console):
 *   process_death  SIGKILL of the QEMU process;
 *   hang           SIGSTOP of its vCPU thread (the whole process stops);
 *   panic          `echo c > /proc/sysrq-trigger` on the console;
 *   watchdog       `kill -USR2 <cgv-guest>` on the console (stops petting);
 *   application    `kill -9 <cgv-nf>` on the console.
 * *wall_us / *mono_us: the injection time (just before the signal; for the
 * console kinds when the shell printed the marker just before the action).
 * Fails (nothing injected, or not known to be) if pid is not dom's QEMU, or
 * the shell did not get to the action within console_timeout_ms. */
int bc_inject(struct bc *b, enum bc_fault k, pid_t pid, const char *dom, const char *console,
              long console_timeout_ms, int64_t *wall_us, int64_t *mono_us,
              struct cgv_error *err);

/* ---- threads and CPUs (bench/pinning) ------------------------------------------------- */

/* Thread ids of the vCPU threads of QEMU pid (comm "CPU n/..."), tids[n] for
 * vCPU n; returns how many vCPUs (highest n + 1, at most cap; a slot whose
 * thread was not found stays 0), or -1 if pid is gone. */
int bc_vcpu_tids(pid_t pid, pid_t *tids, size_t cap);
/* The CPUs thread tid may run on (sched_getaffinity) as a list ("0-1,3");
 * -1 if the thread is gone. */
int bc_thread_cpus(pid_t tid, char *buf, size_t cap);
/* User + system CPU time of process pid so far, in seconds (/proc/PID/stat);
 * -1 if it is gone. */
double bc_proc_cpu_seconds(pid_t pid);
/* How long thread tid of process pid has waited, runnable, for a CPU so far
 * (the second field of /proc/PID/task/TID/schedstat), in ns; -1 if that is
 * not available. */
long long bc_thread_run_delay_ns(pid_t pid, pid_t tid);
/* How long thread tid of process pid has run on a CPU so far (the first
 * field of its schedstat), in ns; -1 if that is not available. */
long long bc_thread_run_ns(pid_t pid, pid_t tid);

/* ---- options ------------------------------------------------------------------------- */

/* The options every benchmark on struct bc shares: getopt_long codes (above
 * any benchmark's own), their struct option entries (BC_OPTIONS; --udpping
 * is separate, BC_OPTION_UDPPING, for the benchmarks with a UDP client) and
 * bc_take_option(), which stores one into o and returns true if c is one of
 * them. */
enum { BC_O_IMGDIR = 0x1000, BC_O_CGVD, BC_O_UDPPING, BC_O_VIRSH, BC_O_URI, BC_O_TMP,
       BC_O_KEEP, BC_O_LEVEL };
#define BC_OPTIONS                                                                           \
    {"image-dir", required_argument, NULL, BC_O_IMGDIR},                                      \
        {"cgvd", required_argument, NULL, BC_O_CGVD},                                         \
        {"virsh", required_argument, NULL, BC_O_VIRSH},                                       \
        {"libvirt-uri", required_argument, NULL, BC_O_URI},                                   \
        {"tmp-dir", required_argument, NULL, BC_O_TMP},                                       \
        {"keep-tmp", no_argument, NULL, BC_O_KEEP},                                           \
        {"cgvd-log-level", required_argument, NULL, BC_O_LEVEL}
#define BC_OPTION_UDPPING {"udpping", required_argument, NULL, BC_O_UDPPING}
bool bc_take_option(struct bc_opts *o, int c, const char *arg);

int bc_parse_uint(const char *s, unsigned max, unsigned *out);

#endif
