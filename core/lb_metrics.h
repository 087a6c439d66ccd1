/*
 * lb_metrics.h: counters and histograms that every worker adds to and the
 * admin server reads (GET /metrics, SPEC §7), kept in shared memory so
 * they are summed over workers and survive reloads.
 *
 * A *series* is one family (lbd_http_requests_total) with one set of
 * labels (listener="web",route="1",code="2xx"). Modules declare the series
 * their configuration needs at load (lb_metric_declare, from merge_conf or
 * init_conf); the master gives each a number at init_master, the same
 * number for the same family and labels after a reload, and writes it
 * where the module asked. A worker then adds with lb_metric_add(number, n):
 * one relaxed atomic add into a column of its own (its slot's), so workers
 * never write the same cache line. The number 0 names no series: adding to
 * it is harmless, so code needs no check for a series it did not declare.
 */
#ifndef LB_METRICS_H
#define LB_METRICS_H

typedef enum {
    LB_METRIC_COUNTER,
    LB_METRIC_GAUGE,
    LB_METRIC_HISTOGRAM,
} lb_metric_type_t;

/* A family, defined once (static) by the module that owns it. */
typedef struct {
    const char        *name;        /* lbd_..._total, ..._seconds, ..._bytes */
    const char        *help;
    lb_metric_type_t   type;
    /* histogram: the buckets' upper bounds in the unit values are added in
     * (ascending), and the factor that turns that unit into the family's
     * (1e-6: microseconds added, seconds shown) */
    const uint64_t    *bounds;
    unsigned           nbounds;
    double             scale;
} lb_metric_family_t;

/* At load: asks for the series of fam with labels (Prometheus text without
 * the braces: `listener="web",route="1"`; values escaped with
 * lb_metric_label) and has its number written to *out at init_master (0
 * until then). A histogram is one number for nbounds + 2 counters. LB_OK
 * or LB_ERROR (reported). */
int lb_metric_declare(lb_conf_t *cf, uint32_t *out, const lb_metric_family_t *fam,
                      const char *labels);

/* One series of fam for each of values[0..n), the label `name` set to it
 * after the labels `base` (`listener="web",route="2"`): its number goes to
 * out[i]. LB_OK or LB_ERROR. */
int lb_metric_declare_each(lb_conf_t *cf, uint32_t *out, const lb_metric_family_t *fam,
                           const char *base, const char *name, const char *const *values,
                           size_t n);
/* The size of a declaration, for the cycle's array. */
extern const size_t  lb_metric_decl_size;

/* Writes v into out as a label value: \ " and newline escaped. */
const char *lb_metric_label(char *out, size_t size, const char *v);

/* Where this process adds: set up by the core for workers and helpers. */
extern char      *lb_metrics_base;
extern size_t     lb_metrics_column;    /* byte offset of this process's column */
extern size_t     lb_metrics_stride;    /* bytes from one page of series to the next */

#define LB_METRICS_PAGE_SERIES  512     /* series per page: 4 KiB per column */
#define LB_METRICS_HEADER       4096

static inline uint64_t *
lb_metric_cell(uint32_t s, size_t column)
{
    return (uint64_t *) (lb_metrics_base + LB_METRICS_HEADER
                         + (s / LB_METRICS_PAGE_SERIES) * lb_metrics_stride + column
                         + (s % LB_METRICS_PAGE_SERIES) * sizeof(uint64_t));
}

static inline void
lb_metric_add(uint32_t s, uint64_t v)
{
    __atomic_fetch_add(lb_metric_cell(s, lb_metrics_column), v, __ATOMIC_RELAXED);
}

/* A histogram observation: v in the family's added unit. */
static inline void
lb_metric_observe(uint32_t s, const lb_metric_family_t *fam, uint64_t v)
{
    unsigned  i = 0;

    while (i < fam->nbounds && v > fam->bounds[i]) {
        i++;
    }
    if (i < fam->nbounds) {
        lb_metric_add(s + i, 1);            /* the +Inf bucket is the count */
    }
    lb_metric_add(s + fam->nbounds, v);     /* sum */
    lb_metric_add(s + fam->nbounds + 1, 1); /* count */
}

/* The sum over every worker of counter s (+ offset, within a histogram). */
uint64_t lb_metric_read(uint32_t s);

/* The master, once a configuration's zones are mapped (the core's
 * init_master): numbers every declared series. LB_OK or LB_ERROR. */
int  lb_metrics_init_master(lb_cycle_t *cycle);
/* In a child of the master: where to add, for worker slot `slot` (-1: a
 * helper process, which adds nothing). */
void lb_metrics_init_process(lb_cycle_t *cycle, int slot);
/* Declares the zone (the core's init_conf). */
int  lb_metrics_init_conf(lb_conf_t *cf);

/* The text exposition (Prometheus 0.0.4) of every series the running
 * configuration declared, family by family, through emit. */
void lb_metrics_render(lb_cycle_t *cycle, void (*emit)(void *data, const char *s, size_t n),
                       void *data);

/* The series' part of a binary upgrade's state (lb_state.h): the core
 * module's state_save and state_load. */
int  lb_metrics_state_save(lb_cycle_t *cycle, lb_state_writer_t *w);
int  lb_metrics_state_load(lb_cycle_t *cycle, const lb_state_record_t *r);

#endif
