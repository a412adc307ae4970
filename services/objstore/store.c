/* store.c - see store.h. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "idmap.h"
#include "log.h"

#define WAIT_BUCKETS 64
/* Jobs released lately, remembered so a task of theirs still running
 * cannot store a result no one would ever delete. */
#define ENDED_JOBS 4096
#define POOL_MIN (4u << 20) /* smaller buffers are malloc's to recycle */

struct lm_store_obj {
    lm_id id, job;
    uint64_t size;
    uint64_t cap;   /* bytes of memory data holds (at least size) */
    uint8_t *data;  /* in memory, or NULL when only in its file */
    bool has_file;  /* <dir>/<hex> holds the bytes */
    bool spilling;  /* a spill of it is being written (holds a pin) */
    bool listed;    /* in the table; false: deleted, freed when unpinned */
    bool in_lru;
    int pins;
    lm_store_obj *lru_prev, *lru_next; /* objects in memory, most recent first */
};

struct lm_store_put {
    lm_id id, job;
    uint64_t size, cap;
    uint8_t *data;
    char *part_path; /* non-NULL: data maps this file (the put did not fit in memory) */
};

struct lm_store_reader {
    lm_store *s;
    lm_store_obj *o;
    int fd; /* the spill file when o was not in memory at open */
    lumen_status open_st;
    uint8_t *buf;
    size_t buf_len;
};

/* A freed buffer kept for reuse; the header lives in the buffer itself. */
typedef struct pooled pooled;
struct pooled {
    pooled *next;
    uint64_t cap;
};

struct lm_store {
    pthread_mutex_t mu;
    uint64_t limit;
    char *dir;
    bool private_dir;
    lm_idmap *objects; /* id -> lm_store_obj, listed ones only */
    lm_store_obj *lru_head, *lru_tail;
    uint64_t mem_used, disk_bytes, peak, spilled;
    pooled *pool; /* freed buffers kept for reuse, newest first */
    uint64_t pool_bytes;
    uint64_t seq; /* names temporary files */
    lm_store_waiter *waiters[WAIT_BUCKETS];
    bool parking_closed;
    lm_idmap *ended;            /* job -> itself: the last ENDED_JOBS released */
    lm_id ended_ring[ENDED_JOBS];
    size_t ended_next;
};

/* <dir>/<hex><suffix>; the caller frees it. */
static char *file_path(const lm_store *s, lm_id id, const char *suffix, uint64_t seq) {
    char *p = NULL;
    if (suffix == NULL) {
        if (asprintf(&p, "%s/%s", s->dir, lm_id_str(id).s) < 0) p = NULL;
    } else if (asprintf(&p, "%s/%s%s%llu", s->dir, lm_id_str(id).s, suffix, (unsigned long long)seq) < 0) {
        p = NULL;
    }
    return p;
}

/* ------------------------------------------------------------- the table */

static lm_store_obj *find(const lm_store *s, lm_id id) { return lm_idmap_get(s->objects, id); }

static void table_insert(lm_store *s, lm_store_obj *o) {
    lm_idmap_put(s->objects, o->id, o);
    o->listed = true;
}

static void table_remove(lm_store *s, lm_store_obj *o) {
    lm_idmap_remove(s->objects, o->id);
    o->listed = false;
}

/* Collects the listed objects (of job, unless NULL) into a fresh array. */
typedef struct collect {
    const lm_id *job;
    lm_store_obj **objs;
    size_t n;
} collect;

static void collect_one(void *arg, lm_id key, void *value) {
    (void)key;
    collect *c = arg;
    lm_store_obj *o = value;
    if (c->job == NULL || lm_id_equal(o->job, *c->job)) c->objs[c->n++] = o;
}

static lm_store_obj **collect_objs(lm_store *s, const lm_id *job, size_t *n) {
    collect c = {job, calloc(lm_idmap_count(s->objects) + 1, sizeof *c.objs), 0};
    if (c.objs != NULL) lm_idmap_each(s->objects, collect_one, &c);
    *n = c.n;
    return c.objs;
}

