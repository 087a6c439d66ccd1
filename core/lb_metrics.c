/*
 * lb_metrics.c: the metrics zone (lb_metrics.h). Its memory is a header
 * page, then pages of LB_METRICS_PAGE_SERIES series: each page holds one
 * 4 KiB column per worker slot (slot modulo the zone's columns), so a
 * worker's counters share no cache line with another's. Pages are only
 * ever appended, so a reload that declares new series grows the zone
 * without moving what older workers use; the same family and labels keep
 * their number across reloads (the master's registry), and so their
 * counts.
 */
#include "lb_core.h"
#include "lb_metrics.h"
#include "lb_state.h"

#include <sys/mman.h>

#define LB_METRICS_ZONE     "lb_metrics"
#define LB_METRICS_MAGIC    0x4c424d31      /* "LBM1" */
#define LB_METRICS_MAX_COLUMNS  64

typedef struct {
    uint32_t   magic;
    uint32_t   columns;
    uint32_t   npages;
} lb_metrics_hdr_t;

/* What a configuration asked for (in the cycle's pool). */
typedef struct {
    uint32_t                  *out;
    const lb_metric_family_t  *fam;
    const char                *labels;
} lb_metric_decl_t;

/* The master's registry: family and labels -> number, for the life of the
 * master (families are static data of the binary). */
typedef struct {
    const lb_metric_family_t  *fam;
    char                      *labels;
    uint32_t                   index;
} lb_metric_entry_t;

const size_t  lb_metric_decl_size = sizeof(lb_metric_decl_t);

static lb_metric_entry_t  *lb_registry;
static size_t              lb_nregistry, lb_registry_cap;
static uint32_t            lb_metrics_next = 1;     /* 0 names no series */

/* Before a process knows its zone (and in unit tests), adds land here:
 * series 0 of column 0 is all they can name. */
static uint64_t  lb_metrics_nowhere[(LB_METRICS_HEADER + LB_METRICS_PAGE_SERIES
                                     * sizeof(uint64_t)) / sizeof(uint64_t)];

char    *lb_metrics_base = (char *) lb_metrics_nowhere;
size_t   lb_metrics_column;
size_t   lb_metrics_stride;

static uint32_t
lb_metric_width(const lb_metric_family_t *fam)
{
    return fam->type == LB_METRIC_HISTOGRAM ? fam->nbounds + 2 : 1;
}

const char *
lb_metric_label(char *out, size_t size, const char *v)
{
    size_t  n = 0;

    for ( ; *v && n + 3 < size; v++) {
        if (*v == '\\' || *v == '"') {
            out[n++] = '\\';
            out[n++] = *v;
        } else if (*v == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *v;
        }
    }
    out[n] = '\0';
    return out;
}

int
lb_metric_declare_each(lb_conf_t *cf, uint32_t *out, const lb_metric_family_t *fam,
                       const char *base, const char *name, const char *const *values, size_t n)
{
    char    labels[768];
    size_t  i;

    for (i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "%s%s%s=\"%s\"", base, base[0] ? "," : "", name,
                 values[i]);
        if (lb_metric_declare(cf, &out[i], fam, labels) != LB_OK) {
            return LB_ERROR;
        }
    }
    return LB_OK;
}

int
lb_metric_declare(lb_conf_t *cf, uint32_t *out, const lb_metric_family_t *fam,
                  const char *labels)
{
    lb_metric_decl_t  *d;

    *out = 0;
    d = lb_array_push(&cf->cycle->metrics);
    if (d == NULL) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "out of memory");
    }
    d->out = out;
    d->fam = fam;
    d->labels = lb_pstrdup(cf->pool, labels);
    return d->labels ? LB_OK : lb_conf_error_at(cf, cf->cycle->conf_file, 0, "out of memory");
}

static unsigned
lb_metrics_columns_for(lb_cycle_t *cycle)
{
    long  cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long  n = lb_max((long) cycle->core->workers, cpus);

    return (unsigned) lb_max(1, lb_min(n, LB_METRICS_MAX_COLUMNS));
}

static size_t
lb_metrics_bytes(unsigned columns, size_t npages)
{
    return LB_METRICS_HEADER + npages * columns * LB_METRICS_PAGE_SERIES * sizeof(uint64_t);
}

static int
lb_metrics_zone_init(lb_shm_zone_t *zone)
{
    lb_metrics_hdr_t  *h = zone->addr;

    if (h->magic != LB_METRICS_MAGIC) {
        /* new memory reads as zero */
        h->magic = LB_METRICS_MAGIC;
        h->columns = lb_metrics_columns_for(zone->owner);
        h->npages = 0;
    }
    zone->data = zone->addr;
    return LB_OK;
}

int
lb_metrics_init_conf(lb_conf_t *cf)
{
    lb_shm_zone_t  *zone;

    /* at its smallest: init_master grows it to what was declared */
    zone = lb_shm_zone_add(cf, LB_METRICS_ZONE, LB_METRICS_HEADER, lb_metrics_zone_init,
                           cf->cycle);
    if (zone == NULL) {
        return lb_conf_error_at(cf, cf->cycle->conf_file, 0, "cannot declare shared zone \""
                                LB_METRICS_ZONE "\"");
    }
    zone->growable = true;
    cf->cycle->metrics_zone = zone;
    return LB_OK;
}

