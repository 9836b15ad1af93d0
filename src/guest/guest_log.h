/* guest_log.h — cgv-guest's console log: one write(2) per line, prefixed with
 * CLOCK_MONOTONIC seconds, so lines of several programs on the console do not
 * mix. */
#ifndef GUEST_LOG_H
#define GUEST_LOG_H

#include <stdint.h>

void guest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in microseconds. */
int64_t guest_mono_us(void);

#endif
