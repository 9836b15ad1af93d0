/* Unit tests for cgv-guest's role rules: VIP parsing, generations (stale,
 * re-ack, pending, retry), the add/remove plan, the role line and the state
 * file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent_proto.h"
#include "guest_role.h"

static struct proto_role_set rs(uint64_t gen, uint8_t role, const char *asg, unsigned n, ...)
{
    struct proto_role_set r;
    va_list ap;

    memset(&r, 0, sizeof(r));
    r.generation = gen;
    r.role = role;
    strcpy(r.assignment, asg);
    r.n_vips = (uint8_t)n;
    va_start(ap, n);
    for (unsigned i = 0; i < n; i++)
        strcpy(r.vips[i], va_arg(ap, const char *));
    va_end(ap);
    return r;
}

static struct guest_vip vip(const char *s)
{
    struct guest_vip v;

    assert_int_equal(guest_vip_parse(s, &v), 0);
    return v;
}

static void test_vip_parse(void **state)
{
    static const char *bad[] = {
        "", "10.0.0.1", "10.0.0.1/", "10.0.0.1/0", "10.0.0.1/33", "10.0.0/24",
        "10.0.0.256/24", "010.0.0.1/24", "10.0.0.1/024", "10.0.0.1/24 ", " 10.0.0.1/24",
        "10.0.0.1.5/24", "a.b.c.d/8", "10.0.0.1/2x", "1000.0.0.1/8",
    };
    struct guest_vip v;
    uint8_t b[4];
    char out[24];

    (void)state;
    assert_int_equal(guest_vip_parse("10.79.2.50/24", &v), 0);
    memcpy(b, &v.addr, 4);
    assert_int_equal(b[0], 10);
    assert_int_equal(b[1], 79);
    assert_int_equal(b[2], 2);
    assert_int_equal(b[3], 50);
    assert_int_equal(v.prefix, 24);
    guest_vip_format(&v, out, sizeof(out));
    assert_string_equal(out, "10.79.2.50/24");
    assert_int_equal(guest_vip_parse("0.0.0.0/32", &v), 0);
    assert_int_equal(guest_vip_parse("255.255.255.255/1", &v), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(guest_vip_parse(bad[i], &v), -1);
    assert_int_equal(guest_vip_parse(NULL, &v), -1);
}

static void test_generation_rules(void **state)
{
    struct guest_role r;
    struct guest_role_plan plan;
    struct proto_role_set a5 = rs(5, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.50/24");
    struct proto_role_set s;
    char why[80];

    (void)state;
    guest_role_init(&r);
    /* the initial state is generation 0, none: the same again is a re-ack */
    s = rs(0, PROTO_ROLE_NONE, "", 0);
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_REACK);
    assert_int_equal(guest_role_check(&r, &a5, why, sizeof(why)), GUEST_ROLE_APPLY);
    assert_int_equal(guest_role_adopt(&r, &a5, &plan), 0);
    assert_true(r.busy);
    /* the same again while the hook runs: its ack is still to come */
    assert_int_equal(guest_role_check(&r, &a5, why, sizeof(why)), GUEST_ROLE_PENDING);
    guest_role_done(&r, PROTO_ACK_OK);
    assert_false(r.busy);
    assert_int_equal(guest_role_check(&r, &a5, why, sizeof(why)), GUEST_ROLE_REACK);
    /* older: stale, whatever it says */
    s = rs(4, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.50/24");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_STALE);
    s = rs(4, PROTO_ROLE_STANDBY, "a0", 0);
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_STALE);
    /* stale wins even over garbage */
    s = rs(1, PROTO_ROLE_ACTIVE, "a0", 1, "nonsense");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_STALE);
    /* equal generation, other content: applied */
    s = rs(5, PROTO_ROLE_STANDBY, "a0", 0);
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_APPLY);
    s = rs(5, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.51/24");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_APPLY);
    s = rs(5, PROTO_ROLE_ACTIVE, "a1", 1, "10.79.2.50/24");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_APPLY);
    /* newer: applied */
    s = rs(6, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.50/24");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_APPLY);
    /* a failed application is tried again on the same ROLE_SET */
    guest_role_done(&r, PROTO_ACK_FAILED);
    assert_int_equal(guest_role_check(&r, &a5, why, sizeof(why)), GUEST_ROLE_APPLY);
    /* VIPs do not count for standby */
    s = rs(7, PROTO_ROLE_STANDBY, "a0", 1, "whatever");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_APPLY);
}

static void test_invalid(void **state)
{
    struct guest_role r;
    struct guest_role_plan plan;
    struct proto_role_set s;
    char why[80];

    (void)state;
    guest_role_init(&r);
    s = rs(1, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.50");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_INVALID);
    assert_non_null(strstr(why, "10.79.2.50"));
    assert_int_equal(guest_role_adopt(&r, &s, &plan), -1);
    assert_int_equal(r.generation, 0); /* unchanged */
    s = rs(1, PROTO_ROLE_ACTIVE, "a0", 2, "10.79.2.50/24", "10.79.2.50/32");
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_INVALID);
    assert_non_null(strstr(why, "twice"));
    s = rs(1, PROTO_ROLE_ACTIVE, "with space", 0);
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_INVALID);
    s = rs(1, 7, "a0", 0);
    assert_int_equal(guest_role_check(&r, &s, why, sizeof(why)), GUEST_ROLE_INVALID);
}

