/* api_server.c — see api_server.h and docs/API.md. */
#include "api_server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cgv_log.h"

#define LOG_MODULE "api"
#define API_EVENTS_MAX_WAIT_MS 60000
#define API_EVENTS_MAX_LIMIT 1000
#define API_CONSOLE_MAX (1024 * 1024)

struct api_req {
    struct api_server *srv;
    struct MHD_Connection *conn;
    char method[8];
    char *url;
    char *body;
    size_t body_len;
    bool too_big;
    bool authorised;
    uid_t uid;

    bool suspended;
    bool answered;      /* status/resp_* hold the answer */
    unsigned status;
    char *resp_body;
    size_t resp_len;
    const char *resp_type;

    /* long poll of /v1/events */
    struct evlog_watch *watch;
    struct loop_timer *timer;
    int64_t ev_after;
    size_t ev_limit;
    char *ev_service, *ev_vm;

    struct api_req *prev, *next; /* every live request */
};

struct api_server {
    struct loop *loop;
    struct vmm *vmm;
    struct store *st;
    struct evlog *ev;
    struct MHD_Daemon *mhd;
    int listen_fd;
    int epoll_fd;
    char *path;
    struct api_req *reqs;
    bool need_run;  /* a connection was resumed: MHD must run before we sleep */
    bool run_after; /* MHD gave a timeout: MHD must run after the wait */
};

/* ---- answers ---------------------------------------------------------------- */

unsigned api_status_for(enum cgv_errcode code)
{
    switch (code) {
    case CGV_OK: return 200;
    case CGV_E_INVALID: return 400;
    case CGV_E_DENIED: return 403;
    case CGV_E_NOTFOUND: return 404;
    case CGV_E_CONFLICT: return 409;
    case CGV_E_LIBVIRT: return 502;
    case CGV_E_UNAVAIL: return 503;
    case CGV_E_IO:
    case CGV_E_INTERNAL: return 500;
    }
    return 500;
}

static void req_answer_raw(struct api_req *r, unsigned status, char *body, size_t len,
                           const char *type)
{
    if (r->answered) {
        free(body);
        return;
    }
    r->answered = true;
    r->status = status;
    r->resp_body = body;
    r->resp_len = len;
    r->resp_type = type;
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        /* In external-epoll mode the resume does not wake MHD's epoll fd. */
        r->srv->need_run = true;
    }
}

/* Takes the reference to body. */
static void req_answer_json(struct api_req *r, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    size_t len;

    json_decref(body);
    if (!text)
        text = cgv_strdup("{}");
    len = strlen(text);
    text = cgv_realloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    req_answer_raw(r, status, text, len, "application/json");
}

static void req_answer_error(struct api_req *r, unsigned status, const char *code,
                             const char *msg, const struct spec_issues *issues)
{
    json_t *e = json_object(), *o = json_object();

    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string(msg));
    if (issues) {
        json_t *d = json_array();
        for (size_t i = 0; i < issues->n; i++) {
            const struct spec_issue *is = &issues->items[i];
            json_t *x = json_object();
            json_object_set_new(x, "path", json_string(is->path));
            json_object_set_new(x, "line", is->line ? json_integer(is->line) : json_null());
            json_object_set_new(x, "column",
                                is->column ? json_integer(is->column) : json_null());
            json_object_set_new(x, "message", json_string(is->msg));
            json_array_append_new(d, x);
        }
        if (issues->dropped)
            json_object_set_new(e, "details_dropped",
                                json_integer((json_int_t)issues->dropped));
        json_object_set_new(e, "details", d);
    }
    json_object_set_new(o, "error", e);
    req_answer_json(r, status, o);
}

static void req_answer_cgv_error(struct api_req *r, const struct cgv_error *err,
                                 const struct spec_issues *issues)
{
    enum cgv_errcode code = err->code == CGV_OK ? CGV_E_INTERNAL : err->code;

    req_answer_error(r, api_status_for(code), cgv_errcode_name(code),
                     err->msg[0] ? err->msg : "unknown error", issues);
}

