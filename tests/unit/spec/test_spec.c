/* Unit tests for service specs.
 *
 * Fixtures: every tests/fixtures/spec/{valid,invalid}-*.{yaml,json} is parsed;
 * the output (canonical JSON for valid ones, spec_issues_format() for invalid
 * ones) must equal the sibling <base>.expected byte for byte. Run with
 * REGENERATE=1 to rewrite the .expected files, then review the diff. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spec.h"

#ifndef SPEC_FIXTURES
#error "SPEC_FIXTURES must name the fixture directory"
#endif

#define FIXTURE_MAX (4 * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static struct spec_service *parse_ok(const char *text)
{
    struct spec_service *s = NULL;
    struct spec_issues iss;

    if (spec_parse(text, strlen(text), &s, &iss) != 0) {
        char *f = spec_issues_format(&iss);
        print_error("unexpected failure for:\n%s\n%s\n", text, f);
        free(f);
        fail();
    }
    assert_non_null(s);
    assert_int_equal(iss.n, 0);
    return s;
}

/* Parse text that must fail; returns the formatted issues (caller frees). */
static char *parse_bad(const char *text, size_t len, struct spec_issues *iss)
{
    struct spec_service *s = (struct spec_service *)0x1;

    assert_int_equal(spec_parse(text, len, &s, iss), -1);
    assert_null(s);
    assert_true(iss->n >= 1);
    return spec_issues_format(iss);
}

static void assert_contains(const char *hay, const char *needle)
{
    assert_non_null(hay);
    if (!strstr(hay, needle)) {
        print_error("expected to find \"%s\" in:\n%s\n", needle, hay ? hay : "(null)");
        fail();
    }
}

static char *canonical_text(const struct spec_service *s, size_t flags)
{
    json_t *j = spec_to_json(s);
    char *t;

    assert_non_null(j);
    t = json_dumps(j, flags);
    json_decref(j);
    assert_non_null(t);
    return t;
}

/* The canonical JSON must parse back to an equal spec with the same
 * canonical form. */
static void assert_round_trip(const struct spec_service *s)
{
    char *compact = canonical_text(s, JSON_COMPACT);
    char *pretty = canonical_text(s, JSON_INDENT(2));
    struct spec_service *back = parse_ok(compact);
    struct spec_service *back2 = parse_ok(pretty);
    char *again = canonical_text(back, JSON_COMPACT);

    assert_true(spec_equal(s, back));
    assert_true(spec_equal(s, back2));
    assert_string_equal(compact, again);
    spec_free(back);
    spec_free(back2);
    free(compact);
    free(pretty);
    free(again);
}

/* After any parse: either a spec and no issues, or no spec and issues. */
static void check_contract(const char *text, size_t len)
{
    struct spec_service *s = NULL;
    struct spec_issues iss;
    int rc = spec_parse(text, len, &s, &iss);

    if (rc == 0) {
        assert_non_null(s);
        assert_int_equal(iss.n, 0);
        assert_round_trip(s);
        spec_free(s);
    } else {
        char *f;
        assert_int_equal(rc, -1);
        assert_null(s);
        assert_true(iss.n >= 1 && iss.n <= SPEC_MAX_ISSUES);
        for (size_t i = 1; i < iss.n; i++) {
            const struct spec_issue *a = &iss.items[i - 1], *b = &iss.items[i];
            assert_true(a->line < b->line || (a->line == b->line && a->column <= b->column));
        }
        f = spec_issues_format(&iss);
        assert_non_null(f);
        free(f);
    }
}

/* ------------------------------------------------------------------ */
/* fixtures                                                            */

struct fixture {
    char input[512];
    char expected[512];
    char base[256];
    bool valid;
};

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted file names in the fixture directory. */
static char **list_dir(size_t *count)
{
    DIR *d = opendir(SPEC_FIXTURES);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), name_cmp);
    *count = n;
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void test_fixture(void **state)
{
    const struct fixture *fx = *state;
    struct spec_service *s = NULL;
    struct spec_issues iss;
    struct cgv_error err = { 0 };
    char *text = NULL, *want = NULL, *got = NULL, *out;
    size_t len = 0, wlen = 0;
    int rc;

    assert_int_equal(cgv_read_file(fx->input, FIXTURE_MAX, &text, &len, &err), 0);
    rc = spec_parse(text, len, &s, &iss);
    if (fx->valid) {
        if (rc != 0) {
            char *f = spec_issues_format(&iss);
            print_error("%s should be valid:\n%s\n", fx->input, f);
            free(f);
            free(text);
            fail();
        }
        assert_round_trip(s);
        out = canonical_text(s, JSON_INDENT(2));
    } else {
        assert_int_equal(rc, -1);
        assert_null(s);
        assert_true(iss.n >= 1);
        out = spec_issues_format(&iss);
    }
    got = cgv_asprintf("%s\n", out);
    free(out);
    spec_free(s);
    free(text);

    if (getenv("REGENERATE") && strcmp(getenv("REGENERATE"), "1") == 0) {
        assert_int_equal(cgv_write_file_atomic(fx->expected, got, strlen(got), 0644, &err), 0);
        free(got);
        return;
    }
    if (cgv_read_file(fx->expected, FIXTURE_MAX, &want, &wlen, &err) != 0) {
        print_error("%s: %s (run with REGENERATE=1 to create it)\n", fx->expected, err.msg);
        free(got);
        fail();
    }
    if (strcmp(want, got) != 0)
        print_error("%s differs.\n--- expected\n%s--- got\n%s", fx->expected, want, got);
    assert_string_equal(want, got);
    free(want);
    free(got);
}

/* The fixture set itself: enough of them, unique base names, no stale
 * .expected file without an input. */
static void test_fixture_set(void **state)
{
    size_t n, inputs = 0, valid = 0, invalid = 0;
    char **names = list_dir(&n);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        const char *nm = names[i];
        bool is_input = has_suffix(nm, ".yaml") || has_suffix(nm, ".json");

        if (is_input) {
            size_t bl = strlen(nm) - 5;
            inputs++;
            if (strncmp(nm, "valid-", 6) == 0)
                valid++;
            else if (strncmp(nm, "invalid-", 8) == 0)
                invalid++;
            else {
                print_error("fixture %s must start with valid- or invalid-\n", nm);
                fail();
            }
            for (size_t k = 0; k < n; k++) {
                if (k != i && (has_suffix(names[k], ".yaml") || has_suffix(names[k], ".json")) &&
                    strlen(names[k]) == strlen(nm) && strncmp(names[k], nm, bl) == 0) {
                    print_error("fixtures %s and %s share a base name\n", nm, names[k]);
                    fail();
                }
            }
        } else if (has_suffix(nm, ".expected")) {
            size_t bl = strlen(nm) - strlen(".expected");
            bool found = false;
            for (size_t k = 0; k < n && !found; k++)
                found = strlen(names[k]) == bl + 5 && strncmp(names[k], nm, bl) == 0 &&
                        (has_suffix(names[k], ".yaml") || has_suffix(names[k], ".json"));
            if (!found) {
                print_error("stale %s: no input for it\n", nm);
                fail();
            }
        } else {
            print_error("unexpected file %s in the fixture directory\n", nm);
            fail();
        }
    }
    free_names(names, n);
    assert_true(valid >= 8);
    assert_true(invalid >= 30);
    assert_int_equal(inputs, valid + invalid);
}

/* Mutations of every valid fixture (flip, delete, insert, truncate) must
 * keep the parse contract and never crash or leak. */
