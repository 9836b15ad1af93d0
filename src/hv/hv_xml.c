/* hv_xml.c — see hv_xml.h */
#include "hv_xml.h"

#include <errno.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <string.h>

static xmlNodePtr add(xmlNodePtr parent, const char *name, const char *text)
{
    return xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text);
}

static void prop(xmlNodePtr node, const char *name, const char *value)
{
    xmlNewProp(node, BAD_CAST name, BAD_CAST value);
}

static xmlNodePtr add_unix_source(xmlNodePtr dev, const char *path)
{
    xmlNodePtr src = add(dev, "source", NULL);
    prop(src, "mode", "bind");
    prop(src, "path", path);
    return src;
}

/* XML 1.0 cannot carry most control characters, even escaped. */
static bool has_control(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return true;
    }
    return false;
}

static int check_def(const struct hv_domain_def *d, struct cgv_error *err)
{
    const char *required[] = {d->name, d->uuid, d->owner, d->service, d->vm,
                              d->kernel, d->initrd, d->cmdline, d->console_socket,
                              d->console_log, d->agent_socket};

    for (size_t i = 0; i < CGV_ARRAY_LEN(required); i++) {
        if (!required[i] || !required[i][0])
            return cgv_err(err, CGV_E_INTERNAL, "domain definition of %s is incomplete",
                           d->name ? d->name : "(unnamed)");
        if (has_control(required[i]))
            return cgv_err(err, CGV_E_INVALID,
                           "domain definition of %s has a control character in '%.60s'",
                           d->name, required[i]);
    }
    if (d->vcpus == 0 || d->memory_mib == 0 || d->n_nics > HV_MAX_NICS)
        return cgv_err(err, CGV_E_INTERNAL, "domain definition of %s has bad sizes",
                       d->name);
    return 0;
}

/* <cputune>, <memtune>, <numatune>: only what the definition asks for. */
static void add_tuning(xmlNodePtr dom, const struct hv_domain_def *d)
{
    char num[32];
    xmlNodePtr tune = NULL, node;
    unsigned n = d->max_vcpus > d->vcpus ? d->max_vcpus : d->vcpus;

    if (d->vcpu_pins || d->emulator_pin || d->cpu_shares || d->cpu_quota_us ||
        d->rt_priority) {
        tune = add(dom, "cputune", NULL);
        if (d->cpu_shares) {
            snprintf(num, sizeof(num), "%u", d->cpu_shares);
            add(tune, "shares", num);
        }
        if (d->cpu_quota_us) {
            snprintf(num, sizeof(num), "%u", d->cpu_period_us ? d->cpu_period_us : 100000);
            add(tune, "period", num);
            snprintf(num, sizeof(num), "%" PRIu64, d->cpu_quota_us);
            add(tune, "quota", num);
        }
        for (unsigned i = 0; d->vcpu_pins && i < n; i++) {
            if (!d->vcpu_pins[i] || !d->vcpu_pins[i][0])
                continue;
            node = add(tune, "vcpupin", NULL);
            snprintf(num, sizeof(num), "%u", i);
            prop(node, "vcpu", num);
            prop(node, "cpuset", d->vcpu_pins[i]);
        }
        if (d->emulator_pin && d->emulator_pin[0]) {
            node = add(tune, "emulatorpin", NULL);
            prop(node, "cpuset", d->emulator_pin);
        }
        if (d->rt_priority) {
            node = add(tune, "vcpusched", NULL);
            snprintf(num, sizeof(num), "0-%u", n - 1);
            prop(node, "vcpus", num);
            prop(node, "scheduler", "fifo");
            snprintf(num, sizeof(num), "%u", d->rt_priority);
            prop(node, "priority", num);
        }
    }
    if (d->mem_hard_limit_mib) {
        tune = add(dom, "memtune", NULL);
        snprintf(num, sizeof(num), "%" PRIu64, d->mem_hard_limit_mib);
        node = add(tune, "hard_limit", num);
        prop(node, "unit", "MiB");
    }
    if (d->numa && (d->numa_node >= 0 || (d->numa_nodeset && d->numa_nodeset[0]))) {
        tune = add(dom, "numatune", NULL);
        node = add(tune, "memory", NULL);
        prop(node, "mode", d->numa_strict ? "strict" : "preferred");
        if (d->numa_node >= 0) {
            snprintf(num, sizeof(num), "%d", d->numa_node);
            prop(node, "nodeset", num);
        } else {
            prop(node, "nodeset", d->numa_nodeset);
        }
    }
}

