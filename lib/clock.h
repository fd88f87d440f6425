/* clock: the two clocks every stage reads — wall time for what is recorded
 * (epoch ms, comparable across machines) and monotonic time for deadlines
 * and back-off (never jumps when the wall clock is set). */
#ifndef PS_CLOCK_H
#define PS_CLOCK_H

#include <stdint.h>

int64_t ps_now_ms(void);  /* wall clock, epoch ms */
int64_t ps_mono_ms(void); /* monotonic, for deadlines */

#endif
