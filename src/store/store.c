/* store.c — cgvd's persistent state in SQLite. See store.h for the contract.
 *
 * Layout of this file: error helpers, statement cache, schema migrations,
 * open/close, transactions, then one section per table.
 *
 * Rules kept throughout:
 *  - every value reaches SQLite as a bound parameter; the only SQL built at
 *    run time is "PRAGMA user_version = N" with our own integer constant
 *    (PRAGMAs cannot take parameters);
 *  - each public write is a single SQL statement, so outside an explicit
 *    transaction it is atomic by itself (autocommit), and inside one a failed
 *    statement undoes only itself and leaves the transaction to the caller;
 *  - every cached statement is reset when the function using it returns
 *    (STORE_STMT), so no read transaction is ever left open behind our back.
 */
#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_MAX_STMTS 48
#define STORE_OWNER_KEY "store.owner_id"
#define STORE_RESERVED_PREFIX "store."

struct stmt_slot {
    const char *sql; /* identity: address of one of the static SQL strings */
    sqlite3_stmt *stmt;
};

struct store {
    sqlite3 *db;
    char *path;
    char owner_id[37];
    bool in_txn;
    struct stmt_slot stmts[STORE_MAX_STMTS];
    size_t n_stmts;
};

/* ---------------------------------------------------------------- errors */

/* A SQLite failure captured at the moment it happened, before any further
 * call can overwrite sqlite3_errmsg(). */
struct sqlerr {
    int rc;  /* extended result code */
    int sys; /* errno of the last failing VFS call, for I/O errors */
    char msg[256];
};

static void capture(struct store *st, int rc, struct sqlerr *e)
{
    e->rc = rc;
    e->sys = sqlite3_system_errno(st->db);
    cgv_strlcpy(e->msg, sqlite3_errmsg(st->db), sizeof(e->msg));
}

static void capture_text(struct sqlerr *e, int rc, const char *msg)
{
    e->rc = rc;
    e->sys = 0;
    cgv_strlcpy(e->msg, msg, sizeof(e->msg));
}

static bool is_disk_full(const struct sqlerr *e)
{
    int prim = e->rc & 0xff;

    if (prim == SQLITE_FULL)
        return true;
    return prim == SQLITE_IOERR && (e->sys == ENOSPC || e->sys == EDQUOT);
}

static enum cgv_errcode map_code(const struct sqlerr *e)
{
    switch (e->rc) {
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return CGV_E_NOTFOUND;
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return CGV_E_CONFLICT;
    default:
        break;
    }
    switch (e->rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return CGV_E_INVALID;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CGV_E_CONFLICT;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_PROTOCOL:
    case SQLITE_NOLFS:
        return CGV_E_IO;
    default:
        return CGV_E_INTERNAL;
    }
}

/* "store: <what>: <sqlite message> (<detail>)", with I/O errors naming the
 * file and a full disk said in plain words. Returns -1. */
static int fail(struct store *st, const struct sqlerr *e, struct cgv_error *err,
                const char *detail, const char *fmt, ...) CGV_PRINTF(5, 6);
static int fail(struct store *st, const struct sqlerr *e, struct cgv_error *err,
                const char *detail, const char *fmt, ...)
{
    char what[512], file[600] = "", extra[300] = "";
    enum cgv_errcode code = map_code(e);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);

    if (detail && *detail)
        snprintf(extra, sizeof(extra), " (%s)", detail);
    if (code == CGV_E_IO && st->path && !strstr(what, st->path))
        snprintf(file, sizeof(file), " [%s]", st->path);

    if (is_disk_full(e))
        return cgv_err(err, CGV_E_IO,
                       "store: %s: disk full: no room to write %s (%s)%s",
                       what, st->path ? st->path : "the database", e->msg, extra);
    if ((e->rc & 0xff) == SQLITE_IOERR && e->sys != 0)
        return cgv_err(err, CGV_E_IO, "store: %s: I/O error: %s: %s%s%s", what,
                       e->msg, strerror(e->sys), file, extra);
    return cgv_err(err, code, "store: %s: %s%s%s", what, e->msg, file, extra);
}

/* ------------------------------------------------------- statement cache */

static void stmt_donep(sqlite3_stmt **s)
{
    if (*s) {
        sqlite3_reset(*s);
        sqlite3_clear_bindings(*s);
    }
}
#define STORE_STMT __attribute__((cleanup(stmt_donep)))

/* The cached, reset statement for sql (one of the static strings below), or
 * NULL with e filled. Also refuses to run anything once SQLite has rolled
 * back an explicit transaction by itself (disk full, I/O error): otherwise
 * the caller's next writes would silently autocommit one by one. */
static sqlite3_stmt *prep(struct store *st, const char *sql, struct sqlerr *e)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (st->in_txn && sqlite3_get_autocommit(st->db)) {
        capture_text(e, SQLITE_ABORT_ROLLBACK,
                     "the transaction was already rolled back after an earlier "
                     "error; call store_rollback");
        return NULL;
    }
    for (size_t i = 0; i < st->n_stmts; i++)
        if (st->stmts[i].sql == sql)
            return st->stmts[i].stmt;
    rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        capture(st, rc, e);
        sqlite3_finalize(s);
        return NULL;
    }
    if (st->n_stmts < STORE_MAX_STMTS) {
        st->stmts[st->n_stmts].sql = sql;
        st->stmts[st->n_stmts].stmt = s;
        st->n_stmts++;
        return s;
    }
    /* Cannot happen with the fixed set of statements below. */
    sqlite3_finalize(s);
    capture_text(e, SQLITE_INTERNAL, "statement cache full");
    return NULL;
}

static int bind_text(struct store *st, sqlite3_stmt *s, int i, const char *v,
                     struct sqlerr *e)
{
    int rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT)
               : sqlite3_bind_null(s, i);
    if (rc != SQLITE_OK) {
        capture(st, rc, e);
        return -1;
    }
    return 0;
}

