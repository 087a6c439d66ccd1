/*
 * lb_conf.h: the configuration loader. It reads a libconfig file, walks its
 * blocks and, for every setting, finds the module that declared it in that
 * context, parses and range-checks the value and stores it in the module's
 * configuration. Errors read "FILE:LINE: message" and are all collected,
 * not just the first; references between blocks (an upstream named by a
 * listener) are checked once the file has no other error.
 */
#ifndef LB_CONF_H
#define LB_CONF_H

#define LB_CONF_MAX_ERRORS  50

typedef void (*lb_conf_report_pt)(const char *line);

struct lb_conf_s {
    lb_cycle_t         *cycle;
    lb_pool_t          *pool;           /* the cycle's pool */
    config_t           *config;         /* the parsed file, during loading only */
    unsigned            ctx;            /* LB_CTX_* being parsed */
    const char         *block;          /* "upstream \"api\"", for messages */
    const char         *protocol;       /* of the listener being parsed */
    lb_listener_t      *listener;       /* the listener being parsed */
    void               *ctx_data;       /* the object owning this block */
    void              **parent_confs;   /* confs of the enclosing block */
    config_setting_t   *group;          /* the block being parsed */
    const char         *include_dir;    /* @include paths are relative to it */
    unsigned            nerrors;
    lb_conf_report_pt   report;
    bool                block_failed;   /* for merge_conf: its block had errors */
};

/* Reports an error at setting s (its file and line); always returns LB_ERROR. */
int  lb_conf_error(lb_conf_t *cf, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int  lb_conf_error_at(lb_conf_t *cf, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reports "FILE:LINE: warning: message": something that works but is
 * likely a mistake. Not an error: it never fails the load. */
void lb_conf_warn_at(lb_conf_t *cf, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reports v, a member of a group whose valid names are names (NULL-
 * terminated): `unknown setting "X" in WHERE (did you mean "Y"?); valid
 * here: A, B, C` (the names sorted). Always returns LB_ERROR. */
int  lb_conf_unknown_name(lb_conf_t *cf, const config_setting_t *v, const char *where,
                          const char *const *names);

/* Parses group `group` as one instance of context ctx: creates the conf of
 * every module that has one there, applies defaults, parses each setting,
 * checks required ones and runs merge_conf. *confs receives the array of
 * per-module confs (indexed by module index). LB_OK or LB_ERROR. */
int  lb_conf_parse_block(lb_conf_t *cf, config_setting_t *group, unsigned ctx,
                         void ***confs);

/* For a setting whose value is a group of its own settings (passive =
 * { max_fails = 3; }): `table` declares them like a module's settings,
 * offsets into conf, contexts unused. lb_conf_set_defaults writes their
 * defaults into conf (from create_conf: the group may be absent);
 * lb_conf_parse_group parses group v against table, with the value forms,
 * ranges and messages of a block. LB_OK or LB_ERROR (reported). */
int  lb_conf_set_defaults(lb_conf_t *cf, const lb_setting_t *table, void *conf);
int  lb_conf_parse_group(lb_conf_t *cf, config_setting_t *v, const lb_setting_t *table,
                         void *conf);

/* Helpers for custom setting handlers. Each reports its own error. */
int  lb_conf_get_string(lb_conf_t *cf, config_setting_t *v, const char **out);
int  lb_conf_get_duration(lb_conf_t *cf, config_setting_t *v, lb_msec_t *out);
/* A string or an array of strings, each handed to fn. */
int  lb_conf_each_string(lb_conf_t *cf, config_setting_t *v,
                         int (*fn)(lb_conf_t *cf, config_setting_t *elt,
                                   const char *s, void *arg), void *arg);
const char *lb_conf_type_name(const config_setting_t *v);

/* The file a setting comes from (absolute when the configuration file's
 * path is), for errors raised after parsing. */
const char *lb_conf_file(lb_conf_t *cf, const config_setting_t *s);

#endif
