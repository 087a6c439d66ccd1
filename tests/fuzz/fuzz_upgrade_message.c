/*
 * fuzz_upgrade_message.c: libFuzzer target for the reader of a binary
 * upgrade's 'S' message (core/lb_upgrade_codec.c), which a new master
 * reads from whatever process started it. Beyond what the sanitizers
 * catch: a message it accepts names at most the sockets it has room for,
 * each with a known type and family, a slot in range and a NUL-terminated
 * text, and writing them back gives the very same bytes (nothing read was
 * misread); a refusal always says why.
 */
#include "lb_core.h"
#include "lb_upgrade.h"

#define FUZZ_MAX_SOCKETS  64

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lb_upgrade_socket_t  socks[FUZZ_MAX_SOCKETS];
    static u_char               again[1 << 17];
    char                        err[256];
    size_t                      n = 0, i, len;
    uint32_t                    state_len = 0;

    err[0] = '\0';
    if (lb_upgrade_parse_sockets(data, size, socks, FUZZ_MAX_SOCKETS, &n, &state_len, err,
                                 sizeof(err)) != LB_OK)
    {
        if (err[0] == '\0') {
            __builtin_trap();
        }
        return 0;
    }
    if (n > FUZZ_MAX_SOCKETS) {
        __builtin_trap();
    }
    for (i = 0; i < n; i++) {
        if ((socks[i].socktype != SOCK_STREAM && socks[i].socktype != SOCK_DGRAM)
            || socks[i].slot < -1 || socks[i].slot >= LB_MAX_WORKERS
            || socks[i].addr.len > sizeof(socks[i].addr.u)
            || memchr(socks[i].addr.text, '\0', sizeof(socks[i].addr.text)) == NULL)
        {
            __builtin_trap();
        }
    }
    len = lb_upgrade_encode_sockets(again, sizeof(again), socks, n, state_len);
    if (len != size || memcmp(again, data, size) != 0) {
        __builtin_trap();
    }
    return 0;
}
