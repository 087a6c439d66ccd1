/*
 * test_reload.c: which reloads may be applied in place (core/lb_reload.c):
 * two configurations are candidates when they differ only in upstream
 * servers, whatever the spelling or the file split; anything else is not.
 */
#include "lb_core.h"
#include "lb_reload.h"
#include "lb_upstream.h"

#include <check.h>

#define LB_TEST_NAME  "reload"
#include "lb_test_files.h"

#define LISTENER \
    "listeners = ( { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; } );\n"

static lb_cycle_t *
load(const char *text)
{
    lb_cycle_t  *cycle = lb_cycle_load(write_file("lbd.conf", text), dir, record_report);

    ck_assert_msg(cycle != NULL, "%s", nreports ? reports[0] : "no report");
    return cycle;
}

/* Whether b, loaded after a, could be applied in place. */
static bool
candidate(const char *a, const char *b)
{
    lb_cycle_t  *old = load(a), *cycle = load(b);
    bool         yes = lb_reload_candidate(old, cycle);

    lb_cycle_free(old);
    lb_cycle_free(cycle);
    return yes;
}

START_TEST(servers_only_is_a_candidate)
{
    ck_assert(candidate(
        LISTENER "upstreams = { web = { retries = 1; servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        LISTENER "upstreams = { web = { retries = 1;\n"
        "  servers = ( { address = \"127.0.0.1:9002\"; weight = 3; },\n"
        "              { address = \"127.0.0.1:9001\"; backup = true; max_conns = 4; } ); }; };\n"));
}
END_TEST

START_TEST(a_tls_group_change_is_a_candidate)
{
    ck_assert(candidate(
        LISTENER "upstreams = { web = { servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        LISTENER "upstreams = { web = { tls = { verify = false; sni = \"b.test\"; };\n"
        "  servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n"));
    ck_assert(candidate(
        LISTENER "upstreams = { web = { tls = { verify = false; };\n"
        "  servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        LISTENER "upstreams = { web = { tls = { verify = false; sni = \"b.test\"; };\n"
        "  servers = ( { address = \"127.0.0.1:9002\"; } ); }; };\n"));
}
END_TEST

START_TEST(the_same_file_split_by_include_is_a_candidate)
{
    write_file("up.conf", "upstreams = { web = { servers = ( { address = \"127.0.0.1:9003\"; } ); }; };\n");
    ck_assert(candidate(
        LISTENER "upstreams = { web = { servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        "# a comment, other spacing\n" LISTENER "@include \"up.conf\"\n"));
}
END_TEST

START_TEST(any_other_change_is_not)
{
    static const char *const  changes[] = {
        LISTENER "upstreams = { web = { retries = 2; servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        LISTENER "upstreams = { web = { balance = \"hash\"; servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        LISTENER "upstreams = { web = { servers = ( { address = \"127.0.0.1:9001\"; } ); };\n"
        "              api = { servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        "workers = 3;\n" LISTENER
        "upstreams = { web = { servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
        "listeners = ( { protocol = \"tcp\"; listen = \"127.0.0.1:8001\"; upstream = \"web\"; } );\n"
        "upstreams = { web = { servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n",
    };
    size_t  i;

    for (i = 0; i < lb_nelems(changes); i++) {
        ck_assert_msg(!candidate(LISTENER "upstreams = { web = { servers = ( { address = "
                                 "\"127.0.0.1:9001\"; } ); }; };\n", changes[i]),
                      "change %zu taken for a servers-only one", i);
    }
}
END_TEST

static Suite *
reload_suite(void)
{
    Suite  *s = suite_create("reload");
    TCase  *tc = tcase_create("candidate");

    tcase_add_checked_fixture(tc, test_dir_setup, test_dir_teardown);
    tcase_add_test(tc, servers_only_is_a_candidate);
    tcase_add_test(tc, a_tls_group_change_is_a_candidate);
    tcase_add_test(tc, the_same_file_split_by_include_is_a_candidate);
    tcase_add_test(tc, any_other_change_is_not);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return test_files_main(reload_suite());
}