static int bind_int(struct store *st, sqlite3_stmt *s, int i, int64_t v,
                    struct sqlerr *e)
{
    int rc = sqlite3_bind_int64(s, i, v);
    if (rc != SQLITE_OK) {
        capture(st, rc, e);
        return -1;
    }
    return 0;
}

/* sqlite3_step, capturing the error (anything but ROW/DONE) into e. */
static int step(struct store *st, sqlite3_stmt *s, struct sqlerr *e)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        capture(st, rc, e);
    return rc;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
    return cgv_strdup((const char *)sqlite3_column_text(s, i));
}

/* One-off statements at open time (not cached). */
static int exec_sql(struct store *st, const char *sql, struct sqlerr *e)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        e->rc = rc; /* extended: sqlite3_extended_result_codes() is on */
        e->sys = sqlite3_system_errno(st->db);
        cgv_strlcpy(e->msg, msg ? msg : sqlite3_errstr(rc), sizeof(e->msg));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* First column of the first row of a one-off query, as integer and/or text. */
static int query_one(struct store *st, const char *sql, int64_t *ival, char *tbuf,
                     size_t tcap, struct sqlerr *e)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);

    if (rc != SQLITE_OK) {
        capture(st, rc, e);
        sqlite3_finalize(s);
        return -1;
    }
    rc = step(st, s, e);
    if (rc == SQLITE_ROW) {
        if (ival)
            *ival = sqlite3_column_int64(s, 0);
        if (tbuf) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            cgv_strlcpy(tbuf, t ? t : "", tcap);
        }
    } else if (rc == SQLITE_DONE) {
        if (ival)
            *ival = 0;
        if (tbuf && tcap)
            tbuf[0] = '\0';
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* ------------------------------------------------------------ migrations */

/* Each migration takes the schema from version (index) to (index + 1). They
 * run inside one BEGIN IMMEDIATE transaction with foreign keys off (so a
 * later migration may rebuild a table the SQLite way: create new, copy,
 * drop old, rename), followed by PRAGMA foreign_key_check. To add version 2,
 * append a function here; never edit a migration that has shipped. */
static int migrate_v1(struct store *st, struct sqlerr *e)
{
    static const char sql[] =
        "CREATE TABLE meta ("
        "  key   TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL"
        ");"
        "CREATE TABLE services ("
        "  name       TEXT PRIMARY KEY NOT NULL,"
        "  spec_json  TEXT NOT NULL,"
        "  generation INTEGER NOT NULL,"
        "  created_ms INTEGER NOT NULL,"
        "  updated_ms INTEGER NOT NULL"
        ");"
        "CREATE TABLE vms ("
        "  name            TEXT PRIMARY KEY NOT NULL,"
        "  service         TEXT NOT NULL"
        "                  REFERENCES services(name) ON DELETE CASCADE,"
        "  idx             INTEGER NOT NULL,"
        "  uuid            TEXT NOT NULL UNIQUE,"
        "  mac             TEXT NOT NULL,"
        "  desired         TEXT NOT NULL,"
        "  addresses_json  TEXT NOT NULL,"
        "  restart_pending INTEGER NOT NULL,"
        "  save_path       TEXT,"
        "  created_ms      INTEGER NOT NULL,"
        "  UNIQUE (service, idx)"
        ");"
        "CREATE TABLE addresses ("
        "  network TEXT NOT NULL,"
        "  ip      TEXT NOT NULL,"
        "  vm      TEXT NOT NULL REFERENCES vms(name) ON DELETE CASCADE,"
        "  PRIMARY KEY (network, ip)"
        ");"
        "CREATE INDEX addresses_by_vm ON addresses(vm);"
        "CREATE TABLE events ("
        "  id       INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  time_ms  INTEGER NOT NULL,"
        "  severity TEXT NOT NULL,"
        "  type     TEXT NOT NULL,"
        "  service  TEXT,"
        "  vm       TEXT,"
        "  message  TEXT NOT NULL"
        ");"
        "CREATE INDEX events_by_service ON events(service, id);"
        "CREATE INDEX events_by_vm ON events(vm, id);";

    return exec_sql(st, sql, e);
}

static int (*const migrations[])(struct store *st, struct sqlerr *e) = {
    migrate_v1, /* 0 -> 1 */
};

int store_schema_version(void)
{
    return (int)CGV_ARRAY_LEN(migrations);
}

static int random_uuid(char out[37], struct cgv_error *err)
{
    unsigned char b[16];
    size_t got = 0;

    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof(b)) {
        CGV_AUTOCLOSE int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        got = 0;
        while (fd >= 0 && got < sizeof(b)) {
            ssize_t r = read(fd, b + got, sizeof(b) - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got < sizeof(b))
            return cgv_err(err, CGV_E_IO, "store: no random bytes for the owner id: %s",
                           strerror(errno));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

static const char SQL_META_GET[] = "SELECT value FROM meta WHERE key = ?1";
static const char SQL_META_SET[] =
    "INSERT INTO meta(key, value) VALUES (?1, ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
static const char SQL_META_DEL[] = "DELETE FROM meta WHERE key = ?1";

/* Read the owner id, creating it on first open. Runs inside the open
 * transaction. */
static int load_owner_id(struct store *st, struct cgv_error *err)
{
    struct sqlerr e;
    int rc;

    {
        STORE_STMT sqlite3_stmt *s = prep(st, SQL_META_GET, &e);
        if (!s || bind_text(st, s, 1, STORE_OWNER_KEY, &e) < 0)
            return fail(st, &e, err, NULL, "open %s: read owner id", st->path);
        rc = step(st, s, &e);
        if (rc == SQLITE_ROW) {
            const char *v = (const char *)sqlite3_column_text(s, 0);
            if (!v || strlen(v) != 36)
                return cgv_err(err, CGV_E_IO, "store: open %s: owner id in meta is "
                               "damaged (\"%s\")", st->path, v ? v : "");
            memcpy(st->owner_id, v, 37);
            return 0;
        }
        if (rc != SQLITE_DONE)
            return fail(st, &e, err, NULL, "open %s: read owner id", st->path);
    }
    if (random_uuid(st->owner_id, err) < 0)
        return -1;
    {
        STORE_STMT sqlite3_stmt *s = prep(st, SQL_META_SET, &e);
        if (!s || bind_text(st, s, 1, STORE_OWNER_KEY, &e) < 0 ||
            bind_text(st, s, 2, st->owner_id, &e) < 0 || step(st, s, &e) != SQLITE_DONE)
            return fail(st, &e, err, NULL, "open %s: store owner id", st->path);
    }
    return 0;
}

/* Bring the schema to the current version and make sure an owner id exists,
 * all in one write transaction (so two processes opening a fresh file at
 * once cannot both migrate). */
static int migrate(struct store *st, struct cgv_error *err)
{
    const int target = store_schema_version();
    struct sqlerr e;
    int64_t version = 0, violations = 0;
    char sql[64];
    int ret = -1;

    if (exec_sql(st, "PRAGMA foreign_keys = OFF", &e) < 0 ||
        exec_sql(st, "BEGIN IMMEDIATE", &e) < 0)
        return fail(st, &e, err, NULL, "open %s: start schema migration", st->path);
    if (query_one(st, "PRAGMA user_version", &version, NULL, 0, &e) < 0) {
        fail(st, &e, err, NULL, "open %s: read schema version", st->path);
        goto cleanup;
    }
    if (version > target) {
        cgv_err(err, CGV_E_CONFLICT,
                "store: open %s: database schema version %lld is newer than the "
                "version %d this cgv knows; refusing to use it (run a newer cgvd)",
                st->path, (long long)version, target);
        goto cleanup;
    }
    if (version < 0) {
        cgv_err(err, CGV_E_IO, "store: open %s: invalid schema version %lld",
                st->path, (long long)version);
        goto cleanup;
    }
    for (int64_t v = version; v < target; v++) {
        if (migrations[v](st, &e) < 0) {
            fail(st, &e, err, NULL, "open %s: migrate schema from version %lld to %lld",
                 st->path, (long long)v, (long long)v + 1);
            goto cleanup;
        }
    }
    if (version < target) {
        /* PRAGMAs take no bound parameters; target is our own constant. */
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", target);
        if (exec_sql(st, sql, &e) < 0) {
            fail(st, &e, err, NULL, "open %s: set schema version", st->path);
            goto cleanup;
        }
        if (query_one(st, "SELECT count(*) FROM pragma_foreign_key_check", &violations,
                      NULL, 0, &e) < 0) {
            fail(st, &e, err, NULL, "open %s: check foreign keys after migration",
                 st->path);
            goto cleanup;
        }
        if (violations > 0) {
            cgv_err(err, CGV_E_INTERNAL, "store: open %s: schema migration left %lld "
                    "foreign key violations", st->path, (long long)violations);
            goto cleanup;
        }
    }
    if (load_owner_id(st, err) < 0)
        goto cleanup;
    if (exec_sql(st, "COMMIT", &e) < 0) {
        fail(st, &e, err, NULL, "open %s: commit schema migration", st->path);
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (ret < 0 && !sqlite3_get_autocommit(st->db))
        (void)exec_sql(st, "ROLLBACK", &e);
    return ret;
}

/* ------------------------------------------------------------ open/close */

static int make_parent_and_file(const char *path, struct cgv_error *err)
{
    CGV_AUTOFREE char *dir = cgv_strdup(path);
    char *slash = strrchr(dir, '/');
    CGV_AUTOCLOSE int fd = -1;

    if (slash && slash != dir) {
        *slash = '\0';
        if (cgv_mkdir_p(dir, 0700, err) < 0) {
            cgv_err_prefix(err, "store: open %s: create parent directory", path);
            return -1;
        }
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "store: open %s: %s", path, strerror(errno));
    return 0;
}

int store_open(const char *path, struct store **out, struct cgv_error *err)
{
    struct store *st = NULL;
    struct sqlerr e;
    char mode[32], check[512];
    int64_t fk = 0;
    int rc, ret = -1;

    if (out)
        *out = NULL;
    if (!path || !*path || !out)
        return cgv_err(err, CGV_E_INVALID, "store: open: no database path given");
    if (make_parent_and_file(path, err) < 0)
        return -1;

    st = cgv_malloc0(sizeof(*st));
    st->path = cgv_strdup(path);
    rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        if (st->db)
            capture(st, rc, &e);
        else
            capture_text(&e, rc, sqlite3_errstr(rc));
        fail(st, &e, err, NULL, "open %s", path);
        goto cleanup;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);

    /* The first statements to read the file: a non-database fails here. */
    if (query_one(st, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode), &e) < 0) {
        fail(st, &e, err, NULL, "open %s", path);
        goto cleanup;
    }
    if (strcmp(mode, "wal") != 0) {
        cgv_err(err, CGV_E_IO, "store: open %s: cannot use WAL journal (journal "
                "mode is \"%s\"; is the file system local?)", path, mode);
        goto cleanup;
    }
    if (exec_sql(st, "PRAGMA synchronous = FULL", &e) < 0) {
        fail(st, &e, err, NULL, "open %s: set synchronous", path);
        goto cleanup;
    }
    if (query_one(st, "PRAGMA quick_check", NULL, check, sizeof(check), &e) < 0) {
        fail(st, &e, err, NULL, "open %s: quick_check", path);
        goto cleanup;
    }
    if (strcmp(check, "ok") != 0) {
        for (char *p = check; *p; p++)
            if (*p == '\n')
                *p = ' ';
        cgv_err(err, CGV_E_IO, "store: open %s: database is corrupt (quick_check: %s)",
                path, check);
        goto cleanup;
    }
    if (migrate(st, err) < 0)
        goto cleanup;
    if (exec_sql(st, "PRAGMA foreign_keys = ON", &e) < 0 ||
        query_one(st, "PRAGMA foreign_keys", &fk, NULL, 0, &e) < 0) {
        fail(st, &e, err, NULL, "open %s: enable foreign keys", path);
        goto cleanup;
    }
    if (fk != 1) {
        cgv_err(err, CGV_E_INTERNAL, "store: open %s: this SQLite cannot enforce "
                "foreign keys", path);
        goto cleanup;
    }
    *out = cgv_steal_ptr(&st);
    ret = 0;

cleanup:
    store_close(st);
    return ret;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_stmts; i++)
        sqlite3_finalize(st->stmts[i].stmt);
    /* An open transaction is rolled back by the close. */
    if (st->db)
        sqlite3_close(st->db);
    free(st->path);
    free(st);
}

const char *store_owner_id(const struct store *st)
{
    return st->owner_id;
}

sqlite3 *store_sqlite(struct store *st)
{
    return st->db;
}

/* ---------------------------------------------------------- transactions */

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

int store_begin(struct store *st, struct cgv_error *err)
{
    struct sqlerr e;

    if (st->in_txn || !sqlite3_get_autocommit(st->db))
        return cgv_err(err, CGV_E_INTERNAL,
                       "store: begin: a transaction is already open (nesting is "
                       "not supported)");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_BEGIN, &e);
    if (!s || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "begin transaction");
    st->in_txn = true;
    return 0;
}

