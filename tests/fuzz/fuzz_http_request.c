/*
 * fuzz_http_request.c: libFuzzer target for lb_http_parse_request_head.
 * Beyond what the sanitizers catch it checks the contract: views inside
 * the head, limits held, statuses from the documented set, and that a
 * prefix of the input never gets a different answer than the whole.
 */
#include "fuzz.h"

static lb_http_msg_t  msg;

static void
fuzz_check_ok(const char *buf, size_t len)
{
    size_t  i;

    fuzz_assert(msg.head_len > 0 && msg.head_len <= len);
    fuzz_assert(msg.head_len <= fuzz_limits.max_header_size);
    fuzz_assert(msg.nheaders <= fuzz_limits.max_headers);
    fuzz_assert(msg.target.len > 0 && msg.target.len <= fuzz_limits.max_uri);
    fuzz_assert(msg.version == 10 || msg.version == 11);
    fuzz_view(msg.method, buf, msg.head_len);
    fuzz_view(msg.target, buf, msg.head_len);
    fuzz_view(msg.path, buf, msg.head_len);
    fuzz_view(msg.query, buf, msg.head_len);
    fuzz_view(msg.host, buf, msg.head_len);
    for (i = 0; i < msg.nheaders; i++) {
        fuzz_assert(msg.headers[i].name.len > 0);
        fuzz_view(msg.headers[i].name, buf, msg.head_len);
        fuzz_view(msg.headers[i].value, buf, msg.head_len);
    }
    fuzz_assert(msg.body == LB_HTTP_BODY_NONE || msg.body == LB_HTTP_BODY_LENGTH
                || msg.body == LB_HTTP_BODY_CHUNKED);
    fuzz_assert((msg.body == LB_HTTP_BODY_LENGTH) == (msg.content_length >= 0));
    fuzz_assert(msg.version == 11 || msg.body != LB_HTTP_BODY_CHUNKED);
    fuzz_assert(msg.version == 10 || lb_http_find_header(&msg, "host") != NULL);
    (void) lb_http_find_header(&msg, "Content-Length");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *buf = (const char *) data;
    size_t       head_len;
    int          rc, rc2;

    rc = lb_http_parse_request_head(&msg, buf, size, &fuzz_limits);

    switch (rc) {
    case LB_OK:
        fuzz_check_ok(buf, size);
        /* the head alone parses the same; one byte less is incomplete */
        head_len = msg.head_len;
        fuzz_assert(lb_http_parse_request_head(&msg, buf, head_len, &fuzz_limits) == LB_OK);
        fuzz_assert(msg.head_len == head_len);
        fuzz_assert(lb_http_parse_request_head(&msg, buf, head_len - 1, &fuzz_limits) == LB_AGAIN);
        break;

    case LB_AGAIN:
        fuzz_assert(size <= fuzz_limits.max_header_size);
        rc2 = lb_http_parse_request_head(&msg, buf, size / 2, &fuzz_limits);
        fuzz_assert(rc2 == LB_AGAIN);
        break;

    case LB_ERROR:
        fuzz_assert(msg.error != NULL);
        fuzz_assert(msg.error_status == 400 || msg.error_status == 414
                    || msg.error_status == 431 || msg.error_status == 501);
        break;

    default:
        fuzz_assert(0);
    }
    return 0;
}
