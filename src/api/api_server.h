/* api_server.h — cgvd's HTTP/JSON API (docs/API.md) on a Unix socket.
 *
 * libmicrohttpd runs inside cgvd's loop (its epoll fd is one of the loop's
 * fds); a request that waits on libvirt or on new events is suspended and
 * resumed when its answer is ready, so the loop never blocks. Every request
 * is authenticated by the socket peer's credentials (SO_PEERCRED) and only
 * uid 0 is authorised for now. */
#ifndef API_SERVER_H
#define API_SERVER_H

#include "cgv_common.h"
#include "evlog.h"
#include "loop.h"
#include "store.h"
#include "vmm.h"

#define API_MAX_BODY (256 * 1024)

struct api_server;

/* Binds socket_path (mode 0600), refusing to start if another server answers
 * there; a stale socket file is replaced. */
int api_server_new(struct loop *l, const char *socket_path, struct vmm *vmm,
                   struct store *st, struct evlog *ev, struct api_server **out,
                   struct cgv_error *err) CGV_WUR;
/* Answers every waiting request with 503, then stops and removes the socket. */
void api_server_free(struct api_server *srv);

/* HTTP status for an error class (exported for the tests). */
unsigned api_status_for(enum cgv_errcode code);

#endif
