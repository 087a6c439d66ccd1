/*
 * test_http_var.c: the variables of modules/http (SPEC §3.5): the registry
 * (adding, finding, refusing duplicates, prefix variables), compile errors
 * and their suggestions, literals and escapes, every variable read from a
 * request parsed for real on a connection (a TLS one made in memory for
 * the ssl variables), captures, and evaluation into buffers too small for
 * the result.
 */
#include "lb_core.h"
#include "lb_http.h"
#include "lb_tls.h"

#include <check.h>
#include <time.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define UNSET  (~(size_t) 0)

static const lb_http_limits_t  limits = { 8192, 64, 1024 };

static const char  request[] =
    "GET /search/q?page=2&x=&page=3&flag&q=a%20b&PAGE=9 HTTP/1.1\r\n"
    "Host: Example.COM:8080\r\n"
    "X-Forwarded-For: 10.0.0.1\r\n"
    "User-Agent: curl/8.0\r\n"
    "x-forwarded-for: 10.0.0.2, 10.0.0.3\r\n"
    "Cookie: a=1; session=abc ;  theme = dark ;flag; Up=x\r\n"
    "Cookie: late=9;a=2\r\n"
    "\r\n";

static lb_http_msg_t      msg;
static lb_http_var_ctx_t  ctx;
/* the connection the request came on, as the variables read it */
static lb_conn_t            conn;
static lb_listener_t        listener;
static lb_http_core_conf_t  core;
static lb_http_request_t    hc;     /* the request the variables read */
static lb_http_peer_t       peer;
static lb_pool_t         *pool;
static char               err[256];
static char               uri[1024];

/* Parses a request head into msg and normalises its path, as the
 * listener does before anything reads a variable. */
static void
parse_head(const char *buf, size_t len)
{
    ck_assert_int_eq(lb_http_parse_request_head(&msg, buf, len, &limits), LB_OK);
    ck_assert_int_eq(lb_http_parse_uri(&msg, uri, sizeof(uri), LB_HTTP_URI_MERGE_SLASHES),
                     LB_OK);
}

static void
setup(void)
{
    pool = lb_pool_create(LB_POOL_DEFAULT_SIZE);
    ck_assert_ptr_nonnull(pool);
    parse_head(request, sizeof(request) - 1);
    memset(&conn, 0, sizeof(conn));
    conn.io = &lb_io_plain;
    memset(&listener, 0, sizeof(listener));
    listener.name = "";
    memset(&core, 0, sizeof(core));
    core.listener = &listener;
    memset(&hc, 0, sizeof(hc));
    memset(&peer, 0, sizeof(peer));
    hc.c = &conn;
    hc.conf = &core;
    hc.peer = &peer;
    peer.local_known = 1;
    hc.upstream_msec = -1;
    memset(&ctx, 0, sizeof(ctx));
    ctx.r = &hc;
    ctx.request = &msg;
    err[0] = '\0';
}

/* Copies text into one of hc's address fields. */
#define set_text(field, text)  snprintf(field, sizeof(field), "%s", text)

static void
teardown(void)
{
    lb_pool_destroy(pool);
}

/* Replaces msg with the parse of a request with this Host. */
static void
parse_with_host(const char *host)
{
    static char  buf[512];
    int          n;

    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    parse_head(buf, (size_t) n);
}

static lb_http_complex_t *
compile(const char *text)
{
    lb_http_complex_t  *cv = lb_http_complex_compile(pool, text, err, sizeof(err));

    ck_assert_msg(cv != NULL, "\"%s\" failed: %s", text, err);
    return cv;
}

/* Evaluates text three ways (length only, into a buffer, into the pool)
 * and checks all three agree with expected. */
#define eval_is(text, expected) eval_check(text, expected, sizeof(expected) - 1)

static void
eval_check(const char *text, const char *expected, size_t len)
{
    lb_http_complex_t  *cv = compile(text);
    char                buf[512];
    size_t              n;
    lb_str_t           *s;

    ck_assert_uint_eq(lb_http_complex_eval(cv, &ctx, NULL, 0), len);
    n = lb_http_complex_eval(cv, &ctx, buf, sizeof(buf));
    ck_assert_msg(n == len && memcmp(buf, expected, len) == 0,
                  "\"%s\" gave \"%.*s\", expected \"%s\"", text, (int) lb_min(n, sizeof(buf)),
                  buf, expected);
    s = lb_http_complex_eval_pool(cv, &ctx, pool);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->len, len);
    ck_assert(memcmp(s->data, expected, len) == 0);
}

/* Compilation errors --------------------------------------------------------- */

