/*
 * test_http_request.c: the request object and the output path with no
 * socket (issue 12): a request driven through find_route, access, its
 * route's action, a header filter and a body filter into an in-memory
 * frontend whose writer is the real HTTP/1 writer over an io that takes
 * a few bytes at a time; the writer's framing choices; the chain type.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_http_route.h"

#include <check.h>
#include <ctype.h>

/* An io that stores what is sent, at most `slice` bytes per call, and
 * says LB_AGAIN on every other call (a slow client). */
static char    wire[65536];
static size_t  nwire;
static size_t  slice;
static bool    again_next;
static int     fail_after = -1;

static ssize_t
mem_sendv(lb_conn_t *c, const struct iovec *iov, int n)
{
    size_t  total = 0, take;
    int     i;

    if (fail_after == 0) {
        errno = EPIPE;
        return LB_ERROR;
    }
    if (fail_after > 0) {
        fail_after--;
    }
    if (again_next) {
        again_next = false;
        c->write.ready = 0;
        return LB_AGAIN;
    }
    for (i = 0; i < n && total < slice; i++) {
        take = lb_min(iov[i].iov_len, slice - total);
        ck_assert_uint_le(nwire + take, sizeof(wire));
        memcpy(wire + nwire, iov[i].iov_base, take);
        nwire += take;
        total += take;
    }
    again_next = true;
    return (ssize_t) total;
}

static const lb_io_t  mem_io = { NULL, NULL, mem_sendv, NULL, false, NULL };

/* The in-memory frontend: the HTTP/1 writer, and a record of how the
 * request ended. */
static lb_conn_t            conn;
static lb_listener_t        listener;
static lb_http_core_conf_t  core;
static lb_http_msg_t        msg;
static lb_http_peer_t       peer;
static lb_http_request_t    req;
static void                *ctxs[64];
static lb_http_h1_t         w;
static char                 head[8192];
static int                  finalized, aborted;
static char                 uri[256];

static int
mem_header(lb_http_request_t *r)
{
    w.c = &conn;
    w.head = head;
    w.head_size = sizeof(head);
    return lb_http_h1_header(&w, r);
}

static int
mem_body(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    int  rc = lb_http_h1_body(&w, in, last);

    r->bytes_sent = w.sent;
    return rc;
}

static bool
mem_started(lb_http_request_t *r)
{
    return w.sent > 0;
}

static int
mem_finalize(lb_http_request_t *r)
{
    finalized++;
    r->content_run = NULL;
    return LB_OK;
}

static void
mem_abort(lb_http_request_t *r)
{
    aborted++;
    r->content_run = NULL;
}

static const lb_http_writer_t  mem_writer = {
    mem_header, mem_body, mem_started, mem_finalize, mem_abort, NULL, NULL, NULL
};

/* The phases of the test: a route for every request, an access handler
 * that counts, a header filter that adds a field and a body filter that
 * upper-cases the body one link at a time. */
static lb_http_route_t   route;
static void             *route_confs[64];
static int               accessed;

static int
find_route(lb_http_request_t *r)
{
    r->route = &route;
    return LB_OK;
}

static int
access_count(lb_http_request_t *r)
{
    accessed++;
    return LB_DECLINED;
}

static int
add_field(lb_http_request_t *r)
{
    return lb_http_out_add(r, "X-Test", 6, "1", 1);
}

static char  upper[64];

static int
upper_filter(lb_http_request_t *r, lb_chain_t *in, bool last)
{
    lb_chain_t   out;
    size_t       n, i;
    int          rc;

    /* one link at a time, from a buffer of its own: what the next filter
     * did not take is sent again on the next call (a real filter keeps
     * it; this one makes it again from in, which it consumes only as the
     * output goes) */
    in = lb_chain_first(in);
    if (in == NULL) {
        return lb_http_next_body_filter(r, NULL, last);
    }
    n = lb_min(lb_chain_link_len(in), sizeof(upper));
    for (i = 0; i < n; i++) {
        upper[i] = (char) toupper((unsigned char) in->pos[i]);
    }
    lb_chain_link_set(&out, upper, n);
    rc = lb_http_next_body_filter(r, &out, last && n == lb_chain_len(in));
    in->pos += (size_t) (out.pos - upper);
    return rc;
}

static const char  hello[] = "hello, world";

static int
action(lb_http_request_t *r)
{
    lb_http_out_start(r, 200);
    return lb_http_send_response(r, 200, "text/plain", hello, sizeof(hello) - 1) == LB_OK
           ? LB_OK : 500;
}

static lb_http_phase_pt          t_find[] = { find_route };
static lb_http_phase_pt          t_access[] = { access_count };
static lb_http_header_filter_pt  t_header[] = { add_field };
static lb_http_body_filter_pt    t_body[] = { upper_filter };

