/* place_topo.c — a host's CPU/NUMA topology from libvirt's capabilities
 * XML, from sysfs, or made up (tests, benchmark). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "place_int.h"

static int cmp_raw(const void *a, const void *b)
{
    const struct place_raw_cpu *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static bool same_key(const struct place_raw_cpu *a, const struct place_raw_cpu *b)
{
    return a->socket == b->socket && a->die == b->die && a->core == b->core;
}

int place_topo_finish(struct place_raw_cpu *raw, size_t n, struct place_topology *out,
                      struct cgv_error *err)
{
    struct place_cpuset online;
    bool siblings_agree = true, dies_clash = false;
    unsigned max_core = 0, max_node = 0;

    if (n == 0)
        return cgv_err(err, CGV_E_INVALID, "the topology has no online CPU");
    if (n > PLACE_MAX_CPUS)
        return cgv_err(err, CGV_E_INVALID, "the topology has more than %u CPUs",
                       PLACE_MAX_CPUS);
    qsort(raw, n, sizeof(*raw), cmp_raw);
    place_cpuset_clear(&online);
    for (size_t i = 0; i < n; i++) {
        if (raw[i].id >= PLACE_MAX_CPUS)
            return cgv_err(err, CGV_E_INVALID, "CPU %u: ids go up to %u", raw[i].id,
                           PLACE_MAX_CPUS - 1);
        if (raw[i].node >= PLACE_MAX_NODES)
            return cgv_err(err, CGV_E_INVALID, "CPU %u is on NUMA node %u; nodes go up to %u",
                           raw[i].id, raw[i].node, PLACE_MAX_NODES - 1);
        if (i > 0 && raw[i].id == raw[i - 1].id)
            return cgv_err(err, CGV_E_INVALID, "CPU %u is listed twice", raw[i].id);
        place_cpuset_add(&online, raw[i].id);
        if (raw[i].core > max_core)
            max_core = raw[i].core;
        if (raw[i].node > max_node)
            max_node = raw[i].node;
    }
    /* Do (socket, die, core) groups match the SMT siblings the source gave? */
    for (size_t i = 0; i < n && siblings_agree; i++) {
        struct place_cpuset group;

        if (!raw[i].has_siblings)
            continue;
        place_cpuset_clear(&group);
        for (size_t j = 0; j < n; j++) {
            if (same_key(&raw[i], &raw[j]))
                place_cpuset_add(&group, raw[j].id);
        }
        for (unsigned w = 0; w < PLACE_WORDS; w++) {
            if ((raw[i].siblings.bits[w] & online.bits[w]) != group.bits[w])
                siblings_agree = false;
        }
    }
    for (size_t i = 0; i < n && !dies_clash; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (raw[i].socket == raw[j].socket && raw[i].core == raw[j].core &&
                raw[i].die != raw[j].die) {
                dies_clash = true;
                break;
            }
        }
    }
    memset(out->cpus, 0, sizeof(out->cpus));
    out->n_cpus = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        struct place_cpu *c = &out->cpus[i];

        c->id = raw[i].id;
        c->socket = raw[i].socket;
        c->node = raw[i].node;
        if (!siblings_agree) {
            unsigned lowest = raw[i].id;
            if (raw[i].has_siblings) {
                for (unsigned k = 0; k < raw[i].id; k++) {
                    if (place_cpuset_has(&raw[i].siblings, k) && place_cpuset_has(&online, k)) {
                        lowest = k;
                        break;
                    }
                }
            }
            c->core = lowest;
        } else if (dies_clash) {
            c->core = raw[i].die * (max_core + 1) + raw[i].core;
        } else {
            c->core = raw[i].core;
        }
    }
    if (out->n_nodes < max_node + 1)
        out->n_nodes = max_node + 1;
    return 0;
}

/* ---- libvirt capabilities --------------------------------------------- */

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
    for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && xmlStrcmp(c->name, BAD_CAST name) == 0)
            return c;
    }
    return NULL;
}