int store_commit(struct store *st, struct cgv_error *err)
{
    struct sqlerr e;
    int ret = 0;

    if (!st->in_txn)
        return cgv_err(err, CGV_E_INTERNAL, "store: commit: no transaction is open");
    if (sqlite3_get_autocommit(st->db)) {
        /* SQLite already rolled it back (disk full, I/O error). */
        st->in_txn = false;
        return cgv_err(err, CGV_E_IO, "store: commit transaction: it was rolled back "
                       "after an earlier write failed; nothing of it was saved [%s]",
                       st->path);
    }
    {
        STORE_STMT sqlite3_stmt *s = prep(st, SQL_COMMIT, &e);
        if (!s || step(st, s, &e) != SQLITE_DONE)
            ret = -1;
    }
    if (ret < 0) {
        /* A failed commit ends the transaction: nothing of it is kept. */
        if (!sqlite3_get_autocommit(st->db)) {
            STORE_STMT sqlite3_stmt *r = prep(st, SQL_ROLLBACK, &(struct sqlerr){0});
            if (r)
                sqlite3_step(r);
        }
        st->in_txn = false;
        return fail(st, &e, err, "the transaction was rolled back",
                    "commit transaction");
    }
    st->in_txn = false;
    return 0;
}

void store_rollback(struct store *st)
{
    if (!st || !st->in_txn)
        return;
    if (!sqlite3_get_autocommit(st->db)) {
        struct sqlerr e;
        st->in_txn = false; /* so prep() does not refuse */
        STORE_STMT sqlite3_stmt *s = prep(st, SQL_ROLLBACK, &e);
        if (s)
            sqlite3_step(s);
    }
    st->in_txn = false;
}

