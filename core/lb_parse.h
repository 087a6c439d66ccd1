/*
 * lb_parse.h: parsers for the value forms of the configuration (SPEC §3):
 * durations, sizes and addresses, plus the edit distance behind
 * "did you mean" suggestions. Pure functions: no allocation, no globals.
 */
#ifndef LB_PARSE_H
#define LB_PARSE_H

#include <sys/un.h>
#include <netinet/in.h>

#define LB_ADDR_TEXT_LEN  (INET6_ADDRSTRLEN + sizeof("[]:65535"))

struct lb_addr_s {
    union {
        struct sockaddr          sa;
        struct sockaddr_in       sin;
        struct sockaddr_in6      sin6;
        struct sockaddr_un       sun;
        struct sockaddr_storage  ss;
    } u;
    socklen_t  len;
    bool       wildcard;                    /* "*:PORT" */
    char       text[sizeof(struct sockaddr_un) + 8];   /* canonical form */
};

/* "250ms", "5s", "2m", "1h", "1d" or plain seconds "30" -> milliseconds.
 * Returns LB_OK or LB_ERROR (malformed, negative or overflowing). */
int lb_parse_duration(const char *s, lb_msec_t *out);
/* "512", "16k", "8m", "1g" -> bytes. Returns LB_OK or LB_ERROR. */
int lb_parse_size(const char *s, int64_t *out);
/* "127.0.0.1:8080", "[::1]:8080", "*:8080", "unix:/path".
 * Returns LB_OK, or LB_ERROR with a reason in err. */
int lb_parse_addr(const char *s, lb_addr_t *out, char *err, size_t errlen);
/* Writes the canonical text of a socket address ("1.2.3.4:80",
 * "[::1]:80", "unix:/p"); returns its length. */
size_t lb_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
bool lb_addr_equal(const lb_addr_t *a, const lb_addr_t *b);
/* Whether two listening addresses would take the same connections: equal,
 * or the same family and port with either one a wildcard. */
bool lb_addr_overlaps(const lb_addr_t *a, const lb_addr_t *b);

/* The value of hex digit c (either case), or -1. */
static inline int
lb_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char) (c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Levenshtein distance between two short strings (capped at 255). */
unsigned lb_edit_distance(const char *a, const char *b);
/* The candidate closest to `word` if it is close enough to be a plausible
 * typo (distance <= max(1, len/3)), else NULL. candidates is NULL-terminated. */
const char *lb_did_you_mean(const char *word, const char *const *candidates);

#endif