static void test_fixture_mutations(void **state)
{
    size_t n;
    char **names = list_dir(&n);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    static const char specials[] = "\0\t\n\r{}[]:,-&*!'\"#%@`|> \xff\xc3";

    (void)state;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        char *text = NULL;
        size_t len = 0;
        struct cgv_error err = { 0 };

        if (strncmp(names[i], "valid-", 6) != 0 || has_suffix(names[i], ".expected"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", SPEC_FIXTURES, names[i]);
        assert_int_equal(cgv_read_file(path, FIXTURE_MAX, &text, &len, &err), 0);
        for (int m = 0; m < 200; m++) {
            char *buf = malloc(len + 2);
            size_t blen = len, at;
            memcpy(buf, text, len);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            at = len ? (size_t)(x % len) : 0;
            switch ((x >> 32) % 4) {
            case 0: /* replace a byte */
                if (blen)
                    buf[at] = specials[(x >> 40) % (sizeof(specials) - 1)];
                break;
            case 1: /* delete a byte */
                if (blen) {
                    memmove(buf + at, buf + at + 1, blen - at - 1);
                    blen--;
                }
                break;
            case 2: /* insert a byte */
                memmove(buf + at + 1, buf + at, blen - at);
                buf[at] = specials[(x >> 40) % (sizeof(specials) - 1)];
                blen++;
                break;
            default: /* truncate */
                blen = at;
                break;
            }
            check_contract(buf, blen);
            free(buf);
        }
        free(text);
    }
    free_names(names, n);
}

/* ------------------------------------------------------------------ */
/* direct tests                                                        */

static void test_defaults(void **state)
{
    struct spec_service *s = parse_ok("name: demo\n");

    (void)state;
    assert_string_equal(s->name, "demo");
    assert_int_equal(s->instances, 1);
    assert_int_equal(s->vcpus, 1);
    assert_int_equal(s->memory_mib, 256);
    assert_string_equal(s->image, "default");
    assert_int_equal(s->accel, SPEC_ACCEL_AUTO);
    assert_int_equal(s->heartbeat_ms, 1000);
    assert_int_equal(s->n_networks, 1);
    assert_string_equal(s->networks[0].network, "default");
    assert_int_equal(s->networks[0].n_addresses, 0);
    /* high availability: everything off, the documented limits */
    assert_int_equal(s->redundancy, SPEC_RED_NONE);
    assert_int_equal(s->standbys, 0);
    assert_int_equal(s->n_vips, 0);
    assert_int_equal(s->heartbeat_misses, 3);
    assert_int_equal(s->watchdog_s, 0);
    assert_int_equal(s->n_processes, 0);
    assert_int_equal(s->app_restarts.max, 3);
    assert_int_equal(s->app_restarts.window_s, 60);
    assert_int_equal(s->vm_restarts.max, 3);
    assert_int_equal(s->vm_restarts.window_s, 600);
    assert_int_equal(s->failovers.max, 5);
    assert_int_equal(s->failovers.window_s, 3600);
    assert_int_equal(s->restart, SPEC_RESTART_FAST);
    spec_free(s);
}

/* Defaults inside the high-availability sections: an empty or partial
 * section means the defaults for what it leaves out. */
static void test_ha_defaults(void **state)
{
    struct spec_service *s;

    (void)state;
    s = parse_ok("name: a\ninstances: 2\nredundancy: {model: 2n}\n");
    assert_int_equal(s->redundancy, SPEC_RED_2N);
    assert_int_equal(s->standbys, 1);
    assert_int_equal(s->n_vips, 0);
    spec_free(s);

    s = parse_ok("name: a\ninstances: 4\nredundancy: {model: n+m}\n");
    assert_int_equal(s->redundancy, SPEC_RED_NPM);
    assert_int_equal(s->standbys, 1);
    spec_free(s);

    s = parse_ok("name: a\ninstances: 4\nredundancy: {model: nway-active}\n");
    assert_int_equal(s->redundancy, SPEC_RED_NWAY);
    assert_int_equal(s->standbys, 0);
    spec_free(s);

    s = parse_ok("name: a\nhealth: {watchdog_s: 2}\nprocesses: []\n"
                 "recovery:\n  app_restarts: {max: 0}\n  vm_restarts: {window_s: 5}\n"
                 "  failovers: {}\n");
    assert_int_equal(s->heartbeat_misses, 3);
    assert_int_equal(s->watchdog_s, 2);
    assert_int_equal(s->n_processes, 0);
    assert_int_equal(s->app_restarts.max, 0);
    assert_int_equal(s->app_restarts.window_s, 60);
    assert_int_equal(s->vm_restarts.max, 3);
    assert_int_equal(s->vm_restarts.window_s, 5);
    assert_int_equal(s->failovers.max, 5);
    assert_int_equal(s->failovers.window_s, 3600);
    assert_int_equal(s->restart, SPEC_RESTART_FAST);
    spec_free(s);

    s = parse_ok("name: a\nhealth: {heartbeat_misses: 7}\nrecovery: {restart: cold}\n");
    assert_int_equal(s->heartbeat_misses, 7);
    assert_int_equal(s->watchdog_s, 0);
    assert_int_equal(s->restart, SPEC_RESTART_COLD);
    assert_int_equal(s->app_restarts.max, 3);
    spec_free(s);
}

/* What the HA fields hold, and where the virtual IPs were written. */
static void test_ha_fields(void **state)
{
    struct spec_service *s;

    (void)state;
    s = parse_ok("name: a\ninstances: 5\n"
                 "redundancy:\n  model: n+m\n  standbys: 2\n"
                 "  virtual_ips: [10.1.0.1, 10.1.0.2,\n     10.1.0.3]\n"
                 "processes:\n  - name: nf\n    command: /bin/nf -x\n"
                 "  - {command: 'a  b', name: z}\n");
    assert_int_equal(s->standbys, 2);
    assert_int_equal(s->n_vips, 3);
    assert_string_equal(s->vips[0].ip, "10.1.0.1");
    assert_int_equal(s->vips[0].line, 6);
    assert_int_equal(s->vips[0].column, 17);
    assert_string_equal(s->vips[1].ip, "10.1.0.2");
    assert_int_equal(s->vips[1].line, 6);
    assert_int_equal(s->vips[1].column, 27);
    assert_string_equal(s->vips[2].ip, "10.1.0.3");
    assert_int_equal(s->vips[2].line, 7);
    assert_int_equal(s->vips[2].column, 6);
    assert_int_equal(s->n_processes, 2);
    assert_string_equal(s->processes[0].name, "nf");
    assert_string_equal(s->processes[0].command, "/bin/nf -x");
    assert_string_equal(s->processes[1].name, "z");
    assert_string_equal(s->processes[1].command, "a  b");
    assert_round_trip(s);
    spec_free(s);
}

/* watchdog_s against heartbeat_ms: refused while watchdog_s * 1000 <=
 * heartbeat_ms; 0 is always fine. */
static void test_ha_watchdog(void **state)
{
    static const struct {
        unsigned hb, wd;
        bool ok;
    } cases[] = {
        { 1000, 0, true },   { 1000, 1, false },  { 1000, 2, true },   { 999, 1, true },
        { 60000, 60, false }, { 59999, 60, true }, { 10, 1, true },    { 60000, 0, true },
        { 2000, 2, false },  { 2001, 3, true },   { 2001, 2, false },  { 10, 61, false },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = cgv_asprintf("name: a\nheartbeat_ms: %u\nhealth:\n  watchdog_s: %u\n",
                               cases[i].hb, cases[i].wd);
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc = spec_parse(t, strlen(t), &s, &iss);

        if ((rc == 0) != cases[i].ok) {
            print_error("heartbeat_ms %u, watchdog_s %u: rc %d\n", cases[i].hb, cases[i].wd,
                        rc);
            fail();
        }
        if (rc == 0) {
            assert_int_equal(s->watchdog_s, cases[i].wd);
        } else {
            assert_int_equal(iss.n, 1);
            assert_string_equal(iss.items[0].path, "health.watchdog_s");
            assert_int_equal(iss.items[0].line, 4);
            assert_int_equal(iss.items[0].column, 15);
            if (cases[i].wd <= 60)
                assert_contains(iss.items[0].msg, "pets the watchdog with each heartbeat");
        }
        spec_free(s);
        free(t);
    }
}

/* The model against instances, standbys and the number of virtual IPs. */
static void test_ha_redundancy_matrix(void **state)
{
    static const struct {
        const char *model;
        int instances; /* -1: not given */
        int standbys;  /* -1: not given */
        int vips;      /* number of virtual IPs given, -1: not given */
        bool ok;
        const char *path; /* of the one issue when not ok */
    } cases[] = {
        { "none", -1, -1, -1, true, NULL },
        { "none", 5, 0, 0, true, NULL },
        { "none", 5, 1, -1, false, "redundancy.standbys" },
        { "none", 2, -1, 1, false, "redundancy.virtual_ips" },
        { "2n", 2, -1, -1, true, NULL },
        { "2n", 2, 1, 1, true, NULL },
        { "2n", 2, 0, -1, false, "redundancy.standbys" },
        { "2n", 2, -1, 0, true, NULL },
        { "2n", 2, -1, 2, false, "redundancy.virtual_ips" },
        { "2n", 1, -1, -1, false, "instances" },
        { "2n", 3, -1, -1, false, "instances" },
        { "2n", -1, -1, -1, false, "redundancy.model" },
        { "n+m", 2, -1, 1, true, NULL },
        { "n+m", 2, 1, 1, true, NULL },
        { "n+m", 2, 2, -1, false, "redundancy.standbys" },
        { "n+m", 64, 63, 1, true, NULL },
        { "n+m", 64, 48, 16, true, NULL },
        { "n+m", 64, 47, 17, false, "redundancy.virtual_ips" },
        { "n+m", 64, 64, -1, false, "redundancy.standbys" },
        { "n+m", 10, 3, 7, true, NULL },
        { "n+m", 10, 3, 6, false, "redundancy.virtual_ips" },
        { "n+m", 10, 3, 8, false, "redundancy.virtual_ips" },
        { "n+m", 10, -1, 9, true, NULL },
        { "n+m", 10, 0, -1, false, "redundancy.standbys" },
        { "n+m", 1, -1, -1, false, "instances" },
        { "n+m", -1, -1, -1, false, "redundancy.model" },
        { "nway-active", 3, -1, -1, true, NULL },
        { "nway-active", 3, 0, 0, true, NULL },
        { "nway-active", 1, -1, -1, true, NULL },
        { "nway-active", 3, 2, -1, false, "redundancy.standbys" },
        { "nway-active", 3, -1, 3, false, "redundancy.virtual_ips" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *inst = cases[i].instances >= 0 ? cgv_asprintf("instances: %d\n", cases[i].instances)
                                             : cgv_strdup("");
        char *sb = cases[i].standbys >= 0 ? cgv_asprintf("  standbys: %d\n", cases[i].standbys)
                                          : cgv_strdup("");
        char vl[1024] = "";
        char *t;
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc;

        if (cases[i].vips >= 0) {
            size_t o = (size_t)snprintf(vl, sizeof(vl), "  virtual_ips: [");
            for (int k = 0; k < cases[i].vips; k++)
                o += (size_t)snprintf(vl + o, sizeof(vl) - o, "%s10.9.0.%d", k ? ", " : "", k + 1);
            snprintf(vl + o, sizeof(vl) - o, "]\n");
        }
        t = cgv_asprintf("name: a\n%sredundancy:\n  model: %s\n%s%s", inst, cases[i].model, sb, vl);
        rc = spec_parse(t, strlen(t), &s, &iss);
        if ((rc == 0) != cases[i].ok || (rc != 0 && (iss.n != 1 ||
                                                     strcmp(iss.items[0].path, cases[i].path)))) {
            char *f = spec_issues_format(&iss);
            print_error("case %zu:\n%s\nrc %d\n%s\n", i, t, rc, rc ? f : "");
            free(f);
            fail();
        }
        if (rc == 0) {
            assert_int_equal(s->n_vips, cases[i].vips > 0 ? cases[i].vips : 0);
            if (strcmp(cases[i].model, "n+m") == 0)
                assert_int_equal(s->standbys, cases[i].standbys >= 0 ? cases[i].standbys : 1);
            assert_round_trip(s);
        }
        spec_free(s);
        free(t);
        free(inst);
        free(sb);
    }
}

/* Process commands: 1..256 bytes of printable ASCII, not only spaces. */
static void test_ha_commands(void **state)
{
    char longest[SPEC_COMMAND_MAX + 2];
    struct spec_service *s;
    char *t;

    (void)state;
    for (unsigned c = 0x01; c <= 0xff; c++) {
        char cmd[8];
        struct spec_issues iss;
        int rc;
        bool ok = c >= 0x20 && c <= 0x7e && c != ' ';

        /* JSON so that every byte can be written; \u escapes for controls */
        if (c < 0x20 || c == '"' || c == '\\')
            snprintf(cmd, sizeof(cmd), "\\u%04x", c);
        else
            snprintf(cmd, sizeof(cmd), "%c", (char)c);
        if (c >= 0x80) /* a raw byte is invalid UTF-8; write the code point */
            snprintf(cmd, sizeof(cmd), "\\u%04x", c);
        t = cgv_asprintf("{\"name\": \"a\", \"processes\": [{\"name\": \"p\", "
                         "\"command\": \"%s\"}]}", cmd);
        s = NULL;
        rc = spec_parse(t, strlen(t), &s, &iss);
        if ((rc == 0) != ok) {
            print_error("command byte 0x%02x: rc %d\n", c, rc);
            fail();
        }
        if (rc != 0) {
            assert_int_equal(iss.n, 1);
            assert_string_equal(iss.items[0].path, "processes[0].command");
        } else {
            assert_int_equal(strlen(s->processes[0].command), 1);
        }
        spec_free(s);
        free(t);
    }
    memset(longest, 'x', sizeof(longest));
    longest[SPEC_COMMAND_MAX] = '\0';
    t = cgv_asprintf("name: a\nprocesses:\n  - name: p\n    command: %s\n", longest);
    s = parse_ok(t);
    assert_int_equal(strlen(s->processes[0].command), SPEC_COMMAND_MAX);
    assert_round_trip(s);
    spec_free(s);
    free(t);
    longest[SPEC_COMMAND_MAX] = 'x';
    longest[SPEC_COMMAND_MAX + 1] = '\0';
    t = cgv_asprintf("name: a\nprocesses:\n  - name: p\n    command: %s\n", longest);
    assert_int_equal(spec_parse(t, strlen(t), NULL, NULL), -1);
    free(t);
}

#define HA_DEFAULTS_JSON                                                                   \
    "\"redundancy\":{\"model\":\"none\",\"standbys\":0,\"virtual_ips\":[]},"                    \
    "\"health\":{\"heartbeat_misses\":3,\"watchdog_s\":0},\"processes\":[],"                   \
    "\"recovery\":{\"app_restarts\":{\"max\":3,\"window_s\":60},"                              \
    "\"vm_restarts\":{\"max\":3,\"window_s\":600},\"failovers\":{\"max\":5,\"window_s\":3600},"  \
    "\"restart\":\"fast\"}"

#define CPU_QOS_DEFAULTS_JSON(max_vcpus)                                                   \
    "\"cpu\":{\"policy\":\"floating\",\"isolate_smt\":false,\"group\":null,\"group_cores\":1,"  \
    "\"pinned\":[],\"numa\":\"prefer\",\"realtime\":false,\"realtime_priority\":0,"            \
    "\"max_vcpus\":" #max_vcpus "},"                                                        \
    "\"qos\":{\"cpu_shares\":0,\"cpu_period_us\":0,\"cpu_quota_us\":0,"                      \
    "\"memory_hard_limit\":null,\"net\":{\"inbound_kbps\":0,\"outbound_kbps\":0,"            \
    "\"burst_kb\":0},\"block\":{\"read_bps\":0,\"write_bps\":0,\"read_iops\":0,"            \
    "\"write_iops\":0}}"

static void test_canonical_json(void **state)
{
    struct spec_service *s;
    char *t;

    (void)state;
    s = parse_ok("name: demo\n");
    t = canonical_text(s, JSON_COMPACT);
    assert_string_equal(t, "{\"name\":\"demo\",\"instances\":1,\"vcpus\":1,\"memory\":\"256MiB\","
                           "\"image\":\"default\",\"acceleration\":\"auto\",\"heartbeat_ms\":1000,"
                           "\"networks\":[{\"network\":\"default\",\"addresses\":[]}],"
                           HA_DEFAULTS_JSON "," CPU_QOS_DEFAULTS_JSON(1) "}");
    free(t);
    spec_free(s);

    s = parse_ok("name: sbc\ninstances: 2\nredundancy: {model: 2n, virtual_ips: [10.9.0.1]}\n"
                 "health: {heartbeat_misses: 4, watchdog_s: 5}\n"
                 "processes:\n  - {name: nf, command: /bin/nf}\n"
                 "recovery:\n  app_restarts: {max: 1, window_s: 2}\n"
                 "  vm_restarts: {max: 3, window_s: 4}\n  failovers: {max: 5, window_s: 6}\n"
                 "  restart: cold\n");
    t = canonical_text(s, JSON_COMPACT);
    assert_string_equal(t, "{\"name\":\"sbc\",\"instances\":2,\"vcpus\":1,\"memory\":\"256MiB\","
                           "\"image\":\"default\",\"acceleration\":\"auto\",\"heartbeat_ms\":1000,"
                           "\"networks\":[{\"network\":\"default\",\"addresses\":[]}],"
                           "\"redundancy\":{\"model\":\"2n\",\"standbys\":1,"
                           "\"virtual_ips\":[\"10.9.0.1\"]},"
                           "\"health\":{\"heartbeat_misses\":4,\"watchdog_s\":5},"
                           "\"processes\":[{\"name\":\"nf\",\"command\":\"/bin/nf\"}],"
                           "\"recovery\":{\"app_restarts\":{\"max\":1,\"window_s\":2},"
                           "\"vm_restarts\":{\"max\":3,\"window_s\":4},"
                           "\"failovers\":{\"max\":5,\"window_s\":6},\"restart\":\"cold\"},"
                           CPU_QOS_DEFAULTS_JSON(1) "}");
    assert_round_trip(s);
    free(t);
    spec_free(s);

    s = parse_ok("name: web\ninstances: 2\nvcpus: 4\nmemory: 2GiB\nimage: alpine\n"
                 "acceleration: tcg\nheartbeat_ms: 250\nnetworks:\n"
                 "  - network: front\n    addresses: [10.77.0.10, 10.77.0.11]\n"
                 "  - network: back\n");
    t = canonical_text(s, JSON_COMPACT);
    assert_string_equal(t, "{\"name\":\"web\",\"instances\":2,\"vcpus\":4,\"memory\":\"2048MiB\","
                           "\"image\":\"alpine\",\"acceleration\":\"tcg\",\"heartbeat_ms\":250,"
                           "\"networks\":[{\"network\":\"front\",\"addresses\":"
                           "[\"10.77.0.10\",\"10.77.0.11\"]},"
                           "{\"network\":\"back\",\"addresses\":[]}]," HA_DEFAULTS_JSON
                           "," CPU_QOS_DEFAULTS_JSON(4) "}");
    assert_round_trip(s);
    /* where each thing was written */
    assert_int_equal(s->networks[0].line, 9);
    assert_int_equal(s->networks[1].line, 11);
    assert_int_equal(s->networks[0].addresses[1].line, 10);
    assert_int_equal(s->networks[0].addresses[1].column, 29);
    free(t);
    spec_free(s);
}

static void test_equal(void **state)
{
    const char *base = "name: a\ninstances: 2\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n";
    const char *variants[] = {
        "name: b\ninstances: 2\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nvcpus: 2\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nmemory: 512\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nimage: x\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nacceleration: kvm\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nheartbeat_ms: 999\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nnetworks:\n - network: m\n   addresses: [10.0.0.1, 10.0.0.2]\n",
        "name: a\ninstances: 2\nnetworks:\n - network: n\n   addresses: [10.0.0.2, 10.0.0.1]\n",
        "name: a\ninstances: 2\nnetworks:\n - network: n\n",
        "name: a\ninstances: 2\nnetworks:\n - network: n\n   addresses: [10.0.0.1, 10.0.0.2]\n - network: o\n",
        "name: a\ninstances: 1\n",
    };
    struct spec_service *a = parse_ok(base);
    struct spec_service *a2 = parse_ok("{\"name\": \"a\", \"instances\": 2, \"networks\": "
                                       "[{\"network\": \"n\", \"addresses\": "
                                       "[\"10.0.0.1\", \"10.0.0.2\"]}], \"memory\": \"256M\"}");

    (void)state;
    assert_true(spec_equal(a, a2));
    assert_true(spec_equal(a, a));
    assert_true(spec_equal(NULL, NULL));
    assert_false(spec_equal(a, NULL));
    assert_false(spec_equal(NULL, a));
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        struct spec_service *b = parse_ok(variants[i]);
        if (spec_equal(a, b) || spec_equal(b, a)) {
            print_error("variant %zu compares equal\n", i);
            fail();
        }
        spec_free(b);
    }
    spec_free(a);
    spec_free(a2);
}

/* spec_equal on every high-availability field: each variant differs from
 * the base in one of them; differently written text with the same meaning
 * (flow style, defaults spelled out, other positions) is equal. */
#define HA_BASE(red, health, procs, rec)                                                   \
    "name: a\ninstances: 3\nredundancy:\n" red "health:\n" health "processes:\n" procs          \
    "recovery:\n" rec
#define RED_DEF "  model: n+m\n  virtual_ips: [10.1.0.1, 10.1.0.2]\n"
#define HEALTH_DEF "  heartbeat_misses: 3\n  watchdog_s: 5\n"
#define PROCS_DEF "  - {name: a, command: /bin/a}\n  - {name: b, command: /bin/b}\n"
#define REC_DEF                                                                            \
    "  app_restarts: {max: 1, window_s: 10}\n  vm_restarts: {max: 2, window_s: 20}\n"         \
    "  failovers: {max: 3, window_s: 30}\n"

static void test_equal_ha(void **state)
{
    const char *variants[] = {
        HA_BASE("  model: nway-active\n", HEALTH_DEF, PROCS_DEF, REC_DEF),
        HA_BASE("  model: n+m\n  standbys: 2\n  virtual_ips: [10.1.0.1]\n", HEALTH_DEF,
                PROCS_DEF, REC_DEF),
        HA_BASE("  model: n+m\n  virtual_ips: [10.1.0.2, 10.1.0.1]\n", HEALTH_DEF, PROCS_DEF,
                REC_DEF),
        HA_BASE("  model: n+m\n  virtual_ips: [10.1.0.1, 10.1.0.3]\n", HEALTH_DEF, PROCS_DEF,
                REC_DEF),
        HA_BASE("  model: n+m\n", HEALTH_DEF, PROCS_DEF, REC_DEF),
        HA_BASE(RED_DEF, "  heartbeat_misses: 4\n  watchdog_s: 5\n", PROCS_DEF, REC_DEF),
        HA_BASE(RED_DEF, "  heartbeat_misses: 3\n  watchdog_s: 6\n", PROCS_DEF, REC_DEF),
        HA_BASE(RED_DEF, "  heartbeat_misses: 3\n", PROCS_DEF, REC_DEF),
        HA_BASE(RED_DEF, HEALTH_DEF, "  - {name: c, command: /bin/a}\n  - {name: b, command: /bin/b}\n",
                REC_DEF),
        HA_BASE(RED_DEF, HEALTH_DEF, "  - {name: a, command: /bin/a}\n  - {name: b, command: /bin/bb}\n",
                REC_DEF),
        HA_BASE(RED_DEF, HEALTH_DEF, "  - {name: b, command: /bin/b}\n  - {name: a, command: /bin/a}\n",
                REC_DEF),
        HA_BASE(RED_DEF, HEALTH_DEF, "  - {name: a, command: /bin/a}\n", REC_DEF),
        HA_BASE(RED_DEF, HEALTH_DEF, "  []\n", REC_DEF),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF,
                "  app_restarts: {max: 9, window_s: 10}\n  vm_restarts: {max: 2, window_s: 20}\n"
                "  failovers: {max: 3, window_s: 30}\n"),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF,
                "  app_restarts: {max: 1, window_s: 11}\n  vm_restarts: {max: 2, window_s: 20}\n"
                "  failovers: {max: 3, window_s: 30}\n"),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF,
                "  app_restarts: {max: 1, window_s: 10}\n  vm_restarts: {max: 9, window_s: 20}\n"
                "  failovers: {max: 3, window_s: 30}\n"),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF,
                "  app_restarts: {max: 1, window_s: 10}\n  vm_restarts: {max: 2, window_s: 21}\n"
                "  failovers: {max: 3, window_s: 30}\n"),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF,
                "  app_restarts: {max: 1, window_s: 10}\n  vm_restarts: {max: 2, window_s: 20}\n"
                "  failovers: {max: 9, window_s: 30}\n"),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF,
                "  app_restarts: {max: 1, window_s: 10}\n  vm_restarts: {max: 2, window_s: 20}\n"
                "  failovers: {max: 3, window_s: 31}\n"),
        HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF, REC_DEF "  restart: cold\n"),
        /* the model alone, everything else at its default */
        "name: a\ninstances: 2\nredundancy: {model: 2n}\n",
    };
    const char *base = HA_BASE(RED_DEF, HEALTH_DEF, PROCS_DEF, REC_DEF);
    struct spec_service *a = parse_ok(base);
    struct spec_service *a2 = parse_ok(
        "{\"recovery\": {\"restart\": \"fast\", \"failovers\": {\"window_s\": 30, \"max\": 3},\n"
        "  \"vm_restarts\": {\"max\": 2, \"window_s\": 20}, \"app_restarts\": {\"max\": 1, \"window_s\": 10}},\n"
        " \"processes\": [{\"command\": \"/bin/a\", \"name\": \"a\"}, {\"name\": \"b\", \"command\": \"/bin/b\"}],\n"
        " \"health\": {\"watchdog_s\": 5},\n"
        " \"redundancy\": {\"virtual_ips\": [\"10.1.0.1\", \"10.1.0.2\"], \"standbys\": 1, \"model\": \"n+m\"},\n"
        " \"instances\": 3, \"name\": \"a\"}");
    struct spec_service *plain = parse_ok("name: a\ninstances: 2\n");
    struct spec_service *plain2 = parse_ok(
        "name: a\ninstances: 2\nredundancy: {model: none, standbys: 0, virtual_ips: []}\n"
        "health: {}\nprocesses: []\nrecovery: {app_restarts: {}, vm_restarts: {max: 3},\n"
        "  failovers: {window_s: 3600}, restart: fast}\n");
    struct spec_service c;

    (void)state;
    assert_true(spec_equal(a, a2));
    assert_true(spec_equal(a2, a));
    assert_true(spec_equal(plain, plain2));
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        struct spec_service *b = parse_ok(variants[i]);
        if (spec_equal(a, b) || spec_equal(b, a)) {
            print_error("HA variant %zu compares equal\n", i);
            fail();
        }
        spec_free(b);
    }
    /* positions do not count; every field does (a shallow copy shares the
     * networks, which stay the same) */
    c = *a;
    c.vips[1].line += 3;
    c.vips[1].column += 7;
    assert_true(spec_equal(a, &c));
    c.vips[1].ip[7] = '9';
    assert_false(spec_equal(a, &c));
    c = *a;
    c.standbys = 2;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.n_vips = 1;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.processes[1].command[0] = 'x';
    assert_false(spec_equal(a, &c));
    c = *a;
    c.processes[0].name[0] = 'z';
    assert_false(spec_equal(a, &c));
    c = *a;
    c.n_processes = 3; /* a third, empty process */
    assert_false(spec_equal(a, &c));
    c = *a;
    c.redundancy = SPEC_RED_2N;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.heartbeat_misses++;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.watchdog_s = 0;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.app_restarts.window_s++;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.vm_restarts.max++;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.failovers.window_s--;
    assert_false(spec_equal(a, &c));
    c = *a;
    c.restart = SPEC_RESTART_COLD;
    assert_false(spec_equal(a, &c));
    spec_free(a);
    spec_free(a2);
    spec_free(plain);
    spec_free(plain2);
}

