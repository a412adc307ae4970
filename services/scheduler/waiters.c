/*
 * waiters.c - WaitObjects calls the scheduler holds: parked on the objects
 * they wait for (or on ids not seen yet), and on a heap by deadline, and
 * answered with copies of the objects' states once enough settled or their
 * time ran out.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "sched_internal.h"

void waiter_unref(waiter *w) {
    if (atomic_fetch_sub(&w->refs, 1) > 1) return;
    free(w->ids);
    free(w);
}

static void waiter_release(void *arg) { waiter_unref(arg); }

static void fill_object_state(scheduler *s, Lumen__ObjectState *st, Lumen__Status *status, lm_id id) {
    lumen__object_state__init(st);
    lumen__status__init(status);
    st->status = status;
    sobj *o = lm_idmap_get(s->objs, id);
    st->object_id.len = LM_ID_BYTES;
    st->object_id.data = malloc(LM_ID_BYTES);
    memcpy(st->object_id.data, id.bytes, LM_ID_BYTES);
    if (o == NULL) { /* not ready: it may still come (a wait that parks unknown ids says so) */
        return;
    }
    st->size = o->size;
    if (o->state == OBJ_FAILED) {
        status->code = o->error->code;
        status->message = strdup(o->error->msg);
        st->ready = true;
    } else if (o->state == OBJ_READY) {
        st->ready = true;
        if (o->is_inline) {
            st->inline_value.len = o->size;
            st->inline_value.data = malloc(o->size ? o->size : 1);
            memcpy(st->inline_value.data, o->data, o->size);
        } else if (o->location != NULL) {
            st->n_locations = 1;
            st->locations = malloc(sizeof *st->locations);
            st->locations[0] = strdup(o->location);
            st->store_id.len = LM_ID_BYTES;
            st->store_id.data = malloc(LM_ID_BYTES);
            memcpy(st->store_id.data, o->store.bytes, LM_ID_BYTES);
        }
    }
}

/* An unknown id in a wait that does not park them: answered at once. */
static void fill_unknown(Lumen__ObjectState *st, Lumen__Status *status, lm_id id) {
    char h[LM_ID_HEX_LEN + 1];
    char msg[96];
    snprintf(msg, sizeof msg, "object %s is unknown to the scheduler", hex(id, h));
    status->code = LUMEN_NOT_FOUND;
    free(status->message);
    status->message = strdup(msg);
    st->ready = true;
}

/* A heap-built WaitObjects reply with copies, safe to send without `mu`. */
static Lumen__WaitObjectsReply *wait_reply_build(scheduler *s, const lm_id *ids, size_t n, bool park_unknown) {
    Lumen__WaitObjectsReply *r = malloc(sizeof *r);
    lumen__wait_objects_reply__init(r);
    r->n_objects = n;
    r->objects = malloc((n ? n : 1) * sizeof *r->objects);
    for (size_t i = 0; i < n; i++) {
        Lumen__ObjectState *st = malloc(sizeof *st);
        Lumen__Status *status = malloc(sizeof *status);
        fill_object_state(s, st, status, ids[i]);
        if (!park_unknown && lm_idmap_get(s->objs, ids[i]) == NULL) fill_unknown(st, status, ids[i]);
        if (status->message == NULL) status->message = strdup("");
        r->objects[i] = st;
    }
    return r;
}

/* Everything above was malloc'd piece by piece, the way protobuf-c's own
 * unpacker allocates, so its free function releases it. */
static void wait_reply_free(ProtobufCMessage *m) { protobuf_c_message_free_unpacked(m, NULL); }

void wait_heap_remove(scheduler *s, waiter *w);

void waiter_answer(scheduler *s, waiter *w, outbox *out) {
    w->done = true;
    unknown_detach(s, w);
    wait_heap_remove(s, w);
    Lumen__WaitObjectsReply *r = wait_reply_build(s, w->ids, w->n, w->park_unknown);
    /* The call's reference goes once the answer is out: until then its
     * on_cancel may still run and look at w. */
    sched_outbox_add(out, (answer){w->call, &r->base, wait_reply_free, lm_ok(), waiter_release, w});
}

void waiters_recount(scheduler *s, sobj *o, outbox *out) {
    ptr_vec ws = o->waiters;
    memset(&o->waiters, 0, sizeof o->waiters);
    for (size_t i = 0; i < ws.n; i++) {
        waiter *w = ws.items[i];
        if (!w->done && ++w->have >= w->need) waiter_answer(s, w, out);
        waiter_unref(w); /* this object's reference */
    }
    free(ws.items);
}

/* Waits with a time limit, by when it ends: a binary min-heap, each waiter
 * knowing its index so an answered one leaves at once. */
static bool heap_less(const waiter *a, const waiter *b) { return a->until_ms < b->until_ms; }

