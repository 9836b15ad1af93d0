/* client.c — see client.h */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

struct client {
    CURL *curl;
    char *socket_path;
    size_t max_response;
    long timeout_ms;
    const volatile sig_atomic_t *cancel;

    /* State of the last request. */
    int last_status;
    json_t *last_error; /* the "error" object of a failed request */

    /* Response buffer, reused. */
    char *buf;
    size_t len, cap;
    bool oversize;
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t client_curl_once = PTHREAD_ONCE_INIT;
static CURLcode client_curl_init_rc = CURLE_OK;

static void client_curl_global_init(void)
{
    client_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *client_default_socket(void)
{
    const char *env = getenv(CLIENT_SOCKET_ENV);

    if (env && env[0] != '\0')
        return env;
    return CLIENT_DEFAULT_SOCKET;
}

struct client *client_new(const char *socket_path, struct cgv_error *err)
{
    struct sockaddr_un sun;
    struct client *c;

    if (!socket_path)
        socket_path = client_default_socket();
    if (socket_path[0] == '\0') {
        cgv_err(err, CGV_E_INVALID, "empty cgvd socket path");
        return NULL;
    }
    if (strlen(socket_path) >= sizeof(sun.sun_path)) {
        cgv_err(err, CGV_E_INVALID, "cgvd socket path too long (max %zu): %s",
                sizeof(sun.sun_path) - 1, socket_path);
        return NULL;
    }
    pthread_once(&client_curl_once, client_curl_global_init);
    if (client_curl_init_rc != CURLE_OK) {
        cgv_err(err, CGV_E_INTERNAL, "curl_global_init: %s",
                curl_easy_strerror(client_curl_init_rc));
        return NULL;
    }
    c = cgv_malloc0(sizeof(*c));
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        cgv_err(err, CGV_E_INTERNAL, "curl_easy_init failed");
        return NULL;
    }
    c->socket_path = cgv_strdup(socket_path);
    c->max_response = CLIENT_MAX_RESPONSE;
    c->timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
    return c;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    json_decref(c->last_error);
    free(c->socket_path);
    free(c->buf);
    free(c);
}

const char *client_socket_path(const struct client *c)
{
    return c->socket_path;
}

void client_set_max_response(struct client *c, size_t bytes)
{
    c->max_response = bytes;
}

void client_set_timeout_ms(struct client *c, long timeout_ms)
{
    c->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
}

void client_set_cancel_flag(struct client *c, const volatile sig_atomic_t *flag)
{
    c->cancel = flag;
}

int client_last_status(const struct client *c)
{
    return c->last_status;
}

const json_t *client_last_error(const struct client *c)
{
    return c->last_error;
}

const json_t *client_last_error_details(const struct client *c)
{
    const json_t *d;

    if (!c->last_error)
        return NULL;
    d = json_object_get(c->last_error, "details");
    return json_is_array(d) ? d : NULL;
}

enum cgv_errcode client_errcode_from_name(const char *name)
{
    static const enum cgv_errcode codes[] = {
        CGV_E_INTERNAL, CGV_E_INVALID, CGV_E_NOTFOUND, CGV_E_CONFLICT,
        CGV_E_LIBVIRT,  CGV_E_IO,      CGV_E_UNAVAIL,  CGV_E_DENIED,
    };