/* vmm_reply_fn */
static void on_vmm_reply(void *ctx, json_t *body, const struct cgv_error *err,
                         const struct spec_issues *issues)
{
    struct api_req *r = ctx;

    if (body)
        req_answer_json(r, 200, body);
    else
        req_answer_cgv_error(r, err, issues);
}

/* ---- helpers ------------------------------------------------------------------ */

static const char *query(struct api_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

static int query_int(struct api_req *r, const char *key, int64_t min, int64_t max,
                     int64_t def, int64_t *out)
{
    const char *v = query(r, key);
    char *end;
    long long x;

    *out = def;
    if (!v)
        return 0;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        char msg[160];
        snprintf(msg, sizeof(msg), "query parameter %s must be an integer in %lld..%lld",
                 key, (long long)min, (long long)max);
        req_answer_error(r, 400, "invalid", msg, NULL);
        return -1;
    }
    *out = x;
    return 0;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 48)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    }
    return true;
}

/* Split "/v1/a/b/c" into at most 4 segments; returns the count or -1. */
static int split_path(const char *url, char seg[4][64])
{
    int n = 0;
    const char *p = url;

    if (*p != '/')
        return -1;
    while (*p) {
        const char *start;
        size_t len;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        start = p;
        while (*p && *p != '/')
            p++;
        len = (size_t)(p - start);
        if (n == 4 || len >= 64)
            return -1;
        memcpy(seg[n], start, len);
        seg[n][len] = '\0';
        n++;
    }
    return n;
}

/* ---- /v1/events ---------------------------------------------------------------- */

static void events_try(struct api_req *r, bool final);

static void on_events_watch(void *opaque)
{
    struct api_req *r = opaque;

    r->watch = NULL;
    events_try(r, false);
}

static void on_events_timeout(struct loop *l, void *opaque)
{
    struct api_req *r = opaque;

    (void)l;
    r->timer = NULL;
    events_try(r, true);
}

static void events_cancel_wait(struct api_req *r)
{
    if (r->watch) {
        evlog_unwatch(r->srv->ev, r->watch);
        r->watch = NULL;
    }
    if (r->timer) {
        loop_timer_cancel(r->srv->loop, r->timer);
        r->timer = NULL;
    }
}

static json_t *event_json(const struct store_event *e)
{
    json_t *o = json_object();
    char when[40];

    cgv_fmt_wall_ms(e->time_ms, when, sizeof(when));
    json_object_set_new(o, "id", json_integer(e->id));
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "time_ms", json_integer(e->time_ms));
    json_object_set_new(o, "severity", json_string(e->severity));
    json_object_set_new(o, "type", json_string(e->type));
    json_object_set_new(o, "service", e->service ? json_string(e->service) : json_null());
    json_object_set_new(o, "vm", e->vm ? json_string(e->vm) : json_null());
    json_object_set_new(o, "message", json_string(e->message));
    return o;
}

/* Answer with the matching events, or (not final, none yet) keep waiting. */
static void events_try(struct api_req *r, bool final)
{
    struct store_event *list = NULL;
    size_t n = 0;
    struct cgv_error err = {0};
    json_t *o, *arr;

    if (store_event_list(r->srv->st, r->ev_after, r->ev_service, r->ev_vm, r->ev_limit,
                         &list, &n, &err) < 0) {
        events_cancel_wait(r);
        req_answer_cgv_error(r, &err, NULL);
        return;
    }
    if (n == 0 && !final) {
        if (!r->watch)
            r->watch = evlog_watch(r->srv->ev, on_events_watch, r);
        return;
    }
    events_cancel_wait(r);
    o = json_object();
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, event_json(&list[i]));
    store_event_free_list(list, n);
    json_object_set_new(o, "events", arr);
    json_object_set_new(o, "last_id", json_integer(evlog_last_id(r->srv->ev)));
    req_answer_json(r, 200, o);
}

