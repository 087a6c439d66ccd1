/*
 * test_conf.c: loading configuration files with lb_cycle_load: what a
 * valid file produces, and the exact "FILE:LINE: message" reported for
 * each kind of mistake (core/lb_conf.c, core/lb_cycle.c and the modules'
 * own settings).
 */
#include "lb_core.h"
#include "lb_upstream.h"

#include <check.h>

/* the global settings lbd -t lists after an unknown one */
#define GLOBALS  "admin_socket, error_log, ipv6_prefix, limits_memory, listeners, log_level, " \
                 "max_old_generations, pid_file, shutdown_timeout, upgrade_timeout, upstreams, user, " \
                 "worker_rlimit_nofile, workers"
#include <limits.h>

#define LB_TEST_NAME  "conf"
#include "lb_test_files.h"

/* Loads text as dir/lbd.conf, which must fail; returns how many lines were
 * reported. */
static size_t
load_bad(const char *text)
{
    lb_cycle_t  *cycle = lb_cycle_load(write_file("lbd.conf", text), dir, record_report);

    ck_assert_msg(cycle == NULL, "the configuration should have been rejected");
    ck_assert_uint_gt(nreports, 0);
    return nreports;
}

/* Asserts that report i is "DIR/FILE:LINE: message", where where_msg is
 * "FILE:LINE: message". */
static void
assert_report(size_t i, const char *where_msg)
{
    char  want[2048];

    ck_assert_uint_lt(i, nreports);
    snprintf(want, sizeof(want), "%s/%s", dir, where_msg);
    ck_assert_str_eq(reports[i], want);
}

/* The one error of a file with exactly one mistake. */
static void
expect_error(const char *text, const char *where_msg)
{
    size_t  n = load_bad(text);

    ck_assert_msg(n == 1, "%zu errors reported; the second: %s", n, reports[n > 1]);
    assert_report(0, where_msg);
}

/* A listener and an upstream that are correct; the tests below change one
 * thing at a time. Line numbers are in the comments. */
#define TCP_LISTENER                                                       \
    "listeners = (\n"                                           /* 1 */    \
    "  { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; }\n" /* 2 */ \
    ");\n"                                                      /* 3 */

#define WEB_UPSTREAM                                                       \
    "upstreams = {\n"                                           /* 4 */    \
    "  web = {\n"                                               /* 5 */    \
    "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"    /* 6 */    \
    "  };\n"                                                    /* 7 */    \
    "};\n"                                                      /* 8 */

/* A valid file ---------------------------------------------------------- */

