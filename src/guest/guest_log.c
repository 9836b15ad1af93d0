/* guest_log.c — cgv-guest's buffered, non-blocking console log (see header). */
#include "guest_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF 16384
#define LOG_LINE 512

static char g_buf[LOG_BUF];
static size_t g_len;
static int g_fd = STDERR_FILENO;
static uint64_t g_dropped;

int64_t guest_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void guest_log_init(void)
{
    /* A new open file description: O_NONBLOCK here does not change the
     * stderr that children and other programs share. */
    int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

    if (fd >= 0)
        g_fd = fd;
}

/* Write one line; false if the console did not take it (all of it). */
static bool put_line(const char *s, size_t n)
{
    ssize_t w;

    do {
        w = write(g_fd, s, n);
    } while (w < 0 && errno == EINTR);
    return w == (ssize_t)n;
}

void guest_log_flush(void)
{
    size_t off = 0;

    if (g_dropped && g_len == 0)
        return; /* the note waits for a line to go with */
    if (g_dropped) {
        char note[96];
        int n = snprintf(note, sizeof(note),
                         "cgv-guest: %" PRIu64 " log lines dropped (console not draining)\n",
                         g_dropped);
        if (!put_line(note, (size_t)n))
            goto drop;
        g_dropped = 0;
    }
    while (off < g_len) {
        const char *nl = memchr(g_buf + off, '\n', g_len - off);
        size_t n = nl ? (size_t)(nl - (g_buf + off)) + 1 : g_len - off;
        if (!put_line(g_buf + off, n))
            goto drop;
        off += n;
    }
    g_len = 0;
    return;
drop:
    /* Everything still buffered is lost: count its lines. */
    for (size_t i = off; i < g_len; i++)
        g_dropped += g_buf[i] == '\n';
    g_len = 0;
}

static void append(const char *line, size_t n)
{
    if (g_len + n > sizeof(g_buf))
        guest_log_flush();
    if (n > sizeof(g_buf))
        n = sizeof(g_buf);
    memcpy(g_buf + g_len, line, n);
    g_len += n;
}

void guest_log(const char *fmt, ...)
{
    int64_t now = guest_mono_us();
    char line[LOG_LINE];
    va_list ap;
    int n;

    n = snprintf(line, sizeof(line), "[%5" PRId64 ".%03" PRId64 "] cgv-guest: ",
                 now / 1000000, (now / 1000) % 1000);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    line[n] = '\n'; /* room kept by the "- 1" above */
    append(line, (size_t)n + 1);
}

void guest_log_child(const char *name, const char *text, size_t len)
{
    char line[LOG_LINE];
    int n = snprintf(line, sizeof(line), "[%s] ", name);

    if (n < 0 || n >= LOG_LINE - 2)
        return;
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len > sizeof(line) - (size_t)n - 1)
        len = sizeof(line) - (size_t)n - 1;
    memcpy(line + n, text, len);
    line[n + (int)len] = '\n';
    append(line, (size_t)n + len + 1);
}
