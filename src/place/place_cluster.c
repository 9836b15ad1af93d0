/* place_cluster.c — VM placement over many hosts: best fit (the host left
 * with the fewest free dedicated cores), ties by index, with anti-affinity.
 *
 * Hosts sit in buckets by their free core count (one bitmap of host indexes
 * per count), so a request looks at the fullest hosts first and stops as
 * soon as no emptier host can beat the best found: with similar hosts an
 * allocation plans on a handful of hosts, not on all of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place_int.h"

struct place_chost {
    char name[PLACE_NAME_MAX];
    struct place_host *h;
    unsigned bucket;  /* free cores when last filed */
    unsigned min_tpc; /* fewest threads of any of its cores */
    unsigned max_tpc;
};

struct place_cluster {
    struct place_chost *hosts;
    size_t n, cap;
    /* buckets[f * words + w]: bit i set = host i has f free cores */
    uint64_t *buckets;
    size_t words;
    unsigned max_cores;
    bool dirty;
    uint8_t *avoid; /* scratch, n entries */
};

struct place_cluster *place_cluster_new(void)
{
    return cgv_malloc0(sizeof(struct place_cluster));
}

void place_cluster_free(struct place_cluster *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        place_host_free(c->hosts[i].h);
    free(c->hosts);
    free(c->buckets);
    free(c->avoid);
    free(c);
}

int place_cluster_add_host(struct place_cluster *c, const char *name,
                           const struct place_topology *topo,
                           const struct place_cpuset *housekeeping)
{
    struct place_host *h = place_host_new(topo, housekeeping);
    struct place_chost *ch;

    if (!h)
        return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->hosts = cgv_realloc(c->hosts, sizeof(*c->hosts) * c->cap);
        c->avoid = cgv_realloc(c->avoid, c->cap);
    }
    ch = &c->hosts[c->n];
    memset(ch, 0, sizeof(*ch));
    cgv_strlcpy(ch->name, name ? name : "", sizeof(ch->name));
    ch->h = h;
    ch->min_tpc = UINT32_MAX;
    for (unsigned k = 0; k < h->n_cores; k++) {
        if (h->cores[k].n < ch->min_tpc)
            ch->min_tpc = h->cores[k].n;
        if (h->cores[k].n > ch->max_tpc)
            ch->max_tpc = h->cores[k].n;
    }
    c->avoid[c->n] = 0;
    c->dirty = true;
    return (int)c->n++;
}

static void rebuild(struct place_cluster *c)
{
    c->max_cores = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->hosts[i].h->n_cores > c->max_cores)
            c->max_cores = c->hosts[i].h->n_cores;
    }
    c->words = (c->n + 63) / 64;
    free(c->buckets);
    c->buckets = cgv_malloc0(sizeof(uint64_t) * c->words * (c->max_cores + 1));
    for (size_t i = 0; i < c->n; i++) {
        c->hosts[i].bucket = c->hosts[i].h->free_cores_total;
        place_bit_set(c->buckets + c->hosts[i].bucket * c->words, (unsigned)i);
    }
    c->dirty = false;
}

static void refile(struct place_cluster *c, size_t i)
{
    unsigned f = c->hosts[i].h->free_cores_total;

    if (c->dirty || f == c->hosts[i].bucket)
        return;
    place_bit_clr(c->buckets + c->hosts[i].bucket * c->words, (unsigned)i);
    place_bit_set(c->buckets + f * c->words, (unsigned)i);
    c->hosts[i].bucket = f;
}

/* Bounds of the free cores req takes on a host: [kmin, kmax]. */
static void take_bounds(const struct place_cluster *c, const struct place_request *req,
                        unsigned *kmin, unsigned *kmax)
{
    unsigned min_tpc = UINT32_MAX, max_tpc = 1;

    for (size_t i = 0; i < c->n; i++) {
        if (c->hosts[i].min_tpc < min_tpc)
            min_tpc = c->hosts[i].min_tpc;
        if (c->hosts[i].max_tpc > max_tpc)
            max_tpc = c->hosts[i].max_tpc;
    }
    if (min_tpc == 0 || min_tpc == UINT32_MAX)
        min_tpc = 1;
    *kmin = 0;
    *kmax = 0;
    switch (req->policy) {
    case PLACE_DEDICATED:
        if (req->isolate_smt) {
            *kmin = *kmax = req->vcpus;
        } else {
            *kmin = (req->vcpus + max_tpc - 1) / max_tpc;
            *kmax = (req->vcpus + min_tpc - 1) / min_tpc;
        }
        break;
    case PLACE_SHARED_GROUP:
        *kmax = req->group_cores ? req->group_cores : 1; /* 0 where the group exists */
        break;
    case PLACE_PINNED:
        *kmax = (unsigned)req->n_pinned;
        break;
    case PLACE_FLOATING:
        break;
    }
}

/* Cheap refusals before planning: what most full hosts fail on. */
static bool surely_refused(const struct place_host *h, const struct place_request *req)
{
    if (!h->memory_unknown) {
        uint64_t total = 0;
        for (unsigned n = 0; n < h->n_nodes; n++)
            total += h->free_mem[n];
        if (total < req->memory_mib)
            return true;
    }
    switch (req->policy) {
    case PLACE_FLOATING:
        return h->pool_total == 0;
    case PLACE_PINNED:
        for (size_t i = 0; i < req->n_pinned; i++) {
            unsigned cpu = req->pinned[i];
            if (cpu >= h->n_cpu_ids || (h->role[cpu] != PR_FREE && h->role[cpu] != PR_GROUP))
                return true;
        }
        return false;
    default:
        return false;
    }
}

