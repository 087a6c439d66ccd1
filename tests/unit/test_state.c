/*
 * test_state.c: the state a binary upgrade carries (core/lb_state.h). The
 * codec: a round trip, and the refusal of every truncation, every length
 * that disagrees, an unknown version or field kind. Then the modules'
 * records through lb_state_save and lb_state_load between two
 * configurations loaded in this process, each with zones of its own (as
 * a new master's are): what still matches is applied, what the new file
 * dropped is skipped.
 */
#include "lb_core.h"
#include "lb_upstream.h"
#include "lb_upstream_sticky.h"
#include "lb_state.h"

#include <check.h>

#define LB_TEST_NAME  "state"
#include "lb_test_files.h"

/* The codec -------------------------------------------------------------- */

static u_char  *blob;
static size_t   blob_len;

static void
build_blob(void)
{
    lb_state_writer_t  w;

    lb_state_writer_init(&w);
    lb_state_record_begin(&w, "core_upstream", "server");
    lb_state_put_str(&w, "upstream", "web");
    lb_state_put_int(&w, "weight", -7);
    lb_state_put_bytes(&w, "empty", "", 0);
    lb_state_record_end(&w);
    lb_state_record_begin(&w, "a_module_from_the_future", "whatever");
    lb_state_put_int(&w, "x", INT64_MAX);
    lb_state_record_end(&w);
    lb_state_record_begin(&w, "core", "empty");
    lb_state_record_end(&w);
    ck_assert_int_eq(lb_state_writer_finish(&w, &blob, &blob_len), LB_OK);
}

static void
free_blob(void)
{
    free(blob);
    blob = NULL;
}

START_TEST(round_trip)
{
    lb_state_record_t  r;
    char               err[256], s[16];
    size_t             off = 0, n;
    int64_t            v;

    build_blob();
    ck_assert_int_eq(lb_state_check(blob, blob_len, err, sizeof(err)), LB_OK);

    ck_assert_int_eq(lb_state_next(blob, blob_len, &off, &r), LB_OK);
    ck_assert_str_eq(r.module, "core_upstream");
    ck_assert_str_eq(r.type, "server");
    ck_assert(lb_state_get_str(&r, "upstream", s, sizeof(s)));
    ck_assert_str_eq(s, "web");
    ck_assert(lb_state_get_int(&r, "weight", &v));
    ck_assert_int_eq(v, -7);
    ck_assert_ptr_nonnull(lb_state_get_bytes(&r, "empty", &n));
    ck_assert_uint_eq(n, 0);
    /* absent, or of another kind, or too long for the buffer */
    ck_assert(!lb_state_get_int(&r, "drain", &v));
    ck_assert(!lb_state_get_int(&r, "upstream", &v));
    ck_assert(!lb_state_get_str(&r, "weight", s, sizeof(s)));
    ck_assert(!lb_state_get_str(&r, "upstream", s, 3));

    ck_assert_int_eq(lb_state_next(blob, blob_len, &off, &r), LB_OK);
    ck_assert_str_eq(r.module, "a_module_from_the_future");
    ck_assert(lb_state_get_int(&r, "x", &v));
    ck_assert_int_eq(v, INT64_MAX);
    ck_assert_int_eq(lb_state_next(blob, blob_len, &off, &r), LB_OK);
    ck_assert_str_eq(r.type, "empty");
    ck_assert_uint_eq(r.len, 0);
    ck_assert_int_eq(lb_state_next(blob, blob_len, &off, &r), LB_DONE);
    free_blob();
}
END_TEST

START_TEST(every_truncation_is_refused)
{
    char    err[256];
    size_t  n;

    build_blob();
    for (n = 0; n < blob_len; n++) {
        err[0] = '\0';
        ck_assert_msg(lb_state_check(blob, n, err, sizeof(err)) == LB_ERROR,
                      "cut at %zu of %zu was taken", n, blob_len);
        ck_assert_msg(err[0] != '\0' && strchr(err, '\n') == NULL, "cut at %zu: no reason", n);
    }
    free_blob();
}
END_TEST

