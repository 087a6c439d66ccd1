/*
 * lb_admin_page.c: the admin API's status page, GET / (SPEC §9). The page
 * is status.html beside this file, compiled in by auto/embed (config's
 * lb_module_embeds): one HTML file whose inline script polls /status and
 * /upstreams and sends drain and enable. It loads nothing from anywhere,
 * and its Content-Security-Policy lets nothing but its own script and
 * style run, by their hashes: text injected into it could not execute.
 */
#include "lb_admin.h"
#include "lb_crypto.h"

extern const unsigned char  lb_core_admin_status_html[];
extern const size_t         lb_core_admin_status_html_len;

/* Base64 (RFC 4648 §4, with padding) of in's n bytes into out, which has
 * room for 4 * ((n + 2) / 3) + 1 bytes. */
static void
lb_admin_base64(const unsigned char *in, size_t n, char *out)
{
    static const char  digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789+/";
    uint32_t           v;
    size_t             i;

    for (i = 0; i + 2 < n; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        *out++ = digits[v >> 18];
        *out++ = digits[(v >> 12) & 63];
        *out++ = digits[(v >> 6) & 63];
        *out++ = digits[v & 63];
    }
    if (i < n) {
        v = (uint32_t) in[i] << 16 | (i + 1 < n ? (uint32_t) in[i + 1] << 8 : 0);
        *out++ = digits[v >> 18];
        *out++ = digits[(v >> 12) & 63];
        *out++ = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* "'sha256-BASE64'" of the text between the first `open` of the page and
 * the `close` after it (the text a browser hashes for the CSP), or
 * "'none'" when the page has no such element. */
static void
lb_admin_page_hash(const char *open, const char *close, char *out, size_t size)
{
    const char     *page = (const char *) lb_core_admin_status_html, *text, *end;
    size_t          len = lb_core_admin_status_html_len;
    unsigned char   digest[LB_SHA256_LEN];
    char            b64[4 * ((LB_SHA256_LEN + 2) / 3) + 1];

    text = memmem(page, len, open, strlen(open));
    end = text ? memmem(text, len - (size_t) (text - page), close, strlen(close)) : NULL;
    if (end == NULL) {
        snprintf(out, size, "'none'");
        return;
    }
    text += strlen(open);
    lb_sha256(text, (size_t) (end - text), digest);
    lb_admin_base64(digest, sizeof(digest), b64);
    snprintf(out, size, "'sha256-%s'", b64);
}

void
lb_admin_page(lb_admin_req_t *rq)
{
    static char  headers[512];
    char         script[64], style[64];

    /* the page is the binary's: its hashes are the same for every request */
    if (headers[0] == '\0') {
        lb_admin_page_hash("<script>", "</script>", script, sizeof(script));
        lb_admin_page_hash("<style>", "</style>", style, sizeof(style));
        snprintf(headers, sizeof(headers),
                 "Content-Security-Policy: default-src 'none'; script-src %s; style-src %s; "
                 "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                 "frame-ancestors 'none'\r\n"
                 "Referrer-Policy: no-referrer\r\n", script, style);
    }
    rq->status = 200;
    rq->content_type = "text/html; charset=utf-8";
    rq->extra_headers = headers;
    lb_admin_out_add(&rq->body, (const char *) lb_core_admin_status_html,
                     lb_core_admin_status_html_len);
}
