/* Unit tests for evlog.c: events persisted in a real store (a temporary
 * SQLite file), logged, and one-shot watchers woken exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cgv_log.h"
#include "evlog.h"
#include "store.h"

struct ctx {
    char dir[64];
    char path[128];
    struct store *st;
    struct evlog *ev;
    char *logbuf;
    size_t loglen;
    FILE *log;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct cgv_error err = {0};

    strcpy(c->dir, "/tmp/cgvut-evlog-XXXXXX");
    if (!mkdtemp(c->dir))
        return -1;
    snprintf(c->path, sizeof(c->path), "%s/cgvd.db", c->dir);
    if (store_open(c->path, &c->st, &err) != 0 || evlog_new(c->st, &c->ev, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    c->log = open_memstream(&c->logbuf, &c->loglen);
    cgv_log_set_stream(c->log);
    *state = c;
    return 0;
}

static void rm_db(const char *dir)
{
    static const char *const files[] = {"cgvd.db", "cgvd.db-wal", "cgvd.db-shm",
                                        "cgvd.db-journal"};
    char p[256];

    for (size_t i = 0; i < CGV_ARRAY_LEN(files); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    cgv_log_set_stream(stderr);
    fclose(c->log);
    free(c->logbuf);
    evlog_free(c->ev);
    store_close(c->st);
    rm_db(c->dir);
    free(c);
    return 0;
}

static const char *logged(struct ctx *c)
{
    fflush(c->log);
    return c->logbuf ? c->logbuf : "";
}

/* ---- watchers -------------------------------------------------------- */

struct counter {
    int calls;
    struct ctx *c;
    struct evlog_watch *rearm; /* re-armed handle, if the callback re-arms */
    struct evlog_watch *victim; /* unwatched by the callback */
    int64_t seen_last_id;
};

static void count_cb(void *opaque)
{
    struct counter *k = opaque;

    k->calls++;
    k->seen_last_id = evlog_last_id(k->c->ev);
}

static void rearm_cb(void *opaque)
{
    struct counter *k = opaque;

    k->calls++;
    /* A long poll answered with nothing new waits again. */
    k->rearm = evlog_watch(k->c->ev, rearm_cb, k);
}

static void unwatch_cb(void *opaque)
{
    struct counter *k = opaque;

    k->calls++;
    if (k->victim) {
        evlog_unwatch(k->c->ev, k->victim);
        k->victim = NULL;
    }
}

/* ---- tests ------------------------------------------------------------ */

