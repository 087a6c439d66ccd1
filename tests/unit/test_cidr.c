/*
 * test_cidr.c: CIDR blocks and addresses of core/lb_cidr.c: what parses
 * and what is refused (with the reason an operator sees), matching IPv4,
 * IPv6 and IPv4-mapped clients, lists, and addresses given as text.
 */
#include "lb_core.h"

#include <arpa/inet.h>
#include <check.h>

static char  err[256];

static lb_cidr_t
cidr_ok(const char *s)
{
    lb_cidr_t  c;

    err[0] = '\0';
    ck_assert_msg(lb_cidr_parse(s, &c, err, sizeof(err)) == LB_OK,
                  "\"%s\" should parse: %s", s, err);
    return c;
}

static const char *
cidr_bad(const char *s)
{
    lb_cidr_t  c;

    err[0] = '\0';
    ck_assert_msg(lb_cidr_parse(s, &c, err, sizeof(err)) == LB_ERROR,
                  "\"%s\" should be refused", s);
    return err;
}

/* The canonical text of what s parses to. */
static const char *
canon(const char *s)
{
    static char  buf[LB_CIDR_TEXT_LEN];
    lb_cidr_t    c = cidr_ok(s);
    size_t       n = lb_cidr_format(&c, buf, sizeof(buf));

    ck_assert_uint_eq(n, strlen(buf));
    return buf;
}

static struct sockaddr_storage  ss;

static const struct sockaddr *
v4(const char *ip)
{
    struct sockaddr_in  *sin = (struct sockaddr_in *) &ss;

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(51234);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return (struct sockaddr *) &ss;
}

static const struct sockaddr *
v6(const char *ip)
{
    struct sockaddr_in6  *sin6 = (struct sockaddr_in6 *) &ss;

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(51234);
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return (struct sockaddr *) &ss;
}

static bool
match(const char *cidr, const struct sockaddr *sa)
{
    lb_cidr_t  c = cidr_ok(cidr);

    return lb_cidr_match(&c, sa);
}

/* Parsing --------------------------------------------------------------- */

START_TEST(blocks_and_hosts_parse)
{
    lb_cidr_t  c;

    c = cidr_ok("10.0.0.0/8");
    ck_assert_int_eq(c.family, AF_INET);
    ck_assert_uint_eq(c.prefix, 8);
    c = cidr_ok("192.168.1.7");
    ck_assert_int_eq(c.family, AF_INET);
    ck_assert_uint_eq(c.prefix, 32);
    c = cidr_ok("::1");
    ck_assert_int_eq(c.family, AF_INET6);
    ck_assert_uint_eq(c.prefix, 128);
    c = cidr_ok("2001:db8::/32");
    ck_assert_int_eq(c.family, AF_INET6);
    ck_assert_uint_eq(c.prefix, 32);

    ck_assert_str_eq(canon("10.0.0.0/8"), "10.0.0.0/8");
    ck_assert_str_eq(canon("192.168.1.7"), "192.168.1.7/32");
    ck_assert_str_eq(canon("0.0.0.0/0"), "0.0.0.0/0");
    ck_assert_str_eq(canon("::/0"), "::/0");
    ck_assert_str_eq(canon("::1"), "::1/128");
    ck_assert_str_eq(canon("2001:DB8:0::/32"), "2001:db8::/32");
    ck_assert_str_eq(canon("2001:db8::/64"), "2001:db8::/64");
    ck_assert_str_eq(canon("2001:db8:0:0:8000::/65"), "2001:db8:0:0:8000::/65");
    ck_assert_str_eq(canon("10.0.0.0/08"), "10.0.0.0/8");
}
END_TEST