static void handle_events(struct api_req *r)
{
    int64_t after, wait_ms, limit;
    const char *svc = query(r, "service"), *vm = query(r, "vm");

    if (query_int(r, "after", 0, INT64_MAX, 0, &after) < 0 ||
        query_int(r, "wait_ms", 0, API_EVENTS_MAX_WAIT_MS, 0, &wait_ms) < 0 ||
        query_int(r, "limit", 1, API_EVENTS_MAX_LIMIT, 100, &limit) < 0)
        return;
    if ((svc && !name_ok(svc)) || (vm && !name_ok(vm))) {
        req_answer_error(r, 400, "invalid", "service and vm filters must be names", NULL);
        return;
    }
    r->ev_after = after;
    r->ev_limit = (size_t)limit;
    r->ev_service = svc ? cgv_strdup(svc) : NULL;
    r->ev_vm = vm ? cgv_strdup(vm) : NULL;
    if (wait_ms > 0)
        r->timer = loop_timer_add(r->srv->loop, wait_ms, on_events_timeout, r);
    events_try(r, wait_ms == 0);
}

/* ---- console log ------------------------------------------------------------------ */

static void handle_console_log(struct api_req *r, const char *name)
{
    struct cgv_error err = {0};
    char *path = vmm_console_log_path(r->srv->vmm, name, &err);
    int64_t want;
    CGV_AUTOCLOSE int fd = -1;
    struct stat st;
    char *buf;
    ssize_t got;
    off_t start;

    if (!path) {
        req_answer_cgv_error(r, &err, NULL);
        return;
    }
    if (query_int(r, "bytes", 1, API_CONSOLE_MAX, 16384, &want) < 0) {
        free(path);
        return;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            free(path);
            req_answer_raw(r, 200, cgv_strdup(""), 0, "text/plain; charset=utf-8");
            return;
        }
        cgv_err(&err, CGV_E_IO, "open %s: %s", path, strerror(errno));
        free(path);
        req_answer_cgv_error(r, &err, NULL);
        return;
    }
    free(path);
    if (fstat(fd, &st) < 0) {
        cgv_err(&err, CGV_E_IO, "stat console log: %s", strerror(errno));
        req_answer_cgv_error(r, &err, NULL);
        return;
    }
    start = st.st_size > want ? st.st_size - (off_t)want : 0;
    buf = cgv_malloc0((size_t)want + 1);
    got = pread(fd, buf, (size_t)want, start);
    if (got < 0) {
        free(buf);
        cgv_err(&err, CGV_E_IO, "read console log: %s", strerror(errno));
        req_answer_cgv_error(r, &err, NULL);
        return;
    }
    req_answer_raw(r, 200, buf, (size_t)got, "text/plain; charset=utf-8");
}

/* ---- routing ------------------------------------------------------------------------ */

static void not_found(struct api_req *r)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "no such endpoint: %s %.100s", r->method, r->url);
    req_answer_error(r, 404, "not-found", msg, NULL);
}

static void bad_method(struct api_req *r, const char *allowed)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "method %s not allowed here (allowed: %s)", r->method, allowed);
    req_answer_error(r, 405, "invalid", msg, NULL);
}

static bool is(const struct api_req *r, const char *m)
{
    return strcmp(r->method, m) == 0;
}