    if (!name)
        return CGV_OK;
    for (size_t i = 0; i < CGV_ARRAY_LEN(codes); i++) {
        if (strcmp(name, cgv_errcode_name(codes[i])) == 0)
            return codes[i];
    }
    return CGV_OK;
}

enum cgv_errcode client_errcode_from_status(int http_status)
{
    switch (http_status) {
    case 400:
    case 405:
    case 411:
    case 413:
    case 414:
    case 415:
    case 422:
        return CGV_E_INVALID;
    case 401:
    case 403:
        return CGV_E_DENIED;
    case 404:
    case 410:
        return CGV_E_NOTFOUND;
    case 409:
    case 423:
        return CGV_E_CONFLICT;
    case 502:
        return CGV_E_LIBVIRT;
    case 503:
    case 504:
        return CGV_E_UNAVAIL;
    default:
        return CGV_E_INTERNAL;
    }
}

char *client_escape(const char *s)
{
    char *e, *out;

    e = curl_easy_escape(NULL, s ? s : "", 0);
    if (!e)
        abort(); /* only fails on out-of-memory */
    out = cgv_strdup(e);
    curl_free(e);
    return out;
}

/* --- transport ------------------------------------------------------------ */

static size_t client_write_cb(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct client *c = opaque;
    size_t n = size * nmemb;

    if (n > c->max_response - c->len) {
        c->oversize = true;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 16384;
        while (cap < c->len + n + 1)
            cap *= 2;
        c->buf = cgv_realloc(c->buf, cap);
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    c->buf[c->len] = '\0';
    return n;
}

static int client_xferinfo_cb(void *opaque, curl_off_t dltotal, curl_off_t dlnow,
                              curl_off_t ultotal, curl_off_t ulnow)
{
    struct client *c = opaque;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return (c->cancel && *c->cancel) ? 1 : 0;
}

/* A transport-level failure (no usable HTTP answer) into err. */
static int client_transport_error(struct client *c, CURLcode rc, long timeout_ms,
                                  struct cgv_error *err)
{
    long os_errno = 0;
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);

    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
    switch (rc) {
    case CURLE_WRITE_ERROR:
        if (c->oversize)
            return cgv_err(err, CGV_E_INTERNAL,
                           "bad response from cgvd: larger than %zu bytes",
                           c->max_response);
        break;
    case CURLE_ABORTED_BY_CALLBACK:
        return cgv_err(err, CGV_E_INTERNAL, "interrupted");
    case CURLE_COULDNT_CONNECT:
        if (os_errno == EACCES || os_errno == EPERM)
            return cgv_err(err, CGV_E_DENIED,
                           "cannot connect to cgvd at %s: %s (cgv needs to run as root)",
                           c->socket_path, strerror((int)os_errno));
        if (os_errno != 0)
            return cgv_err(err, CGV_E_UNAVAIL,
                           "cannot connect to cgvd at %s: %s (is cgvd running?)",
                           c->socket_path, strerror((int)os_errno));
        return cgv_err(err, CGV_E_UNAVAIL,
                       "cannot connect to cgvd at %s (is cgvd running?)",
                       c->socket_path);
    case CURLE_OPERATION_TIMEDOUT:
        return cgv_err(err, CGV_E_UNAVAIL,
                       "no answer from cgvd at %s within %ld ms", c->socket_path,
                       timeout_ms);
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return cgv_err(err, CGV_E_UNAVAIL,
                       "connection to cgvd at %s lost: %s", c->socket_path,
                       detail);
    default:
        break;
    }
    return cgv_err(err, CGV_E_INTERNAL, "bad response from cgvd at %s: %s",
                   c->socket_path, detail);
}

/* An HTTP error answer (status >= 300) into err and c->last_error. */
static int client_http_error(struct client *c, int status, struct cgv_error *err)
{
    json_t *root = NULL, *eobj, *jmsg, *jcode;
    enum cgv_errcode code = client_errcode_from_status(status);
    const char *msg = NULL;
    int rc;

    if (c->len > 0)
        root = json_loadb(c->buf, c->len, 0, NULL);
    eobj = json_object_get(root, "error");
    if (json_is_object(eobj)) {
        enum cgv_errcode named;

        c->last_error = json_incref(eobj);
        jcode = json_object_get(eobj, "code");
        jmsg = json_object_get(eobj, "message");
        named = client_errcode_from_name(json_string_value(jcode));
        if (named != CGV_OK)
            code = named;
        if (json_is_string(jmsg) && json_string_length(jmsg) > 0)
            msg = json_string_value(jmsg);
    }
    if (msg) {
        rc = cgv_err(err, code, "%s", msg);
    } else if (c->len > 0 && !root) {
        /* Not JSON: quote the first line of what came back. */
        size_t n = strcspn(c->buf, "\r\n");
        if (n > 200)
            n = 200;
        rc = cgv_err(err, code, "cgvd answered HTTP %d: %.*s", status, (int)n,
                     c->buf);
    } else {
        rc = cgv_err(err, code, "cgvd answered HTTP %d (%s)", status,
                     cgv_errcode_name(code));
    }
    json_decref(root);
    return rc;
}

static int client_perform(struct client *c, const char *method, const char *path,
                          const char *content_type, const void *body, size_t len,
                          long timeout_ms, int *http_status, struct cgv_error *err)
{
    struct curl_slist *headers = NULL;
    CGV_AUTOFREE char *url = NULL;
    CGV_AUTOFREE char *ctype_hdr = NULL;
    CURLcode rc;
    long status = 0;
    int ret = -1;

    c->last_status = 0;
    json_decref(c->last_error);
    c->last_error = NULL;
    c->len = 0;
    c->oversize = false;
    c->errbuf[0] = '\0';
    if (http_status)
        *http_status = 0;
    if (!method || !path || path[0] != '/') {
        cgv_err(err, CGV_E_INVALID, "bad request path: %s", path ? path : "(null)");
        goto cleanup;
    }
    if (!body && len > 0) {
        cgv_err(err, CGV_E_INVALID, "request body missing");
        goto cleanup;
    }

    url = cgv_asprintf("http://cgvd%s", path);
    curl_easy_reset(c->curl); /* keeps the live connection */
    curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, client_write_cb);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, client_xferinfo_cb);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, CLIENT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "cgv/" CGV_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)c->max_response);

    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue dance */
    if (strcmp(method, "GET") == 0 && len == 0) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        if (len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, len > 0 ? body : "");
            if (len > 0) {
                ctype_hdr = cgv_asprintf("Content-Type: %s",
                                         content_type ? content_type
                                                      : "application/json");
                headers = curl_slist_append(headers, ctype_hdr);
            }
        }
    }
    if (!headers) {
        cgv_err(err, CGV_E_INTERNAL, "out of memory building headers");
        goto cleanup;
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);

    rc = curl_easy_perform(c->curl);
    if (rc == CURLE_FILESIZE_EXCEEDED) {
        c->oversize = true;
        rc = CURLE_WRITE_ERROR;
    }
    if (rc != CURLE_OK) {
        client_transport_error(c, rc, timeout_ms, err);
        goto cleanup;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 100 || status > 599) {
        cgv_err(err, CGV_E_INTERNAL, "bad response from cgvd: HTTP status %ld",
                status);
        goto cleanup;
    }
    c->last_status = (int)status;
    if (http_status)
        *http_status = (int)status;
    if (status >= 300) {
        client_http_error(c, (int)status, err);
        goto cleanup;
    }
    ret = 0;

