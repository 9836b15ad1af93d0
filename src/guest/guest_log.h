/* guest_log.h — cgv-guest's console log.
 *
 * Lines are prefixed with CLOCK_MONOTONIC seconds (taken when the line is
 * logged) and buffered; guest_log_flush() writes them out, one write(2) per
 * line so lines of several programs on the console do not mix. The agent's
 * loop flushes after it has written its messages to the host: under TCG a
 * line on the emulated serial console costs about a millisecond (each byte is
 * an I/O exit and a write in QEMU), which must not delay a ROLE_ACK or the
 * restart of a process. A full buffer is flushed at once. */
#ifndef GUEST_LOG_H
#define GUEST_LOG_H

#include <stdint.h>

void guest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void guest_log_flush(void);

/* CLOCK_MONOTONIC in microseconds. */
int64_t guest_mono_us(void);

#endif
