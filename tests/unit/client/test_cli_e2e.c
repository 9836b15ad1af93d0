/* End-to-end tests of the cgv binary (path in $CGV_BIN) against the fake cgvd:
 * exit codes, what goes to stdout and stderr, and the requests it sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"

extern char **environ;

struct fixture {
    struct fake_server fs;
    char tmp[64]; /* scratch dir for spec files and captured output */
    char out_path[128], err_path[128];
    char *out, *err; /* what the last run printed */
};

static const char *cgv_bin;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    fake_server_start(&f->fs);
    strcpy(f->tmp, "/tmp/cgv-cli-test.XXXXXX");
    assert_non_null(mkdtemp(f->tmp));
    snprintf(f->out_path, sizeof(f->out_path), "%s/stdout", f->tmp);
    snprintf(f->err_path, sizeof(f->err_path), "%s/stderr", f->tmp);
    setenv("CGV_SOCKET", f->fs.path, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[256];

    fake_server_stop(&f->fs);
    free(f->out);
    free(f->err);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->tmp);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;

    assert_non_null(fp);
    n = getdelim(&buf, &cap, '\0', fp);
    fclose(fp);
    if (n < 0) {
        free(buf);
        buf = calloc(1, 1);
    }
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Run cgv with args (NULL-terminated) and stdin from stdin_path (NULL:
 * /dev/null); returns its exit code, output in f->out / f->err. */