cleanup:
    curl_slist_free_all(headers);
    return ret;
}

int client_request_raw(struct client *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len,
                       int *http_status, char **response, size_t *response_len,
                       struct cgv_error *err)
{
    if (response)
        *response = NULL;
    if (response_len)
        *response_len = 0;
    if (client_perform(c, method, path, content_type, body, len, c->timeout_ms,
                       http_status, err) < 0)
        return -1;
    if (response) {
        char *out = cgv_malloc0(c->len + 1);
        if (c->len)
            memcpy(out, c->buf, c->len);
        *response = out;
    }
    if (response_len)
        *response_len = c->len;
    return 0;
}

/* Parse the buffered 2xx body as a JSON object. */
static int client_parse_json(struct client *c, json_t **out, struct cgv_error *err)
{
    json_error_t jerr;
    json_t *root;

    if (c->len == 0)
        return cgv_err(err, CGV_E_INTERNAL,
                       "bad response from cgvd: empty body (HTTP %d)",
                       c->last_status);
    root = json_loadb(c->buf, c->len, 0, &jerr);
    if (!root)
        return cgv_err(err, CGV_E_INTERNAL,
                       "bad response from cgvd: not JSON: %s (line %d, column %d)",
                       jerr.text, jerr.line, jerr.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return cgv_err(err, CGV_E_INTERNAL,
                       "bad response from cgvd: JSON is not an object");
    }
    if (out)
        *out = root;
    else
        json_decref(root);
    return 0;
}