/* --------------------------------------------------------------- the LRU */

static void lru_remove(lm_store *s, lm_store_obj *o) {
    if (!o->in_lru) return;
    if (o->lru_prev) o->lru_prev->lru_next = o->lru_next;
    else s->lru_head = o->lru_next;
    if (o->lru_next) o->lru_next->lru_prev = o->lru_prev;
    else s->lru_tail = o->lru_prev;
    o->lru_prev = o->lru_next = NULL;
    o->in_lru = false;
}

static void lru_push(lm_store *s, lm_store_obj *o) {
    o->lru_prev = NULL;
    o->lru_next = s->lru_head;
    if (s->lru_head) s->lru_head->lru_prev = o;
    else s->lru_tail = o;
    s->lru_head = o;
    o->in_lru = true;
}

/*
 * Memory. Fresh pages are costly here (on a VM a first touch costs more
 * than the copy that fills it), so big buffers of objects that go are kept
 * for later puts instead of being returned to the kernel. mem_used counts
 * buffers in use, pool_bytes those kept; together they stay within the limit.
 */
static void mem_add(lm_store *s, uint64_t n) {
    s->mem_used += n;
    if (s->mem_used > s->peak) s->peak = s->mem_used;
}

/* A kept buffer for size bytes, wasting at most an eighth of it; NULL when
 * there is none. Locked. */
static void *pool_take(lm_store *s, uint64_t size, uint64_t *cap) {
    if (size < POOL_MIN) return NULL;
    pooled **best = NULL;
    for (pooled **pp = &s->pool; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->cap >= size && (*pp)->cap - size <= size / 8 && (best == NULL || (*pp)->cap < (*best)->cap))
            best = pp;
    if (best == NULL) return NULL;
    pooled *b = *best;
    *best = b->next;
    *cap = b->cap;
    s->pool_bytes -= b->cap;
    mem_add(s, b->cap);
    return b;
}

/* Gives back a buffer that held cap bytes of objects. Locked. */
static void mem_release(lm_store *s, void *data, uint64_t cap) {
    s->mem_used -= cap;
    if (cap < POOL_MIN) {
        free(data);
        return;
    }
    pooled *b = data;
    b->cap = cap;
    b->next = s->pool;
    s->pool = b;
    s->pool_bytes += cap;
}

/* Frees the oldest kept buffer; false when none is left. Locked. */
static bool pool_shrink(lm_store *s) {
    pooled **pp = &s->pool;
    if (*pp == NULL) return false;
    while ((*pp)->next != NULL) pp = &(*pp)->next;
    pooled *b = *pp;
    *pp = NULL;
    s->pool_bytes -= b->cap;
    free(b);
    return true;
}

/* Frees an object's memory (its file holds the bytes, or it is going). */
static void drop_memory(lm_store *s, lm_store_obj *o) {
    if (o->data == NULL) return;
    mem_release(s, o->data, o->cap);
    o->data = NULL;
    lru_remove(s, o);
    if (o->listed) s->disk_bytes += o->size;
}

/* Frees an unlisted object (disk bytes were unaccounted by unlist). */
static void destroy(lm_store *s, lm_store_obj *o) {
    if (o->data != NULL) mem_release(s, o->data, o->cap);
    lru_remove(s, o);
    free(o);
}

static void unpin(lm_store *s, lm_store_obj *o) {
    if (--o->pins == 0 && !o->listed) destroy(s, o);
}

/* Unlists o; its file goes now (readers of it keep their descriptors), its
 * memory when the last reader does. */
