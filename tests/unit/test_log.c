/*
 * test_log.c: the rate limit of core/lb_log.c: one line per cause and
 * second, the count of lines held back, and causes kept apart by errno and
 * by call site. Time is lb_current_msec, set by hand.
 */
#include "lb_core.h"

#include <check.h>

static uint64_t  held;

static bool
pass(lb_log_ratelimit_t *rl, int err)
{
    return lb_log_ratelimit(rl, err, &held);
}

START_TEST(one_line_per_second_with_the_count_of_the_rest)
{
    lb_log_ratelimit_t  rl = { 0 };
    int                 i;

    lb_current_msec = 5000;
    ck_assert(pass(&rl, EMFILE));
    ck_assert_uint_eq(held, 0);
    for (i = 0; i < 37; i++) {
        lb_current_msec += 10;
        ck_assert(!pass(&rl, EMFILE));
    }
    lb_current_msec = 5999;
    ck_assert(!pass(&rl, EMFILE));
    lb_current_msec = 6000;
    ck_assert(pass(&rl, EMFILE));
    ck_assert_uint_eq(held, 38);
    lb_current_msec = 9000;
    ck_assert(pass(&rl, EMFILE));
    ck_assert_uint_eq(held, 0);
}
END_TEST

START_TEST(errno_values_are_separate_causes)
{
    lb_log_ratelimit_t  rl = { 0 };

    lb_current_msec = 1000;
    ck_assert(pass(&rl, EMFILE));
    ck_assert(pass(&rl, ENFILE));
    ck_assert(pass(&rl, 0));
    ck_assert(!pass(&rl, EMFILE));
    ck_assert(!pass(&rl, EMFILE));
    ck_assert(!pass(&rl, ENFILE));
    lb_current_msec = 2000;
    ck_assert(pass(&rl, ENFILE));
    ck_assert_uint_eq(held, 1);
    ck_assert(pass(&rl, EMFILE));
    ck_assert_uint_eq(held, 2);
}
END_TEST

START_TEST(a_new_cause_takes_the_slot_logged_longest_ago)
{
    lb_log_ratelimit_t  rl = { 0 };
    int                 err;

    for (err = 1; err <= LB_LOG_RATELIMIT_CAUSES; err++) {
        lb_current_msec = 100 * err;
        ck_assert(pass(&rl, err));
    }
    lb_current_msec = 1000;
    ck_assert(pass(&rl, 99));          /* replaces errno 1 */
    ck_assert(!pass(&rl, 2));           /* still kept */
    ck_assert(pass(&rl, 1));            /* forgotten: a new cause again */
    ck_assert_uint_eq(held, 0);
}
END_TEST

static void
first_site(void)
{
    lb_log_error_limited(EMFILE, "first site");
}

START_TEST(the_macro_gives_each_call_site_its_own_state)
{
    char   path[] = "/tmp/lb_test_log.XXXXXX", text[4096];
    int        fd, i;
    lb_msec_t  t0;
    FILE  *f;
    size_t n;

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(lb_log_open(path), LB_OK);
    lb_time_update();           /* the first line would do it, moving the clock */
    t0 = lb_current_msec;
    for (i = 0; i < 3; i++) {
        first_site();
        lb_log_error_limited(EMFILE, "second site");
    }
    lb_current_msec = t0 + 1000;
    first_site();
    ck_assert_int_eq(lb_log_open("stderr"), LB_OK);

    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    unlink(path);
    text[n] = '\0';
    ck_assert_ptr_nonnull(strstr(text, ": first site (24: "));
    ck_assert_ptr_nonnull(strstr(text, ": second site (24: "));
    ck_assert_ptr_nonnull(strstr(text, "first site (24: Too many open files) "
                                       "(2 similar messages suppressed)\n"));
    ck_assert_ptr_null(strstr(strstr(text, "second site") + 1, "second site"));
}
END_TEST

static Suite *
log_suite(void)
{
    Suite  *s = suite_create("log");
    TCase  *tc = tcase_create("ratelimit");

    tcase_add_test(tc, one_line_per_second_with_the_count_of_the_rest);
    tcase_add_test(tc, errno_values_are_separate_causes);
    tcase_add_test(tc, a_new_cause_takes_the_slot_logged_longest_ago);
    tcase_add_test(tc, the_macro_gives_each_call_site_its_own_state);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(log_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
