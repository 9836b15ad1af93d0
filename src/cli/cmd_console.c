/* cmd_console.c — cgv console NAME: relay between the terminal (or stdin /
 * stdout) and a VM's serial console socket; --log prints the console log. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define CONSOLE_ESCAPE 0x1d      /* Ctrl-] */
#define CONSOLE_DRAIN_QUIET_MS 500 /* after stdin EOF: stop once this quiet */
#define CONSOLE_DRAIN_MAX_MS 2000  /* ... or this long after EOF at most */

static const char console_help[] =
    "Usage: cgv console NAME [--timeout SEC]\n"
    "       cgv console NAME --log [--bytes N]\n"
    "\n"
    "Attach to the serial console of VM NAME.\n"
    "\n"
    "On a terminal the terminal is put in raw mode (restored on exit) and\n"
    "everything typed goes to the VM; press Ctrl-] to detach.\n"
    "When stdin is not a terminal, stdin is sent to the console and the console's\n"
    "output is copied to stdout until stdin ends and the console has been quiet\n"
    "for 0.5 s (at most 2 s), or until --timeout.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout SEC  detach after SEC seconds (without a terminal: relay\n"
    "                     for SEC seconds even after stdin ended)\n"
    "  -l, --log          print the tail of the VM's console log instead\n"
    "  -b, --bytes N      with --log: how many bytes (default 16 KiB, max 1 MiB)\n"
    "      --socket PATH  cgvd's socket\n";

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int console_connect(const char *path, struct cgv_error *err)
{
    struct sockaddr_un sun;
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (cgv_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) < 0)
        return cgv_err(err, CGV_E_INTERNAL, "console socket path too long: %s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        close(fd);
        return cgv_err(err, e == EACCES || e == EPERM ? CGV_E_DENIED : CGV_E_IO,
                       "cannot connect to console socket %s: %s", path, strerror(e));
    }
    return fd;
}

struct relay {
    int con;           /* console socket */
    bool tty;          /* stdin is a terminal (raw mode, escape key) */
    bool stdin_open;
    int64_t deadline;  /* INT64_MAX if none */
    bool has_timeout;
    int64_t drain_end; /* after stdin EOF, without --timeout */
    int64_t quiet_end;
};

/* Relay until detach / EOF / deadline. Returns an exit code. */
static int relay_run(struct cli_ctx *ctx, struct relay *r, const char *vm)
{
    char buf[4096];

    for (;;) {
        struct pollfd pfd[2];
        int64_t now = cgv_mono_ms(), until = r->deadline;
        int nfds = 0, timeout, pr;

        if (cli_interrupted)
            return CLI_EXIT_INTERRUPTED;
        if (!r->stdin_open && !r->has_timeout) {
            if (r->quiet_end < until)
                until = r->quiet_end;
            if (r->drain_end < until)
                until = r->drain_end;
        }
        if (now >= until)
            return CLI_EXIT_OK;
        timeout = until == INT64_MAX ? -1
                  : (until - now > 60000 ? 60000 : (int)(until - now));
        pfd[nfds++] = (struct pollfd){.fd = r->con, .events = POLLIN};
        if (r->stdin_open)
            pfd[nfds++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        pr = poll(pfd, (nfds_t)nfds, timeout);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return cli_error(ctx, CLI_EXIT_FAILED, "poll: %s", strerror(errno));
        }
        if (pfd[0].revents) {
            ssize_t n = read(r->con, buf, sizeof(buf));
            if (n < 0 && errno != EINTR && errno != EAGAIN)
                return cli_error(ctx, CLI_EXIT_FAILED, "reading console of %s: %s", vm,
                                 strerror(errno));
            if (n == 0) {
                if (r->tty)
                    fprintf(ctx->errf, "\r\n");
                fprintf(ctx->errf, "cgv: console of %s closed\n", vm);
                return CLI_EXIT_OK;
            }
            if (n > 0) {
                if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
                    return errno == EPIPE ? CLI_EXIT_OK
                                          : cli_error(ctx, CLI_EXIT_FAILED,
                                                      "write stdout: %s", strerror(errno));
                r->quiet_end = cgv_mono_ms() + CONSOLE_DRAIN_QUIET_MS;
            }
        }
        if (nfds > 1 && pfd[1].revents) {
            ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
            if (n < 0 && errno != EINTR && errno != EAGAIN)
                return cli_error(ctx, CLI_EXIT_FAILED, "read stdin: %s", strerror(errno));
            if (n == 0) {
                if (r->tty)
                    return CLI_EXIT_OK;
                r->stdin_open = false;
                now = cgv_mono_ms();
                r->drain_end = now + CONSOLE_DRAIN_MAX_MS;
                r->quiet_end = now + CONSOLE_DRAIN_QUIET_MS;
            }
            if (n > 0) {
                size_t len = (size_t)n;
                char *esc = r->tty ? memchr(buf, CONSOLE_ESCAPE, len) : NULL;
                if (esc)
                    len = (size_t)(esc - buf);
                if (len > 0 && write_all(r->con, buf, len) < 0)
                    return cli_error(ctx, CLI_EXIT_FAILED, "writing to console of %s: %s",
                                     vm, strerror(errno));
                if (esc)
                    return CLI_EXIT_OK;
            }
        }
    }
}