static void
new_request(const char *head_text, size_t s)
{
    static const lb_http_limits_t  limits = { 8192, 64, 1024 };

    ck_assert_int_eq(lb_http_parse_request_head(&msg, head_text, strlen(head_text), &limits),
                     LB_OK);
    ck_assert_int_eq(lb_http_parse_uri(&msg, uri, sizeof(uri), 0), LB_OK);
    memset(&conn, 0, sizeof(conn));
    conn.io = &mem_io;
    conn.write.ready = 1;
    snprintf(conn.peer_text, sizeof(conn.peer_text), "test");
    memset(&listener, 0, sizeof(listener));
    listener.name = "mem";
    memset(&core, 0, sizeof(core));
    core.listener = &listener;
    memset(&req, 0, sizeof(req));
    req.c = &conn;
    req.conf = &core;
    req.writer = &mem_writer;
    req.peer = &peer;
    req.msg = &msg;
    req.ctx = ctxs;
    lb_http_request_init(&req);
    req.keep_alive = msg.keep_alive;
    memset(&w, 0, sizeof(w));
    nwire = 0;
    slice = s;
    again_next = false;
    fail_after = -1;
    finalized = aborted = accessed = 0;
}

static void
setup(void)
{
    lb_http_phases_t  *p = &lb_http_phases;

    memset(p, 0, sizeof(*p));
    p->find_route = t_find;
    p->nfind = 1;
    p->access = t_access;
    p->naccess = 1;
    p->header_filters = t_header;
    p->nheader = 1;
    p->body_filters = t_body;
    p->nbody = 1;
    memset(&route, 0, sizeof(route));
    route.index = 1;
    route.confs = route_confs;
    route.handler = action;
    lb_time_update();
}

/* Runs the request's content as a frontend would on write events. */
static void
drive(void)
{
    int  rounds = 0;

    while (req.content_run) {
        ck_assert_int_lt(++rounds, 10000);
        conn.write.ready = 1;
        req.content_run(&req);
    }
}

/* The head as sent, with the Date and request id values blanked. */
static const char *
wire_text(void)
{
    static char  t[sizeof(wire) + 1];
    char        *p;

    memcpy(t, wire, nwire);
    t[nwire] = '\0';
    if ((p = strstr(t, "Date: ")) != NULL) {
        memset(p + 6, 'D', 29);
    }
    if ((p = strstr(t, "X-Request-ID: ")) != NULL) {
        memset(p + 14, 'I', 32);
    }
    return t;
}

START_TEST(request_runs_through_phases_filters_and_writer_without_a_socket)
{
    size_t  s;

    for (s = 1; s < 80; s += 13) {
        new_request("GET /x HTTP/1.1\r\nHost: a\r\n\r\n", s);
        ck_assert_int_eq(lb_http_request_run(&req), LB_OK);
        ck_assert_ptr_eq(req.route, &route);
        ck_assert_int_eq(accessed, 1);
        drive();
        ck_assert_int_eq(finalized, 1);
        ck_assert_int_eq(aborted, 0);
        ck_assert_str_eq(wire_text(),
                         "HTTP/1.1 200 OK\r\nServer: lbd\r\n"
                         "Date: DDDDDDDDDDDDDDDDDDDDDDDDDDDDD\r\n"
                         "Content-Type: text/plain\r\nContent-Length: 12\r\n"
                         "X-Request-ID: IIIIIIIIIIIIIIIIIIIIIIIIIIIIIIII\r\n"
                         "X-Test: 1\r\n\r\nHELLO, WORLD");
        ck_assert_int_eq(req.status, 200);
        ck_assert_uint_eq(req.bytes_sent, nwire);
    }
}
END_TEST

START_TEST(no_route_is_404_through_the_same_path)
{
    lb_http_phases.nfind = 0;
    new_request("GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 4096);
    ck_assert_int_eq(lb_http_request_run(&req), LB_OK);
    drive();
    ck_assert_ptr_null(req.route);
    ck_assert_int_eq(req.status, 404);
    ck_assert_ptr_nonnull(strstr(wire_text(), "\r\nX-Test: 1\r\n\r\n404 NOT FOUND\n"));
}
END_TEST

START_TEST(a_send_failure_mid_response_aborts_the_request)
{
    new_request("GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 10);
    fail_after = 1;
    ck_assert_int_eq(lb_http_request_run(&req), LB_OK);
    drive();
    ck_assert_int_eq(aborted, 1);
    ck_assert_int_eq(finalized, 0);
    ck_assert_uint_eq(nwire, 10);
}
END_TEST

/* The writer alone: r->out as a producer sets it, a body in links. */
static void
write_response(int status, int64_t length, const char *const *links, size_t nlinks,
               bool trailer_last)
{
    lb_chain_t  cl[8], *in;
    size_t      i;
    int         rc, rounds = 0;

    lb_http_phases.nheader = lb_http_phases.nbody = 0;
    req.out.status = status;
    req.out.content_length = length;
    ck_assert_int_eq(mem_header(&req), LB_OK);
    for (i = 0; i < nlinks; i++) {
        lb_chain_link_set(&cl[i], links[i], strlen(links[i]));
        cl[i].trailer = trailer_last && i == nlinks - 1;
    }
    in = lb_chain_link_array(cl, nlinks);
    do {
        ck_assert_int_lt(++rounds, 10000);
        rc = mem_body(&req, in, true);
        ck_assert_int_ne(rc, LB_ERROR);
    } while (rc == LB_AGAIN);
    ck_assert(w.done);
    ck_assert_uint_eq(lb_chain_len(in), 0);
}

START_TEST(writer_frames_a_known_length)
{
    static const char *const  body[] = { "ab", "cde" };

    new_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 3);
    write_response(200, 5, body, 2, false);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde");
}
END_TEST

START_TEST(writer_chunks_an_unknown_length_for_http11_one_chunk_per_link)
{
    static const char *const  body[] = { "abc", "defgh", "X-Sum: 8" };
    size_t                    s;

    for (s = 1; s < 40; s += 3) {
        new_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", s);
        write_response(200, -1, body, 3, true);
        ck_assert_str_eq(wire_text(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "3\r\nabc\r\n5\r\ndefgh\r\n0\r\nX-Sum: 8\r\n\r\n");
    }
}
END_TEST

START_TEST(writer_closes_an_unknown_length_for_http10)
{
    static const char *const  body[] = { "abc", "X-Sum: 3" };

    new_request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 7);
    req.http10 = 1;
    ck_assert(req.keep_alive);
    write_response(200, -1, body, 2, true);
    ck_assert(!req.keep_alive);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc");
}
END_TEST

START_TEST(writer_keeps_an_http10_connection_with_a_length)
{
    new_request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 100);
    req.http10 = 1;
    write_response(200, 0, NULL, 0, false);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                  "Connection: keep-alive\r\n\r\n");
}
END_TEST