static unsigned parse_timeout_body(struct api_req *r, bool *bad)
{
    json_t *j, *t;
    json_error_t je;
    unsigned ms = 0;

    *bad = false;
    if (!r->body_len)
        return 0;
    j = json_loadb(r->body, r->body_len, 0, &je);
    if (!j || !json_is_object(j)) {
        char msg[300];
        snprintf(msg, sizeof(msg), "request body must be a JSON object: %s",
                 j ? "got another JSON type" : je.text);
        json_decref(j);
        req_answer_error(r, 400, "invalid", msg, NULL);
        *bad = true;
        return 0;
    }
    t = json_object_get(j, "timeout_ms");
    if (t && (!json_is_integer(t) || json_integer_value(t) < 1 ||
              json_integer_value(t) > 3600000)) {
        json_decref(j);
        req_answer_error(r, 400, "invalid", "timeout_ms must be an integer in 1..3600000",
                         NULL);
        *bad = true;
        return 0;
    }
    if (t)
        ms = (unsigned)json_integer_value(t);
    json_decref(j);
    return ms;
}

static void route(struct api_req *r)
{
    struct api_server *srv = r->srv;
    struct cgv_error err = {0};
    char seg[4][64];
    int n = split_path(r->url, seg);
    json_t *o;

    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        size_t len;
        char *text;
        if (!is(r, "GET"))
            return bad_method(r, "GET");
        text = vmm_kpi_metrics(srv->vmm, &len);
        req_answer_raw(r, 200, text, len, "text/plain; version=0.0.4; charset=utf-8");
        return;
    }
    if (n < 2 || strcmp(seg[0], "v1") != 0) {
        not_found(r);
        return;
    }
    if (n == 2 && strcmp(seg[1], "health") == 0) {
        if (!is(r, "GET"))
            return bad_method(r, "GET");
        req_answer_json(r, 200, vmm_health_json(srv->vmm));
        return;
    }
    if (n == 2 && strcmp(seg[1], "apply") == 0) {
        int64_t dry;
        if (!is(r, "POST"))
            return bad_method(r, "POST");
        if (query_int(r, "dry_run", 0, 1, 0, &dry) < 0)
            return;
        if (!r->body_len) {
            req_answer_error(r, 400, "invalid", "the request body must hold the spec", NULL);
            return;
        }
        vmm_apply(srv->vmm, r->body, r->body_len, dry == 1, on_vmm_reply, r);
        return;
    }
    if (n == 2 && strcmp(seg[1], "events") == 0) {
        if (!is(r, "GET"))
            return bad_method(r, "GET");
        handle_events(r);
        return;
    }
    if (strcmp(seg[1], "services") == 0) {
        if (n == 2) {
            if (!is(r, "GET"))
                return bad_method(r, "GET");
            req_answer_json(r, 200, vmm_services_json(srv->vmm));
            return;
        }
        if (n != 3 || !name_ok(seg[2]))
            return not_found(r);
        if (is(r, "GET")) {
            o = vmm_service_json(srv->vmm, seg[2], &err);
            if (o)
                req_answer_json(r, 200, o);
            else
                req_answer_cgv_error(r, &err, NULL);
            return;
        }
        if (is(r, "DELETE")) {
            vmm_delete_service(srv->vmm, seg[2], on_vmm_reply, r);
            return;
        }
        return bad_method(r, "GET, DELETE");
    }
    if (strcmp(seg[1], "vms") == 0) {
        if (n == 2) {
            if (!is(r, "GET"))
                return bad_method(r, "GET");
            req_answer_json(r, 200, vmm_vms_json(srv->vmm));
            return;
        }
        if (!name_ok(seg[2]))
            return not_found(r);
        if (n == 3) {
            if (!is(r, "GET"))
                return bad_method(r, "GET");
            o = vmm_vm_json(srv->vmm, seg[2], &err);
            if (o)
                req_answer_json(r, 200, o);
            else
                req_answer_cgv_error(r, &err, NULL);
            return;
        }
        if (n == 4 && strcmp(seg[3], "console-log") == 0) {
            if (!is(r, "GET"))
                return bad_method(r, "GET");
            handle_console_log(r, seg[2]);
            return;
        }
        if (n == 4 && strcmp(seg[3], "set") == 0) {
            if (!is(r, "POST"))
                return bad_method(r, "POST");
            vmm_vm_set(srv->vmm, seg[2], r->body, r->body_len, on_vmm_reply, r);
            return;
        }
        if (n == 4) {
            bool bad;
            unsigned timeout_ms;
            if (!is(r, "POST"))
                return bad_method(r, "POST");
            timeout_ms = parse_timeout_body(r, &bad);
            if (bad)
                return;
            vmm_vm_op(srv->vmm, seg[2], seg[3], timeout_ms, on_vmm_reply, r);
            return;
        }
    }
    not_found(r);
}

