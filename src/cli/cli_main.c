/* cli_main.c — cgv's entry point: global options, command table, errors and
 * exit codes (see cli.h, docs/CLI.md). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>

volatile sig_atomic_t cli_interrupted;

static void cli_on_signal(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = cli_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: let poll() see EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int cli_exit_code(enum cgv_errcode code, int http_status)
{
    switch (code) {
    case CGV_OK:
        return CLI_EXIT_OK;
    case CGV_E_INVALID:
        return CLI_EXIT_INVALID;
    case CGV_E_NOTFOUND:
        return CLI_EXIT_NOTFOUND;
    case CGV_E_CONFLICT:
        return CLI_EXIT_CONFLICT;
    case CGV_E_DENIED:
        return CLI_EXIT_DENIED;
    case CGV_E_UNAVAIL:
        return http_status == 0 ? CLI_EXIT_UNREACHABLE : CLI_EXIT_FAILED;
    case CGV_E_INTERNAL:
    case CGV_E_LIBVIRT:
    case CGV_E_IO:
        break;
    }
    return CLI_EXIT_FAILED;
}

struct client *cli_client(struct cli_ctx *ctx, struct cgv_error *err)
{
    if (!ctx->client) {
        ctx->client = client_new(ctx->socket, err);
        if (ctx->client)
            client_set_cancel_flag(ctx->client, &cli_interrupted);
    }
    return ctx->client;
}

int cli_fail(struct cli_ctx *ctx, const struct cgv_error *err)
{
    int status = ctx->client ? client_last_status(ctx->client) : 0;

    if (cli_interrupted)
        return CLI_EXIT_INTERRUPTED;
    if (ctx->client)
        cli_print_issues(ctx->errf, NULL, client_last_error_details(ctx->client));
    fprintf(ctx->errf, "cgv: %s\n", err->msg[0] ? err->msg : cgv_errcode_name(err->code));
    return cli_exit_code(err->code, status);
}

int cli_usage(struct cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    fprintf(ctx->errf, "cgv: ");
    va_start(ap, fmt);
    vfprintf(ctx->errf, fmt, ap);
    va_end(ap);
    if (ctx->cmd)
        fprintf(ctx->errf, "\nTry 'cgv %s --help'.\n", ctx->cmd);
    else
        fprintf(ctx->errf, "\nTry 'cgv --help'.\n");
    return CLI_EXIT_USAGE;
}

int cli_error(struct cli_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;

    fprintf(ctx->errf, "cgv: ");
    va_start(ap, fmt);
    vfprintf(ctx->errf, fmt, ap);
    va_end(ap);
    fputc('\n', ctx->errf);
    return code;
}

int cli_common_opt(struct cli_ctx *ctx, int opt, char **argv)
{
    switch (opt) {
    case 'S':
        ctx->socket = optarg;
        return -1;
    case 'j':
        ctx->json = true;
        return -1;
    case ':':
        return cli_usage(ctx, "option '%s' needs an argument", argv[optind - 1]);
    default:
        return cli_usage(ctx, "unknown option '%s'", argv[optind - 1]);
    }
}

void cli_print_json(FILE *out, const json_t *v, bool compact)
{
    json_dumpf(v, out, compact ? JSON_COMPACT : JSON_INDENT(2));
    fputc('\n', out);
}

int64_t cli_parse_uint(const char *s)
{
    char *end;
    long long v;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < 0)
        return -1;
    return v;
}

int64_t cli_parse_seconds(const char *s)
{
    char *end;
    double v;

    if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || v < 0 || v > 365.0 * 86400 * 1000)
        return -1;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        v *= 1000;
    else if (strcmp(end, "ms") == 0)
        ;
    else if (strcmp(end, "m") == 0)
        v *= 60000;
    else if (strcmp(end, "h") == 0)
        v *= 3600000;
    else
        return -1;
    if (v > 365.0 * 86400 * 1000)
        return -1;
    return (int64_t)v;
}

/* Advance a follower's cursor past a batch of events (see docs/API.md:
 * last_id is the newest event of all, but when the batch was cut at limit
 * only the last returned event has been seen). */
int64_t cli_events_next_cursor(int64_t cursor, const json_t *res, long limit)
{
    const json_t *evs = json_object_get(res, "events");
    size_t n = json_array_size(evs);
    int64_t last_id = (int64_t)json_integer_value(json_object_get(res, "last_id"));
    int64_t last_ev = n ? (int64_t)json_integer_value(
                              json_object_get(json_array_get(evs, n - 1), "id"))
                        : 0;

    if (n > 0 && (long)n >= limit)
        return last_ev > cursor ? last_ev : cursor;
    if (last_ev > last_id)
        last_id = last_ev;
    return last_id > cursor ? last_id : cursor;
}

/* --- command table ---------------------------------------------------------*/

