/* Unit tests for loop.c (epoll + one-shot timers) and jobs.c (worker pool
 * whose done() callbacks run on the loop thread).
 *
 * Every loop run is bounded by a guard timer that quits the loop and fails
 * the test, so a bug shows up as a failure, not a hang. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "jobs.h"
#include "loop.h"

#define GUARD_MS 5000

static bool guard_fired;

static void on_guard(struct loop *l, void *opaque)
{
    (void)opaque;
    guard_fired = true;
    loop_quit(l);
}

/* Run l until loop_quit; fails if the guard fires first. */
static void run_guarded(struct loop *l)
{
    struct loop_timer *g;

    guard_fired = false;
    g = loop_timer_add(l, GUARD_MS, on_guard, NULL);
    assert_int_equal(loop_run(l), 0);
    if (guard_fired) {
        print_error("the loop was still running after %d ms\n", GUARD_MS);
        fail();
    }
    loop_timer_cancel(l, g);
}

static struct loop *new_loop(void)
{
    struct loop *l = NULL;
    struct cgv_error err = {0};

    assert_int_equal(loop_new(&l, &err), 0);
    assert_non_null(l);
    return l;
}

/* ------------------------------------------------------------------ */
/* timers                                                              */

struct tick {
    int id;
    int64_t delay_ms;
    int64_t added_us;
    int *order;
    int *n;
    int quit_after; /* quit the loop when *n reaches this */
    struct loop_timer **handle;
    struct loop_timer *cancel; /* cancel this timer when run */
};

static void on_tick(struct loop *l, void *opaque)
{
    struct tick *t = opaque;
    int64_t elapsed_us = cgv_mono_us() - t->added_us;

    /* Never early. */
    if (elapsed_us < t->delay_ms * 1000) {
        print_error("timer %d ran after %lld us, before its %lld ms\n", t->id,
                    (long long)elapsed_us, (long long)t->delay_ms);
        fail();
    }
    t->order[(*t->n)++] = t->id;
    if (t->handle)
        *t->handle = NULL;
    if (t->cancel)
        loop_timer_cancel(l, t->cancel);
    if (*t->n == t->quit_after)
        loop_quit(l);
}

static void test_timers_in_order(void **state)
{
    struct loop *l = new_loop();
    /* id = expected position; delays given out of order, two equal ones
     * keep their insertion order. */
    static const int64_t delays[] = {40, 0, 20, 20, 60, 5};
    static const int want[] = {1, 5, 2, 3, 0, 4};
    struct tick t[6];
    int order[6] = {0}, n = 0;

    (void)state;
    for (int i = 0; i < 6; i++) {
        t[i] = (struct tick){.id = i, .delay_ms = delays[i], .added_us = cgv_mono_us(),
                             .order = order, .n = &n, .quit_after = 6};
        assert_non_null(loop_timer_add(l, delays[i], on_tick, &t[i]));
    }
    run_guarded(l);
    assert_int_equal(n, 6);
    assert_memory_equal(order, want, sizeof(want));
    loop_free(l);
}

static void test_timer_negative_delay(void **state)
{
    struct loop *l = new_loop();
    struct tick t;
    int order[1], n = 0;

    (void)state;
    t = (struct tick){.id = 7, .delay_ms = 0, .added_us = cgv_mono_us(), .order = order,
                      .n = &n, .quit_after = 1};
    loop_timer_add(l, -1000, on_tick, &t);
    run_guarded(l);
    assert_int_equal(n, 1);
    loop_free(l);
}

static void test_timer_cancel(void **state)
{
    struct loop *l = new_loop();
    struct tick a, b, c;
    int order[3] = {0}, n = 0;
    struct loop_timer *ta, *tc;

    (void)state;
    a = (struct tick){.id = 1, .delay_ms = 10, .added_us = cgv_mono_us(), .order = order,
                      .n = &n};
    b = (struct tick){.id = 2, .delay_ms = 30, .added_us = cgv_mono_us(), .order = order,
                      .n = &n, .quit_after = 1};
    c = (struct tick){.id = 3, .delay_ms = 20, .added_us = cgv_mono_us(), .order = order,
                      .n = &n};
    ta = loop_timer_add(l, 10, on_tick, &a);
    loop_timer_add(l, 30, on_tick, &b);
    tc = loop_timer_add(l, 20, on_tick, &c);
    loop_timer_cancel(l, ta);
    loop_timer_cancel(l, tc);
    run_guarded(l);
    assert_int_equal(n, 1);
    assert_int_equal(order[0], 2);
    loop_free(l);
}

