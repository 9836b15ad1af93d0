/* Unit tests for hv_accel: every row of the kvm/tcg decision table, and the
 * host probe against a fake /sys. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv_accel.h"

/* One row: what is asked, what the host has, what must be decided, and a
 * word the reason must contain. rc -1 means refused with CGV_E_INVALID. */
struct row {
    enum hv_accel_req req;
    bool dev_kvm, kvm_pvm, kvm_hw;
    int rc;
    enum hv_accel want;
    const char *why_has;
};

#define T true
#define F false
static const struct row table[] = {
    /* tcg asked for: always tcg */
    {HV_ACCEL_REQ_TCG, F, F, F, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, F, F, T, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, F, T, F, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, F, T, T, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, T, F, F, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, T, F, T, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, T, T, F, 0, HV_ACCEL_TCG, "asked for"},
    {HV_ACCEL_REQ_TCG, T, T, T, 0, HV_ACCEL_TCG, "asked for"},
    /* kvm asked for: refused without /dev/kvm, given (with a warning on PVM)
     * with it */
    {HV_ACCEL_REQ_KVM, F, F, F, -1, HV_ACCEL_TCG, "/dev/kvm"},
    {HV_ACCEL_REQ_KVM, F, F, T, -1, HV_ACCEL_TCG, "/dev/kvm"},
    {HV_ACCEL_REQ_KVM, F, T, F, -1, HV_ACCEL_TCG, "/dev/kvm"},
    {HV_ACCEL_REQ_KVM, F, T, T, -1, HV_ACCEL_TCG, "/dev/kvm"},
    {HV_ACCEL_REQ_KVM, T, F, F, 0, HV_ACCEL_KVM, "asked for"},
    {HV_ACCEL_REQ_KVM, T, F, T, 0, HV_ACCEL_KVM, "asked for"},
    {HV_ACCEL_REQ_KVM, T, T, F, 0, HV_ACCEL_KVM, "PVM"},
    {HV_ACCEL_REQ_KVM, T, T, T, 0, HV_ACCEL_KVM, "PVM"},
    /* auto: kvm only on real hardware KVM */
    {HV_ACCEL_REQ_AUTO, F, F, F, 0, HV_ACCEL_TCG, "missing"},
    {HV_ACCEL_REQ_AUTO, F, F, T, 0, HV_ACCEL_TCG, "missing"},
    {HV_ACCEL_REQ_AUTO, F, T, F, 0, HV_ACCEL_TCG, "missing"},
    {HV_ACCEL_REQ_AUTO, F, T, T, 0, HV_ACCEL_TCG, "missing"},
    {HV_ACCEL_REQ_AUTO, T, F, F, 0, HV_ACCEL_TCG, "not hardware"},
    {HV_ACCEL_REQ_AUTO, T, F, T, 0, HV_ACCEL_KVM, "hardware KVM"},
    {HV_ACCEL_REQ_AUTO, T, T, F, 0, HV_ACCEL_TCG, "PVM"},
    {HV_ACCEL_REQ_AUTO, T, T, T, 0, HV_ACCEL_TCG, "PVM"},
};
#undef T
#undef F

static void test_decision_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < CGV_ARRAY_LEN(table); i++) {
        const struct row *r = &table[i];
        struct hv_accel_probe p = {.dev_kvm = r->dev_kvm, .kvm_pvm = r->kvm_pvm,
                                   .kvm_hw = r->kvm_hw};
        struct cgv_error err = {0};
        enum hv_accel out = (enum hv_accel)42;
        char why[256] = "";
        int rc = hv_accel_decide(r->req, &p, &out, why, sizeof(why), &err);
        const char *text = rc == 0 ? why : err.msg;

        if (rc != r->rc || (rc == 0 && out != r->want) || !strstr(text, r->why_has)) {
            print_error("row %zu (req %d dev_kvm %d pvm %d hw %d): rc %d out %d \"%s\"\n", i,
                        r->req, r->dev_kvm, r->kvm_pvm, r->kvm_hw, rc, out, text);
            fail();
        }
        if (rc == 0) {
            /* The reason starts with the decision. */
            assert_memory_equal(why, hv_accel_name(out), 3);
            assert_int_equal(err.code, CGV_OK);
        } else {
            assert_int_equal(err.code, CGV_E_INVALID);
            assert_int_equal(out, 42); /* untouched */
        }
    }
}

