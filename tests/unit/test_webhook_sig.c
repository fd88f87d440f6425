/* Unit tests for the webhook signatures: each flavour accepts what its
 * sender signs and refuses tampering, other secrets, old and future
 * timestamps and headers it cannot read. Expected values are computed
 * independently where it matters (a known HMAC vector, openssl dgst). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "sig_paypal.h"
#include "sig_stripe.h"

static const char *SECRET = "whsec_test_one";
static const char *OTHER = "whsec_other_processor";
static const char *BODY = "{\"id\":\"evt_1\",\"type\":\"charge.succeeded\"}";
#define NOW 1764615600LL /* 2025-12-01T19:00:00Z */
#define TOL 300

static sig_result stripe(const char *header, const char *body) {
  return sig_stripe_verify(header, body, strlen(body), SECRET, NOW, TOL);
}

static void stripe_header(const char *secret, long long t, const char *body, char *out) {
  cr_assert_eq(sig_stripe_sign(secret, t, body, strlen(body), out, 200), 0);
}

Test(webhook_sig, hmac_matches_rfc4231_case_2) {
  char hex[65];
  cr_assert_eq(sig_hmac_sha256_hex("Jefe", "what do ya want for nothing?", 28, hex), 0);
  cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

Test(webhook_sig, stripe_valid_signature_is_accepted) {
  char h[200];
  stripe_header(SECRET, NOW - 10, BODY, h);
  cr_assert_eq(stripe(h, BODY), SIG_OK);
}

Test(webhook_sig, stripe_signature_of_known_vector) {
  /* echo -n '1764615600.{"id":"evt_1","type":"charge.succeeded"}' |
   *   openssl dgst -sha256 -hmac whsec_test_one */
  char h[200];
  stripe_header(SECRET, NOW, BODY, h);
  cr_assert_str_eq(h, "t=1764615600,v1=32e41c909d95c2713d75765f858b38d291d37bcccef66c756dbea7812ce49ced");
}

Test(webhook_sig, stripe_tampered_body_is_refused) {
  char h[200];
  stripe_header(SECRET, NOW, BODY, h);
  cr_assert_eq(stripe(h, "{\"id\":\"evt_1\",\"type\":\"charge.failed\"}"), SIG_MISMATCH);
}

Test(webhook_sig, stripe_wrong_secret_is_refused) {
  char h[200];
  stripe_header("whsec_guess", NOW, BODY, h);
  cr_assert_eq(stripe(h, BODY), SIG_MISMATCH);
}

Test(webhook_sig, stripe_other_processors_secret_is_refused) {
  char h[200];
  stripe_header(OTHER, NOW, BODY, h);
  cr_assert_eq(stripe(h, BODY), SIG_MISMATCH);
}

Test(webhook_sig, stripe_old_and_future_timestamps_are_stale) {
  char h[200];
  stripe_header(SECRET, NOW - TOL - 1, BODY, h);
  cr_assert_eq(stripe(h, BODY), SIG_STALE);
  stripe_header(SECRET, NOW + TOL + 1, BODY, h);
  cr_assert_eq(stripe(h, BODY), SIG_STALE);
  stripe_header(SECRET, NOW - TOL, BODY, h);
  cr_assert_eq(stripe(h, BODY), SIG_OK, "the tolerance's edge is inside");
}

Test(webhook_sig, stripe_timestamp_is_signed) {
  /* A valid v1 moved onto a fresh t (to dodge the tolerance) no longer matches. */
  char h[200], forged[200];
  stripe_header(SECRET, NOW - 3600, BODY, h);
  snprintf(forged, sizeof forged, "t=%lld,%s", NOW, strstr(h, "v1="));
  cr_assert_eq(stripe(forged, BODY), SIG_MISMATCH);
}

Test(webhook_sig, stripe_any_of_several_v1_may_match) {
  char good[200], bad[200], h[400];
  stripe_header(SECRET, NOW, BODY, good);
  stripe_header(OTHER, NOW, BODY, bad);
  snprintf(h, sizeof h, "t=%lld,%s,v0=abc,%s", NOW, strstr(bad, "v1="), strstr(good, "v1="));
  cr_assert_eq(stripe(h, BODY), SIG_OK);
  snprintf(h, sizeof h, "t=%lld, %s", NOW, strstr(bad, "v1="));
  cr_assert_eq(stripe(h, BODY), SIG_MISMATCH);
}

Test(webhook_sig, stripe_upper_case_hex_is_the_same_signature) {
  char h[200];
  stripe_header(SECRET, NOW, BODY, h);
  for (char *p = strstr(h, "v1=") + 3; *p; p++)
    if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
  cr_assert_eq(stripe(h, BODY), SIG_OK);
}

Test(webhook_sig, stripe_malformed_headers_are_refused) {
  char good[200], h[300];
  stripe_header(SECRET, NOW, BODY, good);
  const char *v1 = strstr(good, "v1=");
  cr_assert_eq(stripe(NULL, BODY), SIG_MALFORMED);
  cr_assert_eq(stripe("", BODY), SIG_MALFORMED);
  cr_assert_eq(stripe("garbage", BODY), SIG_MALFORMED);
  cr_assert_eq(stripe(v1, BODY), SIG_MALFORMED, "no t");
  snprintf(h, sizeof h, "t=%lld", NOW);
  cr_assert_eq(stripe(h, BODY), SIG_MALFORMED, "no v1");
  snprintf(h, sizeof h, "t=%lldx,%s", NOW, v1);
  cr_assert_eq(stripe(h, BODY), SIG_MALFORMED, "t not a number");
  snprintf(h, sizeof h, "t=-5,%s", v1);
  cr_assert_eq(stripe(h, BODY), SIG_MALFORMED, "negative t");
  snprintf(h, sizeof h, "t=%lld,t=%lld,%s", NOW, NOW, v1);
  cr_assert_eq(stripe(h, BODY), SIG_MALFORMED, "two t");
  snprintf(h, sizeof h, "t=%lld,v1=%.63s", NOW, v1 + 3);
  cr_assert_eq(stripe(h, BODY), SIG_MISMATCH, "a short v1 never matches");
}

Test(webhook_sig, stripe_body_may_hold_nul_bytes) {
  const char body[] = "a\0b";
  char h[200];
  cr_assert_eq(sig_stripe_sign(SECRET, NOW, body, 3, h, sizeof h), 0);
  cr_assert_eq(sig_stripe_verify(h, body, 3, SECRET, NOW, TOL), SIG_OK);
  cr_assert_eq(sig_stripe_verify(h, "a\0c", 3, SECRET, NOW, TOL), SIG_MISMATCH);
}

/* ---- PayPal-like -------------------------------------------------------------- */

static const char *TID = "4f9e0e1c-1111-4c2b-9a0e-0123456789ab";
static const char *WHID = "WH-ID-1";
static const char *T_NOW = "2025-12-01T19:00:00Z";

static sig_result paypal(const char *secret_used, const char *time, const char *body,
                         const char *expect_id) {
  char sig[65];
  cr_assert_eq(sig_paypal_sign(secret_used, TID, time, WHID, body, strlen(body), sig), 0);
  paypal_headers h = {TID, time, WHID, sig};
  return sig_paypal_verify(&h, body, strlen(body), SECRET, expect_id, NOW, TOL);
}

Test(webhook_sig, rfc3339_times_parse_with_offsets_and_fractions) {
  int64_t t;
  cr_assert_eq(sig_rfc3339_parse("2025-12-01T19:00:00Z", &t), 0);
  cr_assert_eq(t, NOW);
  cr_assert_eq(sig_rfc3339_parse("2025-12-01T20:00:00.123+01:00", &t), 0);
  cr_assert_eq(t, NOW);
  cr_assert_eq(sig_rfc3339_parse("2025-12-01T19:00:00", &t), -1, "a zone is required");
  cr_assert_eq(sig_rfc3339_parse("yesterday", &t), -1);
  cr_assert_eq(sig_rfc3339_parse("2025-12-01T19:00:00Zjunk", &t), -1);
}

Test(webhook_sig, paypal_valid_signature_is_accepted) {
  cr_assert_eq(paypal(SECRET, T_NOW, BODY, NULL), SIG_OK);
  cr_assert_eq(paypal(SECRET, T_NOW, BODY, WHID), SIG_OK);
}

Test(webhook_sig, paypal_signature_matches_the_contract_layout) {
  /* HMAC(secret, "<id>|<time>|<webhook id>|<sha256 hex of body>"), built here by hand. */
  char digest[65], want[65], got[65], msg[512];
  cr_assert_eq(sig_sha256_hex(BODY, strlen(BODY), digest), 0);
  snprintf(msg, sizeof msg, "%s|%s|%s|%s", TID, T_NOW, WHID, digest);
  cr_assert_eq(sig_hmac_sha256_hex(SECRET, msg, strlen(msg), want), 0);
  cr_assert_eq(sig_paypal_sign(SECRET, TID, T_NOW, WHID, BODY, strlen(BODY), got), 0);
  cr_assert_str_eq(got, want);
}

Test(webhook_sig, paypal_tampered_body_wrong_and_other_secret_are_refused) {
  char sig[65];
  cr_assert_eq(sig_paypal_sign(SECRET, TID, T_NOW, WHID, BODY, strlen(BODY), sig), 0);
  paypal_headers h = {TID, T_NOW, WHID, sig};
  const char *tampered = "{\"id\":\"evt_2\",\"type\":\"charge.succeeded\"}";
  cr_assert_eq(sig_paypal_verify(&h, tampered, strlen(tampered), SECRET, NULL, NOW, TOL),
               SIG_MISMATCH);
  cr_assert_eq(paypal("wrong", T_NOW, BODY, NULL), SIG_MISMATCH);
  cr_assert_eq(paypal(OTHER, T_NOW, BODY, NULL), SIG_MISMATCH);
}

Test(webhook_sig, paypal_other_webhook_id_is_refused) {
  cr_assert_eq(paypal(SECRET, T_NOW, BODY, "WH-ID-2"), SIG_MISMATCH);
}

Test(webhook_sig, paypal_old_and_future_transmissions_are_stale) {
  cr_assert_eq(paypal(SECRET, "2025-12-01T18:54:59Z", BODY, NULL), SIG_STALE);
  cr_assert_eq(paypal(SECRET, "2025-12-01T19:05:01Z", BODY, NULL), SIG_STALE);
  cr_assert_eq(paypal(SECRET, "2025-12-01T18:55:00Z", BODY, NULL), SIG_OK);
}

Test(webhook_sig, paypal_malformed_headers_are_refused) {
  char sig[65];
  cr_assert_eq(sig_paypal_sign(SECRET, TID, T_NOW, WHID, BODY, strlen(BODY), sig), 0);
  paypal_headers none = {0};
  cr_assert_eq(sig_paypal_verify(&none, BODY, strlen(BODY), SECRET, NULL, NOW, TOL),
               SIG_MALFORMED);
  paypal_headers bad_time = {TID, "not a time", WHID, sig};
  cr_assert_eq(sig_paypal_verify(&bad_time, BODY, strlen(BODY), SECRET, NULL, NOW, TOL),
               SIG_MALFORMED);
  paypal_headers no_sig = {TID, T_NOW, WHID, NULL};
  cr_assert_eq(sig_paypal_verify(&no_sig, BODY, strlen(BODY), SECRET, NULL, NOW, TOL),
               SIG_MALFORMED);
  /* '|' would let one field's text pass for another's. */
  paypal_headers pipe = {"a|b", T_NOW, WHID, sig};
  cr_assert_eq(sig_paypal_verify(&pipe, BODY, strlen(BODY), SECRET, NULL, NOW, TOL),
               SIG_MALFORMED);
}
