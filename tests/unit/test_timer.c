/*
 * test_timer.c: the timer heap of core/lb_timer.c: expiry order, moving
 * and deleting armed timers, the delay until the next timer, and the heap
 * invariant after every kind of change.
 */
#include "lb_core.h"

#include <check.h>

#define MANY  10000

/* What the handlers saw, in firing order. */
static lb_msec_t   fired_when[MANY];
static intptr_t    fired_id[MANY];
static size_t      nfired;
static lb_msec_t   now;

static void
record(lb_timer_t *t)
{
    if (nfired >= MANY || t->when > now || lb_timer_is_set(t)) {
        ck_abort_msg("timer for %lld fired at %lld (armed: %d, fired before: %zu)",
                     (long long) t->when, (long long) now, lb_timer_is_set(t), nfired);
    }
    fired_when[nfired] = t->when;
    fired_id[nfired] = (intptr_t) t->data;
    nfired++;
}

static void
reset_record(void)
{
    nfired = 0;
    now = 0;
}

/* Every parent expires no later than its children, and every timer knows
 * its own index. (One assertion per call: each ck_assert costs a write.) */
static void
assert_heap_ok(const lb_timer_heap_t *h)
{
    size_t  i;

    for (i = 0; i < h->n; i++) {
        if (h->items[i]->index != i
            || (i > 0 && h->items[(i - 1) / 2]->when > h->items[i]->when))
        {
            break;
        }
    }
    ck_assert_msg(i == h->n, "heap broken at index %zu of %zu", i, h->n);
}

static void
assert_fired_in_order(void)
{
    size_t  i;

    for (i = 1; i < nfired && fired_when[i - 1] <= fired_when[i]; i++) { /* scan */ }
    ck_assert_msg(i >= nfired, "timer %zu (%lld) fired before timer %zu (%lld)",
                  i - 1, (long long) fired_when[i - 1], i, (long long) fired_when[i]);
}