/* ------------------------------------------------------------- services */

static const char SQL_SERVICE_PUT[] =
    "INSERT INTO services(name, spec_json, generation, created_ms, updated_ms) "
    "VALUES (?1, ?2, CASE WHEN ?3 > 0 THEN ?3 ELSE 1 END, "
    "        CASE WHEN ?4 > 0 THEN ?4 ELSE ?6 END, "
    "        CASE WHEN ?5 > 0 THEN ?5 ELSE ?6 END) "
    "ON CONFLICT(name) DO UPDATE SET "
    "  generation = CASE WHEN ?3 > 0 THEN ?3 ELSE services.generation + "
    "                       (services.spec_json <> excluded.spec_json) END, "
    "  updated_ms = CASE WHEN ?5 > 0 THEN ?5 "
    "                    WHEN services.spec_json <> excluded.spec_json THEN ?6 "
    "                    ELSE services.updated_ms END, "
    "  spec_json = excluded.spec_json";
static const char SQL_SERVICE_GET[] =
    "SELECT name, spec_json, generation, created_ms, updated_ms FROM services "
    "WHERE name = ?1";
static const char SQL_SERVICE_LIST[] =
    "SELECT name, spec_json, generation, created_ms, updated_ms FROM services "
    "ORDER BY name";
static const char SQL_SERVICE_DELETE[] = "DELETE FROM services WHERE name = ?1";
static const char SQL_SERVICE_EXISTS[] = "SELECT 1 FROM services WHERE name = ?1";

static bool empty(const char *s)
{
    return !s || !*s;
}

/* Text that must parse as JSON of the given type (arrays: of strings). */
static int check_json(const char *text, json_type want, const char *field,
                      const char *what, const char *name, struct cgv_error *err)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    int ret = 0;

    if (!j)
        return cgv_err(err, CGV_E_INVALID, "store: put %s %s: %s is not valid JSON: "
                       "%s (line %d)", what, name, field, jerr.text, jerr.line);
    if (json_typeof(j) != want) {
        ret = cgv_err(err, CGV_E_INVALID, "store: put %s %s: %s must be a JSON %s",
                      what, name, field, want == JSON_OBJECT ? "object" : "array");
    } else if (want == JSON_ARRAY) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            if (!json_is_string(v)) {
                ret = cgv_err(err, CGV_E_INVALID, "store: put %s %s: %s must hold "
                              "only strings", what, name, field);
                break;
            }
        }
    }
    json_decref(j);
    return ret;
}

