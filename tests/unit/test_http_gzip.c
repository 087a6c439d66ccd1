/*
 * test_http_gzip.c: the gzip module's decision and head edits (SPEC
 * §3.6, modules/http/gzip): Accept-Encoding with weights, media type
 * matching, list tokens (Cache-Control, Vary), Vary merging, ETag
 * weakening, every case that leaves a response alone, $gzip_ratio's
 * rounding, the gzip group as the loader reads it (defaults, a route's
 * group replacing its listener's, FILE:LINE errors), and the filters
 * themselves over a writer that takes a few bytes at a time: the body
 * inflates back whole, trailer lines come after it, and the filter
 * takes no input while its output waits. Requests are parsed for real;
 * responses are a request object's r->out.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"
#include "lb_http_gzip.h"

#include <check.h>
#include <zlib.h>

#define LB_TEST_NAME  "gzip"
#include "lb_test_files.h"

static const lb_http_limits_t  limits = { 16384, 100, 8192 };

static lb_http_msg_t       msg;
static char                head[8192];
static lb_http_request_t   req;
static lb_http_gzip_conf_t conf;
static lb_str_t            conf_types[3];

/* Parses "GET / HTTP/1.1" with Host and the given field lines into msg. */
static const lb_http_msg_t *
request_with(const char *method, const char *lines)
{
    int  n = snprintf(head, sizeof(head), "%s / HTTP/1.1\r\nHost: t\r\n%s\r\n", method, lines);

    ck_assert_int_eq(lb_http_parse_request_head(&msg, head, (size_t) n, &limits), LB_OK);
    return &msg;
}

static bool
accepts(const char *lines)
{
    return lb_http_gzip_accepts(request_with("GET", lines));
}

static lb_str_t
str(const char *s)
{
    lb_str_t  v = { strlen(s), (char *) s };

    return v;
}

/* A 200 text/html response of unknown length to a GET that accepts
 * gzip, under gzip on with the default level and min_length and the
 * types text/html, text/plain and image/ (any image). */
static void
setup(void)
{
    memset(&req, 0, sizeof(req));        /* no fields, an empty arena */
    req.msg = (lb_http_msg_t *) request_with("GET", "Accept-Encoding: gzip, br\r\n");
    req.status = req.out.status = 200;
    req.out.content_length = -1;
    ck_assert_int_eq(lb_http_out_add(&req, "Content-Type", 12, "text/html", 9), LB_OK);

    conf_types[0] = str("text/html");
    conf_types[1] = str("text/plain");
    conf_types[2] = str("image/");
    memset(&conf, 0, sizeof(conf));
    conf.enabled = 1;
    conf.level = 5;
    conf.min_length = 256;
    conf.types.types = conf_types;
    conf.types.ntypes = 3;
}

static void
teardown(void)
{
}

static const char *
field(const char *name)
{
    static char        buf[512];
    lb_http_header_t  *f = lb_http_out_find(&req, name, strlen(name));

    if (f == NULL) {
        return NULL;
    }
    snprintf(buf, sizeof(buf), "%.*s", (int) f->value.len, f->value.data);
    return buf;
}

static size_t
count(const char *name)
{
    size_t  i, n = 0;

    for (i = 0; i < req.out.nfields; i++) {
        if (req.out.fields[i].name.len == strlen(name)
            && strncasecmp(req.out.fields[i].name.data, name, strlen(name)) == 0)
        {
            n++;
        }
    }
    return n;
}

static void
add(const char *name, const char *value)
{
    ck_assert_int_eq(lb_http_out_add(&req, name, strlen(name), value, strlen(value)), LB_OK);
}

/* Accept-Encoding ---------------------------------------------------------- */

START_TEST(accept_encoding_plain_names)
{
    ck_assert(accepts("Accept-Encoding: gzip\r\n"));
    ck_assert(accepts("Accept-Encoding: GZip\r\n"));
    ck_assert(accepts("Accept-Encoding: x-gzip\r\n"));
    ck_assert(accepts("Accept-Encoding: deflate,gzip\r\n"));
    ck_assert(accepts("Accept-Encoding: br , gzip , deflate\r\n"));
    ck_assert(!accepts(""));
    ck_assert(!accepts("Accept-Encoding: \r\n"));
    ck_assert(!accepts("Accept-Encoding: identity\r\n"));
    ck_assert(!accepts("Accept-Encoding: deflate, br\r\n"));
    ck_assert(!accepts("Accept-Encoding: gzipx, xgzip\r\n"));
}
END_TEST

