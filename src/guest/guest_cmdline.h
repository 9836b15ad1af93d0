/* guest_cmdline.h — the kernel command line contract between cgvd and the guest.
 *
 *   console=ttyS0 quiet panic=-1 cgv.name=<vm> cgv.net0=<ipv4>/<prefix>
 *   [cgv.net1=<ipv4>/<prefix> ...] [cgv.gw=<ipv4>]
 *
 * cgv.netN configures ethN (interfaces in PCI order). Every value is validated
 * here, so what guest_cmdline_format_env() prints is safe to eval in /init.
 * Pure code: no I/O, no allocation. */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

#define GUEST_MAX_NETS 8
#define GUEST_NAME_MAX 40 /* cgv's name rule: 1-40 of [a-z0-9-] */
#define GUEST_DEFAULT_NAME "cgv-guest"

struct guest_net {
    bool set;
    char addr[16];   /* dotted quad, validated */
    unsigned prefix; /* 1..32 */
};

struct guest_cmdline {
    bool has_name;
    char name[GUEST_NAME_MAX + 1]; /* GUEST_DEFAULT_NAME when !has_name */
    struct guest_net net[GUEST_MAX_NETS];
    bool has_gw;
    char gw[16];
    unsigned n_bad; /* cgv.* arguments that were ignored as invalid */
};

/* The cgv name rule (same as cgvd's): 1-40 chars of [a-z0-9-], starting with a
 * letter, not ending with '-'. */
bool guest_name_valid(const char *s, size_t n);

/* Parse a kernel command line (the text of /proc/cmdline). Never fails: an
 * invalid cgv.* value is skipped, counted in n_bad and, when why is not NULL,
 * described (the first one) in why[whycap]. Later occurrences win. */
void guest_cmdline_parse(const char *cmdline, struct guest_cmdline *out, char *why,
                         size_t whycap);

/* Shell assignments for /init, one per line:
 *   CGV_NAME=demo-0
 *   CGV_NETS="0 1"           (indexes that are set)
 *   CGV_NET0=10.0.0.5/24
 *   CGV_GW=10.0.0.1          (only when set)
 * Returns the length written, or -1 if cap is too small. */
int guest_cmdline_format_env(const struct guest_cmdline *c, char *out, size_t cap);

#endif
