/* nf_reply.h — the sample network function's reply format.
 *
 *   "cgv-nf <vm-name> <count> " followed by the request bytes, truncated so the
 *   whole reply fits in the caller's buffer (NF_MAX_REPLY on the wire).
 * Pure code. */
#ifndef NF_REPLY_H
#define NF_REPLY_H

#include <stddef.h>
#include <stdint.h>

#define NF_DEFAULT_PORT 7000
#define NF_MAX_REQUEST 1400 /* longer requests are answered truncated */
#define NF_MAX_REPLY 1472   /* one unfragmented UDP datagram at MTU 1500 */

/* Writes the reply into out[cap] (not NUL-terminated) and returns its length;
 * 0 if not even the header fits. */
size_t nf_reply_format(uint8_t *out, size_t cap, const char *vm_name, uint64_t count,
                       const uint8_t *req, size_t req_len);

#endif
