/* Internals of the config module shared by its files. */
#ifndef SL_CONFIG_IMPL_H
#define SL_CONFIG_IMPL_H

/* train.optimizer.name's values, indexed by enum sl_optimizer_kind. */
extern const char *const sl__config_opt_names[3];

#endif
