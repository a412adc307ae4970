/*
 * wcclient.h - the client side of the word-count examples, shared by
 * most_frequent_word and word_count: reading and splitting the input, the
 * ways to count (exact, seed, actors and actors-exact on the cluster, local
 * in-process), and the programs' common command line.
 */
#ifndef WC_CLIENT_H
#define WC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wc_program {
    const char *name;
    const char *summary;
    bool top_flag;   /* takes --top K (else K = 1) */
    bool seed_method; /* offers the two-round methods: --method seed and actors */
} wc_program;

/*
 * Parses argv, runs the chosen method and prints the K most frequent words
 * as "WORD COUNT" lines on stdout (the last line is the K-th word), timings
 * on stderr. Returns the exit code: 0 done, 1 failed, 2 bad arguments.
 */
int wc_program_main(const wc_program *prog, int argc, char **argv);

#endif