START_TEST(accept_encoding_weights)
{
    ck_assert(!accepts("Accept-Encoding: gzip;q=0\r\n"));
    ck_assert(!accepts("Accept-Encoding: gzip; q=0.000\r\n"));
    ck_assert(!accepts("Accept-Encoding: gzip ;Q=0\r\n"));
    ck_assert(!accepts("Accept-Encoding: x-gzip;q=0, br\r\n"));
    ck_assert(accepts("Accept-Encoding: gzip;q=0.001\r\n"));
    ck_assert(accepts("Accept-Encoding: gzip;q=1.000\r\n"));
    ck_assert(accepts("Accept-Encoding: br;q=1.0, gzip;q=0.5\r\n"));
    ck_assert(accepts("Accept-Encoding: gzip;level=1;q=0.5\r\n"));
    /* a malformed weight counts as 0 */
    ck_assert(!accepts("Accept-Encoding: gzip;q=2\r\n"));
    ck_assert(!accepts("Accept-Encoding: gzip;q=abc\r\n"));
    ck_assert(!accepts("Accept-Encoding: gzip;q=0.0001\r\n"));
    /* the better of two mentions counts */
    ck_assert(accepts("Accept-Encoding: gzip;q=0, x-gzip\r\n"));
}
END_TEST

START_TEST(accept_encoding_star)
{
    ck_assert(accepts("Accept-Encoding: *\r\n"));
    ck_assert(accepts("Accept-Encoding: br, *;q=0.1\r\n"));
    ck_assert(!accepts("Accept-Encoding: *, gzip;q=0\r\n"));
    ck_assert(!accepts("Accept-Encoding: gzip;q=0, *\r\n"));
    ck_assert(!accepts("Accept-Encoding: *;q=0\r\n"));
    ck_assert(!accepts("Accept-Encoding: br, *;q=0\r\n"));
    ck_assert(accepts("Accept-Encoding: *;q=0, gzip\r\n"));
}
END_TEST

START_TEST(accept_encoding_fields_are_one_list)
{
    ck_assert(accepts("Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n"));
    ck_assert(!accepts("Accept-Encoding: *\r\naccept-encoding: gzip;q=0\r\n"));
}
END_TEST

/* Types and lists ----------------------------------------------------------- */

START_TEST(types_ignore_parameters_and_case)
{
    ck_assert(lb_http_gzip_type_matches(&conf.types, str("text/html")));
    ck_assert(lb_http_gzip_type_matches(&conf.types, str("Text/HTML; charset=utf-8")));
    ck_assert(lb_http_gzip_type_matches(&conf.types, str("text/plain ;charset=x")));
    ck_assert(lb_http_gzip_type_matches(&conf.types, str("image/svg+xml")));
    ck_assert(!lb_http_gzip_type_matches(&conf.types, str("text/htmlx")));
    ck_assert(!lb_http_gzip_type_matches(&conf.types, str("text/css")));
    ck_assert(!lb_http_gzip_type_matches(&conf.types, str("image/")));
    ck_assert(!lb_http_gzip_type_matches(&conf.types, str("")));
    ck_assert(!lb_http_gzip_type_matches(&conf.types, str("; charset=utf-8")));
}
END_TEST

START_TEST(types_star_is_any_type_but_none)
{
    conf.types.ntypes = 0;
    conf.types.any = true;
    ck_assert(lb_http_gzip_type_matches(&conf.types, str("application/octet-stream")));
    ck_assert(!lb_http_gzip_type_matches(&conf.types, str("")));
}
END_TEST

START_TEST(list_tokens)
{
    ck_assert(lb_http_gzip_list_has(str("no-cache, no-transform"), "no-transform", 12));
    ck_assert(lb_http_gzip_list_has(str("max-age=0,No-Transform"), "no-transform", 12));
    ck_assert(!lb_http_gzip_list_has(str("no-transformx, max-age=5"), "no-transform", 12));
    ck_assert(!lb_http_gzip_list_has(str("private=\"no-transform\""), "no-transform", 12));
    ck_assert(lb_http_gzip_list_has(str("Cookie , accept-encoding"), "accept-encoding", 15));
    ck_assert(lb_http_gzip_list_has(str("*"), "*", 1));
    ck_assert(!lb_http_gzip_list_has(str(""), "*", 1));
}
END_TEST