START_TEST(valid_config_loads)
{
    lb_cycle_t            *cycle;
    lb_upstream_t         *u;
    lb_listener_t         *ls;
    const char            *path;
    char                   want[PATH_MAX];

    path = write_file("lbd.conf",
        "workers = 3;\n"
        "pid_file = \"run/lbd.pid\";\n"
        "error_log = \"/var/log/lbd.log\";\n"
        "log_level = \"warn\";\n"
        "listeners = (\n"
        "  { name = \"front\"; protocol = \"tcp\";\n"
        "    listen = [ \"127.0.0.1:8000\", \"[::1]:8000\" ];\n"
        "    upstream = \"web\"; idle_timeout = \"30s\"; }\n"
        ");\n"
        "upstreams = {\n"
        "  web = {\n"
        "    balance = \"least_conn\";\n"
        "    connect_timeout = 2;\n"
        "    servers = (\n"
        "      { address = \"127.0.0.1:9002\"; backup = true; },\n"
        "      { address = \"127.0.0.1:9001\"; weight = 5; max_conns = 100; }\n"
        "    );\n"
        "  };\n"
        "};\n");

    cycle = lb_cycle_load(path, dir, record_report);
    ck_assert_uint_eq(nreports, 0);
    ck_assert_ptr_nonnull(cycle);

    ck_assert_str_eq(cycle->conf_file, path);
    snprintf(want, sizeof(want), "%s/", dir);
    ck_assert_str_eq(cycle->prefix, want);

    ck_assert_int_eq(cycle->core->workers, 3);
    snprintf(want, sizeof(want), "%s/run/lbd.pid", dir);
    ck_assert_str_eq(cycle->core->pid_file, want);          /* against the prefix */
    ck_assert_str_eq(cycle->core->error_log, "/var/log/lbd.log");   /* absolute kept */
    snprintf(want, sizeof(want), "%s/logs/admin.sock", dir);
    ck_assert_str_eq(cycle->core->admin_socket, want);      /* default */
    ck_assert_int_eq(cycle->core->log_level, LB_LOG_WARN);
    ck_assert_int_eq(cycle->core->shutdown_timeout, 30000); /* default */

    u = lb_upstream_find(cycle, "web");
    ck_assert_ptr_nonnull(u);
    ck_assert_ptr_null(lb_upstream_find(cycle, "api"));
    ck_assert_str_eq(u->name, "web");
    ck_assert_ptr_eq(u->balancer, &lb_upstream_least_conn);
    ck_assert_int_eq(u->connect_timeout, 2000);
    ck_assert_int_eq(u->read_timeout, 60000);
    ck_assert_int_eq(u->retries, 2);
    ck_assert_uint_eq(u->nservers, 2);
    ck_assert_uint_eq(u->nprimary, 1);
    /* primaries first, whatever the order in the file */
    ck_assert_str_eq(u->servers[0].addr.text, "127.0.0.1:9001");
    ck_assert_int_eq(u->servers[0].weight, 5);
    ck_assert_int_eq(u->servers[0].max_conns, 100);
    ck_assert_int_eq(u->servers[0].backup, 0);
    ck_assert_str_eq(u->servers[1].addr.text, "127.0.0.1:9002");
    ck_assert_int_eq(u->servers[1].weight, 1);
    ck_assert_int_eq(u->servers[1].max_conns, 0);
    ck_assert_int_eq(u->servers[1].backup, 1);

    /* the file's listener, then admin_socket's (the admin module adds it) */
    ck_assert_uint_eq(cycle->listeners.nelts, 2);
    ck_assert_str_eq(lb_array_at(&cycle->listeners, lb_listener_t *, 1)->name, "admin_socket");
    ls = lb_array_at(&cycle->listeners, lb_listener_t *, 0);
    ck_assert_str_eq(ls->name, "front");
    ck_assert_str_eq(ls->protocol, "tcp");
    ck_assert_int_eq(ls->socktype, SOCK_STREAM);
    ck_assert_ptr_nonnull(ls->handler);
    ck_assert_str_eq(ls->file, path);
    ck_assert_int_eq(ls->line, 6);
    ck_assert_uint_eq(ls->addrs.nelts, 2);
    ck_assert_str_eq(lb_array_at(&ls->addrs, lb_addr_t, 0).text, "127.0.0.1:8000");
    ck_assert_str_eq(lb_array_at(&ls->addrs, lb_addr_t, 1).text, "[::1]:8000");

    lb_cycle_free(cycle);
}
END_TEST

START_TEST(listener_name_defaults_to_protocol_and_first_address)
{
    lb_cycle_t     *cycle;
    lb_listener_t  *ls;

    cycle = lb_cycle_load(write_file("lbd.conf", TCP_LISTENER WEB_UPSTREAM), dir,
                          record_report);
    ck_assert_uint_eq(nreports, 0);
    ck_assert_ptr_nonnull(cycle);
    ls = lb_array_at(&cycle->listeners, lb_listener_t *, 0);
    ck_assert_str_eq(ls->name, "tcp:127.0.0.1:8000");
    ck_assert_int_eq(ls->line, 2);
    lb_cycle_free(cycle);
}
END_TEST

START_TEST(upstream_may_follow_the_listener_that_uses_it)
{
    lb_cycle_t  *cycle;

    cycle = lb_cycle_load(write_file("lbd.conf", WEB_UPSTREAM TCP_LISTENER), dir,
                          record_report);
    ck_assert_uint_eq(nreports, 0);
    ck_assert_ptr_nonnull(cycle);
    lb_cycle_free(cycle);
}
END_TEST