START_TEST(writer_sends_no_body_for_head_204_304)
{
    static const char *const  body[] = { "never" };

    new_request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 100);
    req.head_method = 1;
    write_response(200, 5, body, 1, false);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");

    new_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 100);
    write_response(204, -1, NULL, 0, false);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 204 No Content\r\n\r\n");

    new_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 100);
    write_response(304, 7, NULL, 0, false);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
}
END_TEST

START_TEST(writer_refuses_a_body_that_breaks_its_length)
{
    lb_chain_t  cl;

    new_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 100);
    req.out.status = 200;
    req.out.content_length = 2;
    ck_assert_int_eq(mem_header(&req), LB_OK);
    lb_chain_link_set(&cl, "abc", 3);
    ck_assert_int_eq(lb_http_h1_body(&w, &cl, false), LB_ERROR);

    new_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 100);
    req.out.status = 200;
    req.out.content_length = 4;
    ck_assert_int_eq(mem_header(&req), LB_OK);
    lb_chain_link_set(&cl, "abc", 3);
    while (lb_http_h1_body(&w, &cl, false) == LB_AGAIN) {
        /* the slow io */
    }
    ck_assert_int_eq(lb_http_h1_body(&w, NULL, true), LB_ERROR);
}
END_TEST

START_TEST(writer_says_close_when_the_request_does_not_keep_alive)
{
    new_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 100);
    write_response(200, 0, NULL, 0, false);
    ck_assert_str_eq(wire_text(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n");
}
END_TEST

START_TEST(chain_counts_takes_and_links)
{
    lb_chain_t  cl[3], *c;

    lb_chain_link_set(&cl[0], "ab", 2);
    lb_chain_link_set(&cl[1], "", 0);
    lb_chain_link_set(&cl[2], "cdef", 4);
    c = lb_chain_link_array(cl, 3);
    ck_assert_ptr_eq(c, &cl[0]);
    ck_assert_ptr_eq(cl[1].next, &cl[2]);
    ck_assert_ptr_null(cl[2].next);
    ck_assert_uint_eq(lb_chain_len(c), 6);
    ck_assert_ptr_eq(lb_chain_first(c), &cl[0]);
    cl[0].pos += 2;                     /* a consumer took "ab" */
    cl[2].pos += 1;
    ck_assert_ptr_eq(lb_chain_first(c), &cl[2]);
    ck_assert_uint_eq(lb_chain_len(c), 3);
    cl[2].pos = cl[2].last;
    ck_assert_ptr_null(lb_chain_first(c));
    ck_assert_ptr_null(lb_chain_link_array(cl, 0));
}
END_TEST

static Suite *
suite(void)
{
    Suite  *s = suite_create("http_request");
    TCase  *tc = tcase_create("request");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, request_runs_through_phases_filters_and_writer_without_a_socket);
    tcase_add_test(tc, no_route_is_404_through_the_same_path);
    tcase_add_test(tc, a_send_failure_mid_response_aborts_the_request);
    tcase_add_test(tc, writer_frames_a_known_length);
    tcase_add_test(tc, writer_chunks_an_unknown_length_for_http11_one_chunk_per_link);
    tcase_add_test(tc, writer_closes_an_unknown_length_for_http10);
    tcase_add_test(tc, writer_keeps_an_http10_connection_with_a_length);
    tcase_add_test(tc, writer_sends_no_body_for_head_204_304);
    tcase_add_test(tc, writer_refuses_a_body_that_breaks_its_length);
    tcase_add_test(tc, writer_says_close_when_the_request_does_not_keep_alive);
    tcase_add_test(tc, chain_counts_takes_and_links);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