/* Vary and ETag -------------------------------------------------------------- */

START_TEST(vary_added)
{
    ck_assert_int_eq(lb_http_gzip_vary(&req), LB_OK);
    ck_assert_str_eq(field("Vary"), "Accept-Encoding");
    ck_assert_uint_eq(count("Vary"), 1);
}
END_TEST

START_TEST(vary_merged_into_the_servers)
{
    size_t  n;

    add("Vary", "Cookie, User-Agent");
    n = req.out.nfields;
    ck_assert_int_eq(lb_http_gzip_vary(&req), LB_OK);
    ck_assert_str_eq(field("Vary"), "Cookie, User-Agent, Accept-Encoding");
    ck_assert_uint_eq(req.out.nfields, n);
}
END_TEST

START_TEST(vary_already_there_is_kept)
{
    add("Vary", "cookie,ACCEPT-ENCODING");
    ck_assert_int_eq(lb_http_gzip_vary(&req), LB_OK);
    ck_assert_str_eq(field("Vary"), "cookie,ACCEPT-ENCODING");

    setup();
    add("Vary", "*");
    ck_assert_int_eq(lb_http_gzip_vary(&req), LB_OK);
    ck_assert_str_eq(field("Vary"), "*");

    setup();
    add("Vary", "Cookie");
    add("Vary", "Accept-Encoding");
    ck_assert_int_eq(lb_http_gzip_vary(&req), LB_OK);
    ck_assert_str_eq(field("Vary"), "Cookie");
    ck_assert_uint_eq(count("Vary"), 2);
}
END_TEST

START_TEST(vary_empty_value_is_replaced)
{
    add("Vary", "");
    ck_assert_int_eq(lb_http_gzip_vary(&req), LB_OK);
    ck_assert_str_eq(field("Vary"), "Accept-Encoding");
    ck_assert_uint_eq(count("Vary"), 1);
}
END_TEST

START_TEST(etag_strong_becomes_weak)
{
    add("ETag", "\"abc\"");
    ck_assert_int_eq(lb_http_gzip_weaken_etag(&req), LB_OK);
    ck_assert_str_eq(field("ETag"), "W/\"abc\"");
}
END_TEST

START_TEST(etag_weak_stays_malformed_goes)
{
    add("ETag", "W/\"abc\"");
    ck_assert_int_eq(lb_http_gzip_weaken_etag(&req), LB_OK);
    ck_assert_str_eq(field("ETag"), "W/\"abc\"");

    setup();
    add("ETag", "abc");
    ck_assert_int_eq(lb_http_gzip_weaken_etag(&req), LB_OK);
    ck_assert_ptr_null(field("ETag"));

    setup();
    ck_assert_int_eq(lb_http_gzip_weaken_etag(&req), LB_OK);
    ck_assert_ptr_null(field("ETag"));
}
END_TEST

/* The decision ---------------------------------------------------------------- */

#define DECIDE()  lb_http_gzip_decide(&req, &conf)

START_TEST(decide_yes)
{
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_YES);
    req.out.status = 404;
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_YES);
    add("Content-Encoding", "identity");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_YES);
}
END_TEST

START_TEST(decide_never)
{
    static const int  statuses[] = { 100, 101, 204, 206, 304 };
    size_t            i;

    conf.enabled = 0;
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_NO);
    conf.enabled = 1;
    for (i = 0; i < lb_nelems(statuses); i++) {
        req.out.status = statuses[i];
        ck_assert_msg(DECIDE() == LB_HTTP_GZIP_NO, "status %d", statuses[i]);
    }

    setup();
    add("Content-Encoding", "br");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_NO);

    setup();
    add("Cache-Control", "public, No-Transform");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_NO);

    setup();
    lb_http_out_remove(&req, "Content-Type", 12);
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_NO);
    add("Content-Type", "application/octet-stream");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_NO);
}
END_TEST

