/* Unit tests for hv.c on libvirt's in-process test driver (test:///default):
 * connection, domain operations, info and list with and without cgv
 * metadata, lifecycle events through hv_event_fd()/hv_next_event(), the
 * mapping of libvirt's errors, and everything refused while disconnected.
 *
 * Every domain XML defined here comes from hv_xml_build(), so defining it is
 * also a check that libvirt's own parser and RNG schema (the define uses
 * VIR_DOMAIN_DEFINE_VALIDATE) accept what cgv generates; the fixtures of
 * tests/fixtures/hv are defined the same way.
 *
 * Domains are named cgvut-*; the test driver's state lives in this process
 * only. Waits are poll() on the event fd with a deadline, never sleeps. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cgv_log.h"
#include "hv.h"

#ifndef HV_FIXTURES
#error "HV_FIXTURES must name the fixture directory"
#endif

#define URI "test:///default"
#define OWNER "5d1c3b9e-0000-4000-8000-00000000c9e7"
#define EVENT_DEADLINE_MS 5000

struct ctx {
    struct hv *hv;
    char pid_dir[64];
};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

/* A cgv definition of domain "cgvut-<vm>" with a UUID derived from seed. */
static char *make_xml(const char *vm, unsigned seed, int64_t generation)
{
    struct hv_domain_def d;
    struct cgv_error err = {0};
    char name[64], uuid[37], *xml = NULL;

    snprintf(name, sizeof(name), "cgvut-%s", vm);
    snprintf(uuid, sizeof(uuid), "c9e70000-0000-4000-8000-%012x", seed);
    memset(&d, 0, sizeof(d));
    d.name = name;
    d.uuid = uuid;
    d.owner = OWNER;
    d.service = "ut";
    d.vm = vm;
    d.generation = generation;
    d.vcpus = 1;
    d.memory_mib = 64;
    d.kvm = (seed & 1) != 0;
    d.kernel = "/var/lib/cgv/images/default/vmlinuz";
    d.initrd = "/var/lib/cgv/images/default/initrd.img";
    d.cmdline = "console=ttyS0";
    d.n_nics = 2;
    for (unsigned i = 0; i < 2; i++) {
        snprintf(d.nics[i].bridge, sizeof(d.nics[i].bridge), "cgvut%u", i);
        hv_mac_from_uuid(uuid, i, d.nics[i].mac);
    }
    d.console_socket = "/tmp/cgvut/console.sock";
    d.console_log = "/tmp/cgvut/console.log";
    d.agent_socket = "/tmp/cgvut/agent.sock";
    if (hv_xml_build(&d, &xml, &err) != 0) {
        print_error("hv_xml_build: %s\n", err.msg);
        fail();
    }
    return xml;
}

static void define_ok(struct hv *hv, const char *xml)
{
    struct cgv_error err = {0};

    if (hv_dom_define(hv, xml, &err) != 0) {
        print_error("libvirt refused the XML: %s\n%s\n", err.msg, xml);
        fail();
    }
}

static void define_vm(struct hv *hv, const char *vm, unsigned seed)
{
    char *xml = make_xml(vm, seed, 1);

    define_ok(hv, xml);
    free(xml);
}

