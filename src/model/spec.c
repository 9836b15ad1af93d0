/* spec.c — service specs: parse (libyaml, jansson for strict JSON syntax),
 * validate with every problem reported, render canonical JSON. See spec.h.
 *
 * Rules chosen here (the README's "Service spec" section should match):
 *  - Scalars resolve by the YAML 1.2 core schema: null (~, null, empty),
 *    booleans true/false (any of the three casings), integers, floats,
 *    everything else a string. yes/no/on/off are plain strings. Quoted
 *    scalars are always strings, so `instances: "2"` is a string.
 *  - Integer fields take a plain integer scalar: optional sign, decimal
 *    digits, no leading zeros (010 is octal in YAML 1.1), no 0x / 0o, no
 *    underscores, no floats (2.0 is a float). Signs are accepted as YAML
 *    does so that -1 is reported as out of range.
 *  - Only the core tags are accepted: !!str, !!int, !!float, !!bool, !!null
 *    on scalars (the value must match the tag), !!map, !!seq on collections,
 *    and the non-specific "!" (string). Anchors and aliases are refused.
 *  - Names (name, image, networks[].network) follow cgv_name_valid().
 *  - networks must list 1..SPEC_MAX_NETWORKS entries; each needs `network`;
 *    `addresses` is optional, an empty list meaning "from the pool".
 *  - IPv4 addresses are four decimal numbers 0-255 without leading zeros;
 *    0.0.0.0/8, 127.0.0.0/8 and 224.0.0.0 and above are refused.
 *  - Text whose first non-blank character is '{' must be strict JSON, so a
 *    YAML flow mapping at the top ({name: x}) is a JSON syntax error. Valid
 *    JSON that libyaml refuses (surrogate-pair escapes, keys over 1024
 *    characters) is validated from jansson's tree, without positions.
 *  - Nesting deeper than SPEC_MAX_DEPTH levels stops parsing.
 *  - Issues are kept in text order (line, column; position 0 first); past
 *    SPEC_MAX_ISSUES the ones latest in the text are counted as dropped.
 *  - An unknown field that is a known field of another section says where
 *    it belongs (watchdog_s at the top: "it belongs under health").
 *  - redundancy needs a model. standbys is a count only for n+m; for the
 *    other models it may restate the fixed value (2n: 1, others: 0), which
 *    the canonical form always writes. An empty virtual_ips list is the same
 *    as none given. 2n / n+m against instances is reported at instances when
 *    it is written, else at the model. Checks that depend on another field
 *    (standbys, virtual IP count, watchdog_s against heartbeat_ms) are
 *    skipped while that field is itself invalid.
 *  - Enumerated values (model, restart, policy, numa) are case-sensitive,
 *    with a "did you mean" for a near miss. A command that YAML reads as
 *    another type (command: true) is refused with a hint to quote it.
 *  - Booleans are true/false only (yes/no/on/off are strings).
 *  - cpu: a field that belongs to another policy is refused saying which
 *    policy it is for, except that it may restate its neutral value, which
 *    the canonical form always writes: isolate_smt false, group null,
 *    group_cores 1, pinned [], realtime false, realtime_priority 0 (when
 *    realtime is false). group follows cgv_name_valid(). shared-group needs
 *    a group and pinned a non-empty pinned list; a missing one is reported
 *    at the policy. Pinned CPU ids keep their order (vCPU i runs on
 *    pinned[i % n]). Policy checks are skipped while the policy is invalid,
 *    max_vcpus >= vcpus while vcpus is invalid.
 *  - qos: cpu_shares, cpu_period_us and cpu_quota_us take 0 for "not set"
 *    (the canonical form writes 0); memory_hard_limit takes null for "none"
 *    and never 0. cpu_period_us needs a non-zero cpu_quota_us. Nothing
 *    relates the quota to the period or to vcpus. memory_hard_limit >=
 *    memory is skipped while memory is invalid.
 */
#include "spec.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define SPEC_MAX_DEPTH 32
#define YAML_CORE_TAG "tag:yaml.org,2002:"

#define DEF_INSTANCES 1
#define DEF_VCPUS 1
#define DEF_MEMORY_MIB 256
#define DEF_IMAGE "default"
#define DEF_HEARTBEAT_MS 1000
#define DEF_NETWORK "default"
#define DEF_HEARTBEAT_MISSES 3
#define DEF_WATCHDOG_S 0
#define DEF_APP_RESTARTS ((struct spec_limit){ 3, 60 })
#define DEF_VM_RESTARTS ((struct spec_limit){ 3, 600 })
#define DEF_FAILOVERS ((struct spec_limit){ 5, 3600 })

#define LIMIT_MAX_MAX 100
#define LIMIT_WINDOW_MAX 86400

#define VCPUS_MAX 64
#define CPU_ID_MAX 1023
#define GROUP_CORES_MAX 64
#define RT_PRIO_MAX 99
#define SHARES_MIN 2
#define SHARES_MAX 262144
#define PERIOD_MIN 1000
#define PERIOD_MAX 1000000
#define QUOTA_MIN 1000
#define QUOTA_MAX 1000000000000LL /* 1e12 us, below libvirt's 2^44-1 */
#define RATE_MAX 100000000000LL   /* 1e11, net and block limits */

#define MEM_MIN_MIB 64ULL
#define MEM_MAX_MIB (1024ULL * 1024ULL) /* 1 TiB */

#define NAME_RULE "names are 1-40 characters of a-z, 0-9 and '-', start with a letter and do not end with '-'"

/* ------------------------------------------------------------------ */
/* Issues                                                              */

static int pos_cmp(int l1, int c1, int l2, int c2)
{
    if (l1 != l2)
        return l1 < l2 ? -1 : 1;
    if (c1 != c2)
        return c1 < c2 ? -1 : 1;
    return 0;
}

/* Keep only printable ASCII so that paths and messages are always valid
 * UTF-8 for JSON and safe for terminals and logs. */
static void ascii_only(char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e)
            *s = '?';
    }
}

void spec_issue_add(struct spec_issues *issues, const char *path, int line,
                    int column, const char *fmt, ...)
{
    struct spec_issue it;
    va_list ap;
    size_t at;

    if (!issues)
        return;
    if (issues->n > SPEC_MAX_ISSUES)
        issues->n = SPEC_MAX_ISSUES; /* defensive: never trust the count */
    memset(&it, 0, sizeof(it));
    cgv_strlcpy(it.path, path ? path : "", sizeof(it.path));
    it.line = line < 0 ? 0 : line;
    it.column = column < 0 ? 0 : column;
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(it.msg, sizeof(it.msg), fmt, ap);
        va_end(ap);
    }
    ascii_only(it.path);
    ascii_only(it.msg);

    /* Keep text order (stable: equal positions keep insertion order); when
     * full, the issues latest in the text are the ones counted as dropped. */
    at = issues->n;
    while (at > 0 && pos_cmp(issues->items[at - 1].line, issues->items[at - 1].column,
                             it.line, it.column) > 0)
        at--;
    if (issues->n == SPEC_MAX_ISSUES) {
        issues->dropped++;
        if (at == SPEC_MAX_ISSUES)
            return;
        issues->n--;
    }
    memmove(&issues->items[at + 1], &issues->items[at],
            (issues->n - at) * sizeof(issues->items[0]));
    issues->items[at] = it;
    issues->n++;
}

struct strbuf {
    char *s;
    size_t len, cap;
};

static void sb_addf(struct strbuf *b, const char *fmt, ...) CGV_PRINTF(2, 3);
static void sb_addf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = cgv_realloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *spec_issues_format(const struct spec_issues *issues)
{
    struct strbuf b = { 0 };
    size_t n, total;

    if (!issues || (issues->n == 0 && issues->dropped == 0))
        return cgv_strdup("no problems");
    n = issues->n > SPEC_MAX_ISSUES ? SPEC_MAX_ISSUES : issues->n;
    total = n + issues->dropped;
    sb_addf(&b, "invalid spec: %zu problem%s", total, total == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const struct spec_issue *it = &issues->items[i];
        sb_addf(&b, "\n");
        if (it->line > 0 && it->column > 0)
            sb_addf(&b, "line %d, col %d: ", it->line, it->column);
        else if (it->line > 0)
            sb_addf(&b, "line %d: ", it->line);
        if (it->path[0])
            sb_addf(&b, "%.*s: ", (int)sizeof(it->path), it->path);
        sb_addf(&b, "%.*s", (int)sizeof(it->msg), it->msg);
    }
    if (issues->dropped)
        sb_addf(&b, "\n(%zu more not shown)", issues->dropped);
    return b.s;
}

const char *spec_accel_name(enum spec_accel a)
{
    switch (a) {
    case SPEC_ACCEL_AUTO:
        return "auto";
    case SPEC_ACCEL_KVM:
        return "kvm";
    case SPEC_ACCEL_TCG:
        return "tcg";
    }
    return "unknown";
}

static const char *const redundancy_names[] = { "none", "2n", "n+m", "nway-active" };
static const char *const restart_names[] = { "fast", "cold" };
_Static_assert(CGV_ARRAY_LEN(redundancy_names) == SPEC_RED_NWAY + 1, "redundancy names");
_Static_assert(CGV_ARRAY_LEN(restart_names) == SPEC_RESTART_COLD + 1, "restart names");

static const char *const cpu_policy_names[] = { "floating", "dedicated", "shared-group",
                                                "pinned" };
static const char *const numa_names[] = { "prefer", "strict" };
_Static_assert(CGV_ARRAY_LEN(cpu_policy_names) == SPEC_CPU_PINNED + 1, "cpu policy names");
_Static_assert(CGV_ARRAY_LEN(numa_names) == SPEC_NUMA_STRICT + 1, "numa names");

const char *spec_cpu_policy_name(enum spec_cpu_policy p)
{
    if ((unsigned)p < CGV_ARRAY_LEN(cpu_policy_names))
        return cpu_policy_names[p];
    return "unknown";
}

const char *spec_redundancy_name(enum spec_redundancy r)
{
    if ((unsigned)r < CGV_ARRAY_LEN(redundancy_names))
        return redundancy_names[r];
    return "unknown";
}

const char *spec_restart_name(enum spec_restart r)
{
    if ((unsigned)r < CGV_ARRAY_LEN(restart_names))
        return restart_names[r];
    return "unknown";
}

/* ------------------------------------------------------------------ */
/* Text helpers                                                        */

/* Escaped, length-limited rendering of untrusted text for messages. */
static void show(char *dst, size_t cap, const char *s, size_t len, size_t max)
{
    size_t o = 0;
    bool cut = false;

    if (cap < 4) {
        if (cap)
            dst[0] = '\0';
        return;
    }
    for (size_t i = 0; i < len && !cut; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];

        if (c == '"' || c == '\\')
            snprintf(tmp, sizeof(tmp), "\\%c", c);
        else if (c == '\n')
            snprintf(tmp, sizeof(tmp), "\\n");
        else if (c == '\t')
            snprintf(tmp, sizeof(tmp), "\\t");
        else if (c < 0x20 || c > 0x7e)
            snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        else {
            tmp[0] = (char)c;
            tmp[1] = '\0';
        }
        /* keep room for "..." */
        cut = i >= max || o + strlen(tmp) + 3 > cap - 1;
        if (!cut) {
            memcpy(dst + o, tmp, strlen(tmp));
            o += strlen(tmp);
        }
    }
    if (cut) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

static bool mem_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static size_t count_digits(const char *s, size_t n, size_t from)
{
    size_t i = from;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i - from;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* Optimal-string-alignment distance, case-insensitive; both short. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[34][34];

    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* The known field closest to an unknown one, or NULL when none is close. */
static const char *suggest(const char *key, size_t klen, const char *const *known,
                           size_t nknown)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;

    for (size_t i = 0; i < nknown; i++) {
        size_t kl = strlen(known[i]);
        size_t d = edit_distance(key, klen, known[i], kl);
        size_t limit = kl <= 4 ? 1 : kl <= 8 ? 2 : 3;
        bool prefix = klen >= 4 && klen < kl;

        for (size_t j = 0; prefix && j < klen; j++)
            if (lower(key[j]) != lower(known[i][j]))
                prefix = false;
        if (prefix)
            d = d < limit ? d : limit;
        if (d <= limit && d < best_d) {
            best = known[i];
            best_d = d;
        }
    }
    return best;
}

/* ------------------------------------------------------------------ */
/* Node tree built from libyaml events, with marks                     */

enum stype { ST_STR, ST_INT, ST_FLOAT, ST_BOOL, ST_NULL };
enum nkind { NK_SCALAR, NK_MAP, NK_SEQ };