START_TEST(decide_min_length_only_when_known)
{
    req.out.content_length = 255;
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_NO);
    req.out.content_length = 256;
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_YES);
    req.out.content_length = 0;
    conf.min_length = 0;
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_YES);
}
END_TEST

START_TEST(decide_vary_only_for_the_request)
{
    req.head_method = 1;
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_VARY);

    setup();
    req.msg = (lb_http_msg_t *) request_with("GET", "Accept-Encoding: gzip\r\n"
                                                    "Range: bytes=0-10\r\n");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_VARY);

    setup();
    req.msg = (lb_http_msg_t *) request_with("GET", "");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_VARY);

    setup();
    req.msg = (lb_http_msg_t *) request_with("GET", "Accept-Encoding: gzip;q=0\r\n");
    ck_assert_int_eq(DECIDE(), LB_HTTP_GZIP_VARY);
}
END_TEST

/* $gzip_ratio ------------------------------------------------------------------ */

static const char *
ratio(uint64_t in, uint64_t out)
{
    static char  buf[32];

    ck_assert_uint_eq(lb_http_gzip_ratio(in, out, buf, sizeof(buf)), strlen(buf));
    return buf;
}

START_TEST(ratio_two_decimals_rounded)
{
    ck_assert_str_eq(ratio(341, 100), "3.41");
    ck_assert_str_eq(ratio(1, 3), "0.33");
    ck_assert_str_eq(ratio(2, 3), "0.67");
    ck_assert_str_eq(ratio(0, 20), "0.00");
    ck_assert_str_eq(ratio(1000, 1000), "1.00");
    ck_assert_str_eq(ratio(1995, 1000), "2.00");
    ck_assert_str_eq(ratio(1994, 1000), "1.99");
    ck_assert_str_eq(ratio((uint64_t) 1 << 30, 1044623), "1027.87");
}
END_TEST

/* Configuration ------------------------------------------------------------------ */

#define LISTENER(gzip, routes)                                                  \
    "listeners = (\n"                                                           \
    "  { protocol = \"http\"; listen = \"127.0.0.1:8000\"; name = \"web\";\n"   \
    "    " gzip "\n"                                                            \
    "    routes = (\n"                                                          \
    routes                                                                      \
    "    );\n  }\n);\n"

static lb_cycle_t  *cycle;

static void
conf_setup(void)
{
    test_dir_setup();
    cycle = NULL;
}

static void
conf_teardown(void)
{
    lb_cycle_free(cycle);
    cycle = NULL;
    test_dir_teardown();
}

static lb_listener_t *
load(const char *text)
{
    cycle = lb_cycle_load(write_file("lbd.conf", text), dir, record_report);
    ck_assert_msg(cycle != NULL, "rejected: %s", nreports ? reports[0] : "?");
    return ((lb_listener_t **) cycle->listeners.elts)[0];
}

static const lb_http_gzip_conf_t *
route_conf(lb_listener_t *ls, size_t i)
{
    const lb_http_routes_t  *rs = lb_http_route_list(ls);

    ck_assert_uint_gt(rs->nroutes, i);
    return lb_get_conf(rs->routes[i]->confs, lb_http_gzip_module);
}

static void
expect_error(const char *text, const char *where_msg)
{
    char  want[2048];

    cycle = lb_cycle_load(write_file("lbd.conf", text), dir, record_report);
    ck_assert_msg(cycle == NULL, "the configuration should have been rejected");
    snprintf(want, sizeof(want), "%s/%s", dir, where_msg);
    ck_assert_uint_eq(nreports, 1);
    ck_assert_str_eq(reports[0], want);
}

START_TEST(conf_no_group_is_off_with_the_defaults)
{
    lb_listener_t              *ls = load(LISTENER("", "{ return = { status = 200; }; }\n"));
    const lb_http_gzip_conf_t  *g = lb_get_conf(ls->confs, lb_http_gzip_module);

    ck_assert_int_eq(g->enabled, 0);
    ck_assert_int_eq(g->level, 5);
    ck_assert_int_eq(g->min_length, 256);
    ck_assert_uint_eq(g->types.ntypes, 6);
    ck_assert(!g->types.any);
    ck_assert(lb_http_gzip_type_matches(&g->types, str("image/svg+xml")));
    ck_assert(lb_http_gzip_type_matches(&g->types, str("application/javascript")));
    ck_assert_int_eq(route_conf(ls, 0)->enabled, 0);
}
END_TEST

