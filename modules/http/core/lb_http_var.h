/*
 * lb_http_var.h: variables (SPEC §3.5). Modules register variables (a
 * name and a getter that reads the request on demand); a string with
 * variables, such as "https://$host$request_uri", is compiled once at
 * configuration load into a short list of parts (literal bytes or a
 * getter); a request evaluates it by walking that list, with no parsing
 * and no lookup by name. An unknown variable is a configuration error.
 */
#ifndef LB_HTTP_VAR_H
#define LB_HTTP_VAR_H

#include "lb_core.h"
#include "lb_http_parse.h"

struct lb_http_request_s;

/* What a variable reads: the request being served, as a thin view that a
 * caller fills in a few stores (lb_http_var_ctx), never a copy of the
 * values. Getters read the request on demand through it. r is the
 * request, NULL when there is none (a NULL context, as in
 * lb_http_complex_eval(cv, NULL, ...)); request is its parsed head (or
 * one a tool parsed: lbctl route), NULL before one. */
typedef struct {
    struct lb_http_request_s  *r;
    const lb_http_msg_t    *request;
    int                     status;           /* of the response; 0: none yet */
    /* regex captures for $1..$9: subject and PCRE2-style offset pairs;
     * ncaptures counts pairs including $0 */
    const char             *capture_subject;
    const size_t           *captures;
    int                     ncaptures;
} lb_http_var_ctx_t;

/* How the values of variables are written (literal text never changes):
 * as they are, or as the content of a JSON string (RFC 8259 §7: '"' and
 * '\\' behind a backslash, bytes below 0x20 and 0x7f as \n, \r, \t or
 * \u00XX, bytes from 0x80 as they are). */
typedef enum {
    LB_HTTP_ESCAPE_NONE = 0,
    LB_HTTP_ESCAPE_JSON,
} lb_http_escape_t;

/* Where a getter writes a value: lb_http_var_write() and its helpers
 * below, as many times as it likes (a value is the concatenation). The
 * writer escapes as the caller of eval asked and stops storing at the end
 * of the caller's buffer, while counting the full length. The fields are
 * eval's: a getter only passes out on. */
typedef struct {
    char              *buf;
    size_t             size;
    size_t             len;         /* all the bytes, stored or not */
    lb_http_escape_t   escape;
} lb_http_var_out_t;

/* A variable's getter: writes the value of the variable for ctx into out
 * (nothing for an empty value). arg is the name after the prefix for a
 * prefix variable ("user_agent" of $http_user_agent, as written), and the
 * variable's own name otherwise, so that one getter may serve several
 * names. ctx->r and ctx->request may be NULL: the value is then what is
 * known without them, usually nothing. Never allocates; a value that needs
 * formatting is formatted on the stack (lb_http_var_write_uint ...). */
typedef void (*lb_http_var_get_pt)(lb_http_var_out_t *out, const lb_http_var_ctx_t *ctx,
                                   lb_str_t arg);

/* flags of a variable */
#define LB_HTTP_VAR_PREFIX   0x01   /* $nameNAME for any NAME, which must
                                       not be empty ("http_") */
#define LB_HTTP_VAR_AT_LOAD  0x02   /* evaluated once, without a request,
                                       when a string is compiled; the value
                                       (its first 256 bytes) is kept
                                       ($hostname) */

/* One variable of a module's table (lb_http_module_t.variables), which
 * ends with an entry whose name is NULL. */
typedef struct {
    const char          *name;          /* without "$": "upstream_addr" */
    lb_http_var_get_pt   get;
    unsigned             flags;
} lb_http_var_def_t;

/* The registry. The variables of every http module's table are added, in
 * module order, the first time the registry is used (when the first string
 * is compiled, at load); lb_http_var_add adds one more, before that or
 * after. Names are letters, digits and "_" ($1..$9 are the http core's
 * names "1".."9") and must outlive the process (string literals). Adding
 * a name twice, or a name that collides with a prefix variable's names
 * ("http_x" beside "http_"), is refused: LB_ERROR, with a message in the
 * error log. At most LB_HTTP_VAR_MAX variables. Not thread-safe: the
 * registry is filled in one thread at start-up. */
#define LB_HTTP_VAR_MAX  256

int lb_http_var_add(const char *name, lb_http_var_get_pt get, unsigned flags);
int lb_http_var_add_prefix(const char *prefix, lb_http_var_get_pt get);

