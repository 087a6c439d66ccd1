/*
 * test_ipcount.c: connections per client address (core/lb_ipcount.c): the
 * cap, release, removal that keeps every other key findable (checked
 * against a plain array on a random run of takes and releases), a full
 * table letting new keys in uncounted, and IPv6 addresses counted by
 * their network.
 */
#include "lb_core.h"
#include "lb_ipcount.h"

#include <arpa/inet.h>
#include <check.h>

static lb_ipcount_t *
table(size_t entries)
{
    void  *mem = calloc(1, lb_ipcount_bytes(entries));

    ck_assert_ptr_nonnull(mem);
    return lb_ipcount_init(mem, entries, 99);
}

START_TEST(the_cap_holds_and_release_gives_places_back)
{
    lb_ipcount_t  *t = table(64);
    int            i;

    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(lb_ipcount_take(t, 5, 3), LB_IPCOUNT_OK);
    }
    ck_assert_int_eq(lb_ipcount_take(t, 5, 3), LB_IPCOUNT_OVER);
    ck_assert_uint_eq(lb_ipcount_get(t, 5), 3);
    lb_ipcount_release(t, 5);
    ck_assert_int_eq(lb_ipcount_take(t, 5, 3), LB_IPCOUNT_OK);
    for (i = 0; i < 3; i++) {
        lb_ipcount_release(t, 5);
    }
    ck_assert_uint_eq(lb_ipcount_get(t, 5), 0);
    ck_assert_uint_eq(lb_ipcount_used(t), 0);
    ck_assert_int_eq(lb_ipcount_take(t, 6, 0), LB_IPCOUNT_OVER);
    free(t);
}
END_TEST

/* Keys that collide (same low bits) and are removed in every order:
 * the table always agrees with a plain count per key. */
START_TEST(removal_keeps_every_other_key_findable)
{
    enum { NKEYS = 40, ROUNDS = 200000 };
    lb_ipcount_t  *t = table(64);
    uint32_t       want[NKEYS] = { 0 };
    uint64_t       keys[NKEYS], seed = 1;
    size_t         i, k, used;

    for (k = 0; k < NKEYS; k++) {
        keys[k] = ((uint64_t) (k + 1) << 32) | (k % 5);   /* five home slots */
    }
    for (i = 0; i < ROUNDS; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        k = (size_t) (seed >> 33) % NKEYS;
        if ((seed >> 20) & 1) {
            if (lb_ipcount_take(t, keys[k], 1000) == LB_IPCOUNT_OK) {
                want[k]++;
            }
        } else if (want[k]) {
            lb_ipcount_release(t, keys[k]);
            want[k]--;
        }
        if (i % 997 == 0) {
            for (used = 0, k = 0; k < NKEYS; k++) {
                ck_assert_uint_eq(lb_ipcount_get(t, keys[k]), want[k]);
                used += want[k] != 0;
            }
            ck_assert_uint_eq(lb_ipcount_used(t), used);
        }
    }
    free(t);
}
END_TEST

START_TEST(a_full_table_lets_new_keys_in_uncounted)
{
    lb_ipcount_t  *t = table(16);
    uint64_t       k;

    for (k = 1; k <= 12; k++) {
        ck_assert_int_eq(lb_ipcount_take(t, k, 1), LB_IPCOUNT_OK);
    }
    ck_assert_int_eq(lb_ipcount_take(t, 100, 1), LB_IPCOUNT_FULL);
    /* known keys are still capped */
    ck_assert_int_eq(lb_ipcount_take(t, 3, 1), LB_IPCOUNT_OVER);
    lb_ipcount_release(t, 3);
    ck_assert_int_eq(lb_ipcount_take(t, 100, 1), LB_IPCOUNT_OK);
    free(t);
}
END_TEST

static uint64_t
key6(lb_ipcount_t *t, uint64_t listener, const char *addr, int prefix)
{
    struct sockaddr_in6  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, addr, &sa.sin6_addr), 1);
    return lb_ipcount_key(t, listener, (struct sockaddr *) &sa, prefix);
}

START_TEST(ipv6_clients_count_by_network)
{
    lb_ipcount_t        *t = table(16);
    struct sockaddr_in   a, b;

    ck_assert_uint_eq(key6(t, 1, "2001:db8::1", 64), key6(t, 1, "2001:db8::ffff:2", 64));
    ck_assert_uint_ne(key6(t, 1, "2001:db8::1", 64), key6(t, 1, "2001:db8:0:1::1", 64));
    ck_assert_uint_ne(key6(t, 1, "2001:db8::1", 128), key6(t, 1, "2001:db8::2", 128));
    ck_assert_uint_eq(key6(t, 1, "2001:db8::1", 48), key6(t, 1, "2001:db8:0:ff::1", 48));
    /* another listener counts apart */
    ck_assert_uint_ne(key6(t, 1, "2001:db8::1", 64), key6(t, 2, "2001:db8::1", 64));
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.sin_family = b.sin_family = AF_INET;
    inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
    inet_pton(AF_INET, "10.0.0.2", &b.sin_addr);
    b.sin_port = htons(999);
    ck_assert_uint_ne(lb_ipcount_key(t, 1, (struct sockaddr *) &a, 64),
                      lb_ipcount_key(t, 1, (struct sockaddr *) &b, 64));
    b.sin_addr = a.sin_addr;            /* the port does not count */
    ck_assert_uint_eq(lb_ipcount_key(t, 1, (struct sockaddr *) &a, 64),
                      lb_ipcount_key(t, 1, (struct sockaddr *) &b, 64));
    free(t);
}
END_TEST

static Suite *
ipcount_suite(void)
{
    Suite  *s = suite_create("ipcount");
    TCase  *tc = tcase_create("table");

    tcase_add_test(tc, the_cap_holds_and_release_gives_places_back);
    tcase_add_test(tc, removal_keeps_every_other_key_findable);
    tcase_add_test(tc, a_full_table_lets_new_keys_in_uncounted);
    tcase_add_test(tc, ipv6_clients_count_by_network);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(ipcount_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
