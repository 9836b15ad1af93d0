/* Unit tests for the cgv.* kernel command line contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "guest_cmdline.h"

static void test_full_line(void **state)
{
    struct guest_cmdline c;
    char why[128];

    (void)state;
    guest_cmdline_parse("console=ttyS0 quiet panic=-1 cgv.name=demo-0 "
                        "cgv.net0=10.79.0.10/24 cgv.net1=192.168.7.3/16 "
                        "cgv.gw=10.79.0.1\n",
                        &c, why, sizeof(why));
    assert_true(c.has_name);
    assert_string_equal(c.name, "demo-0");
    assert_true(c.net[0].set);
    assert_string_equal(c.net[0].addr, "10.79.0.10");
    assert_int_equal(c.net[0].prefix, 24);
    assert_true(c.net[1].set);
    assert_string_equal(c.net[1].addr, "192.168.7.3");
    assert_int_equal(c.net[1].prefix, 16);
    assert_false(c.net[2].set);
    assert_true(c.has_gw);
    assert_string_equal(c.gw, "10.79.0.1");
    assert_int_equal(c.n_bad, 0);
    assert_string_equal(why, "");
}

static void test_defaults(void **state)
{
    struct guest_cmdline c;

    (void)state;
    guest_cmdline_parse("console=ttyS0 quiet", &c, NULL, 0);
    assert_false(c.has_name);
    assert_string_equal(c.name, GUEST_DEFAULT_NAME);
    for (int i = 0; i < GUEST_MAX_NETS; i++)
        assert_false(c.net[i].set);
    assert_false(c.has_gw);
    guest_cmdline_parse("", &c, NULL, 0);
    assert_string_equal(c.name, GUEST_DEFAULT_NAME);
}

static void test_invalid_values_skipped(void **state)
{
    static const char *bad[] = {
        "cgv.name=Demo",          "cgv.name=0demo",  "cgv.name=demo-",
        "cgv.name=",              "cgv.name=a;reboot",
        "cgv.name=abcdefghijabcdefghijabcdefghijabcdefghijx", /* 41 chars */
        "cgv.net0=10.0.0.1",      "cgv.net0=10.0.0.1/33", "cgv.net0=10.0.0.1/0",
        "cgv.net0=10.0.0/24",     "cgv.net0=10.0.0.256/24", "cgv.net0=10.0.0.1/2x",
        "cgv.net0=$(reboot)/24",  "cgv.net8=10.0.0.1/24", "cgv.net10=10.0.0.1/24",
        "cgv.gw=10.1",            "cgv.gw=::1",       "cgv.unknown=1",
    };
    struct guest_cmdline c;
    char why[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        guest_cmdline_parse(bad[i], &c, why, sizeof(why));
        assert_int_equal(c.n_bad, 1);
        assert_false(c.has_name);
        assert_false(c.net[0].set);
        assert_false(c.has_gw);
        assert_non_null(strstr(why, "ignoring invalid argument"));
    }
}

static void test_later_wins_and_quotes(void **state)
{
    struct guest_cmdline c;

    (void)state;
    guest_cmdline_parse("cgv.name=a1 cgv.name=\"b2\" cgv.net3=1.2.3.4/8 "
                        "cgv.net3=5.6.7.8/30 other=\"x y\" cgv.gw=1.1.1.1",
                        &c, NULL, 0);
    assert_string_equal(c.name, "b2");
    assert_false(c.net[0].set);
    assert_true(c.net[3].set);
    assert_string_equal(c.net[3].addr, "5.6.7.8");
    assert_int_equal(c.net[3].prefix, 30);
    assert_int_equal(c.n_bad, 0);
}

static void test_format_env(void **state)
{
    struct guest_cmdline c;
    char env[512];
    int n;

    (void)state;
    guest_cmdline_parse("cgv.name=vm-1 cgv.net2=10.0.0.2/24 cgv.net0=10.1.0.2/16 "
                        "cgv.gw=10.1.0.1",
                        &c, NULL, 0);
    n = guest_cmdline_format_env(&c, env, sizeof(env));
    assert_int_equal(n, (int)strlen(env));
    assert_string_equal(env, "CGV_NAME=vm-1\n"
                             "CGV_NETS=\"0 2\"\n"
                             "CGV_NET0=10.1.0.2/16\n"
                             "CGV_NET2=10.0.0.2/24\n"
                             "CGV_GW=10.1.0.1\n");
    guest_cmdline_parse("", &c, NULL, 0);
    n = guest_cmdline_format_env(&c, env, sizeof(env));
    assert_string_equal(env, "CGV_NAME=cgv-guest\nCGV_NETS=\"\"\n");
    assert_int_equal(guest_cmdline_format_env(&c, env, 10), -1);
}

static void test_name_rule(void **state)
{
    (void)state;
    assert_true(guest_name_valid("a", 1));
    assert_true(guest_name_valid("demo-0", 6));
    assert_false(guest_name_valid("a_b", 3));
    assert_false(guest_name_valid("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_line),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_invalid_values_skipped),
        cmocka_unit_test(test_later_wins_and_quotes),
        cmocka_unit_test(test_format_env),
        cmocka_unit_test(test_name_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
