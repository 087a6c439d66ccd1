/*
 * fuzz_waf.c: libFuzzer target for the WAF engine (lb_waf_engine.c), which
 * reads the path, the query, the cookies and headers of every request a
 * client sends. The first input byte picks the kind of field. Beyond what
 * the sanitizers catch: normalising never makes text longer, never leaves
 * an upper-case letter, and the basic rules never reach PCRE2's match
 * limits (a pattern that backtracks catastrophically would, on some input).
 */
#include "lb_core.h"
#include "lb_waf_engine.h"

static lb_waf_set_t  *fuzz_set;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static u_char         out[1 << 16];
    const lb_waf_rule_t  *hit;
    char                  err[256], what[LB_WAF_WHAT_LEN];
    unsigned              kind;
    size_t                n, i;

    if (fuzz_set == NULL) {
        fuzz_set = lb_waf_set_new(lb_waf_basic_rules, lb_waf_nbasic, NULL, 0, err,
                                  sizeof(err));
        if (fuzz_set == NULL) {
            __builtin_trap();
        }
    }
    if (size == 0 || size > sizeof(out)) {
        return 0;
    }
    kind = 1u << (data[0] & 3);
    data++;
    size--;

    if (lb_waf_normalize(data, size, kind, out, &n) == NULL) {
        if (n > size) {
            __builtin_trap();
        }
        for (i = 0; i < n; i++) {
            if (out[i] >= 'A' && out[i] <= 'Z') {
                __builtin_trap();
            }
        }
    }
    switch (kind) {
    case LB_WAF_IN_PATH:
        hit = lb_waf_check_path(fuzz_set, data, size, what);
        break;
    case LB_WAF_IN_ARGS:
        hit = lb_waf_check_query(fuzz_set, data, size, what);
        break;
    case LB_WAF_IN_COOKIES:
        hit = lb_waf_check_cookies(fuzz_set, data, size, what);
        break;
    default:
        hit = lb_waf_check_header(fuzz_set, "user-agent", data, size, what);
    }
    if (hit == &lb_waf_rule_limit || (hit && strlen(what) >= LB_WAF_WHAT_LEN)) {
        __builtin_trap();
    }
    return 0;
}
