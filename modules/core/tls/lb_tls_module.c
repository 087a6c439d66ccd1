/*
 * lb_tls_module.c: the `tls` group of tls and https listeners (SPEC §3.3):
 * certificates chosen by SNI, policy, protocols, ciphers, session
 * resumption by tickets (keys shared by every worker, rotated) and by a
 * session cache, client certificates. Builds one OpenSSL context per
 * certificate at load and gives the listener the TLS accept step; the
 * handshake and the I/O layer live in core/lb_tls.c. With it, this module
 * is the TLS seam (core/lb_tls.h): the one module that uses OpenSSL.
 */
#include "lb_core.h"
#include "lb_state.h"
#include "lb_crypto.h"
#include "lb_tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <ctype.h>
#include <limits.h>

#define LB_TLS_MAX_CERTS       64
#define LB_TLS_MAX_NAMES       256     /* names kept per certificate */
#define LB_TLS_TICKET_PERIOD   3600    /* seconds a ticket key encrypts */
#define LB_TLS_CACHE_SIZE      20480   /* sessions per worker */

typedef enum { LB_TLS_MODERN = 0, LB_TLS_INTERMEDIATE, LB_TLS_LEGACY } lb_tls_policy_t;
typedef enum { LB_TLS_VERIFY_OFF = 0, LB_TLS_VERIFY_OPTIONAL, LB_TLS_VERIFY_ON } lb_tls_verify_t;

typedef struct {
    SSL_CTX      *ctx;
    char        **names;        /* lowercase DNS names (SAN, else CN) */
    size_t        nnames;
} lb_tls_cert_t;

typedef struct {
    lb_tls_listener_t   tl;         /* first: the core's view */
    bool                set;        /* a tls group was given */
    lb_tls_cert_t       certs[LB_TLS_MAX_CERTS];
    size_t              ncerts;
} lb_tls_conf_t;

static int   lb_tls_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf);
static int   lb_tls_set_upstream(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v,
                                 void *conf);
static void *lb_tls_create_conf(lb_conf_t *cf, unsigned ctx);
static int   lb_tls_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf);
static int   lb_tls_init_conf(lb_conf_t *cf);
static SSL_CTX *lb_tls_upstream_ctx(lb_pool_t *pool, bool verify);
static int   lb_tls_init_master(lb_cycle_t *cycle);
static int   lb_tls_state_save(lb_cycle_t *cycle, lb_state_writer_t *w);
static int   lb_tls_state_load(lb_cycle_t *cycle, const lb_state_record_t *r);

static const char *const  lb_tls_protocols[] = { "tls", "https", NULL };

static const lb_setting_t  lb_tls_settings[] = {
    { "tls", LB_SET_CUSTOM, LB_CTX_LISTENER, NULL, 0, 0, 0, NULL, lb_tls_set, 0 },
    { "tls", LB_SET_CUSTOM, LB_CTX_UPSTREAM, NULL, 0, 0, 0, NULL, lb_tls_set_upstream, 0 },
    lb_setting_end
};

lb_module_t  lb_core_tls_module = {
    "core_tls", LB_MODULE_CORE, lb_tls_protocols, lb_tls_settings,
    LB_CTX_LISTENER | LB_CTX_UPSTREAM,
    lb_tls_create_conf, lb_tls_merge_conf, lb_tls_init_conf,
    lb_tls_init_master, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL,
    lb_tls_state_save, lb_tls_state_load
};

/* Session ticket keys ---------------------------------------------------------- */

/* One secret per master process, drawn before the workers fork, so every
 * worker derives the same keys: the key of hour N (of the epoch) encrypts
 * the tickets issued in that hour, and the keys of hours N and N-1
 * decrypt, so a ticket works on any worker for one to two hours. A new
 * master of a binary upgrade draws one at load, then takes the old
 * master's (lb_tls_state_load) before its workers fork, so tickets issued
 * before the upgrade still resume after it. */
static unsigned char  lb_tls_secret[32];
static bool           lb_tls_have_secret;

