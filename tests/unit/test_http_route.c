/*
 * test_http_route.c: the routes of http listeners (SPEC §3.4,
 * modules/http/route): which route real requests match, in what order,
 * with which captures, and the exact "FILE:LINE: message" for each
 * mistake in a route. Match tests compile a `routes` list read with
 * libconfig against a cycle that holds the upstreams; error tests load
 * whole files with lb_cycle_load.
 */
#include "lb_core.h"
#include "lb_http_route.h"
#include "lb_http_proxy.h"
#include "lb_http_return.h"

#include <check.h>
#include <limits.h>

#define LB_TEST_NAME  "route"
#include "lb_test_files.h"

static lb_cycle_t        *cycle;
static lb_listener_t      listener;
static lb_http_routes_t   routes;
static lb_http_msg_t      msg;
static size_t             caps[2 * LB_HTTP_ROUTE_MAX_CAPTURES];
static int                ncaps;
static char               uri[8192];
static unsigned           uri_flags;

static const lb_http_limits_t  limits = { 16384, 100, 8192 };

static void
setup(void)
{
    test_dir_setup();
    cycle = NULL;
    memset(&routes, 0, sizeof(routes));
    uri_flags = LB_HTTP_URI_MERGE_SLASHES;
}

static void
teardown(void)
{
    lb_cycle_free(cycle);
    cycle = NULL;
    test_dir_teardown();
}

#define UPSTREAMS                                                           \
    "upstreams = {\n"                                                       \
    "  web = { servers = ( { address = \"127.0.0.1:9001\"; } ); };\n"       \
    "  api = { servers = ( { address = \"127.0.0.1:9002\"; } ); };\n"       \
    "};\n"

/* Compiles `routes = LIST;` (dir/routes.conf, line 1 is "routes = (") for
 * an http listener "web", against a cycle that has the upstreams web and
 * api, and resolves the routes' upstreams. Returns LB_OK or LB_ERROR;
 * errors are in reports[]. */
static int
compile(const char *list)
{
    config_t   config;
    lb_conf_t  cf;
    char       text[8192];
    int        rc;

    cycle = lb_cycle_load(write_file("base.conf", UPSTREAMS), dir, record_report);
    ck_assert_ptr_nonnull(cycle);

    snprintf(text, sizeof(text), "routes = %s;\n", list);
    config_init(&config);
    ck_assert_msg(config_read_file(&config, write_file("routes.conf", text)) == CONFIG_TRUE,
                  "routes.conf:%d: %s", config_error_line(&config), config_error_text(&config));

    memset(&cf, 0, sizeof(cf));
    cf.cycle = cycle;
    cf.pool = cycle->pool;
    cf.config = &config;
    cf.report = record_report;
    cf.block = "the global section";
    memset(&listener, 0, sizeof(listener));
    listener.name = "web";
    listener.protocol = "http";

    rc = lb_http_routes_compile(&cf, &listener, config_lookup(&config, "routes"), &routes);
    if (rc == LB_OK) {
        rc = lb_http_routes_resolve(&cf, &routes);
    }
    config_destroy(&config);
    return rc;
}

static void
compile_ok(const char *list)
{
    int  rc = compile(list);

    ck_assert_msg(rc == LB_OK && nreports == 0, "routes rejected: %s",
                  nreports ? reports[0] : "(no message)");
}

/* Parses the request head, normalises its path as the listener does and
 * returns the index of the route it matches, 0 for none. */
static unsigned
match(const char *head)
{
    const lb_http_route_t  *r;

    ck_assert_msg(lb_http_parse_request_head(&msg, head, strlen(head), &limits) == LB_OK
                  && lb_http_parse_uri(&msg, uri, sizeof(uri), uri_flags) == LB_OK,
                  "bad test request: %s", msg.error);
    r = lb_http_routes_match(&routes, &msg, caps, &ncaps);
    return r ? r->index : 0;
}

static unsigned
match_get(const char *target, const char *host)
{
    static char  head[1024];

    snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host);
    return match(head);
}

/* The text of capture i of the last match. */
static const char *
capture(int i)
{
    static char  buf[256];
    size_t       len;

    ck_assert_int_lt(i, ncaps);
    len = caps[2 * i + 1] - caps[2 * i];
    ck_assert_uint_lt(len, sizeof(buf));
    memcpy(buf, msg.uri.data + caps[2 * i], len);
    buf[len] = '\0';
    return buf;
}

/* Paths ------------------------------------------------------------------ */

START_TEST(path_is_exact_and_ignores_the_query)
{
    compile_ok("( { path = \"/healthz\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/healthz", "a"), 1);
    ck_assert_uint_eq(match_get("/healthz?verbose=1", "a"), 1);
    ck_assert_uint_eq(match_get("/healthz/", "a"), 0);
    ck_assert_uint_eq(match_get("/health", "a"), 0);
    ck_assert_uint_eq(match_get("/HEALTHZ", "a"), 0);
    ck_assert_int_eq(ncaps, 0);
}
END_TEST

START_TEST(path_prefix_matches_the_start)
{
    compile_ok("( { path_prefix = \"/videos/\"; upstream = \"web\"; } )");
    ck_assert_uint_eq(match_get("/videos/", "a"), 1);
    ck_assert_uint_eq(match_get("/videos/cat.mp4", "a"), 1);
    ck_assert_uint_eq(match_get("/videos", "a"), 0);
    ck_assert_uint_eq(match_get("/video/x", "a"), 0);
}
END_TEST