int store_service_put(struct store *st, const struct store_service *svc,
                      struct cgv_error *err)
{
    struct sqlerr e;

    if (!svc || empty(svc->name))
        return cgv_err(err, CGV_E_INVALID, "store: put service: no name");
    if (empty(svc->spec_json))
        return cgv_err(err, CGV_E_INVALID, "store: put service %s: no spec", svc->name);
    if (check_json(svc->spec_json, JSON_OBJECT, "spec", "service", svc->name, err) < 0)
        return -1;

    STORE_STMT sqlite3_stmt *s = prep(st, SQL_SERVICE_PUT, &e);
    if (!s || bind_text(st, s, 1, svc->name, &e) < 0 ||
        bind_text(st, s, 2, svc->spec_json, &e) < 0 ||
        bind_int(st, s, 3, svc->generation, &e) < 0 ||
        bind_int(st, s, 4, svc->created_ms, &e) < 0 ||
        bind_int(st, s, 5, svc->updated_ms, &e) < 0 ||
        bind_int(st, s, 6, cgv_wall_ms(), &e) < 0 || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "put service %s", svc->name);
    return 0;
}

static void read_service(sqlite3_stmt *s, struct store_service *out)
{
    out->name = col_dup(s, 0);
    out->spec_json = col_dup(s, 1);
    out->generation = sqlite3_column_int64(s, 2);
    out->created_ms = sqlite3_column_int64(s, 3);
    out->updated_ms = sqlite3_column_int64(s, 4);
}

int store_service_get(struct store *st, const char *name, struct store_service *out,
                      struct cgv_error *err)
{
    struct sqlerr e;
    int rc;

    memset(out, 0, sizeof(*out));
    if (empty(name))
        return cgv_err(err, CGV_E_INVALID, "store: get service: no name");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_SERVICE_GET, &e);
    if (!s || bind_text(st, s, 1, name, &e) < 0)
        return fail(st, &e, err, NULL, "get service %s", name);
    rc = step(st, s, &e);
    if (rc == SQLITE_DONE)
        return cgv_err(err, CGV_E_NOTFOUND, "store: get service %s: no such service",
                       name);
    if (rc != SQLITE_ROW)
        return fail(st, &e, err, NULL, "get service %s", name);
    read_service(s, out);
    return 0;
}

int store_service_list(struct store *st, struct store_service **out, size_t *n,
                       struct cgv_error *err)
{
    struct sqlerr e;
    struct store_service *list = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    *out = NULL;
    *n = 0;
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_SERVICE_LIST, &e);
    if (!s)
        return fail(st, &e, err, NULL, "list services");
    while ((rc = step(st, s, &e)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            list = cgv_realloc(list, cap * sizeof(*list));
        }
        read_service(s, &list[cnt++]);
    }
    if (rc != SQLITE_DONE) {
        store_service_free_list(list, cnt);
        return fail(st, &e, err, NULL, "list services");
    }
    *out = list;
    *n = cnt;
    return 0;
}

int store_service_delete(struct store *st, const char *name, struct cgv_error *err)
{
    struct sqlerr e;

    if (empty(name))
        return cgv_err(err, CGV_E_INVALID, "store: delete service: no name");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_SERVICE_DELETE, &e);
    if (!s || bind_text(st, s, 1, name, &e) < 0 || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "delete service %s", name);
    if (sqlite3_changes(st->db) == 0)
        return cgv_err(err, CGV_E_NOTFOUND, "store: delete service %s: no such service",
                       name);
    return 0;
}

void store_service_clear(struct store_service *svc)
{
    if (!svc)
        return;
    free(svc->name);
    free(svc->spec_json);
    memset(svc, 0, sizeof(*svc));
}

void store_service_free_list(struct store_service *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        store_service_clear(&list[i]);
    free(list);
}

/* ------------------------------------------------------------------ VMs */

#define VM_COLS                                                                  \
    "name, service, idx, uuid, mac, desired, addresses_json, restart_pending, " \
    "save_path, created_ms"

static const char SQL_VM_PUT[] =
    "INSERT INTO vms(" VM_COLS ") "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
    "        CASE WHEN ?10 > 0 THEN ?10 ELSE ?11 END) "
    "ON CONFLICT(name) DO UPDATE SET "
    "  service = excluded.service, idx = excluded.idx, uuid = excluded.uuid, "
    "  mac = excluded.mac, desired = excluded.desired, "
    "  addresses_json = excluded.addresses_json, "
    "  restart_pending = excluded.restart_pending, save_path = excluded.save_path";
static const char SQL_VM_GET[] = "SELECT " VM_COLS " FROM vms WHERE name = ?1";
static const char SQL_VM_LIST_ALL[] =
    "SELECT " VM_COLS " FROM vms ORDER BY service, idx";
static const char SQL_VM_LIST_SERVICE[] =
    "SELECT " VM_COLS " FROM vms WHERE service = ?1 ORDER BY idx";
static const char SQL_VM_DELETE[] = "DELETE FROM vms WHERE name = ?1";
static const char SQL_VM_BY_UUID[] =
    "SELECT name FROM vms WHERE uuid = ?1 AND name <> ?2";
static const char SQL_VM_BY_SLOT[] =
    "SELECT name FROM vms WHERE service = ?1 AND idx = ?2 AND name <> ?3";
static const char SQL_VM_EXISTS[] = "SELECT 1 FROM vms WHERE name = ?1";

/* Name found by a lookup (first column of the first row), or NULL. */
static char *lookup_name(struct store *st, const char *sql, const char *a,
                         const int64_t *b, const char *c)
{
    struct sqlerr e;
    int i = 1;
    STORE_STMT sqlite3_stmt *s = prep(st, sql, &e);

    if (!s || bind_text(st, s, i++, a, &e) < 0)
        return NULL;
    if (b && bind_int(st, s, i++, *b, &e) < 0)
        return NULL;
    if (c && bind_text(st, s, i++, c, &e) < 0)
        return NULL;
    if (step(st, s, &e) != SQLITE_ROW)
        return NULL;
    return col_dup(s, 0);
}

