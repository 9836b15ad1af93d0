/* guest_log.h — cgv-guest's console log.
 *
 * Lines are prefixed with CLOCK_MONOTONIC seconds (taken when the line is
 * logged) and buffered; guest_log_flush() writes them out, one write(2) per
 * line so lines of several programs on the console do not mix. The agent's
 * loop flushes after it has written its messages to the host: under TCG a
 * line on the emulated serial console costs about a millisecond (each byte is
 * an I/O exit and a write in QEMU), which must not delay a ROLE_ACK or the
 * restart of a process.
 *
 * The console is written through a file description of the agent's own, in
 * non-blocking mode (guest_log_init): a client attached to the VM's console
 * socket that does not read stops QEMU's UART, the tty fills, and a blocking
 * write would stop the agent — and its heartbeats — with it. Lines that do not
 * fit then are dropped and counted ("N log lines dropped"). */
#ifndef GUEST_LOG_H
#define GUEST_LOG_H

#include <stddef.h>
#include <stdint.h>

/* Reopen stderr for the log, non-blocking (falls back to stderr itself). */
void guest_log_init(void);
void guest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One line of a child's output, as "[name] text" (no timestamp: the child's
 * own words). text need not end with a newline. */
void guest_log_child(const char *name, const char *text, size_t len);
void guest_log_flush(void);

/* CLOCK_MONOTONIC in microseconds. */
int64_t guest_mono_us(void);

#endif
