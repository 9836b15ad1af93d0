/* hv_xml.h — libvirt domain XML for a cgv VM, built with libxml2 (never by
 * pasting strings), and cgv's metadata element read back from libvirt.
 * Pure code: no libvirt calls, unit-tested against expected files. */
#ifndef HV_XML_H
#define HV_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"

/* The XML namespace of cgv's <metadata> element. */
#define HV_META_NS "https://cgv.dev/xmlns/instance/1"
#define HV_META_PREFIX "cgv"
#define HV_MAX_NICS 8

struct hv_nic {
    char bridge[16]; /* host bridge (IFNAMSIZ) */
    char mac[18];    /* "52:54:00:xx:xx:xx" */
};

/* Everything the domain XML is made from. All strings are borrowed. */
struct hv_domain_def {
    const char *name;      /* libvirt domain name, e.g. "cgv-demo-0" */
    const char *uuid;      /* 36-char UUID */
    const char *owner;     /* cgvd's owner id (store_owner_id) */
    const char *service;
    const char *vm;        /* cgv VM name, e.g. "demo-0" */
    int64_t generation;    /* spec generation the definition came from */
    unsigned vcpus;
    uint64_t memory_mib;
    bool kvm;              /* <domain type='kvm'> instead of 'qemu' (TCG) */
    const char *kernel;    /* direct-boot kernel and initrd paths */
    const char *initrd;
    const char *cmdline;
    size_t n_nics;
    struct hv_nic nics[HV_MAX_NICS];
    /* CPU placement and QoS (all optional: zero/NULL = not set) */
    unsigned max_vcpus;          /* > vcpus: room for live hot-plug */
    const char *const *vcpu_pins; /* vcpus entries, libvirt cpuset strings */
    const char *emulator_pin;     /* cpuset for emulator and I/O threads */
    bool numa;                    /* emit <numatune>: */
    int numa_node;                /*   the one node, or -1 with numa_nodeset */
    bool numa_strict;
    const char *numa_nodeset;     /*   when the VM spans nodes */
    unsigned rt_priority;         /* > 0: SCHED_FIFO vCPUs at this priority */
    unsigned cpu_shares;
    unsigned cpu_period_us;
    uint64_t cpu_quota_us;
    uint64_t mem_hard_limit_mib;
    uint64_t net_in_kbps, net_out_kbps, net_burst_kb; /* KiB/s, per NIC */

    const char *console_socket; /* unix socket of the serial console */
    const char *console_log;    /* file virtlogd appends the console to */
    const char *agent_socket;   /* unix socket of the agent channel */
};

/* Build the XML. *out is NUL-terminated, caller frees. */
int hv_xml_build(const struct hv_domain_def *d, char **out, struct cgv_error *err) CGV_WUR;

/* <domainsnapshot> asking for an external memory snapshot into path, no
 * disks (cgv's domains have none). *out is caller-freed. */
int hv_xml_snapshot(const char *path, char **out, struct cgv_error *err) CGV_WUR;

/* The MAC addresses of a domain XML's interfaces, in order (at most max). */
size_t hv_xml_macs(const char *xml, char macs[][18], size_t max);

/* cgv's metadata as read back from a domain. */
struct hv_meta {
    char owner[64];
    char service[64];
    char vm[64];
    int64_t generation;
};

/* Parse the <cgv:instance> element virDomainGetMetadata returns. Returns 0,
 * or -1 when it is not cgv metadata (err says why). */
int hv_xml_parse_meta(const char *xml, struct hv_meta *out, struct cgv_error *err) CGV_WUR;

/* Deterministic locally administered MAC "52:54:00:xx:xx:xx" from a UUID and
 * NIC index. */
void hv_mac_from_uuid(const char *uuid, unsigned nic, char out[18]);

#endif
