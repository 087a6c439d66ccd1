/*
 * test_buf.c: the core containers: the bounded buffer (lb_buf), the region
 * allocator (lb_pool), the growable array (lb_array) and the intrusive
 * queue (lb_queue).
 */
#include "lb_core.h"

#include <check.h>

/* lb_buf ---------------------------------------------------------------- */

START_TEST(buf_append_and_consume)
{
    char      mem[16];
    lb_buf_t  b;

    lb_buf_init(&b, mem, sizeof(mem));
    ck_assert_uint_eq(lb_buf_size(&b), 16);
    ck_assert_uint_eq(lb_buf_len(&b), 0);
    ck_assert_uint_eq(lb_buf_room(&b), 16);

    ck_assert_uint_eq(lb_buf_append(&b, "hello", 5), 5);
    ck_assert_uint_eq(lb_buf_len(&b), 5);
    ck_assert_uint_eq(lb_buf_room(&b), 11);
    ck_assert_mem_eq(b.pos, "hello", 5);

    lb_buf_consume(&b, 2);
    ck_assert_uint_eq(lb_buf_len(&b), 3);
    ck_assert_ptr_eq(b.pos, mem + 2);
    ck_assert_mem_eq(b.pos, "llo", 3);
    ck_assert_uint_eq(lb_buf_room(&b), 11);    /* room is at the end only */
}
END_TEST

START_TEST(buf_consume_to_empty_rewinds)
{
    char      mem[16];
    lb_buf_t  b;

    lb_buf_init(&b, mem, sizeof(mem));
    lb_buf_append(&b, "0123456789", 10);
    lb_buf_consume(&b, 4);
    lb_buf_consume(&b, 6);
    ck_assert_uint_eq(lb_buf_len(&b), 0);
    ck_assert_ptr_eq(b.pos, mem);
    ck_assert_ptr_eq(b.last, mem);
    ck_assert_uint_eq(lb_buf_room(&b), 16);
}
END_TEST

START_TEST(buf_consume_more_than_len_empties)
{
    char      mem[16];
    lb_buf_t  b;

    lb_buf_init(&b, mem, sizeof(mem));
    lb_buf_append(&b, "abc", 3);
    lb_buf_consume(&b, 100);
    ck_assert_uint_eq(lb_buf_len(&b), 0);
    ck_assert_ptr_eq(b.pos, mem);
}
END_TEST

START_TEST(buf_compact_moves_unread_data_to_the_start)
{
    char      mem[16];
    lb_buf_t  b;

    lb_buf_init(&b, mem, sizeof(mem));
    lb_buf_append(&b, "0123456789", 10);
    lb_buf_consume(&b, 7);
    ck_assert_uint_eq(lb_buf_room(&b), 6);
    lb_buf_compact(&b);
    ck_assert_ptr_eq(b.pos, mem);
    ck_assert_uint_eq(lb_buf_len(&b), 3);
    ck_assert_mem_eq(b.pos, "789", 3);
    ck_assert_uint_eq(lb_buf_room(&b), 13);
}
END_TEST

START_TEST(buf_append_beyond_room_returns_what_fitted)
{
    char      mem[8];
    lb_buf_t  b;

    lb_buf_init(&b, mem, sizeof(mem));
    ck_assert_uint_eq(lb_buf_append(&b, "abcdefghijkl", 12), 8);
    ck_assert_uint_eq(lb_buf_len(&b), 8);
    ck_assert_uint_eq(lb_buf_room(&b), 0);
    ck_assert_mem_eq(b.pos, "abcdefgh", 8);
    ck_assert_uint_eq(lb_buf_append(&b, "x", 1), 0);
    ck_assert_mem_eq(b.pos, "abcdefgh", 8);
}
END_TEST

START_TEST(buf_append_compacts_to_make_room)
{
    char      mem[8];
    lb_buf_t  b;

    lb_buf_init(&b, mem, sizeof(mem));
    lb_buf_append(&b, "abcdef", 6);
    lb_buf_consume(&b, 4);                  /* "ef" left at offset 4 */
    ck_assert_uint_eq(lb_buf_room(&b), 2);
    /* 5 bytes do not fit at the end, but do once "ef" moves to the start */
    ck_assert_uint_eq(lb_buf_append(&b, "12345", 5), 5);
    ck_assert_ptr_eq(b.pos, mem);
    ck_assert_uint_eq(lb_buf_len(&b), 7);
    ck_assert_mem_eq(b.pos, "ef12345", 7);
    /* and a partial append after compaction */
    lb_buf_consume(&b, 3);
    ck_assert_uint_eq(lb_buf_append(&b, "XYZW", 4), 4);
    ck_assert_uint_eq(lb_buf_append(&b, "!!", 2), 0);
    ck_assert_mem_eq(b.pos, "2345XYZW", 8);
}
END_TEST

