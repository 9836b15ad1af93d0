/* hv_accel.h — choose between hardware KVM and QEMU's TCG.
 *
 * `auto` uses KVM only where it is real hardware KVM: /dev/kvm answers the
 * KVM API and the kvm_intel or kvm_amd module drives it. PVM (kvm_pvm, a
 * software-assisted KVM for nested use) runs guests about a thousand times
 * slower than TCG, so `auto` picks TCG there. The reason is always given. */
#ifndef HV_ACCEL_H
#define HV_ACCEL_H

#include <stdbool.h>
#include <stddef.h>

#include "cgv_common.h"

enum hv_accel_req { HV_ACCEL_REQ_AUTO = 0, HV_ACCEL_REQ_KVM, HV_ACCEL_REQ_TCG };
enum hv_accel { HV_ACCEL_TCG = 0, HV_ACCEL_KVM };

struct hv_accel_probe {
    bool dev_kvm;       /* /dev/kvm opens read-write and answers KVM_GET_API_VERSION */
    bool kvm_pvm;       /* /sys/module/kvm_pvm exists */
    bool kvm_hw;        /* /sys/module/kvm_intel or kvm_amd exists */
};

/* Read the probe facts off this host (sysdir is "/sys" except in tests). */
void hv_accel_probe_host(const char *sysdir, const char *dev_kvm_path,
                         struct hv_accel_probe *out);

/* Decide; why[cap] says which and why. Fails (CGV_E_INVALID) only when KVM is
 * asked for explicitly and there is no usable /dev/kvm. */
int hv_accel_decide(enum hv_accel_req req, const struct hv_accel_probe *p,
                    enum hv_accel *out, char *why, size_t cap,
                    struct cgv_error *err) CGV_WUR;

const char *hv_accel_name(enum hv_accel a);

#endif