START_TEST(padding_and_wrong_lengths_are_refused)
{
    u_char  *b;
    char     err[256];
    size_t   i;

    build_blob();
    b = malloc(blob_len + 1);
    ck_assert_ptr_nonnull(b);

    /* one byte more than the header says */
    memcpy(b, blob, blob_len);
    b[blob_len] = 0;
    ck_assert_int_eq(lb_state_check(b, blob_len + 1, err, sizeof(err)), LB_ERROR);

    /* any length byte of the body changed (and the header's length
     * adjusted so that only the inner one disagrees): every byte of the
     * body is flipped in turn; what still checks must still iterate */
    for (i = 13; i < blob_len; i++) {
        lb_state_record_t  r;
        size_t             off = 0, nrec = 0;

        memcpy(b, blob, blob_len);
        b[i] ^= 0x80;
        if (lb_state_check(b, blob_len, err, sizeof(err)) == LB_OK) {
            while (lb_state_next(b, blob_len, &off, &r) == LB_OK) {
                ck_assert_uint_le(off, blob_len);
                nrec++;
            }
            ck_assert_uint_eq(nrec, 3);
        } else {
            ck_assert(err[0] != '\0');
        }
    }

    /* the first record's length one too big, one too small */
    memcpy(b, blob, blob_len);
    i = 13 + 1 + strlen("core_upstream") + 1 + strlen("server") + 3;
    b[i]++;
    ck_assert_int_eq(lb_state_check(b, blob_len, err, sizeof(err)), LB_ERROR);
    b[i] -= 2;
    ck_assert_int_eq(lb_state_check(b, blob_len, err, sizeof(err)), LB_ERROR);
    free(b);
    free_blob();
}
END_TEST

START_TEST(versions)
{
    u_char  b[16];
    char    err[256];

    build_blob();
    memcpy(b, blob, 13);
    b[8] = 3;
    b[9] = b[10] = b[11] = b[12] = 0;
    ck_assert_int_eq(lb_state_check(b, 13, err, sizeof(err)), LB_ERROR);
    ck_assert_str_eq(err, "the upgrade state is of version 3; this lbd reads version 2");
    /* the header-only version 1 of the binary before: nothing to carry */
    b[8] = 1;
    ck_assert_int_eq(lb_state_check(b, 9, err, sizeof(err)), LB_OK);
    ck_assert_int_eq(lb_state_check(b, 10, err, sizeof(err)), LB_ERROR);
    memcpy(b, "LBDSTATX", 8);
    ck_assert_int_eq(lb_state_check(b, 9, err, sizeof(err)), LB_ERROR);
    ck_assert_str_eq(err, "the upgrade state is not lbd's");
    free_blob();
}
END_TEST

/* A blob with one record holding one field, its bytes given. */
static size_t
one_field(u_char *b, const u_char *field, size_t n)
{
    static const u_char  head[] = "LBDSTATE\x02\0\0\0\0" "\x01m\x01t";
    size_t               len = sizeof(head) - 1;

    memcpy(b, head, len);
    b[len] = 0;
    b[len + 1] = 0;
    b[len + 2] = 0;
    b[len + 3] = (u_char) n;
    memcpy(b + len + 4, field, n);
    len += 4 + n;
    b[12] = (u_char) (len - 13);
    return len;
}

