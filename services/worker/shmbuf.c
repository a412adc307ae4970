/* shmbuf.c - see shmbuf.h. */
#include "shmbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Sizes grow in these steps, so a run of slightly bigger tasks does not
 * remap each time. */
#define GROW_STEP (2u << 20)

void lm_shmbuf_init(lm_shmbuf *b, const char *name) {
    memset(b, 0, sizeof *b);
    b->name = name;
    b->fd = -1;
}

/* Faults in the pages of [from, to) in one call instead of one trap per page.
 * Advice only: without MADV_POPULATE_WRITE (Linux < 5.14) they fault on use. */
static void populate(lm_shmbuf *b, uint64_t to) {
    if (to <= b->touched) return;
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    uint64_t from = b->touched & ~(uint64_t)(page - 1);
    if (madvise(b->base + from, to - from, MADV_POPULATE_WRITE) != 0) return;
#endif
    b->touched = to;
}

lumen_status lm_shmbuf_reserve(lm_shmbuf *b, uint64_t need) {
    if (need == 0) need = 1;
    if (need <= b->size) {
        populate(b, need);
        return lm_ok();
    }
    if (need > (uint64_t)SIZE_MAX - GROW_STEP)
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "%s: %llu bytes are too many", b->name,
                         (unsigned long long)need);
    uint64_t size = (need + GROW_STEP - 1) / GROW_STEP * GROW_STEP;
    if (b->fd < 0) {
        /* Executors get this fd: sealed so that no one (user code included)
         * can shrink it under our mapping, which would kill us with SIGBUS. */
        int fd = memfd_create(b->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0) return lm_status_errno(LUMEN_INTERNAL, errno, "memfd_create");
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
            lumen_status st = lm_status_errno(LUMEN_INTERNAL, errno, "sealing a memfd");
            close(fd);
            return st;
        }
        b->fd = fd;
    }
    if (ftruncate(b->fd, (off_t)size) != 0)
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "growing %s to %llu bytes: %s", b->name,
                         (unsigned long long)size, strerror(errno));
    void *m = b->base == NULL ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0)
                              : mremap(b->base, b->size, size, MREMAP_MAYMOVE);
    if (m == MAP_FAILED) /* the old mapping (if any) is still whole */
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "mapping %llu bytes of %s: %s", (unsigned long long)size,
                         b->name, strerror(errno));
    b->base = m;
    b->size = size;
    populate(b, need);
    return lm_ok();
}

void lm_shmbuf_fini(lm_shmbuf *b) {
    if (b == NULL) return;
    if (b->base != NULL) munmap(b->base, b->size);
    if (b->fd >= 0) close(b->fd);
    lm_shmbuf_init(b, b->name);
}