static int run_in(struct fixture *f, const char *stdin_path, const char *const *args)
{
    posix_spawn_file_actions_t fa;
    char *argv[32];
    size_t n = 0;
    pid_t pid;
    int status;

    argv[n++] = (char *)cgv_bin;
    for (; *args && n < 31; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, stdin_path ? stdin_path : "/dev/null",
                                     O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, f->out_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&fa, 2, f->err_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    assert_int_equal(posix_spawn(&pid, cgv_bin, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(f->out);
    free(f->err);
    f->out = slurp(f->out_path);
    f->err = slurp(f->err_path);
    if (!WIFEXITED(status))
        fail_msg("cgv died with signal %d; stderr: %s", WTERMSIG(status), f->err);
    return WEXITSTATUS(status);
}

#define RUN(f, ...) run_in((f), NULL, (const char *const[]){__VA_ARGS__, NULL})
#define RUN_STDIN(f, in, ...) run_in((f), (in), (const char *const[]){__VA_ARGS__, NULL})

static void expect_rc(struct fixture *f, int got, int want)
{
    if (got != want)
        fail_msg("exit code %d, want %d\nstdout: %s\nstderr: %s", got, want, f->out,
                 f->err);
}

static const char services_json[] =
    "{\"services\": [{\"name\": \"demo\", \"generation\": 1, \"vms\": ["
    "{\"name\": \"demo-0\", \"service\": \"demo\", \"state\": \"running\","
    " \"desired\": \"running\", \"busy\": null, \"addresses\": [\"10.77.0.100\"],"
    " \"agent\": {\"state\": \"up\", \"last_heartbeat_age_ms\": 420}}]}]}";

static const char invalid_json[] =
    "{\"error\": {\"code\": \"invalid\", \"message\": \"invalid spec: 2 problems\","
    " \"details\": [{\"path\": \"instances\", \"line\": 3, \"column\": 12,"
    " \"message\": \"must be between 1 and 64, got 0\"},"
    " {\"path\": \"memory\", \"line\": 4, \"column\": 9, \"message\": \"too small\"}]}}";

static void test_status(void **state)
{
    struct fixture *f = *state;
    json_t *doc;

    fake_server_route(&f->fs, "GET", "/v1/services", 200, NULL, services_json);
    fake_server_route(&f->fs, "GET", "/v1/services/nosuch", 404, NULL,
                      "{\"error\": {\"code\": \"not-found\", "
                      "\"message\": \"no such service: nosuch\"}}");

    expect_rc(f, RUN(f, "status"), 0);
    assert_non_null(strstr(f->out, "SERVICE  VM      STATE    ROLE  AGENT"));
    assert_non_null(strstr(f->out, "demo     demo-0  running  -     up     0.4s ago   10.77.0.100"));
    assert_string_equal(f->err, "");

    expect_rc(f, RUN(f, "status", "--json"), 0);
    doc = json_loads(f->out, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "services")), 1);
    json_decref(doc);

    /* Global options go before the command too. */
    expect_rc(f, RUN(f, "--json", "status"), 0);
    assert_true(f->out[0] == '{');

    expect_rc(f, RUN(f, "status", "nosuch"), 3);
    assert_string_equal(f->out, "");
    assert_string_equal(f->err, "cgv: no such service: nosuch\n");
}

static void test_apply(void **state)
{
    struct fixture *f = *state;
    char spec[160], json_spec[160], method[16], uri[2048], ctype[128], body[4096];

    snprintf(spec, sizeof(spec), "%s/demo.yaml", f->tmp);
    write_file(spec, "name: demo\ninstances: 0\n");
    snprintf(json_spec, sizeof(json_spec), "%s/demo.json", f->tmp);
    write_file(json_spec, "{\"name\": \"demo\"}\n");

    fake_server_route(&f->fs, "POST", "/v1/apply", 400, NULL, invalid_json);
    expect_rc(f, RUN(f, "apply", "-f", spec), 4);
    {
        char want[1024];
        snprintf(want, sizeof(want),
                 "%s:3:12: instances: must be between 1 and 64, got 0\n"
                 "%s:4:9: memory: too small\n"
                 "cgv: %s: invalid spec: 2 problems\n",
                 spec, spec, spec);
        assert_string_equal(f->err, want);
    }
    assert_string_equal(f->out, "");
    fake_server_last(&f->fs, method, sizeof(method), uri, sizeof(uri), ctype,
                     sizeof(ctype), body, sizeof(body));
    assert_string_equal(method, "POST");
    assert_string_equal(ctype, "application/yaml");
    assert_string_equal(body, "name: demo\ninstances: 0\n");

    fake_server_reset(&f->fs);
    fake_server_route(&f->fs, "POST", "/v1/apply", 200, NULL,
                      "{\"service\": \"demo\", \"result\": \"valid\", \"vms\": [\"demo-0\"]}");
    expect_rc(f, RUN(f, "apply", "--dry-run", "-f", json_spec), 0);
    assert_string_equal(f->out, "demo: valid (dry run), VM: demo-0\n");
    fake_server_last(&f->fs, NULL, 0, uri, sizeof(uri), ctype, sizeof(ctype), NULL, 0);
    assert_string_equal(uri, "/v1/apply?dry_run=1");
    assert_string_equal(ctype, "application/json");

    /* From stdin, JSON recognised by content. */
    expect_rc(f, RUN_STDIN(f, json_spec, "apply", "-f", "-"), 0);
    fake_server_last(&f->fs, NULL, 0, uri, sizeof(uri), ctype, sizeof(ctype), body,
                     sizeof(body));
    assert_string_equal(uri, "/v1/apply");
    assert_string_equal(ctype, "application/json");
    assert_string_equal(body, "{\"name\": \"demo\"}\n");

    /* Local problems. */
    expect_rc(f, RUN(f, "apply"), 2);
    expect_rc(f, RUN(f, "apply", "-f", "/nonexistent/spec.yaml"), 2);
    assert_non_null(strstr(f->err, "/nonexistent/spec.yaml"));
    expect_rc(f, RUN(f, "apply", "-f", spec, "--wait", "--dry-run"), 2);
    expect_rc(f, RUN(f, "apply", "-f", spec, "--timeout", "soon"), 2);
}

static void test_apply_wait(void **state)
{
    struct fixture *f = *state;
    char spec[160];

    snprintf(spec, sizeof(spec), "%s/demo.yaml", f->tmp);
    write_file(spec, "name: demo\ninstances: 2\n");
    fake_server_route(&f->fs, "POST", "/v1/apply", 200, NULL,
                      "{\"service\": \"demo\", \"result\": \"created\","
                      " \"vms\": [\"demo-0\", \"demo-1\"], \"duration_ms\": 812}");
    fake_server_route(&f->fs, "GET", "/v1/vms/demo-0", 200, NULL,
                      "{\"name\": \"demo-0\", \"agent\": {\"state\": \"up\"}}");
    fake_server_route(&f->fs, "GET", "/v1/vms/demo-1", 200, NULL,
                      "{\"name\": \"demo-1\", \"agent\": {\"state\": \"never\"}}");
    fake_server_route(&f->fs, "GET", "/v1/events", 200, NULL,
                      "{\"events\": [{\"id\": 5, \"type\": \"agent.hello\","
                      " \"service\": \"demo\", \"vm\": \"demo-1\"}], \"last_id\": 5}");
    expect_rc(f, RUN(f, "apply", "-f", spec, "--wait", "--timeout", "20"), 0);
    assert_non_null(strstr(f->out, "demo: created (812 ms), VMs: demo-0, demo-1\n"));
    assert_non_null(strstr(f->out, "demo-0: agent up"));
    assert_non_null(strstr(f->out, "demo-1: agent up"));
    assert_non_null(strstr(f->out, "demo: 2 of 2 agents up"));

    /* An agent that never comes: the deadline passes, exit 1. */
    fake_server_reset(&f->fs);
    fake_server_route(&f->fs, "POST", "/v1/apply", 200, NULL,
                      "{\"service\": \"demo\", \"result\": \"updated\","
                      " \"vms\": [\"demo-1\"], \"duration_ms\": 5}");
    fake_server_route(&f->fs, "GET", "/v1/vms/demo-1", 200, NULL,
                      "{\"name\": \"demo-1\", \"agent\": {\"state\": \"never\"}}");
    fake_server_route(&f->fs, "GET", "/v1/events", 200, NULL,
                      "{\"events\": [], \"last_id\": 5}");
    expect_rc(f, RUN(f, "apply", "-f", spec, "--wait", "--timeout", "300ms"), 1);
    assert_non_null(strstr(f->err, "timed out waiting for the agent of: demo-1"));
}

static void test_vm_ops(void **state)
{
    struct fixture *f = *state;
    static const struct {
        int status;
        const char *code;
        int want;
    } errs[] = {
        {409, "conflict", 5}, {403, "denied", 7}, {404, "not-found", 3},
        {500, "internal", 1}, {502, "libvirt", 1}, {500, "io", 1},
        {503, "unavailable", 1}, {400, "invalid", 4},
    };
    char body[256], uri[2048];

    fake_server_route(&f->fs, "POST", "/v1/vms/demo-0/pause", 200, NULL,
                      "{\"vm\": \"demo-0\", \"op\": \"pause\", \"state\": \"paused\","
                      " \"duration_ms\": 24}");
    expect_rc(f, RUN(f, "vm", "pause", "demo-0"), 0);
    assert_string_equal(f->out, "demo-0: paused (24 ms)\n");

    fake_server_route(&f->fs, "POST", "/v1/vms/demo-0/stop", 200, NULL,
                      "{\"vm\": \"demo-0\", \"op\": \"stop\", \"state\": \"shutoff\","
                      " \"duration_ms\": 1200}");
    expect_rc(f, RUN(f, "vm", "stop", "demo-0", "--timeout", "30"), 0);
    assert_string_equal(f->out, "demo-0: shutoff (1.2 s)\n");
    fake_server_last(&f->fs, NULL, 0, uri, sizeof(uri), NULL, 0, body, sizeof(body));
    assert_string_equal(uri, "/v1/vms/demo-0/stop");
    assert_non_null(strstr(body, "\"timeout_ms\": 30000"));

    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        fake_server_reset(&f->fs);
        snprintf(body, sizeof(body),
                 "{\"error\": {\"code\": \"%s\", \"message\": \"failure %zu\"}}",
                 errs[i].code, i);
        fake_server_route(&f->fs, NULL, "*", errs[i].status, NULL, body);
        expect_rc(f, RUN(f, "vm", "resume", "demo-0"), errs[i].want);
        snprintf(body, sizeof(body), "cgv: failure %zu\n", i);
        assert_string_equal(f->err, body);
        assert_string_equal(f->out, "");
    }

    expect_rc(f, RUN(f, "vm", "fly", "demo-0"), 2);
    expect_rc(f, RUN(f, "vm", "start"), 2);
    expect_rc(f, RUN(f, "vm"), 2);
}