struct ynode {
    enum nkind kind;
    bool bad; /* already reported (anchor, alias, tag): not validated */
    int line, col;
    char *val; /* scalars: NUL-terminated copy, may hold NULs inside */
    size_t len;
    enum stype stype;
    struct ynode **items; /* maps: key, value, key, value...; seqs: items */
    size_t n, cap;
};

static void node_free(struct ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        node_free(n->items[i]); /* depth is bounded by SPEC_MAX_DEPTH */
    free(n->items);
    free(n->val);
    free(n);
}

static bool is_float(const char *s, size_t n)
{
    size_t i = 0, d1, d2 = 0;

    if (n > 0 && (s[0] == '-' || s[0] == '+'))
        i = 1;
    if (mem_eq(s + i, n - i, ".inf") || mem_eq(s + i, n - i, ".Inf") ||
        mem_eq(s + i, n - i, ".INF"))
        return true;
    if (mem_eq(s, n, ".nan") || mem_eq(s, n, ".NaN") || mem_eq(s, n, ".NAN"))
        return true;
    d1 = count_digits(s, n, i);
    i += d1;
    if (i < n && s[i] == '.') {
        i++;
        d2 = count_digits(s, n, i);
        i += d2;
    }
    if (d1 == 0 && d2 == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t d3;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        d3 = count_digits(s, n, i);
        if (d3 == 0)
            return false;
        i += d3;
    }
    return i == n;
}

static bool all_in(const char *s, size_t n, size_t from, const char *set)
{
    if (from >= n)
        return false;
    for (size_t i = from; i < n; i++)
        if (s[i] == '\0' || !strchr(set, s[i]))
            return false;
    return true;
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static enum stype resolve_plain(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0 || mem_eq(s, n, "~") || mem_eq(s, n, "null") || mem_eq(s, n, "Null") ||
        mem_eq(s, n, "NULL"))
        return ST_NULL;
    if (mem_eq(s, n, "true") || mem_eq(s, n, "True") || mem_eq(s, n, "TRUE") ||
        mem_eq(s, n, "false") || mem_eq(s, n, "False") || mem_eq(s, n, "FALSE"))
        return ST_BOOL;
    if (n > 2 && s[0] == '0' && s[1] == 'o' && all_in(s, n, 2, "01234567"))
        return ST_INT;
    if (n > 2 && s[0] == '0' && s[1] == 'x' && all_in(s, n, 2, "0123456789abcdefABCDEF"))
        return ST_INT;
    if (s[0] == '-' || s[0] == '+')
        i = 1;
    if (all_in(s, n, i, "0123456789"))
        return ST_INT;
    if (is_float(s, n))
        return ST_FLOAT;
    return ST_STR;
}

static const char *stype_tag(enum stype t)
{
    switch (t) {
    case ST_STR:
        return "str";
    case ST_INT:
        return "int";
    case ST_FLOAT:
        return "float";
    case ST_BOOL:
        return "bool";
    case ST_NULL:
        return "null";
    }
    return "?";
}

struct builder {
    const char *text; /* what libyaml reads, for offsets */
    size_t len;
    struct spec_issues *issues;
    struct ynode *root;
    struct ynode *stack[SPEC_MAX_DEPTH];
    size_t depth;
    int ndocs;
    bool fatal; /* the tree is incomplete: do not validate it */
    bool syntax_error; /* libyaml refused the text */
};

static int mark_num(size_t v)
{
    return v >= (size_t)INT_MAX ? INT_MAX : (int)v + 1;
}

static void path_key(char *dst, size_t cap, const char *base, const char *key, size_t klen)
{
    char k[96];

    show(k, sizeof(k), key, klen, 40);
    snprintf(dst, cap, "%s%s%s", base, base[0] ? "." : "", k);
}

static void path_idx(char *dst, size_t cap, const char *base, size_t i)
{
    snprintf(dst, cap, "%s[%zu]", base, i);
}

/* Path of the node about to be attached at the top of the stack. */
static void builder_path(const struct builder *b, char *buf, size_t cap)
{
    char tmp[sizeof(((struct spec_issue *)0)->path)];

    buf[0] = '\0';
    for (size_t i = 0; i < b->depth; i++) {
        const struct ynode *p = b->stack[i];
        bool top = i + 1 == b->depth;

        if (p->kind == NK_SEQ) {
            path_idx(tmp, sizeof(tmp), buf, top ? p->n : p->n - 1);
        } else {
            const struct ynode *key;
            if (top ? p->n % 2 == 0 : p->n % 2 == 1)
                return; /* the node is (inside) a key */
            key = p->items[top ? p->n - 1 : p->n - 2];
            if (key->kind == NK_SCALAR)
                path_key(tmp, sizeof(tmp), buf, key->val, key->len);
            else
                path_key(tmp, sizeof(tmp), buf, "?", 1);
        }
        cgv_strlcpy(buf, tmp, cap);
    }
}

static void attach(struct builder *b, struct ynode *n)
{
    struct ynode *p;

    if (b->depth == 0) {
        if (!b->root)
            b->root = n;
        else
            node_free(n); /* cannot happen: one document only */
        return;
    }
    p = b->stack[b->depth - 1];
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->items = cgv_realloc(p->items, p->cap * sizeof(p->items[0]));
    }
    p->items[p->n++] = n;
}

static void short_tag(char *dst, size_t cap, const char *tag)
{
    char t[64];
    size_t pl = strlen(YAML_CORE_TAG);

    if (strncmp(tag, YAML_CORE_TAG, pl) == 0) {
        show(t, sizeof(t), tag + pl, strlen(tag + pl), 32);
        snprintf(dst, cap, "!!%s", t);
    } else {
        show(t, sizeof(t), tag, strlen(tag), 32);
        snprintf(dst, cap, "%s", t);
    }
}

/* Check the anchor and tag of a new node; marks it bad when reported. */
static void check_props(struct builder *b, struct ynode *n, const yaml_char_t *anchor,
                        const yaml_char_t *tag, int implicit)
{
    char path[sizeof(((struct spec_issue *)0)->path)];
    char t[96];

    if (anchor) {
        show(t, sizeof(t), (const char *)anchor, strlen((const char *)anchor), 32);
        builder_path(b, path, sizeof(path));
        spec_issue_add(b->issues, path, n->line, n->col,
                       "anchors and aliases are not allowed (&%s)", t);
        n->bad = true;
        return;
    }
    if (tag && strcmp((const char *)tag, "!") == 0) {
        if (n->kind == NK_SCALAR) /* the non-specific tag: a string */
            n->stype = ST_STR;
        return;
    }
    if (!tag || implicit)
        return;
    if (strncmp((const char *)tag, YAML_CORE_TAG, strlen(YAML_CORE_TAG)) == 0) {
        const char *name = (const char *)tag + strlen(YAML_CORE_TAG);
        if (n->kind == NK_MAP && strcmp(name, "map") == 0)
            return;
        if (n->kind == NK_SEQ && strcmp(name, "seq") == 0)
            return;
        if (n->kind == NK_SCALAR) {
            if (strcmp(name, "str") == 0) {
                n->stype = ST_STR;
                return;
            }
            for (enum stype s = ST_INT; s <= ST_NULL; s++) {
                if (strcmp(name, stype_tag(s)) != 0)
                    continue;
                if (resolve_plain(n->val, n->len) == s) {
                    n->stype = s;
                    return;
                }
                show(t, sizeof(t), n->val, n->len, 40);
                builder_path(b, path, sizeof(path));
                spec_issue_add(b->issues, path, n->line, n->col,
                               "\"%s\" is not a valid !!%s value", t, name);
                n->bad = true;
                return;
            }
        }
    }
    short_tag(t, sizeof(t), (const char *)tag);
    builder_path(b, path, sizeof(path));
    spec_issue_add(b->issues, path, n->line, n->col,
                   "tag %s is not allowed here (only the core tags !!str, !!int, "
                   "!!float, !!bool, !!null, !!map and !!seq)", t);
    n->bad = true;
}

/* Byte offset of a libyaml mark (0-based line, column in characters). */
static size_t mark_offset(const char *s, size_t len, size_t line, size_t col)
{
    size_t i = 0;

    while (line > 0 && i < len) {
        if (s[i] == '\r') {
            i++;
            if (i < len && s[i] == '\n')
                i++;
            line--;
        } else if (s[i] == '\n') {
            i++;
            line--;
        } else {
            i++;
        }
    }
    while (col > 0 && i < len) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
        col--;
    }
    return i;
}

/* 1-based line/column of a byte offset. */
static void offset_pos(const char *s, size_t len, size_t off, int *line, int *col)
{
    size_t l = 1, c = 1;

    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 >= len || s[i + 1] != '\n'))) {
            l++;
            c = 1;
        } else if (s[i] != '\r' && ((unsigned char)s[i] & 0xc0) != 0x80) {
            c++;
        }
    }
    *line = l > INT_MAX ? INT_MAX : (int)l;
    *col = c > INT_MAX ? INT_MAX : (int)c;
}

static void report_yaml_error(struct builder *b, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        spec_issue_add(b->issues, "", 0, 0, "out of memory while parsing");
        break;
    case YAML_READER_ERROR:
        offset_pos(b->text, b->len, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            spec_issue_add(b->issues, "", line, col, "invalid text: %s (byte 0x%02X)", problem,
                           (unsigned)p->problem_value);
        else
            spec_issue_add(b->issues, "", line, col, "invalid text: %s", problem);
        break;
    default: {
        size_t off = mark_offset(b->text, b->len, p->problem_mark.line, p->problem_mark.column);
        const char *hint = "";

        if (off < b->len && b->text[off] == '\t')
            hint = "; tabs are not allowed here, indent with spaces";
        line = mark_num(p->problem_mark.line);
        col = mark_num(p->problem_mark.column);
        if (p->context && p->context_mark.line == p->problem_mark.line &&
            p->context_mark.column == p->problem_mark.column)
            spec_issue_add(b->issues, "", line, col, "YAML syntax error: %s (%s)%s", problem,
                           p->context, hint);
        else if (p->context)
            spec_issue_add(b->issues, "", line, col,
                           "YAML syntax error: %s (%s at line %d, column %d)%s", problem,
                           p->context, mark_num(p->context_mark.line),
                           mark_num(p->context_mark.column), hint);
        else
            spec_issue_add(b->issues, "", line, col, "YAML syntax error: %s%s", problem, hint);
        break;
    }
    }
}

static struct ynode *new_node(enum nkind kind, const yaml_event_t *ev)
{
    struct ynode *n = cgv_malloc0(sizeof(*n));

    n->kind = kind;
    n->line = mark_num(ev->start_mark.line);
    n->col = mark_num(ev->start_mark.column);
    return n;
}

/* Build the tree of the first document. Stops at the first syntax error or
 * at too deep nesting (fatal), or at a second document (reported). */
static void build_tree(struct builder *b)
{
    yaml_parser_t p;
    yaml_event_t ev;
    bool done = false;
    char path[sizeof(((struct spec_issue *)0)->path)];

    if (!yaml_parser_initialize(&p)) {
        spec_issue_add(b->issues, "", 0, 0, "cannot initialise the YAML parser");
        b->fatal = true;
        return;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)b->text, b->len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);

    while (!done) {
        struct ynode *n = NULL;

        if (!yaml_parser_parse(&p, &ev)) {
            report_yaml_error(b, &p);
            b->fatal = true;
            b->syntax_error = true;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++b->ndocs > 1) {
                spec_issue_add(b->issues, "", mark_num(ev.start_mark.line),
                               mark_num(ev.start_mark.column),
                               "only one YAML document is allowed; a second one starts here");
                done = true;
            }
            break;
        case YAML_ALIAS_EVENT: {
            char a[96];
            const char *an = (const char *)ev.data.alias.anchor;
            n = new_node(NK_SCALAR, &ev);
            n->val = cgv_strdup("");
            n->bad = true;
            show(a, sizeof(a), an ? an : "", an ? strlen(an) : 0, 32);
            builder_path(b, path, sizeof(path));
            spec_issue_add(b->issues, path, n->line, n->col, "aliases are not allowed (*%s)", a);
            attach(b, n);
            break;
        }
        case YAML_SCALAR_EVENT:
            n = new_node(NK_SCALAR, &ev);
            n->len = ev.data.scalar.length;
            n->val = cgv_malloc0(n->len + 1);
            if (n->len)
                memcpy(n->val, ev.data.scalar.value, n->len);
            n->stype = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                           ? resolve_plain(n->val, n->len)
                           : ST_STR;
            check_props(b, n, ev.data.scalar.anchor, ev.data.scalar.tag,
                        ev.data.scalar.plain_implicit || ev.data.scalar.quoted_implicit);
            attach(b, n);
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT: {
            bool map = ev.type == YAML_MAPPING_START_EVENT;
            if (b->depth == SPEC_MAX_DEPTH) {
                builder_path(b, path, sizeof(path));
                spec_issue_add(b->issues, path, mark_num(ev.start_mark.line),
                               mark_num(ev.start_mark.column),
                               "nested too deeply (more than %d levels)", SPEC_MAX_DEPTH);
                b->fatal = true;
                done = true;
                break;
            }
            n = new_node(map ? NK_MAP : NK_SEQ, &ev);
            if (map)
                check_props(b, n, ev.data.mapping_start.anchor, ev.data.mapping_start.tag,
                            ev.data.mapping_start.implicit);
            else
                check_props(b, n, ev.data.sequence_start.anchor, ev.data.sequence_start.tag,
                            ev.data.sequence_start.implicit);
            attach(b, n);
            b->stack[b->depth++] = n;
            break;
        }
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (b->depth > 0)
                b->depth--;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
}

