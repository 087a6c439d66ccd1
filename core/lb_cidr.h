/*
 * lb_cidr.h: IP addresses and CIDR blocks (SPEC §3.3 allow / deny,
 * trusted_proxies). Text is parsed once, at configuration load, into
 * integers and masks; a lookup is a few integer operations per block and
 * never allocates, so it is safe on the per-request path.
 */
#ifndef LB_CIDR_H
#define LB_CIDR_H

#include <netinet/in.h>

/* Room for the text of any address, NUL included ("ffff:...:255.255.255.255"). */
#define LB_IP_TEXT_LEN    INET6_ADDRSTRLEN
/* Room for the text of any CIDR block, NUL included ("...::/128"). */
#define LB_CIDR_TEXT_LEN  (INET6_ADDRSTRLEN + sizeof("/128") - 1)

/* An address in comparable form. IPv4-mapped IPv6 addresses
 * (::ffff:1.2.3.4) are stored as the IPv4 address they carry, so a client
 * arriving on a dual-stack socket matches IPv4 blocks. */
typedef struct {
    int       family;       /* AF_INET or AF_INET6 */
    uint64_t  addr[2];      /* host byte order, most significant word first;
                               IPv4 is in the low 32 bits of addr[1] */
} lb_ip_t;

/* A block: the addresses whose first `prefix` bits equal those of addr. */
typedef struct {
    int       family;       /* AF_INET or AF_INET6 */
    unsigned  prefix;       /* 0..32 or 0..128 */
    uint64_t  addr[2];      /* as in lb_ip_t, host bits zero */
    uint64_t  mask[2];
} lb_cidr_t;

/* A list of blocks, built at load time. A zeroed list is valid and empty.
 * Lookup is a linear scan: lists in configurations are short (a handful
 * of proxies or networks) and a scan of a few 16-byte compares beats a
 * trie at that size; a trie is the change to make if lists grow to
 * hundreds. */
typedef struct {
    lb_array_t  cidrs;      /* of lb_cidr_t */
} lb_cidr_list_t;

/* Parses "10.0.0.0/8", "192.168.1.7" (a host: /32), "::1" (/128) or
 * "2001:db8::/32". Strict: no brackets, no zone index ("%eth0"), no
 * whitespace, no host names, and no bits set after the prefix ("10.0.0.1/8"
 * is refused, with the block it probably meant). A block inside
 * ::ffff:0:0/96 is stored as the IPv4 block it covers ("::ffff:10.0.0.0/104"
 * is 10.0.0.0/8); a wider IPv6 block (::/0) does not match IPv4 clients,
 * as in nginx. Returns LB_OK, or LB_ERROR with a reason in err. */
int lb_cidr_parse(const char *s, lb_cidr_t *out, char *err, size_t errlen);
/* Writes "10.0.0.0/8" (a host block too: "10.0.0.1/32"); returns the
 * length, snprintf-like. */
size_t lb_cidr_format(const lb_cidr_t *c, char *buf, size_t size);

bool lb_cidr_match_ip(const lb_cidr_t *c, const lb_ip_t *ip);
/* false for an address that is not AF_INET or AF_INET6 (a unix socket). */
bool lb_cidr_match(const lb_cidr_t *c, const struct sockaddr *sa);

/* Parses s and appends it to l, memory from pool. Returns LB_OK, or
 * LB_ERROR with a reason in err (the lb_cidr_parse one, or "out of memory"). */
int lb_cidr_list_add(lb_cidr_list_t *l, lb_pool_t *pool, const char *s,
                     char *err, size_t errlen);
bool lb_cidr_list_match_ip(const lb_cidr_list_t *l, const lb_ip_t *ip);
bool lb_cidr_list_match(const lb_cidr_list_t *l, const struct sockaddr *sa);
/* Whether the address written in ip[0..len) (not NUL-terminated; no
 * port, no brackets, no surrounding whitespace) is in l; false when it is
 * not an address at all. */
bool lb_cidr_list_match_text(const lb_cidr_list_t *l, const char *ip, size_t len);

static inline bool
lb_cidr_list_empty(const lb_cidr_list_t *l)
{
    return l->cidrs.nelts == 0;
}

/* The address in sa. Returns LB_OK, or LB_DECLINED for a family other
 * than AF_INET and AF_INET6. */
int lb_ip_from_sockaddr(const struct sockaddr *sa, lb_ip_t *out);
/* The address written in s[0..len): dotted-quad IPv4 or RFC 4291 IPv6
 * text, exactly (what inet_pton(3) accepts), nothing around it. No
 * allocation. Returns LB_OK or LB_ERROR. */
int lb_ip_parse(const char *s, size_t len, lb_ip_t *out);
/* Writes the canonical text ("10.0.0.1", "2001:db8::1"; an IPv4-mapped
 * address as plain IPv4); returns the length, snprintf-like. */
size_t lb_ip_format(const lb_ip_t *ip, char *buf, size_t size);

#endif
