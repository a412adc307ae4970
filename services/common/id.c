/* id.c - random and derived 128-bit ids and their hex form. */
#include "id.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

lm_id lm_id_random(void) {
    lm_id id;
    size_t got = 0;
    while (got < 12) {
        ssize_t n = getrandom(id.bytes + got, 12 - got, 0);
        if (n > 0) got += (size_t)n;
        else if (errno != EINTR) break; /* cannot happen on Linux >= 3.17 */
    }
    memset(id.bytes + 12, 0, 4);
    return id;
}

lm_id lm_id_for_return(lm_id task, uint32_t index) {
    lm_id id = task;
    uint32_t n = index + 1; /* 0 stays the task's own id */
    id.bytes[12] = (uint8_t)(n >> 24);
    id.bytes[13] = (uint8_t)(n >> 16);
    id.bytes[14] = (uint8_t)(n >> 8);
    id.bytes[15] = (uint8_t)n;
    return id;
}

lm_id lm_id_task_of(lm_id result) {
    memset(result.bytes + 12, 0, 4);
    return result;
}

char *lm_id_to_hex(lm_id id, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < LM_ID_BYTES; i++) {
        out[2 * i] = digits[id.bytes[i] >> 4];
        out[2 * i + 1] = digits[id.bytes[i] & 15];
    }
    out[LM_ID_HEX_LEN] = '\0';
    return out;
}

lm_id_text lm_id_str(lm_id id) {
    lm_id_text t;
    lm_id_to_hex(id, t.s);
    return t;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool lm_id_from_hex(const char *hex, lm_id *out) {
    if (hex == NULL) return false;
    lm_id id;
    for (int i = 0; i < LM_ID_BYTES; i++) {
        int hi = hex_value(hex[2 * i]);
        if (hi < 0) return false;
        int lo = hex_value(hex[2 * i + 1]);
        if (lo < 0) return false;
        id.bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[LM_ID_HEX_LEN] != '\0') return false;
    *out = id;
    return true;
}

bool lm_id_from_bytes(const void *data, size_t len, lm_id *out) {
    if (len != LM_ID_BYTES || data == NULL) return false;
    memcpy(out->bytes, data, LM_ID_BYTES);
    return true;
}

bool lm_id_equal(lm_id a, lm_id b) { return memcmp(a.bytes, b.bytes, LM_ID_BYTES) == 0; }

bool lm_id_is_zero(lm_id id) {
    static const lm_id zero;
    return lm_id_equal(id, zero);
}

uint64_t lm_id_hash(lm_id id) {
    /* FNV-1a: ids are random already, this only folds 16 bytes into 8. */
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < LM_ID_BYTES; i++) {
        h ^= id.bytes[i];
        h *= 1099511628211ULL;
    }
    return h;
}