START_TEST(missing_file)
{
    char  path[256], want[512];

    snprintf(path, sizeof(path), "%s/nope.conf", dir);
    ck_assert_ptr_null(lb_cycle_load(path, dir, record_report));
    ck_assert_uint_eq(nreports, 1);
    snprintf(want, sizeof(want), "%s:0: cannot read the configuration file: "
             "No such file or directory", path);
    ck_assert_str_eq(reports[0], want);
}
END_TEST

/* Unknown settings ------------------------------------------------------ */

START_TEST(unknown_server_setting_suggests_the_closest)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = (\n"                                                 /* 6 */
        "      { address = \"127.0.0.1:9001\";\n"                           /* 7 */
        "        max_con = 10; }\n"                                         /* 8 */
        "    );\n"
        "  };\n"
        "};\n",
        "lbd.conf:8: unknown setting \"max_con\" in server #1 of upstream \"web\" "
        "(did you mean \"max_conns\"?); valid here: address, backup, max_conns, weight");
}
END_TEST

START_TEST(unknown_server_setting_second_server)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = (\n"                                                 /* 6 */
        "      { address = \"127.0.0.1:9001\"; },\n"                        /* 7 */
        "      { address = \"127.0.0.1:9002\"; wieght = 2; }\n"             /* 8 */
        "    );\n"
        "  };\n"
        "};\n",
        "lbd.conf:8: unknown setting \"wieght\" in server #2 of upstream \"web\" "
        "(did you mean \"weight\"?); valid here: address, backup, max_conns, weight");
}
END_TEST

START_TEST(unknown_global_setting_without_suggestion)
{
    expect_error(
        TCP_LISTENER WEB_UPSTREAM
        "frobnicate = 1;\n",                                                /* 9 */
        "lbd.conf:9: unknown setting \"frobnicate\" in the global section; valid here: "
        GLOBALS);
}
END_TEST

START_TEST(unknown_global_setting_with_suggestion)
{
    expect_error(
        "worker = 4;\n"                                                     /* 1 */
        TCP_LISTENER WEB_UPSTREAM,
        "lbd.conf:1: unknown setting \"worker\" in the global section "
        "(did you mean \"workers\"?); valid here: " GLOBALS);
}
END_TEST

START_TEST(unknown_upstream_setting)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"            /* 6 */
        "    retrys = 3;\n"                                                 /* 7 */
        "  };\n"
        "};\n",
        "lbd.conf:7: unknown setting \"retrys\" in upstream \"web\" "
        "(did you mean \"retries\"?); valid here: balance, connect_timeout, hash_key, "
        "health_check, keepalive, keepalive_timeout, next_upstream, passive, proxy_protocol, read_timeout, "
        "resolve_interval, response_head_timeout, retries, send_timeout, servers, slow_start, "
        "sticky, tls");
}
END_TEST

START_TEST(unknown_listener_setting_knows_the_protocol_settings)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\";\n" /* 2 */
        "    idle_timout = \"5s\"; }\n"                                     /* 3 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:3: unknown setting \"idle_timout\" in listener \"tcp:127.0.0.1:8000\" "
        "(did you mean \"idle_timeout\"?); valid here: accept_proxy_protocol, access_log, allow, deny, "
        "idle_timeout, listen, max_conns_per_ip, name, protocol, sni_routes, splice, upstream");
}
END_TEST

/* Wrong types ------------------------------------------------------------ */

START_TEST(wrong_type_integer_given_a_string)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = ( { address = \"127.0.0.1:9001\"; weight = \"2\"; } );\n" /* 6 */
        "  };\n"
        "};\n",
        "lbd.conf:6: \"weight\" must be an integer, not a string");
}
END_TEST

START_TEST(wrong_type_bool_given_an_integer)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = ( { address = \"127.0.0.1:9001\"; backup = 1; } );\n"    /* 6 */
        "  };\n"
        "};\n",
        "lbd.conf:6: \"backup\" must be true or false, not an integer");
}
END_TEST