static int client_request_t(struct client *c, const char *method, const char *path,
                            const char *content_type, const void *body, size_t len,
                            long timeout_ms, int *http_status, json_t **out,
                            struct cgv_error *err)
{
    if (out)
        *out = NULL;
    if (client_perform(c, method, path, content_type, body, len, timeout_ms,
                       http_status, err) < 0)
        return -1;
    return client_parse_json(c, out, err);
}

int client_request(struct client *c, const char *method, const char *path,
                   const char *content_type, const void *body, size_t len,
                   int *http_status, json_t **json_response, struct cgv_error *err)
{
    return client_request_t(c, method, path, content_type, body, len,
                            c->timeout_ms, http_status, json_response, err);
}

/* --- typed helpers -------------------------------------------------------- */

/* The timeout for a request that the server may hold for extra_ms. */
static long client_extend_timeout(const struct client *c, long extra_ms)
{
    long t;

    if (extra_ms <= 0)
        return c->timeout_ms;
    t = extra_ms + 30000;
    if (c->timeout_ms == 0 || c->timeout_ms > t)
        return c->timeout_ms;
    return t;
}

static int client_get(struct client *c, const char *path, json_t **out,
                      struct cgv_error *err)
{
    return client_request(c, "GET", path, NULL, NULL, 0, NULL, out, err);
}

static int client_check_name(const char *what, const char *name, json_t **out,
                             struct cgv_error *err)
{
    if (out)
        *out = NULL;
    if (!name || name[0] == '\0')
        return cgv_err(err, CGV_E_INVALID, "%s name missing", what);
    return 0;
}

int client_health(struct client *c, json_t **out, struct cgv_error *err)
{
    return client_get(c, "/v1/health", out, err);
}

int client_apply(struct client *c, const char *text, size_t len,
                 const char *content_type, bool dry_run, json_t **out,
                 struct cgv_error *err)
{
    if (out)
        *out = NULL;
    if (!text || len == 0)
        return cgv_err(err, CGV_E_INVALID, "empty spec");
    return client_request(c, "POST", dry_run ? "/v1/apply?dry_run=1" : "/v1/apply",
                          content_type ? content_type : "application/yaml", text,
                          len, NULL, out, err);
}

int client_services_list(struct client *c, json_t **out, struct cgv_error *err)
{
    return client_get(c, "/v1/services", out, err);
}

int client_service_get(struct client *c, const char *name, json_t **out,
                       struct cgv_error *err)
{
    CGV_AUTOFREE char *esc = NULL;
    CGV_AUTOFREE char *path = NULL;

    if (client_check_name("service", name, out, err) < 0)
        return -1;
    esc = client_escape(name);
    path = cgv_asprintf("/v1/services/%s", esc);
    return client_get(c, path, out, err);
}

int client_service_delete(struct client *c, const char *name, json_t **out,
                          struct cgv_error *err)
{
    CGV_AUTOFREE char *esc = NULL;
    CGV_AUTOFREE char *path = NULL;

    if (client_check_name("service", name, out, err) < 0)
        return -1;
    esc = client_escape(name);
    path = cgv_asprintf("/v1/services/%s", esc);
    return client_request(c, "DELETE", path, NULL, NULL, 0, NULL, out, err);
}

int client_vms_list(struct client *c, json_t **out, struct cgv_error *err)
{
    return client_get(c, "/v1/vms", out, err);
}

int client_vm_get(struct client *c, const char *name, json_t **out,
                  struct cgv_error *err)
{
    CGV_AUTOFREE char *esc = NULL;
    CGV_AUTOFREE char *path = NULL;