/* ------------------------------------------------------------------ */
/* Validation                                                          */

typedef char spec_path_t[sizeof(((struct spec_issue *)0)->path)];

static void describe(const struct ynode *n, char *buf, size_t cap)
{
    char v[96];

    if (n->kind == NK_MAP) {
        snprintf(buf, cap, "a mapping");
        return;
    }
    if (n->kind == NK_SEQ) {
        snprintf(buf, cap, "a list");
        return;
    }
    show(v, sizeof(v), n->val, n->len, 40);
    switch (n->stype) {
    case ST_STR:
        snprintf(buf, cap, "string \"%s\"", v);
        break;
    case ST_INT:
        snprintf(buf, cap, "integer %s", v);
        break;
    case ST_FLOAT:
        snprintf(buf, cap, "float %s", v);
        break;
    case ST_BOOL:
        snprintf(buf, cap, "boolean %s", v);
        break;
    case ST_NULL:
        snprintf(buf, cap, "null");
        break;
    }
}

static void issue_at(struct spec_issues *iss, const struct ynode *n, const char *path,
                     const char *fmt, ...) CGV_PRINTF(4, 5);
static void issue_at(struct spec_issues *iss, const struct ynode *n, const char *path,
                     const char *fmt, ...)
{
    char msg[sizeof(((struct spec_issue *)0)->msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    spec_issue_add(iss, path, n->line, n->col, "%s", msg);
}

/* Plain decimal integer: [-+]?(0|[1-9][0-9]*). Returns 0, -1 when not
 * decimal (0x.., 0o..), -2 for leading zeros. *overflow when > UINT64_MAX. */
static int parse_dec(const char *s, size_t n, bool *neg, uint64_t *mag, bool *overflow)
{
    size_t i = 0;
    uint64_t v = 0;

    *neg = false;
    *overflow = false;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        *neg = s[0] == '-';
        i = 1;
    }
    if (i >= n || count_digits(s, n, i) != n - i)
        return -1;
    if (s[i] == '0' && n - i > 1)
        return -2;
    for (; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            *overflow = true;
            v = UINT64_MAX;
        } else {
            v = v * 10 + d;
        }
    }
    *mag = v;
    return 0;
}

/* An integer in min..max. why, when given, replaces "must be between min
 * and max" in the out-of-range message. */
static bool get_int_why(struct spec_issues *iss, const struct ynode *n, const char *path,
                        long long min, long long max, const char *why, long long *out)
{
    char d[160];
    bool neg, ovf;
    uint64_t mag = 0;
    int rc;

    if (n->bad)
        return false;
    if (n->kind != NK_SCALAR || n->stype != ST_INT) {
        describe(n, d, sizeof(d));
        issue_at(iss, n, path, "must be an integer, got %s", d);
        return false;
    }
    show(d, sizeof(d), n->val, n->len, 40);
    rc = parse_dec(n->val, n->len, &neg, &mag, &ovf);
    if (rc == -2) {
        issue_at(iss, n, path, "must be a plain decimal integer without leading zeros, got %s",
                 d);
        return false;
    }
    if (rc < 0) {
        issue_at(iss, n, path, "must be a plain decimal integer, got %s", d);
        return false;
    }
    if (!ovf && mag <= (uint64_t)LLONG_MAX) {
        long long val = neg ? -(long long)mag : (long long)mag;
        if (val >= min && val <= max) {
            *out = val;
            return true;
        }
    }
    if (why)
        issue_at(iss, n, path, "%s, got %s", why, d);
    else
        issue_at(iss, n, path, "must be between %lld and %lld, got %s", min, max, d);
    return false;
}

static bool get_int(struct spec_issues *iss, const struct ynode *n, const char *path,
                    long long min, long long max, long long *out)
{
    return get_int_why(iss, n, path, min, max, NULL, out);
}

/* A string scalar without NUL bytes. */
static const char *get_str(struct spec_issues *iss, const struct ynode *n, const char *path,
                           const char *what)
{
    char d[160];

    if (n->bad)
        return NULL;
    if (n->kind != NK_SCALAR || n->stype != ST_STR) {
        describe(n, d, sizeof(d));
        issue_at(iss, n, path, "must be %s, got %s", what, d);
        return NULL;
    }
    if (strlen(n->val) != n->len) {
        issue_at(iss, n, path, "must not contain NUL characters");
        return NULL;
    }
    return n->val;
}

static void get_name(struct spec_issues *iss, const struct ynode *n, const char *path,
                     const char *label, char *dst, size_t cap)
{
    const char *s = get_str(iss, n, path, "a string");
    char v[96], why[96] = "";
    size_t len;

    if (!s)
        return;
    if (cgv_name_valid(s)) {
        cgv_strlcpy(dst, s, cap);
        return;
    }
    len = strlen(s);
    show(v, sizeof(v), s, len, 40);
    for (size_t i = 0; i < len && !why[0]; i++)
        if ((unsigned char)s[i] >= 0x80)
            snprintf(why, sizeof(why), "contains a non-ASCII character");
    if (why[0])
        ;
    else if (len == 0)
        snprintf(why, sizeof(why), "must not be empty");
    else if (len > SPEC_NAME_MAX)
        snprintf(why, sizeof(why), "too long (%zu characters, at most %d)", len, SPEC_NAME_MAX);
    else if (s[0] < 'a' || s[0] > 'z')
        snprintf(why, sizeof(why), "must start with a lowercase letter");
    else if (s[len - 1] == '-')
        snprintf(why, sizeof(why), "must not end with '-'");
    else {
        size_t i = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-");
        char c[16];
        show(c, sizeof(c), s + i, 1, 1);
        snprintf(why, sizeof(why), "contains '%s'", c);
    }
    issue_at(iss, n, path, "invalid %s '%s': %s (" NAME_RULE ")", label, v, why);
}

#define MEM_HELP "a size such as 512MiB or 2GiB, or a whole number of MiB"

/* A memory size in MiB, 64MiB..1TiB. zero_hint, when given, is the message
 * for a size of 0 (memory_hard_limit: 0 is not a limit). */
static bool get_memory(struct spec_issues *iss, const struct ynode *n, const char *path,
                       const char *zero_hint, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t kib;
    } units[] = {
        { "K", 1 }, { "KiB", 1 }, { "M", 1024 }, { "MiB", 1024 },
        { "G", 1024 * 1024 }, { "GiB", 1024 * 1024 },
        { "T", 1024ULL * 1024 * 1024 }, { "TiB", 1024ULL * 1024 * 1024 },
    };
    char d[160];
    bool neg = false, ovf = false;
    uint64_t num = 0, mib;
    size_t nd, ulen;
    const char *unit;

    if (n->bad)
        return false;
    if (n->kind != NK_SCALAR || (n->stype != ST_INT && n->stype != ST_STR)) {
        describe(n, d, sizeof(d));
        issue_at(iss, n, path, "must be " MEM_HELP ", got %s", d);
        return false;
    }
    show(d, sizeof(d), n->val, n->len, 40);
    if (n->stype == ST_INT) {
        int rc = parse_dec(n->val, n->len, &neg, &num, &ovf);
        if (rc < 0) {
            issue_at(iss, n, path, "must be " MEM_HELP ", got %s%s", d,
                     rc == -2 ? " (leading zeros are ambiguous)" : "");
            return false;
        }
        mib = num;
    } else {
        uint64_t mult = 0;

        if (strlen(n->val) != n->len) {
            issue_at(iss, n, path, "must not contain NUL characters");
            return false;
        }
        nd = count_digits(n->val, n->len, 0);
        unit = n->val + nd;
        ulen = n->len - nd;
        for (size_t i = 0; i < CGV_ARRAY_LEN(units); i++)
            if (nd > 0 && mem_eq(unit, ulen, units[i].unit))
                mult = units[i].kib;
        if (mult == 0) {
            static const char *const near_units[] = {
                "k", "m", "g", "t", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib",
            };
            const char *why = "";
            bool ci = false;
            for (size_t i = 0; i < CGV_ARRAY_LEN(near_units) && !ci; i++) {
                const char *u = near_units[i];
                ci = strlen(u) == ulen;
                for (size_t j = 0; ci && j < ulen; j++)
                    ci = lower(unit[j]) == u[j];
            }
            if (nd > 0 && ulen == 0)
                why = " (a quoted number needs a unit; a bare integer is MiB)";
            else if (nd > 0 && ci)
                why = " (units are binary and case-sensitive: KiB, MiB, GiB, TiB or K, M, G, T)";
            issue_at(iss, n, path, "must be " MEM_HELP ", got \"%s\"%s", d, why);
            return false;
        }
        for (size_t i = 0; i < nd; i++) { /* a string is unambiguous: 0512MiB is 512 */
            unsigned dg = (unsigned)(n->val[i] - '0');
            if (num > (UINT64_MAX - dg) / 10)
                ovf = true;
            else
                num = num * 10 + dg;
        }
        if (!ovf && num > UINT64_MAX / mult)
            ovf = true;
        if (!ovf && (num * mult) % 1024 != 0) {
            issue_at(iss, n, path, "\"%s\" is not a whole number of MiB", d);
            return false;
        }
        mib = ovf ? UINT64_MAX : num * mult / 1024;
    }
    if (zero_hint && !ovf && !neg && mib == 0) {
        issue_at(iss, n, path, "%s", zero_hint);
        return false;
    }
    if (ovf || neg || mib < MEM_MIN_MIB || mib > MEM_MAX_MIB) {
        issue_at(iss, n, path, "must be between 64MiB and 1TiB, got %s%s", d,
                 n->stype == ST_INT ? "MiB" : "");
        return false;
    }
    *out = mib;
    return true;
}

/* Four decimal octets, no leading zeros, usable as a unicast host address. */
static bool get_addr(struct spec_issues *iss, const struct ynode *n, const char *path,
                     char *dst, size_t cap)
{
    const char *s = get_str(iss, n, path, "an IPv4 address string");
    struct in_addr a;
    unsigned oct[4];
    size_t i = 0, len;
    char v[96];

    if (!s)
        return false;
    len = strlen(s);
    show(v, sizeof(v), s, len, 40);
    for (int k = 0; k < 4; k++) {
        size_t nd = count_digits(s, len, i);
        if (nd == 0 || nd > 3) {
            issue_at(iss, n, path,
                     "invalid IPv4 address \"%s\": expected four numbers 0-255 separated by dots",
                     v);
            return false;
        }
        if (nd > 1 && s[i] == '0') {
            issue_at(iss, n, path,
                     "invalid IPv4 address \"%s\": leading zeros are ambiguous (octal or decimal?)",
                     v);
            return false;
        }
        oct[k] = 0;
        for (size_t j = 0; j < nd; j++)
            oct[k] = oct[k] * 10 + (unsigned)(s[i + j] - '0');
        i += nd;
        if (oct[k] > 255) {
            issue_at(iss, n, path, "invalid IPv4 address \"%s\": %u is not in 0-255", v, oct[k]);
            return false;
        }
        if (k < 3) {
            if (i >= len || s[i] != '.') {
                issue_at(iss, n, path,
                         "invalid IPv4 address \"%s\": expected four numbers 0-255 separated by dots",
                         v);
                return false;
            }
            i++;
        }
    }
    if (i != len || inet_pton(AF_INET, s, &a) != 1) {
        issue_at(iss, n, path,
                 "invalid IPv4 address \"%s\": expected four numbers 0-255 separated by dots", v);
        return false;
    }
    if (oct[0] == 0 || oct[0] == 127 || oct[0] >= 224) {
        issue_at(iss, n, path,
                 "%s is not a usable host address (0.0.0.0/8, 127.0.0.0/8 and 224.0.0.0 and "
                 "above are reserved)", v);
        return false;
    }
    inet_ntop(AF_INET, &a, dst, (socklen_t)cap);
    return true;
}

