/*
 * lb_waf_engine.c: normalisation and the combined scan (lb_waf_engine.h).
 */
#include "lb_waf_engine.h"
#include "lb_parse.h"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH  8
#endif
#include <pcre2.h>

#define LB_WAF_DECODE_PASSES 3          /* %2525 is three layers deep */
#define LB_WAF_MAX_RULES     64         /* rules of one set: bits of a uint64_t */
#define LB_WAF_MAX_WORDS     64
/* A clean field of a few kilobytes needs a few thousand steps; these let a
 * hostile one cost a few milliseconds at most before it counts as a hit. */
#define LB_WAF_MATCH_LIMIT   200000
#define LB_WAF_DEPTH_LIMIT   10000

typedef uint64_t  lb_waf_mask_t;        /* one bit per rule of a set */

typedef struct {
    const char     *word;
    size_t          len;
    lb_waf_mask_t   rules;
} lb_waf_word_t;

/* A set keeps each enabled rule compiled apart (so PCRE2's own start-of-
 * match optimisations work), and, from the rules' `needs`, which rules a
 * byte, a pair of bytes or a word can wake. A field is matched only
 * against the rules it woke: most clean fields wake none. */
struct lb_waf_set_s {
    const lb_waf_rule_t  *rule[LB_WAF_MAX_RULES];
    pcre2_code           *code[LB_WAF_MAX_RULES];
    bool                  jit[LB_WAF_MAX_RULES];    /* JIT-compiled: the fast entry */
    size_t                nrules;
    lb_waf_mask_t         by_byte[256];
    lb_waf_mask_t         by_dotdot, by_dashdash, by_slashdot;
    lb_waf_mask_t         in[4];            /* rules that look in each kind of field */
    lb_waf_word_t         words[LB_WAF_MAX_WORDS];
    size_t                nwords;
    uint64_t              word_starts[4];   /* bit c: a word starts with byte c (< 256) */
    pcre2_match_data     *md;
    pcre2_match_context  *mctx;
    pcre2_jit_stack      *jit_stack;
};

/* Where fields are normalised: one per process, as big as the longest
 * field (normalising never makes text longer). Kept for the process's life. */
static u_char  *lb_waf_scratch;

/* Bytes of a word, as PCRE2's \w reads them without Unicode: [a-z0-9_]
 * once folded. */
