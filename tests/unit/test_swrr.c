/*
 * test_swrr.c: server selection in modules/core/upstream: the smooth
 * weighted round robin sequence itself, then lb_upstream_pick over an
 * upstream (primaries and backups, max_conns, down servers, least_conn).
 */
#include "lb_core.h"
#include "lb_upstream.h"

#include <check.h>

#define MAX_TEST_SERVERS  8

/* An upstream built by hand: servers[i] is named 'a' + i. */
typedef struct {
    lb_upstream_t             u;
    lb_upstream_server_t      servers[MAX_TEST_SERVERS];
    lb_upstream_peer_state_t  states[MAX_TEST_SERVERS];
} test_upstream_t;

static void
set_weights(lb_upstream_server_t *servers, size_t n, const int64_t *weights)
{
    size_t  i;

    memset(servers, 0, n * sizeof(*servers));
    for (i = 0; i < n; i++) {
        servers[i].weight = weights[i];
    }
}

/* Runs n rounds of lb_upstream_swrr and returns the picks as letters. */
static const char *
swrr_sequence(lb_upstream_server_t *servers, size_t nservers, const bool *usable, int n)
{
    static char  seq[128];
    ssize_t      k;
    int          i;

    ck_assert_int_lt(n, (int) sizeof(seq));
    for (i = 0; i < n; i++) {
        k = lb_upstream_swrr(servers, nservers, usable, 0);
        seq[i] = k < 0 ? '-' : (char) ('a' + k);
    }
    seq[n] = '\0';
    return seq;
}

/* Weights 5,1,1, currents starting at 0 (nginx's smooth algorithm):
 *   add weights     pick  subtract 7
 *   5  1  1         a     -2  1  1
 *   3  2  2         a     -4  2  2
 *   1  3  3         b      1 -4  3
 *   6 -3  4         a     -1 -3  4
 *   4 -2  5         c      4 -2 -2
 *   9 -1 -1         a      2 -1 -1
 *   7  0  0         a      0  0  0   <- back to the start: period 7 */
START_TEST(swrr_weights_5_1_1_interleave)
{
    static const int64_t  w[] = { 5, 1, 1 };
    static const bool     usable[] = { true, true, true };
    lb_upstream_server_t  s[3];

    set_weights(s, 3, w);
    ck_assert_str_eq(swrr_sequence(s, 3, usable, 7), "aabacaa");
    ck_assert_int_eq(s[0].current, 0);
    ck_assert_int_eq(s[1].current, 0);
    ck_assert_int_eq(s[2].current, 0);
}
END_TEST

START_TEST(swrr_is_periodic)
{
    static const int64_t  w[] = { 5, 1, 1 };
    static const bool     usable[] = { true, true, true };
    lb_upstream_server_t  s[3];

    set_weights(s, 3, w);
    ck_assert_str_eq(swrr_sequence(s, 3, usable, 70),
                     "aabacaa" "aabacaa" "aabacaa" "aabacaa" "aabacaa"
                     "aabacaa" "aabacaa" "aabacaa" "aabacaa" "aabacaa");
}
END_TEST

START_TEST(swrr_weights_3_2)
{
    static const int64_t  w[] = { 3, 2 };
    static const bool     usable[] = { true, true };
    lb_upstream_server_t  s[2];

    set_weights(s, 2, w);
    ck_assert_str_eq(swrr_sequence(s, 2, usable, 10), "ababa" "ababa");
}
END_TEST

START_TEST(swrr_equal_weights_alternate)
{
    static const int64_t  w2[] = { 1, 1 }, w3[] = { 4, 4, 4 };
    static const bool     usable[] = { true, true, true };
    lb_upstream_server_t  s[3];

    set_weights(s, 2, w2);
    ck_assert_str_eq(swrr_sequence(s, 2, usable, 6), "ababab");
    set_weights(s, 3, w3);
    ck_assert_str_eq(swrr_sequence(s, 3, usable, 9), "abcabcabc");
}
END_TEST

START_TEST(swrr_skips_unusable_servers)
{
    static const int64_t  w[] = { 5, 1, 1 };
    static const bool     usable[] = { false, true, true };
    lb_upstream_server_t  s[3];

    set_weights(s, 3, w);
    ck_assert_str_eq(swrr_sequence(s, 3, usable, 6), "bcbcbc");
    ck_assert_int_eq(s[0].current, 0);      /* never touched */
}
END_TEST