static bool row_exists(struct store *st, const char *sql, const char *key)
{
    CGV_AUTOFREE char *v = lookup_name(st, sql, key, NULL, NULL);
    return v != NULL;
}

static bool valid_desired(const char *d)
{
    static const char *const ok[] = {"running", "paused", "stopped", "saved"};

    for (size_t i = 0; d && i < CGV_ARRAY_LEN(ok); i++)
        if (strcmp(d, ok[i]) == 0)
            return true;
    return false;
}

/* Why a VM put hit a constraint, in words, into buf. */
static void vm_put_detail(struct store *st, const struct store_vm *vm, int rc,
                          char *buf, size_t cap)
{
    CGV_AUTOFREE char *holder = NULL;
    int64_t idx = vm->index;

    buf[0] = '\0';
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        if (!row_exists(st, SQL_SERVICE_EXISTS, vm->service))
            snprintf(buf, cap, "service %s does not exist", vm->service);
    } else if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        if ((holder = lookup_name(st, SQL_VM_BY_UUID, vm->uuid, NULL, vm->name)))
            snprintf(buf, cap, "uuid %s is already used by VM %s", vm->uuid, holder);
        else if ((holder = lookup_name(st, SQL_VM_BY_SLOT, vm->service, &idx, vm->name)))
            snprintf(buf, cap, "index %d of service %s is already VM %s", vm->index,
                     vm->service, holder);
    }
}

int store_vm_put(struct store *st, const struct store_vm *vm, struct cgv_error *err)
{
    struct sqlerr e;
    const char *addrs;
    char detail[256];

    if (!vm || empty(vm->name))
        return cgv_err(err, CGV_E_INVALID, "store: put vm: no name");
    if (empty(vm->service))
        return cgv_err(err, CGV_E_INVALID, "store: put vm %s: no service", vm->name);
    if (vm->index < 0)
        return cgv_err(err, CGV_E_INVALID, "store: put vm %s: negative index %d",
                       vm->name, vm->index);
    if (!vm->uuid || strlen(vm->uuid) != 36)
        return cgv_err(err, CGV_E_INVALID, "store: put vm %s: uuid \"%s\" is not 36 "
                       "characters", vm->name, vm->uuid ? vm->uuid : "");
    if (empty(vm->mac))
        return cgv_err(err, CGV_E_INVALID, "store: put vm %s: no MAC address", vm->name);
    if (!valid_desired(vm->desired))
        return cgv_err(err, CGV_E_INVALID, "store: put vm %s: desired state \"%s\" is "
                       "not one of running, paused, stopped, saved", vm->name,
                       vm->desired ? vm->desired : "");
    addrs = vm->addresses_json ? vm->addresses_json : "[]";
    if (check_json(addrs, JSON_ARRAY, "addresses", "vm", vm->name, err) < 0)
        return -1;

    STORE_STMT sqlite3_stmt *s = prep(st, SQL_VM_PUT, &e);
    if (!s || bind_text(st, s, 1, vm->name, &e) < 0 ||
        bind_text(st, s, 2, vm->service, &e) < 0 ||
        bind_int(st, s, 3, vm->index, &e) < 0 || bind_text(st, s, 4, vm->uuid, &e) < 0 ||
        bind_text(st, s, 5, vm->mac, &e) < 0 || bind_text(st, s, 6, vm->desired, &e) < 0 ||
        bind_text(st, s, 7, addrs, &e) < 0 ||
        bind_int(st, s, 8, vm->restart_pending ? 1 : 0, &e) < 0 ||
        bind_text(st, s, 9, vm->save_path, &e) < 0 ||
        bind_int(st, s, 10, vm->created_ms, &e) < 0 ||
        bind_int(st, s, 11, cgv_wall_ms(), &e) < 0)
        return fail(st, &e, err, NULL, "put vm %s", vm->name);
    if (step(st, s, &e) != SQLITE_DONE) {
        sqlite3_reset(s); /* before the lookups below */
        vm_put_detail(st, vm, e.rc, detail, sizeof(detail));
        return fail(st, &e, err, detail, "put vm %s", vm->name);
    }
    return 0;
}

static void read_vm(sqlite3_stmt *s, struct store_vm *out)
{
    out->name = col_dup(s, 0);
    out->service = col_dup(s, 1);
    out->index = sqlite3_column_int(s, 2);
    out->uuid = col_dup(s, 3);
    out->mac = col_dup(s, 4);
    out->desired = col_dup(s, 5);
    out->addresses_json = col_dup(s, 6);
    out->restart_pending = sqlite3_column_int(s, 7) ? 1 : 0;
    out->save_path = col_dup(s, 8);
    out->created_ms = sqlite3_column_int64(s, 9);
}

int store_vm_get(struct store *st, const char *name, struct store_vm *out,
                 struct cgv_error *err)
{
    struct sqlerr e;
    int rc;

    memset(out, 0, sizeof(*out));
    if (empty(name))
        return cgv_err(err, CGV_E_INVALID, "store: get vm: no name");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_VM_GET, &e);
    if (!s || bind_text(st, s, 1, name, &e) < 0)
        return fail(st, &e, err, NULL, "get vm %s", name);
    rc = step(st, s, &e);
    if (rc == SQLITE_DONE)
        return cgv_err(err, CGV_E_NOTFOUND, "store: get vm %s: no such VM", name);
    if (rc != SQLITE_ROW)
        return fail(st, &e, err, NULL, "get vm %s", name);
    read_vm(s, out);
    return 0;
}

