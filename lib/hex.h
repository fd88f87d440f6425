/* hex: the text form bytes take through Postgres (bytea parameters are
 * passed as hex and decoded server-side; stored outcomes come back as hex
 * and are re-sent byte-identical). */
#ifndef PS_HEX_H
#define PS_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len lower-case hex digits and a NUL: out holds 2*len+1 bytes. */
void hex_encode(const uint8_t *data, size_t len, char *out);
/* Decodes hex (upper or lower case; Postgres's "\x" prefix accepted) into a
 * malloc'd buffer the caller frees; NULL on odd length, a non-hex digit or
 * out of memory. */
uint8_t *hex_decode(const char *hex, size_t *len);

#endif
