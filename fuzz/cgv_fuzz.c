/* cgv_fuzz.c — cgv's libFuzzer binary: one target per parser that reads
 * untrusted input, chosen by the environment (crun style):
 *
 *   CGV_FUZZ_TARGET=proto  the agent channel stream reader and payload
 *                          decoder (bytes from a hostile guest)
 *   CGV_FUZZ_TARGET=spec   the service spec parser (YAML/JSON from users)
 *   CGV_FUZZ_TARGET=meta   the cgv metadata element read back from libvirt
 *
 * Each target checks invariants beyond "does not crash", and aborts (a
 * crash libFuzzer reports and saves) when one breaks; see the functions.
 * Built with -fsanitize=fuzzer,address,undefined by fuzz/meson.build; see
 * fuzz/README.md for the commands. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"
#include "hv_xml.h"
#include "spec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn, format(printf, 1, 2))) static void broken(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "cgv-fuzz: invariant broken: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond))                                                                       \
            broken(__VA_ARGS__);                                                           \
    } while (0)

/* ------------------------------------------------------------------ */
/* proto                                                               */

static void check_str_max(const char *s, size_t max, const char *field)
{
    size_t n = strnlen(s, max + 1);

    CHECK(n <= max, "%s is %zu bytes, over %zu", field, n, max);
    for (size_t i = 0; i < n; i++)
        CHECK(s[i] >= 0x20 && s[i] <= 0x7e, "%s has byte 0x%02x", field, (unsigned char)s[i]);
}

static void check_str(const char *s, const char *field)
{
    check_str_max(s, PROTO_MAX_STR, field);
}

static void check_msg(const struct proto_msg *m)
{
    switch (m->type) {
    case PROTO_HOST_HELLO:
        check_str(m->u.host_hello.vm_name, "host_hello.vm_name");
        CHECK(m->u.host_hello.heartbeat_ms >= PROTO_MIN_HEARTBEAT_MS &&
                  m->u.host_hello.heartbeat_ms <= PROTO_MAX_HEARTBEAT_MS,
              "heartbeat_ms %u out of range", m->u.host_hello.heartbeat_ms);
        break;
    case PROTO_HELLO:
        check_str(m->u.hello.agent_version, "hello.agent_version");
        check_str(m->u.hello.vm_name, "hello.vm_name");
        break;
    case PROTO_SHUTDOWN:
        CHECK(m->u.shutdown.action <= PROTO_SHUTDOWN_REBOOT, "shutdown action %u",
              m->u.shutdown.action);
        break;
    case PROTO_CONFIG:
        CHECK(m->u.config.watchdog_s <= PROTO_MAX_WATCHDOG_S, "watchdog_s %u",
              m->u.config.watchdog_s);
        CHECK(m->u.config.n_procs <= PROTO_MAX_PROCS, "n_procs %u", m->u.config.n_procs);
        for (unsigned i = 0; i < m->u.config.n_procs; i++) {
            check_str(m->u.config.procs[i].name, "config.procs.name");
            check_str_max(m->u.config.procs[i].command, PROTO_MAX_LSTR, "config.procs.command");
        }
        break;
    case PROTO_ROLE_SET:
        CHECK(m->u.role_set.role <= PROTO_ROLE_STANDBY, "role %u", m->u.role_set.role);
        CHECK(m->u.role_set.n_vips <= PROTO_MAX_VIPS, "n_vips %u", m->u.role_set.n_vips);
        check_str(m->u.role_set.assignment, "role_set.assignment");
        for (unsigned i = 0; i < m->u.role_set.n_vips; i++)
            check_str(m->u.role_set.vips[i], "role_set.vips");
        break;
    case PROTO_ROLE_ACK:
        CHECK(m->u.role_ack.role <= PROTO_ROLE_STANDBY, "ack role %u", m->u.role_ack.role);
        CHECK(m->u.role_ack.result <= PROTO_ACK_STALE, "ack result %u",
              m->u.role_ack.result);
        check_str(m->u.role_ack.detail, "role_ack.detail");
        break;
    case PROTO_APP_EVENT:
        CHECK(m->u.app_event.kind <= PROTO_APP_GAVE_UP, "app kind %u", m->u.app_event.kind);
        check_str(m->u.app_event.name, "app_event.name");
        break;
    case PROTO_HEARTBEAT:
    case PROTO_PING:
    case PROTO_PONG:
        break;
    default:
        broken("decoded a message of unknown type %d", (int)m->type);
    }
}

/* A decoded message encodes again, no longer than the frame it came from
 * (decoders ignore trailing payload bytes), and that frame decodes to the
 * same message. */
