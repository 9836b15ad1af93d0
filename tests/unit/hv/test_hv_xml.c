/* Unit tests for hv_xml: the domain XML cgv gives libvirt, the metadata
 * element read back, and MACs derived from UUIDs.
 *
 * Expected output (libvirt's xml2xml style): each case of `cases[]` is built
 * and must equal tests/fixtures/hv/<case>.xml byte for byte. Run with
 * REGENERATE=1 to rewrite the files, then review the diff. Besides the byte
 * comparison every generated document is parsed back with libxml2 and its
 * values compared with the definition, so hostile characters in paths and in
 * the kernel command line are proved to stay inside their text node or
 * attribute (no XML injection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "hv_xml.h"

#ifndef HV_FIXTURES
#error "HV_FIXTURES must name the fixture directory"
#endif

#define UUID_A "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#define UUID_B "0f8fad5b-d9cb-469f-a165-70867728950e"
#define OWNER "2b1e0c4a-6f43-4b8e-9b7f-0d5a7e8c9f10"

/* ------------------------------------------------------------------ */
/* cases                                                               */

static void base_def(struct hv_domain_def *d)
{
    memset(d, 0, sizeof(*d));
    d->name = "cgv-demo-0";
    d->uuid = UUID_A;
    d->owner = OWNER;
    d->service = "demo";
    d->vm = "demo-0";
    d->generation = 3;
    d->vcpus = 1;
    d->memory_mib = 256;
    d->kvm = true;
    d->kernel = "/var/lib/cgv/images/default/vmlinuz";
    d->initrd = "/var/lib/cgv/images/default/initrd.img";
    d->cmdline = "console=ttyS0 quiet cgv.vm=demo-0 cgv.ip=10.77.0.10/24";
    d->n_nics = 1;
    strcpy(d->nics[0].bridge, "cgvbr0");
    hv_mac_from_uuid(d->uuid, 0, d->nics[0].mac);
    d->console_socket = "/run/cgv/vm/demo-0/console.sock";
    d->console_log = "/var/log/cgv/vm/demo-0/console.log";
    d->agent_socket = "/run/cgv/vm/demo-0/agent.sock";
}

static void case_one_nic_kvm(struct hv_domain_def *d)
{
    base_def(d);
}

static void case_one_nic_qemu(struct hv_domain_def *d)
{
    base_def(d);
    d->kvm = false;
}

static void case_three_nics(struct hv_domain_def *d)
{
    base_def(d);
    d->name = "cgv-web-2";
    d->uuid = UUID_B;
    d->service = "web";
    d->vm = "web-2";
    d->generation = 17;
    d->vcpus = 4;
    d->memory_mib = 4096;
    d->kvm = false;
    d->n_nics = 3;
    for (size_t i = 0; i < 3; i++) {
        snprintf(d->nics[i].bridge, sizeof(d->nics[i].bridge), "cgvbr%zu", i);
        hv_mac_from_uuid(d->uuid, (unsigned)i, d->nics[i].mac);
    }
}

static void case_max_nics(struct hv_domain_def *d)
{
    base_def(d);
    d->n_nics = HV_MAX_NICS;
    for (size_t i = 0; i < HV_MAX_NICS; i++) {
        snprintf(d->nics[i].bridge, sizeof(d->nics[i].bridge), "cgvbr%zu", i);
        hv_mac_from_uuid(d->uuid, (unsigned)i, d->nics[i].mac);
    }
}

static void case_no_nic(struct hv_domain_def *d)
{
    base_def(d);
    d->n_nics = 0;
}

/* Every character XML gives a meaning to, in every place a path or text
 * goes: each must come out escaped and read back unchanged. */
static void case_special_chars(struct hv_domain_def *d)
{
    base_def(d);
    d->service = "a&b<c>";
    d->vm = "\"quoted\" 'vm'";
    d->owner = "]]><x/>";
    d->kernel = "/images/<kernel>&amp;\"'/vmlinuz";
    d->initrd = "/images/a&b/initrd'\".img";
    d->cmdline = "console=ttyS0 x=\"</cmdline></os><devices><disk/></devices><os><cmdline>\" "
                 "y='&lt;' z=&entity; ]]> <!-- c -->";
    d->console_socket = "/run/cgv/\"/><source path=\"/etc/shadow\"/>.sock";
    d->console_log = "/var/log/cgv/it's <log> & more.log";
    d->agent_socket = "/run/cgv/'agent' & <chan>.sock";
}