/* A timer's callback cancels a later timer: it never runs. */
static void test_timer_cancel_in_callback(void **state)
{
    struct loop *l = new_loop();
    struct tick a, b, c;
    int order[3] = {0}, n = 0;

    (void)state;
    a = (struct tick){.id = 1, .delay_ms = 0, .added_us = cgv_mono_us(), .order = order,
                      .n = &n};
    b = (struct tick){.id = 2, .delay_ms = 10, .added_us = cgv_mono_us(), .order = order,
                      .n = &n};
    c = (struct tick){.id = 3, .delay_ms = 25, .added_us = cgv_mono_us(), .order = order,
                      .n = &n, .quit_after = 2};
    loop_timer_add(l, 0, on_tick, &a);
    a.cancel = loop_timer_add(l, 10, on_tick, &b);
    loop_timer_add(l, 25, on_tick, &c);
    run_guarded(l);
    assert_int_equal(n, 2);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 3);
    loop_free(l);
}

struct self_cancel {
    struct loop_timer *me;
    int calls;
};

static void on_self_cancel(struct loop *l, void *opaque)
{
    struct self_cancel *s = opaque;

    s->calls++;
    loop_timer_cancel(l, s->me); /* no longer valid: must be a no-op */
    loop_quit(l);
}

static void test_timer_cancel_self(void **state)
{
    struct loop *l = new_loop();
    struct self_cancel s = {0};

    (void)state;
    s.me = loop_timer_add(l, 0, on_self_cancel, &s);
    run_guarded(l);
    assert_int_equal(s.calls, 1);
    loop_free(l);
}

/* Timers added from a timer callback run too (later, in order). */
struct chain {
    int left;
    int runs;
};

static void on_chain(struct loop *l, void *opaque)
{
    struct chain *c = opaque;

    c->runs++;
    if (--c->left == 0)
        loop_quit(l);
    else
        loop_timer_add(l, 0, on_chain, c);
}

static void test_timer_added_in_callback(void **state)
{
    struct loop *l = new_loop();
    struct chain c = {.left = 50};

    (void)state;
    loop_timer_add(l, 1, on_chain, &c);
    run_guarded(l);
    assert_int_equal(c.runs, 50);
    loop_free(l);
}

/* Freeing a loop with timers and watches left frees them (ASan). */
static void test_free_with_pending(void **state)
{
    struct loop *l = new_loop();
    struct tick t = {0};
    int p[2];

    (void)state;
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    loop_timer_add(l, 1000, on_tick, &t);
    loop_timer_add(l, 5, on_tick, &t);
    assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, NULL, NULL, NULL), 0);
    loop_free(l);
    loop_free(NULL);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------------------------ */
/* file descriptors                                                    */

struct fdrec {
    int fd;
    int calls;
    uint32_t events;
    struct loop *l;
    int del_fd;   /* delete this fd's watch from the callback (-1: none) */
    bool del_self;
    bool quit;
    int *total;
};

static void on_fd(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct fdrec *r = opaque;
    char buf[64];

    assert_int_equal(fd, r->fd);
    r->calls++;
    r->events = events;
    if (events & EPOLLIN)
        (void)!read(fd, buf, sizeof(buf));
    if (r->total)
        (*r->total)++;
    if (r->del_fd >= 0)
        loop_del_fd(l, r->del_fd);
    if (r->del_self)
        loop_del_fd(l, fd);
    if (r->quit)
        loop_quit(l);
}

static void on_quit_timer(struct loop *l, void *opaque)
{
    (void)opaque;
    loop_quit(l);
}