START_TEST(path_is_matched_as_sent_not_decoded)
{
    compile_ok("( { path = \"/a b\"; return = { status = 200; }; },\n"
               "  { path = \"/a%20b\"; return = { status = 201; }; } )");
    ck_assert_uint_eq(match_get("/a%20b", "a"), 2);
    ck_assert_uint_eq(match_get("/a%20B", "a"), 0);    /* uppercased: %2B */
}
END_TEST

/* Every way of spelling /admin that a backend reads as /admin is matched as
 * /admin; the deny route comes first, as it would in a real file. */
START_TEST(path_is_matched_normalised)
{
    static const char *const  spellings[] = {
        "/admin", "/%61dmin", "/%61%64%6D%69%6E", "//admin", "/./admin", "/admin/.",
        "/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin",
        "/public/.%2e/admin", "///admin//x", "/a/b/../../admin",
    };
    size_t  i;

    compile_ok("( { path_prefix = \"/admin\"; return = { status = 403; }; },\n"
               "  { path_prefix = \"/\"; upstream = \"web\"; } )");
    for (i = 0; i < lb_nelems(spellings); i++) {
        ck_assert_msg(match_get(spellings[i], "a") == 1, "%s was not denied", spellings[i]);
    }
    ck_assert_uint_eq(match_get("/%2fadmin", "a"), 2);  /* "%2F" is no separator */
    ck_assert_uint_eq(match_get("/ADMIN", "a"), 2);
    ck_assert_uint_eq(match_get("/public/admin", "a"), 2);
}
END_TEST

START_TEST(merge_slashes_off_keeps_empty_segments)
{
    compile_ok("( { path_prefix = \"/admin\"; return = { status = 403; }; },\n"
               "  { path_prefix = \"/\"; upstream = \"web\"; } )");
    uri_flags = 0;
    ck_assert_uint_eq(match_get("//admin", "a"), 2);
    ck_assert_uint_eq(match_get("/./admin", "a"), 1);
}
END_TEST

START_TEST(path_case_insensitive_folds_path_prefix_and_regex)
{
    routes.path_case_insensitive = 1;
    compile_ok("( { path = \"/Login\"; return = { status = 200; }; },\n"
               "  { path_prefix = \"/admin\"; return = { status = 403; }; },\n"
               "  { path_regex = \"^/api/(v[0-9])/(.*)$\"; upstream = \"api\"; "
               "rewrite = \"/$1/$2\"; } )");
    ck_assert_uint_eq(match_get("/LOGIN", "a"), 1);
    ck_assert_uint_eq(match_get("/login", "a"), 1);
    ck_assert_uint_eq(match_get("/ADMIN/x", "a"), 2);
    ck_assert_uint_eq(match_get("/%41dmin", "a"), 2);
    ck_assert_uint_eq(match_get("/API/V2/Orders", "a"), 3);
    /* captures keep the case sent: only the comparison folds */
    ck_assert_str_eq(capture(1), "V2");
    ck_assert_str_eq(capture(2), "Orders");
}
END_TEST

START_TEST(path_case_sensitive_by_default)
{
    compile_ok("( { path_prefix = \"/admin\"; return = { status = 403; }; },\n"
               "  { path_regex = \"^/api/\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/ADMIN", "a"), 0);
    ck_assert_uint_eq(match_get("/API/", "a"), 0);
}
END_TEST

START_TEST(captures_are_taken_on_the_normal_path)
{
    compile_ok("( { path_regex = \"^/files/(.*)$\"; upstream = \"web\"; rewrite = \"/$1\"; } )");
    ck_assert_uint_eq(match_get("/files//a/./b/../%63", "a"), 1);
    ck_assert_str_eq(capture(1), "a/c");
}
END_TEST

START_TEST(absolute_form_routes_by_its_authority)
{
    compile_ok("( { host = \"a.example\"; path = \"/x\"; return = { status = 200; }; },\n"
               "  { host = \"b.example\"; return = { status = 201; }; } )");
    ck_assert_uint_eq(match("GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n"), 1);
    ck_assert_uint_eq(match("GET http://A.example.:80/x HTTP/1.1\r\nHost: b.example\r\n\r\n"),
                      1);
    ck_assert_uint_eq(match("GET /x HTTP/1.1\r\nHost: b.example\r\n\r\n"), 2);
}
END_TEST

START_TEST(path_regex_fills_captures)
{
    compile_ok("( { path_regex = \"^/api/(orders|users)/(.*)$\"; upstream = \"api\";\n"
               "    rewrite = \"/$2\"; } )");
    ck_assert_uint_eq(match_get("/api/users/42/name?x=1", "a"), 1);
    ck_assert_int_eq(ncaps, 3);
    ck_assert_str_eq(capture(0), "/api/users/42/name");
    ck_assert_str_eq(capture(1), "users");
    ck_assert_str_eq(capture(2), "42/name");
    ck_assert_uint_eq(match_get("/api/carts/1", "a"), 0);
    ck_assert_int_eq(ncaps, 0);
}
END_TEST

START_TEST(path_regex_is_unanchored_without_caret)
{
    compile_ok("( { path_regex = \"\\\\.php$\"; return = { status = 403; }; } )");
    ck_assert_uint_eq(match_get("/x/index.php", "a"), 1);
    ck_assert_uint_eq(match_get("/x/index.php5", "a"), 0);
}
END_TEST

START_TEST(unset_capture_group_is_empty)
{
    compile_ok("( { path_regex = \"^/(a)?(b)(c)?\"; return = { status = 200; body = \"$1$3\"; }; } )");
    ck_assert_uint_eq(match_get("/b", "a"), 1);
    ck_assert_int_eq(ncaps, 4);
    ck_assert_str_eq(capture(1), "");
    ck_assert_str_eq(capture(2), "b");
    ck_assert_str_eq(capture(3), "");
}
END_TEST

