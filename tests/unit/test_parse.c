/*
 * test_parse.c: the configuration value parsers of core/lb_parse.c:
 * durations, sizes and listen/server addresses, and the canonical text
 * and equality of addresses.
 */
#include "lb_core.h"

#include <arpa/inet.h>
#include <check.h>

/* Durations ------------------------------------------------------------- */

static lb_msec_t
duration_ok(const char *s)
{
    lb_msec_t  ms = -42;

    ck_assert_msg(lb_parse_duration(s, &ms) == LB_OK, "\"%s\" should parse", s);
    return ms;
}

static void
duration_bad(const char *s)
{
    lb_msec_t  ms = -42;

    ck_assert_msg(lb_parse_duration(s, &ms) == LB_ERROR, "\"%s\" should be rejected", s);
}

START_TEST(duration_units_convert_to_milliseconds)
{
    ck_assert_int_eq(duration_ok("250ms"), 250);
    ck_assert_int_eq(duration_ok("5s"), 5000);
    ck_assert_int_eq(duration_ok("2m"), 120000);
    ck_assert_int_eq(duration_ok("1h"), 3600000);
    ck_assert_int_eq(duration_ok("1d"), 86400000);
}
END_TEST

START_TEST(duration_plain_number_is_seconds)
{
    ck_assert_int_eq(duration_ok("30"), 30000);
    ck_assert_int_eq(duration_ok("0"), 0);
    ck_assert_int_eq(duration_ok("0ms"), 0);
}
END_TEST

START_TEST(duration_largest_value_fits)
{
    ck_assert_int_eq(duration_ok("9223372036854775807ms"), INT64_MAX);
}
END_TEST

START_TEST(duration_malformed_is_rejected)
{
    duration_bad("");
    duration_bad("5x");
    duration_bad("-1");
    duration_bad("1.5s");
    duration_bad("s");
    duration_bad("ms");
    duration_bad("5 s");
    duration_bad(" 5s");
    duration_bad("5s ");
    duration_bad("5S");
    duration_bad("5sec");
}
END_TEST

START_TEST(duration_overflow_is_rejected)
{
    duration_bad("99999999999999999999");       /* the digits alone overflow */
    duration_bad("9223372036854775808ms");      /* INT64_MAX + 1 */
    duration_bad("9223372036854775807d");       /* the unit overflows */
    duration_bad("9223372036854775807s");
}
END_TEST

/* Sizes ----------------------------------------------------------------- */

static int64_t
size_ok(const char *s)
{
    int64_t  n = -42;

    ck_assert_msg(lb_parse_size(s, &n) == LB_OK, "\"%s\" should parse", s);
    return n;
}

static void
size_bad(const char *s)
{
    int64_t  n = -42;

    ck_assert_msg(lb_parse_size(s, &n) == LB_ERROR, "\"%s\" should be rejected", s);
}

START_TEST(size_units_are_powers_of_1024)
{
    ck_assert_int_eq(size_ok("512"), 512);
    ck_assert_int_eq(size_ok("0"), 0);
    ck_assert_int_eq(size_ok("16k"), 16384);
    ck_assert_int_eq(size_ok("8m"), 8388608);
    ck_assert_int_eq(size_ok("1g"), 1073741824);
}
END_TEST

START_TEST(size_units_are_case_insensitive)
{
    ck_assert_int_eq(size_ok("1K"), 1024);
    ck_assert_int_eq(size_ok("2M"), 2097152);
    ck_assert_int_eq(size_ok("3G"), 3221225472LL);
}
END_TEST

START_TEST(size_malformed_is_rejected)
{
    size_bad("");
    size_bad("16kb");
    size_bad("k");
    size_bad("-1");
    size_bad("16 k");
    size_bad("1.5k");
    size_bad("16x");
    size_bad("16t");
}
END_TEST

START_TEST(size_overflow_is_rejected)
{
    ck_assert_int_eq(size_ok("9223372036854775807"), INT64_MAX);
    size_bad("9223372036854775808");
    size_bad("99999999999999999999");
    size_bad("9007199254740992k");              /* 2^53 * 2^10 = 2^63 */
    size_bad("8589934592g");                    /* 2^33 * 2^30 = 2^63 */
}
END_TEST

