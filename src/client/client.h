/* client.h — a small client for cgvd's HTTP/JSON API (docs/API.md).
 *
 * It speaks HTTP/1.1 with libcurl over cgvd's Unix socket (URLs are
 * "http://cgvd/v1/..."), keeps one curl handle per struct client so that the
 * connection is reused between requests, bounds every response
 * (CLIENT_MAX_RESPONSE by default) and turns every failure into a
 * struct cgv_error:
 *
 *  - an error answer from cgvd ({"error": {"code", "message", "details"}})
 *    becomes the matching enum cgv_errcode with cgvd's message; the whole
 *    error object (with the validation "details") stays available through
 *    client_last_error() until the next request;
 *  - a socket that cannot be reached becomes CGV_E_UNAVAIL with a message that
 *    names the socket and asks "is cgvd running?" (CGV_E_DENIED when the
 *    socket's permissions refuse us); client_last_status() is then 0;
 *  - a response that is not what the API promises (not JSON, too large,
 *    garbled HTTP) becomes CGV_E_INTERNAL ("bad response from cgvd: ...").
 *
 * Used by the cgv CLI, the integration tests and the benchmarks.
 *
 * A struct client is not thread safe: use one per thread. Pass a cleared
 * struct cgv_error: cgv_err() prefixes new text to an error already there.
 *
 * Ownership: every json_t ** and char ** a function fills is a new reference /
 * allocation owned by the caller (json_decref() / free()); on failure they are
 * set to NULL. Pointers returned by client_last_error*() are borrowed and valid
 * until the next request on the same client or client_free().
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgv_common.h"

#define CLIENT_DEFAULT_SOCKET "/run/cgv/cgvd.sock"
#define CLIENT_SOCKET_ENV "CGV_SOCKET"
#define CLIENT_MAX_RESPONSE (16u * 1024 * 1024)
/* Whole-request limit unless set otherwise: apply of many VMs can be slow. */
#define CLIENT_DEFAULT_TIMEOUT_MS 300000L
#define CLIENT_CONNECT_TIMEOUT_MS 5000L

struct client;

/* $CGV_SOCKET if set and not empty, else CLIENT_DEFAULT_SOCKET. Borrowed. */
const char *client_default_socket(void);

/* A client for the cgvd socket at socket_path (NULL: client_default_socket()).
 * Does not connect yet. Returns NULL and fills err on failure (path too long
 * for a Unix socket, curl cannot be initialised). Free with client_free(). */
struct client *client_new(const char *socket_path, struct cgv_error *err);
void client_free(struct client *c);

/* The socket path this client uses. Borrowed. */
const char *client_socket_path(const struct client *c);

/* Largest response body accepted (default CLIENT_MAX_RESPONSE); larger
 * responses fail with CGV_E_INTERNAL. */
void client_set_max_response(struct client *c, size_t bytes);
/* Default whole-request timeout in ms (0 = none). Typed helpers that wait on
 * the server (events long-poll, vm stop) extend it as needed. */
void client_set_timeout_ms(struct client *c, long timeout_ms);
/* When *flag becomes non-zero (e.g. from a SIGINT handler) a running request
 * is aborted within about a second and fails with CGV_E_INTERNAL
 * "interrupted". flag is borrowed and must outlive the client; NULL unsets. */
void client_set_cancel_flag(struct client *c, const volatile sig_atomic_t *flag);

/* HTTP status of the last request; 0 if no HTTP answer was received
 * (cgvd not reachable, timeout, garbled answer). */
int client_last_status(const struct client *c);
/* The "error" object of the last failed request ({"code", "message",
 * "details"?}), NULL if the last request succeeded or failed without one.
 * Borrowed. */
const json_t *client_last_error(const struct client *c);
/* Its "details" array (validation issues: objects with "path", "line",
 * "column", "message"), NULL if none. Borrowed. */
const json_t *client_last_error_details(const struct client *c);

/* Map an API error code string ("not-found") to enum cgv_errcode; returns
 * CGV_OK for an unknown string. */
