/* cmd_top.c — cgv top: a live table of per-VM and host KPIs. */
#include "cli.h"

#include <getopt.h>
#include <poll.h>
#include <unistd.h>

static const char top_help[] =
    "Usage: cgv top [--interval SEC] [--iterations N] [--once] [--json]\n"
    "\n"
    "Show the host's CPU and memory and, per VM: state, HA role, CPU use\n"
    "(100% = one CPU), vCPUs, memory and QEMU's resident memory, network\n"
    "rates, the agent channel's round trip and HA restarts. Refreshes every\n"
    "SEC seconds (default 1) until interrupted; --once prints one screen\n"
    "without clearing the terminal. --json prints cgvd's KPI JSON once.\n"
    "The same figures are served in Prometheus format at /metrics.\n";

int cli_cmd_top(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"interval", required_argument, NULL, 'i'},
        {"iterations", required_argument, NULL, 'n'},
        {"once", no_argument, NULL, '1'},
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    double interval = 1.0;
    long iterations = -1;
    bool once = false;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":hi:n:", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(top_help, ctx->out);
            return CLI_EXIT_OK;
        } else if (opt == 'i') {
            char *end;
            interval = strtod(optarg, &end);
            if (*end || interval < 0.1 || interval > 3600)
                return cli_usage(ctx, "--interval wants seconds in 0.1..3600");
        } else if (opt == 'n') {
            char *end;
            iterations = strtol(optarg, &end, 10);
            if (*end || iterations < 1)
                return cli_usage(ctx, "--iterations wants a positive number");
        } else if (opt == '1') {
            once = true;
        } else if ((rc = cli_common_opt(ctx, opt, argv)) >= 0) {
            return rc;
        }
    }
    if (optind < argc)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind]);
    if (ctx->json || once)
        iterations = 1;
    cli_catch_signals();
    if (!(c = cli_client(ctx, &err)))
        return cli_fail(ctx, &err);
    for (long it = 0; iterations < 0 || it < iterations; it++) {
        json_t *health = NULL, *vms = NULL;

        if (it > 0 && poll(NULL, 0, (int)(interval * 1000)) < 0)
            break;
        if (cli_interrupted)
            break;
        if (client_health(c, &health, &err) < 0 || client_vms_list(c, &vms, &err) < 0) {
            json_decref(health);
            return cli_fail(ctx, &err);
        }
        if (ctx->json) {
            json_t *o = json_pack("{s:O,s:O}", "host", json_object_get(health, "host_kpi"),
                                  "vms", json_object_get(vms, "vms"));
            cli_print_json(ctx->out, o, false);
            json_decref(o);
        } else {
            if (!once && isatty(fileno(ctx->out)))
                fputs("\033[H\033[2J", ctx->out);
            cli_print_top(ctx->out, health, vms);
        }
        fflush(ctx->out);
        json_decref(health);
        json_decref(vms);
    }
    return CLI_EXIT_OK;
}
