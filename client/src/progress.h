/*
 * progress.h - the line of lumen_wait_progress's bar (progress_line.c: no
 * I/O, so it is tested alone) and the wait that draws it (progress.c).
 */
#ifndef LUMEN_PROGRESS_H
#define LUMEN_PROGRESS_H

#include <stddef.h>

/* Redraws of a bar: at most one per this many milliseconds. */
#define CLIENT_PROGRESS_REDRAW_MS 100

/*
 * "label [#########           ] 12/27 tasks  4.1/s  2.9s" into buf (always
 * NUL-terminated), at most width - 1 characters so a terminal of that width
 * never wraps it (the bar shrinks first, then the label is cut; width 0:
 * no limit). label NULL or "": no label. Returns the line's length.
 */
size_t client_progress_line(char *buf, size_t cap, const char *label, size_t done, size_t total, double seconds,
                            int width);

#endif