START_TEST(mapped_blocks_become_ipv4)
{
    lb_cidr_t  c = cidr_ok("::ffff:10.0.0.0/104");

    ck_assert_int_eq(c.family, AF_INET);
    ck_assert_uint_eq(c.prefix, 8);
    ck_assert_str_eq(canon("::ffff:10.0.0.0/104"), "10.0.0.0/8");
    ck_assert_str_eq(canon("::ffff:1.2.3.4"), "1.2.3.4/32");
    ck_assert_str_eq(canon("::ffff:0:0/96"), "0.0.0.0/0");
    /* wider than the mapped range: stays IPv6 */
    ck_assert_str_eq(canon("::/80"), "::/80");
}
END_TEST

static const struct {
    const char  *in;
    const char  *err;
} bad[] = {
    { "10.0.0.1/8", "host bits set in \"10.0.0.1/8\" (did you mean \"10.0.0.0/8\"?)" },
    { "192.168.1.7/24",
      "host bits set in \"192.168.1.7/24\" (did you mean \"192.168.1.0/24\"?)" },
    { "2001:db8::1/32", "host bits set in \"2001:db8::1/32\" (did you mean \"2001:db8::/32\"?)" },
    { "2001:db8:0:0:c000::/65",
      "host bits set in \"2001:db8:0:0:c000::/65\" (did you mean \"2001:db8:0:0:8000::/65\"?)" },
    { "::ffff:10.0.0.1/104",
      "host bits set in \"::ffff:10.0.0.1/104\" (did you mean \"::ffff:10.0.0.0/104\"?)" },
    { "", "empty CIDR (expected \"ADDRESS\" or \"ADDRESS/PREFIX\", e.g. \"10.0.0.0/8\")" },
    { "[::1]", "brackets are not used in a CIDR: \"[::1]\" (write \"::1\")" },
    { "[2001:db8::]/32",
      "brackets are not used in a CIDR: \"[2001:db8::]/32\" (write \"2001:db8::/32\")" },
    { "fe80::1%eth0", "zone index not allowed in \"fe80::1%eth0\" (use a plain address)" },
    { "10.0.0/8", "invalid IPv4 address in \"10.0.0/8\" "
                  "(host names are not resolved; use an address)" },
    { "localhost", "invalid IPv4 address in \"localhost\" "
                   "(host names are not resolved; use an address)" },
    { "256.0.0.0/8", "invalid IPv4 address in \"256.0.0.0/8\" "
                     "(host names are not resolved; use an address)" },
    { " 10.0.0.0/8", "invalid IPv4 address in \" 10.0.0.0/8\" "
                     "(host names are not resolved; use an address)" },
    { "/8", "invalid IPv4 address in \"/8\" (host names are not resolved; use an address)" },
    { "2001:db8::g/32", "invalid IPv6 address in \"2001:db8::g/32\"" },
    { "1:2:3:4:5:6:7:8:9", "invalid IPv6 address in \"1:2:3:4:5:6:7:8:9\"" },
    { "10.0.0.0/33", "invalid prefix length \"33\" in \"10.0.0.0/33\" (must be 0..32)" },
    { "10.0.0.0/", "invalid prefix length \"\" in \"10.0.0.0/\" (must be 0..32)" },
    { "10.0.0.0/8 ", "invalid prefix length \"8 \" in \"10.0.0.0/8 \" (must be 0..32)" },
    { "10.0.0.0/-1", "invalid prefix length \"-1\" in \"10.0.0.0/-1\" (must be 0..32)" },
    { "10.0.0.0/8/8", "invalid prefix length \"8/8\" in \"10.0.0.0/8/8\" (must be 0..32)" },
    { "10.0.0.0/0008", "invalid prefix length \"0008\" in \"10.0.0.0/0008\" (must be 0..32)" },
    { "::/129", "invalid prefix length \"129\" in \"::/129\" (must be 0..128)" },
    { "::ffff:1.2.3.4/33x", "invalid prefix length \"33x\" in \"::ffff:1.2.3.4/33x\" "
                            "(must be 0..128)" },
};

START_TEST(invalid_is_refused_with_a_reason)
{
    ck_assert_str_eq(cidr_bad(bad[_i].in), bad[_i].err);
}
END_TEST

