/*
 * test_metrics.c: the metrics zone (core/lb_metrics.c): a configuration's
 * series are numbered at init_master, adds from several worker columns
 * are summed, a reload keeps the number (and so the count) of every
 * series it declares again and numbers new ones after them, the zone grows
 * without losing counts, and the text exposition is what Prometheus reads.
 */
#include "lb_core.h"

#include <check.h>

static const uint64_t  test_bounds[] = { 10, 100 };

static const lb_metric_family_t  test_counter = {
    "lbd_test_total", "A test counter.", LB_METRIC_COUNTER, NULL, 0, 0
};
static const lb_metric_family_t  test_hist = {
    "lbd_test_seconds", "A test histogram.", LB_METRIC_HISTOGRAM, test_bounds, 2, 1e-3
};

static lb_cycle_t *
test_cycle(unsigned generation)
{
    lb_pool_t   *pool = lb_pool_create(4096);
    lb_cycle_t  *cycle;

    ck_assert_ptr_nonnull(pool);
    cycle = lb_pcalloc(pool, sizeof(*cycle));
    ck_assert_ptr_nonnull(cycle);
    cycle->pool = pool;
    cycle->generation = generation;
    cycle->conf_file = "test.conf";
    cycle->core = lb_pcalloc(pool, sizeof(lb_core_conf_t));
    ck_assert_ptr_nonnull(cycle->core);
    cycle->core->workers = 2;
    ck_assert_int_eq(lb_array_init(&cycle->shm_zones, pool, 2, sizeof(lb_shm_zone_t *)), LB_OK);
    ck_assert_int_eq(lb_array_init(&cycle->metrics, pool, 8, lb_metric_decl_size), LB_OK);
    return cycle;
}

static lb_conf_t
test_conf(lb_cycle_t *cycle)
{
    lb_conf_t  cf;

    memset(&cf, 0, sizeof(cf));
    cf.cycle = cycle;
    cf.pool = cycle->pool;
    return cf;
}

static void
collect(void *data, const char *s, size_t n)
{
    strncat(data, s, n);
}

START_TEST(series_are_summed_over_workers_and_kept_by_a_reload)
{
    lb_cycle_t  *a = test_cycle(0), *b = test_cycle(1);
    lb_conf_t    cf = test_conf(a);
    uint32_t     x, y, x2, z, h;
    static char  text[65536];

    ck_assert_int_eq(lb_metrics_init_conf(&cf), LB_OK);
    ck_assert_int_eq(lb_metric_declare(&cf, &x, &test_counter, "listener=\"a\""), LB_OK);
    ck_assert_int_eq(lb_metric_declare(&cf, &y, &test_counter, "listener=\"b\""), LB_OK);
    ck_assert_int_eq(lb_metric_declare(&cf, &h, &test_hist, "route=\"1\""), LB_OK);
    ck_assert_uint_eq(x, 0);                    /* numbered at init_master */
    ck_assert_int_eq(lb_shm_zones_map(a, NULL), LB_OK);
    ck_assert_int_eq(lb_metrics_init_master(a), LB_OK);
    ck_assert_uint_ne(x, 0);
    ck_assert_uint_ne(x, y);

    lb_metrics_init_process(a, 0);              /* worker slot 0 */
    lb_metric_add(x, 5);
    lb_metric_observe(h, &test_hist, 7);        /* <= 10 */
    lb_metric_observe(h, &test_hist, 500);      /* over every bound */
    lb_metrics_init_process(a, 1);              /* worker slot 1 */
    lb_metric_add(x, 3);
    lb_metric_add(y, 1);
    lb_metric_observe(h, &test_hist, 50);       /* <= 100 */
    ck_assert_uint_eq(lb_metric_read(x), 8);
    ck_assert_uint_eq(lb_metric_read(y), 1);

    lb_metrics_render(a, collect, text);
    ck_assert_str_eq(text,
        "# HELP lbd_test_total A test counter.\n"
        "# TYPE lbd_test_total counter\n"
        "lbd_test_total{listener=\"a\"} 8\n"
        "lbd_test_total{listener=\"b\"} 1\n"
        "# HELP lbd_test_seconds A test histogram.\n"
        "# TYPE lbd_test_seconds histogram\n"
        "lbd_test_seconds_bucket{route=\"1\",le=\"0.01\"} 1\n"
        "lbd_test_seconds_bucket{route=\"1\",le=\"0.1\"} 2\n"
        "lbd_test_seconds_bucket{route=\"1\",le=\"+Inf\"} 3\n"
        "lbd_test_seconds_sum{route=\"1\"} 0.557000\n"
        "lbd_test_seconds_count{route=\"1\"} 3\n");

    /* the reload: b declares b again (first, this time), and a new one;
     * a is gone. Enough new series to need another page. */
    cf = test_conf(b);
    ck_assert_int_eq(lb_metrics_init_conf(&cf), LB_OK);
    ck_assert_int_eq(lb_metric_declare(&cf, &x2, &test_counter, "listener=\"b\""), LB_OK);
    for (int i = 0; i < LB_METRICS_PAGE_SERIES; i++) {
        char  labels[32];

        snprintf(labels, sizeof(labels), "n=\"%d\"", i);
        ck_assert_int_eq(lb_metric_declare(&cf, &z, &test_counter, labels), LB_OK);
    }
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert_int_eq(lb_metrics_init_master(b), LB_OK);
    lb_shm_zones_commit(b, a);
    ck_assert_uint_eq(x2, y);                   /* the same series, the same number */
    ck_assert_uint_gt(z, h);                    /* new ones after the old */
    lb_metrics_init_process(b, 0);
    ck_assert_uint_eq(lb_metric_read(x2), 1);   /* its count carried over */
    lb_metric_add(z, 2);
    ck_assert_uint_eq(lb_metric_read(z), 2);
    ck_assert_uint_eq(lb_metric_read(x), 8);    /* still there, unrendered */

    text[0] = '\0';
    lb_metrics_render(b, collect, text);
    ck_assert_ptr_null(strstr(text, "listener=\"a\""));
    ck_assert_ptr_nonnull(strstr(text, "lbd_test_total{listener=\"b\"} 1\n"));

    lb_shm_zones_unmap(a);
    lb_pool_destroy(a->pool);
    lb_shm_zones_unmap(b);
    lb_pool_destroy(b->pool);
}
END_TEST

START_TEST(series_zero_is_harmless)
{
    lb_metric_add(0, 1);        /* an undeclared series: nowhere, no crash */
}
END_TEST

START_TEST(labels_are_escaped)
{
    char  out[64];

    ck_assert_str_eq(lb_metric_label(out, sizeof(out), "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
END_TEST

int
main(void)
{
    Suite    *s = suite_create("metrics");
    TCase    *tc = tcase_create("zone");
    SRunner  *sr;
    int       failed;

    tcase_add_test(tc, series_zero_is_harmless);
    tcase_add_test(tc, labels_are_escaped);
    tcase_add_test(tc, series_are_summed_over_workers_and_kept_by_a_reload);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