START_TEST(conf_a_group_turns_it_on)
{
    lb_listener_t              *ls = load(LISTENER("gzip = { level = 9; min_length = \"1k\"; "
                                                   "types = [\"Text/*\", \"*\"]; };",
                                                   "{ return = { status = 200; }; }\n"));
    const lb_http_gzip_conf_t  *g = lb_get_conf(ls->confs, lb_http_gzip_module);

    ck_assert_int_eq(g->enabled, 1);
    ck_assert_int_eq(g->level, 9);
    ck_assert_int_eq(g->min_length, 1024);
    ck_assert(g->types.any);
    ck_assert_uint_eq(g->types.ntypes, 1);
    ck_assert_str_eq(g->types.types[0].data, "text/");
    /* the route follows its listener */
    ck_assert_int_eq(route_conf(ls, 0)->enabled, 1);
    ck_assert_int_eq(route_conf(ls, 0)->level, 9);
}
END_TEST

START_TEST(conf_a_routes_group_replaces_the_listeners_whole)
{
    lb_listener_t  *ls = load(LISTENER("gzip = { level = 1; types = \"text/css\"; };",
                                       "{ path = \"/a\"; gzip = { enabled = false; }; "
                                       "return = { status = 200; }; },\n"
                                       "{ path = \"/b\"; gzip = { min_length = 0; }; "
                                       "return = { status = 200; }; },\n"
                                       "{ return = { status = 200; }; }\n"));

    ck_assert_int_eq(route_conf(ls, 0)->enabled, 0);
    ck_assert_int_eq(route_conf(ls, 1)->enabled, 1);
    ck_assert_int_eq(route_conf(ls, 1)->min_length, 0);
    ck_assert_int_eq(route_conf(ls, 1)->level, 5);                 /* not the listener's 1 */
    ck_assert_uint_eq(route_conf(ls, 1)->types.ntypes, 6);         /* the defaults */
    ck_assert_int_eq(route_conf(ls, 2)->level, 1);
    ck_assert_uint_eq(route_conf(ls, 2)->types.ntypes, 1);
}
END_TEST

START_TEST(conf_reverse_override)
{
    lb_listener_t  *ls = load(LISTENER("gzip = { enabled = false; };",
                                       "{ path = \"/z\"; gzip = { }; "
                                       "return = { status = 200; }; },\n"
                                       "{ return = { status = 200; }; }\n"));

    ck_assert_int_eq(route_conf(ls, 0)->enabled, 1);
    ck_assert_int_eq(route_conf(ls, 1)->enabled, 0);
}
END_TEST

START_TEST(conf_unknown_member)
{
    expect_error(LISTENER("gzip = { enabled = true; levle = 3; };",
                          "{ return = { status = 200; }; }\n"),
                 "lbd.conf:3: unknown setting \"levle\" in \"gzip\" of listener \"web\" "
                 "(did you mean \"level\"?)");
}
END_TEST

START_TEST(conf_unknown_member_in_a_route)
{
    expect_error(LISTENER("",
                          "{ gzip = {\n"
                          "    min_lenght = 5; }; return = { status = 200; }; }\n"),
                 "lbd.conf:6: unknown setting \"min_lenght\" in \"gzip\" of route #1 of "
                 "listener \"web\" (did you mean \"min_length\"?)");
}
END_TEST

START_TEST(conf_level_out_of_range)
{
    cycle = lb_cycle_load(write_file("lbd.conf",
                                     LISTENER("gzip = { level = 10; };",
                                              "{ return = { status = 200; }; }\n")),
                          dir, record_report);
    ck_assert_ptr_null(cycle);
    ck_assert_uint_eq(nreports, 1);
    ck_assert_msg(strstr(reports[0], "lbd.conf:3: ") && strstr(reports[0], "\"level\""),
                  "%s", reports[0]);
}
END_TEST