/* ------------------------------------------------------------------ */
/* cpu and qos                                                         */

static void assert_cpu_qos_defaults(const struct spec_service *s, unsigned max_vcpus)
{
    assert_int_equal(s->cpu.policy, SPEC_CPU_FLOATING);
    assert_false(s->cpu.isolate_smt);
    assert_string_equal(s->cpu.group, "");
    assert_int_equal(s->cpu.group_cores, 1);
    assert_int_equal(s->cpu.n_pinned, 0);
    assert_int_equal(s->cpu.numa, SPEC_NUMA_PREFER);
    assert_false(s->cpu.realtime);
    assert_int_equal(s->cpu.realtime_priority, 0);
    assert_int_equal(s->cpu.max_vcpus, max_vcpus);
    assert_int_equal(s->qos.cpu_shares, 0);
    assert_int_equal(s->qos.cpu_period_us, 0);
    assert_int_equal(s->qos.cpu_quota_us, 0);
    assert_int_equal(s->qos.memory_hard_limit_mib, 0);
    assert_int_equal(s->qos.net_inbound_kbps, 0);
    assert_int_equal(s->qos.net_outbound_kbps, 0);
    assert_int_equal(s->qos.net_burst_kb, 0);
    assert_int_equal(s->qos.block_read_bps, 0);
    assert_int_equal(s->qos.block_write_bps, 0);
    assert_int_equal(s->qos.block_read_iops, 0);
    assert_int_equal(s->qos.block_write_iops, 0);
}

