/* itest.h — the harness of cgv's integration tests: a cgvd of our own on a
 * real libvirtd (qemu:///system), real QEMU/TCG guests from the installed
 * guest image, and helpers that wait on cgvd's events with deadlines.
 *
 * What the harness owns, all under one short temp dir (/tmp/cgvit.XXXXXX):
 * cgvd's socket, state, run and log directories, its log file and its
 * stderr, spec files and the output of every command it runs. cgvd runs with
 * --domain-prefix cgvit- on bridge cgvit0 (10.78.0.1/24, pool .100-.199), so
 * nothing here touches anybody else's domains, bridges or files.
 *
 * Environment (set by tests/integration/meson.build):
 *   CGVD_BIN, CGV_BIN, UDPPING_BIN  the binaries under test (required)
 *   CGV_SOURCE_ROOT                  for fixtures and scripts/libvirt-up.sh
 *   CGV_IT_IMAGE_DIR                 guest images (default /var/lib/cgv/images)
 *   CGV_IT_KEEP=1                    keep the temp dir afterwards
 *   CGV_IT_STRICT=1                  known cgvd bugs fail tests instead of
 *                                    turning them into skips
 *   CGV_IT_FILTER=PATTERN            run only the matching tests (cmocka)
 *
 * Failures print what the test was waiting for, the events seen, the tail
 * of cgvd's log and stderr and the tail of the VMs' console logs.
 *
 * Ownership: json_t * results are new references (json_decref), char *
 * results are malloc'd (free), unless a comment says "borrowed".
 */
#ifndef ITEST_H
#define ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "cgv_common.h"

#define IT_PREFIX "cgvit-"
#define IT_BRIDGE "cgvit0"
#define IT_GATEWAY "10.78.0.1/24"
#define IT_POOL "10.78.0.100-10.78.0.199"
#define IT_MAX_SERVICES 16
#define IT_MAX_BUGS 8
#define IT_MAX_BG 8
#define IT_MAX_STOPPED 8

struct itest {
    const char *cgvd_bin, *cgv_bin, *udpping_bin, *src_root, *image_dir;
    char dir[64];
    char sock[128], state_dir[128], run_dir[128], log_dir[128];
    char log_file[128], err_file[128];
    unsigned stop_timeout_ms;
    pid_t cgvd_pid;
    unsigned cgvd_starts;
    int64_t t0_ms;
    bool strict, keep;
    bool failed; /* an it_fail happened: keep the temp dir for diagnosis */

    /* services the tests created: deleted at teardown */
    char services[IT_MAX_SERVICES][48];
    size_t n_services;

    /* known cgvd bugs the running test observed (see it_bug) */
    char bugs[IT_MAX_BUGS][512];
    size_t n_bugs;
    const char *test_name;

    /* background commands still running (see it_bg_start) and processes a
     * test stopped with SIGSTOP (see it_note_stopped): it_begin() and the
     * group teardown clean up what a failed test left behind */
    pid_t bg_pids[IT_MAX_BG];
    pid_t stopped_pids[IT_MAX_STOPPED];
};

/* ---- group lifetime (cmocka group setup / teardown) ---------------------- */

/* Creates the temp dir, removes leftover cgvit-* domains of an earlier,
 * crashed run, starts cgvd and waits until it serves. *state = struct itest. */
int it_group_setup(void **state);
/* Deletes every service the tests created (through the API), stops cgvd,
 * destroys and undefines any cgvit-* domain left, removes the temp dir. */
int it_group_teardown(void **state);
/* Non-zero if the teardown found a problem cmocka cannot report any more
 * (a sanitizer report at cgvd's exit, cgvd not stopping): main() returns it. */
int it_final_status(void);

/* Start of a test: banner, forget earlier known bugs, make sure cgvd and
 * libvirtd run (an earlier failed test may have left them down). */
void it_begin(struct itest *t, const char *name);
/* End of a test: fail if cgvd's stderr/log holds a sanitizer report; then,
 * if known bugs were observed, skip (or fail with CGV_IT_STRICT=1) naming
 * them. */
