/*
 * test_tls_connect.c: the client handshake of the TLS seam (core/lb_tls.c)
 * is always asynchronous: done never runs inside lb_tls_connect, even when
 * the handshake fails at its first step, runs once from the event loop,
 * and the handshake timeout is the only deadline.
 */
#include "lb_core.h"
#include "lb_tls.h"

#include <check.h>
#include <openssl/ssl.h>
#include <signal.h>

static int           calls;
static bool          last_ok;
static lb_conn_t    *conn;
static lb_tls_ctx_t *ctx;
static int           other;            /* the server's end of the socket pair */

static void
done(lb_conn_t *c, bool ok)
{
    calls++;
    last_ok = ok;
    c->read.handler = NULL;
    c->write.handler = NULL;
}

static void
setup(void)
{
    int  sv[2];

    calls = 0;
    last_ok = true;
    lb_time_update();
    ck_assert_int_eq(lb_loop_init(16), LB_OK);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    other = sv[1];
    conn = lb_conn_get(sv[0]);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(lb_loop_add_conn(conn, false), LB_OK);
    ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(ctx);
}

static void
teardown(void)
{
    lb_conn_close(conn);
    lb_conn_release_closed();
    if (other != -1) {
        close(other);
    }
    SSL_CTX_free(ctx);
    lb_loop_free();
    lb_conn_free_cache();
}

/* Runs the loop until done was called or `ms` passed; then a few more
 * rounds, in which done must not run again. */
static void
run_loop(lb_msec_t ms)
{
    lb_msec_t  end;
    int        i;

    lb_time_update();
    end = lb_current_msec + ms;
    while (calls == 0 && lb_current_msec < end) {
        ck_assert_int_eq(lb_loop_process(10, NULL), LB_OK);
    }
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(lb_loop_process(5, NULL), LB_OK);
    }
}

START_TEST(a_failed_first_step_is_reported_after_the_call)
{
    close(other);                       /* the server is gone before the hello */
    other = -1;
    ck_assert_int_eq(lb_tls_connect(conn, ctx, "backend.test", 5000, done), LB_OK);
    ck_assert_int_eq(calls, 0);
    ck_assert(lb_conn_is_tls(conn));
    run_loop(2000);
    ck_assert_int_eq(calls, 1);
    ck_assert(!last_ok);
}
END_TEST

START_TEST(a_silent_server_meets_the_handshake_timeout)
{
    /* long enough that a slow (sanitizer) build still sees the first step
     * well before the deadline */
    ck_assert_int_eq(lb_tls_connect(conn, ctx, NULL, 500, done), LB_OK);
    ck_assert_int_eq(calls, 0);
    run_loop(20);                       /* the first step: the hello goes out */
    ck_assert_int_eq(calls, 0);
    run_loop(2000);
    ck_assert_int_eq(calls, 1);
    ck_assert(!last_ok);
    ck_assert(!lb_timer_is_set(&conn->read.timer));
    ck_assert(!lb_timer_is_set(&conn->write.timer));
}
END_TEST

START_TEST(a_plain_connection_is_not_tls)
{
    ck_assert(!lb_conn_is_tls(conn));
    ck_assert_str_eq(lb_tls_protocol(conn), "");
    ck_assert_str_eq(lb_tls_cipher(conn), "");
    ck_assert_str_eq(lb_tls_sni(conn), "");
    ck_assert_str_eq(lb_tls_client_verify(conn), "");
    ck_assert_ptr_null(lb_tls_upstream(NULL));
}
END_TEST

static Suite *
tls_connect_suite(void)
{
    Suite  *s = suite_create("tls_connect");
    TCase  *tc = tcase_create("client");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_failed_first_step_is_reported_after_the_call);
    tcase_add_test(tc, a_silent_server_meets_the_handshake_timeout);
    tcase_add_test(tc, a_plain_connection_is_not_tls);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner  *sr = srunner_create(tls_connect_suite());
    int       failed;

    signal(SIGPIPE, SIG_IGN);           /* as in lbd: a write to a closed peer is EPIPE */
    lb_log_level = LB_LOG_ERROR;        /* the timeout's info line is expected */
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
