/* Tests of the availability policy (src/ha): scenario files replayed
 * against the policy with their transcript compared to an expected file
 * (REGENERATE=1 rewrites them), and random fault storms checking that no
 * assignment ever has two actives. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ha.h"

#ifndef HA_FIXTURES
#error "HA_FIXTURES must name the scenario directory"
#endif

static void check_invariants(const struct ha_svc *s, const char *where)
{
    if (s->model == HA_2N || s->model == HA_NPM) {
        for (unsigned a = 0; a < s->n_assign; a++) {
            if (ha_actives_for(s, (int)a) > 1)
                fail_msg("%s: assignment %u has %u actives", where, a,
                         ha_actives_for(s, (int)a));
        }
    }
    for (unsigned i = 0; i < s->n_inst; i++) {
        const struct ha_inst *in = &s->inst[i];
        if (in->role == HA_ROLE_ACTIVE && in->dead)
            fail_msg("%s: instance %u is active and dead", where, i);
    }
}

static void print_plan(FILE *out, const struct ha_plan *p)
{
    for (size_t k = 0; k < p->n; k++) {
        const struct ha_act *a = &p->acts[k];
        fprintf(out, "  %s %d", ha_act_name(a->kind), a->inst);
        if (a->kind == HA_ACT_ROLE) {
            fprintf(out, " %s", ha_role_name(a->role));
            if (a->assignment >= 0)
                fprintf(out, " a%d", a->assignment);
            fprintf(out, " gen %llu", (unsigned long long)a->gen);
        }
        if (a->why[0])
            fprintf(out, " (%s)", a->why);
        fputc('\n', out);
    }
}

static void print_state(FILE *out, const struct ha_svc *s, int64_t now)
{
    fprintf(out, "  =");
    for (unsigned i = 0; i < s->n_inst; i++) {
        const struct ha_inst *in = &s->inst[i];
        fprintf(out, " %u:%s", i, ha_state_name(in->state));
        if (in->role != HA_ROLE_NONE) {
            fprintf(out, "/%s", ha_role_name(in->role));
            if (in->assignment >= 0)
                fprintf(out, "%d", in->assignment);
            fprintf(out, "%s", in->role_acked ? "" : "?");
        }
    }
    fprintf(out, " | %s downtime %lld ms outages %u\n", ha_service_up(s) ? "up" : "DOWN",
            (long long)ha_downtime_ms(s, now), s->n_outages);
}

static enum ha_model parse_model(const char *m)
{
    if (strcmp(m, "2n") == 0)
        return HA_2N;
    if (strcmp(m, "n+m") == 0)
        return HA_NPM;
    if (strcmp(m, "nway-active") == 0)
        return HA_NWAY;
    return HA_NONE;
}

static int parse_fault(const char *f)
{
    for (int k = 0; k < HA_F_COUNT; k++) {
        if (strcmp(ha_fault_name((enum ha_fault)k), f) == 0)
            return k;
    }
    return -1;
}

/* Replay one scenario into a transcript. */
static char *replay(const char *path)
{
    FILE *in = fopen(path, "r");
    char *buf = NULL, line[256];
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    static struct ha_svc s;
    struct ha_plan p;
    int64_t now = 0;
    int lineno = 0;

    assert_non_null(in);
    assert_non_null(out);
    memset(&s, 0, sizeof(s));
    while (fgets(line, sizeof(line), in)) {
        char cmd[32] = "", arg[32] = "";
        int i = -1;
        long long a1 = 0, a2 = 0, a3 = 0, a4 = 0;
        char where[300];

        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            fprintf(out, "%s\n", line);
            continue;
        }
        fprintf(out, "> %s\n", line);
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        p.n = 0;
        if (strncmp(line, "init ", 5) == 0) {
            long long fwin = 0;
            /* init MODEL N STANDBYS RESTART_MAX RESTART_WINDOW FAILOVER_MAX FAILOVER_WINDOW */
            if (sscanf(line, "init %31s %d %lld %lld %lld %lld %lld", arg, &i, &a1, &a2, &a3,
                       &a4, &fwin) != 7)
                fail_msg("%s: init MODEL N STANDBYS RMAX RWIN FMAX FWIN", where);
            ha_svc_init(&s, parse_model(arg), (unsigned)i, (unsigned)a1,
                        (struct ha_limit){(unsigned)a2, a3},
                        (struct ha_limit){(unsigned)a4, fwin}, now);
        } else if (sscanf(line, "at %lld", &a1) == 1) {
            now = a1;
            continue;
        } else if (sscanf(line, "%31s %d %31s", cmd, &i, arg) >= 2) {
            if (i < 0 || (unsigned)i >= s.n_inst)
                fail_msg("%s: bad instance", where);
            if (strcmp(cmd, "started") == 0) {
                ha_started(&s, i, now);
            } else if (strcmp(cmd, "healthy") == 0) {
                ha_healthy(&s, i, now, &p);
            } else if (strcmp(cmd, "fault") == 0) {
                int f = parse_fault(arg);
                if (f < 0)
                    fail_msg("%s: unknown fault %s", where, arg);
                ha_fault(&s, i, (enum ha_fault)f, now, &p);
            } else if (strcmp(cmd, "fenced") == 0) {
                ha_fenced(&s, i, now, &p);
            } else if (strcmp(cmd, "ack") == 0) {
                uint64_t gen = arg[0] ? strtoull(arg, NULL, 10) : s.inst[i].role_gen;
                fprintf(out, "  acked=%s\n", ha_acked(&s, i, gen, now) ? "yes" : "no");
                ha_after_ack(&s, i, now, &p);
            } else if (strcmp(cmd, "drain") == 0) {
                fprintf(out, "  switchover=%s\n", ha_drain(&s, i, now, &p) ? "yes" : "no");
            } else if (strcmp(cmd, "drained?") == 0) {
                fprintf(out, "  drained=%s\n", ha_drained(&s, i) ? "yes" : "no");
            } else if (strcmp(cmd, "restart_failed") == 0) {
                ha_restart_failed(&s, i, now, &p);
            } else if (strcmp(cmd, "stop") == 0) {
                ha_operator_stop(&s, i, now, &p);
            } else {
                fail_msg("%s: unknown command %s", where, cmd);
            }
        } else {
            fail_msg("%s: cannot parse '%s'", where, line);
        }
        ha_account(&s, now, cmd);
        print_plan(out, &p);
        print_state(out, &s, now);
        check_invariants(&s, where);
    }
    fclose(in);
    fclose(out);
    return buf;
}

