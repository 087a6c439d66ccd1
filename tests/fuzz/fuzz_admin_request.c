/*
 * fuzz_admin_request.c: libFuzzer target for the admin API's request
 * reader (modules/core/admin/lb_admin_parse.c), which any client of an
 * admin listener reaches before its address or token is checked. Beyond
 * what the sanitizers catch: a refusal always has a status and a reason;
 * an accepted head has a method of capitals, a path that starts with "/",
 * at most LB_ADMIN_QUERY_MAX decoded parameters without control
 * characters, and a Host unless it is HTTP/1.0.
 */
#include "lb_admin.h"

#define fuzz_assert(cond)  do { if (!(cond)) { __builtin_trap(); } } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char      in[LB_ADMIN_HEAD_MAX + 1];
    lb_admin_req_t   rq;
    lb_admin_head_t  h;
    const char      *why = NULL, *end, *p;
    size_t           head_len, body, i;
    int              status;

    if (size > LB_ADMIN_HEAD_MAX || memchr(data, '\0', size)) {
        return 0;               /* the server refuses those before parsing */
    }
    memcpy(in, data, size);
    in[size] = '\0';
    end = strstr(in, "\r\n\r\n");
    if (end == NULL) {
        return 0;               /* the server waits for more */
    }
    head_len = (size_t) (end - in) + 4;
    status = lb_admin_content_length(in, head_len, &body, &why);
    fuzz_assert(status == 0 || (status == 400 && why && *why));

    memset(&rq, 0, sizeof(rq));
    why = NULL;
    status = lb_admin_parse_head(in, head_len, &rq, &h, &why);
    if (status) {
        fuzz_assert((status == 400 || status == 505) && why && *why);
        return 0;
    }
    fuzz_assert(rq.method && *rq.method);
    for (p = rq.method; *p; p++) {
        fuzz_assert(*p >= 'A' && *p <= 'Z');
    }
    fuzz_assert(rq.path && rq.path[0] == '/');
    fuzz_assert(rq.nparams <= LB_ADMIN_QUERY_MAX);
    for (i = 0; i < rq.nparams; i++) {
        for (p = rq.params[i].name; *p; p++) {
            fuzz_assert((unsigned char) *p >= 0x20 && *p != 0x7f);
        }
        for (p = rq.params[i].value; *p; p++) {
            fuzz_assert((unsigned char) *p >= 0x20 && *p != 0x7f);
        }
    }
    fuzz_assert(h.http10 || h.host != NULL);
    return 0;
}
