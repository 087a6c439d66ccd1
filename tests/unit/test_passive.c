/*
 * test_passive.c: passive health in modules/core/upstream: the failure
 * window (max_fails within fail_timeout), one trial per fail_timeout, a
 * success bringing a server back, and how lb_upstream_pick skips failed
 * servers, falls back to backups and to failed servers last.
 */
#include "lb_core.h"
#include "lb_upstream.h"

#include <check.h>

#define MAX_TEST_SERVERS  4

static const lb_upstream_passive_t  one_in_10s = { 1, 10000 };
static const lb_upstream_passive_t  three_in_10s = { 3, 10000 };

/* The failure record ------------------------------------------------------ */

START_TEST(one_failure_marks_the_server_with_max_fails_1)
{
    lb_upstream_peer_state_t  st;

    memset(&st, 0, sizeof(st));
    ck_assert(lb_upstream_fail_note(&st, &one_in_10s, 5000));
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_int_eq(st.retry_at, 15000);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 5000), LB_DECLINED);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 14999), LB_DECLINED);
}
END_TEST

START_TEST(max_fails_must_fall_within_fail_timeout)
{
    lb_upstream_peer_state_t  st;

    memset(&st, 0, sizeof(st));
    /* 0, 5s, 10s: the third is out of the window that began at 0 */
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 1000));
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 6000));
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 11000));
    ck_assert_uint_eq(st.fails, 1);
    ck_assert_int_eq(st.fail_start, 11000);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &three_in_10s, 11000), LB_OK);
    /* three within 10s of the window's start */
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 15000));
    ck_assert(lb_upstream_fail_note(&st, &three_in_10s, 20999));
    ck_assert_int_eq(st.retry_at, 30999);
}
END_TEST

START_TEST(a_success_restarts_the_count)
{
    lb_upstream_peer_state_t  st;

    memset(&st, 0, sizeof(st));
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 1000));
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 2000));
    ck_assert(!lb_upstream_fail_clear(&st));        /* it was not failed */
    ck_assert_uint_eq(st.fails, 0);
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 3000));
    ck_assert(!lb_upstream_fail_note(&st, &three_in_10s, 4000));
    ck_assert(lb_upstream_fail_note(&st, &three_in_10s, 5000));
}
END_TEST

START_TEST(one_trial_per_fail_timeout)
{
    lb_upstream_peer_state_t  st;

    memset(&st, 0, sizeof(st));
    ck_assert(lb_upstream_fail_note(&st, &one_in_10s, 0));
    /* due at 10s: the first check takes the trial, the others wait */
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 10000), LB_AGAIN);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 10000), LB_DECLINED);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 19999), LB_DECLINED);
    /* the trial failed: nothing changes, the next one is 10s after it */
    ck_assert(!lb_upstream_fail_note(&st, &one_in_10s, 10050));
    ck_assert_int_eq(st.retry_at, 20000);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 25000), LB_AGAIN);
    ck_assert_int_eq(st.retry_at, 35000);
}
END_TEST

START_TEST(a_success_brings_a_failed_server_back)
{
    lb_upstream_peer_state_t  st;

    memset(&st, 0, sizeof(st));
    ck_assert(lb_upstream_fail_note(&st, &one_in_10s, 0));
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 10000), LB_AGAIN);
    ck_assert(lb_upstream_fail_clear(&st));
    ck_assert(!lb_upstream_fail_clear(&st));        /* one transition, one line */
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_eq(st.fails, 0);
    ck_assert_int_eq(lb_upstream_fail_check(&st, &one_in_10s, 10001), LB_OK);
    /* and a new failure marks it again at once */
    ck_assert(lb_upstream_fail_note(&st, &one_in_10s, 12000));
}
END_TEST

/* lb_upstream_pick with passive health ------------------------------------ */

typedef struct {
    lb_upstream_t             u;
    lb_upstream_server_t      servers[MAX_TEST_SERVERS];
    lb_upstream_peer_state_t  states[MAX_TEST_SERVERS];
} test_upstream_t;

/* spec: 'p' primary, 'b' backup, primaries first; passive max_fails = 1,
 * fail_timeout = 1s; servers[i] is named 'a' + i */
static void
make_upstream(test_upstream_t *t, const char *spec, int64_t max_fails)
{
    size_t  i, n = strlen(spec);

    ck_assert_uint_le(n, MAX_TEST_SERVERS);
    memset(t, 0, sizeof(*t));
    t->u.name = "test";
    t->u.servers = t->servers;
    t->u.nservers = n;
    t->u.passive.max_fails = max_fails;
    t->u.passive.fail_timeout = 1000;
    t->u.balancer = &lb_upstream_round_robin;
    for (i = 0; i < n; i++) {
        t->servers[i].weight = 1;
        t->servers[i].backup = spec[i] == 'b';
        t->servers[i].state = &t->states[i];
        t->states[i].weight = 1;        /* the master's copy, as at load */
        t->servers[i].upstream = &t->u;
        snprintf(t->servers[i].addr.text, sizeof(t->servers[i].addr.text),
                 "127.0.0.1:%zu", 5301 + i);
        if (spec[i] == 'p') {
            t->u.nprimary = i + 1;
        }
    }
}

