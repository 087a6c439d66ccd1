/*
 * test_proxy_protocol.c: the PROXY protocol parser and builder of
 * core/lb_proxy_protocol.c: valid v1 (TCP4, TCP6, UNKNOWN) and v2 (PROXY,
 * LOCAL, TLVs, CRC32C) headers, every malformed form with its reason, and
 * the same answers when the bytes arrive one at a time.
 */
#include "lb_core.h"
#include "lb_proxy_protocol.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>

#define SIG  "\r\n\r\n\0\r\nQUIT\n"

typedef struct {
    const char  *data;
    size_t       len;
} bytes_t;

#define B(s)  { s, sizeof(s) - 1 }

/* Parses the whole input, then every prefix: a prefix must get LB_AGAIN,
 * or the same error as the whole (a malformed start is seen early). */
static int
parse_all_ways(const bytes_t *in, lb_proxy_header_t *h, const char **why)
{
    lb_proxy_header_t  ph;
    const char        *pwhy;
    size_t             n;
    int                rc, prc;

    rc = lb_proxy_parse(h, (const uint8_t *) in->data, in->len, why);
    for (n = 0; n < in->len; n++) {
        prc = lb_proxy_parse(&ph, (const uint8_t *) in->data, n, &pwhy);
        if (rc == LB_OK) {
            ck_assert_msg(prc == LB_AGAIN || (prc == LB_OK && ph.len <= n),
                          "prefix %zu: rc %d", n, prc);
            if (prc == LB_OK) {
                break;
            }
        } else {
            ck_assert_msg(prc == LB_AGAIN || (prc == LB_ERROR && strcmp(pwhy, *why) == 0),
                          "prefix %zu: rc %d (%s), whole: %s", n, prc, pwhy ? pwhy : "",
                          *why);
        }
    }
    return rc;
}

