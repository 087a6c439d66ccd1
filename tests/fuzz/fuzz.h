/*
 * fuzz.h: what the libFuzzer targets in tests/fuzz/ share: the parser's
 * header, limits small enough for the fuzzer to reach, and the checks.
 */
#ifndef LB_FUZZ_H
#define LB_FUZZ_H

#include "lb_core.h"
#include "lb_http_parse.h"

/* A broken invariant must stop the fuzzer like a sanitizer report does. */
#define fuzz_assert(cond)  do { if (!(cond)) { __builtin_trap(); } } while (0)

static const lb_http_limits_t  fuzz_limits = { 2048, 32, 512 };

/* A view returned by the parser lies inside buf[0..len). */
static inline void
fuzz_view(lb_str_t s, const char *buf, size_t len)
{
    fuzz_assert(s.len == 0 || (s.data >= buf && s.data + s.len <= buf + len));
}

#endif