enum cgv_errcode client_errcode_from_name(const char *name);
/* The enum cgv_errcode an HTTP error status stands for when the body does not
 * say (404 -> CGV_E_NOTFOUND, 502 -> CGV_E_LIBVIRT, ...). */
enum cgv_errcode client_errcode_from_status(int http_status);

/* --- generic requests ---------------------------------------------------- */

/* Send method ("GET", "POST", "DELETE", ...) to path (e.g. "/v1/health",
 * already URL-escaped, query string included) with an optional body (body may
 * be NULL when len is 0; content_type NULL means application/json when there
 * is a body).
 *
 * On a 2xx answer whose body is a JSON object: returns 0, *json_response
 * (if not NULL) gets it (caller owns). Otherwise returns -1 and fills err as
 * described at the top of this file. *http_status (if not NULL) gets the HTTP
 * status or 0 either way. */
int client_request(struct client *c, const char *method, const char *path,
                   const char *content_type, const void *body, size_t len,
                   int *http_status, json_t **json_response,
                   struct cgv_error *err);

/* The same for answers that are not JSON (console-log): on 2xx, *response
 * gets the body, NUL-terminated, caller frees; *response_len its length
 * without the NUL. Error answers are handled like client_request(). */
int client_request_raw(struct client *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len,
                       int *http_status, char **response, size_t *response_len,
                       struct cgv_error *err);

/* --- typed helpers -------------------------------------------------------- */
/* Each returns 0 and the whole JSON answer documented in docs/API.md in *out
 * (caller owns), or -1 with err filled. Names are URL-escaped here. */

/* GET /v1/health */
int client_health(struct client *c, json_t **out, struct cgv_error *err);

/* POST /v1/apply[?dry_run=1] with the spec text; content_type NULL means
 * "application/yaml" (cgvd sniffs the content anyway). */
int client_apply(struct client *c, const char *text, size_t len,
                 const char *content_type, bool dry_run, json_t **out,
                 struct cgv_error *err);

/* GET /v1/services -> {"services": [...]} */
int client_services_list(struct client *c, json_t **out, struct cgv_error *err);
/* GET /v1/services/{name} -> Service */
int client_service_get(struct client *c, const char *name, json_t **out,
                       struct cgv_error *err);
/* DELETE /v1/services/{name} */
int client_service_delete(struct client *c, const char *name, json_t **out,
                          struct cgv_error *err);

/* GET /v1/vms -> {"vms": [...]} */
int client_vms_list(struct client *c, json_t **out, struct cgv_error *err);
/* GET /v1/vms/{name} -> VM */
int client_vm_get(struct client *c, const char *name, json_t **out,
                  struct cgv_error *err);

/* POST /v1/vms/{name}/{op}. op: start stop destroy pause resume reboot save
 * restore (checked here, CGV_E_INVALID otherwise). timeout_ms > 0 is sent as
 * {"timeout_ms": N} for "stop" (graceful shutdown budget) and, for every op,
 * extends the client-side request timeout to timeout_ms + 30 s. */
int client_vm_op(struct client *c, const char *name, const char *op,
                 long timeout_ms, json_t **out, struct cgv_error *err);
/* true if op is one of the operations above. */
bool client_vm_op_valid(const char *op);

/* GET /v1/events. after <= 0, wait_ms <= 0, limit <= 0 and NULL/empty
 * service and vm are left out of the query (server defaults). With
 * wait_ms > 0 the request timeout is extended to wait_ms + 30 s. */
int client_events(struct client *c, int64_t after, long wait_ms, long limit,
                  const char *service, const char *vm, json_t **out,
                  struct cgv_error *err);
/* The path (with query) client_events() requests; caller frees. */
char *client_events_path(int64_t after, long wait_ms, long limit,
                         const char *service, const char *vm);

/* GET /v1/vms/{name}/console-log[?bytes=N] (bytes 0: server default).
 * *text gets the log tail, NUL-terminated, caller frees; *len its length. */
int client_console_log(struct client *c, const char *name, size_t bytes,
                       char **text, size_t *len, struct cgv_error *err);

/* URL-escape s for a path segment or query value; caller frees. */
char *client_escape(const char *s);

#endif
