/*
 * test_http_relay.c: modules/http/core/lb_http_relay.c, a body relayed
 * with framing written by lbd: bytes as they are, chunked with lbd's own
 * chunk lines, or decoded; trailer fields filtered; any split of the
 * input and any partial send giving the same output; a body over its
 * limit or with a broken chunk refused.
 */
#include "lb_core.h"
#include "lb_http_relay.h"

#include <check.h>

static char     inbuf[65536];
static lb_buf_t in;
static char     output[65536];
static size_t   nout;
static char     trailers[4096];
static size_t   ntrail;

/* Relays raw[0..len) arriving step bytes at a time (0: at once) and sent
 * at most send_max bytes a time (0: all); the output lands in output. */
static int
relay(lb_http_relay_t *r, const char *raw, size_t len, size_t step, size_t send_max)
{
    struct iovec  iov[LB_HTTP_RELAY_IOV];
    size_t        arrived = 0, n, room, i, budget;
    int           k, rounds = 0;

    lb_buf_init(&in, inbuf, sizeof(inbuf));
    nout = 0;
    ntrail = 0;
    while (!lb_http_relay_done(r)) {
        ck_assert_int_lt(++rounds, 1000000);
        if (arrived < len && !lb_http_relay_busy(r)) {
            n = step ? lb_min(step, len - arrived) : len - arrived;
            if (lb_buf_room(&in) < n) {
                lb_buf_compact(&in);
            }
            room = lb_buf_room(&in);
            n = lb_min(n, room);
            memcpy(in.last, raw + arrived, n);
            in.last += n;
            arrived += n;
        }
        if (lb_http_relay_fill(r, &in) != LB_OK) {
            return LB_ERROR;
        }
        k = lb_http_relay_iov(r, iov, LB_HTTP_RELAY_IOV);
        if (k == 0) {
            if (arrived == len && !lb_http_relay_done(r)) {
                if (r->in == LB_HTTP_BODY_CLOSE) {
                    lb_http_relay_eof(r);
                    continue;
                }
                return LB_AGAIN;        /* incomplete input */
            }
            continue;
        }
        /* "send" up to send_max bytes of the iovecs */
        budget = send_max ? send_max : SIZE_MAX;
        n = 0;
        for (i = 0; i < (size_t) k && budget; i++) {
            size_t  take = lb_min(iov[i].iov_len, budget);

            if (lb_http_relay_is_trailer(r, i)) {
                /* trailer lines apart, each ended by '\n' once whole */
                ck_assert_uint_le(ntrail + take + 1, sizeof(trailers));
                memcpy(trailers + ntrail, iov[i].iov_base, take);
                ntrail += take;
                if (take == iov[i].iov_len) {
                    trailers[ntrail++] = '\n';
                }
                n += take;
                budget -= take;
                continue;
            }
            ck_assert_uint_le(nout + take, sizeof(output));
            memcpy(output + nout, iov[i].iov_base, take);
            nout += take;
            n += take;
            budget -= take;
        }
        lb_http_relay_sent(r, &in, n);
    }
    ck_assert_uint_eq(lb_buf_len(&in), 0);
    return LB_OK;
}

static void
expect(const char *want)
{
    ck_assert_msg(nout == strlen(want) && memcmp(output, want, nout) == 0,
                  "got \"%.*s\", want \"%s\"", (int) nout, output, want);
}

static const char  chunked_in[] =
    "5;ext=\"a\"\r\nhello\r\n"
    "1\r\n \r\n"
    "5\r\nworld\r\n"
    "0;last\r\n"
    "X-Sum: 11\r\n"
    "Content-Length: 99\r\n"
    "transfer-encoding: chunked\r\n"
    "Host: evil\r\n"
    "X-Other: a\r\n"
    "\r\n";

