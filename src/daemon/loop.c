/* loop.c — see loop.h */
#include "loop.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "loop"

struct loop_watch {
    int fd;
    uint32_t events;
    loop_fd_cb cb;
    void *opaque;
    bool dead;
    struct loop_watch *next;
};

struct loop_timer {
    int64_t due_us;
    loop_timer_cb cb;
    void *opaque;
    struct loop_timer *next;
};

struct loop {
    int epfd;
    bool quit;
    struct loop_watch *watches;
    struct loop_timer *timers; /* sorted by due_us */
    loop_prepare_cb prepare;
    loop_after_cb after;
    void *prepare_opaque;
};

int loop_new(struct loop **out, struct cgv_error *err)
{
    struct loop *l = cgv_malloc0(sizeof(*l));

    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return cgv_err(err, CGV_E_IO, "epoll_create1: %s", strerror(errno));
    }
    *out = l;
    return 0;
}

static void reap_watches(struct loop *l)
{
    struct loop_watch **pp = &l->watches;

    while (*pp) {
        if ((*pp)->dead) {
            struct loop_watch *w = *pp;
            *pp = w->next;
            free(w);
        } else {
            pp = &(*pp)->next;
        }
    }
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    for (struct loop_watch *w = l->watches; w; w = w->next)
        w->dead = true;
    reap_watches(l);
    while (l->timers) {
        struct loop_timer *t = l->timers;
        l->timers = t->next;
        free(t);
    }
    close(l->epfd);
    free(l);
}

static struct loop_watch *find_watch(struct loop *l, int fd)
{
    for (struct loop_watch *w = l->watches; w; w = w->next) {
        if (w->fd == fd && !w->dead)
            return w;
    }
    return NULL;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *opaque,
                struct cgv_error *err)
{
    struct loop_watch *w;
    struct epoll_event ev = {.events = events};

    if (find_watch(l, fd))
        return cgv_err(err, CGV_E_INTERNAL, "fd %d is already watched", fd);
    w = cgv_malloc0(sizeof(*w));
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->opaque = opaque;
    ev.data.ptr = w;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        free(w);
        return cgv_err(err, CGV_E_IO, "epoll add fd %d: %s", fd, strerror(e));
    }
    w->next = l->watches;
    l->watches = w;
    return 0;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
    struct loop_watch *w = find_watch(l, fd);
    struct epoll_event ev = {.events = events};

    if (!w)
        return -1;
    if (w->events == events)
        return 0;
    ev.data.ptr = w;
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -1;
    w->events = events;
    return 0;
}

void loop_del_fd(struct loop *l, int fd)
{
    struct loop_watch *w = find_watch(l, fd);

    if (!w)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    /* Freed after the current dispatch round: an event for it may be pending. */
    w->dead = true;
}

struct loop_timer *loop_timer_add(struct loop *l, int64_t delay_ms, loop_timer_cb cb,
                                  void *opaque)
{
    struct loop_timer *t = cgv_malloc0(sizeof(*t)), **pp;

    t->due_us = cgv_mono_us() + (delay_ms > 0 ? delay_ms : 0) * 1000;
    t->cb = cb;
    t->opaque = opaque;
    for (pp = &l->timers; *pp && (*pp)->due_us <= t->due_us; pp = &(*pp)->next)
        ;
    t->next = *pp;
    *pp = t;
    return t;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    for (struct loop_timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            free(t);
            return;
        }
    }
}

void loop_set_prepare(struct loop *l, loop_prepare_cb cb, loop_after_cb after,
                      void *opaque)
{
    l->prepare = cb;
    l->after = after;
    l->prepare_opaque = opaque;
}

static void run_due_timers(struct loop *l)
{
    int64_t now = cgv_mono_us();

    /* Timers added by callbacks now are not run in this round unless due. */
    while (l->timers && l->timers->due_us <= now && !l->quit) {
        struct loop_timer *t = l->timers;
        l->timers = t->next;
        t->cb(l, t->opaque);
        free(t);
    }
}

int loop_run(struct loop *l)
{
    struct epoll_event evs[64];

    while (!l->quit) {
        int64_t wait_ms = -1;
        int n;

        if (l->timers) {
            int64_t d = l->timers->due_us - cgv_mono_us();
            wait_ms = d <= 0 ? 0 : (d + 999) / 1000;
        }
        if (l->prepare) {
            int64_t p = l->prepare(l, l->prepare_opaque);
            if (p >= 0 && (wait_ms < 0 || p < wait_ms))
                wait_ms = p;
        }
        if (wait_ms > 60000)
            wait_ms = 60000;
        n = epoll_wait(l->epfd, evs, (int)CGV_ARRAY_LEN(evs), (int)wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n && !l->quit; i++) {
            struct loop_watch *w = evs[i].data.ptr;
            if (!w->dead)
                w->cb(l, w->fd, evs[i].events, w->opaque);
        }
        reap_watches(l);
        run_due_timers(l);
        if (l->after && !l->quit)
            l->after(l, l->prepare_opaque);
    }
    return 0;
}

void loop_quit(struct loop *l)
{
    l->quit = true;
}

bool loop_quitting(const struct loop *l)
{
    return l->quit;
}