static void test_unreachable(void **state)
{
    struct fixture *f = *state;

    expect_rc(f, RUN(f, "--socket", "/nonexistent/cgvd.sock", "health"), 6);
    assert_non_null(strstr(f->err, "cgv: cannot connect to cgvd at /nonexistent/cgvd.sock"));
    assert_non_null(strstr(f->err, "is cgvd running?"));

    /* --socket after the command works too; version still prints cgv's. */
    expect_rc(f, RUN(f, "version", "--socket", "/nonexistent/cgvd.sock"), 6);
    assert_string_equal(f->out, "cgv  0.1.0\n");
}

static void test_usage_and_help(void **state)
{
    struct fixture *f = *state;
    static const char *const cmds[] = {"apply", "delete", "status", "vm", "events",
                                       "console", "health", "version"};

    expect_rc(f, RUN(f, "--version"), 0);
    assert_string_equal(f->out, "cgv 0.1.0\n");
    expect_rc(f, RUN(f, "--help"), 0);
    assert_non_null(strstr(f->out, "Exit codes:"));
    assert_non_null(strstr(f->out, "6    cannot reach cgvd"));
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        expect_rc(f, RUN(f, cmds[i], "--help"), 0);
        assert_non_null(strstr(f->out, "Usage: cgv "));
        assert_string_equal(f->err, "");
        expect_rc(f, RUN(f, "help", cmds[i]), 0);
        assert_non_null(strstr(f->out, "Usage: cgv "));
    }
    expect_rc(f, RUN(f, "vm", "save", "-h"), 0);
    assert_non_null(strstr(f->out, "Usage: cgv vm save NAME"));

    expect_rc(f, RUN(f, "frobnicate"), 2);
    assert_non_null(strstr(f->err, "unknown command 'frobnicate'"));
    expect_rc(f, RUN(f, "status", "--bogus"), 2);
    assert_non_null(strstr(f->err, "Try 'cgv status --help'"));
    expect_rc(f, RUN(f, "events", "--after", "x"), 2);
    expect_rc(f, RUN(f, "delete"), 2);
    expect_rc(f, RUN(f, "status", "a", "b"), 2);
    expect_rc(f, RUN(f, "--socket"), 2);
    {
        const char *const none[] = {NULL};
        expect_rc(f, run_in(f, NULL, none), 2);
    }
    /* No request went to cgvd for any of these. */
    pthread_mutex_lock(&f->fs.lock);
    assert_int_equal(f->fs.requests, 0);
    pthread_mutex_unlock(&f->fs.lock);
}

