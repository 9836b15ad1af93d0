/* store_internal.h — for the store's own unit tests only; cgvd must not
 * include this. Gives raw access to the SQLite connection so tests can run
 * integrity checks and simulate a full disk (PRAGMA max_page_count).
 */
#ifndef STORE_INTERNAL_H
#define STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

/* Highest schema version this build knows (PRAGMA user_version). */
int store_schema_version(void);

/* The connection, owned by st. */
sqlite3 *store_sqlite(struct store *st);

#endif
