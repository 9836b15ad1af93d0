/* Unit tests for the cgv CLI's output formatting and small parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Capture what fn writes to a FILE *. */
struct cap {
    FILE *f;
    char *buf;
    size_t len;
};

static FILE *cap_open(struct cap *c)
{
    memset(c, 0, sizeof(*c));
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
    return c->f;
}

static const char *cap_close(struct cap *c)
{
    fclose(c->f);
    return c->buf;
}

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (!v)
        fail_msg("bad test JSON: %s", jerr.text);
    return v;
}

static const char services_json[] =
    "{\"services\": ["
    " {\"name\": \"demo\", \"generation\": 1,"
    "  \"ha\": {\"model\": \"2n\", \"up\": true, \"availability\": 0.9999875,"
    "   \"downtime_ms\": 41, \"outages_total\": 1, \"assignments\": [{\"name\": \"a0\","
    "   \"virtual_ip\": \"10.77.0.50\", \"active\": \"demo-0\", \"acked\": true}]},"
    "  \"vms\": ["
    "  {\"name\": \"demo-0\", \"service\": \"demo\", \"state\": \"running\","
    "   \"desired\": \"running\", \"busy\": null, \"restart_pending\": false,"
    "   \"addresses\": [\"10.77.0.100\"],"
    "   \"ha\": {\"state\": \"healthy\", \"role\": \"active\", \"assignment\": \"a0\","
    "    \"acked\": true},"
    "   \"agent\": {\"state\": \"up\", \"last_heartbeat_age_ms\": 420}},"
    "  {\"name\": \"demo-1\", \"service\": \"demo\", \"state\": \"paused\","
    "   \"desired\": \"running\", \"busy\": \"resume\", \"restart_pending\": true,"
    "   \"addresses\": [\"10.77.0.101\", \"10.78.0.5\"],"
    "   \"ha\": {\"state\": \"healthy\", \"role\": \"standby\", \"assignment\": null,"
    "    \"acked\": false},"
    "   \"agent\": {\"state\": \"paused\", \"last_heartbeat_age_ms\": 75000}}]},"
    " {\"name\": \"longer-service\", \"vms\": ["
    "  {\"name\": \"longer-service-0\", \"state\": \"shutoff\", \"desired\": \"running\","
    "   \"busy\": null, \"addresses\": [],"
    "   \"agent\": {\"state\": \"never\", \"last_heartbeat_age_ms\": null}}]},"
    " {\"name\": \"empty\", \"vms\": []}"
    "]}";

static void test_status_table(void **state)
{
    struct cap c;
    json_t *doc = load(services_json);
    const char *out;

    (void)state;
    assert_int_equal(cli_print_status(cap_open(&c), doc), 4);
    out = cap_close(&c);
    assert_string_equal(
        out,
        "SERVICE         VM                STATE                   ROLE       AGENT   HEARTBEAT  ADDRESS                BUSY\n"
        "demo            demo-0            running                 active a0  up      0.4s ago   10.77.0.100            -\n"
        "demo            demo-1            paused*                 standby?   paused  1m ago     10.77.0.101,10.78.0.5  resume\n"
        "longer-service  longer-service-0  shutoff (want running)  -          never   -          -                      -\n"
        "empty           -                 (no VMs)                -          -       -          -                      -\n"
        "* restart pending: spec changes take effect when the VM next starts\n"
        "demo: 2n, up, availability 99.99875% (downtime 41 ms, 1 outage); a0 10.77.0.50 -> demo-0\n");
    free(c.buf);
    json_decref(doc);
}

static void test_status_single_service_and_empty(void **state)
{
    struct cap c;
    json_t *doc;
    const char *out;

    (void)state;
    /* GET /v1/services/demo answers one Service. */
    doc = load("{\"name\": \"demo\", \"vms\": [{\"name\": \"demo-0\", \"state\": \"running\","
               " \"desired\": \"running\", \"addresses\": [\"10.77.0.100\"],"
               " \"agent\": {\"state\": \"down\", \"last_heartbeat_age_ms\": 12500}}]}");
    assert_int_equal(cli_print_status(cap_open(&c), doc), 1);
    out = cap_close(&c);
    assert_string_equal(out,
                        "SERVICE  VM      STATE    ROLE  AGENT  HEARTBEAT  ADDRESS      BUSY\n"
                        "demo     demo-0  running  -     down   12s ago    10.77.0.100  -\n");
    free(c.buf);
    json_decref(doc);

    doc = load("{\"services\": []}");
    assert_int_equal(cli_print_status(cap_open(&c), doc), 0);
    assert_string_equal(cap_close(&c), "No services.\n");
    free(c.buf);
    json_decref(doc);

    /* Missing fields do not crash and show as '-' / unknown. */
    doc = load("{\"vms\": [{}]}");
    assert_int_equal(cli_print_status(cap_open(&c), doc), 1);
    out = cap_close(&c);
    assert_non_null(strstr(out, "\n-        -   unknown  -     -      -          -        -\n"));
    free(c.buf);
    json_decref(doc);
}

