/* CURVE: checking and keeping a rank's keys, setting the links' sockets up as CURVE servers and
 * clients, key files, and the ZAP handler that admits only the run's public keys on our bound
 * endpoint and logs every refusal (the refused peer sees its handshake fail). */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    sl_transport *t = arg;
    while (!atomic_load(&t->zap_stop)) {
        zmq_pollitem_t it = {t->zap_sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0) continue;
        /* Request: version, request id, domain, address, identity, mechanism, credentials. */
        zmq_msg_t f[7];
        int n = 0;
        for (; n < 7; n++) {
            zmq_msg_init(&f[n]);
            if (zmq_msg_recv(&f[n], t->zap_sock, 0) < 0 || !zmq_msg_more(&f[n])) {
                n++;
                break;
            }
        }
        sl__drain_frames(t->zap_sock);
        char addr[128] = "?";
        if (n >= 4)
            snprintf(addr, sizeof addr, "%.*s", (int)SL_MIN(zmq_msg_size(&f[3]), 120),
                     (const char *)zmq_msg_data(&f[3]));
        int ok = 0;
        char key[41] = "(none)";
        if (n == 7 && zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
            zmq_msg_size(&f[6]) == 32) {
            zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
            for (size_t i = 0; i < t->allowed_count; i++)
                if (!memcmp(t->allowed[i], zmq_msg_data(&f[6]), 32)) ok = 1;
        }
        if (!ok)
            sl_log(SL_LOG_WARN,
                   "rank %d refused a connection from %s to %s: CURVE public key %s is not "
                   "among the run's keys",
                   t->o.rank, addr, t->bind_ep, key);
        zmq_msg_t reqid;
        zmq_msg_init(&reqid);
        if (n >= 2) zmq_msg_copy(&reqid, &f[1]);
        zap_reply(t->zap_sock, "1.0", &reqid, ok ? "200" : "400", ok ? "OK" : "key not admitted");
        zmq_msg_close(&reqid);
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    }
    return NULL;
}

static int check_key(const char *key, const char *what)
{
    if (!key || strlen(key) != 40)
        return sl_fail(SL_ECONFIG, "CURVE %s must be 40 characters of Z85 (see `sluice keys`)",
                       what);
    uint8_t bin[32];
    if (!zmq_z85_decode(bin, key))
        return sl_fail(SL_ECONFIG, "CURVE %s '%s' is not valid Z85", what, key);
    return SL_OK;
}

int sl__curve_load(sl_transport *t, const sl_transport_curve *c)
{
    const sl_transport_options *o = &t->o;
    if (!zmq_has("curve"))
        return sl_fail(SL_EUNAVAILABLE, "CURVE requested but this libzmq lacks it");
    if (o->zmq_context)
        return sl_fail(SL_EINVAL, "CURVE needs the transport's own context (zmq_context "
                                  "NULL): its key check runs there");
    SL_TRY(check_key(c->public_key, "public key"));
    SL_TRY(check_key(c->secret_key, "secret key"));
    if (o->world > 1) SL_TRY(check_key(c->next_public_key, "public key of the next rank"));
    t->curve = 1;
    memcpy(t->pub, c->public_key, 41);
    memcpy(t->sec, c->secret_key, 41);
    if (o->world > 1) memcpy(t->next_pub, c->next_public_key, 41);
    if (c->allowed_count) {
        t->allowed = sl_alloc(c->allowed_count * 32);
        if (!t->allowed) return SL_ENOMEM;
    }
    for (size_t i = 0; i < c->allowed_count; i++) {
        SL_TRY(check_key(c->allowed_keys[i], "allowed key"));
        zmq_z85_decode(t->allowed[i], c->allowed_keys[i]);
    }
    t->allowed_count = c->allowed_count;
    return SL_OK;
}

int sl__curve_start(sl_transport *t)
{
    t->zap_sock = zmq_socket(t->ctx, ZMQ_REP);
    if (!t->zap_sock || zmq_bind(t->zap_sock, "inproc://zeromq.zap.01") < 0)
        return sl_fail(SL_EIO, "cannot start the CURVE key check: %s", zmq_strerror(errno));
    sl__setopt_int(t->zap_sock, ZMQ_LINGER, 0);
    if (pthread_create(&t->zap_thread, NULL, zap_main, t))
        return sl_fail(SL_EIO, "cannot start the CURVE key check thread");
    t->zap_running = 1;
    return SL_OK;
}

void sl__curve_socket(sl_transport *t, struct sl__link *l)
{
    if (l->bound) {
        sl__setopt_int(l->sock, ZMQ_CURVE_SERVER, 1);
        zmq_setsockopt(l->sock, ZMQ_CURVE_SECRETKEY, t->sec, 40);
        zmq_setsockopt(l->sock, ZMQ_ZAP_DOMAIN, "sluice", 6);
    } else {
        zmq_setsockopt(l->sock, ZMQ_CURVE_SERVERKEY, t->next_pub, 40);
        zmq_setsockopt(l->sock, ZMQ_CURVE_PUBLICKEY, t->pub, 40);
        zmq_setsockopt(l->sock, ZMQ_CURVE_SECRETKEY, t->sec, 40);
    }
}

void sl__curve_stop(sl_transport *t)
{
    if (t->zap_running) {
        atomic_store(&t->zap_stop, 1);
        pthread_join(t->zap_thread, NULL);
    }
    if (t->zap_sock) zmq_close(t->zap_sock);
    free(t->allowed);
    memset(t->sec, 0, sizeof t->sec);
}

int sl_transport_keypair(char public_key[41], char secret_key[41])
{
    if (!zmq_has("curve"))
        return sl_fail(SL_EUNAVAILABLE, "this libzmq was built without CURVE support");
    if (zmq_curve_keypair(public_key, secret_key) < 0)
        return sl_fail(SL_EIO, "cannot generate a CURVE key pair: %s", zmq_strerror(errno));
    return SL_OK;
}

int sl_transport_write_keypair(const char *secret_path, const char *public_path,
                               char public_key[41])
{
    char secret[41], line[42];
    SL_TRY(sl_transport_keypair(public_key, secret));
    snprintf(line, sizeof line, "%s\n", secret);
    int rc = sl_write_file(secret_path, line, 41, 0600);
    memset(secret, 0, sizeof secret);
    memset(line, 0, sizeof line);
    SL_TRY(rc);
    snprintf(line, sizeof line, "%s\n", public_key);
    return sl_write_file(public_path, line, 41, 0644);
}

int sl_transport_read_key(const char *path, char key[41])
{
    char *text;
    size_t len;
    SL_TRY(sl_read_file(path, &text, &len));
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) len--;
    int rc = SL_OK;
    if (len != 40)
        rc = sl_fail(SL_ECONFIG, "%s is not a CURVE key (40 Z85 characters from `sluice keys`)",
                     path);
    else
        memcpy(key, text, 40), key[40] = '\0';
    memset(text, 0, len);
    free(text);
    return rc;
}
