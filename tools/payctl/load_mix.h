/* load_mix: `payctl load --mix sale=60,authcap=25,refund=10,void=5` — the
 * lifecycle mix. Each payment of the run is one flavour: a sale; an
 * authorization captured in full once authorized (authcap); a sale partly
 * refunded (half its amount) once it succeeded (refund); an authorization
 * voided once authorized (void). The follow-up operation is published only
 * after the payment's own succeeded outcome arrived (load reads
 * payments.outcomes anyway), with its own key "<payment key>-cap|-ref|-void",
 * keyed on Kafka by the payment's key. */
#ifndef PAYCTL_LOAD_MIX_H
#define PAYCTL_LOAD_MIX_H

#include <stdbool.h>
#include <stddef.h>

#include "gen.h"

enum { MIX_SALE, MIX_AUTHCAP, MIX_REFUND, MIX_VOID, MIX_N };

typedef struct load_mix {
  bool on;
  double pct[MIX_N];
} load_mix;

/* Parses "sale=60,authcap=25,refund=10,void=5" (names in any order, absent
 * ones 0, percentages adding up to 100). Returns 0, or -1 (message printed). */
int load_mix_parse(const char *s, load_mix *m);
/* The flavour of the next payment, drawn from *rs. */
int load_mix_pick(const load_mix *m, unsigned *rs);
/* The request kind its payment is published with (0 sale, 1 authorize). */
int load_mix_kind(int flavour);
/* "sale", "authcap", "refund", "void". */
const char *load_mix_name(int flavour);
/* Publishes flavour's follow-up operation on payment in (none for a sale:
 * returns false), stamped now. */
bool load_mix_follow(gen *g, const gen_intent *in, int flavour);

#endif