START_TEST(captures_stop_at_nine)
{
    compile_ok("( { path_regex = \"^/(1)(2)(3)(4)(5)(6)(7)(8)(9)(10)(11)\"; "
               "return = { status = 200; body = \"$9\"; }; } )");
    ck_assert_uint_eq(match_get("/1234567891011", "a"), 1);
    ck_assert_int_eq(ncaps, LB_HTTP_ROUTE_MAX_CAPTURES);
    ck_assert_str_eq(capture(9), "9");
}
END_TEST

/* Order ------------------------------------------------------------------ */

START_TEST(first_matching_route_wins)
{
    compile_ok("( { path_prefix = \"/api/\"; method = \"POST\"; upstream = \"api\"; },\n"
               "  { path_prefix = \"/api/\"; upstream = \"web\"; },\n"
               "  { path_prefix = \"/api/v2/\"; upstream = \"api\"; },\n"
               "  { upstream = \"web\"; } )");
    ck_assert_uint_eq(match("POST /api/x HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    ck_assert_uint_eq(match_get("/api/v2/x", "a"), 2);
    ck_assert_uint_eq(match_get("/other", "a"), 4);
}
END_TEST

START_TEST(no_route_matches_gives_null)
{
    compile_ok("( { path = \"/a\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/b", "a"), 0);
}
END_TEST

START_TEST(no_routes_match_nothing)
{
    compile_ok("( )");
    ck_assert_uint_eq(routes.nroutes, 0);
    ck_assert_uint_eq(match_get("/", "a"), 0);
    ck_assert_ptr_null(lb_http_routes_match(NULL, &msg, caps, &ncaps));
}
END_TEST

START_TEST(listener_without_routes_conf_matches_nothing)
{
    compile_ok("( { return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/", "a"), 1);
    ck_assert_ptr_null(listener.confs);
    ck_assert_ptr_null(lb_http_route_list(&listener));
    ck_assert_ptr_null(lb_http_route_match(&listener, &msg, caps, &ncaps));
    ck_assert_int_eq(ncaps, 0);
}
END_TEST

START_TEST(every_condition_must_hold)
{
    compile_ok("( { host = \"api.example.com\"; path_prefix = \"/v1/\"; method = \"GET\";\n"
               "    header = \"X-Tenant: acme\"; query = \"lang\"; cookie = \"beta\";\n"
               "    upstream = \"api\"; } )");
    ck_assert_uint_eq(match("GET /v1/x?lang=fr HTTP/1.1\r\nHost: api.example.com\r\n"
                            "X-Tenant: acme\r\nCookie: beta=1\r\n\r\n"), 1);
    ck_assert_uint_eq(match("GET /v1/x?lang=fr HTTP/1.1\r\nHost: api.example.com\r\n"
                            "X-Tenant: acme\r\n\r\n"), 0);
    ck_assert_uint_eq(match("GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\n"
                            "X-Tenant: acme\r\nCookie: beta=1\r\n\r\n"), 0);
    ck_assert_uint_eq(match("GET /v1/x?lang=fr HTTP/1.1\r\nHost: api.example.com\r\n"
                            "X-Tenant: other\r\nCookie: beta=1\r\n\r\n"), 0);
    ck_assert_uint_eq(match("POST /v1/x?lang=fr HTTP/1.1\r\nHost: api.example.com\r\n"
                            "X-Tenant: acme\r\nCookie: beta=1\r\n\r\n"), 0);
    ck_assert_uint_eq(match("GET /v1/x?lang=fr HTTP/1.1\r\nHost: www.example.com\r\n"
                            "X-Tenant: acme\r\nCookie: beta=1\r\n\r\n"), 0);
}
END_TEST

/* Methods ---------------------------------------------------------------- */

