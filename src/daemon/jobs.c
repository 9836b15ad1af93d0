/* jobs.c — see jobs.h */
#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "jobs"

struct job {
    jobs_fn work, done;
    void *arg;
    struct job *next;
};

struct job_list {
    struct job *head, *tail;
};

struct jobs {
    struct loop *loop;
    int efd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job_list todo, finished;
    unsigned pending;
    bool stop;
    unsigned nthreads;
    pthread_t *threads;
};

static void list_push(struct job_list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct job *list_pop(struct job_list *l)
{
    struct job *j = l->head;

    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
    }
    return j;
}

static void *worker(void *arg)
{
    struct jobs *js = arg;
    sigset_t all;
    uint64_t one = 1;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&js->lock);
    for (;;) {
        struct job *j;
        while (!js->stop && !js->todo.head)
            pthread_cond_wait(&js->cond, &js->lock);
        if (js->stop)
            break;
        j = list_pop(&js->todo);
        pthread_mutex_unlock(&js->lock);
        if (j->work)
            j->work(j->arg);
        pthread_mutex_lock(&js->lock);
        list_push(&js->finished, j);
        if (write(js->efd, &one, sizeof(one)) < 0)
            log_warn("eventfd write: %s", strerror(errno));
    }
    pthread_mutex_unlock(&js->lock);
    return NULL;
}

static void on_finished(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct jobs *js = opaque;
    uint64_t cnt;
    struct job *j;

    (void)l;
    (void)events;
    if (read(fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_warn("eventfd read: %s", strerror(errno));
    for (;;) {
        pthread_mutex_lock(&js->lock);
        j = list_pop(&js->finished);
        if (j)
            js->pending--;
        pthread_mutex_unlock(&js->lock);
        if (!j)
            break;
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

int jobs_new(struct loop *l, unsigned nthreads, struct jobs **out, struct cgv_error *err)
{
    struct jobs *js = cgv_malloc0(sizeof(*js));

    js->loop = l;
    pthread_mutex_init(&js->lock, NULL);
    pthread_cond_init(&js->cond, NULL);
    js->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (js->efd < 0) {
        cgv_err(err, CGV_E_IO, "eventfd: %s", strerror(errno));
        goto error;
    }
    if (loop_add_fd(l, js->efd, EPOLLIN, on_finished, js, err) < 0)
        goto error;
    js->threads = cgv_malloc0(sizeof(pthread_t) * nthreads);
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&js->threads[i], NULL, worker, js) != 0) {
            cgv_err(err, CGV_E_INTERNAL, "cannot start worker thread %u", i);
            jobs_free(js);
            return -1;
        }
        js->nthreads++;
    }
    *out = js;
    return 0;

error:
    if (js->efd >= 0)
        close(js->efd);
    free(js);
    return -1;
}

void jobs_free(struct jobs *js)
{
    struct job *j;

    if (!js)
        return;
    pthread_mutex_lock(&js->lock);
    js->stop = true;
    pthread_cond_broadcast(&js->cond);
    pthread_mutex_unlock(&js->lock);
    for (unsigned i = 0; i < js->nthreads; i++)
        pthread_join(js->threads[i], NULL);
    while ((j = list_pop(&js->todo)))
        free(j);
    while ((j = list_pop(&js->finished)))
        free(j);
    loop_del_fd(js->loop, js->efd);
    close(js->efd);
    free(js->threads);
    pthread_mutex_destroy(&js->lock);
    pthread_cond_destroy(&js->cond);
    free(js);
}

void jobs_submit(struct jobs *js, jobs_fn work, jobs_fn done, void *arg)
{
    struct job *j = cgv_malloc0(sizeof(*j));

    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&js->lock);
    list_push(&js->todo, j);
    js->pending++;
    pthread_cond_signal(&js->cond);
    pthread_mutex_unlock(&js->lock);
}

unsigned jobs_pending(struct jobs *js)
{
    unsigned n;

    pthread_mutex_lock(&js->lock);
    n = js->pending;
    pthread_mutex_unlock(&js->lock);
    return n;
}
