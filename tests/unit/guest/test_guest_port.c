/* Unit tests for virtio-serial port discovery against a fake sysfs tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest_port.h"

struct fake {
    char root[64];
};

static void put_port(struct fake *f, const char *dev, const char *name)
{
    char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", f->root, dev);
    assert_int_equal(mkdir(path, 0755), 0);
    if (!name)
        return;
    snprintf(path, sizeof(path), "%s/%s/name", f->root, dev);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(name, fp);
    fclose(fp);
}

static void rm_rf(const char *dir)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    struct fake *f = calloc(1, sizeof(*f));

    strcpy(f->root, "/tmp/cgv-test-ports-XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fake *f = *state;

    rm_rf(f->root);
    free(f);
    return 0;
}

static void test_finds_named_port(void **state)
{
    struct fake *f = *state;
    char dev[32];

    put_port(f, "vport0p0", ""); /* a console port has an empty name */
    put_port(f, "vport0p1", "org.qemu.guest_agent.0\n");
    put_port(f, "vport0p2", "org.cgv.agent.0\n");
    put_port(f, "vport1p1", NULL); /* no name file at all */
    assert_int_equal(guest_port_find(f->root, "org.cgv.agent.0", dev, sizeof(dev)), 0);
    assert_string_equal(dev, "vport0p2");
}

static void test_no_match(void **state)
{
    struct fake *f = *state;
    char dev[32];

    put_port(f, "vport0p1", "org.cgv.agent.00\n"); /* longer: no prefix match */
    put_port(f, "vport0p2", "org.cgv.agent.\n");
    errno = 0;
    assert_int_equal(guest_port_find(f->root, "org.cgv.agent.0", dev, sizeof(dev)), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_missing_dir(void **state)
{
    struct fake *f = *state;
    char dev[32], path[128];

    snprintf(path, sizeof(path), "%s/nope", f->root);
    errno = 0;
    assert_int_equal(guest_port_find(path, "org.cgv.agent.0", dev, sizeof(dev)), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_first_in_order_and_no_newline(void **state)
{
    struct fake *f = *state;
    char dev[32];

    put_port(f, "vport3p1", "org.cgv.agent.0");
    put_port(f, "vport1p4", "org.cgv.agent.0");
    put_port(f, "vport2p1", "org.cgv.agent.0\n");
    assert_int_equal(guest_port_find(f->root, "org.cgv.agent.0", dev, sizeof(dev)), 0);
    assert_string_equal(dev, "vport1p4");
    /* too small a buffer is an error, not a truncation */
    assert_int_equal(guest_port_find(f->root, "org.cgv.agent.0", dev, 4), -1);
}

static void test_backoff(void **state)
{
    unsigned d = 0, seen[8];

    (void)state;
    for (int i = 0; i < 8; i++)
        seen[i] = d = guest_backoff_next(d, 1000);
    assert_int_equal(seen[0], 20);
    assert_int_equal(seen[1], 40);
    assert_int_equal(seen[5], 640);
    assert_int_equal(seen[6], 1000);
    assert_int_equal(seen[7], 1000);
    assert_int_equal(guest_backoff_next(0, 10), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_finds_named_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_in_order_and_no_newline, setup,
                                        teardown),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
