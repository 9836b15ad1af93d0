/* Unit tests for cgv-guest's process supervision decisions: starts, the
 * sliding restart window, giving up, idempotent CONFIG, stop/replace, and
 * the /proc/PID/stat parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "agent_proto.h"
#include "guest_super.h"

#define MS 1000LL

static struct proto_config cfg(uint32_t max, uint32_t window_ms, unsigned n, ...)
{
    struct proto_config c;
    va_list ap;

    memset(&c, 0, sizeof(c));
    c.app_max_restarts = max;
    c.app_window_ms = window_ms;
    c.n_procs = (uint8_t)n;
    va_start(ap, n);
    for (unsigned i = 0; i < n; i++) {
        strcpy(c.procs[i].name, va_arg(ap, const char *));
        strcpy(c.procs[i].command, va_arg(ap, const char *));
    }
    va_end(ap);
    return c;
}

/* Carry out every START at now with pids from *next_pid; returns how many. */
static unsigned start_all(struct guest_super *s, int64_t now, int32_t *next_pid,
                          struct proto_app_event *last)
{
    struct guest_super_action act;
    unsigned n = 0;

    while (guest_super_next(s, now, true, &act)) {
        assert_int_equal(act.act, GUEST_ACT_START);
        guest_super_started(s, act.slot, (*next_pid)++, last);
        assert_int_equal(last->kind, PROTO_APP_STARTED);
        n++;
        assert_true(n < 100);
    }
    return n;
}

static struct guest_proc *by_name(struct guest_super *s, const char *name)
{
    for (unsigned i = 0; i < GUEST_SUPER_SLOTS; i++) {
        if (s->procs[i].state != GUEST_PROC_FREE && strcmp(s->procs[i].name, name) == 0)
            return &s->procs[i];
    }
    return NULL;
}

static void test_first_config_starts(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(3, 60000, 2, "nf", "/usr/sbin/cgv-nf", "log", "logger -f x");
    struct proto_app_event ev;
    struct guest_super_action act;
    int32_t pid = 100;

    (void)state;
    guest_super_init(&s);
    assert_int_equal(guest_super_configure(&s, &c), 2);
    assert_true(guest_super_has_pending(&s));
    assert_int_equal(guest_super_deadline(&s), INT64_MAX);
    /* nothing is started while the caller says it may not */
    assert_false(guest_super_next(&s, 0, false, &act));
    assert_int_equal(start_all(&s, 0, &pid, &ev), 2);
    assert_int_equal(ev.restarts, 0);
    assert_int_equal(ev.pid, 101);
    assert_int_equal(by_name(&s, "nf")->state, GUEST_PROC_RUNNING);
    assert_int_equal(by_name(&s, "nf")->pid, 100);
    assert_string_equal(by_name(&s, "log")->command, "logger -f x");
    assert_false(guest_super_has_pending(&s));
    /* the same CONFIG again: nothing to do */
    assert_int_equal(guest_super_configure(&s, &c), 0);
    assert_false(guest_super_next(&s, 0, true, &act));
}

