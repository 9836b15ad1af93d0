/* fake_server.h — a canned-response HTTP server on a Unix socket (libmicrohttpd
 * in its own thread) standing in for cgvd in the client and CLI tests.
 *
 * Routes are matched in the order they were added against the method and the
 * raw (still URL-escaped) path of the request; a route path ending in '*'
 * matches by prefix. Unmatched requests get 404 {"error": {"code":
 * "not-found", ...}}. The last request is recorded for the tests to check.
 */
#ifndef FAKE_SERVER_H
#define FAKE_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define FAKE_MAX_ROUTES 32

struct fake_route {
    char method[16];   /* "" = any */
    char path[256];    /* raw path without query; '*' at the end = prefix */
    int status;
    char content_type[64];
    char *body;        /* owned */
    size_t body_len;
    size_t big_len;    /* > 0: answer big_len bytes of 'x' instead of body */
    bool big_chunked;  /* big answer without Content-Length */
};

struct fake_server {
    struct MHD_Daemon *mhd;
    char dir[64];   /* temp dir holding the socket (and anything else) */
    char path[108]; /* the socket */
    pthread_mutex_t lock;
    struct fake_route routes[FAKE_MAX_ROUTES];
    size_t n_routes;
    /* The last request. */
    int requests;
    int connections;
    char last_method[16];
    char last_uri[2048]; /* raw, with query */
    char last_ctype[128];
    char *last_body;     /* NUL-terminated, owned */
    size_t last_body_len;
};

/* Start on <new temp dir>/cgvd.sock. Asserts (cmocka) on failure. */
void fake_server_start(struct fake_server *fs);
/* Stop, remove the socket and the temp dir (which must hold nothing else). */
void fake_server_stop(struct fake_server *fs);
/* Forget routes and the recorded request. */
void fake_server_reset(struct fake_server *fs);
/* Add a route answering status with body (JSON unless content_type says). */
void fake_server_route(struct fake_server *fs, const char *method, const char *path,
                       int status, const char *content_type, const char *body);
/* Add a route answering len bytes of 'x' (chunked: without Content-Length). */
void fake_server_route_big(struct fake_server *fs, const char *method,
                           const char *path, size_t len, bool chunked);
/* Copy the recorded request fields (under the lock). */
void fake_server_last(struct fake_server *fs, char *method, size_t mcap, char *uri,
                      size_t ucap, char *ctype, size_t ccap, char *body, size_t bcap);

/* A raw stream server on a Unix socket: accepts one connection, reads until the
 * end of the request headers, writes reply (reply_len bytes) and closes. */
struct raw_server {
    int fd;
    char path[108];
    const char *reply;
    size_t reply_len;
    pthread_t thread;
};
void raw_server_start(struct raw_server *rs, const char *path, const char *reply,
                     size_t reply_len);
void raw_server_stop(struct raw_server *rs);

#endif