static void test_event_line(void **state)
{
    struct cap c;
    json_t *ev;

    (void)state;
    ev = load("{\"id\": 7, \"time\": \"2026-11-23T10:42:07.123Z\", \"time_ms\": 1,"
              " \"severity\": \"info\", \"type\": \"agent.hello\", \"service\": \"demo\","
              " \"vm\": \"demo-0\", \"message\": \"agent 0.1.0 up (boot 9f)\"}");
    cli_print_event(cap_open(&c), ev);
    assert_string_equal(cap_close(&c),
                        "2026-11-23T10:42:07.123Z info  agent.hello          demo-0     "
                        "agent 0.1.0 up (boot 9f)\n");
    free(c.buf);
    json_decref(ev);

    /* No vm: the service; no time string: from time_ms. */
    ev = load("{\"id\": 8, \"time_ms\": 1795430527123, \"severity\": \"warn\","
              " \"type\": \"service.applied\", \"service\": \"demo\", \"message\": \"m\"}");
    cli_print_event(cap_open(&c), ev);
    assert_string_equal(cap_close(&c),
                        "2026-11-23T10:42:07.123Z warn  service.applied      demo       m\n");
    free(c.buf);
    json_decref(ev);

    ev = load("{\"id\": 9, \"time\": \"T\", \"severity\": \"error\","
              " \"type\": \"libvirt.disconnected\", \"message\": \"gone\"}");
    cli_print_event(cap_open(&c), ev);
    assert_string_equal(cap_close(&c),
                        "T                        error libvirt.disconnected -          gone\n");
    free(c.buf);
    json_decref(ev);
}

static void test_issue_lines(void **state)
{
    struct cap c;
    json_t *details;

    (void)state;
    details = load("[{\"path\": \"instances\", \"line\": 3, \"column\": 12,"
                   "  \"message\": \"must be between 1 and 64, got 0\"},"
                   " {\"path\": \"networks[0]\", \"line\": 7, \"message\": \"x\"},"
                   " {\"path\": \"\", \"line\": 0, \"column\": 0, \"message\": \"empty document\"},"
                   " {\"path\": \"name\", \"message\": \"required\"}]");
    assert_int_equal(cli_print_issues(cap_open(&c), "demo.yaml", details), 4);
    assert_string_equal(cap_close(&c),
                        "demo.yaml:3:12: instances: must be between 1 and 64, got 0\n"
                        "demo.yaml:7: networks[0]: x\n"
                        "demo.yaml: empty document\n"
                        "demo.yaml: name: required\n");
    free(c.buf);

    /* Without a file (not an apply): no line numbers. */
    assert_int_equal(cli_print_issues(cap_open(&c), NULL, details), 4);
    assert_non_null(strstr(cap_close(&c), "cgv: instances: must be between 1 and 64, got 0\n"));
    free(c.buf);

    assert_int_equal(cli_print_issues(cap_open(&c), "f", NULL), 0);
    assert_string_equal(cap_close(&c), "");
    free(c.buf);
    json_decref(details);
}