struct xml_case {
    const char *name;
    void (*fill)(struct hv_domain_def *d);
};

static const struct xml_case cases[] = {
    {"one-nic-kvm", case_one_nic_kvm},
    {"one-nic-qemu", case_one_nic_qemu},
    {"three-nics-qemu", case_three_nics},
    {"max-nics", case_max_nics},
    {"no-nic", case_no_nic},
    {"special-chars", case_special_chars},
};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static char *build_ok(const struct hv_domain_def *d)
{
    struct cgv_error err = {0};
    char *xml = NULL;

    if (hv_xml_build(d, &xml, &err) != 0) {
        print_error("hv_xml_build failed: %s\n", err.msg);
        fail();
    }
    assert_non_null(xml);
    return xml;
}

static xmlXPathObjectPtr xpath(xmlDocPtr doc, const char *expr)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathObjectPtr o;

    assert_non_null(ctx);
    assert_int_equal(xmlXPathRegisterNs(ctx, BAD_CAST "c", BAD_CAST HV_META_NS), 0);
    o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    xmlXPathFreeContext(ctx);
    assert_non_null(o);
    return o;
}

static int xpath_count(xmlDocPtr doc, const char *expr)
{
    xmlXPathObjectPtr o = xpath(doc, expr);
    int n = o->nodesetval ? o->nodesetval->nodeNr : 0;

    xmlXPathFreeObject(o);
    return n;
}

/* The string value of the single node expr selects must be want. */
static void assert_xpath_str(xmlDocPtr doc, const char *expr, const char *want)
{
    xmlXPathObjectPtr o = xpath(doc, expr);
    xmlChar *got;

    if (!o->nodesetval || o->nodesetval->nodeNr != 1) {
        print_error("%s selects %d nodes, want 1\n", expr,
                    o->nodesetval ? o->nodesetval->nodeNr : 0);
        xmlXPathFreeObject(o);
        fail();
    }
    got = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
    if (!got || strcmp((const char *)got, want) != 0)
        print_error("%s: got \"%s\", want \"%s\"\n", expr, got ? (char *)got : "(null)",
                    want);
    assert_non_null(got);
    assert_string_equal((const char *)got, want);
    xmlFree(got);
    xmlXPathFreeObject(o);
}

/* Parse xml back and compare every value with d; the document's shape must
 * be exactly what cgv builds, whatever the strings contained. */
