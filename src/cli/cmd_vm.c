/* cmd_vm.c — cgv vm start|stop|destroy|pause|resume|reboot|save|restore NAME. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

struct vm_op_help {
    const char *op;
    const char *what;
};

static const struct vm_op_help vm_ops[] = {
    {"start", "boot the VM"},
    {"stop", "shut down gracefully: through the agent, then ACPI, then destroy\n"
             "             after the timeout (--timeout, cgvd's default otherwise)"},
    {"destroy", "power the VM off at once"},
    {"pause", "suspend the VM's vCPUs"},
    {"resume", "resume a paused VM"},
    {"reboot", "reboot the guest"},
    {"save", "save the VM's memory to cgvd's state directory and stop it"},
    {"restore", "start the VM from its saved image"},
};

static void vm_help(FILE *out, const char *only_op)
{
    fprintf(out, "Usage: cgv vm %s NAME [--timeout SEC] [--json]\n\n",
            only_op ? only_op : "OP");
    if (!only_op)
        fprintf(out, "Run an operation on a VM and wait until libvirt has done it.\n\n"
                     "Operations:\n");
    for (size_t i = 0; i < CGV_ARRAY_LEN(vm_ops); i++) {
        if (!only_op || strcmp(only_op, vm_ops[i].op) == 0)
            fprintf(out, "  %-9s  %s\n", vm_ops[i].op, vm_ops[i].what);
    }
    fprintf(out,
            "\nOptions:\n"
            "  -t, --timeout SEC  for stop: the graceful shutdown budget sent to cgvd;\n"
            "                     for every op: give up waiting SEC+30 s later\n"
            "      --json         print cgvd's JSON answer\n"
            "      --socket PATH  cgvd's socket\n"
            "\n"
            "Output: demo-0: paused (24 ms)\n"
            "A VM busy with another operation makes cgv exit with 5.\n");
}

int cli_cmd_vm(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, 't'},
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    json_t *res = NULL;
    int64_t timeout_ms = 0;
    bool help = false;
    const char *op, *name;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            timeout_ms = cli_parse_seconds(optarg);
            if (timeout_ms <= 0)
                return cli_usage(ctx, "bad --timeout '%s' (seconds)", optarg);
            break;
        case 'h':
            help = true;
            break;
        default:
            if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
                return rc;
        }
    }
    op = optind < argc ? argv[optind] : NULL;
    if (help) {
        vm_help(ctx->out, client_vm_op_valid(op) ? op : NULL);
        return CLI_EXIT_OK;
    }
    if (!op)
        return cli_usage(ctx, "no operation given (start, stop, destroy, pause, "
                              "resume, reboot, save, restore)");
    if (!client_vm_op_valid(op))
        return cli_usage(ctx, "unknown VM operation '%s'", op);
    if (optind + 1 >= argc)
        return cli_usage(ctx, "no VM given");
    if (argc - optind > 2)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind + 2]);
    name = argv[optind + 1];

    if (!(c = cli_client(ctx, &err)))
        return cli_fail(ctx, &err);
    cli_catch_signals();
    if (client_vm_op(c, name, op, (long)timeout_ms, &res, &err) < 0)
        return cli_fail(ctx, &err);
    if (ctx->json)
        cli_print_json(ctx->out, res, false);
    else
        cli_print_vm_op(ctx->out, res);
    json_decref(res);
    return CLI_EXIT_OK;
}