START_TEST(method_string_or_list)
{
    compile_ok("( { method = [\"GET\", \"HEAD\"]; return = { status = 200; }; },\n"
               "  { method = \"DELETE\"; return = { status = 204; }; },\n"
               "  { method = [\"PURGE\", \"POST\"]; return = { status = 202; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    ck_assert_uint_eq(match("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    ck_assert_uint_eq(match("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"), 2);
    ck_assert_uint_eq(match("PURGE / HTTP/1.1\r\nHost: a\r\n\r\n"), 3);
    ck_assert_uint_eq(match("POST / HTTP/1.1\r\nHost: a\r\n\r\n"), 3);
    ck_assert_uint_eq(match("PUT / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    ck_assert_uint_eq(match("PURGEX / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}
END_TEST

START_TEST(methods_are_case_sensitive)
{
    static const char  head[] = "get / HTTP/1.1\r\nHost: a\r\n\r\n";

    /* a lowercase method never reaches the routes: the parser refuses it */
    compile_ok("( { method = \"GET\"; return = { status = 200; }; } )");
    ck_assert_int_eq(lb_http_parse_request_head(&msg, head, sizeof(head) - 1, &limits),
                     LB_ERROR);
    ck_assert_int_eq(msg.error_status, 400);
    ck_assert_uint_eq(match("M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}
END_TEST

/* Hosts ------------------------------------------------------------------ */

START_TEST(host_exact_ignores_case_port_and_trailing_dot)
{
    compile_ok("( { host = \"API.example.com\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/", "api.example.com"), 1);
    ck_assert_uint_eq(match_get("/", "Api.Example.COM"), 1);
    ck_assert_uint_eq(match_get("/", "api.example.com:8080"), 1);
    ck_assert_uint_eq(match_get("/", "api.example.com."), 1);
    ck_assert_uint_eq(match_get("/", "www.api.example.com"), 0);
    ck_assert_uint_eq(match_get("/", "api.example.co"), 0);
}
END_TEST

START_TEST(host_wildcard_needs_a_label_before_the_suffix)
{
    compile_ok("( { host = \"*.example.com\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/", "a.example.com"), 1);
    ck_assert_uint_eq(match_get("/", "a.b.example.com"), 1);
    ck_assert_uint_eq(match_get("/", "A.EXAMPLE.COM:443"), 1);
    ck_assert_uint_eq(match_get("/", "example.com"), 0);
    ck_assert_uint_eq(match_get("/", ".example.com"), 0);
    ck_assert_uint_eq(match_get("/", "aexample.com"), 0);
}
END_TEST

START_TEST(host_regex_sees_lowercased_host_without_port)
{
    compile_ok("( { host = \"~^api[0-9]+\\\\.example\\\\.com$\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/", "api7.example.com"), 1);
    ck_assert_uint_eq(match_get("/", "API12.Example.com:8443"), 1);
    ck_assert_uint_eq(match_get("/", "api.example.com"), 0);
}
END_TEST

START_TEST(host_ipv6_literal_keeps_its_brackets)
{
    compile_ok("( { host = \"[::1]\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/", "[::1]:8080"), 1);
    ck_assert_uint_eq(match_get("/", "[::1]"), 1);
    ck_assert_uint_eq(match_get("/", "[::2]"), 0);
}
END_TEST

START_TEST(request_without_host_fails_host_conditions)
{
    compile_ok("( { host = \"*.example.com\"; return = { status = 200; }; },\n"
               "  { host = \"~.\"; return = { status = 201; }; },\n"
               "  { return = { status = 404; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.0\r\n\r\n"), 3);
}
END_TEST

/* Headers, cookies, query ------------------------------------------------ */

START_TEST(header_present_exact_regex)
{
    compile_ok("( { header = \"x-tenant: acme\"; return = { status = 200; }; },\n"
               "  { header = \"X-Tenant: ~^beta-[0-9]+$\"; return = { status = 201; }; },\n"
               "  { header = \"X-Tenant\"; return = { status = 202; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-TENANT: acme\r\n\r\n"), 1);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-Tenant: ACME\r\n\r\n"), 3);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-Tenant: beta-12\r\n\r\n"), 2);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-Tenant:\r\n\r\n"), 3);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-Tenants: acme\r\n\r\n"), 0);
}
END_TEST

START_TEST(header_any_field_of_that_name)
{
    compile_ok("( { header = \"X-Tag: b\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-Tag: a\r\nX-Tag: b\r\n\r\n"), 1);
}
END_TEST

START_TEST(header_list_needs_all)
{
    compile_ok("( { header = [\"X-A\", \"X-B: 2\"]; return = { status = 200; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\r\n"), 1);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nX-B: 2\r\n\r\n"), 0);
}
END_TEST

START_TEST(cookie_present_exact_regex)
{
    compile_ok("( { cookie = \"beta: 1\"; return = { status = 200; }; },\n"
               "  { cookie = \"session: ~^[a-f0-9]{8}$\"; return = { status = 201; }; },\n"
               "  { cookie = \"beta\"; return = { status = 202; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; beta=1\r\n\r\n"), 1);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=1 ;a=b\r\n\r\n"), 1);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=2\r\n\r\n"), 3);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\n"
                            "cookie: session=deadbeef\r\n\r\n"), 2);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: session=deadbeef0\r\n\r\n"), 0);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: Beta=1; xbeta=1\r\n\r\n"), 0);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}
END_TEST

START_TEST(cookie_first_of_its_name_counts)
{
    compile_ok("( { cookie = \"beta: 1\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=0; beta=1\r\n\r\n"), 0);
    ck_assert_uint_eq(match("GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=1\r\n"
                            "Cookie: beta=0\r\n\r\n"), 1);
}
END_TEST

START_TEST(query_present_exact_regex)
{
    compile_ok("( { query = \"lang: fr\"; return = { status = 200; }; },\n"
               "  { query = \"page: ~^[0-9]+$\"; return = { status = 201; }; },\n"
               "  { query = \"debug\"; return = { status = 202; }; } )");
    ck_assert_uint_eq(match_get("/?a=1&lang=fr", "a"), 1);
    ck_assert_uint_eq(match_get("/?lang=fr&lang=en", "a"), 1);
    ck_assert_uint_eq(match_get("/?lang=en&lang=fr", "a"), 0);
    ck_assert_uint_eq(match_get("/?page=12", "a"), 2);
    ck_assert_uint_eq(match_get("/?page=1x", "a"), 0);
    ck_assert_uint_eq(match_get("/?debug", "a"), 3);
    ck_assert_uint_eq(match_get("/?debug=&x", "a"), 3);
    ck_assert_uint_eq(match_get("/?debugger=1", "a"), 0);
    ck_assert_uint_eq(match_get("/", "a"), 0);
}
END_TEST

START_TEST(query_value_is_not_decoded)
{
    compile_ok("( { query = \"q: a%20b\"; return = { status = 200; }; } )");
    ck_assert_uint_eq(match_get("/?q=a%20b", "a"), 1);
    ck_assert_uint_eq(match_get("/?q=a+b", "a"), 0);
}
END_TEST

/* Actions ---------------------------------------------------------------- */

