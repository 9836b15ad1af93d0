/* Unit tests for cgv-udpping's pure parts: request/reply text, target
 * parsing, percentiles and the reply-gap measure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "udpping_stats.h"

static void test_request_reply_roundtrip(void **state)
{
    char req[64], reply[128];
    struct udpping_reply r;
    int n;

    (void)state;
    n = udpping_format_request(req, sizeof(req), 0x0123456789abcdefULL, 3);
    assert_string_equal(req, "udpping 0123456789abcdef 3");
    assert_int_equal(n, (int)strlen(req));
    n = snprintf(reply, sizeof(reply), "cgv-nf demo-0 17 %s", req);
    assert_int_equal(udpping_parse_reply(reply, (size_t)n, &r), 0);
    assert_string_equal(r.vm_name, "demo-0");
    assert_int_equal(r.count, 17);
    assert_int_equal(r.token, 0x0123456789abcdefULL);
    assert_int_equal(r.seq, 3);
    assert_int_equal(udpping_format_request(req, 10, 1, 1), -1);
}

static void test_reply_rejects(void **state)
{
    static const char *bad[] = {
        "",
        "cgv-nf",
        "cgv-nf demo-0 17",
        "cgv-nf demo-0 x17 udpping 0123456789abcdef 3",
        "cgv-nx demo-0 17 udpping 0123456789abcdef 3",
        "cgv-nf demo-0 17 udpping 0123456789abcde 3",
        "cgv-nf demo-0 17 udpping 0123456789abcdeF 3",
        "cgv-nf demo-0 17 udpping 0123456789abcdef",
        "cgv-nf demo-0 17 udpping 0123456789abcdef 3 extra",
        "cgv-nf demo-0 17 udpping 0123456789abcdef 99999999999999999999999",
        "cgv-nf demo-0 17 other 0123456789abcdef 3",
    };
    struct udpping_reply r;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(udpping_parse_reply(bad[i], strlen(bad[i]), &r), -1);
}

static void test_target(void **state)
{
    char h[64], p[8];

    (void)state;
    assert_int_equal(udpping_parse_target("10.79.0.10", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "10.79.0.10");
    assert_string_equal(p, "7000");
    assert_int_equal(udpping_parse_target("demo:7001", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "demo");
    assert_string_equal(p, "7001");
    assert_int_equal(udpping_parse_target("[fd00::1]:9", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "fd00::1");
    assert_string_equal(p, "9");
    assert_int_equal(udpping_parse_target("fd00::1", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "fd00::1");
    assert_string_equal(p, "7000");
    assert_int_equal(udpping_parse_target("", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target(":7000", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target("h:", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target("h:0", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target("h:65536", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target("h:7x", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target("[::1", h, sizeof(h), p, sizeof(p)), -1);
    assert_int_equal(udpping_parse_target("[::1]x", h, sizeof(h), p, sizeof(p)), -1);
}

static void test_percentiles(void **state)
{
    double v[100], one = 4.2;
    double small[] = {5, 1, 3, 2, 4};

    (void)state;
    for (int i = 0; i < 100; i++)
        v[i] = (double)(100 - i); /* 100 .. 1 */
    udpping_sort(v, 100);
    assert_true(v[0] == 1 && v[99] == 100);
    assert_true(udpping_percentile(v, 100, 50) == 50);
    assert_true(udpping_percentile(v, 100, 99) == 99);
    assert_true(udpping_percentile(v, 100, 100) == 100);
    assert_true(udpping_percentile(v, 100, 0) == 1);
    assert_true(udpping_percentile(&one, 1, 99) == 4.2);
    udpping_sort(small, 5);
    assert_true(udpping_percentile(small, 5, 50) == 3);
    assert_true(udpping_percentile(small, 5, 99) == 5);
    assert_true(isnan(udpping_percentile(v, 0, 50)));
}

static void test_gap(void **state)
{
    struct udpping_gap g = {0};

    (void)state;
    assert_int_equal(udpping_gap_finish(&g, 1000), 0); /* never started */
    /* 10 ms interval, 2 ms RTT, outage between 50 and 310 ms */
    udpping_gap_start(&g, 0);
    for (int64_t t = 0; t <= 40000; t += 10000)
        udpping_gap_reply(&g, t + 2000);
    udpping_gap_reply(&g, 312000);
    udpping_gap_reply(&g, 322000);
    assert_int_equal(udpping_gap_finish(&g, 320000), 312000 - 42000);
    /* replies stopped for good: the gap runs to the last send */
    udpping_gap_start(&g, 0);
    udpping_gap_reply(&g, 2000);
    assert_int_equal(udpping_gap_finish(&g, 900000), 898000);
    /* nothing ever came back: the whole sending time */
    udpping_gap_start(&g, 100);
    assert_int_equal(udpping_gap_finish(&g, 5100), 5000);
    /* an out-of-order (late) reply does not shorten the record */
    udpping_gap_start(&g, 0);
    udpping_gap_reply(&g, 500000);
    udpping_gap_reply(&g, 400000);
    assert_int_equal(udpping_gap_finish(&g, 510000), 500000);
}