static void heap_swap(ptr_vec *h, size_t i, size_t j) {
    void *t = h->items[i];
    h->items[i] = h->items[j];
    h->items[j] = t;
    ((waiter *)h->items[i])->heap_idx = i;
    ((waiter *)h->items[j])->heap_idx = j;
}

static void heap_sift(ptr_vec *h, size_t i) {
    while (i > 0 && heap_less(h->items[i], h->items[(i - 1) / 2])) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && heap_less(h->items[l], h->items[m])) m = l;
        if (r < h->n && heap_less(h->items[r], h->items[m])) m = r;
        if (m == i) return;
        heap_swap(h, i, m);
        i = m;
    }
}

void wait_heap_add(scheduler *s, waiter *w) {
    w->heap_idx = s->wait_heap.n;
    sched_ptr_push(&s->wait_heap, w);
    atomic_fetch_add(&w->refs, 1);
    heap_sift(&s->wait_heap, w->heap_idx);
    if (w->heap_idx == 0) pthread_cond_signal(&s->monitor_cond); /* the monitor wakes earlier now */
}

void wait_heap_remove(scheduler *s, waiter *w) {
    if (w->heap_idx == SIZE_MAX) return;
    ptr_vec *h = &s->wait_heap;
    size_t i = w->heap_idx;
    heap_swap(h, i, h->n - 1);
    h->n--;
    w->heap_idx = SIZE_MAX;
    if (i < h->n) heap_sift(h, i);
    atomic_fetch_sub(&w->refs, 1); /* never the last: the call holds one */
}

/* Answers the waits whose time ran out, with the states as they are; the
 * monotonic ms of the next one to run out (0: none). */
uint64_t waits_expire(scheduler *s, outbox *out) {
    uint64_t now = sched_now_ms(s);
    while (s->wait_heap.n > 0) {
        waiter *w = s->wait_heap.items[0];
        if (w->until_ms > now) return w->until_ms;
        waiter_answer(s, w, out);
    }
    return 0;
}

ptr_vec *unknown_list(scheduler *s, lm_id id) {
    ptr_vec *list = lm_idmap_get(s->unknown_waiters, id);
    if (list == NULL) {
        list = calloc(1, sizeof *list);
        lm_idmap_put(s->unknown_waiters, id, list);
        sched_resolver_watch(s->resolver, id); /* maybe a put of another client */
    }
    return list;
}


/* Takes a finished waiter off the lists of ids it waited for unseen. */
void unknown_detach(scheduler *s, waiter *w) {
    for (size_t i = 0; i < w->n && lm_idmap_count(s->unknown_waiters) > 0; i++) {
        ptr_vec *list = lm_idmap_get(s->unknown_waiters, w->ids[i]);
        for (size_t k = 0; list != NULL && k < list->n; k++) {
            if (list->items[k] != w) continue;
            list->items[k] = list->items[--list->n];
            atomic_fetch_sub(&w->refs, 1); /* never the last: the caller holds one */
            break;
        }
        if (list != NULL && list->n == 0) {
            lm_idmap_remove(s->unknown_waiters, w->ids[i]);
            sched_resolver_unwatch(s->resolver, w->ids[i]);
            free(list->items);
            free(list);
        }
    }
}

waiter *waiter_new(scheduler *s, lm_rpc_call *call, size_t n) {
    waiter *w = calloc(1, sizeof *w);
    lm_id *ids = calloc(n ? n : 1, sizeof *ids);
    if (w == NULL || ids == NULL) {
        free(w);
        free(ids);
        return NULL;
    }
    w->s = s;
    w->call = call;
    w->ids = ids;
    w->n = n;
    w->heap_idx = SIZE_MAX;
    atomic_init(&w->refs, 1);
    return w;
}

bool waits_settled(scheduler *s, waiter *w) {
    for (size_t i = 0; i < w->n; i++) {
        sobj *o = lm_idmap_get(s->objs, w->ids[i]);
        if (o != NULL ? o->state != OBJ_PENDING : !w->park_unknown) w->have++;
    }
    return w->have >= w->need;
}

void waits_park(scheduler *s, waiter *w) {
    for (size_t i = 0; i < w->n; i++) {
        sobj *o = lm_idmap_get(s->objs, w->ids[i]);
        ptr_vec *list = o != NULL ? (o->state == OBJ_PENDING ? &o->waiters : NULL) : unknown_list(s, w->ids[i]);
        if (list != NULL) {
            sched_ptr_push(list, w);
            atomic_fetch_add(&w->refs, 1);
        }
    }
    wait_heap_add(s, w);
}

bool waits_cancelled(scheduler *s, waiter *w) {
    if (w->done) return false;
    w->done = true;
    unknown_detach(s, w);
    wait_heap_remove(s, w);
    waiter_unref(w); /* the call's reference; objects drop theirs later */
    return true;
}