START_TEST(actions_are_compiled)
{
    const lb_http_route_t        *r;
    const lb_http_proxy_conf_t   *pcf;
    const lb_http_return_conf_t  *rcf;

    compile_ok("( { path = \"/u\"; upstream = \"api\"; rewrite = \"/v2$uri\"; },\n"
               "  { path = \"/r\"; return = { status = 418; body = \"tea\\n\"; }; },\n"
               "  { path = \"/j\"; return = { status = 200; content_type = \"application/json\"; }; },\n"
               "  { path = \"/m\"; redirect = { location = \"https://$host$request_uri\"; }; },\n"
               "  { path = \"/p\"; redirect = { status = 308; location = \"/new\"; }; } )");
    ck_assert_uint_eq(routes.nroutes, 5);

    /* each action is the owning module's: its handler, its settings */
    r = routes.routes[0];
    pcf = lb_get_conf(r->confs, lb_http_proxy_module);
    ck_assert_str_eq(r->action, "upstream");
    ck_assert_ptr_nonnull(r->handler);
    ck_assert_str_eq(pcf->upstream_name, "api");
    ck_assert_ptr_nonnull(pcf->upstream);
    ck_assert_str_eq(pcf->upstream->name, "api");
    ck_assert_ptr_nonnull(pcf->rewrite);
    ck_assert_ptr_eq(r->listener, &listener);
    ck_assert_ptr_nonnull(r->confs);
    ck_assert_ptr_eq(lb_get_conf(r->confs, lb_http_route_module), (void *) r);
    ck_assert_int_eq(r->line, 1);

    r = routes.routes[1];
    rcf = lb_get_conf(r->confs, lb_http_return_module);
    ck_assert_str_eq(r->action, "return");
    ck_assert_ptr_nonnull(r->handler);
    ck_assert_ptr_ne(r->handler, routes.routes[0]->handler);
    ck_assert_int_eq(rcf->status, 418);
    ck_assert_ptr_nonnull(rcf->body);
    ck_assert_str_eq(rcf->content_type, "text/plain");
    ck_assert_int_eq(r->line, 2);
    pcf = lb_get_conf(r->confs, lb_http_proxy_module);
    ck_assert_ptr_null(pcf->upstream_name);

    r = routes.routes[2];
    rcf = lb_get_conf(r->confs, lb_http_return_module);
    ck_assert_ptr_null(rcf->body);
    ck_assert_str_eq(rcf->content_type, "application/json");

    r = routes.routes[3];
    rcf = lb_get_conf(r->confs, lb_http_return_module);
    ck_assert_str_eq(r->action, "redirect");
    ck_assert(rcf->redirect);
    ck_assert_int_eq(rcf->status, 302);
    ck_assert_ptr_nonnull(rcf->location);

    rcf = lb_get_conf(routes.routes[4]->confs, lb_http_return_module);
    ck_assert_int_eq(rcf->status, 308);
    ck_assert_uint_eq(routes.routes[4]->index, 5);
}
END_TEST

START_TEST(describe_lists_conditions_and_action)
{
    char    buf[512], small[16];
    size_t  n;

    compile_ok("( { host = \"api.example.com\"; method = [\"GET\", \"HEAD\"];\n"
               "    path_prefix = \"/v1/\"; header = \"X-Tenant: acme\"; query = \"lang\";\n"
               "    upstream = \"api\"; rewrite = \"/$uri\"; },\n"
               "  { redirect = { status = 301; location = \"https://$host$request_uri\"; }; },\n"
               "  { path_regex = \"^/x/(.*)\"; cookie = \"beta: ~1\"; return = { status = 410; }; } )");

    n = lb_http_route_describe(routes.routes[0], buf, sizeof(buf));
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_msg(strncmp(buf, "route #1 at ", 12) == 0, "%s", buf);
    ck_assert_str_eq(strstr(buf, "routes.conf"),
                     "routes.conf:1: host = \"api.example.com\", method = [GET, HEAD], "
                     "path_prefix = \"/v1/\", header = \"X-Tenant: acme\", query = \"lang\" "
                     "-> upstream \"api\", rewrite = \"/$uri\"");

    lb_http_route_describe(routes.routes[1], buf, sizeof(buf));
    ck_assert_str_eq(strstr(buf, "routes.conf"),
                     "routes.conf:4: every request -> redirect 301 \"https://$host$request_uri\"");
    lb_http_route_describe(routes.routes[2], buf, sizeof(buf));
    ck_assert_str_eq(strstr(buf, "routes.conf"),
                     "routes.conf:5: path_regex = \"^/x/(.*)\", cookie = \"beta: ~1\" -> return 410");

    /* truncated like snprintf, and says how much it needs */
    n = lb_http_route_describe(routes.routes[2], small, sizeof(small));
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
    ck_assert_int_eq(strncmp(small, buf, sizeof(small) - 1), 0);
}
END_TEST

START_TEST(dangling_upstream_is_reported_with_a_suggestion)
{
    ck_assert_int_eq(compile("(\n"
                             "  { path = \"/\"; upstream = \"wbe\"; }\n"
                             ")"), LB_ERROR);
    ck_assert_uint_eq(nreports, 1);
    ck_assert_str_eq(strstr(reports[0], "routes.conf"),
                     "routes.conf:2: unknown upstream \"wbe\" in route #1 of listener \"web\" "
                     "(did you mean \"web\"?)");
}
END_TEST

/* Configuration errors, through lb_cycle_load ----------------------------- */

/* A listener whose routes are line 4 onwards; ROUTES_END closes it. */
#define HTTP_LISTENER                                                       \
    UPSTREAMS                                                   /* 1-4 */   \
    "listeners = (\n"                                           /* 5 */     \
    "  { protocol = \"http\"; listen = \"127.0.0.1:8000\"; name = \"web\";\n" /* 6 */ \
    "    routes = (\n"                                          /* 7 */

