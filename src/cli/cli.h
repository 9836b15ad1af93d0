/* cli.h — internals of the cgv command line tool (docs/CLI.md).
 *
 * cli_main() parses the global options and dispatches to one cli_cmd_*()
 * function per command family (cmd_*.c). Everything a person reads is
 * formatted by the cli_print_*() / cli_fmt_*() functions in cli_format.c,
 * which take the server's JSON and a FILE * so the unit tests can check them.
 *
 * "Tools output, daemons log": results go to stdout, errors to stderr as
 * "cgv: <message>".
 */
#ifndef CLI_H
#define CLI_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cgv_common.h"
#include "client.h"

/* Exit codes, also in `cgv --help` and docs/CLI.md. */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,      /* internal, libvirt, io, unavailable, timeout */
    CLI_EXIT_USAGE = 2,       /* bad command line */
    CLI_EXIT_NOTFOUND = 3,    /* no such service / VM */
    CLI_EXIT_INVALID = 4,     /* invalid spec or request */
    CLI_EXIT_CONFLICT = 5,    /* exists, busy, wrong state */
    CLI_EXIT_UNREACHABLE = 6, /* cannot reach cgvd */
    CLI_EXIT_DENIED = 7,      /* not allowed */
    CLI_EXIT_INTERRUPTED = 130,
};

/* The exit code for an error: err->code, refined by the HTTP status of the
 * failed request (0 = cgvd never answered, which makes CGV_E_UNAVAIL exit 6
 * while a 503 from cgvd exits 1). */
int cli_exit_code(enum cgv_errcode code, int http_status);

struct cli_ctx {
    const char *socket; /* --socket, else $CGV_SOCKET, else the default */
    bool json;          /* --json */
    FILE *out;          /* stdout */
    FILE *errf;         /* stderr */
    const char *cmd;    /* command name, for "Try 'cgv CMD --help'" */
    struct client *client; /* created on first use by cli_client() */
};

/* Set by SIGINT/SIGTERM once cli_catch_signals() ran; requests in flight are
 * aborted. */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch_signals(void);

/* The client for ctx->socket (created on first call, freed by cli_main). */
struct client *cli_client(struct cli_ctx *ctx, struct cgv_error *err);

/* Print "cgv: <msg>" (plus validation details, one per line) to ctx->errf and
 * return the exit code for err. */
int cli_fail(struct cli_ctx *ctx, const struct cgv_error *err);
/* Print "cgv: <msg>" and a "Try 'cgv CMD --help'" hint; returns 2. */
int cli_usage(struct cli_ctx *ctx, const char *fmt, ...) CGV_PRINTF(2, 3);
/* Print "cgv: <msg>" and return code. */
int cli_error(struct cli_ctx *ctx, int code, const char *fmt, ...) CGV_PRINTF(3, 4);
/* Long options every command accepts. */
#define CLI_OPT_SOCKET {"socket", required_argument, NULL, 'S'}
#define CLI_OPT_JSON {"json", no_argument, NULL, 'j'}
#define CLI_OPT_HELP {"help", no_argument, NULL, 'h'}
#define CLI_OPT_END {NULL, 0, NULL, 0}
/* Handle what getopt_long() returned for an option every command shares
 * (--socket, --json) or a bad option (':' and '?', optstring must start with
 * ':'). Returns -1 when handled and parsing goes on, else the exit code. */
int cli_common_opt(struct cli_ctx *ctx, int opt, char **argv);

/* Print a JSON value on one line (NDJSON) or indented. */
void cli_print_json(FILE *out, const json_t *v, bool compact);

/* Parse "30", "1.5", "250ms", "30s", "2m" into ms; -1 if invalid. A bare
 * number is seconds. */
int64_t cli_parse_seconds(const char *s);
/* Parse a non-negative integer; -1 if invalid. */
int64_t cli_parse_uint(const char *s);

/* The cursor ("after") for the next GET /v1/events of a follower that got
 * res ({"events": [...], "last_id": N}) asking with limit. */
int64_t cli_events_next_cursor(int64_t cursor, const json_t *res, long limit);

/* --- commands (argv[0] is the command name) --------------------------------*/
int cli_cmd_apply(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_delete(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_status(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_vm(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_events(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_console(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_health(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_version(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_top(struct cli_ctx *ctx, int argc, char **argv);

/* cgv top's screen: a host line and one row per VM (KPIs). Returns rows. */
int cli_print_top(FILE *out, const json_t *health, const json_t *vms);
/* 1536 -> "1.5K", bytes with binary prefixes. */
void cli_fmt_bytes(double bytes, char *buf, size_t cap);

int cli_main(int argc, char **argv);

/* --- formatting (cli_format.c) ---------------------------------------------*/

/* "0.4s ago", "12s ago", "5m ago", "3h ago", "2d ago"; "-" if age_ms < 0. */
void cli_fmt_age(int64_t age_ms, char *buf, size_t cap);
/* "24 ms", "1.2 s", "12 s", "3m05s", "1h02m". */
void cli_fmt_duration(int64_t ms, char *buf, size_t cap);

/* The status table: one row per VM (SERVICE VM STATE ROLE AGENT HEARTBEAT ADDRESS
 * BUSY). doc is {"services": [...]}, one Service ({"name", "vms": [...]}) or
 * {"vms": [...]}. Returns the number of rows printed (0: prints
 * "No services."). */
/* One line per service with HA: model, up/down, availability, outages,
 * virtual IPs and who holds them. */
void cli_print_ha_summary(FILE *out, const json_t *svc);
int cli_print_status(FILE *out, const json_t *doc);
/* "TIME SEVERITY TYPE VM MESSAGE\n" for one event. */
void cli_print_event(FILE *out, const json_t *event);
/* "FILE:LINE:COL: PATH: MESSAGE\n" for one validation issue (parts that are
 * unknown are left out). file NULL prints "cgv: " instead of "FILE:". */
void cli_print_issue(FILE *out, const char *file, const json_t *issue);
/* Every issue of a "details" array; returns how many. */
size_t cli_print_issues(FILE *out, const char *file, const json_t *details);
/* "demo-0: paused (24 ms)" */
void cli_print_vm_op(FILE *out, const json_t *res);
/* "demo: created (812 ms), VMs: demo-0, demo-1" */
void cli_print_apply(FILE *out, const json_t *res);
/* "demo: deleted, VMs: demo-0, demo-1" */
void cli_print_delete(FILE *out, const json_t *res);
/* The /v1/health answer, a few "key: value" lines. */
void cli_print_health(FILE *out, const json_t *health);

#endif