START_TEST(chunked_is_written_by_lbd_with_trailers_filtered)
{
    lb_http_relay_t  r;
    size_t           steps[] = { 0, 1, 2, 3, 7 }, sends[] = { 0, 1, 5 }, i, j;

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        for (j = 0; j < sizeof(sends) / sizeof(sends[0]); j++) {
            lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, -1);
            ck_assert_int_eq(relay(&r, chunked_in, sizeof(chunked_in) - 1, steps[i], sends[j]),
                             LB_OK);
            /* the pieces as they arrived, each a chunk of lbd's own */
            ck_assert_int_eq(r.data, 11);
            ck_assert(memmem(output, nout, "0\r\nX-Sum: 11\r\nX-Other: a\r\n\r\n", 28)
                      == output + nout - 28);
            ck_assert(memmem(output, nout, "ext", 3) == NULL);
            ck_assert(memmem(output, nout, "evil", 4) == NULL);
            ck_assert(memmem(output, nout, "99", 2) == NULL);
        }
    }
    lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, -1);
    ck_assert_int_eq(relay(&r, chunked_in, sizeof(chunked_in) - 1, 0, 0), LB_OK);
    expect("5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 11\r\nX-Other: a\r\n\r\n");
}
END_TEST

/* DATA: the decoded bytes, then the trailer lines allowed on as views of
 * their own, for a writer that frames them again (lb_http_h1.c). */
START_TEST(chunked_to_data_drops_framing_and_trailers)
{
    lb_http_relay_t  r;
    size_t           step;

    for (step = 0; step < 9; step++) {
        lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_DATA, -1);
        ck_assert_int_eq(relay(&r, chunked_in, sizeof(chunked_in) - 1, step, 3), LB_OK);
        expect("hello world");
        ck_assert_msg(ntrail == 21 && memcmp(trailers, "X-Sum: 11\nX-Other: a\n", 21) == 0,
                      "trailers \"%.*s\"", (int) ntrail, trailers);
    }
}
END_TEST

START_TEST(length_body_is_relayed_as_it_is_and_stops_at_its_length)
{
    lb_http_relay_t  r;
    static const char  raw[] = "0123456789GET /smuggled HTTP/1.1\r\n\r\n";

    lb_http_relay_init(&r, LB_HTTP_BODY_LENGTH, 10, LB_HTTP_OUT_AS_IS, -1);
    lb_buf_init(&in, inbuf, sizeof(inbuf));
    memcpy(in.last, raw, sizeof(raw) - 1);
    in.last += sizeof(raw) - 1;
    ck_assert_int_eq(lb_http_relay_fill(&r, &in), LB_OK);
    ck_assert(r.complete);
    {
        struct iovec  iov[4];

        ck_assert_int_eq(lb_http_relay_iov(&r, iov, 4), 1);
        ck_assert_uint_eq(iov[0].iov_len, 10);
        lb_http_relay_sent(&r, &in, 4);
        ck_assert(lb_http_relay_busy(&r));
        lb_http_relay_sent(&r, &in, 6);
    }
    ck_assert(lb_http_relay_done(&r));
    /* what follows the body stays for the next message */
    ck_assert_uint_eq(lb_buf_len(&in), sizeof(raw) - 1 - 10);
    ck_assert(memcmp(in.pos, "GET /smuggled", 13) == 0);
}
END_TEST

START_TEST(length_body_can_be_chunked_by_lbd)
{
    lb_http_relay_t  r;

    lb_http_relay_init(&r, LB_HTTP_BODY_LENGTH, 5, LB_HTTP_OUT_CHUNKED, -1);
    ck_assert_int_eq(relay(&r, "hello", 5, 2, 0), LB_OK);
    expect("2\r\nhe\r\n2\r\nll\r\n1\r\no\r\n0\r\n\r\n");
}
END_TEST

START_TEST(close_delimited_body_ends_at_eof)
{
    lb_http_relay_t  r;

    lb_http_relay_init(&r, LB_HTTP_BODY_CLOSE, -1, LB_HTTP_OUT_AS_IS, -1);
    ck_assert_int_eq(relay(&r, "all of it", 9, 4, 0), LB_OK);
    expect("all of it");
}
END_TEST

