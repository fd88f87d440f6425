/* ps-charge: wiring only; the logic is in charge.c and stripe.c. */
#include "charge.h"

int main(void) { return stage_main(&charge_stage); }
