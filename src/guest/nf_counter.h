/* nf_counter.h — the served-request counter cgv-nf shares with cgv-guest.
 *
 * A 16-byte file (default NF_COUNTER_PATH, on tmpfs): u64 magic, u64 count,
 * native byte order, mapped MAP_SHARED by both. cgv-nf is the only writer and
 * stores the count atomically after each answered request; cgv-guest maps it
 * read-only and loads it atomically for its heartbeats. The file outlives a
 * cgv-nf restart, so the count keeps growing across respawns. */
#ifndef NF_COUNTER_H
#define NF_COUNTER_H

#include <stdbool.h>
#include <stdint.h>

#define NF_COUNTER_PATH "/run/cgv-nf.counter"
#define NF_COUNTER_MAGIC 0x63677620666e3031ULL /* "cgv nf01" */

struct nf_counter {
    uint64_t *map; /* NULL when not open */
    bool writable;
};

/* Writer side: create or reuse the file (mode 0644) and map it. A file with a
 * wrong magic or size is reset to 0. Returns 0, or -1 with errno. */
int nf_counter_open_rw(struct nf_counter *c, const char *path);
/* Reader side: map an existing file. Returns 0, or -1 with errno (ENOENT while
 * cgv-nf has not started yet). */
int nf_counter_open_ro(struct nf_counter *c, const char *path);
void nf_counter_close(struct nf_counter *c);

/* 0 when not open or the magic is not there (yet). */
uint64_t nf_counter_get(const struct nf_counter *c);
/* Writer only. */
void nf_counter_set(struct nf_counter *c, uint64_t v);

#endif