START_TEST(empty_bodies_are_complete_at_once)
{
    lb_http_relay_t  r;

    lb_http_relay_init(&r, LB_HTTP_BODY_NONE, -1, LB_HTTP_OUT_AS_IS, -1);
    ck_assert(lb_http_relay_done(&r));
    lb_http_relay_init(&r, LB_HTTP_BODY_LENGTH, 0, LB_HTTP_OUT_AS_IS, -1);
    ck_assert(lb_http_relay_done(&r));
    lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, -1);
    ck_assert_int_eq(relay(&r, "0\r\n\r\n", 5, 1, 0), LB_OK);
    expect("0\r\n\r\n");
}
END_TEST

START_TEST(chunked_over_max_is_413)
{
    lb_http_relay_t  r;

    lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, 10);
    ck_assert_int_eq(relay(&r, "a\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n", 27, 0, 0), LB_ERROR);
    ck_assert_int_eq(r.error_status, 413);
}
END_TEST

START_TEST(broken_chunked_is_400_and_nothing_after_the_bad_byte_goes_out)
{
    lb_http_relay_t  r;
    static const char  raw[] = "3\r\nabc\r\nzz\r\nGET /admin HTTP/1.1\r\n\r\n";

    lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, -1);
    ck_assert_int_eq(relay(&r, raw, sizeof(raw) - 1, 0, 0), LB_ERROR);
    ck_assert_int_eq(r.error_status, 400);
    ck_assert(memmem(output, nout, "admin", 5) == NULL);
}
END_TEST

START_TEST(trailer_line_that_cannot_fit_is_refused)
{
    lb_http_relay_t  r;
    char             small[32];

    lb_http_relay_init(&r, LB_HTTP_BODY_CHUNKED, -1, LB_HTTP_OUT_CHUNKED, -1);
    lb_buf_init(&in, small, sizeof(small));
    memcpy(in.last, "0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaa", 32);
    in.last += 32;
    /* the last chunk line goes, the partial trailer line stays ... */
    ck_assert_int_eq(lb_http_relay_fill(&r, &in), LB_OK);
    ck_assert(!r.complete);
    lb_buf_compact(&in);
    ck_assert_uint_eq(lb_buf_room(&in), 3);
    memcpy(in.last, "aaa", 3);
    in.last += 3;
    /* ... and a full buffer of one unfinished line is an error */
    ck_assert_int_eq(lb_http_relay_fill(&r, &in), LB_ERROR);
    ck_assert_int_eq(r.error_status, 400);
}
END_TEST

START_TEST(trailer_names_forbidden)
{
    ck_assert(lb_http_trailer_forbidden("Content-Length", 14));
    ck_assert(lb_http_trailer_forbidden("TRANSFER-ENCODING", 17));
    ck_assert(lb_http_trailer_forbidden("host", 4));
    ck_assert(lb_http_trailer_forbidden("Trailer", 7));
    ck_assert(lb_http_trailer_forbidden("Connection", 10));
    ck_assert(!lb_http_trailer_forbidden("X-Checksum", 10));
    ck_assert(!lb_http_trailer_forbidden("grpc-status", 11));
    ck_assert(!lb_http_trailer_forbidden("Hostx", 5));
}
END_TEST

static Suite *
http_relay_suite(void)
{
    Suite  *s = suite_create("http_relay");
    TCase  *tc = tcase_create("relay");

    tcase_add_test(tc, chunked_is_written_by_lbd_with_trailers_filtered);
    tcase_add_test(tc, chunked_to_data_drops_framing_and_trailers);
    tcase_add_test(tc, length_body_is_relayed_as_it_is_and_stops_at_its_length);
    tcase_add_test(tc, length_body_can_be_chunked_by_lbd);
    tcase_add_test(tc, close_delimited_body_ends_at_eof);
    tcase_add_test(tc, empty_bodies_are_complete_at_once);
    tcase_add_test(tc, chunked_over_max_is_413);
    tcase_add_test(tc, broken_chunked_is_400_and_nothing_after_the_bad_byte_goes_out);
    tcase_add_test(tc, trailer_line_that_cannot_fit_is_refused);
    tcase_add_test(tc, trailer_names_forbidden);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(http_relay_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