static void
assert_addr(const struct sockaddr_storage *ss, const char *text, unsigned port)
{
    char  buf[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in  *sin = (const struct sockaddr_in *) ss;

        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
        ck_assert_uint_eq(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6  *sin6 = (const struct sockaddr_in6 *) ss;

        ck_assert_int_eq(ss->ss_family, AF_INET6);
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
        ck_assert_uint_eq(ntohs(sin6->sin6_port), port);
    }
    ck_assert_str_eq(buf, text);
}

START_TEST(v1_tcp4)
{
    bytes_t             in = B("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /");
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_int_eq(parse_all_ways(&in, &h, &why), LB_OK);
    ck_assert_int_eq(h.version, 1);
    ck_assert(!h.local);
    ck_assert_uint_eq(h.len, in.len - 5);
    assert_addr(&h.src, "192.0.2.1", 56324);
    assert_addr(&h.dst, "198.51.100.2", 443);
    ck_assert_uint_eq(h.addr_len, sizeof(struct sockaddr_in));
}
END_TEST

START_TEST(v1_tcp6)
{
    bytes_t             in = B("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n");
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_int_eq(parse_all_ways(&in, &h, &why), LB_OK);
    assert_addr(&h.src, "2001:db8::1", 0);
    assert_addr(&h.dst, "::ffff:10.0.0.1", 65535);
    ck_assert_uint_eq(h.len, in.len);
}
END_TEST

START_TEST(v1_unknown)
{
    bytes_t             a = B("PROXY UNKNOWN\r\n"), b = B("PROXY UNKNOWN whatever 1 2 3\r\nx");
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_int_eq(parse_all_ways(&a, &h, &why), LB_OK);
    ck_assert(h.local);
    ck_assert_uint_eq(h.len, a.len);
    ck_assert_int_eq(parse_all_ways(&b, &h, &why), LB_OK);
    ck_assert(h.local);
    ck_assert_uint_eq(h.len, b.len - 1);
}
END_TEST

START_TEST(v1_longest_line_is_accepted)
{
    char                line[160];
    lb_proxy_header_t   h;
    const char         *why;
    int                 n;

    n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n",
                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    ck_assert_int_eq(n, 104);
    ck_assert_int_eq(lb_proxy_parse(&h, (uint8_t *) line, (size_t) n, &why), LB_OK);
    /* UNKNOWN may fill all 107 bytes; 108 is too many */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    ck_assert_int_eq(lb_proxy_parse(&h, (uint8_t *) line, 107, &why), LB_OK);
    ck_assert_uint_eq(h.len, 107);
    memcpy(line + 105, "x\r\n", 3);
    ck_assert_int_eq(lb_proxy_parse(&h, (uint8_t *) line, 108, &why), LB_ERROR);
    ck_assert_str_eq(why, "v1 header has no CRLF within 107 bytes");
}
END_TEST

static const struct {
    bytes_t      in;
    const char  *why;
} bad[] = {
    { B("GET / HTTP/1.1\r\n"), "not a PROXY protocol header" },
    { B("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "not a PROXY protocol header" },
    { B("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "not a PROXY protocol header" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "v1 header has a bare LF" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx"), "v1 header has a CR without LF" },
    { B("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"), "v1 header has a control or non-ASCII byte" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 \xc3\xa9\r\n"),
      "v1 header has a control or non-ASCII byte" },
    { B("PROXY \r\n"), "v1 protocol is not TCP4, TCP6 or UNKNOWN" },
    { B("PROXY\r\n"), "not a PROXY protocol header" },
    { B("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), "v1 protocol is not TCP4, TCP6 or UNKNOWN" },
    { B("PROXY UNKNOWNX\r\n"), "v1 protocol is not TCP4, TCP6 or UNKNOWN" },
    { B("PROXY TCP4\r\n"), "v1 protocol is not TCP4, TCP6 or UNKNOWN" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
      "v1 header does not have four fields separated by single spaces" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
      "v1 header does not have four fields separated by single spaces" },
    { B("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
      "v1 header does not have four fields separated by single spaces" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
      "v1 header does not have four fields separated by single spaces" },
    { B("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), "v1 TCP4 address is not an IPv4 address" },
    { B("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), "v1 TCP4 address is not an IPv4 address" },
    { B("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), "v1 TCP6 address is not an IPv6 address" },
    { B("PROXY TCP6 ::1 ::1::2 1 2\r\n"), "v1 TCP6 address is not an IPv6 address" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), "v1 port is not a number from 0 to 65535" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), "v1 port is not a number from 0 to 65535" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n"), "v1 port is not a number from 0 to 65535" },
    { B("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n"), "v1 port is not a number from 0 to 65535" },
    { B(SIG "\x11\x11\x00\x0c" "12345678abcd"), "v2 header has a version other than 2" },
    { B(SIG "\x22\x11\x00\x0c" "12345678abcd"), "v2 command is neither LOCAL nor PROXY" },
    { B(SIG "\x21\x41\x00\x0c" "12345678abcd"), "v2 address family or transport is invalid" },
    { B(SIG "\x21\x13\x00\x0c" "12345678abcd"), "v2 address family or transport is invalid" },
    { B(SIG "\x21\x01\x00\x00"), "v2 address family or transport is invalid" },
    { B(SIG "\x21\x11\x04\x01"), "v2 header is longer than 1040 bytes" },
    { B(SIG "\x21\x11\x00\x0b" "12345678abc"), "v2 length is too short for its address family" },
    { B(SIG "\x21\x21\x00\x0c" "12345678abcd"), "v2 length is too short for its address family" },
    { B(SIG "\x21\x11\x00\x0e" "12345678abcd\x01\x00"), "v2 TLV is truncated" },
    { B(SIG "\x21\x11\x00\x10" "12345678abcd\x01\x00\x02x"), "v2 TLV is longer than the header" },
    { B(SIG "\x21\x11\x00\x12" "12345678abcd\x03\x00\x03xyz"), "v2 CRC32C TLV is not 4 bytes" },
    { B(SIG "\x21\x11\x00\x13" "12345678abcd\x03\x00\x04wxyz"),
      "v2 CRC32C does not match the header" },
    { B("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00"), "not a PROXY protocol header" },
    { B("\x16\x03\x01\x02\x00"), "not a PROXY protocol header" },
};

START_TEST(invalid_is_refused_with_a_reason)
{
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_msg(parse_all_ways(&bad[_i].in, &h, &why) == LB_ERROR, "case %d parsed", _i);
    ck_assert_msg(strcmp(why, bad[_i].why) == 0, "case %d: \"%s\", expected \"%s\"",
                  _i, why, bad[_i].why);
}
END_TEST

START_TEST(v2_proxy_inet_and_inet6)
{
    bytes_t             a = B(SIG "\x21\x11\x00\x0c" "\xc0\x00\x02\x01" "\xc6\x33\x64\x02"
                              "\xdc\x04" "\x01\xbb" "payload");
    bytes_t             b = B(SIG "\x21\x21\x00\x24"
                              "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07"
                              "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
                              "\x9c\x40" "\x00\x50");
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_int_eq(parse_all_ways(&a, &h, &why), LB_OK);
    ck_assert_int_eq(h.version, 2);
    ck_assert(!h.local);
    ck_assert_uint_eq(h.len, 28);
    assert_addr(&h.src, "192.0.2.1", 56324);
    assert_addr(&h.dst, "198.51.100.2", 443);
    ck_assert_uint_eq(h.tlv_len, 0);

    ck_assert_int_eq(parse_all_ways(&b, &h, &why), LB_OK);
    ck_assert_uint_eq(h.len, 52);
    assert_addr(&h.src, "2001:db8::7", 40000);
    assert_addr(&h.dst, "2001:db8::1", 80);
    ck_assert_uint_eq(h.addr_len, sizeof(struct sockaddr_in6));
}
END_TEST

START_TEST(v2_local_and_unspec_keep_the_peer)
{
    bytes_t             local = B(SIG "\x20\x00\x00\x00");
    bytes_t             local_inet = B(SIG "\x20\x11\x00\x03" "abc");
    bytes_t             unspec = B(SIG "\x21\x00\x00\x02" "zz");
    bytes_t             unix_ = B(SIG "\x21\x31\x00\xd8"
        "................................................................................"
        "................................................................................"
        "........................................................");
    bytes_t             udp = B(SIG "\x21\x12\x00\x0c" "12345678abcd");
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_int_eq(parse_all_ways(&local, &h, &why), LB_OK);
    ck_assert(h.local);
    ck_assert_uint_eq(h.len, 16);
    ck_assert_int_eq(parse_all_ways(&local_inet, &h, &why), LB_OK);
    ck_assert(h.local);
    ck_assert_uint_eq(h.len, 19);
    ck_assert_int_eq(parse_all_ways(&unspec, &h, &why), LB_OK);
    ck_assert(h.local);
    ck_assert_uint_eq(h.len, 18);
    ck_assert_int_eq(parse_all_ways(&unix_, &h, &why), LB_OK);
    ck_assert(h.local);
    ck_assert_uint_eq(h.len, 16 + 216);
    ck_assert_int_eq(parse_all_ways(&udp, &h, &why), LB_OK);
    ck_assert(h.local);
}
END_TEST

START_TEST(v2_tlvs_are_walked)
{
    bytes_t             in = B(SIG "\x21\x11\x00\x1a" "\x7f\0\0\x01" "\x7f\0\0\x01" "\0\x01\0\x02"
                               "\x01\x00\x02h2" "\x04\x00\x00" "\x02\x00\x03x.y");
    lb_proxy_header_t   h;
    const uint8_t      *v;
    const char         *why;
    size_t              off = 0, vlen;
    uint8_t             type;

    ck_assert_int_eq(parse_all_ways(&in, &h, &why), LB_OK);
    ck_assert_uint_eq(h.tlv_len, 14);
    ck_assert(lb_proxy_tlv_next(&h, &off, &type, &v, &vlen));
    ck_assert_uint_eq(type, LB_PROXY_TLV_ALPN);
    ck_assert_uint_eq(vlen, 2);
    ck_assert(memcmp(v, "h2", 2) == 0);
    ck_assert(lb_proxy_tlv_next(&h, &off, &type, &v, &vlen));
    ck_assert_uint_eq(type, LB_PROXY_TLV_NOOP);
    ck_assert_uint_eq(vlen, 0);
    ck_assert(lb_proxy_tlv_next(&h, &off, &type, &v, &vlen));
    ck_assert_uint_eq(type, LB_PROXY_TLV_AUTHORITY);
    ck_assert(memcmp(v, "x.y", 3) == 0);
    ck_assert(!lb_proxy_tlv_next(&h, &off, &type, &v, &vlen));
}
END_TEST

/* A CRC32C TLV computed here must be accepted, and fail once a byte of
 * the header changes. */
START_TEST(v2_crc32c_is_checked)
{
    uint8_t             buf[35];
    lb_proxy_header_t   h;
    const char         *why;
    uint32_t            crc = 0xffffffff;
    size_t              i;
    int                 k;

    memcpy(buf, SIG "\x21\x11\x00\x13" "\x7f\0\0\x01" "\x7f\0\0\x02" "\x30\x39\x01\xbb"
                "\x03\x00\x04\0\0\0\0", 35);
    for (i = 0; i < sizeof(buf); i++) {
        crc ^= buf[i];
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82f63b78 & (0u - (crc & 1)));
        }
    }
    crc = ~crc;
    buf[31] = (uint8_t) (crc >> 24);
    buf[32] = (uint8_t) (crc >> 16);
    buf[33] = (uint8_t) (crc >> 8);
    buf[34] = (uint8_t) crc;
    ck_assert_int_eq(lb_proxy_parse(&h, buf, sizeof(buf), &why), LB_OK);
    buf[17] ^= 1;
    ck_assert_int_eq(lb_proxy_parse(&h, buf, sizeof(buf), &why), LB_ERROR);
    ck_assert_str_eq(why, "v2 CRC32C does not match the header");
}
END_TEST

START_TEST(v2_limit_is_1040_bytes)
{
    static uint8_t      buf[LB_PROXY_MAX_LEN + 1];
    lb_proxy_header_t   h;
    const char         *why;

    memcpy(buf, SIG "\x20\x00\x04\x00", 16);
    ck_assert_int_eq(lb_proxy_parse(&h, buf, LB_PROXY_MAX_LEN - 1, &why), LB_AGAIN);
    ck_assert_int_eq(lb_proxy_parse(&h, buf, LB_PROXY_MAX_LEN, &why), LB_OK);
    ck_assert_uint_eq(h.len, LB_PROXY_MAX_LEN);
}
END_TEST

START_TEST(empty_input_needs_more)
{
    lb_proxy_header_t   h;
    const char         *why;

    ck_assert_int_eq(lb_proxy_parse(&h, (const uint8_t *) "", 0, &why), LB_AGAIN);
}
END_TEST

/* Builder ------------------------------------------------------------------ */

static struct sockaddr_storage
sa(const char *ip, unsigned port)
{
    struct sockaddr_storage  ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6  *sin6 = (struct sockaddr_in6 *) &ss;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t) port);
        ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    } else {
        struct sockaddr_in  *sin = (struct sockaddr_in *) &ss;

        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t) port);
        ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    }
    return ss;
}

START_TEST(build_v1)
{
    struct sockaddr_storage  c = sa("192.0.2.1", 56324), l = sa("198.51.100.2", 443);
    struct sockaddr_storage  c6 = sa("2001:db8::1", 1);
    struct sockaddr_un       u = { .sun_family = AF_UNIX };
    uint8_t                  buf[LB_PROXY_BUILD_MAX_LEN];
    size_t                   n;

    n = lb_proxy_build(1, buf, sizeof(buf), (struct sockaddr *) &c, (struct sockaddr *) &l);
    ck_assert_uint_eq(n, strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"));
    ck_assert(memcmp(buf, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", n) == 0);

    n = lb_proxy_build(1, buf, sizeof(buf), (struct sockaddr *) &c6, (struct sockaddr *) &l);
    ck_assert(memcmp(buf, "PROXY TCP6 2001:db8::1 ::ffff:198.51.100.2 1 443\r\n", n) == 0);

    n = lb_proxy_build(1, buf, sizeof(buf), (struct sockaddr *) &u, (struct sockaddr *) &l);
    ck_assert(n == 15 && memcmp(buf, "PROXY UNKNOWN\r\n", n) == 0);

    ck_assert_uint_eq(lb_proxy_build(1, buf, 20, (struct sockaddr *) &c,
                                     (struct sockaddr *) &l), 0);
    ck_assert_uint_eq(lb_proxy_build(3, buf, sizeof(buf), (struct sockaddr *) &c,
                                     (struct sockaddr *) &l), 0);
}
END_TEST

/* What the builder writes, the parser reads back. */
START_TEST(build_round_trips)
{
    static const char *const  ips[][2] = {
        { "192.0.2.1", "198.51.100.2" }, { "2001:db8::1", "2001:db8::2" },
        { "10.0.0.1", "fe80::1" },
    };
    struct sockaddr_storage   c, l;
    lb_proxy_header_t         h;
    uint8_t                   buf[LB_PROXY_BUILD_MAX_LEN];
    const char               *why;
    size_t                    n, i;
    int                       v;

    for (i = 0; i < lb_nelems(ips); i++) {
        for (v = 1; v <= 2; v++) {
            c = sa(ips[i][0], 1000 + (unsigned) i);
            l = sa(ips[i][1], 65535);
            n = lb_proxy_build(v, buf, sizeof(buf), (struct sockaddr *) &c,
                               (struct sockaddr *) &l);
            ck_assert_uint_gt(n, 0);
            ck_assert_int_eq(lb_proxy_parse(&h, buf, n, &why), LB_OK);
            ck_assert_int_eq(h.version, v);
            ck_assert_uint_eq(h.len, n);
            ck_assert(!h.local);
            if (i < 2) {
                assert_addr(&h.src, ips[i][0], 1000 + (unsigned) i);
                assert_addr(&h.dst, ips[i][1], 65535);
            } else {
                assert_addr(&h.src, "::ffff:10.0.0.1", 1002);
            }
        }
    }
}
END_TEST

START_TEST(build_v2_local_for_unix)
{
    struct sockaddr_un   u = { .sun_family = AF_UNIX };
    lb_proxy_header_t    h;
    uint8_t              buf[LB_PROXY_BUILD_MAX_LEN];
    const char          *why;
    size_t               n;

    n = lb_proxy_build(2, buf, sizeof(buf), (struct sockaddr *) &u, (struct sockaddr *) &u);
    ck_assert_uint_eq(n, 16);
    ck_assert_int_eq(lb_proxy_parse(&h, buf, n, &why), LB_OK);
    ck_assert(h.local);
}
END_TEST

static Suite *
proxy_protocol_suite(void)
{
    Suite  *s = suite_create("proxy_protocol");
    TCase  *tc;

    tc = tcase_create("v1");
    tcase_add_test(tc, v1_tcp4);
    tcase_add_test(tc, v1_tcp6);
    tcase_add_test(tc, v1_unknown);
    tcase_add_test(tc, v1_longest_line_is_accepted);
    tcase_add_test(tc, empty_input_needs_more);
    suite_add_tcase(s, tc);

    tc = tcase_create("v2");
    tcase_add_test(tc, v2_proxy_inet_and_inet6);
    tcase_add_test(tc, v2_local_and_unspec_keep_the_peer);
    tcase_add_test(tc, v2_tlvs_are_walked);
    tcase_add_test(tc, v2_crc32c_is_checked);
    tcase_add_test(tc, v2_limit_is_1040_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_loop_test(tc, invalid_is_refused_with_a_reason, 0, (int) lb_nelems(bad));
    suite_add_tcase(s, tc);

    tc = tcase_create("build");
    tcase_add_test(tc, build_v1);
    tcase_add_test(tc, build_round_trips);
    tcase_add_test(tc, build_v2_local_for_unix);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(proxy_protocol_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
