/*
 * fuzz_http_response.c: libFuzzer target for lb_http_parse_response_head,
 * parsed as the answer to a GET and to a HEAD: both must agree on where
 * the head ends, views stay inside it, and every error is a 502.
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
    fuzz_assert(msg.status >= 100 && msg.status <= 599);
    fuzz_assert(msg.version == 10 || msg.version == 11);
    fuzz_view(msg.reason, buf, msg.head_len);
    for (i = 0; i < msg.nheaders; i++) {
        fuzz_assert(msg.headers[i].name.len > 0);
        fuzz_view(msg.headers[i].name, buf, msg.head_len);
        fuzz_view(msg.headers[i].value, buf, msg.head_len);
    }
    fuzz_assert((msg.body == LB_HTTP_BODY_LENGTH) == (msg.content_length >= 0));
    fuzz_assert(msg.body != LB_HTTP_BODY_CLOSE || !msg.keep_alive);
    if (msg.status < 200 || msg.status == 204 || msg.status == 304) {
        fuzz_assert(msg.body == LB_HTTP_BODY_NONE);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *buf = (const char *) data;
    size_t       head_len = 0;
    int          rc, rc_head;

    rc = lb_http_parse_response_head(&msg, buf, size, &fuzz_limits, false);
    if (rc == LB_OK) {
        fuzz_check_ok(buf, size);
        head_len = msg.head_len;
        fuzz_assert(lb_http_parse_response_head(&msg, buf, head_len - 1, &fuzz_limits, false)
                    == LB_AGAIN);
    } else if (rc == LB_ERROR) {
        fuzz_assert(msg.error != NULL && msg.error_status == 502);
    } else {
        fuzz_assert(rc == LB_AGAIN && size <= fuzz_limits.max_header_size);
    }

    rc_head = lb_http_parse_response_head(&msg, buf, size, &fuzz_limits, true);
    fuzz_assert(rc_head == rc);
    if (rc == LB_OK) {
        fuzz_check_ok(buf, size);
        fuzz_assert(msg.head_len == head_len);
        fuzz_assert(msg.body == LB_HTTP_BODY_NONE);
    }
    return 0;
}
