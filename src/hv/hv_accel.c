/* hv_accel.c — see hv_accel.h */
#include "hv_accel.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static bool path_exists(const char *dir, const char *rel)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return stat(path, &st) == 0;
}

void hv_accel_probe_host(const char *sysdir, const char *dev_kvm_path,
                         struct hv_accel_probe *out)
{
    CGV_AUTOCLOSE int fd = -1;

    out->kvm_pvm = path_exists(sysdir, "module/kvm_pvm");
    out->kvm_hw = path_exists(sysdir, "module/kvm_intel") ||
                  path_exists(sysdir, "module/kvm_amd");
    out->dev_kvm = false;
    fd = open(dev_kvm_path, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION)
        out->dev_kvm = true;
}

int hv_accel_decide(enum hv_accel_req req, const struct hv_accel_probe *p,
                    enum hv_accel *out, char *why, size_t cap, struct cgv_error *err)
{
    switch (req) {
    case HV_ACCEL_REQ_TCG:
        *out = HV_ACCEL_TCG;
        snprintf(why, cap, "tcg: asked for by the spec");
        return 0;
    case HV_ACCEL_REQ_KVM:
        if (!p->dev_kvm)
            return cgv_err(err, CGV_E_INVALID,
                           "acceleration kvm asked for, but /dev/kvm is missing or "
                           "does not answer the KVM API on this host");
        *out = HV_ACCEL_KVM;
        if (p->kvm_pvm)
            snprintf(why, cap, "kvm: asked for by the spec, although /dev/kvm is PVM "
                               "(kvm_pvm) and guests run far slower than under tcg");
        else
            snprintf(why, cap, "kvm: asked for by the spec");
        return 0;
    case HV_ACCEL_REQ_AUTO:
        break;
    }
    if (!p->dev_kvm) {
        *out = HV_ACCEL_TCG;
        snprintf(why, cap, "tcg: /dev/kvm is missing or does not answer the KVM API");
    } else if (p->kvm_pvm) {
        *out = HV_ACCEL_TCG;
        snprintf(why, cap, "tcg: /dev/kvm is PVM (module kvm_pvm), a software-assisted "
                           "KVM that runs guests about 1000x slower than tcg");
    } else if (!p->kvm_hw) {
        *out = HV_ACCEL_TCG;
        snprintf(why, cap, "tcg: /dev/kvm is not driven by kvm_intel or kvm_amd, so it "
                           "is not hardware KVM");
    } else {
        *out = HV_ACCEL_KVM;
        snprintf(why, cap, "kvm: /dev/kvm is hardware KVM (kvm_intel/kvm_amd)");
    }
    return 0;
}

const char *hv_accel_name(enum hv_accel a)
{
    return a == HV_ACCEL_KVM ? "kvm" : "tcg";
}