START_TEST(buf_create_from_a_pool)
{
    lb_pool_t  *pool = lb_pool_create(0);
    lb_buf_t   *b;

    ck_assert_ptr_nonnull(pool);
    b = lb_buf_create(pool, 100);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(lb_buf_size(b), 100);
    ck_assert_uint_eq(lb_buf_len(b), 0);
    ck_assert_uint_eq(lb_buf_append(b, "data", 4), 4);
    b = lb_buf_create(pool, 64 * 1024);       /* bigger than a pool block */
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(lb_buf_room(b), 64 * 1024);
    memset(b->last, 'x', lb_buf_room(b));
    lb_pool_destroy(pool);
}
END_TEST

/* lb_pool --------------------------------------------------------------- */

START_TEST(pool_allocations_are_aligned_to_16)
{
    static const size_t  sizes[] = { 1, 3, 7, 15, 16, 17, 33, 100, 127, 128, 129, 300, 5000 };
    lb_pool_t           *pool = lb_pool_create(256);
    size_t               i, k;
    char                *p;

    ck_assert_ptr_nonnull(pool);
    for (k = 0; k < 20; k++) {
        for (i = 0; i < lb_nelems(sizes); i++) {
            p = lb_palloc(pool, sizes[i]);
            ck_assert_ptr_nonnull(p);
            ck_assert_msg((uintptr_t) p % LB_POOL_ALIGN == 0,
                          "lb_palloc(%zu) returned %p", sizes[i], (void *) p);
            memset(p, 0xab, sizes[i]);
        }
    }
    lb_pool_destroy(pool);
}
END_TEST

START_TEST(pool_allocations_do_not_overlap)
{
    lb_pool_t      *pool = lb_pool_create(1024);
    unsigned char  *p[500];
    size_t          i, j, size;

    ck_assert_ptr_nonnull(pool);
    for (i = 0; i < lb_nelems(p); i++) {
        size = 1 + (i * 37) % 700;          /* small, and some above block/2 */
        p[i] = lb_palloc(pool, size);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], (int) (i & 0xff), size);
    }
    for (i = 0; i < lb_nelems(p); i++) {
        size = 1 + (i * 37) % 700;
        for (j = 0; j < size && p[i][j] == (unsigned char) (i & 0xff); j++) { /* scan */ }
        ck_assert_msg(j == size, "allocation %zu was overwritten at byte %zu", i, j);
    }
    lb_pool_destroy(pool);
}
END_TEST

START_TEST(pool_large_allocations)
{
    lb_pool_t  *pool = lb_pool_create(4096);
    char       *a, *b;

    ck_assert_ptr_nonnull(pool);
    a = lb_palloc(pool, 1 << 20);
    b = lb_palloc(pool, 3000);              /* above block_size / 2 */
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    memset(a, 1, 1 << 20);
    memset(b, 2, 3000);
    ck_assert_int_eq(a[(1 << 20) - 1], 1);
    ck_assert_int_eq(b[0], 2);
    ck_assert_ptr_nonnull(pool->large);
    lb_pool_destroy(pool);
}
END_TEST

START_TEST(pool_pcalloc_zeroes)
{
    lb_pool_t      *pool = lb_pool_create(256);
    unsigned char  *p;
    size_t          i;

    ck_assert_ptr_nonnull(pool);
    p = lb_palloc(pool, 64);
    memset(p, 0xff, 64);
    lb_pool_reset(pool);
    p = lb_pcalloc(pool, 64);               /* same memory as before */
    for (i = 0; i < 64 && p[i] == 0; i++) { /* scan */ }
    ck_assert_uint_eq(i, 64);
    lb_pool_destroy(pool);
}
END_TEST