#define ROUTES_END  "    );\n  }\n);\n"

static size_t
load_bad(const char *text)
{
    lb_cycle_t  *c = lb_cycle_load(write_file("lbd.conf", text), dir, record_report);

    ck_assert_msg(c == NULL, "the configuration should have been rejected");
    ck_assert_uint_gt(nreports, 0);
    return nreports;
}

static void
expect_error(const char *routes_text, const char *where_msg)
{
    char    text[8192], want[2048];
    size_t  n;

    snprintf(text, sizeof(text), HTTP_LISTENER "%s" ROUTES_END, routes_text);
    n = load_bad(text);
    snprintf(want, sizeof(want), "%s/%s", dir, where_msg);
    ck_assert_msg(n == 1, "%zu errors reported; the first: %s; the second: %s", n,
                  reports[0], reports[n > 1]);
    ck_assert_str_eq(reports[0], want);
}

START_TEST(valid_routes_load)
{
    lb_cycle_t  *c;

    c = lb_cycle_load(write_file("lbd.conf", HTTP_LISTENER
             "      { path_regex = \"^/api/(orders|users)/(.*)$\"; upstream = \"web\";\n" /* 8 */
             "        rewrite = \"/$2\"; },\n"
             "      { host = \"*.example.com\"; method = [\"GET\", \"HEAD\"];\n"         /* 10 */
             "        redirect = { status = 301; location = \"https://$host$request_uri\"; }; },\n"
             "      { header = \"X-A: ~^a\"; cookie = \"b\"; query = \"c: d\";\n"           /* 12 */
             "        return = { status = 200; body = \"ok $1\\n\"; }; path_regex = \"^/(x)\"; }\n"
             ROUTES_END), dir, record_report);
    ck_assert_msg(c != NULL, "rejected: %s", nreports ? reports[0] : "?");
    ck_assert_uint_eq(nreports, 0);
    lb_cycle_free(c);
}
END_TEST

START_TEST(error_no_action)
{
    expect_error("      { path = \"/x\"; }\n",
                 "lbd.conf:8: route #1 of listener \"web\" needs exactly one action: "
                 "upstream, return or redirect");
}
END_TEST

START_TEST(error_two_actions)
{
    expect_error("      { path = \"/x\"; return = { status = 200; }; },\n"
                 "      { path = \"/y\"; upstream = \"web\";\n"
                 "        redirect = { location = \"/\"; }; }\n",
                 "lbd.conf:9: route #2 of listener \"web\" needs exactly one action: "
                 "upstream, return or redirect");
}
END_TEST

START_TEST(error_path_regex_invalid)
{
    expect_error("      { path_regex = \"^/(a\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid regex \"^/(a\" in \"path_regex\": "
                 "missing closing parenthesis at offset 4");
}
END_TEST

START_TEST(error_host_regex_invalid)
{
    expect_error("      { host = \"~[a-\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid regex \"[a-\" in \"host\": "
                 "missing terminating ] for character class at offset 3");
}
END_TEST

START_TEST(error_header_regex_invalid)
{
    expect_error("      { header = \"X-A: ~*a\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid regex \"*a\" in \"header\": "
                 "quantifier does not follow a repeatable item at offset 0");
}
END_TEST

START_TEST(error_header_name_not_a_token)
{
    expect_error("      { upstream = \"web\";\n"
                 "        header = [\"X-A\", \"X A: 1\"]; }\n",
                 "lbd.conf:9: invalid header \"X A: 1\": expected \"Name\", \"Name: value\" "
                 "or \"Name: ~regex\", where Name is a token (RFC 9110 §5.6.2)");
}
END_TEST

START_TEST(error_query_name_empty)
{
    expect_error("      { query = \": x\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid query \": x\": expected \"Name\", \"Name: value\", "
                 "\"Name=value\" or \"Name: ~regex\", where Name is a parameter name");
}
END_TEST

START_TEST(error_method_not_a_token)
{
    expect_error("      { method = [\"GET\", \"GET POST\"]; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid method \"GET POST\": a method is a token "
                 "(RFC 9110 §9.1), such as \"GET\"");
}
END_TEST

START_TEST(error_method_lowercase)
{
    expect_error("      { method = \"post\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: method \"post\" would only match requests that send \"post\": "
                 "methods are case-sensitive (did you mean \"POST\"?)");
}
END_TEST

START_TEST(error_method_never_accepted)
{
    expect_error("      { method = \"G3T\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: method \"G3T\" would never match: requests whose method is "
                 "not uppercase letters, '-' and '_' (at most 32) are refused with 400");
}
END_TEST

START_TEST(error_method_wrong_type)
{
    expect_error("      { method = 5; upstream = \"web\"; }\n",
                 "lbd.conf:8: \"method\" must be a string or an array of strings, "
                 "not an integer");
}
END_TEST

START_TEST(error_rewrite_without_upstream)
{
    expect_error("      { return = { status = 200; };\n"
                 "        rewrite = \"/x\"; }\n",
                 "lbd.conf:9: \"rewrite\" needs the upstream action in route #1 of "
                 "listener \"web\": it is the path sent upstream");
}
END_TEST

START_TEST(error_unknown_variable_in_rewrite)
{
    expect_error("      { upstream = \"web\"; rewrite = \"/$urri\"; }\n",
                 "lbd.conf:8: invalid \"rewrite\" in route #1 of listener \"web\": "
                 "unknown variable \"$urri\" (did you mean \"$uri\"?)");
}
END_TEST