#define OK(call)                                                                       \
    do {                                                                               \
        struct cgv_error e_ = {0};                                                     \
        if ((call) != 0) {                                                             \
            print_error("%s failed: %s (%s)\n", #call, e_.msg, cgv_errcode_name(e_.code)); \
            fail();                                                                    \
        }                                                                              \
    } while (0)
#define E (&e_)

/* The call fails with code, and the message names libvirt. */
#define FAILS(want_, call)                                                              \
    do {                                                                               \
        struct cgv_error e_ = {0};                                                     \
        int rc_ = (call);                                                              \
        if (rc_ != -1 || e_.code != (want_)) {                                          \
            print_error("%s: rc %d, code %s (%s), want %s\n", #call, rc_,              \
                        cgv_errcode_name(e_.code), e_.msg, cgv_errcode_name(want_));    \
            fail();                                                                    \
        }                                                                              \
        assert_non_null(strstr(e_.msg, "libvirt"));                                    \
    } while (0)

static int64_t now_ms(void)
{
    return cgv_mono_ms();
}

/* Wait until an event for domain (NULL: any) of this kind (and lifecycle,
 * when kind is HV_EV_LIFECYCLE) arrives; events before it are dropped. */
static void wait_event(struct hv *hv, const char *domain, enum hv_ev_kind kind,
                       enum hv_lifecycle lc, struct hv_event *out)
{
    int64_t deadline = now_ms() + EVENT_DEADLINE_MS;
    struct hv_event ev;

    for (;;) {
        struct pollfd p = {.fd = hv_event_fd(hv), .events = POLLIN};
        int64_t left = deadline - now_ms();
        int n;

        while (hv_next_event(hv, &ev)) {
            if ((!domain || strcmp(ev.domain, domain) == 0) && ev.kind == kind &&
                (kind != HV_EV_LIFECYCLE || ev.lifecycle == lc)) {
                if (out)
                    *out = ev;
                return;
            }
        }
        if (left <= 0) {
            print_error("no %d/%s event for %s within %d ms\n", kind, hv_lifecycle_name(lc),
                        domain ? domain : "any domain", EVENT_DEADLINE_MS);
            fail();
        }
        n = poll(&p, 1, (int)left);
        assert_true(n >= 0 || errno == EINTR);
    }
}

/* No event at all shows up within ms (and the fd is not left readable). */
static void assert_quiet(struct hv *hv, int ms)
{
    struct pollfd p = {.fd = hv_event_fd(hv), .events = POLLIN};
    struct hv_event ev;
    int64_t deadline = now_ms() + ms;

    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return;
        if (poll(&p, 1, (int)left) > 0 && hv_next_event(hv, &ev)) {
            print_error("unexpected event %d/%s for %s\n", ev.kind,
                        hv_lifecycle_name(ev.lifecycle), ev.domain);
            fail();
        }
    }
}

static void drain(struct hv *hv)
{
    struct hv_event ev;

    while (hv_next_event(hv, &ev))
        ;
}

static void info_ok(struct hv *hv, const char *name, struct hv_dom_info *info)
{
    OK(hv_dom_info(hv, name, info, E));
    assert_string_equal(info->name, name);
}