static void test_events(void **state)
{
    struct fixture *f = *state;
    char uri[2048];

    fake_server_route(&f->fs, "GET", "/v1/events", 200, NULL,
                      "{\"events\": ["
                      "{\"id\": 1, \"time\": \"2026-11-23T10:42:07.123Z\", \"severity\": \"info\","
                      " \"type\": \"vm.started\", \"service\": \"demo\", \"vm\": \"demo-0\","
                      " \"message\": \"started\"},"
                      "{\"id\": 2, \"time\": \"2026-11-23T10:42:08.000Z\", \"severity\": \"info\","
                      " \"type\": \"agent.hello\", \"service\": \"demo\", \"vm\": \"demo-0\","
                      " \"message\": \"agent up\"}], \"last_id\": 2}");
    expect_rc(f, RUN(f, "events"), 0);
    assert_string_equal(f->out,
                        "2026-11-23T10:42:07.123Z info  vm.started           demo-0     started\n"
                        "2026-11-23T10:42:08.000Z info  agent.hello          demo-0     agent up\n");

    expect_rc(f, RUN(f, "events", "--json", "--after", "0"), 0);
    {
        char *nl = strchr(f->out, '\n');
        json_t *ev;
        assert_non_null(nl);
        *nl = '\0';
        ev = json_loads(f->out, 0, NULL);
        assert_non_null(ev);
        assert_int_equal(json_integer_value(json_object_get(ev, "id")), 1);
        json_decref(ev);
        assert_non_null(strchr(nl + 1, '\n'));
    }

    expect_rc(f, RUN(f, "events", "--after", "17", "--service", "a b", "--vm", "c&d"), 0);
    fake_server_last(&f->fs, NULL, 0, uri, sizeof(uri), NULL, 0, NULL, 0);
    assert_string_equal(uri, "/v1/events?after=17&limit=1000&service=a%20b&vm=c%26d");
}

