/*
 * most_frequent_word - the most frequent word of a text and its count, the
 * course's split job: the input is split into chunks at whitespace, the
 * chunks are counted in parallel on the cluster, and the partial results are
 * integrated (see README.md). The answer is the last line: "WORD COUNT".
 */
#include "wcclient.h"

int main(int argc, char **argv) {
    static const wc_program prog = {
        .name = "most_frequent_word",
        .summary = "Prints the most frequent word of FILE and its count as the last line.",
        .top_flag = false,
        .seed_method = true,
    };
    return wc_program_main(&prog, argc, argv);
}