/* The variable a name written after "$" refers to, or NULL; for a prefix
 * variable *arg receives what follows the prefix (possibly empty: compile
 * refuses it), for another the name itself. */
const lb_http_var_def_t *lb_http_var_find(const char *name, size_t len, lb_str_t *arg);

/* The names of the registered variables that are words (not prefix
 * variables, nor the captures' digits), NULL-terminated, in the order they
 * were added: for messages and docs. */
const char *const *lb_http_var_names(void);

/* For getters: append bytes to the value (escaped as the caller of eval
 * asked); a string; a string lowercased; an unsigned number in decimal; a
 * duration in milliseconds as seconds with three decimals ("0.123", a
 * negative one as "0.000"). */
static inline void lb_http_var_write(lb_http_var_out_t *out, const char *p, size_t n);
void lb_http_var_write_str(lb_http_var_out_t *out, lb_str_t s);
void lb_http_var_write_lower(lb_http_var_out_t *out, const char *p, size_t n);
void lb_http_var_write_uint(lb_http_var_out_t *out, uint64_t v);
void lb_http_var_write_msec(lb_http_var_out_t *out, int64_t msec);

void lb_http_var_write_json(lb_http_var_out_t *out, const char *p, size_t n);

static inline void
lb_http_var_write(lb_http_var_out_t *out, const char *p, size_t n)
{
    if (out->escape == LB_HTTP_ESCAPE_JSON) {
        lb_http_var_write_json(out, p, n);
        return;
    }
    if (n > 0 && out->len < out->size) {
        memcpy(out->buf + out->len, p, out->size - out->len < n ? out->size - out->len : n);
    }
    out->len += n;
}

static inline char
lb_http_var_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char) (c | 0x20) : c;
}

typedef struct lb_http_complex_s  lb_http_complex_t;

/* Compiles text. Variable names run to the first byte that is not
 * [A-Za-z0-9_], or are written ${name} (same bytes inside); "$$" is a
 * literal "$". A digit after "$" is a capture on its own, as in nginx:
 * "$1.html" and "$10" are $1 followed by text; $0 is unknown.
 * Each name is resolved through the registry, once, here: a part keeps
 * its variable's getter, so a request looks up nothing. A prefix
 * variable's NAME must not be empty ("$http_" is an error). What each
 * variable of the http core means is said in lb_http_variables.c, the
 * upstream ones in lb_http_proxy.c; docs/routing.md lists them all.
 * Returns NULL and writes the reasons ("unknown variable \"$hots\" (did
 * you mean \"$host\"?)") into err (may be NULL) on error: every unknown
 * variable of the text, one reason per line ('\n' between them, none at
 * the end). The result lives in pool and does not point into text. */
lb_http_complex_t *lb_http_complex_compile(lb_pool_t *pool, const char *text,
                                           char *err, size_t errlen);

/* For a setting's handler: compiles text, the value of setting v, and
 * reports each reason as its own error "FILE:LINE: what: reason". NULL on
 * error. */
lb_http_complex_t *lb_http_complex_conf(lb_conf_t *cf, const config_setting_t *v,
                                        const char *text, const char *what);

/* true when text has no variable: eval gives the text itself ("$$" as
 * "$"), whatever the context. */
bool lb_http_complex_is_literal(const lb_http_complex_t *cv);

/* The bytes cv evaluates to, at most a size that the caller learns from
 * the return value: writes min(result, size) bytes into buf and returns
 * the full length, so a caller can size a buffer and call again
 * (eval(cv, ctx, NULL, 0) is the length). Never allocates; adds no NUL.
 * ctx NULL means nothing is known: every variable but $msec,
 * $time_iso8601 and $time_local is "".
 * $msec, $time_iso8601 and $time_local read the clock on each call, so two calls may
 * differ. */
size_t lb_http_complex_eval(const lb_http_complex_t *cv, const lb_http_var_ctx_t *ctx,
                            char *buf, size_t size);
/* The same, with the values of variables escaped per escape. */
size_t lb_http_complex_eval_escaped(const lb_http_complex_t *cv,
                                    const lb_http_var_ctx_t *ctx, char *buf, size_t size,
                                    lb_http_escape_t escape);

/* Convenience: evaluates into memory from pool, NUL-terminated (not
 * counted in len); NULL on allocation failure. */
lb_str_t *lb_http_complex_eval_pool(const lb_http_complex_t *cv,
                                    const lb_http_var_ctx_t *ctx, lb_pool_t *pool);

#endif