START_TEST(wrong_type_string_given_an_integer)
{
    expect_error(
        TCP_LISTENER WEB_UPSTREAM
        "pid_file = 5;\n",                                                  /* 9 */
        "lbd.conf:9: \"pid_file\" must be a string, not an integer");
}
END_TEST

START_TEST(wrong_type_workers_given_a_word)
{
    expect_error(
        "workers = \"four\";\n"                                             /* 1 */
        TCP_LISTENER WEB_UPSTREAM,
        "lbd.conf:1: \"workers\" must be an integer or \"auto\", not that string");
}
END_TEST

START_TEST(wrong_type_duration_given_a_bool)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\";\n" /* 2 */
        "    idle_timeout = true; }\n"                                      /* 3 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:3: \"idle_timeout\" must be a duration (a string such as \"5s\" or "
        "an integer of seconds), not a boolean");
}
END_TEST

START_TEST(wrong_type_listen_given_an_integer)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcp\"; listen = 8000; upstream = \"web\"; }\n"     /* 2 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:2: \"listen\" must be a string or an array of strings, not an integer");
}
END_TEST

START_TEST(wrong_type_upstreams_given_a_list)
{
    expect_error(
        "upstreams = ( );\n",                                               /* 1 */
        "lbd.conf:1: \"upstreams\" must be a group { name = { ... }; }, not a list ( )");
}
END_TEST

/* Values out of range ---------------------------------------------------- */

START_TEST(integer_out_of_range)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = ( { address = \"127.0.0.1:9001\"; weight = 0; } );\n"    /* 6 */
        "  };\n"
        "};\n",
        "lbd.conf:6: \"weight\" must be between 1 and 1000, got 0");
}
END_TEST

START_TEST(workers_out_of_range)
{
    expect_error(
        TCP_LISTENER WEB_UPSTREAM
        "workers = 300;\n",                                                 /* 9 */
        "lbd.conf:9: \"workers\" must be between 1 and 256, got 300");
}
END_TEST

START_TEST(duration_out_of_range_is_shown_in_milliseconds)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    connect_timeout = \"2h\";\n"                                   /* 6 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"
        "  };\n"
        "};\n",
        "lbd.conf:6: \"connect_timeout\" must be between 1ms and 3600000ms, got 7200000ms");
}
END_TEST

START_TEST(negative_duration_in_seconds)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    read_timeout = -1;\n"                                          /* 6 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"
        "  };\n"
        "};\n",
        "lbd.conf:6: \"read_timeout\" must not be negative or huge, got -1");
}
END_TEST

/* Malformed values ------------------------------------------------------ */

START_TEST(invalid_duration)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    read_timeout = \"5x\";\n"                                      /* 6 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"
        "  };\n"
        "};\n",
        "lbd.conf:6: \"read_timeout\" must be a duration such as \"250ms\", \"5s\", "
        "\"2m\", \"1h\" or \"1d\", got \"5x\"");
}
END_TEST

START_TEST(invalid_server_address)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = ( { address = \"backend_example:80\"; } );\n"        /* 6 */
        "  };\n"
        "};\n",
        "lbd.conf:6: invalid address \"backend_example:80\" in \"address\": not an IP "
        "address and port, a host name and port, or a unix: path");
}
END_TEST

START_TEST(invalid_listen_address_in_an_array_names_its_line)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcp\"; upstream = \"web\";\n"                     /* 2 */
        "    listen = [ \"127.0.0.1:8000\",\n"                              /* 3 */
        "               \"127.0.0.1:0\" ]; }\n"                             /* 4 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:4: invalid address \"127.0.0.1:0\" in \"listen\": invalid port \"0\" "
        "(must be 1..65535)");
}
END_TEST

START_TEST(unknown_enum_value_suggests_the_closest)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    balance = \"least_con\";\n"                                    /* 6 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"
        "  };\n"
        "};\n",
        "lbd.conf:6: invalid value \"least_con\" for \"balance\" (did you mean "
        "\"least_conn\"?); expected one of: round_robin, least_conn, random_two, hash");
}
END_TEST

START_TEST(unknown_enum_value_without_suggestion)
{
    expect_error(
        "log_level = \"verbose\";\n"                                        /* 1 */
        TCP_LISTENER WEB_UPSTREAM,
        "lbd.conf:1: invalid value \"verbose\" for \"log_level\"; expected one of: "
        "debug, info, notice, warn, error");
}
END_TEST