static void check_reencode(const struct proto_msg *m, size_t consumed)
{
    uint8_t buf[PROTO_MAX_FRAME];
    struct proto_reader r;
    struct proto_msg back;
    char why[160];
    int n = proto_encode(m, buf, sizeof(buf));

    CHECK(n >= PROTO_HDR_LEN, "a decoded %s does not encode", proto_type_name(m->type));
    CHECK((size_t)n <= consumed, "re-encoded %s is %d bytes, the original frame %zu",
          proto_type_name(m->type), n, consumed);
    proto_reader_init(&r);
    CHECK(proto_reader_push(&r, buf, (size_t)n) == (size_t)n, "push of a frame fell short");
    CHECK(proto_reader_next(&r, &back, why, sizeof(why)) == PROTO_MSG,
          "re-encoded %s does not decode: %s", proto_type_name(m->type), why);
    CHECK(r.len == 0, "re-encoded frame left %zu bytes", r.len);
    CHECK(memcmp(&back, m, sizeof(back)) == 0, "re-encoded %s decodes differently",
          proto_type_name(m->type));
}

/* Take frames until the reader needs more; every call consumes or waits. */
static void drain(struct proto_reader *r)
{
    for (;;) {
        struct proto_msg m;
        char why[160] = "";
        size_t before = r->len;
        enum proto_next rc = proto_reader_next(r, &m, why, sizeof(why));

        CHECK(r->len <= sizeof(r->buf), "reader length %zu over its buffer", r->len);
        if (rc == PROTO_NEED_MORE) {
            CHECK(r->len == before, "NEED_MORE consumed bytes");
            /* A full buffer that needs more would never move again. */
            CHECK(proto_reader_space(r) > 0, "reader is full and needs more: stuck");
            return;
        }
        CHECK(r->len < before, "%s without consuming a byte",
              rc == PROTO_MSG ? "MSG" : "BAD");
        if (rc == PROTO_BAD) {
            CHECK(why[0] != '\0' && strnlen(why, sizeof(why)) < sizeof(why),
                  "BAD without a reason");
            continue;
        }
        CHECK(rc == PROTO_MSG, "unknown result %d", (int)rc);
        check_msg(&m);
        check_reencode(&m, before - r->len);
    }
}

/* Input: [n][n chunk sizes][stream]. The stream is pushed in chunks of the
 * given sizes (1..256 bytes, then the rest at once), so the fuzzer chooses
 * where frames are split. Also: the stream's first byte as a type and the
 * rest as a payload go straight to proto_decode_payload(). */
