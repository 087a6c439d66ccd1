/*
 * test_http_forward.c: modules/http/core/lb_http_forward.c on requests
 * parsed for real: the client address behind trusted proxies (chains,
 * spoofing, several fields, garbage), the X-Forwarded-For value per mode,
 * and X-Request-ID checking and generation.
 */
#include "lb_core.h"
#include "lb_http_parse.h"
#include "lb_http_forward.h"

#include <arpa/inet.h>
#include <check.h>

static const lb_http_limits_t  limits = { 8192, 64, 1024 };

static lb_http_msg_t            msg;
static char                     head[2048];
static lb_pool_t               *pool;
static lb_cidr_list_t           trusted;
static struct sockaddr_storage  peer;
static char                     err[256];

static void
setup(void)
{
    pool = lb_pool_create(LB_POOL_DEFAULT_SIZE);
    ck_assert_ptr_nonnull(pool);
    memset(&trusted, 0, sizeof(trusted));
    ck_assert_int_eq(lb_cidr_list_add(&trusted, pool, "10.0.0.0/8", err, sizeof(err)), LB_OK);
    ck_assert_int_eq(lb_cidr_list_add(&trusted, pool, "fd00::/8", err, sizeof(err)), LB_OK);
}

static void
teardown(void)
{
    lb_pool_destroy(pool);
}

/* Parses a GET with these field lines ("Name: value\r\n" each) into msg. */
static void
request(const char *fields)
{
    int  n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a.example\r\n%s\r\n",
                      fields);

    ck_assert_int_lt(n, (int) sizeof(head));
    ck_assert_int_eq(lb_http_parse_request_head(&msg, head, (size_t) n, &limits), LB_OK);
}

static const struct sockaddr *
from(const char *ip)
{
    struct sockaddr_in   *sin = (struct sockaddr_in *) &peer;
    struct sockaddr_in6  *sin6 = (struct sockaddr_in6 *) &peer;

    memset(&peer, 0, sizeof(peer));
    if (strchr(ip, ':') != NULL) {
        sin6->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    } else {
        sin->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    }
    return (struct sockaddr *) &peer;
}

/* The client of msg from peer ip, with whether it came from the header. */
static char  client[LB_IP_TEXT_LEN + 64];
static char  buf[LB_IP_TEXT_LEN];

static bool
real_client(const char *ip)
{
    lb_str_t  c = { 0, NULL };
    bool      from_xff;

    memset(buf, 'x', sizeof(buf));
    from_xff = lb_http_real_client(&msg, from(ip), &trusted, &c, buf);
    ck_assert_uint_lt(c.len, sizeof(client));
    if (from_xff) {
        ck_assert_msg(c.data >= head && c.data + c.len <= head + sizeof(head),
                      "an entry is a view into the request");
    } else {
        ck_assert_ptr_eq(c.data, buf);
    }
    memcpy(client, c.data, c.len);
    client[c.len] = '\0';
    return from_xff;
}

/* Real client ----------------------------------------------------------- */

START_TEST(untrusted_peer_ignores_xff)
{
    request("X-Forwarded-For: 1.1.1.1, 10.0.0.2\r\n");
    ck_assert(!real_client("203.0.113.5"));
    ck_assert_str_eq(client, "203.0.113.5");
}
END_TEST

START_TEST(no_trusted_proxies_ignores_xff)
{
    lb_str_t        c;
    lb_cidr_list_t  none;

    memset(&none, 0, sizeof(none));
    request("X-Forwarded-For: 1.1.1.1\r\n");
    ck_assert(!lb_http_real_client(&msg, from("10.0.0.1"), &none, &c, buf));
    ck_assert_uint_eq(c.len, 8);
    ck_assert(memcmp(c.data, "10.0.0.1", 8) == 0);
    ck_assert(!lb_http_real_client(&msg, from("10.0.0.1"), NULL, &c, buf));
    ck_assert(memcmp(c.data, "10.0.0.1", 8) == 0);
}
END_TEST

