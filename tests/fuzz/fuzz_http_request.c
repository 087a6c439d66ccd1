/*
 * fuzz_http_request.c: libFuzzer target for lb_http_parse_request_head.
 * Beyond what the sanitizers catch it checks the contract: views inside
 * the head, limits held, statuses from the documented set, and that a
 * prefix of the input never gets a different answer than the whole.
 */
#include "fuzz.h"

static lb_http_msg_t  msg;
static char           uri[65536];

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
    fuzz_assert(msg.version == 10 || msg.host.len > 0);
    fuzz_assert(lb_http_valid_method(msg.method.data, msg.method.len));
    (void) lb_http_find_header(&msg, "Content-Length");
}

/* The normal path: no longer than the path (or "/"), starts with '/', no
 * dot segment, no "//" when merged, and normalising it again changes
 * nothing; a refusal is a 400 with a reason. */
static void
fuzz_check_uri(unsigned flags)
{
    lb_http_msg_t  again;
    size_t         i;
    int            rc;

    rc = lb_http_parse_uri(&msg, uri, msg.path.len, flags);
    if (rc != LB_OK) {
        fuzz_assert(rc == LB_ERROR && msg.error_status == 400 && msg.error != NULL);
        return;
    }
    if (msg.uri.len == 0) {
        fuzz_assert(msg.path.len == 0);
        return;
    }
    fuzz_assert(msg.uri.data[0] == '/');
    fuzz_assert(msg.uri.len <= lb_max(msg.path.len, (size_t) 1));
    for (i = 0; i + 1 < msg.uri.len; i++) {
        fuzz_assert(msg.uri.data[i] != '/' || msg.uri.data[i + 1] != '/'
                    || !(flags & LB_HTTP_URI_MERGE_SLASHES));
    }
    again = msg;
    again.path = msg.uri;
    fuzz_assert(lb_http_parse_uri(&again, uri + msg.path.len, sizeof(uri) - msg.path.len, flags)
                == LB_OK);
    fuzz_assert(again.uri.len == msg.uri.len
                && memcmp(again.uri.data, msg.uri.data, msg.uri.len) == 0);
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
        fuzz_check_uri(0);
        fuzz_check_uri(LB_HTTP_URI_MERGE_SLASHES);
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
