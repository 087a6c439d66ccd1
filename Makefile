# Makefile: builds lbd from what ./configure wrote under objs/ (SPEC section 1).
# On a fresh clone `make` runs ./configure first; later it reruns configure
# (with the same arguments) when configure, auto/* or a module's config change.
#
#   make              objs/lbd and objs/lbctl
#   make test         unit tests (Check) then integration tests (pytest);
#                     PYTEST_ARGS='-k name -x' is passed to pytest
#   make unit         unit tests only        make integration  pytest only
#   make soak         100 reloads and 10 upgrades under load, beside nginx and
#                     HAProxy; then the integration tests at full size
#   make bench        builds lbd and tests/bench/*.c, runs tests/bench/run
#   make fuzz         tests/fuzz/*.c with clang and libFuzzer, FUZZ_SECONDS each (30)
#   make run          demo: lbd on 127.0.0.1:8080 before two demo backends;
#                     PORT=18080 BACKEND_PORTS='19001 19002' on a busy machine
#   make install      PREFIX/sbin, PREFIX/conf, PREFIX/logs, man pages, the
#                     systemd unit and the logrotate file; honours DESTDIR;
#                     PREFIX=DIR overrides configure's --prefix
#   make deb          objs/lbd_VERSION_ARCH.deb (dpkg-deb; lintian-clean)
#   make clean        removes objs/
#
# Sanitizer build: ./configure --with-sanitizers && make test (.ci/run does it).
# V=1 shows the full compiler command lines.

SHELL := /bin/sh
.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:

LB_PYTHON ?= /usr/bin/python3

# Goals that need no configured tree: make does not run configure for them.
LB_NOCONF_GOALS := clean help run
ifneq ($(MAKECMDGOALS),)
ifeq ($(filter-out $(LB_NOCONF_GOALS),$(MAKECMDGOALS)),)
LB_NOCONF := 1
endif
endif

ifndef LB_NOCONF
include objs/Makefile.conf
endif

# `make -j clean all` must not build while it deletes.
ifneq ($(filter clean,$(MAKECMDGOALS)),)
.NOTPARALLEL:
endif

# Fresh clone: no Makefile.conf, so configure runs with no arguments. Later:
# rerun with the arguments it was last given when one of its inputs changes.
objs/Makefile.conf: $(LB_CONFIGURE_DEPS)
	$(lb_configure)

# The other files configure writes, when one has gone (`make clean all`).
objs/build.flags objs/lb_modules.c objs/lb_auto_config.h &:
	$(lb_configure)

lb_configure = CC='$(CC)' AR='$(AR)' $(SHELL) ./configure $(LB_CONFIGURE_ARGS)

# Written by configure only when it changes: the compiler, flags, include
# directories and libraries. Everything built depends on it.
LB_BUILD_FLAGS := objs/build.flags

