/*
 * lb_sanitizer.h: settings for the sanitizer build (./configure
 * --with-sanitizers), included once by each program's main file (a
 * definition in the static library would never be linked). LeakSanitizer
 * reads its default suppressions from this function: the only entry is a
 * leak inside libconfig 1.5 itself (its scanner's string buffer on a
 * syntax error), which lbd cannot free.
 */
#ifndef LB_SANITIZER_H
#define LB_SANITIZER_H

#if LB_WITH_SANITIZERS

const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

/* keep stderr to lbd's own lines: no "Suppressions used" summary */
const char *
__lsan_default_options(void)
{
    return "print_suppressions=0";
}

#endif

#endif