START_TEST(unknown_balancer_names_the_balancers)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    balance = \"hashh\";\n"                                        /* 6 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"
        "  };\n"
        "};\n",
        "lbd.conf:6: invalid value \"hashh\" for \"balance\" (did you mean \"hash\"?); "
        "expected one of: round_robin, least_conn, random_two, hash");
}
END_TEST

/* References and required settings -------------------------------------- */

START_TEST(dangling_upstream_reference_suggests_the_closest)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcp\"; listen = \"127.0.0.1:8000\";\n"            /* 2 */
        "    upstream = \"webb\"; }\n"                                      /* 3 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:3: unknown upstream \"webb\" in listener \"tcp:127.0.0.1:8000\" "
        "(did you mean \"web\"?)");
}
END_TEST

START_TEST(dangling_upstream_reference_without_suggestion)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { name = \"api\"; protocol = \"tcp\"; listen = \"127.0.0.1:8000\";\n" /* 2 */
        "    upstream = \"backends\"; }\n"                                  /* 3 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:3: unknown upstream \"backends\" in listener \"api\"");
}
END_TEST

START_TEST(missing_server_address)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = (\n"                                                 /* 6 */
        "      { address = \"127.0.0.1:9001\"; },\n"                        /* 7 */
        "      { weight = 2; }\n"                                           /* 8 */
        "    );\n"
        "  };\n"
        "};\n",
        "lbd.conf:8: missing required setting \"address\" in server #2 of upstream \"web\"");
}
END_TEST

START_TEST(missing_servers)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    retries = 1;\n"
        "  };\n"
        "};\n",
        "lbd.conf:5: missing required setting \"servers\" in upstream \"web\"");
}
END_TEST

START_TEST(empty_servers)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = ( );\n"                                              /* 6 */
        "  };\n"
        "};\n",
        "lbd.conf:6: upstream \"web\" has no servers");
}
END_TEST

START_TEST(missing_listener_upstream)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; }\n"          /* 2 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:2: missing required setting \"upstream\" in listener \"tcp:127.0.0.1:8000\"");
}
END_TEST

START_TEST(missing_listener_protocol)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { listen = \"127.0.0.1:8000\"; upstream = \"web\"; }\n"          /* 2 */
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:2: listener #1 needs \"protocol\" as a string");
}
END_TEST

START_TEST(duplicate_server_in_an_upstream)
{
    expect_error(
        TCP_LISTENER
        "upstreams = {\n"                                                   /* 4 */
        "  web = {\n"                                                       /* 5 */
        "    servers = (\n"                                                 /* 6 */
        "      { address = \"127.0.0.1:9001\"; },\n"                        /* 7 */
        "      { address = \"127.0.0.1:9001\"; weight = 2; }\n"             /* 8 */
        "    );\n"
        "  };\n"
        "};\n",
        "lbd.conf:8: server 127.0.0.1:9001 appears twice in upstream \"web\"");
}
END_TEST

/* Listeners -------------------------------------------------------------- */

START_TEST(duplicate_listen_address)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { name = \"a\"; protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; },\n"
        "  { name = \"b\"; protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; }\n"
        ");\n"                                                              /* 4 */
        WEB_UPSTREAM,
        "lbd.conf:3: address 127.0.0.1:8000 of listener \"b\" is already used by "
        "listener \"a\"");
}
END_TEST

