/* charge_item: one payment the charge worker holds and the worker's state,
 * shared by the state machine (charge.c), its persistence (charge_db.c) and
 * the stage wiring (charge_stage.c). The state machine
 * itself — the states, the diagram and the one transition function — is in
 * charge.c. */
#ifndef CHARGE_ITEM_H
#define CHARGE_ITEM_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "charge_http.h"
#include "event.h"
#include "kloop.h"
#include "metrics.h"
#include "processor.h"

typedef enum item_state {
  IT_WAIT_DUP,  /* another message of the same payment goes first */
  IT_READ,      /* learn its state from Postgres at next_try_ms (opening the first attempt) */
  IT_READY,     /* a live `charging` attempt: send at next_try_ms */
  IT_SENDING,   /* its send is being counted in this cycle's trip */
  IT_INFLIGHT,  /* a request is out */
  IT_REFUSED,   /* a refused send to make durable; it stays on this processor */
  IT_REFUSED_FAILOVER, /* the same, and then fail over: nobody ever received it */
  IT_FAILOVER,  /* circuit open and nobody ever received it: fail over */
  IT_RECORD,    /* a definite answer (or our own end) to record */
  IT_DONE,      /* emit and drop */
} item_state;

/* What the last trip to Postgres said about the item. */
typedef enum trip_said {
  SAID_FAILED,   /* nothing of the trip happened (transient): try again later */
  SAID_WRITTEN,  /* our own writes tell its state (answer recorded, attempt opened) */
  SAID_READ,     /* its state was read */
  SAID_UNREAD,   /* written, but its state could not be read */
  SAID_COUNTED,  /* its send is counted: it leaves now */
  SAID_NOT_LIVE, /* its attempt is no longer charging: read the truth */
  SAID_BOOKED,   /* its refusal / failover is durable */
  SAID_ISOLATED, /* Postgres refuses its data: it leaves the worker (see reason) */
} trip_said;

/* What Postgres holds for the payment and its live attempt. */
typedef struct item_row {
  bool known;              /* the payment exists */
  bool has_attempt;        /* it has a live (not abandoned) attempt */
  char state[16];          /* live attempt's state */
  int proc;                /* live attempt's processor index, -1 if not configured */
  char *proc_name;         /* live attempt's processor, as recorded */
  int sends, refused;      /* of the live attempt */
  int64_t created_ms;      /* the live attempt's creation, on our monotonic clock */
  int64_t first_sent_ms;   /* its first counted send, on our monotonic clock (0: none yet);
                              past the key lifetime it is never sent again (charge_resolve.h) */
  char *outcome_hex;       /* the payment's terminal outcome, once recorded */
  char *charge_id;         /* the processor's, once succeeded */
  int64_t fee_minor;
  int64_t amount_minor;    /* the payment's money, as recorded: what we charge */
  char currency[4];
  char *payment_method;
  char pay_status[16];     /* the payment's status, as read */
  bool authorize;          /* payments.kind is 'authorize': a hold, not a sale */
  bool settled_by_charge;  /* the attempt's answer was written by charge (021 settled_by) */
} item_row;

typedef struct citem {
  ps_event *ev;            /* owned */
  int32_t partition;
  int64_t offset;
  item_state st;
  trip_said said;
  item_row db;
  charge_answer ans;       /* the answer of the last request */
  char fail_code[32];      /* set when we end the payment ourselves */
  bool never_sent;         /* ended by us, not by an answer: no send of ours is answered */
  char reason[256];        /* why it is dead-lettered (isolated) */
  int64_t since_ms;        /* when this worker took up its live attempt: the deadline's start */
  bool pending_sent;       /* its interim `pending` outcome is out (an output, not a state) */
  int tries;               /* ambiguous answers so far, for the back-off */
  int64_t next_try_ms;
  char *record_outcome_hex;
  void *raw, *key;         /* the message, for the DLQ */
  size_t rawlen, keylen;
  http_call call;
  char end_status[16];     /* isolated: the payment's status after its standalone end */
  bool may_hold;           /* isolated: an attempt the processor may hold is live (pending) */
  bool lookup;             /* ask the processor what its key got before any re-send (resolver) */
  bool search;             /* its last query was a search by payment id (past the key's life) */
  bool escalated;          /* past the key's life and not found: alerted once */
  bool elsewhere;          /* our record changed nothing: someone else settled it and emits */
  bool data_error;         /* its request cannot be built: isolated once the refusal is booked */
  struct op_item *op;      /* an operation (charge_ops.c), NULL for a sale or authorization */
} citem;

/* The worker's state: its processors, its transport, the items it holds. */
typedef struct charge_state {
  processor proc[CHARGE_MAX_PROCESSORS]; /* primary first, then the backup */
  int nproc;
  long long max_inflight, deadline_ms;
  charge_http http;
  citem **items;           /* kept, in admission order */
  size_t n, cap;
  GHashTable *active;      /* payment ids with an item past IT_WAIT_DUP */
  metric *m_inflight, *m_pending, *m_not_started, *m_isolated, *m_unresolved_age, *m_interim,
      *m_unconfigured, *m_mismatch, *m_lookups, *m_elsewhere;
  /* The key lifetime (charge_resolve.h): per processor, how long after the
   * first send a re-send is still allowed; when it was last read. */
  int64_t key_window_ms[CHARGE_MAX_PROCESSORS];
  int64_t key_read_ms;
  bool role_checked;
  metric *m_key_unfound, *m_op_escalated;
} charge_state;

/* Cross-file private (charge.c), for the stage wiring in charge_stage.c. */
void charge__item_free(charge_state *st, citem *x); /* cancels a request in flight */
void charge__keep(charge_state *st, citem *x);      /* appends x to the items */
/* One cycle: answers in (waiting at most wait_ms), one round trip to
 * Postgres, requests out, finished payments emitted. */
void charge__progress(stage_ctx *ctx, outbox *out, int wait_ms);
/* charge_emit.c: outputs of finished items (then dropped), and the interim
 * `pending` outcomes and unresolved age. */
void charge__emit_done(stage_ctx *ctx, charge_state *st, outbox *out);
void charge__emit_pending(stage_ctx *ctx, charge_state *st, outbox *out, int64_t now);

#endif