    if (client_check_name("VM", name, out, err) < 0)
        return -1;
    esc = client_escape(name);
    path = cgv_asprintf("/v1/vms/%s", esc);
    return client_get(c, path, out, err);
}

static const char *const client_vm_ops[] = {
    "start", "stop", "destroy", "pause", "resume", "reboot", "save", "restore",
};

bool client_vm_op_valid(const char *op)
{
    if (!op)
        return false;
    for (size_t i = 0; i < CGV_ARRAY_LEN(client_vm_ops); i++) {
        if (strcmp(op, client_vm_ops[i]) == 0)
            return true;
    }
    return false;
}

int client_vm_op(struct client *c, const char *name, const char *op,
                 long timeout_ms, json_t **out, struct cgv_error *err)
{
    CGV_AUTOFREE char *esc = NULL;
    CGV_AUTOFREE char *path = NULL;
    CGV_AUTOFREE char *body = NULL;
    size_t len = 0;

    if (client_check_name("VM", name, out, err) < 0)
        return -1;
    if (!client_vm_op_valid(op))
        return cgv_err(err, CGV_E_INVALID,
                       "unknown VM operation '%s' (start, stop, destroy, pause, "
                       "resume, reboot, save, restore)",
                       op ? op : "");
    esc = client_escape(name);
    path = cgv_asprintf("/v1/vms/%s/%s", esc, op);
    if (timeout_ms > 0 && (strcmp(op, "stop") == 0 || strcmp(op, "reboot") == 0)) {
        body = cgv_asprintf("{\"timeout_ms\": %ld}", timeout_ms);
        len = strlen(body);
    }
    return client_request_t(c, "POST", path, body ? "application/json" : NULL,
                            body, len, client_extend_timeout(c, timeout_ms), NULL,
                            out, err);
}

char *client_events_path(int64_t after, long wait_ms, long limit,
                         const char *service, const char *vm)
{
    char *path = cgv_strdup("/v1/events");
    char sep = '?';

#define CLIENT_ADD_PARAM(fmt, ...)                                            \
    do {                                                                      \
        char *np_ = cgv_asprintf("%s%c" fmt, path, sep, __VA_ARGS__);         \
        free(path);                                                           \
        path = np_;                                                           \
        sep = '&';                                                            \
    } while (0)

    if (after > 0)
        CLIENT_ADD_PARAM("after=%" PRId64, after);
    if (wait_ms > 0)
        CLIENT_ADD_PARAM("wait_ms=%ld", wait_ms);
    if (limit > 0)
        CLIENT_ADD_PARAM("limit=%ld", limit);
    if (service && service[0]) {
        char *esc = client_escape(service);
        CLIENT_ADD_PARAM("service=%s", esc);
        free(esc);
    }
    if (vm && vm[0]) {
        char *esc = client_escape(vm);
        CLIENT_ADD_PARAM("vm=%s", esc);
        free(esc);
    }
#undef CLIENT_ADD_PARAM
    return path;
}

int client_events(struct client *c, int64_t after, long wait_ms, long limit,
                  const char *service, const char *vm, json_t **out,
                  struct cgv_error *err)
{
    CGV_AUTOFREE char *path = client_events_path(after, wait_ms, limit, service, vm);

    return client_request_t(c, "GET", path, NULL, NULL, 0,
                            client_extend_timeout(c, wait_ms), NULL, out, err);
}

int client_console_log(struct client *c, const char *name, size_t bytes,
                       char **text, size_t *len, struct cgv_error *err)
{
    CGV_AUTOFREE char *esc = NULL;
    CGV_AUTOFREE char *path = NULL;

    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!name || name[0] == '\0')
        return cgv_err(err, CGV_E_INVALID, "VM name missing");
    esc = client_escape(name);
    if (bytes > 0)
        path = cgv_asprintf("/v1/vms/%s/console-log?bytes=%zu", esc, bytes);
    else
        path = cgv_asprintf("/v1/vms/%s/console-log", esc);
    return client_request_raw(c, "GET", path, NULL, NULL, 0, NULL, text, len, err);
}
