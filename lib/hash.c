/* hash: SHA-256 through OpenSSL's one-shot EVP digest. */
#include "hash.h"

#include <openssl/evp.h>
#include <stdio.h>

void hash_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
  for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
  out[64] = '\0';
}