void it_end(struct itest *t);

/* ---- failing with diagnostics --------------------------------------------- */

void it_log(struct itest *t, const char *fmt, ...) CGV_PRINTF(2, 3);
/* Print msg, the cgvd log/stderr tail and the console log tail of vm (every
 * VM of cgvd if vm is NULL), then fail the test at file:line. */
void it_fail_at(struct itest *t, const char *vm, const char *file, int line,
                const char *fmt, ...) CGV_PRINTF(5, 6);
#define it_fail(t, vm, ...) it_fail_at((t), (vm), __FILE__, __LINE__, __VA_ARGS__)
#define it_check(t, cond, vm, ...)                                                        \
    do {                                                                                  \
        if (!(cond))                                                                      \
            it_fail_at((t), (vm), __FILE__, __LINE__, "check failed: " #cond ": "         \
                       __VA_ARGS__);                                                      \
    } while (0)
/* A known cgvd bug was observed (when observed is true): remembered and
 * reported by it_end(). Returns observed. */
bool it_bug(struct itest *t, bool observed, const char *fmt, ...) CGV_PRINTF(3, 4);
/* Print the diagnostics only. */
void it_diag(struct itest *t, const char *vm);

/* ---- cgvd process ----------------------------------------------------------- */

void it_cgvd_start(struct itest *t);
bool it_cgvd_running(struct itest *t);
/* Send sig and wait (deadline) until the process is gone; returns the wait
 * status. */
int it_cgvd_signal_wait(struct itest *t, int sig, int timeout_ms);
/* Fail if cgvd's stderr or log file holds an ASan/UBSan/LSan report. */
void it_check_sanitizer(struct itest *t);

/* ---- API -------------------------------------------------------------------- */

/* Every call uses a new connection (see the report on keep-alive after a
 * deferred answer: a reused connection can hang). */
struct client *it_client(struct itest *t);
/* Any request. Returns 0 on 2xx with *out (may be NULL) set, else -1 with
 * *status and a copy of cgvd's "error" object in *error (may be NULL). */
int it_api(struct itest *t, const char *method, const char *path, const char *ctype,
           const char *body, int *status, json_t **out, json_t **error);
/* GET that must succeed. */
json_t *it_get(struct itest *t, const char *path);
json_t *it_vm(struct itest *t, const char *name);
json_t *it_service(struct itest *t, const char *name);
/* POST /v1/vms/NAME/OP that must succeed; returns the answer. */
json_t *it_vm_op(struct itest *t, const char *name, const char *op);
/* POST /v1/apply with text (YAML); returns 0 and the answer or -1 and the
 * error object. */
int it_apply(struct itest *t, const char *text, bool dry_run, int *status, json_t **out,
             json_t **error);
/* Remember a service to delete at teardown. */
void it_service_created(struct itest *t, const char *name);
void it_service_forget(struct itest *t, const char *name);

/* ---- events ------------------------------------------------------------------- */

/* The id of the newest event cgvd has. */
int64_t it_event_cursor(struct itest *t);
/* Every event with id > after (of vm, if not NULL), oldest first. */
json_t *it_events(struct itest *t, int64_t after, const char *vm);
/* Follow /v1/events?after=... (long poll) until an event of type (of vm if
 * not NULL, whose message contains msg_part if not NULL) arrives; returns it.
 * Fails the test after timeout_ms with the events seen. */
json_t *it_wait_event(struct itest *t, int64_t after, const char *type, const char *vm,
                      const char *msg_part, int timeout_ms);
/* Count events of type (of vm) in an events array. */
size_t it_count_events(const json_t *events, const char *type, const char *vm);

/* ---- VMs ----------------------------------------------------------------------- */

/* Wait until the agent of vm says hello after event id `after`, unless it is
 * up already. */
void it_wait_agent_up(struct itest *t, const char *vm, int64_t after, int timeout_ms);
/* Dotted path lookups in JSON ("agent.heartbeats"); borrowed / values. */
json_t *it_jget(const json_t *o, const char *path);
const char *it_jstr(const json_t *o, const char *path);
int64_t it_jint(const json_t *o, const char *path);
/* The VM's first address (borrowed from vm). */
const char *it_vm_addr(const json_t *vm);