static const bool  lb_waf_word_byte[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['_'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

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

int
lb_waf_engine_init(void)
{
    if (lb_waf_scratch == NULL) {
        lb_waf_scratch = malloc(LB_WAF_MAX_FIELD);
    }
    return lb_waf_scratch ? LB_OK : LB_ERROR;
}

const u_char *
lb_waf_normalized(const u_char *in, size_t len, unsigned how, size_t *outlen,
                  const lb_waf_rule_t **bad)
{
    if (lb_waf_scratch == NULL) {
        *outlen = 0;
        *bad = &lb_waf_rule_limit;      /* lb_waf_engine_init was not called */
        return (const u_char *) "";
    }
    if (len > LB_WAF_MAX_FIELD) {
        len = LB_WAF_MAX_FIELD;
    }
    *bad = lb_waf_normalize(in, len, how, lb_waf_scratch, outlen);
    return lb_waf_scratch;
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

/* Reads a rule's needs into the set's wake-up tables for rule bit b. */
static int
lb_waf_set_needs(lb_waf_set_t *set, const lb_waf_rule_t *rule, lb_waf_mask_t b,
                 char *err, size_t errlen)
{
    const char  *p = rule->needs, *end;
    size_t       len, i;

    for (; *p && *p != ' '; p++) {
        set->by_byte[(u_char) *p] |= b;
    }
    while (*p) {
        while (*p == ' ') {
            p++;
        }
        for (end = p; *end && *end != ' '; end++) { /* void */ }
        len = (size_t) (end - p);
        if (len == 0) {
            break;
        }
        if (!lb_waf_word_byte[(u_char) p[0]]) {
            /* a pair */
            if (len == 2 && p[0] == '.' && p[1] == '.') {
                set->by_dotdot |= b;
            } else if (len == 2 && p[0] == '-' && p[1] == '-') {
                set->by_dashdash |= b;
            } else if (len == 2 && p[0] == '/' && p[1] == '.') {
                set->by_slashdot |= b;
            } else {
                snprintf(err, errlen, "rule %s needs an unknown pair \"%.*s\"", rule->id,
                         (int) len, p);
                return LB_ERROR;
            }
        } else {
            for (i = 0; i < set->nwords; i++) {
                if (set->words[i].len == len && memcmp(set->words[i].word, p, len) == 0) {
                    break;
                }
            }
            if (i == set->nwords) {
                if (set->nwords == LB_WAF_MAX_WORDS) {
                    snprintf(err, errlen, "too many words in the rules' needs");
                    return LB_ERROR;
                }
                set->words[i].word = p;
                set->words[i].len = len;
                set->nwords++;
                set->word_starts[(u_char) p[0] >> 6] |= (uint64_t) 1 << ((u_char) p[0] & 63);
            }
            set->words[i].rules |= b;
        }
        p = end;
    }
    return LB_OK;
}

lb_waf_set_t *
lb_waf_set_new(const lb_waf_rule_t *rules, size_t nrules, const char *const *disable,
               size_t ndisable, char *err, size_t errlen)
{
    static const unsigned  kinds[4] = {
        LB_WAF_IN_PATH, LB_WAF_IN_ARGS, LB_WAF_IN_COOKIES, LB_WAF_IN_HEADERS
    };
    PCRE2_UCHAR            msg[256];
    PCRE2_SIZE             offset;
    lb_waf_set_t          *set;
    lb_waf_mask_t          b;
    size_t                 i, n;
    int                    errcode, k;

    set = calloc(1, sizeof(lb_waf_set_t));
    if (set == NULL || lb_waf_engine_init() != LB_OK
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

    for (i = 0; i < nrules; i++) {
        if (lb_waf_disabled(rules[i].id, disable, ndisable)) {
            continue;
        }
        n = set->nrules;
        if (n == LB_WAF_MAX_RULES) {
            snprintf(err, errlen, "more than %d WAF rules", LB_WAF_MAX_RULES);
            goto failed;
        }
        set->code[n] = pcre2_compile((PCRE2_SPTR) rules[i].pattern, PCRE2_ZERO_TERMINATED, 0,
                                     &errcode, &offset, NULL);
        if (set->code[n] == NULL) {
            pcre2_get_error_message(errcode, msg, sizeof(msg));
            snprintf(err, errlen, "WAF rule %s does not compile: %s at offset %zu",
                     rules[i].id, (const char *) msg, (size_t) offset);
            goto failed;
        }
        /* without JIT (a platform without it) the interpreter runs the
         * same pattern under the same limits */
        set->jit[n] = pcre2_jit_compile(set->code[n], PCRE2_JIT_COMPLETE) == 0;
        set->rule[n] = &rules[i];
        set->nrules++;
        b = (lb_waf_mask_t) 1 << n;
        for (k = 0; k < 4; k++) {
            if (rules[i].in & kinds[k]) {
                set->in[k] |= b;
            }
        }
        if (lb_waf_set_needs(set, &rules[i], b, err, errlen) != LB_OK) {
            goto failed;
        }
    }
    return set;

failed:
    lb_waf_set_free(set);
    return NULL;
}

void
lb_waf_set_free(lb_waf_set_t *set)
{
    size_t  i;

    if (set == NULL) {
        return;
    }
    for (i = 0; i < set->nrules; i++) {
        pcre2_code_free(set->code[i]);
    }
    pcre2_match_data_free(set->md);
    pcre2_match_context_free(set->mctx);
    pcre2_jit_stack_free(set->jit_stack);
    free(set);
}

/* Scanning ----------------------------------------------------------------- */

/* The rules a normalised field wakes: one pass over its bytes. */
static lb_waf_mask_t
lb_waf_wake(const lb_waf_set_t *set, const u_char *p, size_t n)
{
    lb_waf_mask_t  m = 0;
    size_t         i = 0, start, k;
    u_char         c;

    if (n && p[0] == '.') {
        m |= set->by_slashdot;          /* a leading "." reads as after a '/' */
    }
    while (i < n) {
        c = p[i];
        if (lb_waf_word_byte[c]) {
            start = i;
            while (i < n && lb_waf_word_byte[p[i]]) {
                i++;
            }
            if (set->word_starts[c >> 6] & ((uint64_t) 1 << (c & 63))) {
                for (k = 0; k < set->nwords; k++) {
                    if (set->words[k].len <= i - start
                        && memcmp(p + start, set->words[k].word, set->words[k].len) == 0)
                    {
                        m |= set->words[k].rules;
                    }
                }
            }
            continue;
        }
        m |= set->by_byte[c];
        if (i + 1 < n) {
            if (c == '.' && p[i + 1] == '.') {
                m |= set->by_dotdot;
            } else if (c == '-' && p[i + 1] == '-') {
                m |= set->by_dashdash;
            } else if ((c == '/' || c == '\\') && p[i + 1] == '.') {
                m |= set->by_slashdot;
            }
        }
        i++;
    }
    return m;
}

static const lb_waf_rule_t *
lb_waf_scan(lb_waf_set_t *set, unsigned kind, const u_char *s, size_t len)
{
    const lb_waf_rule_t  *bad;
    const u_char         *text;
    lb_waf_mask_t         woke;
    size_t                n, i;
    int                   rc;

    text = lb_waf_normalized(s, len, kind, &n, &bad);
    if (bad) {
        return bad;
    }
    woke = lb_waf_wake(set, text, n) & set->in[lb_waf_kind_index(kind)];
    for (i = 0; woke; i++, woke >>= 1) {
        if (!(woke & 1)) {
            continue;
        }
        rc = set->jit[i] ? pcre2_jit_match(set->code[i], text, n, 0, 0, set->md, set->mctx)
                         : pcre2_match(set->code[i], text, n, 0, 0, set->md, set->mctx);
        if (rc >= 0) {
            return set->rule[i];
        }
        if (rc != PCRE2_ERROR_NOMATCH) {
            return &lb_waf_rule_limit;      /* match or depth limit, JIT stack */
        }
    }
    return NULL;
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
