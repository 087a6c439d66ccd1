/*
 * test_sticky.c: the pieces of sticky sessions
 * (modules/core/upstream/lb_upstream_sticky.c): signed cookies that
 * another key object made from the same secret accepts and nothing else
 * forges, and the shared source-address table (TTL, least recently used
 * eviction, several processes). The cost of a cookie check and of a table
 * lookup is printed, never asserted.
 */
#include "lb_core.h"
#include "lb_upstream_sticky.h"

#include <check.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static const char  secret[] = "0123456789abcdef0123456789abcdef";

static double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

START_TEST(a_cookie_names_its_server_to_any_key_of_the_same_secret)
{
    lb_sticky_key_t  *k = lb_sticky_key_new(secret, sizeof(secret) - 1);
    lb_sticky_key_t  *same = lb_sticky_key_new(secret, sizeof(secret) - 1);
    char              v[LB_STICKY_COOKIE_LEN + 1];
    uint64_t          id = 0, want = lb_sticky_server_id("10.0.0.1:80");
    int64_t           expires = 0;
    const char       *why = NULL;
    size_t            i;

    ck_assert_ptr_nonnull(k);
    ck_assert_uint_eq(lb_sticky_cookie_make(k, "web", want, 2000000000, v, sizeof(v)),
                      LB_STICKY_COOKIE_LEN);
    ck_assert_uint_eq(strlen(v), LB_STICKY_COOKIE_LEN);
    for (i = 0; i < LB_STICKY_COOKIE_LEN; i++) {
        ck_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                         v[i]) != NULL);
    }
    ck_assert_int_eq(lb_sticky_cookie_check(same, "web", v, LB_STICKY_COOKIE_LEN, 1000, &id,
                                            &expires, &why), LB_OK);
    ck_assert_uint_eq(id, want);
    ck_assert_int_eq(expires, 2000000000);
    /* too small a buffer */
    ck_assert_uint_eq(lb_sticky_cookie_make(k, "web", want, 1, v, 10), 0);
    lb_sticky_key_free(k);
    lb_sticky_key_free(same);
}
END_TEST

/* The value for a known key, id and expiry, computed apart (Python's hmac
 * and base64): the format and the HMAC are what lb_upstream_sticky.h says. */
START_TEST(a_cookie_matches_an_independent_computation)
{
    lb_sticky_key_t  *k = lb_sticky_key_new("fuzzing secret, fuzzing secret!!", 32);
    char              v[128];

    lb_sticky_cookie_make(k, "web", 0x1234, 2000000000, v, sizeof(v));
    ck_assert_str_eq(v, "AQAAAAAAABI0AAAAAHc1lADHq8SnD1XGrojKmZpR9uL4");
    lb_sticky_key_free(k);

    /* a secret longer than SHA-256's block is hashed first (RFC 2104) */
    memset(v, 'k', 100);
    k = lb_sticky_key_new(v, 100);
    lb_sticky_cookie_make(k, "api", 7, 1700000000, v, sizeof(v));
    ck_assert_str_eq(v, "AQAAAAAAAAAHAAAAAGVT8QAA33fuiI_eD3GLmM1BnxG5");
    lb_sticky_key_free(k);
}
END_TEST

START_TEST(another_secret_another_upstream_or_expiry_refuse_it)
{
    lb_sticky_key_t  *k = lb_sticky_key_new(secret, sizeof(secret) - 1);
    lb_sticky_key_t  *other = lb_sticky_key_new("another secret, same length!!!!!", 32);
    char              v[LB_STICKY_COOKIE_LEN + 1];
    uint64_t          id;
    int64_t           expires;
    const char       *why = NULL;

    lb_sticky_cookie_make(k, "web", 42, 5000, v, sizeof(v));
    ck_assert_int_eq(lb_sticky_cookie_check(other, "web", v, LB_STICKY_COOKIE_LEN, 1000, &id,
                                            &expires, &why), LB_DECLINED);
    ck_assert_str_eq(why, "bad signature");
    ck_assert_int_eq(lb_sticky_cookie_check(k, "api", v, LB_STICKY_COOKIE_LEN, 1000, &id,
                                            &expires, &why), LB_DECLINED);
    ck_assert_str_eq(why, "bad signature");
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", v, LB_STICKY_COOKIE_LEN, 5000, &id,
                                            &expires, &why), LB_DECLINED);
    ck_assert_str_eq(why, "expired");
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", v, LB_STICKY_COOKIE_LEN, 4999, &id,
                                            &expires, &why), LB_OK);
    lb_sticky_key_free(k);
    lb_sticky_key_free(other);
}
END_TEST

