/* guest_log.c — cgv-guest's buffered console log (see header). */
#include "guest_log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF 16384
#define LOG_LINE 512

static char g_buf[LOG_BUF];
static size_t g_len;

int64_t guest_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void guest_log_flush(void)
{
    size_t off = 0;

    while (off < g_len) {
        const char *nl = memchr(g_buf + off, '\n', g_len - off);
        size_t n = nl ? (size_t)(nl - (g_buf + off)) + 1 : g_len - off;
        if (write(STDERR_FILENO, g_buf + off, n) < 0) {
            /* nowhere else to report it */
        }
        off += n;
    }
    g_len = 0;
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
    n++;
    if (g_len + (size_t)n > sizeof(g_buf))
        guest_log_flush();
    memcpy(g_buf + g_len, line, (size_t)n);
    g_len += (size_t)n;
}