START_TEST(duplicate_listen_address_star_is_0_0_0_0)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { name = \"a\"; protocol = \"tcp\"; listen = \"*:8000\"; upstream = \"web\"; },\n"
        "  { name = \"b\"; protocol = \"tcp\";\n"                           /* 3 */
        "    listen = [ \"127.0.0.1:8001\", \"0.0.0.0:8000\" ]; upstream = \"web\"; }\n"
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:3: address 0.0.0.0:8000 of listener \"b\" is already used by "
        "listener \"a\"");
}
END_TEST

START_TEST(duplicate_listen_address_within_one_listener)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { name = \"a\"; protocol = \"tcp\"; upstream = \"web\";\n"       /* 2 */
        "    listen = [ \"127.0.0.1:8000\", \"127.0.0.1:8000\" ]; }\n"
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:2: address 127.0.0.1:8000 of listener \"a\" is already used by "
        "listener \"a\"");
}
END_TEST

START_TEST(duplicate_listener_name)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { name = \"a\"; protocol = \"tcp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; },\n"
        "  { name = \"a\"; protocol = \"tcp\"; listen = \"127.0.0.1:8001\"; upstream = \"web\"; }\n"
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:3: duplicate listener name \"a\"");
}
END_TEST

START_TEST(unknown_protocol_with_suggestion)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"tcpp\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; }\n"
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:2: unknown protocol \"tcpp\" (did you mean \"tcp\"?); "
        "this build serves: tls, https, admin, tcp, udp, http");
}
END_TEST

START_TEST(unknown_protocol_without_suggestion)
{
    expect_error(
        "listeners = (\n"                                                   /* 1 */
        "  { protocol = \"quic\"; listen = \"127.0.0.1:8000\"; upstream = \"web\"; }\n"
        ");\n"
        WEB_UPSTREAM,
        "lbd.conf:2: unknown protocol \"quic\"; this build serves: tls, https, admin, tcp, udp, http");
}
END_TEST

/* Syntax and includes ---------------------------------------------------- */

START_TEST(syntax_error_is_libconfigs_message_at_its_line)
{
    expect_error(
        "workers = 2;\n"                                                    /* 1 */
        "\n"                                                                /* 2 */
        "pid_file = ;\n"                                                    /* 3 */
        TCP_LISTENER WEB_UPSTREAM,
        "lbd.conf:3: syntax error (the line reads: pid_file = ;)");
}
END_TEST

START_TEST(syntax_error_unclosed_group_is_reported_at_the_end)
{
    expect_error(
        "upstreams = {\n"                                                   /* 1 */
        "  web = {\n"                                                       /* 2 */
        "    servers = ( { address = \"127.0.0.1:9001\"; } );\n"            /* 3 */
        "  };\n",                                                           /* 4 */
        "lbd.conf:5: syntax error at the end of the file");
}
END_TEST

START_TEST(error_in_an_included_file_names_that_file)
{
    write_file("upstreams.conf",
        "# the backends\n"                                                  /* 1 */
        "upstreams = {\n"                                                   /* 2 */
        "  web = {\n"                                                       /* 3 */
        "    servers = ( { address = \"127.0.0.1:9001\"; weight = 0; } );\n"    /* 4 */
        "  };\n"
        "};\n");
    load_bad(
        "workers = 0;\n"                                                    /* 1 */
        TCP_LISTENER                                                        /* 2-4 */
        "@include \"upstreams.conf\"\n");
    ck_assert_uint_eq(nreports, 2);
    assert_report(0, "lbd.conf:1: \"workers\" must be between 1 and 256, got 0");
    /* the included file is named by its full path, like the main one */
    assert_report(1, "upstreams.conf:4: \"weight\" must be between 1 and 1000, got 0");
}
END_TEST

START_TEST(syntax_error_in_an_included_file_names_that_file)
{
    write_file("inc.conf",
        "log_level = \"info\";\n"                                           /* 1 */
        "pid_file = = \"x\";\n");                                           /* 2 */
    load_bad(
        TCP_LISTENER WEB_UPSTREAM
        "@include \"inc.conf\"\n");
    ck_assert_uint_eq(nreports, 1);
    assert_report(0, "inc.conf:2: syntax error (the line reads: pid_file = = \"x\";)");
}
END_TEST

