/* Unit tests for the SQLite store: CRUD, constraints, events, transactions,
 * schema versioning, refusal of bad files, crash safety and a full disk.
 * Every test works in its own mkdtemp directory under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "store_internal.h"

struct fx {
    char dir[64];
    char path[160];
    bool mounted;
};

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (!fx)
        return -1;
    strcpy(fx->dir, "/tmp/cgv-store-test-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/state/cgvd.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    if (fx->mounted)
        umount2(fx->dir, MNT_DETACH);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

#define CHECK_OK(call)                                                       \
    do {                                                                     \
        cgv_err_clear(&err);                                                 \
        if ((call) != 0)                                                     \
            fail_msg("%s failed: [%s] %s", #call, cgv_errcode_name(err.code), \
                     err.msg);                                               \
    } while (0)

#define CHECK_ERR(call, want)                                                \
    do {                                                                     \
        cgv_err_clear(&err);                                                 \
        if ((call) != -1)                                                    \
            fail_msg("%s unexpectedly succeeded", #call);                    \
        if (err.code != (want))                                              \
            fail_msg("%s: want %s, got [%s] %s", #call, cgv_errcode_name(want), \
                     cgv_errcode_name(err.code), err.msg);                   \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                         \
    do {                                                                     \
        if (!strstr((hay), (needle)))                                        \
            fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));     \
    } while (0)

static struct store *open_ok(const char *path)
{
    struct cgv_error err = {0};
    struct store *st = NULL;

    if (store_open(path, &st, &err) != 0)
        fail_msg("store_open %s: [%s] %s", path, cgv_errcode_name(err.code), err.msg);
    assert_non_null(st);
    return st;
}

static void put_service(struct store *st, const char *name, const char *spec)
{
    struct cgv_error err = {0};
    struct store_service svc = {.name = (char *)name, .spec_json = (char *)spec};

    CHECK_OK(store_service_put(st, &svc, &err));
}

static void make_uuid(char out[37], unsigned n)
{
    snprintf(out, 37, "00000000-0000-4000-8000-%012u", n);
}

static void put_vm(struct store *st, const char *service, int index, unsigned uuid_n)
{
    struct cgv_error err = {0};
    char name[64], uuid[37], mac[18];
    struct store_vm vm = {0};

    snprintf(name, sizeof(name), "%s-%d", service, index);
    make_uuid(uuid, uuid_n);
    snprintf(mac, sizeof(mac), "52:54:00:00:%02x:%02x", (uuid_n >> 8) & 0xff,
             uuid_n & 0xff);
    vm.name = name;
    vm.service = (char *)service;
    vm.index = index;
    vm.uuid = uuid;
    vm.mac = mac;
    vm.desired = (char *)"running";
    vm.addresses_json = (char *)"[\"10.0.0.2/24\"]";
    CHECK_OK(store_vm_put(st, &vm, &err));
}

static int64_t pragma_int(struct store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t v;

    assert_int_equal(sqlite3_prepare_v2(store_sqlite(st), sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void assert_integrity_ok(struct store *st)
{
    sqlite3_stmt *s = NULL;

    assert_int_equal(sqlite3_prepare_v2(store_sqlite(st), "PRAGMA integrity_check", -1,
                                        &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
}

static size_t count_events(struct store *st)
{
    struct cgv_error err = {0};
    struct store_event *evs = NULL;
    size_t n = 0;

    CHECK_OK(store_event_list(st, 0, NULL, NULL, 0, &evs, &n, &err));
    store_event_free_list(evs, n);
    return n;
}

/* ------------------------------------------------------------------ */