START_TEST(swrr_all_unusable_is_minus_one)
{
    static const int64_t  w[] = { 5, 1 };
    static const bool     usable[] = { false, false };
    lb_upstream_server_t  s[2];

    set_weights(s, 2, w);
    ck_assert_int_eq(lb_upstream_swrr(s, 2, usable, 0), -1);
    ck_assert_int_eq(s[0].current, 0);
    ck_assert_int_eq(s[1].current, 0);
    ck_assert_int_eq(lb_upstream_swrr(s, 0, usable, 0), -1);
}
END_TEST

/* lb_upstream_pick ------------------------------------------------------ */

/* spec: one char per server, 'p' primary or 'b' backup, primaries first */
static void
make_upstream(test_upstream_t *t, const char *spec, const int64_t *weights,
               const lb_upstream_balancer_t *balance)
{
    size_t  i, n = strlen(spec);

    ck_assert_uint_le(n, MAX_TEST_SERVERS);
    memset(t, 0, sizeof(*t));
    t->u.name = "test";
    t->u.servers = t->servers;
    t->u.nservers = n;
    t->u.balancer = balance;
    for (i = 0; i < n; i++) {
        t->servers[i].weight = weights ? weights[i] : 1;
        t->servers[i].backup = spec[i] == 'b';
        t->servers[i].state = &t->states[i];
        t->states[i].weight = t->servers[i].weight;     /* as the master sets it */
        if (spec[i] == 'p') {
            t->u.nprimary = i + 1;
        }
    }
}

/* Picks for a new connection; returns the letter of the server, or '-'. */
static char
pick_new(test_upstream_t *t, const char **why)
{
    lb_upstream_peer_t      pr;
    lb_upstream_server_t  *s;

    lb_upstream_peer_init(&pr, &t->u);
    s = lb_upstream_pick(&pr, why);
    return s ? (char) ('a' + (s - t->servers)) : '-';
}

static char
pick_in(test_upstream_t *t, lb_upstream_peer_t *pr, const char **why)
{
    lb_upstream_server_t  *s = lb_upstream_pick(pr, why);

    return s ? (char) ('a' + (s - t->servers)) : '-';
}

/* n new connections, each released at once: the letters picked */
static const char *
pick_sequence(test_upstream_t *t, int n)
{
    static char  seq[64];
    const char  *why = NULL;
    int          i;

    for (i = 0; i < n; i++) {
        seq[i] = pick_new(t, &why);
        if (seq[i] != '-') {
            lb_upstream_release(&t->servers[seq[i] - 'a'], LB_PEER_UNUSED);
        }
    }
    seq[n] = '\0';
    return seq;
}

START_TEST(pick_round_robin_follows_swrr)
{
    static const int64_t  w[] = { 5, 1, 1 };
    test_upstream_t       t;

    make_upstream(&t, "ppp", w, &lb_upstream_round_robin);
    ck_assert_str_eq(pick_sequence(&t, 14), "aabacaa" "aabacaa");
}
END_TEST

START_TEST(pick_counts_the_connection_and_release_returns_it)
{
    test_upstream_t        t;
    lb_upstream_peer_t      pr;
    lb_upstream_server_t  *s;
    const char            *why = NULL;

    make_upstream(&t, "p", NULL, &lb_upstream_round_robin);
    lb_upstream_peer_init(&pr, &t.u);
    s = lb_upstream_pick(&pr, &why);
    ck_assert_ptr_eq(s, &t.servers[0]);
    ck_assert_uint_eq(t.states[0].active, 1);
    ck_assert_uint_eq(pr.try.attempts, 1);
    ck_assert(pr.try.tried[0] & 1);
    lb_upstream_release(s, LB_PEER_UNUSED);
    ck_assert_uint_eq(t.states[0].active, 0);
}
END_TEST

START_TEST(pick_prefers_primaries_over_backups)
{
    test_upstream_t  t;

    make_upstream(&t, "ppb", NULL, &lb_upstream_round_robin);
    ck_assert_str_eq(pick_sequence(&t, 6), "ababab");
    ck_assert_uint_eq(t.states[2].active, 0);
}
END_TEST