/* Where each field belongs, for a field written at the wrong level
 * (watchdog_s at the top, heartbeat_ms under health). "name" is left out:
 * it belongs at the top and in a processes item. */
static const struct {
    const char *field, *home;
} field_homes[] = {
    { "instances", "at the top level" },
    { "vcpus", "at the top level" },
    { "memory", "at the top level" },
    { "image", "at the top level" },
    { "acceleration", "at the top level" },
    { "heartbeat_ms", "at the top level" },
    { "networks", "at the top level" },
    { "redundancy", "at the top level" },
    { "health", "at the top level" },
    { "processes", "at the top level" },
    { "recovery", "at the top level" },
    { "cpu", "at the top level" },
    { "qos", "at the top level" },
    { "network", "in an item of networks" },
    { "addresses", "in an item of networks" },
    { "model", "under redundancy" },
    { "standbys", "under redundancy" },
    { "virtual_ips", "under redundancy" },
    { "heartbeat_misses", "under health" },
    { "watchdog_s", "under health" },
    { "command", "in an item of processes" },
    { "app_restarts", "under recovery" },
    { "vm_restarts", "under recovery" },
    { "failovers", "under recovery" },
    { "restart", "under recovery" },
    { "max", "under recovery.app_restarts, vm_restarts or failovers" },
    { "window_s", "under recovery.app_restarts, vm_restarts or failovers" },
    { "policy", "under cpu" },
    { "isolate_smt", "under cpu" },
    { "group", "under cpu" },
    { "group_cores", "under cpu" },
    { "pinned", "under cpu" },
    { "numa", "under cpu" },
    { "realtime", "under cpu" },
    { "realtime_priority", "under cpu" },
    { "max_vcpus", "under cpu" },
    { "cpu_shares", "under qos" },
    { "cpu_period_us", "under qos" },
    { "cpu_quota_us", "under qos" },
    { "memory_hard_limit", "under qos" },
    { "net", "under qos" },
    { "block", "under qos" },
    { "inbound_kbps", "under qos.net" },
    { "outbound_kbps", "under qos.net" },
    { "burst_kb", "under qos.net" },
    { "read_bps", "under qos.block" },
    { "write_bps", "under qos.block" },
    { "read_iops", "under qos.block" },
    { "write_iops", "under qos.block" },
};

static const char *field_home(const char *key, size_t klen)
{
    for (size_t i = 0; i < CGV_ARRAY_LEN(field_homes); i++)
        if (mem_eq(key, klen, field_homes[i].field))
            return field_homes[i].home;
    return NULL;
}

/* Walk a mapping's keys: unknown and duplicate fields are reported, the
 * known ones land in vals[] (index of known[]). */
static bool walk_map(struct spec_issues *iss, const struct ynode *map, const char *path,
                     const char *const *known, size_t nknown, const struct ynode **vals,
                     const struct ynode **keys)
{
    char d[160];
    spec_path_t kp;

    if (map->bad)
        return false;
    if (map->kind != NK_MAP) {
        describe(map, d, sizeof(d));
        issue_at(iss, map, path, "must be a mapping of fields, got %s", d);
        return false;
    }
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *k = map->items[i], *v = map->items[i + 1];
        size_t f;

        if (k->bad)
            continue;
        if (k->kind != NK_SCALAR) {
            describe(k, d, sizeof(d));
            issue_at(iss, k, path, "field names must be strings, got %s", d);
            continue;
        }
        path_key(kp, sizeof(kp), path, k->val, k->len);
        for (f = 0; f < nknown; f++)
            if (mem_eq(k->val, k->len, known[f]))
                break;
        if (f == nknown) {
            const char *hint = suggest(k->val, k->len, known, nknown);
            const char *home = hint ? NULL : field_home(k->val, k->len);
            show(d, sizeof(d), k->val, k->len, 40);
            if (hint)
                issue_at(iss, k, kp, "unknown field '%s' (did you mean '%s'?)", d, hint);
            else if (home)
                issue_at(iss, k, kp, "unknown field '%s' here (it belongs %s)", d, home);
            else
                issue_at(iss, k, kp, "unknown field '%s'", d);
            continue;
        }
        if (vals[f]) {
            issue_at(iss, k, kp, "duplicate field '%s' (first at line %d, col %d)",
                     known[f], keys[f]->line, keys[f]->col);
            continue;
        }
        vals[f] = v;
        keys[f] = k;
    }
    return true;
}

enum {
    F_NAME, F_INSTANCES, F_VCPUS, F_MEMORY, F_IMAGE, F_ACCEL, F_HEARTBEAT, F_NETWORKS,
    F_REDUNDANCY, F_HEALTH, F_PROCESSES, F_RECOVERY, F_CPU, F_QOS, F_N
};
static const char *const top_fields[F_N] = {
    "name", "instances", "vcpus", "memory", "image", "acceleration", "heartbeat_ms", "networks",
    "redundancy", "health", "processes", "recovery", "cpu", "qos",
};
enum { NF_NETWORK, NF_ADDRESSES, NF_N };
static const char *const net_fields[NF_N] = { "network", "addresses" };
enum { RF_MODEL, RF_STANDBYS, RF_VIPS, RF_N };
static const char *const red_fields[RF_N] = { "model", "standbys", "virtual_ips" };
enum { HF_MISSES, HF_WATCHDOG, HF_N };
static const char *const health_fields[HF_N] = { "heartbeat_misses", "watchdog_s" };
enum { PF_NAME, PF_COMMAND, PF_N };
static const char *const proc_fields[PF_N] = { "name", "command" };
enum { CF_APP, CF_VM, CF_FAILOVERS, CF_RESTART, CF_N };
static const char *const rec_fields[CF_N] = { "app_restarts", "vm_restarts", "failovers",
                                              "restart" };
enum { LF_MAX, LF_WINDOW, LF_N };
static const char *const limit_fields[LF_N] = { "max", "window_s" };
enum {
    UF_POLICY, UF_ISOLATE_SMT, UF_GROUP, UF_GROUP_CORES, UF_PINNED, UF_NUMA, UF_REALTIME,
    UF_RT_PRIORITY, UF_MAX_VCPUS, UF_N
};
static const char *const cpu_fields[UF_N] = {
    "policy", "isolate_smt", "group", "group_cores", "pinned", "numa", "realtime",
    "realtime_priority", "max_vcpus",
};
enum { QF_SHARES, QF_PERIOD, QF_QUOTA, QF_HARD_LIMIT, QF_NET, QF_BLOCK, QF_N };
static const char *const qos_fields[QF_N] = {
    "cpu_shares", "cpu_period_us", "cpu_quota_us", "memory_hard_limit", "net", "block",
};
#define RATE_FIELDS_MAX 4
static const char *const net_rate_fields[] = { "inbound_kbps", "outbound_kbps", "burst_kb" };
static const char *const block_rate_fields[] = { "read_bps", "write_bps", "read_iops",
                                                 "write_iops" };
_Static_assert(CGV_ARRAY_LEN(block_rate_fields) <= RATE_FIELDS_MAX, "rate fields");

#define MAX_SEEN_ADDRS (SPEC_MAX_NETWORKS * SPEC_MAX_INSTANCES)

struct vstate {
    struct spec_issues *iss;
    bool instances_ok;
    unsigned instances;
    const struct ynode *instances_node; /* NULL when defaulted */
    bool vcpus_ok, memory_ok;
    const struct ynode *vcpus_node, *memory_node; /* NULL when defaulted */
    bool heartbeat_ok;
    size_t n_seen;
    struct {
        char ip[16];
        int line, col;
    } seen[MAX_SEEN_ADDRS];
};

static void check_network(struct vstate *vs, const struct ynode *item, const char *path,
                          struct spec_network *dst)
{
    const struct ynode *vals[NF_N] = { 0 }, *keys[NF_N] = { 0 };
    const struct ynode *al;
    spec_path_t p;
    char d[160];

    if (!walk_map(vs->iss, item, path, net_fields, NF_N, vals, keys))
        return;
    path_key(p, sizeof(p), path, "network", 7);
    if (!vals[NF_NETWORK])
        issue_at(vs->iss, item, p, "required field 'network' is missing");
    else if (dst) {
        get_name(vs->iss, vals[NF_NETWORK], p, "network name", dst->network,
                 sizeof(dst->network));
        dst->network_pos.line = vals[NF_NETWORK]->line;
        dst->network_pos.column = vals[NF_NETWORK]->col;
    } else {
        char tmp[SPEC_NAME_MAX + 1];
        get_name(vs->iss, vals[NF_NETWORK], p, "network name", tmp, sizeof(tmp));
    }

    al = vals[NF_ADDRESSES];
    if (!al || al->bad)
        return;
    path_key(p, sizeof(p), path, "addresses", 9);
    if (al->kind != NK_SEQ) {
        describe(al, d, sizeof(d));
        issue_at(vs->iss, al, p, "must be a list of IPv4 addresses, got %s", d);
        return;
    }
    if (dst && al->n > 0)
        dst->addresses = cgv_malloc0(
            (al->n < SPEC_MAX_INSTANCES ? al->n : SPEC_MAX_INSTANCES) * sizeof(struct spec_addr));
    for (size_t j = 0; j < al->n; j++) {
        const struct ynode *an = al->items[j];
        spec_path_t ap;
        char ip[INET_ADDRSTRLEN];
        size_t k;

        path_idx(ap, sizeof(ap), p, j);
        if (!get_addr(vs->iss, an, ap, ip, sizeof(ip)))
            continue;
        if (!dst || j >= SPEC_MAX_INSTANCES)
            continue; /* the count check reports these */
        for (k = 0; k < vs->n_seen; k++)
            if (strcmp(vs->seen[k].ip, ip) == 0)
                break;
        if (k < vs->n_seen) {
            issue_at(vs->iss, an, ap, "address %s is used twice (first at line %d, col %d)",
                     ip, vs->seen[k].line, vs->seen[k].col);
            continue;
        }
        if (vs->n_seen < MAX_SEEN_ADDRS) {
            cgv_strlcpy(vs->seen[vs->n_seen].ip, ip, sizeof(vs->seen[0].ip));
            vs->seen[vs->n_seen].line = an->line;
            vs->seen[vs->n_seen++].col = an->col;
        }
        cgv_strlcpy(dst->addresses[dst->n_addresses].ip, ip, sizeof(dst->addresses[0].ip));
        dst->addresses[dst->n_addresses].line = an->line;
        dst->addresses[dst->n_addresses].column = an->col;
        dst->n_addresses++;
    }
    if (vs->instances_ok && al->n != 0 && al->n != vs->instances)
        issue_at(vs->iss, al, p,
                 "has %zu address%s but instances is %u: give one address per instance, or "
                 "omit addresses to use the network's pool",
                 al->n, al->n == 1 ? "" : "es", vs->instances);
}

static void check_networks(struct vstate *vs, const struct ynode *seq, struct spec_service *s)
{
    char d[160];
    size_t keep;

    if (seq->bad)
        return;
    if (seq->kind != NK_SEQ) {
        describe(seq, d, sizeof(d));
        issue_at(vs->iss, seq, "networks", "must be a list of networks, got %s", d);
        return;
    }
    if (seq->n == 0) {
        issue_at(vs->iss, seq, "networks",
                 "must list at least one network (omit it to use network '" DEF_NETWORK "')");
        return;
    }
    if (seq->n > SPEC_MAX_NETWORKS)
        issue_at(vs->iss, seq, "networks", "at most %d networks are allowed, got %zu",
                 SPEC_MAX_NETWORKS, seq->n);
    keep = seq->n < SPEC_MAX_NETWORKS ? seq->n : SPEC_MAX_NETWORKS;
    s->networks = cgv_malloc0(keep * sizeof(*s->networks));
    s->n_networks = keep;
    for (size_t i = 0; i < seq->n; i++) {
        const struct ynode *item = seq->items[i];
        struct spec_network *dst = i < keep ? &s->networks[i] : NULL;
        spec_path_t p;

        path_idx(p, sizeof(p), "networks", i);
        if (dst)
            dst->line = item->line;
        check_network(vs, item, p, dst);
        if (!dst || !dst->network[0])
            continue;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(s->networks[k].network, dst->network) == 0) {
                const struct ynode *nn = item; /* point at the name when we can */
                for (size_t m = 0; m + 1 < item->n; m += 2)
                    if (item->items[m]->kind == NK_SCALAR &&
                        mem_eq(item->items[m]->val, item->items[m]->len, "network")) {
                        nn = item->items[m + 1];
                        break;
                    }
                spec_path_t np;
                path_key(np, sizeof(np), p, "network", 7);
                issue_at(vs->iss, nn, np, "network '%s' is listed twice (first at line %d)",
                         dst->network, s->networks[k].line);
                break;
            }
        }
    }
}

