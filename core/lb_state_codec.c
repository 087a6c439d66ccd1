/*
 * lb_state_codec.c: the upgrade state blob's writer and reader
 * (lb_state.h), apart from the cycle so that the parser can be tested and
 * fuzzed alone. The reader trusts nothing: the blob comes from another
 * binary, possibly another version, possibly cut short.
 */
#include "lb_core.h"
#include "lb_state.h"

#define LB_STATE_MAGIC      "LBDSTATE"
#define LB_STATE_MAGIC_LEN  (sizeof(LB_STATE_MAGIC) - 1)
#define LB_STATE_VERSION    2
#define LB_STATE_HEADER     (LB_STATE_MAGIC_LEN + 1 + 4)
#define LB_STATE_INT        1
#define LB_STATE_BYTES      2

static void
lb_state_put32(u_char *p, uint32_t v)
{
    p[0] = (u_char) (v >> 24);
    p[1] = (u_char) (v >> 16);
    p[2] = (u_char) (v >> 8);
    p[3] = (u_char) v;
}

static uint32_t
lb_state_get32(const u_char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* Room for n more bytes; false (and remembered) when there is none. */
static bool
lb_state_room(lb_state_writer_t *w, size_t n)
{
    size_t   cap;
    u_char  *p;

    if (w->failed) {
        return false;
    }
    if (n > UINT32_MAX || w->len + n > UINT32_MAX) {
        w->failed = true;       /* no length field could say it */
        return false;
    }
    if (w->len + n <= w->cap) {
        return true;
    }
    cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n) {
        cap *= 2;
    }
    p = realloc(w->buf, cap);
    if (p == NULL) {
        w->failed = true;
        return false;
    }
    w->buf = p;
    w->cap = cap;
    return true;
}

static void
lb_state_put_name(lb_state_writer_t *w, const char *name)
{
    size_t  n = strlen(name);

    if (n == 0 || n > LB_STATE_NAME_MAX) {
        w->failed = true;
        return;
    }
    if (lb_state_room(w, 1 + n)) {
        w->buf[w->len++] = (u_char) n;
        memcpy(w->buf + w->len, name, n);
        w->len += n;
    }
}

void
lb_state_writer_init(lb_state_writer_t *w)
{
    memset(w, 0, sizeof(*w));
    if (lb_state_room(w, LB_STATE_HEADER)) {
        memcpy(w->buf, LB_STATE_MAGIC, LB_STATE_MAGIC_LEN);
        w->buf[LB_STATE_MAGIC_LEN] = LB_STATE_VERSION;
        w->len = LB_STATE_HEADER;       /* the length is written by finish */
    }
}

void
lb_state_record_begin(lb_state_writer_t *w, const char *module, const char *type)
{
    lb_state_put_name(w, module);
    lb_state_put_name(w, type);
    if (lb_state_room(w, 4)) {
        w->record = w->len;
        w->len += 4;
    }
}

static void
lb_state_put_field(lb_state_writer_t *w, const char *key, u_char kind, const void *p,
                   size_t n)
{
    if (w->record == 0) {
        w->failed = true;       /* a field outside a record: the caller's bug */
        return;
    }
    lb_state_put_name(w, key);
    if (lb_state_room(w, 1 + 4 + n)) {
        w->buf[w->len] = kind;
        lb_state_put32(w->buf + w->len + 1, (uint32_t) n);
        if (n) {
            memcpy(w->buf + w->len + 5, p, n);
        }
        w->len += 5 + n;
    }
}

void
lb_state_put_int(lb_state_writer_t *w, const char *key, int64_t v)
{
    u_char    b[8];
    uint64_t  u = (uint64_t) v;
    int       i;

    for (i = 7; i >= 0; i--) {
        b[i] = (u_char) u;
        u >>= 8;
    }
    lb_state_put_field(w, key, LB_STATE_INT, b, sizeof(b));
}

void
lb_state_put_bytes(lb_state_writer_t *w, const char *key, const void *p, size_t n)
{
    lb_state_put_field(w, key, LB_STATE_BYTES, p, n);
}

void
lb_state_put_str(lb_state_writer_t *w, const char *key, const char *s)
{
    lb_state_put_field(w, key, LB_STATE_BYTES, s, strlen(s));
}

void
lb_state_record_end(lb_state_writer_t *w)
{
    if (w->record == 0) {
        w->failed = true;
        return;
    }
    if (!w->failed) {
        lb_state_put32(w->buf + w->record, (uint32_t) (w->len - w->record - 4));
    }
    w->record = 0;
}

int
lb_state_writer_finish(lb_state_writer_t *w, u_char **blob, size_t *len)
{
    if (w->failed || w->record != 0 || w->buf == NULL) {
        free(w->buf);
        memset(w, 0, sizeof(*w));
        return LB_ERROR;
    }
    lb_state_put32(w->buf + LB_STATE_MAGIC_LEN + 1, (uint32_t) (w->len - LB_STATE_HEADER));
    *blob = w->buf;
    *len = w->len;
    memset(w, 0, sizeof(*w));
    return LB_OK;
}

/* Reading ----------------------------------------------------------------- */

/* A name at p[*off..end): 1..LB_STATE_NAME_MAX bytes, no NUL. */
static const char *
lb_state_name(const u_char *p, size_t end, size_t *off, size_t *n)
{
    if (*off >= end) {
        return "is cut short in a name";
    }
    *n = p[*off];
    if (*n == 0 || *n > LB_STATE_NAME_MAX) {
        return "has a name of a bad length";
    }
    if (end - *off - 1 < *n) {
        return "is cut short in a name";
    }
    if (memchr(p + *off + 1, '\0', *n) != NULL) {
        return "has a name with a NUL byte";
    }
    *off += 1 + *n;
    return NULL;
}

