/* CURVE: checking and keeping a rank's keys, setting the links' sockets up as CURVE servers and
 * clients, key files; the key check on our bound endpoint is zap.c's, admitting only the run's
 * public keys. */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sl__curve_load(sl_transport *t, const sl_transport_curve *c)
{
    const sl_transport_options *o = &t->o;
    if (!zmq_has("curve"))
        return sl_fail(SL_EUNAVAILABLE, "CURVE requested but this libzmq lacks it");
    if (o->zmq_context)
        return sl_fail(SL_EINVAL, "CURVE needs the transport's own context (zmq_context "
                                  "NULL): its key check runs there");
    SL_TRY(sl_curve_check_key(c->public_key, "public key"));
    SL_TRY(sl_curve_check_key(c->secret_key, "secret key"));
    if (o->world > 1) SL_TRY(sl_curve_check_key(c->next_public_key, "public key of the next rank"));
    t->curve = 1;
    memcpy(t->pub, c->public_key, 41);
    memcpy(t->sec, c->secret_key, 41);
    if (o->world > 1) memcpy(t->next_pub, c->next_public_key, 41);
    for (size_t i = 0; i < c->allowed_count; i++)
        SL_TRY(sl_curve_check_key(c->allowed_keys[i], "allowed key"));
    t->allowed_keys = c->allowed_keys;
    t->allowed_count = c->allowed_count;
    return SL_OK;
}

int sl__curve_start(sl_transport *t)
{
    char where[320];
    snprintf(where, sizeof where, "rank %d (link endpoint %s)", t->o.rank, t->bind_ep);
    int rc = sl_zap_start(t->ctx, t->allowed_keys, t->allowed_count, where, &t->zap);
    t->allowed_keys = NULL; /* the caller's, copied by the key check */
    return rc;
}

void sl__curve_socket(sl_transport *t, struct sl__link *l)
{
    if (l->bound)
        sl_curve_server(l->sock, t->sec);
    else
        sl_curve_client(l->sock, t->pub, t->sec, t->next_pub);
}

void sl__curve_stop(sl_transport *t)
{
    sl_zap_stop(t->zap);
    t->zap = NULL;
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
