/* hash: SHA-256 helpers (OpenSSL) for fingerprints and derived identifiers. */
#ifndef PS_HASH_H
#define PS_HASH_H

#include <stddef.h>

/* Writes the lower-case hex SHA-256 of data into out (65 bytes incl. NUL). */
void hash_sha256_hex(const void *data, size_t len, char out[65]);

#endif