/* Addresses ------------------------------------------------------------- */

static lb_addr_t
addr_ok(const char *s)
{
    lb_addr_t  a;
    char       err[160] = "";

    ck_assert_msg(lb_parse_addr(s, &a, err, sizeof(err)) == LB_OK,
                  "\"%s\" should parse, got: %s", s, err);
    return a;
}

/* Parses s, which must fail, and returns the reason (a static buffer). */
static const char *
addr_bad(const char *s)
{
    static char  err[160];
    lb_addr_t    a;

    err[0] = '\0';
    ck_assert_msg(lb_parse_addr(s, &a, err, sizeof(err)) == LB_ERROR,
                  "\"%s\" should be rejected", s);
    return err;
}

START_TEST(addr_ipv4_with_port)
{
    lb_addr_t  a = addr_ok("127.0.0.1:8080");

    ck_assert_int_eq(a.u.sin.sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(a.u.sin.sin_port), 8080);
    ck_assert_uint_eq(ntohl(a.u.sin.sin_addr.s_addr), 0x7f000001);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));
    ck_assert(!a.wildcard);
    ck_assert_str_eq(a.text, "127.0.0.1:8080");
}
END_TEST

START_TEST(addr_port_bounds_are_1_and_65535)
{
    ck_assert_uint_eq(ntohs(addr_ok("10.0.0.1:1").u.sin.sin_port), 1);
    ck_assert_uint_eq(ntohs(addr_ok("10.0.0.1:65535").u.sin.sin_port), 65535);
    ck_assert_str_eq(addr_bad("10.0.0.1:0"), "invalid port \"0\" (must be 1..65535)");
    ck_assert_str_eq(addr_bad("10.0.0.1:65536"), "invalid port \"65536\" (must be 1..65535)");
    ck_assert_str_eq(addr_bad("10.0.0.1:"), "invalid port \"\" (must be 1..65535)");
    ck_assert_str_eq(addr_bad("10.0.0.1:80x"), "invalid port \"80x\" (must be 1..65535)");
    ck_assert_str_eq(addr_bad("10.0.0.1:-80"), "invalid port \"-80\" (must be 1..65535)");
}
END_TEST

START_TEST(addr_ipv6_in_brackets)
{
    lb_addr_t  a = addr_ok("[::1]:8080");

    ck_assert_int_eq(a.u.sin6.sin6_family, AF_INET6);
    ck_assert_uint_eq(ntohs(a.u.sin6.sin6_port), 8080);
    ck_assert(IN6_IS_ADDR_LOOPBACK(&a.u.sin6.sin6_addr));
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));
    ck_assert(!a.wildcard);
    ck_assert_str_eq(a.text, "[::1]:8080");
}
END_TEST

START_TEST(addr_text_is_canonical)
{
    ck_assert_str_eq(addr_ok("[0:0:0:0:0:0:0:1]:80").text, "[::1]:80");
    ck_assert_str_eq(addr_ok("[2001:DB8:0:0:0:0:0:1]:443").text, "[2001:db8::1]:443");
    ck_assert_str_eq(addr_ok("10.0.0.1:0080").text, "10.0.0.1:80");
}
END_TEST

START_TEST(addr_star_is_the_ipv4_wildcard)
{
    lb_addr_t  a = addr_ok("*:8080");

    ck_assert_int_eq(a.u.sin.sin_family, AF_INET);
    ck_assert_uint_eq(a.u.sin.sin_addr.s_addr, htonl(INADDR_ANY));
    ck_assert_uint_eq(ntohs(a.u.sin.sin_port), 8080);
    ck_assert(a.wildcard);
    ck_assert_str_eq(a.text, "0.0.0.0:8080");
}
END_TEST

START_TEST(addr_unix_socket_path)
{
    lb_addr_t  a = addr_ok("unix:/tmp/x.sock");

    ck_assert_int_eq(a.u.sun.sun_family, AF_UNIX);
    ck_assert_str_eq(a.u.sun.sun_path, "/tmp/x.sock");
    ck_assert_uint_eq(a.len, offsetof(struct sockaddr_un, sun_path) + sizeof("/tmp/x.sock"));
    ck_assert(!a.wildcard);
    ck_assert_str_eq(a.text, "unix:/tmp/x.sock");
}
END_TEST

