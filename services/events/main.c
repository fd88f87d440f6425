/* ps-events: wiring only; the stage is in events.c. */
#include "events.h"

int main(void) { return events_main(); }