static void
lb_tls_derive(uint64_t period, const char *label, unsigned char out[LB_HMAC_SHA256_LEN])
{
    unsigned char  msg[24];

    memset(msg, 0, sizeof(msg));
    memcpy(msg, label, strlen(label));
    memcpy(msg + 16, &period, sizeof(period));
    if (lb_hmac_sha256(lb_tls_secret, sizeof(lb_tls_secret), msg, sizeof(msg), out) != LB_OK) {
        /* no key to derive: a random one still encrypts, and only costs
         * a full handshake to a client with a ticket from another worker */
        lb_random_bytes(out, LB_HMAC_SHA256_LEN);
    }
}

/* The keys of a period, derived once: a handshake would otherwise pay
 * three HMACs per ticket. Two slots: the current period and the last. */
typedef struct {
    uint64_t       period;
    bool           set;
    unsigned char  name[32], aes[32], mac[32];
} lb_tls_ticket_key_t;

static lb_tls_ticket_key_t  lb_tls_keys[2];

static const lb_tls_ticket_key_t *
lb_tls_key(uint64_t period)
{
    lb_tls_ticket_key_t  *k = &lb_tls_keys[period & 1];

    if (!k->set || k->period != period) {
        lb_tls_derive(period, "lbd-ticket-name", k->name);
        lb_tls_derive(period, "lbd-ticket-aes", k->aes);
        lb_tls_derive(period, "lbd-ticket-mac", k->mac);
        k->period = period;
        k->set = true;
    }
    return k;
}

static int
lb_tls_ticket_keys(uint64_t period, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                   EVP_MAC_CTX *hctx, int enc)
{
    const lb_tls_ticket_key_t  *k = lb_tls_key(period);
    unsigned char               mac[32];
    OSSL_PARAM                  params[3];

    memcpy(mac, k->mac, sizeof(mac));
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, mac, sizeof(mac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (!EVP_MAC_CTX_set_params(hctx, params)) {
        return -1;
    }
    if (enc) {
        return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) ? 1 : -1;
    }
    return EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) ? 1 : -1;
}

static int
lb_tls_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                 EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    uint64_t  now = (uint64_t) time(NULL) / LB_TLS_TICKET_PERIOD, p;

    if (enc) {
        if (lb_random_bytes(iv, (size_t) EVP_CIPHER_iv_length(EVP_aes_256_cbc())) != LB_OK) {
            return -1;
        }
        memcpy(key_name, lb_tls_key(now)->name, 16);
        return lb_tls_ticket_keys(now, iv, cctx, hctx, 1);
    }
    for (p = now; p + 1 >= now && p <= now; p--) {
        if (memcmp(key_name, lb_tls_key(p)->name, 16) == 0) {
            if (lb_tls_ticket_keys(p, iv, cctx, hctx, 0) != 1) {
                return -1;
            }
            return p == now ? 1 : 2;        /* 2: renew with the current key */
        }
        if (p == 0) {
            break;
        }
    }
    return 0;                               /* unknown key: full handshake */
}

static int
lb_tls_init_master(lb_cycle_t *cycle)
{
    if (!lb_tls_have_secret) {
        if (lb_random_bytes(lb_tls_secret, sizeof(lb_tls_secret)) != LB_OK) {
            lb_log_error(0, "cannot draw the TLS session ticket secret: %s",
                         lb_tls_error_text());
            return LB_ERROR;
        }
        lb_tls_have_secret = true;
    }
    return LB_OK;
}

static int
lb_tls_state_save(lb_cycle_t *cycle, lb_state_writer_t *w)
{
    (void) cycle;
    if (lb_tls_have_secret) {
        lb_state_record_begin(w, "core_tls", "ticket_secret");
        lb_state_put_bytes(w, "secret", lb_tls_secret, sizeof(lb_tls_secret));
        lb_state_record_end(w);
    }
    return LB_OK;
}

static int
lb_tls_state_load(lb_cycle_t *cycle, const lb_state_record_t *r)
{
    const u_char  *p;
    size_t         n;

    (void) cycle;
    if (strcmp(r->type, "ticket_secret") != 0
        || (p = lb_state_get_bytes(r, "secret", &n)) == NULL || n != sizeof(lb_tls_secret))
    {
        return LB_DECLINED;
    }
    memcpy(lb_tls_secret, p, n);
    lb_tls_have_secret = true;
    /* keys derived from the drawn secret (none yet in the master) go */
    memset(lb_tls_keys, 0, sizeof(lb_tls_keys));
    return LB_OK;
}

/* Configuration --------------------------------------------------------------- */