START_TEST(pool_strings)
{
    lb_pool_t  *pool = lb_pool_create(0);

    ck_assert_ptr_nonnull(pool);
    ck_assert_str_eq(lb_pstrdup(pool, "upstream"), "upstream");
    ck_assert_str_eq(lb_pstrndup(pool, "upstream", 2), "up");
    ck_assert_str_eq(lb_pstrdup(pool, ""), "");
    ck_assert_str_eq(lb_psprintf(pool, "server #%d of %s", 3, "upstream \"web\""),
                     "server #3 of upstream \"web\"");
    lb_pool_destroy(pool);
}
END_TEST

static int  cleanup_runs[3];
static int  cleanup_order[3];
static int  ncleanups;

static void
count_cleanup(void *data)
{
    int  i = (int) (intptr_t) data;

    cleanup_runs[i]++;
    cleanup_order[ncleanups++] = i;
}

START_TEST(pool_reset_runs_cleanups_and_keeps_the_pool_usable)
{
    lb_pool_t  *pool = lb_pool_create(256);
    void       *first, *again;
    int         i;

    ck_assert_ptr_nonnull(pool);
    first = lb_palloc(pool, 32);
    for (i = 0; i < 100; i++) {
        ck_assert_ptr_nonnull(lb_palloc(pool, 100));    /* several blocks */
    }
    ck_assert_ptr_nonnull(lb_palloc(pool, 10000));      /* and a large one */
    ck_assert_int_eq(lb_pool_cleanup_add(pool, count_cleanup, (void *) 0), LB_OK);
    ck_assert_int_eq(lb_pool_cleanup_add(pool, count_cleanup, (void *) 1), LB_OK);

    lb_pool_reset(pool);
    ck_assert_int_eq(cleanup_runs[0], 1);
    ck_assert_int_eq(cleanup_runs[1], 1);
    /* the last registered runs first, like nginx */
    ck_assert_int_eq(cleanup_order[0], 1);
    ck_assert_int_eq(cleanup_order[1], 0);
    ck_assert_ptr_null(pool->large);
    ck_assert_ptr_null(pool->first->next);
    ck_assert_ptr_eq(pool->current, pool->first);

    /* as good as new: the first allocation lands where it did before */
    again = lb_palloc(pool, 32);
    ck_assert_ptr_eq(again, first);
    for (i = 0; i < 100; i++) {
        memset(lb_palloc(pool, 100), 0, 100);
    }

    lb_pool_destroy(pool);
    /* handlers run once: destroy does not run the reset's again */
    ck_assert_int_eq(cleanup_runs[0], 1);
    ck_assert_int_eq(cleanup_runs[1], 1);
}
END_TEST

START_TEST(pool_destroy_runs_cleanups)
{
    lb_pool_t  *pool = lb_pool_create(256);

    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(lb_pool_cleanup_add(pool, count_cleanup, (void *) 2), LB_OK);
    ck_assert_int_eq(cleanup_runs[2], 0);
    lb_pool_destroy(pool);
    ck_assert_int_eq(cleanup_runs[2], 1);
    lb_pool_destroy(NULL);
}
END_TEST

/* lb_array -------------------------------------------------------------- */

START_TEST(array_push_grows_and_preserves_content)
{
    lb_pool_t   *pool = lb_pool_create(256);
    lb_array_t   a;
    int64_t     *e;
    size_t       i;

    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(lb_array_init(&a, pool, 2, sizeof(int64_t)), LB_OK);
    ck_assert_uint_eq(a.nelts, 0);
    for (i = 0; i < 1000; i++) {
        e = lb_array_push(&a);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(*e, 0);                /* new elements are zeroed */
        *e = (int64_t) (i * i);
    }
    ck_assert_uint_eq(a.nelts, 1000);
    ck_assert_uint_ge(a.nalloc, 1000);
    for (i = 0; i < 1000 && lb_array_at(&a, int64_t, i) == (int64_t) (i * i); i++) { /* scan */ }
    ck_assert_msg(i == 1000, "element %zu lost its value", i);
    lb_pool_destroy(pool);
}
END_TEST