static void test_create_reopen(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store_service svc;
    struct stat sb;
    char owner[37], dir[160], *v = NULL;
    struct store *st = open_ok(fx->path);

    /* parent directory and file created with private modes */
    snprintf(dir, sizeof(dir), "%s/state", fx->dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(fx->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* the connection is configured as promised */
    assert_int_equal(pragma_int(st, "PRAGMA user_version"), store_schema_version());
    assert_int_equal(pragma_int(st, "PRAGMA synchronous"), 2);
    assert_int_equal(pragma_int(st, "PRAGMA foreign_keys"), 1);
    assert_true(pragma_int(st, "PRAGMA busy_timeout") > 0);
    {
        sqlite3_stmt *s = NULL;
        assert_int_equal(sqlite3_prepare_v2(store_sqlite(st), "PRAGMA journal_mode", -1,
                                            &s, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
    }

    /* owner id: a UUIDv4, also visible (read-only) in meta */
    assert_int_equal(strlen(store_owner_id(st)), 36);
    assert_int_equal(store_owner_id(st)[14], '4');
    assert_non_null(strchr("89ab", store_owner_id(st)[19]));
    strcpy(owner, store_owner_id(st));
    CHECK_OK(store_meta_get(st, "store.owner_id", &v, &err));
    assert_string_equal(v, owner);
    free(v);

    put_service(st, "demo", "{\"replicas\":2}");
    CHECK_OK(store_meta_set(st, "k", "v", &err));
    store_close(st);

    st = open_ok(fx->path);
    assert_string_equal(store_owner_id(st), owner);
    CHECK_OK(store_service_get(st, "demo", &svc, &err));
    assert_string_equal(svc.spec_json, "{\"replicas\":2}");
    store_service_clear(&svc);
    CHECK_OK(store_meta_get(st, "k", &v, &err));
    assert_string_equal(v, "v");
    free(v);
    store_close(st);

    /* a different database gets a different owner */
    snprintf(dir, sizeof(dir), "%s/other.db", fx->dir);
    st = open_ok(dir);
    assert_string_not_equal(store_owner_id(st), owner);
    store_close(st);
}

static void test_services_crud(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_service *list = NULL, svc, in = {0};
    size_t n = 0;
    int64_t created;

    put_service(st, "bravo", "{\"b\":1}");
    put_service(st, "alpha", "{\"a\":1}");
    put_service(st, "charlie", "{}");
    CHECK_OK(store_service_list(st, &list, &n, &err));
    assert_int_equal(n, 3);
    assert_string_equal(list[0].name, "alpha");
    assert_string_equal(list[1].name, "bravo");
    assert_string_equal(list[2].name, "charlie");
    store_service_free_list(list, n);

    CHECK_OK(store_service_get(st, "alpha", &svc, &err));
    assert_string_equal(svc.name, "alpha");
    assert_string_equal(svc.spec_json, "{\"a\":1}");
    assert_int_equal(svc.generation, 1);
    assert_true(svc.created_ms > 0);
    assert_true(svc.updated_ms >= svc.created_ms);
    created = svc.created_ms;
    store_service_clear(&svc);

    /* same spec: no new generation; changed spec: +1; created kept */
    put_service(st, "alpha", "{\"a\":1}");
    CHECK_OK(store_service_get(st, "alpha", &svc, &err));
    assert_int_equal(svc.generation, 1);
    store_service_clear(&svc);
    put_service(st, "alpha", "{\"a\":2}");
    CHECK_OK(store_service_get(st, "alpha", &svc, &err));
    assert_int_equal(svc.generation, 2);
    assert_string_equal(svc.spec_json, "{\"a\":2}");
    assert_int_equal(svc.created_ms, created);
    store_service_clear(&svc);
    /* a caller's generation is stored as given, even a lower one (rollback) */
    in.name = (char *)"alpha";
    in.spec_json = (char *)"{\"a\":3}";
    in.generation = 3;
    in.updated_ms = 12345;
    CHECK_OK(store_service_put(st, &in, &err));
    CHECK_OK(store_service_get(st, "alpha", &svc, &err));
    assert_int_equal(svc.generation, 3);
    assert_int_equal(svc.updated_ms, 12345);
    store_service_clear(&svc);
    in.spec_json = (char *)"{\"a\":2}";
    in.generation = 2;
    CHECK_OK(store_service_put(st, &in, &err));
    CHECK_OK(store_service_get(st, "alpha", &svc, &err));
    assert_int_equal(svc.generation, 2);
    store_service_clear(&svc);

    /* bad input */
    in.spec_json = (char *)"{not json";
    CHECK_ERR(store_service_put(st, &in, &err), CGV_E_INVALID);
    in.spec_json = (char *)"[1]";
    CHECK_ERR(store_service_put(st, &in, &err), CGV_E_INVALID);
    in.name = NULL;
    CHECK_ERR(store_service_put(st, &in, &err), CGV_E_INVALID);

    /* missing and delete */
    CHECK_ERR(store_service_get(st, "nosuch", &svc, &err), CGV_E_NOTFOUND);
    ASSERT_CONTAINS(err.msg, "nosuch");
    CHECK_ERR(store_service_delete(st, "nosuch", &err), CGV_E_NOTFOUND);
    CHECK_OK(store_service_delete(st, "bravo", &err));
    CHECK_ERR(store_service_get(st, "bravo", &svc, &err), CGV_E_NOTFOUND);
    CHECK_OK(store_service_list(st, &list, &n, &err));
    assert_int_equal(n, 2);
    store_service_free_list(list, n);
    store_close(st);
}

static void test_vms_crud(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_vm *list = NULL, vm, upd;
    size_t n = 0;
    int64_t created;

    put_service(st, "web", "{}");
    put_service(st, "db", "{}");
    put_vm(st, "web", 10, 1);
    put_vm(st, "web", 2, 2);
    put_vm(st, "db", 1, 3);
    put_vm(st, "web", 0, 4);
    put_vm(st, "db", 0, 5);

    /* all: by service, then numeric index */
    CHECK_OK(store_vm_list(st, NULL, &list, &n, &err));
    assert_int_equal(n, 5);
    assert_string_equal(list[0].name, "db-0");
    assert_string_equal(list[1].name, "db-1");
    assert_string_equal(list[2].name, "web-0");
    assert_string_equal(list[3].name, "web-2");
    assert_string_equal(list[4].name, "web-10");
    store_vm_free_list(list, n);
    CHECK_OK(store_vm_list(st, "web", &list, &n, &err));
    assert_int_equal(n, 3);
    assert_int_equal(list[0].index, 0);
    assert_int_equal(list[1].index, 2);
    assert_int_equal(list[2].index, 10);
    store_vm_free_list(list, n);
    CHECK_OK(store_vm_list(st, "nosuch", &list, &n, &err));
    assert_int_equal(n, 0);
    store_vm_free_list(list, n);

    CHECK_OK(store_vm_get(st, "web-2", &vm, &err));
    assert_string_equal(vm.name, "web-2");
    assert_string_equal(vm.service, "web");
    assert_int_equal(vm.index, 2);
    assert_string_equal(vm.uuid, "00000000-0000-4000-8000-000000000002");
    assert_string_equal(vm.mac, "52:54:00:00:00:02");
    assert_string_equal(vm.desired, "running");
    assert_string_equal(vm.addresses_json, "[\"10.0.0.2/24\"]");
    assert_int_equal(vm.restart_pending, 0);
    assert_null(vm.save_path);
    assert_true(vm.created_ms > 0);
    created = vm.created_ms;

    /* update in place: fields change, created_ms is kept */
    upd = vm;
    upd.desired = (char *)"saved";
    upd.save_path = (char *)"/var/lib/cgv/save/web-2.img";
    upd.restart_pending = 7;
    upd.addresses_json = NULL; /* stored as [] */
    upd.created_ms = 0;
    CHECK_OK(store_vm_put(st, &upd, &err));
    store_vm_clear(&vm);
    CHECK_OK(store_vm_get(st, "web-2", &vm, &err));
    assert_string_equal(vm.desired, "saved");
    assert_string_equal(vm.save_path, "/var/lib/cgv/save/web-2.img");
    assert_int_equal(vm.restart_pending, 1);
    assert_string_equal(vm.addresses_json, "[]");
    assert_int_equal(vm.created_ms, created);

    /* an explicit creation time is kept on insert */
    upd = vm;
    upd.name = (char *)"web-3";
    upd.index = 3;
    upd.uuid = (char *)"00000000-0000-4000-8000-000000000033";
    upd.created_ms = 777;
    CHECK_OK(store_vm_put(st, &upd, &err));
    {
        struct store_vm got;
        CHECK_OK(store_vm_get(st, "web-3", &got, &err));
        assert_int_equal(got.created_ms, 777);
        store_vm_clear(&got);
    }

    /* bad input */
    upd = vm;
    upd.desired = (char *)"flying";
    CHECK_ERR(store_vm_put(st, &upd, &err), CGV_E_INVALID);
    upd = vm;
    upd.addresses_json = (char *)"[1,2]";
    CHECK_ERR(store_vm_put(st, &upd, &err), CGV_E_INVALID);
    upd = vm;
    upd.uuid = (char *)"short";
    CHECK_ERR(store_vm_put(st, &upd, &err), CGV_E_INVALID);
    store_vm_clear(&vm);

    CHECK_ERR(store_vm_get(st, "web-99", &vm, &err), CGV_E_NOTFOUND);
    CHECK_ERR(store_vm_delete(st, "web-99", &err), CGV_E_NOTFOUND);
    CHECK_OK(store_vm_delete(st, "web-10", &err));
    CHECK_ERR(store_vm_get(st, "web-10", &vm, &err), CGV_E_NOTFOUND);
    store_close(st);
}

static void test_cascade(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_event ev = {.severity = (char *)"info", .type = (char *)"vm.started",
                             .service = (char *)"web", .vm = (char *)"web-0",
                             .message = (char *)"up"};
    struct store_vm *list = NULL;
    size_t n = 0;
    char *owner = NULL;

    put_service(st, "web", "{}");
    put_service(st, "db", "{}");
    put_vm(st, "web", 0, 1);
    put_vm(st, "web", 1, 2);
    put_vm(st, "db", 0, 3);
    CHECK_OK(store_addr_claim(st, "default", "10.0.0.2", "web-0", &err));
    CHECK_OK(store_addr_claim(st, "default", "10.0.0.3", "web-1", &err));
    CHECK_OK(store_addr_claim(st, "default", "10.0.0.4", "db-0", &err));
    CHECK_OK(store_event_append(st, &ev, &err));

    CHECK_OK(store_service_delete(st, "web", &err));
    CHECK_OK(store_vm_list(st, NULL, &list, &n, &err));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "db-0");
    store_vm_free_list(list, n);
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.2", &owner, &err));
    assert_null(owner);
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.3", &owner, &err));
    assert_null(owner);
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.4", &owner, &err));
    assert_string_equal(owner, "db-0");
    free(owner);
    /* events are history: kept */
    assert_int_equal(count_events(st), 1);

    /* deleting a VM drops its claims too */
    CHECK_OK(store_vm_delete(st, "db-0", &err));
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.4", &owner, &err));
    assert_null(owner);
    store_close(st);
}

static void test_vm_missing_service(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_vm vm = {.name = (char *)"demo-0", .service = (char *)"demo",
                          .uuid = (char *)"00000000-0000-4000-8000-000000000001",
                          .mac = (char *)"52:54:00:00:00:01",
                          .desired = (char *)"running"};

    CHECK_ERR(store_vm_put(st, &vm, &err), CGV_E_NOTFOUND);
    assert_string_equal(err.msg, "store: put vm demo-0: FOREIGN KEY constraint failed "
                                 "(service demo does not exist)");
    /* and moving an existing VM to a missing service */
    put_service(st, "demo", "{}");
    CHECK_OK(store_vm_put(st, &vm, &err));
    vm.service = (char *)"gone";
    CHECK_ERR(store_vm_put(st, &vm, &err), CGV_E_NOTFOUND);
    ASSERT_CONTAINS(err.msg, "service gone does not exist");
    store_close(st);
}

static void test_vm_unique(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_vm vm = {.name = (char *)"demo-1", .service = (char *)"demo",
                          .index = 1,
                          .uuid = (char *)"00000000-0000-4000-8000-000000000001",
                          .mac = (char *)"52:54:00:00:00:09",
                          .desired = (char *)"stopped"};
    struct store_vm got;

    put_service(st, "demo", "{}");
    put_vm(st, "demo", 0, 1);
    CHECK_ERR(store_vm_put(st, &vm, &err), CGV_E_CONFLICT);
    ASSERT_CONTAINS(err.msg, "put vm demo-1");
    ASSERT_CONTAINS(err.msg, "UNIQUE constraint failed");
    ASSERT_CONTAINS(err.msg, "already used by VM demo-0");
    print_message("%s\n", err.msg);
    CHECK_ERR(store_vm_get(st, "demo-1", &got, &err), CGV_E_NOTFOUND);

    /* same (service, index) under another name */
    vm.name = (char *)"demo-x";
    vm.index = 0;
    vm.uuid = (char *)"00000000-0000-4000-8000-000000000002";
    CHECK_ERR(store_vm_put(st, &vm, &err), CGV_E_CONFLICT);
    ASSERT_CONTAINS(err.msg, "demo-0");
    print_message("%s\n", err.msg);

    /* re-putting a VM with its own uuid is fine */
    put_vm(st, "demo", 0, 1);
    store_close(st);
}

static void test_addresses(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    char *owner = NULL;

    put_service(st, "web", "{}");
    put_vm(st, "web", 0, 1);
    put_vm(st, "web", 1, 2);

    CHECK_OK(store_addr_claim(st, "default", "10.0.0.2", "web-0", &err));
    CHECK_OK(store_addr_claim(st, "default", "10.0.0.2", "web-0", &err)); /* again */
    CHECK_ERR(store_addr_claim(st, "default", "10.0.0.2", "web-1", &err), CGV_E_CONFLICT);
    ASSERT_CONTAINS(err.msg, "held by vm web-0");
    ASSERT_CONTAINS(err.msg, "10.0.0.2");
    /* same ip on another network is a different address */
    CHECK_OK(store_addr_claim(st, "backend", "10.0.0.2", "web-1", &err));
    CHECK_OK(store_addr_claim(st, "default", "10.0.0.3", "web-0", &err));

    CHECK_OK(store_addr_owner(st, "default", "10.0.0.2", &owner, &err));
    assert_string_equal(owner, "web-0");
    free(owner);
    CHECK_OK(store_addr_owner(st, "backend", "10.0.0.2", &owner, &err));
    assert_string_equal(owner, "web-1");
    free(owner);
    /* replacing the VM record (put by name) keeps its claims */
    put_vm(st, "web", 0, 1);
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.2", &owner, &err));
    assert_string_equal(owner, "web-0");
    free(owner);
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.99", &owner, &err));
    assert_null(owner);

    /* claims for a VM that does not exist */
    CHECK_ERR(store_addr_claim(st, "default", "10.0.0.50", "ghost-0", &err),
              CGV_E_NOTFOUND);
    ASSERT_CONTAINS(err.msg, "vm ghost-0 does not exist");

    CHECK_OK(store_addr_release_vm(st, "web-0", &err));
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.2", &owner, &err));
    assert_null(owner);
    CHECK_OK(store_addr_owner(st, "default", "10.0.0.3", &owner, &err));
    assert_null(owner);
    CHECK_OK(store_addr_owner(st, "backend", "10.0.0.2", &owner, &err));
    assert_string_equal(owner, "web-1");
    free(owner);
    CHECK_OK(store_addr_release_vm(st, "nosuch-0", &err)); /* nothing to drop */
    CHECK_OK(store_addr_claim(st, "default", "10.0.0.2", "web-1", &err));
    store_close(st);
}

static void append_event(struct store *st, const char *sev, const char *type,
                         const char *svc, const char *vm, const char *msg, int64_t *id)
{
    struct cgv_error err = {0};
    struct store_event ev = {.severity = (char *)sev, .type = (char *)type,
                             .service = (char *)svc, .vm = (char *)vm,
                             .message = (char *)msg};

    CHECK_OK(store_event_append(st, &ev, &err));
    assert_true(ev.id > 0);
    assert_true(ev.time_ms > 0);
    if (id)
        *id = ev.id;
}

static void test_events(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_event *evs = NULL, bad = {.severity = (char *)"loud",
                                           .type = (char *)"x"};
    size_t n = 0;
    int64_t ids[10], id, last;
    char msg[32];

    assert_int_equal(store_event_last_id(st), 0);
    for (int i = 0; i < 10; i++) {
        snprintf(msg, sizeof(msg), "event %d", i);
        append_event(st, i % 3 == 0 ? "warn" : "info", "vm.started",
                     i % 2 ? "web" : NULL, i % 2 ? (i % 4 == 1 ? "web-0" : "web-1") : NULL,
                     msg, &ids[i]);
        if (i > 0)
            assert_true(ids[i] > ids[i - 1]);
    }
    assert_int_equal(store_event_last_id(st), ids[9]);

    CHECK_OK(store_event_list(st, 0, NULL, NULL, 0, &evs, &n, &err));
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(evs[i].id, ids[i]);
        snprintf(msg, sizeof(msg), "event %zu", i);
        assert_string_equal(evs[i].message, msg);
        assert_string_equal(evs[i].type, "vm.started");
        if (i % 2 == 0) {
            assert_null(evs[i].service);
            assert_null(evs[i].vm);
        }
    }
    assert_string_equal(evs[0].severity, "warn");
    assert_string_equal(evs[1].severity, "info");
    store_event_free_list(evs, n);

    /* after + limit: oldest first */
    CHECK_OK(store_event_list(st, ids[3], NULL, NULL, 4, &evs, &n, &err));
    assert_int_equal(n, 4);
    assert_int_equal(evs[0].id, ids[4]);
    assert_int_equal(evs[3].id, ids[7]);
    store_event_free_list(evs, n);
    CHECK_OK(store_event_list(st, ids[9], NULL, NULL, 10, &evs, &n, &err));
    assert_int_equal(n, 0);
    store_event_free_list(evs, n);

    /* filters: service web = odd i; vm web-0 = i%4==1; both */
    CHECK_OK(store_event_list(st, 0, "web", NULL, 0, &evs, &n, &err));
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(evs[i].service, "web");
    store_event_free_list(evs, n);
    CHECK_OK(store_event_list(st, 0, NULL, "web-0", 0, &evs, &n, &err));
    assert_int_equal(n, 3); /* i = 1, 5, 9 */
    assert_int_equal(evs[0].id, ids[1]);
    assert_int_equal(evs[2].id, ids[9]);
    store_event_free_list(evs, n);
    CHECK_OK(store_event_list(st, ids[1], "web", "web-0", 1, &evs, &n, &err));
    assert_int_equal(n, 1);
    assert_int_equal(evs[0].id, ids[5]);
    store_event_free_list(evs, n);
    CHECK_OK(store_event_list(st, 0, "db", NULL, 0, &evs, &n, &err));
    assert_int_equal(n, 0);
    store_event_free_list(evs, n);

    /* prune keeps the newest */
    CHECK_OK(store_event_prune(st, 3, &err));
    CHECK_OK(store_event_list(st, 0, NULL, NULL, 0, &evs, &n, &err));
    assert_int_equal(n, 3);
    assert_int_equal(evs[0].id, ids[7]);
    assert_int_equal(evs[2].id, ids[9]);
    store_event_free_list(evs, n);
    CHECK_OK(store_event_prune(st, 100, &err)); /* fewer than retain: no-op */
    assert_int_equal(count_events(st), 3);
    CHECK_ERR(store_event_prune(st, -1, &err), CGV_E_INVALID);

    /* ids never repeat, even after pruning everything and reopening */
    CHECK_OK(store_event_prune(st, 0, &err));
    assert_int_equal(count_events(st), 0);
    assert_int_equal(store_event_last_id(st), ids[9]);
    store_close(st);
    st = open_ok(fx->path);
    assert_int_equal(store_event_last_id(st), ids[9]);
    append_event(st, "error", "vm.crashed", "web", "web-1", "boom", &id);
    assert_true(id > ids[9]);
    last = store_event_last_id(st);
    assert_int_equal(last, id);

    /* explicit time is kept; bad severity refused */
    {
        struct store_event ev = {.time_ms = 42, .severity = (char *)"info",
                                 .type = (char *)"cgvd.started"};
        CHECK_OK(store_event_append(st, &ev, &err));
        CHECK_OK(store_event_list(st, last, NULL, NULL, 0, &evs, &n, &err));
        assert_int_equal(n, 1);
        assert_int_equal(evs[0].time_ms, 42);
        assert_string_equal(evs[0].message, "");
        store_event_free_list(evs, n);
    }
    CHECK_ERR(store_event_append(st, &bad, &err), CGV_E_INVALID);
    store_close(st);
}

static void test_transactions(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    struct store_service svc;
    struct store_vm vm;
    struct store_vm orphan = {.name = (char *)"nosvc-0", .service = (char *)"nosvc",
                              .uuid = (char *)"00000000-0000-4000-8000-000000000099",
                              .mac = (char *)"52:54:00:00:00:99",
                              .desired = (char *)"running"};
    char *v = NULL;

    /* commit */
    CHECK_OK(store_begin(st, &err));
    put_service(st, "one", "{}");
    put_vm(st, "one", 0, 1);
    CHECK_OK(store_meta_set(st, "step", "1", &err));
    CHECK_OK(store_commit(st, &err));

    /* rollback: all of it is gone */
    CHECK_OK(store_begin(st, &err));
    put_service(st, "two", "{}");
    put_vm(st, "two", 0, 2);
    CHECK_OK(store_meta_set(st, "step", "2", &err));
    CHECK_OK(store_vm_delete(st, "one-0", &err));
    store_rollback(st);
    CHECK_ERR(store_service_get(st, "two", &svc, &err), CGV_E_NOTFOUND);
    CHECK_ERR(store_vm_get(st, "two-0", &vm, &err), CGV_E_NOTFOUND);
    CHECK_OK(store_vm_get(st, "one-0", &vm, &err));
    store_vm_clear(&vm);
    CHECK_OK(store_meta_get(st, "step", &v, &err));
    assert_string_equal(v, "1");
    free(v);

    /* misuse */
    CHECK_ERR(store_commit(st, &err), CGV_E_INTERNAL);
    store_rollback(st); /* nothing open: harmless */
    CHECK_OK(store_begin(st, &err));
    CHECK_ERR(store_begin(st, &err), CGV_E_INTERNAL);
    ASSERT_CONTAINS(err.msg, "already open");

    /* a failed statement inside the transaction leaves it open; the caller
     * decides: here it rolls back, and the earlier write goes too */
    put_service(st, "three", "{}");
    CHECK_ERR(store_vm_put(st, &orphan, &err), CGV_E_NOTFOUND);
    CHECK_OK(store_service_get(st, "three", &svc, &err)); /* still in the txn */
    store_service_clear(&svc);
    store_rollback(st);
    CHECK_ERR(store_service_get(st, "three", &svc, &err), CGV_E_NOTFOUND);

    /* ... or commits what succeeded */
    CHECK_OK(store_begin(st, &err));
    put_service(st, "four", "{}");
    CHECK_ERR(store_vm_put(st, &orphan, &err), CGV_E_NOTFOUND);
    CHECK_OK(store_commit(st, &err));
    store_close(st);

    /* what was committed survives a reopen, what was rolled back does not */
    st = open_ok(fx->path);
    CHECK_OK(store_service_get(st, "four", &svc, &err));
    store_service_clear(&svc);
    CHECK_OK(store_service_get(st, "one", &svc, &err));
    store_service_clear(&svc);
    CHECK_ERR(store_service_get(st, "two", &svc, &err), CGV_E_NOTFOUND);
    CHECK_ERR(store_service_get(st, "three", &svc, &err), CGV_E_NOTFOUND);

    /* closing with a transaction open drops it */
    CHECK_OK(store_begin(st, &err));
    put_service(st, "five", "{}");
    store_close(st);
    st = open_ok(fx->path);
    CHECK_ERR(store_service_get(st, "five", &svc, &err), CGV_E_NOTFOUND);
    store_close(st);
}

static void test_meta(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    char *v = (char *)"sentinel";

    CHECK_OK(store_meta_get(st, "missing", &v, &err));
    assert_null(v);
    CHECK_OK(store_meta_set(st, "libvirt.uri", "qemu:///system", &err));
    CHECK_OK(store_meta_get(st, "libvirt.uri", &v, &err));
    assert_string_equal(v, "qemu:///system");
    free(v);
    CHECK_OK(store_meta_set(st, "libvirt.uri", "qemu:///session", &err));
    CHECK_OK(store_meta_get(st, "libvirt.uri", &v, &err));
    assert_string_equal(v, "qemu:///session");
    free(v);
    /* an awkward value goes through binding unharmed */
    CHECK_OK(store_meta_set(st, "q", "it's \"quoted\"; DROP TABLE meta; --", &err));
    CHECK_OK(store_meta_get(st, "q", &v, &err));
    assert_string_equal(v, "it's \"quoted\"; DROP TABLE meta; --");
    free(v);
    /* NULL deletes */
    CHECK_OK(store_meta_set(st, "libvirt.uri", NULL, &err));
    CHECK_OK(store_meta_get(st, "libvirt.uri", &v, &err));
    assert_null(v);
    /* the store's own keys are read-only */
    CHECK_ERR(store_meta_set(st, "store.owner_id", "x", &err), CGV_E_INVALID);
    CHECK_OK(store_meta_get(st, "store.owner_id", &v, &err));
    assert_string_equal(v, store_owner_id(st));
    free(v);
    store_close(st);
}

static void set_user_version(const char *path, int version)
{
    sqlite3 *db = NULL;
    char sql[64];

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    char want[64];

    store_close(st);
    set_user_version(fx->path, 99);
    st = (struct store *)0x1;
    CHECK_ERR(store_open(fx->path, &st, &err), CGV_E_CONFLICT);
    assert_null(st);
    ASSERT_CONTAINS(err.msg, fx->path);
    ASSERT_CONTAINS(err.msg, "99");
    snprintf(want, sizeof(want), "version %d", store_schema_version());
    ASSERT_CONTAINS(err.msg, want);
    print_message("%s\n", err.msg);

    /* untouched: still 99, and a matching version opens again */
    {
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;
        assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(s, 0), 99);
        sqlite3_finalize(s);
        sqlite3_close(db);
    }
    set_user_version(fx->path, store_schema_version());
    st = open_ok(fx->path);
    store_close(st);
}

static void write_file(const char *path, const void *data, size_t len, off_t at,
                       int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | flags, 0600);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, at), (ssize_t)len);
    close(fd);
}

