/*
 * fuzz_sticky_cookie.c: libFuzzer target for lb_sticky_cookie_check, which
 * reads a cookie value any client may send. Beyond what the sanitizers
 * catch: every refusal has a reason, and a value it accepts is exactly
 * the one lb_sticky_cookie_make writes for the server and expiry it read
 * (nothing else passes the MAC: an acceptance of anything not made by the
 * key would be a forgery). The first input bytes choose the clock, so
 * expiry is reached too.
 */
#include "lb_core.h"
#include "lb_upstream_sticky.h"

/* The table half of the file takes the shared-memory lock; nothing here
 * uses it, but the linker wants it. */
void lb_shm_lock(lb_shm_lock_t *l) { (void) l; }
void lb_shm_unlock(lb_shm_lock_t *l) { (void) l; }

static lb_sticky_key_t  *fuzz_key;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char         again[LB_STICKY_COOKIE_LEN + 1];
    uint64_t     id;
    int64_t      expires, now = 1000000000;
    const char  *why = NULL;

    if (fuzz_key == NULL) {
        fuzz_key = lb_sticky_key_new("fuzzing secret, fuzzing secret!!", 32);
        if (fuzz_key == NULL) {
            __builtin_trap();
        }
    }
    if (size > 0) {
        now += (int64_t) data[0] << 24;         /* sometimes past the expiry */
        data++;
        size--;
    }
    if (lb_sticky_cookie_check(fuzz_key, "web", (const char *) data, size, now, &id, &expires,
                               &why) != LB_OK)
    {
        if (why == NULL) {
            __builtin_trap();
        }
        return 0;
    }
    if (expires <= now
        || lb_sticky_cookie_make(fuzz_key, "web", id, expires, again, sizeof(again))
           != LB_STICKY_COOKIE_LEN
        || size != LB_STICKY_COOKIE_LEN || memcmp(again, data, size) != 0)
    {
        __builtin_trap();
    }
    return 0;
}