static void test_delete_health(void **state)
{
    struct fixture *f = *state;
    char method[16];

    fake_server_route(&f->fs, "DELETE", "/v1/services/demo", 200, NULL,
                      "{\"service\": \"demo\", \"result\": \"deleted\","
                      " \"vms\": [\"demo-0\", \"demo-1\"]}");
    fake_server_route(&f->fs, "GET", "/v1/health", 200, NULL,
                      "{\"version\": \"0.1.0\", \"uptime_ms\": 1234, \"libvirt\": \"connected\","
                      " \"host\": \"h\", \"acceleration\": \"kvm\", \"services\": 1, \"vms\": 2}");
    expect_rc(f, RUN(f, "delete", "demo"), 0);
    assert_string_equal(f->out, "demo: deleted, VMs: demo-0, demo-1\n");
    fake_server_last(&f->fs, method, sizeof(method), NULL, 0, NULL, 0, NULL, 0);
    assert_string_equal(method, "DELETE");

    expect_rc(f, RUN(f, "health"), 0);
    assert_non_null(strstr(f->out, "cgvd 0.1.0 on h, up 1.2 s\n"));
    expect_rc(f, RUN(f, "version"), 0);
    assert_string_equal(f->out, "cgv  0.1.0\ncgvd 0.1.0\n");
    expect_rc(f, RUN(f, "version", "--json"), 0);
    assert_non_null(strstr(f->out, "\"cgvd\": \"0.1.0\""));
}

/* A one-connection console: says "login: ", then echoes with a prefix. */
struct console_srv {
    int fd;
    pthread_t thread;
    char got[256];
};

static void *console_main(void *arg)
{
    struct console_srv *cs = arg;
    char buf[256], reply[300];
    size_t used = 0;
    int c = accept(cs->fd, NULL, NULL);

    if (c < 0)
        return NULL;
    (void)!write(c, "login: ", 7);
    for (;;) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0)
            break;
        if (used + (size_t)n < sizeof(cs->got)) {
            memcpy(cs->got + used, buf, (size_t)n);
            used += (size_t)n;
        }
        snprintf(reply, sizeof(reply), "echo:%.*s", (int)n, buf);
        (void)!write(c, reply, strlen(reply));
    }
    close(c);
    return NULL;
}

static void test_console(void **state)
{
    struct fixture *f = *state;
    struct console_srv cs;
    struct sockaddr_un sun;
    char sock[128], vm[512], in[160];

    memset(&cs, 0, sizeof(cs));
    snprintf(sock, sizeof(sock), "%s/console.sock", f->tmp);
    cs.fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, sock);
    assert_int_equal(bind(cs.fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(cs.fd, 1), 0);
    assert_int_equal(pthread_create(&cs.thread, NULL, console_main, &cs), 0);

    snprintf(vm, sizeof(vm),
             "{\"name\": \"demo-0\", \"state\": \"running\", \"console_socket\": \"%s\"}",
             sock);
    fake_server_route(&f->fs, "GET", "/v1/vms/demo-0", 200, NULL, vm);
    fake_server_route(&f->fs, "GET", "/v1/vms/demo-1", 200, NULL,
                      "{\"name\": \"demo-1\", \"state\": \"shutoff\", \"console_socket\": null}");
    fake_server_route(&f->fs, "GET", "/v1/vms/demo-0/console-log", 200, "text/plain",
                      "boot log\nlogin: ");
    snprintf(in, sizeof(in), "%s/console-in", f->tmp);
    write_file(in, "root\n");

    expect_rc(f, RUN_STDIN(f, in, "console", "demo-0"), 0);
    pthread_join(cs.thread, NULL);
    close(cs.fd);
    assert_string_equal(cs.got, "root\n");
    assert_string_equal(f->out, "login: echo:root\n");

    expect_rc(f, RUN(f, "console", "demo-1"), 5);
    assert_non_null(strstr(f->err, "demo-1 has no console (state: shutoff)"));

    expect_rc(f, RUN(f, "console", "demo-0", "--log", "--bytes", "100"), 0);
    assert_string_equal(f->out, "boot log\nlogin: ");
    expect_rc(f, RUN(f, "console", "demo-0", "--bytes", "100"), 2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_status),    T(test_apply),         T(test_apply_wait),
        T(test_vm_ops),    T(test_unreachable),   T(test_usage_and_help),
        T(test_events),    T(test_delete_health), T(test_console),
    };
#undef T
    cgv_bin = getenv("CGV_BIN");
    if (!cgv_bin || !cgv_bin[0]) {
        fprintf(stderr, "CGV_BIN not set; run through meson test\n");
        return 77; /* skipped */
    }
    return cmocka_run_group_tests_name("cli_e2e", tests, NULL, NULL);
}