/* The fields of one record, p[off..end). */
static const char *
lb_state_check_fields(const u_char *p, size_t off, size_t end)
{
    const char  *why;
    size_t       n, vlen;
    u_char       kind;

    while (off < end) {
        if ((why = lb_state_name(p, end, &off, &n)) != NULL) {
            return why;
        }
        if (end - off < 5) {
            return "is cut short in a field";
        }
        kind = p[off];
        vlen = lb_state_get32(p + off + 1);
        off += 5;
        if (vlen > end - off) {
            return "has a field longer than its record";
        }
        if (kind == LB_STATE_INT && vlen != 8) {
            return "has an integer field that is not 8 bytes";
        }
        if (kind != LB_STATE_INT && kind != LB_STATE_BYTES) {
            return "has a field of an unknown kind";
        }
        off += vlen;
    }
    return NULL;
}

int
lb_state_check(const u_char *blob, size_t len, char *err, size_t errlen)
{
    const char  *why;
    size_t       off, n, body, nrec = 0;

    if (len < LB_STATE_MAGIC_LEN + 1
        || memcmp(blob, LB_STATE_MAGIC, LB_STATE_MAGIC_LEN) != 0)
    {
        snprintf(err, errlen, "the upgrade state is not lbd's");
        return LB_ERROR;
    }
    if (blob[LB_STATE_MAGIC_LEN] == 1 && len == LB_STATE_MAGIC_LEN + 1) {
        return LB_OK;           /* the header-only version: nothing to carry */
    }
    if (blob[LB_STATE_MAGIC_LEN] != LB_STATE_VERSION) {
        snprintf(err, errlen, "the upgrade state is of version %u; this lbd reads version %u",
                 blob[LB_STATE_MAGIC_LEN], LB_STATE_VERSION);
        return LB_ERROR;
    }
    if (len < LB_STATE_HEADER
        || lb_state_get32(blob + LB_STATE_MAGIC_LEN + 1) != len - LB_STATE_HEADER)
    {
        snprintf(err, errlen, "the upgrade state is %zu bytes, not the length its header "
                 "says: cut short or padded", len);
        return LB_ERROR;
    }
    off = LB_STATE_HEADER;
    while (off < len) {
        nrec++;
        if ((why = lb_state_name(blob, len, &off, &n)) != NULL
            || (why = lb_state_name(blob, len, &off, &n)) != NULL)
        {
            goto bad;
        }
        if (len - off < 4) {
            why = "is cut short in a record's length";
            goto bad;
        }
        body = lb_state_get32(blob + off);
        off += 4;
        if (body > len - off) {
            why = "has a record longer than the state";
            goto bad;
        }
        if ((why = lb_state_check_fields(blob, off, off + body)) != NULL) {
            goto bad;
        }
        off += body;
    }
    return LB_OK;

bad:
    snprintf(err, errlen, "the upgrade state's record %zu %s", nrec, why);
    return LB_ERROR;
}

int
lb_state_next(const u_char *blob, size_t len, size_t *off, lb_state_record_t *r)
{
    size_t  n;

    if (*off == 0) {
        *off = LB_STATE_HEADER;
    }
    if (len < LB_STATE_HEADER || *off >= len) {
        return LB_DONE;
    }
    n = blob[*off];
    memcpy(r->module, blob + *off + 1, n);
    r->module[n] = '\0';
    *off += 1 + n;
    n = blob[*off];
    memcpy(r->type, blob + *off + 1, n);
    r->type[n] = '\0';
    *off += 1 + n;
    r->len = lb_state_get32(blob + *off);
    r->fields = blob + *off + 4;
    *off += 4 + r->len;
    return LB_OK;
}

/* The value of key of that kind in a checked record, or NULL. */
static const u_char *
lb_state_field(const lb_state_record_t *r, const char *key, u_char kind, size_t *vlen)
{
    size_t  off = 0, n, klen = strlen(key);

    while (off < r->len) {
        n = r->fields[off];
        *vlen = lb_state_get32(r->fields + off + 1 + n + 1);
        if (n == klen && memcmp(r->fields + off + 1, key, n) == 0
            && r->fields[off + 1 + n] == kind)
        {
            return r->fields + off + 1 + n + 5;
        }
        off += 1 + n + 5 + *vlen;
    }
    return NULL;
}

bool
lb_state_get_int(const lb_state_record_t *r, const char *key, int64_t *v)
{
    const u_char  *p;
    uint64_t       u = 0;
    size_t         n, i;

    p = lb_state_field(r, key, LB_STATE_INT, &n);
    if (p == NULL) {
        return false;
    }
    for (i = 0; i < 8; i++) {
        u = u << 8 | p[i];
    }
    *v = (int64_t) u;
    return true;
}

const u_char *
lb_state_get_bytes(const lb_state_record_t *r, const char *key, size_t *n)
{
    return lb_state_field(r, key, LB_STATE_BYTES, n);
}

bool
lb_state_get_str(const lb_state_record_t *r, const char *key, char *out, size_t size)
{
    const u_char  *p;
    size_t         n;

    p = lb_state_field(r, key, LB_STATE_BYTES, &n);
    if (p == NULL || n >= size || memchr(p, '\0', n) != NULL) {
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}
