/* Unit tests for cgv-guest's protocol state machine: HELLO, HOST_HELLO,
 * heartbeat schedule, PING/PONG, SHUTDOWN and garbage from the host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent_proto.h"
#include "guest_agent.h"

#define MS 1000LL

static void push_msg(struct guest_agent *a, const struct proto_msg *m)
{
    uint8_t buf[PROTO_MAX_FRAME];
    int n = proto_encode(m, buf, sizeof(buf));

    assert_true(n > 0);
    assert_int_equal(proto_reader_push(&a->rd, buf, (size_t)n), n);
}

static void push_host_hello(struct guest_agent *a, uint32_t hb_ms)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_HOST_HELLO;
    m.u.host_hello.version = PROTO_VERSION;
    m.u.host_hello.heartbeat_ms = hb_ms;
    strcpy(m.u.host_hello.vm_name, "demo-0");
    push_msg(a, &m);
}

/* Decode everything the agent queued into out[], return how many. */
static size_t take_out(struct guest_agent *a, struct proto_msg *out, size_t max)
{
    struct proto_reader r;
    char why[128];
    size_t n = 0;

    proto_reader_init(&r);
    assert_int_equal(proto_reader_push(&r, a->out, a->out_len), a->out_len);
    guest_agent_out_consume(a, a->out_len);
    while (n < max) {
        enum proto_next rc = proto_reader_next(&r, &out[n], why, sizeof(why));
        if (rc == PROTO_NEED_MORE)
            break;
        assert_int_equal(rc, PROTO_MSG);
        n++;
    }
    assert_int_equal(r.len, 0);
    return n;
}

static void test_hello(void **state)
{
    struct guest_agent a;
    struct proto_msg out[4];

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 0xfeedULL, 2500 * MS);
    assert_int_equal(a.out_len, 0);
    assert_int_equal(guest_agent_queue_hello(&a, 2600 * MS), 0);
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].type, PROTO_HELLO);
    assert_int_equal(out[0].u.hello.version, PROTO_VERSION);
    assert_string_equal(out[0].u.hello.agent_version, "0.1.0");
    assert_string_equal(out[0].u.hello.vm_name, "demo-0");
    assert_int_equal(out[0].u.hello.boot_id, 0xfeed);
    assert_int_equal(out[0].u.hello.uptime_ms, 2600);
}

static void test_heartbeat_schedule(void **state)
{
    struct guest_agent a;
    struct proto_msg out[4];
    int64_t t0 = 10000 * MS;

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 1, t0);
    assert_int_equal(a.heartbeat_ms, GUEST_DEFAULT_HEARTBEAT_MS);
    assert_int_equal(a.next_hb_us, t0 + 1000 * MS);
    assert_false(guest_agent_tick(&a, t0 + 999 * MS, 0, true));
    assert_int_equal(a.out_len, 0);
    /* woken 3 ms late: the next deadline keeps the phase */
    assert_true(guest_agent_tick(&a, t0 + 1003 * MS, 42, true));
    assert_int_equal(a.next_hb_us, t0 + 2000 * MS);
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].type, PROTO_HEARTBEAT);
    assert_int_equal(out[0].u.heartbeat.seq, 1);
    assert_int_equal(out[0].u.heartbeat.uptime_ms, 11003);
    assert_int_equal(out[0].u.heartbeat.app_served, 42);
    assert_true(guest_agent_tick(&a, t0 + 2000 * MS, 43, true));
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].u.heartbeat.seq, 2);
    /* stalled for 5 s (VM paused): one heartbeat, schedule restarts from now */
    assert_true(guest_agent_tick(&a, t0 + 7500 * MS, 43, true));
    assert_int_equal(a.next_hb_us, t0 + 8500 * MS);
    assert_false(guest_agent_tick(&a, t0 + 7600 * MS, 43, true));
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].u.heartbeat.seq, 3);
    /* host away: the tick passes, nothing queued, seq unchanged */
    assert_true(guest_agent_tick(&a, t0 + 8500 * MS, 43, false));
    assert_int_equal(a.out_len, 0);
    assert_true(guest_agent_tick(&a, t0 + 9500 * MS, 43, true));
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].u.heartbeat.seq, 4);
}

static void test_host_hello_adopts_interval(void **state)
{
    struct guest_agent a;
    struct proto_msg out[16];
    char why[128];
    int64_t t0 = 5000 * MS;

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 7, t0);
    push_host_hello(&a, 100);
    assert_int_equal(guest_agent_step(&a, t0 + 10 * MS, why, sizeof(why)),
                     GUEST_EV_HOST_HELLO);
    assert_int_equal(guest_agent_step(&a, t0 + 10 * MS, why, sizeof(why)), GUEST_EV_NONE);
    assert_int_equal(a.heartbeat_ms, 100);
    assert_int_equal(a.next_hb_us, t0 + 110 * MS);
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].type, PROTO_HELLO);
    assert_int_equal(out[0].u.hello.boot_id, 7);
    for (int i = 1; i <= 10; i++)
        assert_true(guest_agent_tick(&a, t0 + (10 + 100 * i) * MS, 0, true));
    assert_int_equal(take_out(&a, out, 16), 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(out[i].type, PROTO_HEARTBEAT);
        assert_int_equal(out[i].u.heartbeat.seq, (uint64_t)i + 1);
        assert_int_equal(out[i].u.heartbeat.uptime_ms, 5010 + 100 * (i + 1));
    }
}