static void test_garbage_refused(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = NULL;
    char junk[8192];

    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)('a' + (i * 7) % 26);
    mkdir(fx->dir, 0700);
    snprintf(fx->path, sizeof(fx->path), "%s/junk.db", fx->dir);
    write_file(fx->path, junk, sizeof(junk), 0, O_TRUNC);
    CHECK_ERR(store_open(fx->path, &st, &err), CGV_E_IO);
    assert_null(st);
    ASSERT_CONTAINS(err.msg, fx->path);
    ASSERT_CONTAINS(err.msg, "not a database");
    print_message("%s\n", err.msg);

    /* a real database with its pages overwritten */
    snprintf(fx->path, sizeof(fx->path), "%s/corrupt.db", fx->dir);
    st = open_ok(fx->path);
    put_service(st, "demo", "{}");
    for (int i = 0; i < 50; i++)
        append_event(st, "info", "vm.started", "demo", NULL,
                     "some text to make the table span several pages", NULL);
    store_close(st); /* checkpoints everything into the main file */
    st = NULL;
    write_file(fx->path, junk, sizeof(junk), 4096, 0);
    CHECK_ERR(store_open(fx->path, &st, &err), CGV_E_IO);
    assert_null(st);
    print_message("%s\n", err.msg);
    ASSERT_CONTAINS(err.msg, fx->path);

    /* a path that cannot be a file */
    CHECK_ERR(store_open(fx->dir, &st, &err), CGV_E_IO);
    CHECK_ERR(store_open("", &st, &err), CGV_E_INVALID);
}