START_TEST(trusted_peer_without_xff_is_the_client)
{
    request("X-Other: 1.1.1.1\r\n");
    ck_assert(!real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.1");
    request("X-Forwarded-For:\r\n");
    ck_assert(!real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.1");
}
END_TEST

START_TEST(trusted_chain_gives_the_last_untrusted_entry)
{
    request("X-Forwarded-For: 1.1.1.1, 10.0.0.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "1.1.1.1");
}
END_TEST

START_TEST(spoofed_leftmost_is_not_believed)
{
    /* the client sent "6.6.6.6"; the trusted proxy appended the real one */
    request("X-Forwarded-For: 6.6.6.6, 2.2.2.2, 10.0.0.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "2.2.2.2");
    /* even when the spoof claims to be a trusted address */
    request("X-Forwarded-For: 10.9.9.9, 2.2.2.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "2.2.2.2");
}
END_TEST

START_TEST(all_trusted_gives_the_leftmost)
{
    request("X-Forwarded-For: 10.0.0.7, 10.0.0.3, 10.0.0.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.7");
}
END_TEST

START_TEST(several_fields_are_one_list_in_order)
{
    request("X-Forwarded-For: 6.6.6.6, 1.1.1.1\r\n"
            "User-Agent: t\r\n"
            "x-forwarded-for: 10.0.0.3\r\n"
            "X-FORWARDED-FOR: 10.0.0.2, 10.0.0.4\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "1.1.1.1");

    request("X-Forwarded-For: 10.0.0.9\r\n"
            "X-Forwarded-For: 10.0.0.3\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.9");
}
END_TEST

START_TEST(whitespace_and_empty_elements_are_skipped)
{
    request("X-Forwarded-For: ,1.1.1.1 ,\t, 10.0.0.2\t,,\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "1.1.1.1");
    request("X-Forwarded-For: ,, ,\r\n");
    ck_assert(!real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.1");
}
END_TEST

/* Nearest entry not an address: the walk ends at once. */
static const char  *const  garbage[] = {
    "X-Forwarded-For: 1.1.1.1, unknown\r\n",
    "X-Forwarded-For: 1.1.1.1, 2.2.2.2:4711\r\n",
    "X-Forwarded-For: 1.1.1.1, [2001:db8::1]\r\n",
    "X-Forwarded-For: 1.1.1.1, 2.2.2 .2\r\n",
    "X-Forwarded-For: 1.1.1.1, <script>\r\n",
    "X-Forwarded-For: 1.1.1.1;2.2.2.2\r\n",
    "X-Forwarded-For: 1.1.1.1, 10.0.0.0/8\r\n",
    "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: garbage\r\n",
};

START_TEST(garbage_nearest_leaves_the_peer)
{
    request(garbage[_i]);
    ck_assert(!real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.1");
}
END_TEST

START_TEST(garbage_further_leaves_the_nearest_trusted_claim)
{
    request("X-Forwarded-For: 1.1.1.1, nonsense, 10.0.0.3, 10.0.0.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.3");
    /* garbage further left than the untrusted entry is never reached */
    request("X-Forwarded-For: nonsense, 1.1.1.1, 10.0.0.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "1.1.1.1");
}
END_TEST

START_TEST(ipv6_and_mapped)
{
    request("X-Forwarded-For: 2001:db8::1, fd00::2\r\n");
    ck_assert(real_client("fd00::1"));
    ck_assert_str_eq(client, "2001:db8::1");
    /* a mapped peer is trusted by an IPv4 block and shown as IPv4 */
    request("X-Forwarded-For: 1.1.1.1, ::ffff:10.0.0.2\r\n");
    ck_assert(real_client("::ffff:10.0.0.1"));
    ck_assert_str_eq(client, "1.1.1.1");
    request("X-Other: x\r\n");
    ck_assert(!real_client("::ffff:10.0.0.1"));
    ck_assert_str_eq(client, "10.0.0.1");
    /* an untrusted IPv6 peer, canonical text */
    ck_assert(!real_client("2001:DB8:0::5"));
    ck_assert_str_eq(client, "2001:db8::5");
}
END_TEST

START_TEST(entry_is_returned_as_written)
{
    request("X-Forwarded-For: 2001:DB8:0::1 , 10.0.0.2\r\n");
    ck_assert(real_client("10.0.0.1"));
    ck_assert_str_eq(client, "2001:DB8:0::1");
}
END_TEST

START_TEST(unix_peer_is_unix)
{
    struct sockaddr_un  sun;
    lb_str_t            c;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    request("X-Forwarded-For: 1.1.1.1\r\n");
    ck_assert(!lb_http_real_client(&msg, (struct sockaddr *) &sun, &trusted, &c, buf));
    ck_assert_uint_eq(c.len, 5);
    ck_assert(memcmp(c.data, "unix:", 5) == 0);
}
END_TEST

START_TEST(no_request_means_the_peer)
{
    lb_str_t  c;

    ck_assert(!lb_http_real_client(NULL, from("10.0.0.1"), &trusted, &c, buf));
    ck_assert_uint_eq(c.len, 8);
    ck_assert(memcmp(c.data, "10.0.0.1", 8) == 0);
}
END_TEST

/* X-Forwarded-For value ------------------------------------------------- */

static char  value[256];

static size_t
xff(lb_http_xff_mode_t mode, const char *ip)
{
    lb_str_t  c = { strlen(ip), (char *) ip };
    size_t    n;

    memset(value, 0, sizeof(value));
    n = lb_http_xff_value(mode, &msg, c, value, sizeof(value) - 1);
    ck_assert_uint_lt(n, sizeof(value));
    ck_assert_uint_eq(lb_http_xff_value(mode, &msg, c, NULL, 0), n);
    return n;
}

START_TEST(append_adds_to_every_field)
{
    request("X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 3.3.3.3\r\n");
    ck_assert_uint_eq(xff(LB_HTTP_XFF_APPEND, "10.0.0.1"),
                      sizeof("1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1") - 1);
    ck_assert_str_eq(value, "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1");
}
END_TEST

START_TEST(append_without_xff_is_the_address)
{
    request("Accept: */*\r\n");
    ck_assert_uint_eq(xff(LB_HTTP_XFF_APPEND, "10.0.0.1"), 8);
    ck_assert_str_eq(value, "10.0.0.1");
    request("X-Forwarded-For:\r\nX-Forwarded-For: \r\n");
    ck_assert_uint_eq(xff(LB_HTTP_XFF_APPEND, "::1"), 3);
    ck_assert_str_eq(value, "::1");
}
END_TEST

START_TEST(append_keeps_what_was_sent)
{
    request("X-Forwarded-For: unknown,1.1.1.1\r\n");
    xff(LB_HTTP_XFF_APPEND, "10.0.0.1");
    ck_assert_str_eq(value, "unknown,1.1.1.1, 10.0.0.1");
}
END_TEST

START_TEST(replace_is_the_address_only)
{
    request("X-Forwarded-For: 6.6.6.6\r\n");
    ck_assert_uint_eq(xff(LB_HTTP_XFF_REPLACE, "1.1.1.1"), 7);
    ck_assert_str_eq(value, "1.1.1.1");
}
END_TEST

START_TEST(off_leaves_the_fields_alone)
{
    request("X-Forwarded-For: 6.6.6.6\r\n");
    ck_assert_uint_eq(xff(LB_HTTP_XFF_OFF, "1.1.1.1"), 0);
    ck_assert_str_eq(value, "");
}
END_TEST

START_TEST(small_buffer_gets_a_prefix_and_the_full_length)
{
    lb_str_t  c = lb_string("10.0.0.1");
    char      small[12];

    request("X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n");
    memset(small, '#', sizeof(small));
    ck_assert_uint_eq(lb_http_xff_value(LB_HTTP_XFF_APPEND, &msg, c, small, 10), 26);
    ck_assert(memcmp(small, "1.1.1.1, 2##", 12) == 0);
    ck_assert_uint_eq(lb_http_xff_value(LB_HTTP_XFF_REPLACE, &msg, c, small, 4), 8);
    ck_assert(memcmp(small, "10.0", 4) == 0);
}
END_TEST

/* X-Request-ID ---------------------------------------------------------- */

static bool
id_valid(const char *s)
{
    lb_str_t  v = { strlen(s), (char *) s };

    return lb_http_request_id_valid(v);
}

START_TEST(request_id_valid_edges)
{
    char  s[LB_HTTP_REQUEST_ID_MAX + 2];

    ck_assert(id_valid("a"));
    ck_assert(id_valid("0"));
    ck_assert(id_valid("f47ac10b-58cc-4372-a567-0e02b2c3d479"));
    ck_assert(id_valid("abc.DEF_123-x"));
    ck_assert(id_valid("..."));

    memset(s, 'a', sizeof(s));
    s[LB_HTTP_REQUEST_ID_MAX] = '\0';
    ck_assert(id_valid(s));
    s[LB_HTTP_REQUEST_ID_MAX] = 'a';
    s[LB_HTTP_REQUEST_ID_MAX + 1] = '\0';
    ck_assert(!id_valid(s));

    ck_assert(!id_valid(""));
    ck_assert(!id_valid("a b"));
    ck_assert(!id_valid(" a"));
    ck_assert(!id_valid("a,b"));
    ck_assert(!id_valid("Root=1-5759e988"));
    ck_assert(!id_valid("a\"b"));
    ck_assert(!id_valid("a/b"));
    ck_assert(!id_valid("a+b"));
    ck_assert(!id_valid("a\tb"));
    ck_assert(!id_valid("a\x7f"));
    ck_assert(!id_valid("\xc3\xa9t\xc3\xa9"));
    ck_assert(!lb_http_request_id_valid((lb_str_t) { 3, (char *) "a\0b" }));
}
END_TEST

START_TEST(request_id_from_a_request_field)
{
    const lb_http_header_t  *h;

    request("X-Request-ID: 7f3a-11.ok_\r\n");
    h = lb_http_find_header(&msg, "X-Request-ID");
    ck_assert_ptr_nonnull(h);
    ck_assert(lb_http_request_id_valid(h->value));
    request("X-Request-ID: two words\r\n");
    h = lb_http_find_header(&msg, "X-Request-ID");
    ck_assert(!lb_http_request_id_valid(h->value));
}
END_TEST

static int
cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, LB_HTTP_REQUEST_ID_LEN);
}

START_TEST(generated_ids_are_distinct_and_well_formed)
{
    enum { N = 10000 };
    static char  ids[N][LB_HTTP_REQUEST_ID_LEN + 1];
    size_t       i, j;
    lb_str_t     v;

    for (i = 0; i < N; i++) {
        memset(ids[i], '#', sizeof(ids[i]));
        lb_http_request_id_new(ids[i]);
        ck_assert_uint_eq(strlen(ids[i]), LB_HTTP_REQUEST_ID_LEN);
        for (j = 0; j < LB_HTTP_REQUEST_ID_LEN; j++) {
            ck_assert_msg((ids[i][j] >= '0' && ids[i][j] <= '9')
                          || (ids[i][j] >= 'a' && ids[i][j] <= 'f'),
                          "\"%s\" is lowercase hex", ids[i]);
        }
        v.data = ids[i];
        v.len = LB_HTTP_REQUEST_ID_LEN;
        ck_assert(lb_http_request_id_valid(v));
    }
    qsort(ids, N, sizeof(ids[0]), cmp_id);
    for (i = 1; i < N; i++) {
        ck_assert_msg(cmp_id(ids[i - 1], ids[i]) != 0, "\"%s\" twice", ids[i]);
    }
}
END_TEST

START_TEST(child_after_fork_does_not_repeat_the_parent)
{
    char   parent[LB_HTTP_REQUEST_ID_LEN + 1], child[LB_HTTP_REQUEST_ID_LEN + 1];
    int    fds[2];
    pid_t  pid;

    lb_http_request_id_new(parent);             /* seeded before the fork */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        lb_http_request_id_new(child);
        _exit(write(fds[1], child, sizeof(child)) == sizeof(child) ? 0 : 1);
    }
    close(fds[1]);
    ck_assert_int_eq(read(fds[0], child, sizeof(child)), (ssize_t) sizeof(child));
    close(fds[0]);
    lb_http_request_id_new(parent);             /* the parent's next one */
    ck_assert_str_ne(child, parent);
    ck_assert_uint_eq(strlen(child), LB_HTTP_REQUEST_ID_LEN);
}
END_TEST

static Suite *
http_forward_suite(void)
{
    Suite  *s = suite_create("http_forward");
    TCase  *tc;

    tc = tcase_create("real_client");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, untrusted_peer_ignores_xff);
    tcase_add_test(tc, no_trusted_proxies_ignores_xff);
    tcase_add_test(tc, trusted_peer_without_xff_is_the_client);
    tcase_add_test(tc, trusted_chain_gives_the_last_untrusted_entry);
    tcase_add_test(tc, spoofed_leftmost_is_not_believed);
    tcase_add_test(tc, all_trusted_gives_the_leftmost);
    tcase_add_test(tc, several_fields_are_one_list_in_order);
    tcase_add_test(tc, whitespace_and_empty_elements_are_skipped);
    tcase_add_loop_test(tc, garbage_nearest_leaves_the_peer, 0, (int) lb_nelems(garbage));
    tcase_add_test(tc, garbage_further_leaves_the_nearest_trusted_claim);
    tcase_add_test(tc, ipv6_and_mapped);
    tcase_add_test(tc, entry_is_returned_as_written);
    tcase_add_test(tc, unix_peer_is_unix);
    tcase_add_test(tc, no_request_means_the_peer);
    suite_add_tcase(s, tc);

    tc = tcase_create("xff_value");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, append_adds_to_every_field);
    tcase_add_test(tc, append_without_xff_is_the_address);
    tcase_add_test(tc, append_keeps_what_was_sent);
    tcase_add_test(tc, replace_is_the_address_only);
    tcase_add_test(tc, off_leaves_the_fields_alone);
    tcase_add_test(tc, small_buffer_gets_a_prefix_and_the_full_length);
    suite_add_tcase(s, tc);

    tc = tcase_create("request_id");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, request_id_valid_edges);
    tcase_add_test(tc, request_id_from_a_request_field);
    tcase_add_test(tc, generated_ids_are_distinct_and_well_formed);
    tcase_add_test(tc, child_after_fork_does_not_repeat_the_parent);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(http_forward_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