static void test_outage_log(void **state)
{
    static struct udpping_log l;
    unsigned what;

    (void)state;
    /* 5 ms interval, threshold 10 ms; t0 = 1000 s */
    udpping_log_init(&l, 10000);
    assert_int_equal(udpping_log_reply(&l, 5000, "demo-0"), 0); /* not started: ignored */
    udpping_log_start(&l, 1000000000);
    /* first reply 12 ms after the first send: a gap from the start, from "-" */
    what = udpping_log_reply(&l, 1000012000, "demo-0");
    assert_int_equal(what, UDPPING_NEW_GAP);
    assert_int_equal(l.n_gaps, 1);
    assert_int_equal(l.gaps[0].start_us, 0);
    assert_int_equal(l.gaps[0].end_us, 12000);
    assert_string_equal(l.gaps[0].from, "-");
    assert_string_equal(l.gaps[0].to, "demo-0");
    /* steady replies: nothing; exactly the threshold is not a gap */
    assert_int_equal(udpping_log_reply(&l, 1000017000, "demo-0"), 0);
    assert_int_equal(udpping_log_reply(&l, 1000027000, "demo-0"), 0);
    /* failover: 63 ms without a reply, then demo-1 answers */
    what = udpping_log_reply(&l, 1000090000, "demo-1");
    assert_int_equal(what, UDPPING_NEW_GAP | UDPPING_NEW_SWITCH);
    assert_int_equal(l.n_gaps, 2);
    assert_int_equal(l.gaps[1].start_us, 27000);
    assert_int_equal(l.gaps[1].end_us, 90000);
    assert_string_equal(l.gaps[1].from, "demo-0");
    assert_string_equal(l.gaps[1].to, "demo-1");
    assert_int_equal(l.n_switches, 1);
    assert_int_equal(l.switches[0].at_us, 90000);
    assert_string_equal(l.switches[0].from, "demo-0");
    assert_string_equal(l.switches[0].to, "demo-1");
    /* a switch back without a gap (both answering) is still a switch */
    assert_int_equal(udpping_log_reply(&l, 1000092000, "demo-0"), UDPPING_NEW_SWITCH);
    assert_int_equal(l.n_gaps, 2);
    assert_int_equal(l.n_switches, 2);
    /* out-of-order time is ignored */
    assert_int_equal(udpping_log_reply(&l, 1000091000, "demo-1"), 0);
    assert_int_equal(l.n_switches, 2);
    /* the replies stop for good: a trailing gap up to the last send, to "-" */
    assert_int_equal(udpping_log_finish(&l, 1000200000), UDPPING_NEW_GAP);
    assert_int_equal(l.n_gaps, 3);
    assert_int_equal(l.gaps[2].start_us, 92000);
    assert_int_equal(l.gaps[2].end_us, 200000);
    assert_string_equal(l.gaps[2].from, "demo-0");
    assert_string_equal(l.gaps[2].to, "-");
    assert_int_equal(udpping_log_finish(&l, 1000300000), 0); /* once */
    assert_int_equal(l.n_gaps, 3);

    /* threshold 0: no gaps, switches still seen; no trailing gap */
    udpping_log_init(&l, 0);
    udpping_log_start(&l, 0);
    assert_int_equal(udpping_log_reply(&l, 500000, "a"), 0);
    assert_int_equal(udpping_log_reply(&l, 900000, "b"), UDPPING_NEW_SWITCH);
    assert_int_equal(udpping_log_finish(&l, 5000000), 0);
    assert_int_equal(l.n_gaps, 0);

    /* nothing ever answered: one gap over the whole run */
    udpping_log_init(&l, 10000);
    udpping_log_start(&l, 100);
    assert_int_equal(udpping_log_finish(&l, 60100), UDPPING_NEW_GAP);
    assert_int_equal(l.gaps[0].end_us - l.gaps[0].start_us, 60000);
    assert_string_equal(l.gaps[0].from, "-");
    assert_string_equal(l.gaps[0].to, "-");

    /* a full log counts what it drops */
    udpping_log_init(&l, 1);
    udpping_log_start(&l, 0);
    for (int i = 1; i <= UDPPING_MAX_EVENTS + 3; i++)
        udpping_log_reply(&l, (int64_t)i * 10, i % 2 ? "a" : "b");
    assert_int_equal(l.n_gaps, UDPPING_MAX_EVENTS);
    assert_int_equal(l.gaps_dropped, 3);
    assert_int_equal(l.n_switches, UDPPING_MAX_EVENTS);
    assert_int_equal(l.switches_dropped, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_reply_roundtrip),
        cmocka_unit_test(test_reply_rejects),
        cmocka_unit_test(test_target),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_outage_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
