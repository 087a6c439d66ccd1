/*
 * test_shm_zone.c: shared zones across reloads (core/lb_shm.c): what a
 * reload keeps, how a growable zone grows without moving a byte for the
 * workers that still map it smaller; and how the upstream state zone is
 * sized from the number of servers.
 */
#include "lb_core.h"
#include "lb_upstream.h"

#include <check.h>

/* A cycle with just what the zone calls use. */
static lb_cycle_t *
test_cycle(void)
{
    lb_pool_t   *pool = lb_pool_create(4096);
    lb_cycle_t  *cycle;

    ck_assert_ptr_nonnull(pool);
    cycle = lb_pcalloc(pool, sizeof(*cycle));
    ck_assert_ptr_nonnull(cycle);
    cycle->pool = pool;
    ck_assert_int_eq(lb_array_init(&cycle->shm_zones, pool, 2, sizeof(lb_shm_zone_t *)), LB_OK);
    return cycle;
}

static lb_shm_zone_t *
test_zone(lb_cycle_t *cycle, size_t size, bool growable)
{
    lb_conf_t       cf;
    lb_shm_zone_t  *z;

    memset(&cf, 0, sizeof(cf));
    cf.cycle = cycle;
    cf.pool = cycle->pool;
    z = lb_shm_zone_add(&cf, "test", size, NULL, NULL);
    ck_assert_ptr_nonnull(z);
    z->growable = growable;
    return z;
}

static void
test_cycle_free(lb_cycle_t *cycle)
{
    lb_shm_zones_unmap(cycle);
    lb_pool_destroy(cycle->pool);
}

START_TEST(zone_of_the_same_size_keeps_the_mapping)
{
    lb_cycle_t     *a = test_cycle(), *b = test_cycle();
    lb_shm_zone_t  *za = test_zone(a, 4096, false), *zb = test_zone(b, 4096, false);

    ck_assert_int_eq(lb_shm_zones_map(a, NULL), LB_OK);
    ck_assert(!za->reused);
    ((char *) za->addr)[10] = 'x';
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert(zb->reused);
    ck_assert_ptr_eq(zb->addr, za->addr);
    lb_shm_zones_commit(b, a);
    test_cycle_free(a);             /* leaves the mapping to b */
    ck_assert_int_eq(((char *) zb->addr)[10], 'x');
    test_cycle_free(b);
}
END_TEST

START_TEST(zone_of_another_size_starts_empty_unless_growable)
{
    lb_cycle_t     *a = test_cycle(), *b = test_cycle();
    lb_shm_zone_t  *za = test_zone(a, 4096, false), *zb = test_zone(b, 8192, false);

    ck_assert_int_eq(lb_shm_zones_map(a, NULL), LB_OK);
    ((char *) za->addr)[10] = 'x';
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert(!zb->reused);
    ck_assert_int_eq(((char *) zb->addr)[10], 0);
    ck_assert_int_eq(((char *) za->addr)[10], 'x');
    lb_shm_zones_commit(b, a);
    test_cycle_free(a);
    test_cycle_free(b);
}
END_TEST

/* The old generation's workers keep the old, smaller mapping: what they
 * write there, the new generation reads through its bigger one. */
START_TEST(growable_zone_grows_over_the_same_memory)
{
    lb_cycle_t     *a = test_cycle(), *b = test_cycle();
    lb_shm_zone_t  *za = test_zone(a, 4096, true), *zb = test_zone(b, 3 * 4096, true);
    char           *old;

    ck_assert_int_eq(lb_shm_zones_map(a, NULL), LB_OK);
    old = za->addr;
    old[100] = 'a';
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert(zb->reused);
    ck_assert_uint_eq(zb->old_size, 4096);
    ck_assert_uint_eq(zb->size, 3 * 4096);
    ck_assert_ptr_ne(zb->addr, za->addr);
    ck_assert_int_eq(((char *) zb->addr)[100], 'a');
    ck_assert_int_eq(((char *) zb->addr)[3 * 4096 - 1], 0);      /* new bytes read zero */
    old[200] = 'o';                                             /* an old worker writes */
    ck_assert_int_eq(((char *) zb->addr)[200], 'o');
    ((char *) zb->addr)[300] = 'n';
    ck_assert_int_eq(old[300], 'n');

    lb_shm_zones_commit(b, a);
    test_cycle_free(a);             /* unmaps a's view only */
    ck_assert_int_eq(((char *) zb->addr)[200], 'o');
    ((char *) zb->addr)[2 * 4096] = 'z';
    test_cycle_free(b);
}
END_TEST

