"""prunebench's harness: configs and protocols, registries, data, models, the training loop,
FLOPs, pruning mechanics, audit, store, runner and CLI."""