START_TEST(bad_fields_are_refused)
{
    u_char  b[64];
    char    err[256];
    size_t  n;

    n = one_field(b, (const u_char *) "\x01k\x01\0\0\0\x08" "12345678", 15);
    ck_assert_int_eq(lb_state_check(b, n, err, sizeof(err)), LB_OK);
    n = one_field(b, (const u_char *) "\x01k\x01\0\0\0\x07" "1234567", 14);
    ck_assert_int_eq(lb_state_check(b, n, err, sizeof(err)), LB_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "not 8 bytes"));
    n = one_field(b, (const u_char *) "\x01k\x09\0\0\0\x01" "x", 8);
    ck_assert_int_eq(lb_state_check(b, n, err, sizeof(err)), LB_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "unknown kind"));
    n = one_field(b, (const u_char *) "\x01\0\x02\0\0\0\x01" "x", 8);
    ck_assert_int_eq(lb_state_check(b, n, err, sizeof(err)), LB_ERROR);
    n = one_field(b, (const u_char *) "\0\x02\0\0\0\x01" "x", 7);
    ck_assert_int_eq(lb_state_check(b, n, err, sizeof(err)), LB_ERROR);
    n = one_field(b, (const u_char *) "\x01k\x02\0\0\0\x02" "x", 8);
    ck_assert_int_eq(lb_state_check(b, n, err, sizeof(err)), LB_ERROR);
}
END_TEST

START_TEST(the_writer_refuses_what_it_cannot_write)
{
    lb_state_writer_t  w;
    char               name[LB_STATE_NAME_MAX + 2];
    u_char            *b;
    size_t             n;

    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    lb_state_writer_init(&w);
    lb_state_record_begin(&w, name, "t");
    lb_state_record_end(&w);
    ck_assert_int_eq(lb_state_writer_finish(&w, &b, &n), LB_ERROR);

    lb_state_writer_init(&w);
    lb_state_put_int(&w, "outside", 1);
    ck_assert_int_eq(lb_state_writer_finish(&w, &b, &n), LB_ERROR);

    lb_state_writer_init(&w);
    lb_state_record_begin(&w, "m", "t");
    ck_assert_int_eq(lb_state_writer_finish(&w, &b, &n), LB_ERROR);     /* left open */
}
END_TEST

/* The modules' records -------------------------------------------------- */

#define CONF_A                                                                      \
    "upstreams = {\n"                                                               \
    "  web = { health_check = { type = \"tcp\"; interval = \"1h\"; };\n"            \
    "          sticky = { mode = \"cookie\"; };\n"                                  \
    "          servers = ( { address = \"127.0.0.1:9001\"; weight = 2; },\n"        \
    "                      { address = \"127.0.0.1:9002\"; } ); };\n"               \
    "  db = { sticky = { mode = \"source_ip\"; };\n"                                \
    "         servers = ( { address = \"127.0.0.1:9101\"; },\n"                     \
    "                     { address = \"127.0.0.1:9102\"; } ); };\n"                \
    "};\n"                                                                          \
    "listeners = ( { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; },\n" \
    "              { protocol = \"tcp\"; listen = \"127.0.0.1:8001\"; upstream = \"db\"; } );\n"

/* B drops 9002 and 9102, adds 9003, and changes nothing else */
#define CONF_B                                                                      \
    "upstreams = {\n"                                                               \
    "  web = { health_check = { type = \"tcp\"; interval = \"1h\"; };\n"            \
    "          sticky = { mode = \"cookie\"; };\n"                                  \
    "          servers = ( { address = \"127.0.0.1:9003\"; },\n"                    \
    "                      { address = \"127.0.0.1:9001\"; weight = 2; } ); };\n"   \
    "  db = { sticky = { mode = \"source_ip\"; };\n"                                \
    "         servers = ( { address = \"127.0.0.1:9101\"; } ); };\n"                \
    "};\n"                                                                          \
    "listeners = ( { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; },\n" \
    "              { protocol = \"tcp\"; listen = \"127.0.0.1:8001\"; upstream = \"db\"; } );\n"

/* A configuration as a new master has it when lb_state_load runs: zones
 * of its own, every init_master done. */
