/* cgv_common.h — small helpers every module uses: errors, cleanup attributes,
 * monotonic and wall clocks, bounded string copies.
 *
 * Conventions (see README "Code"):
 *  - functions return 0 on success and -1 on failure, and fill a caller-owned
 *    struct cgv_error when one is passed (NULL is allowed);
 *  - CGV_AUTOFREE / CGV_AUTOCLOSE release a variable when it goes out of
 *    scope; hand it on with cgv_steal_ptr() / cgv_steal_fd().
 */
#ifndef CGV_COMMON_H
#define CGV_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define CGV_VERSION "0.1.0"

#define CGV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CGV_WUR __attribute__((warn_unused_result))
#define CGV_UNUSED __attribute__((unused))
#define CGV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Error classes, kept clear of errno. Each maps to one HTTP status and one CLI
 * exit code (api/ and cli/ own those tables). */
enum cgv_errcode {
    CGV_OK = 0,
    CGV_E_INTERNAL = 1,  /* a bug or an unexpected failure */
    CGV_E_INVALID = 2,   /* bad input: spec, request, argument */
    CGV_E_NOTFOUND = 3,  /* no such service / VM / object */
    CGV_E_CONFLICT = 4,  /* exists already, busy, wrong state */
    CGV_E_LIBVIRT = 5,   /* libvirt refused or is unreachable */
    CGV_E_IO = 6,        /* file system, socket, disk full */
    CGV_E_UNAVAIL = 7,   /* cgvd or a dependency is not reachable */
    CGV_E_DENIED = 8,    /* not authenticated or not authorised */
};

struct cgv_error {
    enum cgv_errcode code;
    char msg[1024];
};

/* Sets err (if not NULL) and returns -1, so callers can `return cgv_err(...)`.
 * If err already holds an error the new text is prefixed to it as context. */
int cgv_err(struct cgv_error *err, enum cgv_errcode code, const char *fmt, ...)
    CGV_PRINTF(3, 4);
/* Prefix context to an error already set ("starting demo-0: <old>"). */
void cgv_err_prefix(struct cgv_error *err, const char *fmt, ...) CGV_PRINTF(2, 3);
void cgv_err_clear(struct cgv_error *err);
const char *cgv_errcode_name(enum cgv_errcode code);

static inline void cgv_freep(void *p) { free(*(void **)p); }
void cgv_closep(int *fd);
#define CGV_AUTOFREE __attribute__((cleanup(cgv_freep)))
#define CGV_AUTOCLOSE __attribute__((cleanup(cgv_closep)))

static inline void *cgv_steal_ptr_(void **p)
{
    void *v = *p;
    *p = NULL;
    return v;
}
#define cgv_steal_ptr(pp) cgv_steal_ptr_((void **)(pp))
static inline int cgv_steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

/* Allocation that aborts on out-of-memory: cgvd cannot do anything sensible
 * without memory, and checking every small allocation hides real errors. */
void *cgv_malloc0(size_t n);
void *cgv_realloc(void *p, size_t n);
char *cgv_strdup(const char *s);
char *cgv_asprintf(const char *fmt, ...) CGV_PRINTF(1, 2);

/* Copy at most cap-1 bytes and terminate; returns -1 if src was truncated. */
int cgv_strlcpy(char *dst, const char *src, size_t cap);

/* Milliseconds of CLOCK_MONOTONIC and of the wall clock (UTC epoch). */
int64_t cgv_mono_ms(void);
int64_t cgv_mono_us(void);
int64_t cgv_wall_ms(void);
/* "2026-11-23T10:42:07.123Z" into buf (at least 32 bytes). */
void cgv_fmt_wall_ms(int64_t wall_ms, char *buf, size_t cap);

/* Names of services and VMs: 1-40 chars, [a-z0-9-], starting with a letter,
 * not ending with '-'. Safe in file names, domain names and URLs. */
bool cgv_name_valid(const char *name);

/* mkdir -p with the given mode for each created component. */
int cgv_mkdir_p(const char *path, unsigned mode, struct cgv_error *err);

/* Write a whole file atomically (tmp + fsync + rename). */
int cgv_write_file_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, struct cgv_error *err);
/* Read a whole file (at most max bytes) into a NUL-terminated buffer the caller
 * frees. */
int cgv_read_file(const char *path, size_t max, char **out, size_t *len,
                  struct cgv_error *err);

#endif