static void test_scenario(void **state)
{
    const char *name = *state;
    char path[512], exp_path[512];
    char *got = replay((snprintf(path, sizeof(path), "%s/%s", HA_FIXTURES, name), path));
    FILE *f;

    snprintf(exp_path, sizeof(exp_path), "%s/%.*s.expected", HA_FIXTURES,
             (int)(strlen(name) - 4), name);
    if (getenv("REGENERATE")) {
        f = fopen(exp_path, "w");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    } else {
        char *want = NULL;
        size_t n = 0;
        f = fopen(exp_path, "r");
        if (!f)
            fail_msg("%s: %s (run with REGENERATE=1)", exp_path, strerror(errno));
        want = malloc(1 << 20);
        n = fread(want, 1, (1 << 20) - 1, f);
        want[n] = '\0';
        fclose(f);
        if (strcmp(want, got) != 0) {
            print_error("%s differs; got:\n%s\n", exp_path, got);
            free(want);
            free(got);
            fail();
        }
        free(want);
    }
    free(got);
}

/* Random storms of every kind of fault, with a random order of completions:
 * never two actives for one assignment; every plan's role numbers grow. */
static void storm(enum ha_model model, unsigned n, unsigned standbys, unsigned seed)
{
    static struct ha_svc s;
    struct ha_plan p;
    int64_t now = 0;
    uint64_t last_gen = 0;
    bool pending_fence[HA_MAX_INST] = {0}, pending_restart[HA_MAX_INST] = {0};

    srand(seed);
    ha_svc_init(&s, model, n, standbys, (struct ha_limit){3, 60000},
                (struct ha_limit){5, 300000}, 0);
    for (unsigned i = 0; i < n; i++)
        ha_started(&s, (int)i, 0);
    for (int step = 0; step < 20000; step++) {
        int i = rand() % (int)n;
        int what = rand() % 8;
        now += rand() % 500;
        p.n = 0;
        switch (what) {
        case 0:
            ha_healthy(&s, i, now, &p);
            break;
        case 1:
            ha_fault(&s, i, (enum ha_fault)(rand() % HA_F_COUNT), now, &p);
            break;
        case 2:
            if (pending_fence[i]) {
                pending_fence[i] = false;
                ha_fenced(&s, i, now, &p);
            }
            break;
        case 3:
            if (pending_restart[i]) {
                pending_restart[i] = false;
                if (rand() % 10 == 0)
                    ha_restart_failed(&s, i, now, &p);
                else
                    ha_started(&s, i, now);
            }
            break;
        case 4:
            ha_acked(&s, i, s.inst[i].role_gen - (uint64_t)(rand() % 2), now);
            ha_after_ack(&s, i, now, &p);
            break;
        case 6:
            if (rand() % 5 == 0)
                ha_drain(&s, i, now, &p);
            break;
        case 5:
            if (rand() % 50 == 0)
                ha_operator_stop(&s, i, now, &p);
            else if (s.inst[i].state == HA_I_FAILED || s.inst[i].state == HA_I_STOPPED)
                ha_started(&s, i, now);
            break;
        default:
            break;
        }
        for (size_t k = 0; k < p.n; k++) {
            const struct ha_act *a = &p.acts[k];
            if (a->kind == HA_ACT_FENCE)
                pending_fence[a->inst] = true;
            if (a->kind == HA_ACT_RESTART)
                pending_restart[a->inst] = true;
            if (a->kind == HA_ACT_ROLE) {
                assert_true(a->gen > last_gen);
                last_gen = a->gen;
            }
        }
        ha_account(&s, now, "storm");
        check_invariants(&s, "storm");
        assert_true(ha_availability(&s, now) >= 0.0 && ha_availability(&s, now) <= 1.0);
    }
}

