/*
 * lb_waf_engine.h: the WAF's matching engine, apart from the HTTP module so
 * that unit tests and the fuzzer drive it directly.
 *
 * A field of the request (the path, one query argument, one cookie, a
 * header) is first normalised into a scratch buffer — percent-decoded until
 * no escape is left (double encoding), `+` read as a space in queries, NUL
 * and overlong UTF-8 refused, `\` read as `/`, `/./` and `//` collapsed in
 * paths, ASCII folded to lower case — and then matched once against a
 * combined pattern of every rule enabled for that kind of field (PCRE2 with
 * JIT; each alternative ends in a mark naming its rule), so a clean field
 * costs one scan whatever the number of rules. Match limits bound the cost
 * of a hostile field; a field that hits them counts as a hit of the rule
 * "waf-limit".
 */
#ifndef LB_WAF_ENGINE_H
#define LB_WAF_ENGINE_H

#include "lb_core.h"

/* Where a rule looks (a mask). */
#define LB_WAF_IN_PATH     0x01
#define LB_WAF_IN_ARGS     0x02     /* query argument names and values */
#define LB_WAF_IN_COOKIES  0x04     /* cookie values */
#define LB_WAF_IN_HEADERS  0x08     /* User-Agent, Referer and the like */
#define LB_WAF_IN_ALL      0x0f

typedef struct {
    const char  *id;                /* "sqli-3": what logs and `disable` name */
    unsigned     in;                /* LB_WAF_IN_* */
    const char  *needs;             /* what a field must hold to match (lb_waf_rules.c) */
    const char  *pattern;           /* PCRE2, against the normalised (lower-case) text */
    const char  *catches;           /* one line for the docs */
    const char  *false_positive;    /* one it is known to have */
} lb_waf_rule_t;

/* The "basic" rule set, and the pseudo-rules the normaliser and the limits
 * report (they cannot be disabled). */
extern const lb_waf_rule_t   lb_waf_basic_rules[];
extern const size_t          lb_waf_nbasic;
extern const lb_waf_rule_t   lb_waf_rule_nul, lb_waf_rule_overlong, lb_waf_rule_limit;

/* Normalisation: how = LB_WAF_IN_PATH, _ARGS, _COOKIES or _HEADERS. Writes
 * at most len bytes to out (never longer than the input). NULL when the
 * field is clean of encoding tricks; otherwise the rule it breaks (NUL or
 * overlong UTF-8 once decoded). */
const lb_waf_rule_t *lb_waf_normalize(const u_char *in, size_t len, unsigned how,
                                      u_char *out, size_t *outlen);

/* The longest field scanned: longer ones (only possible past the largest
 * max_header_size, 1m) are scanned by their first LB_WAF_MAX_FIELD bytes. */
#define LB_WAF_MAX_FIELD  (1 << 20)

/* Makes the process's scratch buffer (LB_WAF_MAX_FIELD bytes, kept for
 * the process's life) if it is not there yet; lb_waf_set_new calls it.
 * LB_OK or LB_ERROR (no memory). */
int           lb_waf_engine_init(void);
/* lb_waf_normalize into that buffer: the normalised text, valid
 * until the next call; *bad as lb_waf_normalize returns. */
const u_char *lb_waf_normalized(const u_char *in, size_t len, unsigned how, size_t *outlen,
                                const lb_waf_rule_t **bad);

/* A rule set compiled for matching: the rules of `rules` whose id is not
 * in disable[0..ndisable). NULL with a message in err on failure. Made at
 * load, used by one process at a time (the scratch buffer and the match
 * data are shared by every scan). */
typedef struct lb_waf_set_s  lb_waf_set_t;

lb_waf_set_t *lb_waf_set_new(const lb_waf_rule_t *rules, size_t nrules,
                             const char *const *disable, size_t ndisable,
                             char *err, size_t errlen);
void          lb_waf_set_free(lb_waf_set_t *set);
/* Whether id names a rule of rules[0..nrules). */
bool          lb_waf_rule_known(const lb_waf_rule_t *rules, size_t nrules, const char *id);

/* The checks: each returns the first rule the field breaks, or NULL.
 * `what` gets a short name of the field that hit ("path", "arg q",
 * "cookie sid", "header user-agent"), at most LB_WAF_WHAT_LEN bytes. */
#define LB_WAF_WHAT_LEN  48

const lb_waf_rule_t *lb_waf_check_path(lb_waf_set_t *set, const u_char *p, size_t len,
                                       char *what);
/* The query string without its '?': each name=value pair, split on '&',
 * name and value apart. */
const lb_waf_rule_t *lb_waf_check_query(lb_waf_set_t *set, const u_char *q, size_t len,
                                        char *what);
/* A Cookie header's value: each cookie's value, split on ';'. */
const lb_waf_rule_t *lb_waf_check_cookies(lb_waf_set_t *set, const u_char *v, size_t len,
                                          char *what);
/* Another header's value; name (lower case) only names the field. */
const lb_waf_rule_t *lb_waf_check_header(lb_waf_set_t *set, const char *name,
                                         const u_char *v, size_t len, char *what);

#endif