START_TEST(pick_retries_other_servers_then_backups)
{
    test_upstream_t    t;
    lb_upstream_peer_t  pr;
    const char        *why = NULL;

    make_upstream(&t, "ppbb", NULL, &lb_upstream_round_robin);
    lb_upstream_peer_init(&pr, &t.u);
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'a');
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'b');
    /* every primary tried: now the backups */
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'c');
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'd');
    ck_assert_int_eq(pick_in(&t, &pr, &why), '-');
    ck_assert_str_eq(why, "every server failed");
    ck_assert_uint_eq(pr.try.attempts, 4);
}
END_TEST

START_TEST(pick_uses_backup_when_primaries_are_down)
{
    test_upstream_t  t;
    const char      *why = NULL;

    make_upstream(&t, "ppb", NULL, &lb_upstream_round_robin);
    t.states[0].down = 1;
    ck_assert_str_eq(pick_sequence(&t, 3), "bbb");
    t.states[1].down = 1;
    ck_assert_str_eq(pick_sequence(&t, 3), "ccc");
    t.states[2].down = 1;
    ck_assert_int_eq(pick_new(&t, &why), '-');
    ck_assert_str_eq(why, "every server is down");
    t.states[0].down = 0;
    ck_assert_str_eq(pick_sequence(&t, 2), "aa");
}
END_TEST

START_TEST(pick_respects_max_conns)
{
    test_upstream_t  t;
    const char      *why = NULL;

    make_upstream(&t, "pp", NULL, &lb_upstream_round_robin);
    t.servers[0].max_conns = 2;
    t.servers[1].max_conns = 1;

    /* connections stay open: a, b, a, then both are full */
    ck_assert_int_eq(pick_new(&t, &why), 'a');
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    ck_assert_int_eq(pick_new(&t, &why), 'a');
    ck_assert_uint_eq(t.states[0].active, 2);
    ck_assert_uint_eq(t.states[1].active, 1);
    ck_assert_int_eq(pick_new(&t, &why), '-');
    ck_assert_str_eq(why, "every server is at max_conns");
    ck_assert_uint_eq(t.states[0].active, 2);   /* a failed pick counts nothing */
    ck_assert_uint_eq(t.states[1].active, 1);

    lb_upstream_release(&t.servers[1], LB_PEER_UNUSED);
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    ck_assert_uint_eq(t.states[1].active, 1);
}
END_TEST

START_TEST(pick_max_conns_zero_is_unlimited)
{
    test_upstream_t  t;
    const char      *why = NULL;
    int              i;

    make_upstream(&t, "p", NULL, &lb_upstream_round_robin);
    for (i = 0; i < 1000; i++) {
        ck_assert_int_eq(pick_new(&t, &why), 'a');
    }
    ck_assert_uint_eq(t.states[0].active, 1000);
}
END_TEST

START_TEST(pick_full_primaries_overflow_to_backup)
{
    test_upstream_t  t;
    const char      *why = NULL;

    make_upstream(&t, "pb", NULL, &lb_upstream_round_robin);
    t.servers[0].max_conns = 1;
    ck_assert_int_eq(pick_new(&t, &why), 'a');
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    lb_upstream_release(&t.servers[0], LB_PEER_UNUSED);
    ck_assert_int_eq(pick_new(&t, &why), 'a');
}
END_TEST

START_TEST(pick_why_when_causes_are_mixed)
{
    test_upstream_t    t;
    lb_upstream_peer_t  pr;
    const char        *why = NULL;

    make_upstream(&t, "ppp", NULL, &lb_upstream_round_robin);
    t.states[0].down = 1;
    t.servers[1].max_conns = 1;
    t.states[1].active = 1;
    lb_upstream_peer_init(&pr, &t.u);
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'c');
    ck_assert_int_eq(pick_in(&t, &pr, &why), '-');
    ck_assert_str_eq(why, "no server is up, enabled, below max_conns and untried");
}
END_TEST

START_TEST(pick_why_down_and_tried)
{
    test_upstream_t    t;
    lb_upstream_peer_t  pr;
    const char        *why = NULL;

    make_upstream(&t, "pb", NULL, &lb_upstream_round_robin);
    t.states[1].down = 1;
    lb_upstream_peer_init(&pr, &t.u);
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'a');
    ck_assert_int_eq(pick_in(&t, &pr, &why), '-');
    ck_assert_str_eq(why, "no server is up, enabled, below max_conns and untried");
}
END_TEST