LB_CORE_SRCS := $(filter-out core/lbd.c core/lbctl.c,$(wildcard core/*.c))
LB_LIB_OBJS := $(patsubst %.c,objs/%.o,$(LB_CORE_SRCS)) $(LB_MODULE_OBJS) \
	objs/lb_modules.o
LB_BIN_OBJS := objs/core/lbd.o objs/core/lbctl.o

LB_UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
LB_UNIT_OBJS := $(patsubst %.c,objs/%.o,$(LB_UNIT_SRCS))
LB_UNIT_BINS := $(patsubst tests/unit/%.c,objs/tests/%,$(LB_UNIT_SRCS))

LB_BENCH_SRCS := $(sort $(wildcard tests/bench/*.c))
LB_BENCH_BINS := $(patsubst tests/bench/%.c,objs/bench/%,$(LB_BENCH_SRCS))

ifeq ($(V),1)
lb_q :=
lb_say := @true
else
lb_q := @
lb_say := @printf '  %-5s %s\n'
endif

define lb_compile
$(lb_say) CC $<
$(lb_q)mkdir -p $(@D)
$(lb_q)$(CC) -c $(CFLAGS) $(LB_LIB_CFLAGS) $(LB_INCS) -MMD -MP -o $@ $<
endef

# A file a module embeds (lb_module_embeds in its config), as C source:
# objs/Makefile.conf has the rules, $(1) is the symbol (auto/embed).
define lb_embed
$(lb_say) EMBED $<
$(lb_q)mkdir -p $(@D)
$(lb_q)$(SHELL) auto/embed $(1) $< >$@
endef

all: objs/lbd objs/lbctl

objs/%.o: %.c $(LB_BUILD_FLAGS)
	$(lb_compile)

objs/lb_modules.o: objs/lb_modules.c $(LB_BUILD_FLAGS)
	$(lb_compile)

ifneq ($(LB_UNIT_OBJS),)
$(LB_UNIT_OBJS): LB_LIB_CFLAGS += $(LB_CHECK_CFLAGS)
endif

# objs/liblbd.list names the archive's members and changes only when the
# set does: a source removed from the tree is removed from the archive too.
ifndef LB_NOCONF
ifneq ($(wildcard objs/Makefile.conf),)
ifneq ($(file < objs/liblbd.list),$(strip $(LB_LIB_OBJS)))
$(file > objs/liblbd.list,$(strip $(LB_LIB_OBJS)))
endif
endif
endif

objs/liblbd.list: ;

objs/liblbd.a: $(LB_LIB_OBJS) objs/liblbd.list
	$(lb_say) AR $@
	$(lb_q)rm -f $@
	$(lb_q)$(AR) rcs $@ $(LB_LIB_OBJS)

objs/lbd objs/lbctl: objs/%: objs/core/%.o objs/liblbd.a $(LB_BUILD_FLAGS)
	$(lb_say) LINK $@
	$(lb_q)$(CC) $(LDFLAGS) -o $@ $< objs/liblbd.a $(LIBS)

$(LB_UNIT_BINS): objs/tests/%: objs/tests/unit/%.o objs/liblbd.a $(LB_BUILD_FLAGS)
	$(lb_say) LINK $@
	$(lb_q)$(CC) $(LDFLAGS) -o $@ $< objs/liblbd.a $(LIBS) $(LB_CHECK_LIBS)

# Benchmark tools are standalone: one source each, libc only.
$(LB_BENCH_BINS): objs/bench/%: tests/bench/%.c $(LB_BUILD_FLAGS)
	$(lb_say) CC $<
	$(lb_q)mkdir -p $(@D)
	$(lb_q)$(CC) $(CFLAGS) $(LDFLAGS) -MMD -MP -MF $@.d -o $@ $<

-include $(patsubst %.o,%.d,$(LB_LIB_OBJS) $(LB_BIN_OBJS) $(LB_UNIT_OBJS)) \
	$(addsuffix .d,$(LB_BENCH_BINS))

# The test runners: each is one shell command line, run in a subshell by
# `make test` so that a failing unit test does not skip the integration tests.
lb_unit_run = \
	if [ -z '$(LB_UNIT_BINS)' ]; then \
		echo 'unit: no tests in tests/unit/, skipped'; exit 0; \
	fi; \
	failed=; \
	for t in $(LB_UNIT_BINS); do \
		echo "unit: $$t"; \
		./$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "unit: FAILED:$$failed" >&2; exit 1; fi; \
	echo 'unit: all passed'

# pytest exits 5 when it collects no test: that is "skipped", not a failure.
lb_integration_run = \
	if [ -z "$$(find tests/integration -name 'test_*.py' 2>/dev/null)" ]; then \
		echo 'integration: no tests in tests/integration/, skipped'; exit 0; \
	fi; \
	cd tests/integration && \
	LBD='$(abspath objs/lbd)' LBCTL='$(abspath objs/lbctl)' \
	PYTHONPYCACHEPREFIX='$(abspath objs/pycache)' \
	$(LB_PYTHON) -m pytest -q --durations=15 -o cache_dir='$(abspath objs/pytest-cache)' \
		$(PYTEST_ARGS); \
	rc=$$?; \
	if [ $$rc = 5 ]; then echo 'integration: pytest collected no tests, skipped'; exit 0; fi; \
	if [ $$rc != 0 ]; then echo "integration: FAILED (pytest exit $$rc)" >&2; fi; \
	exit $$rc

test: all $(LB_UNIT_BINS) objs/bench/httpbackend
	@rc=0; \
	( $(lb_unit_run) ) || rc=1; \
	( $(lb_integration_run) ) || rc=1; \
	if [ $$rc = 0 ]; then echo 'make test: passed'; \
	else echo 'make test: FAILED (see above)' >&2; fi; \
	exit $$rc

unit: $(LB_UNIT_BINS)
	@$(lb_unit_run)

integration: all objs/bench/httpbackend
	@$(lb_integration_run)

# The reload and upgrade soak beside nginx and HAProxy (tests/soak/soak.py),
# then the integration tests with the heavy ones at full size (see each
# test's docstring).
soak: all objs/bench/httpbackend
	LBD='$(abspath objs/lbd)' LBCTL='$(abspath objs/lbctl)' BENCH_BIN='$(abspath objs/bench)' \
	$(LB_PYTHON) tests/soak/soak.py $(SOAK_ARGS)
	@export LBD_SOAK=1; $(lb_integration_run)

bench: all $(LB_BENCH_BINS)
	@if [ ! -x tests/bench/run ]; then \
		echo 'make bench: tests/bench/run is missing or not executable' >&2; exit 1; \
	fi
	@mkdir -p objs/bench
	LBD='$(abspath objs/lbd)' LBCTL='$(abspath objs/lbctl)' \
	BENCH_BIN='$(abspath objs/bench)' tests/bench/run

# Fuzzing: each tests/fuzz/NAME.c is a libFuzzer target built with the
# sanitizers into objs/fuzz/NAME, run FUZZ_SECONDS from the seeds in
# tests/fuzz/corpus/NAME/ (what it learns goes to objs/fuzz/corpus/NAME/).
# A crash leaves its input as objs/fuzz/NAME-crash-* and fails the target.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30

LB_FUZZ_SRCS := $(sort $(wildcard tests/fuzz/*.c))
LB_FUZZ_BINS := $(patsubst tests/fuzz/%.c,objs/fuzz/%,$(LB_FUZZ_SRCS))
# the pure parsers the targets exercise: no I/O, linked without liblbd
LB_FUZZ_PARSER := modules/http/core/lb_http_parse.c core/lb_proxy_protocol.c \
	modules/stream/tcp/lb_tls_hello.c modules/http/core/lb_http_relay.c core/lb_buf.c core/lb_pool.c
# the HTTP/1 writer's target also links the writer (it defines the few
# symbols of the core the writer reads)
LB_FUZZ_WRITER := modules/http/core/lb_http_h1.c core/lb_chain.c
objs/fuzz/fuzz_http_writer: LB_FUZZ_EXTRA := $(LB_FUZZ_WRITER)
objs/fuzz/fuzz_http_writer: $(LB_FUZZ_WRITER)
# the sticky cookie's target links the codec and the HMAC behind it
LB_FUZZ_STICKY := modules/core/upstream/lb_upstream_sticky.c \
	modules/core/upstream/lb_upstream_maglev.c core/lb_crypto.c
objs/fuzz/fuzz_sticky_cookie: LB_FUZZ_EXTRA := $(LB_FUZZ_STICKY) -lcrypto
objs/fuzz/fuzz_sticky_cookie: $(LB_FUZZ_STICKY)
# the admin API's request reader
LB_FUZZ_ADMIN := modules/core/admin/lb_admin_parse.c
objs/fuzz/fuzz_admin_request: LB_FUZZ_EXTRA := $(LB_FUZZ_ADMIN) -I modules/core/admin
objs/fuzz/fuzz_admin_request: $(LB_FUZZ_ADMIN)
# the upgrade state's reader: the codec alone, apart from the cycle
LB_FUZZ_STATE := core/lb_state_codec.c
objs/fuzz/fuzz_state_blob: LB_FUZZ_EXTRA := $(LB_FUZZ_STATE)
objs/fuzz/fuzz_state_blob: $(LB_FUZZ_STATE)

# the WAF engine: normalisation, the rules and their scan (PCRE2)
LB_FUZZ_WAF := modules/http/waf/lb_waf_engine.c modules/http/waf/lb_waf_rules.c
objs/fuzz/fuzz_waf: LB_FUZZ_EXTRA := $(LB_FUZZ_WAF) -I modules/http/waf $(shell pkg-config --libs libpcre2-8 2>/dev/null || echo -lpcre2-8)
objs/fuzz/fuzz_waf: $(LB_FUZZ_WAF)

# the binary upgrade's handoff message
LB_FUZZ_UPGRADE := core/lb_upgrade_codec.c
objs/fuzz/fuzz_upgrade_message: LB_FUZZ_EXTRA := $(LB_FUZZ_UPGRADE)
objs/fuzz/fuzz_upgrade_message: $(LB_FUZZ_UPGRADE)

$(LB_FUZZ_BINS): objs/fuzz/%: tests/fuzz/%.c $(LB_FUZZ_PARSER) objs/lb_auto_config.h
	@command -v '$(FUZZ_CC)' >/dev/null 2>&1 || \
		{ echo 'make fuzz: $(FUZZ_CC) not found (auto/deps installs it)' >&2; exit 1; }
	$(lb_say) FUZZ $@
	$(lb_q)mkdir -p $(@D)
	$(lb_q)$(FUZZ_CC) -std=gnu11 -g -O1 -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		$(LB_INCS) -I modules/http/core -MMD -MP -MF $@.d -o $@ $< $(LB_FUZZ_PARSER) $(LB_FUZZ_EXTRA)

-include $(addsuffix .d,$(LB_FUZZ_BINS))

fuzz: $(LB_FUZZ_BINS)
	@failed=; \
	for f in $(LB_FUZZ_BINS); do \
		n=$${f#objs/fuzz/}; \
		mkdir -p objs/fuzz/corpus/$$n; \
		if $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=objs/fuzz/$$n- objs/fuzz/corpus/$$n tests/fuzz/corpus/$$n \
			>objs/fuzz/$$n.log 2>&1; \
		then \
			echo "fuzz: $$n: $$(sed -n 's/^stat::number_of_executed_units: *//p' \
				objs/fuzz/$$n.log) runs in $(FUZZ_SECONDS)s, no crash"; \
		else \
			tail -n 40 objs/fuzz/$$n.log >&2; \
			echo "fuzz: $$n FAILED (objs/fuzz/$$n.log)" >&2; failed="$$failed $$n"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed" >&2; exit 1; fi

# `make run` works on a fresh machine: auto/deps first if a build dependency
# is missing, then the build (which configures), then the demo.
lb_deps_present = \
	command -v '$(firstword $(CC))' >/dev/null 2>&1 && \
	command -v pkg-config >/dev/null 2>&1 && \
	pkg-config --exists libconfig openssl libpcre2-8 zlib check && \
	[ -x '$(LB_PYTHON)' ]

run:
	@$(lb_deps_present) || $(SHELL) auto/deps
	@$(MAKE) --no-print-directory -s all
	@LB_PYTHON='$(LB_PYTHON)' PORT='$(PORT)' BACKEND_PORTS='$(BACKEND_PORTS)' \
		$(SHELL) auto/run-demo

# lbd and lbctl default to the configured prefix for -p. `make install
# PREFIX=DIR` with another DIR installs them relinked with DIR as their
# default (objs/install/), so the installed lbd finds its own files. PREFIX
# counts only when given on the command line: some environments export a
# PREFIX of their own.
ifeq ($(origin PREFIX),command line)
lb_install_prefix := $(patsubst %/,%,$(PREFIX))
else
lb_install_prefix := $(LB_PREFIX)
endif

ifeq ($(lb_install_prefix),$(LB_PREFIX))
lb_install_bins := objs/lbd objs/lbctl
else
lb_install_bins := objs/install/lbd objs/install/lbctl
ifneq ($(filter install install-bins,$(MAKECMDGOALS)),)
ifneq ($(filter-out /%,$(lb_install_prefix)),)
$(error make install: PREFIX must be an absolute directory, not "$(PREFIX)")
endif
ifneq ($(shell printf '%s' '$(lb_install_prefix)' | tr -d 'A-Za-z0-9_./+@,=:~-'),)
$(error make install: PREFIX may only contain letters, digits and ._-+@,=:~/)
endif
# objs/install/prefix holds the prefix the objects were built for
ifneq ($(file < objs/install/prefix),$(lb_install_prefix))
$(shell mkdir -p objs/install)
$(file > objs/install/prefix,$(lb_install_prefix))
endif
endif
endif

objs/install/prefix: ;

objs/install/%.o: core/%.c objs/install/prefix $(LB_BUILD_FLAGS)
	$(lb_say) CC $@
	$(lb_q)$(CC) -c $(CFLAGS) $(LB_LIB_CFLAGS) $(LB_INCS) -DLB_PREFIX='"$(lb_install_prefix)"' \
		-MMD -MP -o $@ $<

objs/install/lbd objs/install/lbctl: objs/install/%: objs/install/%.o objs/liblbd.a
	$(lb_say) LINK $@
	$(lb_q)$(CC) $(LDFLAGS) -o $@ $< objs/liblbd.a $(LIBS)

-include objs/install/lbd.d objs/install/lbctl.d

# The configuration is installed only where there is none: an upgrade never
# overwrites the one in use. conf/examples/ always gets the shipped ones.
lb_dest := $(DESTDIR)$(lb_install_prefix)

install: all $(lb_install_bins) objs/install/lbd.service objs/install/lbd.logrotate
	@if [ ! -f conf/lbd.conf ]; then echo 'make install: conf/lbd.conf is missing' >&2; exit 1; fi
	install -d '$(lb_dest)/sbin' '$(lb_dest)/conf/examples' '$(lb_dest)/logs'
	install -m 755 $(lb_install_bins) '$(lb_dest)/sbin/'
	$(if $(wildcard conf/*.conf conf/examples/*.conf),install -m 644 $(wildcard conf/*.conf conf/examples/*.conf) '$(lb_dest)/conf/examples/')
	@if [ -e '$(lb_dest)/conf/lbd.conf' ]; then \
		echo 'keeping the existing $(lb_dest)/conf/lbd.conf (the shipped one is conf/examples/lbd.conf)'; \
	else \
		echo "install -m 644 conf/lbd.conf '$(lb_dest)/conf/lbd.conf'"; \
		install -m 644 conf/lbd.conf '$(lb_dest)/conf/lbd.conf'; \
	fi
	install -d '$(lb_dest)/share/man/man5' '$(lb_dest)/share/man/man8' \
		'$(lb_dest)/lib/systemd/system' '$(lb_dest)/etc/logrotate.d'
	install -m 644 docs/man/lbd.8 docs/man/lbctl.8 '$(lb_dest)/share/man/man8/'
	install -m 644 docs/man/lbd.conf.5 '$(lb_dest)/share/man/man5/'
	install -d '$(lb_dest)/share/doc/lbd'
	install -m 644 README.md docs/*.md '$(lb_dest)/share/doc/lbd/'
	install -m 644 objs/install/lbd.service '$(lb_dest)/lib/systemd/system/lbd.service'
	install -m 644 objs/install/lbd.logrotate '$(lb_dest)/etc/logrotate.d/lbd'

# A Debian package (auto/deb): the binaries relinked for /etc/lbd.
deb:
	@$(MAKE) --no-print-directory install-bins PREFIX=/etc/lbd
	@sh auto/deb

install-bins: $(lb_install_bins)

# The unit and the logrotate file with this installation's paths.
lb_subst = sed -e 's|@SBIN@|$(1)/sbin|g' -e 's|@CONF@|$(1)/conf/lbd.conf|g' -e 's|@LOGS@|$(1)/logs|g'

objs/install/lbd.service: conf/systemd/lbd.service.in objs/install/prefix
	@mkdir -p $(@D)
	$(call lb_subst,$(lb_install_prefix)) $< > $@

objs/install/lbd.logrotate: conf/logrotate/lbd.in objs/install/prefix
	@mkdir -p $(@D)
	$(call lb_subst,$(lb_install_prefix)) $< > $@

clean:
	rm -rf objs

help:
	@sed -n '2,22s/^# \{0,1\}//p' Makefile

.PHONY: all test unit integration soak bench fuzz run install install-bins deb clean help