/* ------------------------------------------------------- crash safety */

/* The writer: one transaction per step (a VM, an event and the counter in
 * meta), continuing from the counter it finds; reports each commit's number
 * on the pipe only after store_commit returned. */
static void crash_child(const char *path, int wfd)
{
    struct cgv_error err = {0};
    struct store *st = NULL;
    char name[32], uuid[37], msg[32], num[24], *v = NULL;
    int64_t start;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (store_open(path, &st, &err) < 0 || store_meta_get(st, "counter", &v, &err) < 0)
        _exit(2);
    start = v ? strtoll(v, NULL, 10) + 1 : 1;
    free(v);
    for (int64_t i = start; i < start + 1000000; i++) {
        struct store_vm vm = {.name = name, .service = (char *)"crash", .index = (int)i,
                              .uuid = uuid, .mac = (char *)"52:54:00:00:00:01",
                              .desired = (char *)"running"};
        struct store_event ev = {.severity = (char *)"info", .type = (char *)"vm.defined",
                                 .service = (char *)"crash", .vm = name, .message = msg};
        snprintf(name, sizeof(name), "crash-%" PRId64, i);
        make_uuid(uuid, (unsigned)i);
        snprintf(msg, sizeof(msg), "txn %" PRId64, i);
        snprintf(num, sizeof(num), "%" PRId64, i);
        if (store_begin(st, &err) < 0 || store_vm_put(st, &vm, &err) < 0 ||
            store_event_append(st, &ev, &err) < 0 ||
            store_meta_set(st, "counter", num, &err) < 0 || store_commit(st, &err) < 0)
            _exit(3);
        if (write(wfd, &i, sizeof(i)) != (ssize_t)sizeof(i))
            _exit(4);
    }
    _exit(0);
}