static int fuzz_proto(const uint8_t *data, size_t size)
{
    struct proto_reader r;
    size_t nchunks, off;

    if (size < 1)
        return 0;
    nchunks = data[0] % 32;
    if (size < 1 + nchunks)
        return 0;
    off = 1 + nchunks;
    proto_reader_init(&r);
    for (size_t c = 0; off < size; c++) {
        size_t want = c < nchunks ? (size_t)data[1 + c] + 1 : size - off;
        if (want > size - off)
            want = size - off;
        while (want > 0) {
            size_t space = proto_reader_space(&r);
            size_t took = proto_reader_push(&r, data + off, want);
            CHECK(took == (want < space ? want : space), "push took %zu of %zu (space %zu)",
                  took, want, space);
            off += took;
            want -= took;
            drain(&r);
        }
    }
    drain(&r);

    if (size > 1 + nchunks + 1) {
        struct proto_msg m;
        char why[160] = "";
        const uint8_t *p = data + 1 + nchunks;
        size_t len = size - 1 - nchunks - 1;
        if (len > PROTO_MAX_PAYLOAD)
            len = PROTO_MAX_PAYLOAD;
        if (proto_decode_payload(p[0], p + 1, len, &m, why, sizeof(why)) == 0) {
            check_msg(&m);
            check_reencode(&m, PROTO_HDR_LEN + len);
        } else {
            CHECK(why[0] != '\0', "decode failed without a reason");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* spec                                                                */

static char *canonical(const struct spec_service *s)
{
    json_t *j = spec_to_json(s);
    char *t;

    CHECK(j != NULL, "spec_to_json failed on a valid spec");
    t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    CHECK(t != NULL, "json_dumps failed");
    return t;
}

/* A valid spec's canonical JSON parses to an equal spec with the same
 * canonical JSON; an invalid one gives 1..SPEC_MAX_ISSUES sorted issues. */
static int fuzz_spec(const uint8_t *data, size_t size)
{
    struct spec_service *s = NULL, *back = NULL;
    struct spec_issues iss;

    if (size > SPEC_MAX_TEXT + 16)
        return 0;
    if (spec_parse((const char *)data, size, &s, &iss) == 0) {
        char *a, *b;
        CHECK(s != NULL && iss.n == 0, "success without a spec, or with issues");
        a = canonical(s);
        if (spec_parse(a, strlen(a), &back, &iss) != 0) {
            char *f = spec_issues_format(&iss);
            broken("canonical JSON of a valid spec is refused: %s\n%s", a, f);
        }
        CHECK(spec_equal(s, back), "canonical JSON parses to a different spec: %s", a);
        b = canonical(back);
        CHECK(strcmp(a, b) == 0, "canonical JSON is not stable:\n%s\n%s", a, b);
        free(a);
        free(b);
        spec_free(back);
        spec_free(s);
    } else {
        char *f;
        CHECK(s == NULL, "failure with a spec");
        CHECK(iss.n >= 1 && iss.n <= SPEC_MAX_ISSUES, "failure with %zu issues", iss.n);
        for (size_t i = 1; i < iss.n; i++) {
            const struct spec_issue *x = &iss.items[i - 1], *y = &iss.items[i];
            CHECK(x->line < y->line || (x->line == y->line && x->column <= y->column),
                  "issues out of order");
        }
        for (size_t i = 0; i < iss.n; i++) {
            CHECK(strnlen(iss.items[i].msg, sizeof(iss.items[i].msg)) <
                      sizeof(iss.items[i].msg),
                  "issue message not terminated");
            CHECK(strnlen(iss.items[i].path, sizeof(iss.items[i].path)) <
                      sizeof(iss.items[i].path),
                  "issue path not terminated");
        }
        f = spec_issues_format(&iss);
        CHECK(f != NULL, "spec_issues_format failed");
        free(f);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* meta                                                                */

/* What parse_meta returned, written back as an element (by libxml2) and
 * parsed again, gives the same fields. */
static void meta_round_trip(const struct hv_meta *m)
{
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr inst = xmlNewNode(NULL, BAD_CAST "instance");
    xmlNsPtr ns = xmlNewNs(inst, BAD_CAST HV_META_NS, BAD_CAST HV_META_PREFIX);
    xmlChar *text = NULL;
    int len = 0;
    char gen[32];
    struct hv_meta back;
    struct cgv_error err = {0};

    xmlSetNs(inst, ns);
    xmlDocSetRootElement(doc, inst);
    xmlNewTextChild(inst, ns, BAD_CAST "owner", BAD_CAST m->owner);
    xmlNewTextChild(inst, ns, BAD_CAST "service", BAD_CAST m->service);
    xmlNewTextChild(inst, ns, BAD_CAST "vm", BAD_CAST m->vm);
    snprintf(gen, sizeof(gen), "%lld", (long long)m->generation);
    xmlNewTextChild(inst, ns, BAD_CAST "generation", BAD_CAST gen);
    xmlDocDumpMemoryEnc(doc, &text, &len, "UTF-8");
    CHECK(text != NULL, "could not serialise the metadata");
    CHECK(hv_xml_parse_meta((const char *)text, &back, &err) == 0,
          "metadata written back is refused: %s\n%s", err.msg, (const char *)text);
    CHECK(strcmp(back.owner, m->owner) == 0 && strcmp(back.service, m->service) == 0 &&
              strcmp(back.vm, m->vm) == 0 && back.generation == m->generation,
          "metadata written back reads differently:\n%s", (const char *)text);
    xmlFree(text);
    xmlFreeDoc(doc);
}

static void check_field(const char *s, size_t cap, const char *what)
{
    CHECK(strnlen(s, cap) < cap, "%s is not terminated", what);
}

static int fuzz_meta(const uint8_t *data, size_t size)
{
    char *xml = malloc(size + 1);
    struct hv_meta m;
    struct cgv_error err = {0};

    if (!xml)
        return 0;
    memcpy(xml, data, size);
    xml[size] = '\0';
    if (hv_xml_parse_meta(xml, &m, &err) == 0) {
        check_field(m.owner, sizeof(m.owner), "owner");
        check_field(m.service, sizeof(m.service), "service");
        check_field(m.vm, sizeof(m.vm), "vm");
        meta_round_trip(&m);
    } else {
        CHECK(err.code == CGV_E_INVALID && err.msg[0], "refused without CGV_E_INVALID");
    }
    free(xml);
    return 0;
}

/* ------------------------------------------------------------------ */

static int (*target)(const uint8_t *, size_t);

static void silent(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *t = getenv("CGV_FUZZ_TARGET");

    (void)argc;
    (void)argv;
    if (!t) {
        fprintf(stderr, "cgv-fuzz: set CGV_FUZZ_TARGET to proto, spec or meta\n");
        exit(2);
    }
    if (strcmp(t, "proto") == 0)
        target = fuzz_proto;
    else if (strcmp(t, "spec") == 0)
        target = fuzz_spec;
    else if (strcmp(t, "meta") == 0)
        target = fuzz_meta;
    else {
        fprintf(stderr, "cgv-fuzz: unknown target '%s' (proto, spec, meta)\n", t);
        exit(2);
    }
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return target(data, size);
}