START_TEST(error_unknown_variable_in_body)
{
    expect_error("      { return = { status = 200;\n"
                 "                   body = \"$hots\"; }; }\n",
                 "lbd.conf:9: invalid \"body\" in route #1 of listener \"web\": "
                 "unknown variable \"$hots\" (did you mean \"$host\"?)");
}
END_TEST

START_TEST(error_unknown_variable_in_location)
{
    expect_error("      { redirect = { location = \"https://$hots/\"; }; }\n",
                 "lbd.conf:8: invalid \"location\" in route #1 of listener \"web\": "
                 "unknown variable \"$hots\" (did you mean \"$host\"?)");
}
END_TEST

START_TEST(error_capture_beyond_groups)
{
    expect_error("      { path_regex = \"^/api/(.*)$\"; upstream = \"web\";\n"
                 "        rewrite = \"/$1/$2\"; }\n",
                 "lbd.conf:9: \"rewrite\" uses $2, but path_regex \"^/api/(.*)$\" "
                 "has 1 capture group");
}
END_TEST

START_TEST(error_capture_without_path_regex)
{
    expect_error("      { path_prefix = \"/a/\";\n"
                 "        redirect = { location = \"/b/${1}\"; }; }\n",
                 "lbd.conf:9: \"location\" uses $1, but route #1 of listener \"web\" has "
                 "no path_regex to capture it");
}
END_TEST

START_TEST(error_capture_in_body)
{
    expect_error("      { path_regex = \"^/(a)(b)\"; return = { status = 200; body = \"$3\"; }; }\n",
                 "lbd.conf:8: \"body\" uses $3, but path_regex \"^/(a)(b)\" has 2 capture groups");
}
END_TEST

START_TEST(error_return_status_out_of_range)
{
    expect_error("      { return = { status = 99; }; }\n",
                 "lbd.conf:8: \"status\" must be between 100 and 599, got 99");
}
END_TEST

START_TEST(error_return_without_status)
{
    expect_error("      { return = { body = \"x\"; }; }\n",
                 "lbd.conf:8: missing required setting \"status\" in \"return\" of route #1 "
                 "of listener \"web\"");
}
END_TEST

START_TEST(error_return_unknown_member)
{
    expect_error("      { return = { status = 200;\n"
                 "                   content_typ = \"text/html\"; }; }\n",
                 "lbd.conf:9: unknown setting \"content_typ\" in \"return\" of route #1 of "
                 "listener \"web\" (did you mean \"content_type\"?); valid here: body, "
                 "body_file, content_type, status");
}
END_TEST

START_TEST(error_return_not_a_group)
{
    expect_error("      { return = 200; }\n",
                 "lbd.conf:8: \"return\" must be a group { status = ...; ... }, not an integer");
}
END_TEST

START_TEST(error_redirect_status)
{
    expect_error("      { redirect = { status = 200; location = \"/\"; }; }\n",
                 "lbd.conf:8: \"status\" of \"redirect\" must be 301, 302, 303, 307 or 308, "
                 "got 200");
}
END_TEST

START_TEST(error_redirect_without_location)
{
    expect_error("      { redirect = { status = 301; }; }\n",
                 "lbd.conf:8: missing required setting \"location\" in \"redirect\" of "
                 "route #1 of listener \"web\"");
}
END_TEST

START_TEST(error_host_with_port)
{
    expect_error("      { host = \"api.example.com:8080\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid host \"api.example.com:8080\": a host is matched "
                 "without its port, so it may not name one");
}
END_TEST

START_TEST(error_host_bad_wildcard)
{
    expect_error("      { host = \"api.*.com\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: invalid host \"api.*.com\": expected a name "
                 "(\"api.example.com\"), a wildcard (\"*.example.com\") or a regex "
                 "(\"~^api[0-9]+\\\\.\")");
}
END_TEST

START_TEST(error_path_must_start_with_slash)
{
    expect_error("      { path_prefix = \"api/\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: \"path_prefix\" must start with \"/\", got \"api/\"");
}
END_TEST

START_TEST(error_unknown_route_setting)
{
    expect_error("      { paht = \"/\"; upstream = \"web\"; }\n",
                 "lbd.conf:8: unknown setting \"paht\" in route #1 of listener \"web\" "
                 "(did you mean \"path\"?); valid here: allow, cookie, deny, error_pages, gzip, "
                 "header, host, limits, method, path, "
                 "path_prefix, path_regex, query, redirect, request_buffering, "
                 "request_headers, response_headers, return, rewrite, upstream, waf");
}
END_TEST

START_TEST(error_routes_not_a_list)
{
    char  want[1024];

    load_bad(UPSTREAMS
             "listeners = (\n"
             "  { protocol = \"http\"; listen = \"127.0.0.1:8000\"; name = \"web\";\n"
             "    routes = { path = \"/\"; }; }\n"
             ");\n");
    snprintf(want, sizeof(want), "%s/lbd.conf:7: \"routes\" must be a list ( { ... }, ... ), "
             "not a group { }", dir);
    ck_assert_uint_eq(nreports, 1);
    ck_assert_str_eq(reports[0], want);
}
END_TEST

START_TEST(error_route_not_a_group)
{
    expect_error("      \"/\", { upstream = \"web\"; }\n",
                 "lbd.conf:8: route #1 of listener \"web\" must be a group { ... }, "
                 "not a string");
}
END_TEST