/* The accept step of tls and https listeners. */
static void
lb_tls_accept_step(lb_conn_t *c)
{
    lb_tls_conf_t  *tcf = lb_get_conf(c->listener->confs, lb_core_tls_module);

    lb_tls_accept(c, &tcf->tl);
}

static void *
lb_tls_create_conf(lb_conf_t *cf, unsigned ctx)
{
    lb_tls_conf_t  *tcf;

    if (ctx == LB_CTX_UPSTREAM) {
        return lb_pcalloc(cf->pool, sizeof(lb_tls_upstream_t));
    }
    tcf = lb_pcalloc(cf->pool, sizeof(*tcf));

    if (tcf) {
        tcf->tl.handshake_timeout = 10000;
    }
    return tcf;
}

/* Contexts belong to the cycle: freed with its pool (a connection holds
 * its own reference to the context it was made from). */
static void
lb_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

static SSL_CTX *
lb_tls_ctx_new(lb_conf_t *cf, const SSL_METHOD *method)
{
    SSL_CTX  *ctx = SSL_CTX_new(method);

    if (ctx && lb_pool_cleanup_add(cf->pool, lb_tls_ctx_free, ctx) != LB_OK) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Whether name (lowercase, no trailing dot) is one of c's names: exact, or
 * "*.example.com" for one label before ".example.com". */
static int
lb_tls_cert_match(const lb_tls_cert_t *c, const char *name, bool wildcard)
{
    const char  *dot;
    size_t       i;

    for (i = 0; i < c->nnames; i++) {
        if (!wildcard) {
            if (strcmp(c->names[i], name) == 0) {
                return 1;
            }
            continue;
        }
        dot = strchr(name, '.');
        if (c->names[i][0] == '*' && c->names[i][1] == '.' && dot && dot != name
            && strcmp(c->names[i] + 1, dot) == 0)
        {
            return 1;
        }
    }
    return 0;
}

/* SNI: switch to the certificate that names the server (exact names of
 * every certificate first, then wildcards); unknown names keep the first. */
static int
lb_tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
    lb_tls_conf_t  *tcf = arg;
    const char     *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char            name[256];
    size_t          i, len;
    int             pass;

    if (sn == NULL || tcf->ncerts < 2) {
        return SSL_TLSEXT_ERR_OK;
    }
    len = strlen(sn);
    if (len == 0 || len >= sizeof(name)) {
        return SSL_TLSEXT_ERR_OK;
    }
    for (i = 0; i < len; i++) {
        name[i] = (char) tolower((unsigned char) sn[i]);
    }
    if (name[len - 1] == '.') {
        len--;
    }
    name[len] = '\0';
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < tcf->ncerts; i++) {
            if (lb_tls_cert_match(&tcf->certs[i], name, pass == 1)) {
                if (i > 0) {
                    SSL_set_SSL_CTX(ssl, tcf->certs[i].ctx);
                }
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN: http/1.1 when the client offers it (https), else no protocol. */
static int
lb_tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
               const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int  i = 0;

    while (i < inlen) {
        unsigned int  n = in[i];

        if (i + 1 + n > inlen) {
            break;
        }
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* The published parameter sets, after Mozilla's server-side TLS
 * recommendations (version 5.7): modern is TLS 1.3 only; intermediate
 * TLS 1.2 and 1.3 with forward-secret AEAD suites; legacy ("old") also
 * TLS 1.0 and 1.1 and CBC suites, at OpenSSL security level 0. */
static const char  lb_tls_intermediate_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char  lb_tls_legacy_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:"
    "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA256:"
    "DHE-RSA-AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:"
    "AES256-SHA256:AES128-SHA:AES256-SHA:DES-CBC3-SHA";

static const char *const  lb_tls_policy_names[] = { "modern", "intermediate", "legacy", NULL };
static const char *const  lb_tls_verify_names[] = { "off", "optional", "on", NULL };
static const char *const  lb_tls_version_names[] = { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3",
                                                      NULL };
static const int          lb_tls_versions[] = { TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
                                                TLS1_3_VERSION };

/* What the group says, before contexts are made. */
typedef struct {
    config_setting_t   *group;
    config_setting_t   *certs;
    int                 policy;
    int                 min_version, max_version;
    const char         *ciphers;
    int                 tickets;
    const char         *client_ca;
    config_setting_t   *client_ca_v;
    int                 verify;
    config_setting_t   *verify_v;
} lb_tls_args_t;

static int
lb_tls_enum(lb_conf_t *cf, config_setting_t *v, const char *const *names, int *out)
{
    const char  *s;
    int          i;

    if (lb_conf_get_string(cf, v, &s) != LB_OK) {
        return LB_ERROR;
    }
    for (i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return LB_OK;
        }
    }
    return lb_conf_error(cf, v, "invalid %s \"%s\"", config_setting_name(v), s);
}

static int
lb_tls_cert_names(lb_conf_t *cf, lb_tls_cert_t *c, X509 *x)
{
    GENERAL_NAMES  *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    X509_NAME      *subj;
    char            buf[256];
    const char     *d;
    int             i, n, len, k;

    c->names = lb_palloc(cf->pool, LB_TLS_MAX_NAMES * sizeof(char *));
    if (c->names == NULL) {
        GENERAL_NAMES_free(gens);
        return LB_ERROR;
    }
    n = gens ? sk_GENERAL_NAME_num(gens) : 0;
    for (i = 0; i < n && c->nnames < LB_TLS_MAX_NAMES; i++) {
        GENERAL_NAME  *g = sk_GENERAL_NAME_value(gens, i);

        if (g->type != GEN_DNS) {
            continue;
        }
        d = (const char *) ASN1_STRING_get0_data(g->d.dNSName);
        len = ASN1_STRING_length(g->d.dNSName);
        if (len <= 0 || len >= (int) sizeof(buf)) {
            continue;
        }
        for (k = 0; k < len; k++) {
            buf[k] = (char) tolower((unsigned char) d[k]);
        }
        buf[len] = '\0';
        c->names[c->nnames++] = lb_pstrdup(cf->pool, buf);
    }
    GENERAL_NAMES_free(gens);
    if (c->nnames == 0) {
        subj = X509_get_subject_name(x);
        if (subj && X509_NAME_get_text_by_NID(subj, NID_commonName, buf, sizeof(buf)) > 0) {
            for (k = 0; buf[k]; k++) {
                buf[k] = (char) tolower((unsigned char) buf[k]);
            }
            c->names[c->nnames++] = lb_pstrdup(cf->pool, buf);
        }
    }
    return LB_OK;
}

/* One context for one certificate, with the group's parameters. */
static int
lb_tls_make_ctx(lb_conf_t *cf, lb_tls_conf_t *tcf, const lb_tls_args_t *a,
                config_setting_t *entry, lb_tls_cert_t *c)
{
    config_setting_t  *cv = config_setting_get_member(entry, "cert");
    config_setting_t  *kv = config_setting_get_member(entry, "key");
    const char        *cert, *key, *why;
    char              *cpath, *kpath, *capath;
    SSL_CTX           *ctx;
    X509              *x;
    long               opts;
    unsigned char      sid[SSL_MAX_SID_CTX_LENGTH];
    unsigned int       sidlen = 0;

    if (config_setting_type(entry) != CONFIG_TYPE_GROUP || cv == NULL || kv == NULL) {
        return lb_conf_error(cf, entry, "a certificate is { cert = \"FILE\"; key = \"FILE\"; }");
    }
    if (lb_conf_get_string(cf, cv, &cert) != LB_OK || lb_conf_get_string(cf, kv, &key) != LB_OK) {
        return LB_ERROR;
    }
    cpath = lb_cycle_path(cf->pool, cf->cycle->prefix, cert);
    kpath = lb_cycle_path(cf->pool, cf->cycle->prefix, key);
    if (cpath == NULL || kpath == NULL) {
        return lb_conf_error(cf, entry, "out of memory");
    }

    ctx = lb_tls_ctx_new(cf, TLS_server_method());
    if (ctx == NULL) {
        return lb_conf_error(cf, entry, "cannot create a TLS context: %s", lb_tls_error_text());
    }
    c->ctx = ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, cpath) != 1) {
        why = lb_tls_error_text();
        return lb_conf_error(cf, cv, "cannot load certificate \"%s\": %s", cpath,
                             access(cpath, R_OK) != 0 ? strerror(errno) : why);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, kpath, SSL_FILETYPE_PEM) != 1) {
        unsigned long  e = ERR_peek_last_error();

        if (ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH
                                               || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
        {
            /* the key loaded, but is not the certificate's */
            lb_tls_error_text();
            return lb_conf_error(cf, kv, "private key \"%s\" does not match certificate \"%s\"",
                                 kpath, cpath);
        }
        why = lb_tls_error_text();
        return lb_conf_error(cf, kv, "cannot load private key \"%s\": %s", kpath,
                             access(kpath, R_OK) != 0 ? strerror(errno) : why);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        lb_tls_error_text();
        return lb_conf_error(cf, kv, "private key \"%s\" does not match certificate \"%s\"",
                             kpath, cpath);
    }
    x = SSL_CTX_get0_certificate(ctx);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        return lb_conf_error(cf, cv, "certificate \"%s\" has expired", cpath);
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        return lb_conf_error(cf, cv, "certificate \"%s\" is not valid yet", cpath);
    }
    if (lb_tls_cert_names(cf, c, x) != LB_OK) {
        return lb_conf_error(cf, cv, "out of memory");
    }

    opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION
           | SSL_OP_IGNORE_UNEXPECTED_EOF;
    if (!a->tickets) {
        opts |= SSL_OP_NO_TICKET;
    }
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);
    if (a->policy == LB_TLS_LEGACY) {
        SSL_CTX_set_security_level(ctx, 0);
    }
    if (!SSL_CTX_set_min_proto_version(ctx, a->min_version)
        || !SSL_CTX_set_max_proto_version(ctx, a->max_version))
    {
        return lb_conf_error(cf, a->group, "cannot set the TLS versions: %s", lb_tls_error_text());
    }
    if (a->ciphers || a->policy != LB_TLS_MODERN) {
        if (SSL_CTX_set_cipher_list(ctx, a->ciphers ? a->ciphers
                                    : a->policy == LB_TLS_LEGACY ? lb_tls_legacy_ciphers
                                    : lb_tls_intermediate_ciphers) != 1)
        {
            return lb_conf_error(cf, a->group, "no usable cipher in \"%s\": %s",
                                 a->ciphers ? a->ciphers : "(policy)", lb_tls_error_text());
        }
    }

    /* resumption: tickets with the shared keys, and each worker's cache */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, LB_TLS_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, 2 * LB_TLS_TICKET_PERIOD);
    EVP_Digest(cf->listener->name, strlen(cf->listener->name), sid, &sidlen, EVP_sha256(), NULL);
    SSL_CTX_set_session_id_context(ctx, sid, lb_min(sidlen, (unsigned) SSL_MAX_SID_CTX_LENGTH));
    if (a->tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, lb_tls_ticket_cb);
    }

    SSL_CTX_set_tlsext_servername_callback(ctx, lb_tls_servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, tcf);
    if (strcmp(cf->listener->protocol, "https") == 0) {
        SSL_CTX_set_alpn_select_cb(ctx, lb_tls_alpn_cb, NULL);
        tcf->tl.plain_http_400 = true;
    }

    if (a->verify != LB_TLS_VERIFY_OFF) {
        capath = lb_cycle_path(cf->pool, cf->cycle->prefix, a->client_ca);
        if (capath == NULL || SSL_CTX_load_verify_locations(ctx, capath, NULL) != 1) {
            why = lb_tls_error_text();
            return lb_conf_error(cf, a->client_ca_v, "cannot load client_ca \"%s\": %s",
                                 capath ? capath : a->client_ca,
                                 capath && access(capath, R_OK) != 0 ? strerror(errno) : why);
        }
        SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(capath));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (a->verify == LB_TLS_VERIFY_ON
                                                   ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
        SSL_CTX_set_verify_depth(ctx, 8);
    }
    return LB_OK;
}

