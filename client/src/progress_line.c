/* progress_line.c - see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <string.h>

#define BAR_MAX 30
#define BAR_MIN 5

/* "8.5s", "3m07s", "2h05m" */
static void elapsed(char *out, size_t cap, double seconds) {
    if (seconds < 0) seconds = 0;
    unsigned long s = (unsigned long)seconds;
    if (seconds < 60) snprintf(out, cap, "%.1fs", seconds);
    else if (s < 3600) snprintf(out, cap, "%lum%02lus", s / 60, s % 60);
    else snprintf(out, cap, "%luh%02lum", s / 3600, s / 60 % 60);
}

size_t client_progress_line(char *buf, size_t cap, const char *label, size_t done, size_t total, double seconds,
                            int width) {
    if (cap == 0) return 0;
    if (done > total) done = total;
    double rate = seconds > 0 ? (double)done / seconds : 0;
    char when[32], tail[128];
    elapsed(when, sizeof when, seconds);
    snprintf(tail, sizeof tail, " %zu/%zu tasks  %.*f/s  %s", done, total, rate >= 100 ? 0 : 1, rate, when);
    size_t room = width > 0 ? (size_t)width - 1 : (size_t)-1; /* the last column stays free */
    size_t label_len = label != NULL ? strlen(label) : 0;
    size_t fixed = strlen(tail) + 2 + (label_len ? 1 : 0); /* "[" "]" and the space after the label */
    size_t bar = room > fixed + label_len ? room - fixed - label_len : 0;
    if (bar > BAR_MAX) bar = BAR_MAX;
    if (bar < BAR_MIN) { /* a narrow terminal: the label gives way to the bar */
        bar = BAR_MIN;
        label_len = room > fixed + bar ? room - fixed - bar : 0;
    }
    size_t filled = total ? bar * done / total : bar;
    char bars[BAR_MAX + 1];
    for (size_t i = 0; i < bar; i++) bars[i] = i < filled ? '#' : ' ';
    bars[bar] = '\0';
    int n = snprintf(buf, cap, "%.*s%s[%s]%s", (int)label_len, label ? label : "", label_len ? " " : "", bars, tail);
    size_t len = n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
    if (len > room) len = room; /* narrower than the numbers themselves */
    buf[len] = '\0';
    return len;
}