/* Attribute as an unsigned number: 1 found, 0 absent, -1 malformed. */
static int attr_uint(xmlNodePtr n, const char *name, unsigned long long *out)
{
    xmlChar *v = xmlGetProp(n, BAD_CAST name);
    char *end = NULL;
    int rc = 1;

    if (!v)
        return 0;
    errno = 0;
    *out = strtoull((const char *)v, &end, 10);
    if (errno || end == (char *)v || *end || ((const char *)v)[0] == '-')
        rc = -1;
    xmlFree(v);
    return rc;
}

/* libvirt's memory units (virScaleInteger): b, k/KiB, KB, M/MiB, MB, … */
static int unit_scale(const char *unit, uint64_t *bytes)
{
    static const struct {
        const char *name;
        uint64_t mult;
    } units[] = {
        {"b", 1}, {"bytes", 1},
        {"k", 1ULL << 10}, {"KiB", 1ULL << 10}, {"KB", 1000ULL},
        {"M", 1ULL << 20}, {"MiB", 1ULL << 20}, {"MB", 1000000ULL},
        {"G", 1ULL << 30}, {"GiB", 1ULL << 30}, {"GB", 1000000000ULL},
        {"T", 1ULL << 40}, {"TiB", 1ULL << 40}, {"TB", 1000000000000ULL},
    };

    for (size_t i = 0; i < CGV_ARRAY_LEN(units); i++) {
        if (strcasecmp(unit, units[i].name) == 0) {
            *bytes = units[i].mult;
            return 0;
        }
    }
    return -1;
}

static int cell_memory(xmlNodePtr mem, uint64_t *mib, struct cgv_error *err)
{
    xmlChar *text = xmlNodeGetContent(mem);
    xmlChar *unit = xmlGetProp(mem, BAD_CAST "unit");
    uint64_t mult = 1024;
    unsigned long long v;
    char *end = NULL;
    int rc = 0;

    errno = 0;
    v = text ? strtoull((const char *)text, &end, 10) : 0;
    if (!text || errno || end == (char *)text || (*end && !isspace((unsigned char)*end)))
        rc = cgv_err(err, CGV_E_INVALID, "capabilities: cell memory '%s' is not a number",
                     text ? (const char *)text : "");
    else if (unit && unit_scale((const char *)unit, &mult) < 0)
        rc = cgv_err(err, CGV_E_INVALID, "capabilities: unknown memory unit '%s'",
                     (const char *)unit);
    else
        *mib = (uint64_t)((unsigned __int128)v * mult / 1048576);
    xmlFree(text);
    xmlFree(unit);
    return rc;
}

static int caps_cells(xmlNodePtr cells, struct place_raw_cpu *raw, size_t *n,
                      struct place_topology *out, struct cgv_error *err)
{
    bool any_memory = false;

