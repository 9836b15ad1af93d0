/* cmd_service.c — cgv apply, cgv delete, cgv status. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <unistd.h>

/* cgvd refuses larger request bodies (413). */
#define CLI_MAX_SPEC (256 * 1024)
#define CLI_WAIT_DEFAULT_MS 300000

/* --- apply -----------------------------------------------------------------*/

static const char apply_help[] =
    "Usage: cgv apply -f FILE [--dry-run] [--wait] [--timeout SEC] [--json]\n"
    "\n"
    "Create the service described by FILE, or update it to match: scale the\n"
    "instance count up or down; other changes take effect when each VM next\n"
    "starts. FILE is YAML or JSON; '-' reads standard input.\n"
    "\n"
    "Options:\n"
    "  -f, --file FILE    the spec ('-' = stdin)\n"
    "  -n, --dry-run      only validate the spec, change nothing\n"
    "  -w, --wait         then wait until the agent of every VM of the service\n"
    "                     is up (agent.hello)\n"
    "  -t, --timeout SEC  give up after SEC seconds (default with --wait: 300)\n"
    "      --json         print cgvd's JSON answer\n"
    "      --socket PATH  cgvd's socket\n"
    "\n"
    "Validation problems are printed one per line as FILE:LINE:COL: PATH: MESSAGE\n"
    "and cgv exits with 4.\n"
    "\n"
    "Output: demo: created (812 ms), VMs: demo-0, demo-1\n";

/* The content type for a spec: by extension, else by its first character. */
static const char *spec_content_type(const char *file, const char *text, size_t len)
{
    const char *dot = strrchr(file, '.');

    if (dot && strcmp(dot, ".json") == 0)
        return "application/json";
    if (dot && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0))
        return "application/yaml";
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')
            continue;
        return text[i] == '{' ? "application/json" : "application/yaml";
    }
    return "application/yaml";
}

/* Read all of stdin, at most max bytes (CGV_E_INVALID if more). */
static int read_stdin(size_t max, char **out, size_t *len, struct cgv_error *err)
{
    CGV_AUTOFREE char *buf = cgv_malloc0(max + 2);
    size_t used = 0;

    for (;;) {
        ssize_t r = read(STDIN_FILENO, buf + used, max + 1 - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return cgv_err(err, CGV_E_IO, "read stdin: %s", strerror(errno));
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > max)
            return cgv_err(err, CGV_E_INVALID, "stdin is larger than %zu bytes", max);
    }
    buf[used] = '\0';
    *len = used;
    *out = cgv_steal_ptr(&buf);
    return 0;
}

/* Is this VM's agent up right now? */
static int agent_up_now(struct client *c, const char *vm, bool *up,
                        struct cgv_error *err)
{
    json_t *res = NULL;

    if (client_vm_get(c, vm, &res, err) < 0)
        return -1;
    *up = strcmp(json_string_value(json_object_get(json_object_get(res, "agent"),
                                                   "state")) ?: "",
                 "up") == 0;
    json_decref(res);
    return 0;
}

/* The newest event id cgvd has, to follow events from there on. */
static int events_cursor(struct client *c, int64_t *cursor, struct cgv_error *err)
{
    json_t *res = NULL;

    if (client_events(c, 0, 0, 1, NULL, NULL, &res, err) < 0)
        return -1;
    *cursor = (int64_t)json_integer_value(json_object_get(res, "last_id"));
    json_decref(res);
    return 0;
}

static bool event_is_trouble(const char *type)
{
    return strcmp(type, "vm.crashed") == 0 || strcmp(type, "vm.op_failed") == 0 ||
           strcmp(type, "agent.protocol_error") == 0 ||
           strcmp(type, "vm.stopped") == 0;
}