/* One of names[] (a string, case-sensitive), with a "did you mean" for a
 * near miss. list is the names for messages ("fast, cold"). */
static bool get_enum(struct spec_issues *iss, const struct ynode *n, const char *path,
                     const char *const *names, size_t count, const char *list, int *out)
{
    char what[128], d[160];
    const char *s, *hint;

    snprintf(what, sizeof(what), "one of %s", list);
    s = get_str(iss, n, path, what);
    if (!s)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return true;
        }
    }
    show(d, sizeof(d), s, strlen(s), 40);
    hint = suggest(s, strlen(s), names, count);
    if (hint)
        issue_at(iss, n, path, "must be one of %s, got \"%s\" (did you mean '%s'?)", list, d,
                 hint);
    else
        issue_at(iss, n, path, "must be one of %s, got \"%s\"", list, d);
    return false;
}

/* redundancy: {model, standbys, virtual_ips}. Runs after the networks so
 * that virtual IPs can be checked against the instance addresses. */
static void check_redundancy(struct vstate *vs, const struct ynode *red, struct spec_service *s)
{
    const struct ynode *vals[RF_N] = { 0 }, *keys[RF_N] = { 0 };
    const struct ynode *vl;
    bool model_ok = false, standbys_ok = true;
    char why[160], d[160];
    long long v;
    int m = 0;

    if (!walk_map(vs->iss, red, "redundancy", red_fields, RF_N, vals, keys))
        return;
    if (!vals[RF_MODEL])
        issue_at(vs->iss, red, "redundancy.model",
                 "required field 'model' is missing (none, 2n, n+m or nway-active)");
    else if (get_enum(vs->iss, vals[RF_MODEL], "redundancy.model", redundancy_names,
                      CGV_ARRAY_LEN(redundancy_names), "none, 2n, n+m, nway-active", &m)) {
        model_ok = true;
        s->redundancy = (enum spec_redundancy)m;
        s->standbys = (m == SPEC_RED_2N || m == SPEC_RED_NPM) ? 1 : 0;
    }

    /* the instance count the model needs: said where instances is written,
     * or at the model when instances is the default */
    if (model_ok && vs->instances_ok &&
        ((m == SPEC_RED_2N && vs->instances != 2) || (m == SPEC_RED_NPM && vs->instances < 2))) {
        const char *need = m == SPEC_RED_2N ? "instances: 2 (one active, one standby)"
                                            : "at least 2 instances (actives and standbys)";
        if (vs->instances_node)
            issue_at(vs->iss, vs->instances_node, "instances",
                     "redundancy model %s needs %s, got %u", redundancy_names[m], need,
                     vs->instances);
        else
            issue_at(vs->iss, vals[RF_MODEL], "redundancy.model",
                     "model %s needs %s, but instances is %u (the default)",
                     redundancy_names[m], need, vs->instances);
    }

    if (vals[RF_STANDBYS]) {
        const struct ynode *sn = vals[RF_STANDBYS];
        const char *p = "redundancy.standbys";

        if (!model_ok) {
            standbys_ok = get_int(vs->iss, sn, p, 0, SPEC_MAX_INSTANCES - 1, &v);
        } else if (m == SPEC_RED_NPM) {
            long long hi = SPEC_MAX_INSTANCES - 1;
            bool known = vs->instances_ok && vs->instances >= 2;

            if (known)
                hi = vs->instances - 1;
            snprintf(why, sizeof(why),
                     "must be between 1 and %lld (instances - 1: at least one instance is "
                     "active)", hi);
            standbys_ok = get_int_why(vs->iss, sn, p, 1, hi, known ? why : NULL, &v);
            if (standbys_ok)
                s->standbys = (unsigned)v;
        } else {
            /* only n+m takes a count; the canonical form restates the
             * fixed one (2n: 1, none and nway-active: 0), so that is fine */
            unsigned fixed = m == SPEC_RED_2N ? 1 : 0;
            snprintf(why, sizeof(why), "must be %u for model %s (only n+m takes a standbys count)",
                     fixed, redundancy_names[m]);
            standbys_ok = get_int_why(vs->iss, sn, p, fixed, fixed, why, &v);
        }
    }

    vl = vals[RF_VIPS];
    if (!vl || vl->bad)
        return;
    if (vl->kind != NK_SEQ) {
        describe(vl, d, sizeof(d));
        issue_at(vs->iss, vl, "redundancy.virtual_ips", "must be a list of IPv4 addresses, got %s",
                 d);
        return;
    }
    for (size_t j = 0; j < vl->n; j++) {
        const struct ynode *an = vl->items[j];
        spec_path_t ap;
        char ip[INET_ADDRSTRLEN];
        size_t k;

        path_idx(ap, sizeof(ap), "redundancy.virtual_ips", j);
        if (!get_addr(vs->iss, an, ap, ip, sizeof(ip)))
            continue;
        for (k = 0; k < s->n_vips; k++)
            if (strcmp(s->vips[k].ip, ip) == 0)
                break;
        if (k < s->n_vips) {
            issue_at(vs->iss, an, ap, "virtual IP %s is listed twice (first at line %d, col %d)",
                     ip, s->vips[k].line, s->vips[k].column);
            continue;
        }
        for (k = 0; k < vs->n_seen; k++)
            if (strcmp(vs->seen[k].ip, ip) == 0)
                break;
        if (k < vs->n_seen) {
            issue_at(vs->iss, an, ap,
                     "virtual IP %s is also an instance address (line %d, col %d); a virtual "
                     "IP must be an address of its own",
                     ip, vs->seen[k].line, vs->seen[k].col);
            continue;
        }
        if (s->n_vips == SPEC_MAX_VIPS)
            continue; /* reported below */
        cgv_strlcpy(s->vips[s->n_vips].ip, ip, sizeof(s->vips[0].ip));
        s->vips[s->n_vips].line = an->line;
        s->vips[s->n_vips].column = an->col;
        s->n_vips++;
    }
    if (vl->n > SPEC_MAX_VIPS)
        issue_at(vs->iss, vl, "redundancy.virtual_ips",
                 "at most %d virtual IPs are allowed, got %zu", SPEC_MAX_VIPS, vl->n);
    if (!model_ok || vl->n == 0)
        return;
    if (m == SPEC_RED_NONE || m == SPEC_RED_NWAY) {
        issue_at(vs->iss, vl, "redundancy.virtual_ips",
                 "model %s has no standbys to move a virtual IP to: virtual IPs are only for "
                 "models 2n and n+m",
                 redundancy_names[m]);
    } else if (m == SPEC_RED_2N && vl->n != 1) {
        issue_at(vs->iss, vl, "redundancy.virtual_ips",
                 "has %zu virtual IPs but model 2n has 1 active instance: give exactly one, "
                 "or omit virtual_ips",
                 vl->n);
    } else if (m == SPEC_RED_NPM && standbys_ok && vs->instances_ok &&
               vs->instances > s->standbys && vl->n != vs->instances - s->standbys) {
        unsigned act = vs->instances - s->standbys;
        issue_at(vs->iss, vl, "redundancy.virtual_ips",
                 "has %zu virtual IP%s but model n+m with %u instances and %u standby%s has %u "
                 "active instance%s: give one per active instance, or omit virtual_ips",
                 vl->n, vl->n == 1 ? "" : "s", vs->instances, s->standbys,
                 s->standbys == 1 ? "" : "s", act, act == 1 ? "" : "s");
    }
}

/* health: {heartbeat_misses, watchdog_s} */
static void check_health(struct vstate *vs, const struct ynode *h, struct spec_service *s)
{
    const struct ynode *vals[HF_N] = { 0 }, *keys[HF_N] = { 0 };
    char why[192];
    long long v;

    if (!walk_map(vs->iss, h, "health", health_fields, HF_N, vals, keys))
        return;
    if (vals[HF_MISSES] &&
        get_int(vs->iss, vals[HF_MISSES], "health.heartbeat_misses", 1, 100, &v))
        s->heartbeat_misses = (unsigned)v;
    if (!vals[HF_WATCHDOG] || !get_int(vs->iss, vals[HF_WATCHDOG], "health.watchdog_s", 0, 60, &v))
        return;
    if (v > 0 && vs->heartbeat_ok && (unsigned long long)v * 1000 <= s->heartbeat_ms) {
        snprintf(why, sizeof(why),
                 "must be 0 (off) or longer than the heartbeat interval (heartbeat_ms %u): the "
                 "agent pets the watchdog with each heartbeat",
                 s->heartbeat_ms);
        issue_at(vs->iss, vals[HF_WATCHDOG], "health.watchdog_s", "%s, got %lld", why, v);
        return;
    }
    s->watchdog_s = (unsigned)v;
}

/* A command for /bin/sh -c: 1..SPEC_COMMAND_MAX bytes of printable ASCII,
 * not only spaces. */
static void get_command(struct spec_issues *iss, const struct ynode *n, const char *path,
                        char *dst, size_t cap)
{
    const char *s;
    char d[160];
    size_t len;

    if (n->bad)
        return;
    if (n->kind == NK_SCALAR && n->stype != ST_STR && n->stype != ST_NULL) {
        describe(n, d, sizeof(d));
        issue_at(iss, n, path, "must be a command string, got %s (quote it to make it a string)",
                 d);
        return;
    }
    s = get_str(iss, n, path, "a command string");
    if (!s)
        return;
    len = strlen(s);
    if (len == 0) {
        issue_at(iss, n, path, "must not be empty");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e) {
            show(d, sizeof(d), s + i, 1, 1);
            issue_at(iss, n, path,
                     "contains \"%s\" at byte %zu: only printable ASCII is allowed (no tabs, "
                     "newlines or non-ASCII characters)",
                     d, i + 1);
            return;
        }
    }
    if (len > SPEC_COMMAND_MAX) {
        issue_at(iss, n, path, "too long (%zu bytes, at most %d)", len, SPEC_COMMAND_MAX);
        return;
    }
    if (strspn(s, " ") == len) {
        issue_at(iss, n, path, "must not be only spaces");
        return;
    }
    cgv_strlcpy(dst, s, cap);
}

/* processes: [{name, command}...] */
static void check_processes(struct vstate *vs, const struct ynode *seq, struct spec_service *s)
{
    struct spec_pos name_pos[SPEC_MAX_PROCESSES] = { 0 };
    char d[160];
    size_t keep;

    if (seq->bad)
        return;
    if (seq->kind != NK_SEQ) {
        describe(seq, d, sizeof(d));
        issue_at(vs->iss, seq, "processes",
                 "must be a list of processes (- name: ..., command: ...), got %s", d);
        return;
    }
    if (seq->n > SPEC_MAX_PROCESSES)
        issue_at(vs->iss, seq, "processes", "at most %d processes are allowed, got %zu",
                 SPEC_MAX_PROCESSES, seq->n);
    keep = seq->n < SPEC_MAX_PROCESSES ? seq->n : SPEC_MAX_PROCESSES;
    s->n_processes = keep;
    for (size_t i = 0; i < seq->n; i++) {
        const struct ynode *vals[PF_N] = { 0 }, *keys[PF_N] = { 0 };
        const struct ynode *item = seq->items[i];
        struct spec_process tmp, *dst = i < keep ? &s->processes[i] : &tmp;
        spec_path_t p, fp;

        memset(&tmp, 0, sizeof(tmp));
        path_idx(p, sizeof(p), "processes", i);
        if (!walk_map(vs->iss, item, p, proc_fields, PF_N, vals, keys))
            continue;
        path_key(fp, sizeof(fp), p, "name", 4);
        if (!vals[PF_NAME]) {
            issue_at(vs->iss, item, fp, "required field 'name' is missing");
        } else {
            get_name(vs->iss, vals[PF_NAME], fp, "process name", dst->name, sizeof(dst->name));
            for (size_t k = 0; dst->name[0] && k < i && k < keep; k++) {
                if (strcmp(s->processes[k].name, dst->name) == 0) {
                    issue_at(vs->iss, vals[PF_NAME], fp,
                             "process '%s' is listed twice (first at line %d, col %d)",
                             dst->name, name_pos[k].line, name_pos[k].column);
                    break;
                }
            }
            if (i < keep) {
                name_pos[i].line = vals[PF_NAME]->line;
                name_pos[i].column = vals[PF_NAME]->col;
            }
        }
        path_key(fp, sizeof(fp), p, "command", 7);
        if (!vals[PF_COMMAND])
            issue_at(vs->iss, item, fp, "required field 'command' is missing");
        else
            get_command(vs->iss, vals[PF_COMMAND], fp, dst->command, sizeof(dst->command));
    }
}

