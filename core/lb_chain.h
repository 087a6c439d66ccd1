/*
 * lb_chain.h: a chain of byte ranges on their way through a pipeline of
 * filters (the http output path). A link is a view: it points at bytes
 * someone else owns and does not copy them. A consumer takes bytes by
 * moving pos forward; what it leaves, the producer still owns and must
 * keep as it is until a later call takes it. That is the whole
 * back-pressure contract: a producer whose links are not all taken reads
 * no more.
 */
#ifndef LB_CHAIN_H
#define LB_CHAIN_H

typedef struct lb_chain_s  lb_chain_t;

struct lb_chain_s {
    lb_chain_t  *next;
    const char  *pos;           /* the bytes not yet taken: [pos, last) */
    const char  *last;
    unsigned     trailer:1;     /* one trailer field line, "Name: value"
                                   without CRLF, after all the data */
};

static inline size_t
lb_chain_link_len(const lb_chain_t *cl)
{
    return (size_t) (cl->last - cl->pos);
}

static inline void
lb_chain_link_set(lb_chain_t *cl, const void *data, size_t len)
{
    cl->next = NULL;
    cl->pos = data;
    cl->last = (const char *) data + len;
    cl->trailer = 0;
}

/* Bytes not yet taken in the whole chain (trailer lines included). */
size_t      lb_chain_len(const lb_chain_t *cl);
/* The first link with bytes left, or NULL. */
lb_chain_t *lb_chain_first(lb_chain_t *cl);
/* Links arr[0..n) in order into one chain and returns its head (NULL for
 * n == 0). */
lb_chain_t *lb_chain_link_array(lb_chain_t *arr, size_t n);

#endif
