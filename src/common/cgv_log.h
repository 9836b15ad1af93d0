/* cgv_log.h — daemon logging. Daemons log; tools print.
 * Lines go to stderr (or a file) as "<iso time> <level> <module>: <text>", and
 * the last CGV_LOG_RING lines stay in memory as a flight recorder that can be
 * dumped after a failover. */
#ifndef CGV_LOG_H
#define CGV_LOG_H

#include <stdio.h>

#include "cgv_common.h"

enum cgv_log_level { CGV_LOG_DEBUG = 0, CGV_LOG_INFO, CGV_LOG_WARN, CGV_LOG_ERROR };

void cgv_log_set_level(enum cgv_log_level level);
int cgv_log_parse_level(const char *s, enum cgv_log_level *out);
/* Log to this stream (not owned) instead of stderr. */
void cgv_log_set_stream(FILE *f);

void cgv_log(enum cgv_log_level level, const char *module, const char *fmt, ...)
    CGV_PRINTF(3, 4);

#define CGV_LOG_RING 512
/* Write the flight recorder (oldest first) to f. */
void cgv_log_dump_ring(FILE *f);

#define log_debug(...) cgv_log(CGV_LOG_DEBUG, LOG_MODULE, __VA_ARGS__)
#define log_info(...) cgv_log(CGV_LOG_INFO, LOG_MODULE, __VA_ARGS__)
#define log_warn(...) cgv_log(CGV_LOG_WARN, LOG_MODULE, __VA_ARGS__)
#define log_error(...) cgv_log(CGV_LOG_ERROR, LOG_MODULE, __VA_ARGS__)

#endif