START_TEST(missing_included_file_is_named_with_the_reason)
{
    char  want[512];

    load_bad(
        TCP_LISTENER WEB_UPSTREAM
        "@include \"nope.conf\"\n");                                        /* 9 */
    ck_assert_uint_eq(nreports, 1);
    snprintf(want, sizeof(want), "lbd.conf:9: cannot open include file \"%s/nope.conf\": "
             "No such file or directory", dir);
    assert_report(0, want);
}
END_TEST

START_TEST(included_file_is_found_beside_the_including_file)
{
    lb_cycle_t  *cycle;

    write_file("upstreams.conf", WEB_UPSTREAM);
    /* the current directory is not dir: the include must not depend on it */
    ck_assert_int_eq(chdir("/"), 0);
    cycle = lb_cycle_load(write_file("lbd.conf", TCP_LISTENER "@include \"upstreams.conf\"\n"),
                          dir, record_report);
    ck_assert_uint_eq(nreports, 0);
    ck_assert_ptr_nonnull(cycle);
    ck_assert_ptr_nonnull(lb_upstream_find(cycle, "web"));
    lb_cycle_free(cycle);
}
END_TEST

/* Several errors ---------------------------------------------------------- */

START_TEST(every_error_of_a_file_is_reported)
{
    load_bad(
        "workers = 0;\n"                                                    /* 1 */
        "log_level = \"wrn\";\n"                                            /* 2 */
        "listeners = (\n"                                                   /* 3 */
        "  { protocol = \"tcp\"; listen = \"127.0.0.1:80800\"; upstream = \"web\"; },\n"
        "  { protocol = \"tcp\"; listen = \"127.0.0.1:8001\"; }\n"          /* 5 */
        ");\n"                                                              /* 6 */
        "upstreams = {\n"                                                   /* 7 */
        "  web = {\n"                                                       /* 8 */
        "    balance = \"round_robbin\";\n"                                 /* 9 */
        "    servers = (\n"                                                 /* 10 */
        "      { address = \"127.0.0.1:9001\"; max_con = 3; },\n"           /* 11 */
        "      { weight = 2; }\n"                                           /* 12 */
        "    );\n"
        "  };\n"
        "};\n");
    ck_assert_uint_eq(nreports, 7);
    assert_report(0, "lbd.conf:1: \"workers\" must be between 1 and 256, got 0");
    assert_report(1, "lbd.conf:2: invalid value \"wrn\" for \"log_level\" (did you mean "
                     "\"warn\"?); expected one of: debug, info, notice, warn, error");
    assert_report(2, "lbd.conf:4: invalid address \"127.0.0.1:80800\" in \"listen\": "
                     "invalid port \"80800\" (must be 1..65535)");
    assert_report(3, "lbd.conf:5: missing required setting \"upstream\" in listener "
                     "\"tcp:127.0.0.1:8001\"");
    assert_report(4, "lbd.conf:9: invalid value \"round_robbin\" for \"balance\" (did you "
                     "mean \"round_robin\"?); expected one of: round_robin, least_conn, "
                     "random_two, hash");
    assert_report(5, "lbd.conf:11: unknown setting \"max_con\" in server #1 of upstream "
                     "\"web\" (did you mean \"max_conns\"?); valid here: address, backup, "
                     "max_conns, weight");
    assert_report(6, "lbd.conf:12: missing required setting \"address\" in server #2 of "
                     "upstream \"web\"");
}
END_TEST

START_TEST(reporting_stops_after_too_many_errors)
{
    char    text[4096];
    size_t  len = 0;
    int     i;

    for (i = 1; i <= 60; i++) {
        len += (size_t) snprintf(text + len, sizeof(text) - len, "bogus%d = 1;\n", i);
    }
    ck_assert_uint_lt(len, sizeof(text));
    load_bad(text);
    ck_assert_uint_eq(nreports, LB_CONF_MAX_ERRORS);
    assert_report(0, "lbd.conf:1: unknown setting \"bogus1\" in the global section; valid "
                     "here: " GLOBALS);
    assert_report(48, "lbd.conf:49: unknown setting \"bogus49\" in the global section; "
                      "valid here: " GLOBALS);
    ck_assert_str_eq(reports[49], "too many errors; stopping here");
}
END_TEST

