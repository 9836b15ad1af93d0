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

/* Outage log (--gaps MS): every stretch longer than the threshold without
 * any reply, by arrival time — from the first send to the first reply, between
 * two replies, and from the last reply to the end of the run — with the VM
 * that answered before and after it ("-" for none); and every switch of the
 * answering VM (a failover) even without a gap. Times in microseconds since
 * the first send. Fixed size: what does not fit is counted in *_dropped. */
#define UDPPING_MAX_EVENTS 512
#define UDPPING_VM_MAX 64

struct udpping_outage {
    int64_t start_us, end_us;
    char from[UDPPING_VM_MAX + 1], to[UDPPING_VM_MAX + 1];
};

struct udpping_switch {
    int64_t at_us;
    char from[UDPPING_VM_MAX + 1], to[UDPPING_VM_MAX + 1];
};

struct udpping_log {
    int64_t threshold_us; /* 0: gaps are not logged (switches are) */
    int64_t t0_us;        /* the first send */
    int64_t last_us;      /* the latest reply, or t0 */
    bool started;
    char last_vm[UDPPING_VM_MAX + 1]; /* "" before the first reply */
    size_t n_gaps, n_switches;
    uint64_t gaps_dropped, switches_dropped;
    struct udpping_outage gaps[UDPPING_MAX_EVENTS];
    struct udpping_switch switches[UDPPING_MAX_EVENTS];
};

enum { UDPPING_NEW_GAP = 1, UDPPING_NEW_SWITCH = 2 };

void udpping_log_init(struct udpping_log *l, int64_t threshold_us);
void udpping_log_start(struct udpping_log *l, int64_t first_send_us);
/* A reply from vm arrived at now_us. Returns UDPPING_NEW_GAP and/or
 * UDPPING_NEW_SWITCH when it ended a gap (gaps[n_gaps - 1]) or came from
 * another VM than the one before (switches[n_switches - 1]). */
unsigned udpping_log_reply(struct udpping_log *l, int64_t now_us, const char *vm);
/* The run ended at end_us (the last send): a trailing gap, to "-". Returns
 * UDPPING_NEW_GAP if there was one. */
unsigned udpping_log_finish(struct udpping_log *l, int64_t end_us);

#endif