static void assert_structure(const char *xml, const struct hv_domain_def *d)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR |
                                      XML_PARSE_NOWARNING);
    char expr[128], num[32];

    assert_non_null(doc);
    /* The shape: nothing a string could have added. */
    assert_int_equal(xpath_count(doc, "/*"), 1);
    assert_int_equal(xpath_count(doc, "/domain/*"), 12);
    assert_int_equal(xpath_count(doc, "//os"), 1);
    assert_int_equal(xpath_count(doc, "//cmdline"), 1);
    assert_int_equal(xpath_count(doc, "//devices"), 1);
    assert_int_equal(xpath_count(doc, "//disk"), 0);
    assert_int_equal(xpath_count(doc, "//comment()"), 0);
    assert_int_equal(xpath_count(doc, "//processing-instruction()"), 0);
    assert_int_equal(xpath_count(doc, "//x"), 0);
    /* serial, console, channel, watchdog, panic, usb controller, balloon */
    assert_int_equal(xpath_count(doc, "/domain/devices/*"), (int)d->n_nics + 7);
    assert_int_equal(xpath_count(doc, "/domain/devices/watchdog[@model='i6300esb'][@action='none']"), 1);
    assert_int_equal(xpath_count(doc, "/domain/devices/panic[@model='isa']"), 1);
    assert_xpath_str(doc, "/domain/on_crash", "preserve");
    assert_int_equal(xpath_count(doc, "//interface"), (int)d->n_nics);
    assert_int_equal(xpath_count(doc, "//source[@path]"), 3);
    assert_int_equal(xpath_count(doc, "/domain/metadata/*"), 1);
    assert_int_equal(xpath_count(doc, "/domain/metadata/c:instance/*"), 4);

    assert_xpath_str(doc, "/domain/@type", d->kvm ? "kvm" : "qemu");
    assert_xpath_str(doc, "/domain/name", d->name);
    assert_xpath_str(doc, "/domain/uuid", d->uuid);
    assert_xpath_str(doc, "/domain/metadata/c:instance/c:owner", d->owner);
    assert_xpath_str(doc, "/domain/metadata/c:instance/c:service", d->service);
    assert_xpath_str(doc, "/domain/metadata/c:instance/c:vm", d->vm);
    snprintf(num, sizeof(num), "%lld", (long long)d->generation);
    assert_xpath_str(doc, "/domain/metadata/c:instance/c:generation", num);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)d->memory_mib);
    assert_xpath_str(doc, "/domain/memory", num);
    assert_xpath_str(doc, "/domain/memory/@unit", "MiB");
    snprintf(num, sizeof(num), "%u", d->vcpus);
    assert_xpath_str(doc, "/domain/vcpu", num);
    assert_xpath_str(doc, "/domain/os/kernel", d->kernel);
    assert_xpath_str(doc, "/domain/os/initrd", d->initrd);
    assert_xpath_str(doc, "/domain/os/cmdline", d->cmdline);
    assert_xpath_str(doc, "/domain/devices/serial/source/@path", d->console_socket);
    assert_xpath_str(doc, "/domain/devices/serial/log/@file", d->console_log);
    assert_xpath_str(doc, "/domain/devices/console/source/@path", d->console_socket);
    assert_xpath_str(doc, "/domain/devices/channel/source/@path", d->agent_socket);
    assert_xpath_str(doc, "/domain/devices/channel/target/@name", "org.cgv.agent.0");
    for (size_t i = 0; i < d->n_nics; i++) {
        snprintf(expr, sizeof(expr), "/domain/devices/interface[%zu]/mac/@address", i + 1);
        assert_xpath_str(doc, expr, d->nics[i].mac);
        snprintf(expr, sizeof(expr), "/domain/devices/interface[%zu]/source/@bridge", i + 1);
        assert_xpath_str(doc, expr, d->nics[i].bridge);
    }
    xmlFreeDoc(doc);
}

static char *read_text(const char *path)
{
    char *text = NULL;
    struct cgv_error err = {0};

    if (cgv_read_file(path, 1 << 20, &text, NULL, &err) != 0)
        return NULL;
    return text;
}

/* ------------------------------------------------------------------ */
/* hv_xml_build                                                        */

static void test_build_fixture(void **state)
{
    const struct xml_case *c = *state;
    struct hv_domain_def d;
    struct cgv_error err = {0};
    char path[512], *got, *want;

    c->fill(&d);
    got = build_ok(&d);
    assert_structure(got, &d);
    snprintf(path, sizeof(path), "%s/%s.xml", HV_FIXTURES, c->name);
    if (getenv("REGENERATE") && strcmp(getenv("REGENERATE"), "1") == 0) {
        assert_int_equal(cgv_write_file_atomic(path, got, strlen(got), 0644, &err), 0);
        free(got);
        return;
    }
    want = read_text(path);
    if (!want) {
        print_error("%s is missing (run with REGENERATE=1 to create it)\n", path);
        free(got);
        fail();
    }
    if (strcmp(want, got) != 0)
        print_error("%s differs.\n--- expected\n%s--- got\n%s", path, want, got);
    assert_string_equal(want, got);
    free(want);
    free(got);
}

/* CPU placement and QoS: pins, emulator pin, NUMA, real-time, shares,
 * quota, hard limit, bandwidth and vCPU hot-plug room, exactly where
 * libvirt expects them (tests/fixtures/hv/tuned.xml; test_hv.c defines it
 * on libvirt's test driver). */