static lb_cycle_t *
master_cycle(const char *name, const char *text)
{
    lb_cycle_t  *cycle = lb_cycle_load(write_file(name, text), dir, record_report);
    size_t       i;

    ck_assert_msg(cycle != NULL, "%s: %s", name, nreports ? reports[0] : "?");
    ck_assert_int_eq(lb_shm_zones_map(cycle, NULL), LB_OK);
    for (i = 0; i < lb_nmodules; i++) {
        if (lb_all_modules[i]->init_master) {
            ck_assert_int_eq(lb_all_modules[i]->init_master(cycle), LB_OK);
        }
    }
    return cycle;
}

static lb_upstream_server_t *
server(lb_cycle_t *cycle, const char *u, const char *addr)
{
    lb_upstream_server_t  *s = lb_upstream_server_find(cycle, u, addr, addr);

    ck_assert_msg(s != NULL, "no server %s in %s", addr, u);
    return s;
}

static const u_char  client1[5] = { AF_INET, 10, 0, 0, 1 };
static const u_char  client2[5] = { AF_INET, 10, 0, 0, 2 };

START_TEST(records_apply_to_what_the_new_configuration_still_has)
{
    lb_cycle_t            *a, *b;
    lb_upstream_server_t  *s;
    u_char                *state, other[32];
    char                   err[256], cookie[LB_STICKY_COOKIE_LEN + 1];
    const char            *why;
    size_t                 len;
    uint64_t               id;
    bool                   renew;

    a = master_cycle("a.conf", CONF_A);
    lb_time_update();
    s = server(a, "web", "127.0.0.1:9001");
    s->state->drain = 1;
    s->state->weight_set = 1;
    s->state->weight = 5;
    s->state->down = 1;
    snprintf(s->state->down_why, sizeof(s->state->down_why), "connection refused");
    s->state->ok_run = 1;
    s->state->back_at = lb_current_msec - 1000;
    lb_metric_add(s->m_requests, 7);
    ck_assert_uint_eq(lb_upstream_sticky_cookie(s->upstream, s, cookie, sizeof(cookie)),
                      LB_STICKY_COOKIE_LEN);
    server(a, "web", "127.0.0.1:9002")->state->disabled = 1;
    lb_sticky_table_put(lb_upstream_find(a, "db")->sticky.zone->data, client1, 5,
                        server(a, "db", "127.0.0.1:9101")->sticky_id, lb_current_msec - 500);
    lb_sticky_table_put(lb_upstream_find(a, "db")->sticky.zone->data, client2, 5,
                        server(a, "db", "127.0.0.1:9102")->sticky_id, lb_current_msec);
    ck_assert_int_eq(lb_state_save(a, &state, &len), LB_OK);

    b = master_cycle("b.conf", CONF_B);
    /* fresh zones: nothing carried yet */
    s = server(b, "web", "127.0.0.1:9001");
    ck_assert_uint_eq(s->state->drain, 0);
    ck_assert_uint_eq(lb_metric_read(s->m_requests), 0);
    /* a secret other than the old one: the old master's must replace it */
    memset(other, 0x5a, sizeof(other));
    ck_assert_int_eq(lb_upstream_sticky_secret_set(b, other, sizeof(other)), LB_OK);
    ck_assert_ptr_null(lb_upstream_sticky_check(s->upstream, cookie, LB_STICKY_COOKIE_LEN,
                                                &why, &renew));

    ck_assert_int_eq(lb_state_load(b, state, len, err, sizeof(err)), LB_OK);
    ck_assert_uint_eq(s->state->drain, 1);
    ck_assert_uint_eq(s->state->weight_set, 1);
    ck_assert_int_eq(s->state->weight, 5);
    ck_assert_uint_eq(s->state->down, 1);
    ck_assert_str_eq(s->state->down_why, "connection refused");
    ck_assert_uint_eq(s->state->ok_run, 1);
    ck_assert(s->state->back_at != 0 && lb_current_msec - s->state->back_at >= 1000
              && lb_current_msec - s->state->back_at < 60000);
    ck_assert_uint_eq(lb_metric_read(s->m_requests), 7);
    ck_assert_ptr_eq(lb_upstream_sticky_check(s->upstream, cookie, LB_STICKY_COOKIE_LEN,
                                              &why, &renew), s);
    /* new in B: nothing applied */
    s = server(b, "web", "127.0.0.1:9003");
    ck_assert_uint_eq(s->state->drain + s->state->disabled + s->state->weight_set, 0);
    /* the table: the entry of a server B kept, not the one of a server it dropped */
    ck_assert_int_eq(lb_sticky_table_get(lb_upstream_find(b, "db")->sticky.zone->data,
                                         client1, 5, lb_current_msec, 60000, &id), LB_OK);
    ck_assert_uint_eq(id, server(b, "db", "127.0.0.1:9101")->sticky_id);
    ck_assert_int_eq(lb_sticky_table_get(lb_upstream_find(b, "db")->sticky.zone->data,
                                         client2, 5, lb_current_msec, 60000, &id),
                     LB_DECLINED);

    free(state);
    lb_shm_zones_unmap(b);
    lb_cycle_free(b);
    lb_shm_zones_unmap(a);
    lb_cycle_free(a);
}
END_TEST

