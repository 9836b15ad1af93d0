/* Unit tests for the cgvd API client against a fake cgvd (fake_server.c):
 * success parsing, the error code mapping, validation details, transport
 * failures, bounded and garbled responses, and the request each helper sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "fake_server.h"

struct fixture {
    struct fake_server fs;
    struct client *c;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct cgv_error err = {0};

    fake_server_start(&f->fs);
    f->c = client_new(f->fs.path, &err);
    assert_non_null(f->c);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    client_free(f->c);
    fake_server_stop(&f->fs);
    free(f);
    return 0;
}

static void last(struct fixture *f, char *method, char *uri, char *ctype, char *body)
{
    fake_server_last(&f->fs, method, 16, uri, 2048, ctype, 128, body, 4096);
}

/* --- success ----------------------------------------------------------------*/

static void test_health_ok(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    char method[16], uri[2048];

    fake_server_route(&f->fs, "GET", "/v1/health", 200, NULL,
                      "{\"version\": \"0.1.0\", \"uptime_ms\": 1234, "
                      "\"libvirt\": \"connected\", \"services\": 1, \"vms\": 2}");
    assert_int_equal(client_health(f->c, &res, &err), 0);
    assert_non_null(res);
    assert_string_equal(json_string_value(json_object_get(res, "version")), "0.1.0");
    assert_int_equal(json_integer_value(json_object_get(res, "vms")), 2);
    assert_int_equal(client_last_status(f->c), 200);
    assert_null(client_last_error(f->c));
    last(f, method, uri, NULL, NULL);
    assert_string_equal(method, "GET");
    assert_string_equal(uri, "/v1/health");
    json_decref(res);
}

static void test_generic_request_status(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    int status = -1;

    fake_server_route(&f->fs, "GET", "/v1/services", 200, NULL,
                      "{\"services\": []}");
    assert_int_equal(client_request(f->c, "GET", "/v1/services", NULL, NULL, 0,
                                    &status, &res, &err),
                     0);
    assert_int_equal(status, 200);
    assert_true(json_is_array(json_object_get(res, "services")));
    json_decref(res);

    /* json_response may be NULL when the caller only wants the status. */
    assert_int_equal(client_request(f->c, "GET", "/v1/services", NULL, NULL, 0,
                                    &status, NULL, &err),
                     0);
    /* A path must start with '/'. */
    assert_int_equal(client_request(f->c, "GET", "v1/services", NULL, NULL, 0,
                                    &status, &res, &err),
                     -1);
    assert_int_equal(err.code, CGV_E_INVALID);
    assert_null(res);
}

static void test_reuses_connection(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};

    fake_server_route(&f->fs, NULL, "*", 200, NULL, "{}");
    for (int i = 0; i < 5; i++)
        assert_int_equal(client_health(f->c, NULL, &err), 0);
    pthread_mutex_lock(&f->fs.lock);
    assert_int_equal(f->fs.requests, 5);
    assert_int_equal(f->fs.connections, 1);
    pthread_mutex_unlock(&f->fs.lock);
}