static lb_metric_entry_t *
lb_metrics_find(const lb_metric_family_t *fam, const char *labels)
{
    size_t  i;

    for (i = 0; i < lb_nregistry; i++) {
        if (strcmp(lb_registry[i].fam->name, fam->name) == 0
            && strcmp(lb_registry[i].labels, labels) == 0
            && lb_metric_width(lb_registry[i].fam) == lb_metric_width(fam))
        {
            return &lb_registry[i];
        }
    }
    return NULL;
}

int
lb_metrics_init_master(lb_cycle_t *cycle)
{
    lb_shm_zone_t      *zone = cycle->metrics_zone;
    lb_metrics_hdr_t   *h;
    lb_metric_decl_t   *d;
    lb_metric_entry_t  *e;
    size_t              i, npages;
    void               *p;

    for (i = 0; i < cycle->metrics.nelts; i++) {
        d = &lb_array_at(&cycle->metrics, lb_metric_decl_t, i);
        e = lb_metrics_find(d->fam, d->labels);
        if (e == NULL) {
            if (lb_nregistry == lb_registry_cap) {
                p = realloc(lb_registry, (lb_registry_cap ? 2 * lb_registry_cap : 64)
                                         * sizeof(*lb_registry));
                if (p == NULL) {
                    lb_log_error(ENOMEM, "cannot number the metrics");
                    return LB_ERROR;
                }
                lb_registry = p;
                lb_registry_cap = lb_registry_cap ? 2 * lb_registry_cap : 64;
            }
            e = &lb_registry[lb_nregistry];
            e->labels = strdup(d->labels);
            if (e->labels == NULL) {
                lb_log_error(ENOMEM, "cannot number the metrics");
                return LB_ERROR;
            }
            e->fam = d->fam;
            e->index = lb_metrics_next;
            lb_metrics_next += lb_metric_width(d->fam);
            lb_nregistry++;
        }
        e->fam = d->fam;        /* this binary's copy, for rendering */
        *d->out = e->index;
    }

    h = zone->data;
    npages = (lb_metrics_next + LB_METRICS_PAGE_SERIES - 1) / LB_METRICS_PAGE_SERIES;
    /* by what this configuration maps, not by the header: a reload that
     * failed or was abandoned after numbering new series left the header
     * (shared memory) counting pages that the mapping kept from the
     * configuration in force does not reach */
    if (lb_metrics_bytes(h->columns, npages) > zone->size) {
        if (lb_shm_zone_grow(zone, lb_metrics_bytes(h->columns, npages)) != LB_OK) {
            return LB_ERROR;
        }
        zone->data = zone->addr;
        h = zone->data;
    }
    if (npages > h->npages) {
        h->npages = (uint32_t) npages;
    }
    lb_metrics_init_process(cycle, -1);
    return LB_OK;
}

void
lb_metrics_init_process(lb_cycle_t *cycle, int slot)
{
    lb_metrics_hdr_t  *h = cycle->metrics_zone->data;

    lb_metrics_base = (char *) h;
    lb_metrics_stride = (size_t) h->columns * LB_METRICS_PAGE_SERIES * sizeof(uint64_t);
    lb_metrics_column = (slot < 0 ? 0 : (size_t) slot % h->columns)
                        * LB_METRICS_PAGE_SERIES * sizeof(uint64_t);
}

uint64_t
lb_metric_read(uint32_t s)
{
    const lb_metrics_hdr_t  *h = (const lb_metrics_hdr_t *) lb_metrics_base;
    uint64_t                 sum = 0;
    size_t                   c;

    for (c = 0; c < h->columns; c++) {
        sum += __atomic_load_n(lb_metric_cell(s, c * LB_METRICS_PAGE_SERIES * sizeof(uint64_t)),
                               __ATOMIC_RELAXED);
    }
    return sum;
}

static void
lb_metrics_emitf(void (*emit)(void *, const char *, size_t), void *data, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
lb_metrics_emitf(void (*emit)(void *, const char *, size_t), void *data, const char *fmt, ...)
{
    char     buf[1024];
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0) {
        emit(data, buf, lb_min((size_t) n, sizeof(buf) - 1));
    }
}

