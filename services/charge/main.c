/* ps-charge: wiring only; the stage is charge_stage.c (configuration and
 * kloop callbacks) around the item state machine in charge.c. */
#include "charge.h"

int main(void) { return stage_main(&charge_stage); }
