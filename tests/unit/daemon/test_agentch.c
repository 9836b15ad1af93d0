/* Unit tests for agentch.c, cgvd's end of the agent channel, against a fake
 * guest: a Unix socket server created by the test (standing in for the
 * socket QEMU listens on) whose fds live on the same event loop.
 *
 * Covered: HOST_HELLO out on connect, HELLO/HEARTBEAT in, frames split at
 * every byte, garbage and bad frames reported and skipped, EOF (frames
 * before it still delivered), reconnection and its backoff, disabling (also
 * from a callback), a full output buffer drained through EPOLLOUT, and the
 * per-wake-up read budget under a flood.
 *
 * The loop runs on a thread of its own, but only one thread is ever
 * active: the test hands the loop a condition and waits (run_until); the
 * loop thread runs until the condition holds or a deadline passes, then
 * parks in its prepare hook and hands control back. So the test body reads
 * and calls everything directly, and no cmocka assertion runs on the loop
 * thread (callbacks there record problems in cb_error instead). One
 * loop_run() per test: loop_quit() is final (loop.c never resets it).
 * Nothing sleeps: every wait is on a semaphore or the loop, with a
 * deadline. */
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
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_proto.h"
#include "agentch.h"
#include "cgv_log.h"
#include "loop.h"

#define GUARD_MS 6000
#define MAX_MSGS 8192

/* ------------------------------------------------------------------ */
/* the fake guest                                                      */

struct guest {
    struct loop *l;
    char path[108];
    int lfd;      /* listening socket, -1 when not listening */
    int cfd;      /* the accepted connection, -1 when none */
    bool reading; /* read what the host sends (else leave it in the socket) */
    bool close_on_accept;
    int accepts;
    int64_t accept_us[64];
    struct proto_reader rd;
    size_t n_got;
    int bad_got;
    struct proto_msg got[MAX_MSGS];
};

/* ---- what the host side saw ---- */

struct host {
    struct agentch *ch;
    struct guest *g;
    int connected, closed, bad, n_msgs;
    int64_t connected_us[64];
    int64_t closed_us;
    char last_bad[160], last_closed[128];
    struct proto_msg msgs[MAX_MSGS];
    int64_t msg_us[MAX_MSGS];
    bool send_hello;      /* send HOST_HELLO from connected() */
    bool disable_on_msg;  /* disable the channel on the first message */
    int closed_at_msgs;   /* n_msgs when closed() ran */
    size_t expect_got;    /* for p_guest_all */
};

struct test {
    struct loop *l;
    struct guest g;
    struct host h;
    char dir[64];
    /* the baton between the test and the loop thread */
    pthread_t thread;
    bool thread_up;
    sem_t go, parked;
    bool stop;
    bool (*pred)(struct test *t);
    int64_t deadline_us;
    bool timed_out;
    const char *cb_error; /* first problem seen on the loop thread */
    /* read budget */
    uint64_t last_bytes_in;
    uint64_t max_bytes_per_round;
};

static struct test *current; /* for callbacks that only have the guest */

static void cb_fail(const char *what)
{
    if (current && !current->cb_error)
        current->cb_error = what;
}

static void guest_io(struct loop *l, int fd, uint32_t events, void *opaque);

static void guest_drop(struct guest *g)
{
    if (g->cfd >= 0) {
        loop_del_fd(g->l, g->cfd);
        close(g->cfd);
        g->cfd = -1;
    }
}

static void guest_accept(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct guest *g = opaque;
    int c;

    (void)events;
    c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    if (g->accepts < 64)
        g->accept_us[g->accepts] = cgv_mono_us();
    g->accepts++;
    if (g->close_on_accept) {
        close(c);
        return;
    }
    guest_drop(g); /* one connection at a time, like QEMU */
    g->cfd = c;
    proto_reader_init(&g->rd);
    if (loop_add_fd(l, c, g->reading ? EPOLLIN : 0, guest_io, g, NULL) != 0)
        cb_fail("guest: loop_add_fd of the accepted socket failed");
}