/* ---- commands --------------------------------------------------------------------- */

/* Run argv (argv[0] a path), stdout/stderr captured into *out and *err (may be
 * NULL); kills it and fails after timeout_ms. Returns the exit status
 * (128+signal if killed by a signal). */
int it_run(struct itest *t, int timeout_ms, char **out, char **err,
           const char *const argv[]);
/* cgv --socket SOCK ARGS... (NULL-terminated). Checks its stderr for
 * sanitizer reports. */
int it_cgv(struct itest *t, char **out, char **err, ...);
/* cgv-udpping --json -c count -i 100 -t timeout_ms ADDR; *summary gets its
 * JSON summary (may be NULL). Returns its exit status. */
int it_udpping(struct itest *t, const char *addr, int count, int timeout_ms,
               json_t **summary);
/* Run cmd in the root shell on the VM's serial console (a line written to
 * its console socket, output read until a marker the shell computes).
 * Returns cmd's exit status; *output gets everything read (may be NULL). */
int it_console(struct itest *t, const char *vm, const char *cmd, char **output,
               int timeout_ms);

/* Write one line to the VM's serial console without waiting for the
 * command's answer: for a command after which the shell may never answer
 * (echo c > /proc/sysrq-trigger). Returns once the shell has echoed the
 * whole line (QEMU drops input it has not fed to the UART yet when the
 * client disconnects); fails if it does not within 15 s. */
void it_console_send(struct itest *t, const char *vm, const char *cmd);

/* ---- background commands --------------------------------------------------------------- */

/* A command running while the test does other things (a UDP client during
 * a fault); its stdout and stderr go to files in the temp dir. A test that
 * fails leaves it running: the next it_begin() and the group teardown
 * SIGKILL it. */
struct it_bg {
    pid_t pid;        /* 0 once stopped */
    char out[160], err[160];
    char what[64];    /* argv[0]'s base name, for messages */
};
void it_bg_start(struct itest *t, struct it_bg *bg, const char *const argv[]);
/* Its stdout so far (caller frees; "" if nothing yet). */
char *it_bg_output(const struct it_bg *bg);
/* Wait (deadline) until its stdout contains needle; fails the test after
 * timeout_ms. */
void it_bg_wait_output(struct itest *t, const struct it_bg *bg, const char *needle,
                       int timeout_ms);
/* Send sig (0: none, just wait for the end) and wait until it exits (SIGKILL
 * and fail after timeout_ms). Returns the exit status as it_run does; *out and
 * *err (may be NULL) get its stdout and stderr. */
int it_bg_stop(struct itest *t, struct it_bg *bg, int sig, int timeout_ms, char **out,
               char **err);

/* Remember a process the test stopped (SIGSTOP): if it still exists and is
 * stopped at the next it_begin() or at teardown, it gets SIGCONT. */
void it_note_stopped(struct itest *t, pid_t pid);
/* SIGCONT every noted process that is still stopped; forget them all. */
void it_release_stopped(struct itest *t);

/* ---- libvirt (virsh) ------------------------------------------------------------------ */

/* Names of all libvirt domains (defined or running) that start with prefix:
 * a JSON array of strings, sorted. */
json_t *it_domains(struct itest *t, const char *prefix);
bool it_domain_exists(struct itest *t, const char *name);
/* virsh destroy + undefine of every domain starting with prefix. */
void it_remove_domains(struct itest *t, const char *prefix);

/* ---- files ------------------------------------------------------------------------------- */

/* Write text to DIR/name; returns the path (caller frees). */
char *it_write_file(struct itest *t, const char *name, const char *text);
/* CGV_SOURCE_ROOT/tests/fixtures/integration/name (caller frees). */
char *it_fixture(struct itest *t, const char *name);
/* Whole file or NULL. */
char *it_read_file(const char *path);

#endif