int hv_xml_build(const struct hv_domain_def *d, char **out, struct cgv_error *err)
{
    xmlDocPtr doc = NULL;
    xmlNodePtr dom, node, os, dev, devices, meta, inst;
    xmlNsPtr ns;
    xmlChar *mem = NULL;
    int size = 0, ret = -1;
    char num[32];

    if (check_def(d, err) < 0)
        return -1;

    doc = xmlNewDoc(BAD_CAST "1.0");
    dom = xmlNewNode(NULL, BAD_CAST "domain");
    xmlDocSetRootElement(doc, dom);
    prop(dom, "type", d->kvm ? "kvm" : "qemu");
    add(dom, "name", d->name);
    add(dom, "uuid", d->uuid);

    meta = add(dom, "metadata", NULL);
    inst = xmlNewChild(meta, NULL, BAD_CAST "instance", NULL);
    ns = xmlNewNs(inst, BAD_CAST HV_META_NS, BAD_CAST HV_META_PREFIX);
    xmlSetNs(inst, ns);
    xmlNewTextChild(inst, ns, BAD_CAST "owner", BAD_CAST d->owner);
    xmlNewTextChild(inst, ns, BAD_CAST "service", BAD_CAST d->service);
    xmlNewTextChild(inst, ns, BAD_CAST "vm", BAD_CAST d->vm);
    snprintf(num, sizeof(num), "%" PRId64, d->generation);
    xmlNewTextChild(inst, ns, BAD_CAST "generation", BAD_CAST num);

    snprintf(num, sizeof(num), "%" PRIu64, d->memory_mib);
    node = add(dom, "memory", num);
    prop(node, "unit", "MiB");
    snprintf(num, sizeof(num), "%u", d->max_vcpus > d->vcpus ? d->max_vcpus : d->vcpus);
    node = add(dom, "vcpu", num);
    prop(node, "placement", "static");
    if (d->max_vcpus > d->vcpus) {
        snprintf(num, sizeof(num), "%u", d->vcpus);
        prop(node, "current", num);
    }
    add_tuning(dom, d);

    os = add(dom, "os", NULL);
    node = add(os, "type", "hvm");
    prop(node, "arch", "x86_64");
    prop(node, "machine", "pc");
    add(os, "kernel", d->kernel);
    add(os, "initrd", d->initrd);
    add(os, "cmdline", d->cmdline);

    node = add(dom, "features", NULL);
    add(node, "acpi", NULL);
    node = add(dom, "clock", NULL);
    prop(node, "offset", "utc");
    add(dom, "on_poweroff", "destroy");
    add(dom, "on_reboot", "restart");
    /* preserve: a panicked guest stays "crashed" so cgv sees libvirt's
     * crashed event and decides (fence, restart) itself. */
    add(dom, "on_crash", "preserve");

    devices = add(dom, "devices", NULL);
    for (size_t i = 0; i < d->n_nics; i++) {
        dev = add(devices, "interface", NULL);
        prop(dev, "type", "bridge");
        node = add(dev, "mac", NULL);
        prop(node, "address", d->nics[i].mac);
        node = add(dev, "source", NULL);
        prop(node, "bridge", d->nics[i].bridge);
        node = add(dev, "model", NULL);
        prop(node, "type", "virtio");
        if (d->net_in_kbps || d->net_out_kbps) {
            xmlNodePtr bw = add(dev, "bandwidth", NULL);
            const uint64_t rates[2] = {d->net_in_kbps, d->net_out_kbps};
            const char *const dirs[2] = {"inbound", "outbound"};
            for (int k = 0; k < 2; k++) {
                if (!rates[k])
                    continue;
                node = add(bw, dirs[k], NULL);
                snprintf(num, sizeof(num), "%" PRIu64, rates[k]);
                prop(node, "average", num);
                if (d->net_burst_kb) {
                    snprintf(num, sizeof(num), "%" PRIu64, d->net_burst_kb);
                    prop(node, "burst", num);
                }
            }
        }
    }

    dev = add(devices, "serial", NULL);
    prop(dev, "type", "unix");
    add_unix_source(dev, d->console_socket);
    node = add(dev, "log", NULL);
    prop(node, "file", d->console_log);
    prop(node, "append", "on");
    node = add(dev, "target", NULL);
    prop(node, "port", "0");
    dev = add(devices, "console", NULL);
    prop(dev, "type", "unix");
    add_unix_source(dev, d->console_socket);
    node = add(dev, "target", NULL);
    prop(node, "type", "serial");
    prop(node, "port", "0");

    dev = add(devices, "channel", NULL);
    prop(dev, "type", "unix");
    add_unix_source(dev, d->agent_socket);
    node = add(dev, "target", NULL);
    prop(node, "type", "virtio");
    prop(node, "name", "org.cgv.agent.0");

    /* Fault sources: the i6300esb watchdog (the agent arms and pets it when
     * the spec asks; action none: libvirt reports, cgv recovers) and the
     * pvpanic device (a guest kernel panic becomes libvirt's crashed event). */
    dev = add(devices, "watchdog", NULL);
    prop(dev, "model", "i6300esb");
    prop(dev, "action", "none");
    dev = add(devices, "panic", NULL);
    prop(dev, "model", "isa");
    node = add(dev, "address", NULL);
    prop(node, "type", "isa");
    prop(node, "iobase", "0x505");

    dev = add(devices, "controller", NULL);
    prop(dev, "type", "usb");
    prop(dev, "model", "none");
    dev = add(devices, "memballoon", NULL);
    prop(dev, "model", "none");

    xmlDocDumpFormatMemoryEnc(doc, &mem, &size, "UTF-8", 1);
    if (!mem || size <= 0) {
        cgv_err(err, CGV_E_INTERNAL, "could not serialise the domain XML of %s", d->name);
        goto cleanup;
    }
    *out = cgv_malloc0((size_t)size + 1);
    memcpy(*out, mem, (size_t)size);
    ret = 0;

cleanup:
    xmlFree(mem);
    xmlFreeDoc(doc);
    return ret;
}