START_TEST(timers_expire_in_order)
{
    static lb_timer_t  t[200];
    lb_timer_heap_t    h;
    size_t             i;

    reset_record();
    srandom(12345);
    ck_assert_int_eq(lb_timer_heap_init(&h, 4), LB_OK);
    for (i = 0; i < lb_nelems(t); i++) {
        lb_timer_init(&t[i], record, (void *) (intptr_t) i);
        ck_assert_int_eq(lb_timer_heap_set(&h, &t[i], random() % 1000), LB_OK);
        assert_heap_ok(&h);
    }
    ck_assert_uint_eq(h.n, 200);

    now = 1000;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 200);
    ck_assert_uint_eq(h.n, 0);
    assert_fired_in_order();
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(expire_runs_only_due_timers)
{
    lb_timer_t       a, b, c;
    lb_timer_heap_t  h;

    reset_record();
    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    lb_timer_init(&a, record, (void *) 1);
    lb_timer_init(&b, record, (void *) 2);
    lb_timer_init(&c, record, (void *) 3);
    lb_timer_heap_set(&h, &a, 100);
    lb_timer_heap_set(&h, &b, 200);
    lb_timer_heap_set(&h, &c, 300);

    now = 99;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 0);

    now = 200;                  /* due exactly now counts as due */
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 2);
    ck_assert_int_eq(fired_id[0], 1);
    ck_assert_int_eq(fired_id[1], 2);
    ck_assert(lb_timer_is_set(&c));
    ck_assert_ptr_eq(lb_timer_heap_min(&h), &c);
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(delete_from_the_middle_keeps_heap_order)
{
    static lb_timer_t  t[500];
    lb_timer_heap_t    h;
    size_t             i;

    reset_record();
    srandom(42);
    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    for (i = 0; i < lb_nelems(t); i++) {
        lb_timer_init(&t[i], record, (void *) (intptr_t) i);
        lb_timer_heap_set(&h, &t[i], 1 + random() % 10000);
    }
    for (i = 0; i < lb_nelems(t); i += 3) {
        lb_timer_heap_del(&h, &t[i]);
        ck_assert(!lb_timer_is_set(&t[i]));
        assert_heap_ok(&h);
    }
    ck_assert_uint_eq(h.n, 500 - 167);

    now = 10000;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 500 - 167);
    assert_fired_in_order();
    for (i = 0; i < nfired; i++) {
        ck_assert_msg(fired_id[i] % 3 != 0, "deleted timer %ld fired", (long) fired_id[i]);
    }
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(setting_an_armed_timer_moves_it)
{
    lb_timer_t       a, b;
    lb_timer_heap_t  h;

    reset_record();
    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    lb_timer_init(&a, record, (void *) 1);
    lb_timer_init(&b, record, (void *) 2);
    lb_timer_heap_set(&h, &a, 100);
    lb_timer_heap_set(&h, &b, 200);
    ck_assert_ptr_eq(lb_timer_heap_min(&h), &a);

    lb_timer_heap_set(&h, &a, 300);         /* later */
    ck_assert_uint_eq(h.n, 2);
    ck_assert_int_eq(a.when, 300);
    ck_assert_ptr_eq(lb_timer_heap_min(&h), &b);
    assert_heap_ok(&h);

    lb_timer_heap_set(&h, &a, 50);          /* earlier */
    ck_assert_uint_eq(h.n, 2);
    ck_assert_ptr_eq(lb_timer_heap_min(&h), &a);
    assert_heap_ok(&h);

    now = 1000;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 2);           /* each fires once */
    ck_assert_int_eq(fired_id[0], 1);
    ck_assert_int_eq(fired_when[0], 50);
    ck_assert_int_eq(fired_id[1], 2);
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(moving_timers_at_random_keeps_heap_order)
{
    static lb_timer_t  t[300];
    lb_timer_heap_t    h;
    size_t             i, k;

    reset_record();
    srandom(7);
    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    for (i = 0; i < lb_nelems(t); i++) {
        lb_timer_init(&t[i], record, (void *) (intptr_t) i);
        lb_timer_heap_set(&h, &t[i], random() % 5000);
    }
    for (k = 0; k < 3000; k++) {
        lb_timer_heap_set(&h, &t[(size_t) random() % lb_nelems(t)], random() % 5000);
        assert_heap_ok(&h);
    }
    ck_assert_uint_eq(h.n, 300);
    now = 5000;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 300);
    assert_fired_in_order();
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(delay_until_the_next_timer)
{
    lb_timer_t       a, b;
    lb_timer_heap_t  h;

    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    ck_assert_int_eq(lb_timer_heap_delay(&h, 0), -1);
    ck_assert_ptr_null(lb_timer_heap_min(&h));

    lb_timer_init(&a, record, NULL);
    lb_timer_init(&b, record, NULL);
    lb_timer_heap_set(&h, &a, 100);
    lb_timer_heap_set(&h, &b, 70);
    ck_assert_int_eq(lb_timer_heap_delay(&h, 40), 30);
    ck_assert_int_eq(lb_timer_heap_delay(&h, 70), 0);
    ck_assert_int_eq(lb_timer_heap_delay(&h, 150), 0);      /* overdue */
    lb_timer_heap_del(&h, &b);
    ck_assert_int_eq(lb_timer_heap_delay(&h, 40), 60);
    lb_timer_heap_del(&h, &a);
    ck_assert_int_eq(lb_timer_heap_delay(&h, 40), -1);
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(deleting_an_unset_timer_is_a_noop)
{
    lb_timer_t       a, b;
    lb_timer_heap_t  h;

    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    lb_timer_init(&a, record, NULL);
    lb_timer_init(&b, record, NULL);
    lb_timer_heap_set(&h, &a, 10);

    lb_timer_heap_del(&h, &b);              /* never armed */
    ck_assert_uint_eq(h.n, 1);
    ck_assert_ptr_eq(lb_timer_heap_min(&h), &a);

    lb_timer_heap_del(&h, &a);
    lb_timer_heap_del(&h, &a);              /* twice */
    ck_assert_uint_eq(h.n, 0);
    ck_assert(!lb_timer_is_set(&a));
    lb_timer_heap_free(&h);
}
END_TEST

/* A handler may disarm another due timer: that one must not run. */
static lb_timer_t  *victim;

static void
delete_victim(lb_timer_t *t)
{
    record(t);
    lb_timer_heap_del(t->data, victim);
}

START_TEST(handler_may_delete_another_due_timer)
{
    lb_timer_t       a, b;
    lb_timer_heap_t  h;

    reset_record();
    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    lb_timer_init(&a, delete_victim, &h);
    lb_timer_init(&b, record, NULL);
    lb_timer_heap_set(&h, &a, 10);
    lb_timer_heap_set(&h, &b, 20);
    victim = &b;
    now = 30;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 1);
    ck_assert_uint_eq(h.n, 0);
    lb_timer_heap_free(&h);
}
END_TEST

