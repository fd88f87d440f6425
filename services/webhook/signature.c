/* signature: HMAC-SHA256 and constant-time comparison for webhook checks. */
#include "signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "hex.h"

const char *sig_result_name(sig_result r) {
  switch (r) {
  case SIG_OK: return "ok";
  case SIG_MALFORMED: return "malformed_signature";
  case SIG_STALE: return "stale";
  case SIG_MISMATCH: return "bad_signature";
  }
  return "bad_signature";
}

int sig_hmac_sha256_hex(const char *key, const void *msg, size_t len, char out[65]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha256(), key, (int)strlen(key), msg, len, mac, &maclen) || maclen != 32)
    return -1;
  hex_encode(mac, 32, out);
  OPENSSL_cleanse(mac, sizeof mac);
  return 0;
}

int sig_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) return -1;
  hex_encode(md, 32, out);
  return 0;
}

bool sig_hex_equal(const char expected[65], const char *candidate, size_t len) {
  /* The length is public (always 64 for SHA-256); only the digits are
   * secret-dependent, and CRYPTO_memcmp reads all of them. */
  if (len != 64) return false;
  char lower[64];
  for (size_t i = 0; i < 64; i++) {
    char ch = candidate[i];
    lower[i] = (ch >= 'A' && ch <= 'F') ? (char)(ch - 'A' + 'a') : ch;
  }
  return CRYPTO_memcmp(expected, lower, 64) == 0;
}
