/* cmd_vm.c — cgv vm start|stop|destroy|pause|resume|reboot|save|restore NAME,
 * and cgv vm set NAME (resources). */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
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
/* (cgv vm set NAME ... changes resources: see 'cgv vm set --help'.) */

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
            "  -t, --timeout SEC  for stop and reboot: the graceful budget sent to cgvd;\n"
            "                     for every op: give up waiting SEC+30 s later\n"
            "      --json         print cgvd's JSON answer\n"
            "      --socket PATH  cgvd's socket\n"
            "\n"
            "Output: demo-0: paused (24 ms)\n"
            "A VM busy with another operation makes cgv exit with 5.\n");
}

static const char set_help[] =
    "Usage: cgv vm set NAME [OPTIONS]\n"
    "\n"
    "Change a running (or stopped) VM's resources. Live where libvirt can:\n"
    "vCPUs up to the spec's cpu.max_vcpus, CPU pinning, CPU shares/quota, memory\n"
    "hard limit, network bandwidth. Otherwise (memory size, more vCPUs than\n"
    "max_vcpus) by a controlled restart: an active first hands its assignment\n"
    "to its standby. The change overrides the service's spec for this VM until\n"
    "--reset; it is checked like a spec (exit 4 with every problem) and\n"
    "refused if the host cannot place it (exit 5), changing nothing.\n"
    "\n"
    "Options:\n"
    "  --vcpus N                  number of vCPUs\n"
    "  --memory SIZE              e.g. 512MiB, 1GiB, 512 (MiB) (needs a restart)\n"
    "  --cpus LIST                pin vCPU i to LIST[i mod n] (\"2,3\"); 'spec' = back\n"
    "                             to the service's CPU policy\n"
    "  --cpu-shares N             relative CPU weight (2..262144)\n"
    "  --cpu-quota-us N           CPU time per period (the period defaults to 100000)\n"
    "  --cpu-period-us N          1000..1000000, only with a quota\n"
    "  --memory-hard-limit SIZE   e.g. 768MiB; 'none' removes it\n"
    "  --net-in KBITS             inbound limit, kilobits/s (0 = none)\n"
    "  --net-out KBITS            outbound limit, kilobits/s (0 = none)\n"
    "  --net-burst KB             burst, kilobytes\n"
    "  --reset                    drop every override: back to the spec\n"
    "  --json                     print cgvd's JSON answer\n"
    "\n"
    "Output: demo-0: reconfigured live (vcpus 1 -> 2) (40 ms)\n";

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s[0] || s[0] == '-')
        return -1;
    v = strtoull(s, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int cmd_vm_set(struct cli_ctx *ctx, int argc, char **argv)
{
    enum { O_VCPUS = 300, O_MEM, O_CPUS, O_SHARES, O_QUOTA, O_PERIOD, O_HARD, O_IN, O_OUT,
           O_BURST, O_RESET };
    static const struct option opts[] = {
        {"vcpus", required_argument, NULL, O_VCPUS},
        {"memory", required_argument, NULL, O_MEM},
        {"cpus", required_argument, NULL, O_CPUS},
        {"cpu-shares", required_argument, NULL, O_SHARES},
        {"cpu-quota-us", required_argument, NULL, O_QUOTA},
        {"cpu-period-us", required_argument, NULL, O_PERIOD},
        {"memory-hard-limit", required_argument, NULL, O_HARD},
        {"net-in", required_argument, NULL, O_IN},
        {"net-out", required_argument, NULL, O_OUT},
        {"net-burst", required_argument, NULL, O_BURST},
        {"reset", no_argument, NULL, O_RESET},
        CLI_OPT_SOCKET, CLI_OPT_JSON, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    json_t *body = json_object(), *qos = json_object(), *net = json_object(), *res = NULL;
    char path[128], *text;
    const char *name = NULL;
    int opt, rc = CLI_EXIT_OK, status;
    uint64_t v;

    /* argv is "vm set NAME ...": parse from "set" on, with getopt re-initialised. */
    argc--;
    argv++;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (opt) {
        case 'h':
            fputs(set_help, ctx->out);
            goto done;
        case O_VCPUS:
            if (parse_u64(optarg, &v) < 0)
                bad = "--vcpus";
            else
                json_object_set_new(body, "vcpus", json_integer((json_int_t)v));
            break;
        case O_MEM:
            /* a bare number means MiB, as in a spec */
            json_object_set_new(body, "memory",
                                optarg[0] && strspn(optarg, "0123456789") == strlen(optarg)
                                    ? json_integer(strtoll(optarg, NULL, 10))
                                    : json_string(optarg));
            break;
        case O_CPUS:
            if (strcmp(optarg, "spec") == 0) {
                json_object_set_new(body, "cpus", json_null());
            } else {
                json_t *list = json_array();
                char *copy = cgv_strdup(optarg), *tok, *save = NULL;
                for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                    if (parse_u64(tok, &v) < 0) {
                        bad = "--cpus";
                        break;
                    }
                    json_array_append_new(list, json_integer((json_int_t)v));
                }
                free(copy);
                json_object_set_new(body, "cpus", list);
            }
            break;
        case O_SHARES:
        case O_QUOTA:
        case O_PERIOD:
            if (parse_u64(optarg, &v) < 0) {
                bad = opt == O_SHARES ? "--cpu-shares" : opt == O_QUOTA ? "--cpu-quota-us"
                                                                        : "--cpu-period-us";
                break;
            }
            json_object_set_new(qos,
                                opt == O_SHARES  ? "cpu_shares"
                                : opt == O_QUOTA ? "cpu_quota_us"
                                                 : "cpu_period_us",
                                json_integer((json_int_t)v));
            break;
        case O_HARD:
            json_object_set_new(qos, "memory_hard_limit",
                                strcmp(optarg, "none") == 0 ? json_null()
                                                            : json_string(optarg));
            break;
        case O_IN:
        case O_OUT:
        case O_BURST:
            if (parse_u64(optarg, &v) < 0) {
                bad = opt == O_IN ? "--net-in" : opt == O_OUT ? "--net-out" : "--net-burst";
                break;
            }
            json_object_set_new(net,
                                opt == O_IN    ? "inbound_kbps"
                                : opt == O_OUT ? "outbound_kbps"
                                               : "burst_kb",
                                json_integer((json_int_t)v));
            break;
        case O_RESET:
            json_object_set_new(body, "reset", json_true());
            break;
        default:
            if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
                goto done;
            rc = CLI_EXIT_OK;
        }
        if (bad) {
            rc = cli_usage(ctx, "%s wants a non-negative whole number, got '%s'", bad, optarg);
            goto done;
        }
    }
    if (optind >= argc) {
        rc = cli_usage(ctx, "no VM given");
        goto done;
    }
    name = argv[optind];
    if (optind + 1 < argc) {
        rc = cli_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
        goto done;
    }
    if (json_object_size(net))
        json_object_set(qos, "net", net);
    if (json_object_size(qos))
        json_object_set(body, "qos", qos);
    if (json_object_size(body) == 0) {
        rc = cli_usage(ctx, "nothing to change (see 'cgv vm set --help')");
        goto done;
    }
    if (!(c = cli_client(ctx, &err))) {
        rc = cli_fail(ctx, &err);
        goto done;
    }
    snprintf(path, sizeof(path), "/v1/vms/%s/set", name);
    text = json_dumps(body, JSON_COMPACT);
    cli_catch_signals();
    if (client_request(c, "POST", path, "application/json", text, strlen(text), &status, &res,
                       &err) < 0) {
        free(text);
        rc = cli_fail(ctx, &err);
        goto done;
    }
    free(text);
    if (ctx->json) {
        cli_print_json(ctx->out, res, false);
    } else {
        const json_t *ch = json_object_get(res, "changes");
        fprintf(ctx->out, "%s: reconfigured %s", name,
                json_string_value(json_object_get(res, "applied")) ?: "?");
        for (size_t i = 0; i < json_array_size(ch); i++)
            fprintf(ctx->out, "%s%s", i ? ", " : " (",
                    json_string_value(json_array_get(ch, i)) ?: "");
        fprintf(ctx->out, "%s (%lld ms)\n", json_array_size(ch) ? ")" : "",
                (long long)json_integer_value(json_object_get(res, "duration_ms")));
    }
    json_decref(res);

done:
    json_decref(body);
    json_decref(qos);
    json_decref(net);
    return rc;
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

    if (argc > 1 && strcmp(argv[1], "set") == 0)
        return cmd_vm_set(ctx, argc, argv);
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