/* A handler may re-arm its own timer for later: it fires in a later call. */
static void
rearm(lb_timer_t *t)
{
    record(t);
    if (nfired < 3) {
        lb_timer_heap_set(t->data, t, t->when + 100);
    }
}

START_TEST(handler_may_rearm_its_timer)
{
    lb_timer_t       a;
    lb_timer_heap_t  h;

    reset_record();
    ck_assert_int_eq(lb_timer_heap_init(&h, 0), LB_OK);
    lb_timer_init(&a, rearm, &h);
    lb_timer_heap_set(&h, &a, 100);
    now = 150;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 1);
    ck_assert(lb_timer_is_set(&a));
    ck_assert_int_eq(a.when, 200);
    now = 1000;
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, 3);
    ck_assert_int_eq(fired_when[1], 200);
    ck_assert_int_eq(fired_when[2], 300);
    ck_assert(!lb_timer_is_set(&a));
    lb_timer_heap_free(&h);
}
END_TEST

START_TEST(ten_thousand_timers)
{
    static lb_timer_t  t[MANY];
    lb_timer_heap_t    h;
    size_t             i, before;

    reset_record();
    srandom(2024);
    ck_assert_int_eq(lb_timer_heap_init(&h, 1), LB_OK);    /* grows */
    for (i = 0; i < MANY; i++) {
        lb_timer_init(&t[i], record, (void *) (intptr_t) i);
        ck_assert_int_eq(lb_timer_heap_set(&h, &t[i], random() % 100000), LB_OK);
    }
    ck_assert_uint_eq(h.n, MANY);
    ck_assert_uint_ge(h.cap, MANY);
    assert_heap_ok(&h);

    /* expire in steps, as a loop would */
    for (now = 0; now < 100000; now += 997) {
        before = nfired;
        lb_timer_heap_expire(&h, now);
        for (i = before; i < nfired && fired_when[i] > now - 997; i++) { /* scan */ }
        ck_assert_msg(i == nfired, "timer for %lld fired late, at %lld",
                      (long long) fired_when[i], (long long) now);
        if (h.n) {
            ck_assert_int_gt(lb_timer_heap_min(&h)->when, now);
        }
    }
    lb_timer_heap_expire(&h, now);
    ck_assert_uint_eq(nfired, MANY);
    ck_assert_uint_eq(h.n, 0);
    assert_fired_in_order();
    lb_timer_heap_free(&h);
}
END_TEST

/* RFC 9110 §5.6.7's own example, and the buffer bound. */
START_TEST(http_date_is_imf_fixdate_in_gmt)
{
    char  buf[64];

    ck_assert_uint_eq(lb_time_http_date(784111777, buf, sizeof(buf)), 29);
    ck_assert_str_eq(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    ck_assert_uint_eq(lb_time_http_date(784111777, buf, 4), 3);
    ck_assert_str_eq(buf, "Sun");
}
END_TEST

static Suite *
timer_suite(void)
{
    Suite  *s = suite_create("timer");
    TCase  *tc = tcase_create("heap");

    tcase_add_test(tc, timers_expire_in_order);
    tcase_add_test(tc, expire_runs_only_due_timers);
    tcase_add_test(tc, delete_from_the_middle_keeps_heap_order);
    tcase_add_test(tc, setting_an_armed_timer_moves_it);
    tcase_add_test(tc, moving_timers_at_random_keeps_heap_order);
    tcase_add_test(tc, delay_until_the_next_timer);
    tcase_add_test(tc, deleting_an_unset_timer_is_a_noop);
    tcase_add_test(tc, handler_may_delete_another_due_timer);
    tcase_add_test(tc, handler_may_rearm_its_timer);
    tcase_add_test(tc, ten_thousand_timers);
    tcase_add_test(tc, http_date_is_imf_fixdate_in_gmt);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(timer_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