/* A restart/fail-over limit: {max, window_s}, either may be omitted. */
static void check_limit(struct spec_issues *iss, const struct ynode *n, const char *path,
                        struct spec_limit *dst)
{
    const struct ynode *vals[LF_N] = { 0 }, *keys[LF_N] = { 0 };
    spec_path_t p;
    long long v;

    if (!walk_map(iss, n, path, limit_fields, LF_N, vals, keys))
        return;
    path_key(p, sizeof(p), path, "max", 3);
    if (vals[LF_MAX] && get_int(iss, vals[LF_MAX], p, 0, LIMIT_MAX_MAX, &v))
        dst->max = (unsigned)v;
    path_key(p, sizeof(p), path, "window_s", 8);
    if (vals[LF_WINDOW] && get_int(iss, vals[LF_WINDOW], p, 1, LIMIT_WINDOW_MAX, &v))
        dst->window_s = (unsigned)v;
}

/* recovery: {app_restarts, vm_restarts, failovers, restart} */
static void check_recovery(struct vstate *vs, const struct ynode *r, struct spec_service *s)
{
    const struct ynode *vals[CF_N] = { 0 }, *keys[CF_N] = { 0 };
    int m;

    if (!walk_map(vs->iss, r, "recovery", rec_fields, CF_N, vals, keys))
        return;
    if (vals[CF_APP])
        check_limit(vs->iss, vals[CF_APP], "recovery.app_restarts", &s->app_restarts);
    if (vals[CF_VM])
        check_limit(vs->iss, vals[CF_VM], "recovery.vm_restarts", &s->vm_restarts);
    if (vals[CF_FAILOVERS])
        check_limit(vs->iss, vals[CF_FAILOVERS], "recovery.failovers", &s->failovers);
    if (vals[CF_RESTART] &&
        get_enum(vs->iss, vals[CF_RESTART], "recovery.restart", restart_names,
                 CGV_ARRAY_LEN(restart_names), "fast, cold", &m))
        s->restart = (enum spec_restart)m;
}

static bool is_null(const struct ynode *n)
{
    return !n->bad && n->kind == NK_SCALAR && n->stype == ST_NULL;
}

/* true or false (the YAML 1.2 core schema's booleans). */
static bool get_bool(struct spec_issues *iss, const struct ynode *n, const char *path, bool *out)
{
    char d[160];

    if (n->bad)
        return false;
    if (n->kind != NK_SCALAR || n->stype != ST_BOOL) {
        bool word = n->kind == NK_SCALAR && n->stype == ST_STR &&
                    (mem_eq(n->val, n->len, "yes") || mem_eq(n->val, n->len, "no") ||
                     mem_eq(n->val, n->len, "on") || mem_eq(n->val, n->len, "off"));
        describe(n, d, sizeof(d));
        issue_at(iss, n, path, "must be true or false, got %s%s", d,
                 word ? " (yes/no/on/off are strings: write true or false)" : "");
        return false;
    }
    *out = n->val[0] == 't' || n->val[0] == 'T';
    return true;
}

/* 0 (which means zero_means) or an integer in min..max. */
static bool get_int_or_zero(struct spec_issues *iss, const struct ynode *n, const char *path,
                            long long min, long long max, const char *zero_means,
                            long long *out)
{
    char why[192], d[160];
    long long v;

    snprintf(why, sizeof(why), "must be 0 (%s) or between %lld and %lld", zero_means, min, max);
    if (!get_int_why(iss, n, path, 0, max, why, &v))
        return false;
    if (v != 0 && v < min) {
        show(d, sizeof(d), n->val, n->len, 40);
        issue_at(iss, n, path, "%s, got %s", why, d);
        return false;
    }
    *out = v;
    return true;
}

/* cpu.pinned: 1..SPEC_MAX_PINNED distinct CPU ids 0..CPU_ID_MAX, in order. */
static void check_pinned(struct vstate *vs, const struct ynode *pn, struct spec_cpu *cpu)
{
    struct {
        bool seen;
        int line, col;
    } *first = cgv_malloc0((CPU_ID_MAX + 1) * sizeof(*first));
    char d[160];

    if (pn->kind != NK_SEQ) {
        describe(pn, d, sizeof(d));
        issue_at(vs->iss, pn, "cpu.pinned",
                 "must be a list of host CPU ids (pinned: [2, 3]), got %s", d);
        goto cleanup;
    }
    for (size_t j = 0; j < pn->n; j++) {
        const struct ynode *it = pn->items[j];
        spec_path_t ip;
        long long v;

        path_idx(ip, sizeof(ip), "cpu.pinned", j);
        if (!get_int(vs->iss, it, ip, 0, CPU_ID_MAX, &v))
            continue;
        if (first[v].seen) {
            issue_at(vs->iss, it, ip, "CPU %lld is listed twice (first at line %d, col %d)", v,
                     first[v].line, first[v].col);
            continue;
        }
        first[v].seen = true;
        first[v].line = it->line;
        first[v].col = it->col;
        if (cpu->n_pinned < SPEC_MAX_PINNED)
            cpu->pinned[cpu->n_pinned++] = (unsigned)v;
    }
    if (pn->n > SPEC_MAX_PINNED)
        issue_at(vs->iss, pn, "cpu.pinned", "at most %d CPU ids are allowed, got %zu",
                 SPEC_MAX_PINNED, pn->n);

cleanup:
    free(first);
}

/* cpu: {policy, isolate_smt, group, group_cores, pinned, numa, realtime,
 * realtime_priority, max_vcpus}. Runs after vcpus. */
static void check_cpu(struct vstate *vs, const struct ynode *c, struct spec_service *s)
{
    const struct ynode *vals[UF_N] = { 0 }, *keys[UF_N] = { 0 };
    const struct ynode *pol, *n;
    struct spec_cpu *cpu = &s->cpu;
    bool policy_ok = true, rt_ok = true, b;
    char is[96], why[256];
    long long v;
    int e;

    if (!walk_map(vs->iss, c, "cpu", cpu_fields, UF_N, vals, keys))
        return;
    pol = vals[UF_POLICY];
    if (pol) {
        cpu->policy_pos.line = pol->line;
        cpu->policy_pos.column = pol->col;
        policy_ok = get_enum(vs->iss, pol, "cpu.policy", cpu_policy_names,
                             CGV_ARRAY_LEN(cpu_policy_names),
                             "floating, dedicated, shared-group, pinned", &e);
        if (policy_ok)
            cpu->policy = (enum spec_cpu_policy)e;
    }
    /* "policy is pinned" / "policy is floating, the default", for messages */
    snprintf(is, sizeof(is), "policy is %s%s", spec_cpu_policy_name(cpu->policy),
             pol ? "" : ", the default");

    /* isolate_smt: true only with dedicated */
    n = vals[UF_ISOLATE_SMT];
    if (n && get_bool(vs->iss, n, "cpu.isolate_smt", &b) && b) {
        if (policy_ok && cpu->policy != SPEC_CPU_DEDICATED)
            issue_at(vs->iss, n, "cpu.isolate_smt",
                     "isolate_smt is only for policy dedicated (%s)", is);
        cpu->isolate_smt = true;
    }

    /* group: a name, only with (and required by) shared-group; null is none */
    n = vals[UF_GROUP];
    if (n && !is_null(n)) {
        char g[SPEC_NAME_MAX + 1] = "";
        get_name(vs->iss, n, "cpu.group", "group name", g, sizeof(g));
        if (g[0] && policy_ok && cpu->policy != SPEC_CPU_SHARED_GROUP)
            issue_at(vs->iss, n, "cpu.group", "group is only for policy shared-group (%s)", is);
        cgv_strlcpy(cpu->group, g, sizeof(cpu->group));
    } else if (policy_ok && cpu->policy == SPEC_CPU_SHARED_GROUP) {
        if (n)
            issue_at(vs->iss, n, "cpu.group",
                     "policy shared-group needs a group name, got null");
        else
            issue_at(vs->iss, pol, "cpu.group",
                     "policy shared-group needs field 'group' (the name of the shared group)");
    }

    /* group_cores: shared-group only (others may restate the default 1) */
    n = vals[UF_GROUP_CORES];
    if (n && policy_ok && cpu->policy != SPEC_CPU_SHARED_GROUP) {
        snprintf(why, sizeof(why), "group_cores is only for policy shared-group (%s)", is);
        get_int_why(vs->iss, n, "cpu.group_cores", 1, 1, why, &v);
    } else if (n && get_int(vs->iss, n, "cpu.group_cores", 1, GROUP_CORES_MAX, &v)) {
        cpu->group_cores = (unsigned)v;
    }

    /* pinned: only with (and required by) pinned; [] is none */
    n = vals[UF_PINNED];
    if (n && !n->bad) {
        cpu->pinned_pos.line = n->line;
        cpu->pinned_pos.column = n->col;
        check_pinned(vs, n, cpu);
        if (n->kind == NK_SEQ && policy_ok) {
            if (n->n > 0 && cpu->policy != SPEC_CPU_PINNED)
                issue_at(vs->iss, n, "cpu.pinned", "pinned is only for policy pinned (%s)", is);
            else if (n->n == 0 && cpu->policy == SPEC_CPU_PINNED)
                issue_at(vs->iss, n, "cpu.pinned",
                         "policy pinned needs 1 to %d host CPU ids, got an empty list",
                         SPEC_MAX_PINNED);
        }
    } else if (!n && policy_ok && cpu->policy == SPEC_CPU_PINNED) {
        issue_at(vs->iss, pol, "cpu.pinned",
                 "policy pinned needs field 'pinned' (the host CPU ids to run the vCPUs on)");
    }

    if (vals[UF_NUMA] && get_enum(vs->iss, vals[UF_NUMA], "cpu.numa", numa_names,
                                  CGV_ARRAY_LEN(numa_names), "prefer, strict", &e))
        cpu->numa = (enum spec_numa)e;

    /* realtime: true only with dedicated or pinned; priority 1..99, default 1 */
    n = vals[UF_REALTIME];
    if (n) {
        rt_ok = get_bool(vs->iss, n, "cpu.realtime", &b);
        if (rt_ok && b) {
            cpu->realtime = true;
            cpu->realtime_priority = 1;
            if (policy_ok && cpu->policy != SPEC_CPU_DEDICATED && cpu->policy != SPEC_CPU_PINNED)
                issue_at(vs->iss, n, "cpu.realtime",
                         "real-time vCPUs need cores of their own: use dedicated or pinned (%s)",
                         is);
        }
    }
    n = vals[UF_RT_PRIORITY];
    if (n && !rt_ok) {
        get_int(vs->iss, n, "cpu.realtime_priority", 0, RT_PRIO_MAX, &v);
    } else if (n && cpu->realtime) {
        if (get_int(vs->iss, n, "cpu.realtime_priority", 1, RT_PRIO_MAX, &v))
            cpu->realtime_priority = (unsigned)v;
    } else if (n) {
        snprintf(why, sizeof(why),
                 "realtime_priority is only for realtime: true (realtime is false%s)",
                 vals[UF_REALTIME] ? "" : ", the default");
        get_int_why(vs->iss, n, "cpu.realtime_priority", 0, 0, why, &v);
    }

    /* max_vcpus: vcpus..64 */
    n = vals[UF_MAX_VCPUS];
    if (n && vs->vcpus_ok) {
        snprintf(why, sizeof(why),
                 "must be between vcpus (%u%s) and %d: the most vCPUs the VM can have live",
                 s->vcpus, vs->vcpus_node ? "" : ", the default", VCPUS_MAX);
        if (get_int_why(vs->iss, n, "cpu.max_vcpus", s->vcpus, VCPUS_MAX, why, &v))
            cpu->max_vcpus = (unsigned)v;
    } else if (n && get_int(vs->iss, n, "cpu.max_vcpus", 1, VCPUS_MAX, &v)) {
        cpu->max_vcpus = (unsigned)v;
    }
}