static Suite *
conf_suite(void)
{
    Suite  *s = suite_create("conf");
    TCase  *tc;

    tc = tcase_create("valid");
    tcase_add_checked_fixture(tc, test_dir_setup, test_dir_teardown);
    tcase_add_test(tc, valid_config_loads);
    tcase_add_test(tc, listener_name_defaults_to_protocol_and_first_address);
    tcase_add_test(tc, upstream_may_follow_the_listener_that_uses_it);
    tcase_add_test(tc, included_file_is_found_beside_the_including_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, test_dir_setup, test_dir_teardown);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, unknown_server_setting_suggests_the_closest);
    tcase_add_test(tc, unknown_server_setting_second_server);
    tcase_add_test(tc, unknown_global_setting_without_suggestion);
    tcase_add_test(tc, unknown_global_setting_with_suggestion);
    tcase_add_test(tc, unknown_upstream_setting);
    tcase_add_test(tc, unknown_listener_setting_knows_the_protocol_settings);
    tcase_add_test(tc, wrong_type_integer_given_a_string);
    tcase_add_test(tc, wrong_type_bool_given_an_integer);
    tcase_add_test(tc, wrong_type_string_given_an_integer);
    tcase_add_test(tc, wrong_type_workers_given_a_word);
    tcase_add_test(tc, wrong_type_duration_given_a_bool);
    tcase_add_test(tc, wrong_type_listen_given_an_integer);
    tcase_add_test(tc, wrong_type_upstreams_given_a_list);
    tcase_add_test(tc, integer_out_of_range);
    tcase_add_test(tc, workers_out_of_range);
    tcase_add_test(tc, duration_out_of_range_is_shown_in_milliseconds);
    tcase_add_test(tc, negative_duration_in_seconds);
    tcase_add_test(tc, invalid_duration);
    tcase_add_test(tc, invalid_server_address);
    tcase_add_test(tc, invalid_listen_address_in_an_array_names_its_line);
    tcase_add_test(tc, unknown_enum_value_suggests_the_closest);
    tcase_add_test(tc, unknown_enum_value_without_suggestion);
    tcase_add_test(tc, unknown_balancer_names_the_balancers);
    tcase_add_test(tc, dangling_upstream_reference_suggests_the_closest);
    tcase_add_test(tc, dangling_upstream_reference_without_suggestion);
    tcase_add_test(tc, missing_server_address);
    tcase_add_test(tc, missing_servers);
    tcase_add_test(tc, empty_servers);
    tcase_add_test(tc, missing_listener_upstream);
    tcase_add_test(tc, missing_listener_protocol);
    tcase_add_test(tc, duplicate_server_in_an_upstream);
    tcase_add_test(tc, duplicate_listen_address);
    tcase_add_test(tc, duplicate_listen_address_star_is_0_0_0_0);
    tcase_add_test(tc, duplicate_listen_address_within_one_listener);
    tcase_add_test(tc, duplicate_listener_name);
    tcase_add_test(tc, unknown_protocol_with_suggestion);
    tcase_add_test(tc, unknown_protocol_without_suggestion);
    tcase_add_test(tc, syntax_error_is_libconfigs_message_at_its_line);
    tcase_add_test(tc, syntax_error_unclosed_group_is_reported_at_the_end);
    tcase_add_test(tc, error_in_an_included_file_names_that_file);
    tcase_add_test(tc, syntax_error_in_an_included_file_names_that_file);
    tcase_add_test(tc, missing_included_file_is_named_with_the_reason);
    tcase_add_test(tc, every_error_of_a_file_is_reported);
    tcase_add_test(tc, reporting_stops_after_too_many_errors);
    suite_add_tcase(s, tc);

    return s;
}

int
main(void)
{
    return test_files_main(conf_suite());
}