START_TEST(addr_unix_path_length_limit)
{
    char       s[5 + sizeof(((struct sockaddr_un *) 0)->sun_path) + 1];
    size_t     max = sizeof(((struct sockaddr_un *) 0)->sun_path) - 1;   /* 107 */
    lb_addr_t  a;

    memcpy(s, "unix:", 5);
    memset(s + 5, 'p', max);
    s[5 + max] = '\0';
    a = addr_ok(s);
    ck_assert_uint_eq(strlen(a.u.sun.sun_path), max);
    ck_assert_str_eq(a.text, s);

    s[5 + max] = 'p';
    s[5 + max + 1] = '\0';
    ck_assert_str_eq(addr_bad(s), "unix socket path is empty or longer than 107 bytes");
}
END_TEST

START_TEST(addr_malformed_is_rejected_with_a_reason)
{
    ck_assert_str_eq(addr_bad("127.0.0.1"),
                     "expected \"HOST:PORT\", \"[IPV6]:PORT\", \"*:PORT\" or \"unix:PATH\"");
    ck_assert_str_eq(addr_bad(""),
                     "expected \"HOST:PORT\", \"[IPV6]:PORT\", \"*:PORT\" or \"unix:PATH\"");
    ck_assert_str_eq(addr_bad(":80"), "missing or overlong host before the port");
    ck_assert_str_eq(addr_bad("1.2.3:80"),
                     "invalid IPv4 address \"1.2.3\" (host names are not resolved; use an address)");
    ck_assert_str_eq(addr_bad("256.0.0.1:80"),
                     "invalid IPv4 address \"256.0.0.1\" (host names are not resolved; use an address)");
    ck_assert_str_eq(addr_bad("[::1]8080"), "expected \"[IPV6]:PORT\"");
    ck_assert_str_eq(addr_bad("[::1"), "expected \"[IPV6]:PORT\"");
    ck_assert_str_eq(addr_bad("[]:80"), "invalid IPv6 address");
    ck_assert_str_eq(addr_bad("[::g]:80"), "invalid IPv6 address \"::g\"");
    ck_assert_str_eq(addr_bad("[::1]:0"), "invalid port \"0\" (must be 1..65535)");
    ck_assert_str_eq(addr_bad("unix:"), "unix socket path is empty or longer than 107 bytes");
}
END_TEST

START_TEST(addr_host_names_are_not_resolved)
{
    ck_assert_str_eq(addr_bad("host.example:80"),
                     "invalid IPv4 address \"host.example\" (host names are not resolved; "
                     "use an address)");
    ck_assert_str_eq(addr_bad("localhost:80"),
                     "invalid IPv4 address \"localhost\" (host names are not resolved; "
                     "use an address)");
}
END_TEST

/* lb_addr_format ------------------------------------------------------- */

START_TEST(addr_format_round_trips)
{
    static const char *const  texts[] = {
        "127.0.0.1:8080", "0.0.0.0:1", "[::1]:8080", "[2001:db8::1]:65535",
        "unix:/run/lbd.sock", NULL
    };
    const char *const  *t;
    lb_addr_t           a, b;
    char                buf[LB_ADDR_TEXT_LEN + 128], err[160];
    size_t              n;

    for (t = texts; *t; t++) {
        a = addr_ok(*t);
        n = lb_addr_format(&a.u.sa, a.len, buf, sizeof(buf));
        ck_assert_str_eq(buf, *t);
        ck_assert_uint_eq(n, strlen(*t));
        ck_assert_int_eq(lb_parse_addr(buf, &b, err, sizeof(err)), LB_OK);
        ck_assert(lb_addr_equal(&a, &b));
    }
}
END_TEST