static const struct {
    const char  *text;
    const char  *err;
} bad[] = {
    { "$hots", "unknown variable \"$hots\" (did you mean \"$host\"?)" },
    { "x=$request_url", "unknown variable \"$request_url\" (did you mean \"$request_uri\"?)" },
    { "$remoteaddr", "unknown variable \"$remoteaddr\" (did you mean \"$remote_addr\"?)" },
    { "$htpp_x_id", "unknown variable \"$htpp_x_id\" (did you mean \"$http_x_id\"?)" },
    { "$cokie_sid", "unknown variable \"$cokie_sid\" (did you mean \"$cookie_sid\"?)" },
    { "$hostnam", "unknown variable \"$hostnam\" (did you mean \"$hostname\"?)" },
    { "$urifoo", "unknown variable \"$urifoo\" (did you mean \"${uri}foo\"?)" },
    { "$host_/", "unknown variable \"$host_\" (did you mean \"$host\"?)" },
    /* nginx's names get lbd's, never a "${request}_method" */
    { "$request_method", "unknown variable \"$request_method\" (did you mean \"$method\"?)" },
    { "$document_uri", "unknown variable \"$document_uri\" (did you mean \"$uri\"?)" },
    { "$ssl_server_name", "unknown variable \"$ssl_server_name\" (did you mean \"$sni\"?)" },
    { "$content_type", "unknown variable \"$content_type\" "
                       "(did you mean \"$http_content_type\"?)" },
    { "$request_body_file", "unknown variable \"$request_body_file\"" },
    { "$status_code", "unknown variable \"$status_code\"" },
    { "$nonsense", "unknown variable \"$nonsense\"" },
    { "$0", "unknown variable \"$0\"" },
    { "${10}", "unknown variable \"$10\"" },
    { "price: 5$", "a \"$\" must start a variable name (write $$ for a dollar sign)" },
    { "a $ b", "a \"$\" must start a variable name (write $$ for a dollar sign)" },
    { "$-x", "a \"$\" must start a variable name (write $$ for a dollar sign)" },
    { "$$$", "a \"$\" must start a variable name (write $$ for a dollar sign)" },
    { "${}", "empty variable name \"${}\"" },
    { "$arg_", "variable \"$arg_\" needs a name after \"arg_\" (as in \"$arg_name\")" },
    { "${http_}", "variable \"$http_\" needs a name after \"http_\" (as in \"$http_name\")" },
    { "$cookie_/", "variable \"$cookie_\" needs a name after \"cookie_\" (as in \"$cookie_name\")" },
    { "${host", "the closing \"}\" of \"${host\" is missing" },
    { "x${", "the closing \"}\" of \"${\" is missing" },
    { "${ho-st}", "invalid character \"-\" in \"${ho-\": a variable name is letters, "
                  "digits and \"_\"" },
};

START_TEST(compile_error_says_why)
{
    ck_assert_ptr_null(lb_http_complex_compile(pool, bad[_i].text, err, sizeof(err)));
    ck_assert_msg(strcmp(err, bad[_i].err) == 0, "\"%s\": got \"%s\", expected \"%s\"",
                  bad[_i].text, err, bad[_i].err);
}
END_TEST

START_TEST(compile_error_fits_a_small_err)
{
    char  small[8];

    ck_assert_ptr_null(lb_http_complex_compile(pool, "$hots", small, sizeof(small)));
    ck_assert_str_eq(small, "unknown");
    ck_assert_ptr_null(lb_http_complex_compile(pool, "$hots", NULL, 0));
}
END_TEST

START_TEST(every_name_compiles)
{
    const char *const  *names = lb_http_var_names();
    char                text[64];
    size_t              i;

    for (i = 0; names[i] != NULL; i++) {
        snprintf(text, sizeof(text), "$%s", names[i]);
        ck_assert(!lb_http_complex_is_literal(compile(text)));
    }
    ck_assert_uint_eq(i, 30);
}
END_TEST

START_TEST(every_unknown_variable_is_reported)
{
    ck_assert_ptr_null(lb_http_complex_compile(pool, "$hots and $request_method, $ok_x",
                                               err, sizeof(err)));
    ck_assert_str_eq(err, "unknown variable \"$hots\" (did you mean \"$host\"?)\n"
                          "unknown variable \"$request_method\" (did you mean \"$method\"?)\n"
                          "unknown variable \"$ok_x\"");
    /* a mistake in the form after unknown names adds its own line */
    ck_assert_ptr_null(lb_http_complex_compile(pool, "$hots $ ${uri", err, sizeof(err)));
    ck_assert_str_eq(err, "unknown variable \"$hots\" (did you mean \"$host\"?)\n"
                          "a \"$\" must start a variable name (write $$ for a dollar sign)\n"
                          "the closing \"}\" of \"${uri\" is missing");
}
END_TEST

/* The registry ----------------------------------------------------------------- */

/* A module's variable: the status times ten, to see the getter is called
 * with the context. */
static void
get_status10(lb_http_var_out_t *out, const lb_http_var_ctx_t *c, lb_str_t arg)
{
    lb_http_var_write(out, arg.data, arg.len);
    lb_http_var_write(out, "=", 1);
    lb_http_var_write_uint(out, (uint64_t) c->status * 10);
}

