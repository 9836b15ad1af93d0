/* evlog.c — see evlog.h */
#include "evlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cgv_log.h"

#define LOG_MODULE "event"
#define EVLOG_RETAIN 100000
#define EVLOG_PRUNE_EVERY 1000

struct evlog_watch {
    evlog_watch_fn fn;
    void *opaque;
    struct evlog_watch *next;
};

struct evlog {
    struct store *st;
    int64_t last_id;
    unsigned since_prune;
    struct evlog_watch *watches;
    struct evlog_watch *firing; /* being called now; unwatch finds them too */
};

int evlog_new(struct store *st, struct evlog **out, struct cgv_error *err)
{
    struct evlog *ev = cgv_malloc0(sizeof(*ev));

    ev->st = st;
    ev->last_id = store_event_last_id(st);
    if (store_event_prune(st, EVLOG_RETAIN, err) < 0) {
        free(ev);
        return -1;
    }
    *out = ev;
    return 0;
}

void evlog_free(struct evlog *ev)
{
    if (!ev)
        return;
    while (ev->watches) {
        struct evlog_watch *w = ev->watches;
        ev->watches = w->next;
        free(w);
    }
    free(ev);
}

int64_t evlog_emit(struct evlog *ev, const char *severity, const char *type,
                   const char *service, const char *vm, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    struct store_event e = {0};
    struct cgv_error err = {0};
    struct evlog_watch *ws;
    enum cgv_log_level lvl = strcmp(severity, "error") == 0  ? CGV_LOG_ERROR
                             : strcmp(severity, "warn") == 0 ? CGV_LOG_WARN
                                                             : CGV_LOG_INFO;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cgv_log(lvl, LOG_MODULE, "%s%s%s %s", type, vm ? " " : "", vm ? vm : "", msg);

    e.time_ms = cgv_wall_ms();
    e.severity = (char *)severity;
    e.type = (char *)type;
    e.service = (char *)service;
    e.vm = (char *)vm;
    e.message = msg;
    if (store_event_append(ev->st, &e, &err) < 0) {
        log_error("could not store event %s: %s", type, err.msg);
        e.id = 0;
    } else {
        ev->last_id = e.id;
        if (++ev->since_prune >= EVLOG_PRUNE_EVERY) {
            ev->since_prune = 0;
            if (store_event_prune(ev->st, EVLOG_RETAIN, &err) < 0)
                log_warn("pruning events: %s", err.msg);
        }
    }
    /* Wake every waiter; each is one-shot. A callback may unwatch another
     * waiter of this batch (or add new ones, woken by the next event). */
    ws = ev->watches;
    ev->watches = NULL;
    ev->firing = ws;
    while (ev->firing) {
        struct evlog_watch *w = ev->firing;
        ev->firing = w->next;
        w->fn(w->opaque);
        free(w);
    }
    return e.id;
}

int64_t evlog_last_id(struct evlog *ev)
{
    return ev->last_id;
}

struct evlog_watch *evlog_watch(struct evlog *ev, evlog_watch_fn fn, void *opaque)
{
    struct evlog_watch *w = cgv_malloc0(sizeof(*w));

    w->fn = fn;
    w->opaque = opaque;
    w->next = ev->watches;
    ev->watches = w;
    return w;
}

void evlog_unwatch(struct evlog *ev, struct evlog_watch *w)
{
    struct evlog_watch **lists[] = {&ev->watches, &ev->firing};

    for (size_t i = 0; i < CGV_ARRAY_LEN(lists); i++) {
        for (struct evlog_watch **pp = lists[i]; *pp; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                free(w);
                return;
            }
        }
    }
}