static void
lb_metrics_render_series(const lb_metric_decl_t *d, void (*emit)(void *, const char *, size_t),
                         void *data)
{
    const lb_metric_family_t  *fam = d->fam;
    uint32_t                   s = *d->out;
    const char                *sep = *d->labels ? "," : "";
    uint64_t                   cum = 0;
    unsigned                   i;

    if (fam->type != LB_METRIC_HISTOGRAM) {
        lb_metrics_emitf(emit, data, "%s%s%s%s %llu\n", fam->name, *d->labels ? "{" : "",
                         d->labels, *d->labels ? "}" : "",
                         (unsigned long long) lb_metric_read(s));
        return;
    }
    for (i = 0; i < fam->nbounds; i++) {
        cum += lb_metric_read(s + i);
        lb_metrics_emitf(emit, data, "%s_bucket{%s%sle=\"%g\"} %llu\n", fam->name, d->labels,
                         sep, (double) fam->bounds[i] * fam->scale, (unsigned long long) cum);
    }
    lb_metrics_emitf(emit, data, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", fam->name, d->labels, sep,
                     (unsigned long long) lb_metric_read(s + fam->nbounds + 1));
    lb_metrics_emitf(emit, data, "%s_sum%s%s%s %.6f\n", fam->name, *d->labels ? "{" : "",
                     d->labels, *d->labels ? "}" : "",
                     (double) lb_metric_read(s + fam->nbounds) * fam->scale);
    lb_metrics_emitf(emit, data, "%s_count%s%s%s %llu\n", fam->name, *d->labels ? "{" : "",
                     d->labels, *d->labels ? "}" : "",
                     (unsigned long long) lb_metric_read(s + fam->nbounds + 1));
}

void
lb_metrics_render(lb_cycle_t *cycle, void (*emit)(void *data, const char *s, size_t n),
                  void *data)
{
    static const char *const  types[] = { "counter", "gauge", "histogram" };
    lb_metric_decl_t         *d, *e;
    size_t                    i, j, k;

    /* family by family, in the order families were first declared */
    for (i = 0; i < cycle->metrics.nelts; i++) {
        d = &lb_array_at(&cycle->metrics, lb_metric_decl_t, i);
        for (k = 0; k < i; k++) {
            if (strcmp(lb_array_at(&cycle->metrics, lb_metric_decl_t, k).fam->name,
                       d->fam->name) == 0)
            {
                break;
            }
        }
        if (k < i || *d->out == 0) {
            continue;           /* rendered with its first series */
        }
        lb_metrics_emitf(emit, data, "# HELP %s %s\n# TYPE %s %s\n", d->fam->name,
                         d->fam->help, d->fam->name, types[d->fam->type]);
        for (j = i; j < cycle->metrics.nelts; j++) {
            e = &lb_array_at(&cycle->metrics, lb_metric_decl_t, j);
            if (strcmp(e->fam->name, d->fam->name) == 0 && *e->out) {
                lb_metrics_render_series(e, emit, data);
            }
        }
    }
}

/* Binary upgrade (lb_state.h): every counter and histogram series this
 * master numbered, summed over the columns, keyed by family and labels, so
 * that /metrics goes on from where it was; gauges say what is now, and
 * start again from the new processes. */
int
lb_metrics_state_save(lb_cycle_t *cycle, lb_state_writer_t *w)
{
    u_char    vals[8 * 64];
    uint64_t  v;
    size_t    i, j, k, width;

    (void) cycle;
    for (i = 0; i < lb_nregistry; i++) {
        width = lb_metric_width(lb_registry[i].fam);
        if (lb_registry[i].fam->type == LB_METRIC_GAUGE || width > 64) {
            continue;
        }
        for (j = 0; j < width; j++) {
            v = lb_metric_read(lb_registry[i].index + (uint32_t) j);
            for (k = 0; k < 8; k++) {
                vals[8 * j + k] = (u_char) (v >> (56 - 8 * k));
            }
        }
        lb_state_record_begin(w, "core", "metric");
        lb_state_put_str(w, "family", lb_registry[i].fam->name);
        lb_state_put_str(w, "labels", lb_registry[i].labels);
        lb_state_put_bytes(w, "values", vals, 8 * width);
        lb_state_record_end(w);
    }
    return LB_OK;
}

/* Adds a carried series to column 0 of this master's zone (new, so zero
 * before): the workers add to theirs, and the sum goes on. */
int
lb_metrics_state_load(lb_cycle_t *cycle, const lb_state_record_t *r)
{
    char            family[256], labels[1024];
    const u_char   *p;
    uint64_t        v;
    size_t          i, j, k, n;

    (void) cycle;
    if (strcmp(r->type, "metric") != 0
        || !lb_state_get_str(r, "family", family, sizeof(family))
        || !lb_state_get_str(r, "labels", labels, sizeof(labels))
        || (p = lb_state_get_bytes(r, "values", &n)) == NULL)
    {
        return LB_DECLINED;
    }
    for (i = 0; i < lb_nregistry; i++) {
        if (strcmp(lb_registry[i].fam->name, family) == 0
            && strcmp(lb_registry[i].labels, labels) == 0)
        {
            break;
        }
    }
    if (i == lb_nregistry || lb_registry[i].fam->type == LB_METRIC_GAUGE
        || n != 8 * (size_t) lb_metric_width(lb_registry[i].fam))
    {
        return LB_DECLINED;     /* not declared now, or its buckets changed */
    }
    for (j = 0; j < n / 8; j++) {
        v = 0;
        for (k = 0; k < 8; k++) {
            v = v << 8 | p[8 * j + k];
        }
        __atomic_fetch_add(lb_metric_cell(lb_registry[i].index + (uint32_t) j, 0), v,
                           __ATOMIC_RELAXED);
    }
    return LB_OK;
}