    for (xmlNodePtr cell = cells->children; cell; cell = cell->next) {
        unsigned long long node = 0;
        xmlNodePtr mem, cpus;

        if (cell->type != XML_ELEMENT_NODE || xmlStrcmp(cell->name, BAD_CAST "cell") != 0)
            continue;
        if (attr_uint(cell, "id", &node) != 1)
            return cgv_err(err, CGV_E_INVALID, "capabilities: a <cell> without a valid id");
        if (node >= PLACE_MAX_NODES)
            return cgv_err(err, CGV_E_INVALID,
                           "capabilities: NUMA node %llu; nodes go up to %u", node,
                           PLACE_MAX_NODES - 1);
        if (node + 1 > out->n_nodes)
            out->n_nodes = (unsigned)node + 1;
        if ((mem = child(cell, "memory")) != NULL) {
            if (cell_memory(mem, &out->node_memory_mib[node], err) < 0)
                return -1;
            any_memory = true;
        }
        cpus = child(cell, "cpus");
        for (xmlNodePtr c = cpus ? cpus->children : NULL; c; c = c->next) {
            unsigned long long id, v;
            struct place_raw_cpu *r;
            xmlChar *sib;

            if (c->type != XML_ELEMENT_NODE || xmlStrcmp(c->name, BAD_CAST "cpu") != 0)
                continue;
            if (attr_uint(c, "id", &id) != 1)
                return cgv_err(err, CGV_E_INVALID, "capabilities: a <cpu> without a valid id");
            if (id >= PLACE_MAX_CPUS)
                return cgv_err(err, CGV_E_INVALID, "capabilities: CPU %llu; ids go up to %u",
                               id, PLACE_MAX_CPUS - 1);
            if (attr_uint(c, "socket_id", &v) == 0 && attr_uint(c, "core_id", &v) == 0)
                continue; /* offline: libvirt gives only its id */
            if (*n >= PLACE_MAX_CPUS)
                return cgv_err(err, CGV_E_INVALID, "capabilities: more than %u CPUs",
                               PLACE_MAX_CPUS);
            r = &raw[(*n)++];
            memset(r, 0, sizeof(*r));
            r->id = (unsigned)id;
            r->node = (unsigned)node;
            if (attr_uint(c, "socket_id", &v) < 0 || attr_uint(c, "die_id", &v) < 0 ||
                attr_uint(c, "core_id", &v) < 0)
                return cgv_err(err, CGV_E_INVALID,
                               "capabilities: CPU %llu has a malformed socket/die/core id", id);
            if (attr_uint(c, "socket_id", &v) == 1)
                r->socket = (unsigned)v;
            if (attr_uint(c, "die_id", &v) == 1)
                r->die = (unsigned)v;
            if (attr_uint(c, "core_id", &v) == 1)
                r->core = (unsigned)v;
            else
                r->core = (unsigned)id;
            sib = xmlGetProp(c, BAD_CAST "siblings");
            if (sib) {
                int rc = place_cpuset_parse((const char *)sib, &r->siblings, err);
                xmlFree(sib);
                if (rc < 0) {
                    cgv_err_prefix(err, "capabilities: CPU %llu siblings", id);
                    return -1;
                }
                r->has_siblings = true;
            }
        }
    }
    if (out->n_nodes == 0)
        return cgv_err(err, CGV_E_INVALID, "capabilities: <cells> has no <cell>");
    out->memory_unknown = !any_memory;
    return 0;
}

/* No NUMA cells: lay the CPUs out from <host><cpu><topology>. */
static int caps_flat(xmlNodePtr host, struct place_raw_cpu *raw, size_t *n,
                     struct place_topology *out, struct cgv_error *err)
{
    xmlNodePtr topo = child(child(host, "cpu"), "topology");
    unsigned long long sockets = 1, dies = 1, cores = 0, threads = 1;
    unsigned long long total;

    if (!topo || attr_uint(topo, "cores", &cores) != 1 || cores == 0 ||
        attr_uint(topo, "sockets", &sockets) < 0 || attr_uint(topo, "dies", &dies) < 0 ||
        attr_uint(topo, "threads", &threads) < 0 || sockets == 0 || dies == 0 || threads == 0)
        return cgv_err(err, CGV_E_INVALID,
                       "capabilities: neither <host><topology><cells> nor a usable "
                       "<host><cpu><topology>");
    total = sockets * dies * cores * threads;
    if (sockets > PLACE_MAX_CPUS || dies > PLACE_MAX_CPUS || cores > PLACE_MAX_CPUS ||
        threads > PLACE_MAX_CPUS || total > PLACE_MAX_CPUS)
        return cgv_err(err, CGV_E_INVALID, "capabilities: more than %u CPUs", PLACE_MAX_CPUS);
    for (unsigned long long t = 0; t < threads; t++) {
        for (unsigned long long s = 0; s < sockets; s++) {
            for (unsigned long long d = 0; d < dies; d++) {
                for (unsigned long long c = 0; c < cores; c++) {
                    struct place_raw_cpu *r = &raw[*n];
                    memset(r, 0, sizeof(*r));
                    r->id = (unsigned)*n;
                    r->socket = (unsigned)s;
                    r->die = (unsigned)d;
                    r->core = (unsigned)c;
                    (*n)++;
                }
            }
        }
    }
    out->n_nodes = 1;
    out->memory_unknown = true;
    return 0;
}

