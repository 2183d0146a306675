/* The CURVE key check (a ZAP handler) that admits only a run's public keys, for any libzmq
 * context: the links' (curve.c) and runtime/launch's rendezvous and report sockets. Every refusal
 * is logged naming the peer's address and key; the refused peer sees its handshake fail. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "transport/transport_impl.h"

struct sl_zap {
    void *sock;
    pthread_t thread;
    int running;
    atomic_int stop;
    uint8_t (*allowed)[32];
    size_t count;
    char where[320];
};

static void zap_reply(void *s, const char *ver, zmq_msg_t *reqid, const char *code,
                      const char *text)
{
    zmq_send(s, ver, strlen(ver), ZMQ_SNDMORE);
    zmq_msg_send(reqid, s, ZMQ_SNDMORE);
    zmq_send(s, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(s, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, "", 0, 0);
}

static void *zap_main(void *arg)
{
    sl_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {z->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0) continue;
        /* Request: version, request id, domain, address, identity, mechanism, credentials. */
        zmq_msg_t f[7];
        int n = 0;
        for (; n < 7; n++) {
            zmq_msg_init(&f[n]);
            if (zmq_msg_recv(&f[n], z->sock, 0) < 0 || !zmq_msg_more(&f[n])) {
                n++;
                break;
            }
        }
        sl__drain_frames(z->sock);
        char addr[128] = "?";
        if (n >= 4)
            snprintf(addr, sizeof addr, "%.*s", (int)SL_MIN(zmq_msg_size(&f[3]), 120),
                     (const char *)zmq_msg_data(&f[3]));
        int ok = 0;
        char key[41] = "(none)";
        if (n == 7 && zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
            zmq_msg_size(&f[6]) == 32) {
            zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
            for (size_t i = 0; i < z->count; i++)
                if (!memcmp(z->allowed[i], zmq_msg_data(&f[6]), 32)) ok = 1;
        }
        if (!ok)
            sl_log(SL_LOG_WARN,
                   "%s refused a connection from %s: CURVE public key %s is not among the run's "
                   "keys",
                   z->where, addr, key);
        zmq_msg_t reqid;
        zmq_msg_init(&reqid);
        if (n >= 2) zmq_msg_copy(&reqid, &f[1]);
        zap_reply(z->sock, "1.0", &reqid, ok ? "200" : "400", ok ? "OK" : "key not admitted");
        zmq_msg_close(&reqid);
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    }
    return NULL;
}

int sl_curve_check_key(const char *key, const char *what)
{
    if (!key || strlen(key) != 40)
        return sl_fail(SL_ECONFIG, "CURVE %s must be 40 characters of Z85 (see `sluice keys`)",
                       what);
    uint8_t bin[32];
    if (!zmq_z85_decode(bin, key))
        return sl_fail(SL_ECONFIG, "CURVE %s '%s' is not valid Z85", what, key);
    return SL_OK;
}

int sl_zap_start(void *zmq_context, const char *const *allowed_keys, size_t count,
                 const char *where, sl_zap **out)
{
    *out = NULL;
    if (!zmq_has("curve"))
        return sl_fail(SL_EUNAVAILABLE, "CURVE requested but this libzmq lacks it");
    sl_zap *z = sl_alloc(sizeof *z);
    if (!z) return SL_ENOMEM;
    atomic_init(&z->stop, 0);
    snprintf(z->where, sizeof z->where, "%s", where);
    int rc = SL_OK;
    if (count && !(z->allowed = sl_alloc(count * 32))) rc = SL_ENOMEM;
    for (size_t i = 0; rc == SL_OK && i < count; i++) {
        rc = sl_curve_check_key(allowed_keys[i], "allowed key");
        if (rc == SL_OK) zmq_z85_decode(z->allowed[i], allowed_keys[i]);
    }
    z->count = count;
    int zero = 0;
    if (rc == SL_OK && (!(z->sock = zmq_socket(zmq_context, ZMQ_REP)) ||
                        zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
                        zmq_bind(z->sock, "inproc://zeromq.zap.01") != 0))
        rc = sl_fail(SL_EIO, "cannot start the CURVE key check: %s", zmq_strerror(errno));
    if (rc == SL_OK && pthread_create(&z->thread, NULL, zap_main, z))
        rc = sl_fail(SL_EIO, "cannot start the CURVE key check thread");
    if (rc == SL_OK) z->running = 1;
    if (rc != SL_OK) {
        sl_zap_stop(z);
        return rc;
    }
    *out = z;
    return SL_OK;
}

void sl_zap_stop(sl_zap *z)
{
    if (!z) return;
    if (z->running) {
        atomic_store(&z->stop, 1);
        pthread_join(z->thread, NULL);
    }
    if (z->sock) zmq_close(z->sock);
    free(z->allowed);
    free(z);
}

void sl_curve_server(void *sock, const char *secret_key)
{
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_key, 40);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "sluice", 6);
}

void sl_curve_client(void *sock, const char *public_key, const char *secret_key,
                     const char *server_key)
{
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_key, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_key, 40);
}