/* qos.net / qos.block: each field 0..RATE_MAX, 0 = unlimited. */
static void check_rates(struct spec_issues *iss, const struct ynode *r, const char *path,
                        const char *const *fields, size_t nf, uint64_t *const *dst)
{
    const struct ynode *vals[RATE_FIELDS_MAX] = { 0 }, *keys[RATE_FIELDS_MAX] = { 0 };
    spec_path_t p;
    long long v;

    if (!walk_map(iss, r, path, fields, nf, vals, keys))
        return;
    for (size_t i = 0; i < nf; i++) {
        path_key(p, sizeof(p), path, fields[i], strlen(fields[i]));
        if (vals[i] && get_int(iss, vals[i], p, 0, RATE_MAX, &v))
            *dst[i] = (uint64_t)v;
    }
}

/* qos: {cpu_shares, cpu_period_us, cpu_quota_us, memory_hard_limit, net,
 * block}. Runs after memory. */
static void check_qos(struct vstate *vs, const struct ynode *q, struct spec_service *s)
{
    const struct ynode *vals[QF_N] = { 0 }, *keys[QF_N] = { 0 };
    struct spec_qos *qos = &s->qos;
    uint64_t *const net_dst[] = { &qos->net_inbound_kbps, &qos->net_outbound_kbps,
                                  &qos->net_burst_kb };
    uint64_t *const block_dst[] = { &qos->block_read_bps, &qos->block_write_bps,
                                    &qos->block_read_iops, &qos->block_write_iops };
    const struct ynode *n;
    bool period_ok = true, quota_ok = true;
    long long v;

    _Static_assert(CGV_ARRAY_LEN(net_dst) == CGV_ARRAY_LEN(net_rate_fields), "net fields");
    _Static_assert(CGV_ARRAY_LEN(block_dst) == CGV_ARRAY_LEN(block_rate_fields), "block fields");
    if (!walk_map(vs->iss, q, "qos", qos_fields, QF_N, vals, keys))
        return;
    if (vals[QF_SHARES] && get_int_or_zero(vs->iss, vals[QF_SHARES], "qos.cpu_shares",
                                           SHARES_MIN, SHARES_MAX, "the default weight", &v))
        qos->cpu_shares = (unsigned)v;
    if (vals[QF_QUOTA]) {
        quota_ok = get_int_or_zero(vs->iss, vals[QF_QUOTA], "qos.cpu_quota_us", QUOTA_MIN,
                                   QUOTA_MAX, "no quota", &v);
        if (quota_ok)
            qos->cpu_quota_us = (uint64_t)v;
    }
    if (vals[QF_PERIOD]) {
        period_ok = get_int_or_zero(vs->iss, vals[QF_PERIOD], "qos.cpu_period_us", PERIOD_MIN,
                                    PERIOD_MAX, "the default period", &v);
        if (period_ok)
            qos->cpu_period_us = (unsigned)v;
    }
    if (period_ok && quota_ok && qos->cpu_period_us != 0 && qos->cpu_quota_us == 0)
        issue_at(vs->iss, vals[QF_PERIOD], "qos.cpu_period_us",
                 "cpu_period_us only applies with cpu_quota_us: set cpu_quota_us too, or omit "
                 "cpu_period_us");

    n = vals[QF_HARD_LIMIT];
    if (n && !is_null(n)) {
        uint64_t mib = 0;
        if (get_memory(vs->iss, n, "qos.memory_hard_limit",
                       "0 is not a limit: omit memory_hard_limit (or write null) for none",
                       &mib)) {
            if (vs->memory_ok && mib < s->memory_mib)
                issue_at(vs->iss, n, "qos.memory_hard_limit",
                         "must be at least memory (%" PRIu64 "MiB%s), got %" PRIu64 "MiB",
                         s->memory_mib, vs->memory_node ? "" : ", the default", mib);
            qos->memory_hard_limit_mib = mib;
        }
    }
    if (vals[QF_NET])
        check_rates(vs->iss, vals[QF_NET], "qos.net", net_rate_fields,
                    CGV_ARRAY_LEN(net_rate_fields), net_dst);
    if (vals[QF_BLOCK])
        check_rates(vs->iss, vals[QF_BLOCK], "qos.block", block_rate_fields,
                    CGV_ARRAY_LEN(block_rate_fields), block_dst);
}

static struct spec_service *validate(struct spec_issues *iss, const struct ynode *root)
{
    const struct ynode *vals[F_N] = { 0 }, *keys[F_N] = { 0 };
    struct spec_service *s = cgv_malloc0(sizeof(*s));
    struct vstate *vs = cgv_malloc0(sizeof(*vs));
    long long v;
    char d[160];

    s->instances = DEF_INSTANCES;
    s->vcpus = DEF_VCPUS;
    s->memory_mib = DEF_MEMORY_MIB;
    cgv_strlcpy(s->image, DEF_IMAGE, sizeof(s->image));
    s->accel = SPEC_ACCEL_AUTO;
    s->heartbeat_ms = DEF_HEARTBEAT_MS;
    s->redundancy = SPEC_RED_NONE;
    s->standbys = 0;
    s->heartbeat_misses = DEF_HEARTBEAT_MISSES;
    s->watchdog_s = DEF_WATCHDOG_S;
    s->app_restarts = DEF_APP_RESTARTS;
    s->vm_restarts = DEF_VM_RESTARTS;
    s->failovers = DEF_FAILOVERS;
    s->restart = SPEC_RESTART_FAST;
    s->cpu.policy = SPEC_CPU_FLOATING;
    s->cpu.group_cores = 1;
    s->cpu.numa = SPEC_NUMA_PREFER;
    s->cpu.max_vcpus = DEF_VCPUS;
    vs->iss = iss;

    if (root->bad)
        goto cleanup;
    if (root->kind == NK_SCALAR && root->stype == ST_NULL) {
        issue_at(iss, root, "", "the spec is empty");
        goto cleanup;
    }
    if (root->kind != NK_MAP) {
        describe(root, d, sizeof(d));
        issue_at(iss, root, "",
                 "the spec must be a mapping of fields (name: ..., instances: ...), got %s", d);
        goto cleanup;
    }
    walk_map(iss, root, "", top_fields, F_N, vals, keys);

    if (!vals[F_NAME])
        issue_at(iss, root, "name", "required field 'name' is missing");
    else
        get_name(iss, vals[F_NAME], "name", "name", s->name, sizeof(s->name));
    vs->instances_ok = true;
    if (vals[F_INSTANCES]) {
        vs->instances_ok = get_int(iss, vals[F_INSTANCES], "instances", 1, SPEC_MAX_INSTANCES, &v);
        if (vs->instances_ok)
            s->instances = (unsigned)v;
    }
    vs->instances = s->instances;
    vs->instances_node = vals[F_INSTANCES];
    vs->vcpus_ok = true;
    if (vals[F_VCPUS]) {
        vs->vcpus_ok = get_int(iss, vals[F_VCPUS], "vcpus", 1, VCPUS_MAX, &v);
        if (vs->vcpus_ok)
            s->vcpus = (unsigned)v;
    }
    vs->vcpus_node = vals[F_VCPUS];
    s->cpu.max_vcpus = s->vcpus; /* cpu.max_vcpus defaults to vcpus */
    vs->memory_ok = true;
    if (vals[F_MEMORY])
        vs->memory_ok = get_memory(iss, vals[F_MEMORY], "memory", NULL, &s->memory_mib);
    vs->memory_node = vals[F_MEMORY];
    if (vals[F_IMAGE]) {
        get_name(iss, vals[F_IMAGE], "image", "image name", s->image, sizeof(s->image));
        s->image_pos.line = vals[F_IMAGE]->line;
        s->image_pos.column = vals[F_IMAGE]->col;
    }
    if (vals[F_ACCEL]) {
        s->accel_pos.line = vals[F_ACCEL]->line;
        s->accel_pos.column = vals[F_ACCEL]->col;
        const char *a = get_str(iss, vals[F_ACCEL], "acceleration", "one of auto, kvm, tcg");
        if (a && strcmp(a, "auto") == 0)
            s->accel = SPEC_ACCEL_AUTO;
        else if (a && strcmp(a, "kvm") == 0)
            s->accel = SPEC_ACCEL_KVM;
        else if (a && strcmp(a, "tcg") == 0)
            s->accel = SPEC_ACCEL_TCG;
        else if (a) {
            show(d, sizeof(d), a, strlen(a), 40);
            issue_at(iss, vals[F_ACCEL], "acceleration", "must be one of auto, kvm, tcg, got \"%s\"",
                     d);
        }
    }
    vs->heartbeat_ok = true;
    if (vals[F_HEARTBEAT]) {
        vs->heartbeat_ok = get_int(iss, vals[F_HEARTBEAT], "heartbeat_ms", 10, 60000, &v);
        if (vs->heartbeat_ok)
            s->heartbeat_ms = (unsigned)v;
    }
    if (vals[F_NETWORKS])
        check_networks(vs, vals[F_NETWORKS], s);
    /* after the networks: virtual IPs are checked against their addresses */
    if (vals[F_REDUNDANCY])
        check_redundancy(vs, vals[F_REDUNDANCY], s);
    if (vals[F_HEALTH])
        check_health(vs, vals[F_HEALTH], s);
    if (vals[F_PROCESSES])
        check_processes(vs, vals[F_PROCESSES], s);
    if (vals[F_RECOVERY])
        check_recovery(vs, vals[F_RECOVERY], s);
    /* after vcpus and memory: max_vcpus and memory_hard_limit depend on them */
    if (vals[F_CPU])
        check_cpu(vs, vals[F_CPU], s);
    if (vals[F_QOS])
        check_qos(vs, vals[F_QOS], s);

cleanup:
    if (!s->networks) {
        s->networks = cgv_malloc0(sizeof(*s->networks));
        s->n_networks = 1;
        cgv_strlcpy(s->networks[0].network, DEF_NETWORK, sizeof(s->networks[0].network));
    }
    free(vs);
    return s;
}

/* Tree from jansson's parse, without positions: only for the rare valid
 * JSON that libyaml refuses (surrogate-pair escapes, keys over 1024
 * characters). Returns NULL when nested too deeply (reported). */
static struct ynode *json_to_node(struct spec_issues *iss, json_t *j, size_t depth)
{
    struct ynode *n = cgv_malloc0(sizeof(*n));
    const char *key;
    json_t *v;
    size_t i;

    switch (json_typeof(j)) {
    case JSON_OBJECT:
    case JSON_ARRAY: {
        bool obj = json_is_object(j);
        size_t cnt = obj ? json_object_size(j) : json_array_size(j);

        n->kind = obj ? NK_MAP : NK_SEQ;
        if (depth >= SPEC_MAX_DEPTH) {
            spec_issue_add(iss, "", 0, 0, "nested too deeply (more than %d levels)",
                           SPEC_MAX_DEPTH);
            free(n);
            return NULL;
        }
        n->cap = cnt * (obj ? 2 : 1);
        n->items = cgv_malloc0((n->cap ? n->cap : 1) * sizeof(n->items[0]));
        if (obj) {
            json_object_foreach(j, key, v) {
                struct ynode *k = cgv_malloc0(sizeof(*k)), *c;
                k->kind = NK_SCALAR;
                k->stype = ST_STR;
                k->val = cgv_strdup(key);
                k->len = strlen(key);
                n->items[n->n++] = k;
                if (!(c = json_to_node(iss, v, depth + 1))) {
                    node_free(n);
                    return NULL;
                }
                n->items[n->n++] = c;
            }
        } else {
            json_array_foreach(j, i, v) {
                struct ynode *c = json_to_node(iss, v, depth + 1);
                if (!c) {
                    node_free(n);
                    return NULL;
                }
                n->items[n->n++] = c;
            }
        }
        return n;
    }
    case JSON_STRING:
        n->stype = ST_STR;
        n->len = json_string_length(j);
        n->val = cgv_malloc0(n->len + 1);
        memcpy(n->val, json_string_value(j), n->len);
        break;
    case JSON_INTEGER:
        n->stype = ST_INT;
        n->val = cgv_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        n->stype = ST_FLOAT;
        n->val = cgv_asprintf("%.17g", json_real_value(j));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        n->stype = ST_BOOL;
        n->val = cgv_strdup(json_is_true(j) ? "true" : "false");
        break;
    default:
        n->stype = ST_NULL;
        n->val = cgv_strdup("null");
        break;
    }
    n->kind = NK_SCALAR;
    if (n->stype != ST_STR)
        n->len = strlen(n->val);
    return n;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */

void spec_free(struct spec_service *spec)
{
    if (!spec)
        return;
    for (size_t i = 0; spec->networks && i < spec->n_networks; i++)
        free(spec->networks[i].addresses);
    free(spec->networks);
    free(spec);
}

int spec_parse(const char *text, size_t len, struct spec_service **out,
               struct spec_issues *issues)
{
    struct spec_issues local;
    struct builder b;
    CGV_AUTOFREE char *copy = NULL;
    struct spec_service *s = NULL;
    json_t *json = NULL;
    size_t i = 0;
    int ret = -1;

