/* guest_port.h — find the agent's virtio-serial port.
 *
 * QEMU names the port (PROTO_CHANNEL_NAME); the kernel shows it as
 * <sysfs>/class/virtio-ports/vportNpM/name and the device as /dev/vportNpM. */
#ifndef GUEST_PORT_H
#define GUEST_PORT_H

#include <stddef.h>

#define GUEST_SYSFS_PORTS "/sys/class/virtio-ports"

/* Look through dir (normally GUEST_SYSFS_PORTS) for the port whose name file
 * holds `name` (a trailing newline is ignored). On success writes the port's
 * directory entry ("vport0p1") into dev[cap] and returns 0; if several match,
 * the first in byte order wins. Returns -1 with errno ENOENT if no port has
 * that name or the directory does not exist (yet), another errno on error. */
int guest_port_find(const char *dir, const char *name, char *dev, size_t cap);

/* Retry delays while the port is missing: 20 ms, doubling, capped at max_ms.
 * Pass the previous delay (0 to start). */
unsigned guest_backoff_next(unsigned prev_ms, unsigned max_ms);

#endif
