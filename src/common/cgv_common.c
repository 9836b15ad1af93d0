/* cgv_common.c — see cgv_common.h */
#include "cgv_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void cgv_err_vset(struct cgv_error *err, enum cgv_errcode code,
                         const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static void cgv_err_vset(struct cgv_error *err, enum cgv_errcode code,
                         const char *fmt, va_list ap)
{
    char text[sizeof(err->msg)];

    vsnprintf(text, sizeof(text), fmt, ap);
    if (err->code != CGV_OK && err->msg[0] != '\0') {
        /* Keep the original cause, add the new context in front. */
        char old[sizeof(err->msg)];
        size_t tl = strlen(text), cap = sizeof(err->msg);
        memcpy(old, err->msg, sizeof(old));
        if (tl > cap - 3)
            tl = cap - 3;
        memcpy(err->msg, text, tl);
        memcpy(err->msg + tl, ": ", 2);
        cgv_strlcpy(err->msg + tl + 2, old, cap - tl - 2);
    } else {
        memcpy(err->msg, text, sizeof(err->msg));
    }
    err->code = code;
}

int cgv_err(struct cgv_error *err, enum cgv_errcode code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return -1;
    va_start(ap, fmt);
    cgv_err_vset(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

void cgv_err_prefix(struct cgv_error *err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    cgv_err_vset(err, err->code == CGV_OK ? CGV_E_INTERNAL : err->code, fmt, ap);
    va_end(ap);
}

void cgv_err_clear(struct cgv_error *err)
{
    if (!err)
        return;
    err->code = CGV_OK;
    err->msg[0] = '\0';
}

const char *cgv_errcode_name(enum cgv_errcode code)
{
    switch (code) {
    case CGV_OK: return "ok";
    case CGV_E_INTERNAL: return "internal";
    case CGV_E_INVALID: return "invalid";
    case CGV_E_NOTFOUND: return "not-found";
    case CGV_E_CONFLICT: return "conflict";
    case CGV_E_LIBVIRT: return "libvirt";
    case CGV_E_IO: return "io";
    case CGV_E_UNAVAIL: return "unavailable";
    case CGV_E_DENIED: return "denied";
    }
    return "unknown";
}

void cgv_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
        *fd = -1;
    }
}

void *cgv_malloc0(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *cgv_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

char *cgv_strdup(const char *s)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        abort();
    return d;
}

char *cgv_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;

    va_start(ap, fmt);
    if (vasprintf(&out, fmt, ap) < 0)
        abort();
    va_end(ap);
    return out;
}

int cgv_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = strlen(src);

    if (cap == 0)
        return -1;
    if (n >= cap) {
        memcpy(dst, src, cap - 1);
        dst[cap - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int64_t cgv_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cgv_mono_ms(void)
{
    return cgv_mono_us() / 1000;
}

int64_t cgv_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cgv_fmt_wall_ms(int64_t wall_ms, char *buf, size_t cap)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(wall_ms % 1000));
}

bool cgv_name_valid(const char *name)
{
    size_t n;

    if (!name)
        return false;
    n = strlen(name);
    if (n < 1 || n > 40)
        return false;
    if (name[0] < 'a' || name[0] > 'z')
        return false;
    if (name[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

int cgv_mkdir_p(const char *path, unsigned mode, struct cgv_error *err)
{
    char buf[4096];

    if (cgv_strlcpy(buf, path, sizeof(buf)) < 0)
        return cgv_err(err, CGV_E_INVALID, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return cgv_err(err, CGV_E_IO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return cgv_err(err, CGV_E_IO, "mkdir %s: %s", buf, strerror(errno));
    return 0;
}

int cgv_write_file_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, struct cgv_error *err)
{
    CGV_AUTOFREE char *tmp = cgv_asprintf("%s.tmp.%d", path, (int)getpid());
    CGV_AUTOCLOSE int fd = -1;
    const char *p = data;
    size_t left = len;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return cgv_err(err, CGV_E_IO, "create %s: %s", tmp, strerror(errno));
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            cgv_err(err, CGV_E_IO, "write %s: %s", tmp, strerror(errno));
            goto error;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) < 0) {
        cgv_err(err, CGV_E_IO, "fsync %s: %s", tmp, strerror(errno));
        goto error;
    }
    if (rename(tmp, path) < 0) {
        cgv_err(err, CGV_E_IO, "rename %s: %s", path, strerror(errno));
        goto error;
    }
    return 0;

error:
    unlink(tmp);
    return -1;
}

int cgv_read_file(const char *path, size_t max, char **out, size_t *len,
                  struct cgv_error *err)
{
    CGV_AUTOCLOSE int fd = -1;
    CGV_AUTOFREE char *buf = NULL;
    size_t used = 0, cap = 4096;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cgv_err(err, errno == ENOENT ? CGV_E_NOTFOUND : CGV_E_IO,
                       "open %s: %s", path, strerror(errno));
    buf = cgv_malloc0(cap + 1);
    for (;;) {
        ssize_t r;
        if (used == cap) {
            if (cap >= max)
                return cgv_err(err, CGV_E_INVALID, "%s is larger than %zu bytes",
                               path, max);
            cap = cap * 2 > max ? max : cap * 2;
            buf = cgv_realloc(buf, cap + 1);
        }
        r = read(fd, buf + used, cap - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return cgv_err(err, CGV_E_IO, "read %s: %s", path, strerror(errno));
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    buf[used] = '\0';
    if (len)
        *len = used;
    *out = cgv_steal_ptr(&buf);
    return 0;
}