/* ------------------------------------------------------------------ */
/* fixtures                                                            */

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct cgv_error err = {0};

    strcpy(c->pid_dir, "/tmp/cgvut-hvpid-XXXXXX");
    if (!mkdtemp(c->pid_dir))
        return -1;
    if (hv_new(URI, c->pid_dir, &c->hv, &err) != 0 || hv_connect(c->hv, &err) != 0) {
        fprintf(stderr, "hv: %s\n", err.msg);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    DIR *d;
    struct dirent *e;

    hv_free(c->hv);
    d = opendir(c->pid_dir);
    while (d && (e = readdir(d))) {
        char p[512];
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", c->pid_dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(c->pid_dir);
    free(c);
    return 0;
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_connect(void **state)
{
    struct ctx *c = *state;

    assert_true(hv_is_connected(c->hv));
    assert_string_equal(hv_uri(c->hv), URI);
    OK(hv_connect(c->hv, E)); /* connected already: no-op */
    assert_true(hv_is_connected(c->hv));
    assert_true(hv_event_fd(c->hv) >= 0);
}

/* define, start, suspend, resume, destroy: each reported by info and by a
 * lifecycle event with libvirt's detail. */
static void test_lifecycle(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_dom_info info;
    struct hv_event ev;
    const char *name = "cgvut-life";
    char *xml = make_xml("life", 1, 5);

    drain(hv);
    define_ok(hv, xml);
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_DEFINED, &ev);
    assert_string_equal(ev.detail_name, "added");
    assert_string_equal(ev.uuid, "c9e70000-0000-4000-8000-000000000001");
    assert_true(ev.mono_us > 0 && ev.mono_us <= cgv_mono_us());
    info_ok(hv, name, &info);
    assert_int_equal(info.state, HV_ST_SHUTOFF);
    assert_true(info.persistent);
    assert_int_equal(info.pid, 0);
    assert_true(info.has_meta);
    assert_string_equal(info.meta.owner, OWNER);
    assert_string_equal(info.meta.service, "ut");
    assert_string_equal(info.meta.vm, "life");
    assert_int_equal(info.meta.generation, 5);
    assert_string_equal(info.uuid, "c9e70000-0000-4000-8000-000000000001");

    /* Redefining the same domain is an update. */
    define_ok(hv, xml);
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_DEFINED, &ev);
    assert_string_equal(ev.detail_name, "updated");
    free(xml);

    OK(hv_dom_start(hv, name, E));
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_STARTED, &ev);
    assert_string_equal(ev.detail_name, "booted");
    info_ok(hv, name, &info);
    assert_int_equal(info.state, HV_ST_RUNNING);
    assert_string_equal(info.reason, "booted");
    assert_string_equal(hv_state_name(info.state), "running");

    OK(hv_dom_suspend(hv, name, E));
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_SUSPENDED, &ev);
    assert_string_equal(ev.detail_name, "paused");
    info_ok(hv, name, &info);
    assert_int_equal(info.state, HV_ST_PAUSED);
    assert_string_equal(info.reason, "user");

    OK(hv_dom_resume(hv, name, E));
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_RESUMED, &ev);
    assert_string_equal(ev.detail_name, "unpaused");
    info_ok(hv, name, &info);
    assert_int_equal(info.state, HV_ST_RUNNING);

    OK(hv_dom_reset(hv, name, E));
    OK(hv_dom_reboot(hv, name, E));
    info_ok(hv, name, &info);
    assert_int_equal(info.state, HV_ST_RUNNING);

    OK(hv_dom_destroy(hv, name, E));
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_STOPPED, &ev);
    assert_string_equal(ev.detail_name, "destroyed");
    assert_int_equal(ev.detail, 1);
    info_ok(hv, name, &info);
    assert_int_equal(info.state, HV_ST_SHUTOFF);
    assert_string_equal(info.reason, "destroyed");
    assert_string_equal(hv_lifecycle_name(HV_LC_STOPPED), "stopped");
}

static void test_undefine(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_dom_info info;
    struct hv_event ev;
    struct cgv_error err = {0};
    const char *name = "cgvut-gone";

    define_vm(hv, "gone", 2);
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_DEFINED, NULL);
    if (hv_dom_undefine(hv, name, &err) != 0) {
        /* LIMITATION (not a bug on QEMU): src/hv/hv.c:528 (op_undefine)
         * always passes VIR_DOMAIN_UNDEFINE_NVRAM, which the test driver
         * refuses; virsh retries without it. */
        print_error("undefine: %s\n", err.msg);
        fail();
    }
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_UNDEFINED, &ev);
    assert_string_equal(ev.detail_name, "removed");
    FAILS(CGV_E_NOTFOUND, hv_dom_info(hv, name, &info, E));
}

/* The running domain's QEMU pid comes from libvirt's pid file; a stale or
 * garbled pid file gives 0. */