/* Old specs (no cpu, no qos), empty sections and partial ones. */
static void test_cpu_qos_defaults(void **state)
{
    struct spec_service *s, *s2;

    (void)state;
    s = parse_ok("name: demo\n");
    assert_cpu_qos_defaults(s, 1);
    assert_int_equal(s->cpu.policy_pos.line, 0);
    assert_int_equal(s->cpu.pinned_pos.line, 0);
    spec_free(s);

    /* max_vcpus follows vcpus; empty sections are the defaults */
    s = parse_ok("name: a\nvcpus: 6\n");
    assert_cpu_qos_defaults(s, 6);
    s2 = parse_ok("name: a\nvcpus: 6\ncpu: {}\nqos: {net: {}, block: {}}\n");
    assert_cpu_qos_defaults(s2, 6);
    assert_true(spec_equal(s, s2));
    spec_free(s2);
    s2 = parse_ok("name: a\nvcpus: 6\ncpu: {max_vcpus: 6}\n");
    assert_true(spec_equal(s, s2));
    spec_free(s2);
    s2 = parse_ok("name: a\nvcpus: 6\ncpu: {max_vcpus: 7}\n");
    assert_false(spec_equal(s, s2));
    assert_int_equal(s2->cpu.max_vcpus, 7);
    spec_free(s2);
    spec_free(s);

    /* realtime_priority defaults to 1 with realtime, stays 0 without */
    s = parse_ok("name: a\ncpu: {policy: dedicated, realtime: true}\n");
    assert_true(s->cpu.realtime);
    assert_int_equal(s->cpu.realtime_priority, 1);
    assert_false(s->cpu.isolate_smt);
    assert_round_trip(s);
    spec_free(s);
    s = parse_ok("name: a\ncpu: {policy: pinned, pinned: [1], realtime: false}\n");
    assert_false(s->cpu.realtime);
    assert_int_equal(s->cpu.realtime_priority, 0);
    spec_free(s);

    /* group_cores defaults to 1 */
    s = parse_ok("name: a\ncpu: {policy: shared-group, group: g}\n");
    assert_int_equal(s->cpu.policy, SPEC_CPU_SHARED_GROUP);
    assert_string_equal(s->cpu.group, "g");
    assert_int_equal(s->cpu.group_cores, 1);
    spec_free(s);

    /* a quota alone keeps the default period; a hard limit needs no quota */
    s = parse_ok("name: a\nqos: {cpu_quota_us: 5000, memory_hard_limit: 1GiB}\n");
    assert_int_equal(s->qos.cpu_quota_us, 5000);
    assert_int_equal(s->qos.cpu_period_us, 0);
    assert_int_equal(s->qos.memory_hard_limit_mib, 1024);
    assert_int_equal(s->qos.cpu_shares, 0);
    spec_free(s);
    s = parse_ok("name: a\nqos: {net: {burst_kb: 3}, block: {write_iops: 4}}\n");
    assert_int_equal(s->qos.net_burst_kb, 3);
    assert_int_equal(s->qos.net_inbound_kbps, 0);
    assert_int_equal(s->qos.block_write_iops, 4);
    assert_int_equal(s->qos.block_read_iops, 0);
    spec_free(s);

    assert_string_equal(spec_cpu_policy_name(SPEC_CPU_FLOATING), "floating");
    assert_string_equal(spec_cpu_policy_name(SPEC_CPU_DEDICATED), "dedicated");
    assert_string_equal(spec_cpu_policy_name(SPEC_CPU_SHARED_GROUP), "shared-group");
    assert_string_equal(spec_cpu_policy_name(SPEC_CPU_PINNED), "pinned");
    assert_string_equal(spec_cpu_policy_name((enum spec_cpu_policy)42), "unknown");
}

/* What every cpu and qos field holds, and where policy and pinned were
 * written. */