START_TEST(reason_is_cut_to_err_size)
{
    lb_cidr_t  c;
    char       small[8];

    memset(small, 'x', sizeof(small));
    ck_assert_int_eq(lb_cidr_parse("10.0.0.1/8", &c, small, sizeof(small)), LB_ERROR);
    ck_assert_str_eq(small, "host bi");
}
END_TEST

START_TEST(overlong_input_is_refused)
{
    char  s[300];

    memset(s, '1', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    cidr_bad(s);
    memcpy(s, "1::", 3);
    cidr_bad(s);
}
END_TEST

/* Matching -------------------------------------------------------------- */

START_TEST(ipv4_matches_by_prefix)
{
    ck_assert(match("10.0.0.0/8", v4("10.0.0.0")));
    ck_assert(match("10.0.0.0/8", v4("10.255.255.255")));
    ck_assert(!match("10.0.0.0/8", v4("11.0.0.0")));
    ck_assert(!match("10.0.0.0/8", v4("9.255.255.255")));
    ck_assert(match("192.168.1.7", v4("192.168.1.7")));
    ck_assert(!match("192.168.1.7", v4("192.168.1.6")));
    ck_assert(match("0.0.0.0/0", v4("203.0.113.9")));
    ck_assert(match("172.16.0.0/12", v4("172.31.255.1")));
    ck_assert(!match("172.16.0.0/12", v4("172.32.0.1")));
    ck_assert(match("128.0.0.0/1", v4("200.0.0.1")));
    ck_assert(!match("128.0.0.0/1", v4("127.0.0.1")));
}
END_TEST

START_TEST(ipv6_matches_by_prefix)
{
    ck_assert(match("::1", v6("::1")));
    ck_assert(!match("::1", v6("::2")));
    ck_assert(match("2001:db8::/32", v6("2001:db8:ffff::1")));
    ck_assert(!match("2001:db8::/32", v6("2001:db9::1")));
    ck_assert(match("::/0", v6("fe80::1")));
    /* a prefix across the two 64-bit halves */
    ck_assert(match("2001:db8:0:0:8000::/65", v6("2001:db8::8000:0:0:1")));
    ck_assert(!match("2001:db8:0:0:8000::/65", v6("2001:db8::7fff:0:0:1")));
    ck_assert(match("2001:db8::/127", v6("2001:db8::1")));
    ck_assert(!match("2001:db8::/127", v6("2001:db8::2")));
}
END_TEST

START_TEST(families_do_not_mix)
{
    ck_assert(!match("0.0.0.0/0", v6("::")));
    ck_assert(!match("0.0.0.0/0", v6("2001:db8::1")));
    ck_assert(!match("::/0", v4("10.0.0.1")));
    /* IPv4-compatible (deprecated, not mapped) stays IPv6 */
    ck_assert(!match("1.2.3.4", v6("::1.2.3.4")));
}
END_TEST

START_TEST(mapped_clients_match_ipv4_blocks)
{
    ck_assert(match("10.0.0.0/8", v6("::ffff:10.1.2.3")));
    ck_assert(!match("10.0.0.0/8", v6("::ffff:11.1.2.3")));
    ck_assert(match("1.2.3.4", v6("::ffff:1.2.3.4")));
    ck_assert(match("::ffff:10.0.0.0/104", v4("10.9.9.9")));
    ck_assert(match("::ffff:10.0.0.0/104", v6("::ffff:10.9.9.9")));
    /* like nginx: an IPv6 block wider than the mapped range is for IPv6 */
    ck_assert(!match("::/0", v6("::ffff:10.1.2.3")));
}
END_TEST

START_TEST(unix_sockets_match_nothing)
{
    struct sockaddr_un  sun;
    lb_cidr_t           c = cidr_ok("0.0.0.0/0");
    lb_ip_t             ip;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, "/tmp/x.sock");
    ck_assert(!lb_cidr_match(&c, (struct sockaddr *) &sun));
    ck_assert_int_eq(lb_ip_from_sockaddr((struct sockaddr *) &sun, &ip), LB_DECLINED);
}
END_TEST