int place_cluster_alloc(struct place_cluster *c, const struct place_request *req,
                        const int *avoid, size_t n_avoid, struct place_result *out,
                        struct cgv_error *err)
{
    struct place_plan p, best_plan;
    unsigned kmin, kmax, best_left = UINT32_MAX;
    size_t n_avoided = 0;
    int best = -1;

    if (place_validate_request(req, err) < 0)
        return -1;
    if (c->n == 0)
        return cgv_err(err, CGV_E_CONFLICT, "no host for %s: the cluster has no host", req->vm);
    if (c->dirty)
        rebuild(c);
    for (size_t i = 0; i < n_avoid; i++) {
        if (avoid[i] >= 0 && (size_t)avoid[i] < c->n && !c->avoid[avoid[i]]) {
            c->avoid[avoid[i]] = 1;
            n_avoided++;
        }
    }
    take_bounds(c, req, &kmin, &kmax);
    for (unsigned f = kmin; f <= c->max_cores; f++) {
        const uint64_t *b = c->buckets + f * c->words;
        /* every host from here on has at least f - kmax cores left */
        if (best >= 0 && f > best_left + kmax)
            break;
        for (size_t w = 0; w < c->words; w++) {
            uint64_t bits = b[w];
            while (bits) {
                int i = (int)(w * 64 + (unsigned)__builtin_ctzll(bits));
                bits &= bits - 1;
                if (c->avoid[i])
                    continue;
                if (best >= 0 && f >= best_left + kmax && i > best)
                    goto next_bucket; /* cannot beat best, nor tie with a lower index */
                if (surely_refused(c->hosts[i].h, req) ||
                    place_plan_fit(c->hosts[i].h, req, &p, NULL) < 0)
                    continue;
                if (p.cores_left < best_left || (p.cores_left == best_left && i < best)) {
                    best = i;
                    best_left = p.cores_left;
                    best_plan = p;
                }
            }
        }
next_bucket:;
    }
    for (size_t i = 0; i < n_avoid; i++) {
        if (avoid[i] >= 0 && (size_t)avoid[i] < c->n)
            c->avoid[avoid[i]] = 0;
    }
    if (best < 0) {
        /* Say why on the host closest to fitting: the one with the most free
         * cores (the lowest index among equals) that is not avoided. */
        int near = -1;
        struct cgv_error why = {.code = CGV_OK};

        if (n_avoided == c->n)
            return cgv_err(err, CGV_E_CONFLICT, "no host for %s: all %zu hosts are avoided",
                           req->vm, c->n);
        for (size_t k = 0; k < n_avoid; k++) {
            if (avoid[k] >= 0 && (size_t)avoid[k] < c->n)
                c->avoid[avoid[k]] = 1;
        }
        for (size_t i = 0; i < c->n; i++) {
            if (!c->avoid[i] && (near < 0 || c->hosts[i].h->free_cores_total >
                                                 c->hosts[near].h->free_cores_total))
                near = (int)i;
        }
        for (size_t k = 0; k < n_avoid; k++) {
            if (avoid[k] >= 0 && (size_t)avoid[k] < c->n)
                c->avoid[avoid[k]] = 0;
        }
        if (place_plan(c->hosts[near].h, req, &p, &why) == 0)
            cgv_err(&why, CGV_E_INTERNAL, "it fits there (a bug)");
        return cgv_err(err, why.code == CGV_E_INVALID ? CGV_E_INVALID : CGV_E_CONFLICT,
                       "no host for %s: %zu %s refuse%s, %zu avoided; on %s (most free cores): %s",
                       req->vm, c->n - n_avoided, c->n - n_avoided == 1 ? "host" : "hosts",
                       c->n - n_avoided == 1 ? "s" : "", n_avoided, c->hosts[near].name,
                       why.msg);
    }
    if (place_find_vm(c->hosts[best].h, req->vm) >= 0)
        return cgv_err(err, CGV_E_CONFLICT, "%s already holds an allocation on %s", req->vm,
                       c->hosts[best].name);
    place_commit(c->hosts[best].h, req, &best_plan, out);
    refile(c, (size_t)best);
    return best;
}

void place_cluster_release(struct place_cluster *c, int host, const char *vm)
{
    if (host < 0 || (size_t)host >= c->n)
        return;
    place_release(c->hosts[host].h, vm);
    refile(c, (size_t)host);
}

int place_cluster_adopt(struct place_cluster *c, int host, const struct place_request *req,
                        const struct place_result *res, struct cgv_error *err)
{
    if (host < 0 || (size_t)host >= c->n)
        return cgv_err(err, CGV_E_NOTFOUND, "no host %d in the cluster", host);
    if (place_adopt(c->hosts[host].h, req, res, err) < 0)
        return -1;
    refile(c, (size_t)host);
    return 0;
}

size_t place_cluster_n_hosts(const struct place_cluster *c)
{
    return c->n;
}

const struct place_host *place_cluster_host(const struct place_cluster *c, int host)
{
    return host >= 0 && (size_t)host < c->n ? c->hosts[host].h : NULL;
}

const char *place_cluster_host_name(const struct place_cluster *c, int host)
{
    return host >= 0 && (size_t)host < c->n ? c->hosts[host].name : NULL;
}
