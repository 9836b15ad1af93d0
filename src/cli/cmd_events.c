/* cmd_events.c — cgv events [--follow]. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>

#define EVENTS_PAGE 1000
#define EVENTS_WAIT_MS 30000

static const char events_help[] =
    "Usage: cgv events [--follow] [--after ID] [--service S] [--vm V] [--json]\n"
    "\n"
    "Print cgvd's events, oldest first, one per line as\n"
    "TIME SEVERITY TYPE VM MESSAGE (TIME in UTC; events without a VM show their\n"
    "service, or '-'):\n"
    "  2026-11-23T10:42:07.123Z info  agent.hello          demo-0     agent 0.1.0 up\n"
    "Without --follow cgv exits after the last event cgvd has.\n"
    "\n"
    "Options:\n"
    "  -f, --follow       keep waiting for new events until interrupted (Ctrl-C)\n"
    "  -a, --after ID     only events with an id greater than ID\n"
    "  -s, --service S    only events of service S\n"
    "  -m, --vm V         only events of VM V\n"
    "      --json         one JSON object per line (NDJSON), as cgvd sends them\n"
    "      --socket PATH  cgvd's socket\n";

int cli_cmd_events(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},
        {"after", required_argument, NULL, 'a'},
        {"service", required_argument, NULL, 's'},
        {"vm", required_argument, NULL, 'm'},
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    const char *service = NULL, *vm = NULL;
    bool follow = false;
    int64_t cursor = 0;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":fa:s:m:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            follow = true;
            break;
        case 'a':
            cursor = cli_parse_uint(optarg);
            if (cursor < 0)
                return cli_usage(ctx, "bad --after '%s' (an event id)", optarg);
            break;
        case 's':
            service = optarg;
            break;
        case 'm':
            vm = optarg;
            break;
        case 'h':
            fputs(events_help, ctx->out);
            return CLI_EXIT_OK;
        default:
            if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind]);
    if (!(c = cli_client(ctx, &err)))
        return cli_fail(ctx, &err);
    cli_catch_signals();

    for (;;) {
        const json_t *evs;
        size_t n;

        if (client_events(c, cursor, follow ? EVENTS_WAIT_MS : 0, EVENTS_PAGE,
                          service, vm, &res, &err) < 0) {
            if (follow && cli_interrupted)
                return CLI_EXIT_OK; /* the normal end of --follow */
            return cli_fail(ctx, &err);
        }
        evs = json_object_get(res, "events");
        n = json_array_size(evs);
        for (size_t i = 0; i < n; i++) {
            if (ctx->json)
                cli_print_json(ctx->out, json_array_get(evs, i), true);
            else
                cli_print_event(ctx->out, json_array_get(evs, i));
        }
        cursor = cli_events_next_cursor(cursor, res, EVENTS_PAGE);
        json_decref(res);
        res = NULL;
        if (fflush(ctx->out) != 0)
            return CLI_EXIT_FAILED; /* reader went away; cli_main reports it */
        if (cli_interrupted)
            return follow ? CLI_EXIT_OK : CLI_EXIT_INTERRUPTED;
        if (!follow && n < EVENTS_PAGE)
            break;
    }
    return CLI_EXIT_OK;
}
