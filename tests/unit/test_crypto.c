/*
 * test_crypto.c: the crypto helpers of the TLS seam (core/lb_crypto.c):
 * lb_sha256 against FIPS 180-2's examples, lb_hmac_sha256 against the test
 * cases of RFC 4231 §4, and the basics of lb_random_bytes (it fills what
 * it is asked to, and never the same way).
 */
#include "lb_core.h"
#include "lb_crypto.h"

#include <check.h>

/* RFC 4231 §4.2-4.8: key, data, HMAC-SHA-256 (case 5 truncated to 128
 * bits, so only its first 16 bytes are compared). */
typedef struct {
    const char  *key;           /* hex */
    const char  *data;          /* hex, or text when text is set */
    bool         text;
    const char  *mac;           /* hex */
} rfc4231_case_t;

static const rfc4231_case_t  cases[] = {
    { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "Hi There", true,
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "4a656665", "what do ya want for nothing?", true,
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
      "dddddddddddddddddddddddddddd", false,
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { "0102030405060708090a0b0c0d0e0f10111213141516171819",
      "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
      "cdcdcdcdcdcdcdcdcdcdcdcdcdcd", false,
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", "Test With Truncation", true,
      "a3b6167473100ee06e0c796c2955552b" },
    { NULL /* 131 bytes of 0xaa */,
      "Test Using Larger Than Block-Size Key - Hash Key First", true,
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { NULL /* 131 bytes of 0xaa */,
      "This is a test using a larger than block-size key and a larger than block-size "
      "data. The key needs to be hashed before being used by the HMAC algorithm.", true,
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
};

static size_t
unhex(const char *hex, unsigned char *out, size_t size)
{
    size_t        n = strlen(hex) / 2, i;
    unsigned int  b;

    ck_assert_uint_le(n, size);
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (unsigned char) b;
    }
    return n;
}

START_TEST(hmac_sha256_matches_rfc4231)
{
    const rfc4231_case_t  *t = &cases[_i];
    unsigned char          key[131], data[256], want[LB_HMAC_SHA256_LEN];
    unsigned char          mac[LB_HMAC_SHA256_LEN];
    size_t                 key_len, data_len, want_len;

    if (t->key) {
        key_len = unhex(t->key, key, sizeof(key));
    } else {
        memset(key, 0xaa, sizeof(key));
        key_len = sizeof(key);
    }
    if (t->text) {
        data_len = strlen(t->data);
        memcpy(data, t->data, data_len);
    } else {
        data_len = unhex(t->data, data, sizeof(data));
    }
    want_len = unhex(t->mac, want, sizeof(want));

    ck_assert_int_eq(lb_hmac_sha256(key, key_len, data, data_len, mac), LB_OK);
    ck_assert_msg(memcmp(mac, want, want_len) == 0, "RFC 4231 test case %d differs", _i + 1);
}
END_TEST

START_TEST(hmac_sha256_takes_an_empty_key_and_message)
{
    unsigned char  a[LB_HMAC_SHA256_LEN], b[LB_HMAC_SHA256_LEN], want[LB_HMAC_SHA256_LEN];

    /* HMAC-SHA256("", "") */
    unhex("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad", want,
          sizeof(want));
    ck_assert_int_eq(lb_hmac_sha256("", 0, "", 0, a), LB_OK);
    ck_assert(memcmp(a, want, sizeof(want)) == 0);
    ck_assert_int_eq(lb_hmac_sha256(NULL, 0, NULL, 0, b), LB_OK);
    ck_assert(memcmp(b, want, sizeof(want)) == 0);
}
END_TEST

/* FIPS 180-2, appendix B.1 and B.2, and the empty message */
START_TEST(sha256_of_the_standard_messages)
{
    static const struct {
        const char  *msg;
        const char  *digest;
    } messages[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    };
    unsigned char  got[LB_SHA256_LEN], want[LB_SHA256_LEN];
    size_t         i;

    for (i = 0; i < lb_nelems(messages); i++) {
        unhex(messages[i].digest, want, sizeof(want));
        lb_sha256(messages[i].msg, strlen(messages[i].msg), got);
        ck_assert_msg(memcmp(got, want, sizeof(want)) == 0, "SHA-256 of \"%s\" differs",
                      messages[i].msg);
    }
    lb_sha256(NULL, 0, got);
    unhex(messages[0].digest, want, sizeof(want));
    ck_assert(memcmp(got, want, sizeof(want)) == 0);
}
END_TEST

START_TEST(random_bytes_fill_the_buffer)
{
    static unsigned char  buf[65536];
    bool                  seen[256];
    size_t                i, n = 0;

    memset(seen, 0, sizeof(seen));
    ck_assert_int_eq(lb_random_bytes(buf, sizeof(buf)), LB_OK);
    for (i = 0; i < sizeof(buf); i++) {
        seen[buf[i]] = true;
    }
    for (i = 0; i < 256; i++) {
        n += seen[i];
    }
    /* 64k uniform bytes miss a value with odds of about 2^-360 */
    ck_assert_uint_eq(n, 256);
    ck_assert_int_eq(lb_random_bytes(buf, 0), LB_OK);
}
END_TEST

START_TEST(random_bytes_differ_between_calls)
{
    unsigned char  a[32], b[32];

    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    ck_assert_int_eq(lb_random_bytes(a, sizeof(a)), LB_OK);
    ck_assert_int_eq(lb_random_bytes(b, sizeof(b)), LB_OK);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

START_TEST(random_bytes_leave_the_rest_alone)
{
    unsigned char  buf[40];
    size_t         i;

    memset(buf, 0x5a, sizeof(buf));
    ck_assert_int_eq(lb_random_bytes(buf + 4, 32), LB_OK);
    for (i = 0; i < 4; i++) {
        ck_assert_uint_eq(buf[i], 0x5a);
        ck_assert_uint_eq(buf[36 + i], 0x5a);
    }
}
END_TEST

static Suite *
crypto_suite(void)
{
    Suite  *s = suite_create("crypto");
    TCase  *tc = tcase_create("hmac");
    TCase  *tr = tcase_create("random");

    tcase_add_loop_test(tc, hmac_sha256_matches_rfc4231, 0, (int) lb_nelems(cases));
    tcase_add_test(tc, hmac_sha256_takes_an_empty_key_and_message);
    tcase_add_test(tc, sha256_of_the_standard_messages);
    suite_add_tcase(s, tc);
    tcase_add_test(tr, random_bytes_fill_the_buffer);
    tcase_add_test(tr, random_bytes_differ_between_calls);
    tcase_add_test(tr, random_bytes_leave_the_rest_alone);
    suite_add_tcase(s, tr);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(crypto_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
