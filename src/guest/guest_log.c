/* guest_log.c — cgv-guest's console log (see header). */
#include "guest_log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t guest_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void guest_log(const char *fmt, ...)
{
    int64_t now = guest_mono_us();
    char line[512];
    va_list ap;
    int n;

    n = snprintf(line, sizeof(line), "[%5" PRId64 ".%03" PRId64 "] cgv-guest: ",
                 now / 1000000, (now / 1000) % 1000);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    line[n] = '\n'; /* room kept by the "- 1" above */
    line[n + 1] = '\0';
    if (write(STDERR_FILENO, line, strlen(line)) < 0) {
        /* nowhere else to report it */
    }
}
