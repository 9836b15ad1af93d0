/* Unit tests for the agent channel codec: round trips, bounds, and garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent_proto.h"

static int encode(const struct proto_msg *m, uint8_t *buf, size_t cap)
{
    int n = proto_encode(m, buf, cap);
    assert_true(n >= PROTO_HDR_LEN);
    return n;
}

static void test_roundtrip_all_types(void **state)
{
    struct proto_msg in[6], out;
    uint8_t buf[PROTO_MAX_FRAME];
    struct proto_reader r;
    char why[128];

    (void)state;
    memset(in, 0, sizeof(in));
    in[0].type = PROTO_HOST_HELLO;
    in[0].u.host_hello.version = PROTO_VERSION;
    in[0].u.host_hello.heartbeat_ms = 100;
    strcpy(in[0].u.host_hello.vm_name, "demo-0");
    in[1].type = PROTO_HELLO;
    in[1].u.hello.version = PROTO_VERSION;
    strcpy(in[1].u.hello.agent_version, "0.1.0");
    strcpy(in[1].u.hello.vm_name, "demo-0");
    in[1].u.hello.boot_id = 0x0123456789abcdefULL;
    in[1].u.hello.uptime_ms = 2500;
    in[2].type = PROTO_HEARTBEAT;
    in[2].u.heartbeat.seq = 1ULL << 40;
    in[2].u.heartbeat.uptime_ms = 99;
    in[2].u.heartbeat.app_served = 7;
    in[3].type = PROTO_PING;
    in[3].u.ping.seq = 5;
    in[3].u.ping.host_ts_us = 123456789;
    in[4].type = PROTO_PONG;
    in[4].u.ping = in[3].u.ping;
    in[5].type = PROTO_SHUTDOWN;
    in[5].u.shutdown.action = PROTO_SHUTDOWN_REBOOT;

    proto_reader_init(&r);
    for (size_t i = 0; i < 6; i++) {
        int n = encode(&in[i], buf, sizeof(buf));
        assert_int_equal(proto_reader_push(&r, buf, (size_t)n), n);
        assert_int_equal(proto_reader_next(&r, &out, why, sizeof(why)), PROTO_MSG);
        assert_int_equal(out.type, in[i].type);
        assert_memory_equal(&out.u, &in[i].u, sizeof(out.u));
    }
    assert_int_equal(proto_reader_next(&r, &out, why, sizeof(why)), PROTO_NEED_MORE);
}

static void test_byte_at_a_time(void **state)
{
    struct proto_msg m = {.type = PROTO_HEARTBEAT}, out;
    uint8_t buf[64];
    struct proto_reader r;
    int n, got = 0;

    (void)state;
    m.u.heartbeat.seq = 42;
    n = encode(&m, buf, sizeof(buf));
    proto_reader_init(&r);
    for (int i = 0; i < n; i++) {
        proto_reader_push(&r, &buf[i], 1);
        enum proto_next rc = proto_reader_next(&r, &out, NULL, 0);
        if (i < n - 1) {
            assert_int_equal(rc, PROTO_NEED_MORE);
        } else {
            assert_int_equal(rc, PROTO_MSG);
            got = 1;
        }
    }
    assert_true(got);
    assert_int_equal(out.u.heartbeat.seq, 42);
}

static void test_encode_rejects_bad_strings(void **state)
{
    struct proto_msg m = {.type = PROTO_HELLO};
    uint8_t buf[PROTO_MAX_FRAME];

    (void)state;
    memset(m.u.hello.agent_version, 'a', PROTO_MAX_STR);
    m.u.hello.agent_version[PROTO_MAX_STR] = '\0';
    assert_true(proto_encode(&m, buf, sizeof(buf)) > 0);
    strcpy(m.u.hello.vm_name, "bad\x1b[2Jname");
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), -1);
    strcpy(m.u.hello.vm_name, "ok");
    assert_int_equal(proto_encode(&m, buf, 10), -1); /* too small */
}