static void test_restart_then_give_up(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(2, 1000, 1, "nf", "cgv-nf");
    struct proto_app_event ev;
    struct guest_super_action act;
    int32_t pid = 10;
    int slot;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    start_all(&s, 0, &pid, &ev);
    /* killed by SIGKILL: restart 1 of 2 */
    assert_true(guest_super_exited(&s, 10, -9, 100 * MS, &ev, &slot));
    assert_true(slot >= 0);
    assert_int_equal(ev.kind, PROTO_APP_EXITED);
    assert_int_equal(ev.status, -9);
    assert_int_equal(ev.restarts, 1);
    assert_int_equal(ev.pid, 10);
    assert_string_equal(ev.name, "nf");
    assert_int_equal(start_all(&s, 100 * MS, &pid, &ev), 1);
    assert_int_equal(ev.restarts, 1);
    assert_int_equal(ev.pid, 11);
    /* exit code 3: restart 2 of 2 */
    assert_true(guest_super_exited(&s, 11, 3, 200 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_EXITED);
    assert_int_equal(ev.status, 3);
    assert_int_equal(ev.restarts, 2);
    start_all(&s, 200 * MS, &pid, &ev);
    /* third exit inside the window: give up */
    assert_true(guest_super_exited(&s, 12, 1, 300 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_GAVE_UP);
    assert_int_equal(ev.restarts, 2);
    assert_int_equal(ev.status, 1);
    assert_int_equal(by_name(&s, "nf")->state, GUEST_PROC_GAVE_UP);
    assert_false(guest_super_next(&s, 10000 * MS, true, &act));
    /* an unknown pid is not ours */
    assert_false(guest_super_exited(&s, 999, 0, 400 * MS, &ev, &slot));
    assert_int_equal(slot, -1);
    /* an identical CONFIG does not revive it */
    assert_int_equal(guest_super_configure(&s, &c), 0);
    assert_false(guest_super_next(&s, 10000 * MS, true, &act));
}

static void test_sliding_window(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(2, 1000, 1, "nf", "cgv-nf");
    struct proto_app_event ev;
    int32_t pid = 10;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    start_all(&s, 0, &pid, &ev);
    assert_true(guest_super_exited(&s, 10, -9, 0, &ev, NULL));
    assert_int_equal(ev.restarts, 1);
    start_all(&s, 0, &pid, &ev);
    assert_true(guest_super_exited(&s, 11, -9, 600 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_EXITED);
    assert_int_equal(ev.restarts, 2);
    start_all(&s, 600 * MS, &pid, &ev);
    /* at 1000 ms the restart of t=0 has left the window: allowed again */
    assert_true(guest_super_exited(&s, 12, -9, 1000 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_EXITED);
    assert_int_equal(ev.restarts, 2);
    start_all(&s, 1000 * MS, &pid, &ev);
    /* at 1500 ms the restarts of 600 and 1000 are both inside: give up */
    assert_true(guest_super_exited(&s, 13, -9, 1500 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_GAVE_UP);
    assert_int_equal(ev.restarts, 2);
}

static void test_no_restarts_and_no_window(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(0, 60000, 1, "once", "true");
    struct proto_app_event ev;
    int32_t pid = 10;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    start_all(&s, 0, &pid, &ev);
    assert_true(guest_super_exited(&s, 10, 0, 5 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_GAVE_UP);
    assert_int_equal(ev.restarts, 0);
    /* window 0: restarts count over the agent's life */
    c = cfg(1, 0, 1, "once", "true");
    assert_int_equal(guest_super_configure(&s, &c), 1); /* new policy: revived */
    assert_int_equal(start_all(&s, 10 * MS, &pid, &ev), 1);
    assert_true(guest_super_exited(&s, 11, 0, 20 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_EXITED);
    start_all(&s, 20 * MS, &pid, &ev);
    assert_true(guest_super_exited(&s, 12, 0, 100000000 * MS, &ev, NULL));
    assert_int_equal(ev.kind, PROTO_APP_GAVE_UP);
}

static void test_changed_command_revives_given_up(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(0, 1000, 1, "nf", "cgv-nf");
    struct proto_app_event ev;
    int32_t pid = 10;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    start_all(&s, 0, &pid, &ev);
    guest_super_exited(&s, 10, 1, 0, &ev, NULL);
    assert_int_equal(by_name(&s, "nf")->state, GUEST_PROC_GAVE_UP);
    c = cfg(0, 1000, 1, "nf", "cgv-nf -p 7001");
    assert_int_equal(guest_super_configure(&s, &c), 1);
    assert_int_equal(start_all(&s, 0, &pid, &ev), 1);
    assert_string_equal(by_name(&s, "nf")->command, "cgv-nf -p 7001");
}

static void test_remove_stops_with_term_then_kill(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(3, 1000, 2, "a", "A", "b", "B");
    struct proto_config only_b = cfg(3, 1000, 1, "b", "B");
    struct proto_app_event ev;
    struct guest_super_action act;
    int32_t pid = 10;
    int slot;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    start_all(&s, 0, &pid, &ev); /* a = 10, b = 11 */
    assert_int_equal(guest_super_configure(&s, &only_b), 1);
    assert_true(guest_super_next(&s, 1000 * MS, true, &act));
    assert_int_equal(act.act, GUEST_ACT_TERM);
    assert_int_equal(act.pid, 10);
    assert_int_equal(guest_super_deadline(&s), 1000 * MS + GUEST_SUPER_STOP_GRACE_US);
    assert_false(guest_super_next(&s, 1000 * MS + GUEST_SUPER_STOP_GRACE_US - 1, true, &act));
    assert_true(guest_super_next(&s, 1000 * MS + GUEST_SUPER_STOP_GRACE_US, true, &act));
    assert_int_equal(act.act, GUEST_ACT_KILL);
    assert_int_equal(act.pid, 10);
    assert_int_equal(guest_super_deadline(&s), INT64_MAX);
    assert_false(guest_super_next(&s, 9000 * MS, true, &act));
    /* it ends: no event, the slot is free */
    assert_false(guest_super_exited(&s, 10, -9, 3500 * MS, &ev, &slot));
    assert_true(slot >= 0);
    assert_null(by_name(&s, "a"));
    assert_int_equal(by_name(&s, "b")->state, GUEST_PROC_RUNNING);
    /* removing something that is not running frees it at once */
    c = cfg(0, 1000, 1, "c", "C");
    guest_super_configure(&s, &c); /* b stops, c pending */
    assert_true(guest_super_next(&s, 4000 * MS, false, &act));
    assert_int_equal(act.act, GUEST_ACT_TERM);
    assert_int_equal(act.pid, 11);
    assert_non_null(by_name(&s, "c"));
    guest_super_configure(&s, &only_b); /* c dropped before it ran; b comes back */
    assert_null(by_name(&s, "c"));
    assert_string_equal(by_name(&s, "b")->next_command, "B");
    /* b's old process ends: b starts again */
    assert_false(guest_super_exited(&s, 11, -15, 4100 * MS, &ev, NULL));
    assert_int_equal(start_all(&s, 4100 * MS, &pid, &ev), 1);
    assert_int_equal(by_name(&s, "b")->pid, 12);
}

static void test_changed_command_replaces(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(3, 1000, 1, "nf", "cgv-nf");
    struct proto_config c2 = cfg(3, 1000, 1, "nf", "cgv-nf -p 7001");
    struct proto_app_event ev;
    struct guest_super_action act;
    int32_t pid = 10;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    start_all(&s, 0, &pid, &ev);
    guest_super_exited(&s, 10, -9, 0, &ev, NULL); /* one restart in the history */
    start_all(&s, 0, &pid, &ev);
    assert_int_equal(guest_super_configure(&s, &c2), 1);
    assert_true(guest_super_next(&s, 0, true, &act));
    assert_int_equal(act.act, GUEST_ACT_TERM);
    assert_int_equal(act.pid, 11);
    /* the new command does not start before the old process is gone */
    assert_false(guest_super_next(&s, 0, true, &act));
    assert_false(guest_super_exited(&s, 11, -15, 10 * MS, &ev, NULL));
    assert_true(guest_super_next(&s, 10 * MS, true, &act));
    assert_int_equal(act.act, GUEST_ACT_START);
    assert_string_equal(s.procs[act.slot].command, "cgv-nf -p 7001");
    guest_super_started(&s, act.slot, 12, &ev);
    assert_int_equal(ev.restarts, 0); /* a new command: a new history */
    assert_int_equal(guest_super_configure(&s, &c2), 0);
}

static void test_spawn_failed(void **state)
{
    struct guest_super s;
    struct proto_config c = cfg(1, 1000, 1, "x", "x");
    struct proto_app_event ev;
    struct guest_super_action act;

    (void)state;
    guest_super_init(&s);
    guest_super_configure(&s, &c);
    assert_true(guest_super_next(&s, 0, true, &act));
    assert_true(guest_super_spawn_failed(&s, act.slot, 0, &ev));
    assert_int_equal(ev.kind, PROTO_APP_EXITED);
    assert_int_equal(ev.status, 127);
    assert_true(guest_super_next(&s, 0, true, &act));
    assert_true(guest_super_spawn_failed(&s, act.slot, 0, &ev));
    assert_int_equal(ev.kind, PROTO_APP_GAVE_UP);
    assert_false(guest_super_next(&s, 0, true, &act));
}

static void test_split(void **state)
{
    static const char *shell[] = {
        "", "cgv-nf", "./cgv-nf", "/bin/a | b", "/bin/a; b", "/bin/a $X", "/bin/a 'x y'",
        "/bin/a \"x\"", "/bin/a *", "/bin/a ~", "/bin/a #c", "/bin/a >f", "/bin/a\tb",
        "/bin/a &", "/bin/a `b`", "/bin/a (b)", "/bin/a\\b", "/bin/a ?",
    };
    const char *four = "/usr/sbin/cgv-nf  -p 7001 --x=a,b:c@d%e+f ";
    char buf[64], *argv[4], *av[8];

    (void)state;
    assert_int_equal(guest_super_split("/usr/sbin/cgv-nf", buf, sizeof(buf), argv, 4), 1);
    assert_string_equal(argv[0], "/usr/sbin/cgv-nf");
    assert_null(argv[1]);
    assert_int_equal(guest_super_split(four, buf, sizeof(buf), av, 8), 4);
    assert_string_equal(av[0], "/usr/sbin/cgv-nf");
    assert_string_equal(av[1], "-p");
    assert_string_equal(av[2], "7001");
    assert_string_equal(av[3], "--x=a,b:c@d%e+f");
    assert_null(av[4]);
    /* four words and the NULL do not fit in four slots: the shell does it */
    assert_int_equal(guest_super_split(four, buf, sizeof(buf), argv, 4), 0);
    for (size_t i = 0; i < sizeof(shell) / sizeof(shell[0]); i++)
        assert_int_equal(guest_super_split(shell[i], buf, sizeof(buf), argv, 4), 0);
    /* too long for the buffer */
    assert_int_equal(guest_super_split("/usr/sbin/cgv-nf", buf, 8, argv, 4), 0);
}

static void test_status_code(void **state)
{
    (void)state;
    assert_int_equal(guest_status_code(W_EXITCODE(0, 0)), 0);
    assert_int_equal(guest_status_code(W_EXITCODE(42, 0)), 42);
    assert_int_equal(guest_status_code(9), -9);  /* killed by SIGKILL */
    assert_int_equal(guest_status_code(15 | 0x80), -15); /* SIGTERM, core dumped */
}

static void test_stat_parse(void **state)
{
    const char *good = "1234 (cgv nf) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 "
                       "20 0 1 0 98765 2490368 100 18446744073709551615\n";
    const char *zombie = "77 (sh) Z 1 77 77 0 -1 4 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0";
    const char *bad[] = {
        "",
        "1234 cgv-nf S 1 2 3",
        "1234 (cgv-nf) S 1 2 3 4",
        "1234 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x9",
    };
    uint64_t st = 0;
    char s = 0;

    (void)state;
    assert_int_equal(guest_stat_parse(good, strlen(good), &s, &st), 0);
    assert_int_equal(s, 'S');
    assert_int_equal(st, 98765);
    assert_int_equal(guest_stat_parse(zombie, strlen(zombie), &s, &st), 0);
    assert_int_equal(s, 'Z');
    assert_int_equal(st, 5);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(guest_stat_parse(bad[i], strlen(bad[i]), &s, &st), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_config_starts),
        cmocka_unit_test(test_restart_then_give_up),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_no_restarts_and_no_window),
        cmocka_unit_test(test_changed_command_revives_given_up),
        cmocka_unit_test(test_remove_stops_with_term_then_kill),
        cmocka_unit_test(test_changed_command_replaces),
        cmocka_unit_test(test_spawn_failed),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_status_code),
        cmocka_unit_test(test_stat_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