static bool guest_listen_raw(struct guest *g)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    g->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g->lfd < 0)
        return false;
    unlink(g->path);
    strcpy(sa.sun_path, g->path);
    return bind(g->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(g->lfd, 8) == 0 &&
           loop_add_fd(g->l, g->lfd, EPOLLIN, guest_accept, g, NULL) == 0;
}

static void guest_listen(struct guest *g)
{
    assert_true(guest_listen_raw(g));
}

static void guest_unlisten(struct guest *g)
{
    if (g->lfd >= 0) {
        loop_del_fd(g->l, g->lfd);
        close(g->lfd);
        g->lfd = -1;
    }
    unlink(g->path);
}

static void guest_io(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct guest *g = opaque;
    struct proto_msg m;
    char why[160];

    (void)l;
    (void)events;
    for (;;) {
        ssize_t r = recv(fd, proto_reader_tail(&g->rd), proto_reader_space(&g->rd), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0 || errno != EAGAIN)
                guest_drop(g);
            return;
        }
        proto_reader_commit(&g->rd, (size_t)r);
        for (;;) {
            enum proto_next rc = proto_reader_next(&g->rd, &m, why, sizeof(why));
            if (rc == PROTO_NEED_MORE)
                break;
            if (rc == PROTO_BAD)
                g->bad_got++;
            else if (g->n_got < MAX_MSGS)
                g->got[g->n_got++] = m;
        }
    }
}

static void guest_start_reading(struct guest *g)
{
    g->reading = true;
    if (g->cfd >= 0)
        assert_int_equal(loop_mod_fd(g->l, g->cfd, EPOLLIN), 0);
}

