/* evlog.h — cgvd's event log: every detection, operation and state change,
 * timestamped, persisted in the store, logged, and handed to API clients
 * waiting for new events (long poll). */
#ifndef EVLOG_H
#define EVLOG_H

#include <stdint.h>

#include "cgv_common.h"
#include "store.h"

struct evlog;

int evlog_new(struct store *st, struct evlog **out, struct cgv_error *err) CGV_WUR;
void evlog_free(struct evlog *ev);

/* Record an event; returns its id (0 if the store refused it: it is still
 * logged and waiters are still woken). severity: "info", "warn", "error". */
int64_t evlog_emit(struct evlog *ev, const char *severity, const char *type,
                   const char *service, const char *vm, const char *fmt, ...)
    CGV_PRINTF(6, 7);

int64_t evlog_last_id(struct evlog *ev);

/* Call fn(opaque) once, on the next event. The handle is valid until then
 * or until evlog_unwatch. */
struct evlog_watch;
typedef void (*evlog_watch_fn)(void *opaque);
struct evlog_watch *evlog_watch(struct evlog *ev, evlog_watch_fn fn, void *opaque);
void evlog_unwatch(struct evlog *ev, struct evlog_watch *w);

#endif
