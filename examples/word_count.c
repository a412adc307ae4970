/*
 * word_count - the K most frequent words of a text with their counts, one
 * "WORD COUNT" line each, counted on the cluster (see README.md).
 */
#include "wcclient.h"

int main(int argc, char **argv) {
    static const wc_program prog = {
        .name = "word_count",
        .summary = "Prints the K most frequent words of FILE with their counts, most frequent first.",
        .top_flag = true,
        .seed_method = false,
    };
    return wc_program_main(&prog, argc, argv);
}