static void test_results(void **state)
{
    struct cap c;
    json_t *v;

    (void)state;
    v = load("{\"vm\": \"demo-0\", \"op\": \"pause\", \"state\": \"paused\", \"duration_ms\": 24}");
    cli_print_vm_op(cap_open(&c), v);
    assert_string_equal(cap_close(&c), "demo-0: paused (24 ms)\n");
    free(c.buf);
    json_decref(v);

    v = load("{\"vm\": \"demo-0\", \"op\": \"stop\", \"state\": \"shutoff\", \"duration_ms\": 3456}");
    cli_print_vm_op(cap_open(&c), v);
    assert_string_equal(cap_close(&c), "demo-0: shutoff (3.4 s)\n");
    free(c.buf);
    json_decref(v);

    v = load("{\"service\": \"demo\", \"result\": \"created\","
             " \"vms\": [\"demo-0\", \"demo-1\"], \"duration_ms\": 812}");
    cli_print_apply(cap_open(&c), v);
    assert_string_equal(cap_close(&c), "demo: created (812 ms), VMs: demo-0, demo-1\n");
    free(c.buf);
    json_decref(v);

    v = load("{\"service\": \"demo\", \"result\": \"valid\", \"vms\": [\"demo-0\"]}");
    cli_print_apply(cap_open(&c), v);
    assert_string_equal(cap_close(&c), "demo: valid (dry run), VM: demo-0\n");
    free(c.buf);
    json_decref(v);

    v = load("{\"service\": \"demo\", \"result\": \"deleted\", \"vms\": [\"demo-0\"]}");
    cli_print_delete(cap_open(&c), v);
    assert_string_equal(cap_close(&c), "demo: deleted, VM: demo-0\n");
    free(c.buf);
    json_decref(v);

    v = load("{\"version\": \"0.1.0\", \"uptime_ms\": 3723000, \"libvirt\": \"connected\","
             " \"libvirt_uri\": \"qemu:///system\", \"acceleration\": \"tcg\","
             " \"acceleration_reason\": \"no /dev/kvm\", \"host\": \"h1\","
             " \"services\": 1, \"vms\": 2}");
    cli_print_health(cap_open(&c), v);
    assert_string_equal(cap_close(&c),
                        "cgvd 0.1.0 on h1, up 1h02m\n"
                        "libvirt:      connected (qemu:///system)\n"
                        "acceleration: tcg (no /dev/kvm)\n"
                        "services:     1\n"
                        "vms:          2\n");
    free(c.buf);
    json_decref(v);
}

static void test_fmt_age_duration(void **state)
{
    char b[32];

    (void)state;
    cli_fmt_age(-1, b, sizeof(b));
    assert_string_equal(b, "-");
    cli_fmt_age(0, b, sizeof(b));
    assert_string_equal(b, "0.0s ago");
    cli_fmt_age(420, b, sizeof(b));
    assert_string_equal(b, "0.4s ago");
    cli_fmt_age(9999, b, sizeof(b));
    assert_string_equal(b, "9.9s ago");
    cli_fmt_age(59000, b, sizeof(b));
    assert_string_equal(b, "59s ago");
    cli_fmt_age(3 * 3600000 + 5, b, sizeof(b));
    assert_string_equal(b, "3h ago");
    cli_fmt_age(3 * 86400000LL, b, sizeof(b));
    assert_string_equal(b, "3d ago");

    cli_fmt_duration(0, b, sizeof(b));
    assert_string_equal(b, "0 ms");
    cli_fmt_duration(999, b, sizeof(b));
    assert_string_equal(b, "999 ms");
    cli_fmt_duration(1250, b, sizeof(b));
    assert_string_equal(b, "1.2 s");
    cli_fmt_duration(42000, b, sizeof(b));
    assert_string_equal(b, "42 s");
    cli_fmt_duration(185000, b, sizeof(b));
    assert_string_equal(b, "3m05s");
}

static void test_parsers(void **state)
{
    (void)state;
    assert_int_equal(cli_parse_seconds("30"), 30000);
    assert_int_equal(cli_parse_seconds("1.5"), 1500);
    assert_int_equal(cli_parse_seconds("250ms"), 250);
    assert_int_equal(cli_parse_seconds("2m"), 120000);
    assert_int_equal(cli_parse_seconds("10s"), 10000);
    assert_int_equal(cli_parse_seconds("1h"), 3600000);
    assert_int_equal(cli_parse_seconds("-1"), -1);
    assert_int_equal(cli_parse_seconds("abc"), -1);
    assert_int_equal(cli_parse_seconds("5x"), -1);
    assert_int_equal(cli_parse_seconds(""), -1);
    assert_int_equal(cli_parse_uint("0"), 0);
    assert_int_equal(cli_parse_uint("123"), 123);
    assert_int_equal(cli_parse_uint("-3"), -1);
    assert_int_equal(cli_parse_uint("12a"), -1);
    assert_int_equal(cli_parse_uint(""), -1);
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(cli_exit_code(CGV_OK, 200), 0);
    assert_int_equal(cli_exit_code(CGV_E_INTERNAL, 500), 1);
    assert_int_equal(cli_exit_code(CGV_E_LIBVIRT, 502), 1);
    assert_int_equal(cli_exit_code(CGV_E_IO, 500), 1);
    assert_int_equal(cli_exit_code(CGV_E_UNAVAIL, 503), 1);
    assert_int_equal(cli_exit_code(CGV_E_NOTFOUND, 404), 3);
    assert_int_equal(cli_exit_code(CGV_E_INVALID, 400), 4);
    assert_int_equal(cli_exit_code(CGV_E_CONFLICT, 409), 5);
    assert_int_equal(cli_exit_code(CGV_E_UNAVAIL, 0), 6);
    assert_int_equal(cli_exit_code(CGV_E_DENIED, 403), 7);
    assert_int_equal(cli_exit_code(CGV_E_DENIED, 0), 7);
    assert_int_equal(cli_exit_code(CGV_E_INTERNAL, 0), 1);
}