static void test_garbage_then_valid(void **state)
{
    struct proto_msg m = {.type = PROTO_HEARTBEAT}, out;
    uint8_t frame[64], garbage[300];
    struct proto_reader r;
    int n, bad = 0, msgs = 0;
    enum proto_next rc;
    char why[128];

    (void)state;
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (uint8_t)(i * 37 + 11); /* includes stray 0xC6 bytes */
    m.u.heartbeat.seq = 9;
    n = encode(&m, frame, sizeof(frame));
    proto_reader_init(&r);
    proto_reader_push(&r, garbage, sizeof(garbage));
    proto_reader_push(&r, frame, (size_t)n);
    for (int guard = 0; guard < 1000; guard++) {
        rc = proto_reader_next(&r, &out, why, sizeof(why));
        if (rc == PROTO_NEED_MORE)
            break;
        if (rc == PROTO_BAD)
            bad++;
        else
            msgs++;
    }
    assert_true(bad >= 1);
    /* The valid frame after the garbage is found again (a garbage prefix
     * may look like a header that swallows bytes, so push it twice). */
    proto_reader_push(&r, frame, (size_t)n);
    for (int guard = 0; guard < 1000; guard++) {
        rc = proto_reader_next(&r, &out, why, sizeof(why));
        if (rc == PROTO_NEED_MORE)
            break;
        if (rc == PROTO_MSG)
            msgs++;
    }
    assert_true(msgs >= 1);
    assert_int_equal(out.u.heartbeat.seq, 9);
}

static void test_oversize_length(void **state)
{
    uint8_t hdr[PROTO_HDR_LEN] = {PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION,
                                  PROTO_HEARTBEAT, 0xff, 0xff, 0xff, 0xff};
    struct proto_reader r;
    struct proto_msg out;
    char why[128];

    (void)state;
    proto_reader_init(&r);
    proto_reader_push(&r, hdr, sizeof(hdr));
    assert_int_equal(proto_reader_next(&r, &out, why, sizeof(why)), PROTO_BAD);
    assert_non_null(strstr(why, "exceeds"));
    assert_true(r.len < sizeof(hdr));
}

static void test_wrong_version_and_type(void **state)
{
    uint8_t f1[PROTO_HDR_LEN] = {PROTO_MAGIC0, PROTO_MAGIC1, 9, PROTO_HEARTBEAT, 0, 0, 0, 0};
    uint8_t f2[PROTO_HDR_LEN] = {PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, 200, 0, 0, 0, 0};
    uint8_t f3[PROTO_HDR_LEN + 3] = {PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION,
                                     PROTO_HEARTBEAT, 0, 0, 0, 3, 1, 2, 3};
    struct proto_reader r;
    struct proto_msg out;
    char why[128];

    (void)state;
    proto_reader_init(&r);
    proto_reader_push(&r, f1, sizeof(f1));
    assert_int_equal(proto_reader_next(&r, &out, why, sizeof(why)), PROTO_BAD);
    assert_non_null(strstr(why, "version"));
    assert_int_equal(r.len, 0);
    proto_reader_push(&r, f2, sizeof(f2));
    assert_int_equal(proto_reader_next(&r, &out, why, sizeof(why)), PROTO_BAD);
    assert_non_null(strstr(why, "unknown message type"));
    proto_reader_push(&r, f3, sizeof(f3));
    assert_int_equal(proto_reader_next(&r, &out, why, sizeof(why)), PROTO_BAD);
    assert_non_null(strstr(why, "truncated"));
    assert_int_equal(r.len, 0);
}

static void test_string_bounds_on_decode(void **state)
{
    /* HELLO with an agent_version length of 65 (> PROTO_MAX_STR). */
    uint8_t p[2 + 2 + 65];
    struct proto_msg out;
    char why[128];

    (void)state;
    memset(p, 'a', sizeof(p));
    p[0] = 0;
    p[1] = 1;
    p[2] = 0;
    p[3] = 65;
    assert_int_equal(proto_decode_payload(PROTO_HELLO, p, sizeof(p), &out, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "agent_version"));
    /* Non-printable bytes in a string are refused. */
    p[3] = 2;
    p[4] = 0x07;
    assert_int_equal(proto_decode_payload(PROTO_HELLO, p, sizeof(p), &out, why, sizeof(why)), -1);
}

static void test_host_hello_interval_bounds(void **state)
{
    struct proto_msg m = {.type = PROTO_HOST_HELLO}, out;
    uint8_t buf[128];
    char why[128];
    int n;

    (void)state;
    m.u.host_hello.heartbeat_ms = 1; /* below PROTO_MIN_HEARTBEAT_MS */
    n = encode(&m, buf, sizeof(buf));
    assert_int_equal(proto_decode_payload(PROTO_HOST_HELLO, buf + PROTO_HDR_LEN,
                                          (size_t)n - PROTO_HDR_LEN, &out, why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "heartbeat_ms"));
}

static void test_trailing_fields_ignored(void **state)
{
    struct proto_msg m = {.type = PROTO_PING}, out;
    uint8_t buf[128];
    int n;

    (void)state;
    m.u.ping.seq = 3;
    n = encode(&m, buf, sizeof(buf));
    /* A later revision appends 4 bytes: still decodes. */
    assert_int_equal(proto_decode_payload(PROTO_PING, buf + PROTO_HDR_LEN,
                                          (size_t)n - PROTO_HDR_LEN + 4, &out, NULL, 0),
                     0);
    assert_int_equal(out.u.ping.seq, 3);
}