static void test_storm_2n(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 20; seed++)
        storm(HA_2N, 2, 1, seed);
}

static void test_storm_npm(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 20; seed++)
        storm(HA_NPM, 5, 2, seed);
}

static void test_storm_nway_none(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 10; seed++) {
        storm(HA_NWAY, 3, 0, seed);
        storm(HA_NONE, 3, 0, seed);
    }
}

/* A model change keeps the instances' state: ha_rebalance() gives the
 * healthy ones the roles of the new model, never two actives. */
static void test_rebalance_model_change(void **state)
{
    struct ha_svc s, n;
    struct ha_plan p;
    struct ha_limit lim = {3, 600000};
    unsigned actives = 0, standbys = 0;

    (void)state;
    ha_svc_init(&s, HA_NONE, 2, 0, lim, lim, 0);
    for (int i = 0; i < 2; i++) {
        ha_started(&s, i, 1);
        ha_healthy(&s, i, 2, &p);
        assert_int_equal(p.n, 1);
        assert_true(ha_acked(&s, i, p.acts[0].gen, 3));
    }
    assert_int_equal(s.inst[1].role, HA_ROLE_ACTIVE);
    assert_int_equal(s.inst[1].assignment, 1);

    /* none -> 2n, as vmm_ha_service_init does: keep the instances, drop
     * assignments the new model does not have. */
    ha_svc_init(&n, HA_2N, 2, 1, lim, lim, 0);
    memcpy(n.inst, s.inst, sizeof(n.inst[0]) * 2);
    n.generation = s.generation;
    n.inst[1].role = HA_ROLE_NONE;
    n.inst[1].assignment = -1;
    ha_rebalance(&n, 10, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.acts[0].kind, HA_ACT_ROLE);
    assert_int_equal(p.acts[0].inst, 1);
    assert_int_equal(p.acts[0].role, HA_ROLE_STANDBY);
    for (unsigned i = 0; i < 2; i++) {
        actives += n.inst[i].role == HA_ROLE_ACTIVE;
        standbys += n.inst[i].role == HA_ROLE_STANDBY;
    }
    assert_int_equal(actives, 1);
    assert_int_equal(standbys, 1);
    check_invariants(&n, "none -> 2n");

    /* 2n -> none: the standby becomes the active of its own assignment. */
    ha_svc_init(&s, HA_NONE, 2, 0, lim, lim, 0);
    memcpy(s.inst, n.inst, sizeof(s.inst[0]) * 2);
    s.generation = n.generation;
    ha_rebalance(&s, 20, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.acts[0].inst, 1);
    assert_int_equal(p.acts[0].role, HA_ROLE_ACTIVE);
    assert_int_equal(p.acts[0].assignment, 1);

    /* Nothing to do when every healthy instance has its role. */
    ha_rebalance(&s, 30, &p);
    assert_int_equal(p.n, 0);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_scn(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 4 && strcmp(d->d_name + n - 4, ".scn") == 0;
}

int main(void)
{
    struct dirent **names = NULL;
    int n = scandir(HA_FIXTURES, &names, is_scn, by_name);
    struct CMUnitTest *tests;
    int k = 0, rc;

    if (n < 1) {
        fprintf(stderr, "no scenarios in %s\n", HA_FIXTURES);
        return 1;
    }
    tests = calloc((size_t)n + 4, sizeof(*tests));
    for (int i = 0; i < n; i++) {
        tests[k].name = names[i]->d_name;
        tests[k].test_func = test_scenario;
        tests[k].initial_state = names[i]->d_name;
        k++;
    }
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_storm_2n);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_storm_npm);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_storm_nway_none);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_rebalance_model_change);
    rc = _cmocka_run_group_tests("ha", tests, (size_t)k, NULL, NULL);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc;
}
