/* cgv_log.c — see cgv_log.h */
#include "cgv_log.h"

#include <pthread.h>
#include <string.h>

static enum cgv_log_level log_level = CGV_LOG_INFO;
static FILE *log_stream;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_ring[CGV_LOG_RING][256];
static unsigned log_ring_next;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cgv_log_set_level(enum cgv_log_level level)
{
    log_level = level;
}

int cgv_log_parse_level(const char *s, enum cgv_log_level *out)
{
    for (size_t i = 0; i < CGV_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum cgv_log_level)i;
            return 0;
        }
    }
    return -1;
}

void cgv_log_set_stream(FILE *f)
{
    log_stream = f;
}

void cgv_log(enum cgv_log_level level, const char *module, const char *fmt, ...)
{
    char when[40], text[1024];
    va_list ap;
    FILE *out = log_stream ? log_stream : stderr;

    cgv_fmt_wall_ms(cgv_wall_ms(), when, sizeof(when));
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    /* The flight recorder keeps debug lines too, whatever the level. */
    snprintf(log_ring[log_ring_next % CGV_LOG_RING], sizeof(log_ring[0]),
             "%s %s %s: %s", when, level_names[level], module, text);
    log_ring_next++;
    if (level >= log_level) {
        fprintf(out, "%s %s %s: %s\n", when, level_names[level], module, text);
        fflush(out);
    }
    pthread_mutex_unlock(&log_lock);
}

void cgv_log_dump_ring(FILE *f)
{
    pthread_mutex_lock(&log_lock);
    unsigned start = log_ring_next > CGV_LOG_RING ? log_ring_next - CGV_LOG_RING : 0;
    for (unsigned i = start; i < log_ring_next; i++)
        fprintf(f, "%s\n", log_ring[i % CGV_LOG_RING]);
    pthread_mutex_unlock(&log_lock);
}
