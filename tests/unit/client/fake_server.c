/* fake_server.c — see fake_server.h */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_server.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct fake_req {
    bool seen;
    char uri[2048];
    char *body;
    size_t len;
};

static void *fake_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct fake_req *req = calloc(1, sizeof(*req));

    (void)cls;
    (void)conn;
    if (req)
        snprintf(req->uri, sizeof(req->uri), "%s", uri);
    return req;
}

static void fake_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct fake_req *req = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (req) {
        free(req->body);
        free(req);
    }
    *con_cls = NULL;
}

static void fake_notify_conn(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                             enum MHD_ConnectionNotificationCode toe)
{
    struct fake_server *fs = cls;

    (void)conn;
    (void)socket_ctx;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&fs->lock);
        fs->connections++;
        pthread_mutex_unlock(&fs->lock);
    }
}

struct big_state {
    size_t left;
};

static ssize_t fake_big_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct big_state *st = cls;
    size_t n = st->left < max ? st->left : max;

    (void)pos;
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    memset(buf, 'x', n);
    st->left -= n;
    return (ssize_t)n;
}

static bool fake_route_match(const struct fake_route *r, const char *method,
                             const char *path, size_t path_len)
{
    size_t rl = strlen(r->path);

    if (r->method[0] && strcmp(r->method, method) != 0)
        return false;
    if (rl > 0 && r->path[rl - 1] == '*')
        return path_len >= rl - 1 && strncmp(path, r->path, rl - 1) == 0;
    return rl == path_len && strncmp(path, r->path, rl) == 0;
}

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *conn,
                                    const char *url, const char *method,
                                    const char *version, const char *upload_data,
                                    size_t *upload_data_size, void **con_cls)
{
    struct fake_server *fs = cls;
    struct fake_req *req = *con_cls;
    struct MHD_Response *resp = NULL;
    const char *ctype;
    size_t path_len;
    int status = 404;
    enum MHD_Result ret;

    (void)url;
    (void)version;
    if (!req)
        return MHD_NO;
    if (!req->seen) {
        req->seen = true;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        req->body = realloc(req->body, req->len + *upload_data_size + 1);
        if (!req->body)
            return MHD_NO;
        memcpy(req->body + req->len, upload_data, *upload_data_size);
        req->len += *upload_data_size;
        req->body[req->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }

    ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    path_len = strcspn(req->uri, "?");
    pthread_mutex_lock(&fs->lock);
    fs->requests++;
    snprintf(fs->last_method, sizeof(fs->last_method), "%s", method);
    snprintf(fs->last_uri, sizeof(fs->last_uri), "%s", req->uri);
    snprintf(fs->last_ctype, sizeof(fs->last_ctype), "%s", ctype ? ctype : "");
    free(fs->last_body);
    fs->last_body = calloc(1, req->len + 1);
    if (fs->last_body && req->len)
        memcpy(fs->last_body, req->body, req->len);
    fs->last_body_len = req->len;
    for (size_t i = 0; i < fs->n_routes; i++) {
        const struct fake_route *r = &fs->routes[i];
        if (!fake_route_match(r, method, req->uri, path_len))
            continue;
        status = r->status;
        if (r->big_len > 0) {
            struct big_state *st = malloc(sizeof(*st));
            if (st) {
                st->left = r->big_len;
                resp = MHD_create_response_from_callback(
                    r->big_chunked ? MHD_SIZE_UNKNOWN : r->big_len, 65536,
                    fake_big_reader, st, free);
            }
        } else {
            resp = MHD_create_response_from_buffer(r->body_len, r->body,
                                                   MHD_RESPMEM_MUST_COPY);
        }
        if (resp)
            MHD_add_response_header(resp, "Content-Type", r->content_type);
        break;
    }
    pthread_mutex_unlock(&fs->lock);
    if (!resp) {
        static const char nf[] =
            "{\"error\": {\"code\": \"not-found\", \"message\": \"no route\"}}";
        resp = MHD_create_response_from_buffer(strlen(nf), (void *)nf,
                                               MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "application/json");
    }
    ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sun;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof(sun.sun_path));
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(fd, 64), 0);
    return fd;
}

void fake_server_start(struct fake_server *fs)
{
    int fd;

    memset(fs, 0, sizeof(*fs));
    pthread_mutex_init(&fs->lock, NULL);
    strcpy(fs->dir, "/tmp/cgv-client-test.XXXXXX");
    assert_non_null(mkdtemp(fs->dir));
    snprintf(fs->path, sizeof(fs->path), "%s/cgvd.sock", fs->dir);
    fd = listen_unix(fs->path);
    fs->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        fake_handler, fs, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_URI_LOG_CALLBACK,
        fake_uri_log, fs, MHD_OPTION_NOTIFY_COMPLETED, fake_completed, fs,
        MHD_OPTION_NOTIFY_CONNECTION, fake_notify_conn, fs,
        MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    assert_non_null(fs->mhd);
}