static void test_emit_stored(void **state)
{
    struct ctx *c = *state;
    struct store_event *list = NULL;
    size_t n = 0;
    struct cgv_error err = {0};
    int64_t a, b, d;

    a = evlog_emit(c->ev, "info", "vm.started", "demo", "demo-0", "started on %s in %d ms",
                   "host1", 42);
    b = evlog_emit(c->ev, "warn", "vm.heartbeat-late", "demo", "demo-1", "late by %d ms", 300);
    d = evlog_emit(c->ev, "error", "daemon.libvirt", NULL, NULL, "%s", "connection lost");
    assert_true(a > 0);
    assert_true(b > a);
    assert_true(d > b);
    assert_int_equal(evlog_last_id(c->ev), d);
    assert_int_equal(store_event_last_id(c->st), d);

    assert_int_equal(store_event_list(c->st, 0, NULL, NULL, 0, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, a);
    assert_string_equal(list[0].severity, "info");
    assert_string_equal(list[0].type, "vm.started");
    assert_string_equal(list[0].service, "demo");
    assert_string_equal(list[0].vm, "demo-0");
    assert_string_equal(list[0].message, "started on host1 in 42 ms");
    assert_true(list[0].time_ms > 0);
    assert_string_equal(list[1].severity, "warn");
    assert_string_equal(list[1].message, "late by 300 ms");
    assert_null(list[2].service);
    assert_null(list[2].vm);
    assert_string_equal(list[2].message, "connection lost");
    store_event_free_list(list, n);

    /* Logged too, at the matching level. */
    assert_non_null(strstr(logged(c), "vm.started demo-0 started on host1 in 42 ms"));
    assert_non_null(strstr(logged(c), "daemon.libvirt connection lost"));
    assert_non_null(strstr(logged(c), " error "));
    assert_non_null(strstr(logged(c), " warn "));
}

/* Each watcher is called once, on the next event only. */
static void test_watchers_once(void **state)
{
    struct ctx *c = *state;
    struct counter k1 = {.c = c}, k2 = {.c = c}, k3 = {.c = c};
    int64_t id;

    evlog_watch(c->ev, count_cb, &k1);
    evlog_watch(c->ev, count_cb, &k2);
    assert_int_equal(k1.calls, 0);
    id = evlog_emit(c->ev, "info", "t.one", NULL, NULL, "one");
    assert_int_equal(k1.calls, 1);
    assert_int_equal(k2.calls, 1);
    /* The event is in the store and last_id moved before waiters run. */
    assert_int_equal(k1.seen_last_id, id);
    evlog_emit(c->ev, "info", "t.two", NULL, NULL, "two");
    assert_int_equal(k1.calls, 1);
    assert_int_equal(k2.calls, 1);

    evlog_watch(c->ev, count_cb, &k3);
    evlog_emit(c->ev, "info", "t.three", NULL, NULL, "three");
    assert_int_equal(k3.calls, 1);
    assert_int_equal(k1.calls, 1);
}

static void test_unwatch(void **state)
{
    struct ctx *c = *state;
    struct counter k1 = {.c = c}, k2 = {.c = c};
    struct evlog_watch *w1 = evlog_watch(c->ev, count_cb, &k1);

    evlog_watch(c->ev, count_cb, &k2);
    evlog_unwatch(c->ev, w1);
    evlog_emit(c->ev, "info", "t.x", NULL, NULL, "x");
    assert_int_equal(k1.calls, 0);
    assert_int_equal(k2.calls, 1);
    /* Unwatching everything there is, then emitting, calls nobody. */
    w1 = evlog_watch(c->ev, count_cb, &k1);
    evlog_unwatch(c->ev, w1);
    evlog_emit(c->ev, "info", "t.y", NULL, NULL, "y");
    assert_int_equal(k1.calls, 0);
}

/* A watcher that re-arms from its callback is woken by the next event, not
 * again by the one that woke it. */
static void test_rearm_in_callback(void **state)
{
    struct ctx *c = *state;
    struct counter k = {.c = c};

    k.rearm = evlog_watch(c->ev, rearm_cb, &k);
    evlog_emit(c->ev, "info", "t.a", NULL, NULL, "a");
    assert_int_equal(k.calls, 1);
    evlog_emit(c->ev, "info", "t.b", NULL, NULL, "b");
    assert_int_equal(k.calls, 2);
    evlog_unwatch(c->ev, k.rearm);
    evlog_emit(c->ev, "info", "t.c", NULL, NULL, "c");
    assert_int_equal(k.calls, 2);
}

/* A waiter unwatched by another waiter's callback, during the same wake-up,
 * must not be called afterwards. */
static void test_unwatch_in_callback(void **state)
{
    struct ctx *c = *state;
    struct counter killer = {.c = c}, victim = {.c = c};
    struct evlog_watch *vw;

    /* The list is LIFO: the victim is registered first so the killer runs
     * first. */
    vw = evlog_watch(c->ev, count_cb, &victim);
    evlog_watch(c->ev, unwatch_cb, &killer);
    killer.victim = vw;
    evlog_emit(c->ev, "info", "t.k", NULL, NULL, "k");
    assert_int_equal(killer.calls, 1);
    /* A waiter unwatched by another waiter's callback of the same batch is
     * not called (its opaque may be gone). */
    assert_int_equal(victim.calls, 0);
}

/* The store refusing an event (bad severity): id 0, last id unchanged,
 * still logged, waiters still woken. */
static void test_store_refuses(void **state)
{
    struct ctx *c = *state;
    struct counter k = {.c = c};
    int64_t last, id;

    last = evlog_emit(c->ev, "info", "t.ok", NULL, NULL, "ok");
    evlog_watch(c->ev, count_cb, &k);
    id = evlog_emit(c->ev, "fatal", "t.bad", "svc", "svc-0", "bad severity");
    assert_int_equal(id, 0);
    assert_int_equal(evlog_last_id(c->ev), last);
    assert_int_equal(k.calls, 1);
    assert_non_null(strstr(logged(c), "could not store event t.bad"));
    assert_non_null(strstr(logged(c), "t.bad svc-0 bad severity"));
}

/* Messages longer than the buffer are cut, not overrun. */
static void test_long_message(void **state)
{
    struct ctx *c = *state;
    struct store_event *list = NULL;
    size_t n = 0;
    struct cgv_error err = {0};
    char big[5000];
    int64_t id;

    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    id = evlog_emit(c->ev, "info", "t.long", NULL, NULL, "%s", big);
    assert_true(id > 0);
    assert_int_equal(store_event_list(c->st, id - 1, NULL, NULL, 0, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(strlen(list[0].message), 1023);
    store_event_free_list(list, n);
}

/* A new evlog on an existing store continues its ids. */
static void test_reopen(void **state)
{
    struct ctx *c = *state;
    struct evlog *ev2 = NULL;
    struct cgv_error err = {0};
    int64_t a, b;

    a = evlog_emit(c->ev, "info", "t.r", NULL, NULL, "r");
    assert_int_equal(evlog_new(c->st, &ev2, &err), 0);
    assert_int_equal(evlog_last_id(ev2), a);
    b = evlog_emit(ev2, "info", "t.s", NULL, NULL, "s");
    assert_true(b > a);
    evlog_free(ev2);
}

/* Freeing the log with waiters registered frees them (ASan checks). */
static void test_free_with_waiters(void **state)
{
    struct ctx *c = *state;
    struct counter k = {.c = c};

    evlog_watch(c->ev, count_cb, &k);
    evlog_watch(c->ev, count_cb, &k);
    evlog_free(c->ev);
    c->ev = NULL;
    assert_int_equal(k.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_emit_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watchers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatch_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_waiters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
