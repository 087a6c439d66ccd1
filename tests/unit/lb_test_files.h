/*
 * lb_test_files.h: scaffolding shared by the unit tests that write
 * configuration files: a temporary base directory made by main and removed
 * at the end, a fresh directory per test inside it, file writing, and a
 * recorder for the loader's "FILE:LINE: message" reports. Define
 * LB_TEST_NAME ("conf", "route", ...) before including it.
 */
#ifndef LB_TEST_FILES_H
#define LB_TEST_FILES_H

#include <check.h>
#include <limits.h>

#define MAX_REPORTS  64

static char    base[] = "/tmp/lbd-test-" LB_TEST_NAME "-XXXXXX";
static char    dir[sizeof(base) + 8];
static char   *reports[MAX_REPORTS];
static size_t  nreports;

static void
record_report(const char *line)
{
    ck_assert_uint_lt(nreports, MAX_REPORTS);
    reports[nreports] = strdup(line);
    ck_assert_ptr_nonnull(reports[nreports]);
    nreports++;
}

/* A fresh directory for one test; no reports yet. */
static void
test_dir_setup(void)
{
    snprintf(dir, sizeof(dir), "%s/XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    nreports = 0;
}

static void
test_dir_teardown(void)
{
    char  cmd[64 + sizeof(dir)];

    while (nreports) {
        free(reports[--nreports]);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Writes text to dir/name and returns the file's path (a static buffer). */
static const char *
write_file(const char *name, const char *text)
{
    static char  path[PATH_MAX];
    FILE        *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Runs suite s inside a base directory it removes afterwards; the exit
 * status of the test program. */
static int
test_files_main(Suite *s)
{
    SRunner  *sr;
    char      cmd[64 + sizeof(base)];
    int       failed;

    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    if (system(cmd) != 0) {
        failed++;
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