/* Wait until the agent of every VM in vms (a JSON array of names) is up. */
static int apply_wait(struct cli_ctx *ctx, struct client *c, const char *service,
                      const json_t *vms, int64_t cursor, int64_t start_ms,
                      int64_t deadline_ms)
{
    size_t n = json_array_size(vms), left = n;
    CGV_AUTOFREE bool *up = cgv_malloc0((n ? n : 1) * sizeof(bool));
    struct cgv_error err = {0};
    json_t *res = NULL;
    char dur[32];
    bool recheck = true;
    int rc = CLI_EXIT_FAILED;
    const long limit = 1000;

    while (left > 0) {
        int64_t now = cgv_mono_ms();
        const json_t *evs;

        if (recheck) {
            /* The agent may be up already (unchanged service), or its
             * agent.hello may have scrolled out of cgvd's event buffer. */
            for (size_t i = 0; i < n; i++) {
                const char *vm = json_string_value(json_array_get(vms, i));
                bool is_up = false;
                if (up[i] || !vm)
                    continue;
                if (agent_up_now(c, vm, &is_up, &err) < 0) {
                    rc = cli_fail(ctx, &err);
                    goto cleanup;
                }
                if (is_up) {
                    up[i] = true;
                    left--;
                    cli_fmt_duration(cgv_mono_ms() - start_ms, dur, sizeof(dur));
                    if (!ctx->json)
                        fprintf(ctx->out, "%s: agent up (%s)\n", vm, dur);
                }
            }
            fflush(ctx->out);
            recheck = false;
            continue;
        }
        if (now >= deadline_ms) {
            fprintf(ctx->errf, "cgv: timed out waiting for the agent of:");
            for (size_t i = 0; i < n; i++) {
                if (!up[i])
                    fprintf(ctx->errf, " %s", json_string_value(json_array_get(vms, i)));
            }
            fputc('\n', ctx->errf);
            rc = CLI_EXIT_FAILED;
            goto cleanup;
        }
        if (client_events(c, cursor, deadline_ms - now > 10000 ? 10000 : deadline_ms - now,
                          limit, service, NULL, &res, &err) < 0) {
            rc = cli_fail(ctx, &err);
            goto cleanup;
        }
        evs = json_object_get(res, "events");
        for (size_t e = 0; e < json_array_size(evs); e++) {
            const json_t *ev = json_array_get(evs, e);
            const char *type = json_string_value(json_object_get(ev, "type")) ?: "";
            const char *vm = json_string_value(json_object_get(ev, "vm"));
            for (size_t i = 0; vm && i < n; i++) {
                if (up[i] || strcmp(vm, json_string_value(json_array_get(vms, i)) ?: "") != 0)
                    continue;
                if (strcmp(type, "agent.hello") == 0) {
                    up[i] = true;
                    left--;
                    cli_fmt_duration(cgv_mono_ms() - start_ms, dur, sizeof(dur));
                    if (!ctx->json)
                        fprintf(ctx->out, "%s: agent up (%s)\n", vm, dur);
                } else if (event_is_trouble(type)) {
                    fprintf(ctx->errf, "cgv: warning: %s: %s: %s\n", vm, type,
                            json_string_value(json_object_get(ev, "message")) ?: "");
                }
            }
        }
        if (json_array_size(evs) == 0)
            recheck = true;
        cursor = cli_events_next_cursor(cursor, res, limit);
        json_decref(res);
        res = NULL;
        fflush(ctx->out);
    }
    cli_fmt_duration(cgv_mono_ms() - start_ms, dur, sizeof(dur));
    if (!ctx->json)
        fprintf(ctx->out, "%s: %zu of %zu agents up (%s)\n", service, n, n, dur);
    rc = CLI_EXIT_OK;

cleanup:
    json_decref(res);
    return rc;
}

int cli_cmd_apply(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"dry-run", no_argument, NULL, 'n'},
        {"wait", no_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    const char *file = NULL, *ctype, *label;
    bool dry_run = false, wait = false;
    int64_t timeout_ms = -1, start_ms = cgv_mono_ms(), deadline_ms, cursor = 0;
    CGV_AUTOFREE char *text = NULL;
    size_t len = 0;
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":f:nwt:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 'n':
            dry_run = true;
            break;
        case 'w':
            wait = true;
            break;
        case 't':
            timeout_ms = cli_parse_seconds(optarg);
            if (timeout_ms <= 0)
                return cli_usage(ctx, "bad --timeout '%s' (seconds)", optarg);
            break;
        case 'h':
            fputs(apply_help, ctx->out);
            return CLI_EXIT_OK;
        default:
            if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
                return rc;
        }
    }
    if (!file && optind < argc)
        file = argv[optind++];
    if (!file)
        return cli_usage(ctx, "no spec file given (-f FILE)");
    if (optind < argc)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind]);
    if (wait && dry_run)
        return cli_usage(ctx, "--wait and --dry-run do not go together");

    if (strcmp(file, "-") == 0) {
        label = "<stdin>";
        if (read_stdin(CLI_MAX_SPEC, &text, &len, &err) < 0)
            return cli_fail(ctx, &err);
    } else {
        label = file;
        if (cgv_read_file(file, CLI_MAX_SPEC, &text, &len, &err) < 0) {
            if (err.code == CGV_E_INVALID)
                return cli_fail(ctx, &err);
            return cli_error(ctx, CLI_EXIT_USAGE, "cannot read spec: %s", err.msg);
        }
    }
    if (len == 0)
        return cli_error(ctx, CLI_EXIT_INVALID, "%s: empty spec", label);
    ctype = spec_content_type(file, text, len);

    if (wait && timeout_ms < 0)
        timeout_ms = CLI_WAIT_DEFAULT_MS;
    deadline_ms = timeout_ms > 0 ? start_ms + timeout_ms : INT64_MAX;
    if (!(c = cli_client(ctx, &err)))
        return cli_fail(ctx, &err);
    cli_catch_signals();
    if (timeout_ms > 0)
        client_set_timeout_ms(c, (long)timeout_ms);
    if (wait && events_cursor(c, &cursor, &err) < 0)
        return cli_fail(ctx, &err);

    if (client_apply(c, text, len, ctype, dry_run, &res, &err) < 0) {
        if (cli_interrupted)
            return CLI_EXIT_INTERRUPTED;
        cli_print_issues(ctx->errf, label, client_last_error_details(c));
        fprintf(ctx->errf, "cgv: %s: %s\n", label, err.msg);
        return cli_exit_code(err.code, client_last_status(c));
    }
    if (ctx->json)
        cli_print_json(ctx->out, res, false);
    else
        cli_print_apply(ctx->out, res);
    fflush(ctx->out);
    rc = CLI_EXIT_OK;
    if (wait && !dry_run) {
        const char *svc = json_string_value(json_object_get(res, "service"));
        const json_t *vms = json_object_get(res, "vms");
        json_t *names = NULL, *cur = NULL;
        if (svc && !json_is_array(vms)) {
            /* Unchanged: wait for the VMs the service has. */
            if (client_service_get(c, svc, &cur, &err) < 0) {
                json_decref(res);
                return cli_fail(ctx, &err);
            }
            names = json_array();
            size_t i;
            json_t *v;
            json_array_foreach(json_object_get(cur, "vms"), i, v)
            {
                const char *nm = json_string_value(json_object_get(v, "name"));
                if (nm)
                    json_array_append_new(names, json_string(nm));
            }
            vms = names;
        }
        if (!svc || !json_is_array(vms)) {
            rc = cli_error(ctx, CLI_EXIT_FAILED,
                           "bad response from cgvd: apply answer without service/vms");
        } else {
            rc = apply_wait(ctx, c, svc, vms, cursor, start_ms, deadline_ms);
        }
        json_decref(names);
        json_decref(cur);
    }
    json_decref(res);
    return rc;
}

