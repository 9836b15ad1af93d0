/* nf_reply.c — build one cgv-nf reply. */
#include "nf_reply.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

size_t nf_reply_format(uint8_t *out, size_t cap, const char *vm_name, uint64_t count,
                       const uint8_t *req, size_t req_len)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof(hdr), "cgv-nf %s %" PRIu64 " ", vm_name, count);
    size_t hlen, body;

    if (n < 0 || (size_t)n >= sizeof(hdr) || (size_t)n > cap)
        return 0;
    hlen = (size_t)n;
    memcpy(out, hdr, hlen);
    body = cap - hlen;
    if (body > req_len)
        body = req_len;
    if (body)
        memcpy(out + hlen, req, body);
    return hlen + body;
}
