/* agentch.h — cgvd's end of one VM's agent channel: a Unix socket QEMU
 * listens on, connected to while the VM runs, framed by agent_proto.
 *
 * Enabled, it connects and keeps reconnecting (50 ms doubling to 1 s) until
 * disabled. Reads are bounded per wake-up so a flooding guest cannot starve
 * the loop; every malformed byte run is reported through ops->bad and
 * skipped, never fatal. Callbacks run on the loop thread and must not free
 * the channel (they may disable it). */
#ifndef AGENTCH_H
#define AGENTCH_H

#include <stdbool.h>
#include <stdint.h>

#include "agent_proto.h"
#include "loop.h"

struct agentch;

struct agentch_ops {
    void (*connected)(void *opaque);
    void (*message)(void *opaque, const struct proto_msg *m, int64_t mono_us);
    void (*bad)(void *opaque, const char *why);
    /* The connection was lost (EOF or error); why says which. */
    void (*closed)(void *opaque, const char *why);
};

/* path is copied; ops and opaque are borrowed for the channel's lifetime. */
struct agentch *agentch_new(struct loop *l, const char *path,
                            const struct agentch_ops *ops, void *opaque);
void agentch_free(struct agentch *ch);
void agentch_enable(struct agentch *ch, bool on);
bool agentch_connected(const struct agentch *ch);
/* Queue one message; -1 if not connected or the output buffer is full. */
int agentch_send(struct agentch *ch, const struct proto_msg *m);
/* Counters since creation. */
uint64_t agentch_bytes_in(const struct agentch *ch);

#endif