int store_vm_list(struct store *st, const char *service, struct store_vm **out,
                  size_t *n, struct cgv_error *err)
{
    struct sqlerr e;
    struct store_vm *list = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    *out = NULL;
    *n = 0;
    STORE_STMT sqlite3_stmt *s =
        prep(st, service ? SQL_VM_LIST_SERVICE : SQL_VM_LIST_ALL, &e);
    if (!s || (service && bind_text(st, s, 1, service, &e) < 0))
        return fail(st, &e, err, NULL, "list vms%s%s", service ? " of " : "",
                    service ? service : "");
    while ((rc = step(st, s, &e)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            list = cgv_realloc(list, cap * sizeof(*list));
        }
        read_vm(s, &list[cnt++]);
    }
    if (rc != SQLITE_DONE) {
        store_vm_free_list(list, cnt);
        return fail(st, &e, err, NULL, "list vms%s%s", service ? " of " : "",
                    service ? service : "");
    }
    *out = list;
    *n = cnt;
    return 0;
}

int store_vm_delete(struct store *st, const char *name, struct cgv_error *err)
{
    struct sqlerr e;

    if (empty(name))
        return cgv_err(err, CGV_E_INVALID, "store: delete vm: no name");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_VM_DELETE, &e);
    if (!s || bind_text(st, s, 1, name, &e) < 0 || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "delete vm %s", name);
    if (sqlite3_changes(st->db) == 0)
        return cgv_err(err, CGV_E_NOTFOUND, "store: delete vm %s: no such VM", name);
    return 0;
}

void store_vm_clear(struct store_vm *vm)
{
    if (!vm)
        return;
    free(vm->name);
    free(vm->service);
    free(vm->uuid);
    free(vm->mac);
    free(vm->desired);
    free(vm->addresses_json);
    free(vm->save_path);
    memset(vm, 0, sizeof(*vm));
}

void store_vm_free_list(struct store_vm *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        store_vm_clear(&list[i]);
    free(list);
}

/* ------------------------------------------------------------ addresses */

static const char SQL_ADDR_CLAIM[] =
    "INSERT INTO addresses(network, ip, vm) VALUES (?1, ?2, ?3) "
    "ON CONFLICT(network, ip) DO NOTHING";
static const char SQL_ADDR_OWNER[] =
    "SELECT vm FROM addresses WHERE network = ?1 AND ip = ?2";
static const char SQL_ADDR_RELEASE_VM[] = "DELETE FROM addresses WHERE vm = ?1";

int store_addr_claim(struct store *st, const char *network, const char *ip,
                     const char *vm, struct cgv_error *err)
{
    struct sqlerr e;
    CGV_AUTOFREE char *owner = NULL;

    if (empty(network) || empty(ip) || empty(vm))
        return cgv_err(err, CGV_E_INVALID, "store: claim address: network, ip and vm "
                       "are required");
    {
        STORE_STMT sqlite3_stmt *s = prep(st, SQL_ADDR_CLAIM, &e);
        if (!s || bind_text(st, s, 1, network, &e) < 0 ||
            bind_text(st, s, 2, ip, &e) < 0 || bind_text(st, s, 3, vm, &e) < 0)
            return fail(st, &e, err, NULL, "claim %s on %s for vm %s", ip, network, vm);
        if (step(st, s, &e) != SQLITE_DONE) {
            char detail[128] = "";
            sqlite3_reset(s);
            if (e.rc == SQLITE_CONSTRAINT_FOREIGNKEY && !row_exists(st, SQL_VM_EXISTS, vm))
                snprintf(detail, sizeof(detail), "vm %s does not exist", vm);
            return fail(st, &e, err, detail, "claim %s on %s for vm %s", ip, network, vm);
        }
        if (sqlite3_changes(st->db) == 1)
            return 0;
    }
    /* Already claimed: fine if by this VM. */
    if (store_addr_owner(st, network, ip, &owner, err) < 0)
        return -1;
    if (owner && strcmp(owner, vm) == 0)
        return 0;
    return cgv_err(err, CGV_E_CONFLICT, "store: claim %s on %s for vm %s: address is "
                   "held by vm %s", ip, network, vm, owner ? owner : "(unknown)");
}

int store_addr_release_vm(struct store *st, const char *vm, struct cgv_error *err)
{
    struct sqlerr e;

    if (empty(vm))
        return cgv_err(err, CGV_E_INVALID, "store: release addresses: no vm");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_ADDR_RELEASE_VM, &e);
    if (!s || bind_text(st, s, 1, vm, &e) < 0 || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "release addresses of vm %s", vm);
    return 0;
}

int store_addr_owner(struct store *st, const char *network, const char *ip,
                     char **vm_out, struct cgv_error *err)
{
    struct sqlerr e;
    int rc;

    *vm_out = NULL;
    if (empty(network) || empty(ip))
        return cgv_err(err, CGV_E_INVALID, "store: address owner: network and ip are "
                       "required");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_ADDR_OWNER, &e);
    if (!s || bind_text(st, s, 1, network, &e) < 0 || bind_text(st, s, 2, ip, &e) < 0)
        return fail(st, &e, err, NULL, "owner of %s on %s", ip, network);
    rc = step(st, s, &e);
    if (rc == SQLITE_ROW)
        *vm_out = col_dup(s, 0);
    else if (rc != SQLITE_DONE)
        return fail(st, &e, err, NULL, "owner of %s on %s", ip, network);
    return 0;
}

/* --------------------------------------------------------------- events */

static const char SQL_EVENT_APPEND[] =
    "INSERT INTO events(time_ms, severity, type, service, vm, message) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQL_EVENT_LIST[] =
    "SELECT id, time_ms, severity, type, service, vm, message FROM events "
    "WHERE id > ?1 AND (?2 IS NULL OR service = ?2) AND (?3 IS NULL OR vm = ?3) "
    "ORDER BY id LIMIT ?4";
static const char SQL_EVENT_LAST[] =
    "SELECT seq FROM sqlite_sequence WHERE name = 'events'";
