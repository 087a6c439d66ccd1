/*
 * test_did_you_mean.c: the edit distance and the "did you mean" choice
 * behind every suggestion in a configuration error (core/lb_parse.c).
 */
#include "lb_core.h"

#include <check.h>

START_TEST(edit_distance_classic_examples)
{
    ck_assert_uint_eq(lb_edit_distance("kitten", "sitting"), 3);
    ck_assert_uint_eq(lb_edit_distance("sitting", "kitten"), 3);
    ck_assert_uint_eq(lb_edit_distance("flaw", "lawn"), 2);
    ck_assert_uint_eq(lb_edit_distance("max_con", "max_conns"), 2);
}
END_TEST

START_TEST(edit_distance_identical_is_zero)
{
    ck_assert_uint_eq(lb_edit_distance("weight", "weight"), 0);
    ck_assert_uint_eq(lb_edit_distance("", ""), 0);
}
END_TEST

START_TEST(edit_distance_to_empty_is_the_length)
{
    ck_assert_uint_eq(lb_edit_distance("", "abc"), 3);
    ck_assert_uint_eq(lb_edit_distance("abc", ""), 3);
}
END_TEST

START_TEST(edit_distance_counts_a_transposition_as_one)
{
    /* optimal string alignment: swapping two neighbours is one edit */
    ck_assert_uint_eq(lb_edit_distance("wieght", "weight"), 1);
    ck_assert_uint_eq(lb_edit_distance("ab", "ba"), 1);
    ck_assert_uint_eq(lb_edit_distance("wbe", "web"), 1);
    ck_assert_str_eq(lb_did_you_mean("wbe", (const char *[]) { "db", "web", NULL }), "web");
}
END_TEST

START_TEST(edit_distance_of_long_strings_is_capped)
{
    char  a[66], b[66];

    memset(a, 'a', 65);
    a[65] = '\0';
    memset(b, 'b', 65);
    b[65] = '\0';
    ck_assert_uint_eq(lb_edit_distance(a, b), 255);
    ck_assert_uint_eq(lb_edit_distance(a, "a"), 255);
    /* 64 bytes is still computed exactly */
    a[64] = '\0';
    b[64] = '\0';
    ck_assert_uint_eq(lb_edit_distance(a, b), 64);
}
END_TEST

static const char *const  server_settings[] = {
    "address", "weight", "max_conns", "backup", NULL
};

START_TEST(did_you_mean_completes_a_truncated_name)
{
    ck_assert_str_eq(lb_did_you_mean("max_con", server_settings), "max_conns");
}
END_TEST

START_TEST(did_you_mean_fixes_swapped_letters)
{
    ck_assert_str_eq(lb_did_you_mean("wieght", server_settings), "weight");
}
END_TEST

START_TEST(did_you_mean_gives_nothing_for_a_far_word)
{
    ck_assert_ptr_null(lb_did_you_mean("listen", server_settings));
    ck_assert_ptr_null(lb_did_you_mean("zzzzzzzz", server_settings));
}
END_TEST

START_TEST(did_you_mean_picks_the_closest)
{
    static const char *const  names[] = { "balancer", "balance", "bal", NULL };

    /* "balancer" is 2 away, "balance" 1: the later, closer one wins */
    ck_assert_str_eq(lb_did_you_mean("balanse", names), "balance");
}
END_TEST

START_TEST(did_you_mean_tie_goes_to_the_first_candidate)
{
    static const char *const  names[] = { "read_timeout", "send_timeout", NULL };

    ck_assert_str_eq(lb_did_you_mean("xead_timeout", names), "read_timeout");
}
END_TEST

START_TEST(did_you_mean_allows_one_edit_per_three_letters)
{
    static const char *const  names[] = { "abcdef", "ab", NULL };

    /* 6 letters: up to 2 edits */
    ck_assert_str_eq(lb_did_you_mean("abcxyf", names), "abcdef");
    ck_assert_ptr_null(lb_did_you_mean("axcxyf", names));
    /* short words still get 1 edit */
    ck_assert_str_eq(lb_did_you_mean("ax", names), "ab");
    ck_assert_ptr_null(lb_did_you_mean("xy", names));
}
END_TEST

START_TEST(did_you_mean_without_candidates_is_null)
{
    static const char *const  none[] = { NULL };

    ck_assert_ptr_null(lb_did_you_mean("weight", none));
}
END_TEST

static Suite *
did_you_mean_suite(void)
{
    Suite  *s = suite_create("did_you_mean");
    TCase  *tc;

    tc = tcase_create("edit_distance");
    tcase_add_test(tc, edit_distance_classic_examples);
    tcase_add_test(tc, edit_distance_identical_is_zero);
    tcase_add_test(tc, edit_distance_to_empty_is_the_length);
    tcase_add_test(tc, edit_distance_counts_a_transposition_as_one);
    tcase_add_test(tc, edit_distance_of_long_strings_is_capped);
    suite_add_tcase(s, tc);

    tc = tcase_create("did_you_mean");
    tcase_add_test(tc, did_you_mean_completes_a_truncated_name);
    tcase_add_test(tc, did_you_mean_fixes_swapped_letters);
    tcase_add_test(tc, did_you_mean_gives_nothing_for_a_far_word);
    tcase_add_test(tc, did_you_mean_picks_the_closest);
    tcase_add_test(tc, did_you_mean_tie_goes_to_the_first_candidate);
    tcase_add_test(tc, did_you_mean_allows_one_edit_per_three_letters);
    tcase_add_test(tc, did_you_mean_without_candidates_is_null);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(did_you_mean_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
