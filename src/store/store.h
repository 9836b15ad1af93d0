/* store.h — cgvd's persistent state in SQLite.
 *
 * One database file (default /var/lib/cgv/cgvd.db), WAL journal,
 * synchronous=FULL, foreign keys on: a cgvd killed at any instant restarts
 * with the last committed state. Every write is one transaction; callers
 * that need several writes to land together use store_begin/commit/rollback
 * (nesting is not supported: store_begin inside a transaction is an error).
 *
 * Threading: one struct store is used from one thread (cgvd's main loop).
 *
 * Ownership: list functions return arrays the caller frees with the matching
 * *_free_list(); strings inside records are owned by the record.
 */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"

struct store;

struct store_service {
    char *name;
    char *spec_json;   /* canonical spec JSON text */
    int64_t generation; /* +1 on every change of the spec */
    int64_t created_ms; /* wall clock */
    int64_t updated_ms;
};

struct store_vm {
    char *name;        /* "<service>-<index>" */
    char *service;
    int index;
    char *uuid;        /* libvirt domain UUID, 36 chars */
    char *mac;         /* "52:54:00:xx:xx:xx" (first NIC; others derive) */
    char *desired;     /* "running" | "paused" | "stopped" | "saved" */
    char *addresses_json; /* JSON array of "ip/prefix" strings, one per NIC */
    int restart_pending;  /* 0/1 */
    char *save_path;   /* NULL unless a saved image exists */
    int64_t created_ms;
};

struct store_event {
    int64_t id;        /* assigned by store_event_append */
    int64_t time_ms;   /* wall clock */
    char *severity;    /* "info" | "warn" | "error" */
    char *type;        /* "vm.started", ... */
    char *service;     /* may be NULL */
    char *vm;          /* may be NULL */
    char *message;
};

/* Open (creating if needed, with parent directory) and migrate the schema.
 * A database with a newer schema than this binary knows is refused with
 * CGV_E_CONFLICT; a corrupt file with CGV_E_IO naming the file. */
int store_open(const char *path, struct store **out, struct cgv_error *err) CGV_WUR;
void store_close(struct store *st);

/* Random UUID created with the database; cgvd stamps it into the metadata of
 * every domain it defines, so it adopts only its own domains. */
const char *store_owner_id(const struct store *st);

/* After a failed statement inside a transaction the transaction is still
 * open (only that statement was undone) unless SQLite ended it itself (disk
 * full, I/O error); either way the caller decides and calls commit or
 * rollback. A failed commit ends the transaction with nothing saved. */
int store_begin(struct store *st, struct cgv_error *err) CGV_WUR;
int store_commit(struct store *st, struct cgv_error *err) CGV_WUR;
void store_rollback(struct store *st);

/* Services. put = insert or replace by name. get/delete of a missing name
 * fail with CGV_E_NOTFOUND. delete removes the service's VMs, their address
 * claims, but not its events.
 * put details: spec_json must be a JSON object (CGV_E_INVALID otherwise).
 * generation: a caller's value > 0 is stored as given (cgvd numbers its
 * generations itself, and a rollback puts the old number back); 0 lets the
 * store compute it: 1 on insert, +1 when spec_json text changes. created_ms 0
 * = now; it is kept on replace. updated_ms 0 = now if the spec changed. */
int store_service_put(struct store *st, const struct store_service *svc,
                      struct cgv_error *err) CGV_WUR;
int store_service_get(struct store *st, const char *name, struct store_service *out,
                      struct cgv_error *err) CGV_WUR;
int store_service_list(struct store *st, struct store_service **out, size_t *n,
                       struct cgv_error *err) CGV_WUR;
int store_service_delete(struct store *st, const char *name,
                         struct cgv_error *err) CGV_WUR;
void store_service_clear(struct store_service *svc); /* frees the strings */
void store_service_free_list(struct store_service *list, size_t n);

/* VMs. put = insert or replace by name; the service must exist
 * (CGV_E_NOTFOUND otherwise); uuid is unique (CGV_E_CONFLICT). list with
 * service NULL lists all, ordered by service then index.
 * put details: (service, index) is unique too (CGV_E_CONFLICT); desired must
 * be one of the four states, uuid 36 chars, addresses_json a JSON array of
 * strings (NULL = "[]") (CGV_E_INVALID otherwise). created_ms 0 = now; it
 * is kept on replace. Replacing a VM keeps its address claims. list of an
 * unknown service gives 0 VMs, not an error. */
int store_vm_put(struct store *st, const struct store_vm *vm,
                 struct cgv_error *err) CGV_WUR;
int store_vm_get(struct store *st, const char *name, struct store_vm *out,
                 struct cgv_error *err) CGV_WUR;
int store_vm_list(struct store *st, const char *service, struct store_vm **out,
                  size_t *n, struct cgv_error *err) CGV_WUR;
int store_vm_delete(struct store *st, const char *name, struct cgv_error *err) CGV_WUR;
void store_vm_clear(struct store_vm *vm);
void store_vm_free_list(struct store_vm *list, size_t n);

/* Address claims: one row per (network, ip). claim fails with CGV_E_CONFLICT
 * naming the VM that holds it (claiming an address the same VM already holds
 * succeeds). release_vm drops every claim of the VM. */
int store_addr_claim(struct store *st, const char *network, const char *ip,
                     const char *vm, struct cgv_error *err) CGV_WUR;
int store_addr_release_vm(struct store *st, const char *vm, struct cgv_error *err) CGV_WUR;
/* Owner of an address, or NULL (caller frees). */
int store_addr_owner(struct store *st, const char *network, const char *ip,
                     char **vm_out, struct cgv_error *err) CGV_WUR;

/* Events: append assigns ev->id. Keeps at most `retain` events (oldest
 * dropped) when store_event_prune is called. list returns events with id >
 * after, optionally only those of a service and/or VM, oldest first, at most
 * limit.
 * Details: append fills ev->time_ms with now if it is 0; severity must be
 * info|warn|error (CGV_E_INVALID); a NULL message is stored as "". limit 0 =
 * no limit. Ids never repeat, even after pruning everything. last_id is the
 * highest id ever assigned (0 if none), -1 if the database cannot be read. */
int store_event_append(struct store *st, struct store_event *ev,
                       struct cgv_error *err) CGV_WUR;
int store_event_list(struct store *st, int64_t after, const char *service,
                     const char *vm, size_t limit, struct store_event **out,
                     size_t *n, struct cgv_error *err) CGV_WUR;
int64_t store_event_last_id(struct store *st);
int store_event_prune(struct store *st, int64_t retain, struct cgv_error *err) CGV_WUR;
void store_event_clear(struct store_event *ev);
void store_event_free_list(struct store_event *list, size_t n);

/* Small key/value table for cgvd's own bookkeeping. get of a missing key
 * gives *value NULL and returns 0. set with value NULL deletes the key. Keys
 * starting with "store." belong to the store (owner id) and are read-only
 * (CGV_E_INVALID). get returns a string the caller frees. */
int store_meta_set(struct store *st, const char *key, const char *value,
                   struct cgv_error *err) CGV_WUR;
int store_meta_get(struct store *st, const char *key, char **value,
                   struct cgv_error *err) CGV_WUR;

#endif