int place_topology_from_caps(const char *xml, struct place_topology *out,
                             struct cgv_error *err)
{
    xmlDocPtr doc = NULL;
    xmlNodePtr root, host, cells;
    CGV_AUTOFREE struct place_raw_cpu *raw = NULL;
    size_t n = 0;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (!xml)
        return cgv_err(err, CGV_E_INVALID, "capabilities: no XML");
    doc = xmlReadMemory(xml, (int)strlen(xml), "capabilities.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        cgv_err(err, CGV_E_INVALID, "capabilities: not well-formed XML");
        goto cleanup;
    }
    root = xmlDocGetRootElement(doc);
    if (!root || xmlStrcmp(root->name, BAD_CAST "capabilities") != 0) {
        cgv_err(err, CGV_E_INVALID, "capabilities: the root element is not <capabilities>");
        goto cleanup;
    }
    host = child(root, "host");
    if (!host) {
        cgv_err(err, CGV_E_INVALID, "capabilities: no <host>");
        goto cleanup;
    }
    raw = cgv_malloc0(sizeof(*raw) * PLACE_MAX_CPUS);
    cells = child(child(host, "topology"), "cells");
    if (cells ? caps_cells(cells, raw, &n, out, err) < 0 : caps_flat(host, raw, &n, out, err) < 0)
        goto cleanup;
    if (place_topo_finish(raw, n, out, err) < 0) {
        cgv_err_prefix(err, "capabilities");
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (doc)
        xmlFreeDoc(doc);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- sysfs -------------------------------------------------------------- */

/* Read a small sysfs file: 1 read, 0 absent, -1 error. */
static int read_small(const char *path, char **text, struct cgv_error *err)
{
    struct stat st;

    *text = NULL;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return cgv_err(err, CGV_E_IO, "%s: %s", path, strerror(errno));
    }
    if (cgv_read_file(path, 1 << 20, text, NULL, err) < 0)
        return -1;
    return 1;
}

static int read_uint_file(const char *path, long long *out, struct cgv_error *err)
{
    CGV_AUTOFREE char *text = NULL;
    char *end = NULL;
    int rc = read_small(path, &text, err);

    if (rc <= 0)
        return rc;
    errno = 0;
    *out = strtoll(text, &end, 10);
    if (errno || end == text || (*end && !isspace((unsigned char)*end)))
        return cgv_err(err, CGV_E_INVALID, "%s: '%s' is not a number", path, text);
    return 1;
}

static int cmp_uint(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

    return x < y ? -1 : x > y;
}

/* The numbers N of entries called prefixN in dir, sorted. */
static int list_numbered(const char *dir, const char *prefix, unsigned *ids, size_t max,
                         size_t *n, struct cgv_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t plen = strlen(prefix);

    *n = 0;
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return cgv_err(err, CGV_E_IO, "%s: %s", dir, strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        const char *p = e->d_name + plen;
        char *end = NULL;
        unsigned long v;

        if (strncmp(e->d_name, prefix, plen) != 0 || !isdigit((unsigned char)*p))
            continue;
        v = strtoul(p, &end, 10);
        if (*end)
            continue;
        if (*n >= max) {
            closedir(d);
            return cgv_err(err, CGV_E_INVALID, "%s: more than %zu %s entries", dir, max,
                           prefix);
        }
        ids[(*n)++] = (unsigned)v;
    }
    closedir(d);
    qsort(ids, *n, sizeof(*ids), cmp_uint);
    return 0;
}

static int sysfs_nodes(const char *sysdir, struct place_raw_cpu *raw, size_t n,
                       struct place_topology *out, struct cgv_error *err)
{
    char dir[4096];
    unsigned ids[PLACE_MAX_NODES * 4];
    size_t n_ids = 0;
    bool any_memory = false;

