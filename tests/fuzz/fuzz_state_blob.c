/*
 * fuzz_state_blob.c: libFuzzer target for the upgrade state's reader
 * (core/lb_state_codec.c), which reads a blob another binary wrote. Beyond
 * what the sanitizers catch: a refusal has a one-line reason; a blob it
 * accepts iterates to its end within bounds, and every field lookup stays
 * inside its record; and writing back what was read (the records and the
 * fields the lookups find) gives a blob that checks again.
 */
#include "lb_core.h"
#include "lb_state.h"

#define fuzz_assert(cond)  do { if (!(cond)) { __builtin_trap(); } } while (0)

static const char *const  fuzz_keys[] = { "upstream", "server", "addr", "drain", "weight",
                                          "secret", "k", "x", NULL };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lb_state_record_t  r;
    lb_state_writer_t  w;
    const u_char      *p;
    u_char            *again;
    char               err[256], s[64];
    size_t             off = 0, n, len, i, nrec = 0;
    int64_t            v;

    err[0] = '\0';
    if (lb_state_check(data, size, err, sizeof(err)) != LB_OK) {
        fuzz_assert(err[0] != '\0' && strchr(err, '\n') == NULL);
        return 0;
    }
    lb_state_writer_init(&w);
    while (lb_state_next(data, size, &off, &r) == LB_OK) {
        fuzz_assert(off <= size && nrec++ < size);
        fuzz_assert(r.fields >= data && r.fields + r.len <= data + size);
        fuzz_assert(r.module[0] != '\0' && r.type[0] != '\0');
        lb_state_record_begin(&w, r.module, r.type);
        for (i = 0; fuzz_keys[i]; i++) {
            if (lb_state_get_int(&r, fuzz_keys[i], &v)) {
                lb_state_put_int(&w, fuzz_keys[i], v);
            }
            p = lb_state_get_bytes(&r, fuzz_keys[i], &n);
            if (p) {
                fuzz_assert(p >= r.fields && p + n <= r.fields + r.len);
                lb_state_put_bytes(&w, fuzz_keys[i], p, n);
            }
            if (lb_state_get_str(&r, fuzz_keys[i], s, sizeof(s))) {
                fuzz_assert(strlen(s) < sizeof(s));
            }
        }
        lb_state_record_end(&w);
    }
    fuzz_assert(lb_state_writer_finish(&w, &again, &len) == LB_OK);
    fuzz_assert(lb_state_check(again, len, err, sizeof(err)) == LB_OK);
    free(again);
    return 0;
}