/* ---- libmicrohttpd glue ----------------------------------------------------------- */

static bool peer_is_root(struct MHD_Connection *conn, uid_t *uid)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cred;
    socklen_t len = sizeof(cred);

    *uid = (uid_t)-1;
    if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    *uid = cred.uid;
    return cred.uid == 0;
}

static enum MHD_Result queue_answer(struct api_req *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(r->resp_len, r->resp_body, MHD_RESPMEM_MUST_FREE);
    r->resp_body = NULL;
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size,
                                  void **con_cls)
{
    struct api_server *srv = cls;
    struct api_req *r = *con_cls;

    (void)version;
    if (!r) {
        r = cgv_malloc0(sizeof(*r));
        r->srv = srv;
        r->conn = conn;
        cgv_strlcpy(r->method, method, sizeof(r->method));
        r->url = cgv_strdup(url);
        r->authorised = peer_is_root(conn, &r->uid);
        r->next = srv->reqs;
        if (srv->reqs)
            srv->reqs->prev = r;
        srv->reqs = r;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->authorised) {
            if (r->body_len + *upload_size > API_MAX_BODY) {
                r->too_big = true;
                free(r->body);
                r->body = NULL;
                r->body_len = 0;
            } else {
                r->body = cgv_realloc(r->body, r->body_len + *upload_size + 1);
                memcpy(r->body + r->body_len, upload_data, *upload_size);
                r->body_len += *upload_size;
                r->body[r->body_len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return queue_answer(r);
    if (r->suspended)
        return MHD_YES; /* spurious call; still waiting */

    if (!r->authorised) {
        char msg[128];
        log_warn("refused API request from uid %d: %s %s", (int)r->uid, r->method, r->url);
        snprintf(msg, sizeof(msg), "uid %d is not authorised; the cgv API is root-only",
                 (int)r->uid);
        req_answer_error(r, 403, "denied", msg, NULL);
    } else if (r->too_big) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body larger than %d bytes", API_MAX_BODY);
        req_answer_error(r, 413, "invalid", msg, NULL);
    } else {
        log_debug("%s %s", r->method, r->url);
        route(r);
    }
    if (r->answered)
        return queue_answer(r);
    r->suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void req_free(struct api_req *r)
{
    struct api_server *srv = r->srv;

    events_cancel_wait(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        srv->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r->url);
    free(r->body);
    free(r->resp_body);
    free(r->ev_service);
    free(r->ev_vm);
    free(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct api_req *r = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (r) {
        if (r->suspended) {
            /* Cannot happen: MHD completes only resumed connections. Keep the
             * request alive rather than leave a dangling reply pointer. */
            log_error("request %s %s completed while suspended", r->method, r->url);
            return;
        }
        req_free(r);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_warn("libmicrohttpd: %s", msg);
}

static void on_mhd_fd(struct loop *l, int fd, uint32_t events, void *opaque)
{
    struct api_server *srv = opaque;

    (void)l;
    (void)fd;
    (void)events;
    MHD_run(srv->mhd);
}

/* libmicrohttpd's external-epoll contract: before sleeping ask for its
 * timeout; if it gave one, MHD_run() must follow the wait whatever woke it
 * (otherwise a keep-alive connection that was suspended and resumed is never
 * read again). A resumed connection also needs a run before we sleep. */
static int64_t mhd_prepare(struct loop *l, void *opaque)
{
    struct api_server *srv = opaque;
    MHD_UNSIGNED_LONG_LONG to;

    (void)l;
    while (srv->need_run) {
        srv->need_run = false;
        MHD_run(srv->mhd);
    }
    srv->run_after = MHD_get_timeout(srv->mhd, &to) == MHD_YES;
    return srv->run_after ? (int64_t)to : -1;
}

static void mhd_after(struct loop *l, void *opaque)
{
    struct api_server *srv = opaque;

    (void)l;
    if (srv->run_after) {
        srv->run_after = false;
        MHD_run(srv->mhd);
    }
}

static int bind_socket(const char *path, struct cgv_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (cgv_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
        return cgv_err(err, CGV_E_INVALID, "socket path too long: %s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    /* Another cgvd answering here? Then do not steal its socket. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(fd);
        return cgv_err(err, CGV_E_CONFLICT,
                       "another cgvd is already serving %s; stop it first", path);
    }
    close(fd);
    if (unlink(path) < 0 && errno != ENOENT)
        return cgv_err(err, CGV_E_IO, "remove stale socket %s: %s", path, strerror(errno));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    {
        mode_t old = umask(0177);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        int e = errno;
        umask(old);
        if (rc < 0) {
            close(fd);
            return cgv_err(err, CGV_E_IO, "bind %s: %s", path, strerror(e));
        }
    }
    if (chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return cgv_err(err, CGV_E_IO, "listen on %s: %s", path, strerror(e));
    }
    return fd;
}

int api_server_new(struct loop *l, const char *socket_path, struct vmm *vmm,
                   struct store *st, struct evlog *ev, struct api_server **out,
                   struct cgv_error *err)
{
    struct api_server *srv = cgv_malloc0(sizeof(*srv));
    const union MHD_DaemonInfo *info;
    int fd;

    srv->loop = l;
    srv->vmm = vmm;
    srv->st = st;
    srv->ev = ev;
    srv->path = cgv_strdup(socket_path);
    fd = bind_socket(socket_path, err);
    if (fd < 0) {
        free(srv->path);
        free(srv);
        return -1;
    }
    srv->listen_fd = fd;
    srv->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)300, MHD_OPTION_END);
    if (!srv->mhd) {
        cgv_err(err, CGV_E_INTERNAL, "libmicrohttpd could not start on %s", socket_path);
        goto error;
    }
    info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        cgv_err(err, CGV_E_INTERNAL, "libmicrohttpd has no epoll fd");
        goto error;
    }
    srv->epoll_fd = info->epoll_fd;
    if (loop_add_fd(l, srv->epoll_fd, EPOLLIN, on_mhd_fd, srv, err) < 0)
        goto error;
    loop_set_prepare(l, mhd_prepare, mhd_after, srv);
    log_info("API listening on %s", socket_path);
    *out = srv;
    return 0;

error:
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    close(fd);
    unlink(socket_path);
    free(srv->path);
    free(srv);
    return -1;
}

void api_server_free(struct api_server *srv)
{
    if (!srv)
        return;
    for (struct api_req *r = srv->reqs; r; r = r->next) {
        if (!r->answered) {
            events_cancel_wait(r);
            req_answer_error(r, 503, "unavailable", "cgvd is shutting down", NULL);
        }
    }
    /* Let MHD send what was resumed, briefly. */
    for (int i = 0; i < 20 && srv->reqs; i++) {
        MHD_run(srv->mhd);
        usleep(5000);
    }
    loop_set_prepare(srv->loop, NULL, NULL, NULL);
    loop_del_fd(srv->loop, srv->epoll_fd);
    MHD_stop_daemon(srv->mhd);
    close(srv->listen_fd);
    unlink(srv->path);
    while (srv->reqs)
        req_free(srv->reqs);
    free(srv->path);
    free(srv);
}
