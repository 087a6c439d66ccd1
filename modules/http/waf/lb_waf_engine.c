/*
 * lb_waf_engine.c: normalisation and the combined scan (lb_waf_engine.h).
 */
#include "lb_waf_engine.h"
#include "lb_parse.h"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH  8
#endif
#include <pcre2.h>

#define LB_WAF_KINDS         4          /* path, args, cookies, headers */
#define LB_WAF_DECODE_PASSES 3          /* %2525 is three layers deep */
/* A clean field of a few kilobytes needs a few thousand steps; these let a
 * hostile one cost a few milliseconds at most before it counts as a hit. */
#define LB_WAF_MATCH_LIMIT   200000
#define LB_WAF_DEPTH_LIMIT   10000

struct lb_waf_set_s {
    pcre2_code            *code[LB_WAF_KINDS];     /* NULL: no rule looks there */
    const lb_waf_rule_t  **rule;                    /* mark number -> rule */
    pcre2_match_data      *md;
    pcre2_match_context   *mctx;
    pcre2_jit_stack       *jit_stack;
};

/* Where fields are normalised: one per process, as big as the longest
 * field (normalising never makes text longer). Kept for the process's life. */
static u_char  *lb_waf_scratch;

/* Normalisation -------------------------------------------------------------- */

/* One pass of percent-decoding in place; whether it decoded anything. */
static bool
lb_waf_decode(u_char *p, size_t *len)
{
    size_t  i, o = 0, n = *len;
    bool    any = false;
    int     hi, lo;

    for (i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n
            && (hi = lb_hex_digit((char) p[i + 1])) >= 0
            && (lo = lb_hex_digit((char) p[i + 2])) >= 0)
        {
            p[o++] = (u_char) (hi << 4 | lo);
            i += 2;
            any = true;
        } else {
            p[o++] = p[i];
        }
    }
    *len = o;
    return any;
}

const lb_waf_rule_t *
lb_waf_normalize(const u_char *in, size_t len, unsigned how, u_char *out, size_t *outlen)
{
    size_t  i, o, n = len;
    int     pass;

    for (i = 0; i < len; i++) {
        out[i] = (how & LB_WAF_IN_ARGS) && in[i] == '+' ? ' ' : in[i];
    }
    for (pass = 0; pass < LB_WAF_DECODE_PASSES && memchr(out, '%', n); pass++) {
        if (!lb_waf_decode(out, &n)) {
            break;
        }
    }

    for (i = 0; i < n; i++) {
        if (out[i] == '\0') {
            *outlen = 0;
            return &lb_waf_rule_nul;
        }
        /* overlong forms: C0/C1 lead bytes, E0 80-9F, F0 80-8F */
        if (out[i] == 0xc0 || out[i] == 0xc1
            || (i + 1 < n && out[i] == 0xe0 && out[i + 1] >= 0x80 && out[i + 1] <= 0x9f)
            || (i + 1 < n && out[i] == 0xf0 && out[i + 1] >= 0x80 && out[i + 1] <= 0x8f))
        {
            *outlen = 0;
            return &lb_waf_rule_overlong;
        }
        if (out[i] >= 'A' && out[i] <= 'Z') {
            out[i] |= 0x20;
        }
    }

    if (how & LB_WAF_IN_PATH) {
        /* `\` read as `/`; `//` and `/./` collapsed; a leading "./" dropped */
        for (i = 0, o = 0; i < n; i++) {
            u_char  c = out[i] == '\\' ? '/' : out[i];

            if (c == '/' && o > 0 && out[o - 1] == '/') {
                continue;
            }
            if (c == '.' && (o == 0 || out[o - 1] == '/')
                && (i + 1 == n || out[i + 1] == '/' || out[i + 1] == '\\'))
            {
                i++;                /* the "." and the slash after it */
                continue;
            }
            out[o++] = c;
        }
        n = o;
    }
    *outlen = n;
    return NULL;
}

/* Rule sets ----------------------------------------------------------------- */

bool
lb_waf_rule_known(const lb_waf_rule_t *rules, size_t nrules, const char *id)
{
    size_t  i;

    for (i = 0; i < nrules; i++) {
        if (strcmp(rules[i].id, id) == 0) {
            return true;
        }
    }
    return false;
}

static bool
lb_waf_disabled(const char *id, const char *const *disable, size_t ndisable)
{
    size_t  i;

    for (i = 0; i < ndisable; i++) {
        if (strcmp(disable[i], id) == 0) {
            return true;
        }
    }
    return false;
}