/* Lists ----------------------------------------------------------------- */

static lb_pool_t       *pool;
static lb_cidr_list_t   list;

static void
list_setup(void)
{
    static const char  *const  cidrs[] = {
        "10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1",
    };
    size_t                     i;

    pool = lb_pool_create(LB_POOL_DEFAULT_SIZE);
    ck_assert_ptr_nonnull(pool);
    memset(&list, 0, sizeof(list));
    for (i = 0; i < lb_nelems(cidrs); i++) {
        ck_assert_int_eq(lb_cidr_list_add(&list, pool, cidrs[i], err, sizeof(err)), LB_OK);
    }
}

static void
list_teardown(void)
{
    lb_pool_destroy(pool);
}

START_TEST(zeroed_list_is_empty_and_matches_nothing)
{
    lb_cidr_list_t  none;

    memset(&none, 0, sizeof(none));
    ck_assert(lb_cidr_list_empty(&none));
    ck_assert(!lb_cidr_list_match(&none, v4("10.0.0.1")));
    ck_assert(!lb_cidr_list_match_text(&none, "10.0.0.1", 8));
    ck_assert(!lb_cidr_list_empty(&list));
}
END_TEST

START_TEST(list_matches_any_block)
{
    ck_assert(lb_cidr_list_match(&list, v4("10.20.30.40")));
    ck_assert(lb_cidr_list_match(&list, v4("192.168.1.7")));
    ck_assert(!lb_cidr_list_match(&list, v4("192.168.1.8")));
    ck_assert(lb_cidr_list_match(&list, v6("::1")));
    ck_assert(lb_cidr_list_match(&list, v6("2001:db8::abcd")));
    ck_assert(!lb_cidr_list_match(&list, v6("2001:db9::abcd")));
    ck_assert(lb_cidr_list_match(&list, v6("::ffff:10.0.0.9")));
    ck_assert(!lb_cidr_list_match(&list, v6("::ffff:8.8.8.8")));
}
END_TEST

START_TEST(list_add_refuses_and_keeps_the_list)
{
    ck_assert_int_eq(lb_cidr_list_add(&list, pool, "10.0.0.1/8", err, sizeof(err)),
                     LB_ERROR);
    ck_assert_str_eq(err, "host bits set in \"10.0.0.1/8\" (did you mean \"10.0.0.0/8\"?)");
    ck_assert_uint_eq(list.cidrs.nelts, 4);
}
END_TEST

START_TEST(list_grows_past_its_first_block)
{
    char    s[32];
    size_t  i;

    for (i = 0; i < 100; i++) {
        snprintf(s, sizeof(s), "172.16.%zu.0/24", i);
        ck_assert_int_eq(lb_cidr_list_add(&list, pool, s, err, sizeof(err)), LB_OK);
    }
    ck_assert_uint_eq(list.cidrs.nelts, 104);
    ck_assert(lb_cidr_list_match(&list, v4("172.16.99.1")));
    ck_assert(lb_cidr_list_match(&list, v4("10.1.1.1")));
    ck_assert(!lb_cidr_list_match(&list, v4("172.16.100.1")));
}
END_TEST

/* Text ------------------------------------------------------------------ */

#define text_match(s)  lb_cidr_list_match_text(&list, s, sizeof(s) - 1)

START_TEST(text_matches_plain_addresses)
{
    ck_assert(text_match("10.0.0.1"));
    ck_assert(text_match("192.168.1.7"));
    ck_assert(text_match("::1"));
    ck_assert(text_match("0:0::1"));
    ck_assert(text_match("2001:DB8::1"));
    ck_assert(text_match("::ffff:10.0.0.1"));
    ck_assert(text_match("::FFFF:10.0.0.1"));
    ck_assert(!text_match("8.8.8.8"));
    ck_assert(!text_match("::2"));
}
END_TEST

