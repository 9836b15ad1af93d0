/* place_cpuset.c — CPU sets in libvirt's cpuset syntax ("0-3,^2,8"), and
 * the names of the placement policies. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place_int.h"

void place_cpuset_clear(struct place_cpuset *s)
{
    memset(s, 0, sizeof(*s));
}

void place_cpuset_add(struct place_cpuset *s, unsigned cpu)
{
    if (cpu < PLACE_MAX_CPUS)
        place_bit_set(s->bits, cpu);
}

bool place_cpuset_has(const struct place_cpuset *s, unsigned cpu)
{
    return cpu < PLACE_MAX_CPUS && place_bit(s->bits, cpu);
}

unsigned place_cpuset_count(const struct place_cpuset *s)
{
    unsigned n = 0;

    for (unsigned w = 0; w < PLACE_WORDS; w++)
        n += (unsigned)__builtin_popcountll(s->bits[w]);
    return n;
}

void place_cpuset_format(const struct place_cpuset *s, char *buf, size_t cap)
{
    size_t len = 0;
    unsigned cpu = 0;

    if (cap == 0)
        return;
    buf[0] = '\0';
    while (cpu < PLACE_MAX_CPUS) {
        unsigned end;
        int n;

        if (!place_bit(s->bits, cpu)) {
            cpu++;
            continue;
        }
        end = cpu;
        while (end + 1 < PLACE_MAX_CPUS && place_bit(s->bits, end + 1))
            end++;
        if (end == cpu)
            n = snprintf(buf + len, cap - len, "%s%u", len ? "," : "", cpu);
        else
            n = snprintf(buf + len, cap - len, "%s%u-%u", len ? "," : "", cpu, end);
        if (n < 0 || (size_t)n >= cap - len) {
            buf[len] = '\0'; /* do not leave half a range */
            return;
        }
        len += (size_t)n;
        cpu = end + 1;
    }
}

static int parse_num(const char **pp, unsigned *out)
{
    const char *p = *pp;
    unsigned long v = 0;

    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v >= PLACE_MAX_CPUS)
            return -2;
        p++;
    }
    *pp = p;
    *out = (unsigned)v;
    return 0;
}

int place_cpuset_parse(const char *text, struct place_cpuset *out, struct cgv_error *err)
{
    const char *p = text;
    struct place_cpuset s;

    place_cpuset_clear(&s);
    while (isspace((unsigned char)*p))
        p++;
    while (*p && !isspace((unsigned char)*p)) {
        bool neg = false;
        unsigned a, b;
        int rc;

        if (*p == '^') {
            neg = true;
            p++;
        }
        rc = parse_num(&p, &a);
        if (rc == 0 && !neg && *p == '-') {
            p++;
            rc = parse_num(&p, &b);
            if (rc == 0 && b < a)
                return cgv_err(err, CGV_E_INVALID, "cpuset '%s': range %u-%u goes down", text, a,
                               b);
        } else {
            b = a;
        }
        if (rc == -2)
            return cgv_err(err, CGV_E_INVALID, "cpuset '%s': CPU number above %u", text,
                           PLACE_MAX_CPUS - 1);
        if (rc < 0)
            return cgv_err(err, CGV_E_INVALID, "cpuset '%s': expected a CPU number at '%s'",
                           text, p);
        for (unsigned c = a; c <= b; c++) {
            if (neg)
                place_bit_clr(s.bits, c);
            else
                place_bit_set(s.bits, c);
        }
        if (*p == ',') {
            p++;
            if (!*p || isspace((unsigned char)*p))
                return cgv_err(err, CGV_E_INVALID, "cpuset '%s': ends with ','", text);
        } else if (*p && !isspace((unsigned char)*p)) {
            return cgv_err(err, CGV_E_INVALID, "cpuset '%s': unexpected '%c'", text, *p);
        }
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p)
        return cgv_err(err, CGV_E_INVALID, "cpuset '%s': unexpected text after the list", text);
    *out = s;
    return 0;
}

const char *place_policy_name(enum place_policy p)
{
    switch (p) {
    case PLACE_FLOATING: return "floating";
    case PLACE_DEDICATED: return "dedicated";
    case PLACE_SHARED_GROUP: return "shared-group";
    case PLACE_PINNED: return "pinned";
    }
    return "unknown";
}

uint32_t place_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}