/* A prefix variable: its NAME, reversed, and whether there is a request. */
static void
get_rev(lb_http_var_out_t *out, const lb_http_var_ctx_t *c, lb_str_t arg)
{
    size_t  i;

    for (i = arg.len; i > 0; i--) {
        lb_http_var_write(out, &arg.data[i - 1], 1);
    }
    lb_http_var_write(out, c->request != NULL ? "+" : "-", 1);
}

static unsigned  loads;

static void
get_load_count(lb_http_var_out_t *out, const lb_http_var_ctx_t *c, lb_str_t arg)
{
    lb_http_var_write_uint(out, ++loads);
}

START_TEST(registered_variable_is_found_and_evaluated)
{
    const lb_http_var_def_t  *v;
    lb_str_t                  arg;

    ck_assert_ptr_null(lb_http_var_find("test_status10", 13, &arg));
    ck_assert_int_eq(lb_http_var_add("test_status10", get_status10, 0), LB_OK);
    v = lb_http_var_find("test_status10", 13, &arg);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v->name, "test_status10");
    ck_assert(v->get == get_status10);
    ck_assert(arg.len == 13 && memcmp(arg.data, "test_status10", 13) == 0);
    /* a prefix of a name, or a name with more, is not it */
    ck_assert_ptr_null(lb_http_var_find("test_status1", 12, &arg));
    ck_assert_ptr_null(lb_http_var_find("test_status100", 14, &arg));
    ctx.status = 404;
    eval_is("<$test_status10>", "<test_status10=4040>");
    eval_is("${test_status10}x", "test_status10=4040x");
    /* it is a word: in the names, and suggested */
    ck_assert_ptr_null(lb_http_complex_compile(pool, "$test_statsu10", err, sizeof(err)));
    ck_assert_str_eq(err, "unknown variable \"$test_statsu10\" "
                          "(did you mean \"$test_status10\"?)");
}
END_TEST

START_TEST(the_modules_variables_are_registered)
{
    const char *const  *names = lb_http_var_names();
    lb_str_t            arg;
    size_t              i;
    bool                seen = false;

    /* the http core's and the proxy's */
    ck_assert_ptr_nonnull(lb_http_var_find("host", 4, &arg));
    ck_assert_ptr_nonnull(lb_http_var_find("upstream_connect_time", 21, &arg));
    ck_assert_ptr_nonnull(lb_http_var_find("9", 1, &arg));
    ck_assert_ptr_null(lb_http_var_find("0", 1, &arg));
    for (i = 0; names[i] != NULL; i++) {
        ck_assert_msg(strcmp(names[i], "http_") != 0 && strcmp(names[i], "1") != 0,
                      "\"%s\" is not a word", names[i]);
        seen |= strcmp(names[i], "upstream_addr") == 0;
    }
    ck_assert(seen);
}
END_TEST

START_TEST(duplicate_name_is_refused)
{
    ck_assert_int_eq(lb_http_var_add("host", get_status10, 0), LB_ERROR);
    ck_assert_int_eq(lb_http_var_add("test_twice", get_status10, 0), LB_OK);
    ck_assert_int_eq(lb_http_var_add("test_twice", get_rev, 0), LB_ERROR);
    ck_assert(lb_http_var_find("test_twice", 10, &(lb_str_t) lb_null_string)->get
              == get_status10);
    /* names a prefix variable takes, and prefixes that take names */
    ck_assert_int_eq(lb_http_var_add("http_x", get_status10, 0), LB_ERROR);
    ck_assert_int_eq(lb_http_var_add_prefix("http_", get_rev), LB_ERROR);
    ck_assert_int_eq(lb_http_var_add_prefix("test_t", get_rev), LB_ERROR);
    ck_assert_int_eq(lb_http_var_add_prefix("upstream_", get_rev), LB_ERROR);
    /* not a name */
    ck_assert_int_eq(lb_http_var_add("", get_status10, 0), LB_ERROR);
    ck_assert_int_eq(lb_http_var_add("a-b", get_status10, 0), LB_ERROR);
    ck_assert_int_eq(lb_http_var_add("nogetter", NULL, 0), LB_ERROR);
}
END_TEST

START_TEST(prefix_variable_gets_its_name)
{
    const lb_http_var_def_t  *v;
    lb_str_t                  arg;

    ck_assert_int_eq(lb_http_var_add_prefix("rev_", get_rev), LB_OK);
    v = lb_http_var_find("rev_abc", 7, &arg);
    ck_assert_ptr_nonnull(v);
    ck_assert(v->flags & LB_HTTP_VAR_PREFIX);
    ck_assert(arg.len == 3 && memcmp(arg.data, "abc", 3) == 0);
    eval_is("$rev_abc/${rev_Xy1}", "cba+/1yX+");
    ck_assert_uint_eq(lb_http_complex_eval(compile("$rev_q"), NULL, NULL, 0), 2);
    /* NAME must not be empty; a close prefix is suggested */
    ck_assert_ptr_null(lb_http_complex_compile(pool, "$rev_", err, sizeof(err)));
    ck_assert_str_eq(err, "variable \"$rev_\" needs a name after \"rev_\" "
                          "(as in \"$rev_name\")");
    ck_assert_ptr_null(lb_http_complex_compile(pool, "$rve_abc", err, sizeof(err)));
    ck_assert_str_eq(err, "unknown variable \"$rve_abc\" (did you mean \"$rev_abc\"?)");
    /* prefixes are not names */
    ck_assert_ptr_null(lb_http_var_find("rev", 3, &arg));
}
END_TEST

