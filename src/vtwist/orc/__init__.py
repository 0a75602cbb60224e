"""vtorc and reparents: keep every shard with exactly one serving, writable primary."""