static void test_cpu_qos_fields(void **state)
{
    struct spec_service *s;

    (void)state;
    s = parse_ok("name: a\nvcpus: 3\nmemory: 1GiB\ncpu:\n  numa: strict\n  policy: pinned\n"
                 "  pinned: [7, 3,\n    5]\n  realtime: true\n  realtime_priority: 42\n"
                 "  max_vcpus: 9\n"
                 "qos:\n  cpu_shares: 500\n  cpu_period_us: 20000\n  cpu_quota_us: 30000\n"
                 "  memory_hard_limit: 1536\n"
                 "  net: {inbound_kbps: 1, outbound_kbps: 2, burst_kb: 3}\n"
                 "  block: {read_bps: 4, write_bps: 5, read_iops: 6, write_iops: 7}\n");
    assert_int_equal(s->cpu.policy, SPEC_CPU_PINNED);
    assert_int_equal(s->cpu.policy_pos.line, 6);
    assert_int_equal(s->cpu.policy_pos.column, 11);
    assert_int_equal(s->cpu.n_pinned, 3);
    assert_int_equal(s->cpu.pinned[0], 7);
    assert_int_equal(s->cpu.pinned[1], 3);
    assert_int_equal(s->cpu.pinned[2], 5);
    assert_int_equal(s->cpu.pinned_pos.line, 7);
    assert_int_equal(s->cpu.pinned_pos.column, 11);
    assert_int_equal(s->cpu.numa, SPEC_NUMA_STRICT);
    assert_true(s->cpu.realtime);
    assert_int_equal(s->cpu.realtime_priority, 42);
    assert_int_equal(s->cpu.max_vcpus, 9);
    assert_string_equal(s->cpu.group, "");
    assert_int_equal(s->cpu.group_cores, 1);
    assert_int_equal(s->qos.cpu_shares, 500);
    assert_int_equal(s->qos.cpu_period_us, 20000);
    assert_int_equal(s->qos.cpu_quota_us, 30000);
    assert_int_equal(s->qos.memory_hard_limit_mib, 1536);
    assert_int_equal(s->qos.net_inbound_kbps, 1);
    assert_int_equal(s->qos.net_outbound_kbps, 2);
    assert_int_equal(s->qos.net_burst_kb, 3);
    assert_int_equal(s->qos.block_read_bps, 4);
    assert_int_equal(s->qos.block_write_bps, 5);
    assert_int_equal(s->qos.block_read_iops, 6);
    assert_int_equal(s->qos.block_write_iops, 7);
    assert_round_trip(s);
    spec_free(s);

    s = parse_ok("name: a\ncpu:\n  policy: dedicated\n  isolate_smt: true\n");
    assert_int_equal(s->cpu.policy, SPEC_CPU_DEDICATED);
    assert_true(s->cpu.isolate_smt);
    assert_int_equal(s->cpu.policy_pos.line, 3);
    assert_int_equal(s->cpu.pinned_pos.line, 0);
    assert_round_trip(s);
    spec_free(s);

    s = parse_ok("name: a\ncpu: {policy: shared-group, group: light-2, group_cores: 64}\n");
    assert_string_equal(s->cpu.group, "light-2");
    assert_int_equal(s->cpu.group_cores, 64);
    assert_round_trip(s);
    spec_free(s);
}

/* Each policy against each other policy's fields: a field that belongs to
 * another policy is refused at that field, its neutral value is not. */
static void test_cpu_policy_matrix(void **state)
{
    static const char *const policies[] = { NULL, "floating", "dedicated", "shared-group",
                                            "pinned" };
    static const char codes[] = "-FDSP"; /* '-': policy omitted (floating) */
    static const struct {
        const char *field; /* one line under cpu: */
        const char *ok;    /* policy codes it is fine with ('-' follows 'F') */
    } cases[] = {
        { "isolate_smt: true", "D" },       { "isolate_smt: false", "FDSP" },
        { "group: other", "S" },            { "group: null", "FDP" },
        { "group: ~", "FDP" },              { "group_cores: 1", "FDSP" },
        { "group_cores: 64", "S" },         { "group_cores: 0", "" },
        { "group_cores: 65", "" },          { "pinned: [1, 2]", "P" },
        { "pinned: []", "FDS" },            { "realtime: true", "DP" },
        { "realtime: false", "FDSP" },      { "realtime_priority: 0", "FDSP" },
        { "realtime_priority: 1", "" },     { "numa: strict", "FDSP" },
        { "numa: prefer", "FDSP" },         { "max_vcpus: 1", "FDSP" },
        { "max_vcpus: 0", "" },
    };

    (void)state;
    for (size_t p = 0; p < CGV_ARRAY_LEN(policies); p++) {
        for (size_t i = 0; i < CGV_ARRAY_LEN(cases); i++) {
            const char *f = cases[i].field;
            char code = codes[p] == '-' ? 'F' : codes[p];
            bool ok = strchr(cases[i].ok, code) != NULL;
            char *pol = policies[p] ? cgv_asprintf("  policy: %s\n", policies[p])
                                    : cgv_strdup("");
            /* what shared-group and pinned need, unless the case writes it */
            const char *need = code == 'S' && strncmp(f, "group:", 6) != 0 ? "  group: g\n"
                               : code == 'P' && strncmp(f, "pinned:", 7) != 0 ? "  pinned: [9]\n"
                                                                               : "";
            char *t = cgv_asprintf("name: a\ncpu:\n%s%s  %s\n", pol, need, f);
            char path[64];
            struct spec_service *s = NULL;
            struct spec_issues iss;
            int rc = spec_parse(t, strlen(t), &s, &iss);

            snprintf(path, sizeof(path), "cpu.%.*s", (int)strcspn(f, ":"), f);
            if ((rc == 0) != ok || (rc != 0 && (iss.n != 1 || strcmp(iss.items[0].path, path)))) {
                char *fm = spec_issues_format(&iss);
                print_error("case:\n%s\nrc %d, want %s\n%s\n", t, rc, ok ? "ok" : path,
                            rc ? fm : "");
                free(fm);
                fail();
            }
            if (rc == 0) {
                assert_round_trip(s);
            } else {
                /* at the field's value, on the last line */
                assert_int_equal(iss.items[0].line, policies[p] ? (need[0] ? 5 : 4)
                                                                : (need[0] ? 4 : 3));
                assert_int_equal(iss.items[0].column, (int)strcspn(f, ":") + 5);
                /* a policy mismatch names the policy the field is for */
                if (strstr(f, "true") && strncmp(f, "realtime", 8) == 0)
                    assert_contains(iss.items[0].msg, "cores of their own");
                else if (strncmp(f, "isolate_smt", 11) == 0)
                    assert_contains(iss.items[0].msg, "only for policy dedicated");
                else if (strcmp(f, "pinned: [1, 2]") == 0)
                    assert_contains(iss.items[0].msg, "only for policy pinned");
                else if (strcmp(f, "group: other") == 0 || strcmp(f, "group_cores: 64") == 0)
                    assert_contains(iss.items[0].msg, "only for policy shared-group");
                if (!policies[p] && strstr(iss.items[0].msg, "policy is"))
                    assert_contains(iss.items[0].msg, "(policy is floating, the default)");
            }
            spec_free(s);
            free(t);
            free(pol);
        }
    }
}