START_TEST(conf_bad_types)
{
    expect_error(LISTENER("gzip = { types = [\"text/html; charset=utf-8\"]; };",
                          "{ return = { status = 200; }; }\n"),
                 "lbd.conf:3: invalid type \"text/html; charset=utf-8\" in \"types\" of "
                 "\"gzip\": expected \"type/subtype\" without parameters, \"type/*\" or \"*\"");
}
END_TEST

START_TEST(conf_not_a_group)
{
    cycle = lb_cycle_load(write_file("lbd.conf",
                                     LISTENER("gzip = true;",
                                              "{ return = { status = 200; }; }\n")),
                          dir, record_report);
    ck_assert_ptr_null(cycle);
    ck_assert_uint_eq(nreports, 1);
    ck_assert_msg(strstr(reports[0], "lbd.conf:3: \"gzip\" must be a group"), "%s", reports[0]);
}
END_TEST

/* The filters over a slow writer --------------------------------------------------- */

/* A writer that takes at most `take` bytes a call and says LB_AGAIN when
 * it left some, and every third call anyway (as if it held framing). */
static struct {
    size_t     take;
    unsigned   calls;
    char      *got;
    size_t     len, size;
    char       trailers[256];
    bool       done;                /* LB_OK for a call with last */
} w;

static int
slow_writer_body(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    lb_chain_t  *cl;
    size_t       n, budget = w.take;

    ck_assert(!w.done);
    w.calls++;
    for (cl = in; cl; cl = cl->next) {
        if (cl->trailer) {
            ck_assert_uint_lt(strlen(w.trailers) + lb_chain_link_len(cl) + 2,
                              sizeof(w.trailers));
            strncat(w.trailers, cl->pos, lb_chain_link_len(cl));
            strcat(w.trailers, "|");
            cl->pos = cl->last;
            continue;
        }
        ck_assert_msg(w.trailers[0] == '\0', "body bytes after a trailer line");
        n = lb_min(lb_chain_link_len(cl), budget);
        if (w.len + n > w.size) {
            w.size = (w.len + n) * 2;
            w.got = realloc(w.got, w.size);
            ck_assert_ptr_nonnull(w.got);
        }
        memcpy(w.got + w.len, cl->pos, n);
        w.len += n;
        cl->pos += n;
        budget -= n;
        if (cl->pos < cl->last) {
            return LB_AGAIN;
        }
    }
    if (w.calls % 3 == 0) {
        return LB_AGAIN;
    }
    w.done = last;
    return LB_OK;
}

static const lb_http_writer_t  slow_writer = { .body = slow_writer_body };

static lb_http_route_t          route;
static void                    *route_confs[64], *req_ctx[64];
static lb_http_body_filter_pt   body_filters[1];

static void
stream_setup(void)
{
    const lb_http_module_t  *m;

    setup();
    ck_assert_int_eq(lb_modules_init(), LB_OK);
    ck_assert_uint_le(lb_nmodules, lb_nelems(route_confs));
    m = lb_http_gzip_module.ctx;
    body_filters[0] = m->body_filter;
    lb_http_phases.body_filters = body_filters;
    lb_http_phases.nbody = 1;
    memset(route_confs, 0, sizeof(route_confs));
    memset(req_ctx, 0, sizeof(req_ctx));
    route_confs[lb_http_gzip_module.index] = &conf;
    memset(&route, 0, sizeof(route));
    route.confs = route_confs;
    req.route = &route;
    req.ctx = req_ctx;
    req.writer = &slow_writer;
    free(w.got);
    memset(&w, 0, sizeof(w));
}

static int
header_filter(void)
{
    const lb_http_module_t  *m = lb_http_gzip_module.ctx;

    return m->header_filter(&req);
}

/* Sends body in pieces of 1 to 40000 bytes, each until all of it went,
 * then the end with the trailer lines; what the writer got, inflated. */