static void test_fd_callback(void **state)
{
    struct loop *l = new_loop();
    struct cgv_error err = {0};
    struct fdrec r = {.del_fd = -1, .quit = true};
    int p[2];

    (void)state;
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    r.fd = p[0];
    assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, on_fd, &r, &err), 0);
    /* Watching the same fd twice is refused. */
    assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, on_fd, &r, &err), -1);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    /* An fd epoll refuses (a regular file) fails with IO. */
    {
        struct cgv_error e2 = {0};
        int f = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        assert_true(f >= 0);
        assert_int_equal(loop_add_fd(l, f, EPOLLIN, on_fd, &r, &e2), -1);
        assert_int_equal(e2.code, CGV_E_IO);
        close(f);
    }
    assert_int_equal(write(p[1], "x", 1), 1);
    run_guarded(l);
    assert_int_equal(r.calls, 1);
    assert_true(r.events & EPOLLIN);

    /* loop_quit() is final: a second loop_run() returns at once. */
    assert_true(loop_quitting(l));
    assert_int_equal(loop_run(l), 0);
    loop_free(l);
    l = new_loop();

    /* Switched to EPOLLOUT: the write end is writable at once. */
    {
        struct fdrec w = {.fd = p[1], .del_fd = -1, .quit = true};
        assert_int_equal(loop_add_fd(l, p[1], 0, on_fd, &w, &err), 0);
        assert_int_equal(loop_mod_fd(l, p[1], EPOLLOUT), 0);
        assert_int_equal(loop_mod_fd(l, p[1], EPOLLOUT), 0); /* unchanged: fine */
        run_guarded(l);
        assert_int_equal(w.calls, 1);
        assert_true(w.events & EPOLLOUT);
        loop_del_fd(l, p[1]);
    }
    assert_int_equal(loop_mod_fd(l, 12345, EPOLLIN), -1);
    loop_del_fd(l, 12345); /* unknown: ignored */
    loop_free(l);
    close(p[0]);
    close(p[1]);
}

/* Two fds ready in the same round; whichever runs first deletes the other
 * (and closes it): the other's callback must not run. */