static void test_ping_pong_and_ignored(void **state)
{
    struct guest_agent a;
    struct proto_msg m, out[4];
    char why[128];

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 7, 0);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_PING;
    m.u.ping.seq = 99;
    m.u.ping.host_ts_us = 123456789012ULL;
    push_msg(&a, &m);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_HEARTBEAT; /* guest -> host only */
    push_msg(&a, &m);
    assert_int_equal(guest_agent_step(&a, 0, why, sizeof(why)), GUEST_EV_PING);
    assert_int_equal(guest_agent_step(&a, 0, why, sizeof(why)), GUEST_EV_IGNORED);
    assert_non_null(strstr(why, "HEARTBEAT"));
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].type, PROTO_PONG);
    assert_int_equal(out[0].u.ping.seq, 99);
    assert_int_equal(out[0].u.ping.host_ts_us, 123456789012ULL);
}

static void test_shutdown(void **state)
{
    struct guest_agent a;
    struct proto_msg m;
    char why[128];

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 7, 0);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_SHUTDOWN;
    m.u.shutdown.action = PROTO_SHUTDOWN_REBOOT;
    push_msg(&a, &m);
    assert_int_equal(guest_agent_step(&a, 0, why, sizeof(why)), GUEST_EV_SHUTDOWN);
    assert_int_equal(a.shutdown_action, PROTO_SHUTDOWN_REBOOT);
    assert_int_equal(a.out_len, 0);
}

static void test_garbage_is_skipped(void **state)
{
    static const uint8_t junk[] = "hello there\x00\xff\xc6\x76\x09\x01";
    uint8_t badlen[] = {PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, 1, 0x7f, 0, 0, 0};
    uint8_t badhb[] = {PROTO_MAGIC0, PROTO_MAGIC1, PROTO_VERSION, PROTO_HOST_HELLO,
                       0, 0, 0, 8, 0, 1, 0, 0, 0, 1 /* 1 ms: out of range */, 0, 0};
    struct guest_agent a;
    struct proto_msg out[4];
    enum guest_event ev;
    char why[128];
    int bad = 0, hellos = 0, steps = 0;

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 7, 0);
    proto_reader_push(&a.rd, junk, sizeof(junk) - 1);
    proto_reader_push(&a.rd, badlen, sizeof(badlen));
    proto_reader_push(&a.rd, badhb, sizeof(badhb));
    push_host_hello(&a, 250);
    while ((ev = guest_agent_step(&a, 0, why, sizeof(why))) != GUEST_EV_NONE) {
        assert_true(++steps < 1000);
        if (ev == GUEST_EV_BAD) {
            bad++;
            assert_true(strlen(why) > 0);
        } else if (ev == GUEST_EV_HOST_HELLO) {
            hellos++;
        }
    }
    assert_true(bad >= 3);
    assert_int_equal(a.n_bad, (uint64_t)bad);
    assert_int_equal(hellos, 1);
    assert_int_equal(a.heartbeat_ms, 250);
    assert_int_equal(take_out(&a, out, 4), 1);
    assert_int_equal(out[0].type, PROTO_HELLO);
}

/* The SIGUSR1 test hook: the host's reader must report each malformed piece
 * and still decode the valid frames before and after the burst. */
static void test_garbage_burst_for_host(void **state)
{
    struct guest_agent a;
    struct proto_reader host;
    struct proto_msg m;
    char why[160];
    size_t n;
    int bad = 0, hellos = 0, heartbeats = 0;
    enum proto_next rc;

    (void)state;
    guest_agent_init(&a, "vm-0", "0.1.0", 7, 0);
    assert_int_equal(guest_agent_queue_hello(&a, 0), 0);
    n = guest_agent_queue_garbage(&a);
    assert_true(n > 0);
    assert_true(guest_agent_tick(&a, 2000000, 5, true));
    proto_reader_init(&host);
    for (size_t off = 0; off < a.out_len;) {
        off += proto_reader_push(&host, a.out + off, a.out_len - off);
        while ((rc = proto_reader_next(&host, &m, why, sizeof(why))) != PROTO_NEED_MORE) {
            if (rc == PROTO_BAD)
                bad++;
            else if (m.type == PROTO_HELLO)
                hellos++;
            else if (m.type == PROTO_HEARTBEAT)
                heartbeats++;
            else
                bad++; /* a guest must not send SHUTDOWN: the host refuses it */
        }
    }
    assert_int_equal(hellos, 1);
    assert_int_equal(heartbeats, 1);
    assert_true(bad >= 7);
    /* No room: nothing queued, nothing half-queued. */
    a.out_len = sizeof(a.out) - 10;
    assert_int_equal(guest_agent_queue_garbage(&a), 0);
    assert_int_equal(a.out_len, sizeof(a.out) - 10);
}