/* A short buffer is cut and terminated, never overrun. */
static void test_why_truncated(void **state)
{
    struct hv_accel_probe p = {.dev_kvm = true, .kvm_pvm = true};
    enum hv_accel out;
    char why[8];

    (void)state;
    memset(why, 'x', sizeof(why));
    assert_int_equal(hv_accel_decide(HV_ACCEL_REQ_AUTO, &p, &out, why, 5, NULL), 0);
    assert_string_equal(why, "tcg:");
    assert_int_equal(why[5], 'x');
    assert_int_equal(hv_accel_decide(HV_ACCEL_REQ_KVM, &p, &out, why, 0, NULL), 0);
    assert_int_equal(out, HV_ACCEL_KVM);
    assert_int_equal(hv_accel_decide(HV_ACCEL_REQ_KVM, &(struct hv_accel_probe){0}, &out,
                                     why, sizeof(why), NULL),
                     -1);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(hv_accel_name(HV_ACCEL_KVM), "kvm");
    assert_string_equal(hv_accel_name(HV_ACCEL_TCG), "tcg");
}

/* ---- probe ------------------------------------------------------------ */


static void touch_dir(const char *base, const char *rel)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", base, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void rm_dir(const char *base, const char *rel)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", base, rel);
    rmdir(path);
}

static void test_probe_fake_sys(void **state)
{
    char dir[] = "/tmp/cgvut-accel-XXXXXX", notkvm[300];
    struct hv_accel_probe p;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    touch_dir(dir, "module");

    /* Nothing: no modules, and /dev/kvm is a path that does not exist. */
    memset(&p, 0xff, sizeof(p));
    hv_accel_probe_host(dir, "/nonexistent/kvm", &p);
    assert_false(p.dev_kvm);
    assert_false(p.kvm_pvm);
    assert_false(p.kvm_hw);

    /* A regular file does not answer the KVM API. */
    snprintf(notkvm, sizeof(notkvm), "%s/kvm", dir);
    fd = open(notkvm, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    touch_dir(dir, "module/kvm_pvm");
    hv_accel_probe_host(dir, notkvm, &p);
    assert_false(p.dev_kvm);
    assert_true(p.kvm_pvm);
    assert_false(p.kvm_hw);

    touch_dir(dir, "module/kvm_amd");
    hv_accel_probe_host(dir, notkvm, &p);
    assert_true(p.kvm_hw);
    rm_dir(dir, "module/kvm_amd");
    rm_dir(dir, "module/kvm_pvm");
    touch_dir(dir, "module/kvm_intel");
    hv_accel_probe_host(dir, notkvm, &p);
    assert_false(p.kvm_pvm);
    assert_true(p.kvm_hw);

    rm_dir(dir, "module/kvm_intel");
    unlink(notkvm);
    rm_dir(dir, "module");
    rmdir(dir);
}

/* On this host: the probe agrees with what /dev/kvm and /sys say. */
static void test_probe_this_host(void **state)
{
    struct hv_accel_probe p;
    struct stat st;
    enum hv_accel out;
    char why[256];

    (void)state;
    hv_accel_probe_host("/sys", "/dev/kvm", &p);
    assert_int_equal(p.kvm_pvm, stat("/sys/module/kvm_pvm", &st) == 0);
    assert_int_equal(p.kvm_hw, stat("/sys/module/kvm_intel", &st) == 0 ||
                                   stat("/sys/module/kvm_amd", &st) == 0);
    if (access("/dev/kvm", R_OK | W_OK) != 0)
        assert_false(p.dev_kvm);
    assert_int_equal(hv_accel_decide(HV_ACCEL_REQ_AUTO, &p, &out, why, sizeof(why), NULL), 0);
    print_message("this host: dev_kvm=%d kvm_pvm=%d kvm_hw=%d -> %s\n", p.dev_kvm, p.kvm_pvm,
                  p.kvm_hw, why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decision_table),
        cmocka_unit_test(test_why_truncated),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_probe_fake_sys),
        cmocka_unit_test(test_probe_this_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
