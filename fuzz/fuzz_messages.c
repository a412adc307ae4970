/*
 * fuzz_messages - every protobuf message a Lumen process decodes: the
 * requests and replies of every service's methods (taken from protoc-c's
 * service descriptors, so a new method is fuzzed without touching this file)
 * and the worker <-> executor frames.
 *
 * Input: byte 0 picks the message type, the rest is decoded as it. A message
 * that decodes and that lm_limits_well_formed lets a service pass on must
 * re-pack into bytes that decode again and re-pack to the same bytes (what a
 * service forwards, a peer understands as it did).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.pb-c.h"
#include "health.pb-c.h"
#include "input_limits.h"
#include "objstore.pb-c.h"
#include "scheduler.pb-c.h"
#include "worker.pb-c.h"

#define MAX_TYPES 128

static const ProtobufCMessageDescriptor *types[MAX_TYPES];
static size_t ntypes;

static void add_type(const ProtobufCMessageDescriptor *desc) {
    for (size_t i = 0; i < ntypes; i++)
        if (types[i] == desc) return;
    if (ntypes == MAX_TYPES) abort(); /* raise MAX_TYPES */
    types[ntypes++] = desc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const ProtobufCServiceDescriptor *const services[] = {
        &lumen__scheduler__descriptor, &lumen__object_store__descriptor, &lumen__worker__descriptor,
        &lumen__health__descriptor};
    for (size_t s = 0; s < sizeof services / sizeof *services; s++)
        for (unsigned m = 0; m < services[s]->n_methods; m++) {
            add_type(services[s]->methods[m].input);
            add_type(services[s]->methods[m].output);
        }
    add_type(&lumen__exec_request__descriptor);
    add_type(&lumen__exec_reply__descriptor);
    return 0;
}

static void fail(const ProtobufCMessageDescriptor *desc, const char *why) {
    fprintf(stderr, "fuzz_messages: %s: %s\n", desc->name, why);
    abort();
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len) {
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf == NULL) abort();
    if (protobuf_c_message_pack(msg, buf) != *len) fail(msg->descriptor, "pack wrote another size than announced");
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const ProtobufCMessageDescriptor *desc = types[data[0] % ntypes];
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, size - 1, data + 1);
    if (msg == NULL) return 0; /* refused: what a service answers INVALID_ARGUMENT to */
    if (!protobuf_c_message_check(msg)) fail(desc, "a decoded message fails protobuf_c_message_check");
    if (!LM_IS_OK(lm_limits_well_formed(msg))) { /* refused before it is passed on */
        protobuf_c_message_free_unpacked(msg, NULL);
        return 0;
    }

    size_t len1, len2;
    uint8_t *bytes1 = pack(msg, &len1);
    ProtobufCMessage *again = protobuf_c_message_unpack(desc, NULL, len1, bytes1);
    if (again == NULL) fail(desc, "a re-packed message does not decode");
    uint8_t *bytes2 = pack(again, &len2);
    if (len1 != len2 || memcmp(bytes1, bytes2, len1) != 0) fail(desc, "packing is not stable across a round trip");

    free(bytes1);
    free(bytes2);
    protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}