static void test_pid(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_dom_info info;
    struct cgv_error err = {0};
    const char *name = "cgvut-pid";
    char path[256], text[32];
    pid_t child;
    int status;

    define_vm(hv, "pid", 3);
    snprintf(path, sizeof(path), "%s/%s.pid", c->pid_dir, name);
    snprintf(text, sizeof(text), "%d\n", (int)getpid());
    assert_int_equal(cgv_write_file_atomic(path, text, strlen(text), 0644, &err), 0);

    /* Not running: no pid, whatever the file says. */
    info_ok(hv, name, &info);
    assert_int_equal(info.pid, 0);
    OK(hv_dom_start(hv, name, E));
    info_ok(hv, name, &info);
    assert_int_equal(info.pid, getpid());
    assert_int_equal(hv_dom_pid(hv, name), getpid());

    /* A pid that no longer exists. */
    child = fork();
    if (child == 0)
        _exit(0);
    assert_true(child > 0);
    assert_int_equal(waitpid(child, &status, 0), child);
    snprintf(text, sizeof(text), "%d", (int)child);
    assert_int_equal(cgv_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
    assert_int_equal(hv_dom_pid(hv, name), 0);

    assert_int_equal(cgv_write_file_atomic(path, "garbage", 7, 0644, &err), 0);
    assert_int_equal(hv_dom_pid(hv, name), 0);
    assert_int_equal(cgv_write_file_atomic(path, "-1", 2, 0644, &err), 0);
    assert_int_equal(hv_dom_pid(hv, name), 0);
    unlink(path);
    assert_int_equal(hv_dom_pid(hv, name), 0);
    assert_int_equal(hv_dom_pid(hv, "cgvut-no-such"), 0);
    OK(hv_dom_destroy(hv, name, E));
}

static const struct hv_dom_info *find(const struct hv_dom_info *l, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(l[i].name, name) == 0)
            return &l[i];
    }
    return NULL;
}

/* list shows every domain; has_meta only where a cgv element is. */
static void test_list(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_dom_info *l = NULL;
    const struct hv_dom_info *d;
    size_t n = 0;
    static const char plain[] =
        "<domain type='qemu'><name>cgvut-plain</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>";
    static const char foreign[] =
        "<domain type='qemu'><name>cgvut-foreign</name><metadata>"
        "<o:instance xmlns:o='https://example.com/other'><o:owner>x</o:owner>"
        "<o:service>s</o:service><o:vm>v</o:vm><o:generation>1</o:generation>"
        "</o:instance></metadata><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>";
    static const char partial[] =
        "<domain type='qemu'><name>cgvut-partial</name><metadata>"
        "<c:instance xmlns:c='" HV_META_NS "'><c:owner>x</c:owner></c:instance>"
        "</metadata><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>";

    define_vm(hv, "list-a", 10);
    define_vm(hv, "list-b", 11);
    define_ok(hv, plain);
    define_ok(hv, foreign);
    define_ok(hv, partial);
    OK(hv_dom_start(hv, "cgvut-list-b", E));

    OK(hv_dom_list(hv, &l, &n, E));
    assert_true(n >= 6);
    d = find(l, n, "test"); /* the test driver's own domain */
    assert_non_null(d);
    assert_false(d->has_meta);
    d = find(l, n, "cgvut-list-a");
    assert_non_null(d);
    assert_true(d->has_meta);
    assert_string_equal(d->meta.vm, "list-a");
    assert_string_equal(d->meta.owner, OWNER);
    assert_int_equal(d->state, HV_ST_SHUTOFF);
    d = find(l, n, "cgvut-list-b");
    assert_non_null(d);
    assert_true(d->has_meta);
    assert_int_equal(d->state, HV_ST_RUNNING);
    assert_true(d->persistent);
    d = find(l, n, "cgvut-plain");
    assert_non_null(d);
    assert_false(d->has_meta);
    assert_int_equal(d->meta.owner[0], '\0');
    d = find(l, n, "cgvut-foreign");
    assert_non_null(d);
    assert_false(d->has_meta);
    d = find(l, n, "cgvut-partial");
    assert_non_null(d);
    assert_false(d->has_meta);
    free(l);
    OK(hv_dom_destroy(hv, "cgvut-list-b", E));
}