    snprintf(dir, sizeof(dir), "%s/devices/system/node", sysdir);
    if (list_numbered(dir, "node", ids, CGV_ARRAY_LEN(ids), &n_ids, err) < 0)
        return -1;
    out->n_nodes = 1;
    if (n_ids == 0) {
        out->memory_unknown = true;
        return 0;
    }
    for (size_t k = 0; k < n_ids; k++) {
        unsigned node = ids[k];
        char path[4200];
        CGV_AUTOFREE char *text = NULL;
        struct place_cpuset cpus;
        int rc;

        if (node >= PLACE_MAX_NODES)
            return cgv_err(err, CGV_E_INVALID, "%s/node%u: nodes go up to %u", dir, node,
                           PLACE_MAX_NODES - 1);
        if (node + 1 > out->n_nodes)
            out->n_nodes = node + 1;
        snprintf(path, sizeof(path), "%s/node%u/cpulist", dir, node);
        if ((rc = read_small(path, &text, err)) < 0)
            return -1;
        if (rc == 1) {
            if (place_cpuset_parse(text, &cpus, err) < 0) {
                cgv_err_prefix(err, "%s", path);
                return -1;
            }
            for (size_t i = 0; i < n; i++) {
                if (place_cpuset_has(&cpus, raw[i].id))
                    raw[i].node = node;
            }
        }
        free(text);
        text = NULL;
        snprintf(path, sizeof(path), "%s/node%u/meminfo", dir, node);
        if ((rc = read_small(path, &text, err)) < 0)
            return -1;
        if (rc == 1) {
            const char *p = strstr(text, "MemTotal:");
            unsigned long long kib;
            if (!p || sscanf(p, "MemTotal: %llu", &kib) != 1)
                return cgv_err(err, CGV_E_INVALID, "%s: no MemTotal", path);
            out->node_memory_mib[node] = kib / 1024;
            any_memory = true;
        }
    }
    out->memory_unknown = !any_memory;
    return 0;
}

int place_topology_from_sysfs(const char *sysdir, struct place_topology *out,
                              struct cgv_error *err)
{
    char dir[4096];
    CGV_AUTOFREE unsigned *ids = NULL;
    CGV_AUTOFREE struct place_raw_cpu *raw = NULL;
    CGV_AUTOFREE char *online_text = NULL;
    struct place_cpuset online;
    bool have_online = false;
    size_t n_ids = 0, n = 0;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    snprintf(dir, sizeof(dir), "%s/devices/system/cpu", sysdir);
    ids = cgv_malloc0(sizeof(*ids) * PLACE_MAX_CPUS * 2);
    raw = cgv_malloc0(sizeof(*raw) * PLACE_MAX_CPUS);
    if (list_numbered(dir, "cpu", ids, PLACE_MAX_CPUS * 2, &n_ids, err) < 0)
        goto cleanup;
    if (n_ids == 0) {
        cgv_err(err, CGV_E_INVALID, "%s: no cpuN directories", dir);
        goto cleanup;
    }
    {
        char path[4200];
        int r;
        snprintf(path, sizeof(path), "%s/online", dir);
        if ((r = read_small(path, &online_text, err)) < 0)
            goto cleanup;
        if (r == 1) {
            if (place_cpuset_parse(online_text, &online, err) < 0) {
                cgv_err_prefix(err, "%s", path);
                goto cleanup;
            }
            have_online = true;
        }
    }
    for (size_t k = 0; k < n_ids; k++) {
        unsigned id = ids[k];
        char path[4200], base[4150];
        long long v;
        struct place_raw_cpu *r;
        CGV_AUTOFREE char *sib = NULL;
        int got;

        if (id >= PLACE_MAX_CPUS) {
            cgv_err(err, CGV_E_INVALID, "%s/cpu%u: ids go up to %u", dir, id,
                    PLACE_MAX_CPUS - 1);
            goto cleanup;
        }
        snprintf(base, sizeof(base), "%s/cpu%u", dir, id);
        if (have_online) {
            if (!place_cpuset_has(&online, id))
                continue;
        } else {
            snprintf(path, sizeof(path), "%s/online", base);
            if ((got = read_uint_file(path, &v, err)) < 0)
                goto cleanup;
            if (got == 1 && v == 0)
                continue;
        }
        r = &raw[n++];
        memset(r, 0, sizeof(*r));
        r->id = id;
        r->core = id;
        snprintf(path, sizeof(path), "%s/topology/physical_package_id", base);
        if ((got = read_uint_file(path, &v, err)) < 0)
            goto cleanup;
        if (got == 1 && v > 0)
            r->socket = (unsigned)v; /* -1 (unknown) counts as socket 0 */
        snprintf(path, sizeof(path), "%s/topology/die_id", base);
        if ((got = read_uint_file(path, &v, err)) < 0)
            goto cleanup;
        if (got == 1 && v > 0)
            r->die = (unsigned)v;
        snprintf(path, sizeof(path), "%s/topology/core_id", base);
        if ((got = read_uint_file(path, &v, err)) < 0)
            goto cleanup;
        if (got == 1 && v >= 0)
            r->core = (unsigned)v;
        snprintf(path, sizeof(path), "%s/topology/thread_siblings_list", base);
        if ((got = read_small(path, &sib, err)) < 0)
            goto cleanup;
        if (got == 1) {
            if (place_cpuset_parse(sib, &r->siblings, err) < 0) {
                cgv_err_prefix(err, "%s", path);
                goto cleanup;
            }
            r->has_siblings = true;
        }
    }
    if (sysfs_nodes(sysdir, raw, n, out, err) < 0)
        goto cleanup;
    if (place_topo_finish(raw, n, out, err) < 0) {
        cgv_err_prefix(err, "%s", sysdir);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- synthetic ---------------------------------------------------------- */

void place_topology_synthetic(struct place_topology *out, unsigned sockets,
                              unsigned cores_per_socket, unsigned threads_per_core,
                              unsigned nodes, uint64_t memory_mib_per_node)
{
    unsigned total_cores, n = 0;

    memset(out, 0, sizeof(*out));
    if (sockets == 0)
        sockets = 1;
    if (cores_per_socket == 0)
        cores_per_socket = 1;
    if (threads_per_core == 0)
        threads_per_core = 1;
    if (threads_per_core > PLACE_MAX_CPUS)
        threads_per_core = PLACE_MAX_CPUS;
    if (sockets > PLACE_MAX_CPUS)
        sockets = PLACE_MAX_CPUS;
    if (cores_per_socket > PLACE_MAX_CPUS)
        cores_per_socket = PLACE_MAX_CPUS;
    while (sockets * cores_per_socket * threads_per_core > PLACE_MAX_CPUS) {
        if (cores_per_socket > 1)
            cores_per_socket--;
        else if (sockets > 1)
            sockets--;
        else
            threads_per_core--;
    }
    total_cores = sockets * cores_per_socket;
    if (nodes == 0)
        nodes = 1;
    if (nodes > PLACE_MAX_NODES)
        nodes = PLACE_MAX_NODES;
    if (nodes > total_cores)
        nodes = total_cores;
    for (unsigned t = 0; t < threads_per_core; t++) {
        for (unsigned g = 0; g < total_cores; g++) {
            struct place_cpu *c = &out->cpus[n];
            c->id = n;
            c->socket = g / cores_per_socket;
            c->core = g % cores_per_socket;
            c->node = g * nodes / total_cores;
            n++;
        }
    }
    out->n_cpus = n;
    out->n_nodes = nodes;
    for (unsigned k = 0; k < nodes; k++)
        out->node_memory_mib[k] = memory_mib_per_node;
}