START_TEST(text_refuses_anything_else)
{
    ck_assert(!text_match(""));
    ck_assert(!text_match("10.0.0.1 "));
    ck_assert(!text_match(" 10.0.0.1"));
    ck_assert(!text_match("10.0.0"));
    ck_assert(!text_match("10.0.0.1.1"));
    ck_assert(!text_match("010.0.0.1"));
    ck_assert(!text_match("10.0.0.1:80"));
    ck_assert(!text_match("10.0.0.0/8"));
    ck_assert(!text_match("[::1]"));
    ck_assert(!text_match("[::1]:80"));
    ck_assert(!text_match("::1%lo"));
    ck_assert(!text_match("unknown"));
    ck_assert(!text_match("10.0.0.1\0"));
    ck_assert(!lb_cidr_list_match_text(&list, "10.0.0.1", 0));
    ck_assert(!text_match("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa"));
}
END_TEST

START_TEST(text_is_read_only_to_len)
{
    /* not NUL-terminated: the bytes after len are not looked at */
    ck_assert(lb_cidr_list_match_text(&list, "10.0.0.1xyz", 8));
    ck_assert(lb_cidr_list_match_text(&list, "::1, 8.8.8.8", 3));
    ck_assert(!lb_cidr_list_match_text(&list, "8.8.8.8, 10.0.0.1", 7));
}
END_TEST

START_TEST(ip_text_round_trips)
{
    static const char  *const  in[] = {
        "10.0.0.1", "::1", "2001:DB8:0:0::1", "::ffff:1.2.3.4", "0.0.0.0", "::",
    };
    static const char  *const  out[] = {
        "10.0.0.1", "::1", "2001:db8::1", "1.2.3.4", "0.0.0.0", "::",
    };
    char                       buf[LB_IP_TEXT_LEN];
    lb_ip_t                    ip;
    size_t                     i;

    for (i = 0; i < lb_nelems(in); i++) {
        ck_assert_int_eq(lb_ip_parse(in[i], strlen(in[i]), &ip), LB_OK);
        ck_assert_uint_eq(lb_ip_format(&ip, buf, sizeof(buf)), strlen(out[i]));
        ck_assert_str_eq(buf, out[i]);
    }
}
END_TEST

static Suite *
cidr_suite(void)
{
    Suite  *s = suite_create("cidr");
    TCase  *tc;

    tc = tcase_create("parse");
    tcase_add_test(tc, blocks_and_hosts_parse);
    tcase_add_test(tc, mapped_blocks_become_ipv4);
    tcase_add_loop_test(tc, invalid_is_refused_with_a_reason, 0, (int) lb_nelems(bad));
    tcase_add_test(tc, reason_is_cut_to_err_size);
    tcase_add_test(tc, overlong_input_is_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("match");
    tcase_add_test(tc, ipv4_matches_by_prefix);
    tcase_add_test(tc, ipv6_matches_by_prefix);
    tcase_add_test(tc, families_do_not_mix);
    tcase_add_test(tc, mapped_clients_match_ipv4_blocks);
    tcase_add_test(tc, unix_sockets_match_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("list");
    tcase_add_checked_fixture(tc, list_setup, list_teardown);
    tcase_add_test(tc, zeroed_list_is_empty_and_matches_nothing);
    tcase_add_test(tc, list_matches_any_block);
    tcase_add_test(tc, list_add_refuses_and_keeps_the_list);
    tcase_add_test(tc, list_grows_past_its_first_block);
    suite_add_tcase(s, tc);

    tc = tcase_create("text");
    tcase_add_checked_fixture(tc, list_setup, list_teardown);
    tcase_add_test(tc, text_matches_plain_addresses);
    tcase_add_test(tc, text_refuses_anything_else);
    tcase_add_test(tc, text_is_read_only_to_len);
    tcase_add_test(tc, ip_text_round_trips);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(cidr_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
