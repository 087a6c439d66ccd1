/*
 * lb_regex.c: compiling the configuration's regular expressions
 * (lb_regex.h).
 */
#include "lb_core.h"
#include "lb_regex.h"

static void
lb_regex_free(void *data)
{
    lb_regex_t  *re = data;

    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
}

lb_regex_t *
lb_regex_compile(lb_conf_t *cf, const config_setting_t *v, const char *what,
                 const char *pattern, uint32_t options)
{
    lb_regex_t   *re;
    PCRE2_UCHAR   msg[256];
    PCRE2_SIZE    offset;
    int           errcode;

    re = lb_pcalloc(cf->pool, sizeof(lb_regex_t));
    if (re == NULL) {
        lb_conf_error(cf, v, "out of memory");
        return NULL;
    }
    re->code = pcre2_compile((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED, options,
                             &errcode, &offset, NULL);
    if (re->code == NULL) {
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        lb_conf_error(cf, v, "invalid regex \"%s\" in \"%s\": %s at offset %zu",
                      pattern, what, (const char *) msg, (size_t) offset);
        return NULL;
    }
    re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (re->md == NULL || lb_pool_cleanup_add(cf->pool, lb_regex_free, re) != LB_OK) {
        lb_regex_free(re);
        lb_conf_error(cf, v, "out of memory");
        return NULL;
    }
    /* without JIT (some platforms), pcre2_match interprets: slower, same answers */
    (void) pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &re->ngroups);
    return re;
}