START_TEST(growable_zone_asked_smaller_keeps_its_size)
{
    lb_cycle_t     *a = test_cycle(), *b = test_cycle();
    lb_shm_zone_t  *za = test_zone(a, 2 * 4096, true), *zb = test_zone(b, 4096, true);

    ck_assert_int_eq(lb_shm_zones_map(a, NULL), LB_OK);
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert(zb->reused);
    ck_assert_uint_eq(zb->size, 2 * 4096);
    ck_assert_ptr_eq(zb->addr, za->addr);
    lb_shm_zones_commit(b, a);
    test_cycle_free(a);
    test_cycle_free(b);
}
END_TEST

/* A reload that fails after growing leaves the running cycle whole. */
START_TEST(abandoned_growth_leaves_the_running_zone)
{
    lb_cycle_t     *a = test_cycle(), *b = test_cycle();
    lb_shm_zone_t  *za = test_zone(a, 4096, true), *zb = test_zone(b, 4096, true);

    ck_assert_int_eq(lb_shm_zones_map(a, NULL), LB_OK);
    ((char *) za->addr)[5] = 'k';
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert_int_eq(lb_shm_zone_grow(zb, 4 * 4096), LB_OK);
    ck_assert_ptr_ne(zb->addr, za->addr);
    lb_shm_zones_abandon(b);
    test_cycle_free(b);
    ck_assert_int_ne(za->fd, -1);
    ck_assert_int_eq(((char *) za->addr)[5], 'k');
    /* and the next reload still finds it */
    b = test_cycle();
    zb = test_zone(b, 4096, true);
    ck_assert_int_eq(lb_shm_zones_map(b, a), LB_OK);
    ck_assert(zb->reused);
    ck_assert_int_eq(((char *) zb->addr)[5], 'k');
    lb_shm_zones_commit(b, a);
    test_cycle_free(a);
    test_cycle_free(b);
}
END_TEST

START_TEST(upstream_zone_starts_with_twice_the_servers)
{
    ck_assert_uint_eq(lb_upstream_zone_slots(0), 64);
    ck_assert_uint_eq(lb_upstream_zone_slots(31), 64);
    ck_assert_uint_eq(lb_upstream_zone_slots(32), 64);
    ck_assert_uint_eq(lb_upstream_zone_slots(3000), 6000);
    ck_assert_uint_eq(lb_upstream_zone_slots(LB_UPSTREAM_MAX_TOTAL_SERVERS),
                      2 * LB_UPSTREAM_MAX_TOTAL_SERVERS);
}
END_TEST

START_TEST(upstream_zone_grows_only_when_a_reload_does_not_fit)
{
    /* 3000 servers replaced by 3000 others beside the draining ones: fits */
    ck_assert_uint_eq(lb_upstream_zone_capacity(6000, 3000, 3000, 3000), 6000);
    /* the same servers again: nothing missing */
    ck_assert_uint_eq(lb_upstream_zone_capacity(6000, 3000, 0, 3000), 6000);
    /* two generations still draining: room for them, the new servers and
     * as many again for the next reload */
    ck_assert_uint_eq(lb_upstream_zone_capacity(6000, 6000, 3000, 3000), 12000);
    /* from a small configuration to a big one */
    ck_assert_uint_eq(lb_upstream_zone_capacity(64, 10, 5000, 5001), 10011);
}
END_TEST

static Suite *
shm_zone_suite(void)
{
    Suite  *s = suite_create("shm_zone");
    TCase  *tc;

    tc = tcase_create("zones");
    tcase_add_test(tc, zone_of_the_same_size_keeps_the_mapping);
    tcase_add_test(tc, zone_of_another_size_starts_empty_unless_growable);
    tcase_add_test(tc, growable_zone_grows_over_the_same_memory);
    tcase_add_test(tc, growable_zone_asked_smaller_keeps_its_size);
    tcase_add_test(tc, abandoned_growth_leaves_the_running_zone);
    suite_add_tcase(s, tc);

    tc = tcase_create("upstream");
    tcase_add_test(tc, upstream_zone_starts_with_twice_the_servers);
    tcase_add_test(tc, upstream_zone_grows_only_when_a_reload_does_not_fit);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(shm_zone_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