int hv_xml_snapshot(const char *path, char **out, struct cgv_error *err)
{
    xmlDocPtr doc;
    xmlNodePtr root, mem;
    xmlChar *buf = NULL;
    int size = 0;

    if (!path || !path[0] || has_control(path))
        return cgv_err(err, CGV_E_INVALID, "bad snapshot path");
    doc = xmlNewDoc(BAD_CAST "1.0");
    root = xmlNewNode(NULL, BAD_CAST "domainsnapshot");
    xmlDocSetRootElement(doc, root);
    mem = add(root, "memory", NULL);
    prop(mem, "snapshot", "external");
    prop(mem, "file", path);
    xmlDocDumpFormatMemoryEnc(doc, &buf, &size, "UTF-8", 1);
    xmlFreeDoc(doc);
    if (!buf || size <= 0) {
        xmlFree(buf);
        return cgv_err(err, CGV_E_INTERNAL, "could not serialise the snapshot XML");
    }
    *out = cgv_malloc0((size_t)size + 1);
    memcpy(*out, buf, (size_t)size);
    xmlFree(buf);
    return 0;
}

size_t hv_xml_macs(const char *xml, char macs[][18], size_t max)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNodePtr root, devs = NULL;
    size_t n = 0;

    if (!doc)
        return 0;
    root = xmlDocGetRootElement(doc);
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "devices"))
            devs = c;
    }
    for (xmlNodePtr c = devs ? devs->children : NULL; c && n < max; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "interface"))
            continue;
        for (xmlNodePtr m = c->children; m; m = m->next) {
            xmlChar *a;
            if (m->type != XML_ELEMENT_NODE || strcmp((const char *)m->name, "mac"))
                continue;
            a = xmlGetProp(m, BAD_CAST "address");
            if (a && cgv_strlcpy(macs[n], (const char *)a, 18) == 0)
                n++;
            xmlFree(a);
        }
    }
    xmlFreeDoc(doc);
    return n;
}

static int copy_child_text(xmlNodePtr parent, const char *name, char *dst, size_t cap)
{
    for (xmlNodePtr c = parent->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, name) != 0)
            continue;
        xmlChar *t = xmlNodeGetContent(c);
        int rc = t ? cgv_strlcpy(dst, (const char *)t, cap) : -1;
        xmlFree(t);
        return rc;
    }
    return -1;
}

int hv_xml_parse_meta(const char *xml, struct hv_meta *out, struct cgv_error *err)
{
    xmlDocPtr doc;
    xmlNodePtr root;
    char gen[32];
    int ret = -1;

    memset(out, 0, sizeof(*out));
    doc = xmlReadMemory(xml, (int)strlen(xml), "metadata.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return cgv_err(err, CGV_E_INVALID, "metadata is not well-formed XML");
    root = xmlDocGetRootElement(doc);
    /* virDomainGetMetadata answers with the element stripped of its
     * namespace (it was selected by it); a full domain XML carries it. */
    if (!root || strcmp((const char *)root->name, "instance") != 0 ||
        (root->ns && strcmp((const char *)root->ns->href, HV_META_NS) != 0)) {
        cgv_err(err, CGV_E_INVALID, "metadata is not a cgv instance element");
        goto cleanup;
    }
    if (copy_child_text(root, "owner", out->owner, sizeof(out->owner)) < 0 ||
        copy_child_text(root, "service", out->service, sizeof(out->service)) < 0 ||
        copy_child_text(root, "vm", out->vm, sizeof(out->vm)) < 0 ||
        copy_child_text(root, "generation", gen, sizeof(gen)) < 0) {
        cgv_err(err, CGV_E_INVALID, "cgv metadata lacks owner, service, vm or generation");
        goto cleanup;
    }
    {
        char *end;
        errno = 0;
        out->generation = strtoll(gen, &end, 10);
        if (errno || end == gen || *end || out->generation < 0) {
            cgv_err(err, CGV_E_INVALID, "cgv metadata has a bad generation '%s'", gen);
            goto cleanup;
        }
    }
    ret = 0;

cleanup:
    xmlFreeDoc(doc);
    return ret;
}

void hv_mac_from_uuid(const char *uuid, unsigned nic, char out[18])
{
    /* FNV-1a over the UUID text and the NIC index. */
    uint32_t h = 2166136261u;

    for (const char *p = uuid; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 16777619u;
    }
    h ^= nic;
    h *= 16777619u;
    snprintf(out, 18, "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff, (h >> 8) & 0xff,
             h & 0xff);
}