    if (out)
        *out = NULL;
    if (!issues)
        issues = &local;
    memset(issues, 0, sizeof(*issues));
    memset(&b, 0, sizeof(b));
    b.issues = issues;

    if (!text && len > 0) {
        spec_issue_add(issues, "", 0, 0, "no spec text");
        goto cleanup;
    }
    if (len > SPEC_MAX_TEXT) {
        spec_issue_add(issues, "", 0, 0, "the spec is too large (%zu bytes, at most %d)", len,
                       SPEC_MAX_TEXT);
        goto cleanup;
    }
    b.text = text ? text : "";
    b.len = len;

    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    if (i < len && text[i] == '{') {
        json_error_t jerr;

        json = json_loadb(text, len, 0, &jerr);
        if (!json) {
            spec_issue_add(issues, "", jerr.line > 0 ? jerr.line : 0,
                           jerr.column > 0 ? jerr.column : 0,
                           "JSON syntax error: %s (a spec that starts with '{' is read as JSON)",
                           jerr.text);
            goto cleanup;
        }
        /* Valid JSON has no raw tabs inside strings, so tabs are only
         * whitespace: make them spaces (same positions) for libyaml. */
        copy = cgv_malloc0(len + 1);
        memcpy(copy, text, len);
        for (size_t k = 0; k < len; k++)
            if (copy[k] == '\t')
                copy[k] = ' ';
        b.text = copy;
    }

    build_tree(&b);
    if (json && b.syntax_error) {
        /* valid JSON that libyaml cannot read: use jansson's tree (every
         * problem is still reported, without positions) */
        memset(issues, 0, sizeof(*issues));
        node_free(b.root);
        b.root = json_to_node(issues, json, 0);
        b.fatal = b.root == NULL;
    }
    if (b.fatal)
        goto cleanup;
    if (!b.root) {
        spec_issue_add(issues, "", 0, 0, "the spec is empty");
        goto cleanup;
    }
    s = validate(issues, b.root);
    if (issues->n > 0 || issues->dropped > 0)
        goto cleanup;
    if (out)
        *out = cgv_steal_ptr(&s);
    ret = 0;

cleanup:
    json_decref(json);
    spec_free(s);
    node_free(b.root);
    return ret;
}

static json_t *limit_to_json(const struct spec_limit *l)
{
    return json_pack("{s:I, s:I}", "max", (json_int_t)l->max, "window_s",
                     (json_int_t)l->window_s);
}

/* redundancy, health, processes and recovery into o; 0 or -1. */
static int ha_to_json(const struct spec_service *spec, json_t *o)
{
    json_t *vips = json_array(), *procs = json_array();
    int rc = 0;

    if (!vips || !procs) {
        json_decref(vips);
        json_decref(procs);
        return -1;
    }
    for (size_t i = 0; i < spec->n_vips && i < SPEC_MAX_VIPS; i++)
        rc |= json_array_append_new(vips, json_string(spec->vips[i].ip));
    for (size_t i = 0; i < spec->n_processes && i < SPEC_MAX_PROCESSES; i++)
        rc |= json_array_append_new(procs, json_pack("{s:s, s:s}", "name",
                                                     spec->processes[i].name, "command",
                                                     spec->processes[i].command));
    rc |= json_object_set_new(o, "redundancy",
                              json_pack("{s:s, s:I, s:o}", "model",
                                        spec_redundancy_name(spec->redundancy), "standbys",
                                        (json_int_t)spec->standbys, "virtual_ips", vips));
    rc |= json_object_set_new(o, "health",
                              json_pack("{s:I, s:I}", "heartbeat_misses",
                                        (json_int_t)spec->heartbeat_misses, "watchdog_s",
                                        (json_int_t)spec->watchdog_s));
    rc |= json_object_set_new(o, "processes", procs);
    rc |= json_object_set_new(o, "recovery",
                              json_pack("{s:o, s:o, s:o, s:s}", "app_restarts",
                                        limit_to_json(&spec->app_restarts), "vm_restarts",
                                        limit_to_json(&spec->vm_restarts), "failovers",
                                        limit_to_json(&spec->failovers), "restart",
                                        spec_restart_name(spec->restart)));
    return rc ? -1 : 0;
}

/* cpu and qos into o; 0 or -1. */
static int cpu_qos_to_json(const struct spec_service *spec, json_t *o)
{
    const struct spec_cpu *c = &spec->cpu;
    const struct spec_qos *q = &spec->qos;
    json_t *pinned = json_array(), *group, *hard;
    int rc = 0;

    if (!pinned)
        return -1;
    for (size_t i = 0; i < c->n_pinned && i < SPEC_MAX_PINNED; i++)
        rc |= json_array_append_new(pinned, json_integer(c->pinned[i]));
    group = c->policy == SPEC_CPU_SHARED_GROUP ? json_string(c->group) : json_null();
    hard = q->memory_hard_limit_mib ? json_sprintf("%" PRIu64 "MiB", q->memory_hard_limit_mib)
                                    : json_null();
    rc |= json_object_set_new(
        o, "cpu",
        json_pack("{s:s, s:b, s:o, s:I, s:o, s:s, s:b, s:I, s:I}", "policy",
                  spec_cpu_policy_name(c->policy), "isolate_smt", (int)c->isolate_smt, "group",
                  group, "group_cores", (json_int_t)c->group_cores, "pinned", pinned, "numa",
                  (unsigned)c->numa < CGV_ARRAY_LEN(numa_names) ? numa_names[c->numa]
                                                                : "unknown",
                  "realtime", (int)c->realtime, "realtime_priority",
                  (json_int_t)c->realtime_priority, "max_vcpus", (json_int_t)c->max_vcpus));
    rc |= json_object_set_new(
        o, "qos",
        json_pack("{s:I, s:I, s:I, s:o, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}}",
                  "cpu_shares", (json_int_t)q->cpu_shares, "cpu_period_us",
                  (json_int_t)q->cpu_period_us, "cpu_quota_us", (json_int_t)q->cpu_quota_us,
                  "memory_hard_limit", hard, "net", "inbound_kbps",
                  (json_int_t)q->net_inbound_kbps, "outbound_kbps",
                  (json_int_t)q->net_outbound_kbps, "burst_kb", (json_int_t)q->net_burst_kb,
                  "block", "read_bps", (json_int_t)q->block_read_bps, "write_bps",
                  (json_int_t)q->block_write_bps, "read_iops", (json_int_t)q->block_read_iops,
                  "write_iops", (json_int_t)q->block_write_iops));
    return rc ? -1 : 0;
}

json_t *spec_to_json(const struct spec_service *spec)
{
    json_t *o = NULL, *nets = NULL;
    int rc = 0;

    if (!spec)
        return NULL;
    o = json_object();
    nets = json_array();
    if (!o || !nets)
        goto fail;
    rc |= json_object_set_new(o, "name", json_string(spec->name));
    rc |= json_object_set_new(o, "instances", json_integer(spec->instances));
    rc |= json_object_set_new(o, "vcpus", json_integer(spec->vcpus));
    rc |= json_object_set_new(o, "memory", json_sprintf("%" PRIu64 "MiB", spec->memory_mib));
    rc |= json_object_set_new(o, "image", json_string(spec->image));
    rc |= json_object_set_new(o, "acceleration", json_string(spec_accel_name(spec->accel)));
    rc |= json_object_set_new(o, "heartbeat_ms", json_integer(spec->heartbeat_ms));
    for (size_t i = 0; spec->networks && i < spec->n_networks; i++) {
        const struct spec_network *n = &spec->networks[i];
        json_t *no = json_object(), *addrs = json_array();

        if (!no || !addrs) {
            json_decref(no);
            json_decref(addrs);
            goto fail;
        }
        for (size_t k = 0; n->addresses && k < n->n_addresses; k++)
            rc |= json_array_append_new(addrs, json_string(n->addresses[k].ip));
        rc |= json_object_set_new(no, "network", json_string(n->network));
        rc |= json_object_set_new(no, "addresses", addrs);
        rc |= json_array_append_new(nets, no);
    }
    rc |= json_object_set_new(o, "networks", nets);
    nets = NULL;
    if (rc != 0 || ha_to_json(spec, o) != 0 || cpu_qos_to_json(spec, o) != 0)
        goto fail;
    return o;

fail:
    json_decref(nets);
    json_decref(o);
    return NULL;
}

static bool fixed_eq(const char *a, const char *b, size_t cap)
{
    return strncmp(a, b, cap) == 0;
}

static bool limit_eq(const struct spec_limit *a, const struct spec_limit *b)
{
    return a->max == b->max && a->window_s == b->window_s;
}

static bool cpu_eq(const struct spec_cpu *x, const struct spec_cpu *y)
{
    if (x->policy != y->policy || x->isolate_smt != y->isolate_smt ||
        !fixed_eq(x->group, y->group, sizeof(x->group)) || x->group_cores != y->group_cores ||
        x->n_pinned != y->n_pinned || x->n_pinned > SPEC_MAX_PINNED || x->numa != y->numa ||
        x->realtime != y->realtime || x->realtime_priority != y->realtime_priority ||
        x->max_vcpus != y->max_vcpus)
        return false;
    for (size_t i = 0; i < x->n_pinned; i++)
        if (x->pinned[i] != y->pinned[i])
            return false;
    return true;
}

static bool qos_eq(const struct spec_qos *x, const struct spec_qos *y)
{
    return x->cpu_shares == y->cpu_shares && x->cpu_period_us == y->cpu_period_us &&
           x->cpu_quota_us == y->cpu_quota_us &&
           x->memory_hard_limit_mib == y->memory_hard_limit_mib &&
           x->net_inbound_kbps == y->net_inbound_kbps &&
           x->net_outbound_kbps == y->net_outbound_kbps && x->net_burst_kb == y->net_burst_kb &&
           x->block_read_bps == y->block_read_bps && x->block_write_bps == y->block_write_bps &&
           x->block_read_iops == y->block_read_iops &&
           x->block_write_iops == y->block_write_iops;
}

int spec_equal(const struct spec_service *a, const struct spec_service *b)
{
    if (a == b)
        return 1;
    if (!a || !b)
        return 0;
    if (!fixed_eq(a->name, b->name, sizeof(a->name)) || a->instances != b->instances ||
        a->vcpus != b->vcpus || a->memory_mib != b->memory_mib ||
        !fixed_eq(a->image, b->image, sizeof(a->image)) || a->accel != b->accel ||
        a->heartbeat_ms != b->heartbeat_ms || a->n_networks != b->n_networks)
        return 0;
    for (size_t i = 0; i < a->n_networks; i++) {
        const struct spec_network *x = &a->networks[i], *y = &b->networks[i];
        if (!fixed_eq(x->network, y->network, sizeof(x->network)) ||
            x->n_addresses != y->n_addresses)
            return 0;
        for (size_t k = 0; k < x->n_addresses; k++)
            if (!fixed_eq(x->addresses[k].ip, y->addresses[k].ip, sizeof(x->addresses[k].ip)))
                return 0;
    }
    if (a->redundancy != b->redundancy || a->standbys != b->standbys ||
        a->n_vips != b->n_vips || a->n_vips > SPEC_MAX_VIPS ||
        a->heartbeat_misses != b->heartbeat_misses || a->watchdog_s != b->watchdog_s ||
        a->n_processes != b->n_processes || a->n_processes > SPEC_MAX_PROCESSES ||
        !limit_eq(&a->app_restarts, &b->app_restarts) ||
        !limit_eq(&a->vm_restarts, &b->vm_restarts) ||
        !limit_eq(&a->failovers, &b->failovers) || a->restart != b->restart)
        return 0;
    for (size_t i = 0; i < a->n_vips; i++)
        if (!fixed_eq(a->vips[i].ip, b->vips[i].ip, sizeof(a->vips[i].ip)))
            return 0;
    for (size_t i = 0; i < a->n_processes; i++)
        if (!fixed_eq(a->processes[i].name, b->processes[i].name,
                      sizeof(a->processes[i].name)) ||
            !fixed_eq(a->processes[i].command, b->processes[i].command,
                      sizeof(a->processes[i].command)))
            return 0;
    if (!cpu_eq(&a->cpu, &b->cpu) || !qos_eq(&a->qos, &b->qos))
        return 0;
    return 1;
}