/* One pattern for one kind of field: (?:rule)(*MARK:n)|... in rule order,
 * so the mark of a match names the first rule that matched there. */
static pcre2_code *
lb_waf_compile_kind(lb_waf_set_t *set, const lb_waf_rule_t *rules, size_t nrules,
                    const char *const *disable, size_t ndisable, unsigned kind,
                    char *err, size_t errlen)
{
    PCRE2_UCHAR   msg[256];
    PCRE2_SIZE    offset;
    pcre2_code   *code;
    size_t        i, size = 1, used = 0;
    char         *pattern;
    int           errcode, k;

    for (i = 0; i < nrules; i++) {
        size += strlen(rules[i].pattern) + 32;
    }
    pattern = malloc(size);
    if (pattern == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pattern[0] = '\0';
    for (i = 0; i < nrules; i++) {
        if (!(rules[i].in & kind) || lb_waf_disabled(rules[i].id, disable, ndisable)) {
            continue;
        }
        k = snprintf(pattern + used, size - used, "%s(?:%s)(*MARK:%zu)",
                     used ? "|" : "", rules[i].pattern, i);
        used += (size_t) k;
        set->rule[i] = &rules[i];
    }
    if (used == 0) {
        free(pattern);
        return NULL;
    }
    code = pcre2_compile((PCRE2_SPTR) pattern, used, 0, &errcode, &offset, NULL);
    free(pattern);
    if (code == NULL) {
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        snprintf(err, errlen, "a WAF rule does not compile: %s at offset %zu",
                 (const char *) msg, (size_t) offset);
        return NULL;
    }
    /* without JIT (a platform without it) the interpreter runs the same
     * pattern under the same limits */
    (void) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    return code;
}

const u_char *
lb_waf_normalized(const u_char *in, size_t len, unsigned how, size_t *outlen,
                  const lb_waf_rule_t **bad)
{
    if (len > LB_WAF_MAX_FIELD) {
        len = LB_WAF_MAX_FIELD;
    }
    *bad = lb_waf_normalize(in, len, how, lb_waf_scratch, outlen);
    return lb_waf_scratch;
}

lb_waf_set_t *
lb_waf_set_new(const lb_waf_rule_t *rules, size_t nrules, const char *const *disable,
               size_t ndisable, char *err, size_t errlen)
{
    static const unsigned  kinds[LB_WAF_KINDS] = {
        LB_WAF_IN_PATH, LB_WAF_IN_ARGS, LB_WAF_IN_COOKIES, LB_WAF_IN_HEADERS
    };
    lb_waf_set_t          *set;
    int                    k;

    if (lb_waf_scratch == NULL) {
        lb_waf_scratch = malloc(LB_WAF_MAX_FIELD);
    }
    set = calloc(1, sizeof(lb_waf_set_t));
    if (set == NULL || lb_waf_scratch == NULL
        || (set->rule = calloc(nrules ? nrules : 1, sizeof(lb_waf_rule_t *))) == NULL
        || (set->md = pcre2_match_data_create(1, NULL)) == NULL
        || (set->mctx = pcre2_match_context_create(NULL)) == NULL
        || (set->jit_stack = pcre2_jit_stack_create(32 * 1024, 512 * 1024, NULL)) == NULL)
    {
        snprintf(err, errlen, "out of memory");
        lb_waf_set_free(set);
        return NULL;
    }
    pcre2_set_match_limit(set->mctx, LB_WAF_MATCH_LIMIT);
    pcre2_set_depth_limit(set->mctx, LB_WAF_DEPTH_LIMIT);
    pcre2_jit_stack_assign(set->mctx, NULL, set->jit_stack);
    for (k = 0; k < LB_WAF_KINDS; k++) {
        err[0] = '\0';
        set->code[k] = lb_waf_compile_kind(set, rules, nrules, disable, ndisable, kinds[k],
                                           err, errlen);
        if (set->code[k] == NULL && err[0]) {
            lb_waf_set_free(set);
            return NULL;
        }
    }
    return set;
}

void
lb_waf_set_free(lb_waf_set_t *set)
{
    int  k;

    if (set == NULL) {
        return;
    }
    for (k = 0; k < LB_WAF_KINDS; k++) {
        pcre2_code_free(set->code[k]);
    }
    pcre2_match_data_free(set->md);
    pcre2_match_context_free(set->mctx);
    pcre2_jit_stack_free(set->jit_stack);
    free(set->rule);
    free(set);
}

/* Scanning ----------------------------------------------------------------- */

static int
lb_waf_kind_index(unsigned kind)
{
    switch (kind) {
    case LB_WAF_IN_PATH:    return 0;
    case LB_WAF_IN_ARGS:    return 1;
    case LB_WAF_IN_COOKIES: return 2;
    default:                return 3;
    }
}

static const lb_waf_rule_t *
lb_waf_scan(lb_waf_set_t *set, unsigned kind, const u_char *s, size_t len)
{
    const lb_waf_rule_t  *bad;
    pcre2_code           *code = set->code[lb_waf_kind_index(kind)];
    PCRE2_SPTR            mark;
    const u_char         *text;
    size_t                n, i = 0;
    int                   rc;

    text = lb_waf_normalized(s, len, kind, &n, &bad);
    if (bad || code == NULL) {
        return bad;
    }
    rc = pcre2_match(code, text, n, 0, 0, set->md, set->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) {
        return NULL;
    }
    if (rc < 0) {
        return &lb_waf_rule_limit;      /* match or depth limit, JIT stack */
    }
    mark = pcre2_get_mark(set->md);
    if (mark == NULL) {
        return &lb_waf_rule_limit;      /* cannot happen: every branch marks */
    }
    for (; *mark >= '0' && *mark <= '9'; mark++) {
        i = i * 10 + (size_t) (*mark - '0');
    }
    return set->rule[i] ? set->rule[i] : &lb_waf_rule_limit;
}

static void
lb_waf_what(char *what, const char *kind, const u_char *name, size_t len)
{
    size_t  i, o;

    o = (size_t) snprintf(what, LB_WAF_WHAT_LEN, "%s", kind);
    if (name == NULL || o + 2 >= LB_WAF_WHAT_LEN) {
        return;
    }
    what[o++] = ' ';
    for (i = 0; i < len && o + 1 < LB_WAF_WHAT_LEN; i++) {
        /* a name comes from the client: printable ASCII only in logs */
        what[o++] = name[i] > 0x20 && name[i] < 0x7f && name[i] != '"' && name[i] != '\\'
                    ? (char) name[i] : '?';
    }
    what[o] = '\0';
}

const lb_waf_rule_t *
lb_waf_check_path(lb_waf_set_t *set, const u_char *p, size_t len, char *what)
{
    lb_waf_what(what, "path", NULL, 0);
    return lb_waf_scan(set, LB_WAF_IN_PATH, p, len);
}

/* name=value pairs separated by any of seps; values scanned as kind (and
 * names too, for query arguments) */
static const lb_waf_rule_t *
lb_waf_check_pairs(lb_waf_set_t *set, unsigned kind, const char *label, const char *seps,
                   const u_char *s, size_t len, char *what)
{
    const lb_waf_rule_t  *bad;
    const u_char         *p = s, *end = s + len, *pair_end, *eq, *name;
    size_t                name_len;

    while (p < end) {
        pair_end = p;
        while (pair_end < end && strchr(seps, *pair_end) == NULL) {
            pair_end++;
        }
        while (p < pair_end && *p == ' ') {
            p++;
        }
        eq = memchr(p, '=', (size_t) (pair_end - p));
        name = p;
        name_len = (size_t) ((eq ? eq : pair_end) - p);
        if ((kind & LB_WAF_IN_ARGS) && name_len
            && (bad = lb_waf_scan(set, kind, name, name_len)) != NULL)
        {
            lb_waf_what(what, label, name, name_len);
            return bad;
        }
        if (eq && (bad = lb_waf_scan(set, kind, eq + 1, (size_t) (pair_end - eq - 1))) != NULL)
        {
            lb_waf_what(what, label, name, name_len);
            return bad;
        }
        p = pair_end + 1;
    }
    return NULL;
}

const lb_waf_rule_t *
lb_waf_check_query(lb_waf_set_t *set, const u_char *q, size_t len, char *what)
{
    /* '&' only: a ';' inside a value is data (and a shell separator that
     * cmd-1 must see), as for browsers and most frameworks */
    return lb_waf_check_pairs(set, LB_WAF_IN_ARGS, "arg", "&", q, len, what);
}

const lb_waf_rule_t *
lb_waf_check_cookies(lb_waf_set_t *set, const u_char *v, size_t len, char *what)
{
    return lb_waf_check_pairs(set, LB_WAF_IN_COOKIES, "cookie", ";", v, len, what);
}

const lb_waf_rule_t *
lb_waf_check_header(lb_waf_set_t *set, const char *name, const u_char *v, size_t len,
                    char *what)
{
    lb_waf_what(what, "header", (const u_char *) name, strlen(name));
    return lb_waf_scan(set, LB_WAF_IN_HEADERS, v, len);
}