static void test_build_tuned(void **state)
{
    static const char *const pins[4] = {"2", "3", "2-3", "2-3"};
    struct hv_domain_def d;
    struct cgv_error err = {0};
    char path[512], *got, *want;
    xmlDocPtr doc;

    (void)state;
    base_def(&d);
    d.kvm = false;
    d.vcpus = 2;
    d.max_vcpus = 4;
    d.vcpu_pins = pins;
    d.emulator_pin = "0-1";
    d.numa = true;
    d.numa_node = 1;
    d.numa_strict = true;
    d.rt_priority = 10;
    d.cpu_shares = 512;
    d.cpu_period_us = 50000;
    d.cpu_quota_us = 25000;
    d.mem_hard_limit_mib = 384;
    d.net_in_kbps = 1000;
    d.net_out_kbps = 2000;
    d.net_burst_kb = 64;
    got = build_ok(&d);
    doc = xmlReadMemory(got, (int)strlen(got), "t.xml", NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    assert_xpath_str(doc, "/domain/vcpu", "4");
    assert_xpath_str(doc, "/domain/vcpu/@current", "2");
    assert_int_equal(xpath_count(doc, "/domain/cputune/vcpupin"), 4);
    assert_xpath_str(doc, "/domain/cputune/vcpupin[@vcpu='1']/@cpuset", "3");
    assert_xpath_str(doc, "/domain/cputune/emulatorpin/@cpuset", "0-1");
    assert_xpath_str(doc, "/domain/cputune/shares", "512");
    assert_xpath_str(doc, "/domain/cputune/period", "50000");
    assert_xpath_str(doc, "/domain/cputune/quota", "25000");
    assert_xpath_str(doc, "/domain/cputune/vcpusched/@scheduler", "fifo");
    assert_xpath_str(doc, "/domain/cputune/vcpusched/@priority", "10");
    assert_xpath_str(doc, "/domain/cputune/vcpusched/@vcpus", "0-3");
    assert_xpath_str(doc, "/domain/memtune/hard_limit", "384");
    assert_xpath_str(doc, "/domain/numatune/memory/@mode", "strict");
    assert_xpath_str(doc, "/domain/numatune/memory/@nodeset", "1");
    assert_xpath_str(doc, "/domain/devices/interface/bandwidth/inbound/@average", "1000");
    assert_xpath_str(doc, "/domain/devices/interface/bandwidth/outbound/@average", "2000");
    assert_xpath_str(doc, "/domain/devices/interface/bandwidth/outbound/@burst", "64");
    xmlFreeDoc(doc);
    /* Nothing of it when nothing is asked for. */
    {
        struct hv_domain_def plain;
        char *x;
        base_def(&plain);
        x = build_ok(&plain);
        assert_null(strstr(x, "cputune"));
        assert_null(strstr(x, "numatune"));
        assert_null(strstr(x, "memtune"));
        assert_null(strstr(x, "bandwidth"));
        assert_null(strstr(x, "current="));
        free(x);
    }
    snprintf(path, sizeof(path), "%s/tuned.xml", HV_FIXTURES);
    if (getenv("REGENERATE") && strcmp(getenv("REGENERATE"), "1") == 0) {
        assert_int_equal(cgv_write_file_atomic(path, got, strlen(got), 0644, &err), 0);
    } else {
        want = read_text(path);
        assert_non_null(want);
        assert_string_equal(want, got);
        free(want);
    }
    free(got);
}

/* The same definition gives the same bytes. */
static void test_build_deterministic(void **state)
{
    struct hv_domain_def d;
    char *a, *b;

    (void)state;
    case_three_nics(&d);
    a = build_ok(&d);
    b = build_ok(&d);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* The hostile strings of special-chars never appear raw in the output:
 * every '<' and '&' of the input is escaped. */
static void test_build_escapes(void **state)
{
    struct hv_domain_def d;
    char *xml;

    (void)state;
    case_special_chars(&d);
    xml = build_ok(&d);
    assert_null(strstr(xml, "<kernel>&amp;\""));
    assert_null(strstr(xml, "</cmdline></os>"));
    assert_null(strstr(xml, "<disk/>"));
    assert_null(strstr(xml, "<!--"));
    assert_null(strstr(xml, "<x/>"));
    assert_null(strstr(xml, "<source path=\"/etc/shadow\"/>"));
    assert_null(strstr(xml, "&entity;"));
    assert_non_null(strstr(xml, "&amp;entity;"));
    assert_non_null(strstr(xml, "&lt;/cmdline&gt;"));
    free(xml);
}

static void expect_refused(const struct hv_domain_def *d, const char *what)
{
    struct cgv_error err = {0};
    char *xml = NULL;

    if (hv_xml_build(d, &xml, &err) != -1) {
        print_error("a definition with %s was accepted\n", what);
        free(xml);
        fail();
    }
    assert_null(xml);
    assert_int_equal(err.code, CGV_E_INTERNAL);
    assert_true(err.msg[0] != '\0');
}

static void test_build_incomplete(void **state)
{
    struct hv_domain_def d;
    /* Offsets of every required string. */
    static const size_t fields[] = {
        offsetof(struct hv_domain_def, name),    offsetof(struct hv_domain_def, uuid),
        offsetof(struct hv_domain_def, owner),   offsetof(struct hv_domain_def, service),
        offsetof(struct hv_domain_def, vm),      offsetof(struct hv_domain_def, kernel),
        offsetof(struct hv_domain_def, initrd),  offsetof(struct hv_domain_def, cmdline),
        offsetof(struct hv_domain_def, console_socket),
        offsetof(struct hv_domain_def, console_log),
        offsetof(struct hv_domain_def, agent_socket),
    };

    (void)state;
    for (size_t i = 0; i < CGV_ARRAY_LEN(fields); i++) {
        char what[64];
        base_def(&d);
        *(const char **)((char *)&d + fields[i]) = NULL;
        snprintf(what, sizeof(what), "required string %zu NULL", i);
        expect_refused(&d, what);
        base_def(&d);
        *(const char **)((char *)&d + fields[i]) = "";
        snprintf(what, sizeof(what), "required string %zu empty", i);
        expect_refused(&d, what);
    }
    base_def(&d);
    d.vcpus = 0;
    expect_refused(&d, "0 vCPUs");
    base_def(&d);
    d.memory_mib = 0;
    expect_refused(&d, "0 MiB of memory");
    base_def(&d);
    d.n_nics = HV_MAX_NICS + 1;
    expect_refused(&d, "too many NICs");
    base_def(&d);
    d.n_nics = (size_t)-1;
    expect_refused(&d, "SIZE_MAX NICs");
}

/* Large numbers are printed in full, not truncated. */
static void test_build_big_numbers(void **state)
{
    struct hv_domain_def d;
    char *xml;

    (void)state;
    base_def(&d);
    d.memory_mib = UINT64_MAX;
    d.vcpus = UINT32_MAX;
    d.generation = INT64_MIN;
    xml = build_ok(&d);
    assert_structure(xml, &d);
    free(xml);
}

/* A control character cannot be written in XML 1.0 at all: the build must
 * refuse it (or leave it out) rather than hand libvirt a document that is
 * not well-formed. */
static void test_build_control_chars(void **state)
{
    struct hv_domain_def d;
    struct cgv_error err = {0};
    char *xml = NULL;
    xmlDocPtr doc;

    (void)state;
    base_def(&d);
    d.cmdline = "console=ttyS0 \x01\x1b[31m";
    if (hv_xml_build(&d, &xml, &err) != 0) {
        assert_null(xml);
        return; /* refused: fine */
    }
    doc = xmlReadMemory(xml, (int)strlen(xml), "d.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    /* check_def() must refuse control characters (XML 1.0 cannot carry
     * them, libvirt would refuse the whole document): whatever it builds is
     * well-formed. */
    assert_non_null(doc);
    xmlFreeDoc(doc);
    free(xml);
}

/* ------------------------------------------------------------------ */
/* hv_xml_parse_meta                                                   */

/* What virDomainGetMetadata returns: the element without prefix or
 * namespace declaration. */
static const char meta_plain[] =
    "<instance>\n"
    "  <owner>" OWNER "</owner>\n"
    "  <service>demo</service>\n"
    "  <vm>demo-0</vm>\n"
    "  <generation>42</generation>\n"
    "</instance>\n";

static void test_meta_plain(void **state)
{
    struct hv_meta m;
    struct cgv_error err = {0};

    (void)state;
    assert_int_equal(hv_xml_parse_meta(meta_plain, &m, &err), 0);
    assert_string_equal(m.owner, OWNER);
    assert_string_equal(m.service, "demo");
    assert_string_equal(m.vm, "demo-0");
    assert_int_equal(m.generation, 42);
}

/* The element as it stands in a full domain XML: with the cgv: prefix. */
static void test_meta_prefixed(void **state)
{
    struct hv_meta m;
    struct cgv_error err = {0};
    static const char xml[] =
        "<cgv:instance xmlns:cgv=\"" HV_META_NS "\">"
        "<cgv:owner>o1</cgv:owner><cgv:service>s1</cgv:service>"
        "<cgv:vm>s1-3</cgv:vm><cgv:generation>7</cgv:generation>"
        "</cgv:instance>";
    static const char default_ns[] =
        "<instance xmlns=\"" HV_META_NS "\"><owner>o2</owner><service>s2</service>"
        "<vm>s2-0</vm><generation>9223372036854775807</generation></instance>";

    (void)state;
    assert_int_equal(hv_xml_parse_meta(xml, &m, &err), 0);
    assert_string_equal(m.owner, "o1");
    assert_string_equal(m.service, "s1");
    assert_string_equal(m.vm, "s1-3");
    assert_int_equal(m.generation, 7);
    assert_int_equal(hv_xml_parse_meta(default_ns, &m, &err), 0);
    assert_string_equal(m.vm, "s2-0");
    assert_int_equal(m.generation, INT64_MAX);
}

/* What hv_xml_build writes reads back: through the element cut out of a
 * generated domain, prefix and all. */
static void test_meta_round_trip(void **state)
{
    struct hv_domain_def d;
    struct hv_meta m;
    struct cgv_error err = {0};
    xmlDocPtr doc;
    xmlXPathObjectPtr o;
    xmlBufferPtr buf;
    char *xml;

    (void)state;
    case_special_chars(&d);
    d.generation = 123456789012LL;
    xml = build_ok(&d);
    doc = xmlReadMemory(xml, (int)strlen(xml), "d.xml", NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    o = xpath(doc, "/domain/metadata/c:instance");
    assert_int_equal(o->nodesetval->nodeNr, 1);
    buf = xmlBufferCreate();
    assert_true(xmlNodeDump(buf, doc, o->nodesetval->nodeTab[0], 0, 0) > 0);
    assert_int_equal(hv_xml_parse_meta((const char *)xmlBufferContent(buf), &m, &err), 0);
    assert_string_equal(m.owner, d.owner);
    assert_string_equal(m.service, d.service);
    assert_string_equal(m.vm, d.vm);
    assert_int_equal(m.generation, d.generation);
    xmlBufferFree(buf);
    xmlXPathFreeObject(o);
    xmlFreeDoc(doc);
    free(xml);
}

static void expect_meta_refused(const char *xml)
{
    struct hv_meta m;
    struct cgv_error err = {0};

    if (hv_xml_parse_meta(xml, &m, &err) != -1) {
        print_error("accepted as cgv metadata:\n%s\n", xml);
        fail();
    }
    assert_int_equal(err.code, CGV_E_INVALID);
    assert_true(err.msg[0] != '\0');
}

static void test_meta_garbage(void **state)
{
    (void)state;
    expect_meta_refused("");
    expect_meta_refused("not xml at all");
    expect_meta_refused("<instance><owner>o</owner>");
    expect_meta_refused("<instance><owner>o</service></instance>");
    expect_meta_refused("\x01\x02\x03");
    expect_meta_refused("<?xml version=\"1.0\"?>");
}

/* External entities are never loaded: the owner cannot become a file. */
static void test_meta_no_external_entity(void **state)
{
    struct hv_meta m;
    struct cgv_error err = {0};
    static const char xml[] =
        "<!DOCTYPE instance [<!ENTITY x SYSTEM \"file:///etc/hostname\">]>"
        "<instance><owner>&x;</owner><service>s</service><vm>v</vm>"
        "<generation>1</generation></instance>";
    char *host = NULL;

    (void)state;
    if (hv_xml_parse_meta(xml, &m, &err) == 0) {
        if (cgv_read_file("/etc/hostname", 4096, &host, NULL, NULL) == 0 && host[0] &&
            host[0] != '\n') {
            host[strcspn(host, "\n")] = '\0';
            assert_null(strstr(m.owner, host));
        }
        free(host);
    }
}

static void test_meta_wrong_element(void **state)
{
    (void)state;
    /* A whole domain is not the element. */
    expect_meta_refused("<domain><metadata><instance><owner>o</owner><service>s</service>"
                        "<vm>v</vm><generation>1</generation></instance></metadata>"
                        "</domain>");
    expect_meta_refused("<instances><owner>o</owner><service>s</service><vm>v</vm>"
                        "<generation>1</generation></instances>");
}

static void test_meta_wrong_namespace(void **state)
{
    (void)state;
    expect_meta_refused("<x:instance xmlns:x=\"https://example.com/other\"><x:owner>o</x:owner>"
                        "<x:service>s</x:service><x:vm>v</x:vm>"
                        "<x:generation>1</x:generation></x:instance>");
    expect_meta_refused("<instance xmlns=\"" HV_META_NS "/2\"><owner>o</owner>"
                        "<service>s</service><vm>v</vm><generation>1</generation>"
                        "</instance>");
}

static void test_meta_missing_fields(void **state)
{
    static const char *const names[] = {"owner", "service", "vm", "generation"};

    (void)state;
    for (size_t skip = 0; skip < 4; skip++) {
        char xml[512] = "<instance>";
        for (size_t i = 0; i < 4; i++) {
            if (i == skip)
                continue;
            snprintf(xml + strlen(xml), sizeof(xml) - strlen(xml), "<%s>%s</%s>", names[i],
                     i == 3 ? "1" : "x", names[i]);
        }
        strcat(xml, "</instance>");
        expect_meta_refused(xml);
    }
    expect_meta_refused("<instance/>");
    /* Too long to fit: refused rather than cut. */
    expect_meta_refused("<instance><owner>"
                        "0123456789012345678901234567890123456789012345678901234567890123456789"
                        "</owner><service>s</service><vm>v</vm><generation>1</generation>"
                        "</instance>");
}

/* Not a number is not generation 0. */
static void test_meta_bad_generation(void **state)
{
    struct hv_meta m;
    struct cgv_error err = {0};

    (void)state;
    if (hv_xml_parse_meta("<instance><owner>o</owner><service>s</service><vm>v</vm>"
                          "<generation>abc</generation></instance>",
                          &m, &err) == 0)
        fail_msg("generation \"abc\" was accepted as %lld", (long long)m.generation);
    assert_int_equal(err.code, CGV_E_INVALID);
}

/* ------------------------------------------------------------------ */
/* hv_mac_from_uuid                                                    */

static void test_mac(void **state)
{
    char a[18], b[18], seen[HV_MAX_NICS][18];

    (void)state;
    hv_mac_from_uuid(UUID_A, 0, a);
    hv_mac_from_uuid(UUID_A, 0, b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 17);
    assert_memory_equal(a, "52:54:00:", 9);
    for (size_t i = 9; i < 17; i++) {
        if (i % 3 == 2)
            assert_int_equal(a[i], ':');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    /* Distinct per NIC and per UUID. */
    for (unsigned n = 0; n < HV_MAX_NICS; n++) {
        hv_mac_from_uuid(UUID_A, n, seen[n]);
        for (unsigned k = 0; k < n; k++)
            assert_string_not_equal(seen[n], seen[k]);
    }
    hv_mac_from_uuid(UUID_B, 0, b);
    assert_string_not_equal(a, b);
    /* Pinned: cgvd must give a VM the same MAC across releases. */
    assert_string_equal(seen[0], a);
}

/* ------------------------------------------------------------------ */

int main(void)
{
    struct CMUnitTest tests[CGV_ARRAY_LEN(cases) + 16];
    size_t n = 0;

    for (size_t i = 0; i < CGV_ARRAY_LEN(cases); i++) {
        tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(test_build_fixture,
                                                               (void *)&cases[i]);
        tests[n].name = cases[i].name;
        n++;
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_build_deterministic);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_build_escapes);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_build_incomplete);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_build_big_numbers);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_build_control_chars);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_plain);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_build_tuned);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_prefixed);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_round_trip);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_garbage);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_no_external_entity);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_wrong_element);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_wrong_namespace);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_missing_fields);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_bad_generation);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_mac);
    xmlInitParser();
    return _cmocka_run_group_tests("hv_xml", tests, n, NULL, NULL);
}