START_TEST(at_load_variable_is_read_once)
{
    lb_http_complex_t  *cv;

    ck_assert_int_eq(lb_http_var_add("test_loads", get_load_count, LB_HTTP_VAR_AT_LOAD), LB_OK);
    loads = 0;
    cv = compile("[$test_loads]");
    ck_assert_uint_eq(loads, 1);
    eval_is("[$test_loads]", "[2]");
    ck_assert_uint_eq(lb_http_complex_eval(cv, &ctx, NULL, 0), 3);
    ck_assert_uint_eq(lb_http_complex_eval(cv, NULL, NULL, 0), 3);
    ck_assert_uint_eq(loads, 2);
}
END_TEST

/* Literals ------------------------------------------------------------------ */

START_TEST(literal_is_itself)
{
    ck_assert(lb_http_complex_is_literal(compile("max-age=31536000")));
    eval_is("max-age=31536000", "max-age=31536000");
    ck_assert(lb_http_complex_is_literal(compile("")));
    eval_is("", "");
}
END_TEST

START_TEST(double_dollar_is_a_dollar)
{
    ck_assert(lb_http_complex_is_literal(compile("cost: $$5")));
    eval_is("cost: $$5", "cost: $5");
    eval_is("$$", "$");
    eval_is("$$$$", "$$");
    eval_is("$$$host", "$example.com");
    eval_is("$host$$", "example.com$");
}
END_TEST

START_TEST(braces_end_a_name)
{
    ctx.r = NULL;          /* the request alone: $scheme is not known */
    eval_is("${host}name", "example.comname");
    eval_is("${scheme}://${host}${request_uri}", "://example.com/search/q?page=2&x=&page=3"
            "&flag&q=a%20b&PAGE=9");
    eval_is("${arg_page}0", "20");
    eval_is("[$method]", "[GET]");
    ck_assert(!lb_http_complex_is_literal(compile("${host}")));
}
END_TEST

/* Variables from the request -------------------------------------------------- */

START_TEST(request_line_variables)
{
    eval_is("$method", "GET");
    eval_is("$request_uri", "/search/q?page=2&x=&page=3&flag&q=a%20b&PAGE=9");
    eval_is("$uri", "/search/q");
    eval_is("$args", "page=2&x=&page=3&flag&q=a%20b&PAGE=9");
}
END_TEST

START_TEST(absolute_form_uri_is_the_path)
{
    static const char  req[] =
        "GET http://other.example/a/b?c=d HTTP/1.1\r\nHost: real.example\r\n\r\n";

    parse_head(req, sizeof(req) - 1);
    eval_is("$request_uri", "http://other.example/a/b?c=d");
    eval_is("$uri", "/a/b");
    eval_is("$args", "c=d");
    /* RFC 9112 §3.2.2: the target's authority wins over Host */
    eval_is("$host", "other.example");
    eval_is("$http_host", "real.example");
}
END_TEST

START_TEST(uri_is_the_normal_path_request_uri_as_sent)
{
    static const char  req[] = "GET /a//b/./c/../d%7e%2f%41?x=%2e HTTP/1.1\r\nHost: a.\r\n\r\n";

    parse_head(req, sizeof(req) - 1);
    eval_is("$uri", "/a/b/d~%2FA");
    eval_is("$request_uri", "/a//b/./c/../d%7e%2f%41?x=%2e");
    eval_is("$args", "x=%2e");
    eval_is("$request", "GET /a//b/./c/../d%7e%2f%41?x=%2e HTTP/1.1");
    eval_is("$host", "a");
}
END_TEST

START_TEST(no_query_means_empty_args)
{
    parse_with_host("a");
    eval_is("[$args][$arg_x]", "[][]");
    eval_is("$uri", "/");
}
END_TEST

static const struct {
    const char  *host;
    const char  *expected;
} hosts[] = {
    { "Example.COM:8080", "example.com" },
    { "EXAMPLE.com", "example.com" },
    { "10.0.0.1:443", "10.0.0.1" },
    { "[::1]:80", "[::1]" },
    { "[::1]", "[::1]" },
    { "[2001:DB8::A]:8443", "[2001:db8::a]" },
    { "localhost", "localhost" },
};

START_TEST(host_is_lowercase_without_port)
{
    parse_with_host(hosts[_i].host);
    eval_check("$host", hosts[_i].expected, strlen(hosts[_i].expected));
}
END_TEST