static int console_log(struct cli_ctx *ctx, const char *name, int64_t bytes)
{
    struct cgv_error err = {0};
    struct client *c;
    CGV_AUTOFREE char *text = NULL;
    size_t len = 0;

    if (!(c = cli_client(ctx, &err)) ||
        client_console_log(c, name, (size_t)bytes, &text, &len, &err) < 0)
        return cli_fail(ctx, &err);
    fwrite(text, 1, len, ctx->out);
    return CLI_EXIT_OK;
}

int cli_cmd_console(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"log", no_argument, NULL, 'l'},
        {"bytes", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 't'},
        CLI_OPT_SOCKET, CLI_OPT_HELP, CLI_OPT_END,
    };
    struct cgv_error err = {0};
    struct client *c;
    json_t *vm = NULL;
    const char *name, *path, *state;
    bool log = false;
    int64_t bytes = 0, timeout_ms = 0;
    struct termios saved;
    bool raw = false;
    struct relay r = {.con = -1};
    int opt, rc;

    while ((opt = getopt_long(argc, argv, ":lb:t:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            log = true;
            break;
        case 'b':
            bytes = cli_parse_uint(optarg);
            if (bytes <= 0)
                return cli_usage(ctx, "bad --bytes '%s'", optarg);
            break;
        case 't':
            timeout_ms = cli_parse_seconds(optarg);
            if (timeout_ms <= 0)
                return cli_usage(ctx, "bad --timeout '%s' (seconds)", optarg);
            break;
        case 'h':
            fputs(console_help, ctx->out);
            return CLI_EXIT_OK;
        default:
            if ((rc = cli_common_opt(ctx, opt, argv)) >= 0)
                return rc;
        }
    }
    if (optind >= argc)
        return cli_usage(ctx, "no VM given");
    if (argc - optind > 1)
        return cli_usage(ctx, "unexpected argument '%s'", argv[optind + 1]);
    name = argv[optind];
    if (bytes && !log)
        return cli_usage(ctx, "--bytes goes with --log");
    if (log)
        return console_log(ctx, name, bytes);

    if (!(c = cli_client(ctx, &err)) || client_vm_get(c, name, &vm, &err) < 0)
        return cli_fail(ctx, &err);
    path = json_string_value(json_object_get(vm, "console_socket"));
    state = json_string_value(json_object_get(vm, "state"));
    if (!path || !path[0]) {
        rc = cli_error(ctx, CLI_EXIT_CONFLICT, "%s has no console (state: %s)", name,
                       state ? state : "unknown");
        goto cleanup;
    }
    r.con = console_connect(path, &err);
    if (r.con < 0) {
        rc = cli_fail(ctx, &err);
        goto cleanup;
    }
    cli_catch_signals();
    signal(SIGPIPE, SIG_IGN);
    r.tty = isatty(STDIN_FILENO);
    r.stdin_open = true;
    r.has_timeout = timeout_ms > 0;
    r.deadline = timeout_ms > 0 ? cgv_mono_ms() + timeout_ms : INT64_MAX;
    r.drain_end = r.quiet_end = INT64_MAX;
    if (r.tty) {
        struct termios t;
        if (tcgetattr(STDIN_FILENO, &saved) < 0) {
            rc = cli_error(ctx, CLI_EXIT_FAILED, "tcgetattr: %s", strerror(errno));
            goto cleanup;
        }
        t = saved;
        cfmakeraw(&t);
        if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0) {
            rc = cli_error(ctx, CLI_EXIT_FAILED, "tcsetattr: %s", strerror(errno));
            goto cleanup;
        }
        raw = true;
        fprintf(ctx->errf, "Connected to the console of %s; press Ctrl-] to detach.\r\n",
                name);
    }
    fflush(ctx->out);
    rc = relay_run(ctx, &r, name);

cleanup:
    if (raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fprintf(ctx->errf, "\nDetached from %s.\n", name);
    }
    if (r.con >= 0)
        close(r.con);
    json_decref(vm);
    return rc;
}