static void test_apply_sends_spec(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    const char spec[] = "name: demo\ninstances: 2\n";
    char method[16], uri[2048], ctype[128], body[4096];

    fake_server_route(&f->fs, "POST", "/v1/apply", 200, NULL,
                      "{\"service\": \"demo\", \"result\": \"created\", "
                      "\"vms\": [\"demo-0\", \"demo-1\"], \"duration_ms\": 812}");
    assert_int_equal(client_apply(f->c, spec, strlen(spec), NULL, false, &res, &err), 0);
    assert_string_equal(json_string_value(json_object_get(res, "result")), "created");
    assert_int_equal(json_array_size(json_object_get(res, "vms")), 2);
    json_decref(res);
    last(f, method, uri, ctype, body);
    assert_string_equal(method, "POST");
    assert_string_equal(uri, "/v1/apply");
    assert_string_equal(ctype, "application/yaml");
    assert_string_equal(body, spec);

    assert_int_equal(client_apply(f->c, "{\"name\": \"demo\"}", 16, "application/json",
                                  true, &res, &err),
                     0);
    json_decref(res);
    last(f, method, uri, ctype, body);
    assert_string_equal(uri, "/v1/apply?dry_run=1");
    assert_string_equal(ctype, "application/json");
    assert_string_equal(body, "{\"name\": \"demo\"}");

    /* An empty spec is refused before sending. */
    assert_int_equal(client_apply(f->c, "", 0, NULL, false, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_INVALID);
}

static void test_services_and_vms(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    char method[16], uri[2048];

    fake_server_route(&f->fs, NULL, "*", 200, NULL, "{\"ok\": true}");

    assert_int_equal(client_services_list(f->c, &res, &err), 0);
    json_decref(res);
    last(f, method, uri, NULL, NULL);
    assert_string_equal(method, "GET");
    assert_string_equal(uri, "/v1/services");

    assert_int_equal(client_service_get(f->c, "demo", &res, &err), 0);
    json_decref(res);
    last(f, method, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/services/demo");

    assert_int_equal(client_service_delete(f->c, "demo", &res, &err), 0);
    json_decref(res);
    last(f, method, uri, NULL, NULL);
    assert_string_equal(method, "DELETE");
    assert_string_equal(uri, "/v1/services/demo");

    assert_int_equal(client_vms_list(f->c, &res, &err), 0);
    json_decref(res);
    last(f, method, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/vms");

    /* Names are escaped as one path segment. */
    assert_int_equal(client_vm_get(f->c, "a/b c", &res, &err), 0);
    json_decref(res);
    last(f, method, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/vms/a%2Fb%20c");

    assert_int_equal(client_vm_get(f->c, "", &res, &err), -1);
    assert_int_equal(err.code, CGV_E_INVALID);
    assert_null(res);
}

static void test_vm_op(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    char method[16], uri[2048], ctype[128], body[4096];

    fake_server_route(&f->fs, "POST", "/v1/vms/*", 200, NULL,
                      "{\"vm\": \"demo-0\", \"op\": \"pause\", \"state\": \"paused\", "
                      "\"duration_ms\": 24}");
    assert_int_equal(client_vm_op(f->c, "demo-0", "pause", 0, &res, &err), 0);
    assert_string_equal(json_string_value(json_object_get(res, "state")), "paused");
    json_decref(res);
    last(f, method, uri, ctype, body);
    assert_string_equal(method, "POST");
    assert_string_equal(uri, "/v1/vms/demo-0/pause");
    assert_string_equal(body, "");

    assert_int_equal(client_vm_op(f->c, "demo-0", "stop", 30000, &res, &err), 0);
    json_decref(res);
    last(f, method, uri, ctype, body);
    assert_string_equal(uri, "/v1/vms/demo-0/stop");
    assert_string_equal(ctype, "application/json");
    {
        json_t *b = json_loads(body, 0, NULL);
        assert_non_null(b);
        assert_int_equal(json_integer_value(json_object_get(b, "timeout_ms")), 30000);
        json_decref(b);
    }

    /* Reboot carries it too (the graceful budget); other operations not. */
    assert_int_equal(client_vm_op(f->c, "demo-0", "reboot", 5000, &res, &err), 0);
    json_decref(res);
    last(f, method, uri, ctype, body);
    assert_string_equal(uri, "/v1/vms/demo-0/reboot");
    assert_string_equal(body, "{\"timeout_ms\": 5000}");
    assert_int_equal(client_vm_op(f->c, "demo-0", "pause", 5000, &res, &err), 0);
    json_decref(res);
    last(f, method, uri, ctype, body);
    assert_string_equal(uri, "/v1/vms/demo-0/pause");
    assert_string_equal(body, "");

    assert_int_equal(client_vm_op(f->c, "demo-0", "explode", 0, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_INVALID);
    assert_null(res);
    assert_true(client_vm_op_valid("restore"));
    assert_false(client_vm_op_valid("Start"));
    assert_false(client_vm_op_valid(NULL));
}

static void test_events_query(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    char uri[2048];
    char *p;

    fake_server_route(&f->fs, "GET", "/v1/events", 200, NULL,
                      "{\"events\": [{\"id\": 7, \"type\": \"agent.hello\", "
                      "\"vm\": \"demo-0\"}], \"last_id\": 9}");
    assert_int_equal(client_events(f->c, 0, 0, 0, NULL, NULL, &res, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "last_id")), 9);
    json_decref(res);
    last(f, NULL, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/events");

    assert_int_equal(client_events(f->c, 42, 30000, 100, "demo", "demo-0", &res, &err), 0);
    json_decref(res);
    last(f, NULL, uri, NULL, NULL);
    assert_string_equal(uri,
                        "/v1/events?after=42&wait_ms=30000&limit=100&service=demo&vm=demo-0");

    /* Names with characters that mean something in a query are escaped. */
    assert_int_equal(client_events(f->c, 1, 0, 0, "a b&c=d", "x/y?z#", &res, &err), 0);
    json_decref(res);
    last(f, NULL, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/events?after=1&service=a%20b%26c%3Dd&vm=x%2Fy%3Fz%23");

    p = client_events_path(0, 0, 5, NULL, "v");
    assert_string_equal(p, "/v1/events?limit=5&vm=v");
    free(p);
}

static void test_console_log(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    char *text = NULL;
    size_t len = 0;
    char uri[2048];

    fake_server_route(&f->fs, "GET", "/v1/vms/demo-0/console-log", 200, "text/plain",
                      "login: \nwelcome\n");
    assert_int_equal(client_console_log(f->c, "demo-0", 0, &text, &len, &err), 0);
    assert_string_equal(text, "login: \nwelcome\n");
    assert_int_equal(len, 16);
    free(text);
    last(f, NULL, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/vms/demo-0/console-log");

    assert_int_equal(client_console_log(f->c, "demo-0", 4096, &text, &len, &err), 0);
    free(text);
    last(f, NULL, uri, NULL, NULL);
    assert_string_equal(uri, "/v1/vms/demo-0/console-log?bytes=4096");
}

/* --- error answers ----------------------------------------------------------*/

static void test_error_codes(void **state)
{
    struct fixture *f = *state;
    static const struct {
        int status;
        const char *code;
        enum cgv_errcode want;
    } cases[] = {
        {400, "invalid", CGV_E_INVALID},     {403, "denied", CGV_E_DENIED},
        {404, "not-found", CGV_E_NOTFOUND},  {409, "conflict", CGV_E_CONFLICT},
        {500, "internal", CGV_E_INTERNAL},   {502, "libvirt", CGV_E_LIBVIRT},
        {500, "io", CGV_E_IO},               {503, "unavailable", CGV_E_UNAVAIL},
        {405, "invalid", CGV_E_INVALID},     {413, "invalid", CGV_E_INVALID},
        /* The body's code wins over the status... */
        {500, "conflict", CGV_E_CONFLICT},
        /* ...unless cgvd sent one we do not know: then the status decides. */
        {404, "gone-fishing", CGV_E_NOTFOUND}, {502, NULL, CGV_E_LIBVIRT},
        {409, NULL, CGV_E_CONFLICT},         {418, NULL, CGV_E_INTERNAL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cgv_error err = {0};
        json_t *res = (json_t *)1;
        char body[256], want_msg[64];
        int status = 0;

        snprintf(want_msg, sizeof(want_msg), "message number %zu", i);
        if (cases[i].code)
            snprintf(body, sizeof(body),
                     "{\"error\": {\"code\": \"%s\", \"message\": \"%s\"}}",
                     cases[i].code, want_msg);
        else
            snprintf(body, sizeof(body), "{\"error\": {\"message\": \"%s\"}}", want_msg);
        fake_server_reset(&f->fs);
        fake_server_route(&f->fs, NULL, "*", cases[i].status, NULL, body);
        assert_int_equal(client_request(f->c, "GET", "/v1/x", NULL, NULL, 0, &status,
                                        &res, &err),
                         -1);
        assert_null(res);
        assert_int_equal(status, cases[i].status);
        assert_int_equal(client_last_status(f->c), cases[i].status);
        if (err.code != cases[i].want)
            fail_msg("case %zu (HTTP %d, %s): got %s", i, cases[i].status,
                     cases[i].code ? cases[i].code : "-", cgv_errcode_name(err.code));
        assert_string_equal(err.msg, want_msg);
        assert_non_null(client_last_error(f->c));
        assert_null(client_last_error_details(f->c));
    }
}

static void test_error_body_not_json(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;

    fake_server_route(&f->fs, NULL, "*", 502, "text/html",
                      "<html>Bad Gateway</html>\nmore");
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_LIBVIRT);
    assert_non_null(strstr(err.msg, "HTTP 502"));
    assert_non_null(strstr(err.msg, "<html>Bad Gateway</html>"));
    assert_null(strstr(err.msg, "more"));
    assert_null(client_last_error(f->c));

    fake_server_reset(&f->fs);
    fake_server_route(&f->fs, NULL, "*", 403, NULL, "");
    cgv_err_clear(&err);
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_DENIED);
    assert_non_null(strstr(err.msg, "HTTP 403"));
}

static void test_validation_details(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;
    const json_t *details, *d;

    fake_server_route(&f->fs, "POST", "/v1/apply", 400, NULL,
                      "{\"error\": {\"code\": \"invalid\", "
                      "\"message\": \"invalid spec: 2 problems\", \"details\": ["
                      "{\"path\": \"instances\", \"line\": 3, \"column\": 12, "
                      "\"message\": \"must be between 1 and 64, got 0\"},"
                      "{\"path\": \"networks[0].addresses[1]\", \"line\": 7, "
                      "\"column\": 5, \"message\": \"not an IPv4 address\"}]}}");
    assert_int_equal(client_apply(f->c, "x", 1, NULL, false, &res, &err), -1);
    assert_null(res);
    assert_int_equal(err.code, CGV_E_INVALID);
    assert_string_equal(err.msg, "invalid spec: 2 problems");
    details = client_last_error_details(f->c);
    assert_non_null(details);
    assert_int_equal(json_array_size(details), 2);
    d = json_array_get(details, 1);
    assert_string_equal(json_string_value(json_object_get(d, "path")),
                        "networks[0].addresses[1]");
    assert_int_equal(json_integer_value(json_object_get(d, "line")), 7);
    assert_int_equal(json_integer_value(json_object_get(d, "column")), 5);
    assert_string_equal(json_string_value(json_object_get(d, "message")),
                        "not an IPv4 address");

    /* The next successful request forgets them. */
    fake_server_route(&f->fs, "GET", "/v1/health", 200, NULL, "{}");
    assert_int_equal(client_health(f->c, NULL, &err), 0);
    assert_null(client_last_error(f->c));
    assert_null(client_last_error_details(f->c));
}

static void test_errcode_tables(void **state)
{
    (void)state;
    assert_int_equal(client_errcode_from_name("not-found"), CGV_E_NOTFOUND);
    assert_int_equal(client_errcode_from_name("unavailable"), CGV_E_UNAVAIL);
    assert_int_equal(client_errcode_from_name("ok"), CGV_OK);
    assert_int_equal(client_errcode_from_name("nonsense"), CGV_OK);
    assert_int_equal(client_errcode_from_name(NULL), CGV_OK);
    assert_int_equal(client_errcode_from_status(400), CGV_E_INVALID);
    assert_int_equal(client_errcode_from_status(403), CGV_E_DENIED);
    assert_int_equal(client_errcode_from_status(404), CGV_E_NOTFOUND);
    assert_int_equal(client_errcode_from_status(405), CGV_E_INVALID);
    assert_int_equal(client_errcode_from_status(409), CGV_E_CONFLICT);
    assert_int_equal(client_errcode_from_status(413), CGV_E_INVALID);
    assert_int_equal(client_errcode_from_status(500), CGV_E_INTERNAL);
    assert_int_equal(client_errcode_from_status(502), CGV_E_LIBVIRT);
    assert_int_equal(client_errcode_from_status(503), CGV_E_UNAVAIL);
}

/* --- bad answers ------------------------------------------------------------*/

static void test_success_not_json(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;

    fake_server_route(&f->fs, "GET", "/v1/health", 200, "text/plain", "hello there");
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_null(res);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_non_null(strstr(err.msg, "bad response from cgvd"));
    assert_non_null(strstr(err.msg, "not JSON"));

    fake_server_reset(&f->fs);
    fake_server_route(&f->fs, "GET", "/v1/health", 200, NULL, "[1, 2]");
    cgv_err_clear(&err);
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_non_null(strstr(err.msg, "not an object"));

    fake_server_reset(&f->fs);
    fake_server_route(&f->fs, "GET", "/v1/health", 200, NULL, "");
    cgv_err_clear(&err);
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_non_null(strstr(err.msg, "empty"));
}

static void test_oversize(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    json_t *res = NULL;

    /* With Content-Length: refused before reading. */
    fake_server_route_big(&f->fs, "GET", "/v1/health", CLIENT_MAX_RESPONSE + 1, false);
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_null(res);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_non_null(strstr(err.msg, "larger than 16777216 bytes"));

    /* Chunked: cut off while reading. */
    fake_server_reset(&f->fs);
    fake_server_route_big(&f->fs, "GET", "/v1/health", 300000, true);
    client_set_max_response(f->c, 100000);
    cgv_err_clear(&err);
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_non_null(strstr(err.msg, "larger than 100000 bytes"));

    /* Exactly at the limit is fine (and then not JSON). */
    fake_server_reset(&f->fs);
    fake_server_route_big(&f->fs, "GET", "/v1/health", 100000, true);
    cgv_err_clear(&err);
    assert_int_equal(client_health(f->c, &res, &err), -1);
    assert_non_null(strstr(err.msg, "not JSON"));

    /* The client still works afterwards. */
    fake_server_reset(&f->fs);
    fake_server_route(&f->fs, "GET", "/v1/health", 200, NULL, "{}");
    assert_int_equal(client_health(f->c, &res, &err), 0);
    json_decref(res);
}

static void test_garbage_http(void **state)
{
    struct fixture *f = *state;
    struct raw_server rs;
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    char path[128];
    static const char garbage[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";

    snprintf(path, sizeof(path), "%s/raw.sock", f->fs.dir);
    raw_server_start(&rs, path, garbage, strlen(garbage));
    c = client_new(path, &err);
    assert_non_null(c);
    assert_int_equal(client_health(c, &res, &err), -1);
    raw_server_stop(&rs);
    assert_null(res);
    assert_int_equal(client_last_status(c), 0);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_non_null(strstr(err.msg, "bad response from cgvd"));
    client_free(c);
}

static void test_truncated_answer(void **state)
{
    struct fixture *f = *state;
    struct raw_server rs;
    struct cgv_error err = {0};
    struct client *c;
    char path[128];
    static const char partial[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  "Content-Length: 100\r\n\r\n{\"vers";

    snprintf(path, sizeof(path), "%s/raw.sock", f->fs.dir);
    raw_server_start(&rs, path, partial, strlen(partial));
    c = client_new(path, &err);
    assert_int_equal(client_health(c, NULL, &err), -1);
    raw_server_stop(&rs);
    assert_int_equal(err.code, CGV_E_UNAVAIL);
    assert_non_null(strstr(err.msg, "lost"));
    client_free(c);
}

static void test_connection_closed_without_answer(void **state)
{
    struct fixture *f = *state;
    struct raw_server rs;
    struct cgv_error err = {0};
    struct client *c;
    char path[128];

    snprintf(path, sizeof(path), "%s/raw.sock", f->fs.dir);
    raw_server_start(&rs, path, "", 0);
    c = client_new(path, &err);
    assert_int_equal(client_health(c, NULL, &err), -1);
    raw_server_stop(&rs);
    assert_int_equal(err.code, CGV_E_UNAVAIL);
    assert_int_equal(client_last_status(c), 0);
    client_free(c);
}

/* --- cannot connect ---------------------------------------------------------*/

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    struct sockaddr_un sun;
    struct client *c;
    json_t *res = NULL;
    char path[128];
    int fd;

    /* A socket file nobody listens on: ECONNREFUSED. */
    snprintf(path, sizeof(path), "%s/dead.sock", f->fs.dir);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    c = client_new(path, &err);
    assert_non_null(c);
    assert_int_equal(client_health(c, &res, &err), -1);
    close(fd);
    unlink(path);
    assert_null(res);
    assert_int_equal(err.code, CGV_E_UNAVAIL);
    assert_int_equal(client_last_status(c), 0);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "is cgvd running?"));
    assert_non_null(strstr(err.msg, "refused"));
    client_free(c);
}

static void test_connect_missing(void **state)
{
    struct cgv_error err = {0};
    struct client *c;

    (void)state;
    c = client_new("/nonexistent/cgv-test/cgvd.sock", &err);
    assert_non_null(c);
    assert_int_equal(client_services_list(c, NULL, &err), -1);
    assert_int_equal(err.code, CGV_E_UNAVAIL);
    assert_non_null(strstr(err.msg, "/nonexistent/cgv-test/cgvd.sock"));
    assert_non_null(strstr(err.msg, "is cgvd running?"));
    client_free(c);
}

static void test_client_new(void **state)
{
    struct cgv_error err = {0};
    struct client *c;
    char longpath[200];

    (void)state;
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_null(client_new(longpath, &err));
    assert_int_equal(err.code, CGV_E_INVALID);

    setenv(CLIENT_SOCKET_ENV, "/tmp/somewhere.sock", 1);
    assert_string_equal(client_default_socket(), "/tmp/somewhere.sock");
    c = client_new(NULL, &err);
    assert_string_equal(client_socket_path(c), "/tmp/somewhere.sock");
    client_free(c);
    setenv(CLIENT_SOCKET_ENV, "", 1);
    assert_string_equal(client_default_socket(), CLIENT_DEFAULT_SOCKET);
    unsetenv(CLIENT_SOCKET_ENV);
    assert_string_equal(client_default_socket(), CLIENT_DEFAULT_SOCKET);
    client_free(NULL);
}

static void test_cancel_flag(void **state)
{
    struct fixture *f = *state;
    struct cgv_error err = {0};
    volatile sig_atomic_t flag = 1;

    fake_server_route(&f->fs, NULL, "*", 200, NULL, "{}");
    client_set_cancel_flag(f->c, &flag);
    assert_int_equal(client_health(f->c, NULL, &err), -1);
    assert_string_equal(err.msg, "interrupted");
    flag = 0;
    assert_int_equal(client_health(f->c, NULL, &err), 0);
    client_set_cancel_flag(f->c, NULL);
}

static void test_escape(void **state)
{
    char *e;

    (void)state;
    e = client_escape("demo-0");
    assert_string_equal(e, "demo-0");
    free(e);
    e = client_escape("a b/c?d&e=f%");
    assert_string_equal(e, "a%20b%2Fc%3Fd%26e%3Df%25");
    free(e);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_health_ok),
        T(test_generic_request_status),
        T(test_reuses_connection),
        T(test_apply_sends_spec),
        T(test_services_and_vms),
        T(test_vm_op),
        T(test_events_query),
        T(test_console_log),
        T(test_error_codes),
        T(test_error_body_not_json),
        T(test_validation_details),
        cmocka_unit_test(test_errcode_tables),
        T(test_success_not_json),
        T(test_oversize),
        T(test_garbage_http),
        T(test_truncated_answer),
        T(test_connection_closed_without_answer),
        T(test_connect_refused),
        cmocka_unit_test(test_connect_missing),
        cmocka_unit_test(test_client_new),
        T(test_cancel_flag),
        cmocka_unit_test(test_escape),
    };
#undef T
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