/* A new connection at time now, released at once: its server's letter or
 * '-'; *trial tells whether it was a trial. */
static char
pick_at(test_upstream_t *t, lb_msec_t now, bool *trial)
{
    lb_upstream_peer_t      pr;
    lb_upstream_server_t  *s;
    const char            *why = NULL;

    lb_current_msec = now;
    lb_upstream_peer_init(&pr, &t->u);
    s = lb_upstream_pick(&pr, &why);
    if (s == NULL) {
        return '-';
    }
    lb_upstream_release(s, LB_PEER_UNUSED);
    if (trial) {
        *trial = pr.try.trial;
    }
    return (char) ('a' + (s - t->servers));
}

static const char *
picks_at(test_upstream_t *t, lb_msec_t now, int n)
{
    static char  seq[32];
    int          i;

    for (i = 0; i < n; i++) {
        seq[i] = pick_at(t, now, NULL);
    }
    seq[n] = '\0';
    return seq;
}

static void
fail_at(test_upstream_t *t, char server, lb_msec_t now)
{
    lb_current_msec = now;
    lb_upstream_connected(&t->servers[server - 'a'], false);
}

START_TEST(pick_skips_failed_primaries_then_uses_the_backup)
{
    test_upstream_t  t;

    make_upstream(&t, "ppb", 1);
    ck_assert_str_eq(picks_at(&t, 100, 4), "abab");
    fail_at(&t, 'a', 100);
    ck_assert_str_eq(picks_at(&t, 200, 3), "bbb");
    fail_at(&t, 'b', 200);
    ck_assert_str_eq(picks_at(&t, 300, 3), "ccc");
}
END_TEST

START_TEST(pick_gives_a_due_server_one_trial_and_a_success_brings_it_back)
{
    test_upstream_t  t;
    bool             trial = false;

    make_upstream(&t, "pp", 1);
    fail_at(&t, 'a', 0);
    ck_assert_str_eq(picks_at(&t, 999, 3), "bbb");
    ck_assert_int_eq(pick_at(&t, 1000, &trial), 'a');
    ck_assert(trial);
    ck_assert_int_eq(pick_at(&t, 1000, &trial), 'b');
    ck_assert(!trial);
    ck_assert_str_eq(picks_at(&t, 1500, 3), "bbb");
    lb_upstream_connected(&t.servers[0], true);
    ck_assert_str_eq(picks_at(&t, 1600, 4), "abab");
}
END_TEST

START_TEST(pick_uses_failed_servers_when_nothing_else_is_left)
{
    test_upstream_t  t;
    bool             trial = false;

    make_upstream(&t, "pb", 1);
    fail_at(&t, 'a', 0);
    fail_at(&t, 'b', 0);
    ck_assert_int_eq(pick_at(&t, 10, &trial), 'a');
    ck_assert(trial);
    ck_assert_str_eq(picks_at(&t, 10, 2), "aa");    /* primaries first still */
}
END_TEST

START_TEST(pick_max_fails_0_never_marks_a_server)
{
    test_upstream_t  t;
    int              i;

    make_upstream(&t, "pb", 0);
    for (i = 0; i < 10; i++) {
        fail_at(&t, 'a', 100);
    }
    ck_assert_uint_eq(t.states[0].fails, 10);       /* still counted */
    ck_assert_uint_eq(t.states[0].failed, 0);
    ck_assert_str_eq(picks_at(&t, 200, 3), "aaa");
}
END_TEST

static Suite *
passive_suite(void)
{
    Suite  *s = suite_create("passive");
    TCase  *tc;

    tc = tcase_create("record");
    tcase_add_test(tc, one_failure_marks_the_server_with_max_fails_1);
    tcase_add_test(tc, max_fails_must_fall_within_fail_timeout);
    tcase_add_test(tc, a_success_restarts_the_count);
    tcase_add_test(tc, one_trial_per_fail_timeout);
    tcase_add_test(tc, a_success_brings_a_failed_server_back);
    suite_add_tcase(s, tc);

    tc = tcase_create("pick");
    tcase_add_test(tc, pick_skips_failed_primaries_then_uses_the_backup);
    tcase_add_test(tc, pick_gives_a_due_server_one_trial_and_a_success_brings_it_back);
    tcase_add_test(tc, pick_uses_failed_servers_when_nothing_else_is_left);
    tcase_add_test(tc, pick_max_fails_0_never_marks_a_server);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(passive_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
