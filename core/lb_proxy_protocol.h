/*
 * lb_proxy_protocol.h: the PROXY protocol (HAProxy's proxy-protocol.txt,
 * versions 1 and 2): a parser for the header a load balancer in front of
 * lbd sends, a builder for the header lbd sends to its servers, and the
 * accept step that reads the header off an accepted connection. The parser
 * and the builder (lb_proxy_protocol.c) do no I/O; the step lives in
 * lb_proxy_accept.c.
 */
#ifndef LB_PROXY_PROTOCOL_H
#define LB_PROXY_PROTOCOL_H

#include <sys/socket.h>

/* v1: a text line of at most 107 bytes with its CRLF (spec §2.1). */
#define LB_PROXY_V1_MAX_LEN     107
/* v2: 16 fixed bytes, then addresses and TLVs: lbd accepts up to 1 KiB of
 * those, enough for addresses and the usual TLVs (ALPN, authority, CRC). */
#define LB_PROXY_V2_MAX_DATA    1024
#define LB_PROXY_MAX_LEN        (16 + LB_PROXY_V2_MAX_DATA)
/* What the builder writes at most: v1 TCP6 (104) or v2 INET6 (52). */
#define LB_PROXY_BUILD_MAX_LEN  LB_PROXY_V1_MAX_LEN

/* v2 TLV types the parser knows (spec §2.2.x). */
#define LB_PROXY_TLV_ALPN       0x01
#define LB_PROXY_TLV_AUTHORITY  0x02
#define LB_PROXY_TLV_CRC32C     0x03
#define LB_PROXY_TLV_NOOP       0x04
#define LB_PROXY_TLV_UNIQUE_ID  0x05
#define LB_PROXY_TLV_SSL        0x20

typedef struct {
    int                      version;   /* 1 or 2 */
    /* true: no addresses to use (v2 LOCAL, v1 UNKNOWN, an UNSPEC or UNIX
     * family, a datagram transport): the connection's own peer stands */
    bool                     local;
    size_t                   len;       /* bytes of the header, to consume */
    struct sockaddr_storage  src;       /* when !local: AF_INET or AF_INET6 */
    struct sockaddr_storage  dst;
    socklen_t                addr_len;  /* of src and dst */
    /* v2: the TLVs after the addresses, a view into the parsed bytes,
     * already checked to be well formed */
    const uint8_t           *tlv;
    size_t                   tlv_len;
} lb_proxy_header_t;

/* Parses a PROXY header at the start of buf[0..len). Restartable: call it
 * again with more bytes (the same ones first) until it decides.
 *   LB_OK     h is filled; the header is h->len bytes, the rest of buf is
 *             the connection's payload
 *   LB_AGAIN  buf is a valid beginning of a header: more bytes are needed
 *             (never once len >= LB_PROXY_MAX_LEN)
 *   LB_ERROR  not a valid header; *why says what is wrong (static text)
 * It reads no byte past the header. */
int lb_proxy_parse(lb_proxy_header_t *h, const uint8_t *buf, size_t len, const char **why);

/* Walks the TLVs of a parsed v2 header: *off starts at 0. Returns true and
 * sets type, value and value_len for the next one; false at the end. */
bool lb_proxy_tlv_next(const lb_proxy_header_t *h, size_t *off, uint8_t *type,
                       const uint8_t **value, size_t *value_len);

/* Builds a version 1 or 2 header saying that client connected to local,
 * into buf of size bytes (LB_PROXY_BUILD_MAX_LEN is always enough).
 * IPv4 with IPv6 is sent as IPv6 (v4-mapped); other families are sent as
 * UNKNOWN (v1) or LOCAL (v2). Returns the length, or 0 when size is too
 * small or version is not 1 or 2. */
size_t lb_proxy_build(int version, uint8_t *buf, size_t size,
                      const struct sockaddr *client, const struct sockaddr *local);

/* The accept step of listeners with accept_proxy_protocol = true: reads
 * the header (within LB_PROXY_ACCEPT_TIMEOUT), makes its source address
 * c->peer and calls lb_listener_next(c); closes c with a log line saying
 * why when the header is missing or invalid. */
#define LB_PROXY_ACCEPT_TIMEOUT  5000
void lb_proxy_protocol_accept_step(lb_conn_t *c);

/* The header of version 1 or 2 for an accepted connection: its client's
 * address (c->peer, which a PROXY header of its own may have set) and the
 * address it connected to. The length, or 0 with errno set. */
size_t lb_proxy_header_for(int version, lb_conn_t *c, uint8_t buf[LB_PROXY_BUILD_MAX_LEN]);
/* Sends that header on server, a connection that has just opened (its
 * empty socket buffer takes the few hundred bytes at once), before any
 * other byte and before TLS. LB_OK or LB_ERROR with errno set. */
int    lb_proxy_send_header(int version, lb_conn_t *c, lb_conn_t *server);

#endif