/* Write it all; false on failure. Small writes only: the socket has room. */
static bool guest_write_raw(struct guest *g, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (g->cfd < 0)
        return false;
    while (len > 0) {
        ssize_t w = send(g->cfd, p, len, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static void guest_write(struct guest *g, const void *buf, size_t len)
{
    assert_true(guest_write_raw(g, buf, len));
}

static size_t frame(const struct proto_msg *m, uint8_t *buf, size_t cap)
{
    int n = proto_encode(m, buf, cap);

    assert_true(n >= PROTO_HDR_LEN);
    return (size_t)n;
}

static struct proto_msg heartbeat(uint64_t seq)
{
    struct proto_msg m = {.type = PROTO_HEARTBEAT};

    m.u.heartbeat.seq = seq;
    m.u.heartbeat.uptime_ms = 1000 + seq;
    m.u.heartbeat.app_served = seq * 2;
    return m;
}

static struct proto_msg hello(void)
{
    struct proto_msg m = {.type = PROTO_HELLO};

    m.u.hello.version = PROTO_VERSION;
    strcpy(m.u.hello.agent_version, "0.1.0");
    strcpy(m.u.hello.vm_name, "demo-0");
    m.u.hello.boot_id = 0x1122334455667788ULL;
    m.u.hello.uptime_ms = 1234;
    return m;
}

static size_t guest_send_msg(struct guest *g, const struct proto_msg *m)
{
    uint8_t buf[PROTO_MAX_FRAME];
    size_t n = frame(m, buf, sizeof(buf));

    guest_write(g, buf, n);
    return n;
}

/* ---- host callbacks ---- */

static void h_connected(void *opaque)
{
    struct host *h = opaque;

    if (h->connected < 64)
        h->connected_us[h->connected] = cgv_mono_us();
    h->connected++;
    if (!agentch_connected(h->ch))
        cb_fail("connected() while agentch_connected() is false");
    if (h->send_hello) {
        struct proto_msg m = {.type = PROTO_HOST_HELLO};
        m.u.host_hello.version = PROTO_VERSION;
        m.u.host_hello.heartbeat_ms = 250;
        strcpy(m.u.host_hello.vm_name, "demo-0");
        if (agentch_send(h->ch, &m) != 0)
            cb_fail("agentch_send(HOST_HELLO) failed in connected()");
    }
}

static void h_message(void *opaque, const struct proto_msg *m, int64_t mono_us)
{
    struct host *h = opaque;

    if (h->n_msgs < MAX_MSGS) {
        h->msgs[h->n_msgs] = *m;
        h->msg_us[h->n_msgs] = mono_us;
    }
    h->n_msgs++;
    if (h->disable_on_msg)
        agentch_enable(h->ch, false);
}

static void h_bad(void *opaque, const char *why)
{
    struct host *h = opaque;

    h->bad++;
    snprintf(h->last_bad, sizeof(h->last_bad), "%s", why);
}

static void h_closed(void *opaque, const char *why)
{
    struct host *h = opaque;

    h->closed++;
    h->closed_us = cgv_mono_us();
    h->closed_at_msgs = h->n_msgs;
    snprintf(h->last_closed, sizeof(h->last_closed), "%s", why);
}

static const struct agentch_ops ops = {
    .connected = h_connected,
    .message = h_message,
    .bad = h_bad,
    .closed = h_closed,
};

/* ---- running the loop ---- */

static int64_t on_prepare(struct loop *l, void *opaque)
{
    struct test *t = opaque;
    int64_t now;

    if (t->h.ch) {
        uint64_t b = agentch_bytes_in(t->h.ch);
        if (b - t->last_bytes_in > t->max_bytes_per_round)
            t->max_bytes_per_round = b - t->last_bytes_in;
        t->last_bytes_in = b;
    }
    now = cgv_mono_us();
    if (!t->pred || t->pred(t) || now >= t->deadline_us) {
        /* Done (or out of time): park and hand control to the test. */
        t->timed_out = t->pred && !t->pred(t);
        t->pred = NULL;
        sem_post(&t->parked);
        sem_wait(&t->go);
        if (t->stop) {
            loop_quit(l);
            return 0;
        }
        if (t->h.ch)
            t->last_bytes_in = agentch_bytes_in(t->h.ch);
        /* The test may have added timers while the loop was parked, after
         * loop_run() looked at its timers for this round: do not sleep now,
         * come round again and look. */
        return 0;
    }
    return t->deadline_us > now ? (t->deadline_us - now + 999) / 1000 : 0;
}

static void *loop_thread(void *arg)
{
    struct test *t = arg;

    loop_run(t->l);
    return NULL;
}

static bool sem_wait_ms(sem_t *s, int64_t ms)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    while (sem_timedwait(s, &dl) != 0) {
        if (errno != EINTR)
            return false;
    }
    return true;
}

/* Hand the loop the condition; get control back when it holds or after
 * guard_ms. Returns whether it held. */
static bool run_loop(struct test *t, bool (*pred)(struct test *), int guard_ms)
{
    t->pred = pred;
    t->deadline_us = cgv_mono_us() + (int64_t)guard_ms * 1000;
    t->timed_out = false;
    sem_post(&t->go);
    if (!sem_wait_ms(&t->parked, guard_ms + 5000)) {
        /* The loop thread is stuck in a callback: leave it be. */
        t->thread_up = false;
        print_error("the loop thread did not come back\n");
        fail();
    }
    if (t->cb_error) {
        print_error("on the loop thread: %s\n", t->cb_error);
        fail();
    }
    return !t->timed_out;
}

static void run_until(struct test *t, bool (*pred)(struct test *), int guard_ms)
{
    if (pred(t))
        return;
    if (!run_loop(t, pred, guard_ms)) {
        print_error("condition not reached within %d ms (connected %d closed %d bad %d "
                    "msgs %d accepts %d guest got %zu)\n",
                    guard_ms, t->h.connected, t->h.closed, t->h.bad, t->h.n_msgs,
                    t->g.accepts, t->g.n_got);
        fail();
    }
}

/* Let the loop run for ms, whatever happens. */
static bool never(struct test *t)
{
    (void)t;
    return false;
}

static void run_for(struct test *t, int ms)
{
    assert_false(run_loop(t, never, ms));
}

static int setup(void **state)
{
    struct test *t = calloc(1, sizeof(*t));
    struct cgv_error err = {0};

    if (!t)
        return -1;
    strcpy(t->dir, "/tmp/cgvut-agentch-XXXXXX");
    if (!mkdtemp(t->dir) || loop_new(&t->l, &err) != 0)
        return -1;
    loop_set_prepare(t->l, on_prepare, NULL, t);
    t->g.l = t->l;
    t->g.lfd = t->g.cfd = -1;
    t->g.reading = true;
    snprintf(t->g.path, sizeof(t->g.path), "%s/agent.sock", t->dir);
    t->h.g = &t->g;
    t->h.send_hello = true;
    t->h.ch = agentch_new(t->l, t->g.path, &ops, &t->h);
    sem_init(&t->go, 0, 0);
    sem_init(&t->parked, 0, 0);
    current = t;
    if (pthread_create(&t->thread, NULL, loop_thread, t) != 0)
        return -1;
    t->thread_up = true;
    /* The loop thread parks in its first prepare. */
    if (!sem_wait_ms(&t->parked, 5000))
        return -1;
    *state = t;
    return t->h.ch ? 0 : -1;
}

static int teardown(void **state)
{
    struct test *t = *state;

    if (!t->thread_up)
        return 0; /* stuck: leak rather than race */
    t->stop = true;
    sem_post(&t->go);
    pthread_join(t->thread, NULL);
    current = NULL;
    agentch_free(t->h.ch);
    guest_drop(&t->g);
    guest_unlisten(&t->g);
    loop_free(t->l);
    rmdir(t->dir);
    sem_destroy(&t->go);
    sem_destroy(&t->parked);
    free(t);
    return 0;
}

/* ---- predicates ---- */

static bool p_guest_conn(struct test *t) { return t->g.cfd >= 0; }
static bool p_guest_got1(struct test *t) { return t->g.n_got >= 1; }
static bool p_msgs4(struct test *t) { return t->h.n_msgs >= 4; }
static bool p_msgs1(struct test *t) { return t->h.n_msgs >= 1; }
static bool p_closed1(struct test *t) { return t->h.closed >= 1; }
static bool p_connected2(struct test *t) { return t->h.connected >= 2 && t->g.cfd >= 0; }
static bool p_connected1(struct test *t) { return t->h.connected >= 1; }
static bool p_guest_eof(struct test *t) { return t->g.cfd < 0 && t->g.accepts >= 1; }

/* Listen, enable, and wait for the guest to hold the connection. */
static void connect_guest(struct test *t)
{
    guest_listen(&t->g);
    agentch_enable(t->h.ch, true);
    /* Connecting to a listening Unix socket succeeds at once. */
    assert_int_equal(t->h.connected, 1);
    assert_true(agentch_connected(t->h.ch));
    run_until(t, p_guest_conn, GUARD_MS);
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_hello_heartbeat(void **state)
{
    struct test *t = *state;
    struct proto_msg hl = hello();
    size_t sent = 0;
    uint8_t buf[4 * PROTO_MAX_FRAME];
    size_t n = 0;

    connect_guest(t);
    /* HOST_HELLO arrives at the guest. */
    run_until(t, p_guest_got1, GUARD_MS);
    assert_int_equal(t->g.got[0].type, PROTO_HOST_HELLO);
    assert_int_equal(t->g.got[0].u.host_hello.version, PROTO_VERSION);
    assert_int_equal(t->g.got[0].u.host_hello.heartbeat_ms, 250);
    assert_string_equal(t->g.got[0].u.host_hello.vm_name, "demo-0");
    assert_int_equal(t->g.bad_got, 0);

    /* HELLO and three heartbeats in one write. */
    n += frame(&hl, buf + n, sizeof(buf) - n);
    for (uint64_t s = 1; s <= 3; s++) {
        struct proto_msg hb = heartbeat(s);
        n += frame(&hb, buf + n, sizeof(buf) - n);
    }
    guest_write(&t->g, buf, n);
    sent += n;
    run_until(t, p_msgs4, GUARD_MS);
    assert_int_equal(t->h.n_msgs, 4);
    assert_int_equal(t->h.bad, 0);
    assert_int_equal(t->h.msgs[0].type, PROTO_HELLO);
    assert_memory_equal(&t->h.msgs[0].u.hello, &hl.u.hello, sizeof(hl.u.hello));
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(t->h.msgs[i].type, PROTO_HEARTBEAT);
        assert_int_equal(t->h.msgs[i].u.heartbeat.seq, (uint64_t)i);
        assert_int_equal(t->h.msgs[i].u.heartbeat.app_served, (uint64_t)i * 2);
        assert_true(t->h.msg_us[i] >= t->h.msg_us[i - 1]);
        assert_true(t->h.msg_us[i] > 0 && t->h.msg_us[i] <= cgv_mono_us());
    }
    assert_int_equal(agentch_bytes_in(t->h.ch), sent);
    assert_int_equal(t->h.closed, 0);
}

/* Each byte on its own: one message, nothing bad. */
struct dribble {
    struct test *t;
    uint8_t buf[PROTO_MAX_FRAME * 2];
    size_t len, off;
};

static void on_dribble(struct loop *l, void *opaque)
{
    struct dribble *d = opaque;

    if (!guest_write_raw(&d->t->g, d->buf + d->off, 1))
        cb_fail("dribble: write failed");
    if (++d->off < d->len)
        loop_timer_add(l, 0, on_dribble, d);
}

static bool p_msgs2(struct test *t) { return t->h.n_msgs >= 2; }

static void test_split_frames(void **state)
{
    struct test *t = *state;
    struct dribble d = {.t = t};
    struct proto_msg hl = hello(), hb = heartbeat(77);

    connect_guest(t);
    d.len = frame(&hl, d.buf, sizeof(d.buf));
    d.len += frame(&hb, d.buf + d.len, sizeof(d.buf) - d.len);
    loop_timer_add(t->l, 0, on_dribble, &d);
    run_until(t, p_msgs2, GUARD_MS);
    assert_int_equal(d.off, d.len);
    assert_int_equal(t->h.n_msgs, 2);
    assert_int_equal(t->h.bad, 0);
    assert_int_equal(t->h.msgs[0].type, PROTO_HELLO);
    assert_string_equal(t->h.msgs[0].u.hello.vm_name, "demo-0");
    assert_int_equal(t->h.msgs[1].u.heartbeat.seq, 77);
}

static bool p_msgs_hb_last(struct test *t)
{
    return t->h.n_msgs >= 1 && t->h.msgs[t->h.n_msgs - 1].type == PROTO_HEARTBEAT &&
           t->h.msgs[t->h.n_msgs - 1].u.heartbeat.seq == 4242;
}

/* Garbage of every kind is reported and skipped; the good frame after it
 * still arrives, and the channel stays up. */
static void test_garbage(void **state)
{
    struct test *t = *state;
    uint8_t buf[8192];
    size_t n = 0;
    struct proto_msg hb = heartbeat(4242), hl = hello();
    size_t at;

    connect_guest(t);
    /* plain noise, with stray magic bytes in it */
    memcpy(buf + n, "GET / HTTP/1.1\r\n\xc6\xc6\x76", 19);
    n += 19;
    buf[n++] = 0x00; /* ...completes a header with version 0 */
    buf[n++] = 2;
    memset(buf + n, 0, 4);
    n += 4;
    /* a frame of an unsupported version */
    at = n;
    n += frame(&hb, buf + n, sizeof(buf) - n);
    buf[at + 2] = 9;
    /* a header announcing more than PROTO_MAX_PAYLOAD */
    buf[n++] = PROTO_MAGIC0;
    buf[n++] = PROTO_MAGIC1;
    buf[n++] = PROTO_VERSION;
    buf[n++] = PROTO_HEARTBEAT;
    buf[n++] = 0xff;
    buf[n++] = 0xff;
    buf[n++] = 0xff;
    buf[n++] = 0xff;
    /* an unknown type */
    at = n;
    n += frame(&hb, buf + n, sizeof(buf) - n);
    buf[at + 3] = 99;
    /* a HELLO with a non-printable string */
    at = n;
    n += frame(&hl, buf + n, sizeof(buf) - n);
    buf[at + PROTO_HDR_LEN + 2 + 2] = 0x07;
    /* a HEARTBEAT cut short (length says 4) */
    buf[n++] = PROTO_MAGIC0;
    buf[n++] = PROTO_MAGIC1;
    buf[n++] = PROTO_VERSION;
    buf[n++] = PROTO_HEARTBEAT;
    buf[n++] = 0;
    buf[n++] = 0;
    buf[n++] = 0;
    buf[n++] = 4;
    memset(buf + n, 0xab, 4);
    n += 4;
    /* and at last a good one */
    n += frame(&hb, buf + n, sizeof(buf) - n);
    guest_write(&t->g, buf, n);
    run_until(t, p_msgs_hb_last, GUARD_MS);
    assert_int_equal(t->h.n_msgs, 1);
    assert_true(t->h.bad >= 5);
    assert_true(t->h.last_bad[0] != '\0');
    assert_true(agentch_connected(t->h.ch));
    assert_int_equal(t->h.closed, 0);
    assert_int_equal(agentch_bytes_in(t->h.ch), n);
}

/* The guest goes away: frames it sent first are still delivered, then
 * closed(); the channel reconnects on its own, not sooner than the minimum
 * backoff, and says HOST_HELLO again. */
static void test_eof_and_reconnect(void **state)
{
    struct test *t = *state;
    struct proto_msg hb = heartbeat(9);

    connect_guest(t);
    /* Read HOST_HELLO first: closing with unread data would be a reset. */
    run_until(t, p_guest_got1, GUARD_MS);
    guest_send_msg(&t->g, &hb);
    guest_drop(&t->g);
    run_until(t, p_closed1, GUARD_MS);
    assert_int_equal(t->h.n_msgs, 1);
    assert_int_equal(t->h.closed_at_msgs, 1);
    assert_string_equal(t->h.last_closed, "end of file");
    assert_false(agentch_connected(t->h.ch));
    assert_int_equal(agentch_send(t->h.ch, &hb), -1);

    t->g.n_got = 0;
    run_until(t, p_connected2, GUARD_MS);
    assert_true(t->h.connected_us[1] - t->h.closed_us >= 50 * 1000);
    run_until(t, p_guest_got1, GUARD_MS);
    assert_int_equal(t->g.got[0].type, PROTO_HOST_HELLO);
}

/* The guest closes with our HOST_HELLO unread: a reset, not an EOF; the
 * channel is lost all the same and comes back. */
static void test_reset_and_reconnect(void **state)
{
    struct test *t = *state;

    t->g.reading = false;
    connect_guest(t);
    guest_drop(&t->g);
    run_until(t, p_closed1, GUARD_MS);
    assert_false(agentch_connected(t->h.ch));
    assert_true(t->h.last_closed[0] != '\0');
    run_until(t, p_connected2, GUARD_MS);
    assert_int_equal(t->h.closed, 1);
}

/* A guest end that accepts and hangs up at once: the channel keeps
 * reconnecting, never faster than the minimum backoff (no busy loop). */
static bool p_accepts6(struct test *t) { return t->g.accepts >= 6; }

static void test_flapping_peer(void **state)
{
    struct test *t = *state;

    t->g.close_on_accept = true;
    guest_listen(&t->g);
    agentch_enable(t->h.ch, true);
    run_until(t, p_accepts6, GUARD_MS);
    for (int i = 1; i < 6; i++) {
        int64_t gap_us = t->g.accept_us[i] - t->g.accept_us[i - 1];
        if (gap_us < 50 * 1000) {
            print_error("reconnect %d came %lld us after the previous one\n", i,
                        (long long)gap_us);
            fail();
        }
    }
    assert_true(t->h.closed >= 5);
    print_message("flapping peer: %d connects, last gap %lld ms\n", t->g.accepts,
                  (long long)((t->g.accept_us[5] - t->g.accept_us[4]) / 1000));
}

/* Nobody listening: retries back off (50 ms doubling to 1 s). The listener
 * appears 1.6 s after enabling; attempts were at about 0, 50, 150, 350, 750,
 * 1550 and 2550 ms, so the connection comes with the 2550 ms attempt: well
 * after the listener appeared (backoff grew), within a second of it (it
 * stops at 1 s). */
static int64_t listen_at_us;

static void on_listen(struct loop *l, void *opaque)
{
    struct test *t = opaque;

    (void)l;
    if (!guest_listen_raw(&t->g))
        cb_fail("listen failed");
    listen_at_us = cgv_mono_us();
}

static void test_backoff(void **state)
{
    struct test *t = *state;
    int64_t t0 = cgv_mono_us(), waited_ms;

    agentch_enable(t->h.ch, true);
    assert_int_equal(t->h.connected, 0);
    assert_false(agentch_connected(t->h.ch));
    loop_timer_add(t->l, 1600, on_listen, t);
    run_until(t, p_connected1, GUARD_MS);
    waited_ms = (t->h.connected_us[0] - listen_at_us) / 1000;
    print_message("listener after %lld ms, connected %lld ms later\n",
                  (long long)((listen_at_us - t0) / 1000), (long long)waited_ms);
    assert_true(waited_ms >= 300);
    assert_true(waited_ms <= 1100);
    assert_int_equal(t->h.closed, 0); /* failed connects are not "closed" */
}

/* Disabled: the connection is closed (the guest sees EOF), closed() is not
 * called and nothing reconnects; enabling connects again at once. */
static void test_disable(void **state)
{
    struct test *t = *state;

    connect_guest(t);
    agentch_enable(t->h.ch, false);
    agentch_enable(t->h.ch, false); /* twice: no-op */
    assert_false(agentch_connected(t->h.ch));
    run_until(t, p_guest_eof, GUARD_MS);
    run_for(t, 200);
    assert_int_equal(t->g.accepts, 1);
    assert_int_equal(t->h.closed, 0);
    agentch_enable(t->h.ch, true);
    assert_int_equal(t->h.connected, 2);
    run_until(t, p_guest_conn, GUARD_MS);
    assert_int_equal(t->g.accepts, 2);
}

/* A message callback disabling the channel: the frames behind it in the
 * same read are not delivered, and nothing reconnects. */
static void test_disable_in_callback(void **state)
{
    struct test *t = *state;
    uint8_t buf[3 * 64];
    size_t n = 0;

    connect_guest(t);
    t->h.disable_on_msg = true;
    for (uint64_t s = 1; s <= 3; s++) {
        struct proto_msg hb = heartbeat(s);
        n += frame(&hb, buf + n, sizeof(buf) - n);
    }
    guest_write(&t->g, buf, n);
    run_until(t, p_msgs1, GUARD_MS);
    run_for(t, 150);
    assert_int_equal(t->h.n_msgs, 1);
    assert_false(agentch_connected(t->h.ch));
    assert_int_equal(t->g.accepts, 1);
}

/* A guest that does not read: sends fail once the output buffer is full;
 * when it reads again everything queued arrives, in order. */
static bool p_guest_all(struct test *t)
{
    return t->g.n_got >= t->h.expect_got;
}

static void test_output_full(void **state)
{
    struct test *t = *state;
    struct proto_msg ping = {.type = PROTO_PING};
    int sent = 0;

    t->h.send_hello = false;
    t->g.reading = false;
    connect_guest(t);
    for (;;) {
        ping.u.ping.seq = (uint64_t)sent;
        ping.u.ping.host_ts_us = (uint64_t)sent * 3;
        if (agentch_send(t->h.ch, &ping) != 0)
            break;
        sent++;
        assert_true(sent < MAX_MSGS * 64);
    }
    print_message("%d PINGs queued before the buffer was full\n", sent);
    assert_true(sent > 0);
    assert_true(agentch_connected(t->h.ch));
    if (sent >= MAX_MSGS) {
        print_message("skipped: the socket buffer holds more than %d frames\n", MAX_MSGS);
        skip();
    }
    t->h.expect_got = (size_t)sent;
    guest_start_reading(&t->g);
    run_until(t, p_guest_all, GUARD_MS);
    assert_int_equal(t->g.n_got, (size_t)sent);
    assert_int_equal(t->g.bad_got, 0);
    for (int i = 0; i < sent; i++) {
        assert_int_equal(t->g.got[i].type, PROTO_PING);
        assert_int_equal(t->g.got[i].u.ping.seq, (uint64_t)i);
    }
    /* Drained: sending works again. */
    assert_int_equal(agentch_send(t->h.ch, &ping), 0);
}

/* A flooding guest: the host reads at most its budget (64 KiB) per wake-up
 * and gets every frame. The flood comes from a thread with blocking
 * writes. */
#define FLOOD_FRAMES 40000

struct flood {
    int fd;
    size_t bytes;
};

static void *flood_thread(void *arg)
{
    struct flood *f = arg;
    uint8_t buf[64 * 1024];
    size_t n = 0;

    for (uint64_t s = 0; s < FLOOD_FRAMES; s++) {
        struct proto_msg hb = heartbeat(s);
        int k = proto_encode(&hb, buf + n, sizeof(buf) - n);
        if (k < 0) {
            if (send(f->fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
                return NULL;
            f->bytes += n;
            n = 0;
            k = proto_encode(&hb, buf, sizeof(buf));
        }
        n += (size_t)k;
    }
    if (send(f->fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n)
        f->bytes += n;
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void test_flood_budget(void **state)
{
    struct test *t = *state;
    struct flood f;
    pthread_t th;
    int fl;

    connect_guest(t);
    /* Hand the accepted fd to the thread, blocking. */
    loop_del_fd(t->l, t->g.cfd);
    f.fd = t->g.cfd;
    f.bytes = 0;
    t->g.cfd = -1;
    fl = fcntl(f.fd, F_GETFL);
    assert_int_equal(fcntl(f.fd, F_SETFL, fl & ~O_NONBLOCK), 0);
    t->last_bytes_in = agentch_bytes_in(t->h.ch);
    t->max_bytes_per_round = 0;
    assert_int_equal(pthread_create(&th, NULL, flood_thread, &f), 0);
    run_until(t, p_closed1, GUARD_MS);
    pthread_join(th, NULL);
    close(f.fd);
    print_message("flood: %zu bytes, at most %llu read in one round\n", f.bytes,
                  (unsigned long long)t->max_bytes_per_round);
    assert_int_equal(agentch_bytes_in(t->h.ch), f.bytes);
    assert_int_equal(t->h.n_msgs, FLOOD_FRAMES);
    /* The last ones stored are in order. */
    for (int i = 1; i < MAX_MSGS; i++)
        assert_int_equal(t->h.msgs[i].u.heartbeat.seq, (uint64_t)i);
    assert_int_equal(t->h.bad, 0);
    assert_true(t->max_bytes_per_round <= 64 * 1024);
    assert_true(t->max_bytes_per_round > 0);
}

/* Sending while not connected fails; so does a message that cannot be
 * encoded. */
static void test_send_refused(void **state)
{
    struct test *t = *state;
    struct proto_msg bad = {.type = (enum proto_type)77};
    struct proto_msg ping = {.type = PROTO_PING};

    assert_int_equal(agentch_send(t->h.ch, &ping), -1);
    connect_guest(t);
    assert_int_equal(agentch_send(t->h.ch, &bad), -1);
    assert_int_equal(agentch_send(t->h.ch, &ping), 0);
    assert_true(agentch_connected(t->h.ch));
}

/* Freed while a retry is pending: the retry timer goes with it (ASan would
 * see the timer run on freed memory). */
static void test_free_with_retry_pending(void **state)
{
    struct test *t = *state;

    agentch_enable(t->h.ch, true); /* nobody listens: a retry is scheduled */
    assert_false(agentch_connected(t->h.ch));
    agentch_free(t->h.ch);
    t->h.ch = NULL;
    run_for(t, 120);
    assert_int_equal(t->h.connected, 0);
}

/* A path longer than sun_path: never connects, never crashes. */
static void test_path_too_long(void **state)
{
    struct test *t = *state;
    char path[300];
    struct agentch *ch;

    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    ch = agentch_new(t->l, path, &ops, &t->h);
    agentch_enable(ch, true);
    run_for(t, 60);
    assert_false(agentch_connected(ch));
    assert_int_equal(t->h.connected, 0);
    agentch_free(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flapping_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disable_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flood_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_retry_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