/* Pinned CPU ids: range, count, duplicates. */
static void test_cpu_pinned(void **state)
{
    struct spec_service *s;
    struct spec_issues iss;
    char list[1024], *t, *f;
    size_t o = 0;

    (void)state;
    for (int i = 0; i < SPEC_MAX_PINNED; i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%d", i ? ", " : "", 1023 - i);
    t = cgv_asprintf("name: a\ncpu: {policy: pinned, pinned: [%s]}\n", list);
    s = parse_ok(t);
    assert_int_equal(s->cpu.n_pinned, SPEC_MAX_PINNED);
    assert_int_equal(s->cpu.pinned[0], 1023);
    assert_int_equal(s->cpu.pinned[SPEC_MAX_PINNED - 1], 1023 - SPEC_MAX_PINNED + 1);
    assert_round_trip(s);
    spec_free(s);
    free(t);
    /* one more is too many */
    t = cgv_asprintf("name: a\ncpu: {policy: pinned, pinned: [%s, 0]}\n", list);
    f = parse_bad(t, strlen(t), &iss);
    assert_string_equal(f, "invalid spec: 1 problem\n"
                           "line 2, col 31: cpu.pinned: at most 64 CPU ids are allowed, got 65");
    free(f);
    free(t);
    /* a duplicate names the first one's position; the third copy too */
    t = "name: a\ncpu:\n  policy: pinned\n  pinned:\n    - 5\n    - 0\n    - 5\n    - 5\n";
    f = parse_bad(t, strlen(t), &iss);
    assert_string_equal(f, "invalid spec: 2 problems\n"
                           "line 7, col 7: cpu.pinned[2]: CPU 5 is listed twice (first at line 5, col 7)\n"
                           "line 8, col 7: cpu.pinned[3]: CPU 5 is listed twice (first at line 5, col 7)");
    free(f);
    t = "name: a\ncpu: {policy: pinned, pinned: [0, 1023, 1024]}\n";
    f = parse_bad(t, strlen(t), &iss);
    assert_string_equal(f, "invalid spec: 1 problem\n"
                           "line 2, col 41: cpu.pinned[2]: must be between 0 and 1023, got 1024");
    free(f);
    /* order counts: vCPU i runs on pinned[i % n] */
    s = parse_ok("name: a\ncpu: {policy: pinned, pinned: [1, 2]}\n");
    {
        struct spec_service *r = parse_ok("name: a\ncpu: {policy: pinned, pinned: [2, 1]}\n");
        assert_false(spec_equal(s, r));
        spec_free(r);
    }
    spec_free(s);
}

/* max_vcpus against vcpus. */
static void test_cpu_max_vcpus(void **state)
{
    static const struct {
        int vcpus; /* -1: not given */
        int max;
        bool ok;
    } cases[] = {
        { -1, 1, true },   { -1, 0, false },  { -1, 64, true },  { -1, 65, false },
        { 4, 4, true },    { 4, 3, false },   { 4, 64, true },   { 64, 64, true },
        { 64, 63, false }, { 2, -1, false },  { 1, 2, true },
    };

    (void)state;
    for (size_t i = 0; i < CGV_ARRAY_LEN(cases); i++) {
        char *vc = cases[i].vcpus >= 0 ? cgv_asprintf("vcpus: %d\n", cases[i].vcpus)
                                       : cgv_strdup("");
        char *t = cgv_asprintf("name: a\n%scpu:\n  max_vcpus: %d\n", vc, cases[i].max);
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc = spec_parse(t, strlen(t), &s, &iss);
        char want[32];

        if ((rc == 0) != cases[i].ok) {
            print_error("case:\n%s\nrc %d\n", t, rc);
            fail();
        }
        if (rc == 0) {
            assert_int_equal(s->cpu.max_vcpus, cases[i].max);
        } else {
            assert_int_equal(iss.n, 1);
            assert_string_equal(iss.items[0].path, "cpu.max_vcpus");
            snprintf(want, sizeof(want), "vcpus (%d%s)",
                     cases[i].vcpus >= 0 ? cases[i].vcpus : 1,
                     cases[i].vcpus >= 0 ? "" : ", the default");
            assert_contains(iss.items[0].msg, want);
        }
        spec_free(s);
        free(t);
        free(vc);
    }
}

/* Every qos field at and past its bounds. */
static void test_qos_ranges(void **state)
{
    static const struct {
        const char *qos; /* the text under qos: */
        bool ok;
        const char *path; /* of the one issue when not ok */
    } cases[] = {
        { "cpu_shares: 0", true, NULL },
        { "cpu_shares: 1", false, "qos.cpu_shares" },
        { "cpu_shares: 2", true, NULL },
        { "cpu_shares: 262144", true, NULL },
        { "cpu_shares: 262145", false, "qos.cpu_shares" },
        { "cpu_shares: -2", false, "qos.cpu_shares" },
        { "cpu_quota_us: 0", true, NULL },
        { "cpu_quota_us: 999", false, "qos.cpu_quota_us" },
        { "cpu_quota_us: 1000", true, NULL },
        { "cpu_quota_us: 1000000000000", true, NULL },
        { "cpu_quota_us: 1000000000001", false, "qos.cpu_quota_us" },
        { "cpu_quota_us: 18446744073709551615", false, "qos.cpu_quota_us" },
        { "cpu_period_us: 0", true, NULL },
        { "cpu_period_us: 100000", false, "qos.cpu_period_us" },
        { "{cpu_period_us: 100000, cpu_quota_us: 0}", false, "qos.cpu_period_us" },
        { "{cpu_period_us: 999, cpu_quota_us: 1000}", false, "qos.cpu_period_us" },
        { "{cpu_period_us: 1000, cpu_quota_us: 1000}", true, NULL },
        { "{cpu_period_us: 1000000, cpu_quota_us: 1000}", true, NULL },
        { "{cpu_period_us: 1000001, cpu_quota_us: 1000}", false, "qos.cpu_period_us" },
        { "{cpu_period_us: 0, cpu_quota_us: 1000}", true, NULL },
        { "{cpu_period_us: 5000, cpu_quota_us: 1}", false, "qos.cpu_quota_us" },
        { "memory_hard_limit: 255", false, "qos.memory_hard_limit" },
        { "memory_hard_limit: 256", true, NULL },
        { "memory_hard_limit: 256MiB", true, NULL },
        { "memory_hard_limit: 262144KiB", true, NULL },
        { "memory_hard_limit: 1TiB", true, NULL },
        { "memory_hard_limit: 1025GiB", false, "qos.memory_hard_limit" },
        { "memory_hard_limit: 0", false, "qos.memory_hard_limit" },
        { "memory_hard_limit: 0MiB", false, "qos.memory_hard_limit" },
        { "memory_hard_limit: null", true, NULL },
        { "memory_hard_limit: \"512\"", false, "qos.memory_hard_limit" },
        { "memory_hard_limit: 512mib", false, "qos.memory_hard_limit" },
        { "memory_hard_limit: true", false, "qos.memory_hard_limit" },
    };
    static const struct {
        const char *section, *field;
    } rates[] = {
        { "net", "inbound_kbps" }, { "net", "outbound_kbps" }, { "net", "burst_kb" },
        { "block", "read_bps" },   { "block", "write_bps" },   { "block", "read_iops" },
        { "block", "write_iops" },
    };
    static const struct {
        const char *v;
        bool ok;
    } rate_values[] = {
        { "0", true }, { "1", true }, { "100000000000", true }, { "100000000001", false },
        { "-1", false }, { "1.0", false }, { "\"5\"", false }, { "~", false },
    };

    (void)state;
    for (size_t i = 0; i < CGV_ARRAY_LEN(cases); i++) {
        const char *q = cases[i].qos;
        char *t = q[0] == '{' ? cgv_asprintf("name: a\nqos: %s\n", q)
                              : cgv_asprintf("name: a\nqos:\n  %s\n", q);
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc = spec_parse(t, strlen(t), &s, &iss);

        if ((rc == 0) != cases[i].ok ||
            (rc != 0 && (iss.n != 1 || strcmp(iss.items[0].path, cases[i].path)))) {
            char *f = spec_issues_format(&iss);
            print_error("case:\n%s\nrc %d\n%s\n", t, rc, rc ? f : "");
            free(f);
            fail();
        }
        if (rc == 0)
            assert_round_trip(s);
        spec_free(s);
        free(t);
    }
    for (size_t r = 0; r < CGV_ARRAY_LEN(rates); r++) {
        for (size_t k = 0; k < CGV_ARRAY_LEN(rate_values); k++) {
            char *t = cgv_asprintf("name: a\nqos:\n  %s: {%s: %s}\n", rates[r].section,
                                   rates[r].field, rate_values[k].v);
            char path[64];
            struct spec_service *s = NULL;
            struct spec_issues iss;
            int rc = spec_parse(t, strlen(t), &s, &iss);

            snprintf(path, sizeof(path), "qos.%s.%s", rates[r].section, rates[r].field);
            if ((rc == 0) != rate_values[k].ok ||
                (rc != 0 && (iss.n != 1 || strcmp(iss.items[0].path, path)))) {
                char *f = spec_issues_format(&iss);
                print_error("case:\n%s\nrc %d (want issue at %s)\n%s\n", t, rc, path,
                            rc ? f : "");
                free(f);
                fail();
            }
            if (rc == 0) {
                unsigned long long want = strtoull(rate_values[k].v, NULL, 10);
                const uint64_t got[] = { s->qos.net_inbound_kbps, s->qos.net_outbound_kbps,
                                         s->qos.net_burst_kb,     s->qos.block_read_bps,
                                         s->qos.block_write_bps,  s->qos.block_read_iops,
                                         s->qos.block_write_iops };
                assert_int_equal(got[r], want);
                assert_round_trip(s);
            }
            spec_free(s);
            free(t);
        }
    }
}

/* spec_equal on every cpu and qos field: each variant differs from the
 * base in one of them; the same meaning written otherwise is equal. */
#define CQ_BASE(cpu, qos) "name: a\nvcpus: 2\nmemory: 1GiB\ncpu:\n" cpu "qos:\n" qos
#define CPU_DEF                                                                            \
    "  policy: pinned\n  pinned: [4, 5, 6]\n  numa: strict\n  realtime: true\n"               \
    "  realtime_priority: 20\n  max_vcpus: 4\n"
/* qos text with every field written */
#define QOS_F(key, v) "  " #key ": " #v "\n"
#define QOS(shares, period, quota, hard, in, out, burst, rb, wb, ri, wi)                    \
    QOS_F(cpu_shares, shares) QOS_F(cpu_period_us, period) QOS_F(cpu_quota_us, quota)      \
    QOS_F(memory_hard_limit, hard) "  net: {inbound_kbps: " #in ", outbound_kbps: " #out    \
    ", burst_kb: " #burst "}\n  block: {read_bps: " #rb ", write_bps: " #wb                  \
    ", read_iops: " #ri ", write_iops: " #wi "}\n"
#define QOS_DEF QOS(100, 10000, 20000, 2GiB, 1, 2, 3, 4, 5, 6, 7)

static void test_equal_cpu_qos(void **state)
{
    const char *variants[] = {
        CQ_BASE("  policy: dedicated\n  numa: strict\n  realtime: true\n"
                "  realtime_priority: 20\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 5]\n  numa: strict\n  realtime: true\n"
                "  realtime_priority: 20\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 6, 5]\n  numa: strict\n  realtime: true\n"
                "  realtime_priority: 20\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 5, 7]\n  numa: strict\n  realtime: true\n"
                "  realtime_priority: 20\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 5, 6]\n  realtime: true\n"
                "  realtime_priority: 20\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 5, 6]\n  numa: strict\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 5, 6]\n  numa: strict\n  realtime: true\n"
                "  realtime_priority: 21\n  max_vcpus: 4\n", QOS_DEF),
        CQ_BASE("  policy: pinned\n  pinned: [4, 5, 6]\n  numa: strict\n  realtime: true\n"
                "  realtime_priority: 20\n", QOS_DEF),
        CQ_BASE(CPU_DEF, QOS(101, 10000, 20000, 2GiB, 1, 2, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 0, 20000, 2GiB, 1, 2, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20001, 2GiB, 1, 2, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, null, 1, 2, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2049, 1, 2, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 9, 2, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 1, 9, 3, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 1, 2, 9, 4, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 1, 2, 3, 9, 5, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 1, 2, 3, 4, 9, 6, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 1, 2, 3, 4, 5, 9, 7)),
        CQ_BASE(CPU_DEF, QOS(100, 10000, 20000, 2GiB, 1, 2, 3, 4, 5, 6, 9)),
        /* the same VM with no cpu or qos at all */
        "name: a\nvcpus: 2\nmemory: 1GiB\n",
    };
    const char *base = CQ_BASE(CPU_DEF, QOS_DEF);
    struct spec_service *a = parse_ok(base);
    struct spec_service *a2 = parse_ok(
        "{\"qos\": {\"block\": {\"write_iops\": 7, \"read_iops\": 6, \"write_bps\": 5, \"read_bps\": 4},\n"
        "  \"net\": {\"burst_kb\": 3, \"outbound_kbps\": 2, \"inbound_kbps\": 1},\n"
        "  \"memory_hard_limit\": \"2097152KiB\", \"cpu_quota_us\": 20000, \"cpu_period_us\": 10000,\n"
        "  \"cpu_shares\": 100},\n"
        " \"cpu\": {\"max_vcpus\": 4, \"realtime_priority\": 20, \"realtime\": true, \"numa\": \"strict\",\n"
        "  \"pinned\": [4, 5, 6], \"policy\": \"pinned\", \"group\": null, \"group_cores\": 1,\n"
        "  \"isolate_smt\": false},\n"
        " \"memory\": 1024, \"vcpus\": 2, \"name\": \"a\"}");
    struct spec_service *sg = parse_ok("name: a\ncpu: {policy: shared-group, group: g, "
                                       "group_cores: 2, isolate_smt: false}\n");
    struct spec_service *ded = parse_ok("name: a\ncpu: {policy: dedicated, isolate_smt: true}\n");
    struct spec_service *other;
    struct spec_service c;

    (void)state;
    assert_true(spec_equal(a, a2));
    assert_true(spec_equal(a2, a));
    for (size_t i = 0; i < CGV_ARRAY_LEN(variants); i++) {
        struct spec_service *b = parse_ok(variants[i]);
        if (spec_equal(a, b) || spec_equal(b, a)) {
            print_error("cpu/qos variant %zu compares equal\n", i);
            fail();
        }
        spec_free(b);
    }
    /* the fields the base leaves at their defaults */
    other = parse_ok("name: a\ncpu: {policy: shared-group, group: h, group_cores: 2}\n");
    assert_false(spec_equal(sg, other));
    spec_free(other);
    other = parse_ok("name: a\ncpu: {policy: shared-group, group: g, group_cores: 3}\n");
    assert_false(spec_equal(sg, other));
    spec_free(other);
    other = parse_ok("name: a\ncpu: {policy: dedicated}\n");
    assert_false(spec_equal(ded, other));
    spec_free(other);

    /* positions do not count; every field does */
    c = *a;
    c.cpu.policy_pos.line += 2;
    c.cpu.policy_pos.column += 3;
    c.cpu.pinned_pos.line += 4;
    c.cpu.pinned_pos.column += 5;
    assert_true(spec_equal(a, &c));
#define DIFFERS(mutation)                                                                  \
    do {                                                                                   \
        c = *a;                                                                            \
        mutation;                                                                          \
        assert_false(spec_equal(a, &c));                                                   \
        assert_false(spec_equal(&c, a));                                                   \
    } while (0)
    DIFFERS(c.cpu.policy = SPEC_CPU_DEDICATED);
    DIFFERS(c.cpu.isolate_smt = true);
    DIFFERS(cgv_strlcpy(c.cpu.group, "g", sizeof(c.cpu.group)));
    DIFFERS(c.cpu.group_cores = 2);
    DIFFERS(c.cpu.n_pinned = 2);
    DIFFERS(c.cpu.pinned[2] = 7);
    DIFFERS(c.cpu.pinned[0] = 5);
    DIFFERS(c.cpu.numa = SPEC_NUMA_PREFER);
    DIFFERS(c.cpu.realtime = false);
    DIFFERS(c.cpu.realtime_priority = 1);
    DIFFERS(c.cpu.max_vcpus = 2);
    DIFFERS(c.qos.cpu_shares = 0);
    DIFFERS(c.qos.cpu_period_us = 0);
    DIFFERS(c.qos.cpu_quota_us = 1);
    DIFFERS(c.qos.memory_hard_limit_mib = 0);
    DIFFERS(c.qos.net_inbound_kbps = 0);
    DIFFERS(c.qos.net_outbound_kbps = 0);
    DIFFERS(c.qos.net_burst_kb = 0);
    DIFFERS(c.qos.block_read_bps = 0);
    DIFFERS(c.qos.block_write_bps = 0);
    DIFFERS(c.qos.block_read_iops = 0);
    DIFFERS(c.qos.block_write_iops = 0);
    /* a pinned id past n_pinned is not part of the spec */
    c = *a;
    c.cpu.pinned[3] = 99;
    assert_true(spec_equal(a, &c));
#undef DIFFERS
    spec_free(a);
    spec_free(a2);
    spec_free(sg);
    spec_free(ded);
}

/* The canonical form of a spec using every cpu and qos field. */
static void test_canonical_cpu_qos(void **state)
{
    struct spec_service *s;
    char *t;

    (void)state;
    s = parse_ok("name: a\nvcpus: 2\nmemory: 1GiB\ncpu:\n" CPU_DEF "qos:\n" QOS_DEF);
    t = canonical_text(s, JSON_COMPACT);
    assert_contains(t, "\"restart\":\"fast\"},"
                       "\"cpu\":{\"policy\":\"pinned\",\"isolate_smt\":false,\"group\":null,"
                       "\"group_cores\":1,\"pinned\":[4,5,6],\"numa\":\"strict\","
                       "\"realtime\":true,\"realtime_priority\":20,\"max_vcpus\":4},"
                       "\"qos\":{\"cpu_shares\":100,\"cpu_period_us\":10000,"
                       "\"cpu_quota_us\":20000,\"memory_hard_limit\":\"2048MiB\","
                       "\"net\":{\"inbound_kbps\":1,\"outbound_kbps\":2,\"burst_kb\":3},"
                       "\"block\":{\"read_bps\":4,\"write_bps\":5,\"read_iops\":6,"
                       "\"write_iops\":7}}}");
    free(t);
    spec_free(s);
    s = parse_ok("name: a\ncpu: {policy: shared-group, group: light, group_cores: 3}\n");
    t = canonical_text(s, JSON_COMPACT);
    assert_contains(t, "\"cpu\":{\"policy\":\"shared-group\",\"isolate_smt\":false,"
                       "\"group\":\"light\",\"group_cores\":3,\"pinned\":[],");
    free(t);
    spec_free(s);
    s = parse_ok("name: a\ncpu: {policy: dedicated, isolate_smt: true}\n");
    t = canonical_text(s, JSON_COMPACT);
    assert_contains(t, "\"cpu\":{\"policy\":\"dedicated\",\"isolate_smt\":true,\"group\":null,");
    free(t);
    spec_free(s);
}

struct int_case {
    const char *value;
    long long want; /* -1: invalid */
};

static void test_integers(void **state)
{
    static const struct int_case cases[] = {
        { "1", 1 }, { "64", 64 }, { "+3", 3 }, { "0", -1 }, { "65", -1 }, { "-1", -1 },
        { "-0", -1 }, { "007", -1 }, { "0x10", -1 }, { "0o7", -1 }, { "2.5", -1 },
        { "2.0", -1 }, { "1e1", -1 }, { "\"2\"", -1 }, { "'2'", -1 }, { "true", -1 },
        { "yes", -1 }, { "~", -1 }, { "", -1 }, { "[2]", -1 }, { "{a: 1}", -1 },
        { "1_0", -1 }, { "99999999999999999999999999", -1 },
        { "-9223372036854775808", -1 }, { "18446744073709551616", -1 },
        { "!!int 5", 5 }, { "!!int \"6\"", 6 }, { "!!str 5", -1 }, { "!!int five", -1 },
        { ".inf", -1 }, { ".nan", -1 }, { "! 5", -1 }, { "!!float 5", -1 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = cgv_asprintf("name: a\ninstances: %s\n", cases[i].value);
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc = spec_parse(t, strlen(t), &s, &iss);

        if ((rc == 0) != (cases[i].want >= 0)) {
            print_error("instances: %s: rc %d\n", cases[i].value, rc);
            fail();
        }
        if (rc == 0) {
            assert_int_equal(s->instances, cases[i].want);
        } else {
            assert_int_equal(iss.n, 1);
            assert_string_equal(iss.items[0].path, "instances");
            assert_int_equal(iss.items[0].line, 2);
        }
        spec_free(s);
        free(t);
    }
}

static void test_memory(void **state)
{
    static const struct {
        const char *value;
        long long mib; /* -1: invalid */
    } cases[] = {
        { "64", 64 }, { "256", 256 }, { "1048576", 1048576 }, { "63", -1 },
        { "1048577", -1 }, { "256MiB", 256 }, { "256M", 256 }, { "\"512MiB\"", 512 },
        { "2GiB", 2048 }, { "2G", 2048 }, { "1TiB", 1048576 }, { "1T", 1048576 },
        { "2TiB", -1 }, { "65536KiB", 64 }, { "65536K", 64 }, { "66560KiB", 65 },
        { "66000KiB", -1 }, { "1536KiB", -1 }, { "0MiB", -1 }, { "32MiB", -1 },
        { "\"256\"", -1 }, { "256MB", -1 }, { "256mib", -1 }, { "256 MiB", -1 },
        { "1.5GiB", -1 }, { "1.5", -1 }, { "-256", -1 }, { "-256MiB", -1 },
        { "MiB", -1 }, { "0x100", -1 }, { "0100", -1 }, { "true", -1 }, { "[1]", -1 },
        { "99999999999999999999999999TiB", -1 }, { "18014398509481984KiB", -1 },
        { "17592186044416TiB", -1 }, { "18446744073709551615", -1 }, { "~", -1 },
        { "00000000000000000000000000000000512MiB", 512 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = cgv_asprintf("name: a\nmemory: %s\n", cases[i].value);
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc = spec_parse(t, strlen(t), &s, &iss);

        if ((rc == 0) != (cases[i].mib >= 0)) {
            char *f = spec_issues_format(&iss);
            print_error("memory: %s: rc %d\n%s\n", cases[i].value, rc, rc ? f : "");
            free(f);
            fail();
        }
        if (rc == 0) {
            assert_int_equal(s->memory_mib, cases[i].mib);
        } else {
            assert_int_equal(iss.n, 1);
            assert_string_equal(iss.items[0].path, "memory");
            assert_int_equal(iss.items[0].line, 2);
            assert_int_equal(iss.items[0].column, 9);
        }
        spec_free(s);
        free(t);
    }
}

static void test_addresses(void **state)
{
    static const struct {
        const char *ip;
        bool ok;
    } cases[] = {
        { "10.77.0.10", true }, { "192.168.1.1", true }, { "1.2.3.4", true },
        { "223.255.255.254", true }, { "10.0.0.0", true }, { "10.077.0.10", false },
        { "10.77.0.256", false }, { "10.77.0", false }, { "10.77.0.1.2", false },
        { "\"10.77.0.1 \"", false }, { "10.77.0.1 ", true }, { "a.b.c.d", false }, { "0.0.0.0", false },
        { "127.0.0.1", false }, { "224.0.0.1", false }, { "255.255.255.255", false },
        { "\"::1\"", false }, { "10.77.0.-1", false }, { "1000.1.1.1", false },
        { "10..0.1", false }, { "\"10.77.0.10\"", true }, { "10.77.0.10/24", false },
        { "0x0a.0.0.1", false }, { "1", false }, { "1.5", false },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = cgv_asprintf("name: a\nnetworks:\n  - network: n\n    addresses: [%s]\n",
                               cases[i].ip);
        struct spec_service *s = NULL;
        struct spec_issues iss;
        int rc = spec_parse(t, strlen(t), &s, &iss);

        if ((rc == 0) != cases[i].ok) {
            print_error("address %s: rc %d\n", cases[i].ip, rc);
            fail();
        }
        if (rc != 0) {
            assert_int_equal(iss.n, 1);
            assert_string_equal(iss.items[0].path, "networks[0].addresses[0]");
            assert_int_equal(iss.items[0].line, 4);
            assert_int_equal(iss.items[0].column, 17);
        }
        spec_free(s);
        free(t);
    }
}

static void test_issue_add_order_and_cap(void **state)
{
    struct spec_issues iss;
    char *f;

    (void)state;
    memset(&iss, 0, sizeof(iss));
    spec_issue_add(&iss, "b", 5, 1, "five");
    spec_issue_add(&iss, "a", 2, 7, "two");
    spec_issue_add(&iss, "", 0, 0, "doc");
    spec_issue_add(&iss, "c", 5, 1, "five again");
    spec_issue_add(&iss, "d\n\x01\xff", 3, 0, "ctl \x1b[31m");
    assert_int_equal(iss.n, 5);
    f = spec_issues_format(&iss);
    assert_string_equal(f, "invalid spec: 5 problems\n"
                           "doc\n"
                           "line 2, col 7: a: two\n"
                           "line 3: d???: ctl ?[31m\n"
                           "line 5, col 1: b: five\n"
                           "line 5, col 1: c: five again");
    free(f);

    /* Past the cap only the count grows, and the earliest issues stay. */
    memset(&iss, 0, sizeof(iss));
    for (int i = 100; i > 0; i--)
        spec_issue_add(&iss, "x", i, 1, "issue %d", i);
    assert_int_equal(iss.n, SPEC_MAX_ISSUES);
    assert_int_equal(iss.dropped, 100 - SPEC_MAX_ISSUES);
    for (int i = 0; i < SPEC_MAX_ISSUES; i++)
        assert_int_equal(iss.items[i].line, i + 1);
    f = spec_issues_format(&iss);
    assert_contains(f, "invalid spec: 100 problems\nline 1, col 1: x: issue 1\n");
    assert_contains(f, "\nline 64, col 1: x: issue 64\n(36 more not shown)");
    free(f);

    spec_issue_add(NULL, "x", 1, 1, "ignored");
    f = spec_issues_format(NULL);
    assert_string_equal(f, "no problems");
    free(f);
    memset(&iss, 0, sizeof(iss));
    spec_issue_add(&iss, "name", 1, 3, "one");
    f = spec_issues_format(&iss);
    assert_string_equal(f, "invalid spec: 1 problem\nline 1, col 3: name: one");
    free(f);
}

static void test_null_and_edges(void **state)
{
    struct spec_issues iss;
    struct spec_service *s = NULL;
    char *f;

    (void)state;
    f = parse_bad(NULL, 0, &iss);
    assert_string_equal(f, "invalid spec: 1 problem\nthe spec is empty");
    free(f);
    f = parse_bad(NULL, 5, &iss);
    assert_string_equal(f, "invalid spec: 1 problem\nno spec text");
    free(f);
    /* out and issues may be NULL (validation only) */
    assert_int_equal(spec_parse("name: a", 7, NULL, NULL), 0);
    assert_int_equal(spec_parse("name: A", 7, NULL, NULL), -1);
    /* text need not be NUL-terminated: only len bytes are read */
    assert_int_equal(spec_parse("name: abcXXXX", 9, &s, NULL), 0);
    assert_string_equal(s->name, "abc");
    spec_free(s);
    spec_free(NULL);
    assert_null(spec_to_json(NULL));
    assert_string_equal(spec_accel_name(SPEC_ACCEL_AUTO), "auto");
    assert_string_equal(spec_accel_name(SPEC_ACCEL_KVM), "kvm");
    assert_string_equal(spec_accel_name(SPEC_ACCEL_TCG), "tcg");
    assert_string_equal(spec_accel_name((enum spec_accel)42), "unknown");
    assert_string_equal(spec_redundancy_name(SPEC_RED_NONE), "none");
    assert_string_equal(spec_redundancy_name(SPEC_RED_2N), "2n");
    assert_string_equal(spec_redundancy_name(SPEC_RED_NPM), "n+m");
    assert_string_equal(spec_redundancy_name(SPEC_RED_NWAY), "nway-active");
    assert_string_equal(spec_redundancy_name((enum spec_redundancy)42), "unknown");
    assert_string_equal(spec_restart_name(SPEC_RESTART_FAST), "fast");
    assert_string_equal(spec_restart_name(SPEC_RESTART_COLD), "cold");
    assert_string_equal(spec_restart_name((enum spec_restart)42), "unknown");
}

static void test_size_limit(void **state)
{
    struct spec_issues iss;
    struct spec_service *s = NULL;
    char *big = malloc(SPEC_MAX_TEXT + 2), *f;
    const char *head = "name: big\n";

    (void)state;
    /* exactly at the limit: fine */
    memset(big, '#', SPEC_MAX_TEXT);
    memcpy(big, head, strlen(head));
    big[SPEC_MAX_TEXT - 1] = '\n';
    assert_int_equal(spec_parse(big, SPEC_MAX_TEXT, &s, &iss), 0);
    assert_string_equal(s->name, "big");
    spec_free(s);
    /* one byte more: refused before parsing */
    big[SPEC_MAX_TEXT] = '\n';
    f = parse_bad(big, SPEC_MAX_TEXT + 1, &iss);
    assert_string_equal(f, "invalid spec: 1 problem\n"
                           "the spec is too large (262145 bytes, at most 262144)");
    free(f);
    free(big);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *t = malloc(hl + ul * times + tl + 1);

    memcpy(t, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(t + hl + i * ul, unit, ul);
    memcpy(t + hl + ul * times, tail, tl + 1);
    return t;
}

static void test_deep_nesting(void **state)
{
    struct spec_issues iss;
    char *t, *f, *u;

    (void)state;
    /* flow: 100k levels, far past any stack */
    t = repeat("name: deep\nnetworks: ", "[", 100000, "");
    f = parse_bad(t, strlen(t), &iss);
    assert_int_equal(iss.n, 1);
    assert_contains(f, "nested too deeply");
    assert_int_equal(iss.items[0].line, 2);
    free(f);
    free(t);
    /* block sequences */
    t = repeat("name: deep\nnetworks:\n", "- ", 50000, "x\n");
    f = parse_bad(t, strlen(t), &iss);
    assert_contains(f, "nested too deeply");
    free(f);
    free(t);
    /* JSON: jansson's own depth limit first */
    t = repeat("{\"name\": \"deep\", \"x\": ", "[", 5000, "");
    f = parse_bad(t, strlen(t), &iss);
    assert_contains(f, "JSON syntax error");
    free(f);
    free(t);
    /* JSON that is valid but deeper than we allow */
    t = repeat("{\"name\": \"deep\", \"x\": ", "[", 40, "");
    u = repeat(t, "]", 40, "}");
    f = parse_bad(u, strlen(u), &iss);
    assert_string_equal(f, "invalid spec: 1 problem\n"
                           "line 1, col 54: x[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                           "[0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested too deeply "
                           "(more than 32 levels)");
    free(f);
    free(u);
    free(t);
}

static void test_many_problems(void **state)
{
    struct spec_issues iss;
    char *t = NULL, *f;
    size_t len = 0, cap = 0;

    (void)state;
    /* thousands of unknown fields: the first ones in the text are kept */
    for (int i = 0; i < 5000; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "field%d: %d\n", i, i);
        if (len + (size_t)n + 1 > cap) {
            cap = (cap + (size_t)n + 1) * 2;
            t = realloc(t, cap);
        }
        memcpy(t + len, line, (size_t)n + 1);
        len += (size_t)n;
    }
    f = parse_bad(t, len, &iss);
    assert_int_equal(iss.n, SPEC_MAX_ISSUES);
    assert_int_equal(iss.dropped, 5001 - SPEC_MAX_ISSUES); /* + missing name */
    assert_string_equal(iss.items[0].path, "field0");
    assert_contains(f, "invalid spec: 5001 problems\n");
    assert_contains(f, "(4937 more not shown)");
    free(f);
    free(t);
}

static void test_alias_bomb(void **state)
{
    struct spec_issues iss;
    const char *bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                       "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
                       "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
                       "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
                       "name: *i\n";
    char *f = parse_bad(bomb, strlen(bomb), &iss);

    (void)state;
    assert_contains(f, "line 1, col 4: a: anchors and aliases are not allowed (&a)");
    assert_contains(f, "\nline 2, col 8: b[0]: aliases are not allowed (*a)\n");
    assert_true(iss.dropped > 0);
    free(f);
}

static void test_random_garbage(void **state)
{
    uint64_t x = 88172645463325252ULL;
    char buf[600];

    (void)state;
    for (int i = 0; i < 3000; i++) {
        size_t len;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        len = (size_t)(x % sizeof(buf));
        for (size_t k = 0; k < len; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* mostly YAML-ish bytes, some of anything (NUL included) */
            if (i % 3 == 0)
                buf[k] = (char)(x & 0xff);
            else
                buf[k] = "name: \n\t-[]{},&*!|>'\"#0123456789abcz.\0"[(x >> 8) % 39];
        }
        if (i % 5 == 0 && len > 0)
            buf[0] = '{';
        check_contract(buf, len);
    }
}

static void test_positions(void **state)
{
    struct spec_issues iss;
    char *f;
    const char *t = "name: demo\ninstances: 0\nnetworks:\n  - network: n\n"
                    "    addresses: [10.0.0.1, 10.0.0.1]\n";

    (void)state;
    f = parse_bad(t, strlen(t), &iss);
    assert_string_equal(f, "invalid spec: 2 problems\n"
                           "line 2, col 12: instances: must be between 1 and 64, got 0\n"
                           "line 5, col 27: networks[0].addresses[1]: address 10.0.0.1 is used "
                           "twice (first at line 5, col 17)");
    free(f);
}

int main(void)
{
    static const struct CMUnitTest direct[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_canonical_json),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_ha_defaults),
        cmocka_unit_test(test_ha_fields),
        cmocka_unit_test(test_ha_watchdog),
        cmocka_unit_test(test_ha_redundancy_matrix),
        cmocka_unit_test(test_ha_commands),
        cmocka_unit_test(test_equal_ha),
        cmocka_unit_test(test_cpu_qos_defaults),
        cmocka_unit_test(test_cpu_qos_fields),
        cmocka_unit_test(test_cpu_policy_matrix),
        cmocka_unit_test(test_cpu_pinned),
        cmocka_unit_test(test_cpu_max_vcpus),
        cmocka_unit_test(test_qos_ranges),
        cmocka_unit_test(test_equal_cpu_qos),
        cmocka_unit_test(test_canonical_cpu_qos),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_issue_add_order_and_cap),
        cmocka_unit_test(test_null_and_edges),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_many_problems),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_fixture_set),
        cmocka_unit_test(test_fixture_mutations),
    };
    struct CMUnitTest *tests;
    struct fixture *fx;
    char **names;
    size_t n, nt = 0;
    int rc;

    names = list_dir(&n);
    tests = calloc(n + 1, sizeof(*tests));
    fx = calloc(n + 1, sizeof(*fx));
    for (size_t i = 0; i < n; i++) {
        const char *nm = names[i];
        size_t bl;

        if (!has_suffix(nm, ".yaml") && !has_suffix(nm, ".json"))
            continue;
        bl = strlen(nm) - 5;
        snprintf(fx[nt].input, sizeof(fx[nt].input), "%s/%s", SPEC_FIXTURES, nm);
        snprintf(fx[nt].base, sizeof(fx[nt].base), "%.*s", (int)bl, nm);
        snprintf(fx[nt].expected, sizeof(fx[nt].expected), "%s/%s.expected", SPEC_FIXTURES,
                 fx[nt].base);
        fx[nt].valid = strncmp(nm, "valid-", 6) == 0;
        tests[nt].name = fx[nt].base;
        tests[nt].test_func = test_fixture;
        tests[nt].initial_state = &fx[nt];
        nt++;
    }
    rc = cmocka_run_group_tests_name("spec", direct, NULL, NULL);
    rc += _cmocka_run_group_tests("spec_fixtures", tests, nt, NULL, NULL);
    free(tests);
    free(fx);
    free_names(names, n);
    return rc ? 1 : 0;
}
