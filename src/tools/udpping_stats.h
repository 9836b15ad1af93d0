/* udpping_stats.h — the pure parts of cgv-udpping: request and reply text,
 * target parsing, RTT percentiles and the longest reply gap.
 *
 * Request: "udpping <token> <seq>" (token: 16 hex digits, random per run, so
 * replies to an earlier run are not taken for ours).
 * Reply from cgv-nf: "cgv-nf <vm-name> <count> " + the request bytes. */
#ifndef UDPPING_STATS_H
#define UDPPING_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UDPPING_DEFAULT_PORT "7000"

/* Returns the length written (no NUL counted), or -1 if cap is too small. */
int udpping_format_request(char *out, size_t cap, uint64_t token, uint64_t seq);

struct udpping_reply {
    char vm_name[65];
    uint64_t count;
    uint64_t token;
    uint64_t seq;
};

/* Parse a reply datagram (not NUL-terminated). Returns 0, or -1 if it is not a
 * cgv-nf reply to a udpping request. */
int udpping_parse_reply(const char *buf, size_t len, struct udpping_reply *out);

/* "HOST", "HOST:PORT", "[V6]:PORT" or a bare IPv6 address. host and port are
 * written NUL-terminated; port defaults to UDPPING_DEFAULT_PORT. Returns 0, or
 * -1 if the text is malformed or does not fit. */
int udpping_parse_target(const char *arg, char *host, size_t hcap, char *port,
                         size_t pcap);

/* Nearest-rank percentile (p in 0..100) of n samples sorted ascending.
 * n must be > 0. */
double udpping_percentile(const double *sorted, size_t n, double p);

/* Sort ascending in place. */
void udpping_sort(double *v, size_t n);

/* Longest stretch without a reply while sending: from the first send to the
 * first reply, between consecutive replies, and from the last reply to the
 * last send (if the replies had stopped by then). Times in microseconds. */
struct udpping_gap {
    bool started;
    int64_t last_us; /* first send, then the latest reply */
    int64_t max_us;
};

void udpping_gap_start(struct udpping_gap *g, int64_t first_send_us);
void udpping_gap_reply(struct udpping_gap *g, int64_t reply_us);
/* The longest gap in microseconds, counting up to last_send_us. */
int64_t udpping_gap_finish(const struct udpping_gap *g, int64_t last_send_us);

#endif
