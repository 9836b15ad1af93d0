/* nf_counter.c — shared, mmap'd request counter. */
#include "nf_counter.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NF_COUNTER_SIZE (2 * sizeof(uint64_t))

int nf_counter_open_rw(struct nf_counter *c, const char *path)
{
    struct stat st;
    int fd, rc = -1, saved;
    void *m;

    c->map = NULL;
    c->writable = true;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0)
        goto cleanup;
    if (st.st_size != (off_t)NF_COUNTER_SIZE &&
        (ftruncate(fd, 0) < 0 || ftruncate(fd, NF_COUNTER_SIZE) < 0))
        goto cleanup;
    m = mmap(NULL, NF_COUNTER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        goto cleanup;
    c->map = m;
    if (__atomic_load_n(&c->map[0], __ATOMIC_ACQUIRE) != NF_COUNTER_MAGIC) {
        __atomic_store_n(&c->map[1], 0, __ATOMIC_RELEASE);
        __atomic_store_n(&c->map[0], NF_COUNTER_MAGIC, __ATOMIC_RELEASE);
    }
    rc = 0;
cleanup:
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int nf_counter_open_ro(struct nf_counter *c, const char *path)
{
    struct stat st;
    int fd, rc = -1, saved;
    void *m;

    c->map = NULL;
    c->writable = false;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0)
        goto cleanup;
    if (st.st_size < (off_t)NF_COUNTER_SIZE) {
        errno = EAGAIN; /* being created */
        goto cleanup;
    }
    m = mmap(NULL, NF_COUNTER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        goto cleanup;
    c->map = m;
    rc = 0;
cleanup:
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

void nf_counter_close(struct nf_counter *c)
{
    if (c->map)
        munmap(c->map, NF_COUNTER_SIZE);
    c->map = NULL;
}

uint64_t nf_counter_get(const struct nf_counter *c)
{
    if (!c->map || __atomic_load_n(&c->map[0], __ATOMIC_ACQUIRE) != NF_COUNTER_MAGIC)
        return 0;
    return __atomic_load_n(&c->map[1], __ATOMIC_ACQUIRE);
}

void nf_counter_set(struct nf_counter *c, uint64_t v)
{
    if (c->map && c->writable)
        __atomic_store_n(&c->map[1], v, __ATOMIC_RELEASE);
}