static void test_plan(void **state)
{
    struct guest_role r;
    struct guest_role_plan p;
    struct proto_role_set s;
    struct guest_vip v50 = vip("10.79.2.50/24"), v51 = vip("10.79.2.51/24");

    (void)state;
    guest_role_init(&r);
    /* none -> active: add both, announce both */
    s = rs(1, PROTO_ROLE_ACTIVE, "a0", 2, "10.79.2.50/24", "10.79.2.51/24");
    assert_int_equal(guest_role_adopt(&r, &s, &p), 0);
    assert_int_equal(p.n_del, 0);
    assert_int_equal(p.n_add, 2);
    assert_true(guest_vip_equal(&p.add[0], &v50));
    assert_int_equal(p.n_announce, 2);
    /* .50 added by us; .51 was already there (EEXIST): not ours */
    guest_role_added(&r, &v50);
    guest_role_added(&r, &v50); /* once only */
    assert_int_equal(r.n_added, 1);
    guest_role_done(&r, PROTO_ACK_OK);
    /* still active, new generation, same VIPs: nothing to add, announce again */
    s.generation = 2;
    assert_int_equal(guest_role_adopt(&r, &s, &p), 0);
    assert_int_equal(p.n_del, 0);
    assert_int_equal(p.n_add, 1); /* .51 is not ours: added again (EEXIST is fine) */
    assert_true(guest_vip_equal(&p.add[0], &v51));
    assert_int_equal(p.n_announce, 2);
    /* standby: only what we added goes */
    s = rs(3, PROTO_ROLE_STANDBY, "a0", 0);
    assert_int_equal(guest_role_adopt(&r, &s, &p), 0);
    assert_int_equal(p.n_del, 1);
    assert_true(guest_vip_equal(&p.del[0], &v50));
    assert_int_equal(p.n_add, 0);
    assert_int_equal(p.n_announce, 0);
    assert_int_equal(r.n_vips, 0);
    guest_role_removed(&r, &v50);
    assert_int_equal(r.n_added, 0);
    guest_role_removed(&r, &v50); /* harmless */
    /* a prefix change: the old one is deleted, the new one added */
    s = rs(4, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.50/24");
    guest_role_adopt(&r, &s, &p);
    guest_role_added(&r, &p.add[0]);
    s = rs(5, PROTO_ROLE_ACTIVE, "a0", 1, "10.79.2.50/32");
    guest_role_adopt(&r, &s, &p);
    assert_int_equal(p.n_del, 1);
    assert_int_equal(p.del[0].prefix, 24);
    assert_int_equal(p.n_add, 1);
    assert_int_equal(p.add[0].prefix, 32);
}

static void test_line(void **state)
{
    struct guest_role r;
    struct guest_role_plan p;
    struct proto_role_set s;
    char line[256], small[10];
    int n;

    (void)state;
    guest_role_init(&r);
    n = guest_role_line(&r, line, sizeof(line));
    assert_int_equal(n, (int)strlen(line));
    assert_string_equal(line, "role none - 0 -\n");
    s = rs(12, PROTO_ROLE_ACTIVE, "web-0", 2, "10.79.2.50/24", "10.0.0.1/32");
    guest_role_adopt(&r, &s, &p);
    guest_role_line(&r, line, sizeof(line));
    assert_string_equal(line, "role active web-0 12 10.79.2.50/24,10.0.0.1/32\n");
    s = rs(13, PROTO_ROLE_STANDBY, "web-0", 0);
    guest_role_adopt(&r, &s, &p);
    guest_role_line(&r, line, sizeof(line));
    assert_string_equal(line, "role standby web-0 13 -\n");
    assert_int_equal(guest_role_line(&r, small, sizeof(small)), -1);
    assert_string_equal(guest_role_name(PROTO_ROLE_ACTIVE), "active");
    assert_string_equal(guest_role_name(99), "none");
}

static void test_state_roundtrip(void **state)
{
    struct guest_role r, back;
    struct guest_role_plan p;
    struct proto_role_set s = rs(99, PROTO_ROLE_ACTIVE, "a0", 2, "10.79.2.50/24",
                                 "10.79.2.51/24");
    struct guest_vip v50 = vip("10.79.2.50/24");
    static const char *bad[] = {
        "role active\n",                         /* no generation */
        "generation 1\n",                        /* no role */
        "generation x\nrole none\n",
        "generation 1\nrole boss\n",
        "generation 1\nrole none\nvip 10.0.0.1\n",
        "generation 1\nrole none\nresult maybe\n",
        "generation 1\nrole none\nwhat ever\n",
        "generation 1\nrole none\nassignment a b\n",
        "generation 1\nrole none\nnoval\n",
    };
    char buf[1024];
    int n;

    (void)state;
    guest_role_init(&r);
    guest_role_adopt(&r, &s, &p);
    guest_role_added(&r, &v50);
    guest_role_done(&r, PROTO_ACK_FAILED);
    n = guest_role_state_format(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(guest_role_state_parse(buf, (size_t)n, &back), 0);
    assert_int_equal(back.generation, 99);
    assert_int_equal(back.role, PROTO_ROLE_ACTIVE);
    assert_string_equal(back.assignment, "a0");
    assert_int_equal(back.result, PROTO_ACK_FAILED);
    assert_int_equal(back.n_vips, 2);
    assert_int_equal(back.n_added, 1);
    assert_true(guest_vip_equal(&back.added[0], &v50));
    assert_false(back.busy);
    assert_int_equal(guest_role_state_format(&r, buf, 20), -1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        back.generation = 1234;
        assert_int_equal(guest_role_state_parse(bad[i], strlen(bad[i]), &back), -1);
        assert_int_equal(back.generation, 1234); /* untouched */
    }
    /* the initial state */
    guest_role_init(&r);
    n = guest_role_state_format(&r, buf, sizeof(buf));
    assert_int_equal(guest_role_state_parse(buf, (size_t)n, &back), 0);
    assert_int_equal(back.generation, 0);
    assert_string_equal(back.assignment, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vip_parse),
        cmocka_unit_test(test_generation_rules),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_state_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