START_TEST(addr_format_truncates_to_the_buffer)
{
    lb_addr_t  a = addr_ok("127.0.0.1:8080");
    char       buf[5];

    ck_assert_uint_eq(lb_addr_format(&a.u.sa, a.len, buf, sizeof(buf)), 4);
    ck_assert_str_eq(buf, "127.");
    ck_assert_uint_eq(lb_addr_format(&a.u.sa, a.len, buf, 0), 0);
}
END_TEST

START_TEST(addr_format_unnamed_unix_and_unknown_family)
{
    struct sockaddr_un  sun;
    struct sockaddr     sa;
    char                buf[64];

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    ck_assert_uint_eq(lb_addr_format((struct sockaddr *) &sun, sizeof(sa_family_t),
                                     buf, sizeof(buf)), 5);
    ck_assert_str_eq(buf, "unix:");

    memset(&sa, 0, sizeof(sa));
    sa.sa_family = 99;
    lb_addr_format(&sa, sizeof(sa), buf, sizeof(buf));
    ck_assert_str_eq(buf, "(unknown address family 99)");
}
END_TEST

/* lb_addr_equal -------------------------------------------------------- */

START_TEST(addr_equal_compares_family_address_and_port)
{
    lb_addr_t  a = addr_ok("127.0.0.1:80");
    lb_addr_t  b = addr_ok("127.0.0.1:80");

    ck_assert(lb_addr_equal(&a, &b));
    b = addr_ok("127.0.0.1:81");
    ck_assert(!lb_addr_equal(&a, &b));
    b = addr_ok("127.0.0.2:80");
    ck_assert(!lb_addr_equal(&a, &b));
    b = addr_ok("[::ffff:127.0.0.1]:80");
    ck_assert(!lb_addr_equal(&a, &b));

    a = addr_ok("[::1]:80");
    b = addr_ok("[0::1]:80");
    ck_assert(lb_addr_equal(&a, &b));

    a = addr_ok("unix:/tmp/a.sock");
    b = addr_ok("unix:/tmp/a.sock");
    ck_assert(lb_addr_equal(&a, &b));
    b = addr_ok("unix:/tmp/a.sock2");
    ck_assert(!lb_addr_equal(&a, &b));
}
END_TEST

START_TEST(addr_equal_star_is_the_same_socket_as_0_0_0_0)
{
    lb_addr_t  a = addr_ok("*:80");
    lb_addr_t  b = addr_ok("0.0.0.0:80");

    ck_assert(lb_addr_equal(&a, &b));
}
END_TEST

static Suite *
parse_suite(void)
{
    Suite  *s = suite_create("parse");
    TCase  *tc;

    tc = tcase_create("duration");
    tcase_add_test(tc, duration_units_convert_to_milliseconds);
    tcase_add_test(tc, duration_plain_number_is_seconds);
    tcase_add_test(tc, duration_largest_value_fits);
    tcase_add_test(tc, duration_malformed_is_rejected);
    tcase_add_test(tc, duration_overflow_is_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("size");
    tcase_add_test(tc, size_units_are_powers_of_1024);
    tcase_add_test(tc, size_units_are_case_insensitive);
    tcase_add_test(tc, size_malformed_is_rejected);
    tcase_add_test(tc, size_overflow_is_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("addr");
    tcase_add_test(tc, addr_ipv4_with_port);
    tcase_add_test(tc, addr_port_bounds_are_1_and_65535);
    tcase_add_test(tc, addr_ipv6_in_brackets);
    tcase_add_test(tc, addr_text_is_canonical);
    tcase_add_test(tc, addr_star_is_the_ipv4_wildcard);
    tcase_add_test(tc, addr_unix_socket_path);
    tcase_add_test(tc, addr_unix_path_length_limit);
    tcase_add_test(tc, addr_malformed_is_rejected_with_a_reason);
    tcase_add_test(tc, addr_host_names_are_not_resolved);
    tcase_add_test(tc, addr_format_round_trips);
    tcase_add_test(tc, addr_format_truncates_to_the_buffer);
    tcase_add_test(tc, addr_format_unnamed_unix_and_unknown_family);
    tcase_add_test(tc, addr_equal_compares_family_address_and_port);
    tcase_add_test(tc, addr_equal_star_is_the_same_socket_as_0_0_0_0);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(parse_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