static size_t
stream_body(const char *body, size_t len, const char *const *trailers, char *out,
            size_t out_size)
{
    lb_chain_t   piece, tl[4], *in;
    size_t       off = 0, n, i, spins;
    z_stream     z;
    int          rc;
    unsigned     seed = 12345;

    while (off < len) {
        seed = seed * 1103515245 + 12345;
        n = lb_min(len - off, 1 + (seed >> 8) % 40000);
        lb_chain_link_set(&piece, body + off, n);
        for (spins = 0; ; spins++) {
            ck_assert_uint_lt(spins, 100000);
            in = piece.pos < piece.last ? &piece : NULL;
            rc = lb_http_send_body(&req, in, false);
            ck_assert_int_ne(rc, LB_ERROR);
            if (rc == LB_OK) {
                break;
            }
        }
        ck_assert_ptr_eq(piece.pos, piece.last);
        off += n;
    }
    for (i = 0; trailers && trailers[i]; i++) {
        lb_chain_link_set(&tl[i], trailers[i], strlen(trailers[i]));
        tl[i].trailer = 1;
    }
    in = lb_chain_link_array(tl, i);
    for (spins = 0; ; spins++) {
        ck_assert_uint_lt(spins, 100000);
        rc = lb_http_send_body(&req, in && lb_chain_len(in) ? in : NULL, true);
        ck_assert_int_ne(rc, LB_ERROR);
        if (rc == LB_OK) {
            break;
        }
    }
    ck_assert(w.done);

    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(inflateInit2(&z, 16 + 15), Z_OK);
    z.next_in = (Bytef *) w.got;
    z.avail_in = (uInt) w.len;
    z.next_out = (Bytef *) out;
    z.avail_out = (uInt) out_size;
    rc = inflate(&z, Z_FINISH);
    ck_assert_int_eq(rc, Z_STREAM_END);
    ck_assert_uint_eq(z.avail_in, 0);           /* nothing after the member */
    n = z.total_out;
    inflateEnd(&z);
    return n;
}

START_TEST(stream_inflates_back_whole_through_a_slow_writer)
{
    static char              body[600000], out[700000];
    static const char *const  trailers[] = { "X-Sum: 1", "X-Two: 2", NULL };
    char                      ratio_text[32];
    lb_http_var_ctx_t         vctx;
    lb_http_complex_t        *cv;
    lb_pool_t                *pool = lb_pool_create(LB_POOL_DEFAULT_SIZE);
    size_t                    i, n;
    unsigned                  seed = 7;

    for (i = 0; i < sizeof(body); i++) {
        seed = seed * 1103515245 + 12345;
        body[i] = "abcdefgh \n<>"[(seed >> 16) % 12];
    }
    w.take = 3000;
    add("ETag", "\"x\"");
    ck_assert_int_eq(header_filter(), LB_OK);
    ck_assert_str_eq(field("Content-Encoding"), "gzip");
    ck_assert_str_eq(field("Vary"), "Accept-Encoding");
    ck_assert_str_eq(field("ETag"), "W/\"x\"");
    ck_assert_int_eq(req.out.content_length, -1);

    n = stream_body(body, sizeof(body), trailers, out, sizeof(out));
    ck_assert_uint_eq(n, sizeof(body));
    ck_assert(memcmp(out, body, n) == 0);
    ck_assert_str_eq(w.trailers, "X-Sum: 1|X-Two: 2|");
    ck_assert_uint_gt(w.calls, sizeof(body) / 2 / w.take);

    /* $gzip_ratio is what went in over what came out */
    ck_assert_ptr_nonnull(pool);
    cv = lb_http_complex_compile(pool, "$gzip_ratio", NULL, 0);
    ck_assert_ptr_nonnull(cv);
    memset(&vctx, 0, sizeof(vctx));
    vctx.r = &req;
    n = lb_http_complex_eval(cv, &vctx, ratio_text, sizeof(ratio_text) - 1);
    ratio_text[n] = '\0';
    {
        char  want[32];

        lb_http_gzip_ratio(sizeof(body), w.len, want, sizeof(want));
        ck_assert_str_eq(ratio_text, want);
    }
    lb_pool_destroy(pool);
}
END_TEST

START_TEST(stream_empty_body_is_an_empty_gzip_member)
{
    char  out[16];

    conf.min_length = 0;
    w.take = 7;
    ck_assert_int_eq(header_filter(), LB_OK);
    ck_assert_str_eq(field("Content-Encoding"), "gzip");
    ck_assert_uint_eq(stream_body("", 0, NULL, out, sizeof(out)), 0);
    ck_assert_uint_ge(w.len, 20);
}
END_TEST

