"""The shared zone of upstream server state (SPEC §3.2, §6): sized from the
configuration, so that `lbd -t` says ok only to what lbd can run; the slots
of a generation are freed when its workers have exited, so a big
configuration can be replaced by a different one, again and again."""

import re

import helpers
from helpers import ask_name, log_line

GROWS = r'shared zone "lb_upstream_state" is too small'


def config(upstreams, web, first_port, per=1000, max_conns=0):
    """`upstreams` filler upstreams of `per` servers each on 127.0.0.1 from
    first_port on (nothing listens there: only "web" is used), and the
    upstream "web" with the one server `web`."""
    fillers = []
    for u in range(upstreams):
        base = first_port + u * per
        servers = ", ".join(f'{{ address = "127.0.0.1:{base + i}"; }}' for i in range(per))
        fillers.append(f"  filler{u} = {{ servers = ( {servers} ); }};")
    return ("upstreams = {\n" + "\n".join(fillers) + "\n"
            f'  web = {{ servers = ( {{ address = "{web}"; max_conns = {max_conns}; }} ); }};\n'
            "};\n"
            'listeners = ( { protocol = "tcp"; listen = "$listen"; upstream = "web"; } );\n')


def test_ten_thousand_servers_pass_lbd_t_and_lbd_runs_them(lbd, backend):
    a = backend(helpers.named, "a")
    lbd.write_config(config(10, a.address, 10000))
    out = helpers.lbd_test(lbd.conf_path)
    assert (out.returncode, out.stdout, out.stderr) == (0, "configuration ok\n", "")
    lbd.start()
    assert ask_name(lbd.address) == "a"


def test_more_servers_than_the_limit_is_a_config_error_with_the_numbers(lbd):
    # 101 x 1000 servers; the addresses vary so that none is a duplicate
    fillers = []
    for u in range(101):
        servers = ", ".join(f'{{ address = "127.1.{u}.1:{1000 + i}"; }}' for i in range(1000))
        fillers.append(f"  filler{u} = {{ servers = ( {servers} ); }};")
    lbd.write_config("upstreams = {\n" + "\n".join(fillers) + "\n};\n"
                     'listeners = ( { protocol = "tcp"; listen = "$listen"; '
                     'upstream = "filler0"; } );\n')
    out = helpers.lbd_test(lbd.conf_path)
    line = lbd.line_of("upstreams = {")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (f"{lbd.conf_path}:{line}: the upstreams have 101000 servers in all; "
                          "at most 100000 are allowed (their state lives in the shared zone "
                          '"lb_upstream_state")\n')


def test_three_thousand_servers_reload_into_different_ones_again_and_again(lbd, backend):
    a, b = backend(helpers.named, "a"), backend(helpers.named, "b")
    lbd.start(config(3, a.address, 10000))
    assert ask_name(lbd.address) == "a"
    for i, server in enumerate([b, a, b, a], 1):
        old = lbd.workers()
        out = lbd.reload(config(3, server.address, 10000 + 3000 * i))
        assert (i, out.returncode, out.stderr) == (i, 0, "")
        assert ask_name(lbd.address) == server.name
        # the old generation's slots are freed once its workers are gone
        lbd.wait_workers(lambda w: not set(w) & set(old), what="the old workers to exit")
        lbd.wait_log(log_line("info", r'shared zone "lb_upstream_state": freed 3001 slots '
                              rf"of generations before {i}"))
    # each reload fitted beside the previous generation: the zone sized for
    # twice 3000 servers never had to grow
    assert not re.search(GROWS, lbd.error_log())


def test_max_conns_counts_old_workers_after_a_reload_grows_the_zone(lbd, backend):
    a = backend(helpers.named, "a")
    lbd.start(config(0, a.address, 10000, max_conns=1))
    held = helpers.connect(lbd.address)
    try:
        assert helpers.recv_line(held) == b"a\n"
        old = lbd.workers()
        # 3000 more servers: the new generation's zone is a bigger mapping
        # of the same memory, where the old worker's connection still counts
        out = lbd.reload(config(3, a.address, 10000, max_conns=1))
        assert (out.returncode, out.stderr) == (0, "")
        lbd.wait_log(r'shared zone "lb_upstream_state" grows from \d+ to \d+ bytes')
        with helpers.connect(lbd.address) as extra:
            assert helpers.closed_by_peer(extra)
    finally:
        held.close()
    # the old worker gives its connection back through its own mapping
    lbd.wait_workers(lambda w: not set(w) & set(old), what="the old workers to exit")
    assert ask_name(lbd.address) == "a"