static void unlist(lm_store *s, lm_store_obj *o) {
    table_remove(s, o);
    if (o->has_file) {
        char *path = file_path(s, o->id, NULL, 0);
        if (path != NULL && unlink(path) != 0 && errno != ENOENT)
            lm_warn("cannot remove spill file %s: %s", path, strerror(errno));
        free(path);
        o->has_file = false;
    }
    if (o->data == NULL) s->disk_bytes -= o->size;
    lru_remove(s, o);
    if (o->pins == 0) destroy(s, o);
}

/* ------------------------------------------------------------- lifecycle */

static lumen_status make_dir(const char *path) {
    char *p = strdup(path);
    if (p == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    for (char *c = p + 1;; c++) { /* mkdir -p */
        if (*c != '/' && *c != '\0') continue;
        char keep = *c;
        *c = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            lumen_status st = lm_status(LUMEN_IO, "cannot create spill dir %s: %s", p, strerror(errno));
            free(p);
            return st;
        }
        *c = keep;
        if (keep == '\0') break;
    }
    free(p);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(path, W_OK) != 0)
        return lm_status(LUMEN_IO, "spill dir %s is not a writable directory", path);
    return lm_ok();
}

lumen_status lm_store_new(const lm_store_opts *opts, lm_store **out) {
    *out = NULL;
    lm_store *s = calloc(1, sizeof *s);
    if (s == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "store: out of memory");
    s->limit = opts->memory_limit;
    s->objects = lm_idmap_new();
    s->ended = lm_idmap_new();
    pthread_mutex_init(&s->mu, NULL);
    lumen_status st = lm_ok();
    if (opts->spill_dir != NULL && *opts->spill_dir != '\0') {
        s->dir = strdup(opts->spill_dir);
        st = make_dir(s->dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        if (asprintf(&s->dir, "%s/lumen-objstore-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0) s->dir = NULL;
        if (s->dir == NULL || mkdtemp(s->dir) == NULL)
            st = lm_status(LUMEN_IO, "cannot create a spill dir under %s: %s", tmp && *tmp ? tmp : "/tmp",
                           strerror(errno));
        else s->private_dir = true;
    }
    if (!LM_IS_OK(st)) {
        lm_store_free(s);
        return st;
    }
    *out = s;
    return lm_ok();
}

void lm_store_free(lm_store *s) {
    if (s == NULL) return;
    size_t n = 0;
    lm_store_obj **all = s->objects ? collect_objs(s, NULL, &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        all[i]->pins = 0; /* no reader is left */
        unlist(s, all[i]);
    }
    free(all);
    while (pool_shrink(s)) {
    }
    if (s->private_dir && rmdir(s->dir) != 0) lm_warn("cannot remove %s: %s", s->dir, strerror(errno));
    lm_idmap_free(s->objects);
    lm_idmap_free(s->ended);
    free(s->dir);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *lm_store_spill_dir(const lm_store *s) { return s->dir; }

void lm_store_stats_get(lm_store *s, lm_store_stats *out) {
    pthread_mutex_lock(&s->mu);
    out->objects = lm_idmap_count(s->objects);
    out->bytes_in_memory = s->mem_used;
    out->bytes_kept = s->pool_bytes;
    out->bytes_on_disk = s->disk_bytes;
    out->peak_in_memory = s->peak;
    out->spilled = s->spilled;
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------- spilling */

static lumen_status write_file(const char *path, const uint8_t *data, uint64_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return lm_status(LUMEN_IO, "cannot create %s: %s", path, strerror(errno));
    uint64_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done > (1u << 30) ? (1u << 30) : (size_t)(size - done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            lumen_status st = lm_status(LUMEN_IO, "cannot write %s: %s", path, n < 0 ? strerror(errno) : "disk full");
            close(fd);
            unlink(path);
            return st;
        }
        done += (uint64_t)n;
    }
    if (close(fd) != 0) {
        lumen_status st = lm_status(LUMEN_IO, "cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return st;
    }
    return lm_ok();
}

/* The least recently used object in memory that nobody holds. */
static lm_store_obj *pick_victim(lm_store *s) {
    for (lm_store_obj *o = s->lru_tail; o != NULL; o = o->lru_prev)
        if (o->pins == 0 && !o->spilling && o->size > 0) return o;
    return NULL;
}

/* Spills o (pinned by the caller) to its file; called and returns locked,
 * writes unlocked. */
static lumen_status spill(lm_store *s, lm_store_obj *o) {
    o->spilling = true;
    uint64_t seq = ++s->seq;
    pthread_mutex_unlock(&s->mu);
    char *tmp = file_path(s, o->id, ".spill-", seq);
    char *path = file_path(s, o->id, NULL, 0);
    lumen_status st = tmp && path ? write_file(tmp, o->data, o->size)
                                  : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    pthread_mutex_lock(&s->mu);
    o->spilling = false;
    if (LM_IS_OK(st) && o->listed && rename(tmp, path) != 0)
        st = lm_status(LUMEN_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (LM_IS_OK(st) && o->listed) {
        o->has_file = true;
        s->spilled++;
        lm_debug("spilled object %s (%llu bytes)", lm_id_str(o->id).s, (unsigned long long)o->size);
    } else if (tmp != NULL) {
        unlink(tmp); /* failed, or deleted meanwhile */
    }
    free(tmp);
    free(path);
    return st;
}

/* Memory for size bytes: a kept buffer (*data), or room for a fresh one
 * (*data NULL) made by freeing kept buffers and spilling unheld objects;
 * *fits false when it cannot fit (the caller writes to a file instead).
 * *cap: the bytes accounted. Locked. */
static lumen_status reserve(lm_store *s, uint64_t size, void **data, uint64_t *cap, bool *fits) {
    *cap = 0;
    *fits = true;
    *data = pool_take(s, size, cap);
    if (*data != NULL) return lm_ok();
    *fits = false;
    while (s->mem_used + s->pool_bytes + size > s->limit) {
        if (pool_shrink(s)) continue;
        lm_store_obj *o = pick_victim(s);
        if (o == NULL) return lm_ok();
        if (!o->has_file) {
            o->pins++;
            lumen_status st = spill(s, o);
            bool only_us = o->pins == 1;
            if (LM_IS_OK(st) && o->listed && only_us) drop_memory(s, o);
            unpin(s, o);
            if (!LM_IS_OK(st)) return lm_status_wrap(st, "spilling to make room for %llu bytes",
                                                     (unsigned long long)size);
        } else {
            drop_memory(s, o); /* spilled earlier while a reader held it */
        }
    }
    mem_add(s, size);
    *cap = size;
    *fits = true;
    return lm_ok();
}

/* ------------------------------------------------------------------ put */

/* Backs a put that cannot fit in memory by a mapping of its future file. */
static lumen_status map_part_file(lm_store *s, lm_store_put *p, uint64_t seq) {
    p->part_path = file_path(s, p->id, ".part-", seq);
    if (p->part_path == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    int fd = open(p->part_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return lm_status(LUMEN_IO, "cannot create %s: %s", p->part_path, strerror(errno));
    lumen_status st = lm_ok();
    if (ftruncate(fd, (off_t)p->size) != 0) {
        st = lm_status(LUMEN_IO, "cannot size %s to %llu bytes: %s", p->part_path, (unsigned long long)p->size,
                       strerror(errno));
    } else {
        void *m = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) st = lm_status(LUMEN_IO, "cannot map %s: %s", p->part_path, strerror(errno));
        else p->data = m;
    }
    close(fd);
    if (!LM_IS_OK(st)) unlink(p->part_path);
    return st;
}

/* Frees p; its memory buffer (if any) was given back by the caller. */
static void put_free(lm_store_put *p) {
    if (p->part_path != NULL && p->data != NULL) munmap(p->data, p->size);
    free(p->part_path);
    free(p);
}

/* Whether objects of job may still be stored (mu held). */
static lumen_status job_open(const lm_store *s, lm_id job) {
    if (lm_id_is_zero(job) || lm_idmap_get(s->ended, job) == NULL) return lm_ok();
    return lm_status(LUMEN_FAILED_PRECONDITION, "its job %s has ended: its objects were released", lm_id_str(job).s);
}

lumen_status lm_store_put_begin(lm_store *s, lm_id id, lm_id job, uint64_t size, lm_store_put **out) {
    *out = NULL;
    lm_store_put *p = calloc(1, sizeof *p);
    if (p == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    p->id = id;
    p->job = job;
    p->size = size;
    void *kept = NULL;
    bool fits = false;
    pthread_mutex_lock(&s->mu);
    lumen_status st = job_open(s, job);
    if (LM_IS_OK(st)) st = reserve(s, size, &kept, &p->cap, &fits);
    uint64_t seq = ++s->seq;
    pthread_mutex_unlock(&s->mu);
    if (LM_IS_OK(st) && kept != NULL) {
        p->data = kept;
    } else if (LM_IS_OK(st) && fits) {
        p->data = lm_chunk_buffer_alloc(size);
        if (p->data == NULL) {
            st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "cannot allocate %llu bytes", (unsigned long long)size);
            pthread_mutex_lock(&s->mu);
            s->mem_used -= p->cap;
            pthread_mutex_unlock(&s->mu);
        }
    } else if (LM_IS_OK(st)) {
        lm_debug("object %s (%llu bytes) does not fit in memory: writing it to its file", lm_id_str(id).s,
                 (unsigned long long)size);
        st = map_part_file(s, p, seq);
    }
    if (!LM_IS_OK(st)) {
        put_free(p);
        return lm_status_wrap(st, "object %s", lm_id_str(id).s);
    }
    *out = p;
    return lm_ok();
}

void *lm_store_put_buffer(lm_store_put *p) { return p->data; }

void lm_store_put_abort(lm_store *s, lm_store_put *p) {
    if (p == NULL) return;
    if (p->part_path != NULL) {
        unlink(p->part_path);
    } else {
        pthread_mutex_lock(&s->mu);
        mem_release(s, p->data, p->cap);
        pthread_mutex_unlock(&s->mu);
        p->data = NULL;
    }
    put_free(p);
}

static lm_store_reader *reader_new(lm_store *s, lm_store_obj *o);

/* Moves the waiters of chain that wait for object *id (if id) or read for
 * *job (if job) to the front of *moved. Locked. */
static void move_waiters(lm_store_waiter **chain, const lm_id *id, const lm_id *job, lm_store_waiter **moved) {
    for (lm_store_waiter **pp = chain; *pp != NULL;) {
        lm_store_waiter *w = *pp;
        if ((id != NULL && !lm_id_equal(w->id, *id)) || (job != NULL && !lm_id_equal(w->job, *job))) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->next = *moved;
        *moved = w;
    }
}

/* Moves the waiters parked on o's id to *woken, each with a reader. Locked. */
static void wake(lm_store *s, lm_store_obj *o, lm_store_waiter **woken) {
    lm_store_waiter *first = *woken;
    move_waiters(&s->waiters[lm_id_hash(o->id) % WAIT_BUCKETS], &o->id, NULL, woken);
    for (lm_store_waiter *w = *woken; w != first; w = w->next) w->reader = reader_new(s, o);
}

lumen_status lm_store_put_commit(lm_store *s, lm_store_put *p, bool *already_present, lm_store_waiter **woken) {
    *already_present = false;
    lm_store_obj *o = calloc(1, sizeof *o);
    if (o == NULL) {
        lm_store_put_abort(s, p);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    pthread_mutex_lock(&s->mu);
    lumen_status open = job_open(s, p->job);
    if (!LM_IS_OK(open)) { /* released while it was written */
        pthread_mutex_unlock(&s->mu);
        open = lm_status_wrap(open, "object %s", lm_id_str(p->id).s);
        free(o);
        lm_store_put_abort(s, p);
        return open;
    }
    if (find(s, p->id) != NULL) { /* the first complete write won */
        *already_present = true;
        pthread_mutex_unlock(&s->mu);
        free(o);
        lm_store_put_abort(s, p);
        return lm_ok();
    }
    o->id = p->id;
    o->job = p->job;
    o->size = p->size;
    o->cap = p->cap;
    if (p->part_path != NULL) {
        char *path = file_path(s, p->id, NULL, 0);
        munmap(p->data, p->size); /* the page cache writes it back */
        p->data = NULL;
        if (path == NULL || rename(p->part_path, path) != 0) {
            lumen_status st = lm_status(LUMEN_IO, "object %s: cannot rename %s: %s", lm_id_str(p->id).s,
                                        p->part_path, strerror(errno));
            pthread_mutex_unlock(&s->mu);
            free(path);
            free(o);
            lm_store_put_abort(s, p);
            return st;
        }
        free(path);
        o->has_file = true;
        s->disk_bytes += o->size;
    } else {
        o->data = p->data; /* its reservation becomes the object's memory */
        p->data = NULL;
        lru_push(s, o);
    }
    table_insert(s, o);
    if (woken != NULL) wake(s, o, woken);
    pthread_mutex_unlock(&s->mu);
    put_free(p);
    return lm_ok();
}

/* ------------------------------------------------------------------ get */

/* A reader pins o; a reader of an object in a file opens it now, under the
 * lock, so a delete that unlinks the file cannot come between. Locked. */
static lm_store_reader *reader_new(lm_store *s, lm_store_obj *o) {
    lm_store_reader *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->s = s;
    r->o = o;
    r->fd = -1;
    r->open_st = lm_ok();
    o->pins++;
    if (o->data != NULL) {
        lru_remove(s, o);
        lru_push(s, o); /* recently used */
    } else if (o->size > 0) {
        char *path = file_path(s, o->id, NULL, 0);
        r->fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (r->fd < 0)
            r->open_st = lm_status(LUMEN_IO, "object %s: cannot open spill file %s: %s", lm_id_str(o->id).s,
                                   path ? path : "?", strerror(errno));
        free(path);
    }
    return r;
}

static lumen_status open_locked(lm_store *s, lm_id id, lm_store_reader **out) {
    lm_store_obj *o = find(s, id);
    if (o == NULL) return lm_status(LUMEN_NOT_FOUND, "object %s not in store", lm_id_str(id).s);
    *out = reader_new(s, o);
    return *out ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
}

lumen_status lm_store_open(lm_store *s, lm_id id, lm_store_reader **out) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    lumen_status st = open_locked(s, id, out);
    pthread_mutex_unlock(&s->mu);
    return st;
}

lm_store_park lm_store_open_or_park(lm_store *s, lm_id id, lm_store_waiter *w, lm_store_reader **out) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    lumen_status st = open_locked(s, id, out);
    lm_store_park res = LM_STORE_FOUND;
    if (st.code == LUMEN_NOT_FOUND) {
        res = (w->cancelled || s->parking_closed) ? LM_STORE_REFUSED
              : !LM_IS_OK(job_open(s, w->job))    ? LM_STORE_JOB_ENDED
                                                  : LM_STORE_PARKED;
        if (res == LM_STORE_PARKED) {
            w->id = id;
            w->reader = NULL;
            lm_store_waiter **head = &s->waiters[lm_id_hash(id) % WAIT_BUCKETS];
            w->next = *head;
            *head = w;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return res;
}

bool lm_store_unpark(lm_store *s, lm_store_waiter *w) {
    bool found = false;
    pthread_mutex_lock(&s->mu);
    w->cancelled = true;
    for (lm_store_waiter **pp = &s->waiters[lm_id_hash(w->id) % WAIT_BUCKETS]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            w->next = NULL;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

lm_store_waiter *lm_store_unpark_all(lm_store *s) {
    lm_store_waiter *all = NULL;
    pthread_mutex_lock(&s->mu);
    s->parking_closed = true;
    for (size_t i = 0; i < WAIT_BUCKETS; i++) {
        while (s->waiters[i] != NULL) {
            lm_store_waiter *w = s->waiters[i];
            s->waiters[i] = w->next;
            w->cancelled = true;
            w->next = all;
            all = w;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return all;
}

uint64_t lm_store_reader_size(const lm_store_reader *r) { return r->o->size; }

lm_id lm_store_reader_id(const lm_store_reader *r) { return r->o->id; }

lumen_status lm_store_reader_read(lm_store_reader *r, uint64_t off, size_t n, const void **bytes) {
    *bytes = NULL;
    if (off > r->o->size || n > r->o->size - off)
        return lm_status(LUMEN_OUT_OF_RANGE, "object %s: %zu bytes at %llu are past its %llu bytes",
                         lm_id_str(r->o->id).s, n, (unsigned long long)off, (unsigned long long)r->o->size);
    if (r->o->data != NULL || n == 0) { /* pinned: the memory stays */
        *bytes = r->o->data ? r->o->data + off : (const uint8_t *)"";
        return lm_ok();
    }
    if (r->fd < 0) return r->open_st;
    if (r->buf_len < n) {
        free(r->buf);
        r->buf = malloc(n);
        r->buf_len = r->buf ? n : 0;
        if (r->buf == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(r->fd, r->buf + done, n - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return lm_status(LUMEN_IO, "object %s: cannot read its spill file: %s", lm_id_str(r->o->id).s,
                             k < 0 ? strerror(errno) : "file too short");
        done += (size_t)k;
    }
    *bytes = r->buf;
    return lm_ok();
}

void lm_store_reader_free(lm_store_reader *r) {
    if (r == NULL) return;
    if (r->fd >= 0) close(r->fd);
    free(r->buf);
    pthread_mutex_lock(&r->s->mu);
    unpin(r->s, r->o);
    pthread_mutex_unlock(&r->s->mu);
    free(r);
}

/* ------------------------------------------------------------- deleting */

bool lm_store_delete(lm_store *s, lm_id id) {
    pthread_mutex_lock(&s->mu);
    lm_store_obj *o = find(s, id);
    if (o != NULL) unlist(s, o);
    pthread_mutex_unlock(&s->mu);
    return o != NULL;
}

/* Moves the waiters parked for job to *woken, job_ended set. Locked. */
static void unpark_job(lm_store *s, lm_id job, lm_store_waiter **woken) {
    for (size_t i = 0; i < WAIT_BUCKETS; i++) move_waiters(&s->waiters[i], NULL, &job, woken);
    for (lm_store_waiter *w = *woken; w != NULL; w = w->next) w->job_ended = true;
}

size_t lm_store_release_job(lm_store *s, lm_id job, lm_id **ids, lm_store_waiter **woken) {
    size_t n = 0;
    *woken = NULL;
    pthread_mutex_lock(&s->mu);
    unpark_job(s, job, woken);
    if (lm_idmap_get(s->ended, job) == NULL) {
        lm_id *slot = &s->ended_ring[s->ended_next++ % ENDED_JOBS];
        if (!lm_id_is_zero(*slot)) lm_idmap_remove(s->ended, *slot);
        *slot = job;
        lm_idmap_put(s->ended, job, slot);
    }
    lm_store_obj **objs = collect_objs(s, &job, &n);
    *ids = calloc(n + 1, sizeof **ids);
    if (objs == NULL || *ids == NULL) n = 0; /* out of memory: nothing released, a retry may do */
    for (size_t i = 0; i < n; i++) {
        (*ids)[i] = objs[i]->id;
        unlist(s, objs[i]);
    }
    pthread_mutex_unlock(&s->mu);
    free(objs);
    return n;
}