static int
lb_tls_set(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    static const char *const  names[] = {
        "certificates", "policy", "protocols", "ciphers", "session_tickets", "client_ca",
        "verify_client", "handshake_timeout", NULL
    };
    lb_tls_conf_t     *tcf = conf;
    lb_tls_args_t      a;
    config_setting_t  *e;
    int                i, n, k, lo = 3, hi = 0, rc = LB_OK;

    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "\"tls\" must be a group such as { certificates = "
                             "( { cert = \"a.crt\"; key = \"a.key\"; } ); }");
    }
    memset(&a, 0, sizeof(a));
    a.group = v;
    a.policy = LB_TLS_INTERMEDIATE;
    a.tickets = 1;
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        e = config_setting_get_elem(v, (unsigned) i);
        const char  *name = config_setting_name(e);

        if (strcmp(name, "certificates") == 0) {
            if (config_setting_type(e) != CONFIG_TYPE_LIST || config_setting_length(e) == 0) {
                rc = lb_conf_error(cf, e, "\"certificates\" must be a non-empty list of "
                                   "{ cert; key; } groups");
                continue;
            }
            a.certs = e;
        } else if (strcmp(name, "policy") == 0) {
            rc |= lb_tls_enum(cf, e, lb_tls_policy_names, &a.policy);
        } else if (strcmp(name, "protocols") == 0) {
            k = config_setting_type(e) == CONFIG_TYPE_STRING ? 1 : config_setting_length(e);
            if (k == 0) {
                rc = lb_conf_error(cf, e, "\"protocols\" must not be empty");
            }
            for (int j = 0; j < k; j++) {
                config_setting_t  *pv = config_setting_type(e) == CONFIG_TYPE_STRING
                                        ? e : config_setting_get_elem(e, (unsigned) j);
                int                ver;

                if (lb_tls_enum(cf, pv, lb_tls_version_names, &ver) != LB_OK) {
                    rc = LB_ERROR;
                    continue;
                }
                lo = lb_min(lo, ver);
                hi = lb_max(hi, ver);
            }
            a.min_version = -1;     /* set below from lo..hi */
        } else if (strcmp(name, "ciphers") == 0) {
            if (lb_conf_get_string(cf, e, &a.ciphers) != LB_OK) {
                rc = LB_ERROR;
            }
        } else if (strcmp(name, "session_tickets") == 0) {
            if (config_setting_type(e) != CONFIG_TYPE_BOOL) {
                rc = lb_conf_error(cf, e, "\"session_tickets\" must be true or false");
            } else {
                a.tickets = config_setting_get_bool(e);
            }
        } else if (strcmp(name, "client_ca") == 0) {
            if (lb_conf_get_string(cf, e, &a.client_ca) != LB_OK) {
                rc = LB_ERROR;
            }
            a.client_ca_v = e;
        } else if (strcmp(name, "verify_client") == 0) {
            rc |= lb_tls_enum(cf, e, lb_tls_verify_names, &a.verify);
            a.verify_v = e;
        } else if (strcmp(name, "handshake_timeout") == 0) {
            if (lb_conf_get_duration(cf, e, &tcf->tl.handshake_timeout) != LB_OK) {
                rc = LB_ERROR;
            }
        } else {
            rc = lb_conf_unknown_name(cf, e, "\"tls\"", names);
        }
    }
    if (rc != LB_OK) {
        return LB_ERROR;
    }
    if (a.certs == NULL) {
        return lb_conf_error(cf, v, "\"tls\" needs \"certificates\"");
    }
    if (a.verify != LB_TLS_VERIFY_OFF && a.client_ca == NULL) {
        return lb_conf_error(cf, a.verify_v, "verify_client needs client_ca");
    }
    if (a.min_version == -1) {
        a.min_version = lb_tls_versions[lo];
        a.max_version = lb_tls_versions[hi];
    } else {
        a.min_version = a.policy == LB_TLS_MODERN ? TLS1_3_VERSION
                      : a.policy == LB_TLS_INTERMEDIATE ? TLS1_2_VERSION : TLS1_VERSION;
        a.max_version = TLS1_3_VERSION;
    }
    n = config_setting_length(a.certs);
    if (n > LB_TLS_MAX_CERTS) {
        return lb_conf_error(cf, a.certs, "at most %d certificates", LB_TLS_MAX_CERTS);
    }
    for (i = 0; i < n; i++) {
        if (lb_tls_make_ctx(cf, tcf, &a, config_setting_get_elem(a.certs, (unsigned) i),
                            &tcf->certs[tcf->ncerts]) != LB_OK)
        {
            rc = LB_ERROR;
            continue;
        }
        tcf->ncerts++;
    }
    if (rc == LB_OK) {
        tcf->tl.ctx = tcf->certs[0].ctx;
        tcf->set = true;
    }
    return rc;
}