static const char SQL_EVENT_PRUNE[] =
    "DELETE FROM events WHERE id <= coalesce("
    "  (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1), 0)";

static bool valid_severity(const char *s)
{
    return s && (strcmp(s, "info") == 0 || strcmp(s, "warn") == 0 ||
                 strcmp(s, "error") == 0);
}

int store_event_append(struct store *st, struct store_event *ev, struct cgv_error *err)
{
    struct sqlerr e;
    int64_t when;

    if (!ev || empty(ev->type))
        return cgv_err(err, CGV_E_INVALID, "store: append event: no type");
    if (!valid_severity(ev->severity))
        return cgv_err(err, CGV_E_INVALID, "store: append event %s: severity \"%s\" is "
                       "not one of info, warn, error", ev->type,
                       ev->severity ? ev->severity : "");
    when = ev->time_ms > 0 ? ev->time_ms : cgv_wall_ms();
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_EVENT_APPEND, &e);
    if (!s || bind_int(st, s, 1, when, &e) < 0 ||
        bind_text(st, s, 2, ev->severity, &e) < 0 ||
        bind_text(st, s, 3, ev->type, &e) < 0 || bind_text(st, s, 4, ev->service, &e) < 0 ||
        bind_text(st, s, 5, ev->vm, &e) < 0 ||
        bind_text(st, s, 6, ev->message ? ev->message : "", &e) < 0 ||
        step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "append event %s", ev->type);
    ev->id = sqlite3_last_insert_rowid(st->db);
    ev->time_ms = when;
    return 0;
}

static void read_event(sqlite3_stmt *s, struct store_event *out)
{
    out->id = sqlite3_column_int64(s, 0);
    out->time_ms = sqlite3_column_int64(s, 1);
    out->severity = col_dup(s, 2);
    out->type = col_dup(s, 3);
    out->service = col_dup(s, 4);
    out->vm = col_dup(s, 5);
    out->message = col_dup(s, 6);
}

int store_event_list(struct store *st, int64_t after, const char *service,
                     const char *vm, size_t limit, struct store_event **out,
                     size_t *n, struct cgv_error *err)
{
    struct sqlerr e;
    struct store_event *list = NULL;
    size_t cnt = 0, cap = 0;
    int64_t lim = limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit;
    int rc;

    *out = NULL;
    *n = 0;
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_EVENT_LIST, &e);
    if (!s || bind_int(st, s, 1, after, &e) < 0 || bind_text(st, s, 2, service, &e) < 0 ||
        bind_text(st, s, 3, vm, &e) < 0 || bind_int(st, s, 4, lim, &e) < 0)
        return fail(st, &e, err, NULL, "list events");
    while ((rc = step(st, s, &e)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            list = cgv_realloc(list, cap * sizeof(*list));
        }
        read_event(s, &list[cnt++]);
    }
    if (rc != SQLITE_DONE) {
        store_event_free_list(list, cnt);
        return fail(st, &e, err, NULL, "list events");
    }
    *out = list;
    *n = cnt;
    return 0;
}

int64_t store_event_last_id(struct store *st)
{
    struct sqlerr e;
    int rc;
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_EVENT_LAST, &e);

    if (!s)
        return -1;
    rc = step(st, s, &e);
    if (rc == SQLITE_ROW)
        return sqlite3_column_int64(s, 0);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_event_prune(struct store *st, int64_t retain, struct cgv_error *err)
{
    struct sqlerr e;

    if (retain < 0)
        return cgv_err(err, CGV_E_INVALID, "store: prune events: negative retain %lld",
                       (long long)retain);
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_EVENT_PRUNE, &e);
    if (!s || bind_int(st, s, 1, retain, &e) < 0 || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "prune events to %lld", (long long)retain);
    return 0;
}

void store_event_clear(struct store_event *ev)
{
    if (!ev)
        return;
    free(ev->severity);
    free(ev->type);
    free(ev->service);
    free(ev->vm);
    free(ev->message);
    memset(ev, 0, sizeof(*ev));
}

void store_event_free_list(struct store_event *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        store_event_clear(&list[i]);
    free(list);
}

/* ----------------------------------------------------------------- meta */

int store_meta_set(struct store *st, const char *key, const char *value,
                   struct cgv_error *err)
{
    struct sqlerr e;

    if (empty(key))
        return cgv_err(err, CGV_E_INVALID, "store: set meta: no key");
    if (strncmp(key, STORE_RESERVED_PREFIX, strlen(STORE_RESERVED_PREFIX)) == 0)
        return cgv_err(err, CGV_E_INVALID, "store: set meta %s: keys starting with "
                       "\"" STORE_RESERVED_PREFIX "\" belong to the store", key);
    STORE_STMT sqlite3_stmt *s = prep(st, value ? SQL_META_SET : SQL_META_DEL, &e);
    if (!s || bind_text(st, s, 1, key, &e) < 0 ||
        (value && bind_text(st, s, 2, value, &e) < 0) || step(st, s, &e) != SQLITE_DONE)
        return fail(st, &e, err, NULL, "set meta %s", key);
    return 0;
}

int store_meta_get(struct store *st, const char *key, char **value,
                   struct cgv_error *err)
{
    struct sqlerr e;
    int rc;

    *value = NULL;
    if (empty(key))
        return cgv_err(err, CGV_E_INVALID, "store: get meta: no key");
    STORE_STMT sqlite3_stmt *s = prep(st, SQL_META_GET, &e);
    if (!s || bind_text(st, s, 1, key, &e) < 0)
        return fail(st, &e, err, NULL, "get meta %s", key);
    rc = step(st, s, &e);
    if (rc == SQLITE_ROW)
        *value = col_dup(s, 0);
    else if (rc != SQLITE_DONE)
        return fail(st, &e, err, NULL, "get meta %s", key);
    return 0;
}
