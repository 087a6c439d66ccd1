/*
 * lb_regex.h: regular expressions from the configuration (PCRE2, 8-bit),
 * compiled once at load with JIT where the platform has it, each with the
 * match data it needs made at load too, so that matching never allocates.
 * Routes, health checks and the WAF share it.
 */
#ifndef LB_REGEX_H
#define LB_REGEX_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH  8
#endif
#include <pcre2.h>

typedef struct {
    pcre2_code         *code;
    pcre2_match_data   *md;         /* one process matches one subject at a time */
    uint32_t            ngroups;    /* capture groups in the pattern */
} lb_regex_t;

/* Compiles pattern, the value of setting v, named `what` in messages
 * ("invalid regex \"(\" in \"expect_body\": missing closing parenthesis
 * at offset 1"); options are PCRE2 compile options. Freed with the
 * cycle's pool. NULL on error (reported). */
lb_regex_t *lb_regex_compile(lb_conf_t *cf, const config_setting_t *v, const char *what,
                             const char *pattern, uint32_t options);

/* Whether re matches anywhere in s[0..len) (s may be NULL when len is 0);
 * the match is left in re->md. */
static inline bool
lb_regex_search(const lb_regex_t *re, const char *s, size_t len)
{
    return pcre2_match(re->code, (PCRE2_SPTR) (s ? s : ""), len, 0, 0, re->md, NULL) >= 0;
}

#endif