START_TEST(every_one_character_change_is_refused)
{
    static const char  repl[] = "AZaz09-_Q";
    lb_sticky_key_t   *k = lb_sticky_key_new(secret, sizeof(secret) - 1);
    char               v[LB_STICKY_COOKIE_LEN + 1], m[LB_STICKY_COOKIE_LEN + 1];
    uint64_t           id;
    int64_t            expires;
    const char        *why;
    size_t             i, j, accepted = 0, tried = 0;

    lb_sticky_cookie_make(k, "web", 7, 2000000000, v, sizeof(v));
    for (i = 0; i < LB_STICKY_COOKIE_LEN; i++) {
        for (j = 0; j < sizeof(repl) - 1; j++) {
            if (v[i] == repl[j]) {
                continue;
            }
            memcpy(m, v, sizeof(v));
            m[i] = repl[j];
            tried++;
            accepted += lb_sticky_cookie_check(k, "web", m, LB_STICKY_COOKIE_LEN, 1000, &id,
                                               &expires, &why) == LB_OK;
        }
    }
    ck_assert_uint_gt(tried, 300);
    ck_assert_uint_eq(accepted, 0);
    lb_sticky_key_free(k);
}
END_TEST

START_TEST(garbage_of_any_length_is_refused)
{
    lb_sticky_key_t  *k = lb_sticky_key_new(secret, sizeof(secret) - 1);
    static char       big[10000];
    char              v[LB_STICKY_COOKIE_LEN + 1], odd[LB_STICKY_COOKIE_LEN];
    uint64_t          id;
    int64_t           expires;
    const char       *why;
    size_t            i;

    memset(big, 'A', sizeof(big));
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", "", 0, 1, &id, &expires, &why),
                     LB_DECLINED);
    ck_assert_str_eq(why, "malformed");
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", "A", 1, 1, &id, &expires, &why),
                     LB_DECLINED);
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", big, sizeof(big), 1, &id, &expires, &why),
                     LB_DECLINED);
    /* the right length: all 'A' (version 0), a NUL inside, a '=' */
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", big, LB_STICKY_COOKIE_LEN, 1, &id,
                                            &expires, &why), LB_DECLINED);
    ck_assert_str_eq(why, "unknown version");
    lb_sticky_cookie_make(k, "web", 7, 2000000000, v, sizeof(v));
    memcpy(odd, v, sizeof(odd));
    odd[5] = '\0';
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", odd, sizeof(odd), 1, &id, &expires, &why),
                     LB_DECLINED);
    odd[5] = '=';
    ck_assert_int_eq(lb_sticky_cookie_check(k, "web", odd, sizeof(odd), 1, &id, &expires, &why),
                     LB_DECLINED);
    /* random bytes of the right length */
    srandom(3);
    for (i = 0; i < 1000; i++) {
        for (size_t j = 0; j < sizeof(odd); j++) {
            odd[j] = (char) random();
        }
        ck_assert_int_eq(lb_sticky_cookie_check(k, "web", odd, sizeof(odd), 1, &id, &expires,
                                                &why), LB_DECLINED);
    }
    lb_sticky_key_free(k);
}
END_TEST