/* libvirt's errors map to cgv's codes and keep libvirt's message. */
static void test_errors(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_dom_info info;
    struct hv_dom_info *l = NULL;
    size_t n;
    const char *missing = "cgvut-no-such-domain";

    FAILS(CGV_E_NOTFOUND, hv_dom_start(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_destroy(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_suspend(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_resume(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_shutdown(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_reboot(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_reset(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_undefine(hv, missing, E));
    FAILS(CGV_E_NOTFOUND, hv_dom_save(hv, missing, "/tmp/cgvut.save", E));
    FAILS(CGV_E_NOTFOUND, hv_dom_info(hv, missing, &info, E));

    /* Wrong state: CONFLICT. */
    define_vm(hv, "errs", 20);
    FAILS(CGV_E_CONFLICT, hv_dom_destroy(hv, "cgvut-errs", E));
    FAILS(CGV_E_CONFLICT, hv_dom_reset(hv, "cgvut-errs", E));
    /* (suspending a shut-off domain or starting a running one is an
     * internal error in the test driver, OPERATION_INVALID in QEMU's: the
     * integration suite checks those) */
    OK(hv_dom_start(hv, "cgvut-errs", E));
    OK(hv_dom_destroy(hv, "cgvut-errs", E));
    FAILS(CGV_E_CONFLICT, hv_dom_destroy(hv, "cgvut-errs", E));

    /* XML libvirt refuses: LIBVIRT. */
    FAILS(CGV_E_LIBVIRT, hv_dom_define(hv, "<domain", E));
    FAILS(CGV_E_LIBVIRT, hv_dom_define(hv, "<domain type='qemu'><name>cgvut-x</name></domain>",
                                       E));
    FAILS(CGV_E_LIBVIRT, hv_dom_restore(hv, "/nonexistent/cgvut.save", E));

    /* After errors the connection still works. */
    OK(hv_dom_list(hv, &l, &n, E));
    free(l);
}

/* The message of a failed call names the domain and keeps libvirt's. */
static void test_error_context(void **state)
{
    struct ctx *c = *state;
    struct cgv_error err = {0};

    assert_int_equal(hv_dom_start(c->hv, "cgvut-ctx-missing", &err), -1);
    assert_non_null(strstr(err.msg, "cgvut-ctx-missing"));
    /* NULL err is allowed. */
    assert_int_equal(hv_dom_start(c->hv, "cgvut-ctx-missing", NULL), -1);
}

/* Disconnected: every operation fails with UNAVAIL, no events arrive;
 * connecting again brings both back. */
static void test_disconnected(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_dom_info info;
    struct hv_dom_info *l = (struct hv_dom_info *)1;
    size_t n = 99;
    char *xml = make_xml("disc", 30, 1);

    define_ok(hv, xml);
    hv_disconnect(hv);
    assert_false(hv_is_connected(hv));
    hv_disconnect(hv); /* twice is harmless */
    drain(hv);

    FAILS(CGV_E_UNAVAIL, hv_dom_define(hv, xml, E));
    FAILS(CGV_E_UNAVAIL, hv_dom_undefine(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_start(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_destroy(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_shutdown(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_reboot(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_reset(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_suspend(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_resume(hv, "cgvut-disc", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_save(hv, "cgvut-disc", "/tmp/cgvut.save", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_restore(hv, "/tmp/cgvut.save", E));
    FAILS(CGV_E_UNAVAIL, hv_dom_info(hv, "cgvut-disc", &info, E));
    FAILS(CGV_E_UNAVAIL, hv_dom_list(hv, &l, &n, E));
    assert_null(l);
    assert_int_equal(n, 0);
    assert_quiet(hv, 50);

    OK(hv_connect(hv, E));
    assert_true(hv_is_connected(hv));
    /* test:///default's state lives while a connection is open; this
     * process's other connections are closed, so define again. */
    define_ok(hv, xml);
    OK(hv_dom_start(hv, "cgvut-disc", E));
    wait_event(hv, "cgvut-disc", HV_EV_LIFECYCLE, HV_LC_STARTED, NULL);
    OK(hv_dom_destroy(hv, "cgvut-disc", E));
    wait_event(hv, "cgvut-disc", HV_EV_LIFECYCLE, HV_LC_STOPPED, NULL);
    free(xml);
}

/* A URI nothing answers: connect fails with UNAVAIL, the adapter stays
 * usable and disconnected. */
static void test_connect_fails(void **state)
{
    struct hv *hv = NULL;
    struct cgv_error err = {0};
    struct hv_dom_info info;

    (void)state;
    assert_int_equal(hv_new("test:///nonexistent/cgvut.xml", NULL, &hv, &err), 0);
    assert_int_equal(hv_connect(hv, &err), -1);
    assert_int_equal(err.code, CGV_E_UNAVAIL);
    assert_false(hv_is_connected(hv));
    FAILS(CGV_E_UNAVAIL, hv_dom_info(hv, "x", &info, E));
    hv_free(hv);
}

/* Once the consumer drained the queue the fd is no longer readable, and
 * events come in the order libvirt emitted them. */
static void test_event_fd(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    struct hv_event ev;
    struct pollfd p = {.fd = hv_event_fd(hv), .events = POLLIN};
    const char *name = "cgvut-efd";
    enum hv_lifecycle want[] = {HV_LC_DEFINED, HV_LC_STARTED, HV_LC_SUSPENDED,
                                HV_LC_RESUMED, HV_LC_STOPPED};
    size_t got = 0;
    int64_t deadline;

    drain(hv);
    assert_int_equal(poll(&p, 1, 0), 0);
    define_vm(hv, "efd", 40);
    OK(hv_dom_start(hv, name, E));
    OK(hv_dom_suspend(hv, name, E));
    OK(hv_dom_resume(hv, name, E));
    OK(hv_dom_destroy(hv, name, E));
    deadline = now_ms() + EVENT_DEADLINE_MS;
    while (got < CGV_ARRAY_LEN(want)) {
        int64_t left = deadline - now_ms();
        assert_true(left > 0);
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        while (hv_next_event(hv, &ev)) {
            if (strcmp(ev.domain, name) != 0 || ev.kind != HV_EV_LIFECYCLE)
                continue;
            assert_true(got < CGV_ARRAY_LEN(want));
            if (ev.lifecycle != want[got])
                print_error("event %zu is %s, want %s\n", got,
                            hv_lifecycle_name(ev.lifecycle), hv_lifecycle_name(want[got]));
            assert_int_equal(ev.lifecycle, want[got]);
            got++;
        }
    }
    assert_false(hv_next_event(hv, &ev));
    assert_int_equal(poll(&p, 1, 0), 0);
}

/* Each fixture of tests/fixtures/hv is accepted by libvirt's parser (with
 * schema validation), and its metadata survives libvirt's round trip. */
static void test_fixtures_define(void **state)
{
    struct ctx *c = *state;
    static const char *const files[] = {"one-nic-kvm", "one-nic-qemu", "three-nics-qemu",
                                        "max-nics", "no-nic", "special-chars", "tuned"};

    for (size_t i = 0; i < CGV_ARRAY_LEN(files); i++) {
        char path[512], *xml = NULL;
        struct cgv_error err = {0};
        struct hv_dom_info info;
        struct hv_meta want;
        const char *p, *q;
        char name[128];

        snprintf(path, sizeof(path), "%s/%s.xml", HV_FIXTURES, files[i]);
        assert_int_equal(cgv_read_file(path, 1 << 20, &xml, NULL, &err), 0);
        if (hv_dom_define(c->hv, xml, &err) != 0) {
            print_error("%s: libvirt refused it: %s\n", path, err.msg);
            fail();
        }
        /* The name, and the metadata as the fixture has it. */
        p = strstr(xml, "<name>") + 6;
        q = strstr(p, "</name>");
        snprintf(name, sizeof(name), "%.*s", (int)(q - p), p);
        p = strstr(xml, "<cgv:instance");
        q = strstr(p, "</cgv:instance>") + strlen("</cgv:instance>");
        {
            char *meta = strndup(p, (size_t)(q - p));
            /* A fragment cut from the document lacks the xmlns declaration
             * only if libxml2 put it elsewhere; it declares it right here. */
            assert_int_equal(hv_xml_parse_meta(meta, &want, &err), 0);
            free(meta);
        }
        info_ok(c->hv, name, &info);
        assert_true(info.has_meta);
        assert_string_equal(info.meta.owner, want.owner);
        assert_string_equal(info.meta.service, want.service);
        assert_string_equal(info.meta.vm, want.vm);
        assert_int_equal(info.meta.generation, want.generation);
        free(xml);
    }
}

/* Two adapters in one process (libvirt's event loop is process-wide): both
 * get events, and freeing one does not hang or starve the other. */
static void test_two_adapters(void **state)
{
    struct ctx *c = *state;
    struct hv *b = NULL;
    struct cgv_error err = {0};

    assert_int_equal(hv_new(URI, c->pid_dir, &b, &err), 0);
    assert_int_equal(hv_connect(b, &err), 0);
    drain(c->hv);
    define_vm(b, "two", 50);
    wait_event(b, "cgvut-two", HV_EV_LIFECYCLE, HV_LC_DEFINED, NULL);
    wait_event(c->hv, "cgvut-two", HV_EV_LIFECYCLE, HV_LC_DEFINED, NULL);
    hv_free(b);
    OK(hv_dom_start(c->hv, "cgvut-two", E));
    wait_event(c->hv, "cgvut-two", HV_EV_LIFECYCLE, HV_LC_STARTED, NULL);
    OK(hv_dom_destroy(c->hv, "cgvut-two", E));
}

/* A consumer that falls behind: the queue holds at most 4096 events, the
 * rest are dropped and counted in a log line; nothing is lost unaccounted
 * for. 2600 suspend/resume pairs give 5200 events. */
static void test_event_overflow(void **state)
{
    struct ctx *c = *state;
    struct hv *hv = c->hv;
    const char *name = "cgvut-flood";
    char *logbuf = NULL;
    size_t loglen = 0, got = 0, dropped = 0, max_batch = 0;
    const size_t want = 2 * 2600;
    FILE *log = open_memstream(&logbuf, &loglen);
    int64_t deadline;

    define_vm(hv, "flood", 60);
    OK(hv_dom_start(hv, name, E));
    wait_event(hv, name, HV_EV_LIFECYCLE, HV_LC_STARTED, NULL);
    drain(hv);
    cgv_log_set_stream(log);
    for (int i = 0; i < 2600; i++) {
        OK(hv_dom_suspend(hv, name, E));
        OK(hv_dom_resume(hv, name, E));
    }
    deadline = now_ms() + 20000;
    while (got + dropped < want) {
        struct pollfd p = {.fd = hv_event_fd(hv), .events = POLLIN};
        struct hv_event ev;
        size_t batch = 0;
        const char *q;
        int64_t left = deadline - now_ms();

        if (left <= 0) {
            cgv_log_set_stream(stderr);
            print_error("events: got %zu, dropped %zu, want %zu in all\n", got, dropped, want);
            fail();
        }
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        while (hv_next_event(hv, &ev)) {
            if (strcmp(ev.domain, name) == 0)
                got++;
            batch++;
        }
        if (batch > max_batch)
            max_batch = batch;
        fflush(log);
        dropped = 0;
        for (q = logbuf; q && (q = strstr(q, "event queue overflowed: ")); q++)
            dropped += strtoull(q + strlen("event queue overflowed: "), NULL, 10);
    }
    cgv_log_set_stream(stderr);
    fclose(log);
    free(logbuf);
    print_message("%zu events taken, %zu dropped, at most %zu in one drain\n", got, dropped,
                  max_batch);
    /* (a drain can exceed 4096: the event thread keeps pushing meanwhile) */
    assert_int_equal(got + dropped, want);
    OK(hv_dom_destroy(hv, name, E));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(hv_state_name(HV_ST_PAUSED), "paused");
    assert_string_equal(hv_state_name((enum hv_state)99), "unknown");
    assert_string_equal(hv_lifecycle_name(HV_LC_CRASHED), "crashed");
    assert_string_equal(hv_lifecycle_name((enum hv_lifecycle)-1), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undefine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnected, setup, teardown),
        cmocka_unit_test(test_connect_fails),
        cmocka_unit_test_setup_teardown(test_event_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixtures_define, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_adapters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_overflow, setup, teardown),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