/* Read one report; false at EOF (the writer is gone). */
static bool read_report(int fd, int64_t *got)
{
    for (;;) {
        ssize_t r = read(fd, got, sizeof(*got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return false;
        assert_int_equal(r, sizeof(*got));
        return true;
    }
}

/* Start a writer, let it commit `want` transactions (waiting on its reports,
 * not on a clock), SIGKILL it wherever it is, and return the last number it
 * reported as committed. */
static int64_t run_and_kill_writer(const char *path, int64_t prev, size_t want)
{
    int64_t got, last = prev;
    size_t reports = 0;
    int pfd[2], status = 0;
    pid_t pid;

    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        crash_child(path, pfd[1]);
    }
    close(pfd[1]);
    while (reports < want && read_report(pfd[0], &got)) {
        assert_int_equal(got, last + 1);
        last = got;
        reports++;
    }
    kill(pid, SIGKILL);
    while (read_report(pfd[0], &got)) { /* what it said before it died */
        assert_int_equal(got, last + 1);
        last = got;
    }
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("writer did not run until killed (status 0x%x)", status);
    assert_true(reports >= want);
    return last;
}

static void test_crash_safety(void **state)
{
    static const size_t rounds[] = {37, 100, 163};
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    int64_t reported = 0, counter = 0;

    put_service(st, "crash", "{}");
    store_close(st);

    for (size_t r = 0; r < CGV_ARRAY_LEN(rounds); r++) {
        struct store_event *evs = NULL;
        struct store_vm *vms = NULL;
        size_t nev = 0, nvm = 0;
        char *v = NULL;

        reported = run_and_kill_writer(fx->path, counter, rounds[r]);
        st = open_ok(fx->path);
        assert_integrity_ok(st);
        CHECK_OK(store_meta_get(st, "counter", &v, &err));
        assert_non_null(v);
        counter = strtoll(v, NULL, 10);
        free(v);
        print_message("round %zu: writer reported %" PRId64 " commits, %" PRId64
                      " found after the kill\n", r + 1, reported, counter);
        /* everything reported is there; at most the one in flight beyond it */
        assert_true(counter >= reported);
        assert_true(counter <= reported + 1);
        /* and each transaction is all-or-nothing */
        CHECK_OK(store_event_list(st, 0, "crash", NULL, 0, &evs, &nev, &err));
        CHECK_OK(store_vm_list(st, "crash", &vms, &nvm, &err));
        assert_int_equal(nev, counter);
        assert_int_equal(nvm, counter);
        for (size_t i = 0; i < nev; i++) {
            char want[32];
            snprintf(want, sizeof(want), "txn %zu", i + 1);
            assert_string_equal(evs[i].message, want);
            assert_int_equal(vms[i].index, (int)i + 1);
        }
        store_event_free_list(evs, nev);
        store_vm_free_list(vms, nvm);
        store_close(st);
    }
    /* still writable */
    st = open_ok(fx->path);
    put_vm(st, "crash", 0, 999999);
    store_close(st);
}

/* ----------------------------------------------------------- disk full */

/* Append ~1 KiB events until the store says no; returns how many made it. */
static size_t fill_until_full(struct store *st, struct cgv_error *err)
{
    char msg[1024];
    size_t ok = 0;

    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    for (; ok < 100000; ok++) {
        struct store_event ev = {.severity = (char *)"info", .type = (char *)"fill",
                                 .message = msg};
        cgv_err_clear(err);
        if (store_event_append(st, &ev, err) < 0)
            break;
    }
    return ok;
}

static void check_earlier_data(struct store *st)
{
    struct cgv_error err = {0};
    struct store_service svc;
    struct store_vm vm;
    char *v = NULL;

    CHECK_OK(store_service_get(st, "keep", &svc, &err));
    assert_string_equal(svc.spec_json, "{\"keep\":true}");
    store_service_clear(&svc);
    CHECK_OK(store_vm_get(st, "keep-0", &vm, &err));
    assert_string_equal(vm.uuid, "00000000-0000-4000-8000-000000000007");
    store_vm_clear(&vm);
    CHECK_OK(store_meta_get(st, "keep", &v, &err));
    assert_string_equal(v, "yes");
    free(v);
}

static void write_earlier_data(struct store *st)
{
    struct cgv_error err = {0};

    put_service(st, "keep", "{\"keep\":true}");
    put_vm(st, "keep", 0, 7);
    CHECK_OK(store_meta_set(st, "keep", "yes", &err));
}

static void test_disk_full_page_limit(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st = open_ok(fx->path);
    char sql[96];
    size_t ok, before;

    write_earlier_data(st);
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
             (long long)pragma_int(st, "PRAGMA page_count") + 8);
    assert_int_equal(sqlite3_exec(store_sqlite(st), sql, NULL, NULL, NULL), SQLITE_OK);

    ok = fill_until_full(st, &err);
    assert_true(ok < 100000);
    assert_int_equal(err.code, CGV_E_IO);
    print_message("%s\n", err.msg);
    ASSERT_CONTAINS(err.msg, "store: append event fill: disk full");
    ASSERT_CONTAINS(err.msg, fx->path);
    check_earlier_data(st);
    assert_int_equal(count_events(st), ok);

    /* inside a transaction: the failed write leaves the caller to roll back,
     * and nothing of the transaction is kept */
    CHECK_OK(store_begin(st, &err));
    put_service(st, "intxn", "{}");
    before = fill_until_full(st, &err);
    assert_int_equal(err.code, CGV_E_IO);
    assert_int_equal(before, 0);
    print_message("in txn: %s\n", err.msg);
    /* SQLite may or may not have ended the transaction itself; either way a
     * further write must not be committed on its own */
    cgv_err_clear(&err);
    if (store_meta_set(st, "intxn", "1", &err) < 0)
        print_message("after failure in txn: %s\n", err.msg);
    store_rollback(st);
    {
        struct store_service svc;
        char *v = NULL;
        CHECK_ERR(store_service_get(st, "intxn", &svc, &err), CGV_E_NOTFOUND);
        CHECK_OK(store_meta_get(st, "intxn", &v, &err));
        assert_null(v);
    }
    /* committing instead of rolling back cannot save half a transaction */
    CHECK_OK(store_begin(st, &err));
    put_service(st, "intxn2", "{}");
    assert_int_equal(fill_until_full(st, &err), 0);
    cgv_err_clear(&err);
    if (store_commit(st, &err) == 0) {
        struct store_service svc;
        /* SQLite kept the transaction: only the good statement landed */
        CHECK_OK(store_service_get(st, "intxn2", &svc, &err));
        store_service_clear(&svc);
    } else {
        struct store_service svc;
        print_message("commit: %s\n", err.msg);
        assert_int_equal(err.code, CGV_E_IO);
        CHECK_ERR(store_service_get(st, "intxn2", &svc, &err), CGV_E_NOTFOUND);
    }
    CHECK_ERR(store_commit(st, &err), CGV_E_INTERNAL); /* the transaction is over */
    assert_int_equal(count_events(st), ok);

    /* room again: writes work without reopening */
    assert_int_equal(sqlite3_exec(store_sqlite(st), "PRAGMA max_page_count = 1000000",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    append_event(st, "info", "after", NULL, NULL, "room again", NULL);
    assert_integrity_ok(st);
    store_close(st);

    st = open_ok(fx->path);
    check_earlier_data(st);
    assert_int_equal(count_events(st), ok + 1);
    store_close(st);
}

static void test_disk_full_tmpfs(void **state)
{
    struct fx *fx = *state;
    struct cgv_error err = {0};
    struct store *st;
    size_t ok;

    /* a private mount namespace, so nothing leaks if we die half-way */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        print_message("cannot make a mount namespace (%s): skipped\n", strerror(errno));
        skip();
    }
    if (mount("cgv-store-test", fx->dir, "tmpfs", 0, "size=256k,mode=0700") < 0) {
        print_message("cannot mount tmpfs (%s): skipped\n", strerror(errno));
        skip();
    }
    fx->mounted = true;

    st = open_ok(fx->path);
    write_earlier_data(st);
    ok = fill_until_full(st, &err);
    assert_true(ok > 0);
    assert_true(ok < 100000);
    assert_int_equal(err.code, CGV_E_IO);
    print_message("%s\n", err.msg);
    ASSERT_CONTAINS(err.msg, "disk full");
    ASSERT_CONTAINS(err.msg, fx->path);
    check_earlier_data(st);
    assert_int_equal(count_events(st), ok);
    store_close(st);

    /* reopen on the still-full file system: everything committed is there */
    st = open_ok(fx->path);
    check_earlier_data(st);
    assert_int_equal(count_events(st), ok);
    assert_integrity_ok(st);
    store_close(st);

    assert_int_equal(umount2(fx->dir, 0), 0);
    fx->mounted = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_services_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vms_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vm_missing_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vm_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_safety, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_page_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_tmpfs, setup, teardown),
    };

    umask(022);
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