START_TEST(server_ids_are_stable_and_distinct)
{
    enum { N = 10000 };
    static uint64_t  ids[N];
    char             addr[64];
    size_t           i, j, same = 0;

    ck_assert_uint_eq(lb_sticky_server_id("10.0.0.1:80"), lb_sticky_server_id("10.0.0.1:80"));
    for (i = 0; i < N; i++) {
        snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu:%zu", i >> 12, (i >> 4) & 255, i & 15,
                 8000 + i % 7);
        ids[i] = lb_sticky_server_id(addr);
    }
    for (i = 0; i < N; i++) {
        for (j = i + 1; j < N; j++) {
            same += ids[i] == ids[j];
        }
    }
    ck_assert_uint_eq(same, 0);
}
END_TEST

START_TEST(cookie_check_cost)
{
    enum { N = 200000 };
    lb_sticky_key_t  *k = lb_sticky_key_new(secret, sizeof(secret) - 1);
    char              v[LB_STICKY_COOKIE_LEN + 1];
    uint64_t          id, sum = 0;
    int64_t           expires;
    const char       *why;
    double            t0;
    int               i, ok = 0;

    lb_sticky_cookie_make(k, "web", 7, 2000000000, v, sizeof(v));
    t0 = now_ns();
    for (i = 0; i < N; i++) {
        ok += lb_sticky_cookie_check(k, "web", v, LB_STICKY_COOKIE_LEN, 1000, &id, &expires,
                                     &why) == LB_OK;
        sum += id;
    }
    printf("sticky: a cookie check costs %.0f ns\n", (now_ns() - t0) / N);
    ck_assert_int_eq(ok, N);
    ck_assert_uint_eq(sum, 7ULL * N);
    lb_sticky_key_free(k);
}
END_TEST

/* The table -------------------------------------------------------------- */