START_TEST(array_of_structs)
{
    typedef struct { char name[24]; int weight; } item_t;
    lb_pool_t   *pool = lb_pool_create(0);
    lb_array_t   a;
    item_t      *it;

    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(lb_array_init(&a, pool, 0, sizeof(item_t)), LB_OK);   /* n 0 -> 1 */
    it = lb_array_push(&a);
    strcpy(it->name, "a");
    it->weight = 5;
    it = lb_array_push(&a);
    strcpy(it->name, "b");
    it->weight = 1;
    it = lb_array_push(&a);
    ck_assert_str_eq(it->name, "");
    ck_assert_uint_eq(a.nelts, 3);
    ck_assert_str_eq(lb_array_at(&a, item_t, 0).name, "a");
    ck_assert_int_eq(lb_array_at(&a, item_t, 0).weight, 5);
    ck_assert_str_eq(lb_array_at(&a, item_t, 1).name, "b");
    ck_assert_int_eq(lb_array_at(&a, item_t, 1).weight, 1);
    lb_pool_destroy(pool);
}
END_TEST

/* lb_queue -------------------------------------------------------------- */

typedef struct {
    char        name;
    lb_queue_t  link;
} qitem_t;

/* The names of the elements of h, head to tail. */
static const char *
queue_names(lb_queue_t *h)
{
    static char  s[32];
    lb_queue_t  *q;
    size_t       n = 0;

    for (q = lb_queue_head(h); q != h && n < sizeof(s) - 1; q = q->next) {
        s[n++] = lb_queue_data(q, qitem_t, link)->name;
    }
    s[n] = '\0';
    return s;
}

START_TEST(queue_insert_and_remove)
{
    qitem_t     a = { 'a' }, b = { 'b' }, c = { 'c' }, d = { 'd' };
    lb_queue_t  h;

    lb_queue_init(&h);
    ck_assert(lb_queue_empty(&h));
    lb_queue_insert_tail(&h, &a.link);
    lb_queue_insert_tail(&h, &b.link);
    lb_queue_insert_tail(&h, &c.link);
    ck_assert(!lb_queue_empty(&h));
    ck_assert_str_eq(queue_names(&h), "abc");
    lb_queue_insert_head(&h, &d.link);
    ck_assert_str_eq(queue_names(&h), "dabc");
    ck_assert_ptr_eq(lb_queue_data(lb_queue_head(&h), qitem_t, link), &d);
    ck_assert_ptr_eq(h.prev, &c.link);

    lb_queue_remove(&b.link);
    ck_assert_str_eq(queue_names(&h), "dac");
    ck_assert_ptr_eq(b.link.next, &b.link);
    ck_assert_ptr_eq(b.link.prev, &b.link);
    lb_queue_remove(&b.link);               /* removing twice is safe */
    ck_assert_str_eq(queue_names(&h), "dac");

    lb_queue_remove(&d.link);
    lb_queue_remove(&c.link);
    ck_assert_str_eq(queue_names(&h), "a");
    lb_queue_remove(&a.link);
    ck_assert(lb_queue_empty(&h));
    ck_assert_ptr_eq(h.next, &h);
    ck_assert_ptr_eq(h.prev, &h);
}
END_TEST

static Suite *
buf_suite(void)
{
    Suite  *s = suite_create("buf");
    TCase  *tc;

    tc = tcase_create("buf");
    tcase_add_test(tc, buf_append_and_consume);
    tcase_add_test(tc, buf_consume_to_empty_rewinds);
    tcase_add_test(tc, buf_consume_more_than_len_empties);
    tcase_add_test(tc, buf_compact_moves_unread_data_to_the_start);
    tcase_add_test(tc, buf_append_beyond_room_returns_what_fitted);
    tcase_add_test(tc, buf_append_compacts_to_make_room);
    tcase_add_test(tc, buf_create_from_a_pool);
    suite_add_tcase(s, tc);

    tc = tcase_create("pool");
    tcase_add_test(tc, pool_allocations_are_aligned_to_16);
    tcase_add_test(tc, pool_allocations_do_not_overlap);
    tcase_add_test(tc, pool_large_allocations);
    tcase_add_test(tc, pool_pcalloc_zeroes);
    tcase_add_test(tc, pool_strings);
    tcase_add_test(tc, pool_reset_runs_cleanups_and_keeps_the_pool_usable);
    tcase_add_test(tc, pool_destroy_runs_cleanups);
    suite_add_tcase(s, tc);

    tc = tcase_create("array");
    tcase_add_test(tc, array_push_grows_and_preserves_content);
    tcase_add_test(tc, array_of_structs);
    suite_add_tcase(s, tc);

    tc = tcase_create("queue");
    tcase_add_test(tc, queue_insert_and_remove);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(buf_suite());
    int       failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