START_TEST(arg_takes_the_first_match)
{
    eval_is("$arg_page", "2");
    eval_is("[$arg_x]", "[]");
    eval_is("[$arg_flag]", "[]");
    eval_is("$arg_q", "a%20b");
    eval_is("$arg_PAGE", "9");
    eval_is("[$arg_pag][$arg_ge][$arg_missing]", "[][][]");
}
END_TEST

START_TEST(http_joins_repeated_fields)
{
    eval_is("$http_x_forwarded_for", "10.0.0.1, 10.0.0.2, 10.0.0.3");
    eval_is("$http_user_agent", "curl/8.0");
    eval_is("$http_USER_AGENT", "curl/8.0");
    eval_is("$http_host", "Example.COM:8080");
    eval_is("[$http_x_missing][$http_user]", "[][]");
    eval_is("$http_cookie", "a=1; session=abc ;  theme = dark ;flag; Up=x; late=9;a=2");
}
END_TEST

START_TEST(http_underscore_matches_underscore_too)
{
    static const char  req[] = "GET / HTTP/1.1\r\nHost: a\r\nX_Odd: 1\r\n\r\n";

    parse_head(req, sizeof(req) - 1);
    eval_is("$http_x_odd", "1");
}
END_TEST

START_TEST(cookie_finds_one_by_name)
{
    eval_is("$cookie_a", "1");
    eval_is("$cookie_session", "abc");
    eval_is("$cookie_theme", "dark");
    eval_is("$cookie_late", "9");
    eval_is("$cookie_Up", "x");
    eval_is("[$cookie_up][$cookie_flag][$cookie_sess][$cookie_missing]", "[][][][]");
}
END_TEST

START_TEST(request_variables_without_a_request_are_empty)
{
    ctx.request = NULL;
    eval_is("[$host][$method][$request_uri][$uri][$args][$arg_a][$http_host][$cookie_a]",
            "[][][][][][][][]");
}
END_TEST

START_TEST(no_context_means_nothing_known)
{
    static const char   expected[] = "[][][][][0][][$x]";
    lb_http_complex_t  *cv = compile("[$host][$status][$request_time][$upstream_response_time]"
                                     "[$bytes_sent][$1][$$x]");
    char                buf[64];
    size_t              n;

    lb_current_msec = 123456;
    n = lb_http_complex_eval(cv, NULL, buf, sizeof(buf));
    ck_assert_uint_eq(n, sizeof(expected) - 1);
    ck_assert(memcmp(buf, expected, n) == 0);
    n = lb_http_complex_eval(compile("just text"), NULL, buf, sizeof(buf));
    ck_assert(n == 9 && memcmp(buf, "just text", 9) == 0);
}
END_TEST

/* Variables from the context --------------------------------------------------- */

/* A TLS 1.3 session made in memory: the server's end, after a handshake
 * with a client that sent server_name; *client gets the other end. */