static void *
table(size_t entries)
{
    void  *mem = mmap(NULL, lb_sticky_table_bytes(entries), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    ck_assert_ptr_ne(mem, MAP_FAILED);
    lb_sticky_table_init(mem, entries);
    return mem;
}

static int
get(void *t, uint32_t key, int64_t now, uint64_t *id)
{
    return lb_sticky_table_get(t, &key, sizeof(key), now, 1000, id);
}

START_TEST(table_put_get_replace_and_ttl)
{
    void      *t = table(16);
    uint32_t   a = 1, b = 2;
    uint64_t   id = 0;

    ck_assert_int_eq(get(t, a, 0, &id), LB_DECLINED);
    lb_sticky_table_put(t, &a, sizeof(a), 11, 0);
    lb_sticky_table_put(t, &b, sizeof(b), 22, 0);
    ck_assert_int_eq(get(t, a, 500, &id), LB_OK);
    ck_assert_uint_eq(id, 11);
    lb_sticky_table_put(t, &a, sizeof(a), 33, 600);         /* replaced */
    ck_assert_int_eq(get(t, a, 700, &id), LB_OK);
    ck_assert_uint_eq(id, 33);
    ck_assert_uint_eq(lb_sticky_table_count(t), 2);
    /* a use refreshes: a lives on, b (unused since 0) expires */
    ck_assert_int_eq(get(t, a, 1600, &id), LB_OK);
    ck_assert_int_eq(get(t, b, 1600, &id), LB_DECLINED);
    ck_assert_uint_eq(lb_sticky_table_count(t), 1);
    ck_assert_int_eq(get(t, a, 2700, &id), LB_DECLINED);    /* unused for 1100ms */
    ck_assert_uint_eq(lb_sticky_table_count(t), 0);
    /* a formatted table keeps its entries through init */
    lb_sticky_table_put(t, &b, sizeof(b), 44, 2000);
    lb_sticky_table_init(t, 16);
    ck_assert_int_eq(get(t, b, 2000, &id), LB_OK);
    ck_assert_uint_eq(id, 44);
    munmap(t, lb_sticky_table_bytes(16));
}
END_TEST

START_TEST(table_full_evicts_the_least_recently_used)
{
    enum { N = 64 };
    void      *t = table(N);
    uint32_t   k;
    uint64_t   id;

    for (k = 0; k < N; k++) {
        lb_sticky_table_put(t, &k, sizeof(k), k, k);
    }
    ck_assert_uint_eq(lb_sticky_table_count(t), N);
    ck_assert_int_eq(get(t, 0, 100, &id), LB_OK);      /* 0 is now the newest */
    k = 1000;
    lb_sticky_table_put(t, &k, sizeof(k), 1000, 101);  /* 1, the oldest, goes */
    ck_assert_uint_eq(lb_sticky_table_count(t), N);
    ck_assert_int_eq(get(t, 1, 102, &id), LB_DECLINED);
    ck_assert_int_eq(get(t, 0, 102, &id), LB_OK);
    ck_assert_int_eq(get(t, 2, 102, &id), LB_OK);
    ck_assert_int_eq(get(t, 1000, 102, &id), LB_OK);
    /* churn through many more keys than entries: it stays consistent */
    for (k = 2000; k < 2000 + 20 * N; k++) {
        lb_sticky_table_put(t, &k, sizeof(k), k, 200 + k);
        if (k % 3 == 0) {
            /* a lookup past its ttl removes it: the free list is used */
            ck_assert_int_eq(get(t, k, 200 + k + 2000, &id), LB_DECLINED);
        }
    }
    ck_assert_uint_le(lb_sticky_table_count(t), N);
    k = 2000 + 20 * N - 1;
    ck_assert_int_eq(get(t, k, 200 + k, &id), k % 3 ? LB_OK : LB_DECLINED);
    munmap(t, lb_sticky_table_bytes(N));
}
END_TEST

START_TEST(table_is_shared_between_processes)
{
    void      *t = table(4096);
    uint32_t   k;
    uint64_t   id;
    pid_t      pid;
    int        status, found = 0;

    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        for (k = 0; k < 1000; k++) {
            lb_sticky_table_put(t, &k, sizeof(k), k * 3, 1);
        }
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    for (k = 0; k < 1000; k++) {
        found += get(t, k, 2, &id) == LB_OK && id == k * 3;
    }
    ck_assert_int_eq(found, 1000);
    munmap(t, lb_sticky_table_bytes(4096));
}
END_TEST

START_TEST(table_lookup_cost)
{
    enum { N = 65536, LOOKUPS = 1000000 };
    void      *t = table(N);
    uint32_t   k;
    uint64_t   id, hits = 0;
    double     t0;

    for (k = 0; k < N; k++) {
        lb_sticky_table_put(t, &k, sizeof(k), k, 0);
    }
    t0 = now_ns();
    for (k = 0; k < LOOKUPS; k++) {
        hits += get(t, k % N, 1, &id) == LB_OK;
    }
    printf("sticky: a source_ip table lookup (%d entries) costs %.0f ns\n", N,
           (now_ns() - t0) / LOOKUPS);
    ck_assert_uint_eq(hits, LOOKUPS);
    munmap(t, lb_sticky_table_bytes(N));
}
END_TEST

static Suite *
sticky_suite(void)
{
    Suite  *s = suite_create("sticky");
    TCase  *tc;

    tc = tcase_create("cookie");
    tcase_add_test(tc, a_cookie_names_its_server_to_any_key_of_the_same_secret);
    tcase_add_test(tc, a_cookie_matches_an_independent_computation);
    tcase_add_test(tc, another_secret_another_upstream_or_expiry_refuse_it);
    tcase_add_test(tc, every_one_character_change_is_refused);
    tcase_add_test(tc, garbage_of_any_length_is_refused);
    tcase_add_test(tc, server_ids_are_stable_and_distinct);
    tcase_add_test(tc, cookie_check_cost);
    suite_add_tcase(s, tc);

    tc = tcase_create("table");
    tcase_add_test(tc, table_put_get_replace_and_ttl);
    tcase_add_test(tc, table_full_evicts_the_least_recently_used);
    tcase_add_test(tc, table_is_shared_between_processes);
    tcase_add_test(tc, table_lookup_cost);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(sticky_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
