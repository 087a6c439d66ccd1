/*
 * test_limits.c: the rate limits' shared buckets
 * (modules/http/limits/lb_limits_table.c): the GCRA verdicts against a
 * worked example, nodelay, a million distinct keys in a small table (its
 * memory never grows; the oldest buckets go), and two processes sharing
 * one table.
 */
#include "lb_core.h"
#include "lb_limits_table.h"

#include <check.h>
#include <sys/mman.h>
#include <sys/wait.h>

static lb_limits_table_t *
table(size_t bytes, void **mem)
{
    *mem = calloc(1, bytes);
    ck_assert_ptr_nonnull(*mem);
    return lb_limits_table_init(*mem, bytes, 42);
}

/* 100 requests a second (10 ms apart), burst 20: requests every 2.5 ms
 * pass while they are at most 200 ms early, each waiting its turn. */
START_TEST(requests_pass_at_the_rate_with_a_burst_waiting)
{
    void                *mem;
    lb_limits_table_t   *t = table(64 * 1024, &mem);
    lb_limits_verdict_t  v;
    int64_t              wait, now, last_wait = -1;
    int                  i, passed = 0, refused = 0;

    ck_assert_ptr_nonnull(t);
    for (i = 0; i < 200; i++) {
        now = 1000000 + i * 2500;
        v = lb_limits_take(t, 7, now, 10000, 20, false, &wait);
        if (v == LB_LIMITS_REFUSE) {
            refused++;
            ck_assert_int_gt(wait, 0);
            continue;
        }
        passed++;
        ck_assert_int_le(wait, 200000);
        ck_assert_int_ge(wait, last_wait);      /* later requests wait longer */
        last_wait = wait;
        ck_assert(v == (wait ? LB_LIMITS_DELAY : LB_LIMITS_PASS));
    }
    /* the first 27 (0 .. 26 * 7.5 ms of lag <= 200 ms), then one per 10 ms
     * of the remaining 432.5 ms */
    ck_assert_int_ge(passed, 69);
    ck_assert_int_le(passed, 71);
    ck_assert_int_eq(passed + refused, 200);
    free(mem);
}
END_TEST

START_TEST(nodelay_passes_at_once_and_still_counts)
{
    void                *mem;
    lb_limits_table_t   *t = table(64 * 1024, &mem);
    int64_t              wait;
    int                  i, passed = 0;

    for (i = 0; i < 100; i++) {
        if (lb_limits_take(t, 7, 1000000, 10000, 5, true, &wait) != LB_LIMITS_REFUSE) {
            ck_assert_int_eq(wait, 0);
            passed++;
        }
    }
    ck_assert_int_eq(passed, 6);                /* one, and the burst of 5 */
    /* 10 ms later one more place is free */
    ck_assert_int_ne(lb_limits_take(t, 7, 1010000, 10000, 5, true, &wait), LB_LIMITS_REFUSE);
    ck_assert_int_eq(lb_limits_take(t, 7, 1010000, 10000, 5, true, &wait), LB_LIMITS_REFUSE);
    /* another key has its own bucket */
    ck_assert_int_eq(lb_limits_take(t, 8, 1010000, 10000, 5, true, &wait), LB_LIMITS_PASS);
    free(mem);
}
END_TEST

START_TEST(a_million_keys_stay_within_the_table)
{
    size_t               bytes = 256 * 1024;
    void                *mem;
    lb_limits_table_t   *t = table(bytes, &mem);
    size_t               entries = lb_limits_table_entries(bytes), i;
    int64_t              wait;

    ck_assert_uint_gt(entries, 1000);
    ck_assert_uint_le(lb_limits_table_bytes(entries), bytes);
    for (i = 0; i < 1000000; i++) {
        lb_limits_take(t, i * 0x9e3779b97f4a7c15ULL, 1000000 + (int64_t) i, 1000, 0, false,
                       &wait);
    }
    ck_assert_uint_eq(lb_limits_table_count(t), entries);
    ck_assert_uint_eq(lb_limits_table_evicted(t), 1000000 - entries);
    /* the newest keys kept their state: the last one is over its rate */
    ck_assert_int_eq(lb_limits_take(t, 999999 * 0x9e3779b97f4a7c15ULL, 1000000 + 999999, 1000,
                                    0, false, &wait), LB_LIMITS_REFUSE);
    /* an old one was evicted: it starts afresh */
    ck_assert_int_eq(lb_limits_take(t, 0, 1000000 + 999999, 1000, 0, false, &wait),
                     LB_LIMITS_PASS);
    free(mem);
}
END_TEST

START_TEST(a_table_too_small_is_refused)
{
    char  mem[64];

    ck_assert_ptr_null(lb_limits_table_init(mem, sizeof(mem), 1));
    ck_assert_uint_eq(lb_limits_table_entries(sizeof(mem)), 0);
}
END_TEST

START_TEST(two_processes_share_the_buckets)
{
    size_t               bytes = 64 * 1024;
    void                *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    lb_limits_table_t   *t;
    int64_t              wait;
    int                  i, passed = 0, status;
    pid_t                pid;

    ck_assert_ptr_ne(mem, MAP_FAILED);
    t = lb_limits_table_init(mem, bytes, 3);
    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        for (i = 0; i < 500; i++) {
            lb_limits_take(t, 1, 1000000, 1000000, 999, true, &wait);
        }
        _exit(0);
    }
    for (i = 0; i < 500; i++) {
        passed += lb_limits_take(t, 1, 1000000, 1000000, 999, true, &wait) != LB_LIMITS_REFUSE;
    }
    waitpid(pid, &status, 0);
    /* a bucket of 1000 places: both processes took from it, under the lock */
    ck_assert_int_eq(lb_limits_take(t, 1, 1000000, 1000000, 999, true, &wait),
                     LB_LIMITS_REFUSE);
    ck_assert_int_eq(passed, 500);
    munmap(mem, bytes);
}
END_TEST

static Suite *
limits_suite(void)
{
    Suite  *s = suite_create("limits");
    TCase  *tc = tcase_create("table");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, requests_pass_at_the_rate_with_a_burst_waiting);
    tcase_add_test(tc, nodelay_passes_at_once_and_still_counts);
    tcase_add_test(tc, a_million_keys_stay_within_the_table);
    tcase_add_test(tc, a_table_too_small_is_refused);
    tcase_add_test(tc, two_processes_share_the_buckets);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(limits_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
