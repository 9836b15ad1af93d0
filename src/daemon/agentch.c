/* agentch.c — see agentch.h */
#include "agentch.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "agentch"
#define AGENTCH_OUT_MAX 8192
#define AGENTCH_READ_BUDGET (64 * 1024)
#define AGENTCH_RETRY_MIN_MS 50
#define AGENTCH_RETRY_MAX_MS 1000

struct agentch {
    struct loop *loop;
    char *path;
    const struct agentch_ops *ops;
    void *opaque;
    bool enabled;
    int fd;
    struct loop_timer *retry;
    int64_t retry_ms;
    struct proto_reader reader;
    uint8_t out[AGENTCH_OUT_MAX];
    size_t out_len;
    uint64_t bytes_in;
};

static void ch_try_connect(struct agentch *ch);

static void ch_close(struct agentch *ch)
{
    if (ch->fd >= 0) {
        loop_del_fd(ch->loop, ch->fd);
        close(ch->fd);
        ch->fd = -1;
    }
    ch->out_len = 0;
    proto_reader_init(&ch->reader);
}

static void on_retry(struct loop *l, void *opaque)
{
    struct agentch *ch = opaque;

    (void)l;
    ch->retry = NULL;
    ch_try_connect(ch);
}

static void ch_schedule_retry(struct agentch *ch)
{
    if (!ch->enabled || ch->retry)
        return;
    ch->retry = loop_timer_add(ch->loop, ch->retry_ms, on_retry, ch);
    ch->retry_ms = ch->retry_ms * 2 > AGENTCH_RETRY_MAX_MS ? AGENTCH_RETRY_MAX_MS
                                                          : ch->retry_ms * 2;
}

static void ch_lost(struct agentch *ch, const char *why)
{
    ch_close(ch);
    if (ch->ops->closed)
        ch->ops->closed(ch->opaque, why);
    ch->retry_ms = AGENTCH_RETRY_MIN_MS;
    ch_schedule_retry(ch);
}

static void ch_flush(struct agentch *ch)
{
    while (ch->fd >= 0 && ch->out_len > 0) {
        ssize_t w = send(ch->fd, ch->out, ch->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            ch_lost(ch, strerror(errno));
            return;
        }
        memmove(ch->out, ch->out + w, ch->out_len - (size_t)w);
        ch->out_len -= (size_t)w;
    }
    if (ch->fd >= 0)
        loop_mod_fd(ch->loop, ch->fd, EPOLLIN | (ch->out_len ? EPOLLOUT : 0));
}

static void ch_dispatch(struct agentch *ch, int64_t now_us)
{
    struct proto_msg m;
    char why[160];

    while (ch->fd >= 0) {
        enum proto_next rc = proto_reader_next(&ch->reader, &m, why, sizeof(why));
        if (rc == PROTO_NEED_MORE)
            break;
        if (rc == PROTO_BAD) {
            if (ch->ops->bad)
                ch->ops->bad(ch->opaque, why);
            continue;
        }
        if (ch->ops->message)
            ch->ops->message(ch->opaque, &m, now_us);
    }
}

static void on_io(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct agentch *ch = opaque;
    size_t budget = AGENTCH_READ_BUDGET;

    (void)l;
    (void)fd;
    if (events & EPOLLOUT)
        ch_flush(ch);
    if (ch->fd < 0)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        while (budget > 0 && ch->fd >= 0) {
            size_t space = proto_reader_space(&ch->reader);
            ssize_t r;
            if (space > budget)
                space = budget;
            r = recv(ch->fd, proto_reader_tail(&ch->reader), space, MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                ch_lost(ch, strerror(errno));
                return;
            }
            if (r == 0) {
                ch_dispatch(ch, cgv_mono_us());
                ch_lost(ch, "end of file");
                return;
            }
            ch->bytes_in += (uint64_t)r;
            budget -= (size_t)r;
            proto_reader_commit(&ch->reader, (size_t)r);
            ch_dispatch(ch, cgv_mono_us());
        }
    }
}

static void ch_try_connect(struct agentch *ch)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (!ch->enabled || ch->fd >= 0)
        return;
    if (cgv_strlcpy(sa.sun_path, ch->path, sizeof(sa.sun_path)) < 0) {
        log_error("agent socket path too long: %s", ch->path);
        return;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("socket: %s", strerror(errno));
        ch_schedule_retry(ch);
        return;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        log_debug("connect %s: %s", ch->path, strerror(errno));
        close(fd);
        ch_schedule_retry(ch);
        return;
    }
    if (loop_add_fd(ch->loop, fd, EPOLLIN, on_io, ch, NULL) < 0) {
        close(fd);
        ch_schedule_retry(ch);
        return;
    }
    ch->fd = fd;
    ch->retry_ms = AGENTCH_RETRY_MIN_MS;
    proto_reader_init(&ch->reader);
    if (ch->ops->connected)
        ch->ops->connected(ch->opaque);
}

struct agentch *agentch_new(struct loop *l, const char *path,
                            const struct agentch_ops *ops, void *opaque)
{
    struct agentch *ch = cgv_malloc0(sizeof(*ch));

    ch->loop = l;
    ch->path = cgv_strdup(path);
    ch->ops = ops;
    ch->opaque = opaque;
    ch->fd = -1;
    ch->retry_ms = AGENTCH_RETRY_MIN_MS;
    proto_reader_init(&ch->reader);
    return ch;
}

void agentch_free(struct agentch *ch)
{
    if (!ch)
        return;
    agentch_enable(ch, false);
    free(ch->path);
    free(ch);
}

void agentch_enable(struct agentch *ch, bool on)
{
    if (on == ch->enabled)
        return;
    ch->enabled = on;
    if (on) {
        ch->retry_ms = AGENTCH_RETRY_MIN_MS;
        ch_try_connect(ch);
    } else {
        if (ch->retry) {
            loop_timer_cancel(ch->loop, ch->retry);
            ch->retry = NULL;
        }
        ch_close(ch);
    }
}

bool agentch_connected(const struct agentch *ch)
{
    return ch->fd >= 0;
}

int agentch_send(struct agentch *ch, const struct proto_msg *m)
{
    int n;

    if (ch->fd < 0)
        return -1;
    n = proto_encode(m, ch->out + ch->out_len, sizeof(ch->out) - ch->out_len);
    if (n < 0)
        return -1;
    ch->out_len += (size_t)n;
    ch_flush(ch);
    return 0;
}

uint64_t agentch_bytes_in(const struct agentch *ch)
{
    return ch->bytes_in;
}