struct cli_command {
    const char *name;
    int (*fn)(struct cli_ctx *ctx, int argc, char **argv);
};

static const struct cli_command cli_commands[] = {
    {"apply", cli_cmd_apply},     {"delete", cli_cmd_delete},
    {"status", cli_cmd_status},   {"vm", cli_cmd_vm},
    {"events", cli_cmd_events},   {"console", cli_cmd_console},
    {"health", cli_cmd_health},   {"version", cli_cmd_version},
    {"top", cli_cmd_top},
};

static const char cli_main_help[] =
    "Usage: cgv [--socket PATH] [--json] COMMAND [ARGS...]\n"
    "\n"
    "Manage services and VMs on this host through cgvd.\n"
    "\n"
    "Commands:\n"
    "  apply -f FILE      create or update a service from a spec (YAML or JSON)\n"
    "  delete SERVICE     destroy a service and all its VMs\n"
    "  status [SERVICE]   one line per VM: state, HA role, agent, heartbeat, address\n"
    "  vm OP NAME         start|stop|destroy|pause|resume|reboot|save|restore a VM\n"
    "  vm set NAME ...    change a VM's vCPUs, pinning, memory, QoS\n"
    "  events             print cgvd's events (--follow to keep watching)\n"
    "  console NAME       attach to a VM's serial console (--log: print its log)\n"
    "  top                live per-VM KPIs: CPU, memory, network, RTT, role\n"
    "  health             show cgvd's health\n"
    "  version            show the versions of cgv and cgvd\n"
    "  help [COMMAND]     show help for cgv or a command\n"
    "\n"
    "Global options (also accepted after the command):\n"
    "  --socket PATH      cgvd's socket (default: $CGV_SOCKET, else\n"
    "                     " CLIENT_DEFAULT_SOCKET ")\n"
    "  --json             JSON output for scripts (events: one object per line)\n"
    "  -h, --help         show help; 'cgv COMMAND --help' for a command\n"
    "  --version          print cgv's version\n"
    "\n"
    "Results go to stdout, errors to stderr as 'cgv: <message>'.\n"
    "\n"
    "Exit codes:\n"
    "  0    ok\n"
    "  1    operation failed (cgvd internal, libvirt, io or unavailable error,\n"
    "       or a --wait/--timeout deadline passed)\n"
    "  2    usage error\n"
    "  3    not found (service, VM)\n"
    "  4    invalid input (spec or request)\n"
    "  5    conflict (exists, busy with another operation, wrong state)\n"
    "  6    cannot reach cgvd\n"
    "  7    permission denied\n"
    "  130  interrupted (SIGINT/SIGTERM)\n";

static const struct cli_command *cli_find(const char *name)
{
    for (size_t i = 0; i < CGV_ARRAY_LEN(cli_commands); i++) {
        if (strcmp(cli_commands[i].name, name) == 0)
            return &cli_commands[i];
    }
    return NULL;
}

static int cli_run(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_command *cmd;
    int opt;

    opterr = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'S':
            ctx->socket = optarg;
            break;
        case 'j':
            ctx->json = true;
            break;
        case 'h':
            fputs(cli_main_help, ctx->out);
            return CLI_EXIT_OK;
        case 'V':
            fprintf(ctx->out, "cgv %s\n", CGV_VERSION);
            return CLI_EXIT_OK;
        case ':':
            return cli_usage(ctx, "option '%s' needs an argument", argv[optind - 1]);
        default:
            return cli_usage(ctx, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        fputs(cli_main_help, ctx->errf);
        return CLI_EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;

    if (strcmp(argv[0], "help") == 0) {
        char help_opt[] = "--help";
        char *hargv[3] = {NULL, help_opt, NULL};
        if (argc < 2) {
            fputs(cli_main_help, ctx->out);
            return CLI_EXIT_OK;
        }
        cmd = cli_find(argv[1]);
        if (!cmd)
            return cli_usage(ctx, "unknown command '%s'", argv[1]);
        ctx->cmd = cmd->name;
        hargv[0] = argv[1];
        optind = 0;
        return cmd->fn(ctx, 2, hargv);
    }
    cmd = cli_find(argv[0]);
    if (!cmd)
        return cli_usage(ctx, "unknown command '%s'", argv[0]);
    ctx->cmd = cmd->name;
    optind = 0; /* re-initialise getopt for the command's own options */
    return cmd->fn(ctx, argc, argv);
}

int cli_main(int argc, char **argv)
{
    struct cli_ctx ctx = {
        .out = stdout,
        .errf = stderr,
    };
    int rc;

    rc = cli_run(&ctx, argc, argv);
    client_free(ctx.client);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE)
            fprintf(stderr, "cgv: write error: %s\n", strerror(errno));
        if (rc == CLI_EXIT_OK)
            rc = CLI_EXIT_FAILED;
    }
    return rc;
}