/* --- delete ----------------------------------------------------------------*/

static const char delete_help[] =
    "Usage: cgv delete SERVICE [--json]\n"
    "\n"
    "Destroy and undefine every VM of SERVICE, free its addresses and remove it.\n"
    "\n"
    "Output: demo: deleted, VMs: demo-0, demo-1\n";

int cli_cmd_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(delete_help, ctx->out);
            return CLI_EXIT_OK;
        }
        if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
            return rc;
    }
    if (optind >= argc)
        return cli_usage(ctx, "no service given");
    if (argc - optind > 1)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
    if (!(c = cli_client(ctx, &err)))
        return cli_fail(ctx, &err);
    if (client_service_delete(c, argv[optind], &res, &err) < 0)
        return cli_fail(ctx, &err);
    if (ctx->json)
        cli_print_json(ctx->out, res, false);
    else
        cli_print_delete(ctx->out, res);
    json_decref(res);
    return CLI_EXIT_OK;
}

/* --- status ----------------------------------------------------------------*/

static const char status_help[] =
    "Usage: cgv status [SERVICE] [--json]\n"
    "\n"
    "One line per VM of every service (or of SERVICE):\n"
    "  SERVICE    the service\n"
    "  VM         the VM's name\n"
    "  STATE      libvirt state: running paused shutoff crashed saved missing\n"
    "             unknown; '*' = restart pending (spec changed), '(want X)' =\n"
    "             cgvd wants it in state X\n"
    "  ROLE       HA role: 'active aN' (holds assignment aN), standby, failed,\n"
    "             fencing, '-' (none); a trailing '?' = not acknowledged yet\n"
    "  AGENT      guest agent: up, down, never (not seen this boot), paused\n"
    "  HEARTBEAT  age of the last agent heartbeat ('-' if none)\n"
    "  ADDRESS    the VM's IPv4 addresses\n"
    "  BUSY       the operation in progress, '-' if none\n"
    "\n"
    "After each service's VMs, one line: its redundancy model, up or down, the\n"
    "availability since it was created (downtime, outages) and, per assignment\n"
    "with a virtual IP, which VM holds it.\n"
    "\n"
    "--json prints cgvd's JSON instead: {\"services\": [...]} or, with SERVICE,\n"
    "the one service, each with its \"vms\".\n"
    "\n"
    "Example:\n"
    "  SERVICE  VM      STATE    ROLE       AGENT  HEARTBEAT  ADDRESS     BUSY\n"
    "  demo     demo-0  running  active a0  up     0.0s ago   10.77.0.11  -\n"
    "  demo     demo-1  running  standby    up     0.1s ago   10.77.0.12  -\n"
    "  demo: 2n, up, availability 99.99812% (downtime 41 ms, 1 outage); a0 10.77.0.50 -> demo-0\n";

int cli_cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(status_help, ctx->out);
            return CLI_EXIT_OK;
        }
        if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
            return rc;
    }
    if (argc - optind > 1)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
    if (!(c = cli_client(ctx, &err)))
        return cli_fail(ctx, &err);
    if (optind < argc)
        rc = client_service_get(c, argv[optind], &res, &err);
    else
        rc = client_services_list(c, &res, &err);
    if (rc < 0)
        return cli_fail(ctx, &err);
    if (ctx->json)
        cli_print_json(ctx->out, res, false);
    else
        cli_print_status(ctx->out, res);
    json_decref(res);
    return CLI_EXIT_OK;
}