START_TEST(every_route_error_is_reported)
{
    char  want[1024];

    load_bad(HTTP_LISTENER
             "      { path = \"x\"; upstream = \"web\"; },\n"                    /* 8 */
             "      { method = \"get\"; upstream = \"web\"; }\n"                 /* 9 */
             ROUTES_END);
    ck_assert_uint_eq(nreports, 2);
    snprintf(want, sizeof(want), "%s/lbd.conf:8: \"path\" must start with \"/\", got \"x\"", dir);
    ck_assert_str_eq(reports[0], want);
    ck_assert_ptr_nonnull(strstr(reports[1], "lbd.conf:9: method \"get\""));
}
END_TEST

START_TEST(routes_are_not_offered_to_tcp_listeners)
{
    char  want[1024];

    load_bad(UPSTREAMS
             "listeners = (\n"
             "  { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\";\n"
             "    routes = ( ); }\n"
             ");\n");
    ck_assert_uint_eq(nreports, 1);
    snprintf(want, sizeof(want), "%s/lbd.conf:7: unknown setting \"routes\" in listener "
             "\"tcp:127.0.0.1:8000\"", dir);
    ck_assert_msg(strncmp(reports[0], want, strlen(want)) == 0, "%s", reports[0]);
}
END_TEST

static Suite *
route_suite(void)
{
    Suite  *s = suite_create("http_route");
    TCase  *tc = tcase_create("match");
    TCase  *te = tcase_create("errors");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, path_is_exact_and_ignores_the_query);
    tcase_add_test(tc, path_prefix_matches_the_start);
    tcase_add_test(tc, path_is_matched_as_sent_not_decoded);
    tcase_add_test(tc, path_is_matched_normalised);
    tcase_add_test(tc, merge_slashes_off_keeps_empty_segments);
    tcase_add_test(tc, path_case_insensitive_folds_path_prefix_and_regex);
    tcase_add_test(tc, path_case_sensitive_by_default);
    tcase_add_test(tc, captures_are_taken_on_the_normal_path);
    tcase_add_test(tc, absolute_form_routes_by_its_authority);
    tcase_add_test(tc, path_regex_fills_captures);
    tcase_add_test(tc, path_regex_is_unanchored_without_caret);
    tcase_add_test(tc, unset_capture_group_is_empty);
    tcase_add_test(tc, captures_stop_at_nine);
    tcase_add_test(tc, first_matching_route_wins);
    tcase_add_test(tc, no_route_matches_gives_null);
    tcase_add_test(tc, no_routes_match_nothing);
    tcase_add_test(tc, listener_without_routes_conf_matches_nothing);
    tcase_add_test(tc, every_condition_must_hold);
    tcase_add_test(tc, method_string_or_list);
    tcase_add_test(tc, methods_are_case_sensitive);
    tcase_add_test(tc, host_exact_ignores_case_port_and_trailing_dot);
    tcase_add_test(tc, host_wildcard_needs_a_label_before_the_suffix);
    tcase_add_test(tc, host_regex_sees_lowercased_host_without_port);
    tcase_add_test(tc, host_ipv6_literal_keeps_its_brackets);
    tcase_add_test(tc, request_without_host_fails_host_conditions);
    tcase_add_test(tc, header_present_exact_regex);
    tcase_add_test(tc, header_any_field_of_that_name);
    tcase_add_test(tc, header_list_needs_all);
    tcase_add_test(tc, cookie_present_exact_regex);
    tcase_add_test(tc, cookie_first_of_its_name_counts);
    tcase_add_test(tc, query_present_exact_regex);
    tcase_add_test(tc, query_value_is_not_decoded);
    tcase_add_test(tc, actions_are_compiled);
    tcase_add_test(tc, describe_lists_conditions_and_action);
    tcase_add_test(tc, dangling_upstream_is_reported_with_a_suggestion);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(te, setup, teardown);
    tcase_add_test(te, valid_routes_load);
    tcase_add_test(te, error_no_action);
    tcase_add_test(te, error_two_actions);
    tcase_add_test(te, error_path_regex_invalid);
    tcase_add_test(te, error_host_regex_invalid);
    tcase_add_test(te, error_header_regex_invalid);
    tcase_add_test(te, error_header_name_not_a_token);
    tcase_add_test(te, error_query_name_empty);
    tcase_add_test(te, error_method_not_a_token);
    tcase_add_test(te, error_method_lowercase);
    tcase_add_test(te, error_method_never_accepted);
    tcase_add_test(te, error_method_wrong_type);
    tcase_add_test(te, error_rewrite_without_upstream);
    tcase_add_test(te, error_unknown_variable_in_rewrite);
    tcase_add_test(te, error_unknown_variable_in_body);
    tcase_add_test(te, error_unknown_variable_in_location);
    tcase_add_test(te, error_capture_beyond_groups);
    tcase_add_test(te, error_capture_without_path_regex);
    tcase_add_test(te, error_capture_in_body);
    tcase_add_test(te, error_return_status_out_of_range);
    tcase_add_test(te, error_return_without_status);
    tcase_add_test(te, error_return_unknown_member);
    tcase_add_test(te, error_return_not_a_group);
    tcase_add_test(te, error_redirect_status);
    tcase_add_test(te, error_redirect_without_location);
    tcase_add_test(te, error_host_with_port);
    tcase_add_test(te, error_host_bad_wildcard);
    tcase_add_test(te, error_path_must_start_with_slash);
    tcase_add_test(te, error_unknown_route_setting);
    tcase_add_test(te, error_routes_not_a_list);
    tcase_add_test(te, error_route_not_a_group);
    tcase_add_test(te, every_route_error_is_reported);
    tcase_add_test(te, routes_are_not_offered_to_tcp_listeners);
    suite_add_tcase(s, te);
    return s;
}

int
main(void)
{
    return test_files_main(route_suite());
}