void fake_server_reset(struct fake_server *fs)
{
    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < fs->n_routes; i++)
        free(fs->routes[i].body);
    fs->n_routes = 0;
    fs->requests = 0;
    fs->last_method[0] = fs->last_uri[0] = fs->last_ctype[0] = '\0';
    free(fs->last_body);
    fs->last_body = NULL;
    fs->last_body_len = 0;
    pthread_mutex_unlock(&fs->lock);
}

void fake_server_stop(struct fake_server *fs)
{
    if (fs->mhd)
        MHD_stop_daemon(fs->mhd);
    fs->mhd = NULL;
    fake_server_reset(fs);
    unlink(fs->path);
    rmdir(fs->dir);
    pthread_mutex_destroy(&fs->lock);
}

static struct fake_route *fake_add(struct fake_server *fs, const char *method,
                                   const char *path, int status)
{
    struct fake_route *r;

    assert_true(fs->n_routes < FAKE_MAX_ROUTES);
    r = &fs->routes[fs->n_routes++];
    memset(r, 0, sizeof(*r));
    snprintf(r->method, sizeof(r->method), "%s", method ? method : "");
    snprintf(r->path, sizeof(r->path), "%s", path ? path : "*");
    r->status = status;
    return r;
}

void fake_server_route(struct fake_server *fs, const char *method, const char *path,
                       int status, const char *content_type, const char *body)
{
    struct fake_route *r;

    pthread_mutex_lock(&fs->lock);
    r = fake_add(fs, method, path, status);
    snprintf(r->content_type, sizeof(r->content_type), "%s",
             content_type ? content_type : "application/json");
    r->body_len = body ? strlen(body) : 0;
    r->body = strdup(body ? body : "");
    pthread_mutex_unlock(&fs->lock);
}

void fake_server_route_big(struct fake_server *fs, const char *method,
                           const char *path, size_t len, bool chunked)
{
    struct fake_route *r;

    pthread_mutex_lock(&fs->lock);
    r = fake_add(fs, method, path, 200);
    snprintf(r->content_type, sizeof(r->content_type), "application/json");
    r->big_len = len;
    r->big_chunked = chunked;
    pthread_mutex_unlock(&fs->lock);
}

void fake_server_last(struct fake_server *fs, char *method, size_t mcap, char *uri,
                      size_t ucap, char *ctype, size_t ccap, char *body, size_t bcap)
{
    pthread_mutex_lock(&fs->lock);
    if (method)
        snprintf(method, mcap, "%s", fs->last_method);
    if (uri)
        snprintf(uri, ucap, "%s", fs->last_uri);
    if (ctype)
        snprintf(ctype, ccap, "%s", fs->last_ctype);
    if (body)
        snprintf(body, bcap, "%s", fs->last_body ? fs->last_body : "");
    pthread_mutex_unlock(&fs->lock);
}

/* --- raw server ------------------------------------------------------------*/

static void *raw_server_main(void *arg)
{
    struct raw_server *rs = arg;
    char buf[4096];
    size_t used = 0;
    int c = accept4(rs->fd, NULL, NULL, SOCK_CLOEXEC);

    if (c < 0)
        return NULL;
    /* Read the request headers (the tests send no body to this server). */
    while (used < sizeof(buf) - 1) {
        ssize_t n = read(c, buf + used, sizeof(buf) - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        buf[used] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    if (rs->reply_len)
        (void)!send(c, rs->reply, rs->reply_len, MSG_NOSIGNAL);
    close(c);
    return NULL;
}

void raw_server_start(struct raw_server *rs, const char *path, const char *reply,
                      size_t reply_len)
{
    memset(rs, 0, sizeof(*rs));
    snprintf(rs->path, sizeof(rs->path), "%s", path);
    rs->fd = listen_unix(path);
    rs->reply = reply;
    rs->reply_len = reply_len;
    assert_int_equal(pthread_create(&rs->thread, NULL, raw_server_main, rs), 0);
}

void raw_server_stop(struct raw_server *rs)
{
    /* The thread has served its one connection by the time the test's
     * request returned; join it, then clean up. */
    pthread_join(rs->thread, NULL);
    close(rs->fd);
    unlink(rs->path);
}