static void roundtrip(const struct proto_msg *in)
{
    uint8_t buf[PROTO_MAX_FRAME];
    struct proto_reader r;
    struct proto_msg out;
    char why[160];
    int n = encode(in, buf, sizeof(buf));

    proto_reader_init(&r);
    assert_int_equal(proto_reader_push(&r, buf, (size_t)n), n);
    if (proto_reader_next(&r, &out, why, sizeof(why)) != PROTO_MSG)
        fail_msg("%s did not decode: %s", proto_type_name(in->type), why);
    assert_int_equal(out.type, in->type);
    assert_memory_equal(&out.u, &in->u, sizeof(out.u));
}

static void test_ha_messages(void **state)
{
    static struct proto_msg m; /* large: keep it off the stack, zeroed */

    (void)state;
    memset(&m, 0, sizeof(m));
    m.type = PROTO_CONFIG;
    m.u.config.watchdog_s = 2;
    m.u.config.app_max_restarts = 3;
    m.u.config.app_window_ms = 60000;
    m.u.config.n_procs = PROTO_MAX_PROCS;
    for (int i = 0; i < PROTO_MAX_PROCS; i++) {
        snprintf(m.u.config.procs[i].name, sizeof(m.u.config.procs[i].name), "p%d", i);
        memset(m.u.config.procs[i].command, 'x', PROTO_MAX_LSTR);
    }
    roundtrip(&m); /* the largest CONFIG fits one frame */

    memset(&m, 0, sizeof(m));
    m.type = PROTO_ROLE_SET;
    m.u.role_set.generation = 77;
    m.u.role_set.role = PROTO_ROLE_ACTIVE;
    strcpy(m.u.role_set.assignment, "web-a0");
    m.u.role_set.n_vips = 2;
    strcpy(m.u.role_set.vips[0], "10.77.0.50/24");
    strcpy(m.u.role_set.vips[1], "10.77.0.51/24");
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = PROTO_ROLE_ACK;
    m.u.role_ack.generation = 77;
    m.u.role_ack.role = PROTO_ROLE_STANDBY;
    m.u.role_ack.result = PROTO_ACK_STALE;
    strcpy(m.u.role_ack.detail, "older than 78");
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = PROTO_APP_EVENT;
    strcpy(m.u.app_event.name, "nf");
    m.u.app_event.kind = PROTO_APP_EXITED;
    m.u.app_event.status = -9;
    m.u.app_event.restarts = 2;
    m.u.app_event.pid = 4242;
    roundtrip(&m);
}

static void test_ha_bounds(void **state)
{
    static struct proto_msg m;
    uint8_t buf[PROTO_MAX_FRAME], p[16];
    char why[160];

    (void)state;
    memset(&m, 0, sizeof(m));
    m.type = PROTO_CONFIG;
    m.u.config.n_procs = PROTO_MAX_PROCS + 1;
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), -1);
    m.u.config.n_procs = 0;
    m.u.config.watchdog_s = PROTO_MAX_WATCHDOG_S + 1;
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), -1);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_ROLE_SET;
    m.u.role_set.role = 9;
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), -1);
    /* Decoding: a role of 9 and an APP_EVENT kind of 7 are refused. */
    memset(p, 0, sizeof(p));
    p[8] = 9; /* role after the u64 generation */
    assert_int_equal(proto_decode_payload(PROTO_ROLE_SET, p, 12, &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "role"));
    memset(p, 0, sizeof(p));
    p[2] = 7; /* kind after an empty name */
    assert_int_equal(proto_decode_payload(PROTO_APP_EVENT, p, 15, &m, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "kind"));
    /* CONFIG claiming 9 processes */
    memset(p, 0, sizeof(p));
    p[12] = PROTO_MAX_PROCS + 1;
    assert_int_equal(proto_decode_payload(PROTO_CONFIG, p, 13, &m, why, sizeof(why)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_types),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_encode_rejects_bad_strings),
        cmocka_unit_test(test_garbage_then_valid),
        cmocka_unit_test(test_oversize_length),
        cmocka_unit_test(test_wrong_version_and_type),
        cmocka_unit_test(test_string_bounds_on_decode),
        cmocka_unit_test(test_host_hello_interval_bounds),
        cmocka_unit_test(test_trailing_fields_ignored),
        cmocka_unit_test(test_ha_messages),
        cmocka_unit_test(test_ha_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
