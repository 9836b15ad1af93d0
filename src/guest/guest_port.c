/* guest_port.c — virtio-serial port discovery through sysfs. */
#include "guest_port.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Does dir/entry/name hold exactly `name` (plus an optional newline)? */
static bool port_name_matches(int dfd, const char *entry, const char *name)
{
    char path[300], buf[256];
    size_t want = strlen(name);
    ssize_t n;
    int fd;

    if (snprintf(path, sizeof(path), "%s/name", entry) >= (int)sizeof(path))
        return false;
    fd = openat(dfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n <= 0)
        return false;
    if (buf[n - 1] == '\n')
        n--;
    return (size_t)n == want && memcmp(buf, name, want) == 0;
}

int guest_port_find(const char *dir, const char *name, char *dev, size_t cap)
{
    char best[256] = "";
    struct dirent *de;
    DIR *d;
    int dfd, rc = -1;

    d = opendir(dir);
    if (!d)
        return -1; /* errno from opendir: ENOENT before virtio_console loads */
    dfd = dirfd(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(best))
            continue;
        if (best[0] && strcmp(de->d_name, best) >= 0)
            continue;
        if (port_name_matches(dfd, de->d_name, name))
            memcpy(best, de->d_name, strlen(de->d_name) + 1); /* length checked above */
    }
    closedir(d);
    if (!best[0]) {
        errno = ENOENT;
        goto cleanup;
    }
    if (strlen(best) >= cap) {
        errno = ENAMETOOLONG;
        goto cleanup;
    }
    memcpy(dev, best, strlen(best) + 1); /* length checked above */
    rc = 0;
cleanup:
    return rc;
}

unsigned guest_backoff_next(unsigned prev_ms, unsigned max_ms)
{
    unsigned next = prev_ms ? prev_ms * 2 : 20;

    if (next > max_ms || next < prev_ms)
        next = max_ms;
    return next;
}