/* Upstream TLS ------------------------------------------------------------------ */

/* tls = { verify = true; ca = "FILE"; sni = "name"; } of an upstream:
 * connections to its servers speak TLS. verify (default true) checks the
 * server's chain against ca (default: the system's store) and, when sni
 * is set, that the certificate names it. */
static int
lb_tls_set_upstream(lb_conf_t *cf, const lb_setting_t *s, config_setting_t *v, void *conf)
{
    static const char *const  names[] = { "verify", "ca", "sni", NULL };
    lb_tls_upstream_t  *ut = conf;
    config_setting_t   *e, *cav = NULL;
    const char         *ca = NULL, *name, *why;
    char               *path;
    int                 i, n, verify = 1, rc = LB_OK;

    if (config_setting_type(v) != CONFIG_TYPE_GROUP) {
        return lb_conf_error(cf, v, "an upstream's \"tls\" must be a group such as "
                             "{ verify = true; ca = \"ca.pem\"; sni = \"backend.internal\"; }");
    }
    n = config_setting_length(v);
    for (i = 0; i < n; i++) {
        e = config_setting_get_elem(v, (unsigned) i);
        name = config_setting_name(e);
        if (strcmp(name, "verify") == 0) {
            if (config_setting_type(e) != CONFIG_TYPE_BOOL) {
                rc = lb_conf_error(cf, e, "\"verify\" must be true or false");
            } else {
                verify = config_setting_get_bool(e);
            }
        } else if (strcmp(name, "ca") == 0) {
            rc |= lb_conf_get_string(cf, e, &ca);
            cav = e;
        } else if (strcmp(name, "sni") == 0) {
            if (lb_conf_get_string(cf, e, &name) != LB_OK) {
                rc = LB_ERROR;
            } else {
                ut->sni = lb_pstrdup(cf->pool, name);
            }
        } else {
            rc = lb_conf_unknown_name(cf, e, "an upstream's \"tls\"", names);
        }
    }
    if (rc != LB_OK) {
        return LB_ERROR;
    }
    ut->ctx = lb_tls_upstream_ctx(cf->pool, verify);
    if (ut->ctx == NULL) {
        return lb_conf_error(cf, v, "cannot create a TLS context: %s", lb_tls_error_text());
    }
    ut->verify = verify;
    if (!verify) {
        return LB_OK;
    }
    if (ca == NULL) {
        if (SSL_CTX_set_default_verify_paths(ut->ctx) != 1) {
            return lb_conf_error(cf, v, "cannot load the system's CA store: %s",
                                 lb_tls_error_text());
        }
        return LB_OK;
    }
    path = lb_cycle_path(cf->pool, cf->cycle->prefix, ca);
    if (path == NULL || SSL_CTX_load_verify_locations(ut->ctx, path, NULL) != 1) {
        why = lb_tls_error_text();
        return lb_conf_error(cf, cav, "cannot load ca \"%s\": %s", path ? path : ca,
                             path && access(path, R_OK) != 0 ? strerror(errno) : why);
    }
    ut->ca = path;
    return LB_OK;
}