START_TEST(pick_least_conn_picks_the_least_loaded)
{
    test_upstream_t  t;
    const char      *why = NULL;

    make_upstream(&t, "ppp", NULL, &lb_upstream_least_conn);
    t.states[0].active = 5;
    t.states[1].active = 2;
    t.states[2].active = 7;
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    ck_assert_uint_eq(t.states[1].active, 3);
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    /* b now has 5 like a: the tie goes round robin between them */
    ck_assert_int_eq(pick_new(&t, &why), 'a');
    ck_assert_int_eq(pick_new(&t, &why), 'b');
    ck_assert_uint_eq(t.states[0].active, 6);
    ck_assert_uint_eq(t.states[1].active, 6);
    ck_assert_uint_eq(t.states[2].active, 7);
}
END_TEST

START_TEST(pick_least_conn_weighs_connections)
{
    static const int64_t  w[] = { 2, 1 };
    test_upstream_t       t;
    const char           *why = NULL;

    /* 4 connections on weight 2 (2 per unit) beat 3 on weight 1 */
    make_upstream(&t, "pp", w, &lb_upstream_least_conn);
    t.states[0].active = 4;
    t.states[1].active = 3;
    ck_assert_int_eq(pick_new(&t, &why), 'a');
    ck_assert_int_eq(pick_new(&t, &why), 'a');
    /* now 6/2 = 3/1: a tie */
    ck_assert_uint_eq(t.states[0].active, 6);
}
END_TEST

START_TEST(pick_least_conn_skips_down_and_tried)
{
    test_upstream_t    t;
    lb_upstream_peer_t  pr;
    const char        *why = NULL;

    make_upstream(&t, "ppp", NULL, &lb_upstream_least_conn);
    t.states[0].active = 0;
    t.states[0].down = 1;
    t.states[1].active = 9;
    t.states[2].active = 4;
    lb_upstream_peer_init(&pr, &t.u);
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'c');
    ck_assert_int_eq(pick_in(&t, &pr, &why), 'b');
    ck_assert_int_eq(pick_in(&t, &pr, &why), '-');
}
END_TEST

START_TEST(pick_random_two_of_two_takes_the_less_loaded)
{
    test_upstream_t  t;
    const char      *why = NULL;
    int              i;

    /* with two servers both are always the two choices */
    make_upstream(&t, "pp", NULL, &lb_upstream_random_two);
    t.states[0].active = 100;
    for (i = 0; i < 50; i++) {
        ck_assert_int_eq(pick_new(&t, &why), 'b');
    }
    ck_assert_uint_eq(t.states[1].active, 50);
}
END_TEST

static Suite *
swrr_suite(void)
{
    Suite  *s = suite_create("swrr");
    TCase  *tc;

    tc = tcase_create("swrr");
    tcase_add_test(tc, swrr_weights_5_1_1_interleave);
    tcase_add_test(tc, swrr_is_periodic);
    tcase_add_test(tc, swrr_weights_3_2);
    tcase_add_test(tc, swrr_equal_weights_alternate);
    tcase_add_test(tc, swrr_skips_unusable_servers);
    tcase_add_test(tc, swrr_all_unusable_is_minus_one);
    suite_add_tcase(s, tc);

    tc = tcase_create("pick");
    tcase_add_test(tc, pick_round_robin_follows_swrr);
    tcase_add_test(tc, pick_counts_the_connection_and_release_returns_it);
    tcase_add_test(tc, pick_prefers_primaries_over_backups);
    tcase_add_test(tc, pick_retries_other_servers_then_backups);
    tcase_add_test(tc, pick_uses_backup_when_primaries_are_down);
    tcase_add_test(tc, pick_respects_max_conns);
    tcase_add_test(tc, pick_max_conns_zero_is_unlimited);
    tcase_add_test(tc, pick_full_primaries_overflow_to_backup);
    tcase_add_test(tc, pick_why_when_causes_are_mixed);
    tcase_add_test(tc, pick_why_down_and_tried);
    tcase_add_test(tc, pick_least_conn_picks_the_least_loaded);
    tcase_add_test(tc, pick_least_conn_weighs_connections);
    tcase_add_test(tc, pick_least_conn_skips_down_and_tried);
    tcase_add_test(tc, pick_random_two_of_two_takes_the_less_loaded);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(swrr_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
