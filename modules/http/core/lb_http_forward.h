/*
 * lb_http_forward.h: what the http proxy adds to a forwarded request
 * (SPEC §3.5): the real client address behind trusted proxies, the
 * X-Forwarded-For value per `xff`, and X-Request-ID checking and
 * generation. Pure functions over a parsed request; nothing allocates.
 */
#ifndef LB_HTTP_FORWARD_H
#define LB_HTTP_FORWARD_H

#include "lb_core.h"
#include "lb_http_parse.h"

typedef enum {
    LB_HTTP_XFF_APPEND = 0,       /* what the client sent, then the address */
    LB_HTTP_XFF_REPLACE,          /* the address only */
    LB_HTTP_XFF_OFF,              /* the fields as the client sent them */
} lb_http_xff_mode_t;

/* The client address: the peer's own, unless the peer is in trusted (a
 * non-empty list) and sent X-Forwarded-For. Then the entries of every
 * X-Forwarded-For field, in order, split on ',' with spaces and tabs
 * trimmed and empty elements skipped, are walked from the right (the
 * nearest hop) while they are trusted; the result is the first untrusted
 * one, or the leftmost if all are trusted. An entry that is not a plain
 * address ("unknown", "1.2.3.4:80", "[::1]", garbage) ends the walk and
 * never becomes the client: the result is then the last valid address
 * seen, that is the claim of the nearest trusted hop, or the peer itself.
 * An entry is returned as written (a view into the request buffer, only
 * hex digits, '.' and ':' since it parsed as an address); the peer's
 * address is written into buf, canonical, IPv4-mapped IPv6 as plain
 * IPv4, a unix socket as "unix:". req may be NULL. Returns true when
 * client_ip came from X-Forwarded-For. */
bool lb_http_real_client(const lb_http_msg_t *req, const struct sockaddr *peer,
                         const lb_cidr_list_t *trusted, lb_str_t *client_ip,
                         char buf[LB_IP_TEXT_LEN]);

/* The X-Forwarded-For value to send upstream, snprintf-like: writes at
 * most size bytes (no NUL) and returns the full length, so
 * lb_http_xff_value(mode, req, ip, NULL, 0) sizes the buffer.
 *   append   the values of the client's X-Forwarded-For fields in order,
 *            joined with ", " (empty values skipped), then ", " and
 *            client_ip; client_ip alone when there are none;
 *   replace  client_ip alone;
 *   off      0: leave the client's fields untouched (not rewritten,
 *            not merged, not removed, nothing added).
 * Which address to pass is the caller's: for append the peer's own (each
 * hop adds whom it heard from, as HAProxy does; it is the client unless
 * the peer is a trusted proxy), for replace the real client. */
size_t lb_http_xff_value(lb_http_xff_mode_t mode, const lb_http_msg_t *req,
                         lb_str_t client_ip, char *buf, size_t size);

#define LB_HTTP_REQUEST_ID_MAX  64
#define LB_HTTP_REQUEST_ID_LEN  32    /* generated ids: hex digits */

/* Whether a client's X-Request-ID may be kept: 1 to 64 bytes of
 * [A-Za-z0-9._-]. That covers UUIDs, hex and base64url ids from other
 * proxies, and keeps out anything that could split a log line or a
 * header (spaces, quotes, commas, control bytes). */
bool lb_http_request_id_valid(lb_str_t v);

/* Writes a new id: 32 lowercase hex digits and a NUL. No syscall, no
 * allocation: a per-thread 128-bit key is drawn once from getrandom(2)
 * (and again in a child after fork), then the n-th id of a thread is a
 * splitmix64 mix of key and n. Ids of one thread never repeat (the first
 * 64 bits are a bijection of n); the last 64 bits are a bijection of the
 * first keyed by the key's second half, so two threads or processes can
 * give an equal id only if those halves are equal: a 2^-64 chance, however
 * many ids they make. Ids are unique, not secret: they can be predicted
 * from earlier ones, so never use one as a token. */
void lb_http_request_id_new(char out[LB_HTTP_REQUEST_ID_LEN + 1]);

#endif