START_TEST(stream_not_compressed_passes_through)
{
    char          body[] = "plain bytes";
    lb_chain_t    cl;

    req.msg = (lb_http_msg_t *) request_with("GET", "");
    w.take = 1 << 20;
    ck_assert_int_eq(header_filter(), LB_OK);
    ck_assert_ptr_null(field("Content-Encoding"));
    ck_assert_str_eq(field("Vary"), "Accept-Encoding");
    lb_chain_link_set(&cl, body, sizeof(body) - 1);
    while (lb_http_send_body(&req, &cl, true) == LB_AGAIN) {
        /* every third call of the writer says LB_AGAIN */
    }
    ck_assert_uint_eq(w.len, sizeof(body) - 1);
    ck_assert(memcmp(w.got, body, w.len) == 0);
}
END_TEST

START_TEST(stream_second_head_starts_over)
{
    static const char  err[] = "502 Bad Gateway\n";
    lb_chain_t         cl;

    ck_assert_int_eq(header_filter(), LB_OK);
    ck_assert_str_eq(field("Content-Encoding"), "gzip");
    /* an error replaces the response before a byte went out: plain */
    req.out.nfields = 0;
    req.out.status = 502;
    req.out.content_length = sizeof(err) - 1;
    add("Content-Type", "text/plain");
    ck_assert_int_eq(header_filter(), LB_OK);
    ck_assert_ptr_null(field("Content-Encoding"));
    w.take = 1 << 20;
    lb_chain_link_set(&cl, err, sizeof(err) - 1);
    while (lb_http_send_body(&req, &cl, true) == LB_AGAIN) {
        /* every third call of the writer says LB_AGAIN */
    }
    ck_assert_uint_eq(w.len, sizeof(err) - 1);
    ck_assert(memcmp(w.got, err, w.len) == 0);
}
END_TEST

static Suite *
http_gzip_suite(void)
{
    Suite  *s = suite_create("http_gzip");
    TCase  *tc;

    tc = tcase_create("accept_encoding");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, accept_encoding_plain_names);
    tcase_add_test(tc, accept_encoding_weights);
    tcase_add_test(tc, accept_encoding_star);
    tcase_add_test(tc, accept_encoding_fields_are_one_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("types_and_lists");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, types_ignore_parameters_and_case);
    tcase_add_test(tc, types_star_is_any_type_but_none);
    tcase_add_test(tc, list_tokens);
    suite_add_tcase(s, tc);

    tc = tcase_create("head_edits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, vary_added);
    tcase_add_test(tc, vary_merged_into_the_servers);
    tcase_add_test(tc, vary_already_there_is_kept);
    tcase_add_test(tc, vary_empty_value_is_replaced);
    tcase_add_test(tc, etag_strong_becomes_weak);
    tcase_add_test(tc, etag_weak_stays_malformed_goes);
    suite_add_tcase(s, tc);

    tc = tcase_create("decide");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, decide_yes);
    tcase_add_test(tc, decide_never);
    tcase_add_test(tc, decide_min_length_only_when_known);
    tcase_add_test(tc, decide_vary_only_for_the_request);
    tcase_add_test(tc, ratio_two_decimals_rounded);
    suite_add_tcase(s, tc);

    tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, stream_setup, teardown);
    tcase_add_test(tc, stream_inflates_back_whole_through_a_slow_writer);
    tcase_add_test(tc, stream_empty_body_is_an_empty_gzip_member);
    tcase_add_test(tc, stream_not_compressed_passes_through);
    tcase_add_test(tc, stream_second_head_starts_over);
    suite_add_tcase(s, tc);

    tc = tcase_create("conf");
    tcase_add_checked_fixture(tc, conf_setup, conf_teardown);
    tcase_add_test(tc, conf_no_group_is_off_with_the_defaults);
    tcase_add_test(tc, conf_a_group_turns_it_on);
    tcase_add_test(tc, conf_a_routes_group_replaces_the_listeners_whole);
    tcase_add_test(tc, conf_reverse_override);
    tcase_add_test(tc, conf_unknown_member);
    tcase_add_test(tc, conf_unknown_member_in_a_route);
    tcase_add_test(tc, conf_level_out_of_range);
    tcase_add_test(tc, conf_bad_types);
    tcase_add_test(tc, conf_not_a_group);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    return test_files_main(http_gzip_suite());
}
