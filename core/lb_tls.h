/*
 * lb_tls.h: TLS with OpenSSL beneath the connection I/O layer (lb_io_t).
 * A listener that terminates TLS gets an accept step that runs the
 * handshake; once it is done the connection's io is lb_io_tls and the
 * protocol module above reads and writes plain bytes as before. Upstream
 * connections use the same layer as clients (lb_tls_connect).
 */
#ifndef LB_TLS_H
#define LB_TLS_H

#include <openssl/ssl.h>

extern const lb_io_t  lb_io_tls;

/* What an accepted TLS connection needs from its listener's
 * configuration: the default context (the first certificate), the
 * handshake timeout. The SNI callback on that context switches to the
 * certificate that names the server. */
typedef struct {
    SSL_CTX     *ctx;
    lb_msec_t    handshake_timeout;
    bool         plain_http_400;    /* https: a client that sends plain HTTP
                                       gets a 400 in clear text, not a reset */
} lb_tls_listener_t;

/* The accept step of TLS listeners: c->listener's lb_tls_listener_t is
 * found through lb_tls_listener_of, set by the tls module. */
void lb_tls_accept_step(lb_conn_t *c);
extern lb_tls_listener_t *(*lb_tls_listener_of)(lb_listener_t *ls);

/* A client handshake on an upstream connection c (connected): done(c,
 * ok) is called once it finished or failed (then errno-free reason in
 * the log line the caller writes, from lb_tls_error_text). sni may be
 * NULL. c->data is kept; the read and write handlers are borrowed
 * meanwhile and must be set again by done. */
int  lb_tls_connect(lb_conn_t *c, SSL_CTX *ctx, const char *sni, lb_msec_t timeout,
                    void (*done)(lb_conn_t *c, bool ok));

/* An upstream's `tls` group (the tls module keeps it in the upstream's
 * confs): a client context and the name to send and check. */
typedef struct {
    SSL_CTX     *ctx;
    const char  *sni;           /* NULL: none */
    bool         verify;
} lb_tls_upstream_t;

/* The TLS settings of the upstream whose confs are given, or NULL when
 * its servers speak plain TCP (or no tls module is built in). */
extern lb_tls_upstream_t *(*lb_tls_upstream_of)(void **confs);

/* The last OpenSSL error of this thread as text ("" when none), for log
 * lines; clears the queue. */
const char *lb_tls_error_text(void);

/* For variables: the negotiated server name, protocol and cipher of a TLS
 * connection ("" when not TLS, or none). */
const char *lb_tls_sni(lb_conn_t *c);
const char *lb_tls_protocol(lb_conn_t *c);
const char *lb_tls_cipher(lb_conn_t *c);
/* The client certificate check: "SUCCESS", "NONE", or "FAILED:reason". */
const char *lb_tls_client_verify(lb_conn_t *c);

#endif
