/* cmd_health.c — cgv health, cgv version. */
#include "cli.h"

#include <getopt.h>

static const char health_help[] =
    "Usage: cgv health [--json]\n"
    "\n"
    "Show cgvd's health: version, uptime, libvirt connection, acceleration\n"
    "(kvm or tcg, and why), number of services and VMs.\n";

static const char version_help[] =
    "Usage: cgv version [--json]\n"
    "\n"
    "Show the versions of cgv and of the cgvd it talks to ('cgv --version'\n"
    "shows cgv's alone without asking cgvd).\n";

static int health_parse(struct cli_ctx *ctx, int argc, char **argv, const char *help)
{
    static const struct option opts[] = {
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(help, ctx->out);
            return CLI_EXIT_OK;
        }
        if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
            return rc;
    }
    if (optind < argc)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind]);
    return -1;
}

int cli_cmd_health(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    int rc;

    if ((rc = health_parse(ctx, argc, argv, health_help)) >= 0)
        return rc;
    if (!(c = cli_client(ctx, &err)) || client_health(c, &res, &err) < 0)
        return cli_fail(ctx, &err);
    if (ctx->json)
        cli_print_json(ctx->out, res, false);
    else
        cli_print_health(ctx->out, res);
    json_decref(res);
    return CLI_EXIT_OK;
}

int cli_cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    int rc;

    if ((rc = health_parse(ctx, argc, argv, version_help)) >= 0)
        return rc;
    if (!ctx->json)
        fprintf(ctx->out, "cgv  %s\n", CGV_VERSION);
    if (!(c = cli_client(ctx, &err)) || client_health(c, &res, &err) < 0)
        return cli_fail(ctx, &err);
    if (ctx->json) {
        json_t *v = json_pack("{s:s, s:O}", "cgv", CGV_VERSION, "cgvd",
                              json_object_get(res, "version") ?: json_null());
        cli_print_json(ctx->out, v, false);
        json_decref(v);
    } else {
        fprintf(ctx->out, "cgvd %s\n",
                json_string_value(json_object_get(res, "version")) ?: "?");
    }
    json_decref(res);
    return CLI_EXIT_OK;
}
