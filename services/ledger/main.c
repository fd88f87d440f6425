/* ps-ledger: wiring only; the logic is in ledger.c and posting.c. */
#include "ledger.h"

int main(void) { return stage_main(&ledger_stage); }
