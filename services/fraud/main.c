/* ps-fraud: wiring only; the logic is in fraud.c and rules.c. */
#include "fraud.h"

int main(void) { return stage_main(&fraud_stage); }