static void test_output_full_drops(void **state)
{
    struct guest_agent a;
    int ok = 0;

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 7, 0);
    for (int i = 0; i < 1000; i++)
        ok += guest_agent_queue_hello(&a, 0) == 0;
    assert_true(ok > 10 && ok < 1000);
    assert_int_equal(a.n_dropped, (uint64_t)(1000 - ok));
    assert_true(a.out_len <= GUEST_OUT_CAP);
    guest_agent_reset_io(&a);
    assert_int_equal(a.out_len, 0);
    assert_int_equal(guest_agent_queue_hello(&a, 0), 0);
}

static void test_ha_messages(void **state)
{
    struct guest_agent a;
    struct proto_msg m, out[4];
    struct proto_app_event ev;
    char why[128], longdetail[200];

    (void)state;
    guest_agent_init(&a, "demo-0", "0.1.0", 7, 0);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_CONFIG;
    m.u.config.watchdog_s = 2;
    m.u.config.app_max_restarts = 3;
    m.u.config.app_window_ms = 60000;
    m.u.config.n_procs = 1;
    strcpy(m.u.config.procs[0].name, "nf");
    strcpy(m.u.config.procs[0].command, "/usr/sbin/cgv-nf");
    push_msg(&a, &m);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_ROLE_SET;
    m.u.role_set.generation = 42;
    m.u.role_set.role = PROTO_ROLE_ACTIVE;
    strcpy(m.u.role_set.assignment, "a0");
    m.u.role_set.n_vips = 1;
    strcpy(m.u.role_set.vips[0], "10.79.2.50/24");
    push_msg(&a, &m);
    assert_int_equal(guest_agent_step(&a, 0, why, sizeof(why)), GUEST_EV_CONFIG);
    assert_int_equal(a.config.watchdog_s, 2);
    assert_int_equal(a.config.n_procs, 1);
    assert_string_equal(a.config.procs[0].command, "/usr/sbin/cgv-nf");
    assert_int_equal(guest_agent_step(&a, 0, why, sizeof(why)), GUEST_EV_ROLE_SET);
    assert_int_equal(a.role_set.generation, 42);
    assert_string_equal(a.role_set.vips[0], "10.79.2.50/24");
    assert_int_equal(guest_agent_step(&a, 0, why, sizeof(why)), GUEST_EV_NONE);
    assert_int_equal(a.out_len, 0); /* the agent answers only once it acted */

    /* a detail too long for the wire is cut, not dropped */
    memset(longdetail, 'x', sizeof(longdetail) - 1);
    longdetail[sizeof(longdetail) - 1] = '\0';
    assert_int_equal(guest_agent_queue_role_ack(&a, 42, PROTO_ROLE_ACTIVE, PROTO_ACK_FAILED,
                                                longdetail), 0);
    memset(&ev, 0, sizeof(ev));
    strcpy(ev.name, "nf");
    ev.kind = PROTO_APP_EXITED;
    ev.status = -9;
    ev.restarts = 1;
    ev.pid = 1234;
    assert_int_equal(guest_agent_queue_app_event(&a, &ev), 0);
    assert_int_equal(take_out(&a, out, 4), 2);
    assert_int_equal(out[0].type, PROTO_ROLE_ACK);
    assert_int_equal(out[0].u.role_ack.generation, 42);
    assert_int_equal(out[0].u.role_ack.role, PROTO_ROLE_ACTIVE);
    assert_int_equal(out[0].u.role_ack.result, PROTO_ACK_FAILED);
    assert_int_equal(strlen(out[0].u.role_ack.detail), PROTO_MAX_STR);
    assert_int_equal(out[1].type, PROTO_APP_EVENT);
    assert_string_equal(out[1].u.app_event.name, "nf");
    assert_int_equal(out[1].u.app_event.kind, PROTO_APP_EXITED);
    assert_int_equal(out[1].u.app_event.status, -9);
    assert_int_equal(out[1].u.app_event.restarts, 1);
    assert_int_equal(out[1].u.app_event.pid, 1234);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_heartbeat_schedule),
        cmocka_unit_test(test_host_hello_adopts_interval),
        cmocka_unit_test(test_ping_pong_and_ignored),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_garbage_is_skipped),
        cmocka_unit_test(test_garbage_burst_for_host),
        cmocka_unit_test(test_output_full_drops),
        cmocka_unit_test(test_ha_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
