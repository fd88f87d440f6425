/* ps-ingest: wiring only; the logic is in ingest.c, the runtime in lib/. */
#include "ingest.h"

int main(void) { return stage_main(&ingest_stage); }