static void test_events_cursor(void **state)
{
    json_t *res;

    (void)state;
    /* Not cut at limit: continue after last_id (newest of all events). */
    res = load("{\"events\": [{\"id\": 4}, {\"id\": 6}], \"last_id\": 9}");
    assert_int_equal(cli_events_next_cursor(3, res, 100), 9);
    /* Cut at limit: only up to the last event returned. */
    assert_int_equal(cli_events_next_cursor(3, res, 2), 6);
    json_decref(res);
    /* Nothing new: never go backwards. */
    res = load("{\"events\": [], \"last_id\": 2}");
    assert_int_equal(cli_events_next_cursor(5, res, 100), 5);
    json_decref(res);
    res = load("{\"events\": []}");
    assert_int_equal(cli_events_next_cursor(5, res, 100), 5);
    json_decref(res);
}

static void test_top(void **state)
{
    struct cap c;
    json_t *health = load("{\"host\": \"h1\", \"vms\": 2, \"host_kpi\": {\"cpus\": 2,"
                          " \"cpu_percent\": 37.5, \"memory_total_bytes\": 25769803776,"
                          " \"memory_available_bytes\": 21474836480}}");
    json_t *vms = load("{\"vms\": [{\"name\": \"demo-0\", \"state\": \"running\","
                       " \"ha\": {\"state\": \"healthy\", \"role\": \"active\","
                       " \"assignment\": \"a0\", \"acked\": true, \"restarts_total\": 2},"
                       " \"kpi\": {\"cpu_percent\": 12.34, \"vcpus\": 1,"
                       " \"memory_bytes\": 268435456, \"memory_rss_bytes\": 104857600,"
                       " \"net_rx_bytes_per_s\": 1536, \"net_tx_bytes_per_s\": 0,"
                       " \"rtt_ms\": 1.25}},"
                       " {\"name\": \"demo-1\", \"state\": \"shutoff\"}]}");
    const char *out;
    char b[16];

    (void)state;
    assert_int_equal(cli_print_top(cap_open(&c), health, vms), 2);
    out = cap_close(&c);
    assert_non_null(strstr(out, "host h1: 2 CPUs, 37.5% busy, memory 20G available of 24G, 2 VMs\n"));
    assert_non_null(strstr(out, "VM               STATE    ROLE          CPU%"));
    assert_non_null(strstr(out, "demo-0           running  active a0     12.3     1    256M     100M     1.5K        0     1.2    2\n"));
    assert_non_null(strstr(out, "demo-1           shutoff  -              0.0     0       0        0        0        0       -    0\n"));
    free(c.buf);
    json_decref(health);
    json_decref(vms);
    cli_fmt_bytes(0, b, sizeof(b));
    assert_string_equal(b, "0");
    cli_fmt_bytes(1023, b, sizeof(b));
    assert_string_equal(b, "1023");
    cli_fmt_bytes(1024, b, sizeof(b));
    assert_string_equal(b, "1.0K");
    cli_fmt_bytes(5.5 * 1024 * 1024 * 1024, b, sizeof(b));
    assert_string_equal(b, "5.5G");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_top),
        cmocka_unit_test(test_status_single_service_and_empty),
        cmocka_unit_test(test_event_line),
        cmocka_unit_test(test_issue_lines),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_fmt_age_duration),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_events_cursor),
    };
    return cmocka_run_group_tests_name("cli_format", tests, NULL, NULL);
}
