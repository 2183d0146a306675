/* Socket monitor events: how the transport learns that a peer connected, finished its handshake
 * (or failed it: a CURVE key refused, a mechanism mismatch), disconnected, or stopped answering
 * ZMTP heartbeats (libzmq then closes the connection, which arrives here as a disconnect).
 *
 * A disconnect after the HELLO exchange, a failed handshake, or a second connected peer on a bound
 * endpoint breaks the transport; data already queued is still delivered first, so a peer that
 * sends DONE and exits is not mistaken for a dead one (see sl_transport_check and recv.c). */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int sl__monitor_attach(sl_transport *t, struct sl__link *l)
{
    char mon[96];
    static atomic_int counter;
    snprintf(mon, sizeof mon, "inproc://sluice-monitor-%p-%d", (void *)l,
             atomic_fetch_add(&counter, 1));
    if (zmq_socket_monitor(l->sock, mon, ZMQ_EVENT_ALL) < 0)
        return sl_fail(SL_EIO, "cannot monitor a socket: %s", zmq_strerror(errno));
    l->mon = zmq_socket(t->ctx, ZMQ_PAIR);
    if (!l->mon || zmq_connect(l->mon, mon) < 0)
        return sl_fail(SL_EIO, "cannot connect a socket monitor: %s", zmq_strerror(errno));
    return SL_OK;
}

static const char *protocol_error_text(int value)
{
    switch (value) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "security mechanism mismatch (one side uses CURVE and the other does not)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "CURVE cryptographic error (wrong server key?)";
    case ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED:
    case ZMQ_PROTOCOL_ERROR_ZAP_MALFORMED_REPLY:
    case ZMQ_PROTOCOL_ERROR_ZAP_BAD_REQUEST_ID:
    case ZMQ_PROTOCOL_ERROR_ZAP_BAD_VERSION:
    case ZMQ_PROTOCOL_ERROR_ZAP_INVALID_STATUS_CODE:
    case ZMQ_PROTOCOL_ERROR_ZAP_INVALID_METADATA:
        return "authentication handler error";
    default:
        return "ZMTP protocol error";
    }
}

int sl__drain_events(sl_transport *t, struct sl__link *l)
{
    for (;;) {
        zmq_msg_t m1, m2;
        zmq_msg_init(&m1);
        if (zmq_msg_recv(&m1, l->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m1);
            return SL_OK;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&m1) >= 6) {
            memcpy(&event, zmq_msg_data(&m1), 2);
            memcpy(&value, (char *)zmq_msg_data(&m1) + 2, 4);
        }
        zmq_msg_init(&m2);
        if (zmq_msg_more(&m1)) zmq_msg_recv(&m2, l->mon, 0);
        zmq_msg_close(&m1);
        zmq_msg_close(&m2);
        sl_log(SL_LOG_DEBUG, "rank %d, %s link: event 0x%x value %u", t->o.rank,
               sl__dir_name(l->dir), event, value);
        switch (event) {
        case ZMQ_EVENT_ACCEPTED:
            if (l->n_open < (int)SL_ARRAY_LEN(l->open_fds)) l->open_fds[l->n_open++] = (int)value;
            break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            l->live++;
            if (l->bound && l->live > 1)
                return sl__broke(t, l, SL_EPEER,
                                 "a second peer connected to our bound endpoint while rank %d is "
                                 "linked there (a process of another run, or a misconfigured "
                                 "endpoint?); refusing to go on",
                                 l->peer);
            break;
        case ZMQ_EVENT_DISCONNECTED:
            if (l->bound) {
                /* A connection that closes before its handshake (a port probe) is not our
                 * peer leaving: count the connections still open. */
                for (int i = 0; i < l->n_open; i++)
                    if (l->open_fds[i] == (int)value) {
                        l->open_fds[i] = l->open_fds[--l->n_open];
                        break;
                    }
                l->live = SL_MIN(l->live, l->n_open);
                if (l->hello_done && l->live == 0) l->lost = 1;
            } else {
                l->live = 0;
                if (l->hello_done) l->lost = 1;
            }
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            return sl__broke(t, l, SL_EPROTOCOL,
                             "handshake failed: authentication refused (ZAP status %u): the CURVE "
                             "key of %s is not admitted for this run",
                             value, l->bound ? "the connecting peer" : "this rank");
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return sl__broke(t, l, SL_EPROTOCOL, "handshake failed: %s (code 0x%x)",
                             protocol_error_text((int)value), value);
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            /* A connection closed or timed out mid-handshake (a peer still starting, a port
             * probe): libzmq retries. Refusals arrive as AUTH or PROTOCOL events instead. */
            sl_log(SL_LOG_DEBUG, "rank %d: a handshake on %s did not finish (%s); retrying",
                   t->o.rank, l->endpoint, zmq_strerror((int)value));
            l->failed_handshakes++;
            break;
        default:
            break;
        }
    }
}

int sl__drain_all_events(sl_transport *t)
{
    t->last_drain = sl_now();
    for (int i = 0; i < t->nlinks; i++) {
        int s = sl__drain_events(t, &t->links[i]);
        if (s) return s;
    }
    return SL_OK;
}
/* Reading the monitors costs system calls, so the fast paths read them at most every 20 ms;
 * a blocked send or recv reads them whenever it wakes. */
int sl__maybe_drain(sl_transport *t)
{
    return sl_now() - t->last_drain > 0.02 ? sl__drain_all_events(t) : SL_OK;
}

int sl_transport_check(sl_transport *t)
{
    if (!t) return sl_fail(SL_EINVAL, "no transport");
    if (t->broken) return sl__repeat_broken(t);
    SL_TRY(sl__drain_all_events(t));
    for (int i = 0; i < t->nlinks; i++) {
        struct sl__link *l = &t->links[i];
        if (!l->lost) continue;
        /* A peer that sent everything and left is fine until someone waits on it. */
        zmq_pollitem_t it = {l->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 0) <= 0)
            return sl__broke(t, l, SL_EPEER, "rank %d disconnected (process ended or network lost)",
                             l->peer);
    }
    return SL_OK;
}