START_TEST(a_changed_weight_in_the_file_drops_the_runtime_one)
{
    lb_cycle_t            *a, *b;
    lb_upstream_server_t  *s;
    u_char                *state;
    char                   err[256], *conf_b;
    size_t                 len;

    a = master_cycle("a.conf", CONF_A);
    s = server(a, "web", "127.0.0.1:9001");
    s->state->weight_set = 1;
    s->state->weight = 5;
    ck_assert_int_eq(lb_state_save(a, &state, &len), LB_OK);
    conf_b = strdup(CONF_B);
    ck_assert_ptr_nonnull(conf_b);
    memcpy(strstr(conf_b, "weight = 2"), "weight = 3", 10);
    b = master_cycle("b.conf", conf_b);
    ck_assert_int_eq(lb_state_load(b, state, len, err, sizeof(err)), LB_OK);
    s = server(b, "web", "127.0.0.1:9001");
    ck_assert_uint_eq(s->state->weight_set, 0);
    ck_assert_int_eq(s->state->weight, 3);
    free(conf_b);
    free(state);
    lb_shm_zones_unmap(b);
    lb_cycle_free(b);
    lb_shm_zones_unmap(a);
    lb_cycle_free(a);
}
END_TEST

START_TEST(a_corrupt_state_applies_nothing)
{
    lb_cycle_t  *a, *b;
    u_char      *state;
    char         err[256];
    size_t       len;

    a = master_cycle("a.conf", CONF_A);
    server(a, "web", "127.0.0.1:9001")->state->drain = 1;
    ck_assert_int_eq(lb_state_save(a, &state, &len), LB_OK);
    b = master_cycle("b.conf", CONF_B);
    ck_assert_int_eq(lb_state_load(b, state, len - 1, err, sizeof(err)), LB_ERROR);
    ck_assert(err[0] != '\0');
    ck_assert_uint_eq(server(b, "web", "127.0.0.1:9001")->state->drain, 0);
    free(state);
    lb_shm_zones_unmap(b);
    lb_cycle_free(b);
    lb_shm_zones_unmap(a);
    lb_cycle_free(a);
}
END_TEST

static Suite *
state_suite(void)
{
    Suite  *s = suite_create("state");
    TCase  *tc;

    tc = tcase_create("codec");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, every_truncation_is_refused);
    tcase_add_test(tc, padding_and_wrong_lengths_are_refused);
    tcase_add_test(tc, versions);
    tcase_add_test(tc, bad_fields_are_refused);
    tcase_add_test(tc, the_writer_refuses_what_it_cannot_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("records");
    tcase_add_checked_fixture(tc, test_dir_setup, test_dir_teardown);
    tcase_add_test(tc, records_apply_to_what_the_new_configuration_still_has);
    tcase_add_test(tc, a_changed_weight_in_the_file_drops_the_runtime_one);
    tcase_add_test(tc, a_corrupt_state_applies_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return test_files_main(state_suite());
}