static SSL *
tls_session(const char *server_name, SSL **client)
{
    SSL_CTX   *sctx, *cctx;
    SSL       *s, *cl;
    EVP_PKEY  *key;
    X509      *cert;
    BIO       *sb, *cb;
    int        i, rs = 0, rc = 0;

    key = EVP_EC_gen("P-256");
    cert = X509_new();
    ck_assert(key != NULL && cert != NULL);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               (const unsigned char *) "test", -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    ck_assert_int_gt(X509_sign(cert, key, EVP_sha256()), 0);

    sctx = SSL_CTX_new(TLS_server_method());
    cctx = SSL_CTX_new(TLS_client_method());
    ck_assert(sctx != NULL && cctx != NULL);
    ck_assert_int_eq(SSL_CTX_use_certificate(sctx, cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(sctx, key), 1);
    SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
    ck_assert_int_eq(SSL_CTX_set_ciphersuites(sctx, "TLS_AES_128_GCM_SHA256"), 1);
    s = SSL_new(sctx);
    cl = SSL_new(cctx);
    ck_assert(s != NULL && cl != NULL);
    SSL_set_tlsext_host_name(cl, server_name);
    ck_assert_int_eq(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(cl, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(cl);
    for (i = 0; i < 16 && (rs != 1 || rc != 1); i++) {
        rc = rc == 1 ? 1 : SSL_do_handshake(cl);
        rs = rs == 1 ? 1 : SSL_do_handshake(s);
    }
    ck_assert_msg(rs == 1 && rc == 1, "the in-memory TLS handshake failed");
    /* the sessions hold their own references */
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    *client = cl;
    return s;
}

START_TEST(context_strings)
{
    SSL  *server, *client;

    set_text(peer.remote_ip, "192.0.2.7");
    set_text(peer.remote_port, "51234");
    set_text(peer.local_ip, "127.0.0.1");
    set_text(peer.local_port, "8443");
    hc.request_id = (lb_str_t) lb_string("4f2a");
    hc.upstream_addr = (lb_str_t) lb_string("10.0.0.1:80");
    eval_is("$scheme://$host$uri", "http://example.com/search/q");
    eval_is("[$sni][$ssl_protocol][$ssl_cipher][$ssl_client_verify]", "[][][][]");

    server = tls_session("api.example", &client);
    lb_tls_adopt(&conn, server);

    eval_is("$remote_addr:$remote_port", "192.0.2.7:51234");
    eval_is("$server_addr:$server_port", "127.0.0.1:8443");
    eval_is("$scheme://$host$uri", "https://example.com/search/q");
    eval_is("$request_id $upstream_addr $sni", "4f2a 10.0.0.1:80 api.example");
    eval_is("$ssl_protocol/$ssl_cipher", "TLSv1.3/TLS_AES_128_GCM_SHA256");
    eval_is("$ssl_client_verify", "NONE");
    SSL_free(server);
    SSL_free(client);
}
END_TEST

START_TEST(unknown_context_strings_are_empty)
{
    eval_is("[$remote_addr][$sni][$ssl_cipher][$upstream_addr]", "[][][][]");
}
END_TEST

START_TEST(numbers)
{
    eval_is("[$status]", "[]");
    ctx.status = 404;
    eval_is("$status", "404");
    ctx.status = 200;
    eval_is("$status", "200");
    eval_is("$bytes_sent", "0");
    hc.bytes_sent = 1234567;
    eval_is("$bytes_sent", "1234567");
    hc.bytes_sent = UINT64_MAX;
    eval_is("$bytes_sent", "18446744073709551615");
}
END_TEST

START_TEST(request_time_is_seconds_since_start)
{
    hc.start_msec = 1000;
    lb_current_msec = 1123;
    eval_is("$request_time", "0.123");
    lb_current_msec = 1000;
    eval_is("$request_time", "0.000");
    lb_current_msec = 13345;
    eval_is("$request_time", "12.345");
    lb_current_msec = 999;
    eval_is("$request_time", "0.000");
}
END_TEST

START_TEST(upstream_response_time)
{
    eval_is("[$upstream_response_time]", "[]");
    hc.upstream_msec = 0;
    eval_is("$upstream_response_time", "0.000");
    hc.upstream_msec = 5;
    eval_is("$upstream_response_time", "0.005");
    hc.upstream_msec = 61070;
    eval_is("$upstream_response_time", "61.070");
}
END_TEST

START_TEST(upstream_status_is_the_servers_only)
{
    ctx.status = 502;
    eval_is("[$status][$upstream_status]", "[502][]");
    hc.upstream_status = 502;
    eval_is("[$status][$upstream_status]", "[502][502]");
    hc.upstream_status = 101;
    eval_is("$upstream_status", "101");
}
END_TEST

START_TEST(upstream_connect_time)
{
    hc.upstream_connect_msec = -1;
    eval_is("[$upstream_connect_time]", "[]");
    hc.upstream_connect_msec = 0;
    eval_is("$upstream_connect_time", "0.000");
    hc.upstream_connect_msec = 1042;
    eval_is("$upstream_connect_time", "1.042");
    ck_assert_uint_eq(lb_http_complex_eval(compile("$upstream_connect_time"), NULL, NULL, 0), 0);
}
END_TEST

START_TEST(server_name_hostname_and_query_string)
{
    char  host[256];

    ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    listener.name = "web";
    eval_is("[$server_name]", "[web]");
    eval_check("$hostname", host, strlen(host));
    ck_assert_uint_eq(lb_http_complex_eval(compile("$hostname"), NULL, NULL, 0), strlen(host));
    eval_is("$query_string", "page=2&x=&page=3&flag&q=a%20b&PAGE=9");
    eval_is("$query_string", "page=2&x=&page=3&flag&q=a%20b&PAGE=9");
    ctx.request = NULL;
    eval_is("[$query_string]", "[]");
}
END_TEST

/* JSON escaping applies to the values, never to the text around them. */
START_TEST(json_escape_of_values)
{
    static const char   expected[] =
        "{\"ua\":\"a\\\"b\\\\c\\td\\u0001\\u007f\\n\xc3\xa9\",\"h\":\"example.com\"}";
    lb_http_complex_t  *cv = compile("{\"ua\":\"$request_id\",\"h\":\"$host\"}");
    char                buf[128];
    size_t              n, size;

    hc.request_id = (lb_str_t) lb_string("a\"b\\c\td\x01\x7f\n\xc3\xa9");
    n = lb_http_complex_eval_escaped(cv, &ctx, buf, sizeof(buf), LB_HTTP_ESCAPE_JSON);
    ck_assert_msg(n == sizeof(expected) - 1 && memcmp(buf, expected, n) == 0,
                  "got %.*s", (int) lb_min(n, sizeof(buf)), buf);
    /* the length alone, and a short buffer gets the same prefix */
    ck_assert_uint_eq(lb_http_complex_eval_escaped(cv, &ctx, NULL, 0, LB_HTTP_ESCAPE_JSON), n);
    for (size = 0; size < n; size++) {
        memset(buf, 0x5a, sizeof(buf));
        ck_assert_uint_eq(lb_http_complex_eval_escaped(cv, &ctx, buf, size,
                                                       LB_HTTP_ESCAPE_JSON), n);
        ck_assert(memcmp(buf, expected, size) == 0 && (unsigned char) buf[size] == 0x5a);
    }
    /* without escaping, the bytes as they are */
    n = lb_http_complex_eval(cv, &ctx, buf, sizeof(buf));
    ck_assert(n == 39 && memcmp(buf + 7, "a\"b\\c\td\x01\x7f\n", 10) == 0);
    /* a literal is never escaped */
    cv = compile("say \"hi\"\t");
    ck_assert_uint_eq(lb_http_complex_eval_escaped(cv, &ctx, buf, sizeof(buf),
                                                   LB_HTTP_ESCAPE_JSON), 9);
    ck_assert(memcmp(buf, "say \"hi\"\t", 9) == 0);
}
END_TEST

START_TEST(msec_is_wall_clock_with_milliseconds)
{
    char                buf[64];
    size_t              n;
    double              v, before, after;
    struct timespec     ts;
    lb_http_complex_t  *cv = compile("$msec");

    /* the same clock as $msec: time(2) may read a coarser one that lags */
    clock_gettime(CLOCK_REALTIME, &ts);
    before = (double) ts.tv_sec + (double) (ts.tv_nsec / 1000000) / 1000;
    n = lb_http_complex_eval(cv, &ctx, buf, sizeof(buf) - 1);
    clock_gettime(CLOCK_REALTIME, &ts);
    after = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
    ck_assert_uint_ge(n, 14);
    buf[n] = '\0';
    ck_assert_msg(buf[n - 4] == '.', "\"%s\"", buf);
    ck_assert_uint_eq(strspn(buf, "0123456789"), n - 4);
    ck_assert_uint_eq(strspn(buf + n - 3, "0123456789"), 3);
    v = strtod(buf, NULL);
    ck_assert_msg(v >= before - 0.0005 && v <= after + 0.0005, "%.3f not in [%.3f, %.3f]",
                  v, before, after);
}
END_TEST

static void
check_iso8601(const char *tz, const char *offset)
{
    char                buf[64];
    size_t              n;
    lb_http_complex_t  *cv = compile("$time_iso8601");

    setenv("TZ", tz, 1);
    tzset();
    n = lb_http_complex_eval(cv, &ctx, buf, sizeof(buf) - 1);
    buf[lb_min(n, sizeof(buf) - 1)] = '\0';
    ck_assert_msg(n == 25, "\"%s\"", buf);
    ck_assert_msg(buf[4] == '-' && buf[7] == '-' && buf[10] == 'T' && buf[13] == ':'
                  && buf[16] == ':', "\"%s\"", buf);
    ck_assert_str_eq(buf + 19, offset);
}

START_TEST(time_iso8601_has_a_colon_in_the_offset)
{
    check_iso8601("UTC0", "+00:00");
    check_iso8601("IST-5:30", "+05:30");
    check_iso8601("NST3:30", "-03:30");
}
END_TEST

START_TEST(time_local_is_nginx_log_time)
{
    char                buf[64];
    size_t              n;
    lb_http_complex_t  *cv = compile("$time_local");

    setenv("TZ", "IST-5:30", 1);
    tzset();
    n = lb_http_complex_eval(cv, &ctx, buf, sizeof(buf) - 1);
    buf[lb_min(n, sizeof(buf) - 1)] = '\0';
    ck_assert_msg(n == 26, "\"%s\"", buf);
    ck_assert_msg(buf[2] == '/' && buf[6] == '/' && buf[11] == ':' && buf[14] == ':'
                  && buf[17] == ':' && buf[20] == ' ', "\"%s\"", buf);
    ck_assert_str_eq(buf + 20, " +0530");
    setenv("TZ", "UTC0", 1);
    tzset();
}
END_TEST

START_TEST(request_is_the_request_line)
{
    eval_is("$request", "GET /search/q?page=2&x=&page=3&flag&q=a%20b&PAGE=9 HTTP/1.1");
    ctx.request = NULL;
    eval_is("[$request]", "[]");
}
END_TEST

/* Captures ------------------------------------------------------------------- */

static const char    subject[] = "/img/cat.png";
static const size_t  offsets[] = { 0, 12, 5, 8, 9, 12, UNSET, UNSET, 4, 4 };

static void
set_captures(void)
{
    ctx.capture_subject = subject;
    ctx.captures = offsets;
    ctx.ncaptures = 5;
}

START_TEST(captures_one_to_nine)
{
    set_captures();
    eval_is("$1.$2", "cat.png");
    eval_is("/thumbs/${1}_small.$2", "/thumbs/cat_small.png");
    eval_is("[$3][$4][$5][$9]", "[][][][]");
    eval_is("$1x", "catx");
    eval_is("$10", "cat0");
}
END_TEST

START_TEST(captures_absent_are_empty)
{
    eval_is("[$1][$9]", "[][]");
    ctx.capture_subject = subject;
    ctx.ncaptures = 3;
    eval_is("[$1]", "[]");
}
END_TEST

/* Evaluation into small buffers ---------------------------------------------- */

START_TEST(small_buffer_gets_a_prefix_and_the_full_length)
{
    static const char *const  texts[] = {
        "max-age=31536000",
        "$scheme://$host$request_uri",
        "$http_x_forwarded_for|$cookie_theme|$arg_q",
        "$status $bytes_sent $request_time $$ $1$2",
    };
    char                full[512], buf[512];
    size_t              t, len, size, n;
    lb_http_complex_t  *cv;

    ctx.status = 503;
    hc.bytes_sent = 98765;
    hc.start_msec = lb_current_msec;
    set_captures();

    for (t = 0; t < lb_nelems(texts); t++) {
        cv = compile(texts[t]);
        len = lb_http_complex_eval(cv, &ctx, full, sizeof(full));
        ck_assert_uint_gt(len, 0);
        ck_assert_uint_lt(len, sizeof(full));
        for (size = 0; size <= len + 1; size++) {
            memset(buf, 0x5a, sizeof(buf));
            n = lb_http_complex_eval(cv, &ctx, buf, size);
            ck_assert_msg(n == len, "\"%s\" into %zu bytes: %zu, expected %zu",
                          texts[t], size, n, len);
            ck_assert_msg(memcmp(buf, full, lb_min(size, len)) == 0,
                          "\"%s\" into %zu bytes: wrong prefix", texts[t], size);
            ck_assert_msg((unsigned char) buf[size] == 0x5a
                          && (size < len ? true : (unsigned char) buf[len] == 0x5a),
                          "\"%s\" into %zu bytes: wrote past the end", texts[t], size);
        }
    }
}
END_TEST

START_TEST(eval_pool_is_nul_terminated)
{
    lb_str_t  *s = lb_http_complex_eval_pool(compile("<$host>"), &ctx, pool);

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->len, 13);
    ck_assert_str_eq(s->data, "<example.com>");
}
END_TEST

static Suite *
http_var_suite(void)
{
    Suite  *s = suite_create("http_var");
    TCase  *tc;

    tc = tcase_create("compile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, compile_error_says_why, 0, (int) lb_nelems(bad));
    tcase_add_test(tc, compile_error_fits_a_small_err);
    tcase_add_test(tc, every_name_compiles);
    tcase_add_test(tc, every_unknown_variable_is_reported);
    tcase_add_test(tc, literal_is_itself);
    tcase_add_test(tc, double_dollar_is_a_dollar);
    tcase_add_test(tc, braces_end_a_name);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, registered_variable_is_found_and_evaluated);
    tcase_add_test(tc, the_modules_variables_are_registered);
    tcase_add_test(tc, duplicate_name_is_refused);
    tcase_add_test(tc, prefix_variable_gets_its_name);
    tcase_add_test(tc, at_load_variable_is_read_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("request");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, request_line_variables);
    tcase_add_test(tc, absolute_form_uri_is_the_path);
    tcase_add_test(tc, uri_is_the_normal_path_request_uri_as_sent);
    tcase_add_test(tc, no_query_means_empty_args);
    tcase_add_loop_test(tc, host_is_lowercase_without_port, 0, (int) lb_nelems(hosts));
    tcase_add_test(tc, arg_takes_the_first_match);
    tcase_add_test(tc, http_joins_repeated_fields);
    tcase_add_test(tc, http_underscore_matches_underscore_too);
    tcase_add_test(tc, cookie_finds_one_by_name);
    tcase_add_test(tc, request_variables_without_a_request_are_empty);
    tcase_add_test(tc, no_context_means_nothing_known);
    suite_add_tcase(s, tc);

    tc = tcase_create("context");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, context_strings);
    tcase_add_test(tc, unknown_context_strings_are_empty);
    tcase_add_test(tc, numbers);
    tcase_add_test(tc, request_time_is_seconds_since_start);
    tcase_add_test(tc, upstream_response_time);
    tcase_add_test(tc, upstream_status_is_the_servers_only);
    tcase_add_test(tc, upstream_connect_time);
    tcase_add_test(tc, server_name_hostname_and_query_string);
    tcase_add_test(tc, json_escape_of_values);
    tcase_add_test(tc, msec_is_wall_clock_with_milliseconds);
    tcase_add_test(tc, time_iso8601_has_a_colon_in_the_offset);
    tcase_add_test(tc, time_local_is_nginx_log_time);
    tcase_add_test(tc, request_is_the_request_line);
    suite_add_tcase(s, tc);

    tc = tcase_create("captures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, captures_one_to_nine);
    tcase_add_test(tc, captures_absent_are_empty);
    suite_add_tcase(s, tc);

    tc = tcase_create("buffers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, small_buffer_gets_a_prefix_and_the_full_length);
    tcase_add_test(tc, eval_pool_is_nul_terminated);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(http_var_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
