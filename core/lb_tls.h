/*
 * lb_tls.h: the TLS seam. TLS (OpenSSL) lives beneath the connection I/O
 * layer (lb_io_t): a listener that terminates TLS gets an accept step that
 * runs the handshake, after which the protocol module above reads and
 * writes plain bytes as before; upstream connections use the same layer
 * (lb_tls_connect). This header needs no OpenSSL header: contexts are
 * opaque (lb_tls_ctx_t), and what a module wants to know about a TLS
 * connection it asks here. Only core/lb_tls.c, core/lb_crypto.c and the
 * tls module (which builds the contexts from the configuration) include
 * OpenSSL; docs/modules.md, "TLS".
 */
#ifndef LB_TLS_H
#define LB_TLS_H

/* An OpenSSL SSL_CTX, opaque outside the seam. */
typedef struct ssl_ctx_st  lb_tls_ctx_t;

/* What an accepted TLS connection needs from its listener's
 * configuration: the default context (the first certificate; its SNI
 * callback switches to the certificate that names the server), the
 * handshake timeout. */
typedef struct {
    lb_tls_ctx_t  *ctx;
    lb_msec_t      handshake_timeout;
    bool           plain_http_400;  /* https: a client that sends plain HTTP
                                       gets a 400 in clear text, not a reset */
} lb_tls_listener_t;

/* The server side: runs the handshake of the accepted connection c with
 * tl, then hands c on with lb_listener_next (or closes it). For the accept
 * step of a TLS listener (the tls module adds one). */
void lb_tls_accept(lb_conn_t *c, const lb_tls_listener_t *tl);

/* The client side, on an upstream connection c (connected): starts the
 * handshake and returns LB_OK, or LB_ERROR when it cannot start (then c
 * is unchanged). done(c, ok) is called once it finished or failed, and
 * never before lb_tls_connect has returned; on failure lb_tls_verify_error
 * says why. sni may be NULL. c->data is kept; the read and write handlers
 * (and the event timers) are borrowed meanwhile and must be set again by
 * done. */
int  lb_tls_connect(lb_conn_t *c, lb_tls_ctx_t *ctx, const char *sni, lb_msec_t timeout,
                    void (*done)(lb_conn_t *c, bool ok));

/* An upstream's `tls` group: a client context and the name to send and
 * check. */
typedef struct {
    lb_tls_ctx_t  *ctx;
    const char    *sni;         /* NULL: none */
    const char    *ca;          /* the CA file's full path; NULL: the system's store */
    bool           verify;
} lb_tls_upstream_t;

/* The TLS settings of the upstream whose confs are given, or NULL when
 * its servers speak plain TCP (or no tls module is built in). */
lb_tls_upstream_t *lb_tls_upstream(void **confs);
/* Registration, by the module that keeps the upstreams' tls groups (the
 * tls module, at load): how lb_tls_upstream finds them. */
void lb_tls_set_upstream_lookup(lb_tls_upstream_t *(*lookup)(void **confs));

/* A reload applied in place (lb_reload.h) that changed an upstream's tls
 * group: in a worker, gives confs (a new version's copy of the upstream's
 * module confs) a new group made in pool from want's verify, sni and ca
 * (the CA file's name, for comparisons), with ca_pem the file's contents
 * as the master read them (the worker may not be able to read it), or no
 * group when want is NULL. LB_OK, or LB_ERROR with err saying why. */
typedef int (*lb_tls_upstream_rebuild_pt)(void **confs, lb_pool_t *pool,
                                          const lb_tls_upstream_t *want, const char *ca_pem,
                                          size_t ca_len, char *err, size_t size);
/* Registration, by the tls module at load, and its use. */
void lb_tls_set_upstream_rebuild(lb_tls_upstream_rebuild_pt rebuild);
int  lb_tls_upstream_rebuild(void **confs, lb_pool_t *pool, const lb_tls_upstream_t *want,
                             const char *ca_pem, size_t ca_len, char *err, size_t size);
/* Whether two upstream tls groups (either NULL: none) say the same. */
bool lb_tls_upstream_same(const lb_tls_upstream_t *a, const lb_tls_upstream_t *b);

/* A client context that checks no certificate (TLS 1.2 and up), made on
 * first use and kept for the process: for health checks of servers that
 * speak TLS to an upstream without a `tls` group. NULL when OpenSSL
 * cannot make one. */
lb_tls_ctx_t *lb_tls_client_unverified(void);

/* Whether c is on the TLS layer (its handshake done or running; lbctl's
 * connections for https URLs have the layer without a session). */
bool lb_conn_is_tls(const lb_conn_t *c);
/* Puts c on the TLS layer over a session that is already established (an
 * OpenSSL SSL *, as void * so that this header needs no OpenSSL): for
 * code that makes sessions itself, such as unit tests of TLS variables. */
void lb_tls_adopt(lb_conn_t *c, void *session);

/* The last OpenSSL error of this thread as text ("" when none), for log
 * lines; clears the queue. */
const char *lb_tls_error_text(void);
/* Why the client handshake of c failed, for the done callback of
 * lb_tls_connect: the server certificate check's failure when there was
 * one ("certificate has expired"), else lb_tls_error_text(); "" when
 * nothing says (the server closed the connection). */
const char *lb_tls_verify_error(lb_conn_t *c);

/* For variables: the negotiated server name, protocol and cipher of a TLS
 * connection ("" when not TLS, or none). The strings stay valid while c
 * is open. */
const char *lb_tls_sni(lb_conn_t *c);
const char *lb_tls_protocol(lb_conn_t *c);
const char *lb_tls_cipher(lb_conn_t *c);
/* The client certificate check: "SUCCESS", "NONE", or "FAILED:reason"
 * ("" when not TLS). The text stays valid until the next call. */
const char *lb_tls_client_verify(lb_conn_t *c);

#endif
