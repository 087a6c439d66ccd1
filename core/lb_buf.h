/*
 * lb_buf.h: a bounded byte buffer. Data lives in [pos, last) inside
 * [start, end); readers consume from pos, writers append at last. A buffer
 * never grows: when it is full the producer waits for the consumer.
 */
#ifndef LB_BUF_H
#define LB_BUF_H

struct lb_buf_s {
    char  *start;
    char  *end;
    char  *pos;
    char  *last;
};

static inline size_t lb_buf_len(const lb_buf_t *b)   { return (size_t) (b->last - b->pos); }
static inline size_t lb_buf_room(const lb_buf_t *b)  { return (size_t) (b->end - b->last); }
static inline size_t lb_buf_size(const lb_buf_t *b)  { return (size_t) (b->end - b->start); }
static inline void   lb_buf_reset(lb_buf_t *b)       { b->pos = b->last = b->start; }

/* Initialises b over memory the caller owns. */
void      lb_buf_init(lb_buf_t *b, char *mem, size_t size);
/* Allocates the buffer and its memory from a pool; NULL on failure. */
lb_buf_t *lb_buf_create(lb_pool_t *pool, size_t size);
/* Moves unread data to the start, so the room at the end is maximal. */
void      lb_buf_compact(lb_buf_t *b);
/* Appends up to n bytes; returns how many fitted. */
size_t    lb_buf_append(lb_buf_t *b, const void *data, size_t n);
/* Marks n bytes consumed (n <= lb_buf_len); an emptied buffer is rewound. */
void      lb_buf_consume(lb_buf_t *b, size_t n);

#endif