static void test_fd_delete_other_in_callback(void **state)
{
    struct loop *l = new_loop();
    struct fdrec a = {0}, b = {0};
    int pa[2], pb[2], total = 0;

    (void)state;
    assert_int_equal(pipe2(pa, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(pb, O_CLOEXEC | O_NONBLOCK), 0);
    a = (struct fdrec){.fd = pa[0], .del_fd = pb[0], .total = &total};
    b = (struct fdrec){.fd = pb[0], .del_fd = pa[0], .total = &total};
    assert_int_equal(loop_add_fd(l, pa[0], EPOLLIN, on_fd, &a, NULL), 0);
    assert_int_equal(loop_add_fd(l, pb[0], EPOLLIN, on_fd, &b, NULL), 0);
    assert_int_equal(write(pa[1], "x", 1), 1);
    assert_int_equal(write(pb[1], "x", 1), 1);
    loop_timer_add(l, 50, on_quit_timer, NULL);
    run_guarded(l);
    assert_int_equal(total, 1);
    assert_int_equal(a.calls + b.calls, 1);
    loop_free(l);
    close(pa[0]);
    close(pa[1]);
    close(pb[0]);
    close(pb[1]);
}

/* A callback deleting its own watch (and closing the fd) is not called
 * again; re-adding the same fd number afterwards works. */
struct readd {
    struct loop *l;
    int p[2];
    int calls_old, calls_new;
};

static void on_new(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct readd *r = opaque;
    char c;

    (void)events;
    r->calls_new++;
    (void)!read(fd, &c, 1);
    loop_quit(l);
}

static void on_old(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct readd *r = opaque;
    int old = fd;

    (void)events;
    r->calls_old++;
    loop_del_fd(l, fd);
    close(r->p[0]);
    close(r->p[1]);
    assert_int_equal(pipe2(r->p, O_CLOEXEC | O_NONBLOCK), 0);
    /* The kernel hands out the lowest free number: usually the old one. */
    if (r->p[0] != old) {
        int d = dup3(r->p[0], old, O_CLOEXEC);
        assert_int_equal(d, old);
        close(r->p[0]);
        r->p[0] = old;
    }
    assert_int_equal(loop_add_fd(l, r->p[0], EPOLLIN, on_new, r, NULL), 0);
    assert_int_equal(write(r->p[1], "y", 1), 1);
}

static void test_fd_delete_self_and_readd(void **state)
{
    struct loop *l = new_loop();
    struct readd r = {.l = l};

    (void)state;
    assert_int_equal(pipe2(r.p, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(loop_add_fd(l, r.p[0], EPOLLIN, on_old, &r, NULL), 0);
    assert_int_equal(write(r.p[1], "x", 1), 1);
    run_guarded(l);
    assert_int_equal(r.calls_old, 1);
    assert_int_equal(r.calls_new, 1);
    loop_free(l);
    close(r.p[0]);
    close(r.p[1]);
}

/* loop_quit from a callback: no further callback of that round runs. */
static void test_quit_stops_round(void **state)
{
    struct loop *l = new_loop();
    struct fdrec a, b;
    int pa[2], pb[2], total = 0;

    (void)state;
    assert_int_equal(pipe2(pa, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(pb, O_CLOEXEC | O_NONBLOCK), 0);
    a = (struct fdrec){.fd = pa[0], .del_fd = -1, .quit = true, .total = &total};
    b = (struct fdrec){.fd = pb[0], .del_fd = -1, .quit = true, .total = &total};
    assert_int_equal(loop_add_fd(l, pa[0], EPOLLIN, on_fd, &a, NULL), 0);
    assert_int_equal(loop_add_fd(l, pb[0], EPOLLIN, on_fd, &b, NULL), 0);
    assert_int_equal(write(pa[1], "x", 1), 1);
    assert_int_equal(write(pb[1], "x", 1), 1);
    run_guarded(l);
    assert_int_equal(total, 1);
    assert_true(loop_quitting(l));
    loop_free(l);
    close(pa[0]);
    close(pa[1]);
    close(pb[0]);
    close(pb[1]);
}

/* The prepare hook bounds the sleep: with nothing else to wake the loop,
 * it comes round every few ms. */
struct prep {
    int calls;
    int after_calls;
};

static void on_after(struct loop *l, void *opaque)
{
    struct prep *p = opaque;

    (void)l;
    p->after_calls++;
}

static int64_t on_prepare(struct loop *l, void *opaque)
{
    struct prep *p = opaque;

    if (++p->calls == 5)
        loop_quit(l);
    return 2;
}

static void test_prepare(void **state)
{
    struct loop *l = new_loop();
    struct prep p = {0};

    (void)state;
    loop_set_prepare(l, on_prepare, on_after, &p);
    run_guarded(l);
    assert_true(p.calls >= 5);
    /* after ran once per completed wait; not after the one that quit */
    assert_int_equal(p.after_calls, p.calls - 1);
    loop_set_prepare(l, NULL, NULL, NULL);
    loop_free(l);
}

/* ------------------------------------------------------------------ */
/* jobs                                                                */

#define NJOBS 64

struct jobrec {
    int index;
    pthread_t loop_thread;
    pthread_t work_thread;
    bool worked;
    int done_calls;
    int *done_order;
    int *n_done;
    int *work_order;
    int *n_work;
    pthread_mutex_t *lock;
    struct loop *l;
    int quit_at;
    sem_t *hold; /* work waits on it when set */
    sem_t *started;
};

static void job_work(void *arg)
{
    struct jobrec *j = arg;

    if (j->started)
        sem_post(j->started);
    if (j->hold)
        sem_wait(j->hold);
    j->work_thread = pthread_self();
    j->worked = true;
    if (j->work_order) {
        pthread_mutex_lock(j->lock);
        j->work_order[(*j->n_work)++] = j->index;
        pthread_mutex_unlock(j->lock);
    }
}

static void job_done(void *arg)
{
    struct jobrec *j = arg;

    assert_true(pthread_equal(pthread_self(), j->loop_thread));
    assert_true(j->worked);
    assert_false(pthread_equal(j->work_thread, j->loop_thread));
    j->done_calls++;
    j->done_order[(*j->n_done)++] = j->index;
    if (*j->n_done == j->quit_at)
        loop_quit(j->l);
}

static void run_jobs(unsigned threads, bool check_order)
{
    struct loop *l = new_loop();
    struct jobs *js = NULL;
    struct cgv_error err = {0};
    struct jobrec r[NJOBS];
    int done_order[NJOBS], work_order[NJOBS], n_done = 0, n_work = 0;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

    assert_int_equal(jobs_new(l, threads, &js, &err), 0);
    assert_int_equal(jobs_pending(js), 0);
    for (int i = 0; i < NJOBS; i++) {
        r[i] = (struct jobrec){.index = i, .loop_thread = pthread_self(),
                               .done_order = done_order, .n_done = &n_done,
                               .work_order = work_order, .n_work = &n_work, .lock = &lock,
                               .l = l, .quit_at = NJOBS};
        jobs_submit(js, job_work, job_done, &r[i]);
    }
    assert_true(jobs_pending(js) > 0);
    run_guarded(l);
    assert_int_equal(n_done, NJOBS);
    assert_int_equal(jobs_pending(js), 0);
    for (int i = 0; i < NJOBS; i++)
        assert_int_equal(r[i].done_calls, 1);
    if (check_order) {
        for (int i = 0; i < NJOBS; i++) {
            assert_int_equal(work_order[i], i);
            assert_int_equal(done_order[i], i);
        }
    }
    jobs_free(js);
    loop_free(l);
}

/* One worker: work and done in submission order, done on the loop. */
static void test_jobs_in_order(void **state)
{
    (void)state;
    run_jobs(1, true);
}

/* Several workers: each job done exactly once, on the loop thread. */
static void test_jobs_parallel(void **state)
{
    (void)state;
    run_jobs(4, false);
}

/* A job without work or done; and a done() that submits more work. */
struct resubmit {
    struct jobs *js;
    struct loop *l;
    int rounds;
};

static void resubmit_done(void *arg)
{
    struct resubmit *r = arg;

    if (++r->rounds == 10)
        loop_quit(r->l);
    else
        jobs_submit(r->js, NULL, resubmit_done, r);
}

static void test_jobs_submit_from_done(void **state)
{
    struct loop *l = new_loop();
    struct jobs *js = NULL;
    struct resubmit r = {.l = l};

    (void)state;
    assert_int_equal(jobs_new(l, 2, &js, NULL), 0);
    r.js = js;
    jobs_submit(js, NULL, NULL, NULL);
    jobs_submit(js, NULL, resubmit_done, &r);
    run_guarded(l);
    assert_int_equal(r.rounds, 10);
    jobs_free(js);
    loop_free(l);
}

/* jobs_free waits for the running job and drops the queued ones: their
 * done() is never called. */
struct freer {
    struct jobs *js;
    sem_t finished;
};

static void *free_thread(void *arg)
{
    struct freer *f = arg;

    jobs_free(f->js);
    sem_post(&f->finished);
    return NULL;
}

static void test_jobs_free_drops_queued(void **state)
{
    struct loop *l = new_loop();
    struct jobs *js = NULL;
    struct jobrec r[8];
    int done_order[8], n_done = 0;
    sem_t hold, started;
    struct freer f;
    pthread_t t;
    struct timespec dl;
    int worked = 0;

    (void)state;
    sem_init(&hold, 0, 0);
    sem_init(&started, 0, 0);
    sem_init(&f.finished, 0, 0);
    assert_int_equal(jobs_new(l, 1, &js, NULL), 0);
    for (int i = 0; i < 8; i++) {
        r[i] = (struct jobrec){.index = i, .loop_thread = pthread_self(),
                               .done_order = done_order, .n_done = &n_done, .hold = &hold,
                               .started = i == 0 ? &started : NULL};
        jobs_submit(js, job_work, job_done, &r[i]);
    }
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    assert_int_equal(sem_timedwait(&started, &dl), 0); /* job 0 runs */
    f.js = js;
    assert_int_equal(pthread_create(&t, NULL, free_thread, &f), 0);
    /* Let every job that still gets to run finish. */
    for (int i = 0; i < 8; i++)
        sem_post(&hold);
    assert_int_equal(sem_timedwait(&f.finished, &dl), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 8; i++)
        worked += r[i].worked;
    assert_true(worked >= 1);
    assert_int_equal(n_done, 0);
    loop_free(l);
    sem_destroy(&hold);
    sem_destroy(&started);
    sem_destroy(&f.finished);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_in_order),
        cmocka_unit_test(test_timer_negative_delay),
        cmocka_unit_test(test_timer_cancel),
        cmocka_unit_test(test_timer_cancel_in_callback),
        cmocka_unit_test(test_timer_cancel_self),
        cmocka_unit_test(test_timer_added_in_callback),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_fd_callback),
        cmocka_unit_test(test_fd_delete_other_in_callback),
        cmocka_unit_test(test_fd_delete_self_and_readd),
        cmocka_unit_test(test_quit_stops_round),
        cmocka_unit_test(test_prepare),
        cmocka_unit_test(test_jobs_in_order),
        cmocka_unit_test(test_jobs_parallel),
        cmocka_unit_test(test_jobs_submit_from_done),
        cmocka_unit_test(test_jobs_free_drops_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