/* A client context in pool for an upstream's servers: TLS 1.2 and up, and
 * the servers' chains checked when verify (against the CAs the caller
 * loads). */
static SSL_CTX *
lb_tls_upstream_ctx(lb_pool_t *pool, bool verify)
{
    SSL_CTX  *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        return NULL;
    }
    if (lb_pool_cleanup_add(pool, lb_tls_ctx_free, ctx) != LB_OK) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* The certificates (and CRLs) of a PEM bundle in memory, trusted by ctx:
 * what SSL_CTX_load_verify_locations does with a file. */
static int
lb_tls_load_ca_pem(SSL_CTX *ctx, const char *pem, size_t len)
{
    STACK_OF(X509_INFO)  *infos;
    X509_INFO            *info;
    X509_STORE           *store = SSL_CTX_get_cert_store(ctx);
    BIO                  *bio;
    int                   i, n = 0;

    if (len > INT_MAX || (bio = BIO_new_mem_buf(pem, (int) len)) == NULL) {
        return LB_ERROR;
    }
    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (infos == NULL) {
        return LB_ERROR;
    }
    for (i = 0; i < sk_X509_INFO_num(infos); i++) {
        info = sk_X509_INFO_value(infos, i);
        if (info->x509 && X509_STORE_add_cert(store, info->x509) == 1) {
            n++;
        }
        if (info->crl) {
            X509_STORE_add_crl(store, info->crl);
        }
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    return n ? LB_OK : LB_ERROR;
}

/* lb_tls_upstream_rebuild_pt: an upstream's tls group changed by a reload
 * applied in place, made anew in a worker from what the master sent. */
static int
lb_tls_upstream_rebuild_conf(void **confs, lb_pool_t *pool, const lb_tls_upstream_t *want,
                             const char *ca_pem, size_t ca_len, char *err, size_t size)
{
    lb_tls_upstream_t  *ut = lb_pcalloc(pool, sizeof(*ut));

    if (ut == NULL) {
        snprintf(err, size, "out of memory");
        return LB_ERROR;
    }
    if (want) {
        ut->verify = want->verify;
        ut->sni = want->sni ? lb_pstrdup(pool, want->sni) : NULL;
        ut->ca = want->ca ? lb_pstrdup(pool, want->ca) : NULL;
        ut->ctx = lb_tls_upstream_ctx(pool, want->verify);
        if ((want->sni && ut->sni == NULL) || (want->ca && ut->ca == NULL)
            || ut->ctx == NULL)
        {
            snprintf(err, size, "cannot create a TLS context: %s", lb_tls_error_text());
            return LB_ERROR;
        }
        if (want->verify && want->ca && lb_tls_load_ca_pem(ut->ctx, ca_pem, ca_len) != LB_OK) {
            snprintf(err, size, "cannot load ca \"%s\": %s", want->ca, lb_tls_error_text());
            return LB_ERROR;
        }
        if (want->verify && want->ca == NULL && SSL_CTX_set_default_verify_paths(ut->ctx) != 1)
        {
            snprintf(err, size, "cannot load the system's CA store: %s", lb_tls_error_text());
            return LB_ERROR;
        }
    }
    lb_get_conf(confs, lb_core_tls_module) = ut;
    return LB_OK;
}

static lb_tls_upstream_t *
lb_tls_upstream_conf(void **confs)
{
    lb_tls_upstream_t  *ut = lb_get_conf(confs, lb_core_tls_module);

    return ut && ut->ctx ? ut : NULL;
}

/* Tells the core where upstreams keep their tls groups (lb_tls_upstream)
 * and how a worker makes one anew (lb_tls_upstream_rebuild). */
static int
lb_tls_init_conf(lb_conf_t *cf)
{
    lb_tls_set_upstream_lookup(lb_tls_upstream_conf);
    lb_tls_set_upstream_rebuild(lb_tls_upstream_rebuild_conf);
    return LB_OK;
}

static const lb_metric_family_t  lb_tls_handshakes = {
    "lbd_tls_handshakes_total", "TLS handshakes with clients, by listener and result "
    "(failed: refused, broken off or timed out).", LB_METRIC_COUNTER, NULL, 0, 0
};

static int
lb_tls_listener_metrics(lb_conf_t *cf, lb_listener_t *ls)
{
    char  name[256], labels[320];

    lb_metric_label(name, sizeof(name), ls->name);
    snprintf(labels, sizeof(labels), "listener=\"%s\",result=\"ok\"", name);
    if (lb_metric_declare(cf, &ls->m_tls_ok, &lb_tls_handshakes, labels) != LB_OK) {
        return LB_ERROR;
    }
    snprintf(labels, sizeof(labels), "listener=\"%s\",result=\"failed\"", name);
    return lb_metric_declare(cf, &ls->m_tls_failed, &lb_tls_handshakes, labels);
}

static int
lb_tls_merge_conf(lb_conf_t *cf, unsigned ctx, void *parent, void *conf)
{
    lb_tls_conf_t  *tcf = conf;

    if (ctx == LB_CTX_UPSTREAM) {
        return LB_OK;
    }

    if (!tcf->set) {
        return lb_conf_error_at(cf, cf->listener->file, cf->listener->line,
                                "listener \"%s\": protocol \"%s\" needs a \"tls\" group with "
                                "certificates", cf->listener->name, cf->listener->protocol);
    }
    if (lb_listener_add_step(cf->listener, lb_tls_accept_step) != LB_OK) {
        return lb_conf_error_at(cf, cf->listener->file, cf->listener->line,
                                "listener \"%s\": too many accept steps", cf->listener->name);
    }
    return lb_tls_listener_metrics(cf, cf->listener);
}
