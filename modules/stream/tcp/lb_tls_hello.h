/*
 * lb_tls_hello.h: finding the server name (SNI, RFC 6066 §3) in a TLS
 * ClientHello without terminating TLS, for sni_routes on tcp listeners.
 * The parser follows the bytes as they arrive: TLS records (RFC 8446
 * §5.1) are unwrapped as they come and the handshake message is gathered
 * across records, so a ClientHello split over segments or records is read
 * as well as one in a single packet. No I/O, no allocation.
 */
#ifndef LB_TLS_HELLO_H
#define LB_TLS_HELLO_H

#include "lb_core.h"

/* The longest ClientHello accepted (its body, without the 4-byte handshake
 * header). Browsers send under 2 KiB; post-quantum key shares a little
 * more. */
#define LB_TLS_HELLO_MAX  16384

typedef struct {
    size_t    off;          /* input bytes consumed (record headers and data) */
    size_t    rec_left;     /* bytes of the current record not consumed yet */
    size_t    msg_len;      /* handshake bytes gathered in msg */
    size_t    msg_need;     /* 4 + body length, once the header is in; else 0 */
    uint8_t   msg[4 + LB_TLS_HELLO_MAX];
} lb_tls_hello_t;

static inline void lb_tls_hello_init(lb_tls_hello_t *h) { h->off = h->rec_left = h->msg_len = h->msg_need = 0; }

/* Parses the client's first bytes, data[0..len): each call must pass all
 * the bytes so far (the previous ones first, unchanged); only the new ones
 * are looked at.
 *   LB_OK        a ClientHello with a host_name: *sni views it (inside h,
 *                valid while h lives; not checked to be a valid name)
 *   LB_DECLINED  a complete ClientHello without a server_name extension
 *   LB_AGAIN     so far a valid beginning: more bytes are needed
 *   LB_ERROR     not a TLS ClientHello, malformed, or over the limit;
 *                *why says why (static text)
 * Once it returned something other than LB_AGAIN, h must be reset before
 * it is used again. */
int lb_tls_hello_parse(lb_tls_hello_t *h, const uint8_t *data, size_t len,
                       lb_str_t *sni, const char **why);

#endif
